//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package bpfwalk

import _ "embed"

// walkObject is walk.c compiled for little-endian BPF (make bpf-generate).
//
//go:embed walk_bpfel.o
var walkObject []byte
