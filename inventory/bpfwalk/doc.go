// Package bpfwalk lists the TCP sockets of every network namespace in one BPF pass over sockets tagged in socket-local storage.
package bpfwalk

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel,bpfeb -go-package bpfwalk -output-stem walk Walk walk.c -- -I. -I../../internal/bpfload -Wall -Werror
