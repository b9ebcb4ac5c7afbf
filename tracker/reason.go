package tracker

import "strings"

// Reason says why a socket is a suspect (see the reasons table in docs/design.md).
type Reason uint8

// Reasons.
const (
	ReasonIdle             Reason = iota // ESTABLISHED, no data either way for longer than the idle threshold, and no keepalive that would find a dead peer sooner than ghostd
	ReasonRetransmitting                 // retransmit timer with backoff and no ACK progress
	ReasonKeepaliveFailing               // keepalive timer with unanswered probes
	ReasonZeroWindow                     // persist timer for longer than the stall threshold: stalled, never a ghost
	ReasonCloseWait                      // CLOSE_WAIT older than its threshold: a leak
	ReasonFinWait2                       // FIN_WAIT2 older than its threshold
	ReasonLastAck                        // LAST_ACK older than its threshold
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonIdle:             "idle",
	ReasonRetransmitting:   "retransmitting",
	ReasonKeepaliveFailing: "keepalive_failing",
	ReasonZeroWindow:       "zero_window",
	ReasonCloseWait:        "close_wait",
	ReasonFinWait2:         "fin_wait2",
	ReasonLastAck:          "last_ack",
}

// AllReasons lists every reason in display order.
var AllReasons = []Reason{ReasonIdle, ReasonRetransmitting, ReasonKeepaliveFailing, ReasonZeroWindow, ReasonCloseWait, ReasonFinWait2, ReasonLastAck}

// String returns the reason's contract name, e.g. "keepalive_failing".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// ParseReason returns the reason with the given contract name.
func ParseReason(s string) (Reason, bool) {
	for r, n := range reasonNames {
		if n == s {
			return Reason(r), true
		}
	}
	return 0, false
}

// Reasons is a set of reasons; the zero value is empty.
type Reasons uint16

// With returns the set with r added.
func (rs Reasons) With(r Reason) Reasons { return rs | 1<<r }

// Has reports whether r is in the set.
func (rs Reasons) Has(r Reason) bool { return rs&(1<<r) != 0 }

// Empty reports whether the set has no reason.
func (rs Reasons) Empty() bool { return rs == 0 }

// Probeable reports whether a probe can tell something about these reasons:
// idle, retransmitting or keepalive_failing. A zero-window stall is never probed
// for ghostliness (the peer is alive), and half-closed states are only reported.
func (rs Reasons) Probeable() bool {
	return rs.Has(ReasonIdle) || rs.Has(ReasonRetransmitting) || rs.Has(ReasonKeepaliveFailing)
}

// CanGhost reports whether a probe's verdict can make a socket with these
// reasons a ghost (and so a kill candidate): a probeable reason can, and a
// zero-window stall never can, whatever else is in the set, since its peer
// is alive and only not reading. This is the one place that rule is written.
func (rs Reasons) CanGhost() bool {
	return rs.Probeable() && !rs.Has(ReasonZeroWindow)
}

// Strings returns the names of the reasons in the set, in display order.
func (rs Reasons) Strings() []string {
	out := make([]string, 0, 2)
	for _, r := range AllReasons {
		if rs.Has(r) {
			out = append(out, r.String())
		}
	}
	return out
}

// String joins the names with ",".
func (rs Reasons) String() string { return strings.Join(rs.Strings(), ",") }

// namesTable holds Strings() of every set, computed once.
var namesTable = func() [1 << numReasons][]string {
	var t [1 << numReasons][]string
	for i := range t {
		t[i] = Reasons(i).Strings()
	}
	return t
}()

// Names is Strings without allocating: it returns a shared slice that the
// caller must not modify.
func (rs Reasons) Names() []string {
	if int(rs) < len(namesTable) {
		return namesTable[rs]
	}
	return rs.Strings()
}
