package probe

import (
	"context"
	"net/netip"
	"testing"

	"github.com/ghostd/ghostd/internal/testnet"
)

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
