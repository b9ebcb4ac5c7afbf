package config

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
	"github.com/ghostd/ghostd/kill"
)

// A flag overrides one configuration key. The table below is the only
// place that says which: registration, Apply and the error that names a
// flag all read it, and the value is parsed into the key's own field (found
// by its yaml tag), so a flag cannot drift from its key's type. Adding a key
// to a package's configuration type means adding its row here
// (TestEveryKeyHasAFlag fails until then) and its line in
// packaging/ghostd.yml (TestExampleHasEveryKey).
type flagSpec struct {
	name   string // without dashes
	key    string // dotted configuration key
	daemon bool   // `run` only, not `scan`
	invert bool   // a bool flag that sets its key to the opposite (--no-probe)
	usage  string // " (key KEY)" is appended
}

var flagTable = []flagSpec{
	{name: "netns", key: "netns", usage: `namespaces to scan: "all", a name under /run/netns, a pod's <namespace>/<pod>, or /proc/PID/ns/net`},
	{name: "interval", key: "interval", daemon: true, usage: "time between two scans"},

	{name: "idle", key: "thresholds.idle", usage: "an ESTABLISHED socket that has neither sent nor received data for this long is a suspect, unless its keepalive finds a dead peer sooner"},
	{name: "close-wait", key: "thresholds.close_wait", usage: "a socket in CLOSE_WAIT for this long is a leak"},
	{name: "stall", key: "thresholds.stall", usage: "a zero-window stall longer than this is reported"},
	{name: "fin-wait2", key: "thresholds.fin_wait2", usage: "a socket in FIN_WAIT2 for this long is reported (keep it above the kernel's 60s tcp_fin_timeout)"},
	{name: "last-ack", key: "thresholds.last_ack", usage: "a socket in LAST_ACK for this long is reported"},

	{name: "no-probe", key: "probe.enabled", invert: true, usage: "report suspects without probing them (key probe.enabled: false)"},
	{name: "probes", key: "probe.attempts", usage: "probes per suspect before silence counts"},
	{name: "probe-interval", key: "probe.interval", usage: "time between two probes of one connection"},
	{name: "probe-rate", key: "probe.rate", usage: "probes per second, every namespace together"},
	{name: "probe-per-host", key: "probe.per_host", usage: "connections probed at once per peer host"},
	{name: "probe-in-flight", key: "probe.in_flight", usage: "connections probed at once in total"},
	{name: "probe-host-hint", key: "probe.host_hint", usage: `ping a silent peer's host to tell "host down" from "flow forgotten"`},
	{name: "probe-reset-local", key: "probe.reset_local", usage: "acknowledge RCV.NXT, so a lost connection's RST passes strict firewalls but also closes the local socket"},
	{name: "probe-reset-guard", key: "probe.reset_guard", usage: "acknowledge RCV.NXT behind an nftables rule that drops the answering RST before the local socket: reset through strict firewalls, nothing closed; needs CAP_NET_ADMIN"},
	{name: "probe-backoff", key: "probe.backoff", usage: "re-probe a suspect that answered only after this long"},
	{name: "probe-reconfirm", key: "probe.reconfirm", usage: "re-probe a confirmed ghost this often"},

	{name: "kill", key: "kill.enabled", usage: "apply the kill policy to confirmed ghosts"},
	{name: "kill-mode", key: "kill.mode", usage: "how ghosts are ended: " + kill.ModeChoices()},
	{name: "kill-verdicts", key: "kill.verdicts", usage: "a verdict that may be killed: reset, silent or unreachable; repeat for more"},
	{name: "kill-min-age", key: "kill.min_age", usage: "how long a socket must have been a confirmed ghost before it may be killed"},
	{name: "kill-allow", key: "kill.allow", usage: "an allow rule as a YAML mapping, e.g. '{cidrs: [192.0.2.0/24], ports: [5432]}'; repeat for more"},
	{name: "kill-deny", key: "kill.deny", usage: "a deny rule as a YAML mapping, e.g. '{units: [sshd.service]}'; repeat for more"},
	{name: "kill-per-minute", key: "kill.per_minute", usage: "kills per minute, every namespace together"},
	{name: "kill-close-wait", key: "kill.close_wait", usage: "also end CLOSE_WAIT leaks, by shutting down their output side"},
	{name: "kill-keepalive-idle", key: "kill.keepalive.idle", usage: "TCP_KEEPIDLE armed by kill mode keepalive"},
	{name: "kill-keepalive-interval", key: "kill.keepalive.interval", usage: "TCP_KEEPINTVL armed by kill mode keepalive"},
	{name: "kill-keepalive-count", key: "kill.keepalive.count", usage: "TCP_KEEPCNT armed by kill mode keepalive"},
	{name: "kill-user-timeout", key: "kill.user_timeout", usage: "TCP_USER_TIMEOUT armed by kill mode keepalive; 0 leaves it alone"},

	{name: "runtime-endpoint", key: "runtime.endpoints", usage: `a container runtime socket that names pods and containers (CRI, or the Docker API for docker.sock); repeat for more, "none" for none`},
	{name: "runtime-refresh", key: "runtime.refresh", usage: "how long the container runtime's pod listing is reused (a new namespace asks sooner)"},

	{name: "web.listen-address", key: "web.listen_address", daemon: true, usage: "address to serve /metrics and the API on; repeat for more"},
	{name: "web.config.file", key: "web.config_file", daemon: true, usage: "web configuration file for TLS and authentication"},
	{name: "log.level", key: "log.level", daemon: true, usage: "log level: debug, info, warn or error"},
	{name: "log.format", key: "log.format", daemon: true, usage: "log format: logfmt or json"},

	{name: "events.ring-size", key: "events.ring_size", daemon: true, usage: "events kept in memory for /api/v1/events and the page"},
	{name: "events.file", key: "events.file", daemon: true, usage: "append events to this JSONL file; empty keeps none"},
	{name: "events.file-max-bytes", key: "events.file_max_bytes", daemon: true, usage: "start a new events file before one grows past this many bytes"},
	{name: "events.files-kept", key: "events.files_kept", daemon: true, usage: "events files kept, the one being written included"},
	{name: "metrics.owners-top-k", key: "metrics.owners_top_k", daemon: true, usage: "owners ghostd_ghost_sessions_by_owner names before it adds the rest up as other"},
}

// flagKey returns the configuration key that flag name (without dashes)
// overrides, and false for flags that are not configuration keys.
func flagKey(name string) (string, bool) {
	for _, s := range flagTable {
		if s.name == name {
			return s.key, true
		}
	}
	return "", false
}

// Flags holds command-line flags bound to an overlay. Apply copies only the
// flags the user set onto a Config, so flags override the file and unset
// flags leave the file's values alone.
type Flags struct {
	// ConfigFile is --config (DefaultPath unless given; `run` only).
	ConfigFile string
	// Check is --config.check: validate the configuration and exit (`run` only).
	Check bool

	fs   *flag.FlagSet
	over Config
}

// RegisterFlags registers ghostd's configuration flags on fs. With
// detectionOnly (for `scan`) only the flags shared by `run` and `scan` are
// registered; otherwise (`run`) the daemon's flags too.
func RegisterFlags(fs *flag.FlagSet, detectionOnly bool) *Flags {
	f := register(fs, func(s *flagSpec) bool { return !s.daemon || !detectionOnly })
	if !detectionOnly {
		fs.StringVar(&f.ConfigFile, "config", DefaultPath, "configuration file")
		fs.BoolVar(&f.Check, "config.check", false, "validate the configuration and exit")
	}
	return f
}

// RegisterFlagsFor registers only the named flags (without dashes) of the
// same table, for a command that takes a few keys and no file (`probe`).
// A name the table does not have panics.
func RegisterFlagsFor(fs *flag.FlagSet, names ...string) *Flags {
	f := register(fs, func(s *flagSpec) bool { return slices.Contains(names, s.name) })
	for _, name := range names {
		if fs.Lookup(name) == nil {
			panic("config: no flag --" + name + " in the flag table")
		}
	}
	return f
}

// register registers the table's flags that keep selects.
func register(fs *flag.FlagSet, keep func(*flagSpec) bool) *Flags {
	f := &Flags{fs: fs, over: Default(), ConfigFile: DefaultPath}
	root := reflect.ValueOf(&f.over).Elem()
	for i := range flagTable {
		s := &flagTable[i]
		if !keep(s) {
			continue
		}
		v, ok := yamlconf.Field(root, s.key)
		if !ok {
			panic("config: flag --" + s.name + " names no key " + s.key)
		}
		usage := s.usage
		if !strings.Contains(usage, "(key ") {
			// flag.PrintDefaults shows the back-quoted type beside the flag's name.
			if t := typeName(v.Type()); t != "" {
				usage += " (key " + s.key + ": `" + t + "`)"
			} else {
				usage += " (key " + s.key + ")"
			}
		}
		fs.Var(&fieldValue{v: v, invert: s.invert}, s.name, usage)
	}
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
	set := map[string]string{} // key -> flag
	dst, src := reflect.ValueOf(c).Elem(), reflect.ValueOf(&f.over).Elem()
	f.fs.Visit(func(fl *flag.Flag) {
		key, ok := flagKey(fl.Name)
		if !ok {
			return
		}
		set[key] = fl.Name
		to, _ := yamlconf.Field(dst, key)
		from, _ := yamlconf.Field(src, key)
		to.Set(clone(from))
	})
	err := c.Validate()
	var ce *Error
	if errors.As(err, &ce) {
		key, _, _ := strings.Cut(ce.Key, "[")
		if name, ok := set[key]; ok {
			return &Error{Key: "--" + name, Msg: ce.Msg}
		}
	}
	return err
}

// clone copies v, with a list of its own.
func clone(v reflect.Value) reflect.Value {
	if v.Kind() != reflect.Slice || v.IsNil() {
		return v
	}
	return reflect.AppendSlice(reflect.MakeSlice(v.Type(), 0, v.Len()), v)
}

// fieldValue is a flag.Value that parses into a configuration field of any
// type the configuration uses. A list flag is repeatable: its first use
// replaces the default list, later uses append.
type fieldValue struct {
	v      reflect.Value
	invert bool
	listed bool
}

func (fv *fieldValue) IsBoolFlag() bool { return fv.v.IsValid() && fv.v.Kind() == reflect.Bool }

// String renders the value; a false bool renders as "", so that
// flag.PrintDefaults treats it as the zero value it is.
func (fv *fieldValue) String() string {
	if fv == nil || !fv.v.IsValid() {
		return ""
	}
	if fv.v.Kind() == reflect.Bool {
		if fv.v.Bool() != fv.invert {
			return "true"
		}
		return ""
	}
	return format(fv.v)
}

func (fv *fieldValue) Set(s string) error {
	if fv.v.Kind() != reflect.Slice {
		return parse(fv.v, s, fv.invert)
	}
	if !fv.listed {
		fv.v.Set(reflect.Zero(fv.v.Type()))
		fv.listed = true
	}
	elem := reflect.New(fv.v.Type().Elem()).Elem()
	if err := parse(elem, s, false); err != nil {
		return err
	}
	fv.v.Set(reflect.Append(fv.v, elem))
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// parse sets v from a flag's text.
func parse(v reflect.Value, s string, invert bool) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q", s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b != invert)
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.CanInt():
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(n)
	case v.CanFloat():
		x, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(x)
	default:
		// A mapping such as a kill rule, written as YAML.
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
			return fmt.Errorf("want a YAML mapping: %v", err)
		}
		if err := yamlconf.Decode(&doc, v.Addr().Interface()); err != nil {
			return err
		}
	}
	return nil
}

// typeName names what a flag of type t takes, for its help; "" for bools.
func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Bool:
		return ""
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "rule"
	case t.Kind() == reflect.Slice:
		return typeName(t.Elem())
	}
	return "int"
}

// format renders a field's value as its flag would take it.
func format(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = format(v.Index(i))
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v.Interface())
}
