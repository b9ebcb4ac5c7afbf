package e2e

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/engine"
	"github.com/ghostd/ghostd/internal/testnet"
)

// TestScanAndProbeCommands runs `ghostd scan` (table and JSON) and `ghostd
// probe` against the test network and checks what they print and exit with.
func TestScanAndProbeCommands(t *testing.T) {
	n, cs := idleNet(t, "tcp4", "tcp4", "tcp6", "tcp4")
	healthy, ghost, ghost6, cw := cs[0], cs[1], cs[2], cs[3]
	n.DropFromClient(t, ghost.c)
	n.LoseState(t, ghost6.c)
	cw.c.Close()
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	args := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--close-wait", "2s", "--probe-interval", "1s"}
	table := scanTable(t, args...)
	wantRows := map[string]string{
		rowKey(healthy.s): "alive",
		rowKey(ghost.s):   "silent (ghost)",
		rowKey(ghost6.s):  "silent (ghost)",
		rowKey(cw.s):      "close_wait",
	}
	for key, want := range wantRows {
		line := lineWith(table, key)
		if line == "" || !strings.Contains(line, want) {
			t.Errorf("row for %s = %q, want it to contain %q", key, line, want)
		}
	}
	if !strings.Contains(table, "2 ghosts") {
		t.Errorf("summary line does not count 2 ghosts:\n%s", table)
	}

	doc, _ := scanDoc(t, append(args, "--json", "--no-probe")...)
	if len(doc.Namespaces) != 1 || doc.Namespaces[0].Netns != n.Server.Name || doc.Namespaces[0].NetnsInode != n.Server.Inode {
		t.Errorf("namespaces = %+v", doc.Namespaces)
	}
	for _, s := range doc.Sessions {
		if s.Verdict != "unprobed" || s.ProbesSent != 0 {
			t.Errorf("--no-probe session was probed: %+v", s)
		}
	}
	if len(doc.Sessions) != 4 {
		t.Errorf("--json lists %d sessions, want 4 suspects", len(doc.Sessions))
	}

	// ghostd probe: alive exits 0, a ghost exits 3, an unknown tuple is refused.
	probe := func(local, remote string) (string, int) {
		out, err := exec.Command(ghostdBin, "probe", "--netns", n.Server.Name, local, remote).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	hl, hr := testnet.Tuple(healthy.s)
	if out, code := probe(hl.String(), hr.String()); code != 0 || !strings.Contains(out, ": alive") {
		t.Errorf("probe healthy: exit %d, %q", code, out)
	}
	gl, gr := testnet.Tuple(ghost.s)
	if out, code := probe(gl.String(), gr.String()); code != 3 || !strings.Contains(out, ": silent") {
		t.Errorf("probe ghost: exit %d, %q", code, out)
	}
	if out, code := probe(gl.String(), "192.0.2.2:1"); code != 1 || !strings.Contains(out, "not in the socket table") {
		t.Errorf("probe unknown tuple: exit %d, %q", code, out)
	}
	roundTrip(t, &scenario{name: "healthy after scan and probe", server: healthy.s, client: healthy.c})
}

// rowKey is how the table shows a server connection: "LOCAL  REMOTE" columns.
func rowKey(server net.Conn) string {
	l, r := testnet.Tuple(server)
	return l.String() + " " + r.String()
}

// lineWith returns the table line showing key's two addresses, whatever the
// padding between them.
func lineWith(table, key string) string {
	f := strings.Fields(key)
	for _, line := range strings.Split(table, "\n") {
		cols := strings.Fields(line)
		for i := 0; i+1 < len(cols); i++ {
			if cols[i] == f[0] && cols[i+1] == f[1] {
				return line
			}
		}
	}
	return ""
}

// scanTable runs ghostd with args (a `scan` printing its table), logs the
// table and returns it.
func scanTable(t *testing.T, args ...string) string {
	t.Helper()
	out := string(ghostdOut(t, args...))
	t.Logf("ghostd %s\n%s", strings.Join(args, " "), out)
	return out
}

// TestScanListsZeroWindowOnFirstSight: a one-shot `ghostd scan` has no
// history, yet lists a connection whose peer stopped reading before the
// scan began as zero_window (its age bounded by the last data sent): a
// stall, reported unprobed, never a ghost. A stall younger than --stall is
// not listed.
func TestScanListsZeroWindowOnFirstSight(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	oldS, _ := idlePair(t, n, "tcp4")
	fillWindow(t, oldS) // the client never reads
	time.Sleep(3 * time.Second)
	youngS, _ := idlePair(t, n, "tcp4")
	fillWindow(t, youngS)

	args := []string{"scan", "--netns", n.Server.Name, "--stall", "2500ms", "--idle", "1h"}
	out := scanTable(t, args...)
	line := lineWith(out, rowKey(oldS))
	if !strings.Contains(line, "zero_window") || !strings.Contains(line, "unprobed") || strings.Contains(line, "ghost") {
		t.Errorf("row of the 3 s old stall = %q, want zero_window, unprobed, no ghost", line)
	}
	if line := lineWith(out, rowKey(youngS)); line != "" {
		t.Errorf("a stall younger than --stall is listed: %q", line)
	}
	if !strings.Contains(out, "0 ghosts") {
		t.Errorf("a stall counted as a ghost:\n%s", out)
	}
}

// TestScanShowsKernelDeadline: a one-shot scan lists a PostgreSQL-shaped
// socket (keepalive on, the namespace's 7200 s) as idle, with the kernel's
// deadline (no earlier than 2 h 11 min) in the table and the JSON, and a
// socket without keepalive as never noticed by its kernel.
func TestScanShowsKernelDeadline(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	kaS, _ := keepaliveOnDefaults(t, n)
	plainS, _ := idlePair(t, n, "tcp4")
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	args := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--no-probe"}
	table := scanTable(t, args...)
	if line := lineWith(table, rowKey(kaS)); !strings.Contains(line, " idle ") || !strings.Contains(line, ">2h1") {
		t.Errorf("keepalive-on row = %q, want idle with KERNEL >2h1…", line)
	}
	if line := lineWith(table, rowKey(plainS)); !strings.Contains(line, " idle ") || !strings.Contains(line, " never ") {
		t.Errorf("keepalive-off row = %q, want idle with KERNEL never", line)
	}

	doc, out := scanDoc(t, append(args, "--json")...)
	found := 0
	for _, s := range doc.Sessions {
		switch sessionKey(&s) {
		case rowKey(kaS):
			found++
			if s.KernelDeadlineSeconds == nil || *s.KernelDeadlineSeconds < 7200 || s.KernelDeadlineBasis != "keepalive" || !s.KernelDeadlineLowerBound {
				t.Errorf("keepalive-on session: deadline %v %q lower bound %v", s.KernelDeadlineSeconds, s.KernelDeadlineBasis, s.KernelDeadlineLowerBound)
			}
		case rowKey(plainS):
			found++
			if s.KernelDeadlineSeconds != nil || s.KernelDeadlineBasis != "none" {
				t.Errorf("keepalive-off session: deadline %v %q, want null, none", s.KernelDeadlineSeconds, s.KernelDeadlineBasis)
			}
		}
	}
	if found != 2 {
		t.Errorf("%d of the 2 idle sockets in the JSON:\n%s", found, out)
	}
}

// TestScanDNATInOutput: a client talking to a Service VIP, DNATed in its
// own namespace's OUTPUT chain (kube-proxy's shape). `ghostd scan --json` of
// the client's namespace must find the healthy connection alive in every
// run and the one whose backend lost it a ghost, both marked "nat": "dnat".
// Before the conntrack lookup every such connection was silent: killable.
func TestScanDNATInOutput(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	l := n.Server.Listen(t, "tcp4", net.JoinHostPort(n.ServerV4.String(), "0"))
	backend := l.Addr().(*net.TCPAddr).AddrPort()
	vip := n.DNATOutput(t, "tcp4", backend)
	healthy := n.Client.DialFrom(t, "tcp4", n.ClientV4, vip)
	healthyPeer := testnet.Accept(t, l)
	dead := n.Client.DialFrom(t, "tcp4", n.ClientV4, vip)
	deadPeer := testnet.Accept(t, l)
	noKeepalive(t, healthy, healthyPeer, dead, deadPeer)
	roundTrip(t, &scenario{name: "healthy", server: healthyPeer, client: healthy})
	roundTrip(t, &scenario{name: "dead", server: deadPeer, client: dead})
	n.Server.LoseConn(t, deadPeer)
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	hl, _ := testnet.Tuple(healthy)
	dl, _ := testnet.Tuple(dead)
	args := []string{"scan", "--json", "--netns", n.Client.Name, "--idle", "2s", "--probe-interval", "1s"}
	for run := range 3 {
		doc, out := scanDoc(t, args...)
		got := map[string]exporter.Session{}
		for _, s := range doc.Sessions {
			got[s.Local] = s
		}
		h, ok := got[engine.FormatAddr(hl)]
		if !ok || h.Verdict != "alive" || h.Ghost || h.NAT != "dnat" || h.Remote != engine.FormatAddr(vip) {
			t.Errorf("run %d: healthy DNATed connection: %+v (present %v), want alive with nat dnat\n%s", run, h, ok, out)
		}
		d, ok := got[engine.FormatAddr(dl)]
		if !ok || !d.Ghost || d.NAT != "dnat" {
			t.Errorf("run %d: dead DNATed connection: %+v (present %v), want a ghost with nat dnat\n%s", run, d, ok, out)
		}
		t.Logf("run %d: healthy %s (%d/%d), dead %s (%d/%d)", run, h.Verdict, h.Replies, h.ProbesSent, d.Verdict, d.Replies, d.ProbesSent)
	}

	// With the default unit's capabilities, without CAP_NET_ADMIN: ctnetlink
	// refuses the lookup, and the namespace's /proc/net/nf_conntrack answers.
	caps := "-all,+net_raw,+sys_admin,+sys_ptrace,+dac_read_search,+bpf,+perfmon"
	doc, stderr := setprivScan(t, []string{"--bounding-set=" + caps, "--inh-caps=-all"}, args...)
	for _, s := range doc.Sessions {
		switch s.Local {
		case engine.FormatAddr(hl):
			if s.Verdict != "alive" || s.NAT != "dnat" {
				t.Errorf("without CAP_NET_ADMIN, healthy: %+v", s)
			}
		case engine.FormatAddr(dl):
			if !s.Ghost || s.NAT != "dnat" {
				t.Errorf("without CAP_NET_ADMIN, dead: %+v", s)
			}
		}
	}
	if !strings.Contains(stderr, "/proc/net/nf_conntrack") {
		t.Errorf("the fallback is not logged:\n%s", stderr)
	}
	t.Logf("without CAP_NET_ADMIN: %d sessions; log:\n%s", len(doc.Sessions), stderr)
	roundTrip(t, &scenario{name: "healthy after the scans", server: healthyPeer, client: healthy})
}

// md5Key installs a TCP-MD5 key (RFC 2385) for peer on a socket before
// listen or connect, as BGP speakers do.
func md5Key(peer netip.Addr) func(string, string, syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = testnet.SetMD5Key(int(fd), peer, "secret")
		}); err != nil {
			return err
		}
		return serr
	}
}

// md5Pair connects an idle TCP-MD5 connection through the test network and
// returns its server end (keepalive off on both ends).
func md5Pair(t *testing.T, n *testnet.Net, network string) net.Conn {
	t.Helper()
	laddr, srv, cli := net.JoinHostPort(n.ServerV4.String(), "0"), n.ServerV4, n.ClientV4
	if network == "tcp6" {
		laddr, srv, cli = net.JoinHostPort(n.ServerV6.String(), "0"), n.ServerV6, n.ClientV6
	}
	var ln net.Listener
	if err := n.Server.Do(func() (err error) {
		ln, err = (&net.ListenConfig{Control: md5Key(cli), KeepAlive: -1}).Listen(context.Background(), network, laddr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var client net.Conn
	if err := n.Client.Do(func() (err error) {
		client, err = (&net.Dialer{Control: md5Key(srv), KeepAlive: -1, Timeout: testnet.DialTimeout}).Dial(network, ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server
}

// TestScanTCPMD5NeverAGhost: idle TCP-MD5 connections (BGP sessions) are
// suspects like any idle connection, but `ghostd scan` never probes them:
// its peer would drop the unsigned probes and they would look silent. The
// JSON says unprobed with unprobeable "tcp_md5", the table "unprobed
// (tcp-md5)", and neither calls them ghosts.
func TestScanTCPMD5NeverAGhost(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	md5v4, md5v6 := md5Pair(t, n, "tcp4"), md5Pair(t, n, "tcp6")
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	args := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--probe-interval", "1s"}
	doc, out := scanDoc(t, append(args, "--json")...)
	if !strings.Contains(string(out), `"unprobeable":"tcp_md5"`) && !strings.Contains(string(out), `"unprobeable": "tcp_md5"`) {
		t.Errorf("the JSON never says unprobeable tcp_md5:\n%s", out)
	}
	found := 0
	for _, s := range doc.Sessions {
		for _, c := range []net.Conn{md5v4, md5v6} {
			l, r := testnet.Tuple(c)
			if s.Local != l.String() || s.Remote != r.String() {
				continue
			}
			found++
			if s.Verdict != "unprobed" || s.Unprobeable != "tcp_md5" || s.Ghost || s.ProbesSent != 0 {
				t.Errorf("MD5 session %s: verdict %s unprobeable %q ghost %v probes %d; want unprobed, tcp_md5, no ghost, no probe",
					s.Local, s.Verdict, s.Unprobeable, s.Ghost, s.ProbesSent)
			}
		}
	}
	if found != 2 {
		t.Fatalf("scan listed %d of the 2 idle MD5 sessions:\n%s", found, out)
	}

	table := scanTable(t, args...)
	for _, c := range []net.Conn{md5v4, md5v6} {
		if line := lineWith(table, rowKey(c)); !strings.Contains(line, "unprobed (tcp-md5)") || strings.Contains(line, "ghost") {
			t.Errorf("table row %q, want unprobed (tcp-md5) and no ghost", line)
		}
	}
	if !strings.Contains(table, "0 ghosts") {
		t.Errorf("the summary counts ghosts:\n%s", table)
	}

	// `ghostd probe` says why, and exits 0 (not a ghost).
	l, r := testnet.Tuple(md5v4)
	out, err := exec.Command(ghostdBin, "probe", "--netns", n.Server.Name, l.String(), r.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "unprobed (tcp-md5)") {
		t.Errorf("ghostd probe on an MD5 session: %v, %q", err, out)
	}
}

// TestScanResetGuard runs `ghostd scan` against peers that lost their
// connections behind the strict router, without and with --probe-reset-guard:
// silent without it, reset with it, closed_by_probe false and the local
// sockets ESTABLISHED with their owner's reads still blocking either way; a
// healthy connection stays alive. No ghostd table is left in the namespace
// after a scan, nor after a scan killed with SIGKILL while its guard was up,
// nor after the next scan.
func TestScanResetGuard(t *testing.T) {
	n, cs := idleNet(t, "tcp4", "tcp6", "tcp4", "tcp4")
	ghost4, ghost6, healthy, slow := cs[0], cs[1], cs[2], cs[3]
	n.LoseState(t, ghost4.c)
	n.LoseState(t, ghost6.c)
	n.DropFromClient(t, slow.c) // silent for as long as its probes last
	time.Sleep(2500 * time.Millisecond)

	noGhostdTable := func(when string) {
		t.Helper()
		if out := n.Server.Exec(t, "nft", "list", "ruleset"); strings.Contains(out, "ghostd") {
			t.Errorf("%s: ghostd's nftables table is still there:\n%s", when, out)
		}
	}
	base := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--probe-interval", "1s", "--json"}
	rows := []string{"| connection | without --probe-reset-guard | with --probe-reset-guard |", "|---|---|---|"}
	got := map[string][2]string{}
	for i, guard := range []bool{false, true} {
		args := base
		if guard {
			args = slices.Concat(base, []string{"--probe-reset-guard"})
		}
		doc, _ := scanDoc(t, args...)
		for _, c := range []struct {
			name   string
			server net.Conn
			want   string
		}{
			{"tcp4 peer lost state", ghost4.s, map[bool]string{false: "silent", true: "reset"}[guard]},
			{"tcp6 peer lost state", ghost6.s, map[bool]string{false: "silent", true: "reset"}[guard]},
			{"tcp4 healthy", healthy.s, "alive"},
		} {
			s := sessionOf(&doc, c.server)
			if s == nil {
				t.Errorf("guard=%v: %s not listed", guard, c.name)
				continue
			}
			v := got[c.name]
			v[i] = s.VerdictText()
			if s.Ghost {
				v[i] += " (ghost)"
			}
			got[c.name] = v
			if s.Verdict != c.want || s.ClosedByProbe || (c.want != "alive") != s.Ghost || s.Guarded != guard {
				t.Errorf("guard=%v %s: verdict %s ghost %v closed_by_probe %v guarded %v, want %s, nothing closed", guard, c.name, s.Verdict, s.Ghost, s.ClosedByProbe, s.Guarded, c.want)
			}
			if st := testnet.TCPInfo(t, c.server).State; st != 1 {
				t.Errorf("guard=%v %s: local socket state %d, want ESTABLISHED", guard, c.name, st)
			}
			c.server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := c.server.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("guard=%v %s: the owner's read returned %v, want it still blocking", guard, c.name, err)
			}
		}
		noGhostdTable("after a scan")
	}
	for _, name := range []string{"tcp4 peer lost state", "tcp6 peer lost state", "tcp4 healthy"} {
		rows = append(rows, "| "+name+" | "+got[name][0]+" | "+got[name][1]+" |")
	}
	t.Logf("ghostd scan through the strict router (conntrack, ct state invalid drop, tcp_loose=0):\n%s", strings.Join(rows, "\n"))

	// Without CAP_NET_ADMIN: one line says so, and the probes go unguarded.
	// A connection that lost its state now: the router saw the others'
	// RSTs pass a moment ago and keeps their entries in CLOSE, through which
	// even an unguarded probe's RST passes for 10 s.
	lateS, lateC := idlePair(t, n, "tcp4")
	n.LoseState(t, lateC)
	time.Sleep(2500 * time.Millisecond)
	doc, stderr := setprivScan(t, []string{"--inh-caps=-net_admin", "--bounding-set=-net_admin"}, slices.Concat(base, []string{"--probe-reset-guard"})...)
	if s := sessionOf(&doc, lateS); s == nil || s.Verdict != "silent" || s.Guarded {
		t.Errorf("without CAP_NET_ADMIN the lost peer reads %+v, want silent (unguarded)", s)
	}
	if c := strings.Count(stderr, "reset_guard needs CAP_NET_ADMIN"); c != 1 || strings.Count(stderr, "reset guard") != 0 {
		t.Errorf("without CAP_NET_ADMIN: %d explanations, want exactly one line:\n%s", c, stderr)
	}
	t.Logf("ghostd scan --probe-reset-guard without CAP_NET_ADMIN says:\n%s", stderr)

	// SIGKILL while the guard is up: the table goes with the process.
	killArgs := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--probe-interval", "1s", "--probe-reset-guard", "--probes", "8"}
	cmd := exec.Command(ghostdBin, killArgs...)
	var killLog strings.Builder
	cmd.Stdout, cmd.Stderr = &killLog, &killLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := false
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline) && !up; time.Sleep(50 * time.Millisecond) {
		out, _ := n.Server.ExecErr("", "nft", "list", "tables")
		up = strings.Contains(out, "inet ghostd")
	}
	if !up {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the scan's guard table never appeared; ghostd %s said:\n%s", strings.Join(killArgs, " "), killLog.String())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	werr := cmd.Wait()
	t.Logf("scan killed with SIGKILL while probing: %v", werr)
	time.Sleep(200 * time.Millisecond)
	noGhostdTable("after SIGKILL")
	ghostdOut(t, slices.Concat(base, []string{"--probe-reset-guard"})...) // the scan after SIGKILL
	noGhostdTable("after the next scan")
}

// sessionOf finds the session of a server-side connection.
func sessionOf(doc *exporter.Document, server net.Conn) *exporter.Session {
	local, remote := testnet.Tuple(server)
	for i := range doc.Sessions {
		s := &doc.Sessions[i]
		if s.Local == local.String() && s.Remote == remote.String() {
			return s
		}
	}
	return nil
}
