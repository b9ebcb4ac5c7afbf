package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/events"
)

// Error is a configuration error. It names the key (a dotted path such as
// "probe.interval" or "kill.allow[0].cidrs[1]") and, when the value came from
// a file, the file and line.
type Error struct {
	File string // "" when the value did not come from a file
	Line int    // 0 when unknown
	Key  string // "" for errors of the whole document
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// raw mirrors the YAML file. Durations and addresses stay strings here so
// that a bad value is reported with its key and line rather than by yaml.
type raw struct {
	Netns      string        `yaml:"netns"`
	Interval   string        `yaml:"interval"`
	Thresholds rawThresholds `yaml:"thresholds"`
	Probe      rawProbe      `yaml:"probe"`
	Kill       rawKill       `yaml:"kill"`
	Web        rawWeb        `yaml:"web"`
	Log        rawLog        `yaml:"log"`
	Events     rawEvents     `yaml:"events"`
	Metrics    rawMetrics    `yaml:"metrics"`
}

type rawEvents struct {
	RingSize     int    `yaml:"ring_size"`
	File         string `yaml:"file"`
	FileMaxBytes int    `yaml:"file_max_bytes"`
	FilesKept    int    `yaml:"files_kept"`
}

type rawMetrics struct {
	OwnersTopK int `yaml:"owners_top_k"`
}

type rawThresholds struct {
	Idle      string `yaml:"idle"`
	CloseWait string `yaml:"close_wait"`
	Stall     string `yaml:"stall"`
	FinWait2  string `yaml:"fin_wait2"`
	LastAck   string `yaml:"last_ack"`
}

type rawProbe struct {
	Enabled    bool    `yaml:"enabled"`
	Attempts   int     `yaml:"attempts"`
	Interval   string  `yaml:"interval"`
	Rate       float64 `yaml:"rate"`
	PerHost    int     `yaml:"per_host"`
	InFlight   int     `yaml:"in_flight"`
	HostHint   bool    `yaml:"host_hint"`
	ResetLocal bool    `yaml:"reset_local"`
	Backoff    string  `yaml:"backoff"`
	Reconfirm  string  `yaml:"reconfirm"`
}

type rawKill struct {
	Enabled     bool         `yaml:"enabled"`
	Mode        string       `yaml:"mode"`
	Verdicts    []string     `yaml:"verdicts"`
	MinAge      string       `yaml:"min_age"`
	Allow       []rawRule    `yaml:"allow"`
	Deny        []rawRule    `yaml:"deny"`
	PerMinute   int          `yaml:"per_minute"`
	CloseWait   bool         `yaml:"close_wait"`
	Keepalive   rawKeepalive `yaml:"keepalive"`
	UserTimeout string       `yaml:"user_timeout"`
}

type rawKeepalive struct {
	Idle     string `yaml:"idle"`
	Interval string `yaml:"interval"`
	Count    int    `yaml:"count"`
}

type rawRule struct {
	CIDRs []string `yaml:"cidrs"`
	Ports []int    `yaml:"ports"`
	Netns []string `yaml:"netns"`
	Comms []string `yaml:"comms"`
	Units []string `yaml:"units"`
}

type rawWeb struct {
	ListenAddress []string `yaml:"listen_address"`
	ConfigFile    string   `yaml:"config_file"`
}

type rawLog struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Load reads and parses the file at path. A missing file is fine at
// DefaultPath (the defaults apply) and an error anywhere else.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && path == DefaultPath {
		return Default(), nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse parses a YAML document on top of the defaults and validates the
// result. name is the file name used in error messages.
func Parse(data []byte, name string) (Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, syntaxError(name, err)
	}
	r := toRaw(Default())
	lines := map[string]int{}
	if len(doc.Content) > 0 {
		if err := walk(doc.Content[0], reflect.ValueOf(&r).Elem(), "", lines); err != nil {
			err.File = name
			return Config{}, err
		}
		// The walk above already rejected unknown keys with their path; decode
		// once more, strictly, so that nothing it might miss is ever dropped.
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&r); err != nil && err != io.EOF {
			return Config{}, syntaxError(name, err)
		}
	}
	c, err := r.config()
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = name
			ce.Line = lineOf(lines, ce.Key)
		}
		return Config{}, err
	}
	return c, nil
}

var yamlLine = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

func syntaxError(name string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: n, Msg: m[2]}
	}
	return &Error{File: name, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// lineOf finds the line of key, or of its nearest parent that has one.
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if n, ok := lines[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// walk decodes n into v field by field, recording the line of every key and
// list item, so that every error can name both.
func walk(n *yaml.Node, v reflect.Value, path string, lines map[string]int) *Error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if path != "" {
		if _, ok := lines[path]; !ok {
			lines[path] = n.Line
		}
	}
	switch {
	case v.Kind() == reflect.Struct:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil // "probe:" with nothing under it keeps the defaults
		}
		if n.Kind != yaml.MappingNode {
			return &Error{Line: n.Line, Key: path, Msg: "want a mapping, got " + describe(n)}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			f, ok := fieldByTag(v, k.Value)
			if !ok {
				return &Error{Line: k.Line, Key: p, Msg: "unknown key"}
			}
			lines[p] = k.Line
			if err := walk(val, f, p, lines); err != nil {
				return err
			}
		}
		return nil
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return &Error{Line: n.Line, Key: path, Msg: "want a list, got " + describe(n)}
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := walk(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), lines); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case v.Kind() == reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for i, item := range n.Content {
				lines[fmt.Sprintf("%s[%d]", path, i)] = item.Line
			}
		}
		fallthrough
	default:
		p := reflect.New(v.Type())
		if err := n.Decode(p.Interface()); err != nil {
			return &Error{Line: n.Line, Key: path, Msg: "want " + kindName(v.Type()) + ", got " + describe(n)}
		}
		v.Set(p.Elem())
		return nil
	}
}

func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(kindName(t.Elem()), "an "), "a ") + "s"
	}
	return t.String()
}

// toRaw turns a typed config back into the file's shape, so that Parse can
// decode the file on top of the defaults.
func toRaw(c Config) raw {
	return raw{
		Netns:    c.Netns,
		Interval: c.Interval.String(),
		Thresholds: rawThresholds{
			Idle: c.Idle.String(), CloseWait: c.CloseWait.String(), Stall: c.Stall.String(),
			FinWait2: c.FinWait2.String(), LastAck: c.LastAck.String(),
		},
		Probe: rawProbe{
			Enabled: c.Probe.Enabled, Attempts: c.Probe.Attempts, Interval: c.Probe.Interval.String(),
			Rate: c.Probe.Rate, PerHost: c.Probe.PerHost, InFlight: c.Probe.InFlight,
			HostHint: c.Probe.HostHint, ResetLocal: c.Probe.ResetLocal, Backoff: c.Probe.Backoff.String(), Reconfirm: c.Probe.Reconfirm.String(),
		},
		Kill: rawKill{
			Enabled: c.Kill.Enabled, Mode: c.Kill.Mode, Verdicts: append([]string(nil), c.Kill.Verdicts...),
			MinAge: c.Kill.MinAge.String(), Allow: toRawRules(c.Kill.Allow), Deny: toRawRules(c.Kill.Deny),
			PerMinute: c.Kill.PerMinute, CloseWait: c.Kill.CloseWait,
			Keepalive: rawKeepalive{
				Idle: c.Kill.KeepaliveIdle.String(), Interval: c.Kill.KeepaliveInterval.String(),
				Count: c.Kill.KeepaliveCount,
			},
			UserTimeout: c.Kill.UserTimeout.String(),
		},
		Web: rawWeb{ListenAddress: append([]string(nil), c.Web.ListenAddress...), ConfigFile: c.Web.ConfigFile},
		Log: rawLog{Level: c.Log.Level, Format: c.Log.Format},
		Events: rawEvents{
			RingSize: c.Events.RingSize, File: c.Events.File,
			FileMaxBytes: int(c.Events.FileMaxBytes), FilesKept: c.Events.FilesKept,
		},
		Metrics: rawMetrics{OwnersTopK: c.OwnersTopK},
	}
}

func toRawRules(rs []Rule) []rawRule {
	var out []rawRule
	for _, r := range rs {
		rr := rawRule{Netns: r.Netns, Comms: r.Comms, Units: r.Units}
		for _, p := range r.CIDRs {
			rr.CIDRs = append(rr.CIDRs, p.String())
		}
		for _, p := range r.Ports {
			rr.Ports = append(rr.Ports, int(p))
		}
		out = append(out, rr)
	}
	return out
}

// config converts the file's strings into typed values.
func (r *raw) config() (Config, error) {
	var errs []error
	dur := func(key, s string) time.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf("invalid duration %q", s)})
		}
		return d
	}
	c := Config{
		Netns:     r.Netns,
		Interval:  dur("interval", r.Interval),
		Idle:      dur("thresholds.idle", r.Thresholds.Idle),
		CloseWait: dur("thresholds.close_wait", r.Thresholds.CloseWait),
		Stall:     dur("thresholds.stall", r.Thresholds.Stall),
		FinWait2:  dur("thresholds.fin_wait2", r.Thresholds.FinWait2),
		LastAck:   dur("thresholds.last_ack", r.Thresholds.LastAck),
		Probe: ProbeConfig{
			Enabled:    r.Probe.Enabled,
			Attempts:   r.Probe.Attempts,
			Interval:   dur("probe.interval", r.Probe.Interval),
			Rate:       r.Probe.Rate,
			PerHost:    r.Probe.PerHost,
			InFlight:   r.Probe.InFlight,
			HostHint:   r.Probe.HostHint,
			ResetLocal: r.Probe.ResetLocal,
			Backoff:    dur("probe.backoff", r.Probe.Backoff),
			Reconfirm:  dur("probe.reconfirm", r.Probe.Reconfirm),
		},
		Kill: KillConfig{
			Enabled:           r.Kill.Enabled,
			Mode:              r.Kill.Mode,
			Verdicts:          r.Kill.Verdicts,
			MinAge:            dur("kill.min_age", r.Kill.MinAge),
			PerMinute:         r.Kill.PerMinute,
			CloseWait:         r.Kill.CloseWait,
			KeepaliveIdle:     dur("kill.keepalive.idle", r.Kill.Keepalive.Idle),
			KeepaliveInterval: dur("kill.keepalive.interval", r.Kill.Keepalive.Interval),
			KeepaliveCount:    r.Kill.Keepalive.Count,
			UserTimeout:       dur("kill.user_timeout", r.Kill.UserTimeout),
		},
		Web: WebConfig{ListenAddress: r.Web.ListenAddress, ConfigFile: r.Web.ConfigFile},
		Log: LogConfig{Level: r.Log.Level, Format: r.Log.Format},
		Events: events.Config{
			RingSize: r.Events.RingSize, File: r.Events.File,
			FileMaxBytes: int64(r.Events.FileMaxBytes), FilesKept: r.Events.FilesKept,
		},
		OwnersTopK: r.Metrics.OwnersTopK,
	}
	if len(errs) > 0 {
		return Config{}, errs[0]
	}
	var err error
	if c.Kill.Allow, err = rules("kill.allow", r.Kill.Allow); err != nil {
		return Config{}, err
	}
	if c.Kill.Deny, err = rules("kill.deny", r.Kill.Deny); err != nil {
		return Config{}, err
	}
	return c, nil
}

func rules(key string, rs []rawRule) ([]Rule, error) {
	var out []Rule
	for i, r := range rs {
		k := fmt.Sprintf("%s[%d]", key, i)
		rule := Rule{Netns: r.Netns, Comms: r.Comms, Units: r.Units}
		for j, s := range r.CIDRs {
			p, err := ParseCIDR(s)
			if err != nil {
				return nil, &Error{Key: fmt.Sprintf("%s.cidrs[%d]", k, j), Msg: err.Error()}
			}
			rule.CIDRs = append(rule.CIDRs, p)
		}
		for j, p := range r.Ports {
			if p < 1 || p > 65535 {
				return nil, &Error{Key: fmt.Sprintf("%s.ports[%d]", k, j), Msg: fmt.Sprintf("invalid port %d: want 1 to 65535", p)}
			}
			rule.Ports = append(rule.Ports, uint16(p))
		}
		out = append(out, rule)
	}
	return out, nil
}

// ParseCIDR parses a prefix such as "192.0.2.0/24" or a single address
// (taken as /32 or /128). Host bits must be zero.
func ParseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}
