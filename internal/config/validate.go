package config

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ghostd/ghostd/probe"
)

// Kernel limits of the keepalive socket options (include/net/tcp.h).
const (
	maxKeepIdle  = 32767 * time.Second // MAX_TCP_KEEPIDLE
	maxKeepIntvl = 32767 * time.Second // MAX_TCP_KEEPINTVL
	maxKeepCnt   = 127                 // MAX_TCP_KEEPCNT
	maxCommLen   = 15                  // TASK_COMM_LEN - 1
)

// KillableVerdicts are the verdicts kill.verdicts may list: those that
// prove a ghost. alive and unprobed are never killed.
var KillableVerdicts = []string{"reset", "silent", "unreachable"}

// Validate checks every value and every combination of values. Its errors
// are *Error values that name the key.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Netns == "":
		return bad("netns", `empty: want "all", a name under /run/netns or a path such as /proc/PID/ns/net`)
	case strings.HasPrefix(c.Netns, "/"):
		if filepath.Clean(c.Netns) != c.Netns {
			return bad("netns", "path %q is not clean", c.Netns)
		}
	case strings.Contains(c.Netns, "/") || c.Netns == "." || c.Netns == "..":
		return bad("netns", "invalid namespace name %q", c.Netns)
	}
	if c.Interval < time.Second {
		return bad("interval", "%s is too short: want at least 1s", c.Interval)
	}
	for _, t := range []struct {
		key string
		d   time.Duration
	}{
		{"thresholds.idle", c.Idle}, {"thresholds.close_wait", c.CloseWait}, {"thresholds.stall", c.Stall},
		{"thresholds.fin_wait2", c.FinWait2}, {"thresholds.last_ack", c.LastAck},
	} {
		if t.d <= 0 {
			return bad(t.key, "must be positive, got %s", t.d)
		}
	}

	p := c.Probe
	switch {
	case p.Attempts < 1 || p.Attempts > 10:
		return bad("probe.attempts", "must be 1 to 10, got %d", p.Attempts)
	case p.Interval < probe.MinInterval:
		// Linux answers one out-of-window segment per socket per 500 ms:
		// the prober never spaces attempts closer, so neither may the file.
		return bad("probe.interval", "%s is too short: want at least %s", p.Interval, probe.MinInterval)
	case math.IsNaN(p.Rate) || p.Rate <= 0 || math.IsInf(p.Rate, 0):
		return bad("probe.rate", "must be a positive number of probes per second, got %v", p.Rate)
	case p.PerHost < 1:
		return bad("probe.per_host", "must be at least 1, got %d", p.PerHost)
	case p.InFlight < 1:
		return bad("probe.in_flight", "must be at least 1, got %d", p.InFlight)
	case p.Backoff < 0:
		return bad("probe.backoff", "must not be negative, got %s", p.Backoff)
	case p.Reconfirm <= 0:
		return bad("probe.reconfirm", "must be positive, got %s", p.Reconfirm)
	}

	k := c.Kill
	switch k.Mode {
	case ModeDestroy, ModeKeepalive:
	case ModeShutdown:
		return bad("kill.mode", "mode %q is for CLOSE_WAIT leaks only: set kill.close_wait instead", k.Mode)
	default:
		return bad("kill.mode", "invalid mode %q: want destroy or keepalive", k.Mode)
	}
	if len(k.Verdicts) == 0 {
		return bad("kill.verdicts", "empty: want one or more of reset, silent, unreachable")
	}
	for i, v := range k.Verdicts {
		key := fmt.Sprintf("kill.verdicts[%d]", i)
		if !slices.Contains(KillableVerdicts, v) {
			return bad(key, "verdict %q cannot be killed: want reset, silent or unreachable", v)
		}
		if slices.Contains(k.Verdicts[:i], v) {
			return bad(key, "duplicate verdict %q", v)
		}
	}
	switch {
	case k.MinAge < 0:
		return bad("kill.min_age", "must not be negative, got %s", k.MinAge)
	case k.PerMinute < 1:
		return bad("kill.per_minute", "must be at least 1, got %d", k.PerMinute)
	case k.KeepaliveIdle < time.Second || k.KeepaliveIdle > maxKeepIdle || k.KeepaliveIdle%time.Second != 0:
		return bad("kill.keepalive.idle", "must be whole seconds from 1s to %s, got %s", maxKeepIdle, k.KeepaliveIdle)
	case k.KeepaliveInterval < time.Second || k.KeepaliveInterval > maxKeepIntvl || k.KeepaliveInterval%time.Second != 0:
		return bad("kill.keepalive.interval", "must be whole seconds from 1s to %s, got %s", maxKeepIntvl, k.KeepaliveInterval)
	case k.KeepaliveCount < 1 || k.KeepaliveCount > maxKeepCnt:
		return bad("kill.keepalive.count", "must be 1 to %d, got %d", maxKeepCnt, k.KeepaliveCount)
	case k.UserTimeout < 0 || k.UserTimeout > math.MaxInt32*time.Millisecond:
		return bad("kill.user_timeout", "must be 0 to %s, got %s", math.MaxInt32*time.Millisecond, k.UserTimeout)
	}
	for _, set := range []struct {
		key   string
		rules []Rule
	}{{"kill.allow", k.Allow}, {"kill.deny", k.Deny}} {
		for i, r := range set.rules {
			if err := r.validate(fmt.Sprintf("%s[%d]", set.key, i)); err != nil {
				return err
			}
		}
	}

	if len(c.Web.ListenAddress) == 0 {
		return bad("web.listen_address", "empty: want one or more addresses such as %q", DefaultListenAddress)
	}
	for i, a := range c.Web.ListenAddress {
		_, port, err := net.SplitHostPort(a)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			return bad(fmt.Sprintf("web.listen_address[%d]", i), "invalid address %q: want host:port", a)
		}
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "invalid level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "logfmt", "json":
	default:
		return bad("log.format", "invalid format %q: want logfmt or json", c.Log.Format)
	}
	return c.validateEvents()
}

func (r Rule) validate(key string) error {
	if len(r.CIDRs)+len(r.Ports)+len(r.Netns)+len(r.Comms)+len(r.Units) == 0 {
		return &Error{Key: key, Msg: "empty rule: give at least one of cidrs, ports, netns, comms, units"}
	}
	for _, f := range []struct {
		name string
		vals []string
		max  int
	}{{"netns", r.Netns, 0}, {"comms", r.Comms, maxCommLen}, {"units", r.Units, 0}} {
		for i, v := range f.vals {
			k := fmt.Sprintf("%s.%s[%d]", key, f.name, i)
			if v == "" {
				return &Error{Key: k, Msg: "empty string"}
			}
			if f.max > 0 && len(v) > f.max {
				return &Error{Key: k, Msg: fmt.Sprintf("%q is longer than the kernel's %d-byte process names", v, f.max)}
			}
		}
	}
	for i, p := range r.Ports {
		if p == 0 {
			return &Error{Key: fmt.Sprintf("%s.ports[%d]", key, i), Msg: "invalid port 0: want 1 to 65535"}
		}
	}
	for i, p := range r.CIDRs {
		if !p.IsValid() || p.Masked() != p {
			return &Error{Key: fmt.Sprintf("%s.cidrs[%d]", key, i), Msg: fmt.Sprintf("invalid CIDR %q", p)}
		}
	}
	return nil
}
