package bpfload

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
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

// Options reads the kernel BTF at btfPath (KernelBTFPath: the running
// kernel's; another path: a test's broken or foreign BTF) and returns it
// with load options that relocate programs against it and share one decoded
// copy of it.
func Options(btfPath string) (*btf.Spec, *ebpf.CollectionOptions, error) {
	if _, err := os.Stat(btfPath); err != nil {
		return nil, nil, fmt.Errorf("no BTF at %s (kernel built without CONFIG_DEBUG_INFO_BTF?): %w", btfPath, err)
	}
	cache := btf.NewCache()
	var kernel *btf.Spec
	var err error
	if btfPath == KernelBTFPath {
		kernel, err = cache.Kernel()
	} else {
		kernel, err = btf.LoadSpec(btfPath)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read BTF %s: %w", btfPath, err)
	}
	return kernel, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}, Cache: cache}, nil
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

// Object is one of the project's BPF objects, parsed, with the kernel BTF it
// is to be loaded against.
type Object struct {
	// Spec is the parsed object; callers may set its variables before Load.
	Spec *ebpf.CollectionSpec
	// Kernel is the BTF read at Open's btfPath: the kernel's types, for a
	// caller to check that what it attaches to exists.
	Kernel *btf.Spec
	opts   *ebpf.CollectionOptions
}

// Open reads the kernel BTF at btfPath (as Options does) and parses object,
// compiled from source (as Spec does): what every loader of the project's
// programs does first.
func Open(btfPath, source string, object []byte) (*Object, error) {
	kernel, opts, err := Options(btfPath)
	if err != nil {
		return nil, err
	}
	spec, err := Spec(source, object)
	if err != nil {
		return nil, err
	}
	return &Object{Spec: spec, Kernel: kernel, opts: opts}, nil
}

// Load loads the object's programs and maps into objs, a pointer to a struct
// of `ebpf:"name"` fields (ebpf.CollectionSpec.LoadAndAssign). Its error
// says why the kernel refused, as Failure does for what.
func (o *Object) Load(what string, objs any) error {
	if err := o.Spec.LoadAndAssign(objs, o.opts); err != nil {
		return Failure(what, err)
	}
	return nil
}
