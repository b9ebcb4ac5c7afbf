package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/testnet"
)

// TestScanAndProbeCommands runs `ghostd scan` (table and JSON) and `ghostd
// probe` against the test network and checks what they print and exit with.
func TestScanAndProbeCommands(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	healthyS, healthyC := n.Pair(t, "tcp4")
	ghostS, ghostC := n.Pair(t, "tcp4")
	ghost6S, ghost6C := n.Pair(t, "tcp6")
	cwS, cwC := n.Pair(t, "tcp4")
	noKeepalive(t, healthyS, healthyC, ghostS, ghostC, ghost6S, ghost6C, cwS, cwC)
	n.DropFromClient(t, ghostC)
	n.LoseState(t, ghost6C)
	cwC.Close()
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	args := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--close-wait", "2s", "--probe-interval", "1s"}
	out, err := exec.Command(ghostdBin, args...).Output()
	if err != nil {
		t.Fatalf("ghostd scan: %v", err)
	}
	t.Logf("ghostd %s\n%s", strings.Join(args, " "), out)
	table := string(out)
	wantRows := map[string]string{
		rowKey(healthyS): "alive",
		rowKey(ghostS):   "silent (ghost)",
		rowKey(ghost6S):  "silent (ghost)",
		rowKey(cwS):      "close_wait",
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

	out, err = exec.Command(ghostdBin, append(args, "--json", "--no-probe")...).Output()
	if err != nil {
		t.Fatalf("ghostd scan --json: %v", err)
	}
	var doc exporter.Document
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("scan --json is not the JSON document: %v\n%s", err, out)
	}
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
	hl, hr := testnet.Tuple(healthyS)
	if out, code := probe(hl.String(), hr.String()); code != 0 || !strings.Contains(out, ": alive") {
		t.Errorf("probe healthy: exit %d, %q", code, out)
	}
	gl, gr := testnet.Tuple(ghostS)
	if out, code := probe(gl.String(), gr.String()); code != 3 || !strings.Contains(out, ": silent") {
		t.Errorf("probe ghost: exit %d, %q", code, out)
	}
	if out, code := probe(gl.String(), "192.0.2.2:1"); code != 1 || !strings.Contains(out, "not in the socket table") {
		t.Errorf("probe unknown tuple: exit %d, %q", code, out)
	}
	roundTrip(t, &scenario{name: "healthy after scan and probe", server: healthyS, client: healthyC})
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

// TestScanListsZeroWindowOnFirstSight: a one-shot `ghostd scan` has no
// history, yet lists a connection whose peer stopped reading before the
// scan began as zero_window (its age bounded by the last data sent): a
// stall, reported unprobed, never a ghost. A stall younger than --stall is
// not listed.
func TestScanListsZeroWindowOnFirstSight(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	oldS, oldC := n.Pair(t, "tcp4")
	noKeepalive(t, oldS, oldC)
	fillWindow(t, oldS) // the client never reads
	time.Sleep(3 * time.Second)
	youngS, youngC := n.Pair(t, "tcp4")
	noKeepalive(t, youngS, youngC)
	fillWindow(t, youngS)

	args := []string{"scan", "--netns", n.Server.Name, "--stall", "2500ms", "--idle", "1h"}
	out, err := exec.Command(ghostdBin, args...).Output()
	if err != nil {
		t.Fatalf("ghostd scan: %v", err)
	}
	t.Logf("ghostd %s\n%s", strings.Join(args, " "), out)
	line := lineWith(string(out), rowKey(oldS))
	if !strings.Contains(line, "zero_window") || !strings.Contains(line, "unprobed") || strings.Contains(line, "ghost") {
		t.Errorf("row of the 3 s old stall = %q, want zero_window, unprobed, no ghost", line)
	}
	if line := lineWith(string(out), rowKey(youngS)); line != "" {
		t.Errorf("a stall younger than --stall is listed: %q", line)
	}
	if !strings.Contains(string(out), "0 ghosts") {
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
	plainS, plainC := n.Pair(t, "tcp4")
	noKeepalive(t, plainS, plainC)
	time.Sleep(2500 * time.Millisecond) // past --idle 2s

	args := []string{"scan", "--netns", n.Server.Name, "--idle", "2s", "--no-probe"}
	out, err := exec.Command(ghostdBin, args...).Output()
	if err != nil {
		t.Fatalf("ghostd scan: %v", err)
	}
	t.Logf("ghostd %s\n%s", strings.Join(args, " "), out)
	if line := lineWith(string(out), rowKey(kaS)); !strings.Contains(line, " idle ") || !strings.Contains(line, ">2h1") {
		t.Errorf("keepalive-on row = %q, want idle with KERNEL >2h1…", line)
	}
	if line := lineWith(string(out), rowKey(plainS)); !strings.Contains(line, " idle ") || !strings.Contains(line, " never ") {
		t.Errorf("keepalive-off row = %q, want idle with KERNEL never", line)
	}

	out, err = exec.Command(ghostdBin, append(args, "--json")...).Output()
	if err != nil {
		t.Fatalf("ghostd scan --json: %v", err)
	}
	var doc exporter.Document
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
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
