package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/inventory"
	"github.com/ghostd/ghostd/pathidle"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// TestPathIdleTimeoutEstimate: a router that forgets idle flows after 20 s
// (conntrack established timeout 20 s, INVALID dropped, tcp_loose=0), and
// client connections to one server port per family left idle for 6, 12 and
// 16 s (alive) and 26, 32 and 40 s (dead) when ghostd's engine, with the
// real inventory and prober watching the client's namespace, probes them
// all in one pass. The estimate for each destination must bracket 20 s.
// The connections are opened staggered, so all reach their ages together:
// the test idles about 40 s in total.
func TestPathIdleTimeoutEstimate(t *testing.T) {
	needRoot(t)
	seq := iterReader(t)
	const timeout = 20 * time.Second
	n := testnet.New(t)
	n.SetIdleTimeout(t, timeout)

	ages := []time.Duration{40 * time.Second, 32 * time.Second, 26 * time.Second, 16 * time.Second, 12 * time.Second, 6 * time.Second}
	type conn struct {
		age    time.Duration
		client net.Conn
	}
	var conns []conn
	listeners := map[string]net.Listener{}
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := net.JoinHostPort(n.ServerV4.String(), "0")
		if network == "tcp6" {
			addr = net.JoinHostPort(n.ServerV6.String(), "0")
		}
		l := n.Server.ListenNoKeepalive(t, network, addr)
		t.Cleanup(func() { l.Close() })
		listeners[network] = l
	}
	start := time.Now()
	probeAt := start.Add(ages[0])
	for _, age := range ages {
		time.Sleep(time.Until(probeAt.Add(-age)))
		for _, network := range []string{"tcp4", "tcp6"} {
			c := idleConn(t, n.Client, network, listeners[network].Addr().String(), listeners[network])
			conns = append(conns, conn{age: age, client: c})
		}
	}
	time.Sleep(time.Until(probeAt))

	e, results := probeOnce(t, seq, n.Client, inventory.SourceSockDiag, 2*time.Second)
	t.Logf("probed %d connections %.1f s after the first was opened", len(results), time.Since(start).Seconds())

	// Each connection's verdict is what the router's timeout says.
	verdicts := map[string]string{}
	e.EachSession(func(batch []exporter.Session) bool {
		for _, s := range batch {
			verdicts[s.Local] = s.Verdict
		}
		return true
	})
	for _, c := range conns {
		local, _ := testnet.Tuple(c.client)
		want := "alive"
		if c.age > timeout {
			want = "silent"
		}
		if got := verdicts[engine.FormatAddr(local)]; got != want {
			t.Errorf("connection idle %s (%s): verdict %q, want %q", c.age, local, got, want)
		}
	}

	paths := e.Paths()
	var dests []string
	for _, p := range paths {
		t.Logf("estimate: %s", p.Text())
		for _, a := range p.Advice {
			t.Logf("  advice for %s: %s", a.Owner, a.Setting)
		}
		dests = append(dests, p.Dest.String())
	}
	for network, l := range listeners {
		d := pathidle.DestOf(l.Addr().(*net.TCPAddr).AddrPort()).String()
		i := slices.Index(dests, d)
		if i < 0 {
			t.Errorf("%s: no estimate for %s (have %v)", network, d, dests)
			continue
		}
		p := paths[i]
		if !p.Ready || p.Alive != 3 || p.Dead != 3 || p.Lower > timeout || p.Upper < timeout {
			t.Errorf("%s: %s; want 3 alive and 3 dead samples bracketing %s", network, p.Text(), timeout)
		}
		if p.Lower < 15*time.Second || p.Upper > 45*time.Second {
			t.Errorf("%s: window (%s, %s] is wider than the samples allow (alive at 16 s, dead at 26 s plus a probe round)", network, p.Lower, p.Upper)
		}
		if p.Keepalive.Idle >= p.Lower || len(p.Advice) == 0 {
			t.Errorf("%s: keepalive advice %+v %+v is not below the lower bound", network, p.Keepalive, p.Advice)
		}
	}
}

// iterReader returns the prober's BPF TCP iterator, closed in t.Cleanup;
// it skips the test without one.
func iterReader(t *testing.T) *probe.IterReader {
	t.Helper()
	seq, err := probe.NewIterReader()
	if err != nil {
		t.Skipf("BPF TCP iterator unavailable: %v", err)
	}
	t.Cleanup(func() { seq.Close() })
	return seq
}

// probeOnce runs ghostd's engine, with the real inventory watching ns and
// the real prober, once: a scan with the given idle threshold, then a probe
// of every suspect. It returns the engine and the probe results. With
// source SourceWalk the inventory lists ns with the daemon's one BPF walk
// (after the dump that first gives its sockets their cookies); the test is
// skipped where the walk does not load.
func probeOnce(t *testing.T, seq *probe.IterReader, ns *testnet.NS, source string, idle time.Duration) (*engine.Engine, []probe.Result) {
	t.Helper()
	sel, err := inventory.SelectNetns(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	walk := source == inventory.SourceWalk
	scanner := inventory.NewScanner(nil, inventory.ScannerOptions{Select: sel, OneWalk: walk})
	t.Cleanup(func() { scanner.Close() })
	if scanner.Source() != source {
		t.Skipf("inventory source %q, want %q", scanner.Source(), source)
	}
	pc := probe.DefaultConfig()
	pc.Interval, pc.Timeout = probe.MinInterval, 500*time.Millisecond
	prober := probe.New(pc, seq, nil)
	t.Cleanup(func() { prober.Close() })
	tc := tracker.DefaultConfig()
	tc.Idle = idle
	e := engine.New(scanner, prober, inventory.NewOwners("/proc"), engine.Options{Tracker: tc, Backoff: time.Hour, Reconfirm: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if walk {
		e.Scan(ctx)
	}
	for _, r := range e.Scan(ctx) {
		if r.Err != nil || r.Source != source {
			t.Fatalf("scan of %s: source %q, error %v; want %q", r.Namespace.Name, r.Source, r.Err, source)
		}
	}
	e.Snapshot()
	return e, e.Probe(ctx, e.Targets())
}

// TestPathKeyedByService: ghostd's engine, with the real inventory and
// prober, watches a server that accepts five connections on one dual-stack
// wildcard listener (four from the client's IPv4 address, each from its own
// ephemeral port, two of which the client then loses; one over IPv6) and
// itself connects out to a service on the client. The path table must hold
// one destination for the four IPv4 clients with all four samples (2 alive,
// 2 dead), one for the IPv6 client, and the outbound connection under the
// remote service's port: three destinations, none per ephemeral port. The
// listener must come through both inventory sources: sock_diag and the
// daemon's BPF walk.
func TestPathKeyedByService(t *testing.T) {
	needRoot(t)
	for _, source := range []string{inventory.SourceSockDiag, inventory.SourceWalk} {
		t.Run(source, func(t *testing.T) { pathKeyedByService(t, source) })
	}
}

func pathKeyedByService(t *testing.T, source string) {
	seq := iterReader(t)
	n := testnet.New(t)

	l := n.Server.ListenNoKeepalive(t, "tcp", "[::]:0") // dual-stack: IPv4 clients arrive v4-mapped
	// Open until the end: the scan must see it (a listener no longer
	// referenced is closed by the garbage collector).
	t.Cleanup(func() { l.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	var v4 []net.Conn
	for range 4 {
		v4 = append(v4, idleConn(t, n.Client, "tcp4", net.JoinHostPort(n.ServerV4.String(), strconv.Itoa(port)), l))
	}
	idleConn(t, n.Client, "tcp6", net.JoinHostPort(n.ServerV6.String(), strconv.Itoa(port)), l)
	svc := n.Client.ListenNoKeepalive(t, "tcp4", net.JoinHostPort(n.ClientV4.String(), "0"))
	t.Cleanup(func() { svc.Close() })
	idleConn(t, n.Server, "tcp4", svc.Addr().String(), svc)
	// Two clients forget their connection without a word: the server's
	// probe gets a RST, a confirmed ghost.
	n.Client.LoseConn(t, v4[2])
	n.Client.LoseConn(t, v4[3])
	time.Sleep(1500 * time.Millisecond) // past the tracker's idle threshold

	e, results := probeOnce(t, seq, n.Server, source, time.Second)
	got := map[string][2]int{}
	for _, p := range e.Paths() {
		got[p.Dest.String()] = [2]int{p.Alive, p.Dead}
	}
	want := map[string][2]int{
		fmt.Sprintf("clients 192.0.2.0/24 → :%d", port):                {2, 2},
		fmt.Sprintf("clients 2001:db8:1::/64 → :%d", port):             {1, 0},
		fmt.Sprintf("192.0.2.0/24:%d", svc.Addr().(*net.TCPAddr).Port): {1, 0},
	}
	if !maps.Equal(got, want) {
		t.Errorf("destinations (alive, dead samples) = %v, want %v; %d probe results: %+v", got, want, len(results), results)
	}
}

// idleConn dials addr from ns, accepts the connection on l, turns
// keepalive off at both ends, moves a few bytes each way and returns the
// dialing end.
func idleConn(t *testing.T, ns *testnet.NS, network, addr string, l net.Listener) net.Conn {
	t.Helper()
	c := ns.Dial(t, network, addr)
	s := testnet.Accept(t, l)
	noKeepalive(t, c, s)
	pingPong(t, c, s)
	return c
}

// pingPong moves a few bytes each way, so the path last saw the connection now.
func pingPong(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, dir := range [][2]net.Conn{{a, b}, {b, a}} {
		dir[1].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := dir[0].Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(dir[1], make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		dir[1].SetReadDeadline(time.Time{})
	}
}
