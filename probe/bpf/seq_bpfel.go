//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package bpf

import _ "embed"

// seqObject is seq.c compiled for little-endian BPF (make bpf-generate).
//
//go:embed seq_bpfel.o
var seqObject []byte
