// Package bpftest loads what a test needs from the kernel's BPF: as root or skipped, and closed when the test ends.
package bpftest
