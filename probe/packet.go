package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Header sizes and protocol numbers used by probes.
const (
	IPv4MinSize    = 20
	IPv6Size       = 40
	TCPMinSize     = 20
	ICMPHeaderSize = 8

	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoICMPv6 = 58
)

// TCP flags.
const (
	FlagFIN uint8 = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
)

// ICMP types ghostd reads or writes.
const (
	icmpEchoReply       = 0
	icmpUnreachable     = 3
	icmpEchoRequest     = 8
	icmpv6Unreachable   = 1
	icmpv6EchoRequest   = 128
	icmpv6EchoReply     = 129
	defaultTTL          = 64
	ipv4FlagDontFrag    = 0x4000
	ipv4FragOffsetMask  = 0x1fff
	ipv4FlagMoreFrags   = 0x2000
	ipv6ExtHopByHop     = 0
	ipv6ExtRouting      = 43
	ipv6ExtFragment     = 44
	ipv6ExtDestinations = 60
)

// IPv4Header is a view of an IPv4 header (RFC 791); its accessors assume
// the slice holds at least IPv4MinSize bytes.
type IPv4Header []byte

// Offsets in an IPv4 header.
const (
	ipv4VersIHL   = 0
	ipv4TOS       = 1
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Protocol  = 9
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16
)

// Version returns the IP version nibble.
func (b IPv4Header) Version() uint8 { return b[ipv4VersIHL] >> 4 }

// HeaderLen returns the header length in bytes (IHL × 4).
func (b IPv4Header) HeaderLen() int { return int(b[ipv4VersIHL]&0xf) * 4 }

// TotalLen returns the datagram length in bytes, header included.
func (b IPv4Header) TotalLen() int { return int(binary.BigEndian.Uint16(b[ipv4TotalLen:])) }

// ID returns the identification field.
func (b IPv4Header) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// FragOffset returns the fragment offset in 8-byte units.
func (b IPv4Header) FragOffset() uint16 {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) & ipv4FragOffsetMask
}

// MoreFragments reports the MF flag.
func (b IPv4Header) MoreFragments() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4FlagMoreFrags != 0
}

// TOS returns the type-of-service byte (DSCP and ECN).
func (b IPv4Header) TOS() uint8 { return b[ipv4TOS] }

// TTL returns the time to live.
func (b IPv4Header) TTL() uint8 { return b[ipv4TTL] }

// Protocol returns the payload's protocol number.
func (b IPv4Header) Protocol() uint8 { return b[ipv4Protocol] }

// Checksum returns the header checksum field.
func (b IPv4Header) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// Src returns the source address.
func (b IPv4Header) Src() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Src : ipv4Src+4])) }

// Dst returns the destination address.
func (b IPv4Header) Dst() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Dst : ipv4Dst+4])) }

// IPv4Fields are the values Encode writes into a 20-byte IPv4 header.
type IPv4Fields struct {
	TOS      uint8
	TotalLen uint16
	ID       uint16
	TTL      uint8
	Protocol uint8
	Src, Dst netip.Addr // IPv4 (or v4-mapped) addresses
}

// Encode writes a 20-byte header with DF set and computes its checksum.
func (b IPv4Header) Encode(f IPv4Fields) {
	b[ipv4VersIHL] = 4<<4 | 5
	b[ipv4TOS] = f.TOS
	binary.BigEndian.PutUint16(b[ipv4TotalLen:], f.TotalLen)
	binary.BigEndian.PutUint16(b[ipv4ID:], f.ID)
	binary.BigEndian.PutUint16(b[ipv4FlagsFrag:], ipv4FlagDontFrag)
	b[ipv4TTL] = f.TTL
	b[ipv4Protocol] = f.Protocol
	binary.BigEndian.PutUint16(b[ipv4Checksum:], 0)
	src, dst := f.Src.Unmap().As4(), f.Dst.Unmap().As4()
	copy(b[ipv4Src:], src[:])
	copy(b[ipv4Dst:], dst[:])
	binary.BigEndian.PutUint16(b[ipv4Checksum:], Checksum(b[:IPv4MinSize], 0))
}

// IPv6Header is a view of the fixed IPv6 header (RFC 8200); its accessors
// assume the slice holds at least IPv6Size bytes.
type IPv6Header []byte

// Offsets in an IPv6 header.
const (
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6Src        = 8
	ipv6Dst        = 24
)

// Version returns the IP version nibble.
func (b IPv6Header) Version() uint8 { return b[0] >> 4 }

// PayloadLen returns the length of everything after the fixed header.
func (b IPv6Header) PayloadLen() int { return int(binary.BigEndian.Uint16(b[ipv6PayloadLen:])) }

// TrafficClass returns the traffic class (DSCP and ECN).
func (b IPv6Header) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint32(b[0:]) >> 20) }

// FlowLabel returns the 20-bit flow label.
func (b IPv6Header) FlowLabel() uint32 { return binary.BigEndian.Uint32(b[0:]) & 0xfffff }

// NextHeader returns the protocol (or extension header) that follows.
func (b IPv6Header) NextHeader() uint8 { return b[ipv6NextHeader] }

// HopLimit returns the hop limit.
func (b IPv6Header) HopLimit() uint8 { return b[ipv6HopLimit] }

// Src returns the source address.
func (b IPv6Header) Src() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Src : ipv6Src+16])) }

// Dst returns the destination address.
func (b IPv6Header) Dst() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Dst : ipv6Dst+16])) }

// IPv6Fields are the values Encode writes into an IPv6 header.
type IPv6Fields struct {
	TrafficClass uint8
	FlowLabel    uint32 // low 20 bits
	PayloadLen   uint16
	NextHeader   uint8
	HopLimit     uint8
	Src, Dst     netip.Addr
}

// Encode writes the fixed header.
func (b IPv6Header) Encode(f IPv6Fields) {
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(f.TrafficClass)<<20|f.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(b[ipv6PayloadLen:], f.PayloadLen)
	b[ipv6NextHeader] = f.NextHeader
	b[ipv6HopLimit] = f.HopLimit
	src, dst := f.Src.As16(), f.Dst.As16()
	copy(b[ipv6Src:], src[:])
	copy(b[ipv6Dst:], dst[:])
}

// TCPHeader is a view of a TCP header (RFC 9293); its accessors assume the
// slice holds at least TCPMinSize bytes.
type TCPHeader []byte

// Offsets in a TCP header.
const (
	tcpSrcPort  = 0
	tcpDstPort  = 2
	tcpSeq      = 4
	tcpAck      = 8
	tcpDataOff  = 12
	tcpFlags    = 13
	tcpWindow   = 14
	tcpChecksum = 16
	tcpUrgent   = 18
)

// SrcPort returns the source port.
func (b TCPHeader) SrcPort() uint16 { return binary.BigEndian.Uint16(b[tcpSrcPort:]) }

// DstPort returns the destination port.
func (b TCPHeader) DstPort() uint16 { return binary.BigEndian.Uint16(b[tcpDstPort:]) }

// Seq returns the sequence number.
func (b TCPHeader) Seq() uint32 { return binary.BigEndian.Uint32(b[tcpSeq:]) }

// Ack returns the acknowledgement number.
func (b TCPHeader) Ack() uint32 { return binary.BigEndian.Uint32(b[tcpAck:]) }

// HeaderLen returns the data offset in bytes.
func (b TCPHeader) HeaderLen() int { return int(b[tcpDataOff]>>4) * 4 }

// Flags returns the flag byte (CWR and ECE included).
func (b TCPHeader) Flags() uint8 { return b[tcpFlags] }

// Window returns the unscaled window field.
func (b TCPHeader) Window() uint16 { return binary.BigEndian.Uint16(b[tcpWindow:]) }

// Checksum returns the checksum field.
func (b TCPHeader) Checksum() uint16 { return binary.BigEndian.Uint16(b[tcpChecksum:]) }

// Timestamp returns the TCP timestamp option (RFC 7323), if the header
// carries one. A malformed option list ends the search.
func (b TCPHeader) Timestamp() (ts Timestamp, ok bool) {
	hl := b.HeaderLen()
	if hl < TCPMinSize || hl > len(b) {
		return Timestamp{}, false
	}
	for opts := b[TCPMinSize:hl]; len(opts) > 0; {
		switch opts[0] {
		case tcpOptEnd:
			return Timestamp{}, false
		case tcpOptNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			return Timestamp{}, false
		}
		if opts[0] == tcpOptTimestamp && opts[1] == tcpOptTimestampLen {
			return Timestamp{Val: binary.BigEndian.Uint32(opts[2:]), Ecr: binary.BigEndian.Uint32(opts[6:])}, true
		}
		opts = opts[opts[1]:]
	}
	return Timestamp{}, false
}

// TCP options.
const (
	tcpOptEnd          = 0
	tcpOptNOP          = 1
	tcpOptTimestamp    = 8
	tcpOptTimestampLen = 10
	// TCPTimestampSize is the option block Linux puts on every segment of a
	// connection that negotiated timestamps: NOP, NOP, then the option.
	TCPTimestampSize = 12
)

// Timestamp is the TCP timestamp option's TSval and TSecr (RFC 7323).
type Timestamp struct{ Val, Ecr uint32 }

// TCPFields are the values Encode writes into a TCP header.
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	// TS, when set, adds NOP NOP TS (TCPTimestampSize bytes) after the
	// fixed header, which must then hold TCPMinSize+TCPTimestampSize bytes.
	TS *Timestamp
}

// Encode writes the header with a zero checksum; see SetChecksum.
func (b TCPHeader) Encode(f TCPFields) {
	binary.BigEndian.PutUint16(b[tcpSrcPort:], f.SrcPort)
	binary.BigEndian.PutUint16(b[tcpDstPort:], f.DstPort)
	binary.BigEndian.PutUint32(b[tcpSeq:], f.Seq)
	binary.BigEndian.PutUint32(b[tcpAck:], f.Ack)
	b[tcpDataOff] = (TCPMinSize / 4) << 4
	if f.TS != nil {
		b[tcpDataOff] = ((TCPMinSize + TCPTimestampSize) / 4) << 4
		o := b[TCPMinSize : TCPMinSize+TCPTimestampSize]
		o[0], o[1], o[2], o[3] = tcpOptNOP, tcpOptNOP, tcpOptTimestamp, tcpOptTimestampLen
		binary.BigEndian.PutUint32(o[4:], f.TS.Val)
		binary.BigEndian.PutUint32(o[8:], f.TS.Ecr)
	}
	b[tcpFlags] = f.Flags
	binary.BigEndian.PutUint16(b[tcpWindow:], f.Window)
	binary.BigEndian.PutUint16(b[tcpChecksum:], 0)
	binary.BigEndian.PutUint16(b[tcpUrgent:], 0)
}

// SetChecksum computes the checksum of the whole segment b over the
// pseudo-header of src and dst (IPv4 or IPv6 by src's form).
func (b TCPHeader) SetChecksum(src, dst netip.Addr) {
	binary.BigEndian.PutUint16(b[tcpChecksum:], 0)
	sum := PseudoHeaderSum(ProtoTCP, src, dst, len(b))
	binary.BigEndian.PutUint16(b[tcpChecksum:], Checksum(b, sum))
}

// ICMPHeader is a view of an ICMP or ICMPv6 header; its accessors assume the
// slice holds at least ICMPHeaderSize bytes.
type ICMPHeader []byte

// Type returns the message type.
func (b ICMPHeader) Type() uint8 { return b[0] }

// Code returns the message code.
func (b ICMPHeader) Code() uint8 { return b[1] }

// Checksum returns the checksum field.
func (b ICMPHeader) Checksum() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// EchoID returns the identifier of an echo request or reply.
func (b ICMPHeader) EchoID() uint16 { return binary.BigEndian.Uint16(b[4:]) }

// EchoSeq returns the sequence number of an echo request or reply.
func (b ICMPHeader) EchoSeq() uint16 { return binary.BigEndian.Uint16(b[6:]) }

// Payload returns what follows the 8-byte header (for an error, the quoted datagram).
func (b ICMPHeader) Payload() []byte { return b[ICMPHeaderSize:] }

// Checksum returns the Internet checksum (RFC 1071) of b, starting from a
// partial sum such as PseudoHeaderSum's. A correct packet sums to zero.
func Checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// PseudoHeaderSum returns the unfolded one's-complement sum of the TCP/UDP/ICMPv6
// pseudo-header: the IPv4 one (RFC 9293) when src is IPv4 or v4-mapped, else
// the IPv6 one (RFC 8200 section 8.1).
func PseudoHeaderSum(proto uint8, src, dst netip.Addr, length int) uint32 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	if src.Unmap().Is4() {
		s, d := src.Unmap().As4(), dst.Unmap().As4()
		add(s[:])
		add(d[:])
		sum += uint32(proto) + uint32(length)
		return sum
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	sum += uint32(length>>16) + uint32(length&0xffff) + uint32(proto)
	return sum
}

// Segment is one TCP segment without payload: what a probe sends.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    uint8
	Window   uint16
	ID       uint16 // IPv4 identification; ignored for IPv6
	// TOS is the IPv4 TOS byte, or the IPv6 traffic class.
	TOS uint8
	// FlowLabel is the IPv6 flow label (low 20 bits); ignored for IPv4.
	FlowLabel uint32
	// TS, when set, adds the timestamp option (NOP NOP TS, as Linux sends it).
	TS *Timestamp
}

// ErrBadAddr is returned when a segment's addresses are invalid or of mixed families.
var ErrBadAddr = errors.New("probe: invalid or mixed-family addresses")

// ipv4Pair reports whether src and dst go over IPv4 (v4-mapped included).
func ipv4Pair(src, dst netip.Addr) (bool, error) {
	if !src.IsValid() || !dst.IsValid() {
		return false, ErrBadAddr
	}
	s4, d4 := src.Unmap().Is4(), dst.Unmap().Is4()
	if s4 != d4 {
		return false, ErrBadAddr
	}
	return s4, nil
}

// SegmentLen returns the on-wire size (IP header included) of an
// option-less segment between src and dst; the timestamp option adds
// TCPTimestampSize.
func SegmentLen(src, dst netip.Addr) int {
	if v4, _ := ipv4Pair(src, dst); v4 {
		return IPv4MinSize + TCPMinSize
	}
	return IPv6Size + TCPMinSize
}

// AppendSegment appends the IP datagram carrying s to buf: IPv4 when both
// addresses are IPv4 or v4-mapped, IPv6 otherwise; checksums included.
func AppendSegment(buf []byte, s Segment) ([]byte, error) {
	v4, err := ipv4Pair(s.Src.Addr(), s.Dst.Addr())
	if err != nil {
		return buf, err
	}
	src, dst := s.Src.Addr().Unmap(), s.Dst.Addr().Unmap()
	start := len(buf)
	ipLen := IPv6Size
	if v4 {
		ipLen = IPv4MinSize
	}
	tcpLen := TCPMinSize
	if s.TS != nil {
		tcpLen += TCPTimestampSize
	}
	buf = append(buf, make([]byte, ipLen+tcpLen)...)
	pkt := buf[start:]
	if v4 {
		IPv4Header(pkt).Encode(IPv4Fields{
			TOS: s.TOS, TotalLen: uint16(ipLen + tcpLen), ID: s.ID, TTL: defaultTTL,
			Protocol: ProtoTCP, Src: src, Dst: dst,
		})
	} else {
		IPv6Header(pkt).Encode(IPv6Fields{
			TrafficClass: s.TOS, FlowLabel: s.FlowLabel,
			PayloadLen: uint16(tcpLen), NextHeader: ProtoTCP, HopLimit: defaultTTL,
			Src: src, Dst: dst,
		})
	}
	tcp := TCPHeader(pkt[ipLen:])
	tcp.Encode(TCPFields{
		SrcPort: s.Src.Port(), DstPort: s.Dst.Port(),
		Seq: s.Seq, Ack: s.Ack, Flags: s.Flags, Window: s.Window, TS: s.TS,
	})
	tcp.SetChecksum(src, dst)
	return buf, nil
}

// AppendEcho appends an ICMP (IPv4) or ICMPv6 echo request from src to dst.
func AppendEcho(buf []byte, src, dst netip.Addr, id, seq uint16) ([]byte, error) {
	v4, err := ipv4Pair(src, dst)
	if err != nil {
		return buf, err
	}
	src, dst = src.Unmap(), dst.Unmap()
	start := len(buf)
	ipLen := IPv6Size
	if v4 {
		ipLen = IPv4MinSize
	}
	buf = append(buf, make([]byte, ipLen+ICMPHeaderSize)...)
	pkt := buf[start:]
	icmp := ICMPHeader(pkt[ipLen:])
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	if v4 {
		IPv4Header(pkt).Encode(IPv4Fields{
			TotalLen: uint16(ipLen + ICMPHeaderSize), ID: id, TTL: defaultTTL,
			Protocol: ProtoICMP, Src: src, Dst: dst,
		})
		icmp[0] = icmpEchoRequest
		binary.BigEndian.PutUint16(icmp[2:], Checksum(icmp, 0))
		return buf, nil
	}
	IPv6Header(pkt).Encode(IPv6Fields{
		PayloadLen: ICMPHeaderSize, NextHeader: ProtoICMPv6, HopLimit: defaultTTL,
		Src: src, Dst: dst,
	})
	icmp[0] = icmpv6EchoRequest
	binary.BigEndian.PutUint16(icmp[2:], Checksum(icmp, PseudoHeaderSum(ProtoICMPv6, src, dst, ICMPHeaderSize)))
	return buf, nil
}

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
}

// errors from ParseReply; callers only need to know the packet is not a reply.
var (
	errShort    = errors.New("probe: packet too short")
	errNotReply = errors.New("probe: not a probe reply")
)

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
			return 0, src, dst, nil, fmt.Errorf("probe: bad IPv4 lengths %d/%d: %w", hl, tl, errShort)
		}
		if ip.FragOffset() != 0 || ip.MoreFragments() {
			return 0, src, dst, nil, fmt.Errorf("probe: IPv4 fragment: %w", errNotReply)
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
				return 0, src, dst, nil, fmt.Errorf("probe: IPv6 fragment: %w", errNotReply)
			}
			break
		}
		if off > end {
			return 0, src, dst, nil, errShort
		}
		return next, ip.Src(), ip.Dst(), pkt[off:end], nil
	}
	return 0, src, dst, nil, fmt.Errorf("probe: IP version %d: %w", pkt[0]>>4, errNotReply)
}

// ParseReply parses an IP datagram (starting at the IP header) captured as a
// possible answer to a probe: a TCP segment carrying ACK or RST, an ICMP or
// ICMPv6 destination unreachable quoting a TCP segment, or an echo reply.
// It checks lengths, never checksums (the kernel already did for delivered packets).
func ParseReply(pkt []byte) (Reply, error) {
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
			return Reply{}, fmt.Errorf("probe: bad TCP data offset %d: %w", hl, errShort)
		}
		r := Reply{
			Src: netip.AddrPortFrom(src, tcp.SrcPort()), Dst: netip.AddrPortFrom(dst, tcp.DstPort()),
			Seq: tcp.Seq(), Ack: tcp.Ack(), Flags: tcp.Flags(), Window: tcp.Window(),
			Payload: len(payload) - hl,
		}
		switch {
		case r.Flags&FlagSYN != 0:
			return Reply{}, fmt.Errorf("probe: SYN segment: %w", errNotReply)
		case r.Flags&FlagRST != 0:
			r.Kind = ReplyRST
		case r.Flags&FlagACK != 0:
			r.Kind = ReplyACK
		default:
			return Reply{}, fmt.Errorf("probe: segment without ACK or RST: %w", errNotReply)
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
			return Reply{}, fmt.Errorf("probe: ICMP type %d: %w", icmp.Type(), errNotReply)
		}
		qproto, qsrc, qdst, quoted, err := ipPayload(icmp.Payload(), true)
		if err != nil {
			return Reply{}, fmt.Errorf("probe: quoted datagram: %w", err)
		}
		if qproto != ProtoTCP || qsrc.Is6() != v6 {
			return Reply{}, fmt.Errorf("probe: quoted protocol %d: %w", qproto, errNotReply)
		}
		// RFC 792 promises 8 bytes of the quoted segment: ports and sequence number.
		if len(quoted) < 8 {
			return Reply{}, fmt.Errorf("probe: quoted segment: %w", errShort)
		}
		tcp := TCPHeader(quoted)
		r.Kind = ReplyUnreachable
		r.Src = netip.AddrPortFrom(qsrc, tcp.SrcPort())
		r.Dst = netip.AddrPortFrom(qdst, tcp.DstPort())
		r.Seq = tcp.Seq()
		if len(quoted) >= TCPMinSize {
			r.Ack, r.Flags, r.Window = tcp.Ack(), tcp.Flags(), tcp.Window()
		}
		return r, nil
	}
	return Reply{}, fmt.Errorf("probe: protocol %d: %w", proto, errNotReply)
}
