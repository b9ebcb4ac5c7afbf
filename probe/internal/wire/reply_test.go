package wire

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tcpPacket is a segment from src to dst with payload zero bytes after
// the header.
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
			binary.BigEndian.PutUint16(b[ipv4TotalLen:], uint16(len(b)))
		} else {
			binary.BigEndian.PutUint16(b[ipv6PayloadLen:], uint16(len(b)-IPv6Size))
		}
	}
	return b
}

// icmpError wraps quoted (truncated to keep bytes) in an ICMP error from router.
func icmpError(t testing.TB, router, to string, typ, code uint8, quoted []byte, keep int) []byte {
	t.Helper()
	b, err := AppendICMPError(nil, netip.MustParseAddr(router), netip.MustParseAddr(to), typ, code, quoted[:min(keep, len(quoted))])
	if err != nil {
		t.Fatal(err)
	}
	return b
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
			From: netip.MustParseAddr("203.0.113.1"), Type: 3, Code: 1, QuotedLen: TCPMinSize},
	}, {
		name: "icmp unreachable quoting 8 bytes (RFC 792 minimum)",
		pkt:  icmpError(t, "203.0.113.1", "192.0.2.1", 3, 13, probe4, IPv4MinSize+8),
		want: Reply{Kind: ReplyUnreachable, Src: ap("192.0.2.1:80"), Dst: ap("198.51.100.2:40000"), Seq: 99,
			From: netip.MustParseAddr("203.0.113.1"), Type: 3, Code: 13, QuotedLen: 8},
	}, {
		name:    "icmp quoting 7 bytes",
		pkt:     icmpError(t, "203.0.113.1", "192.0.2.1", 3, 1, probe4, IPv4MinSize+7),
		wantErr: true,
	}, {
		name: "icmpv6 unreachable",
		pkt:  icmpError(t, "2001:db8:ff::1", "2001:db8::1", 1, 4, probe6, 1000),
		want: Reply{Kind: ReplyUnreachable, Src: ap("[2001:db8::1]:80"), Dst: ap("[2001:db8::2]:40000"), Seq: 99, Ack: 1000, Flags: FlagACK, Window: 100,
			From: netip.MustParseAddr("2001:db8:ff::1"), Type: 1, Code: 4, QuotedLen: TCPMinSize},
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

func TestVerifyChecksums(t *testing.T) {
	ack4 := tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK, 0)
	rst6 := tcpPacket(t, "[2001:db8::2]:40000", "[2001:db8::1]:80", 1, 0, FlagRST, 0)
	probe4 := tcpPacket(t, "192.0.2.1:80", "198.51.100.2:40000", 99, 1000, FlagACK, 0)
	probe6 := tcpPacket(t, "[2001:db8::1]:80", "[2001:db8::2]:40000", 99, 1000, FlagACK, 0)
	icmp4 := icmpError(t, "203.0.113.1", "192.0.2.1", 3, 1, probe4, 1000)
	icmp6 := icmpError(t, "2001:db8:ff::1", "2001:db8::1", 1, 4, probe6, 1000)
	echo, _ := AppendEcho(nil, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), 1, 2)
	flip := func(b []byte, at int) []byte {
		c := append([]byte{}, b...)
		c[at] ^= 0x40
		return c
	}
	// Ethernet pads short frames: bytes after the IP datagram are not part of it.
	padded := append(append([]byte{}, ack4...), 0, 0, 0, 0, 0, 0)
	tests := []struct {
		name    string
		pkt     []byte
		trusted bool
		want    bool
	}{
		{"v4 ACK", ack4, false, true},
		{"v4 ACK with Ethernet padding", padded, false, true},
		{"v6 RST", rst6, false, true},
		{"ICMP error", icmp4, false, true},
		{"ICMPv6 error", icmp6, false, true},
		{"echo request", echo, false, true},
		{"v4 ACK with a bit flipped in its sequence number", flip(ack4, IPv4MinSize+tcpSeq), false, false},
		{"the same, checked by the kernel", flip(ack4, IPv4MinSize+tcpSeq), true, true},
		{"v4 header corrupted", flip(ack4, ipv4TTL), false, false},
		{"v4 header corrupted, transport trusted", flip(ack4, ipv4TTL), true, false},
		{"v6 RST corrupted", flip(rst6, IPv6Size+tcpSeq), false, false},
		{"ICMP error with a changed quote", flip(icmp4, len(icmp4)-1), false, false},
		{"ICMPv6 error with a changed quote", flip(icmp6, len(icmp6)-1), false, false},
		{"truncated", ack4[:len(ack4)-1], true, false},
		{"empty", nil, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyChecksums(tt.pkt, tt.trusted); got != tt.want {
				t.Errorf("VerifyChecksums = %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzVerifyChecksums: never panics; whatever verifies is a whole datagram
// that ParseReply can at least read the IP header of.
func FuzzVerifyChecksums(f *testing.F) {
	f.Add(tcpPacket(f, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK, 0), false)
	f.Add(tcpPacket(f, "[2001:db8::2]:40000", "[2001:db8::1]:80", 1, 0, FlagRST, 0), true)
	f.Fuzz(func(t *testing.T, pkt []byte, trusted bool) {
		if VerifyChecksums(pkt, trusted) {
			if _, _, _, _, err := ipPayload(pkt, false); err != nil {
				t.Fatalf("verified a datagram ipPayload refuses: %v", err)
			}
		}
	})
}
