package wire

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChecksumVectors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint16
	}{
		// RFC 1071 section 3: the sum of these bytes is ddf2, so the checksum is its complement.
		{"rfc1071", "0001 f203 f4f5 f6f7", ^uint16(0xddf2)},
		// The IPv4 header example from Wikipedia's "IPv4 header checksum" article, checksum zeroed.
		{"ipv4 header", "4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7", 0xb861},
		// Odd length pads with a zero byte.
		{"odd", "01", ^uint16(0x0100)},
		{"empty", "", 0xffff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Checksum(unhex(t, tt.in), 0); got != tt.want {
				t.Errorf("Checksum = %#04x, want %#04x", got, tt.want)
			}
		})
	}
	// A header carrying its checksum sums to zero.
	if got := Checksum(unhex(t, "4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7"), 0); got != 0 {
		t.Errorf("verify = %#04x, want 0", got)
	}
}

// refPseudo sums a pseudo-header built byte by byte as the RFCs draw it.
func refPseudo(proto uint8, src, dst netip.Addr, length int) []byte {
	var b []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		b = append(append(b, s[:]...), d[:]...)
		b = append(b, 0, proto, byte(length>>8), byte(length))
		return b
	}
	s, d := src.As16(), dst.As16()
	b = append(append(b, s[:]...), d[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(length))
	return append(b, 0, 0, 0, proto)
}

func TestPseudoHeaderSum(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"192.0.2.1", "198.51.100.7"},
		{"2001:db8::1", "2001:db8:ffff::abcd"},
	} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		for _, n := range []int{20, 1500, 65535, 70000} {
			if src.Is4() && n > 65535 {
				continue // IPv4 lengths are 16 bits
			}
			want := Checksum(refPseudo(ProtoTCP, src, dst, n), 0)
			if got := Checksum(nil, PseudoHeaderSum(ProtoTCP, src, dst, n)); got != want {
				t.Errorf("%s→%s len %d: %#04x, want %#04x", src, dst, n, got, want)
			}
		}
	}
}

func TestTCPOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hdr    string // options after the fixed header; the data offset covers them
		want   *Timestamp
		wscale int // -1: none
	}{
		{"none", "", nil, -1},
		{"linux", "0101 080a 0000 0001 0000 0002", &Timestamp{1, 2}, -1},
		{"after mss, sack-ok and wscale", "0204 05b4 0402 080a ffff ffff 0000 0000 0103 0307", &Timestamp{0xffffffff, 0}, 7},
		{"linux syn", "0204 ffd7 0402 080a 0000 0001 0000 0000 0103 030e", &Timestamp{1, 0}, 14},
		{"after end of list", "0000 080a 0000 0001 0000 0002 0303 07", nil, -1},
		{"wrong length", "0101 080b 0000 0001 0000 0002 0000", nil, -1},
		{"wscale of wrong length", "0304 0700", nil, -1},
		{"truncated", "0101 080a 0000 0001", nil, -1},
		{"zero-length option", "0100 080a 0000 0001 0000 0002", nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := unhex(t, tc.hdr)
			b := make([]byte, TCPMinSize, TCPMinSize+len(opts))
			b[tcpDataOff] = byte((TCPMinSize+len(opts)+3)/4) << 4
			b = append(b, opts...)
			for len(b) < TCPHeader(b).HeaderLen() {
				b = append(b, 0)
			}
			ts, ok := TCPHeader(b).Timestamp()
			if ok != (tc.want != nil) || (ok && ts != *tc.want) {
				t.Errorf("Timestamp() = %+v, %v; want %+v", ts, ok, tc.want)
			}
			shift, ok := TCPHeader(b).WScale()
			if ok != (tc.wscale >= 0) || (ok && int(shift) != tc.wscale) {
				t.Errorf("WScale() = %d, %v; want %d", shift, ok, tc.wscale)
			}
		})
	}
	// A header whose data offset points past the slice has no options to read.
	b := make([]byte, TCPMinSize)
	b[tcpDataOff] = 15 << 4
	if _, ok := TCPHeader(b).Timestamp(); ok {
		t.Error("option found beyond the slice")
	}
}
