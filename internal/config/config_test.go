package config_test

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/podinfo"
	"github.com/ghostd/ghostd/probe"
)

func TestDefaultIsValid(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestListenAddressMatchesExporter(t *testing.T) {
	if config.DefaultListenAddress != exporter.DefaultListenAddress {
		t.Errorf("config.DefaultListenAddress %q != exporter.DefaultListenAddress %q", config.DefaultListenAddress, exporter.DefaultListenAddress)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, doc := range []string{"", "# only a comment\n", "---\n"} {
		got, err := config.Parse([]byte(doc), "empty.yml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", doc, err)
		}
		if diff := cmp.Diff(config.Default(), got); diff != "" {
			t.Errorf("Parse(%q) differs from Default() (-want +got):\n%s", doc, diff)
		}
	}
}

func TestParsePartialKeepsDefaults(t *testing.T) {
	got, err := config.Parse([]byte("probe:\n  attempts: 5\nkill:\n"), "p.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Probe.Attempts = 5
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestValidFull(t *testing.T) {
	got, err := config.Load("testdata/valid-full.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Netns = "/proc/1/ns/net"
	want.Interval = 30 * time.Second
	th := &want.Thresholds
	th.Idle, th.CloseWait, th.Stall, th.FinWait2, th.LastAck = 5*time.Minute, 2*time.Minute, 90*time.Second, 3*time.Minute, 45*time.Second
	pr := &want.Probe
	pr.Enabled, pr.Attempts, pr.Interval, pr.Rate = false, 5, 700*time.Millisecond, 50.5
	pr.PerHost, pr.InFlight, pr.HostHint, pr.ResetLocal, pr.ResetGuard = 2, 64, false, true, true
	pr.Backoff, pr.Reconfirm = 10*time.Minute, 2*time.Minute
	want.Kill = kill.Policy{
		Enabled: true, Mode: kill.ModeKeepalive, Verdicts: []probe.Verdict{probe.Reset}, MinAge: 0,
		Allow: []kill.Rule{
			{
				CIDRs: []kill.CIDR{cidr("192.0.2.0/24"), cidr("2001:db8::/32"), cidr("203.0.113.9/32")},
				Ports: []int{5432, 6379},
			},
			{Netns: []string{"host"}, Comms: []string{"postgres"}, Units: []string{"postgresql.service"}},
		},
		Deny:      []kill.Rule{{Units: []string{"sshd.service"}}},
		PerMinute: 60, CloseWait: true,
		Keepalive:   kill.Keepalive{Idle: 20 * time.Second, Interval: 2 * time.Second, Count: 5},
		UserTimeout: time.Minute,
	}
	want.Web = config.WebConfig{ListenAddress: []string{"127.0.0.1:10145", "[::1]:10145"}, ConfigFile: "/etc/ghostd/web.yml"}
	want.Log = config.LogConfig{Level: "debug", Format: "json"}
	want.Events = events.Config{RingSize: 500, File: "/var/log/ghostd/events.jsonl", FileMaxBytes: 1 << 20, FilesKept: 3}
	want.Metrics = exporter.MetricsConfig{OwnersTopK: 5}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b kill.CIDR) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestExample checks that the shipped, commented example documents the
// defaults: parsed, it must equal Default().
func TestExample(t *testing.T) {
	got, err := config.Load("../../packaging/ghostd.yml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(config.Default(), got); diff != "" {
		t.Errorf("packaging/ghostd.yml differs from Default() (-want +got):\n%s", diff)
	}
}

func TestInvalid(t *testing.T) {
	tests := map[string]string{
		"unknown-key":     "3: probe.atempts: unknown key",
		"unknown-top":     "2: idle: unknown key",
		"duration":        `3: probe.interval: invalid duration "1x"`,
		"duration-unit":   `1: interval: invalid duration "15"`,
		"integer":         `2: probe.attempts: want an integer, got "many"`,
		"bool":            `2: kill.enabled: want true or false, got "yes please"`,
		"attempts":        "2: probe.attempts: must be 1 to 10, got 0",
		"interval-short":  "1: interval: 100ms is too short: want at least 1s",
		"probe-interval":  "2: probe.interval: 100ms is too short: want at least 600ms",
		"threshold":       "2: thresholds.close_wait: must be positive, got -1s",
		"rate":            "2: probe.rate: must be a positive number of probes per second, got 0",
		"mode":            `2: kill.mode: invalid mode "explode": want destroy or keepalive`,
		"mode-shutdown":   `2: kill.mode: mode "shutdown" is for CLOSE_WAIT leaks only: set kill.close_wait instead`,
		"verdict":         `2: kill.verdicts[1]: verdict "alive" cannot be killed: want reset, silent or unreachable`,
		"verdict-dup":     `4: kill.verdicts[1]: duplicate verdict "reset"`,
		"cidr":            `5: kill.allow[0].cidrs[1]: invalid CIDR "198.51.100.7/24": host bits set (did you mean 198.51.100.0/24?)`,
		"cidr-garbage":    `3: kill.deny[0].cidrs[0]: invalid CIDR "not-an-address"`,
		"port":            "3: kill.allow[0].ports[1]: invalid port 70000: want 1 to 65535",
		"empty-rule":      "4: kill.deny[1]: empty rule: give at least one of cidrs, ports, netns, comms, units, pods, containers",
		"comm":            `3: kill.deny[0].comms[0]: "a-very-long-process-name" is longer than the kernel's 15-byte process names`,
		"rule-key":        "3: kill.allow[0].cidr: unknown key",
		"keepalive":       "3: kill.keepalive.idle: must be whole seconds from 1s to 9h6m7s, got 1.5s",
		"keepalive-count": "3: kill.keepalive.count: must be 1 to 127, got 200",
		"listen":          `4: web.listen_address[1]: invalid address "localhost": want host:port`,
		"listen-empty":    `2: web.listen_address: empty: want one or more addresses such as ":10145"`,
		"log-level":       `2: log.level: invalid level "verbose": want debug, info, warn or error`,
		"log-format":      `2: log.format: invalid format "xml": want logfmt or json`,
		"netns":           `1: netns: invalid namespace name "foo/bar/baz"`,
		"runtime":         `2: runtime.endpoints[1]: invalid endpoint "run/crio.sock": want the absolute path of a unix socket`,
		"syntax":          "2: did not find expected key",
		"duplicate":       `4: mapping key "interval" already defined at line 1`,
		"not-mapping":     "1: want a mapping, got a list",
		"events-ring":     "2: events.ring_size: 0: want 1 to 1000000",
		"events-file":     `2: events.file: "events.jsonl": want an absolute path`,
		"events-kept":     "3: events.files_kept: 0: want 1 to 100",
		"owners-top-k":    "2: metrics.owners_top_k: must be 1 to 1000, got 0",
		"section-scalar":  `1: probe: want a mapping, got "fast"`,
		"list-scalar":     `2: web.listen_address: want a list of strings, got "9977"`,
	}
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Errorf("%d testdata/invalid-*.yml files, %d test cases: keep them in step", len(files), len(tests))
	}
	for _, file := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "invalid-"), ".yml")
		t.Run(name, func(t *testing.T) {
			want, ok := tests[name]
			if !ok {
				t.Fatalf("no expected error for %s", file)
			}
			want = "config: " + file + ":" + want
			_, err := config.Load(file)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want error %q", file, want)
			}
			if got := err.Error(); got != want {
				t.Errorf("Load(%s) error\n got: %s\nwant: %s", file, got, want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("error is %T, want *config.Error", err)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	// A missing file at the default path means defaults (only checkable
	// when the machine has none); anywhere else it is an error.
	if _, err := os.Stat(config.DefaultPath); errors.Is(err, os.ErrNotExist) {
		got, err := config.Load(config.DefaultPath)
		if err != nil {
			t.Fatalf("Load(%s) = %v, want defaults", config.DefaultPath, err)
		}
		if diff := cmp.Diff(config.Default(), got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
	missing := filepath.Join(t.TempDir(), "nope.yml")
	_, err := config.Load(missing)
	if want := "config: open " + missing + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("Load(missing) = %v, want %q", err, want)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error does not wrap os.ErrNotExist: %v", err)
	}
}

func newFlagSet(detectionOnly bool) (*flag.FlagSet, *config.Flags) {
	fs := flag.NewFlagSet("ghostd run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, config.RegisterFlags(fs, detectionOnly)
}

func TestFlagsOverrideFile(t *testing.T) {
	file := []byte("interval: 30s\nthresholds:\n  idle: 5m\n  close_wait: 2m\nprobe:\n  attempts: 5\nweb:\n  listen_address: [':1234']\n")
	tests := []struct {
		name string
		args []string
		edit func(*config.Config) // applied to the file's config to get the expected one
	}{
		{"no flags keep the file", nil, func(*config.Config) {}},
		{"flag over file", []string{"--idle=10m", "--probes=2"}, func(c *config.Config) {
			c.Thresholds.Idle = 10 * time.Minute
			c.Probe.Attempts = 2
		}},
		{"flag equal to the default still wins", []string{"--interval=15s"}, func(c *config.Config) { c.Interval = 15 * time.Second }},
		{"detection flags", []string{"--netns=blue", "--close-wait=5s", "--stall=7s", "--probe-interval=650ms", "--no-probe", "--kill", "--kill-min-age=0s"}, func(c *config.Config) {
			c.Netns = "blue"
			c.Thresholds.CloseWait = 5 * time.Second
			c.Thresholds.Stall = 7 * time.Second
			c.Probe.Interval = 650 * time.Millisecond
			c.Probe.Enabled = false
			c.Kill.Enabled = true
			c.Kill.MinAge = 0
		}},
		{"repeated listen address replaces the file's list", []string{"--web.listen-address=127.0.0.1:1", "--web.listen-address=[::1]:2"}, func(c *config.Config) {
			c.Web.ListenAddress = []string{"127.0.0.1:1", "[::1]:2"}
		}},
		{"flags new with the key table", []string{"--fin-wait2=2m", "--probe-rate=50", "--probe-host-hint=false", "--probe-backoff=1m",
			"--kill-mode=keepalive", "--kill-verdicts=reset", "--kill-verdicts=silent", "--kill-allow={cidrs: [192.0.2.0/24], ports: [5432]}",
			"--kill-deny={units: [sshd.service]}", "--kill-keepalive-idle=20s", "--kill-close-wait"}, func(c *config.Config) {
			c.Thresholds.FinWait2 = 2 * time.Minute
			c.Probe.Rate, c.Probe.HostHint, c.Probe.Backoff = 50, false, time.Minute
			c.Kill.Mode, c.Kill.Verdicts = kill.ModeKeepalive, []probe.Verdict{probe.Reset, probe.Silent}
			c.Kill.Allow = []kill.Rule{{CIDRs: []kill.CIDR{cidr("192.0.2.0/24")}, Ports: []int{5432}}}
			c.Kill.Deny = []kill.Rule{{Units: []string{"sshd.service"}}}
			c.Kill.Keepalive.Idle, c.Kill.CloseWait = 20*time.Second, true
		}},
		{"runtime endpoints", []string{"--runtime-endpoint=/run/k3s/containerd/containerd.sock", "--runtime-endpoint=docker:/run/docker.sock"}, func(c *config.Config) {
			c.Runtime.Endpoints = []string{"/run/k3s/containerd/containerd.sock", "docker:/run/docker.sock"}
		}},
		{"no runtime", []string{"--runtime-endpoint=none"}, func(c *config.Config) {
			c.Runtime.Endpoints = []string{"none"}
		}},
		{"web and log flags", []string{"--web.config.file=/w.yml", "--log.level=debug", "--log.format=json"}, func(c *config.Config) {
			c.Web.ConfigFile = "/w.yml"
			c.Log.Level = "debug"
			c.Log.Format = "json"
		}},
		{"event flags", []string{"--events.ring-size=50", "--events.file=/var/log/e.jsonl", "--events.file-max-bytes=8192", "--events.files-kept=2"}, func(c *config.Config) {
			c.Events = events.Config{RingSize: 50, File: "/var/log/e.jsonl", FileMaxBytes: 8192, FilesKept: 2}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, f := newFlagSet(false)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := config.Parse(file, "f.yml")
			if err != nil {
				t.Fatal(err)
			}
			want := got
			want.Web.ListenAddress = append([]string(nil), got.Web.ListenAddress...)
			tt.edit(&want)
			if err := f.Apply(&got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b kill.CIDR) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlagsConfigAndCheck(t *testing.T) {
	fs, f := newFlagSet(false)
	if f.ConfigFile != config.DefaultPath || f.Check {
		t.Errorf("before parsing: ConfigFile=%q Check=%v", f.ConfigFile, f.Check)
	}
	if err := fs.Parse([]string{"--config", "/tmp/x.yml", "--config.check"}); err != nil {
		t.Fatal(err)
	}
	if f.ConfigFile != "/tmp/x.yml" || !f.Check {
		t.Errorf("ConfigFile=%q Check=%v, want /tmp/x.yml true", f.ConfigFile, f.Check)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name          string
		detectionOnly bool
		args          []string
		parseErr      string // from flag.Parse
		applyErr      string // from Apply
	}{
		{"unknown flag", false, []string{"--nope"}, "flag provided but not defined: -nope", ""},
		{"run-only flag on scan", true, []string{"--interval=5s"}, "flag provided but not defined: -interval", ""},
		{"bad duration", false, []string{"--idle=1x"}, `invalid value "1x" for flag -idle: invalid duration "1x"`, ""},
		{"bad integer", false, []string{"--kill-per-minute=many"}, `invalid value "many" for flag -kill-per-minute: want an integer, got "many"`, ""},
		{"bad rule", false, []string{"--kill-deny={cidr: [192.0.2.0/24]}"}, `invalid value "{cidr: [192.0.2.0/24]}" for flag -kill-deny: cidr: unknown key`, ""},
		{"bad rule value named by flag", false, []string{"--kill-allow={ports: [70000]}"}, "", "config: --kill-allow: invalid port 70000: want 1 to 65535"},
		{"bad keepalive named by flag", false, []string{"--kill-keepalive-count=0"}, "", "config: --kill-keepalive-count: must be 1 to 127, got 0"},
		{"bad value named by flag", false, []string{"--probes=0"}, "", "config: --probes: must be 1 to 10, got 0"},
		{"bad listen address named by flag", false, []string{"--web.listen-address=nope"}, "", `config: --web.listen-address: invalid address "nope": want host:port`},
		{"bad log level", false, []string{"--log.level=loud"}, "", `config: --log.level: invalid level "loud": want debug, info, warn or error`},
		{"bad events file named by flag", false, []string{"--events.file=rel.jsonl"}, "", `config: --events.file: "rel.jsonl": want an absolute path`},
		{"event flags are run-only", true, []string{"--events.ring-size=5"}, "flag provided but not defined: -events.ring-size", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, f := newFlagSet(tt.detectionOnly)
			err := fs.Parse(tt.args)
			if tt.parseErr != "" {
				if err == nil || err.Error() != tt.parseErr {
					t.Fatalf("Parse error = %v, want %q", err, tt.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := config.Default()
			err = f.Apply(&c)
			if err == nil || err.Error() != tt.applyErr {
				t.Errorf("Apply error = %v, want %q", err, tt.applyErr)
			}
		})
	}
}

// TestMarshalRoundTrip: the configuration types marshal to YAML that
// parses back to the same configuration, so their yaml tags, their
// MarshalYAML and UnmarshalYAML and the file agree (a field without a tag
// would come back as an unknown key).
func TestMarshalRoundTrip(t *testing.T) {
	for name, c := range map[string]func() (config.Config, error){
		"defaults":   func() (config.Config, error) { return config.Default(), nil },
		"valid-full": func() (config.Config, error) { return config.Load("testdata/valid-full.yml") },
	} {
		want, err := c()
		if err != nil {
			t.Fatal(err)
		}
		out, err := yaml.Marshal(want)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", name, err)
		}
		got, err := config.Parse(out, name+".yml")
		if err != nil {
			t.Fatalf("%s: Parse(Marshal()) = %v\n%s", name, err, out)
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b kill.CIDR) bool { return a == b })); diff != "" {
			t.Errorf("%s: round trip (-want +got):\n%s", name, diff)
		}
	}
}

// TestNestedErrorSaysEachLayerOnce: an error in a section names the file,
// the line and the key once, with no package prefix of the section's own
// ("config: kill: exporter: ..." before).
func TestNestedErrorSaysEachLayerOnce(t *testing.T) {
	for doc, want := range map[string]string{
		"kill:\n  keepalive:\n    idle: 1500ms\n": "config: g.yml:3: kill.keepalive.idle: must be whole seconds from 1s to 9h6m7s, got 1.5s",
		"thresholds:\n  fin_wait2: 0s\n":          "config: g.yml:2: thresholds.fin_wait2: must be positive, got 0s",
		"probe:\n  reconfirm: 0s\n":               "config: g.yml:2: probe.reconfirm: must be positive, got 0s",
		"kill:\n  deny:\n    - comms: [\"[x\"]\n": `config: g.yml:3: kill.deny[0].comms[0]: pattern "[x": syntax error in pattern`,
		"probe:\n  attempts: 1\n  attempts: 2\n":  `config: g.yml:3: probe: mapping key "attempts" already defined at line 2`,
	} {
		_, err := config.Parse([]byte(doc), "g.yml")
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q)\n got: %v\nwant: %s", doc, err, want)
		}
	}
}

// cidr is kill.ParseCIDR for test tables.
func cidr(s string) kill.CIDR {
	c, err := kill.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return c
}

// TestRuntimeEndpoints: the defaults ask the three standard sockets, an
// empty list or "none" asks none, "none" beside a path is an error, and a
// pod's "<namespace>/<pod>" is a valid netns.
func TestRuntimeEndpoints(t *testing.T) {
	for _, tt := range []struct {
		yml  string
		want []string
		none bool
	}{
		{"interval: 15s\n", podinfo.DefaultEndpoints, false},
		{"runtime:\n  endpoints: []\n", []string{}, true},
		{"runtime:\n  endpoints: [none]\n", []string{"none"}, true},
		{"runtime:\n  endpoints: [/run/crio/crio.sock]\n", []string{"/run/crio/crio.sock"}, false},
	} {
		c, err := config.Parse([]byte(tt.yml), "f.yml")
		if err != nil {
			t.Fatalf("%q: %v", tt.yml, err)
		}
		if diff := cmp.Diff(tt.want, c.Runtime.Endpoints, cmpopts.EquateEmpty()); diff != "" || c.Runtime.None() != tt.none {
			t.Errorf("%q: endpoints %q (none %v), want %q (none %v)", tt.yml, c.Runtime.Endpoints, c.Runtime.None(), tt.want, tt.none)
		}
	}
	if _, err := config.Parse([]byte("runtime:\n  endpoints: [none, /run/crio/crio.sock]\n"), "f.yml"); err == nil || !strings.Contains(err.Error(), `runtime.endpoints[0]: invalid endpoint "none"`) {
		t.Errorf("none beside a path: err = %v", err)
	}
	if _, err := config.Parse([]byte("runtime:\n  refresh: 100ms\n"), "f.yml"); err == nil || !strings.Contains(err.Error(), "runtime.refresh: 100ms is too short") {
		t.Errorf("runtime.refresh 100ms: err = %v", err)
	}
	if _, err := config.Parse([]byte("netns: shop/cart-7d9f\n"), "f.yml"); err != nil {
		t.Errorf("a pod's netns name: %v", err)
	}
}
