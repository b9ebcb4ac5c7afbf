package engine

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// Inventory is what the engine needs from inventory.Scanner.
type Inventory interface {
	Scan(ctx context.Context, states inventory.StateMask, fn func(ns *inventory.Namespace, sk *inventory.Socket) error) []inventory.NamespaceResult
}

// Prober is what the engine needs from probe.Prober.
type Prober interface {
	ProbeAll(ctx context.Context, targets []probe.Target) []probe.Result
	Mode() (probe.Mode, string)
}

// Owners resolves socket inodes to their owning processes.
type Owners interface {
	Lookup(inodes []uint32) map[uint32]inventory.Owner
}

// Options tune the engine.
type Options struct {
	Tracker tracker.Config
	// Backoff is how long an alive suspect waits before it is probed again.
	Backoff time.Duration
	// Reconfirm is how often a ghost is probed again to re-confirm it.
	Reconfirm time.Duration
	// All makes the document list every socket, not only suspects (scan --all).
	All bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// verdictState is what the engine remembers of a socket's last probe, kept
// packed in the socket's tracker Tag (see packVerdict).
type verdictState struct {
	at         stamp // when the probe finished
	ghostSince stamp // noStamp unless a confirmed ghost
	rtt        time.Duration
	verdict    uint8 // index in packedVerdicts
	mode       uint8 // index in packedModes
	sent       uint8
	replies    uint8
	host       int8 // host hint: -1 not asked, 0 unreachable, 1 reachable
	closed     bool // the peer's RST closed the local socket
	confirmed  bool
	why        uint8 // index in packedUnprobeable: why the socket cannot be probed
	// nat is the index in packedNATs of the connection's translation.
	nat uint8
	// uncertain is the index in packedUncertain: why a silence (or an
	// unreachable) was not confirmed.
	uncertain uint8
}

var (
	packedVerdicts = []probe.Verdict{probe.Unprobed, probe.Alive, probe.Reset, probe.Silent, probe.Unreachable}
	packedModes    = []probe.Mode{"", probe.InWindow, probe.Blind}
	// packedUnprobeable lists Result.Unprobeable's values; "" first.
	packedUnprobeable = []string{"", probe.UnprobeableTCPMD5, probe.UnprobeableTCPAO}
	packedUncertain   = []string{"", probe.UncertainInterference, probe.UncertainCaptureLost}
	packedNATs        = []string{"", probe.NATDNAT, probe.NATSNAT, probe.NATRedirect,
		probe.NATDNAT + "+" + probe.NATSNAT, probe.NATRedirect + "+" + probe.NATSNAT}
)

func packIndex[T comparable](list []T, v T) uint8 {
	for i, x := range list {
		if x == v {
			return uint8(i)
		}
	}
	return 0
}

func clampUint8(n int) uint8 { return uint8(min(max(n, 0), 255)) }

func packResult(r probe.Result, at, ghostSince stamp) verdictState {
	v := verdictState{
		at: at, ghostSince: ghostSince, rtt: r.RTT,
		verdict: packIndex(packedVerdicts, r.Verdict), mode: packIndex(packedModes, r.Mode),
		sent: clampUint8(r.Sent), replies: clampUint8(r.Replies),
		host: -1, closed: r.ClosedLocal, confirmed: r.Confirmed,
		why: packIndex(packedUnprobeable, r.Unprobeable),
		nat: packIndex(packedNATs, r.NAT), uncertain: packIndex(packedUncertain, r.Uncertain),
	}
	if r.HostReachable != nil {
		v.host = 0
		if *r.HostReachable {
			v.host = 1
		}
	}
	return v
}

func (v *verdictState) result() probe.Result {
	r := probe.Result{
		Verdict: packedVerdicts[v.verdict], Mode: packedModes[v.mode], Sent: int(v.sent), Replies: int(v.replies),
		RTT: v.rtt, ClosedLocal: v.closed, Confirmed: v.confirmed, Unprobeable: packedUnprobeable[v.why],
		NAT: packedNATs[v.nat], Uncertain: packedUncertain[v.uncertain],
	}
	if v.host >= 0 {
		ok := v.host == 1
		r.HostReachable = &ok
	}
	return r
}

// The tracker keeps each suspect's verdict in its entry's Tag, so a pass
// over every suspect reads it without a lookup, and it goes with the entry:
// bytes 0-23 at, ghostSince and rtt (little-endian), then verdict, mode,
// sent, replies, host, closed (bit 0; the NAT kind in bits 1-7), confirmed,
// and 1 in the last byte once probed. The mode byte's high nibble says why
// a socket could not be probed.
func packVerdict(v *verdictState) tracker.Tag {
	var t tracker.Tag
	binary.LittleEndian.PutUint64(t[0:], uint64(v.at))
	binary.LittleEndian.PutUint64(t[8:], uint64(v.ghostSince))
	binary.LittleEndian.PutUint64(t[16:], uint64(v.rtt))
	t[24], t[25], t[26], t[27], t[28] = v.verdict, v.mode|v.why<<4, v.sent, v.replies, byte(v.host)
	if v.closed {
		t[29] = 1
	}
	t[29] |= v.nat << 1
	if v.confirmed {
		t[30] = 1
	}
	t[30] |= v.uncertain << 1
	t[31] = 1
	return t
}

// unpackVerdict reverses packVerdict; ok is false for a socket never probed
// (or whose verdict the tracker cleared).
func unpackVerdict(t tracker.Tag) (v verdictState, ok bool) {
	mode, why := t[25]&0xf, t[25]>>4
	if t[31] != 1 || int(t[24]) >= len(packedVerdicts) || int(mode) >= len(packedModes) || int(why) >= len(packedUnprobeable) || int(t[29]>>1) >= len(packedNATs) || int(t[30]>>1) >= len(packedUncertain) {
		return verdictState{}, false
	}
	return verdictState{
		at:         stamp(binary.LittleEndian.Uint64(t[0:])),
		ghostSince: stamp(binary.LittleEndian.Uint64(t[8:])),
		rtt:        time.Duration(binary.LittleEndian.Uint64(t[16:])),
		verdict:    t[24], mode: mode, sent: t[26], replies: t[27], host: int8(t[28]),
		closed: t[29]&1 == 1, nat: t[29] >> 1, confirmed: t[30]&1 == 1, why: why, uncertain: t[30] >> 1,
	}, true
}

// verdict returns a suspect's last probe verdict, if it has one.
func (e *Engine) verdict(k inventory.Key) (verdictState, bool) {
	tag, ok := e.tracker.Tag(k)
	if !ok {
		return verdictState{}, false
	}
	return unpackVerdict(tag)
}

// stamp is a time as nanoseconds since the engine's epoch, which keeps the
// monotonic clock reading of the times it packs; noStamp is the zero time.
type stamp int64

const noStamp = stamp(math.MinInt64)

func (e *Engine) stamp(t time.Time) stamp {
	if t.IsZero() {
		return noStamp
	}
	return stamp(t.Sub(e.epoch))
}

func (e *Engine) time(s stamp) time.Time {
	if s == noStamp {
		return time.Time{}
	}
	return e.epoch.Add(time.Duration(s))
}

// KilledRetention is how long a killed session stays in the document after
// its socket left the table, so operators see what ghostd did.
const KilledRetention = 10 * time.Minute

type goneSession struct {
	session exporter.Session
	at      time.Time
}

// nsState is one namespace as the last scan saw it.
type nsState struct {
	ns      inventory.Namespace
	sockets int
	err     error
	dur     time.Duration
}

// stateCounts counts a namespace's sockets by family (0 inet, 1 inet6) and state.
type stateCounts [2][16]int

// Engine keeps the state between passes. Its methods are safe for concurrent use.
type Engine struct {
	inv    Inventory
	prober Prober // nil when probing is off
	owners Owners
	opts   Options

	scanMu   sync.Mutex // one Scan at a time
	progress func()     // called as a long Scan moves from namespace to namespace (SetProgress)
	mu       sync.Mutex
	tracker  *tracker.Tracker
	killed   map[inventory.Key]bool
	// gone holds the sessions ghostd killed whose socket has left the
	// table, shown (killed, no longer a ghost) for KilledRetention.
	gone    map[inventory.Key]goneSession
	names   map[uint64]inventory.Namespace
	last    []nsState
	counts  map[uint64]*stateCounts // by netns inode
	all     []inventory.Socket      // every socket of the last scan, only with Options.All
	scanned time.Time
	scanDur time.Duration
	epoch   time.Time // stamps count from it
	// ghostChanges counts verdicts that changed the ghost counts (GhostChanges).
	ghostChanges uint64
	// ownerOf maps a reported socket's inode to its owner: an index in
	// ownerTab plus one, 0 when nobody holds it. Owners are per process, so
	// the table stays small while the map has one 8-byte entry per suspect.
	ownerOf  map[uint32]uint32
	ownerTab []inventory.Owner
	ownerIdx map[inventory.Owner]uint32
	// ownerMiss holds, for each inode whose lookup found no process, when
	// to look again: a miss is often transient (a race with accept or exec,
	// a socket in flight over SCM_RIGHTS), and a deny rule on comms or units
	// must see the owner once it can be found.
	ownerMiss map[uint32]time.Time
	// ownersSeen is the tracker's NewSuspects at the last owner lookup.
	ownersSeen uint64
	ev         eventState // events.go
}

// New returns an engine. prober may be nil (probing off); owners may be nil.
func New(inv Inventory, prober Prober, owners Owners, opts Options) *Engine {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Engine{
		inv: inv, prober: prober, owners: owners, opts: opts,
		tracker:   tracker.New(opts.Tracker),
		killed:    make(map[inventory.Key]bool),
		gone:      make(map[inventory.Key]goneSession),
		names:     make(map[uint64]inventory.Namespace),
		counts:    make(map[uint64]*stateCounts),
		epoch:     opts.Now(),
		ownerOf:   make(map[uint32]uint32),
		ownerIdx:  make(map[inventory.Owner]uint32),
		ownerMiss: make(map[uint32]time.Time),
	}
}

// SetOptions applies new thresholds and probe timing (a config reload).
func (e *Engine) SetOptions(opts Options) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if opts.Now == nil {
		opts.Now = e.opts.Now
	}
	e.opts = opts
	e.tracker.SetConfig(opts.Tracker)
}

// SetProgress sets a function Scan calls, at most once a second, as it moves
// on to another namespace: a daemon feeds systemd's watchdog with it, so a
// scan of many namespaces that is slow but moving is not taken for a hang.
func (e *Engine) SetProgress(fn func()) {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	e.progress = fn
}

// Scan runs one inventory pass over every selected namespace and updates the
// tracker. It does not probe. The dump runs without the engine's lock (the
// tracker has its own), so the page, the API and the probe loop do not wait
// for the kernel; passes are serialised.
func (e *Engine) Scan(ctx context.Context) []inventory.NamespaceResult {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	e.mu.Lock()
	opts := e.opts
	e.mu.Unlock()
	start := opts.Now()
	counts := make(map[uint64]*stateCounts, len(e.counts))
	var all []inventory.Socket
	var cur *stateCounts
	curNetns := uint64(0)
	lastProgress := start
	results := e.inv.Scan(ctx, inventory.AllStates, func(ns *inventory.Namespace, sk *inventory.Socket) error {
		if cur == nil || sk.Netns != curNetns {
			if e.progress != nil {
				if now := opts.Now(); now.Sub(lastProgress) >= time.Second {
					e.progress()
					lastProgress = now
				}
			}
			if cur = counts[sk.Netns]; cur == nil {
				cur = new(stateCounts)
				counts[sk.Netns] = cur
			}
			curNetns = sk.Netns
			e.tracker.SetSysctls(sk.Netns, ns.TCP)
		}
		fam := 0
		if sk.Family == inventory.FamilyInet6 {
			fam = 1
		}
		cur[fam][sk.State&15]++
		// The time of this socket's dump: tcp_info's "ms ago" fields are
		// relative to it, and a dump of many namespaces takes a while.
		e.tracker.Observe(opts.Now(), sk)
		if opts.All {
			all = append(all, *sk)
		}
		return nil
	})
	if opts.All {
		// Sorted, so a session can be found by key.
		slices.SortFunc(all, func(a, b inventory.Socket) int { return compareKeys(a.Key(), b.Key()) })
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts, e.all = counts, all
	now := e.opts.Now()
	seen := make(map[uint64]bool, len(results))
	e.last = e.last[:0]
	for _, r := range results {
		seen[r.Inode] = true
		e.names[r.Inode] = r.Namespace
		e.last = append(e.last, nsState{ns: r.Namespace, sockets: r.Sockets, err: r.Err, dur: r.Duration})
		if r.Err == nil {
			e.tracker.EndNamespace(now, r.Inode)
		}
	}
	e.namespacesGoneLocked(seen, now)
	for ino := range e.names {
		if !seen[ino] {
			e.tracker.DropNamespace(ino)
			delete(e.names, ino)
		}
	}
	for k := range e.killed {
		if _, ok := e.tracker.Reasons(k); !ok {
			delete(e.killed, k)
		}
	}
	for k, g := range e.gone {
		if now.Sub(g.at) > KilledRetention || !seen[k.Netns] {
			delete(e.gone, k)
		}
	}
	e.scanned = now
	e.scanDur = e.opts.Now().Sub(start)
	e.scanEventsLocked(now)
	return results
}

// MaxTargets bounds a batch of Targets: about 2.7 minutes of probes at the
// default 200 probes/s, 4.5 MB. Every scan makes a new batch and the latest
// wins, so a longer one would only be thrown away.
const MaxTargets = 1 << 15

// Targets returns the suspects that are due for a probe, at most MaxTargets:
// first ghosts due for re-confirmation (few, and a kill needs fresh repeated
// evidence: anyone who can open idle connections to a listening port could
// otherwise starve them with new suspects), then the never-probed (a new
// suspect is the likeliest new ghost, and must not wait behind a host's
// worth of healthy pools being re-probed), then alive suspects past their
// backoff, the longest-waiting first. Only sockets of the latest inventory are ever
// returned.
func (e *Engine) Targets() []probe.Target {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	// Rank small records, not targets: on a first pass every one of a
	// host's 200 000 idle suspects is due.
	type due struct {
		class int8  // 0 ghost to re-confirm, 1 never probed, 2 alive past backoff
		at    stamp // last probe
		k     inventory.Key
	}
	// Within a class: the longest-waiting first, then by namespace and
	// cookie (oldest sockets first), which keeps a namespace's targets together.
	order := func(a, b due) int {
		if c := cmp.Compare(a.class, b.class); c != 0 {
			return c
		}
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return compareKeys(a.k, b.k)
	}
	// Keep the best MaxTargets in a buffer of twice that: when it fills,
	// sort it and drop the worse half. Memory stays at 2 MB however many
	// suspects are due.
	out := make([]due, 0, min(2*MaxTargets, e.tracker.Len()))
	keep := func() {
		slices.SortFunc(out, order)
		out = out[:min(len(out), MaxTargets)]
	}
	e.tracker.EachSuspectBrief(func(b *tracker.Brief) {
		if !b.Reasons.CanGhost() {
			return
		}
		k := b.Key
		d := due{class: 1, at: noStamp, k: k}
		if v, ok := unpackVerdict(b.Tag); ok {
			if !e.dueAfter(&v, now) {
				return
			}
			d.class, d.at = 2, v.at
			if packedVerdicts[v.verdict].Ghost() {
				d.class = 0
			}
		}
		if e.killed[k] {
			return
		}
		if len(out) == 2*MaxTargets {
			keep()
		}
		out = append(out, d)
	})
	keep()
	ts := make([]probe.Target, 0, min(len(out), MaxTargets))
	for _, d := range out[:min(len(out), MaxTargets)] {
		if ent, ok := e.tracker.Get(d.k); ok {
			ts = append(ts, e.target(&ent))
		}
	}
	return ts
}

// dueLocked reports whether a suspect may be probed now: never killed, and
// never probed, or alive past the backoff, or a ghost past Reconfirm.
func (e *Engine) dueLocked(k inventory.Key, now time.Time) bool {
	if e.killed[k] {
		return false
	}
	v, ok := e.verdict(k)
	return !ok || e.dueAfter(&v, now)
}

// dueAfter reports whether a probed socket's wait is over: Backoff after
// alive, Reconfirm after a ghost verdict.
func (e *Engine) dueAfter(v *verdictState, now time.Time) bool {
	wait := e.opts.Backoff
	if packedVerdicts[v.verdict].Ghost() {
		wait = e.opts.Reconfirm
	}
	return now.Sub(e.time(v.at)) >= wait
}

// StillDue keeps the targets that are still due and still in the tracker: a
// batch made at one scan, checked again before each chunk is probed.
func (e *Engine) StillDue(ts []probe.Target) []probe.Target {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	out := ts[:0]
	for _, t := range ts {
		k := inventory.Key{Netns: t.NetnsInode, Cookie: t.Cookie}
		if rs, ok := e.tracker.Reasons(k); ok && rs.Probeable() && e.dueLocked(k, now) {
			out = append(out, t)
		}
	}
	return out
}

// DueHead checks the head of a batch: it moves the first n targets of ts
// that are still due (StillDue) to its front, drops the ones passed over,
// and returns the batch and how many targets at its front are due. The rest
// of the batch is not checked yet, so checking a batch of MaxTargets costs
// a chunk's worth of lookups per chunk, not the whole batch's.
func (e *Engine) DueHead(ts []probe.Target, n int) ([]probe.Target, int) {
	i, j := 0, 0
	for i < n && j < len(ts) {
		m := min(n-i, len(ts)-j)
		kept := e.StillDue(ts[j : j+m])
		copy(ts[i:], kept)
		i += len(kept)
		j += m
	}
	return append(ts[:i], ts[j:]...), i
}

func (e *Engine) target(ent *tracker.Entry) probe.Target {
	sk := &ent.Socket
	t := probe.Target{
		NetnsInode:     sk.Netns,
		NetnsPath:      e.names[sk.Netns].Path,
		Cookie:         sk.Cookie,
		Family:         sk.Family,
		Local:          sk.Local,
		Remote:         sk.Remote,
		KernelEvidence: KernelEvidence(sk),
	}
	if ent.IdleKnown {
		t.QuietSince = ent.LastSeen.Add(-ent.Idle)
	}
	return t
}

// KernelEvidence reports whether the socket's own kernel already probed the
// peer in-window without an answer: a retransmit timer that has backed off at
// least twice, or tracker.KeepaliveUnanswered keepalive probes unanswered.
// One keepalive probe out is no evidence: a dump often catches one whose ACK
// is on its way, and keepalive-on sockets are idle suspects (probed, blind
// ones too) while their kernel is slower than ghostd.
func KernelEvidence(sk *inventory.Socket) bool {
	switch sk.Timer {
	case inventory.TimerRetransmit:
		return sk.Retrans >= 2 || (sk.Info.Valid() && sk.Info.Backoff >= 2)
	case inventory.TimerKeepalive:
		return sk.Retrans >= tracker.KeepaliveUnanswered
	}
	return false
}

// Probe probes the targets (which must come from Targets) and records the
// verdicts. It returns the results in target order.
func (e *Engine) Probe(ctx context.Context, targets []probe.Target) []probe.Result {
	if e.prober == nil || len(targets) == 0 {
		return nil
	}
	// In chunks: a probe waiting for its turn costs a goroutine and its
	// buffers, and a first pass over a host of idle pools has 100 000s.
	results := make([]probe.Result, 0, len(targets))
	for i := 0; i < len(targets) && ctx.Err() == nil; i += ProbeChunk {
		chunk := targets[i:min(i+ProbeChunk, len(targets))]
		e.ReadAhead(ctx, chunk, targets[i:min(i+ReadAheadWindow, len(targets))])
		r := e.prober.ProbeAll(ctx, chunk)
		e.Record(chunk, r)
		results = append(results, r...)
	}
	return results
}

// Reprobe probes the given suspects again now, records the results and
// returns them in order: the kill policy's fresh confirmation right before
// a kill. A key that is no longer a probeable suspect gets Unprobed with an
// error.
func (e *Engine) Reprobe(ctx context.Context, keys []inventory.Key) []probe.Result {
	out := make([]probe.Result, len(keys))
	var targets []probe.Target
	var idx []int
	e.mu.Lock()
	for i, k := range keys {
		ent, ok := e.tracker.Get(k)
		if !ok || !ent.Reasons.Probeable() || e.killed[k] {
			out[i] = probe.Result{Verdict: probe.Unprobed, Err: errNotSuspect}
			continue
		}
		targets = append(targets, e.target(&ent))
		idx = append(idx, i)
	}
	e.mu.Unlock()
	if e.prober == nil {
		for _, i := range idx {
			out[i] = probe.Result{Verdict: probe.Unprobed, Err: errNoProber}
		}
		return out
	}
	for j, r := range e.Probe(ctx, targets) {
		out[idx[j]] = r
	}
	return out
}

var (
	errNotSuspect = errors.New("engine: no longer a probeable suspect")
	errNoProber   = errors.New("engine: probing is off")
)

// ProbeChunk is how many targets are handed to the prober at once: about
// 2.5 s of work at the default 200 probes/s.
const ProbeChunk = 512

// ReadAheadWindow is how many targets one read-ahead covers: reading the
// sequence numbers of the sockets to probe costs a walk of the host's whole
// TCP table (~300 ms with 200 000 sockets), whatever their number, so one
// walk serves the next few minutes of probes instead of one chunk.
const ReadAheadWindow = MaxTargets

// readAheader is a prober that can read sequence state ahead of its probes
// (probe.Prober); fakes need not be.
type readAheader interface {
	Missing(targets []probe.Target) int
	ReadAhead(ctx context.Context, targets []probe.Target) int
}

// ReadAhead has the prober read the sequence state of every target in
// window when the chunk about to be probed lacks some: one walk of the TCP
// table for many chunks. It does nothing when the prober cannot.
func (e *Engine) ReadAhead(ctx context.Context, chunk, window []probe.Target) {
	if ra, ok := e.prober.(readAheader); ok && ra.Missing(chunk) > 0 {
		ra.ReadAhead(ctx, window)
	}
}

// Record stores probe results for their targets.
func (e *Engine) Record(targets []probe.Target, results []probe.Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	for i, r := range results {
		// An unprobed result says nothing new (an error, a cancelled
		// probe), unless the socket can never be probed: that is recorded.
		if i >= len(targets) || (r.Verdict == probe.Unprobed && r.Unprobeable == "") || r.Verdict == "" {
			continue
		}
		k := inventory.Key{Netns: targets[i].NetnsInode, Cookie: targets[i].Cookie}
		tag, ok := e.tracker.Tag(k)
		if !ok {
			continue // gone while it was being probed
		}
		prev, probed := unpackVerdict(tag)
		wasGhost := probed && packedVerdicts[prev.verdict].Ghost() && prev.confirmed
		ghost := r.Verdict.Ghost() && r.Confirmed
		ghostSince := noStamp
		if ghost {
			ghostSince = e.stamp(now)
			if wasGhost && prev.ghostSince != noStamp {
				ghostSince = prev.ghostSince
			}
		}
		v := packResult(r, e.stamp(now), ghostSince)
		if ghost != wasGhost || (ghost && v.verdict != prev.verdict) {
			e.ghostChanges++
		}
		e.tracker.SetTag(k, packVerdict(&v))
		e.verdictEventLocked(k, &prev, probed, &v, now)
	}
}

// GhostChanges counts the recorded verdicts that made a socket a ghost, or
// no longer one, or changed its ghost verdict: when it has moved since the
// last snapshot, the ghost counts published with it are out of date.
func (e *Engine) GhostChanges() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ghostChanges
}

// MarkKilled records that ghostd ended a socket, so it is not probed again.
// It shows as killed while it is in the table, and for KilledRetention after.
func (e *Engine) MarkKilled(k inventory.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.killed[k] = true
	ent, ok := e.tracker.Get(k)
	if !ok {
		return
	}
	s := e.session(&ent, e.opts.Now())
	s.Killed, s.Ghost, s.GhostSeconds = true, false, 0
	s.State = inventory.StateClose.String() // where SOCK_DESTROY or the kernel's reaping leaves it
	e.gone[k] = goneSession{session: s, at: e.opts.Now()}
}

// Snapshot builds the exporter snapshot of the last scan: the namespaces,
// socket and session counts, and the engine itself as the source of the
// sessions, built when a view asks (the verdicts recorded by then included).
// It resolves the owners of new suspects, and returns the kill candidates:
// confirmed ghosts and CLOSE_WAIT leaks.
func (e *Engine) Snapshot() (*exporter.Snapshot, []kill.Candidate) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	snap := e.frameLocked()
	snap.Source = e
	var (
		tally exporter.Tally
		t     exporter.Tallied
		cands []inventory.Key // ghosts and CLOSE_WAIT leaks, not killed
	)
	// Owners are looked for only when some socket became a suspect since
	// the last look: 200 000 cache lookups per scan otherwise.
	if newSuspects := e.tracker.NewSuspects(); e.opts.All || newSuspects != e.ownersSeen || e.ownerRetryDueLocked(now) {
		e.resolveOwnersLocked()
		e.ownersSeen = newSuspects
	}
	e.eachBriefLocked(func(b *tracker.Brief) {
		t = exporter.Tallied{
			Netns: e.names[b.Key.Netns].Name, Family: FamilyName(b.Family),
			Verdict: string(probe.Unprobed), Reasons: b.Reasons, Killed: e.killed[b.Key],
		}
		if v, probed := unpackVerdict(b.Tag); probed {
			t.Verdict = string(packedVerdicts[v.verdict])
			t.Ghost, t.GhostSeconds = e.ghost(b.Reasons, &v, now)
		}
		if t.Ghost {
			t.Owner = e.ownerName(b.Inode)
		}
		tally.Add(&t)
		if !t.Killed && (t.Ghost || b.Reasons.Has(tracker.ReasonCloseWait)) {
			cands = append(cands, b.Key)
		}
	})
	slices.SortFunc(cands, compareKeys)
	var out []kill.Candidate
	for _, k := range cands {
		ent, ok := e.tracker.Get(k)
		if !ok {
			continue
		}
		s := e.session(&ent, now)
		c := kill.Candidate{Socket: ent.Socket, Netns: s.Netns, PID: s.PID, Comm: s.Comm, Unit: s.Unit, Reasons: ent.Reasons, Verdict: probe.Verdict(s.Verdict),
			ProbesSent: s.ProbesSent, Replies: s.Replies, IdleSeconds: s.IdleSeconds}
		if s.Ghost {
			v, _ := unpackVerdict(ent.Tag)
			c.Confirmed, c.GhostSince = v.confirmed, e.time(v.ghostSince)
		} else {
			c.GhostSince = ent.StateSince // a leak's age is how long it has been in CLOSE_WAIT
		}
		out = append(out, c)
	}
	for _, g := range e.goneLocked() {
		tally.Add(&exporter.Tallied{Netns: g.Netns, Family: g.Family, Verdict: g.Verdict, Killed: true})
	}
	snap.Summary = tally.Summaries()
	snap.GhostsByOwner = tally.GhostsByOwner()
	return snap, out
}

// Document returns the last scan with every session listed, as `ghostd
// scan` prints it.
func (e *Engine) Document() exporter.Document {
	e.mu.Lock()
	doc := e.frameLocked().Doc
	e.resolveOwnersLocked()
	e.mu.Unlock()
	doc.Sessions = []exporter.Session{}
	e.EachSession(func(b []exporter.Session) bool {
		doc.Sessions = append(doc.Sessions, b...)
		return true
	})
	return doc
}

// sessionBatch is how many sessions EachSession builds under one hold of
// the engine's lock.
const sessionBatch = 512

// EachSession calls fn with every session in (netns inode, cookie) order,
// then the killed sessions whose socket is gone, oldest kill first, a batch
// at a time, until fn returns false. The lock is held while a batch is
// built, never while fn runs, so a slow HTTP client cannot hold up scans; a
// socket that leaves the tracker between batches is skipped.
func (e *Engine) EachSession(fn func([]exporter.Session) bool) {
	e.mu.Lock()
	keys, gone := e.keysLocked()
	all := e.opts.All
	e.mu.Unlock()
	// Sorting 200 000 keys takes tens of milliseconds: never under the
	// lock that scans and probes need.
	slices.SortFunc(keys, compareKeys)
	keys = append(keys, gone...)
	batch := make([]exporter.Session, 0, sessionBatch)
	for len(keys) > 0 {
		n := min(len(keys), sessionBatch)
		batch = batch[:0]
		e.mu.Lock()
		now := e.opts.Now()
		for _, k := range keys[:n] {
			if s, ok := e.sessionByKeyLocked(k, all, now); ok {
				batch = append(batch, s)
			}
		}
		e.mu.Unlock()
		keys = keys[n:]
		if len(batch) > 0 && !fn(batch) {
			return
		}
	}
}

// TopSessions returns up to n sessions in exporter.TopOrder: what the page shows.
func (e *Engine) TopSessions(n int) []exporter.Session {
	e.mu.Lock()
	now := e.opts.Now()
	type ranked struct {
		k           inventory.Key
		ghost       bool
		ghostS, idl float64
	}
	var rs []ranked
	e.eachBriefLocked(func(b *tracker.Brief) {
		r := ranked{k: b.Key, idl: idleSeconds(b.InfoValid, b.LastDataRecv)}
		if v, ok := unpackVerdict(b.Tag); ok && !e.killed[r.k] {
			r.ghost, r.ghostS = e.ghost(b.Reasons, &v, now)
		}
		rs = append(rs, r)
	})
	for _, g := range e.goneLocked() {
		rs = append(rs, ranked{k: inventory.Key{Netns: g.NetnsInode, Cookie: g.Cookie}, idl: g.IdleSeconds})
	}
	all := e.opts.All
	e.mu.Unlock()
	// Rank without the lock: scans and probes must not wait for a page view.
	slices.SortStableFunc(rs, func(a, b ranked) int {
		if c := exporter.TopOrder(a.ghost, a.ghostS, a.idl, b.ghost, b.ghostS, b.idl); c != 0 {
			return c
		}
		return compareKeys(a.k, b.k)
	})
	out := make([]exporter.Session, 0, min(n, len(rs)))
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range rs[:min(n, len(rs))] {
		if s, ok := e.sessionByKeyLocked(r.k, all, now); ok {
			out = append(out, s)
		}
	}
	return out
}

// Limits returns what the caps on namespaces and tracked sockets left out.
func (e *Engine) Limits() exporter.Limits {
	l := exporter.Limits{SuspectsRefused: e.tracker.Refused()}
	if sk, ok := e.inv.(interface{ Skipped() int }); ok {
		l.NamespacesSkipped = sk.Skipped()
	}
	return l
}

// frameLocked returns a snapshot with everything but its sessions.
func (e *Engine) frameLocked() *exporter.Snapshot {
	snap := &exporter.Snapshot{
		Doc:          exporter.Document{ScannedAt: e.scanned.UTC(), Namespaces: []exporter.NamespaceStatus{}},
		ScanDuration: e.scanDur,
		ProbeMode:    e.probeMode(),
		Limits:       e.Limits(),
	}
	for _, st := range e.last {
		errText := ""
		if st.err != nil {
			errText = st.err.Error()
		}
		snap.Doc.Namespaces = append(snap.Doc.Namespaces, exporter.NamespaceStatus{
			Netns: st.ns.Name, NetnsInode: st.ns.Inode, Sockets: st.sockets, Error: errText,
		})
		snap.Scans = append(snap.Scans, exporter.NamespaceScan{
			Name: st.ns.Name, Inode: st.ns.Inode, Kind: string(st.ns.Kind), OK: st.err == nil,
			Sockets: st.sockets, Err: errText, Duration: st.dur,
		})
	}
	for netns, c := range e.counts {
		for fam := range c {
			for st, n := range c[fam] {
				if n == 0 {
					continue
				}
				family := inventory.FamilyInet
				if fam == 1 {
					family = inventory.FamilyInet6
				}
				snap.Sockets = append(snap.Sockets, exporter.SocketCount{
					Netns: e.names[netns].Name, Family: FamilyName(family), State: inventory.State(st).String(), Count: n,
				})
			}
		}
	}
	slices.SortFunc(snap.Sockets, func(a, b exporter.SocketCount) int {
		if c := cmp.Compare(a.Netns, b.Netns); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Family, b.Family); c != 0 {
			return c
		}
		return cmp.Compare(a.State, b.State)
	})
	return snap
}

// eachBriefLocked calls fn for every session to report: every suspect, or
// with Options.All every socket of the last scan.
func (e *Engine) eachBriefLocked(fn func(*tracker.Brief)) {
	if !e.opts.All {
		e.tracker.EachSuspectBrief(fn)
		return
	}
	for i := range e.all {
		sk := &e.all[i]
		b := tracker.Brief{Key: sk.Key(), Family: sk.Family, Inode: sk.Inode, LastDataRecv: sk.Info.LastDataRecv, InfoValid: sk.Info.Valid()}
		b.Reasons, _ = e.tracker.Reasons(b.Key)
		fn(&b)
	}
}

// keysLocked returns the keys of the sessions to report, in EachSession's order.
func (e *Engine) keysLocked() (suspects, gone []inventory.Key) {
	e.eachBriefLocked(func(b *tracker.Brief) { suspects = append(suspects, b.Key) })
	for _, g := range e.goneLocked() {
		gone = append(gone, inventory.Key{Netns: g.NetnsInode, Cookie: g.Cookie})
	}
	return suspects, gone
}

// sessionByKeyLocked builds the session of k: a tracked socket, a socket of
// the last scan (with all), or a killed one whose socket is gone.
func (e *Engine) sessionByKeyLocked(k inventory.Key, all bool, now time.Time) (exporter.Session, bool) {
	if ent, ok := e.tracker.Get(k); ok {
		return e.session(&ent, now), true
	}
	if g, ok := e.gone[k]; ok {
		return g.session, true
	}
	if all {
		i, ok := slices.BinarySearchFunc(e.all, k, func(s inventory.Socket, k inventory.Key) int { return compareKeys(s.Key(), k) })
		if ok {
			return e.session(&tracker.Entry{Socket: e.all[i]}, now), true
		}
	}
	return exporter.Session{}, false
}

// goneLocked returns the killed sessions whose sockets are gone, oldest kill first.
func (e *Engine) goneLocked() []exporter.Session {
	var gone []goneSession
	for k, g := range e.gone {
		if _, ok := e.tracker.Reasons(k); !ok {
			gone = append(gone, g)
		}
	}
	slices.SortFunc(gone, func(a, b goneSession) int { return a.at.Compare(b.at) })
	out := make([]exporter.Session, len(gone))
	for i, g := range gone {
		out[i] = g.session
	}
	return out
}

func compareKeys(a, b inventory.Key) int {
	if c := cmp.Compare(a.Netns, b.Netns); c != 0 {
		return c
	}
	return cmp.Compare(a.Cookie, b.Cookie)
}

// probeMode is "off" without a prober, else the prober's mode.
func (e *Engine) probeMode() string {
	if e.prober == nil {
		return "off"
	}
	m, _ := e.prober.Mode()
	return string(m)
}

// ownerRetry is how long a socket whose owner was not found waits before
// its owner is looked for again.
const ownerRetry = time.Minute

// ownerRetryDueLocked reports whether some owner miss is due for another look.
func (e *Engine) ownerRetryDueLocked(now time.Time) bool {
	for _, at := range e.ownerMiss {
		if !now.Before(at) {
			return true
		}
	}
	return false
}

// resolveOwnersLocked resolves the owners of reported sockets not asked
// about before, and of those whose owner was not found last time once
// ownerRetry has passed.
func (e *Engine) resolveOwnersLocked() {
	var want []uint32
	reported := 0
	now := e.opts.Now()
	e.eachBriefLocked(func(b *tracker.Brief) {
		reported++
		if b.Inode != 0 {
			if _, ok := e.ownerOf[b.Inode]; !ok {
				want = append(want, b.Inode)
			} else if at, missed := e.ownerMiss[b.Inode]; missed && !now.Before(at) {
				want = append(want, b.Inode)
			}
		}
	})
	e.resolveLocked(want)
	e.pruneOwnersLocked(reported)
}

// resolveLocked resolves the owners of inodes and caches them. Misses are
// cached for ownerRetry: a socket nobody holds (orphaned) must not cost a
// /proc walk at every scan, but an owner found later must not be missed.
func (e *Engine) resolveLocked(inodes []uint32) {
	if e.owners == nil || len(inodes) == 0 {
		return
	}
	found := e.owners.Lookup(inodes)
	retry := e.opts.Now().Add(ownerRetry)
	for _, ino := range inodes {
		ref := e.ownerRef(found[ino])
		e.ownerOf[ino] = ref
		if ref == 0 {
			e.ownerMiss[ino] = retry
		} else {
			delete(e.ownerMiss, ino)
		}
	}
}

// pruneOwnersLocked keeps the owner cache to the inodes still reported once
// it holds more than twice as many.
func (e *Engine) pruneOwnersLocked(reported int) {
	if len(e.ownerOf) <= 2*reported+1024 {
		return
	}
	old, oldTab, oldMiss := e.ownerOf, e.ownerTab, e.ownerMiss
	e.ownerOf, e.ownerTab, e.ownerIdx = make(map[uint32]uint32, reported), nil, make(map[inventory.Owner]uint32)
	e.ownerMiss = make(map[uint32]time.Time)
	e.eachBriefLocked(func(b *tracker.Brief) {
		if ref, ok := old[b.Inode]; ok {
			o := inventory.Owner{}
			if ref > 0 {
				o = oldTab[ref-1]
			}
			e.ownerOf[b.Inode] = e.ownerRef(o)
			if at, missed := oldMiss[b.Inode]; missed {
				e.ownerMiss[b.Inode] = at
			}
		}
	})
}

// ownerRef returns o's index in ownerTab plus one (0 for nobody), adding it.
func (e *Engine) ownerRef(o inventory.Owner) uint32 {
	if o == (inventory.Owner{}) {
		return 0
	}
	ref, ok := e.ownerIdx[o]
	if !ok {
		e.ownerTab = append(e.ownerTab, o)
		ref = uint32(len(e.ownerTab))
		e.ownerIdx[o] = ref
	}
	return ref
}

func (e *Engine) owner(inode uint32) inventory.Owner {
	if ref := e.ownerOf[inode]; ref > 0 {
		return e.ownerTab[ref-1]
	}
	return inventory.Owner{}
}

// ghost reports whether a probed socket with these reasons is a confirmed
// ghost, and for how long.
func (e *Engine) ghost(rs tracker.Reasons, v *verdictState, now time.Time) (bool, float64) {
	if !packedVerdicts[v.verdict].Ghost() || !v.confirmed || !rs.CanGhost() {
		return false, 0
	}
	if v.ghostSince == noStamp {
		return true, 0
	}
	return true, now.Sub(e.time(v.ghostSince)).Seconds()
}

// idleSeconds is the session's idle time: tcpi_last_data_recv, 0 without tcp_info.
func idleSeconds(infoValid bool, lastDataRecv uint32) float64 {
	if !infoValid {
		return 0
	}
	return float64(lastDataRecv) / 1000
}

func (e *Engine) session(ent *tracker.Entry, now time.Time) exporter.Session {
	sk := &ent.Socket
	k := sk.Key()
	o := e.owner(sk.Inode)
	s := exporter.Session{
		Netns:       e.names[sk.Netns].Name,
		NetnsInode:  sk.Netns,
		Family:      FamilyName(sk.Family),
		State:       sk.State.String(),
		Local:       FormatAddr(sk.Local),
		Remote:      FormatAddr(sk.Remote),
		Cookie:      sk.Cookie,
		Inode:       sk.Inode,
		UID:         sk.UID,
		PID:         o.PID,
		Comm:        o.Comm,
		Unit:        o.Unit,
		Container:   o.Container,
		IdleSeconds: idleSeconds(sk.Info.Valid(), sk.Info.LastDataRecv),
		Reasons:     ent.Reasons.Names(),
		Verdict:     string(probe.Unprobed),
		Killed:      e.killed[k],
	}
	e.kernelDeadline(&s, ent, now)
	if v, probed := unpackVerdict(ent.Tag); probed {
		r := v.result()
		s.Verdict = string(r.Verdict)
		s.ProbesSent = r.Sent
		s.Replies = r.Replies
		s.ProbeMode = string(r.Mode)
		s.HostReachable = r.HostReachable
		s.ClosedByProbe = r.ClosedLocal
		s.Unprobeable = r.Unprobeable
		s.NAT = r.NAT
		s.Uncertain = r.Uncertain
		if r.RTT > 0 {
			rtt := r.RTT.Seconds()
			s.RTTSeconds = &rtt
		}
		s.Ghost, s.GhostSeconds = e.ghost(ent.Reasons, &v, now)
	}
	return s
}

// kernelDeadline fills in when the socket's own kernel would notice a dead
// peer, counted from now: the tracker's deadline is from the observation.
func (e *Engine) kernelDeadline(s *exporter.Session, ent *tracker.Entry, now time.Time) {
	k := ent.Kernel
	observed := ent.LastSeen
	if k.Deadline.Basis == "" { // a socket the tracker does not remember (scan --all)
		k = e.tracker.KernelOf(&ent.Socket)
		observed = e.scanned
	}
	d := k.Deadline
	s.KernelDeadlineBasis = d.Basis
	if !d.Known() {
		return
	}
	s.KernelDeadlineLowerBound = d.LowerBound
	sec := max(observed.Add(d.In).Sub(now).Seconds(), 0)
	s.KernelDeadlineSeconds = &sec
}

// SetKeepalive passes a socket's own keepalive settings (read by the
// prober's BPF iterator) to the tracker: they replace the namespace's
// sysctl guess in the idle rule and the kernel deadline.
// It takes only the tracker's lock: the prober calls it while reading
// sequence numbers, which may happen under the engine's.
func (e *Engine) SetKeepalive(k inventory.Key, ka tracker.KeepaliveSettings) {
	e.tracker.SetKeepalive(k, ka)
}

// FamilyName returns "inet" or "inet6".
func FamilyName(f uint8) string {
	if f == inventory.FamilyInet6 {
		return "inet6"
	}
	return "inet"
}

// FormatAddr formats an address as net.JoinHostPort does ("[2001:db8::2]:443").
func FormatAddr(ap netip.AddrPort) string {
	return net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port())))
}
