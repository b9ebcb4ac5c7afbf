package tracker

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/positive"
	"github.com/ghostd/ghostd/internal/yamlconf"
)

// Config holds the classification thresholds: the `thresholds:` section of
// ghostd.yml for the fields with a yaml tag, the rest set by the caller. A
// zero field means its default to New and SetConfig; Validate, for a
// configuration file, wants every threshold positive.
type Config struct {
	// Idle: an ESTABLISHED socket that has neither received nor sent data for
	// this long (tcpi_last_data_recv and tcpi_last_data_sent) is idle.
	Idle time.Duration `yaml:"idle"`
	// CloseWait, FinWait2 and LastAck: how long a socket may sit in that state.
	CloseWait time.Duration `yaml:"close_wait"`
	FinWait2  time.Duration `yaml:"fin_wait2"`
	LastAck   time.Duration `yaml:"last_ack"`
	// Stall: how long the zero-window (persist) timer may run.
	Stall time.Duration `yaml:"stall"`
	// Horizon is how long ghostd takes to confirm a dead idle peer after
	// its last answer: Idle, plus up to one scan interval until the scan
	// that sees it, plus one probe round (the caller knows both). A socket
	// whose own keepalive gives evidence (keepalive_failing) or ends the
	// connection no later than this is left to its kernel; any other idle
	// socket is an idle suspect, keepalive on or not. Below Idle (zero
	// included) it is Idle, which errs toward probing.
	Horizon time.Duration `yaml:"-"`
	// RetransBackoff: how many times in a row the kernel's own probing must
	// go unanswered before the socket counts as retransmitting: retransmission
	// timeouts (idiag_retrans, tcpi_retransmits) under the retransmit timer,
	// window probes (idiag_retrans) under the persist timer. (tcpi_backoff is
	// not used: it also grows while a live peer keeps its window shut.)
	RetransBackoff uint8 `yaml:"-"`
	// MaxEntries caps the sockets remembered at once (about 290 bytes each),
	// shared fairly: once the cap is reached, a namespace may still add
	// sockets while it holds fewer than MaxEntries divided by the number of
	// namespaces, so one busy namespace cannot blind ghostd to the others.
	// The total stays below twice MaxEntries. Refused sockets are counted
	// (Refused). Zero means DefaultMaxEntries.
	MaxEntries int `yaml:"-"`
}

// Defaults. A dead idle peer must be confirmed within 2 minutes of going quiet
// with the daemon scanning every ~15 s and probing 3 times 1 s apart: with
// Idle = 60 s the worst case is 60 + 15 + 3 = 78 s, which leaves room for a
// slow scan or one missed scan (idle connections cost one ACK each to verify,
// so a shorter Idle would only probe more healthy pools). FinWait2 is above
// the kernel's tcp_fin_timeout (60 s) so that orphaned FIN_WAIT2 sockets the
// kernel reaps by itself are not reported. A healthy LAST_ACK lasts one
// round trip; one to a dead peer lives ~100 s of FIN retransmissions, so 30 s
// flags those early. Two retransmission timeouts in a row without an ACK
// (≥ 600 ms of silence at the 200 ms minimum RTO) are rare on a live path,
// and a probe settles it anyway; one is common (a tail loss), and a window
// probe can go unanswered once because Linux rate-limits its replies to
// out-of-window segments (one per 500 ms).
const (
	DefaultIdle           = 60 * time.Second
	DefaultCloseWait      = 60 * time.Second
	DefaultStall          = 60 * time.Second
	DefaultFinWait2       = 90 * time.Second
	DefaultLastAck        = 30 * time.Second
	DefaultRetransBackoff = 2
	// DefaultMaxEntries bounds the tracker near 140 MiB.
	DefaultMaxEntries = 500_000
	// DefaultHorizon is DefaultIdle plus the daemon's default 15 s scan
	// interval and a default probe round (3 attempts 1 s apart, the last
	// one given 1 s).
	DefaultHorizon = DefaultIdle + 15*time.Second + 3*time.Second
)

// DefaultConfig returns the default thresholds.
func DefaultConfig() Config {
	return Config{
		Idle: DefaultIdle, CloseWait: DefaultCloseWait, Stall: DefaultStall,
		FinWait2: DefaultFinWait2, LastAck: DefaultLastAck, RetransBackoff: DefaultRetransBackoff,
		MaxEntries: DefaultMaxEntries,
		Horizon:    DefaultHorizon,
	}
}

// UnmarshalYAML decodes a `thresholds:` section onto c strictly: keys it
// leaves out keep c's values, unknown keys are errors (*yamlconf.KeyError).
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	type plain Config
	return yamlconf.Decode(n, (*plain)(c))
}

// Validate reports the first threshold that is not positive, or a negative
// Horizon, as a *yamlconf.KeyError naming its key.
func (c Config) Validate() error {
	for _, f := range []struct {
		key string
		d   time.Duration
	}{{"idle", c.Idle}, {"close_wait", c.CloseWait}, {"stall", c.Stall}, {"fin_wait2", c.FinWait2}, {"last_ack", c.LastAck}} {
		if f.d <= 0 {
			return fmt.Errorf("tracker: %w", yamlconf.Errorf(f.key, "must be positive, got %s", f.d))
		}
	}
	if c.Horizon < 0 {
		return fmt.Errorf("tracker: %w", yamlconf.Errorf("horizon", "must not be negative, got %s", c.Horizon))
	}
	return nil
}

// withDefaults replaces every threshold and bound that is not positive by
// its default; a Horizon below Idle becomes Idle.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Idle = positive.Or(c.Idle, d.Idle)
	c.CloseWait = positive.Or(c.CloseWait, d.CloseWait)
	c.Stall = positive.Or(c.Stall, d.Stall)
	c.FinWait2 = positive.Or(c.FinWait2, d.FinWait2)
	c.LastAck = positive.Or(c.LastAck, d.LastAck)
	c.RetransBackoff = positive.Or(c.RetransBackoff, d.RetransBackoff)
	c.MaxEntries = positive.Or(c.MaxEntries, d.MaxEntries)
	c.Horizon = max(c.Horizon, c.Idle)
	return c
}
