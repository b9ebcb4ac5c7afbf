// Package bpf holds the BPF TCP iterator that reads sockets' sequence numbers, compiled from seq.c and committed.
package bpf

//go:generate ../../scripts/bpf-compile.sh seq.c seq -I../../internal/bpfload -Wall -Werror
