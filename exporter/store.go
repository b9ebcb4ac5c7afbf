package exporter

import (
	"maps"
	"sync"
	"time"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/probe"
	"github.com/prometheus/client_golang/prometheus"
)

// SocketCount is the number of sockets in one namespace, family and state.
type SocketCount struct {
	Netns  string // namespace name
	Family string // "inet" or "inet6"
	State  string // e.g. "ESTABLISHED"
	Count  int
}

// Snapshot is everything one scan found. Once published it is read-only.
//
// Its sessions come either listed in Doc.Sessions (a one-shot scan, tests)
// or, in the daemon, from Source, with their counts in Summary: then
// Doc.Sessions is nil and the views build the sessions they show.
type Snapshot struct {
	Doc          Document // ScannedAt, Namespaces (kinds and dump times included), and Sessions unless Source is set
	Source       SessionSource
	Summary      []SessionSummary // session counts by namespace; with Source, required
	Sockets      []SocketCount
	ScanDuration time.Duration
	ProbeMode    string // "in_window", "blind" or "off"
	Limits       Limits

	// GhostsByOwner counts the ghosts by owner (OwnerOf); with Source, required.
	GhostsByOwner map[string]int
}

// Limits says what the caps on namespaces and tracked sockets left out.
type Limits struct {
	NamespacesSkipped int    // namespaces the last scan did not dump
	SuspectsRefused   uint64 // sockets refused tracking since start
}

// BuildInfo identifies the running binary in ghostd_build_info.
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// Store holds the latest snapshot plus the counters and histograms that
// accumulate across scans. It is safe for concurrent use; scrapes read it
// under a lock and never make a syscall.
type Store struct {
	build BuildInfo
	now   func() time.Time

	mu        sync.RWMutex
	snap      *Snapshot
	scanHist  prometheus.Histogram // safe for concurrent use: observed and collected without mu
	rttHist   prometheus.Histogram
	probes    uint64
	replies   map[string]uint64 // by kind: ack, rst, icmp
	rejected  map[string]uint64 // by why: probe.RejectReason names and RejectBadChecksum
	capDrops  uint64            // datagrams the probe capture lost to a full buffer
	killed    map[killKey]uint64
	killErrs  map[killErrKey]uint64
	killKnown bool
	killOK    bool
	reloadSet bool
	reloadOK  bool
	reloadAt  time.Time
	caps      map[string]bool

	// natProbes counts probes on connections NATed in their own namespace.
	natProbes uint64

	events     *events.Recorder // nil: no event history (history.go)
	ownersTopK int              // ghostd_ghost_sessions_by_owner's cap
}

type killKey struct{ netns, verdict string }
type killErrKey struct{ netns, errno string }

// Reply kinds in ghostd_probe_replies_total.
const (
	ReplyACK  = "ack"
	ReplyRST  = "rst"
	ReplyICMP = "icmp"
)

// RejectBadChecksum is the why of ghostd_probe_replies_rejected_total for
// captured datagrams whose checksum did not verify; the other values are
// probe.RejectReason's names.
const RejectBadChecksum = "bad_checksum"

// Histogram buckets, in seconds.
var (
	scanBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	rttBuckets  = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
)

// NewStore returns an empty store. now is the clock (time.Now when nil).
func NewStore(b BuildInfo, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{
		build: b,
		now:   now,
		scanHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: metricPrefix + "scan_duration_seconds", Help: "Duration of a whole scan: inventory, classification and probes.",
			Buckets: scanBuckets,
		}),
		rttHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: metricPrefix + "probe_rtt_seconds", Help: "Time from a connection's first probe to its first reply.",
			Buckets: rttBuckets,
		}),
		replies:  map[string]uint64{ReplyACK: 0, ReplyRST: 0, ReplyICMP: 0},
		rejected: newRejected(),
		killed:   map[killKey]uint64{},
		killErrs: map[killErrKey]uint64{},

		ownersTopK: DefaultOwnersTopK,
	}
}

// Publish makes snap the latest snapshot and, if it is of a new scan (a new
// Doc.ScannedAt), observes its scan duration. The first Publish makes the
// store ready. Kill counters of namespaces that are
// no longer scanned are dropped, so the netns label stays bounded by the
// namespaces that exist. snap must not be modified afterwards.
func (s *Store) Publish(snap *Snapshot) {
	if snap == nil {
		return
	}
	present := namespaceNames(snap)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap == nil || !snap.Doc.ScannedAt.Equal(s.snap.Doc.ScannedAt) {
		// A snapshot republished with newer verdicts is the same scan.
		s.scanHist.Observe(snap.ScanDuration.Seconds())
	}
	s.snap = snap
	for k := range s.killed {
		if !present[k.netns] {
			delete(s.killed, k)
		}
	}
	for k := range s.killErrs {
		if !present[k.netns] {
			delete(s.killErrs, k)
		}
	}
}

// Snapshot returns the latest published snapshot, or nil before the first
// scan. The caller must not modify it.
func (s *Store) Snapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snap
}

// Ready reports whether a snapshot has been published.
func (s *Store) Ready() bool { return s.Snapshot() != nil }

// newRejected returns a zero count for every why, so each series exists.
func newRejected() map[string]uint64 {
	m := map[string]uint64{RejectBadChecksum: 0}
	for why := range probe.NumRejectReasons {
		m[why.String()] = 0
	}
	return m
}

// ObserveProbe counts one probed connection's probes, replies, rejected
// packets and RTT, and the capture losses a result carries.
func (s *Store) ObserveProbe(r probe.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Sent > 0 {
		s.probes += uint64(r.Sent)
		if r.NAT != "" {
			s.natProbes += uint64(r.Sent)
		}
	}
	for why, n := range r.Rejected {
		if n > 0 {
			s.rejected[probe.RejectReason(why).String()] += n
		}
	}
	s.rejected[RejectBadChecksum] += r.CaptureBadChecksums
	s.capDrops += r.CaptureDrops
	// A probe round ends at its first ACK or RST; every other reply it took
	// was an ICMP error (at most one per round).
	if kind := replyKind(r.Verdict); kind != "" && r.Replies > 0 {
		final := uint64(1)
		if kind == ReplyICMP {
			final = uint64(r.Replies)
		}
		s.replies[kind] += final
		s.replies[ReplyICMP] += uint64(r.Replies) - final
	}
	if r.RTT > 0 {
		s.rttHist.Observe(r.RTT.Seconds())
	}
}

// replyKind maps a verdict to the kind of reply that proved it.
func replyKind(v probe.Verdict) string {
	switch v {
	case probe.Alive:
		return ReplyACK
	case probe.Reset:
		return ReplyRST
	case probe.Unreachable:
		return ReplyICMP
	}
	return ""
}

// ObserveKill counts one kill action in netns: a success by verdict, a
// failure by errno name.
func (s *Store) ObserveKill(netns, verdict string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.killed[killKey{netns, verdict}]++
		return
	}
	s.killErrs[killErrKey{netns, errnoName(err)}]++
}

// SetKillSupported sets ghostd_kill_supported; the gauge is absent until the
// first call.
func (s *Store) SetKillSupported(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killKnown, s.killOK = true, ok
}

// SetCapabilities records which capabilities ghostd holds, by name
// ("CAP_NET_RAW": true), for ghostd_capability; absent until the first call.
func (s *Store) SetCapabilities(caps map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.caps = maps.Clone(caps)
}

// SetConfigReload records the outcome of a configuration (re)load; at is the
// time of the last successful one. The gauges are absent until the first call.
func (s *Store) SetConfigReload(ok bool, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloadSet, s.reloadOK = true, ok
	if ok {
		s.reloadAt = at
	}
}

// namespaceNames returns the names of every namespace the snapshot mentions.
func namespaceNames(snap *Snapshot) map[string]bool {
	m := make(map[string]bool, len(snap.Doc.Namespaces))
	for _, n := range snap.Doc.Namespaces {
		m[n.Netns] = true
	}
	for _, ss := range snap.summary() {
		m[ss.Netns] = true
	}
	return m
}
