package wire

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

func TestReplyFilter(t *testing.T) {
	prog, err := ReplyFilter(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReplyFilter(true, nil); err != nil {
		t.Fatal(err)
	}
	// The same packets through a filter restricted to local ports 80 and 443.
	prog, err = ReplyFilter(false, []uint16{443, 80, 80})
	if err != nil {
		t.Fatal(err)
	}
	portVM, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	many := make([]uint16, MaxFilterPorts+1)
	for i := range many {
		many[i] = uint16(1000 + i)
	}
	prog, err = ReplyFilter(false, many)
	if err != nil {
		t.Fatal(err)
	}
	manyVM, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	probe4 := tcpPacket(t, "192.0.2.1:80", "198.51.100.2:40000", 99, 1000, FlagACK, 0)
	probe6 := tcpPacket(t, "[2001:db8::1]:80", "[2001:db8::2]:40000", 99, 1000, FlagACK, 0)
	echo4, _ := AppendEcho(nil, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), 1, 2)
	echo4[IPv4MinSize] = icmpEchoReply
	req6, _ := AppendEcho(nil, netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1"), 1, 2)
	rep6 := append([]byte{}, req6...)
	rep6[IPv6Size] = icmpv6EchoReply
	frag := tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK, 0)
	binary.BigEndian.PutUint16(frag[6:], ipv4FlagMoreFrags)
	tests := []struct {
		name string
		pkt  []byte
		keep bool
	}{
		{"v4 pure ACK", tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK, 0), true},
		{"v6 pure ACK", tcpPacket(t, "[2001:db8::2]:40000", "[2001:db8::1]:80", 1, 2, FlagACK, 0), true},
		{"v4 RST", tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 0, FlagRST, 0), true},
		{"v6 RST|ACK", tcpPacket(t, "[2001:db8::2]:40000", "[2001:db8::1]:80", 1, 2, FlagRST|FlagACK, 0), true},
		{"v4 RST with payload", tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 0, FlagRST, 12), true},
		{"v4 data", tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK|FlagPSH, 100), false},
		{"v6 data", tcpPacket(t, "[2001:db8::2]:40000", "[2001:db8::1]:80", 1, 2, FlagACK, 1), false},
		{"v4 SYN-ACK", tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagACK|FlagSYN, 0), false},
		{"v6 SYN", tcpPacket(t, "[2001:db8::2]:40000", "[2001:db8::1]:80", 1, 0, FlagSYN, 0), false},
		{"v4 FIN without ACK", tcpPacket(t, "198.51.100.2:40000", "192.0.2.1:80", 1, 0, FlagFIN, 0), false},
		{"v4 fragment", frag, false},
		{"icmp unreachable", icmpError(t, "203.0.113.1", "192.0.2.1", 3, 1, probe4, 1000), true},
		{"icmp time exceeded", icmpError(t, "203.0.113.1", "192.0.2.1", 11, 0, probe4, 1000), false},
		{"icmpv6 unreachable", icmpError(t, "2001:db8:ff::1", "2001:db8::1", 1, 4, probe6, 1000), true},
		{"icmpv6 packet too big", icmpError(t, "2001:db8:ff::1", "2001:db8::1", 2, 0, probe6, 1000), false},
		{"icmp echo reply", echo4, true},
		{"icmpv6 echo reply", rep6, true},
		{"icmpv6 echo request", req6, false},
		{"not IP", []byte{0x20, 1, 2, 3}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := vm.Run(tt.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if got := n > 0; got != tt.keep {
				t.Errorf("kept = %v (%d bytes), want %v", got, n, tt.keep)
			}
			snap := SnapTCP
			if tt.pkt[0]>>4 == 4 && tt.pkt[ipv4Protocol] == ProtoICMP || tt.pkt[0]>>4 == 6 && tt.pkt[ipv6NextHeader] == ProtoICMPv6 {
				snap = SnapICMP
			}
			if n > snap {
				t.Errorf("kept %d bytes, snap is %d", n, snap)
			}
			// Too many ports: no port check, same answer.
			if m, _ := manyVM.Run(tt.pkt); (m > 0) != tt.keep {
				t.Errorf("without port check: kept = %v, want %v", m > 0, tt.keep)
			}
			// Every TCP packet above goes to port 80: same answer.
			if m, _ := portVM.Run(tt.pkt); (m > 0) != tt.keep {
				t.Errorf("with ports 80,443: kept = %v, want %v", m > 0, tt.keep)
			}
			// Moved to another port, a TCP segment is dropped; ICMP is not.
			if len(tt.pkt) > 0 && tt.pkt[0]>>4 == 4 && tt.pkt[ipv4Protocol] == ProtoTCP || len(tt.pkt) > IPv6Size && tt.pkt[0]>>4 == 6 && tt.pkt[ipv6NextHeader] == ProtoTCP {
				other := append([]byte{}, tt.pkt...)
				off := IPv6Size
				if other[0]>>4 == 4 {
					off = IPv4Header(other).HeaderLen()
				}
				binary.BigEndian.PutUint16(other[off+tcpDstPort:], 8080)
				if m, _ := portVM.Run(other); m > 0 {
					t.Errorf("segment to port 8080 kept by a filter for 80,443")
				}
			}
		})
	}
}
