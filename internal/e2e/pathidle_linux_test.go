package e2e

import (
	"context"
	"io"
	"net"
	"slices"
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
	seq, err := probe.NewIterReader()
	if err != nil {
		t.Skipf("BPF TCP iterator unavailable: %v", err)
	}
	t.Cleanup(func() { seq.Close() })
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
			c := n.Client.Dial(t, network, listeners[network].Addr().String())
			s := testnet.Accept(t, listeners[network])
			noKeepalive(t, c, s)
			pingPong(t, c, s)
			conns = append(conns, conn{age: age, client: c})
		}
	}
	time.Sleep(time.Until(probeAt))

	sel, err := inventory.SelectNetns(n.Client.Name)
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
	tc.Idle = 2 * time.Second
	e := engine.New(scanner, prober, inventory.NewOwners("/proc"), engine.Options{Tracker: tc, Backoff: time.Hour, Reconfirm: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.Scan(ctx)
	e.Snapshot()
	results := e.Probe(ctx, e.Targets())
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
