package events

import (
	"time"
)

// Kind is what happened to a session.
type Kind string

// The kinds of events, in the order a session usually goes through them.
const (
	// Suspect: the socket became a suspect (it has at least one reason).
	Suspect Kind = "suspect"
	// Ghost: a probe confirmed the peer is gone (reset, silent or
	// unreachable, confirmed).
	Ghost Kind = "ghost"
	// Alive: a probe found alive a socket whose last verdict was a ghost's
	// (confirmed or not): the peer answered again.
	Alive Kind = "alive"
	// Killed: the kill policy acted on the socket, or refused to; Result
	// says which.
	Killed Kind = "killed"
	// Gone: a suspect left the socket table (closed by its owner, reaped by
	// the kernel or killed), or its namespace went away.
	Gone Kind = "gone"
)

// Kinds lists every kind, for metrics that must show each one.
var Kinds = kindNames[:]

func (k Kind) index() int {
	for i, x := range Kinds {
		if x == k {
			return i
		}
	}
	return -1
}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, bool) {
	k := Kind(s)
	return k, k.index() >= 0
}

// Results of a Killed event.
const (
	ResultOK      = "ok"      // the kill action succeeded
	ResultError   = "error"   // it failed: Detail is the error
	ResultRefused = "refused" // the policy or a re-check refused it: Detail says why
)

// Event is one thing that happened to one session: its identity, its owner
// and the evidence at that moment. The JSON field names follow the session
// document's (docs/design.md); fields are added, never renamed.
type Event struct {
	Seq  uint64    `json:"seq"` // 1, 2, 3… in the order events were recorded
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`

	// Identity.
	Netns      string `json:"netns"`
	NetnsInode uint64 `json:"netns_inode"`
	Family     string `json:"family"`
	Local      string `json:"local"`
	Remote     string `json:"remote"`
	State      string `json:"state"`
	Cookie     uint64 `json:"cookie"`
	Inode      uint32 `json:"inode"`

	// Owner. Pod and Container are empty when not known.
	PID       int    `json:"pid"`
	Comm      string `json:"comm"`
	Unit      string `json:"unit"`
	Pod       string `json:"pod,omitempty"`
	Container string `json:"container,omitempty"`

	// Evidence.
	Reasons     []string `json:"reasons"`
	Verdict     string   `json:"verdict"`
	Attempts    int      `json:"attempts"` // probes sent in the last round
	Replies     int      `json:"replies"`
	RTTSeconds  *float64 `json:"rtt_seconds"`
	IdleSeconds float64  `json:"idle_seconds"`
	Uncertain   string   `json:"uncertain,omitempty"`
	NAT         string   `json:"nat,omitempty"`

	// Killed events only.
	Result string `json:"result,omitempty"` // ResultOK, ResultError or ResultRefused
	Detail string `json:"detail,omitempty"` // the error, or why it was refused
	Mode   string `json:"mode,omitempty"`   // destroy, keepalive or shutdown
}

// Owner is the name sessions are grouped under by owner: the pod once it is
// known, else the systemd unit, else the process name, else "unknown".
func Owner(pod, unit, comm string) string {
	switch {
	case pod != "":
		return pod
	case unit != "":
		return unit
	case comm != "":
		return comm
	}
	return "unknown"
}

// Owner is the event's owner name (see the function Owner).
func (e *Event) Owner() string { return Owner(e.Pod, e.Unit, e.Comm) }

// Sink takes events. Emit must not block: the engine calls it while it
// holds its lock.
type Sink interface {
	Emit(ev Event)
}

// BatchSink is a Sink that takes many events of one kind at once and may
// build only those it keeps: a host's first scan finds 100 000s of new
// suspects, and a ring keeps the last 10 000. EmitBatch records what n
// calls of Emit with build(0)…build(n-1) would have (build's false: no
// event); it must not block either.
type BatchSink interface {
	Sink
	EmitBatch(n int, kind Kind, build func(i int) (Event, bool))
}
