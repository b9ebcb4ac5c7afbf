package bpfload

import (
	"os"
	"strings"
	"testing"
)

// TestOpenBrokenObject: an object that does not parse is refused, named.
// (Missing or unreadable BTF: probe's TestIterNoBTF, through Open.)
func TestOpenBrokenObject(t *testing.T) {
	if _, err := os.Stat(KernelBTFPath); err != nil {
		t.Skipf("this kernel has no BTF: %v", err)
	}
	if _, err := Open(KernelBTFPath, "x.c", []byte("not an ELF")); err == nil || !strings.Contains(err.Error(), "parse x.c's object") {
		t.Errorf("Open with a broken object: %v", err)
	}
}
