package addrpack

import (
	"net/netip"
	"testing"
)

// TestRoundTrip: every kind of address comes back as it went in (v4-mapped
// IPv6 stays IPv6), and a pair's kinds come back apart whatever the byte's
// higher bits hold.
func TestRoundTrip(t *testing.T) {
	for _, c := range []struct {
		in   string
		kind uint8
	}{
		{"", Invalid},
		{"192.0.2.7", IPv4},
		{"2001:db8::1", IPv6},
		{"::ffff:198.51.100.2", IPv6},
		{"0.0.0.0", IPv4},
	} {
		var a netip.Addr
		if c.in != "" {
			a = netip.MustParseAddr(c.in)
		}
		b, kind := Pack(a)
		if kind != c.kind {
			t.Errorf("%q: kind %d, want %d", c.in, kind, c.kind)
		}
		if got := Unpack(b, kind); got != a {
			t.Errorf("%q: unpacked as %v", c.in, got)
		}
	}
	p := Pair(IPv6, IPv4) | 1<<PairBits
	if Local(p) != IPv6 || Remote(p) != IPv4 {
		t.Errorf("Pair(IPv6, IPv4) with a flag above: local %d, remote %d", Local(p), Remote(p))
	}
}
