package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/realserver"
	"github.com/ghostd/ghostd/internal/testnet"
)

// TestRealServers runs PostgreSQL, Redis, nginx (reverse proxy with an
// upstream keepalive pool) and a Go server on Go's defaults, each with real
// clients behind a masquerading router with strict conntrack, and judges
// ghostd three ways for every scenario (healthy idle, healthy busy, client
// host died, NAT forgot the flow and resets, NAT forgot the flow and drops,
// client restarted; IPv4 and IPv6):
//
//  1. report only: every ghost is confirmed, no healthy connection ever is,
//     in the daemon and in 20 `ghostd probe` rounds over every healthy socket;
//  2. with --kill (destroy): each server's own view of its clients shrinks by
//     exactly the ghosts, healthy clients keep getting answers, and new
//     clients are served;
//  3. against the kernel: fresh ghosts, one `ghostd scan`, then keepalive
//     1 s x 3 armed on every server-side socket: the set the kernel reaps is
//     exactly the set ghostd called ghosts.
func TestRealServers(t *testing.T) {
	needRoot(t)
	t.Parallel() // alongside TestRealServersDefaults, which mostly waits
	for _, k := range realserver.Kinds {
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			testRealServer(t, k.Name, k.Start)
		})
	}
}

func testRealServer(t *testing.T, name string, start realserver.Starter) {
	began := time.Now()
	f := newRSFixture(t, start)
	var ghosts, healthy []*rsConn
	for _, network := range []string{"tcp4", "tcp6"} {
		for _, kind := range []string{healthyIdle, healthyBusy, hostDied, natForgot, natSilent, restarted} {
			x := f.connect(kind, network)
			if x.ghost {
				ghosts = append(ghosts, x)
			} else {
				healthy = append(healthy, x)
			}
		}
	}
	if name == "nginx" {
		pool := upstreamPool(t, f.n.Server)
		if pool == 0 {
			t.Fatal("nginx holds no upstream keepalive connection to its backend")
		}
		t.Logf("nginx: %d upstream keepalive connections held", pool)
	}
	before := f.view()
	for _, x := range f.conns {
		if !before[x.remote] {
			t.Fatalf("%s: the server's own view does not list %s (%s): %v", name, x.name(), x.remote, before)
		}
	}

	// 1. Report only.
	d := startDaemon(t, rsReportCfg, f.daemonArgs()...)
	for _, x := range ghosts {
		f.vanish(x)
	}
	vanished := time.Now()
	ghostKeys := map[string]bool{}
	for _, x := range ghosts {
		ghostKeys[x.key()] = true
	}
	falseGhosts := map[string]string{}
	checkNoFalse := func(byKey map[string]*exporter.Session) {
		for k, s := range byKey {
			if s.Ghost && !ghostKeys[k] {
				falseGhosts[k] = verdictOf(s)
			}
		}
	}
	var last map[string]*exporter.Session
	took := waitFor(t, 75*time.Second, name+": every ghost confirmed", func() (bool, string) {
		doc, err := d.sessions("")
		if err != nil {
			return false, err.Error()
		}
		last = byTuple(&doc)
		checkNoFalse(last)
		var missing []string
		for _, x := range ghosts {
			if s := last[x.key()]; s == nil || !s.Ghost {
				missing = append(missing, x.name()+": "+verdictOf(s))
			}
		}
		return len(missing) == 0, strings.Join(missing, "; ")
	})
	t.Logf("%s: every ghost confirmed %.1fs after the clients vanished", name, took.Seconds())
	for _, x := range ghosts {
		checkReasons(t, name, x, last[x.key()])
		x.verdict = verdictOf(last[x.key()]) // as confirmed: the kernel may end some later on its own
	}
	// 20 rounds of `ghostd probe` over every other socket, the daemon still
	// running and checked after each round.
	probes, bad := f.probeRounds(20, ghostKeys, func(int) {
		if doc, err := d.sessions(""); err == nil {
			last = byTuple(&doc)
			checkNoFalse(last)
		}
	})
	t.Logf("%s: 20 probe rounds, %d probes of healthy sockets, %d not alive", name, probes, len(bad))
	for _, b := range bad {
		t.Errorf("%s: false ghost in a probe round: %s", name, b)
	}
	if probes < 20*len(healthy) {
		t.Errorf("%s: %d healthy probes, want at least 20 x %d", name, probes, len(healthy))
	}
	for k, v := range falseGhosts {
		t.Errorf("%s: the daemon called a healthy connection a ghost: %s: %s", name, k, v)
	}
	for _, x := range healthy {
		x.verdict = verdictOf(last[x.key()])
	}
	d.stop(5 * time.Second)
	t.Logf("%s: report phase took %.1fs since the clients vanished", name, time.Since(vanished).Seconds())

	// 2. Kill: the server's view shrinks by exactly the ghosts it still holds.
	before = f.view()
	want := map[netip.AddrPort]bool{}
	for ap := range before {
		want[ap] = true
	}
	for _, x := range f.conns {
		x.inViewBefore = before[x.remote]
		if x.ghost {
			delete(want, x.remote)
		}
	}
	dk := startDaemon(t, rsKillCfg, f.daemonArgs()...)
	var after map[netip.AddrPort]bool
	waitFor(t, 75*time.Second, name+": the server dropped exactly the ghosts", func() (bool, string) {
		after = f.view()
		return mapsEqual(after, want), fmt.Sprintf("view %v, want %v", keys(after), keys(want))
	})
	doc, err := dk.sessions("")
	if err != nil {
		t.Fatal(err)
	}
	held := 0 // ghosts the server still held when the kill phase began
	for _, x := range ghosts {
		if before[x.remote] {
			held++
		}
	}
	mfs, err := dk.metrics()
	if err != nil {
		t.Fatal(err)
	}
	var killedTotal float64
	for _, m := range mfs["ghostd_ghosts_killed_total"].GetMetric() {
		killedTotal += m.GetCounter().GetValue()
	}
	if int(killedTotal) != held {
		t.Errorf("%s: ghostd_ghosts_killed_total = %v, want %d (the ghosts the server held)", name, killedTotal, held)
	}
	killedJSON := byTuple(&doc)
	for _, x := range f.conns {
		x.inViewAfter = after[x.remote]
		if s := killedJSON[x.key()]; s != nil {
			x.killed = s.Killed
		}
		if x.killed && !x.ghost {
			t.Errorf("%s: killed a healthy connection: %s", name, x.name())
		}
	}
	for _, x := range healthy {
		if x.kind == healthyIdle {
			if err := x.c.Ask(); err != nil {
				t.Errorf("%s: %s: no answer after the kill: %v", name, x.name(), err)
			}
		}
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		healthy = append(healthy, f.connect(newConn, network)) // connect fails the test if not served
	}
	dk.stop(5 * time.Second)

	// 3. The kernel as judge: fresh ghosts, one scan, then keepalive 1 s x 3
	// on every server-side socket.
	var fresh []*rsConn
	for _, network := range []string{"tcp4", "tcp6"} {
		for _, kind := range []string{hostDied, natForgot, natSilent, restarted} {
			fresh = append(fresh, f.connect(kind, network))
		}
	}
	viewBeforeReap := f.view()
	for _, x := range fresh {
		f.vanish(x)
	}
	time.Sleep(3 * time.Second) // past --idle
	out, err := exec.Command(ghostdPlainBin, "scan", "--json", "--netns", f.n.Server.Name, "--idle", rsIdle, "--probe-interval", "1s").Output()
	if err != nil {
		t.Fatalf("ghostd scan: %v", err)
	}
	var sdoc exporter.Document
	if err := json.Unmarshal(out, &sdoc); err != nil {
		t.Fatalf("ghostd scan --json: %v", err)
	}
	scanned := byTuple(&sdoc)
	called := map[string]bool{}
	for k, s := range scanned {
		if s.Ghost {
			called[k] = true
		}
	}
	socks, err := realserver.Sockets(f.n.Server)
	if err != nil {
		t.Fatal(err)
	}
	for _, sk := range socks {
		if err := realserver.ArmKeepalive(sk, time.Second, time.Second, 3); err != nil {
			t.Fatalf("%s: arm keepalive on %s -> %s: %v", name, sk.Local, sk.Remote, err)
		}
	}
	time.Sleep(6 * time.Second) // 1 s idle + 3 unanswered probes 1 s apart, and slack
	left, err := realserver.Sockets(f.n.Server)
	if err != nil {
		t.Fatal(err)
	}
	alive := map[uint64]bool{}
	for _, sk := range left {
		alive[sk.Inode] = true
	}
	reaped := map[string]bool{}
	for _, sk := range socks {
		if !alive[sk.Inode] {
			reaped[sk.Local.String()+" "+sk.Remote.String()] = true
		}
	}
	if !mapsEqual(reaped, called) {
		t.Errorf("%s: the kernel reaped %v, ghostd called %v ghosts: they must be the same set", name, keys(reaped), keys(called))
	}
	armed := map[string]bool{}
	for _, sk := range socks {
		armed[sk.Local.String()+" "+sk.Remote.String()] = true
	}
	for _, x := range f.conns {
		if armed[x.key()] {
			x.kernelGhost = verdictOf(scanned[x.key()])
			x.kernelReaped, x.reapedMeasured = reaped[x.key()], true
		}
		if x.ghost && slices.Contains(fresh, x) && !called[x.key()] {
			t.Errorf("%s: %s: ghostd scan did not call it a ghost: %s", name, x.name(), verdictOf(scanned[x.key()]))
		}
	}
	// The server notices what the kernel reaped: its view shrinks by the fresh ghosts.
	wantAfterReap := map[netip.AddrPort]bool{}
	for ap := range viewBeforeReap {
		wantAfterReap[ap] = true
	}
	for _, x := range fresh {
		delete(wantAfterReap, x.remote)
	}
	waitFor(t, 15*time.Second, name+": the server dropped what the kernel reaped", func() (bool, string) {
		v := f.view()
		return mapsEqual(v, wantAfterReap), fmt.Sprintf("view %v, want %v", keys(v), keys(wantAfterReap))
	})
	for _, x := range healthy {
		if x.kind != healthyBusy {
			if err := x.c.Ask(); err != nil {
				t.Errorf("%s: %s: no answer at the end: %v", name, x.name(), err)
			}
		}
	}
	for _, err := range f.busyErrors() {
		t.Errorf("%s: busy client failed: %v", name, err)
	}
	f.table(name, time.Since(began))
}

// TestRealServersDefaults runs ghostd on its defaults (no flags: 60 s idle,
// 15 s scans, 3 probes 1 s apart) over PostgreSQL, Redis, nginx and the Go
// server side by side in one namespace behind the masquerading router. Each
// has a healthy idle client and a client whose host dies right after its
// last answer; every dead client must be confirmed within 2 minutes of going
// quiet (the kernel would take 2 h 11 min for PostgreSQL, 10 min for Redis,
// never for nginx, 2.5 min for Go), and no healthy client ever.
func TestRealServersDefaults(t *testing.T) {
	needRootLong(t, "waits out the default 60 s idle threshold")
	t.Parallel()
	n := testnet.NewMasquerade(t)
	type dead struct {
		srv     *realserver.Server
		x       *rsConn
		quiet   time.Time
		found   time.Duration
		healthy *rsConn
	}
	var all []*dead
	for i, k := range realserver.Kinds {
		f := &rsFixture{t: t, n: n, srv: k.Start(t, n.Server, n.ServerV4, n.ServerV6), stop: make(chan struct{})}
		network := []string{"tcp4", "tcp6"}[i%2]
		all = append(all, &dead{srv: f.srv, healthy: f.connect(healthyIdle, network), x: f.connect(hostDied, network)})
	}
	for _, d := range all {
		if err := d.x.c.Ask(); err != nil { // the last exchange: quiet from now on...
			t.Fatal(err)
		}
		d.quiet = time.Now()
		n.DropFlow(t, d.x.c.Conn) // ...and its host is gone
	}
	dm := startDaemon(t, "", "--netns", n.Server.Name)
	first := all[0].quiet
	var falseGhosts []string
	waitFor(t, 2*time.Minute+5*time.Second, "every dead client confirmed on defaults", func() (bool, string) {
		doc, err := dm.sessions("")
		if err != nil {
			return false, err.Error()
		}
		m := byTuple(&doc)
		var missing []string
		for _, d := range all {
			if s := m[d.healthy.key()]; s != nil && s.Ghost {
				falseGhosts = append(falseGhosts, d.srv.Name+": "+verdictOf(s))
			}
			if d.found == 0 {
				if s := m[d.x.key()]; s != nil && s.Ghost {
					d.found = time.Since(d.quiet)
					t.Logf("defaults: %s: dead %s client confirmed %.0fs after going quiet: %s", d.srv.Name, d.x.network, d.found.Seconds(), verdictOf(s))
				} else {
					missing = append(missing, d.srv.Name+": "+verdictOf(s))
				}
			}
		}
		return len(missing) == 0, fmt.Sprintf("%.0fs after going quiet: %s", time.Since(first).Seconds(), strings.Join(missing, "; "))
	})
	for _, d := range all {
		if d.found > 2*time.Minute {
			t.Errorf("defaults: %s: confirmed %v after going quiet, want ≤ 2m", d.srv.Name, d.found)
		}
		if err := d.healthy.c.Ask(); err != nil {
			t.Errorf("defaults: %s: healthy client: %v", d.srv.Name, err)
		}
	}
	for _, g := range falseGhosts {
		t.Errorf("defaults: a healthy client was called a ghost: %s", g)
	}
}

// upstreamPool counts the connections nginx holds to its backend (its
// upstream keepalive pool), as ss shows them in its namespace.
func upstreamPool(t *testing.T, ns *testnet.NS) int {
	t.Helper()
	socks, err := realserver.Sockets(ns)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, sk := range socks {
		if sk.Comm == "nginx" && sk.Remote.Port() == realserver.NginxUpstreamPort {
			n++
		}
	}
	return n
}
