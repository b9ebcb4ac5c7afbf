package wire

import (
	"net/netip"
)

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
	if s4, d4 := src.Unmap(), dst.Unmap(); s4.Is4() && d4.Is4() {
		s, d := s4.As4(), d4.As4()
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

// VerifyChecksums reports whether a captured datagram is whole and its
// checksums verify: the IPv4 header checksum always, and the TCP, ICMP or
// ICMPv6 checksum unless l4Trusted (the kernel already checked it, or the
// datagram was built by a local stack that leaves it to offload: such a
// checksum field holds only the pseudo-header sum). A truncated datagram
// cannot be verified and fails. The kernel drops what fails here before any
// socket sees it, so must ghostd.
func VerifyChecksums(pkt []byte, l4Trusted bool) bool {
	proto, src, dst, payload, err := ipPayload(pkt, false)
	if err != nil {
		return false
	}
	// RFC 4291 2.5.5.2: the kernel drops an IPv6 datagram from a v4-mapped
	// source (ip6_rcv_core), so must ghostd.
	if src.Is4In6() {
		return false
	}
	if src.Is4() && Checksum(pkt[:IPv4Header(pkt).HeaderLen()], 0) != 0 {
		return false
	}
	if l4Trusted {
		return true
	}
	switch {
	case proto == ProtoTCP:
		return Checksum(payload, PseudoHeaderSum(ProtoTCP, src, dst, len(payload))) == 0
	case proto == ProtoICMP && src.Is4():
		return Checksum(payload, 0) == 0
	case proto == ProtoICMPv6 && src.Is6():
		return Checksum(payload, PseudoHeaderSum(ProtoICMPv6, src, dst, len(payload))) == 0
	}
	return false
}
