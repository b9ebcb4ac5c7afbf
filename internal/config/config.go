// Package config loads, validates and overlays ghostd's YAML configuration and command-line flags.
package config

import (
	"reflect"
	"time"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/internal/yamlconf"
	"github.com/ghostd/ghostd/kill"
	"github.com/ghostd/ghostd/podinfo"
	"github.com/ghostd/ghostd/probe"
	"github.com/ghostd/ghostd/tracker"
)

// DefaultPath is where `ghostd run` looks for its configuration file. A
// missing file at this path means "all defaults"; a missing file at any
// path given explicitly is an error.
const DefaultPath = "/etc/ghostd/ghostd.yml"

// DefaultListenAddress is the default address of the metrics and API server.
const DefaultListenAddress = ":10145"

// Config is ghostd's configuration: the shape of ghostd.yml. Its sections
// are the packages' own configuration types, which carry their keys (yaml
// tags), defaults, decoding and checks; this package adds only the
// top-level keys, the file and the flags. Build one with Default, Load or
// Parse; the zero value is not valid.
type Config struct {
	// Netns selects the namespaces to scan: "all", a name under /run/netns,
	// or a path such as /proc/PID/ns/net.
	Netns string `yaml:"netns"`
	// Interval is the time between two scans of `ghostd run`.
	Interval time.Duration `yaml:"interval"`

	// Thresholds: how long a socket must show a symptom to become a suspect.
	Thresholds tracker.Config `yaml:"thresholds"`
	Probe      probe.Config   `yaml:"probe"`
	Kill       kill.Policy    `yaml:"kill"`
	Web        WebConfig      `yaml:"web"`
	Log        LogConfig      `yaml:"log"`
	// Runtime names the container runtimes asked for pod and container names.
	Runtime podinfo.Config `yaml:"runtime"`

	// Events is how the daemon keeps its event history; Metrics bounds the
	// per-owner metric.
	Events  events.Config          `yaml:"events"`
	Metrics exporter.MetricsConfig `yaml:"metrics"`
}

// WebConfig configures the HTTP server for /metrics and the API.
type WebConfig struct {
	ListenAddress []string `yaml:"listen_address"`
	ConfigFile    string   `yaml:"config_file"` // exporter-toolkit web configuration (TLS, basic auth)
}

// LogConfig configures log/slog output.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn or error
	Format string `yaml:"format"` // logfmt or json
}

// Default returns the built-in configuration: report only, probing on. The
// sections are their packages' defaults.
func Default() Config {
	return Config{
		Netns:      "all",
		Interval:   15 * time.Second,
		Thresholds: tracker.DefaultConfig(),
		Probe:      probe.DefaultConfig(),
		Kill:       kill.DefaultPolicy(),
		Web:        WebConfig{ListenAddress: []string{DefaultListenAddress}},
		Log:        LogConfig{Level: "info", Format: "logfmt"},
		Runtime:    podinfo.DefaultConfig(),
		Events:     events.DefaultConfig(),
		Metrics:    exporter.DefaultMetricsConfig(),
	}
}

// keys returns every configuration key, dotted ("kill.keepalive.idle"), in
// the order of the file.
func keys() []string { return yamlconf.Keys(reflect.TypeFor[Config]()) }
