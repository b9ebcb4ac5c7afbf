// Package bpfload reads the kernel's BTF, parses the project's embedded BPF objects and says in one line why the kernel refused to load a program.
package bpfload

// KernelBTFPath is where the running kernel exposes its BTF, which CO-RE
// relocates the programs against.
const KernelBTFPath = "/sys/kernel/btf/vmlinux"
