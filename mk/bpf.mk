# BPF objects: the generated Go bindings and .o files are committed, so building
# ghostd needs no clang. Regenerate after editing probe/bpf/*.c or *.h
# (needs clang and libbpf-dev: apt-get install clang llvm libbpf-dev).
.PHONY: bpf-generate

bpf-generate: ## Recompile probe/bpf/seq.c and regenerate its Go bindings with bpf2go (needs clang, libbpf-dev).
	cd probe/bpf && $(GO) generate ./
