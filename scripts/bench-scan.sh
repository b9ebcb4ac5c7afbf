#!/usr/bin/env bash
# bench-scan.sh — `ghostd scan --all` against the inventory pass it is built on.
#
# One namespace (gd-scan-*) holds BENCH_SCAN_CONNS established loopback
# connections (2 sockets each). Interleaved, BENCH_RUNS (>= 3) times each:
#   the inventory pass alone (internal/cmd/invbench -mode pass, one run per call,
#   Dial included as ghostd scan pays it too);
#   ghostd scan --all --json and ghostd scan --all (the table), output to
#   /dev/null, with --idle 24h so that no socket turns into an idle suspect
#   mid-benchmark (200 000 suspects would be probed at 200 probes/s).
# Both scans name every socket's process, which reads every socket fd on the
# host: in one BPF task_file pass as root, else by walking /proc as ss -p does
# (ss -tanp itself took over 10 minutes here at 200 000 sockets). Another
# process's sockets on the host therefore cost the scans, not the pass.
# It prints medians of wall and CPU (user + sys) time, their ratios to the
# inventory pass, and the peak RSS (/usr/bin/time) of each. Targets (issue
# 12): ratio <= 1.5 and RSS <= 64 MiB at 200 000 sockets.
# Needs root (ip netns add). Quick run: BENCH_SCAN_CONNS=10000 scripts/bench-scan.sh
# BENCH_SCAN_GHOSTD=path benchmarks another ghostd binary; BENCH_SCAN_BASE=path
# also times that binary in the same rounds, on the same sockets, and prints
# the branch's figures beside it. To see where a scan's time goes, profile
# one: GHOSTD_CPUPROFILE=FILE ghostd scan ... writes a CPU profile for
# `go tool pprof`.
set -euo pipefail

CONNS=${BENCH_SCAN_CONNS:-100000}
RUNS=${BENCH_RUNS:-3}
if [ "$RUNS" -lt 3 ]; then RUNS=3; fi

bench=bench-scan
# shellcheck source=farm.sh
. "$(dirname "$0")/farm.sh"
bench_start "creates a network namespace" ip go /usr/bin/time
ns="gd-scan-$tag"
cleanup() {
	stop_farms
	del_namespaces
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_tools
go build -o "$tmp/ghostd" ./cmd/ghostd
ghostd=${BENCH_SCAN_GHOSTD:-$tmp/ghostd}
new_ns "$ns"
start_farm 3 "$ns" "$CONNS"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# timed NAME CMD...: append wall ms, CPU ms and max RSS KiB of one run to
# NAME.ms, NAME.cpu and NAME.rss.
timed() {
	local name=$1
	shift
	/usr/bin/time -f '%e %U %S %M' -o "$tmp/time.out" "$@" >/dev/null 2>"$tmp/$name.err" ||
		{ echo "bench-scan: $name failed"; cat "$tmp/$name.err"; exit 1; }
	awk '{printf "%.0f\n", $1 * 1000}' "$tmp/time.out" >>"$tmp/$name.ms"
	awk '{printf "%.0f\n", ($2 + $3) * 1000}' "$tmp/time.out" >>"$tmp/$name.cpu"
	awk '{print $4}' "$tmp/time.out" >>"$tmp/$name.rss"
}

echo "bench-scan: $CONNS connections ($((2 * CONNS)) sockets) in $ns, median of $RUNS runs"
for _ in $(seq "$RUNS"); do
	out=$("$tmp/invbench" -mode pass -netns "$ns" -runs 1)
	# A whole invbench process (Dial, warm-up pass, timed pass) bounds the
	# pass from above; its timed pass alone is the floor the ratio uses.
	field median_ms "$out" >>"$tmp/pass.ms"
	field maxrss_kib "$out" >>"$tmp/pass.rss"
	awk -v u="$(field user_ms_per_run "$out")" -v s="$(field sys_ms_per_run "$out")" 'BEGIN {printf "%.0f\n", u + s}' >>"$tmp/pass.cpu"
	timed json "$ghostd" scan --config /dev/null --netns "$ns" --idle 24h --all --json
	timed table "$ghostd" scan --config /dev/null --netns "$ns" --idle 24h --all
	if [ -n "${BENCH_SCAN_BASE:-}" ]; then
		timed base-json "$BENCH_SCAN_BASE" scan --config /dev/null --netns "$ns" --idle 24h --all --json
		timed base-table "$BENCH_SCAN_BASE" scan --config /dev/null --netns "$ns" --idle 24h --all
	fi
done
pass_ms=$(median <"$tmp/pass.ms")
pass_cpu=$(median <"$tmp/pass.cpu")
awk -v p="$pass_ms" -v c="$pass_cpu" -v r="$(sort -n "$tmp/pass.rss" | tail -1)" -v runs="$(paste -sd, "$tmp/pass.ms")" \
	'BEGIN { printf "  %-24s wall", "inventory pass"; printf " %6.0f ms (runs %s), CPU %5.0f ms, max RSS %.1f MiB\n", p, runs, c, r / 1024 }'
names="json table"
[ -n "${BENCH_SCAN_BASE:-}" ] && names="$names base-json base-table"
for name in $names; do
	ms=$(median <"$tmp/$name.ms")
	cpu=$(median <"$tmp/$name.cpu")
	rss=$(sort -n "$tmp/$name.rss" | tail -1)
	label="scan --all $name"
	case $name in base-*) label="base: scan --all ${name#base-}" ;; esac
	awk -v n="$label" -v m="$ms" -v p="$pass_ms" -v c="$cpu" -v pc="$pass_cpu" -v r="$rss" -v runs="$(paste -sd, "$tmp/$name.ms")" 'BEGIN {
		printf "  %-24s wall %6.0f ms (runs %s), CPU %5.0f ms; / inventory pass: wall %.2f, CPU %.2f (target <= 1.5); max RSS %.1f MiB (target <= 64)\n", n, m, runs, c, m / p, c / pc, r / 1024
	}'
done
