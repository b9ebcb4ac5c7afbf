package probe

import (
	"net/netip"
	"testing"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

func TestAccept(t *testing.T) {
	// The probed socket: SND.UNA = SND.NXT = 5000 (idle), RCV.NXT = 9000.
	st := &SeqState{SndUna: 5000, SndNxt: 5000, RcvNxt: 9000, RcvWnd: 65535}
	busy := &SeqState{SndUna: 5000, SndNxt: 7000, RcvNxt: 9000, RcvWnd: 65535}
	wrap := &SeqState{SndUna: 10, SndNxt: 10, RcvNxt: 0, RcvWnd: 65535} // RCV.NXT-1 wraps
	inWindow := []sentProbe{{seq: 4999, ack: 8999, id: 7}}
	wrapProbe := []sentProbe{{seq: 9, ack: 0xffffffff, id: 7}}
	blind := []sentProbe{{seq: 123456, ack: 654321, id: 9}, {seq: 777, ack: 888, id: 10}}
	rst := func(seq uint32) wire.Reply { return wire.Reply{Kind: wire.ReplyRST, Seq: seq, Flags: wire.FlagRST} }
	ack := func(seq, ack uint32) wire.Reply {
		return wire.Reply{Kind: wire.ReplyACK, Seq: seq, Ack: ack, Flags: wire.FlagACK}
	}
	icmp := func(seq, ack uint32, id uint16, quoted int) wire.Reply {
		r := wire.Reply{Kind: wire.ReplyUnreachable, Seq: seq, QuotedLen: quoted, QuotedID: id}
		if quoted >= wire.TCPMinSize {
			r.Ack = ack
		}
		return r
	}
	tests := []struct {
		name   string
		r      wire.Reply
		probes []sentProbe
		st     *SeqState
		ok     bool
		why    RejectReason
	}{
		// RSTs.
		{"RST at our probe's ACK (peer lost the connection)", rst(8999), inWindow, st, true, 0},
		{"RST at RCV.NXT (peer aborted)", rst(9000), inWindow, st, true, 0},
		{"RST one past RCV.NXT, in the window", rst(9001), inWindow, st, false, RejectRSTSeq},
		{"RST at the window's end", rst(9000 + 65535 - 1), inWindow, st, false, RejectRSTSeq},
		{"RST below RCV.NXT-1", rst(8998), inWindow, st, false, RejectRSTSeq},
		{"RST before any probe was sent", rst(8999), nil, st, false, RejectRSTSeq},
		{"RST at RCV.NXT-1 across the wrap", rst(0xffffffff), wrapProbe, wrap, true, 0},
		{"blind RST at a probe's ACK", rst(888), blind, nil, true, 0},
		{"blind RST elsewhere", rst(889), blind, nil, false, RejectRSTSeq},
		// ACKs.
		{"idle peer's duplicate ACK: seq RCV.NXT, ack SND.NXT", ack(9000, 5000), inWindow, st, true, 0},
		{"busy peer acknowledging part of our data", ack(9000, 6000), inWindow, busy, true, 0},
		{"peer moved on since the read", ack(9000+1<<20, 5000+1<<20), inWindow, st, true, 0},
		{"ACK with seq behind RCV.NXT", ack(8999, 5000), inWindow, st, false, RejectACKSeq},
		{"ACK acknowledging before SND.UNA", ack(9000, 4999), inWindow, st, false, RejectACKSeq},
		{"ACK half the sequence space away", ack(9000+1<<31, 5000), inWindow, st, false, RejectACKSeq},
		{"idle peer's ACK across the wrap", ack(0, 10), wrapProbe, wrap, true, 0},
		{"blind: any ACK", ack(1, 2), blind, nil, true, 0},
		// ICMP errors.
		{"ICMP quoting the probe", icmp(4999, 8999, 7, wire.TCPMinSize), inWindow, st, true, 0},
		{"ICMP quoting 8 bytes of the probe", icmp(4999, 0, 7, 8), inWindow, st, true, 0},
		{"ICMP quoting another sequence number", icmp(5000, 8999, 7, wire.TCPMinSize), inWindow, st, false, RejectICMPQuote},
		{"ICMP quoting another ACK number", icmp(4999, 9000, 7, wire.TCPMinSize), inWindow, st, false, RejectICMPQuote},
		{"ICMP quoting another IPv4 id", icmp(4999, 8999, 8, wire.TCPMinSize), inWindow, st, false, RejectICMPQuote},
		{"blind ICMP quoting the second probe", icmp(777, 888, 10, wire.TCPMinSize), blind, nil, true, 0},
		{"blind ICMP quoting a mix of two probes", icmp(777, 654321, 10, wire.TCPMinSize), blind, nil, false, RejectICMPQuote},
		{"ICMP before any probe", icmp(4999, 8999, 7, wire.TCPMinSize), nil, st, false, RejectICMPQuote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := accept(tt.r, tt.probes, tt.st)
			if ok != tt.ok || (!ok && why != tt.why) {
				t.Errorf("accept = %v, %s; want %v, %s", ok, why, tt.ok, tt.why)
			}
		})
	}
}

// TestAcceptSpray is the property behind the RST rule: of every sequence
// number in the receive window, only the probes' ACK numbers and RCV.NXT
// are taken.
func TestAcceptSpray(t *testing.T) {
	st := &SeqState{SndUna: 5000, SndNxt: 5000, RcvNxt: 0xfffff000, RcvWnd: 1 << 16}
	probes := []sentProbe{{seq: 4999, ack: st.RcvNxt - 1}, {seq: 4999, ack: st.RcvNxt - 1}}
	taken := 0
	for s := st.RcvNxt - 1; s != st.RcvNxt+st.RcvWnd; s++ {
		if ok, _ := accept(wire.Reply{Kind: wire.ReplyRST, Seq: s}, probes, st); ok {
			taken++
		}
	}
	if taken != 2 {
		t.Errorf("%d in-window RST sequence numbers taken, want 2 (RCV.NXT-1 and RCV.NXT)", taken)
	}
}

// FuzzAccept checks accept's invariants on arbitrary replies: a taken RST
// carries one of the probes' ACK numbers or RCV.NXT; a taken ICMP error
// quotes one probe's sequence number and id; a rejection names the rule of
// the reply's kind; accept never panics, with or without probes.
func FuzzAccept(f *testing.F) {
	f.Add(uint8(wire.ReplyRST), uint32(8999), uint32(0), uint16(0), 0, true, uint32(9000), uint32(5000), uint32(4999), uint32(8999), uint16(7))
	f.Add(uint8(wire.ReplyACK), uint32(9000), uint32(5000), uint16(0), 0, true, uint32(9000), uint32(5000), uint32(4999), uint32(8999), uint16(7))
	f.Add(uint8(wire.ReplyUnreachable), uint32(4999), uint32(8999), uint16(7), 20, false, uint32(0), uint32(0), uint32(4999), uint32(8999), uint16(7))
	f.Fuzz(func(t *testing.T, kind uint8, seq, ackN uint32, id uint16, quoted int, inWindow bool, rcvNxt, sndUna, pseq, pack uint32, pid uint16) {
		r := wire.Reply{Kind: wire.ReplyKind(kind % 6), Seq: seq, Ack: ackN, QuotedID: id, QuotedLen: quoted}
		var st *SeqState
		if inWindow {
			st = &SeqState{RcvNxt: rcvNxt, SndUna: sndUna, SndNxt: sndUna + pseq%100} // data in flight: deterministic, so a failure replays
		}
		probes := []sentProbe{{seq: pseq, ack: pack, id: pid}}
		ok, why := accept(r, probes, st)
		switch r.Kind {
		case wire.ReplyRST:
			if ok != (seq == pack || st != nil && seq == st.RcvNxt) || !ok && why != RejectRSTSeq {
				t.Fatalf("RST %+v probes %+v st %+v: %v %s", r, probes, st, ok, why)
			}
		case wire.ReplyUnreachable:
			if ok && (seq != pseq || id != pid) || !ok && why != RejectICMPQuote {
				t.Fatalf("ICMP %+v probes %+v: %v %s", r, probes, ok, why)
			}
		case wire.ReplyACK:
			if st == nil && !ok || !ok && why != RejectACKSeq {
				t.Fatalf("ACK %+v st %+v: %v %s", r, st, ok, why)
			}
		}
		if ok2, _ := accept(r, nil, st); ok2 && (r.Kind == wire.ReplyUnreachable || r.Kind == wire.ReplyRST && (st == nil || seq != st.RcvNxt)) {
			t.Fatalf("%+v taken with no probe sent", r)
		}
	})
}

// TestJunkNeverCrowdsOutAReply floods a watched flow with forged RSTs and
// ICMP errors, more than the probe's queue holds, with nobody reading, then
// delivers the peer's real answer: it must be queued, and the junk counted.
func TestJunkNeverCrowdsOutAReply(t *testing.T) {
	conn := newFakeConn(nil)
	d := newDemux(conn, nil)
	defer d.close()
	local, remote := netip.MustParseAddrPort("192.0.2.1:80"), netip.MustParseAddrPort("198.51.100.2:4000")
	st := &SeqState{SndUna: 5000, SndNxt: 5000, RcvNxt: 9000, RcvWnd: 65535}
	w, stop := d.watch(newFlowKey(local, remote), st)
	defer stop()
	w.sent(sentProbe{seq: 4999, ack: 8999, id: 1})
	const junk = 10 * waiterDepth
	for i := range junk {
		rst, _ := wire.AppendSegment(nil, wire.Segment{Src: remote, Dst: local, Seq: 9001 + uint32(i), Flags: wire.FlagRST})
		d.dispatch(rst)
		quoted, _ := wire.AppendSegment(nil, wire.Segment{Src: local, Dst: remote, Seq: 4999, Ack: 8999, Flags: wire.FlagACK, ID: 2})
		icmp, _ := wire.AppendICMPError(nil, netip.MustParseAddr("203.0.113.1"), local.Addr(), 3, 1, quoted)
		d.dispatch(icmp)
	}
	real, _ := wire.AppendSegment(nil, wire.Segment{Src: remote, Dst: local, Seq: 9000, Ack: 5000, Flags: wire.FlagACK})
	d.dispatch(real)
	if len(w.ch) != 1 {
		t.Fatalf("%d replies queued, want only the real one", len(w.ch))
	}
	if r := <-w.ch; r.kind != wire.ReplyACK || r.seq != 9000 || r.ack != 5000 || r.flags != wire.FlagACK {
		t.Errorf("queued %+v, want the peer's ACK", r)
	}
	want := Rejects{RejectRSTSeq: junk, RejectICMPQuote: junk}
	if got := w.rejects(); got != want {
		t.Errorf("rejects = %v, want %v", got, want)
	}
}

// A probe round takes at most one ICMP error per probe sent: more prove
// nothing more, and must never take the room of the peer's ACK in the queue
// (on IPv6 an on-path forger can quote a probe exactly, having no IP id to
// guess).
func TestWaiterTakesOneICMP(t *testing.T) {
	w := &waiter{ch: make(chan answer, 8)}
	w.sent(sentProbe{seq: 100, ack: 200})
	icmp := wire.Reply{Kind: wire.ReplyUnreachable, Seq: 100, Ack: 200, QuotedLen: wire.TCPMinSize}
	for range 20 {
		w.offer(icmp)
	}
	w.offer(wire.Reply{Kind: wire.ReplyACK, Flags: wire.FlagACK})
	if len(w.ch) != 2 {
		t.Fatalf("queued %d replies, want the first ICMP and the ACK", len(w.ch))
	}
	if r := w.rejects(); r[RejectICMPRepeat] != 19 || r[RejectQueueFull] != 0 {
		t.Errorf("rejects %v, want 19 icmp_repeat and no queue_full", r)
	}
}
