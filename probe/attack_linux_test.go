package probe

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe/internal/wire"
)

// attackConn is one healthy idle connection under attack: the server end is
// probed, the client end is the peer.
type attackConn struct {
	server, client net.Conn
	target         Target
	st             SeqState // the server socket's state, as an on-path attacker would know it
}

// attack forges packets against one connection until ctx is done. Every
// attack is bounded in count as well as time.
type attack func(ctx context.Context, t *testing.T, env attackEnv, c attackConn)

type attackEnv struct {
	n      *testnet.Net
	atk    *testnet.Attacker
	frames *testnet.FrameSender
}

// foreignMAC is an address no interface on the test network has
// (locally administered, documentation block 00-00-5E-00-53).
var foreignMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}

func attackSend(t *testing.T, send func([]byte) error, pkt []byte, err error) bool {
	t.Helper()
	if err == nil {
		err = send(pkt)
	}
	if err != nil {
		t.Errorf("attacker: %v", err)
		return false
	}
	return true
}

// spoofRST is a RST claiming to come from the peer.
func spoofRST(c attackConn, seq uint32) ([]byte, error) {
	return wire.AppendSegment(nil, wire.Segment{Src: c.target.Remote, Dst: c.target.Local, Seq: seq, Flags: wire.FlagRST, ID: uint16(rand.Uint32())})
}

// The attacks of issue 11, each bounded in packets and ended by ctx.
var attacks = []struct {
	name  string
	blind bool // probe without sequence numbers
	lead  time.Duration
	setup func(t *testing.T, n *testnet.Net)
	run   attack
}{{
	// Thousands of RSTs spread over the receive window, never at the one
	// sequence number the kernel itself would accept (RCV.NXT).
	name: "in-window RST spray",
	run: func(ctx context.Context, t *testing.T, env attackEnv, c attackConn) {
		const spread = 2000
		wnd := max(c.st.RcvWnd, spread)
		for i := 0; i < 20000 && ctx.Err() == nil; i++ {
			seq := c.st.RcvNxt + 1 + uint32(i%spread)*(wnd/spread)
			pkt, err := spoofRST(c, seq)
			if !attackSend(t, env.atk.Send, pkt, err) {
				return
			}
		}
	},
}, {
	name: "RST flood with random sequence numbers",
	run: func(ctx context.Context, t *testing.T, env attackEnv, c attackConn) {
		for i := 0; i < 30000 && ctx.Err() == nil; i++ {
			seq := rand.Uint32()
			if seq == c.st.RcvNxt {
				continue
			}
			pkt, err := spoofRST(c, seq)
			if !attackSend(t, env.atk.Send, pkt, err) {
				return
			}
		}
	},
}, {
	name:  "spoofed ICMP unreachables, blind probes",
	blind: true,
	run:   icmpAttack,
}, {
	name: "spoofed ICMP unreachables, in-window probes",
	run:  icmpAttack,
}, {
	// Out-of-window ACKs to the peer, as if from the probed host, one per
	// 300 ms: each uses up the peer's answer budget (one per 500 ms), so our
	// probe may go unanswered. The peer's answers to them still reach us.
	name: "spoofed out-of-window ACKs to the peer",
	lead: 1200 * time.Millisecond,
	run: func(ctx context.Context, t *testing.T, env attackEnv, c attackConn) {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 50; i++ {
			pkt, err := wire.AppendSegment(nil, wire.Segment{Src: c.target.Local, Dst: c.target.Remote,
				Seq: c.st.SndUna - 1<<30, Ack: rand.Uint32(), Flags: wire.FlagACK, Window: 512, ID: uint16(rand.Uint32())})
			if !attackSend(t, env.atk.Send, pkt, err) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	},
}, {
	// An on-path attacker who knows the sequence numbers sends the exact RSTs
	// (RCV.NXT-1, what the peer answers to our probe, and RCV.NXT) in frames
	// for another host: the kernel drops them, and so must ghostd.
	name: "exact RSTs in OTHERHOST frames",
	run: func(ctx context.Context, t *testing.T, env attackEnv, c attackConn) {
		for i := 0; i < 20000 && ctx.Err() == nil; i++ {
			pkt, err := spoofRST(c, c.st.RcvNxt-1+uint32(i%2))
			if !attackSend(t, func(b []byte) error { return env.frames.Send(foreignMAC, b) }, pkt, err) {
				return
			}
			if i%64 == 63 {
				time.Sleep(time.Millisecond)
			}
		}
	},
}, {
	// An on-path attacker sends the exact RSTs with a wrong checksum, as
	// packets for this host: the kernel drops them, and so must ghostd.
	name:  "exact RSTs with bad checksums",
	setup: rxChecksumOff,
	run: func(ctx context.Context, t *testing.T, env attackEnv, c attackConn) {
		for i := 0; i < 20000 && ctx.Err() == nil; i++ {
			pkt, err := spoofRST(c, c.st.RcvNxt-1+uint32(i%2))
			if err == nil {
				pkt[len(pkt)-wire.TCPMinSize+16] ^= 0x5a // the TCP checksum
			}
			if !attackSend(t, env.atk.Send, pkt, err) {
				return
			}
			if i%64 == 63 {
				time.Sleep(time.Millisecond)
			}
		}
	},
}}

// rxChecksumOff makes the Server's kernel verify checksums itself: a veth
// otherwise marks what arrives from a raw socket as already checked.
func rxChecksumOff(t *testing.T, n *testnet.Net) {
	if _, err := exec.LookPath("ethtool"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ethtool is missing (Debian package ethtool): %v", err)
		}
		t.Skipf("needs ethtool (Debian package ethtool): %v", err)
	}
	n.Server.Exec(t, "ethtool", "-K", testnet.ServerIf, "rx", "off")
	t.Cleanup(func() { n.Server.Exec(t, "ethtool", "-K", testnet.ServerIf, "rx", "on") })
}

// icmpAttack sends host-unreachable errors from the router quoting the
// connection's 4-tuple with guessed sequence numbers.
func icmpAttack(ctx context.Context, t *testing.T, env attackEnv, c attackConn) {
	router := env.n.RouterServerV4
	if c.target.Local.Addr().Is6() {
		router = env.n.RouterServerV6
	}
	code := map[bool]uint8{true: 3, false: 1}[c.target.Local.Addr().Is4()] // unreachable
	for i := 0; i < 2000 && ctx.Err() == nil; i++ {
		quoted, err := wire.AppendSegment(nil, wire.Segment{Src: c.target.Local, Dst: c.target.Remote,
			Seq: rand.Uint32(), Ack: rand.Uint32(), Flags: wire.FlagACK, ID: uint16(rand.Uint32())})
		if err != nil {
			t.Error(err)
			return
		}
		pkt, err := wire.AppendICMPError(nil, router, c.target.Local.Addr(), code, 1, quoted)
		if !attackSend(t, env.atk.Send, pkt, err) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAttacksMakeNoGhosts runs each attack against healthy idle connections
// while they are probed, and counts confirmed ghost verdicts: there must be
// none. Connections are IPv4 and IPv6. The connections must also survive (the attacks are ones the kernel
// itself shrugs off).
func TestAttacksMakeNoGhosts(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	t.Logf("20 ms added to the path by %s", n.Delay(t, 20*time.Millisecond))
	env := attackEnv{n: n, atk: n.Attacker(t)}
	env.frames = env.atk.Frames(t, testnet.RouterServerIf)
	const conns, rounds = 3, 3
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			if a.setup != nil {
				a.setup(t, n)
			}
			var cs []attackConn
			var targets []Target
			for i := range conns {
				server, client := n.Pair(t, networks[i%2])
				exchange(t, server, client)
				c := attackConn{server: server, client: client, target: targetOf(t, n, server)}
				m, err := seq.ReadSeq(context.Background(), n.Server.Path, []uint64{c.target.Cookie})
				if err != nil || len(m) != 1 {
					t.Fatalf("read the attacker's knowledge: %v %v", m, err)
				}
				c.st = m[c.target.Cookie]
				cs = append(cs, c)
				targets = append(targets, c.target)
			}
			var reader SeqReader = seq
			if a.blind {
				reader = nil
			}
			p := New(fastConfig(), reader, nil)
			defer p.Close()
			sentBefore := env.atk.Sent()
			ghosts, unconfirmed, alive := 0, 0, 0
			var rejected Rejects
			var badSums, drops uint64
			for round := range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var wg sync.WaitGroup
				for _, c := range cs {
					wg.Go(func() { a.run(ctx, t, env, c) })
				}
				time.Sleep(max(a.lead, 50*time.Millisecond))
				for i, r := range p.ProbeAll(context.Background(), targets) {
					if r.Err != nil {
						t.Errorf("round %d conn %d: %v", round, i, r.Err)
					}
					for why, n := range r.Rejected {
						rejected[why] += n
					}
					badSums += r.CaptureBadChecksums
					drops += r.CaptureDrops
					switch {
					case r.Verdict.Ghost() && r.Confirmed:
						ghosts++
						t.Logf("round %d conn %d: FALSE GHOST %+v", round, i, r)
					case r.Verdict.Ghost():
						unconfirmed++
					case r.Verdict == Alive:
						alive++
					}
				}
				cancel()
				wg.Wait()
			}
			t.Logf("attack %q: %d false ghosts, %d unconfirmed silences, %d alive of %d probed connections; attacker sent %d packets; rejected %v, bad checksums %d, capture drops %d",
				a.name, ghosts, unconfirmed, alive, conns*rounds, env.atk.Sent()-sentBefore, rejected, badSums, drops)
			if ghosts > 0 {
				t.Errorf("attack %q: %d of %d healthy connections confirmed as ghosts", a.name, ghosts, conns*rounds)
			}
			for i, c := range cs {
				if st := tcpState(t, c.server); st != 1 {
					t.Errorf("conn %d: server socket in state %d after the attack, want ESTABLISHED", i, st)
					continue
				}
				exchange(t, c.server, c.client)
			}
		})
	}
}

// TestSpoofedACKsToThePeer: an off-path sender spoofs out-of-window ACKs to
// the peer "from" the probed host, one per 400 ms, so the peer's one answer
// per 500 ms (tcp_invalid_ratelimit) often goes to the spoofer rather than
// to our probe. The peer's answers to the spoofer still come to the probed
// 4-tuple carrying the connection's real numbers, and ghostd takes them as
// proof of life, on purpose: the attack can only make a connection look
// alive, never a ghost. The peer's TCPACKSkippedSeq counter shows that its
// answer budget really ran out.
func TestSpoofedACKsToThePeer(t *testing.T) {
	seq := prSeqReader(t)
	n := testnet.New(t)
	atk := n.Attacker(t)
	for _, network := range networks {
		server, client, target := livePair(t, n, network)
		skippedBefore := netstat(t, n.Client, "TCPACKSkippedSeq")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(400 * time.Millisecond)
			defer tick.Stop()
			for range 40 { // at most 16 s
				pkt, err := wire.AppendSegment(nil, wire.Segment{Src: target.Local, Dst: target.Remote,
					Seq: rand.Uint32(), Ack: rand.Uint32(), Flags: wire.FlagACK, Window: 512, ID: uint16(rand.Uint32())})
				if err == nil {
					err = atk.Send(pkt)
				}
				if err != nil {
					t.Errorf("attacker: %v", err)
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
		time.Sleep(time.Second)
		p := New(fastConfig(), seq, nil)
		var alive, firstUnanswered int
		const probes = 8
		for i := range probes {
			res, err := p.Probe(context.Background(), target)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict == Alive {
				alive++
			} else {
				t.Errorf("%s probe %d: %+v, want alive", network, i, res)
			}
			if res.Sent > 1 {
				firstUnanswered++
			}
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		}
		cancel()
		<-done
		p.Close()
		skipped := netstat(t, n.Client, "TCPACKSkippedSeq") - skippedBefore
		t.Logf("%s: %d of %d probes alive; %d needed more than one attempt; the peer skipped %d answers (TCPACKSkippedSeq); attacker sent %d",
			network, alive, probes, firstUnanswered, skipped, atk.Sent())
		if skipped == 0 {
			t.Errorf("%s: the peer never ran out of answers: the attack did not happen", network)
		}
		if tcpState(t, server) != 1 {
			t.Fatalf("%s: server socket no longer established", network)
		}
		exchange(t, server, client)
	}
}
