package engine

import (
	"github.com/ghostd/ghostd/internal/epoch"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
)

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
		// One lookup serves the verdict and the path table: at 200 000
		// suspects each lookup is a cache miss.
		ent, ok := e.tracker.Get(k)
		if !ok {
			continue // gone while it was being probed
		}
		prev, probed := unpackVerdict(ent.Tag)
		wasGhost := probed && packedVerdicts[prev.verdict].Ghost() && prev.confirmed
		ghost := r.Verdict.Ghost() && r.Confirmed
		ghostSince := epoch.Zero
		if ghost {
			ghostSince = e.epoch.Stamp(now)
			// A ghost keeps its first confirmation, unless the socket took
			// an ACK since (a late answer, see ghost): then it starts
			// again, so a peer that answered late and died later is a
			// ghost again.
			if wasGhost && prev.ghostSince != epoch.Zero && !ent.LastAck().After(e.epoch.Time(prev.ghostSince)) {
				ghostSince = prev.ghostSince
			}
		}
		v := packResult(r, e.epoch.Stamp(now), ghostSince)
		if ghost != wasGhost || (ghost && v.verdict != prev.verdict) {
			e.ghostChanges++
		}
		e.tracker.SetTag(k, packVerdict(&v))
		e.recordPathLocked(&ent, r, wasGhost, now)
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
