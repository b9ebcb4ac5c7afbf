package testnet

import (
	"io"
	"os"
	"testing"
)

// LoadBPF skips t when not root, else calls load (a package's BPF loader,
// such as bpfowners.New), fails t when it fails, and closes what it loaded
// when t ends, failing t when Close does.
func LoadBPF[T io.Closer](t testing.TB, load func() (T, error)) T {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF + CAP_PERFMON) to load BPF programs")
	}
	v, err := load()
	if err != nil {
		t.Fatalf("load BPF: %v", err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return v
}
