package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ghostd/ghostd/internal/yamlconf"
)

// Validate checks every value: the top-level keys here, each section with
// its own type's Validate. Its errors are *Error values that name the key
// once, with the section in front ("kill.keepalive.idle"), and no package
// prefix of the section's own.
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
	case strings.Contains(c.Netns, "/") && !podName(c.Netns) || c.Netns == "." || c.Netns == "..":
		return bad("netns", "invalid namespace name %q", c.Netns)
	}
	if c.Interval < time.Second {
		return bad("interval", "%s is too short: want at least 1s", c.Interval)
	}
	for _, s := range []struct {
		key string
		err error
	}{
		{"thresholds", c.Thresholds.Validate()},
		{"probe", c.Probe.Validate()},
		{"kill", c.Kill.Validate()},
		{"runtime", c.Runtime.Validate()},
		{"events", c.Events.Validate()},
		{"metrics", c.Metrics.Validate()},
	} {
		if s.err != nil {
			return asError(yamlconf.Under(s.key, s.err))
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
	return nil
}

// podName reports whether s is a pod's namespace name, "<namespace>/<pod>",
// as ghostd names a pod's network namespace.
func podName(s string) bool {
	ns, pod, ok := strings.Cut(s, "/")
	return ok && ns != "" && pod != "" && !strings.Contains(pod, "/") &&
		ns != "." && ns != ".." && pod != "." && pod != ".."
}
