package wire

import (
	"errors"
	"fmt"
	"net/netip"
)

// ReplyKind says what a captured packet is.
type ReplyKind uint8

// Reply kinds.
const (
	ReplyNone        ReplyKind = iota
	ReplyACK                   // a TCP segment with ACK and without RST
	ReplyRST                   // a TCP segment with RST
	ReplyUnreachable           // ICMP/ICMPv6 destination unreachable quoting a TCP segment
	ReplyEcho                  // ICMP/ICMPv6 echo reply
)

func (k ReplyKind) String() string {
	switch k {
	case ReplyACK:
		return "ack"
	case ReplyRST:
		return "rst"
	case ReplyUnreachable:
		return "icmp"
	case ReplyEcho:
		return "echo"
	}
	return "none"
}

// Reply is a parsed packet that may answer a probe.
type Reply struct {
	Kind ReplyKind
	// Src and Dst are the answering segment's own addresses for ACK and RST
	// (Src is the peer). For Unreachable they are the quoted probe's
	// (Src is the local end, Dst the peer), so one 4-tuple key matches both.
	Src, Dst netip.AddrPort
	Seq, Ack uint32 // of the segment (ACK/RST) or of the quoted probe (Unreachable)
	Flags    uint8
	Window   uint16
	Payload  int        // TCP payload bytes (ACK/RST)
	From     netip.Addr // the ICMP sender (Unreachable, Echo)
	Type     uint8      // ICMP type and code (Unreachable, Echo)
	Code     uint8
	EchoID   uint16
	EchoSeq  uint16
	// QuotedLen is how many bytes of the quoted TCP header an Unreachable
	// carries (8 at least: ports and sequence number; Ack, Flags and Window
	// are set only from 20), and QuotedID the quoted IPv4 identification
	// (0 for IPv6).
	QuotedLen int
	QuotedID  uint16
}

// errors from ParseReply; callers only need to know the packet is not a reply.
var (
	errShort    = errors.New("packet too short")
	errNotReply = errors.New("not a probe reply")
)

// IPPayload returns the protocol, addresses and payload of a whole IP
// datagram (IPv6 extension headers skipped), refusing fragments and
// datagrams shorter than their declared length.
func IPPayload(pkt []byte) (proto uint8, src, dst netip.Addr, payload []byte, err error) {
	proto, src, dst, payload, err = ipPayload(pkt, false)
	if err != nil {
		return 0, netip.Addr{}, netip.Addr{}, nil, fmt.Errorf("wire: %w", err)
	}
	return proto, src, dst, payload, nil
}

// ipPayload returns the protocol, addresses and payload of an IP datagram,
// refusing fragments. Truncation of the payload is tolerated when partial is
// set (ICMP quotes), otherwise the declared length must fit.
func ipPayload(pkt []byte, partial bool) (proto uint8, src, dst netip.Addr, payload []byte, err error) {
	if len(pkt) < 1 {
		return 0, src, dst, nil, errShort
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < IPv4MinSize {
			return 0, src, dst, nil, errShort
		}
		ip := IPv4Header(pkt)
		hl, tl := ip.HeaderLen(), ip.TotalLen()
		if hl < IPv4MinSize || len(pkt) < hl || tl < hl {
			return 0, src, dst, nil, fmt.Errorf("bad IPv4 lengths %d/%d: %w", hl, tl, errShort)
		}
		if ip.FragOffset() != 0 || ip.MoreFragments() {
			return 0, src, dst, nil, fmt.Errorf("IPv4 fragment: %w", errNotReply)
		}
		end := tl
		if end > len(pkt) {
			if !partial {
				return 0, src, dst, nil, errShort
			}
			end = len(pkt)
		}
		return ip.Protocol(), ip.Src(), ip.Dst(), pkt[hl:end], nil
	case 6:
		if len(pkt) < IPv6Size {
			return 0, src, dst, nil, errShort
		}
		ip := IPv6Header(pkt)
		end := IPv6Size + ip.PayloadLen()
		if end > len(pkt) {
			if !partial {
				return 0, src, dst, nil, errShort
			}
			end = len(pkt)
		}
		next, off := ip.NextHeader(), IPv6Size
		for {
			switch next {
			case ipv6ExtHopByHop, ipv6ExtRouting, ipv6ExtDestinations:
				if off+8 > end {
					return 0, src, dst, nil, errShort
				}
				next, off = pkt[off], off+(int(pkt[off+1])+1)*8
				continue
			case ipv6ExtFragment:
				return 0, src, dst, nil, fmt.Errorf("IPv6 fragment: %w", errNotReply)
			}
			break
		}
		if off > end {
			return 0, src, dst, nil, errShort
		}
		return next, ip.Src(), ip.Dst(), pkt[off:end], nil
	}
	return 0, src, dst, nil, fmt.Errorf("IP version %d: %w", pkt[0]>>4, errNotReply)
}

// ParseReply parses an IP datagram (starting at the IP header) captured as a
// possible answer to a probe: a TCP segment carrying ACK or RST, an ICMP or
// ICMPv6 destination unreachable quoting a TCP segment, or an echo reply.
// It checks lengths, never checksums (see VerifyChecksums). Errors are
// for logs only: whatever it refuses answers no probe.
func ParseReply(pkt []byte) (Reply, error) {
	r, err := parseReply(pkt)
	if err != nil {
		return Reply{}, fmt.Errorf("wire: %w", err)
	}
	return r, nil
}

func parseReply(pkt []byte) (Reply, error) {
	proto, src, dst, payload, err := ipPayload(pkt, false)
	if err != nil {
		return Reply{}, err
	}
	v6 := src.Is6()
	switch {
	case proto == ProtoTCP:
		if len(payload) < TCPMinSize {
			return Reply{}, errShort
		}
		tcp := TCPHeader(payload)
		hl := tcp.HeaderLen()
		if hl < TCPMinSize || hl > len(payload) {
			return Reply{}, fmt.Errorf("bad TCP data offset %d: %w", hl, errShort)
		}
		r := Reply{
			Src: netip.AddrPortFrom(src, tcp.SrcPort()), Dst: netip.AddrPortFrom(dst, tcp.DstPort()),
			Seq: tcp.Seq(), Ack: tcp.Ack(), Flags: tcp.Flags(), Window: tcp.Window(),
			Payload: len(payload) - hl,
		}
		switch {
		case r.Flags&FlagSYN != 0:
			return Reply{}, fmt.Errorf("SYN segment: %w", errNotReply)
		case r.Flags&FlagRST != 0:
			r.Kind = ReplyRST
		case r.Flags&FlagACK != 0:
			r.Kind = ReplyACK
		default:
			return Reply{}, fmt.Errorf("segment without ACK or RST: %w", errNotReply)
		}
		return r, nil
	case proto == ProtoICMP && !v6, proto == ProtoICMPv6 && v6:
		if len(payload) < ICMPHeaderSize {
			return Reply{}, errShort
		}
		icmp := ICMPHeader(payload)
		r := Reply{From: src, Type: icmp.Type(), Code: icmp.Code()}
		switch {
		case !v6 && icmp.Type() == icmpEchoReply, v6 && icmp.Type() == icmpv6EchoReply:
			r.Kind, r.EchoID, r.EchoSeq = ReplyEcho, icmp.EchoID(), icmp.EchoSeq()
			r.Dst = netip.AddrPortFrom(dst, 0)
			return r, nil
		case !v6 && icmp.Type() == icmpUnreachable, v6 && icmp.Type() == icmpv6Unreachable:
		default:
			return Reply{}, fmt.Errorf("ICMP type %d: %w", icmp.Type(), errNotReply)
		}
		qproto, qsrc, qdst, quoted, err := ipPayload(icmp.Payload(), true)
		if err != nil {
			return Reply{}, fmt.Errorf("quoted datagram: %w", err)
		}
		if qproto != ProtoTCP || qsrc.Is6() != v6 {
			return Reply{}, fmt.Errorf("quoted protocol %d: %w", qproto, errNotReply)
		}
		// RFC 792 promises 8 bytes of the quoted segment: ports and sequence number.
		if len(quoted) < 8 {
			return Reply{}, fmt.Errorf("quoted segment: %w", errShort)
		}
		tcp := TCPHeader(quoted)
		r.Kind = ReplyUnreachable
		r.Src = netip.AddrPortFrom(qsrc, tcp.SrcPort())
		r.Dst = netip.AddrPortFrom(qdst, tcp.DstPort())
		r.Seq = tcp.Seq()
		r.QuotedLen = min(len(quoted), TCPMinSize)
		if !v6 {
			r.QuotedID = IPv4Header(icmp.Payload()).ID()
		}
		if len(quoted) >= TCPMinSize {
			r.Ack, r.Flags, r.Window = tcp.Ack(), tcp.Flags(), tcp.Window()
		}
		return r, nil
	}
	return Reply{}, fmt.Errorf("protocol %d: %w", proto, errNotReply)
}
