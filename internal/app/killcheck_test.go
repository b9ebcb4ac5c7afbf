package app

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/probe"
)

// TestCheckKill: an enabled policy that needs CAP_SYS_PTRACE (kill mode
// keepalive, kill.close_wait) says so in one line when it is missing, and
// ghostd_kill_supported follows the mode ghosts are killed with.
func TestCheckKill(t *testing.T) {
	withPtrace := Capabilities{eff: 1 << capSysPtrace, known: true}
	without := Capabilities{eff: 1 << capNetAdmin, known: true}
	policy := func(mode kill.Mode, closeWait bool) kill.Policy {
		p := kill.DefaultPolicy()
		p.Enabled, p.Mode, p.CloseWait = true, mode, closeWait
		return p
	}
	off := policy(kill.ModeDestroy, true)
	off.Enabled = false
	for _, c := range []struct {
		name      string
		pol       kill.Policy
		caps      Capabilities
		warnings  []string // one line each, in order
		supported string   // ghostd_kill_supported, "" when not set
	}{
		{"destroy", policy(kill.ModeDestroy, false), without, nil, "1"},
		{"close_wait without CAP_SYS_PTRACE", policy(kill.ModeDestroy, true), without,
			[]string{"kill.close_wait needs CAP_SYS_PTRACE to borrow sockets (pidfd_getfd) and shut them down: CLOSE_WAIT leaks are reported, not ended"}, "1"},
		{"close_wait with CAP_SYS_PTRACE", policy(kill.ModeDestroy, true), withPtrace, nil, "1"},
		{"keepalive and close_wait without CAP_SYS_PTRACE", policy(kill.ModeKeepalive, true), without, []string{
			"kill mode keepalive needs CAP_SYS_PTRACE to borrow sockets (pidfd_getfd); detection goes on",
			"kill.close_wait needs CAP_SYS_PTRACE to borrow sockets (pidfd_getfd) and shut them down: CLOSE_WAIT leaks are reported, not ended",
		}, "0"},
		{"keepalive with CAP_SYS_PTRACE", policy(kill.ModeKeepalive, false), withPtrace, nil, "1"},
		{"killing off", off, without, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var log bytes.Buffer
			p := &parts{log: slog.New(slog.NewTextHandler(&log, nil)), caps: c.caps}
			p.destroyOnce.Do(func() {}) // SOCK_DESTROY works: no self-test here
			store := exporter.NewStore(exporter.BuildInfo{}, time.Now)
			p.checkKill(c.pol, store)
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
				if line == "" {
					continue
				}
				if !strings.Contains(line, "level=WARN") {
					t.Errorf("not a warning: %s", line)
				}
				_, msg, _ := strings.Cut(line, "msg=")
				got = append(got, strings.Trim(msg, `"`))
			}
			if strings.Join(got, "\n") != strings.Join(c.warnings, "\n") {
				t.Errorf("log lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.warnings, "\n"))
			}
			want := ""
			if c.supported != "" {
				want = "# HELP ghostd_kill_supported Whether the configured kill mode works on this host (1) or not (0).\n" +
					"# TYPE ghostd_kill_supported gauge\nghostd_kill_supported " + c.supported + "\n"
			}
			if err := testutil.CollectAndCompare(store.Collector(), strings.NewReader(want), "ghostd_kill_supported"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestProbeExit: `ghostd probe` exits ExitGhost only for a confirmed ghost,
// as the daemon calls one; an unconfirmed silence or reset exits 0.
func TestProbeExit(t *testing.T) {
	for _, tt := range []struct {
		r    probe.Result
		want int
	}{
		{probe.Result{Verdict: probe.Alive, Confirmed: true}, ExitOK},
		{probe.Result{Verdict: probe.Silent, Mode: probe.InWindow, Confirmed: true}, ExitGhost},
		{probe.Result{Verdict: probe.Reset, Mode: probe.InWindow, Confirmed: true}, ExitGhost},
		{probe.Result{Verdict: probe.Silent, Mode: probe.Blind}, ExitOK},
		{probe.Result{Verdict: probe.Reset, Mode: probe.Blind, Uncertain: probe.UncertainBlind}, ExitOK},
		{probe.Result{Verdict: probe.Silent, Mode: probe.InWindow, Uncertain: probe.UncertainInterference}, ExitOK},
		{probe.Result{Verdict: probe.Unprobed}, ExitOK},
	} {
		if got := probeExit(tt.r); got != tt.want {
			t.Errorf("%s (%s, confirmed %v, uncertain %q): exit %d, want %d", tt.r.Verdict, tt.r.Mode, tt.r.Confirmed, tt.r.Uncertain, got, tt.want)
		}
	}
}
