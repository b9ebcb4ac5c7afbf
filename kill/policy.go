package kill

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
	"github.com/ghostd/ghostd/probe"
)

// Mode says how a connection is ended.
type Mode string

// Kill modes (see "Kill policy" in docs/design.md).
const (
	// ModeDestroy sends SOCK_DESTROY: a RST to the peer, ECONNABORTED to the owner.
	ModeDestroy Mode = "destroy"
	// ModeKeepalive arms the kernel's own keepalive and user timeout on the
	// owner's socket, so the kernel verifies and reaps it: the owner sees ETIMEDOUT.
	ModeKeepalive Mode = "keepalive"
	// ModeShutdown shuts down the output side of a CLOSE_WAIT leak: the FIN
	// completes the close the owner forgot, without a RST. Never used on
	// ghosts, so never a Policy's Mode.
	ModeShutdown Mode = "shutdown"
)

// GhostModes are the modes a Policy may end ghosts with; Validate and the
// flag's help take them from here.
var GhostModes = []Mode{ModeDestroy, ModeKeepalive}

// ModeChoices lists GhostModes for messages: "destroy or keepalive".
func ModeChoices() string {
	names := make([]string, len(GhostModes))
	for i, m := range GhostModes {
		names[i] = string(m)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Policy is the kill configuration: the `kill:` section of ghostd.yml, field
// for field (the yaml tags are the keys). Killing is off by default. Build
// one with DefaultPolicy and check it with Validate.
type Policy struct {
	Enabled  bool            `yaml:"enabled"`
	Mode     Mode            `yaml:"mode"`     // destroy or keepalive, for ghosts
	Verdicts []probe.Verdict `yaml:"verdicts"` // ghost verdicts that may be killed
	MinAge   time.Duration   `yaml:"min_age"`  // how long a confirmed ghost must have been one
	Allow    []Rule          `yaml:"allow"`    // empty: allow all
	Deny     []Rule          `yaml:"deny"`     // beats Allow
	// PerMinute bounds kill actions: a token bucket of PerMinute tokens,
	// refilled at PerMinute per minute, every namespace together.
	PerMinute int `yaml:"per_minute"`
	// CloseWait allows ending CLOSE_WAIT leaks, always with ModeShutdown.
	CloseWait bool `yaml:"close_wait"`
	// Keepalive is what ModeKeepalive arms on the ghost's socket.
	Keepalive Keepalive `yaml:"keepalive"`
	// UserTimeout is TCP_USER_TIMEOUT for ModeKeepalive; 0 leaves it unchanged.
	UserTimeout time.Duration `yaml:"user_timeout"`
}

// Keepalive holds the keepalive socket options ModeKeepalive sets.
type Keepalive struct {
	Idle     time.Duration `yaml:"idle"`     // TCP_KEEPIDLE, whole seconds 1..32767
	Interval time.Duration `yaml:"interval"` // TCP_KEEPINTVL, whole seconds 1..32767
	Count    int           `yaml:"count"`    // TCP_KEEPCNT, 1..127
}

// Kernel limits of the socket options (include/net/tcp.h) and of comm.
const (
	maxKeepIdle  = 32767 * time.Second // MAX_TCP_KEEPIDLE
	maxKeepIntvl = 32767 * time.Second // MAX_TCP_KEEPINTVL
	maxKeepCnt   = 127                 // MAX_TCP_KEEPCNT
	maxUserTO    = math.MaxInt32 * time.Millisecond
	maxCommLen   = 15 // TASK_COMM_LEN - 1
)

// DefaultPolicy returns the defaults: disabled, destroy mode, every ghost
// verdict, 5 minutes minimum age, 10 kills a minute, CLOSE_WAIT leaks left
// alone; keepalive mode arms 10 s idle, 5 s interval, 3 probes and a 30 s
// user timeout.
func DefaultPolicy() Policy {
	return Policy{
		Mode:        ModeDestroy,
		Verdicts:    []probe.Verdict{probe.Reset, probe.Silent, probe.Unreachable},
		MinAge:      5 * time.Minute,
		PerMinute:   10,
		Keepalive:   Keepalive{Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3},
		UserTimeout: 30 * time.Second,
	}
}

// UnmarshalYAML decodes a `kill:` section onto p strictly: keys it leaves
// out keep p's values, unknown keys are errors (*yamlconf.KeyError).
func (p *Policy) UnmarshalYAML(n *yaml.Node) error {
	type plain Policy
	return yamlconf.Decode(n, (*plain)(p))
}

// Validate reports the first problem with the policy, as a
// *yamlconf.KeyError naming its key under "kill:".
func (p Policy) Validate() error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	return nil
}

func (p *Policy) validate() error {
	bad := yamlconf.Errorf
	switch {
	case p.Mode == ModeShutdown:
		return bad("mode", "mode %q is for CLOSE_WAIT leaks only: set kill.close_wait instead", p.Mode)
	case !slices.Contains(GhostModes, p.Mode):
		return bad("mode", "invalid mode %q: want %s", p.Mode, ModeChoices())
	}
	if len(p.Verdicts) == 0 {
		return bad("verdicts", "empty: want one or more of reset, silent, unreachable")
	}
	for i, v := range p.Verdicts {
		key := fmt.Sprintf("verdicts[%d]", i)
		if !v.Ghost() {
			return bad(key, "verdict %q cannot be killed: want reset, silent or unreachable", v)
		}
		if slices.Contains(p.Verdicts[:i], v) {
			return bad(key, "duplicate verdict %q", v)
		}
	}
	k := p.Keepalive
	switch {
	case p.MinAge < 0:
		return bad("min_age", "must not be negative, got %s", p.MinAge)
	case p.PerMinute < 1:
		return bad("per_minute", "must be at least 1, got %d", p.PerMinute)
	case k.Idle < time.Second || k.Idle > maxKeepIdle || k.Idle%time.Second != 0:
		return bad("keepalive.idle", "must be whole seconds from 1s to %s, got %s", maxKeepIdle, k.Idle)
	case k.Interval < time.Second || k.Interval > maxKeepIntvl || k.Interval%time.Second != 0:
		return bad("keepalive.interval", "must be whole seconds from 1s to %s, got %s", maxKeepIntvl, k.Interval)
	case k.Count < 1 || k.Count > maxKeepCnt:
		return bad("keepalive.count", "must be 1 to %d, got %d", maxKeepCnt, k.Count)
	case p.UserTimeout < 0 || p.UserTimeout > maxUserTO:
		return bad("user_timeout", "must be 0 to %s, got %s", maxUserTO, p.UserTimeout)
	}
	for _, set := range []struct {
		key   string
		rules []Rule
	}{{"allow", p.Allow}, {"deny", p.Deny}} {
		for i, r := range set.rules {
			if err := r.validate(); err != nil {
				return yamlconf.Under(fmt.Sprintf("%s[%d]", set.key, i), err)
			}
		}
	}
	return nil
}
