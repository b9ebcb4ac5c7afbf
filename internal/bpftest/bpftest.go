package bpftest

import (
	"io"
	"os"
	"testing"
)

// Load returns what load loads (what names it in messages). The test is
// skipped when not root, since loading BPF programs needs CAP_BPF and
// CAP_PERFMON, and fails when load does. What was loaded is closed when
// the test ends; an error closing it fails the test.
func Load[T io.Closer](t testing.TB, what string, load func() (T, error)) T {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF + CAP_PERFMON) to load BPF programs")
	}
	v, err := load()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("%s: Close: %v", what, err)
		}
	})
	return v
}
