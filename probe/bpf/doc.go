// Package bpf holds the BPF TCP iterator that reads sockets' sequence numbers, compiled by bpf2go and committed.
package bpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel,bpfeb -go-package bpf -output-stem seq Seq seq.c -- -I. -I../../internal/bpfload -Wall -Werror
