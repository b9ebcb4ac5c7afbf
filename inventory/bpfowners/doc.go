// Package bpfowners lists every process's socket file descriptors in one BPF task_file iterator pass.
package bpfowners

//go:generate ../../scripts/bpf-compile.sh owners.c owners -I../../internal/bpfload -Wall -Werror
