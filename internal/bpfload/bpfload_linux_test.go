package bpfload

import (
	"os"
	"strings"
	"testing"
)

// TestOptionsShareKernelBTF: the running kernel's BTF is decoded once and
// shared by every load until Release; a later load decodes it again.
func TestOptionsShareKernelBTF(t *testing.T) {
	if _, err := os.Stat(KernelBTFPath); err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	t.Cleanup(Release)
	first, opts1, err := Options(KernelBTFPath)
	if err != nil {
		t.Fatal(err)
	}
	second, opts2, err := Options(KernelBTFPath)
	if err != nil {
		t.Fatal(err)
	}
	if first != second || opts1.Cache != opts2.Cache {
		t.Errorf("two loads decoded the kernel's BTF twice (specs %p, %p; caches %p, %p)", first, second, opts1.Cache, opts2.Cache)
	}
	Release()
	third, opts3, err := Options(KernelBTFPath)
	if err != nil {
		t.Fatal(err)
	}
	if third == first || opts3.Cache == opts1.Cache {
		t.Error("a load after Release got the released copy")
	}
	if _, err := third.AnyTypeByName("sock"); err != nil {
		t.Errorf("the BTF decoded again has no struct sock: %v", err)
	}
}

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
