package probe

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

// fakeConn is a namespace whose peers are scripted: respond turns each
// probe sent into the datagrams the peers answer with.
type fakeConn struct {
	respond func(probe wire.Reply) [][]byte
	sendErr error

	mu     sync.Mutex
	sent   []wire.Reply
	pkts   [][]byte // the datagrams sent, as sent
	routes []route  // how each was routed
	times  []time.Time
	in     chan []byte
	closed chan struct{}
	once   sync.Once
}

func newFakeConn(respond func(wire.Reply) [][]byte) *fakeConn {
	return &fakeConn{respond: respond, in: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (f *fakeConn) send(pkt []byte, dst netip.Addr, rt route) error {
	if f.sendErr != nil {
		return f.sendErr
	}
	r, err := wire.ParseReply(pkt) // our own probes parse as ACK segments
	if err == nil && pkt[0]>>4 == 4 {
		r.QuotedID = wire.IPv4Header(pkt).ID() // for peers that quote the probe
	}
	if err != nil && pkt[0]>>4 == 4 && pkt[9] == wire.ProtoICMP {
		r = wire.Reply{Kind: wire.ReplyEcho, From: wire.IPv4Header(pkt).Src(), Dst: netip.AddrPortFrom(dst, 0),
			EchoID: wire.ICMPHeader(pkt[wire.IPv4MinSize:]).EchoID(), EchoSeq: wire.ICMPHeader(pkt[wire.IPv4MinSize:]).EchoSeq()}
	} else if err != nil {
		return fmt.Errorf("fake: unparsable probe: %w", err)
	}
	f.mu.Lock()
	f.sent = append(f.sent, r)
	f.pkts = append(f.pkts, slices.Clone(pkt))
	f.routes = append(f.routes, rt)
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	if f.respond != nil {
		for _, p := range f.respond(r) {
			f.in <- p
		}
	}
	return nil
}

func (f *fakeConn) recv(buf []byte) (int, error) {
	select {
	case p := <-f.in:
		return copy(buf, p), nil
	case <-f.closed:
		return 0, errConnClosed
	}
}

func (f *fakeConn) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeConn) probes() []wire.Reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.Reply(nil), f.sent...)
}

// Scripted peers. Each answers the probe it receives.
func ackPeer(p wire.Reply) [][]byte {
	b, _ := wire.AppendSegment(nil, wire.Segment{Src: p.Dst, Dst: p.Src, Seq: p.Ack + 1, Ack: p.Seq + 1, Flags: wire.FlagACK})
	return [][]byte{b}
}

func rstPeer(p wire.Reply) [][]byte {
	b, _ := wire.AppendSegment(nil, wire.Segment{Src: p.Dst, Dst: p.Src, Seq: p.Ack, Flags: wire.FlagRST})
	return [][]byte{b}
}

func wrongRSTPeer(p wire.Reply) [][]byte {
	b, _ := wire.AppendSegment(nil, wire.Segment{Src: p.Dst, Dst: p.Src, Seq: p.Ack + 1<<30, Flags: wire.FlagRST})
	return [][]byte{b}
}

func otherFlowPeer(p wire.Reply) [][]byte {
	src := netip.AddrPortFrom(p.Dst.Addr(), p.Dst.Port()+1)
	b, _ := wire.AppendSegment(nil, wire.Segment{Src: src, Dst: p.Src, Seq: 1, Ack: 2, Flags: wire.FlagACK})
	c, _ := wire.AppendSegment(nil, wire.Segment{Src: src, Dst: p.Src, Seq: p.Ack, Flags: wire.FlagRST})
	return [][]byte{b, c}
}

func unreachablePeer(t testing.TB) func(wire.Reply) [][]byte {
	return func(p wire.Reply) [][]byte {
		probe, _ := wire.AppendSegment(nil, wire.Segment{Src: p.Src, Dst: p.Dst, Seq: p.Seq, Ack: p.Ack, Flags: p.Flags, ID: p.QuotedID})
		router := netip.MustParseAddr("203.0.113.1")
		if p.Src.Addr().Is6() {
			router = netip.MustParseAddr("2001:db8:ff::1")
		}
		icmp, err := wire.AppendICMPError(nil, router, p.Src.Addr(), map[bool]uint8{true: 3, false: 1}[p.Src.Addr().Is4()], 1, probe)
		if err != nil {
			t.Error(err)
		}
		return [][]byte{icmp}
	}
}

// fakeSeq serves fixed sequence state, or an error.
type fakeSeq struct {
	state map[uint64]SeqState
	err   error
	calls int
	mu    sync.Mutex
}

func (f *fakeSeq) ReadSeq(_ context.Context, _ string, cookies []uint64) (map[uint64]SeqState, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return seqAnswer(f.state, cookies), nil
}

// seqAnswer is what a fake reader answers: the known states of the cookies.
func seqAnswer(state map[uint64]SeqState, cookies []uint64) map[uint64]SeqState {
	out := make(map[uint64]SeqState)
	for _, c := range cookies {
		if s, ok := state[c]; ok {
			out[c] = s
		}
	}
	return out
}

func quickConfig() Config {
	c := DefaultConfig()
	c.HostHint = false // DefaultConfig pings silent peers; tests that want the echo say so
	c.Attempts = 2
	c.Interval = MinInterval
	c.Timeout = 50 * time.Millisecond
	c.Rate = math.Inf(1)
	return c
}

func newFakeProber(t testing.TB, cfg Config, seq SeqReader, conn *fakeConn) *Prober {
	p := New(cfg, seq, nil)
	p.open = func(string, []uint16) (rawConn, error) { return conn, nil }
	p.nat = nil // no conntrack in a fake namespace
	p.pin = func(ns string, _ uint64) (string, func(), error) { return ns, func() {}, nil }
	t.Cleanup(func() { p.Close() })
	return p
}

func target(cookie uint64, local, remote string) Target {
	return Target{Cookie: cookie, Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
}

var st1 = SeqState{SndUna: 1000, SndNxt: 1000, RcvNxt: 5000, RcvWnd: 1000 << 2, RcvWScale: 2}

type panicSeq struct{}

// forgedICMPPeer answers each probe with its real ICMP error plus forged
// copies that quote it exactly (what an on-path forger can do on IPv6).
func forgedICMPPeer(t testing.TB) func(wire.Reply) [][]byte {
	real := unreachablePeer(t)
	return func(p wire.Reply) [][]byte {
		one := real(p)
		return append(one, one[0], one[0], one[0])
	}
}
