package probe

import "github.com/ghostd/ghostd/probe/internal/wire"

// This file decides which captured packets answer a probe. Everything here
// is pure: the demux calls accept for each packet of a watched flow before
// queueing it, so junk never reaches (or crowds out) a probe's queue.

// RejectReason says why a captured packet of a watched flow was not taken as
// a reply to its probes. The set is fixed: it labels a metric.
type RejectReason uint8

// Reasons a packet is rejected.
const (
	// RejectRSTSeq: a RST whose sequence number is neither our probe's ACK
	// number nor RCV.NXT (what the kernel itself would take).
	RejectRSTSeq RejectReason = iota
	// RejectACKSeq: an ACK whose numbers lie behind the connection's state.
	RejectACKSeq
	// RejectICMPQuote: an ICMP error that does not quote one of our probes.
	RejectICMPQuote
	// RejectQueueFull: an accepted reply that found the probe's queue full.
	RejectQueueFull
	// RejectICMPRepeat: an ICMP error beyond one per probe sent: a router
	// sends at most one, and more must not take the room of an ACK.
	RejectICMPRepeat
	// NumRejectReasons is how many reasons there are.
	NumRejectReasons
)

func (r RejectReason) String() string {
	switch r {
	case RejectRSTSeq:
		return "rst_seq"
	case RejectACKSeq:
		return "ack_seq"
	case RejectICMPQuote:
		return "icmp_quote"
	case RejectQueueFull:
		return "queue_full"
	case RejectICMPRepeat:
		return "icmp_repeat"
	}
	return "unknown"
}

// Rejects counts rejected packets by RejectReason.
type Rejects [NumRejectReasons]uint64

// Total returns the number of rejected packets.
func (r Rejects) Total() uint64 {
	var n uint64
	for _, v := range r {
		n += v
	}
	return n
}

// sentProbe is what one probe put on the wire.
type sentProbe struct {
	seq, ack uint32
	id       uint16 // IPv4 identification; 0 for IPv6
}

// behind reports whether a comes before b in sequence space (RFC 9293
// modular comparison).
func behind(a, b uint32) bool { return int32(a-b) < 0 }

// accept decides whether r, a packet of the probed flow (the demux matched
// its 4-tuple), answers the probes sent so far; st is the socket's sequence
// state, nil for blind probes. The rules follow what the kernel itself
// accepts (RFC 9293, RFC 5961), never more:
//
//   - RST: its sequence number must be the ACK number of one of our probes
//     (a peer without the connection echoes it, RFC 9293 section 3.10.7.1),
//     or, in-window, exactly RCV.NXT: the RST of a peer that aborts the
//     connection on its own (application abort, keepalive or retransmission
//     timeout) starts at its SND.NXT, which is our RCV.NXT. That is the one
//     value the local kernel would accept too (tcp_validate_incoming
//     answers every other in-window RST with a challenge ACK), so whoever
//     can forge it can reset the socket directly: accepting it gives an
//     attacker nothing the kernel does not. Anything else in the window is
//     rejected, so a spray must hit one of at most attempts+1 values out of
//     2^32.
//   - ACK, in-window: a live peer answers our out-of-window probe (seq
//     SND.UNA−1) with a duplicate ACK carrying its SND.NXT and RCV.NXT,
//     which for an idle connection are exactly our RCV.NXT and SND.NXT. Data
//     may move after the state was read, so the peer can only be ahead of
//     it, never behind: an ACK whose sequence number is before RCV.NXT or
//     whose acknowledgement is before SND.UNA is rejected. A window tighter
//     than that would turn a connection that just became busy into a false
//     ghost; a forged ACK can at worst make a ghost look alive, the safe
//     direction.
//   - ACK, blind: there is no state to check against, and any ACK of the
//     flow is taken (again the safe direction).
//   - ICMP destination unreachable: it must quote one of our probes
//     exactly: the quoted sequence number, and when quoted, its ACK number
//     and (IPv4) the identification field. A probe's numbers are random in
//     blind mode, and its IPv4 identification always is.
//   - Echo replies are matched by the demux on their identifier.
func accept(r wire.Reply, probes []sentProbe, st *SeqState) (bool, RejectReason) {
	switch r.Kind {
	case wire.ReplyRST:
		for _, p := range probes {
			if r.Seq == p.ack {
				return true, 0
			}
		}
		if st != nil && r.Seq == st.RcvNxt {
			return true, 0
		}
		return false, RejectRSTSeq
	case wire.ReplyACK:
		if st == nil {
			return true, 0
		}
		if behind(r.Seq, st.RcvNxt) || behind(r.Ack, st.SndUna) {
			return false, RejectACKSeq
		}
		return true, 0
	case wire.ReplyUnreachable:
		for _, p := range probes {
			if r.Seq != p.seq {
				continue
			}
			if r.QuotedLen >= wire.TCPMinSize && r.Ack != p.ack {
				continue
			}
			if r.QuotedID != p.id {
				continue
			}
			return true, 0
		}
		return false, RejectICMPQuote
	case wire.ReplyEcho:
		return true, 0
	}
	return false, RejectACKSeq
}
