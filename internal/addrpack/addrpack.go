package addrpack

import "net/netip"

// Address kinds: KindBits bits each, so that a connection's two fit in the
// low bits of one byte (local lowest, see Pair).
const (
	Invalid = iota // the zero netip.Addr
	IPv4
	IPv6     // including v4-mapped IPv6
	KindBits = 2
	KindMask = 1<<KindBits - 1
	// PairBits is how many low bits of a byte Pair uses.
	PairBits = 2 * KindBits
)

// Pack returns a's 16-byte form (As16) and its kind. A zone is lost:
// sockets have none.
func Pack(a netip.Addr) (b [16]byte, kind uint8) {
	switch {
	case a.Is4():
		kind = IPv4
	case a.Is6():
		kind = IPv6
	default:
		return b, Invalid
	}
	return a.As16(), kind
}

// Unpack is the inverse of Pack.
func Unpack(b [16]byte, kind uint8) netip.Addr {
	switch kind {
	case IPv4:
		return netip.AddrFrom4([4]byte(b[12:]))
	case IPv6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// Pair packs a local and a remote kind into the low PairBits bits of a byte.
func Pair(local, remote uint8) uint8 { return local | remote<<KindBits }

// Local and Remote return the kinds Pair packed into p (its higher bits are
// ignored).
func Local(p uint8) uint8  { return p & KindMask }
func Remote(p uint8) uint8 { return p >> KindBits & KindMask }
