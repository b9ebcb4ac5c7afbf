package engine

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// eventState is what the engine keeps to turn its transitions into events
// (docs/design.md, "Events"). It costs nothing per suspect: new suspects
// are told by the tracker's SuspectSince, vanishing ones by its misses.
type eventState struct {
	sink events.Sink // nil: no events
	// passed is when the last scan's pass ran: a suspect whose
	// SuspectSince is after it became one since.
	passed time.Time
	// vanishing holds the gone events of suspects that a complete dump
	// missed once, built while the tracker still remembers them: emitted
	// once the tracker forgets them (a second miss), dropped if they are
	// seen again (dumps are not snapshots).
	vanishing map[inventory.Key]events.Event
	// refused is the last refusal recorded for a kill candidate, so that a
	// refusal repeated at every publish is recorded once.
	refused map[inventory.Key]string
	// fresh holds the sockets the last scans found newly suspect, in key
	// order, until their owners are looked up (emitSuspects, Snapshot);
	// freshAt is when the scan that found them ended.
	fresh   []inventory.Key
	freshAt time.Time
}

// SetEvents sets where the engine reports what happens to suspects: a
// socket becoming one, a ghost confirmed, a ghost alive again, a kill
// (NoteKill), a suspect gone. nil turns events off.
func (e *Engine) SetEvents(s events.Sink) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev = eventState{sink: s, vanishing: map[inventory.Key]events.Event{}, refused: map[inventory.Key]string{}}
}

// eventOf turns a session into an event of kind.
func eventOf(kind events.Kind, s *exporter.Session, at time.Time) events.Event {
	ev := events.Event{
		Time: at, Kind: kind,
		Netns: s.Netns, NetnsInode: s.NetnsInode, Family: s.Family, Local: s.Local, Remote: s.Remote,
		State: s.State, Cookie: s.Cookie, Inode: s.Inode,
		PID: s.PID, Comm: s.Comm, Unit: s.Unit, Pod: s.PodName(), Container: cmp.Or(s.ContainerName, s.Container),
		Reasons: slices.Clone(s.Reasons), Verdict: s.Verdict, Attempts: s.ProbesSent, Replies: s.Replies,
		IdleSeconds: s.IdleSeconds, Uncertain: s.Uncertain, NAT: s.NAT,
	}
	if s.RTTSeconds != nil {
		v := *s.RTTSeconds
		ev.RTTSeconds = &v
	}
	return ev
}

// eventLocked builds the event of kind for a tracked socket.
func (e *Engine) eventLocked(kind events.Kind, ent *tracker.Entry, now time.Time) events.Event {
	s := e.session(ent, now)
	return eventOf(kind, &s, now)
}

// scanEventsLocked runs after a scan: it notes the sockets that became
// suspects since the last one (their events wait for their owners:
// emitSuspects), and records the suspects the tracker has forgotten since
// (their gone events were built at their first miss).
func (e *Engine) scanEventsLocked(now time.Time) {
	ev := &e.ev
	if ev.sink == nil {
		return
	}
	var forgotten []inventory.Key
	for k := range ev.vanishing {
		ent, ok := e.tracker.Get(k)
		switch {
		case !ok:
			forgotten = append(forgotten, k)
		case ent.Misses == 0 || ent.Reasons.Empty():
			delete(ev.vanishing, k) // seen again
		}
	}
	slices.SortFunc(forgotten, compareKeys) // in key order, as every other batch of events
	for _, k := range forgotten {
		e.flushSuspectsLocked()
		gone := ev.vanishing[k]
		gone.Time = now
		ev.sink.Emit(gone)
		delete(ev.vanishing, k)
	}
	for k := range ev.refused {
		if _, ok := e.tracker.Reasons(k); !ok {
			delete(ev.refused, k)
		}
	}
	var fresh, missed []inventory.Key
	e.tracker.EachSuspectBrief(func(b *tracker.Brief) {
		if b.SuspectSince.After(ev.passed) {
			fresh = append(fresh, b.Key)
		}
		if b.Misses > 0 {
			if _, ok := ev.vanishing[b.Key]; !ok {
				missed = append(missed, b.Key)
			}
		}
	})
	ev.passed = now
	for _, k := range missed {
		if ent, ok := e.tracker.Get(k); ok {
			ev.vanishing[k] = e.eventLocked(events.Gone, &ent, now)
		}
	}
	if len(fresh) > 0 {
		slices.SortFunc(fresh, compareKeys)
		e.flushSuspectsLocked() // an older scan's, not yet emitted
		ev.fresh, ev.freshAt = fresh, now
	}
}

// emitSuspects looks up the owners of the sockets the last scan found newly
// suspect (the walk over /proc runs without the engine's lock) and records
// their suspect events, owners included. The pipeline calls it right after
// a scan, before any of them is probed.
func (e *Engine) emitSuspects() {
	e.mu.Lock()
	pending := e.ev.sink != nil && len(e.ev.fresh) > 0
	e.mu.Unlock()
	if !pending {
		return
	}
	e.resolveOwners(false)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.flushSuspectsLocked()
}

// flushSuspectsLocked records the pending suspect events, with the owners
// known by now. Every other event calls it first, so a socket's suspect
// event always comes before the rest of its history.
func (e *Engine) flushSuspectsLocked() {
	ev := &e.ev
	if ev.sink == nil || len(ev.fresh) == 0 {
		return
	}
	fresh := ev.fresh
	ev.fresh = nil
	// A first scan of a host of idle pools has 100 000s: one entry at a
	// time, never all of them at once, and only those the sink keeps
	// (a ring keeps the last 10 000) when it can say so.
	b, ok := ev.sink.(events.BatchSink)
	if !ok {
		for _, k := range fresh {
			if ent, ok := e.tracker.Get(k); ok {
				ev.sink.Emit(e.eventLocked(events.Suspect, &ent, ev.freshAt))
			}
		}
		return
	}
	// The sockets still tracked, so that the events a batch numbers
	// without building are those that would have been built.
	present := fresh[:0]
	for _, k := range fresh {
		if _, ok := e.tracker.Reasons(k); ok {
			present = append(present, k)
		}
	}
	b.EmitBatch(len(present), events.Suspect, func(i int) (events.Event, bool) {
		ent, ok := e.tracker.Get(present[i])
		if !ok {
			return events.Event{}, false
		}
		return e.eventLocked(events.Suspect, &ent, ev.freshAt), true
	})
}

// namespacesGoneLocked records a gone event for every suspect of the
// namespaces that left the scan (seen has the ones still there), before
// the tracker forgets them.
func (e *Engine) namespacesGoneLocked(seen map[uint64]bool, now time.Time) {
	ev := &e.ev
	if ev.sink == nil {
		return
	}
	gone := map[uint64]bool{}
	for ino := range e.names {
		if !seen[ino] {
			gone[ino] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	e.flushSuspectsLocked()
	var keys []inventory.Key
	e.tracker.EachSuspectBrief(func(b *tracker.Brief) {
		if gone[b.Key.Netns] {
			keys = append(keys, b.Key)
		}
	})
	slices.SortFunc(keys, compareKeys)
	for _, k := range keys {
		delete(ev.vanishing, k)
		if ent, ok := e.tracker.Get(k); ok {
			ev.sink.Emit(e.eventLocked(events.Gone, &ent, now))
		}
	}
}

// verdictEventLocked runs after Record stored v for k (prev is the verdict
// before, if probed): a socket that just became a confirmed ghost is a
// ghost event; one alive after a ghost's verdict (confirmed or not) is an
// alive event.
func (e *Engine) verdictEventLocked(k inventory.Key, prev *verdictState, probed bool, v *verdictState, now time.Time) {
	if e.ev.sink == nil {
		return
	}
	wasGhost := probed && packedVerdicts[prev.verdict].Ghost() && prev.confirmed
	isGhost := packedVerdicts[v.verdict].Ghost() && v.confirmed
	var kind events.Kind
	switch {
	case isGhost && !wasGhost:
		kind = events.Ghost
	case packedVerdicts[v.verdict] == probe.Alive && probed && packedVerdicts[prev.verdict].Ghost():
		kind = events.Alive
	default:
		return
	}
	ent, ok := e.tracker.Get(k)
	if !ok {
		return
	}
	if kind == events.Ghost {
		if g, _ := e.ghost(ent.Reasons, v, ent.LastAck(), now); !g {
			return // a zero window is never a ghost
		}
	}
	e.flushSuspectsLocked()
	e.ev.sink.Emit(e.eventLocked(kind, &ent, now))
}

// quietRefusals are the kill policy's refusals that say it does not apply
// to a socket rather than that it refused one it applies to: never events.
var quietRefusals = []string{"kill disabled", "canceled", "close_wait leaks not enabled"}

// NoteKill records the kill policy's outcome for the socket k (verdict
// as last confirmed, mode as applied) as a killed event: result ok, error
// with the error, or refused with why (skipped). Call it before MarkKilled.
// A refusal is recorded once per socket until its reason changes;
// refusals that only say the policy does not cover the socket are not
// recorded.
func (e *Engine) NoteKill(k inventory.Key, verdict, mode string, err error, skipped string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := &e.ev
	if ev.sink == nil {
		return
	}
	now := e.opts.Now()
	var s exporter.Session
	if ent, ok := e.tracker.Get(k); ok {
		s = e.session(&ent, now)
	} else if g, ok := e.gone[k]; ok {
		s = g.session
	} else {
		return // neither tracked nor killed: nothing to tell
	}
	out := eventOf(events.Killed, &s, now)
	out.Verdict, out.Mode = verdict, mode
	switch {
	case skipped != "":
		if slices.Contains(quietRefusals, skipped) {
			return
		}
		// "younger than min age (4m3s < 5m)": the part before the
		// parenthesis says why; the numbers change at every publish.
		why, _, _ := strings.Cut(skipped, " (")
		if ev.refused[k] == why {
			return
		}
		ev.refused[k] = why
		out.Result, out.Detail = events.ResultRefused, skipped
	case err != nil:
		delete(ev.refused, k)
		out.Result, out.Detail = events.ResultError, err.Error()
	default:
		delete(ev.refused, k)
		out.Result = events.ResultOK
	}
	e.flushSuspectsLocked()
	ev.sink.Emit(out)
}

// ownerName is the owner a socket's sessions are grouped under
// (exporter.OwnerOf): its pod (the namespace's, else the owner's), else its
// unit, else its process name.
func (e *Engine) ownerName(netns uint64, inode uint32) string {
	o := e.owner(inode)
	pod := exporter.PodName(cmp.Or(e.names[netns].PodNamespace, o.PodNamespace), cmp.Or(e.names[netns].PodName, o.PodName))
	return events.Owner(pod, o.Unit, o.Comm)
}
