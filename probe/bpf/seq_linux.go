package bpf

import (
	"errors"

	"github.com/cilium/ebpf"

	"github.com/ghostd/ghostd/internal/bpfload"
)

// Objects are seq.c's iterator program and the map of the cookies it
// reports, once loaded (ebpf.CollectionSpec.LoadAndAssign fills them).
type Objects struct {
	DumpSeq *ebpf.Program `ebpf:"dump_seq"`
	Wanted  *ebpf.Map     `ebpf:"wanted"`
}

// Close releases the program and the map; either may be nil.
func (o *Objects) Close() error {
	return errors.Join(o.DumpSeq.Close(), o.Wanted.Close())
}

// Open returns seq.c's collection for this machine's byte order, to load
// against the kernel BTF at btfPath; its variables autolabel_bit and
// autolabel_set_bit are set before loading.
func Open(btfPath string) (*bpfload.Object, error) {
	return bpfload.Open(btfPath, "seq.c", seqObject)
}
