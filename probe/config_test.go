package probe

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"attempts zero", func(c *Config) { c.Attempts = 0 }, "probe: attempts: must be 1 to 10, got 0"},
		{"attempts many", func(c *Config) { c.Attempts = 11 }, "probe: attempts: must be 1 to 10, got 11"},
		{"interval", func(c *Config) { c.Interval = 100 * time.Millisecond }, "probe: interval: 100ms is too short: want at least 600ms"},
		{"rate zero", func(c *Config) { c.Rate = 0 }, "probe: rate: must be a positive number of probes per second, got 0"},
		{"rate NaN", func(c *Config) { c.Rate = math.NaN() }, "probe: rate: must be a positive number of probes per second, got NaN"},
		{"rate infinite", func(c *Config) { c.Rate = math.Inf(1) }, "probe: rate: must be a positive number of probes per second, got +Inf"},
		{"per host", func(c *Config) { c.PerHost = 0 }, "probe: per_host: must be at least 1, got 0"},
		{"in flight", func(c *Config) { c.InFlight = -1 }, "probe: in_flight: must be at least 1, got -1"},
		{"backoff", func(c *Config) { c.Backoff = -time.Second }, "probe: backoff: must not be negative, got -1s"},
		{"reconfirm", func(c *Config) { c.Reconfirm = 0 }, "probe: reconfirm: must be positive, got 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
			var ke *yamlconf.KeyError
			if !errors.As(err, &ke) {
				t.Errorf("Validate() = %#v, want a *yamlconf.KeyError", err)
			}
		})
	}
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
