package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/ghostd/ghostd/internal/testnet"
)

// natShape builds one NAT-in-the-namespace shape on a fresh test network:
// client is the probed socket (in n.Client, NATed there), peer the socket
// that holds the other end (the backend, or the local proxy), in peerNS.
type natShape struct {
	name string
	kind string // Result.NAT expected
	// localPeer: the peer is in the client's namespace, so its answers are
	// translated back on their way out, before the capture sees them.
	localPeer bool
	build     func(t *testing.T, n *testnet.Net, network string) (client, peer net.Conn, peerNS *testnet.NS)
}

var natShapes = []natShape{{
	name: "dnat in output to a service VIP",
	kind: NATDNAT,
	build: func(t *testing.T, n *testnet.Net, network string) (net.Conn, net.Conn, *testnet.NS) {
		l := n.Server.Listen(t, network, serverListenAddr(n, network))
		backend := listenAddr(l)
		vip := n.DNATOutput(t, network, backend)
		client := n.Client.DialFrom(t, network, netip.Addr{}, vip)
		return client, testnet.Accept(t, l), n.Server
	},
}, {
	name: "masquerade on the client's egress",
	kind: NATSNAT,
	build: func(t *testing.T, n *testnet.Net, network string) (net.Conn, net.Conn, *testnet.NS) {
		l := n.Server.Listen(t, network, serverListenAddr(n, network))
		backend := listenAddr(l)
		src := n.Masquerade(t, network)
		client := n.Client.DialFrom(t, network, src, backend)
		return client, testnet.Accept(t, l), n.Server
	},
}, {
	name:      "redirect to a local proxy",
	kind:      NATRedirect,
	localPeer: true,
	build: func(t *testing.T, n *testnet.Net, network string) (net.Conn, net.Conn, *testnet.NS) {
		lo := "127.0.0.1:0"
		if network == "tcp6" {
			lo = "[::1]:0"
		}
		l := n.Client.Listen(t, network, lo)
		proxy := listenAddr(l)
		vip := n.RedirectOutput(t, network, proxy.Port())
		client := n.Client.DialFrom(t, network, netip.Addr{}, vip)
		return client, testnet.Accept(t, l), n.Client
	},
}}

// natConn is one connection of a natShape on its own fresh test network,
// after it carried data both ways.
type natConn struct {
	n            *testnet.Net
	client, peer net.Conn
	peerNS       *testnet.NS
	target       Target // the client end, as the inventory would see it
}

func (s natShape) open(t *testing.T, network string) natConn {
	t.Helper()
	c := natConn{n: testnet.New(t)}
	c.client, c.peer, c.peerNS = s.build(t, c.n, network)
	exchange(t, c.client, c.peer)
	c.target = targetIn(t, c.n.Client, c.client)
	return c
}

// listenAddr is a listener's address, unmapped.
func listenAddr(l net.Listener) netip.AddrPort {
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func serverListenAddr(n *testnet.Net, network string) string {
	if network == "tcp6" {
		return net.JoinHostPort(n.ServerV6.String(), "0")
	}
	return net.JoinHostPort(n.ServerV4.String(), "0")
}

// natRounds is how many probe rounds a healthy NATed connection must pass
// without one false ghost (issue 9's "done when").
const natRounds = 20

// TestNATInNamespace probes connections NATed in their own namespace: the
// healthy ones must be alive in every round, with their answers matched on
// the conntrack reply tuple; the same connections with the peer gone must be
// ghosts. Without the conntrack lookup a healthy one looks silent, which
// proves each shape really translates.
func TestNATInNamespace(t *testing.T) {
	seq := prSeqReader(t)
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			for _, shape := range natShapes {
				t.Run(shape.name, func(t *testing.T) {
					t.Run("healthy", func(t *testing.T) {
						c := shape.open(t, network)
						client, peer, target := c.client, c.peer, c.target
						// The probe leaves through LOCAL_OUT, where conntrack
						// translates it like the socket's own segments: the
						// peer sees it on its own tuple.
						peerLocal, peerRemote := testnet.Tuple(peer)
						arrived := c.peerNS.CountIn(t, peerRemote, peerLocal)
						p := New(fastConfig(), seq, nil)
						defer p.Close()
						sent := 0
						for round := range natRounds {
							res, err := p.Probe(context.Background(), target)
							if err != nil {
								t.Fatalf("round %d: %v", round, err)
							}
							if res.Verdict != Alive || !res.Confirmed || res.NAT != shape.kind {
								t.Fatalf("round %d: %+v, want a confirmed alive with NAT %q", round, res, shape.kind)
							}
							sent += res.Sent
						}
						got := arrived()
						t.Logf("%s %s: %d rounds alive, %d probes sent, %d segments arrived at the peer as %s→%s",
							network, shape.kind, natRounds, sent, got, peerRemote, peerLocal)
						if got < uint64(sent) {
							t.Errorf("the peer got %d segments on %s→%s, fewer than the %d probes", got, peerRemote, peerLocal, sent)
						}
						exchange(t, client, peer)

						// The same connection, matched on its own tuple only: a
						// remote peer's answer is missed (the bug this fixes),
						// a local peer's is not.
						blind := New(fastConfig(), seq, nil)
						defer blind.Close()
						blind.nat = nil
						res, err := blind.Probe(context.Background(), target)
						if err != nil {
							t.Fatal(err)
						}
						want := Silent
						if shape.localPeer {
							want = Alive
						}
						if res.Verdict != want || res.NAT != "" {
							t.Errorf("without the conntrack lookup: %+v, want %s", res, want)
						}
					})
					t.Run("peer lost state", func(t *testing.T) {
						c := shape.open(t, network)
						c.peerNS.LoseConn(t, c.peer)
						natWantGhost(t, seq, c.target, shape.kind)
					})
					// A local proxy's packets never leave loopback: only its
					// lost state applies.
					if shape.kind != NATRedirect {
						t.Run("peer vanished", func(t *testing.T) {
							c := shape.open(t, network)
							c.peerNS.GoSilent(t)
							natWantGhost(t, seq, c.target, shape.kind)
						})
					}
				})
			}
		})
	}
}

// natProbe probes target once with fastConfig and logs the result.
func natProbe(t *testing.T, seq SeqReader, target Target) Result {
	t.Helper()
	p := New(fastConfig(), seq, nil)
	defer p.Close()
	res, err := p.Probe(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	return res
}

func natWantGhost(t *testing.T, seq SeqReader, target Target, kind string) {
	t.Helper()
	if res := natProbe(t, seq, target); !res.Verdict.Ghost() || !res.Confirmed || res.NAT != kind {
		t.Fatalf("%+v, want a confirmed ghost with NAT %q", res, kind)
	}
}

// TestNATEntryFlushed: the client's conntrack table was flushed while the
// connection was idle. The connection still works (the next segment makes a
// new entry through the same NAT rules, tcp_loose being on), so it must not
// be a ghost: the probe itself recreates the entry, and the answer comes on
// its reply tuple.
func TestNATEntryFlushed(t *testing.T) {
	seq := prSeqReader(t)
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			c := natShapes[0].open(t, network)
			c.n.Client.Exec(t, "conntrack", "-F")
			if res := natProbe(t, seq, c.target); res.Verdict != Alive || res.NAT != NATDNAT {
				t.Errorf("%+v, want alive through dnat", res)
			}
			exchange(t, c.client, c.peer)
		})
	}
}
