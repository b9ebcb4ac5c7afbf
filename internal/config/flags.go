package config

import (
	"errors"
	"flag"
	"strings"
)

// Flags holds command-line flags bound to an overlay. Apply copies only the
// flags the user set onto a Config, so flags override the file and unset
// flags leave the file's values alone.
type Flags struct {
	// ConfigFile is --config (DefaultPath unless given; `run` only).
	ConfigFile string
	// Check is --config.check: validate the configuration and exit (`run` only).
	Check bool

	fs      *flag.FlagSet
	over    Config
	noProbe bool
	listen  listFlag
}

// flagKeys maps each flag to the configuration key it overrides.
var flagKeys = map[string]string{
	"netns":              "netns",
	"idle":               "thresholds.idle",
	"close-wait":         "thresholds.close_wait",
	"stall":              "thresholds.stall",
	"probes":             "probe.attempts",
	"probe-interval":     "probe.interval",
	"no-probe":           "probe.enabled",
	"kill":               "kill.enabled",
	"kill-min-age":       "kill.min_age",
	"interval":           "interval",
	"web.listen-address": "web.listen_address",
	"web.config.file":    "web.config_file",
	"log.level":          "log.level",
	"log.format":         "log.format",

	// The event history (events.go).
	"events.ring-size":      "events.ring_size",
	"events.file":           "events.file",
	"events.file-max-bytes": "events.file_max_bytes",
	"events.files-kept":     "events.files_kept",
}

// FlagKey returns the configuration key that flag name (without dashes)
// overrides, and false for flags that are not configuration keys.
func FlagKey(name string) (string, bool) {
	k, ok := flagKeys[name]
	return k, ok
}

// RegisterFlags registers ghostd's configuration flags on fs. With
// detectionOnly (for `scan`) only the detection flags shared by `run` and
// `scan` are registered; otherwise (`run`) the daemon's flags too.
func RegisterFlags(fs *flag.FlagSet, detectionOnly bool) *Flags {
	d := Default()
	f := &Flags{fs: fs, over: d, ConfigFile: DefaultPath}
	fs.StringVar(&f.over.Netns, "netns", d.Netns, `namespaces to scan: "all", a name under /run/netns, or /proc/PID/ns/net (key netns)`)
	fs.DurationVar(&f.over.Idle, "idle", d.Idle, "an ESTABLISHED socket that has neither sent nor received data for this long is a suspect, unless its keepalive finds a dead peer sooner (key thresholds.idle)")
	fs.DurationVar(&f.over.CloseWait, "close-wait", d.CloseWait, "a socket in CLOSE_WAIT for this long is a leak (key thresholds.close_wait)")
	fs.DurationVar(&f.over.Stall, "stall", d.Stall, "a zero-window stall longer than this is reported (key thresholds.stall)")
	fs.IntVar(&f.over.Probe.Attempts, "probes", d.Probe.Attempts, "probes per suspect before silence counts (key probe.attempts)")
	fs.DurationVar(&f.over.Probe.Interval, "probe-interval", d.Probe.Interval, "time between two probes of one connection (key probe.interval)")
	fs.BoolVar(&f.noProbe, "no-probe", false, "report suspects without probing them (key probe.enabled: false)")
	fs.BoolVar(&f.over.Kill.Enabled, "kill", d.Kill.Enabled, "apply the kill policy to confirmed ghosts (key kill.enabled)")
	fs.DurationVar(&f.over.Kill.MinAge, "kill-min-age", d.Kill.MinAge, "how long a socket must have been a confirmed ghost before it may be killed (key kill.min_age)")
	if detectionOnly {
		return f
	}
	f.listen = listFlag{vals: &f.over.Web.ListenAddress}
	fs.StringVar(&f.ConfigFile, "config", DefaultPath, "configuration file")
	fs.BoolVar(&f.Check, "config.check", false, "validate the configuration and exit")
	fs.DurationVar(&f.over.Interval, "interval", d.Interval, "time between two scans (key interval)")
	fs.Var(&f.listen, "web.listen-address", "address to serve /metrics and the API on; repeat for more (key web.listen_address)")
	fs.StringVar(&f.over.Web.ConfigFile, "web.config.file", d.Web.ConfigFile, "web configuration file for TLS and authentication (key web.config_file)")
	fs.StringVar(&f.over.Log.Level, "log.level", d.Log.Level, "log level: debug, info, warn or error (key log.level)")
	fs.StringVar(&f.over.Log.Format, "log.format", d.Log.Format, "log format: logfmt or json (key log.format)")
	registerEventFlags(fs, &f.over, d)
	return f
}

// Given reports whether the flag name (without dashes) was set on the
// command line.
func (f *Flags) Given(name string) bool {
	given := false
	f.fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == name })
	return given
}

// Apply overrides c with every flag the user set, then validates c. Errors
// about a value given as a flag name the flag.
func (f *Flags) Apply(c *Config) error {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) {
		set[fl.Name] = true
		o := &f.over
		switch fl.Name {
		case "netns":
			c.Netns = o.Netns
		case "idle":
			c.Idle = o.Idle
		case "close-wait":
			c.CloseWait = o.CloseWait
		case "stall":
			c.Stall = o.Stall
		case "probes":
			c.Probe.Attempts = o.Probe.Attempts
		case "probe-interval":
			c.Probe.Interval = o.Probe.Interval
		case "no-probe":
			c.Probe.Enabled = !f.noProbe
		case "kill":
			c.Kill.Enabled = o.Kill.Enabled
		case "kill-min-age":
			c.Kill.MinAge = o.Kill.MinAge
		case "interval":
			c.Interval = o.Interval
		case "web.listen-address":
			c.Web.ListenAddress = append([]string(nil), o.Web.ListenAddress...)
		case "web.config.file":
			c.Web.ConfigFile = o.Web.ConfigFile
		case "log.level":
			c.Log.Level = o.Log.Level
		case "log.format":
			c.Log.Format = o.Log.Format
		default:
			applyEventFlag(fl.Name, c, o)
		}
	})
	err := c.Validate()
	var ce *Error
	if errors.As(err, &ce) {
		key, _, _ := strings.Cut(ce.Key, "[")
		for name := range set {
			if flagKeys[name] == key {
				return &Error{Key: "--" + name, Msg: ce.Msg}
			}
		}
	}
	return err
}

// listFlag is a repeatable string flag: the first use replaces the
// default, later uses append.
type listFlag struct {
	vals *[]string
	set  bool
}

func (l *listFlag) String() string {
	if l == nil || l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l *listFlag) Set(s string) error {
	if !l.set {
		*l.vals = nil
		l.set = true
	}
	*l.vals = append(*l.vals, s)
	return nil
}
