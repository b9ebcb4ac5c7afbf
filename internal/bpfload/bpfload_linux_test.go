package bpfload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenErrors: Open says which of its two inputs failed.
func TestOpenErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "vmlinux")
	if _, err := Open(missing, "x.c", nil); err == nil || !strings.Contains(err.Error(), "no BTF at "+missing) {
		t.Errorf("Open with no BTF: %v", err)
	}
	if _, err := os.Stat(KernelBTFPath); err != nil {
		t.Skipf("this kernel has no BTF: %v", err)
	}
	if _, err := Open(KernelBTFPath, "x.c", []byte("not an ELF")); err == nil || !strings.Contains(err.Error(), "parse x.c's object") {
		t.Errorf("Open with a broken object: %v", err)
	}
}
