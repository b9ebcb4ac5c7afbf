// Package config loads, validates and overlays ghostd's YAML configuration and command-line flags.
package config

import (
	"net/netip"
	"time"

	"github.com/ghostd/ghostd/events"
	"github.com/ghostd/ghostd/exporter"
	"github.com/ghostd/ghostd/tracker"
)

// DefaultPath is where `ghostd run` looks for its configuration file. A
// missing file at this path means "all defaults"; a missing file at any
// path given explicitly is an error.
const DefaultPath = "/etc/ghostd/ghostd.yml"

// DefaultListenAddress is the default address of the metrics and API server.
const DefaultListenAddress = ":10145"

// Kill modes: how a confirmed ghost is ended.
const (
	ModeDestroy   = "destroy"   // SOCK_DESTROY: RST to the peer, ECONNABORTED to the owner
	ModeKeepalive = "keepalive" // arm the kernel's keepalive and TCP_USER_TIMEOUT; the kernel reaps it
	ModeShutdown  = "shutdown"  // shutdown(SHUT_WR): a FIN, no RST; CLOSE_WAIT leaks only (kill.close_wait), never a kill.mode
)

// Config is ghostd's validated configuration. Build one with Default, Load
// or Parse; the zero value is not valid.
type Config struct {
	// Netns selects the namespaces to scan: "all", a name under /run/netns,
	// or a path such as /proc/PID/ns/net.
	Netns string
	// Interval is the time between two scans of `ghostd run`.
	Interval time.Duration

	// Thresholds: how long a socket must show a symptom to become a suspect.
	Idle      time.Duration // ESTABLISHED with no data either way
	CloseWait time.Duration // in CLOSE_WAIT
	Stall     time.Duration // zero-window (persist) timer running
	FinWait2  time.Duration // in FIN_WAIT2
	LastAck   time.Duration // in LAST_ACK

	Probe ProbeConfig
	Kill  KillConfig
	Web   WebConfig
	Log   LogConfig

	// Events is how the daemon keeps its event history; OwnersTopK how
	// many owners ghostd_ghost_sessions_by_owner names (key
	// metrics.owners_top_k).
	Events     events.Config
	OwnersTopK int
}

// ProbeConfig says whether and how fast suspects are probed.
type ProbeConfig struct {
	Enabled  bool
	Attempts int           // probes per suspect before silence counts
	Interval time.Duration // between two attempts on one connection
	Rate     float64       // probes per second, all namespaces together
	PerHost  int           // connections probed at once per peer host
	InFlight int           // connections probed at once in total
	HostHint bool          // ICMP echo a silent peer's host to tell "host down" from "flow lost"
	// ResetLocal acknowledges RCV.NXT instead of RCV.NXT-1, so a peer's RST
	// passes strict stateful firewalls (reset instead of silent) but also
	// closes the local socket: an action, so off unless the operator opts in.
	ResetLocal bool
	Backoff    time.Duration // re-probe a suspect found alive only after this long
	Reconfirm  time.Duration // re-probe a confirmed ghost this often
}

// KillConfig is the opt-in kill policy.
type KillConfig struct {
	Enabled   bool
	Mode      string        // ModeDestroy or ModeKeepalive
	Verdicts  []string      // verdicts that may be killed: a subset of reset, silent, unreachable
	MinAge    time.Duration // how long a socket must have been a confirmed ghost
	Allow     []Rule        // when not empty, a socket must match one of these
	Deny      []Rule        // a socket matching any of these is never killed
	PerMinute int           // kills per minute, all namespaces together
	CloseWait bool          // also end CLOSE_WAIT leaks (with shutdown)

	// Mode keepalive: the socket options armed on the ghost.
	KeepaliveIdle     time.Duration // TCP_KEEPIDLE
	KeepaliveInterval time.Duration // TCP_KEEPINTVL
	KeepaliveCount    int           // TCP_KEEPCNT
	UserTimeout       time.Duration // TCP_USER_TIMEOUT
}

// Rule matches sockets for the kill policy. A socket matches when it matches
// every non-empty field; a field matches when any of its entries does.
type Rule struct {
	CIDRs []netip.Prefix // remote address
	Ports []uint16       // local or remote port
	Netns []string       // namespace name as the JSON shows it ("host", a name, "pid:1234")
	Comms []string       // process name
	Units []string       // systemd unit
}

// WebConfig configures the HTTP server for /metrics and the API.
type WebConfig struct {
	ListenAddress []string
	ConfigFile    string // exporter-toolkit web configuration (TLS, basic auth)
}

// LogConfig configures log/slog output.
type LogConfig struct {
	Level  string // debug, info, warn or error
	Format string // logfmt or json
}

// Default returns the built-in configuration: report only, probing on.
func Default() Config {
	return Config{
		Netns:     "all",
		Interval:  15 * time.Second,
		Idle:      60 * time.Second,
		CloseWait: 60 * time.Second,
		Stall:     60 * time.Second,
		FinWait2:  tracker.DefaultFinWait2, // above the kernel's tcp_fin_timeout (60 s)
		LastAck:   30 * time.Second,
		Probe: ProbeConfig{
			Enabled:   true,
			Attempts:  3,
			Interval:  time.Second,
			Rate:      200,
			PerHost:   16,
			InFlight:  256,
			HostHint:  true,
			Backoff:   5 * time.Minute,
			Reconfirm: time.Minute,
		},
		Kill: KillConfig{
			Enabled:           false,
			Mode:              ModeDestroy,
			Verdicts:          []string{"reset", "silent", "unreachable"},
			MinAge:            exporter.DefaultKillPolicy().MinAge,
			PerMinute:         10,
			CloseWait:         false,
			KeepaliveIdle:     10 * time.Second,
			KeepaliveInterval: 5 * time.Second,
			KeepaliveCount:    3,
			UserTimeout:       30 * time.Second,
		},
		Web: WebConfig{ListenAddress: []string{DefaultListenAddress}},
		Log: LogConfig{Level: "info", Format: "logfmt"},

		Events:     events.DefaultConfig(),
		OwnersTopK: exporter.DefaultOwnersTopK,
	}
}
