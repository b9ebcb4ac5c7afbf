package kill

import (
	"errors"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
	"github.com/ghostd/ghostd/internal/yamlconf/yamlconftest"
	"github.com/ghostd/ghostd/probe"
)

func TestValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("DefaultPolicy().Validate() = %v", err)
	}
	yamlconftest.Validate(t, enabled, []yamlconftest.Case[Policy]{
		{Name: "mode", Mod: func(p *Policy) { p.Mode = "nuke" }, Want: `kill: mode: invalid mode "nuke": want destroy or keepalive`},
		{Name: "shutdown for ghosts", Mod: func(p *Policy) { p.Mode = ModeShutdown }, Want: `kill: mode: mode "shutdown" is for CLOSE_WAIT leaks only: set kill.close_wait instead`},
		{Name: "no verdicts", Mod: func(p *Policy) { p.Verdicts = nil }, Want: "kill: verdicts: empty: want one or more of reset, silent, unreachable"},
		{Name: "alive verdict", Mod: func(p *Policy) { p.Verdicts = []probe.Verdict{probe.Reset, probe.Alive} }, Want: `kill: verdicts[1]: verdict "alive" cannot be killed: want reset, silent or unreachable`},
		{Name: "duplicate verdict", Mod: func(p *Policy) { p.Verdicts = []probe.Verdict{probe.Reset, probe.Reset} }, Want: `kill: verdicts[1]: duplicate verdict "reset"`},
		{Name: "negative age", Mod: func(p *Policy) { p.MinAge = -time.Second }, Want: "kill: min_age: must not be negative, got -1s"},
		{Name: "rate", Mod: func(p *Policy) { p.PerMinute = 0 }, Want: "kill: per_minute: must be at least 1, got 0"},
		{Name: "keepalive idle", Mod: func(p *Policy) { p.Keepalive.Idle = 1500 * time.Millisecond }, Want: "kill: keepalive.idle: must be whole seconds from 1s to 9h6m7s, got 1.5s"},
		{Name: "keepalive interval", Mod: func(p *Policy) { p.Keepalive.Interval = 0 }, Want: "kill: keepalive.interval: must be whole seconds from 1s to 9h6m7s, got 0s"},
		{Name: "keepalive count", Mod: func(p *Policy) { p.Keepalive.Count = 128 }, Want: "kill: keepalive.count: must be 1 to 127, got 128"},
		{Name: "user timeout", Mod: func(p *Policy) { p.UserTimeout = -1 }, Want: "kill: user_timeout: must be 0 to 596h31m23.647s, got -1ns"},
		{Name: "empty rule", Mod: func(p *Policy) { p.Deny = []Rule{{Ports: []int{22}}, {}} }, Want: "kill: deny[1]: empty rule: give at least one of cidrs, ports, netns, comms, units, pods, containers"},
		{Name: "bad glob", Mod: func(p *Policy) { p.Allow = []Rule{{Comms: []string{"[x"}}} }, Want: `kill: allow[0].comms[0]: pattern "[x": syntax error in pattern`},
		{Name: "long comm", Mod: func(p *Policy) { p.Deny = []Rule{{Comms: []string{"a-very-long-process-name"}}} }, Want: `kill: deny[0].comms[0]: "a-very-long-process-name" is longer than the kernel's 15-byte process names`},
		{Name: "empty unit", Mod: func(p *Policy) { p.Deny = []Rule{{Units: []string{""}}} }, Want: "kill: deny[0].units[0]: empty string"},
		{Name: "port", Mod: func(p *Policy) { p.Allow = []Rule{{Ports: []int{5432, 70000}}} }, Want: "kill: allow[0].ports[1]: invalid port 70000: want 1 to 65535"},
		{Name: "zero prefix", Mod: func(p *Policy) { p.Allow = []Rule{{CIDRs: []CIDR{{}}}} }, Want: `kill: allow[0].cidrs[0]: invalid CIDR "invalid Prefix"`},
		{Name: "host bits", Mod: func(p *Policy) { p.Allow = []Rule{{CIDRs: []CIDR{{netip.MustParsePrefix("192.0.2.7/24")}}}} }, Want: `kill: allow[0].cidrs[0]: invalid CIDR "192.0.2.7/24"`},
	})
}

func TestUnmarshalYAML(t *testing.T) {
	doc := `
enabled: true
mode: keepalive
verdicts: [reset]
allow:
  - cidrs: [192.0.2.0/24, "2001:db8::/32", 203.0.113.9]
    ports: [5432]
deny:
  - units: [sshd.service]
keepalive:
  count: 5
`
	p := DefaultPolicy()
	if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	want := DefaultPolicy()
	want.Enabled, want.Mode, want.Verdicts = true, ModeKeepalive, []probe.Verdict{probe.Reset}
	want.Allow = []Rule{{CIDRs: []CIDR{mustCIDR("192.0.2.0/24"), mustCIDR("2001:db8::/32"), mustCIDR("203.0.113.9/32")}, Ports: []int{5432}}}
	want.Deny = []Rule{{Units: []string{"sshd.service"}}}
	want.Keepalive.Count = 5
	if diff := cmp.Diff(want, p, cmp.Comparer(func(a, b CIDR) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestUnmarshalYAMLErrors(t *testing.T) {
	tests := map[string]string{
		"mode: [destroy]\n":                       `line 1: mode: want a string, got a list`,
		"keepalive:\n  idle: 10\n":                `line 2: keepalive.idle: invalid duration "10"`,
		"allow:\n  - cidr: [192.0.2.0/24]\n":      "line 2: allow[0].cidr: unknown key",
		"deny:\n  - cidrs: [192.0.2.1, nope]\n":   `line 2: deny[0].cidrs[1]: invalid CIDR "nope"`,
		"deny:\n  - cidrs:\n    - 192.0.2.1/24\n": `line 3: deny[0].cidrs[0]: invalid CIDR "192.0.2.1/24": host bits set (did you mean 192.0.2.0/24?)`,
	}
	for doc, want := range tests {
		p := DefaultPolicy()
		err := yaml.Unmarshal([]byte(doc), &p)
		var ke *yamlconf.KeyError
		if !errors.As(err, &ke) {
			t.Errorf("%q: error %v is not a *yamlconf.KeyError", doc, err)
			continue
		}
		if got := "line " + strconv.Itoa(ke.Line) + ": " + ke.Error(); got != want {
			t.Errorf("%q:\n got: %s\nwant: %s", doc, got, want)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.0/24":  "192.0.2.0/24",
		"203.0.113.9":   "203.0.113.9/32",
		"2001:db8::1":   "2001:db8::1/128",
		"2001:db8::/32": "2001:db8::/32",
		// v4-mapped, as ghostd prints a dual-stack socket's IPv4 peer:
		// the socket's remote is matched unmapped, and so is the rule.
		"::ffff:198.51.100.7":     "198.51.100.7/32",
		"::ffff:198.51.100.0/120": "198.51.100.0/24",
	} {
		got, err := ParseCIDR(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", in, got, err, want)
		}
		out, err := yaml.Marshal(got)
		if err != nil || string(out) != want+"\n" {
			t.Errorf("Marshal(%s) = %q, %v", want, out, err)
		}
	}
	for in, want := range map[string]string{
		"":                `invalid CIDR ""`,
		"host":            `invalid CIDR "host"`,
		"192.0.2.0/33":    `invalid CIDR "192.0.2.0/33"`,
		"198.51.100.7/24": `invalid CIDR "198.51.100.7/24": host bits set (did you mean 198.51.100.0/24?)`,
	} {
		if _, err := ParseCIDR(in); err == nil || err.Error() != want {
			t.Errorf("ParseCIDR(%q) error = %v, want %q", in, err, want)
		}
	}
}

// mustCIDR is ParseCIDR for test tables.
func mustCIDR(s string) CIDR {
	c, err := ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return c
}
