package engine

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
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
	Resolve(inodes []uint32) map[uint32]inventory.Owner
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

// verdictState is what the engine remembers of a socket's last probe.
type verdictState struct {
	result     probe.Result
	at         time.Time // when the probe finished
	ghostSince time.Time // zero unless a confirmed ghost
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

	mu       sync.Mutex
	tracker  *tracker.Tracker
	verdicts map[inventory.Key]verdictState
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
	owners_ map[uint32]inventory.Owner
}

// New returns an engine. prober may be nil (probing off); owners may be nil.
func New(inv Inventory, prober Prober, owners Owners, opts Options) *Engine {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Engine{
		inv: inv, prober: prober, owners: owners, opts: opts,
		tracker:  tracker.New(opts.Tracker),
		verdicts: make(map[inventory.Key]verdictState),
		killed:   make(map[inventory.Key]bool),
		gone:     make(map[inventory.Key]goneSession),
		names:    make(map[uint64]inventory.Namespace),
		counts:   make(map[uint64]*stateCounts),
		owners_:  make(map[uint32]inventory.Owner),
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

// Scan runs one inventory pass over every selected namespace and updates the
// tracker. It does not probe.
func (e *Engine) Scan(ctx context.Context) []inventory.NamespaceResult {
	start := e.opts.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.counts)
	var cur *stateCounts
	curNetns := uint64(0)
	e.all = e.all[:0]
	results := e.inv.Scan(ctx, inventory.AllStates, func(ns *inventory.Namespace, sk *inventory.Socket) error {
		if cur == nil || sk.Netns != curNetns {
			if cur = e.counts[sk.Netns]; cur == nil {
				cur = new(stateCounts)
				e.counts[sk.Netns] = cur
			}
			curNetns = sk.Netns
		}
		fam := 0
		if sk.Family == inventory.FamilyInet6 {
			fam = 1
		}
		cur[fam][sk.State&15]++
		// The time of this socket's dump: tcp_info's "ms ago" fields are
		// relative to it, and a dump of many namespaces takes a while.
		e.tracker.Observe(e.opts.Now(), sk)
		if e.opts.All {
			e.all = append(e.all, *sk)
		}
		return nil
	})
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
	for ino := range e.names {
		if !seen[ino] {
			e.tracker.DropNamespace(ino)
			delete(e.names, ino)
		}
	}
	// Forget verdicts of sockets the tracker no longer holds.
	for k := range e.verdicts {
		if rs, ok := e.tracker.Reasons(k); !ok || !rs.Probeable() {
			delete(e.verdicts, k)
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
	return results
}

// Targets returns the suspects that are due for a probe: never probed, alive
// and past the backoff, or a ghost due for re-confirmation. Only sockets of
// the latest inventory are ever returned.
func (e *Engine) Targets() []probe.Target {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	var out []probe.Target
	e.tracker.EachSuspect(func(ent *tracker.Entry) {
		if !ent.Reasons.Probeable() || ent.Reasons.Has(tracker.ReasonZeroWindow) {
			return
		}
		if !e.dueLocked(ent.Socket.Key(), now) {
			return
		}
		out = append(out, e.target(&ent.Socket))
	})
	// Probe in a stable order: by namespace, then cookie (oldest sockets first).
	slices.SortFunc(out, func(a, b probe.Target) int {
		if a.NetnsInode != b.NetnsInode {
			return cmp.Compare(a.NetnsInode, b.NetnsInode)
		}
		return cmp.Compare(a.Cookie, b.Cookie)
	})
	return out
}

// dueLocked reports whether a suspect may be probed now: never killed, and
// never probed, or alive past the backoff, or a ghost past Reconfirm.
func (e *Engine) dueLocked(k inventory.Key, now time.Time) bool {
	if e.killed[k] {
		return false
	}
	v, ok := e.verdicts[k]
	if !ok {
		return true
	}
	wait := e.opts.Backoff
	if v.result.Verdict.Ghost() {
		wait = e.opts.Reconfirm
	}
	return now.Sub(v.at) >= wait
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

func (e *Engine) target(sk *inventory.Socket) probe.Target {
	ns := e.names[sk.Netns]
	return probe.Target{
		NetnsInode:     sk.Netns,
		NetnsPath:      ns.Path,
		Cookie:         sk.Cookie,
		Family:         sk.Family,
		Local:          sk.Local,
		Remote:         sk.Remote,
		KernelEvidence: KernelEvidence(sk),
	}
}

// KernelEvidence reports whether the socket's own kernel already probed the
// peer in-window without an answer: a retransmit timer that has backed off at
// least twice, or keepalive probes that went unanswered.
func KernelEvidence(sk *inventory.Socket) bool {
	switch sk.Timer {
	case inventory.TimerRetransmit:
		return sk.Retrans >= 2 || (sk.Info.Valid() && sk.Info.Backoff >= 2)
	case inventory.TimerKeepalive:
		return sk.Retrans > 0
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
		r := e.prober.ProbeAll(ctx, chunk)
		e.Record(chunk, r)
		results = append(results, r...)
	}
	return results
}

// ProbeChunk is how many targets are handed to the prober at once: about
// 2.5 s of work at the default 200 probes/s.
const ProbeChunk = 512

// Record stores probe results for their targets.
func (e *Engine) Record(targets []probe.Target, results []probe.Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	for i, r := range results {
		if i >= len(targets) || r.Verdict == probe.Unprobed || r.Verdict == "" {
			continue
		}
		k := inventory.Key{Netns: targets[i].NetnsInode, Cookie: targets[i].Cookie}
		if _, ok := e.tracker.Reasons(k); !ok {
			continue // gone while it was being probed
		}
		prev := e.verdicts[k]
		v := verdictState{result: r, at: now}
		if r.Verdict.Ghost() && r.Confirmed {
			v.ghostSince = prev.ghostSince
			if v.ghostSince.IsZero() {
				v.ghostSince = now
			}
		}
		e.verdicts[k] = v
	}
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
	s, _ := e.session(&ent, e.opts.Now())
	s.Killed, s.Ghost, s.GhostSeconds = true, false, 0
	s.State = inventory.StateClose.String() // where SOCK_DESTROY or the kernel's reaping leaves it
	e.gone[k] = goneSession{session: s, at: e.opts.Now()}
}

// Snapshot builds the exporter snapshot from the last scan and the verdicts
// recorded since, resolving owners for the sessions it reports. It also
// returns the kill candidates: confirmed ghosts and CLOSE_WAIT leaks.
func (e *Engine) Snapshot() (*exporter.Snapshot, []exporter.Candidate) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()

	// The entries to report, every suspect or with All every socket, in
	// (netns, cookie) order. Suspects are the tracker's own entries, not
	// copies: nothing changes the tracker while e.mu is held.
	var ents []*tracker.Entry
	if e.opts.All {
		ents = make([]*tracker.Entry, 0, len(e.all))
		for i := range e.all {
			ent, ok := e.tracker.Get(e.all[i].Key())
			if !ok {
				ent = tracker.Entry{Socket: e.all[i]}
			}
			ents = append(ents, &ent)
		}
	} else {
		e.tracker.EachSuspect(func(ent *tracker.Entry) { ents = append(ents, ent) })
	}
	slices.SortFunc(ents, func(a, b *tracker.Entry) int {
		if c := cmp.Compare(a.Socket.Netns, b.Socket.Netns); c != 0 {
			return c
		}
		return cmp.Compare(a.Socket.Cookie, b.Socket.Cookie)
	})
	e.resolveOwners(ents)
	snap := &exporter.Snapshot{
		Doc:          exporter.Document{ScannedAt: e.scanned.UTC(), Namespaces: []exporter.NamespaceStatus{}, Sessions: make([]exporter.Session, 0, len(ents)+len(e.gone))},
		ScanDuration: e.scanDur,
		ProbeMode:    e.probeMode(),
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

	var cands []exporter.Candidate
	for _, ent := range ents {
		s, v := e.session(ent, now)
		snap.Doc.Sessions = append(snap.Doc.Sessions, s)
		if s.Killed {
			continue
		}
		switch {
		case s.Ghost:
			cands = append(cands, exporter.Candidate{
				Session: s, Socket: ent.Socket, Reasons: ent.Reasons,
				Verdict: v.result.Verdict, Confirmed: v.result.Confirmed, GhostSince: v.ghostSince, PID: s.PID,
			})
		case ent.Reasons.Has(tracker.ReasonCloseWait):
			// A leak's age is how long it has been in CLOSE_WAIT.
			cands = append(cands, exporter.Candidate{
				Session: s, Socket: ent.Socket, Reasons: ent.Reasons,
				Verdict: probe.Verdict(s.Verdict), GhostSince: ent.StateSince, PID: s.PID,
			})
		}
	}
	// Then the killed sessions whose sockets are gone, oldest kill first.
	var gone []goneSession
	for k, g := range e.gone {
		if _, ok := e.tracker.Reasons(k); !ok {
			gone = append(gone, g)
		}
	}
	slices.SortFunc(gone, func(a, b goneSession) int { return a.at.Compare(b.at) })
	for _, g := range gone {
		snap.Doc.Sessions = append(snap.Doc.Sessions, g.session)
	}
	return snap, cands
}

// probeMode is "off" without a prober, else the prober's mode.
func (e *Engine) probeMode() string {
	if e.prober == nil {
		return "off"
	}
	m, _ := e.prober.Mode()
	return string(m)
}

func (e *Engine) resolveOwners(ents []*tracker.Entry) {
	if e.owners == nil {
		return
	}
	var want []uint32
	for _, ent := range ents {
		if ino := ent.Socket.Inode; ino != 0 {
			if _, ok := e.owners_[ino]; !ok {
				want = append(want, ino)
			}
		}
	}
	if len(want) > 0 {
		found := e.owners.Resolve(want)
		for _, ino := range want {
			// Cache misses too: a socket nobody holds (orphaned) must not
			// cost a /proc walk at every scan.
			e.owners_[ino] = found[ino]
		}
	}
	// Keep the cache to the inodes still reported.
	if len(e.owners_) > 2*len(ents)+1024 {
		keep := make(map[uint32]inventory.Owner, len(ents))
		for _, ent := range ents {
			if o, ok := e.owners_[ent.Socket.Inode]; ok {
				keep[ent.Socket.Inode] = o
			}
		}
		e.owners_ = keep
	}
}

func (e *Engine) session(ent *tracker.Entry, now time.Time) (exporter.Session, verdictState) {
	sk := &ent.Socket
	k := sk.Key()
	v, probed := e.verdicts[k]
	o := e.owners_[sk.Inode]
	s := exporter.Session{
		Netns:      e.names[sk.Netns].Name,
		NetnsInode: sk.Netns,
		Family:     FamilyName(sk.Family),
		State:      sk.State.String(),
		Local:      FormatAddr(sk.Local),
		Remote:     FormatAddr(sk.Remote),
		Cookie:     sk.Cookie,
		Inode:      sk.Inode,
		UID:        sk.UID,
		PID:        o.PID,
		Comm:       o.Comm,
		Unit:       o.Unit,
		Container:  o.Container,
		Reasons:    ent.Reasons.Names(),
		Verdict:    string(probe.Unprobed),
		Killed:     e.killed[k],
	}
	if sk.Info.Valid() {
		s.IdleSeconds = float64(sk.Info.LastDataRecv) / 1000
	}
	if probed {
		r := v.result
		s.Verdict = string(r.Verdict)
		s.ProbesSent = r.Sent
		s.Replies = r.Replies
		s.ProbeMode = string(r.Mode)
		s.HostReachable = r.HostReachable
		s.ClosedByProbe = r.ClosedLocal
		if r.RTT > 0 {
			rtt := r.RTT.Seconds()
			s.RTTSeconds = &rtt
		}
		s.Ghost = r.Verdict.Ghost() && r.Confirmed && !ent.Reasons.Has(tracker.ReasonZeroWindow)
		if s.Ghost && !v.ghostSince.IsZero() {
			s.GhostSeconds = now.Sub(v.ghostSince).Seconds()
		}
	}
	return s, v
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
