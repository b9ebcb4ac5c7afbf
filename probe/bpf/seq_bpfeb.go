//go:build mips || mips64 || ppc64 || s390x

package bpf

import _ "embed"

// seqObject is seq.c compiled for big-endian BPF (make bpf-generate).
//
//go:embed seq_bpfeb.o
var seqObject []byte
