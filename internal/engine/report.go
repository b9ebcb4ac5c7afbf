package engine

import (
	"cmp"
	"slices"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// Snapshot builds the exporter snapshot of the last scan: the namespaces,
// socket and session counts, and the engine itself as the source of the
// sessions, built when a view asks (the verdicts recorded by then included).
// It resolves the owners of new suspects, and returns the kill candidates:
// confirmed ghosts and CLOSE_WAIT leaks.
func (e *Engine) Snapshot() (*exporter.Snapshot, []Candidate) {
	e.resolveOwners(false)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.flushSuspectsLocked()
	now := e.opts.Now()
	snap := e.frameLocked()
	snap.Source = e
	var (
		tally exporter.Tally
		t     exporter.Tallied
		cands []inventory.Key // ghosts and CLOSE_WAIT leaks, not killed
	)
	e.eachBriefLocked(func(b *tracker.Brief) {
		t = exporter.Tallied{
			Netns: e.names[b.Key.Netns].Name, Family: FamilyName(b.Family),
			Verdict: string(probe.Unprobed), Reasons: b.Reasons, Killed: e.killed[b.Key],
		}
		if v, probed := unpackVerdict(b.Tag); probed {
			t.Verdict = string(packedVerdicts[v.verdict])
			t.Ghost, t.GhostSeconds = e.ghost(b.Reasons, &v, b.LastAck, now)
		}
		if t.Ghost {
			t.Owner = e.ownerName(b.Key.Netns, b.Inode)
		}
		tally.Add(&t)
		if !t.Killed && (t.Ghost || b.Reasons.Has(tracker.ReasonCloseWait)) {
			cands = append(cands, b.Key)
		}
	})
	slices.SortFunc(cands, compareKeys)
	var out []Candidate
	for _, k := range cands {
		ent, ok := e.tracker.Get(k)
		if !ok {
			continue
		}
		s := e.session(&ent, now)
		// The verdict from the tracker's tag, not parsed back from the session's text.
		v, probed := unpackVerdict(ent.Tag)
		verdict := probe.Unprobed
		if probed {
			verdict = packedVerdicts[v.verdict]
		}
		c := Candidate{Socket: ent.Socket, Netns: s.Netns, PID: s.PID, Comm: s.Comm, Unit: s.Unit, Reasons: ent.Reasons, Verdict: verdict,
			ProbesSent: s.ProbesSent, Replies: s.Replies, IdleSeconds: s.IdleSeconds}
		c.Container, c.InContainer = s.ContainerName, s.Container != ""
		c.Pod = s.PodName()
		if s.Ghost {
			c.Confirmed, c.GhostSince = v.confirmed, e.epoch.Time(v.ghostSince)
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

// sessionBatch is how many sessions EachSession builds under one hold of
// the engine's lock.
const sessionBatch = 512

// EachSession calls fn with every session in (netns inode, cookie) order,
// then the killed sessions whose socket is gone, oldest kill first, a batch
// at a time, until fn returns false. The lock is held while a batch is
// built, never while fn runs, so a slow HTTP client cannot hold up scans; a
// socket that leaves the tracker between batches is skipped.
func (e *Engine) EachSession(fn func([]exporter.Session) bool) {
	e.eachSession(time.Time{}, fn)
}

// EachSessionAt is EachSession as of one moment: the time-relative fields
// of every session (kernel deadline, ghost age) count from at, so that a
// listing made in two passes (a table's column widths, then its rows) sees
// the same sessions both times.
func (e *Engine) EachSessionAt(at time.Time, fn func([]exporter.Session) bool) {
	e.eachSession(at, fn)
}

// eachSession is EachSession at a fixed time, or with the clock's time at
// each batch when at is zero. With Options.All it lists the last scan's
// table in its own (key) order, which needs no keys gathered, sorted and
// looked up again; otherwise the suspects' keys, sorted.
func (e *Engine) eachSession(at time.Time, fn func([]exporter.Session) bool) {
	e.mu.Lock()
	all, tab, scanned := e.opts.All, e.all, e.scanned
	var keys []inventory.Key
	if !all {
		e.tracker.EachSuspectBrief(func(b *tracker.Brief) { keys = append(keys, b.Key) })
	}
	gone := e.goneKeysLocked()
	e.mu.Unlock()
	// Sorting 200 000 keys takes tens of milliseconds: never under the
	// lock that scans and probes need.
	slices.SortFunc(keys, compareKeys)
	batch := make([]exporter.Session, 0, sessionBatch)
	// emit builds the sessions 0..n-1 a batch at a time, under the lock,
	// each in its slot of the batch (build says whether there is one), and
	// hands each batch to fn; false when fn asked to stop.
	emit := func(n int, build func(i int, now time.Time, s *exporter.Session) bool) bool {
		for start := 0; start < n; start += sessionBatch {
			batch = batch[:0]
			e.mu.Lock()
			now := at
			if now.IsZero() {
				now = e.opts.Now()
			}
			for i := start; i < min(n, start+sessionBatch); i++ {
				batch = batch[:len(batch)+1] // within its capacity, sessionBatch
				if !build(i, now, &batch[len(batch)-1]) {
					batch = batch[:len(batch)-1]
				}
			}
			e.mu.Unlock()
			if len(batch) > 0 && !fn(batch) {
				return false
			}
		}
		return true
	}
	if all {
		// The table is the scan's own: a later scan replaces it, never
		// changes it.
		if !emit(tab.len(), func(i int, now time.Time, s *exporter.Session) bool {
			e.listedSessionLocked(s, tab.at(i), scanned, now)
			return true
		}) {
			return
		}
	} else if !emit(len(keys), func(i int, now time.Time, s *exporter.Session) (ok bool) {
		*s, ok = e.sessionByKeyLocked(keys[i], false, now)
		return ok
	}) {
		return
	}
	emit(len(gone), func(i int, now time.Time, s *exporter.Session) (ok bool) {
		*s, ok = e.sessionByKeyLocked(gone[i], all, now)
		return ok
	})
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
			r.ghost, r.ghostS = e.ghost(b.Reasons, &v, b.LastAck, now)
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
			Kind: string(st.ns.Kind), Duration: st.dur, Source: st.source,
			Pod: st.ns.PodName, K8sNamespace: st.ns.PodNamespace,
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
// with Options.All every socket of the last scan. The Brief is valid only
// until fn returns.
func (e *Engine) eachBriefLocked(fn func(*tracker.Brief)) {
	if !e.opts.All {
		e.tracker.EachSuspectBrief(fn)
		return
	}
	var b tracker.Brief // reused, as EachSuspectBrief's: one allocation, not one per socket
	for i := range e.all.len() {
		l := e.all.at(i)
		b = tracker.Brief{Key: l.key(), Family: l.family, Inode: l.inode, LastDataRecv: l.lastDataRecv, InfoValid: l.flags&listedInfoValid != 0}
		if tb, ok := e.tracker.BriefOf(b.Key); ok {
			// What the tracker keeps (the verdict in Tag above all), or
			// a listing counts no ghost and offers no kill candidate.
			b.Reasons, b.Tag, b.SuspectSince, b.Misses, b.LastAck = tb.Reasons, tb.Tag, tb.SuspectSince, tb.Misses, tb.LastAck
		}
		fn(&b)
	}
}

// goneKeysLocked returns the keys of the killed sessions whose sockets are
// gone, in EachSession's order.
func (e *Engine) goneKeysLocked() []inventory.Key {
	var gone []inventory.Key
	for _, g := range e.goneLocked() {
		gone = append(gone, inventory.Key{Netns: g.NetnsInode, Cookie: g.Cookie})
	}
	return gone
}

// listedSessionLocked sets *s to the session of a socket of a scan's table
// (Options.All) taken at scanned: the tracker's, or the killed one's, when
// they know its key.
func (e *Engine) listedSessionLocked(s *exporter.Session, l *listedSocket, scanned, now time.Time) {
	k := l.key()
	// Most listed sockets are healthy ones the tracker does not remember:
	// asking whether it does costs no copy of an Entry (~300 bytes).
	if _, tracked := e.tracker.Reasons(k); tracked {
		if ent, ok := e.tracker.Get(k); ok {
			e.fillSession(s, &ent, now)
			return
		}
	}
	if len(e.gone) > 0 { // hashing a key costs even an empty map
		if g, ok := e.gone[k]; ok {
			*s = g.session
			return
		}
	}
	ent := l.entry(scanned)
	// A socket that is no suspect is named only on request (Processes):
	// its owner was not looked up.
	var o inventory.Owner
	if e.opts.Processes {
		o = e.owner(l.inode)
	}
	e.fillSessionOf(s, &ent, o, now)
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
		if l, ok := e.all.find(k); ok {
			ent := l.entry(e.scanned)
			return e.session(&ent, now), true
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

// idleSeconds is the session's idle time: tcpi_last_data_recv, 0 without tcp_info.
func idleSeconds(infoValid bool, lastDataRecv uint32) float64 {
	if !infoValid {
		return 0
	}
	return float64(lastDataRecv) / 1000
}

func (e *Engine) session(ent *tracker.Entry, now time.Time) exporter.Session {
	var s exporter.Session
	e.fillSession(&s, ent, now)
	return s
}

// fillSession sets *s, whatever it held, to the session of ent: a listing
// builds each session in its batch's own slot rather than copying it there.
func (e *Engine) fillSession(s *exporter.Session, ent *tracker.Entry, now time.Time) {
	e.fillSessionOf(s, ent, e.owner(ent.Socket.Inode), now)
}

// fillSessionOf is fillSession with the socket's owner, o.
func (e *Engine) fillSessionOf(s *exporter.Session, ent *tracker.Entry, o inventory.Owner, now time.Time) {
	sk := &ent.Socket
	k := sk.Key()
	nm := e.names[sk.Netns]
	*s = exporter.Session{
		Netns:       nm.Name,
		NetnsInode:  sk.Netns,
		Family:      FamilyName(sk.Family),
		State:       sk.State.String(),
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
	s.Local, s.Remote = formatAddrs(sk.Local, sk.Remote)
	// The runtime's names; the pod is the namespace's, else (a hostNetwork
	// pod) the owner's.
	s.ContainerName = o.ContainerName
	s.Pod = cmp.Or(nm.PodName, o.PodName)
	s.K8sNamespace = cmp.Or(nm.PodNamespace, o.PodNamespace)
	e.kernelDeadline(s, ent, now)
	if v, probed := unpackVerdict(ent.Tag); probed {
		r := v.result()
		s.Verdict = string(r.Verdict)
		s.ProbesSent = r.Sent
		s.Replies = r.Replies
		s.ProbeMode = string(r.Mode)
		s.HostReachable = r.HostReachable
		s.HostHint = r.HostHint
		s.ClosedByProbe = r.ClosedLocal
		s.Guarded = r.Guarded
		s.Unprobeable = r.Unprobeable
		s.NAT = r.NAT
		s.Uncertain = r.Uncertain
		if r.RTT > 0 {
			rtt := r.RTT.Seconds()
			s.RTTSeconds = &rtt
		}
		s.Ghost, s.GhostSeconds = e.ghost(ent.Reasons, &v, ent.LastAck(), now)
	}
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
