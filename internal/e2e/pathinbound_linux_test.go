package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// TestPathKeyedByService: ghostd's engine, with the real inventory and
// prober, watches a server that accepts five connections on one dual-stack
// wildcard listener (four from the client's IPv4 address, each from its own
// ephemeral port, two of which the client then loses; one over IPv6) and
// itself connects out to a service on the client. The path table must hold
// one destination for the four IPv4 clients with all four samples (2 alive,
// 2 dead), one for the IPv6 client, and the outbound connection under the
// remote service's port: three destinations, none per ephemeral port.
func TestPathKeyedByService(t *testing.T) {
	needRoot(t)
	seq, err := probe.NewIterReader()
	if err != nil {
		t.Skipf("BPF TCP iterator unavailable: %v", err)
	}
	t.Cleanup(func() { seq.Close() })
	n := testnet.New(t)

	l := n.Server.ListenNoKeepalive(t, "tcp", "[::]:0") // dual-stack: IPv4 clients arrive v4-mapped
	port := l.Addr().(*net.TCPAddr).Port
	var v4 []net.Conn
	for range 4 {
		c := n.Client.Dial(t, "tcp4", net.JoinHostPort(n.ServerV4.String(), strconv.Itoa(port)))
		s := testnet.Accept(t, l)
		noKeepalive(t, c, s)
		pingPong(t, c, s)
		v4 = append(v4, c)
	}
	c6 := n.Client.Dial(t, "tcp6", net.JoinHostPort(n.ServerV6.String(), strconv.Itoa(port)))
	s6 := testnet.Accept(t, l)
	noKeepalive(t, c6, s6)
	pingPong(t, c6, s6)
	svc := n.Client.ListenNoKeepalive(t, "tcp4", net.JoinHostPort(n.ClientV4.String(), "0"))
	out := n.Server.Dial(t, "tcp4", svc.Addr().String())
	outPeer := testnet.Accept(t, svc)
	noKeepalive(t, out, outPeer)
	pingPong(t, out, outPeer)
	// Two clients forget their connection without a word: the server's
	// probe gets a RST, a confirmed ghost.
	n.Client.LoseConn(t, v4[2])
	n.Client.LoseConn(t, v4[3])
	time.Sleep(1500 * time.Millisecond) // past the tracker's idle threshold

	sel, err := inventory.SelectNetns(n.Server.Name)
	if err != nil {
		t.Fatal(err)
	}
	scanner := inventory.NewScanner(nil, inventory.ScannerOptions{Select: sel})
	t.Cleanup(func() { scanner.Close() })
	pc := probe.DefaultConfig()
	pc.Interval, pc.Timeout = probe.MinInterval, 500*time.Millisecond
	prober := probe.New(pc, seq, nil)
	t.Cleanup(func() { prober.Close() })
	tc := tracker.DefaultConfig()
	tc.Idle = time.Second
	e := engine.New(scanner, prober, inventory.NewOwners("/proc"), engine.Options{Tracker: tc, Backoff: time.Hour, Reconfirm: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.Scan(ctx)
	e.Snapshot()
	results := e.Probe(ctx, e.Targets())

	got := map[string][2]int{}
	for _, p := range e.Paths() {
		got[p.Dest.String()] = [2]int{p.Alive, p.Dead}
	}
	want := map[string][2]int{
		fmt.Sprintf("clients 192.0.2.0/24 → :%d", port):                {2, 2},
		fmt.Sprintf("clients 2001:db8:1::/64 → :%d", port):             {1, 0},
		fmt.Sprintf("192.0.2.0/24:%d", svc.Addr().(*net.TCPAddr).Port): {1, 0},
	}
	if len(got) != len(want) {
		t.Errorf("%d destinations, want %d", len(got), len(want))
	}
	for d, w := range want {
		if g, ok := got[d]; !ok || g != w {
			t.Errorf("%s: (alive, dead) samples %v (present %v), want %v", d, g, ok, w)
		}
	}
	if t.Failed() {
		t.Logf("paths: %v; %d probe results: %+v", got, len(results), results)
	}
}
