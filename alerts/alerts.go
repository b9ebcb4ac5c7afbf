package alerts

import (
	"bytes"
	_ "embed"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Rule files, as committed. Host is for every Prometheus that scrapes ghostd;
// Fleet is for a global view where series carry cluster and node labels.
var (
	//go:embed ghostd.rules.yml
	Host []byte
	//go:embed ghostd-fleet.rules.yml
	Fleet []byte
)

// File is a Prometheus rule file.
type File struct {
	Groups []Group `yaml:"groups"`
}

// Group is a named group of rules evaluated together.
type Group struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Rules    []Rule `yaml:"rules"`
}

// Rule is an alerting rule (Alert set) or a recording rule (Record set).
type Rule struct {
	Alert       string            `yaml:"alert,omitempty"`
	Record      string            `yaml:"record,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Parse decodes a rule file, rejecting unknown keys.
func Parse(b []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("alerts: decode rule file: %w", err)
	}
	return &f, nil
}

// WithFor returns a copy of a rule file in which every alert that waits
// (has a `for:`) waits d instead, so a live test sees alerts fire in seconds.
// Everything else is kept as it is, comments included.
func WithFor(b []byte, d time.Duration) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("alerts: decode rule file: %w", err)
	}
	n := 0
	var walk func(*yaml.Node)
	walk = func(node *yaml.Node) {
		if node.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(node.Content); i += 2 {
				if node.Content[i].Value == "for" && node.Content[i+1].Kind == yaml.ScalarNode {
					node.Content[i+1].Value = model.Duration(d).String()
					node.Content[i+1].Style = 0
					n++
				}
			}
		}
		for _, c := range node.Content {
			walk(c)
		}
	}
	walk(&doc)
	if n == 0 {
		return nil, fmt.Errorf("alerts: no rule has a for: to change")
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("alerts: encode rule file: %w", err)
	}
	return out.Bytes(), nil
}
