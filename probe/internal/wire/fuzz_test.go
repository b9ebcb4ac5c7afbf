package wire

import (
	"errors"
	"net/netip"
	"testing"
)

// FuzzParseReply feeds arbitrary datagrams to the reply parser. Invariants:
// it never panics; an error comes with a zero Reply; a TCP reply has the flag
// its kind claims and no SYN, and addresses of one family; an unreachable
// names the ICMP sender and a quoted 4-tuple of that same family.
func FuzzParseReply(f *testing.F) {
	probe4 := tcpPacket(f, "192.0.2.1:80", "198.51.100.2:40000", 99, 1000, FlagACK, 0)
	probe6 := tcpPacket(f, "[2001:db8::1]:80", "[2001:db8::2]:40000", 99, 1000, FlagACK, 0)
	f.Add(probe4)
	f.Add(probe6)
	f.Add(tcpPacket(f, "198.51.100.2:40000", "192.0.2.1:80", 1, 2, FlagRST, 0))
	f.Add(icmpError(f, "203.0.113.1", "192.0.2.1", 3, 1, probe4, 28))
	f.Add(icmpError(f, "2001:db8:ff::1", "2001:db8::1", 1, 4, probe6, 1000))
	echo, _ := AppendEcho(nil, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), 1, 2)
	f.Add(echo)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := ParseReply(pkt)
		if err != nil {
			if r != (Reply{}) {
				t.Fatalf("error %v with non-zero reply %+v", err, r)
			}
			return
		}
		sameFamily := func(a, b netip.AddrPort) bool {
			return a.Addr().IsValid() && b.Addr().IsValid() && a.Addr().Is4() == b.Addr().Is4()
		}
		switch r.Kind {
		case ReplyACK:
			if r.Flags&FlagACK == 0 || r.Flags&(FlagRST|FlagSYN) != 0 || !sameFamily(r.Src, r.Dst) || r.Payload < 0 {
				t.Fatalf("bad ACK reply %+v", r)
			}
		case ReplyRST:
			if r.Flags&FlagRST == 0 || r.Flags&FlagSYN != 0 || !sameFamily(r.Src, r.Dst) {
				t.Fatalf("bad RST reply %+v", r)
			}
		case ReplyUnreachable:
			if !r.From.IsValid() || !sameFamily(r.Src, r.Dst) || r.From.Is4() != r.Src.Addr().Is4() {
				t.Fatalf("bad unreachable %+v", r)
			}
		case ReplyEcho:
			if !r.From.IsValid() {
				t.Fatalf("bad echo %+v", r)
			}
		default:
			t.Fatalf("no error and kind %v", r.Kind)
		}
	})
}

// FuzzSegmentRoundTrip checks that every segment AppendSegment builds parses
// back to the same fields (TOS or traffic class, flow label and timestamp
// option included) and carries checksums that verify.
func FuzzSegmentRoundTrip(f *testing.F) {
	f.Add([]byte{192, 0, 2, 1}, []byte{198, 51, 100, 2}, uint16(80), uint16(40000), uint32(1), uint32(2), uint8(FlagACK), uint16(512),
		uint8(0), uint32(0), false, uint32(0), uint32(0))
	f.Add(make([]byte, 16), make([]byte, 16), uint16(1), uint16(2), uint32(3), uint32(4), uint8(FlagRST), uint16(0),
		uint8(0x28), uint32(0xfffff), true, uint32(5), uint32(6))
	f.Add([]byte{192, 0, 2, 1}, []byte{198, 51, 100, 2}, uint16(80), uint16(40000), uint32(1), uint32(2), uint8(FlagACK), uint16(512),
		uint8(0xb8), uint32(1), true, ^uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, src, dst []byte, sp, dp uint16, seq, ack uint32, flags uint8, win uint16,
		tos uint8, label uint32, hasTS bool, tsval, tsecr uint32) {
		s, ok1 := netip.AddrFromSlice(src)
		d, ok2 := netip.AddrFromSlice(dst)
		seg := Segment{Src: netip.AddrPortFrom(s, sp), Dst: netip.AddrPortFrom(d, dp), Seq: seq, Ack: ack, Flags: flags, Window: win,
			TOS: tos, FlowLabel: label}
		if hasTS {
			seg.TS = &Timestamp{Val: tsval, Ecr: tsecr}
		}
		pkt, err := AppendSegment(nil, seg)
		if !ok1 || !ok2 || s.Unmap().Is4() != d.Unmap().Is4() {
			if !errors.Is(err, ErrBadAddr) {
				t.Fatalf("bad addresses accepted: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		ipLen := IPv6Size
		if pkt[0]>>4 == 4 {
			ipLen = IPv4MinSize
		}
		if Checksum(pkt[ipLen:], PseudoHeaderSum(ProtoTCP, s.Unmap(), d.Unmap(), len(pkt)-ipLen)) != 0 {
			t.Fatal("TCP checksum does not verify")
		}
		if ipLen == IPv4MinSize {
			if ip := IPv4Header(pkt); ip.TOS() != tos || ip.TotalLen() != len(pkt) || Checksum(pkt[:ipLen], 0) != 0 {
				t.Fatalf("IPv4 header: tos %#x len %d of %d", ip.TOS(), ip.TotalLen(), len(pkt))
			}
		} else if ip := IPv6Header(pkt); ip.TrafficClass() != tos || ip.FlowLabel() != label&0xfffff || ip.PayloadLen() != len(pkt)-ipLen {
			t.Fatalf("IPv6 header: class %#x label %#x payload %d of %d", ip.TrafficClass(), ip.FlowLabel(), ip.PayloadLen(), len(pkt))
		}
		tcp := TCPHeader(pkt[ipLen:])
		ts, ok := tcp.Timestamp()
		if ok != hasTS || (hasTS && ts != *seg.TS) || tcp.HeaderLen() != len(tcp) {
			t.Fatalf("timestamp option %v %+v, header %d of %d bytes; sent %+v", ok, ts, tcp.HeaderLen(), len(tcp), seg.TS)
		}
		r, err := ParseReply(pkt)
		if flags&FlagSYN != 0 || flags&(FlagACK|FlagRST) == 0 {
			if err == nil {
				t.Fatalf("segment with flags %#x parsed as a reply", flags)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Src != netip.AddrPortFrom(s.Unmap(), sp) || r.Dst != netip.AddrPortFrom(d.Unmap(), dp) ||
			r.Seq != seq || r.Ack != ack || r.Flags != flags || r.Window != win || r.Payload != 0 {
			t.Fatalf("round trip: sent %+v, parsed %+v", seg, r)
		}
	})
}

// FuzzTCPTimestamp: Timestamp never panics on any header bytes, and finds
// an option only inside the declared header length.
func FuzzTCPTimestamp(f *testing.F) {
	hdr := func(opts ...byte) []byte {
		b := make([]byte, TCPMinSize, TCPMinSize+len(opts))
		b[tcpDataOff] = byte((TCPMinSize+len(opts))/4) << 4
		return append(b, opts...)
	}
	f.Add(hdr(1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2))
	f.Add(hdr(2, 4, 5, 0xb4, 1, 3, 3, 7, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0))
	f.Add(hdr(8, 0, 0, 0))
	f.Add(hdr(0, 8, 10, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < TCPMinSize {
			return
		}
		ts, ok := TCPHeader(b).Timestamp()
		if !ok {
			if ts != (Timestamp{}) {
				t.Fatalf("no option but %+v", ts)
			}
			return
		}
		if hl := TCPHeader(b).HeaderLen(); hl < TCPMinSize+tcpOptTimestampLen || hl > len(b) {
			t.Fatalf("option found in a %d-byte header of %d bytes", hl, len(b))
		}
	})
}
