// Package bpfload parses the project's embedded BPF objects and says in one line why the kernel refused to load a program.
package bpfload

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Spec parses object, an ELF compiled from source (for example "seq.c") by
// make bpf-generate and embedded for this machine's byte order.
func Spec(source string, object []byte) (*ebpf.CollectionSpec, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(object))
	if err != nil {
		return nil, fmt.Errorf("parse %s's object: %w", source, err)
	}
	return spec, nil
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
