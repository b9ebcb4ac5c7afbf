//go:build mips || mips64 || ppc64 || s390x

package bpfwalk

import _ "embed"

// walkObject is walk.c compiled for big-endian BPF (make bpf-generate).
//
//go:embed walk_bpfeb.o
var walkObject []byte
