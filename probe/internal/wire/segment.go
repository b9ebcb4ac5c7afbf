package wire

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

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

// ErrBadAddr is returned when a packet's addresses are invalid or of mixed families.
var ErrBadAddr = errors.New("wire: invalid or mixed-family addresses")

var errTooLong = errors.New("wire: packet longer than 65535 bytes")

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
	typ := uint8(icmpv6EchoRequest)
	if src.Unmap().Is4() {
		typ = icmpEchoRequest
	}
	return appendICMP(buf, src, dst, id, typ, 0, uint32(id)<<16|uint32(seq), nil)
}

// AppendICMPError appends an ICMP (IPv4) or ICMPv6 error of the given type
// and code from router to dst, quoting quoted (the start of the datagram
// it complains about): what a router on the path sends.
func AppendICMPError(buf []byte, router, dst netip.Addr, typ, code uint8, quoted []byte) ([]byte, error) {
	return appendICMP(buf, router, dst, 0, typ, code, 0, quoted)
}

// appendICMP appends an ICMP (IPv4) or ICMPv6 message: the 8-byte header
// (type, code, checksum, then rest) and body; id is the IPv4 identification.
func appendICMP(buf []byte, src, dst netip.Addr, id uint16, typ, code uint8, rest uint32, body []byte) ([]byte, error) {
	v4, err := ipv4Pair(src, dst)
	if err != nil {
		return buf, err
	}
	src, dst = src.Unmap(), dst.Unmap()
	ipLen := IPv6Size
	if v4 {
		ipLen = IPv4MinSize
	}
	icmpLen := ICMPHeaderSize + len(body)
	if ipLen+icmpLen > 0xffff {
		return buf, errTooLong
	}
	start := len(buf)
	buf = append(buf, make([]byte, ipLen+ICMPHeaderSize)...)
	buf = append(buf, body...)
	pkt := buf[start:]
	icmp := ICMPHeader(pkt[ipLen:])
	icmp[0], icmp[1] = typ, code
	binary.BigEndian.PutUint32(icmp[4:], rest)
	if v4 {
		IPv4Header(pkt).Encode(IPv4Fields{
			TotalLen: uint16(ipLen + icmpLen), ID: id, TTL: defaultTTL,
			Protocol: ProtoICMP, Src: src, Dst: dst,
		})
		binary.BigEndian.PutUint16(icmp[2:], Checksum(icmp, 0))
		return buf, nil
	}
	IPv6Header(pkt).Encode(IPv6Fields{
		PayloadLen: uint16(icmpLen), NextHeader: ProtoICMPv6, HopLimit: defaultTTL,
		Src: src, Dst: dst,
	})
	binary.BigEndian.PutUint16(icmp[2:], Checksum(icmp, PseudoHeaderSum(ProtoICMPv6, src, dst, icmpLen)))
	return buf, nil
}
