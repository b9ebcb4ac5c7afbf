#!/usr/bin/env bash
# bpf-compile.sh SRC.c STEM [CFLAGS...] — compile one BPF C program for both
# byte orders into STEM_bpfel.o and STEM_bpfeb.o in the current directory
# (run by `go generate` from the package's directory; `make bpf-generate`).
# The flags are the ones cilium/ebpf's bpf2go uses, so the objects are
# byte-for-byte reproducible: -fno-ident and the debug prefix map keep the
# compiler's version and the checkout's path out, and DWARF is stripped
# (BTF, which CO-RE needs, stays). The Go side is hand-written once per
# package; only the two one-line embed files pick an object by byte order.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: $0 SRC.c STEM [CFLAGS...]" >&2
	exit 2
fi
src=$1
stem=$2
shift 2
CC=${BPF_CC:-clang}
STRIP=${BPF_STRIP:-llvm-strip}
dir=$(pwd)

for target in bpfel bpfeb; do
	out=${stem}_${target}.o
	"$CC" -O2 -mcpu=v1 "$@" \
		-Wunused-command-line-argument \
		-target "$target" -c "$dir/$src" -o "$out" \
		-fno-ident "-fdebug-prefix-map=$dir=." -fdebug-compilation-dir . -g \
		'-D__BPF_TARGET_MISSING="GCC error \"The eBPF is using target specific macros, please provide -target that is not bpf, bpfel or bpfeb\""'
	"$STRIP" -g "$out"
done
