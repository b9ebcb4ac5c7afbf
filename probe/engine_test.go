package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/bpf"
)

func TestCaptureFilter(t *testing.T) {
	prog, err := captureFilter(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := captureFilter(true, nil); err != nil {
		t.Fatal(err)
	}
	// The same packets through a filter restricted to local ports 80 and 443.
	prog, err = captureFilter(false, []uint16{443, 80, 80})
	if err != nil {
		t.Fatal(err)
	}
	portVM, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	many := make([]uint16, maxFilterPorts+1)
	for i := range many {
		many[i] = uint16(1000 + i)
	}
	prog, err = captureFilter(false, many)
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
			snap := captureSnap
			if tt.pkt[0]>>4 == 4 && tt.pkt[ipv4Protocol] == ProtoICMP || tt.pkt[0]>>4 == 6 && tt.pkt[ipv6NextHeader] == ProtoICMPv6 {
				snap = captureSnapICMP
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

// fakeConn is a namespace whose peers are scripted: respond turns each
// probe sent into the datagrams the peers answer with.
type fakeConn struct {
	respond func(probe Reply) [][]byte
	sendErr error

	mu     sync.Mutex
	sent   []Reply
	pkts   [][]byte // the datagrams sent, as sent
	routes []route  // how each was routed
	times  []time.Time
	in     chan []byte
	closed chan struct{}
	once   sync.Once
}

func newFakeConn(respond func(Reply) [][]byte) *fakeConn {
	return &fakeConn{respond: respond, in: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (f *fakeConn) send(pkt []byte, dst netip.Addr, rt route) error {
	if f.sendErr != nil {
		return f.sendErr
	}
	r, err := ParseReply(pkt) // our own probes parse as ACK segments
	if err == nil && pkt[0]>>4 == 4 {
		r.QuotedID = IPv4Header(pkt).ID() // for peers that quote the probe
	}
	if err != nil && pkt[0]>>4 == 4 && pkt[9] == ProtoICMP {
		r = Reply{Kind: ReplyEcho, From: IPv4Header(pkt).Src(), Dst: netip.AddrPortFrom(dst, 0),
			EchoID: ICMPHeader(pkt[IPv4MinSize:]).EchoID(), EchoSeq: ICMPHeader(pkt[IPv4MinSize:]).EchoSeq()}
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

func (f *fakeConn) close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeConn) probes() []Reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Reply(nil), f.sent...)
}

// Scripted peers. Each answers the probe it receives.
func ackPeer(p Reply) [][]byte {
	b, _ := AppendSegment(nil, Segment{Src: p.Dst, Dst: p.Src, Seq: p.Ack + 1, Ack: p.Seq + 1, Flags: FlagACK})
	return [][]byte{b}
}

func rstPeer(p Reply) [][]byte {
	b, _ := AppendSegment(nil, Segment{Src: p.Dst, Dst: p.Src, Seq: p.Ack, Flags: FlagRST})
	return [][]byte{b}
}

func wrongRSTPeer(p Reply) [][]byte {
	b, _ := AppendSegment(nil, Segment{Src: p.Dst, Dst: p.Src, Seq: p.Ack + 1<<30, Flags: FlagRST})
	return [][]byte{b}
}

func otherFlowPeer(p Reply) [][]byte {
	src := netip.AddrPortFrom(p.Dst.Addr(), p.Dst.Port()+1)
	b, _ := AppendSegment(nil, Segment{Src: src, Dst: p.Src, Seq: 1, Ack: 2, Flags: FlagACK})
	c, _ := AppendSegment(nil, Segment{Src: src, Dst: p.Src, Seq: p.Ack, Flags: FlagRST})
	return [][]byte{b, c}
}

func unreachablePeer(t testing.TB) func(Reply) [][]byte {
	return func(p Reply) [][]byte {
		probe, _ := AppendSegment(nil, Segment{Src: p.Src, Dst: p.Dst, Seq: p.Seq, Ack: p.Ack, Flags: p.Flags, ID: p.QuotedID})
		router := "203.0.113.1"
		if p.Src.Addr().Is6() {
			router = "2001:db8:ff::1"
		}
		return [][]byte{icmpError(t, router, p.Src.Addr().String(), map[bool]uint8{true: 3, false: 1}[p.Src.Addr().Is4()], 1, probe, 1000)}
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

func TestProbeVerdicts(t *testing.T) {
	seqs := &fakeSeq{state: map[uint64]SeqState{1: st1}}
	tests := []struct {
		name   string
		peer   func(Reply) [][]byte
		seq    SeqReader
		cfg    func(*Config)
		target Target
		want   Result
		sent   int // probes on the wire
	}{{
		name: "in-window alive", peer: ackPeer, seq: seqs,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Alive, Mode: InWindow, Sent: 1, Replies: 1, Confirmed: true}, sent: 1,
	}, {
		name: "in-window reset does not close the local socket", peer: rstPeer, seq: seqs,
		target: target(1, "[2001:db8::1]:80", "[2001:db8::2]:4000"),
		want:   Result{Verdict: Reset, Mode: InWindow, Sent: 1, Replies: 1, Confirmed: true}, sent: 1,
	}, {
		name: "ResetLocal reset closes it", peer: rstPeer, seq: seqs, cfg: func(c *Config) { c.ResetLocal = true },
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Reset, Mode: InWindow, Sent: 1, Replies: 1, Confirmed: true, ClosedLocal: true}, sent: 1,
	}, {
		name: "StillExists decides ClosedLocal", peer: rstPeer, seq: seqs,
		cfg:    func(c *Config) { c.StillExists = func(Target) bool { return false } },
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Reset, Mode: InWindow, Sent: 1, Replies: 1, Confirmed: true, ClosedLocal: true}, sent: 1,
	}, {
		name: "in-window silence is confirmed", seq: seqs,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Silent, Mode: InWindow, Sent: 2, Confirmed: true}, sent: 2,
	}, {
		name: "a RST that does not answer our probe is ignored", peer: wrongRSTPeer,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Silent, Mode: Blind, Sent: 2, Uncertain: UncertainInterference, Rejected: Rejects{RejectRSTSeq: 2}}, sent: 2,
	}, {
		// Junk for the 4-tuple while the peer is silent: a flood can drown
		// the real answer before any capture sees it, so silence is not
		// confirmed.
		name: "in-window silence amid forged RSTs is uncertain", peer: wrongRSTPeer, seq: seqs,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want: Result{Verdict: Silent, Mode: InWindow, Sent: 2, Uncertain: UncertainInterference,
			Rejected: Rejects{RejectRSTSeq: 2}}, sent: 2,
	}, {
		name: "replies on another flow are ignored", peer: otherFlowPeer, seq: seqs,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Silent, Mode: InWindow, Sent: 2, Confirmed: true}, sent: 2,
	}, {
		name: "blind alive", peer: ackPeer,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Alive, Mode: Blind, Sent: 1, Replies: 1, Confirmed: true}, sent: 1,
	}, {
		name: "blind reset is evidence", peer: rstPeer,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Reset, Mode: Blind, Sent: 1, Replies: 1, Confirmed: true}, sent: 1,
	}, {
		name:   "blind silence is not evidence",
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Silent, Mode: Blind, Sent: 2}, sent: 2,
	}, {
		name:   "blind silence with kernel evidence is",
		target: Target{Cookie: 1, Local: netip.MustParseAddrPort("192.0.2.1:80"), Remote: netip.MustParseAddrPort("198.51.100.2:4000"), KernelEvidence: true},
		want:   Result{Verdict: Silent, Mode: Blind, Sent: 2, Confirmed: true}, sent: 2,
	}, {
		name: "unreachable after every attempt", peer: unreachablePeer(t), seq: seqs,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Unreachable, Mode: InWindow, Sent: 2, Replies: 2, Confirmed: true}, sent: 2,
	}, {
		name: "icmpv6 unreachable", peer: unreachablePeer(t), seq: seqs,
		target: target(1, "[2001:db8::1]:80", "[2001:db8::2]:4000"),
		want:   Result{Verdict: Unreachable, Mode: InWindow, Sent: 2, Replies: 2, Confirmed: true}, sent: 2,
	}, {
		name: "v4-mapped goes over IPv4", peer: ackPeer, seq: seqs,
		target: target(1, "[::ffff:192.0.2.1]:80", "[::ffff:198.51.100.2]:4000"),
		want:   Result{Verdict: Alive, Mode: InWindow, Sent: 1, Replies: 1, Confirmed: true}, sent: 1,
	}, {
		name: "a socket the reader no longer finds is not probed", peer: ackPeer, seq: seqs,
		target: target(2, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Unprobed}, sent: 0,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := quickConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			conn := newFakeConn(tt.peer)
			p := newFakeProber(t, cfg, tt.seq, conn)
			got, err := p.Probe(context.Background(), tt.target)
			if (err != nil) != (tt.want.Verdict == Unprobed) {
				t.Errorf("err = %v", err)
			}
			if tt.want.Replies > 0 && got.RTT <= 0 {
				t.Errorf("RTT = %v with replies", got.RTT)
			}
			got.RTT, got.Err = 0, nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			probes := conn.probes()
			if len(probes) != tt.sent {
				t.Fatalf("%d probes on the wire, want %d", len(probes), tt.sent)
			}
			for _, pr := range probes {
				if pr.Flags != FlagACK || pr.Payload != 0 {
					t.Errorf("probe is not a bare ACK: %+v", pr)
				}
				if pr.Src.Addr().Is4In6() || pr.Dst.Addr().Is4In6() {
					t.Errorf("probe sent to a v4-mapped address: %+v", pr)
				}
				if tt.want.Mode == InWindow {
					wantAck := st1.RcvNxt - 1
					if cfg.ResetLocal {
						wantAck = st1.RcvNxt
					}
					if pr.Seq != st1.SndUna-1 || pr.Ack != wantAck || pr.Window != uint16(st1.RcvWnd>>st1.RcvWScale) {
						t.Errorf("in-window probe seq %d ack %d win %d, want %d %d %d", pr.Seq, pr.Ack, pr.Window,
							st1.SndUna-1, wantAck, st1.RcvWnd>>st1.RcvWScale)
					}
				}
			}
		})
	}
}

func TestProbeAttemptSpacing(t *testing.T) {
	cfg := quickConfig()
	cfg.Attempts = 3
	conn := newFakeConn(nil)
	p := newFakeProber(t, cfg, nil, conn)
	p.Probe(context.Background(), target(1, "192.0.2.1:80", "198.51.100.2:4000"))
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if len(conn.times) != 3 {
		t.Fatalf("%d probes, want 3", len(conn.times))
	}
	for i := 1; i < len(conn.times); i++ {
		if gap := conn.times[i].Sub(conn.times[i-1]); gap < MinInterval {
			t.Errorf("attempts %d and %d are %v apart, want ≥ %v", i-1, i, gap, MinInterval)
		}
	}
}

func TestProbeAllOrderAndGrouping(t *testing.T) {
	seqs := &fakeSeq{state: map[uint64]SeqState{}}
	var targets []Target
	for i := range 40 {
		seqs.state[uint64(i)] = st1
		tg := target(uint64(i), fmt.Sprintf("192.0.2.1:%d", 1000+i), "198.51.100.2:80")
		tg.NetnsPath = fmt.Sprintf("/ns/%d", i%3)
		targets = append(targets, tg)
	}
	// Odd local ports answer RST, even ones ACK.
	peer := func(r Reply) [][]byte {
		if r.Src.Port()%2 == 1 {
			return rstPeer(r)
		}
		return ackPeer(r)
	}
	p := newFakeProber(t, quickConfig(), seqs, nil)
	var opened []string
	var mu sync.Mutex
	p.open = func(ns string, _ []uint16) (rawConn, error) {
		mu.Lock()
		opened = append(opened, ns)
		mu.Unlock()
		if ns == "/ns/2" {
			return nil, errors.New("no such namespace")
		}
		return newFakeConn(peer), nil
	}
	res := p.ProbeAll(context.Background(), targets)
	for i, r := range res {
		want := Alive
		switch {
		case i%3 == 2:
			want = Unprobed
		case (1000+i)%2 == 1:
			want = Reset
		}
		if r.Verdict != want {
			t.Errorf("target %d: %s, want %s (%v)", i, r.Verdict, want, r.Err)
		}
	}
	if seqs.calls != 3 || len(opened) != 3 {
		t.Errorf("%d sequence reads and %d engines for 3 namespaces", seqs.calls, len(opened))
	}
	st := p.Stats()
	if st.Sent != 27 || st.Replies["ack"]+st.Replies["rst"] != 27 || st.Errors != 13 {
		t.Errorf("stats %+v", st)
	}
}

func TestProbeAllCancel(t *testing.T) {
	cfg := quickConfig()
	cfg.Attempts = 3
	cfg.Interval = 10 * time.Second
	conn := newFakeConn(nil)
	p := newFakeProber(t, cfg, nil, conn)
	var targets []Target
	for i := range 500 {
		targets = append(targets, target(1, fmt.Sprintf("192.0.2.1:%d", 1000+i), "198.51.100.2:80"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := p.ProbeAll(ctx, targets)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ProbeAll took %v after cancel", d)
	}
	for i, r := range res {
		if r.Verdict != Unprobed || !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Fatalf("target %d: %+v", i, r)
		}
	}
}

func TestProbeBounds(t *testing.T) {
	cfg := quickConfig()
	cfg.Attempts = 1
	cfg.Timeout = time.Second
	cfg.PerHost = 2
	cfg.InFlight = 5
	var mu sync.Mutex
	active := map[netip.Addr]int{}
	maxHost, maxAll, all := 0, 0, 0
	var conn *fakeConn
	conn = newFakeConn(func(r Reply) [][]byte {
		mu.Lock()
		h := r.Dst.Addr()
		active[h]++
		all++
		maxHost = max(maxHost, active[h])
		maxAll = max(maxAll, all)
		mu.Unlock()
		// The peer answers after 20 ms; the probe cannot end before.
		go func() {
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			active[h]--
			all--
			mu.Unlock()
			conn.in <- ackPeer(r)[0]
		}()
		return nil
	})
	p := newFakeProber(t, cfg, nil, conn)
	var targets []Target
	for i := range 60 {
		targets = append(targets, target(1, fmt.Sprintf("192.0.2.1:%d", 1000+i), fmt.Sprintf("198.51.100.%d:80", 1+i%4)))
	}
	p.ProbeAll(context.Background(), targets)
	if maxHost > 2 || maxAll > 5 {
		t.Errorf("max %d probes per host (cap 2), %d in flight (cap 5)", maxHost, maxAll)
	}
	if maxHost < 2 {
		t.Errorf("per-host concurrency never reached its cap: %d", maxHost)
	}
}

func TestProbeRecoversPanic(t *testing.T) {
	conn := newFakeConn(func(Reply) [][]byte { panic("boom") })
	p := newFakeProber(t, quickConfig(), nil, conn)
	res := p.ProbeAll(context.Background(), []Target{target(1, "192.0.2.1:80", "198.51.100.2:4000")})
	if res[0].Verdict != Unprobed || res[0].Err == nil {
		t.Errorf("%+v", res[0])
	}
}

type panicSeq struct{}

func (panicSeq) ReadSeq(context.Context, string, []uint64) (map[uint64]SeqState, error) {
	panic("reader bug")
}

func TestSeqReaderPanicProbesBlind(t *testing.T) {
	p := newFakeProber(t, quickConfig(), panicSeq{}, newFakeConn(ackPeer))
	r, err := p.Probe(context.Background(), target(1, "192.0.2.1:80", "198.51.100.2:4000"))
	if err != nil || r.Verdict != Alive || r.Mode != Blind {
		t.Errorf("%+v %v", r, err)
	}
}

func TestProbeRate(t *testing.T) {
	cfg := quickConfig()
	cfg.Attempts = 1
	cfg.Rate = 100
	cfg.Burst = 5
	conn := newFakeConn(ackPeer)
	p := newFakeProber(t, cfg, nil, conn)
	var targets []Target
	for i := range 40 {
		targets = append(targets, target(1, fmt.Sprintf("192.0.2.1:%d", 1000+i), "198.51.100.2:80"))
	}
	start := time.Now()
	p.ProbeAll(context.Background(), targets)
	// 40 probes at 100/s with a burst of 5 take at least 350 ms.
	if d := time.Since(start); d < 340*time.Millisecond {
		t.Errorf("40 probes at 100/s took %v", d)
	}
}

func TestMode(t *testing.T) {
	if m, why := New(Config{}, nil, nil).Mode(); m != Blind || why == "" {
		t.Errorf("nil reader: %s %q", m, why)
	}
	if m, why := New(Config{}, SeqUnavailable(errors.New("no BTF")), nil).Mode(); m != Blind || why != "blind: probe: sequence numbers unavailable: no BTF" {
		t.Errorf("unavailable reader: %s %q", m, why)
	}
	// A reader that fails with ErrNoSeq at run time turns the prober blind for good.
	seqs := &fakeSeq{err: fmt.Errorf("iter: %w", ErrNoSeq)}
	conn := newFakeConn(ackPeer)
	p := newFakeProber(t, quickConfig(), seqs, conn)
	if m, _ := p.Mode(); m != InWindow {
		t.Errorf("before probing: %s", m)
	}
	r, _ := p.Probe(context.Background(), target(1, "192.0.2.1:80", "198.51.100.2:4000"))
	if m, _ := p.Mode(); m != Blind || r.Mode != Blind || r.Verdict != Alive {
		t.Errorf("after ErrNoSeq: prober %s, result %+v", m, r)
	}
	// Another error only makes that namespace's round blind.
	seqs2 := &fakeSeq{err: errors.New("transient")}
	p2 := newFakeProber(t, quickConfig(), seqs2, newFakeConn(ackPeer))
	r, _ = p2.Probe(context.Background(), target(1, "192.0.2.1:80", "198.51.100.2:4000"))
	if m, _ := p2.Mode(); m != InWindow || r.Mode != Blind {
		t.Errorf("after a transient error: prober %s, result %s", m, r.Mode)
	}
}

func TestClosedProber(t *testing.T) {
	p := newFakeProber(t, quickConfig(), nil, newFakeConn(ackPeer))
	p.Close()
	if _, err := p.Probe(context.Background(), target(1, "192.0.2.1:80", "198.51.100.2:4000")); !errors.Is(err, ErrClosed) {
		t.Errorf("err = %v", err)
	}
}

func TestHostHint(t *testing.T) {
	cfg := quickConfig()
	cfg.Attempts = 1
	cfg.HostHint = true
	for _, up := range []bool{true, false} {
		conn := newFakeConn(func(r Reply) [][]byte {
			if r.Kind != ReplyEcho || !up {
				return nil
			}
			b, _ := AppendEcho(nil, r.Dst.Addr(), r.From, r.EchoID, r.EchoSeq)
			b[IPv4MinSize] = icmpEchoReply
			return [][]byte{b}
		})
		p := newFakeProber(t, cfg, nil, conn)
		r, _ := p.Probe(context.Background(), target(1, "192.0.2.1:80", "198.51.100.2:4000"))
		if r.Verdict != Silent || r.HostReachable == nil || *r.HostReachable != up {
			t.Errorf("host up=%v: %+v", up, r)
		}
	}
}

func TestSetConfig(t *testing.T) {
	conn := newFakeConn(nil)
	p := newFakeProber(t, quickConfig(), nil, conn)
	cfg := quickConfig()
	cfg.Attempts = 1
	cfg.InFlight = 3
	p.SetConfig(cfg)
	r, _ := p.Probe(context.Background(), target(1, "192.0.2.1:80", "198.51.100.2:4000"))
	if r.Sent != 1 {
		t.Errorf("sent %d after SetConfig(Attempts=1)", r.Sent)
	}
	if got, _ := p.config(); got.InFlight != 3 {
		t.Errorf("InFlight %d", got.InFlight)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Interval: time.Millisecond}.withDefaults()
	if c.Interval != MinInterval || c.Attempts != 3 || c.Rate != 200 {
		t.Errorf("%+v", c)
	}
	for range 1000 {
		if j := jitter(time.Second); j < 800*time.Millisecond || j > 1200*time.Millisecond {
			t.Fatalf("jitter(1s) = %v", j)
		}
		if j := jitter(MinInterval); j < MinInterval {
			t.Fatalf("jitter(MinInterval) = %v", j)
		}
	}
}

// forgedICMPPeer answers each probe with its real ICMP error plus forged
// copies that quote it exactly (what an on-path forger can do on IPv6).
func forgedICMPPeer(t testing.TB) func(Reply) [][]byte {
	real := unreachablePeer(t)
	return func(p Reply) [][]byte {
		one := real(p)
		return append(one, one[0], one[0], one[0])
	}
}

// An unreachable verdict amid more ICMP errors than probes is not
// confirmed: the extra errors are interference, as forged RSTs are for
// silence.
func TestUnreachableAmidForgedICMPIsUncertain(t *testing.T) {
	seqs := &fakeSeq{state: map[uint64]SeqState{1: st1}}
	conn := newFakeConn(forgedICMPPeer(t))
	p := newFakeProber(t, quickConfig(), seqs, conn)
	res, err := p.Probe(context.Background(), target(1, "[2001:db8::1]:80", "[2001:db8::2]:4000"))
	if err != nil || res.Verdict != Unreachable || res.Confirmed || res.Uncertain != UncertainInterference || res.Rejected[RejectICMPRepeat] == 0 {
		t.Fatalf("%+v %v; want an unconfirmed unreachable, uncertain from interference, with icmp_repeat rejects", res, err)
	}
}
