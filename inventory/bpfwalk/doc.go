// Package bpfwalk lists the TCP sockets of every network namespace in one BPF pass over sockets tagged in socket-local storage.
package bpfwalk

//go:generate ../../scripts/bpf-compile.sh walk.c walk -I../../internal/bpfload -Wall -Werror
