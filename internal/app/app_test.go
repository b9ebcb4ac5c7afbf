package app

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/probe"
)

func TestMainUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args     []string
		code     int
		contains string
	}{
		{nil, ExitUsage, "usage: ghostd"},
		{[]string{"bogus"}, ExitUsage, `unknown command "bogus"`},
		{[]string{"scan", "--bogus"}, ExitUsage, "flag provided but not defined: -bogus"},
		{[]string{"scan", "--idle", "soon"}, ExitUsage, "idle"},
		{[]string{"scan", "extra"}, ExitUsage, `unexpected argument "extra"`},
		{[]string{"scan", "--by", "pid"}, ExitUsage, `--by "pid": want owner or destination`},
		{[]string{"run", "--config", "/nonexistent/ghostd.yml"}, ExitUsage, "/nonexistent/ghostd.yml"},
		{[]string{"run", "--config", "/dev/null", "--web.config.file", "/nonexistent/web.yml", "--config.check"}, ExitUsage, "web.config_file /nonexistent/web.yml"},
		{[]string{"probe", "192.0.2.1:1"}, ExitUsage, "need LOCAL and REMOTE"},
		{[]string{"probe", "192.0.2.1", "192.0.2.2:5"}, ExitUsage, "ADDR:PORT"},
		{[]string{"probe", "--probes", "0", "192.0.2.1:1", "192.0.2.2:5"}, ExitUsage, "--probes: "},
		{[]string{"probe", "--probe-interval", "soon", "192.0.2.1:1", "192.0.2.2:5"}, ExitUsage, `invalid value "soon" for flag -probe-interval`},
		{[]string{"probe", "--idle", "1s", "192.0.2.1:1", "192.0.2.2:5"}, ExitUsage, "flag provided but not defined: -idle"},
		{[]string{"version"}, ExitOK, "ghostd 1.2.3 (revision abc"},
	} {
		var out, errb bytes.Buffer
		code := Main(c.args, &out, &errb, Build{Version: "1.2.3", Revision: "abc"})
		got := out.String() + errb.String()
		if code != c.code || !strings.Contains(got, c.contains) {
			t.Errorf("ghostd %v: exit %d, output %q; want exit %d containing %q", c.args, code, got, c.code, c.contains)
		}
		if c.code == ExitUsage && len(c.args) > 1 && strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("ghostd %v: error is not one line: %q", c.args, errb.String())
		}
	}
}

func TestWriteTable(t *testing.T) {
	rtt := 0.0004
	keepalive, retrans := 7093.0+9*75, 912.4
	doc := &exporter.Document{
		Namespaces: []exporter.NamespaceStatus{{Netns: "host", Sockets: 10}, {Netns: "pid-nginx-42", Error: "inventory: dump: no such file or directory"}},
		Sessions: []exporter.Session{
			{Netns: "host", State: "ESTABLISHED", Local: "198.51.100.2:5432", Remote: "192.0.2.7:40112", IdleSeconds: 412.5,
				Reasons: []string{"idle"}, Verdict: "silent", ProbesSent: 3, Ghost: true, PID: 4242, Comm: "postgres", Unit: "postgresql.service",
				KernelDeadlineSeconds: &keepalive, KernelDeadlineBasis: "keepalive", KernelDeadlineLowerBound: true},
			{Netns: "host", State: "CLOSE_WAIT", Local: "198.51.100.2:8080", Remote: "192.0.2.9:5555", Reasons: []string{"close_wait"},
				Verdict: "unprobed", RTTSeconds: &rtt, KernelDeadlineBasis: "none"},
			{Netns: "host", State: "ESTABLISHED", Local: "198.51.100.2:8080", Remote: "192.0.2.9:5556", Reasons: []string{"retransmitting"},
				Verdict: "unprobed", KernelDeadlineSeconds: &retrans, KernelDeadlineBasis: "retransmit"},
		},
	}
	var b bytes.Buffer
	writeTable(&b, doc, "in_window")
	want := `NETNS  STATE        LOCAL              REMOTE           IDLE   KERNEL   REASONS         VERDICT         PROBES  PROCESS
host   ESTABLISHED  198.51.100.2:5432  192.0.2.7:40112  6m53s  >2h9m    idle            silent (ghost)  0/3     postgres[4242] postgresql.service
host   CLOSE_WAIT   198.51.100.2:8080  192.0.2.9:5555   -      never    close_wait      unprobed        0/0     -
host   ESTABLISHED  198.51.100.2:8080  192.0.2.9:5556   -      ~15m12s  retransmitting  unprobed        0/0     -
netns pid-nginx-42: not scanned: inventory: dump: no such file or directory
3 sessions listed, 1 ghosts, 10 sockets in 2 namespaces, probes in_window
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// TestHorizon: ghostd's own time to confirm a dead idle peer, which a
// keepalive socket's kernel must beat to be left to it.
func TestHorizon(t *testing.T) {
	cfg := config.Default()
	if got, want := horizon(cfg, true), 78*time.Second; got != want {
		t.Errorf("daemon on defaults: %v, want %v (60 s idle + 15 s scan + 2 s between 3 probes + 1 s timeout)", got, want)
	}
	if got, want := horizon(cfg, false), 63*time.Second; got != want {
		t.Errorf("one-shot scan on defaults: %v, want %v (no scan interval to wait)", got, want)
	}
	cfg.Thresholds.Idle, cfg.Interval, cfg.Probe.Attempts, cfg.Probe.Interval = 2*time.Second, 5*time.Second, 5, 500*time.Millisecond
	if got, want := horizon(cfg, true), 2*time.Second+5*time.Second+4*500*time.Millisecond+time.Second; got != want {
		t.Errorf("short settings: %v, want %v", got, want)
	}
	if got := trackerConfig(cfg, true).Horizon; got != horizon(cfg, true) {
		t.Errorf("tracker config's horizon %v", got)
	}
}

// TestFormatIdle, and the table's cache of it, which must say the same
// whichever value it saw first (3599.7 s and 3600.2 s both round to an
// hour, but only the second loses its "0s").
func TestFormatIdle(t *testing.T) {
	var c idleCache
	for sec, want := range map[float64]string{0: "-", -1: "-", 0.0004: "0s", 0.85: "850ms", 0.9996: "1s", 42: "42s", 420: "7m0s",
		432.4: "7m12s", 3599.7: "1h0m0s", 3600.2: "1h0m", 7875: "2h11m"} {
		if got := FormatIdle(sec); got != want {
			t.Errorf("FormatIdle(%v) = %q, want %q", sec, got, want)
		}
		if got := c.format(sec); got != want {
			t.Errorf("idleCache.format(%v) = %q, want %q", sec, got, want)
		}
	}
	// Every rounding boundary up to two hours, in a scrambled order, through
	// one cache: each of its slots holds one value.
	var sweep idleCache
	const n = 2 * 3600 * 4
	for i := range n {
		sec := float64(i*7919%n)/4 - 0.0002 // a quarter second apart, just below each boundary
		if got, want := sweep.format(sec), FormatIdle(sec); got != want {
			t.Fatalf("idleCache.format(%v) = %q, want %q", sec, got, want)
		}
	}
}

// TestTableProcessCell: who holds the socket, and where it runs, as the
// table's last column prints them.
func TestTableProcessCell(t *testing.T) {
	for _, tt := range []struct {
		s    exporter.Session
		want string
	}{
		{exporter.Session{}, "-"},
		{exporter.Session{PID: 7, Comm: "nginx"}, "nginx[7]"},
		{exporter.Session{PID: 7, Comm: "nginx", Unit: "nginx.service", ContainerName: "web"}, "nginx[7] nginx.service"},
		{exporter.Session{PID: 7, Comm: "nginx", ContainerName: "web", Container: "0123456789ab"}, "nginx[7] container:web"},
		{exporter.Session{Container: "0123456789ab"}, "container:0123456789ab"},
		{exporter.Session{PID: 9, Comm: "x\x1b[2Jy\xff", Unit: "a\tb.service"}, `x\x1b[2Jy\xff[9] a\tb.service`},
	} {
		var r rowCells
		r.fill(&tt.s)
		if got := string(r.cell(len(tableColumns) - 1)); got != tt.want {
			t.Errorf("%+v: process %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestProbeRefusesUnknownTuple(t *testing.T) {
	var out, errb bytes.Buffer
	// 203.0.113.0/24 is never used by the tests: no such socket exists.
	code := runProbe(context.Background(), []string{"--netns", "all", "203.0.113.1:1", "203.0.113.2:2"}, &out, &errb)
	if code != ExitFailure || !strings.Contains(errb.String(), "not in the socket table") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

func TestProbeErrorsLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var pe probeErrors
	raw := errors.New("probe: raw socket: operation not permitted")
	for i := 0; i < 3; i++ {
		pe.note(log, []probe.Result{{Verdict: probe.Unprobed, Err: raw}, {Verdict: probe.Unprobed, Err: probe.ErrSocketGone}, {Verdict: probe.Alive}})
	}
	if n := strings.Count(buf.String(), "suspects left unprobed"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, buf.String())
	}
	if strings.Contains(buf.String(), probe.ErrSocketGone.Error()) {
		t.Errorf("a socket that went away is not a probing problem:\n%s", buf.String())
	}
}

// A diagnostic `ghostd scan` on a host whose daemon kills must not kill: only
// --kill on scan's own command line turns the kill policy on.
func TestScanKillsOnlyWithItsOwnFlag(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "ghostd.yml")
	if err := os.WriteFile(cfgFile, []byte("kill:\n  enabled: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		kill bool
	}{
		{[]string{"--config", cfgFile}, false},
		{[]string{"--config", cfgFile, "--kill"}, true},
		{[]string{"--config", cfgFile, "--kill=false"}, false},
		{[]string{"--kill"}, true},
	} {
		fs := flag.NewFlagSet("scan", flag.ContinueOnError)
		f := config.RegisterFlags(fs, true)
		fs.StringVar(&f.ConfigFile, "config", config.DefaultPath, "")
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadScanConfig(f)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if cfg.Kill.Enabled != c.kill {
			t.Errorf("ghostd scan %v: kill enabled %v, want %v", c.args, cfg.Kill.Enabled, c.kill)
		}
	}
}
