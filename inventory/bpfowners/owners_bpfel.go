//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package bpfowners

import _ "embed"

// ownersObject is owners.c compiled for little-endian BPF (make bpf-generate).
//
//go:embed owners_bpfel.o
var ownersObject []byte
