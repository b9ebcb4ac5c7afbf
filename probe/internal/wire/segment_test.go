package wire

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

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
			wantLen := IPv6Size + TCPMinSize
			if tt.seg.Src.Addr().Unmap().Is4() {
				wantLen = IPv4MinSize + TCPMinSize
			}
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
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	if _, err := AppendICMPError(nil, v4, v6, 3, 1, nil); !errors.Is(err, ErrBadAddr) {
		t.Errorf("AppendICMPError across families: error = %v, want ErrBadAddr", err)
	}
	if b, err := AppendICMPError([]byte{1}, v4, v4, 3, 1, make([]byte, 0xffff)); err == nil || len(b) != 1 {
		t.Errorf("AppendICMPError quoting 65535 bytes: %d bytes, error %v; want the buffer untouched and an error", len(b), err)
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
