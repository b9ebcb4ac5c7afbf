package tracker

import (
	"errors"
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
	// The kernel reaps orphaned FIN_WAIT2 sockets after tcp_fin_timeout
	// (60 s by default); a threshold at or below it reports sockets the
	// kernel is about to reap itself (the daemon once shipped 60 s).
	if d := DefaultConfig().FinWait2; d <= 60*time.Second {
		t.Errorf("default fin_wait2 %s is not above the kernel's 60 s tcp_fin_timeout", d)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"idle zero", func(c *Config) { c.Idle = 0 }, "tracker: idle: must be positive, got 0s"},
		{"close_wait negative", func(c *Config) { c.CloseWait = -time.Second }, "tracker: close_wait: must be positive, got -1s"},
		{"stall", func(c *Config) { c.Stall = -time.Millisecond }, "tracker: stall: must be positive, got -1ms"},
		{"fin_wait2", func(c *Config) { c.FinWait2 = 0 }, "tracker: fin_wait2: must be positive, got 0s"},
		{"last_ack", func(c *Config) { c.LastAck = 0 }, "tracker: last_ack: must be positive, got 0s"},
		{"horizon", func(c *Config) { c.Horizon = -time.Second }, "tracker: horizon: must not be negative, got -1s"},
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
