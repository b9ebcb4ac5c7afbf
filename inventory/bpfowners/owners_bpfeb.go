//go:build mips || mips64 || ppc64 || s390x

package bpfowners

import _ "embed"

// ownersObject is owners.c compiled for big-endian BPF (make bpf-generate).
//
//go:embed owners_bpfeb.o
var ownersObject []byte
