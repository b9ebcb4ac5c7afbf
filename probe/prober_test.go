package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghostd/ghostd/probe/internal/wire"
)

func TestProbeVerdicts(t *testing.T) {
	seqs := &fakeSeq{state: map[uint64]SeqState{1: st1}}
	tests := []struct {
		name   string
		peer   func(wire.Reply) [][]byte
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
		name: "blind reset is no evidence alone (a firewall may send it)", peer: rstPeer,
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Reset, Mode: Blind, Sent: 1, Replies: 1, Uncertain: UncertainBlind}, sent: 1,
	}, {
		name: "blind reset with kernel evidence is", peer: rstPeer,
		target: Target{Cookie: 1, Local: netip.MustParseAddrPort("192.0.2.1:80"), Remote: netip.MustParseAddrPort("198.51.100.2:4000"), KernelEvidence: true},
		want:   Result{Verdict: Reset, Mode: Blind, Sent: 1, Replies: 1, Confirmed: true}, sent: 1,
	}, {
		name: "blind unreachable is no evidence alone", peer: unreachablePeer(t),
		target: target(1, "192.0.2.1:80", "198.51.100.2:4000"),
		want:   Result{Verdict: Unreachable, Mode: Blind, Sent: 2, Replies: 2, Uncertain: UncertainBlind}, sent: 2,
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
				if pr.Flags != wire.FlagACK || pr.Payload != 0 {
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
	peer := func(r wire.Reply) [][]byte {
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
		t.Errorf("%d sequence reads and %d capture sockets for 3 namespaces", seqs.calls, len(opened))
	}
	sent, replies, errs := 0, 0, 0
	for _, r := range res {
		sent, replies = sent+r.Sent, replies+r.Replies
		if r.Err != nil {
			errs++
		}
	}
	if sent != 27 || replies != 27 || errs != 13 {
		t.Errorf("%d sent, %d replies, %d errors; want 27, 27, 13", sent, replies, errs)
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
	conn = newFakeConn(func(r wire.Reply) [][]byte {
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
	conn := newFakeConn(func(wire.Reply) [][]byte { panic("boom") })
	p := newFakeProber(t, quickConfig(), nil, conn)
	res := p.ProbeAll(context.Background(), []Target{target(1, "192.0.2.1:80", "198.51.100.2:4000")})
	if res[0].Verdict != Unprobed || res[0].Err == nil {
		t.Errorf("%+v", res[0])
	}
}

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
		conn := newFakeConn(func(r wire.Reply) [][]byte {
			if r.Kind != wire.ReplyEcho || !up {
				return nil
			}
			b, _ := wire.AppendEcho(nil, r.Dst.Addr(), r.From, r.EchoID, r.EchoSeq)
			b[wire.IPv4MinSize] = 0 // ICMP echo reply
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
