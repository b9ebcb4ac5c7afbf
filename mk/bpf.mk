# BPF objects: the generated Go bindings and .o files are committed for both
# byte orders (bpfel: amd64, arm64, ...; bpfeb: s390x, ppc64, ...), so building
# ghostd needs no clang. Regenerating is deterministic: after `make
# bpf-generate`, `git diff --stat probe/bpf` must be empty unless seq.c changed. Regenerate after editing probe/bpf/*.c or *.h (or internal/bpfload/ghostd_types.h, which all three include)
# (needs clang and libbpf-dev: apt-get install clang llvm libbpf-dev).
.PHONY: bpf-generate

bpf-generate: ## Recompile probe/bpf/seq.c, inventory/bpfwalk/walk.c and inventory/bpfowners/owners.c (bpfel and bpfeb) and regenerate their Go bindings with bpf2go (needs clang, libbpf-dev).
	cd probe/bpf && $(GO) generate ./
	cd inventory/bpfwalk && $(GO) generate ./
	cd inventory/bpfowners && $(GO) generate ./
