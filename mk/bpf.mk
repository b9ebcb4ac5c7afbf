# BPF objects: probe/bpf/seq.c, inventory/bpfwalk/walk.c and inventory/bpfowners/owners.c are compiled for
# both byte orders (bpfel: amd64, arm64, ...; bpfeb: s390x, ppc64, ...) and the
# .o files are committed, so building ghostd needs no clang. The Go that loads
# them is hand-written once per package; two tiny files per package only embed
# the object for the build's byte order. Compiling is deterministic
# (scripts/bpf-compile.sh uses bpf2go's flags): after `make bpf-generate`,
# `git status` must show no change unless a .c or .h file changed. Regenerate
# after editing them (needs clang, llvm and libbpf-dev: apt-get install clang
# llvm libbpf-dev).
.PHONY: bpf-generate

bpf-generate: ## Recompile probe/bpf/seq.c, inventory/bpfwalk/walk.c and inventory/bpfowners/owners.c for bpfel and bpfeb (scripts/bpf-compile.sh via go generate; needs clang, llvm, libbpf-dev).
	cd probe/bpf && $(GO) generate ./
	cd inventory/bpfwalk && $(GO) generate ./
	cd inventory/bpfowners && $(GO) generate ./
