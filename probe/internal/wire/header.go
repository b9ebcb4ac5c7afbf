package wire

import (
	"encoding/binary"
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
	o := b.option(tcpOptTimestamp, tcpOptTimestampLen)
	if o == nil {
		return Timestamp{}, false
	}
	return Timestamp{Val: binary.BigEndian.Uint32(o[2:]), Ecr: binary.BigEndian.Uint32(o[6:])}, true
}

// WScale returns the window scale option's shift count (RFC 7323), which
// only SYN segments carry. A malformed option list ends the search.
func (b TCPHeader) WScale() (shift uint8, ok bool) {
	o := b.option(tcpOptWScale, tcpOptWScaleLen)
	if o == nil {
		return 0, false
	}
	return o[2], true
}

// option returns the first option of the given kind and length, or nil.
func (b TCPHeader) option(kind, length uint8) []byte {
	hl := b.HeaderLen()
	if hl < TCPMinSize || hl > len(b) {
		return nil
	}
	for opts := b[TCPMinSize:hl]; len(opts) > 0; {
		switch opts[0] {
		case tcpOptEnd:
			return nil
		case tcpOptNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			return nil
		}
		if opts[0] == kind && opts[1] == length {
			return opts[:length]
		}
		opts = opts[opts[1]:]
	}
	return nil
}

// TCP options.
const (
	tcpOptEnd          = 0
	tcpOptNOP          = 1
	tcpOptWScale       = 3
	tcpOptWScaleLen    = 3
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
