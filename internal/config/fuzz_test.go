package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/config"
	"github.com/ghostd/ghostd/kill"
)

// FuzzParse checks that Parse never panics, that whatever it rejects is a
// *config.Error, and that whatever it accepts is valid and survives a round
// trip through the configuration types' own YAML marshalling.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	files = append(files, "../../packaging/ghostd.yml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "fuzz.yml")
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *config.Error: %v", err, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		// What Parse accepts, the configuration types write back as YAML
		// that parses to the same configuration.
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of an accepted config: %v", err)
		}
		again, err := config.Parse(out, "again.yml")
		if err != nil {
			t.Fatalf("Parse(Marshal(c)) = %v\ninput:\n%s\nmarshalled:\n%s", err, data, out)
		}
		if diff := cmp.Diff(c, again, cmp.Comparer(func(a, b kill.CIDR) bool { return a == b })); diff != "" {
			t.Fatalf("round trip (-parsed +again):\n%s", diff)
		}
	})
}
