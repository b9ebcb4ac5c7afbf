package probe

import (
	"net/netip"
	"slices"
	"time"
)

// Verdict is what a probe proved about a connection's peer.
type Verdict string

// Verdicts (see the verdicts table in docs/design.md).
const (
	Unprobed    Verdict = "unprobed"    // not probed
	Alive       Verdict = "alive"       // the peer ACKed: it holds the connection
	Reset       Verdict = "reset"       // the peer answered RST: it has no such connection
	Silent      Verdict = "silent"      // no answer after every attempt
	Unreachable Verdict = "unreachable" // ICMP or ICMPv6 destination unreachable
)

// Verdicts lists every verdict, Unprobed first. Other lists of verdicts
// (the ghost verdicts, filters, packed encodings) derive from it.
var Verdicts = []Verdict{Unprobed, Alive, Reset, Silent, Unreachable}

// Ghost reports whether the verdict makes the connection a ghost.
func (v Verdict) Ghost() bool { return v == Reset || v == Silent || v == Unreachable }

// Valid reports whether v is one of Verdicts.
func (v Verdict) Valid() bool { return slices.Contains(Verdicts, v) }

// GhostVerdicts returns the verdicts that make a connection a ghost, in
// Verdicts' order.
func GhostVerdicts() []Verdict {
	var out []Verdict
	for _, v := range Verdicts {
		if v.Ghost() {
			out = append(out, v)
		}
	}
	return out
}

// Mode says how a probe chose its sequence numbers.
type Mode string

// Probe modes.
const (
	// InWindow probes use the socket's real SND.UNA/RCV.NXT read through the
	// BPF TCP iterator: they pass stateful firewalls like the connection's own segments.
	InWindow Mode = "in_window"
	// Blind probes use random sequence numbers: a RST is evidence, silence is not.
	Blind Mode = "blind"
)

// Why silence can be uncertain (Result.Uncertain).
const (
	// UncertainCaptureLost: the capture dropped datagrams while the probe
	// waited (its buffer overflowed, as a flood can make it); the answer
	// may have been among them.
	UncertainCaptureLost = "capture_lost"
	// UncertainInterference: packets of the connection's 4-tuple that
	// answer none of our probes, or datagrams with bad checksums, arrived
	// while it waited. Someone may be
	// forging them, and a flood drowns real answers in the receiving
	// host's queues before any capture sees them; a real ghost's 4-tuple
	// is quiet.
	UncertainInterference = "interference"
	// UncertainBlind: a blind probe (no sequence state) got a RST or an
	// ICMP error. A stateful firewall finds a segment with random numbers
	// INVALID, and one that rejects INVALID segments answers for the peer
	// with exactly these (a RST at the probe's ACK number, an ICMP error
	// quoting it), while the peer still holds the connection
	// (TestBlindThroughRejectingRouter). Such a verdict is confirmed only
	// when the socket's own kernel evidence backs it, as blind silence (and
	// then it is not marked uncertain).
	UncertainBlind = "blind"
	// UncertainNATUnknown: the namespace's conntrack table could not be
	// read (no CAP_NET_ADMIN and no /proc/net/nf_conntrack, or an error),
	// so a connection NATed there, answered on its translated tuple, would
	// look silent. Confirmed only when kernel evidence backs it.
	UncertainNATUnknown = "nat_unknown"
	// UncertainRouting: the namespace routes by what a raw probe cannot
	// carry to its route lookup (ip rule sport, dport, ipproto, uidrange),
	// so the probes may have gone another way than the socket's own
	// segments, into a black hole or to another host with the peer's
	// address (TestProbeUnderPortRule). A silence, an unreachable or a
	// reset there is confirmed only when kernel evidence backs it, and
	// probes there never acknowledge RCV.NXT (Config.ResetLocal).
	UncertainRouting = "routing"
)

// Target is one connection to probe, as the latest inventory saw it.
type Target struct {
	NetnsInode uint64
	NetnsPath  string // opens the socket's namespace; "" means the caller's own
	Cookie     uint64
	Family     uint8 // inventory.FamilyInet or FamilyInet6 (a v4-mapped socket is probed over IPv4)
	Local      netip.AddrPort
	Remote     netip.AddrPort
	// KernelEvidence is set when the socket's own kernel already probed
	// in-window without an answer (retransmit backoff, unanswered keepalives):
	// then blind silence counts as evidence too.
	KernelEvidence bool
	// QuietSince is when data last moved either way on the socket, as far
	// as the inventory can tell (zero: unknown). Sequence state read after
	// it is still exact, so a state read ahead of the probe may be reused.
	QuietSince time.Time
	// RTO is how long the socket's own kernel waits for an answer before
	// it retransmits (srtt + 4 rttvar from tcp_info; zero: unknown). The
	// last attempt waits at least that long (at most MaxAnswerWait): a
	// slow live peer's answer must not come after the verdict.
	RTO time.Duration
}

// MaxAnswerWait bounds how long the last attempt waits for a slow peer
// (Target.RTO): the kernel's own longest retransmission timeout.
const MaxAnswerWait = 2 * time.Minute

// Result is the outcome of probing one Target.
type Result struct {
	Verdict Verdict
	Mode    Mode
	Sent    int           // probes sent
	Replies int           // replies matched to the probes
	RTT     time.Duration // time to the first reply; 0 when there was none
	// HostReachable is the host hint for silence: whether the peer's host
	// answered an ICMP echo; nil when not asked.
	HostReachable *bool
	// HostHint says what the host hint found (HostHintReachable, ...Unreachable,
	// ...NAT, ...Shared; hosthint.go); "" when not asked. With NAT and Shared,
	// HostReachable is nil: the echo says nothing about the peer's host.
	HostHint string
	// ClosedLocal is set when the peer's RST to a probe also closed the local socket.
	ClosedLocal bool
	// Guarded is set when the probe acknowledged RCV.NXT behind the reset
	// guard (Config.ResetGuard): a RST answering it was dropped before the
	// local socket.
	Guarded bool
	// Confirmed is set when the verdict holds after every attempt (or, for
	// blind silence, when kernel evidence backs it).
	Confirmed bool
	// Uncertain says why a silence, an unreachable or a blind reset that
	// would otherwise be confirmed is not (unless kernel evidence backs it):
	// UncertainCaptureLost, UncertainInterference, UncertainBlind,
	// UncertainNATUnknown or UncertainRouting. Empty otherwise.
	Uncertain string
	// Rejected counts captured packets of this connection that did not
	// answer its probes (forged, stale or stray), by reason.
	Rejected Rejects
	// CaptureDrops and CaptureBadChecksums count datagrams the namespace's
	// capture lost to a full buffer and those it refused for a checksum that
	// did not verify, while one ProbeAll probed the namespace. They are set
	// on the namespace's first result only, so that summing over results
	// counts each once.
	CaptureDrops, CaptureBadChecksums uint64
	// NAT names how the connection is translated in its own namespace
	// ("dnat", "snat", "redirect", or two joined with "+"), whose answers
	// were then matched on its conntrack reply tuple; "" when it is not.
	NAT string
	// Err says why the target stayed Unprobed (no raw socket, namespace gone,
	// socket gone, cancelled); nil when it was probed.
	Err error
	// Unprobeable, when set, is why the socket can never be probed
	// (UnprobeableTCPMD5, UnprobeableTCPAO): its peer silently drops a segment
	// without the socket's signature, so silence would prove nothing. The
	// verdict is then Unprobed, never confirmed, and Err is nil.
	Unprobeable string
}
