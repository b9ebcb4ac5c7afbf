package tracker

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf/yamlconftest"
)

func TestConfigValidate(t *testing.T) {
	yamlconftest.Validate(t, DefaultConfig, []yamlconftest.Case[Config]{
		{Name: "idle zero", Mod: func(c *Config) { c.Idle = 0 }, Want: "tracker: idle: must be positive, got 0s"},
		{Name: "close_wait negative", Mod: func(c *Config) { c.CloseWait = -time.Second }, Want: "tracker: close_wait: must be positive, got -1s"},
		{Name: "stall", Mod: func(c *Config) { c.Stall = -time.Millisecond }, Want: "tracker: stall: must be positive, got -1ms"},
		{Name: "fin_wait2", Mod: func(c *Config) { c.FinWait2 = 0 }, Want: "tracker: fin_wait2: must be positive, got 0s"},
		{Name: "last_ack", Mod: func(c *Config) { c.LastAck = 0 }, Want: "tracker: last_ack: must be positive, got 0s"},
		{Name: "horizon", Mod: func(c *Config) { c.Horizon = -time.Second }, Want: "tracker: horizon: must not be negative, got -1s"},
	})
}

func TestConfigUnmarshalYAML(t *testing.T) {
	c := DefaultConfig()
	if err := yaml.Unmarshal([]byte("idle: 5m\nfin_wait2: 2m\n"), &c); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Idle, want.FinWait2 = 5*time.Minute, 2*time.Minute
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("keys left out keep their values (-want +got):\n%s", diff)
	}
	// Fields that are not keys cannot be set from a file.
	for doc, want := range map[string]string{
		"horizon: 1m\n":     "horizon: unknown key",
		"max_entries: 10\n": "max_entries: unknown key",
		"idle: 60\n":        `idle: invalid duration "60"`,
	} {
		c := DefaultConfig()
		if err := yaml.Unmarshal([]byte(doc), &c); err == nil || err.Error() != want {
			t.Errorf("%q: error %v, want %q", doc, err, want)
		}
	}
}
