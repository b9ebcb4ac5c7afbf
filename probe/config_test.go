package probe

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf/yamlconftest"
)

func TestConfigValidate(t *testing.T) {
	yamlconftest.Validate(t, DefaultConfig, []yamlconftest.Case[Config]{
		{Name: "attempts zero", Mod: func(c *Config) { c.Attempts = 0 }, Want: "probe: attempts: must be 1 to 10, got 0"},
		{Name: "attempts many", Mod: func(c *Config) { c.Attempts = 11 }, Want: "probe: attempts: must be 1 to 10, got 11"},
		{Name: "interval", Mod: func(c *Config) { c.Interval = 100 * time.Millisecond }, Want: "probe: interval: 100ms is too short: want at least 600ms"},
		{Name: "rate zero", Mod: func(c *Config) { c.Rate = 0 }, Want: "probe: rate: must be a positive number of probes per second, got 0"},
		{Name: "rate NaN", Mod: func(c *Config) { c.Rate = math.NaN() }, Want: "probe: rate: must be a positive number of probes per second, got NaN"},
		{Name: "rate infinite", Mod: func(c *Config) { c.Rate = math.Inf(1) }, Want: "probe: rate: must be a positive number of probes per second, got +Inf"},
		{Name: "per host", Mod: func(c *Config) { c.PerHost = 0 }, Want: "probe: per_host: must be at least 1, got 0"},
		{Name: "in flight", Mod: func(c *Config) { c.InFlight = -1 }, Want: "probe: in_flight: must be at least 1, got -1"},
		{Name: "backoff", Mod: func(c *Config) { c.Backoff = -time.Second }, Want: "probe: backoff: must not be negative, got -1s"},
		{Name: "reconfirm", Mod: func(c *Config) { c.Reconfirm = 0 }, Want: "probe: reconfirm: must be positive, got 0s"},
	})
}

func TestConfigUnmarshalYAML(t *testing.T) {
	c := DefaultConfig()
	if err := yaml.Unmarshal([]byte("attempts: 5\nhost_hint: false\nbackoff: 1m\n"), &c); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Attempts, want.HostHint, want.Backoff = 5, false, time.Minute
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("keys left out keep their values (-want +got):\n%s", diff)
	}
	for doc, want := range map[string]string{
		"timeout: 1s\n":    "timeout: unknown key",
		"burst: 5\n":       "burst: unknown key",
		"rate: fast\n":     `rate: want a number, got "fast"`,
		"enabled: maybe\n": `enabled: want true or false, got "maybe"`,
	} {
		c := DefaultConfig()
		if err := yaml.Unmarshal([]byte(doc), &c); err == nil || err.Error() != want {
			t.Errorf("%q: error %v, want %q", doc, err, want)
		}
	}
}
