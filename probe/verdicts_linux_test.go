package probe

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

func TestVerdictsOnTestNetwork(t *testing.T) {
	seq := prSeqReader(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, n *testnet.Net, server, client net.Conn) // undoes itself with t.Cleanup
		cfg   func(*Config)
		want  Verdict
	}{{
		name: "idle healthy",
		want: Alive,
	}, {
		name:  "busy healthy",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) { t.Cleanup(busy(server, client)) },
		want:  Alive,
	}, {
		name:  "zero window",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) { fillWindow(t, server) },
		want:  Alive,
	}, {
		// The default ACK (RCV.NXT-1) provokes a RST the router drops as
		// INVALID: still a confirmed ghost, and the local socket is left alone.
		name:  "peer lost state",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) { n.LoseState(t, client) },
		want:  Silent,
	}, {
		name:  "peer lost state with ResetLocal",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) { n.LoseState(t, client) },
		cfg:   func(c *Config) { c.ResetLocal = true },
		want:  Reset,
	}, {
		name: "peer lost state on a path without a stateful firewall",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) {
			n.Router.Nft(t, "delete table inet gd_router\n")
			t.Cleanup(func() { n.Router.Nft(t, routerRulesetForTests) })
			n.LoseState(t, client)
		},
		want: Reset,
	}, {
		name:  "peer silent",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) { n.GoSilent(t) },
		want:  Silent,
	}, {
		name:  "router forgot the flow",
		setup: func(t *testing.T, n *testnet.Net, server, client net.Conn) { n.ForgetFlow(t, server) },
		want:  Silent,
	}}
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			n := testnet.New(t)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					server, client, target := livePair(t, n, network)
					if tt.setup != nil {
						tt.setup(t, n, server, client)
					}
					defer n.Heal(t) // before the setup's cleanups
					cfg := fastConfig()
					if tt.cfg != nil {
						tt.cfg(&cfg)
					}
					p := New(cfg, seq, nil)
					defer p.Close()
					res, err := p.Probe(context.Background(), target)
					if err != nil {
						t.Fatalf("Probe: %v", err)
					}
					t.Logf("%+v", res)
					if res.Verdict != tt.want || res.Mode != InWindow {
						t.Fatalf("verdict %s mode %s, want %s in_window", res.Verdict, res.Mode, tt.want)
					}
					if !res.Confirmed {
						t.Errorf("verdict not confirmed")
					}
					if closed := tcpState(t, server) != 1; res.ClosedLocal != closed { // 1: TCP_ESTABLISHED
						t.Errorf("ClosedLocal = %v, but the local socket closed: %v", res.ClosedLocal, closed)
					}
					if tt.want == Alive && (res.RTT <= 0 || res.Replies < 1) {
						t.Errorf("alive without RTT or replies: %+v", res)
					}
					if tt.want == Silent && res.Sent != p.cfg.Attempts {
						t.Errorf("silent after %d probes, want %d", res.Sent, p.cfg.Attempts)
					}
				})
			}
		})
	}
}

// TestRSTMeasurement measures what the peer's RST does for both ACK choices
// through the conntrack router: does it reach us, and does it close the
// local socket. The numbers are logged (go test -v) and the verdicts asserted.
func TestRSTMeasurement(t *testing.T) {
	seq := prSeqReader(t)
	for _, network := range networks {
		n := testnet.New(t)
		for _, resetLocal := range []bool{false, true} {
			lp := probeLostPeer(t, n, seq, network, func(cfg *Config, server net.Conn) {
				cfg.ResetLocal = resetLocal
				cfg.StillExists = func(Target) bool { return tcpState(t, server) == 1 /* TCP_ESTABLISHED */ }
			})
			res, server := lp.res, lp.server
			t.Logf("%s ResetLocal=%v: verdict=%s sent=%d replies=%d closedLocal=%v routerInvalidDrops=%d localState=%d ownerRead=%v",
				network, resetLocal, res.Verdict, res.Sent, res.Replies, res.ClosedLocal, lp.drops, tcpState(t, server), lp.read)
			// What was measured here: with ACK = RCV.NXT-1 the router drops the
			// peer's RST as INVALID (seq below what it has seen acknowledged) and
			// the local socket lives on; with ACK = RCV.NXT the RST gets through
			// and the kernel resets the local socket.
			if resetLocal {
				if res.Verdict != Reset || !res.ClosedLocal || !errors.Is(lp.read, syscall.ECONNRESET) {
					t.Errorf("ResetLocal: want a reset that closed the local socket")
				}
			} else if res.Verdict != Silent || !res.Confirmed || res.ClosedLocal || lp.drops == 0 || tcpState(t, server) != 1 {
				t.Errorf("default: want confirmed silence, the RST dropped by the router, the local socket intact")
			}
		}
	}
}

// TestPeerAnswerOnTheWire checks, against the real kernel, what a live
// Linux peer answers to our keepalive-shaped probe (seq SND.UNA−1, ack
// RCV.NXT−1 or RCV.NXT): a duplicate ACK whose sequence number is exactly
// our RCV.NXT and whose acknowledgement is exactly our SND.NXT, which the
// accept rules take. The reply is captured unfiltered (a blind watch).
func TestPeerAnswerOnTheWire(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	for _, network := range networks {
		for _, resetLocal := range []bool{false, true} {
			_, _, target := livePair(t, n, network)
			m, err := seq.ReadSeq(context.Background(), n.Server.Path, []uint64{target.Cookie})
			if err != nil || len(m) != 1 {
				t.Fatalf("ReadSeq: %v %v", m, err)
			}
			st := m[target.Cookie]
			conn, err := openRawConn(n.Server.Path, []uint16{target.Local.Port()})
			if err != nil {
				t.Fatal(err)
			}
			d := newDemux(conn, slog.New(slog.DiscardHandler))
			w, stop := d.watch(newFlowKey(target.Local, target.Remote), nil)
			p := sentProbe{seq: st.SndUna - 1, ack: st.RcvNxt - 1, id: 4242}
			if resetLocal {
				p.ack = st.RcvNxt
			}
			if target.Local.Addr().Is6() {
				p.id = 0
			}
			pkt, err := wire.AppendSegment(nil, wire.Segment{Src: target.Local, Dst: target.Remote, Seq: p.seq, Ack: p.ack, Flags: wire.FlagACK, Window: 512, ID: p.id})
			if err != nil {
				t.Fatal(err)
			}
			w.sent(p)
			if err := d.send(pkt, target.Remote.Addr(), route{}); err != nil {
				t.Fatal(err)
			}
			select {
			case a := <-w.ch:
				r := wire.Reply{Kind: a.kind, Src: target.Remote, Dst: target.Local, Seq: a.seq, Ack: a.ack, Flags: a.flags}
				t.Logf("%s ResetLocal=%v: state SND.UNA %d SND.NXT %d RCV.NXT %d; peer answered seq %d ack %d flags %#x",
					network, resetLocal, st.SndUna, st.SndNxt, st.RcvNxt, r.Seq, r.Ack, r.Flags)
				if r.Kind != wire.ReplyACK || r.Seq != st.RcvNxt || r.Ack != st.SndNxt {
					t.Errorf("%s: peer answered %+v, want a pure ACK with seq RCV.NXT %d and ack SND.NXT %d", network, r, st.RcvNxt, st.SndNxt)
				}
				if ok, why := accept(r, []sentProbe{p}, &st); !ok {
					t.Errorf("%s: accept refused the live peer's answer: %s", network, why)
				}
			case <-time.After(2 * time.Second):
				t.Errorf("%s: no answer from a live peer", network)
			}
			stop()
			if _, _, err := d.close(); err != nil {
				t.Error(err)
			}
			time.Sleep(MinInterval) // the peer's answer budget
		}
	}
}

// TestV4MappedOnTestNetwork probes a dual-stack server socket talking to an
// IPv4 client: the inventory reports it as inet6 with ::ffff: addresses, and
// the probe must go out over IPv4.
func TestV4MappedOnTestNetwork(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	l := n.Server.Listen(t, "tcp", "[::]:0")
	_, port, _ := net.SplitHostPort(l.Addr().String())
	client := n.Client.Dial(t, "tcp4", net.JoinHostPort(n.ServerV4.String(), port))
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	target := targetOf(t, n, server)
	la, ra := server.LocalAddr().(*net.TCPAddr).AddrPort(), server.RemoteAddr().(*net.TCPAddr).AddrPort()
	if !la.Addr().Is4In6() {
		t.Fatalf("server socket is not v4-mapped: %s", la)
	}
	target.Family, target.Local, target.Remote = inventory.FamilyInet6, la, ra
	p := New(fastConfig(), seq, nil)
	res, err := p.Probe(context.Background(), target)
	if err != nil || res.Verdict != Alive || res.Mode != InWindow {
		t.Fatalf("mapped alive: %+v %v", res, err)
	}
	n.LoseState(t, client)
	cfg := fastConfig()
	cfg.ResetLocal = true
	res, err = New(cfg, seq, nil).Probe(context.Background(), target)
	if err != nil || res.Verdict != Reset {
		t.Fatalf("mapped reset: %+v %v", res, err)
	}
}

// TestTimestampsNegotiated checks the premise of option-less probes: the
// test connections negotiate TCP timestamps, and the peer still answers
// (Linux does not PAWS-check segments that carry no timestamp).
func TestTimestampsNegotiated(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	server, _ := n.Pair(t, "tcp4")
	if testnet.TCPInfo(t, server).Options&1 == 0 { // TCPI_OPT_TIMESTAMPS
		t.Fatal("timestamps not negotiated; the test proves nothing")
	}
	res, err := New(fastConfig(), seq, nil).Probe(context.Background(), targetOf(t, n, server))
	if err != nil || res.Verdict != Alive {
		t.Fatalf("%+v %v", res, err)
	}
}

// TestBlindThroughRouter measures blind (random-sequence) probes: behind the
// conntrack router their silence must never become a confirmed ghost, and
// on a path without a stateful firewall a blind RST is still evidence.
func TestBlindThroughRouter(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	cfg := fastConfig()
	cfg.Attempts = 3
	var targets []Target
	for range 8 {
		s, _ := n.Pair(t, "tcp4")
		targets = append(targets, targetOf(t, n, s))
	}
	drops := n.InvalidDrops(t)
	p := New(cfg, nil, nil)
	alive, sent := 0, 0
	for i, r := range p.ProbeAll(context.Background(), targets) {
		sent += r.Sent
		if r.Mode != Blind {
			t.Fatalf("target %d: mode %s", i, r.Mode)
		}
		if r.Verdict.Ghost() && r.Confirmed {
			t.Errorf("target %d: a live peer became a confirmed ghost: %+v", i, r)
		}
		if r.Verdict == Alive {
			alive++
		}
	}
	t.Logf("blind through the router: %d of %d live peers answered; %d probes sent, router dropped %d as INVALID",
		alive, len(targets), sent, n.InvalidDrops(t)-drops)

	// Without the stateful firewall, a blind probe to a peer that lost state
	// gets its RST: a reset, confirmed only with the kernel's own evidence
	// (a firewall that rejects INVALID segments sends the same RST,
	// TestBlindThroughRejectingRouter).
	n.Router.Nft(t, "delete table inet gd_router\n")
	defer n.Router.Nft(t, routerRulesetForTests)
	server, client := n.Pair(t, "tcp6")
	target := targetOf(t, n, server)
	n.LoseState(t, client)
	res, err := New(cfg, nil, nil).Probe(context.Background(), target)
	if err != nil || res.Verdict != Reset || res.Confirmed || res.Uncertain != UncertainBlind || res.ClosedLocal {
		t.Fatalf("blind reset on an open path: %+v %v", res, err)
	}
	target.KernelEvidence = true
	res, err = New(cfg, nil, nil).Probe(context.Background(), target)
	if err != nil || res.Verdict != Reset || !res.Confirmed || res.ClosedLocal {
		t.Fatalf("blind reset with kernel evidence: %+v %v", res, err)
	}
	if tcpState(t, server) != 1 {
		t.Error("a blind RST closed the local socket")
	}
}

// TestProbeRefusesChangedNamespace: a namespace path that now names another
// namespace than the inventory saw (a reused PID, a recreated /run/netns
// name) is never entered: its targets are unprobed with ErrNetnsChanged and
// no segment leaves. The right inode is probed as usual.
func TestProbeRefusesChangedNamespace(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	server, _ := n.Pair(t, "tcp4")
	target := targetOf(t, n, server)
	p := New(fastConfig(), seq, nil)
	if res, err := p.Probe(context.Background(), target); err != nil || res.Verdict != Alive {
		t.Fatalf("right namespace: %+v %v", res, err)
	}
	wrong := target
	wrong.NetnsInode = n.Client.Inode // the scan saw another namespace at this path
	res, err := p.Probe(context.Background(), wrong)
	if !errors.Is(err, ErrNetnsChanged) || res.Verdict != Unprobed || res.Sent != 0 {
		t.Fatalf("changed namespace: %+v %v; want unprobed with ErrNetnsChanged and nothing sent", res, err)
	}
}

// TestHostHintHonest: a forgotten flow whose address answers pings reads
// "reachable" from a prober that has seen only that connection (a peer
// whose whole host went silent reads unreachable), but "shared" (no
// reachable claim) from one that probed SharedPorts
// connections from that address on different ports, as through a NAT
// gateway; a forgotten flow NATed in its own namespace (a Service VIP)
// reads "nat" and no echo decides anything.
func TestHostHintHonest(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	cfg := fastConfig()
	cfg.Attempts = 1
	cfg.HostHint = true
	for _, network := range networks {
		// Control: one connection, the router forgot it, the host answers.
		server, _ := n.Pair(t, network)
		n.ForgetFlow(t, server)
		res, err := New(cfg, seq, nil).Probe(context.Background(), targetOf(t, n, server))
		if err != nil || res.Verdict != Silent || res.HostHint != HostHintReachable || res.HostReachable == nil || !*res.HostReachable {
			t.Errorf("%s single connection: %+v %v, want silent, reachable", network, res, err)
		}
		// The host is gone.
		server, _ = n.Pair(t, network)
		target := targetOf(t, n, server)
		n.GoSilent(t)
		res, err = New(cfg, seq, nil).Probe(context.Background(), target)
		n.Heal(t)
		if err != nil || res.Verdict != Silent || res.HostReachable == nil || *res.HostReachable {
			t.Errorf("%s silent host: %+v %v, want silent, host unreachable", network, res, err)
		}

		// The same through an address seen on SharedPorts ports.
		p := New(cfg, seq, nil)
		var healthy []Target
		for range SharedPorts {
			s, _ := n.Pair(t, network)
			healthy = append(healthy, targetOf(t, n, s))
		}
		for i, r := range p.ProbeAll(context.Background(), healthy) {
			if r.Verdict != Alive || r.HostHint != "" {
				t.Errorf("%s healthy %d: %+v, want alive and no hint", network, i, r)
			}
		}
		server, _ = n.Pair(t, network)
		n.ForgetFlow(t, server)
		res, err = p.Probe(context.Background(), targetOf(t, n, server))
		if err != nil || res.Verdict != Silent || res.HostHint != HostHintShared || res.HostReachable != nil {
			t.Errorf("%s shared address: %+v %v, want silent, shared, no reachable claim", network, res, err)
		}

		// NATed in its namespace: the client reaches the server through a VIP.
		l := n.Server.Listen(t, network, serverListenAddr(n, network))
		vip := n.DNATOutput(t, network, listenAddr(l))
		client := n.Client.DialFrom(t, network, netip.Addr{}, vip)
		backendSide := testnet.Accept(t, l)
		n.ForgetFlow(t, backendSide)
		res, err = New(cfg, seq, nil).Probe(context.Background(), targetIn(t, n.Client, client))
		if err != nil || res.Verdict != Silent || res.NAT != NATDNAT || res.HostHint != HostHintNAT || res.HostReachable != nil {
			t.Errorf("%s NATed: %+v %v, want silent, nat, no reachable claim", network, res, err)
		}
		n.Client.Nft(t, "delete table inet tn_dnat\n")
	}
}

// TestProbeWaitsForSlowPeer: a live peer 2.5 s away answers after the
// default final wait. The socket's own kernel knows how slow it is (srtt,
// rttvar), and the last attempt waits as long as its retransmission timeout
// would: the answer is taken. Without that (RTO unknown), the live peer was
// a confirmed silent ghost.
func TestProbeWaitsForSlowPeer(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	n.Delay(t, 2500*time.Millisecond)
	server, client := n.Pair(t, "tcp4")
	exchange(t, server, client)
	info := testnet.TCPInfo(t, server)
	target := targetOf(t, n, server)
	cfg := fastConfig()
	cfg.Attempts = 2
	res, err := New(cfg, seq, nil).Probe(context.Background(), target)
	if err != nil || res.Verdict != Silent || !res.Confirmed {
		t.Fatalf("without the socket's RTO: %+v %v; want the (false) confirmed silence this test is about", res, err)
	}
	target.RTO = time.Duration(info.Rtt+4*info.Rttvar) * time.Microsecond
	res, err = New(cfg, seq, nil).Probe(context.Background(), target)
	if err != nil || res.Verdict != Alive {
		t.Errorf("with the socket's RTO %s (srtt %d µs): %+v %v; want alive", target.RTO, info.Rtt, res, err)
	}
}
