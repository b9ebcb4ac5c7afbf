// Package bpfowners lists every process's socket file descriptors in one BPF task_file iterator pass.
package bpfowners

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel,bpfeb -go-package bpfowners -output-stem owners Owners owners.c -- -I. -I../../internal/bpfload -Wall -Werror
