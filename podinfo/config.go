package podinfo

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
)

// Config is the `runtime:` section of ghostd.yml: which container runtime
// sockets name pods and containers.
type Config struct {
	// Endpoints are unix socket paths: CRI (containerd, CRI-O), or the
	// Docker Engine API for a path ending in docker.sock or prefixed
	// "docker:". An endpoint among DefaultEndpoints is skipped while its
	// socket is absent; any other is reported (ghostd_runtime_up 0). An
	// empty list, or the one word "none", asks no runtime.
	Endpoints []string `yaml:"endpoints"`
	// Refresh is how long a runtime's listing is reused (Options.Every).
	Refresh time.Duration `yaml:"refresh"`
}

// DefaultRefresh is Config.Refresh's default.
const DefaultRefresh = 10 * time.Second

// DefaultConfig asks DefaultEndpoints every DefaultRefresh.
func DefaultConfig() Config {
	return Config{Endpoints: slices.Clone(DefaultEndpoints), Refresh: DefaultRefresh}
}

// UnmarshalYAML decodes a `runtime:` section onto c strictly: keys it leaves
// out keep c's values, unknown keys are errors (*yamlconf.KeyError).
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	type plain Config
	return yamlconf.Decode(n, (*plain)(c))
}

// None reports whether c asks no runtime.
func (c Config) None() bool {
	return len(c.Endpoints) == 0 || len(c.Endpoints) == 1 && c.Endpoints[0] == "none"
}

// Validate reports the first endpoint that is not a unix socket path, as a
// *yamlconf.KeyError naming its key.
func (c Config) Validate() error {
	if c.Refresh < time.Second {
		return fmt.Errorf("podinfo: %w", yamlconf.Errorf("refresh", "%s is too short: want at least 1s", c.Refresh))
	}
	for i, ep := range c.Endpoints {
		if ep == "none" && len(c.Endpoints) == 1 {
			continue
		}
		if _, err := NewSource(ep); err != nil {
			return fmt.Errorf("podinfo: %w", yamlconf.Errorf(fmt.Sprintf("endpoints[%d]", i),
				"invalid endpoint %q: want the absolute path of a unix socket%s", ep, noneHint(ep)))
		}
	}
	return nil
}

func noneHint(ep string) string {
	if strings.EqualFold(ep, "none") {
		return `, or "none" alone`
	}
	return ""
}
