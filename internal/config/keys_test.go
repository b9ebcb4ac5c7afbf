package config

import (
	"flag"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostd/ghostd/internal/yamlconf"
)

func newFlagSet(detectionOnly bool) (*flag.FlagSet, *Flags) {
	fs := flag.NewFlagSet("ghostd run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, RegisterFlags(fs, detectionOnly)
}

// TestEveryKeyHasAFlag: every configuration key (every yaml-tagged field of
// the packages' configuration types) has exactly one flag, and every flag
// but --config and --config.check overrides a key. Adding a key to a
// package without a flag fails here.
func TestEveryKeyHasAFlag(t *testing.T) {
	keys := keys()
	if len(keys) < 30 {
		t.Fatalf("keys() found only %d keys: %v", len(keys), keys)
	}
	flagsOf := map[string][]string{}
	fs, _ := newFlagSet(false)
	fs.VisitAll(func(fl *flag.Flag) {
		if fl.Name == "config" || fl.Name == "config.check" {
			return
		}
		key, ok := flagKey(fl.Name)
		if !ok {
			t.Errorf("flag --%s has no configuration key", fl.Name)
			return
		}
		flagsOf[key] = append(flagsOf[key], fl.Name)
		if !strings.Contains(fl.Usage, "(key "+key) {
			t.Errorf("flag --%s usage does not name its key %s: %q", fl.Name, key, fl.Usage)
		}
	})
	for _, k := range keys {
		switch n := len(flagsOf[k]); {
		case n == 0:
			t.Errorf("key %s has no flag: add a row to flagTable in internal/config/flags.go", k)
		case n > 1:
			t.Errorf("key %s has %d flags: %v", k, n, flagsOf[k])
		}
		delete(flagsOf, k)
	}
	for k, names := range flagsOf {
		t.Errorf("flags %v override %q, which is not a configuration key", names, k)
	}
	// `scan` takes every key's flag but the daemon's own.
	fs, _ = newFlagSet(true)
	for _, name := range []string{"interval", "web.listen-address", "web.config.file", "log.level", "log.format", "config", "config.check"} {
		if fs.Lookup(name) != nil {
			t.Errorf("scan registers the daemon's flag --%s", name)
		}
	}
	for _, name := range []string{"netns", "idle", "fin-wait2", "probes", "no-probe", "probe-rate", "kill", "kill-min-age", "kill-deny"} {
		if fs.Lookup(name) == nil {
			t.Errorf("scan lacks --%s", name)
		}
	}
}

// TestExampleHasEveryKey: the commented example shows every key, so that
// it documents them all (TestExample pins their values to the defaults).
func TestExampleHasEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../packaging/ghostd.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	lines := yamlconf.Lines(&doc)
	for _, k := range keys() {
		if _, ok := lines[k]; !ok {
			t.Errorf("packaging/ghostd.yml does not show key %s", k)
		}
	}
	// Every key's flag is named in the example's comments.
	for _, k := range keys() {
		for _, name := range flagNames(k) {
			if !regexp.MustCompile(`(?:\(|, )--` + regexp.QuoteMeta(name) + `[),]`).Match(data) {
				t.Errorf("packaging/ghostd.yml does not name --%s beside %s", name, k)
			}
		}
	}
}

func flagNames(key string) []string {
	var out []string
	fs, _ := newFlagSet(false)
	fs.VisitAll(func(fl *flag.Flag) {
		if k, ok := flagKey(fl.Name); ok && k == key {
			out = append(out, fl.Name)
		}
	})
	return out
}

// TestRegisterFlagsFor: a command that takes a few keys (`ghostd probe`)
// gets exactly those flags from the table, each naming its key, bound to
// the key (an error names the flag); a name the table lacks panics.
func TestRegisterFlagsFor(t *testing.T) {
	fs := flag.NewFlagSet("ghostd probe", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := RegisterFlagsFor(fs, "netns", "probes", "probe-interval", "runtime-endpoint")
	var got []string
	fs.VisitAll(func(fl *flag.Flag) {
		got = append(got, fl.Name)
		if key, _ := flagKey(fl.Name); !strings.Contains(fl.Usage, "(key "+key) {
			t.Errorf("--%s usage does not name its key %q: %q", fl.Name, key, fl.Usage)
		}
	})
	if want := []string{"netns", "probe-interval", "probes", "runtime-endpoint"}; !slices.Equal(got, want) {
		t.Errorf("flags %v, want %v", got, want)
	}
	if err := fs.Parse([]string{"--netns=blue", "--probes=5", "--probe-interval=2s", "--runtime-endpoint=/a.sock", "--runtime-endpoint=/b.sock"}); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := f.Apply(&c); err != nil {
		t.Fatal(err)
	}
	if c.Netns != "blue" || c.Probe.Attempts != 5 || c.Probe.Interval != 2*time.Second || !slices.Equal(c.Runtime.Endpoints, []string{"/a.sock", "/b.sock"}) {
		t.Errorf("applied: netns %q, attempts %d, interval %v, endpoints %v", c.Netns, c.Probe.Attempts, c.Probe.Interval, c.Runtime.Endpoints)
	}
	if err := fs.Parse([]string{"--probes=0"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(&c); err == nil || !strings.Contains(err.Error(), "--probes") {
		t.Errorf("--probes=0: %v, want an error naming --probes", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("RegisterFlagsFor with a name the table lacks did not panic")
		}
	}()
	RegisterFlagsFor(flag.NewFlagSet("x", flag.ContinueOnError), "probes", "bogus")
}
