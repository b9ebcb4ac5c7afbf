package engine

import (
	"cmp"
	"slices"
	"time"

	"github.com/ghostd/ghostd/internal/epoch"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

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
		class int8        // 0 ghost to re-confirm, 1 never probed, 2 alive past backoff
		at    epoch.Stamp // last probe
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
		d := due{class: 1, at: epoch.Zero, k: k}
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
	return now.Sub(e.epoch.Time(v.at)) >= wait
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
	t.RTO = RTO(sk)
	return t
}

// RTO is the socket's retransmission timeout before backoff, srtt + 4
// rttvar as tcp_info reports them (probe.Target.RTO), or 0 without tcp_info.
func RTO(sk *inventory.Socket) time.Duration {
	if !sk.Info.Valid() {
		return 0
	}
	return time.Duration(uint64(sk.Info.RTT)+4*uint64(sk.Info.RTTVar)) * time.Microsecond
}

// KernelEvidence reports whether the socket's own kernel already probed the
// peer in-window without an answer: a retransmit timer that has backed off at
// least twice, or tracker.KeepaliveUnanswered keepalive probes unanswered.
// One keepalive probe out is no evidence: a dump often catches one whose ACK
// is on its way, and keepalive-on sockets are idle suspects (probed, blind
// ones too) while their kernel is slower than ghostd. Nor is tcpi_backoff
// alone unless the peer's window is known to be open: the kernel backs off
// without counting retransmits while it probes a receiver that shut its
// window under the retransmit timer, and that receiver is alive.
func KernelEvidence(sk *inventory.Socket) bool {
	switch sk.Timer {
	case inventory.TimerRetransmit:
		if sk.Retrans >= 2 {
			return true
		}
		if !sk.Info.Valid() || sk.Info.Backoff < 2 {
			return false
		}
		w, ok := sk.Info.SndWnd()
		return ok && w > 0
	case inventory.TimerKeepalive:
		return sk.Retrans >= tracker.KeepaliveUnanswered
	}
	return false
}
