package e2e

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/testnet"
)

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
