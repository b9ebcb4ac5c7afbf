package probe

import (
	"fmt"
	"math"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/positive"
	"github.com/ghostd/ghostd/internal/yamlconf"
)

// Config bounds and shapes probing: the `probe:` section of ghostd.yml for
// the fields with a yaml tag, the rest set by the caller. Zero fields take
// DefaultConfig's values in New and SetConfig; Validate checks a
// configuration file's values.
type Config struct {
	// Enabled says whether suspects are probed at all. The daemon builds no
	// Prober when it is off; a Prober ignores it.
	Enabled bool `yaml:"enabled"`
	// Attempts is how many probes a silent peer gets before the verdict.
	Attempts int `yaml:"attempts"`
	// Interval spaces the attempts (jittered ±20 %, never below MinInterval:
	// Linux answers one out-of-window segment per socket per 500 ms).
	Interval time.Duration `yaml:"interval"`
	// Timeout is how long to wait for an answer after the last attempt.
	Timeout time.Duration `yaml:"-"`
	// Rate caps probes per second over every namespace; math.Inf(1) lifts the cap.
	Rate float64 `yaml:"rate"`
	// Burst is how many probes may leave at once under Rate.
	Burst int `yaml:"-"`
	// PerHost caps concurrent probes to one peer host.
	PerHost int `yaml:"per_host"`
	// InFlight caps targets being probed at once over every namespace.
	InFlight int `yaml:"in_flight"`
	// HostHint sends one ICMP echo to a silent peer's host and fills
	// Result.HostReachable: it tells "host down" from "flow forgotten".
	HostHint bool `yaml:"host_hint"`
	// ResetLocal makes in-window probes acknowledge RCV.NXT, so a dead peer's
	// RST is acceptable to the local socket, which the kernel then resets.
	// Off by default: probes acknowledge RCV.NXT−1 and the RST is ignored
	// locally (it still reaches ghostd's capture).
	ResetLocal bool `yaml:"reset_local"`
	// ResetGuard makes in-window probes acknowledge RCV.NXT behind a
	// netfilter rule that drops the answering RST before the local socket
	// sees it (guard.go): a strict firewall then lets a dead peer's RST
	// through and the local socket stays untouched. Needs CAP_NET_ADMIN;
	// without it probes acknowledge RCV.NXT−1.
	ResetGuard bool `yaml:"reset_guard"`
	// Backoff is how long a suspect that answered (alive) waits before it is
	// probed again, and Reconfirm how often a confirmed ghost is probed
	// again. The daemon's engine schedules by them; a Prober ignores them.
	Backoff   time.Duration `yaml:"backoff"`
	Reconfirm time.Duration `yaml:"reconfirm"`
	// StillExists, when set, is asked after a reset verdict whether the local
	// socket survived, to fill Result.ClosedLocal. When nil, ClosedLocal is
	// ResetLocal for in-window resets (what the kernel does with an in-window
	// RST) and false otherwise.
	StillExists func(Target) bool `yaml:"-"`
	// Now stamps sends and replies for RTTs; nil means time.Now.
	Now func() time.Time `yaml:"-"`
}

// MinInterval is the smallest spacing between two probes of one connection.
const MinInterval = 600 * time.Millisecond

// DefaultConfig returns the defaults: probing on, 3 attempts 1 s apart, 1 s
// final wait, 200 probes/s, 16 concurrent probes per host, 256 targets in
// flight, the host hint on, RCV.NXT−1 acknowledged; an alive suspect is
// probed again after 5 minutes, a ghost every minute.
func DefaultConfig() Config {
	return Config{
		Enabled:   true,
		Attempts:  3,
		Interval:  time.Second,
		Timeout:   time.Second,
		Rate:      200,
		Burst:     10,
		PerHost:   16,
		InFlight:  256,
		HostHint:  true,
		Backoff:   5 * time.Minute,
		Reconfirm: time.Minute,
	}
}

// MaxAttempts bounds Config.Attempts.
const MaxAttempts = 10

// UnmarshalYAML decodes a `probe:` section onto c strictly: keys it leaves
// out keep c's values, unknown keys are errors (*yamlconf.KeyError).
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	type plain Config
	return yamlconf.Decode(n, (*plain)(c))
}

// Validate reports the first value of a configuration file that is out of
// range, as a *yamlconf.KeyError naming its key. It checks only the fields
// that are keys.
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}

func (c *Config) validate() error {
	bad := yamlconf.Errorf
	switch {
	case c.Attempts < 1 || c.Attempts > MaxAttempts:
		return bad("attempts", "must be 1 to %d, got %d", MaxAttempts, c.Attempts)
	case c.Interval < MinInterval:
		// Linux answers one out-of-window segment per socket per 500 ms:
		// the prober never spaces attempts closer, so neither may the file.
		return bad("interval", "%s is too short: want at least %s", c.Interval, MinInterval)
	case math.IsNaN(c.Rate) || c.Rate <= 0 || math.IsInf(c.Rate, 0):
		return bad("rate", "must be a positive number of probes per second, got %v", c.Rate)
	case c.PerHost < 1:
		return bad("per_host", "must be at least 1, got %d", c.PerHost)
	case c.InFlight < 1:
		return bad("in_flight", "must be at least 1, got %d", c.InFlight)
	case c.Backoff < 0:
		return bad("backoff", "must not be negative, got %s", c.Backoff)
	case c.Reconfirm <= 0:
		return bad("reconfirm", "must be positive, got %s", c.Reconfirm)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Attempts = positive.Or(c.Attempts, d.Attempts)
	c.Interval = max(positive.Or(c.Interval, d.Interval), MinInterval)
	c.Timeout = positive.Or(c.Timeout, d.Timeout)
	c.Rate = positive.Or(c.Rate, d.Rate) // NaN too
	c.Burst = positive.Or(c.Burst, d.Burst)
	c.PerHost = positive.Or(c.PerHost, d.PerHost)
	c.InFlight = positive.Or(c.InFlight, d.InFlight)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
