package probe

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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

func TestAppendSegment(t *testing.T) {
	tests := []struct {
		name string
		seg  Segment
		want string
	}{{
		name: "ipv4",
		seg: Segment{
			Src: netip.MustParseAddrPort("192.0.2.1:80"), Dst: netip.MustParseAddrPort("198.51.100.2:40000"),
			Seq: 0x01020304, Ack: 0xa0b0c0d0, Flags: FlagACK, Window: 512, ID: 0x1234,
		},
		want: "4500 0028 1234 4000 4006 XXXX c000 0201 c633 6402" +
			"0050 9c40 0102 0304 a0b0 c0d0 5010 0200 YYYY 0000",
	}, {
		name: "v4-mapped goes over IPv4",
		seg: Segment{
			Src: netip.MustParseAddrPort("[::ffff:192.0.2.1]:80"), Dst: netip.MustParseAddrPort("[::ffff:198.51.100.2]:40000"),
			Seq: 0x01020304, Ack: 0xa0b0c0d0, Flags: FlagACK, Window: 512, ID: 0x1234,
		},
		want: "4500 0028 1234 4000 4006 XXXX c000 0201 c633 6402" +
			"0050 9c40 0102 0304 a0b0 c0d0 5010 0200 YYYY 0000",
	}, {
		name: "ipv6",
		seg: Segment{
			Src: netip.MustParseAddrPort("[2001:db8::1]:443"), Dst: netip.MustParseAddrPort("[2001:db8::2]:50000"),
			Seq: 7, Ack: 9, Flags: FlagACK, Window: 65535,
		},
		want: "6000 0000 0014 0640 2001 0db8 0000 0000 0000 0000 0000 0001 2001 0db8 0000 0000 0000 0000 0000 0002" +
			"01bb c350 0000 0007 0000 0009 5010 ffff YYYY 0000",
	}, {
		name: "ipv4 with TOS and timestamps",
		seg: Segment{
			Src: netip.MustParseAddrPort("192.0.2.1:80"), Dst: netip.MustParseAddrPort("198.51.100.2:40000"),
			Seq: 0x01020304, Ack: 0xa0b0c0d0, Flags: FlagACK, Window: 512, ID: 0x1234, TOS: 0xb8,
			FlowLabel: 0xfffff, // ignored for IPv4
			TS:        &Timestamp{Val: 0x11223344, Ecr: 0xaabbccdd},
		},
		want: "45b8 0034 1234 4000 4006 XXXX c000 0201 c633 6402" +
			"0050 9c40 0102 0304 a0b0 c0d0 8010 0200 YYYY 0000" +
			"0101 080a 1122 3344 aabb ccdd",
	}, {
		name: "ipv6 with traffic class, flow label and timestamps",
		seg: Segment{
			Src: netip.MustParseAddrPort("[2001:db8::1]:443"), Dst: netip.MustParseAddrPort("[2001:db8::2]:50000"),
			Seq: 7, Ack: 9, Flags: FlagACK, Window: 65535, TOS: 0x28, FlowLabel: 0xfabcde12,
			TS: &Timestamp{Val: 1, Ecr: 0xffffffff},
		},
		want: "628c de12 0020 0640 2001 0db8 0000 0000 0000 0000 0000 0001 2001 0db8 0000 0000 0000 0000 0000 0002" +
			"01bb c350 0000 0007 0000 0009 8010 ffff YYYY 0000" +
			"0101 080a 0000 0001 ffff ffff",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendSegment([]byte{0xee}, tt.seg)
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != 0xee {
				t.Fatal("AppendSegment overwrote the prefix")
			}
			got = got[1:]
			wantLen := SegmentLen(tt.seg.Src.Addr(), tt.seg.Dst.Addr())
			if tt.seg.TS != nil {
				wantLen += TCPTimestampSize
			}
			if len(got) != wantLen {
				t.Errorf("len = %d, want %d", len(got), wantLen)
			}
			// Compare everything but the checksums, then verify those.
			w := strings.Join(strings.Fields(tt.want), "")
			gh := hex.EncodeToString(got)
			for _, ph := range []string{"XXXX", "YYYY"} {
				if i := strings.Index(w, ph); i >= 0 {
					gh = gh[:i] + ph + gh[i+4:]
				}
			}
			if diff := cmp.Diff(w, gh); diff != "" {
				t.Errorf("bytes (-want +got):\n%s", diff)
			}
			ipLen := IPv6Size
			if got[0]>>4 == 4 {
				ipLen = IPv4MinSize
				if c := Checksum(got[:ipLen], 0); c != 0 {
					t.Errorf("IPv4 header checksum does not verify: %#04x", c)
				}
			}
			src, dst := tt.seg.Src.Addr().Unmap(), tt.seg.Dst.Addr().Unmap()
			if c := Checksum(got[ipLen:], PseudoHeaderSum(ProtoTCP, src, dst, len(got)-ipLen)); c != 0 {
				t.Errorf("TCP checksum does not verify: %#04x", c)
			}
			if c := Checksum(append(refPseudo(ProtoTCP, src, dst, len(got)-ipLen), got[ipLen:]...), 0); c != 0 {
				t.Errorf("TCP checksum does not verify against the reference pseudo-header: %#04x", c)
			}
		})
	}
}

func TestTCPTimestamp(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  string // options after the fixed header; the data offset covers them
		want *Timestamp
	}{
		{"none", "", nil},
		{"linux", "0101 080a 0000 0001 0000 0002", &Timestamp{1, 2}},
		{"after mss, sack-ok and wscale", "0204 05b4 0402 080a ffff ffff 0000 0000 0103 0307", &Timestamp{0xffffffff, 0}},
		{"after end of list", "0000 080a 0000 0001 0000 0002", nil},
		{"wrong length", "0101 080b 0000 0001 0000 0002 0000", nil},
		{"truncated", "0101 080a 0000 0001", nil},
		{"zero-length option", "0100 080a 0000 0001 0000 0002", nil},
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
		})
	}
	// A header whose data offset points past the slice has no options to read.
	b := make([]byte, TCPMinSize)
	b[tcpDataOff] = 15 << 4
	if _, ok := TCPHeader(b).Timestamp(); ok {
		t.Error("option found beyond the slice")
	}
}

func TestAppendSegmentErrors(t *testing.T) {
	for _, s := range []Segment{
		{},
		{Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("[2001:db8::1]:1")},
		{Src: netip.MustParseAddrPort("192.0.2.1:1")},
	} {
		if _, err := AppendSegment(nil, s); !errors.Is(err, ErrBadAddr) {
			t.Errorf("AppendSegment(%v) error = %v, want ErrBadAddr", s, err)
		}
	}
}

func TestEchoChecksums(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{{"192.0.2.1", "192.0.2.2"}, {"2001:db8::1", "2001:db8::2"}} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		pkt, err := AppendEcho(nil, src, dst, 0xbeef, 3)
		if err != nil {
			t.Fatal(err)
		}
		if src.Is4() {
			if c := Checksum(pkt[IPv4MinSize:], 0); c != 0 || Checksum(pkt[:IPv4MinSize], 0) != 0 {
				t.Errorf("ICMP checksum does not verify")
			}
			continue
		}
		if c := Checksum(append(refPseudo(ProtoICMPv6, src, dst, ICMPHeaderSize), pkt[IPv6Size:]...), 0); c != 0 {
			t.Errorf("ICMPv6 checksum does not verify: %#04x", c)
		}
	}
}

// reply builds a packet the way a peer or router would send it.
func tcpPacket(t testing.TB, src, dst string, seq, ack uint32, flags uint8, payload int) []byte {
	t.Helper()
	b, err := AppendSegment(nil, Segment{
		Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst),
		Seq: seq, Ack: ack, Flags: flags, Window: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	if payload > 0 {
		b = append(b, make([]byte, payload)...)
		if b[0]>>4 == 4 {
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		} else {
			binary.BigEndian.PutUint16(b[4:], uint16(len(b)-IPv6Size))
		}
	}
	return b
}

// icmpError wraps quoted (truncated to keep bytes) in an ICMP error from router.
func icmpError(t testing.TB, router, to string, typ, code uint8, quoted []byte, keep int) []byte {
	t.Helper()
	r, d := netip.MustParseAddr(router), netip.MustParseAddr(to)
	if keep < len(quoted) {
		quoted = quoted[:keep]
	}
	body := append(make([]byte, ICMPHeaderSize), quoted...)
	body[0], body[1] = typ, code
	var hdr []byte
	if r.Is4() {
		hdr = make([]byte, IPv4MinSize)
		IPv4Header(hdr).Encode(IPv4Fields{TotalLen: uint16(IPv4MinSize + len(body)), TTL: 64, Protocol: ProtoICMP, Src: r, Dst: d})
		binary.BigEndian.PutUint16(body[2:], Checksum(body, 0))
	} else {
		hdr = make([]byte, IPv6Size)
		IPv6Header(hdr).Encode(IPv6Fields{PayloadLen: uint16(len(body)), NextHeader: ProtoICMPv6, HopLimit: 64, Src: r, Dst: d})
		binary.BigEndian.PutUint16(body[2:], Checksum(body, PseudoHeaderSum(ProtoICMPv6, r, d, len(body))))
	}
	return append(hdr, body...)
}

func TestParseReply(t *testing.T) {
	probe4 := tcpPacket(t, "192.0.2.1:80", "198.51.100.2:40000", 99, 1000, FlagACK, 0)
	probe6 := tcpPacket(t, "[2001:db8::1]:80", "[2001:db8::2]:40000", 99, 1000, FlagACK, 0)
	ap := netip.MustParseAddrPort
	tests := []struct {
		name    string
		pkt     []byte
		want    Reply
		wantErr bool
	}{{
		name: "dup ack v4",
		pkt:  tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1000, 100, FlagACK, 0),
		want: Reply{Kind: ReplyACK, Src: ap("198.51.100.2:40000"), Dst: ap("192.0.2.1:80"), Seq: 1000, Ack: 100, Flags: FlagACK, Window: 100},
	}, {
		name: "rst v6",
		pkt:  tcpPacket(t, "[2001:db8::2]:40000", "[2001:db8::1]:80", 1000, 0, FlagRST, 0),
		want: Reply{Kind: ReplyRST, Src: ap("[2001:db8::2]:40000"), Dst: ap("[2001:db8::1]:80"), Seq: 1000, Flags: FlagRST, Window: 100},
	}, {
		name: "data segment keeps its payload length",
		pkt:  tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK|FlagPSH, 10),
		want: Reply{Kind: ReplyACK, Src: ap("198.51.100.2:40000"), Dst: ap("192.0.2.1:80"), Seq: 1, Ack: 2, Flags: FlagACK | FlagPSH, Window: 100, Payload: 10},
	}, {
		name:    "syn-ack is never a reply",
		pkt:     tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK|FlagSYN, 0),
		wantErr: true,
	}, {
		name:    "bare segment",
		pkt:     tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, 0, 0),
		wantErr: true,
	}, {
		name: "icmp unreachable quoting the whole probe",
		pkt:  icmpError(t, "203.0.113.1", "192.0.2.1", 3, 1, probe4, 1000),
		want: Reply{Kind: ReplyUnreachable, Src: ap("192.0.2.1:80"), Dst: ap("198.51.100.2:40000"), Seq: 99, Ack: 1000, Flags: FlagACK, Window: 100,
			From: netip.MustParseAddr("203.0.113.1"), Type: 3, Code: 1},
	}, {
		name: "icmp unreachable quoting 8 bytes (RFC 792 minimum)",
		pkt:  icmpError(t, "203.0.113.1", "192.0.2.1", 3, 13, probe4, IPv4MinSize+8),
		want: Reply{Kind: ReplyUnreachable, Src: ap("192.0.2.1:80"), Dst: ap("198.51.100.2:40000"), Seq: 99,
			From: netip.MustParseAddr("203.0.113.1"), Type: 3, Code: 13},
	}, {
		name:    "icmp quoting 7 bytes",
		pkt:     icmpError(t, "203.0.113.1", "192.0.2.1", 3, 1, probe4, IPv4MinSize+7),
		wantErr: true,
	}, {
		name: "icmpv6 unreachable",
		pkt:  icmpError(t, "2001:db8:ff::1", "2001:db8::1", 1, 4, probe6, 1000),
		want: Reply{Kind: ReplyUnreachable, Src: ap("[2001:db8::1]:80"), Dst: ap("[2001:db8::2]:40000"), Seq: 99, Ack: 1000, Flags: FlagACK, Window: 100,
			From: netip.MustParseAddr("2001:db8:ff::1"), Type: 1, Code: 4},
	}, {
		name:    "icmp time exceeded",
		pkt:     icmpError(t, "203.0.113.1", "192.0.2.1", 11, 0, probe4, 1000),
		wantErr: true,
	}, {
		name:    "icmpv6 type in an IPv4 packet",
		pkt:     icmpError(t, "203.0.113.1", "192.0.2.1", 1, 0, probe4, 1000),
		wantErr: true,
	}, {
		name:    "icmp quoting IPv6 inside IPv4",
		pkt:     icmpError(t, "203.0.113.1", "192.0.2.1", 3, 1, probe6, 1000),
		wantErr: true,
	}, {
		name:    "truncated",
		pkt:     tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK, 0)[:30],
		wantErr: true,
	}, {
		name:    "empty",
		wantErr: true,
	}}
	// An echo reply.
	echo, _ := AppendEcho(nil, netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1"), 7, 8)
	echo[IPv6Size] = icmpv6EchoReply
	tests = append(tests, struct {
		name    string
		pkt     []byte
		want    Reply
		wantErr bool
	}{name: "echo reply v6", pkt: echo, want: Reply{Kind: ReplyEcho, From: netip.MustParseAddr("2001:db8::2"),
		Dst: ap("[2001:db8::1]:0"), Type: icmpv6EchoReply, EchoID: 7, EchoSeq: 8}})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReply(tt.pkt)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseReplyIPv6ExtensionHeaders(t *testing.T) {
	seg := tcpPacket(t, "[2001:db8::2]:40000", "[2001:db8::1]:80", 5, 6, FlagACK, 0)
	// Insert an 8-byte hop-by-hop header (PadN) before TCP.
	hbh := []byte{ProtoTCP, 0, 1, 4, 0, 0, 0, 0}
	pkt := append(append(append([]byte{}, seg[:IPv6Size]...), hbh...), seg[IPv6Size:]...)
	pkt[6] = ipv6ExtHopByHop
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-IPv6Size))
	got, err := ParseReply(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != ReplyACK || got.Seq != 5 || got.Ack != 6 {
		t.Errorf("got %+v", got)
	}
	pkt[6] = ipv6ExtFragment
	if _, err := ParseReply(pkt); err == nil {
		t.Error("fragment parsed without error")
	}
}

func TestParseReplyRefusesIPv4Fragments(t *testing.T) {
	pkt := tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK, 0)
	binary.BigEndian.PutUint16(pkt[6:], ipv4FlagMoreFrags)
	if _, err := ParseReply(pkt); err == nil {
		t.Error("fragment parsed without error")
	}
}
