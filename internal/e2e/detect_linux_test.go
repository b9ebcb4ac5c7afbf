package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/testnet"
	"github.com/ghostd/ghostd/probe"
)

// scenario is one server-side connection and what ghostd must say about it.
type scenario struct {
	name    string
	server  net.Conn
	client  net.Conn
	verdict string // expected verdict; "" when the socket must not be a ghost whatever it says
	reason  string // a reason that must be listed; "" for none required
	ghost   bool
	created time.Time
}

func (s *scenario) key() string {
	l, r := testnet.Tuple(s.server)
	return l.String() + " " + r.String()
}

func sessionKey(s *exporter.Session) string {
	return strings.ReplaceAll(s.Local, "::ffff:", "") + " " + strings.ReplaceAll(s.Remote, "::ffff:", "")
}

// every calls fn every period until stop is closed, fn returns false, or
// it has run max times (every load loop here is bounded).
func every(period time.Duration, max int, stop <-chan struct{}, fn func() bool) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for range max {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if !fn() {
			return
		}
	}
}

// keepBusy exchanges a few bytes both ways every 200 ms (for at most 10
// minutes) until stop is closed.
func keepBusy(server, client net.Conn, stop <-chan struct{}) {
	buf := make([]byte, 64)
	go every(200*time.Millisecond, 3000, stop, func() bool {
		for _, step := range []func() error{
			func() error { _, err := client.Write([]byte("ping")); return err },
			func() error { _, err := server.Read(buf); return err },
			func() error { _, err := server.Write([]byte("pong")); return err },
			func() error { _, err := client.Read(buf); return err },
		} {
			if step() != nil {
				return false
			}
		}
		return true
	})
}

// fillWindow writes to the server end until the client (which never reads)
// has closed its window, so the server's persist timer runs.
func fillWindow(t *testing.T, server net.Conn) {
	t.Helper()
	chunk := make([]byte, 64<<10)
	for i := 0; i < 400; i++ {
		server.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := server.Write(chunk); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				server.SetWriteDeadline(time.Time{})
				return
			}
			t.Fatalf("fill window: %v", err)
		}
	}
	t.Fatal("fill window: the peer never stopped accepting data")
}

// TestDaemonDetectsGhosts runs ghostd on the test network with short
// thresholds and checks the verdict of every kind of connection (each
// judged once, by its first probe round) in the JSON,
// the metrics and the HTML page, and that SIGTERM ends it within 2 seconds.
func TestDaemonDetectsGhosts(t *testing.T) {
	needRoot(t)
	n := testnet.New(t)
	stop := make(chan struct{})
	defer close(stop)

	var sc []*scenario
	add := func(name, network, verdict, reason string, ghost bool) *scenario {
		s, c := idlePair(t, n, network)
		x := &scenario{name: name, server: s, client: c, verdict: verdict, reason: reason, ghost: ghost}
		sc = append(sc, x)
		return x
	}
	idle4 := add("healthy idle v4", "tcp4", "alive", "idle", false)
	idle6 := add("healthy idle v6", "tcp6", "alive", "idle", false)
	busy := add("healthy busy v4", "tcp4", "", "", false)
	stall := add("zero-window v4", "tcp4", "", "zero_window", false)
	cw := add("close-wait leak v4", "tcp4", "", "close_wait", false)
	// Through the conntrack router (ct state invalid drop) the RST of a peer
	// that lost its state never comes back to a probe with ACK = RCV.NXT-1,
	// the default that leaves the local socket alone (see the probe
	// package's TestRSTMeasurement): the verdict is silent, still a ghost.
	reset4 := add("peer lost state v4", "tcp4", "silent", "idle", true)
	reset6 := add("peer lost state v6", "tcp6", "silent", "idle", true)
	silent := add("silent peer v4", "tcp4", "silent", "", true)
	forgot := add("router forgot v4", "tcp4", "silent", "", true)
	_, _ = idle4, idle6

	keepBusy(busy.server, busy.client, stop)
	fillWindow(t, stall.server)
	if err := cw.client.Close(); err != nil {
		t.Fatal(err)
	}

	// Make the peers vanish before ghostd starts: its first probe may leave
	// as soon as it has scanned, and a peer that still answers it is alive,
	// not probed again for probe.backoff (5 minutes).
	now := time.Now()
	n.LoseState(t, reset4.client)
	n.LoseState(t, reset6.client)
	n.DropFromClient(t, silent.client)
	n.ForgetFlow(t, forgot.server)
	for _, s := range sc {
		s.created = now
	}

	const interval, threshold, probeInterval = time.Second, 2 * time.Second, time.Second
	d := startDaemon(t, "", "--netns", n.Server.Name, "--interval", interval.String(),
		"--idle", threshold.String(), "--close-wait", threshold.String(), "--stall", threshold.String(),
		"--probe-interval", probeInterval.String())
	d.ready(60 * time.Second)

	// Wait for what ghostd does, not for the answers to come right: every
	// suspect that gets probed has its first verdict (its next probe is
	// minutes away: probe.backoff, probe.reconfirm) and the others list
	// their reason. The verdicts are judged once, after. The limit only
	// says ghostd is really late: 4 times the timeline its settings give.
	limit := 4 * detectTimeline(interval, threshold, probeInterval, probe.DefaultConfig())
	byKey := map[string]*exporter.Session{}
	elapsed := waitFor(t, limit, "every suspect's first verdict", func() (bool, string) {
		doc, err := d.sessions("")
		if err != nil {
			return false, err.Error()
		}
		clear(byKey)
		for i := range doc.Sessions {
			byKey[sessionKey(&doc.Sessions[i])] = &doc.Sessions[i]
		}
		var missing []string
		for _, s := range sc {
			got := byKey[s.key()]
			probed := got != nil && got.ProbesSent > 0 && got.Verdict != "" && got.Verdict != "unprobed"
			listed := got != nil && (s.reason == "" || slices.Contains(got.Reasons, s.reason))
			if (s.ghost || s.verdict != "") && !probed || s.reason != "" && !listed {
				missing = append(missing, fmt.Sprintf("%s: %+v", s.name, got))
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d sessions in %+v: ", len(doc.Sessions), doc.Namespaces) + strings.Join(missing, "; ")
	})
	t.Logf("every suspect judged %.1fs after the first scan (limit %v)", elapsed.Seconds(), limit)

	for _, s := range sc {
		got := byKey[s.key()]
		if got != nil && got.Ghost != s.ghost {
			t.Errorf("%s: ghost = %v, want %v (%+v)", s.name, got.Ghost, s.ghost, got)
		}
		if s.verdict != "" && got.Verdict != s.verdict {
			t.Errorf("%s: verdict %q, want %q (%+v)", s.name, got.Verdict, s.verdict, got)
		}
		if got != nil && got.Killed {
			t.Errorf("%s: killed in report-only mode", s.name)
		}
	}
	if got := byKey[busy.key()]; got != nil && len(got.Reasons) > 0 {
		t.Errorf("busy connection is a suspect: %+v", got)
	}
	for _, s := range []*scenario{reset4, silent} {
		got := byKey[s.key()]
		if got.ProbesSent == 0 || got.Netns != n.Server.Name || got.NetnsInode != n.Server.Inode || got.Comm == "" || got.PID == 0 || got.Family != "inet" {
			t.Errorf("%s: incomplete session: %+v", s.name, got)
		}
	}
	if got := byKey[reset6.key()]; got.Family != "inet6" {
		t.Errorf("v6 ghost family = %q", got.Family)
	}

	// Filters of the API.
	doc, err := d.sessions("?verdict=silent&ghost=true")
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Sessions) != 4 {
		t.Errorf("?verdict=silent&ghost=true: %d sessions, want 4", len(doc.Sessions))
	}
	if doc, err = d.sessions("?reason=close_wait"); err != nil || len(doc.Sessions) != 1 {
		t.Errorf("?reason=close_wait: %d sessions (%v), want 1", len(doc.Sessions), err)
	}

	// Metrics: the ghost gauges match the known ghosts per verdict and family.
	mfs, err := d.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		family, verdict string
		want            float64
	}{{"inet", "silent", 3}, {"inet6", "silent", 1}} {
		got, ok := value(mfs, "ghostd_ghost_sessions", map[string]string{"netns": n.Server.Name, "family": c.family, "verdict": c.verdict})
		if !ok || got != c.want {
			t.Errorf("ghostd_ghost_sessions{netns=%q,family=%q,verdict=%q} = %v (present %v), want %v", n.Server.Name, c.family, c.verdict, got, ok, c.want)
		}
	}
	if got, ok := value(mfs, "ghostd_suspect_sessions", map[string]string{"netns": n.Server.Name, "reason": "close_wait"}); !ok || got != 1 {
		t.Errorf("suspect_sessions close_wait = %v, %v; want 1", got, ok)
	}
	if got, ok := value(mfs, "ghostd_netns_scan_success", map[string]string{"netns": n.Server.Name}); !ok || got != 1 {
		t.Errorf("netns_scan_success = %v, %v; want 1", got, ok)
	}

	// The HTML page shows the ghosts.
	code, page, err := d.get("/")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /: %d %v", code, err)
	}
	for _, s := range []*scenario{reset4, silent, forgot} {
		_, r := testnet.Tuple(s.server)
		if !strings.Contains(string(page), r.String()) {
			t.Errorf("page does not show ghost %s (%s)", s.name, r)
		}
	}
	if code, _, _ := d.get("/-/ready"); code != http.StatusOK {
		t.Errorf("/-/ready = %d", code)
	}
	if code, _, _ := d.get("/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ = %d without --web.enable-pprof, want 404", code)
	}
	if got, ok := value(mfs, "ghostd_capability", map[string]string{"capability": "CAP_NET_RAW"}); !ok || got != 1 {
		t.Errorf("ghostd_capability{CAP_NET_RAW} = %v (present %v), want 1 as root", got, ok)
	}

	// The healthy connections still work, both ways, with no error.
	for _, s := range []*scenario{idle4, idle6} {
		roundTrip(t, s)
	}

	for _, noise := range []string{"capture stopped", "level=ERROR"} {
		if strings.Contains(d.logs(), noise) {
			t.Errorf("the log of a healthy run says %q:\n%s", noise, d.logs())
		}
	}
	took, err := d.stop(2 * time.Second)
	if err != nil {
		t.Fatalf("SIGTERM: %v after %v", err, took)
	}
	t.Logf("SIGTERM to exit: %v", took.Round(time.Millisecond))
}

// detectTimeline is how long after ghostd's first scan it takes, by its
// settings, to judge sockets that were quiet before it started: the first
// scan past the threshold finds them, then one probe round each: the
// attempts spaced by the interval (jittered up to +20 %), the final wait
// and, for a silent peer, the host hint's echo (as long as the final wait).
func detectTimeline(interval, threshold, probeInterval time.Duration, p probe.Config) time.Duration {
	round := time.Duration(p.Attempts-1)*probeInterval*6/5 + 2*p.Timeout
	return threshold + interval + round
}

// noKeepalive turns off the keepalive Go enables on every TCP connection:
// the applications that leak ghosts (most pools, most C programs) run without
// it, and the tests here are about ghostd's own evidence, not about which
// keepalive sockets it leaves to their kernel (keepalive_linux_test.go).
func noKeepalive(t *testing.T, cs ...net.Conn) {
	t.Helper()
	for _, c := range cs {
		if err := c.(*net.TCPConn).SetKeepAlive(false); err != nil {
			t.Fatal(err)
		}
	}
}

// idlePair connects an idle TCP connection through n, keepalive off on both
// ends, and returns its server and client ends.
func idlePair(t *testing.T, n *testnet.Net, network string) (server, client net.Conn) {
	t.Helper()
	server, client = n.Pair(t, network)
	noKeepalive(t, server, client)
	return server, client
}

// ends is one connection through the test network: its server and client ends.
type ends struct{ s, c net.Conn }

// idleNet needs root, builds the test network and connects one idle
// connection through it (idlePair) per network given, in that order.
func idleNet(t *testing.T, networks ...string) (*testnet.Net, []ends) {
	t.Helper()
	needRoot(t)
	n := testnet.New(t)
	cs := make([]ends, len(networks))
	for i, network := range networks {
		cs[i].s, cs[i].c = idlePair(t, n, network)
	}
	return n, cs
}

func roundTrip(t *testing.T, s *scenario) {
	t.Helper()
	buf := make([]byte, 4)
	deadline := time.Now().Add(3 * time.Second)
	s.server.SetDeadline(deadline)
	s.client.SetDeadline(deadline)
	defer s.server.SetDeadline(time.Time{})
	defer s.client.SetDeadline(time.Time{})
	if _, err := s.client.Write([]byte("abcd")); err != nil {
		t.Errorf("%s: client write: %v", s.name, err)
		return
	}
	if _, err := s.server.Read(buf); err != nil {
		t.Errorf("%s: server read: %v", s.name, err)
		return
	}
	if _, err := s.server.Write([]byte("efgh")); err != nil {
		t.Errorf("%s: server write: %v", s.name, err)
		return
	}
	if _, err := s.client.Read(buf); err != nil {
		t.Errorf("%s: client read: %v", s.name, err)
	}
}

// TestDaemonRejectsBadConfig checks that a bad configuration stops ghostd
// before anything starts, with a message naming the key.
func TestDaemonRejectsBadConfig(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name, yaml string
		args       []string
		want       string
	}{
		{"bad duration", "thresholds:\n  idle: 1x\n", nil, "thresholds.idle"},
		{"unknown key", "probe:\n  attemps: 3\n", nil, "attemps"},
		{"bad flag", "", []string{"--idle", "soon"}, "idle"},
		{"unknown flag", "", []string{"--bogus"}, "bogus"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := dir + "/" + strings.ReplaceAll(c.name, " ", "_") + ".yml"
			if err := writeFile(f, c.yaml); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(ghostdBin, append([]string{"run", "--config", f, "--web.listen-address", "127.0.0.1:0"}, c.args...)...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want exit code 2; output:\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Errorf("want one line naming %q, got:\n%s", c.want, out)
			}
			if strings.Contains(string(out), "listening") {
				t.Errorf("something started before the config was rejected:\n%s", out)
			}
		})
	}
	out, err := exec.Command(ghostdBin, "run", "--config", dir+"/unknown_key.yml", "--config.check").CombinedOutput()
	if err == nil {
		t.Errorf("--config.check accepted a bad file: %s", out)
	}
	good := dir + "/good.yml"
	if err := writeFile(good, "interval: 5s\n"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ghostdBin, "run", "--config", good, "--config.check").CombinedOutput(); err != nil {
		t.Errorf("--config.check rejected a good file: %v %s", err, out)
	}
}
