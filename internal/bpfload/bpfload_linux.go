// Package bpfload says in one line why the kernel refused to load a BPF program, or has no BTF for it.
package bpfload

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// BTFPath is where the running kernel exposes its BTF.
const BTFPath = "/sys/kernel/btf/vmlinux"

// KernelTypes returns the running kernel's BTF, decoded through a new cache
// that the loads of the programs relocated against it should share, or in
// one line why there is none.
func KernelTypes() (*btf.Cache, *btf.Spec, error) {
	if _, err := os.Stat(BTFPath); err != nil {
		return nil, nil, fmt.Errorf("no BTF at %s (kernel built without CONFIG_DEBUG_INFO_BTF?): %w", BTFPath, err)
	}
	cache := btf.NewCache()
	kernel, err := cache.Kernel()
	if err != nil {
		return nil, nil, fmt.Errorf("read BTF %s: %w", BTFPath, err)
	}
	return cache, kernel, nil
}

// Failure wraps a load error of what (for example "load iter/tcp") with the
// likely cause: the verifier (only a load that reached it has a log, and
// VerifierError's message is its last words), missing capabilities, or a
// kernel without the feature.
func Failure(what string, err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		return fmt.Errorf("%s: verifier rejected the program: %w", what, err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): %w", what, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%s: kernel lacks a needed BPF feature: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
