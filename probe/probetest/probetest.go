package probetest

import (
	"net/netip"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

// Segment is one TCP segment without payload.
type Segment = wire.Segment

// TCP flags.
const (
	FlagRST = wire.FlagRST
	FlagACK = wire.FlagACK
)

// TCPMinSize is the size of a TCP header without options.
const TCPMinSize = wire.TCPMinSize

// AppendSegment appends the IP datagram carrying s to buf, checksums
// included: IPv4 when both addresses are IPv4 or v4-mapped, IPv6 otherwise.
func AppendSegment(buf []byte, s Segment) ([]byte, error) { return wire.AppendSegment(buf, s) }

// AppendICMPError appends an ICMP (IPv4) or ICMPv6 error of the given type
// and code from router to dst, quoting quoted.
func AppendICMPError(buf []byte, router, dst netip.Addr, typ, code uint8, quoted []byte) ([]byte, error) {
	return wire.AppendICMPError(buf, router, dst, typ, code, quoted)
}
