package exporter

import (
	"cmp"
	"math/bits"
	"slices"

	"github.com/ghostd/ghostd/tracker"
)

// SessionSource builds sessions on request. A host full of idle connection
// pools has hundreds of thousands of suspects; a snapshot that held a
// Session for each would cost ~400 bytes per suspect at every scan, so the
// daemon's snapshot carries counts and lets the views build the sessions
// they show. Sessions built on request carry the verdicts known at that
// moment, which may be newer than the snapshot's counts.
type SessionSource interface {
	// EachSession calls fn with every session in (netns inode, cookie)
	// order, a batch at a time, until fn returns false. fn may keep nothing
	// past its return: the batch is reused.
	EachSession(fn func([]Session) bool)
	// TopSessions returns up to n sessions in TopOrder.
	TopSessions(n int) []Session
}

// TopOrder orders sessions for people: ghosts first, the longest-lived on
// top, then the others by idle time, longest first.
func TopOrder(aGhost bool, aGhostSeconds, aIdle float64, bGhost bool, bGhostSeconds, bIdle float64) int {
	if aGhost != bGhost {
		if aGhost {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(bGhostSeconds, aGhostSeconds); c != 0 {
		return c
	}
	return cmp.Compare(bIdle, aIdle)
}

// SessionSummary counts one namespace's sessions.
type SessionSummary struct {
	Netns string
	// Sessions is how many sessions the namespace lists, killed ones included.
	Sessions int
	// Ghosts counts confirmed ghosts by family and verdict.
	Ghosts map[GhostKind]int
	// Suspects counts the sessions not yet killed by reason; a session with
	// two reasons counts under both.
	Suspects map[tracker.Reason]int
	// OldestGhostSeconds is how long the oldest ghost has been one (0: none).
	OldestGhostSeconds float64
}

// GhostKind is a ghost's family ("inet", "inet6") and verdict.
type GhostKind struct{ Family, Verdict string }

// GhostCount is the number of ghosts of all kinds.
func (s *SessionSummary) GhostCount() int {
	n := 0
	for _, v := range s.Ghosts {
		n += v
	}
	return n
}

// Tallied is what a Tally needs to know of one session.
type Tallied struct {
	Netns, Family, Verdict string
	Reasons                tracker.Reasons
	Ghost, Killed          bool
	GhostSeconds           float64
	// Owner is the ghost's owner (OwnerOf); only ghosts need one.
	Owner string
}

// Tally adds sessions up into per-namespace summaries. The daemon adds
// every suspect at every scan, so the counting is arrays, not maps.
type Tally struct {
	m      map[string]*tallyNS
	last   *tallyNS       // consecutive sessions mostly share a namespace
	owners map[string]int // ghosts by owner
}

type tallyNS struct {
	sum      SessionSummary
	suspects [16]int // by tracker.Reason
}

// Add counts one session.
func (t *Tally) Add(s *Tallied) {
	n := t.last
	if n == nil || n.sum.Netns != s.Netns {
		if t.m == nil {
			t.m = make(map[string]*tallyNS)
		}
		if n = t.m[s.Netns]; n == nil {
			n = &tallyNS{sum: SessionSummary{Netns: s.Netns, Ghosts: map[GhostKind]int{}}}
			t.m[s.Netns] = n
		}
		t.last = n
	}
	n.sum.Sessions++
	if s.Killed {
		// ghostd already acted on it: counted in ghosts_killed_total, no
		// longer a ghost or a suspect waiting for someone.
		return
	}
	for rs := s.Reasons; rs != 0; rs &= rs - 1 {
		n.suspects[bits.TrailingZeros16(uint16(rs))]++
	}
	if s.Ghost {
		n.sum.Ghosts[GhostKind{s.Family, s.Verdict}]++
		n.sum.OldestGhostSeconds = max(n.sum.OldestGhostSeconds, s.GhostSeconds)
		if t.owners == nil {
			t.owners = make(map[string]int)
		}
		t.owners[s.Owner]++
	}
}

// GhostsByOwner returns the ghosts counted by owner.
func (t *Tally) GhostsByOwner() map[string]int {
	if t.owners == nil {
		return map[string]int{}
	}
	return t.owners
}

// Summaries returns the summaries by namespace name.
func (t *Tally) Summaries() []SessionSummary {
	out := make([]SessionSummary, 0, len(t.m))
	for _, n := range t.m {
		sum := n.sum
		sum.Suspects = map[tracker.Reason]int{}
		for _, r := range tracker.AllReasons {
			if c := n.suspects[r]; c > 0 {
				sum.Suspects[r] = c
			}
		}
		out = append(out, sum)
	}
	slices.SortFunc(out, func(a, b SessionSummary) int { return cmp.Compare(a.Netns, b.Netns) })
	return out
}

// Summarize counts a list of sessions.
func Summarize(sessions []Session) []SessionSummary {
	t := tallySessions(sessions)
	return t.Summaries()
}

// tallySessions adds a list of sessions up.
func tallySessions(sessions []Session) *Tally {
	var t Tally
	for i := range sessions {
		s := &sessions[i]
		var rs tracker.Reasons
		for _, name := range s.Reasons {
			if r, ok := tracker.ParseReason(name); ok {
				rs = rs.With(r)
			}
		}
		t.Add(&Tallied{
			Netns: s.Netns, Family: s.Family, Verdict: s.Verdict, Reasons: rs,
			Ghost: s.Ghost, Killed: s.Killed, GhostSeconds: s.GhostSeconds, Owner: OwnerOf(s),
		})
	}
	return &t
}

// staticSessions is a SessionSource over a list (a snapshot that lists its
// sessions in Doc.Sessions, as `ghostd scan` and tests build them).
type staticSessions []Session

func (s staticSessions) EachSession(fn func([]Session) bool) {
	if len(s) > 0 {
		fn(s)
	}
}

func (s staticSessions) TopSessions(n int) []Session {
	order := slices.Clone([]Session(s))
	slices.SortStableFunc(order, func(a, b Session) int {
		return TopOrder(a.Ghost, a.GhostSeconds, a.IdleSeconds, b.Ghost, b.GhostSeconds, b.IdleSeconds)
	})
	return order[:min(n, len(order))]
}

// sessions returns where the snapshot's sessions come from: its Source, or
// the list in Doc.Sessions.
func (s *Snapshot) sessions() SessionSource {
	if s.Source != nil {
		return s.Source
	}
	return staticSessions(s.Doc.Sessions)
}

// ghostsByOwner returns the snapshot's ghosts by owner: GhostsByOwner, or
// counts of the list in Doc.Sessions.
func (s *Snapshot) ghostsByOwner() map[string]int {
	if s.GhostsByOwner != nil || s.Source != nil {
		return s.GhostsByOwner
	}
	return tallySessions(s.Doc.Sessions).GhostsByOwner()
}

// summary returns the snapshot's session counts: Summary, or counts of the
// list in Doc.Sessions.
func (s *Snapshot) summary() []SessionSummary {
	if s.Summary != nil || s.Source != nil {
		return s.Summary
	}
	return Summarize(s.Doc.Sessions)
}
