//go:build !linux

package bpfload

// Release does nothing where there is no BPF.
func Release() {}
