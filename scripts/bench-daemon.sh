#!/usr/bin/env bash
# bench-daemon.sh — ghostd run's CPU and memory with many idle healthy connections.
#
# One namespace (gd-dmn-*) holds BENCH_DAEMON_CONNS established loopback
# connections (2 sockets each, all idle and healthy: every socket becomes an
# idle suspect, is probed once and answers alive). ghostd runs on defaults
# (15 s scans, 200 probes/s) scoped to that namespace, and the script reports:
#   phase 1, --no-probe, BENCH_PHASE1 s: CPU time per scan (the inventory pass);
#   phase 2, probing: how long the first probe pass takes at the default rate,
#            and CPU time per probe (phase-2 CPU minus its scans' share, and
#            with them);
#   phase 3, BENCH_WINDOW s after the first pass: average CPU in % of one core;
#   peak RSS (VmHWM) over all phases.
# Targets: ≤ 5 % of one core on average, ≤ 128 MiB RSS.
# BENCH_BASE=REV (a git revision) also builds ghostd at REV and runs the same
# phases with it on the same connections, right after, and prints new/base
# ratios: a change is judged against its baseline from the same run.
# BENCH_RATE sets ghostd's probe rate (default 200, ghostd's own default).
# Quick run: BENCH_DAEMON_CONNS=5000 BENCH_WINDOW=60 BENCH_IDLE=10s scripts/bench-daemon.sh
set -euo pipefail

CONNS=${BENCH_DAEMON_CONNS:-100000}
BASE=${BENCH_BASE:-}
WINDOW=${BENCH_WINDOW:-300}
PHASE1=${BENCH_PHASE1:-60}
IDLE=${BENCH_IDLE:-60s}
RATE=${BENCH_RATE:-200}
# Seconds to let every socket become an idle suspect and the owners cache
# fill before phase 1 measures: the idle threshold plus two scans.
idle_s=$(awk -v d="$IDLE" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }')
WARMUP=${BENCH_WARMUP:-$((idle_s + 30))}

bench=bench-daemon
# shellcheck source=farm.sh
. "$(dirname "$0")/farm.sh"
bench_start "creates a network namespace" ip go curl
ns="gd-dmn-$tag"
ghostd_pid=""
cleanup() {
	[ -n "$ghostd_pid" ] && kill "$ghostd_pid" 2>/dev/null && wait "$ghostd_pid" 2>/dev/null || true
	stop_farms
	del_namespaces
	[ -d "$tmp/base-src" ] && git worktree remove --force "$tmp/base-src" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/ghostd" ./cmd/ghostd
# The probe rate goes through the file, which every ghostd version reads.
printf 'probe:\n  rate: %s\n' "$RATE" >"$tmp/ghostd.yml"
if [ -n "$BASE" ]; then
	git worktree add -q --detach "$tmp/base-src" "$BASE"
	(cd "$tmp/base-src" && go build -o "$tmp/ghostd-base" ./cmd/ghostd)
fi
build_tools connfarm
new_ns "$ns"
start_farm 3 "$ns" "$CONNS"
sockets=$((2 * CONNS))
hz=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
metric() { # metric NAME_REGEX -> sum of matching series
	curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | awk -v re="^$1" '$0 ~ re {s += $NF} END {printf "%.0f\n", s}'
}
start_ghostd() {
	port=$((20000 + RANDOM % 20000))
	"$bin" run --config "$tmp/ghostd.yml" --netns "$ns" --idle "$IDLE" --web.listen-address "127.0.0.1:$port" "$@" 2>"$tmp/ghostd.log" &
	ghostd_pid=$!
	for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && return; sleep 0.2; done
	echo "bench-daemon: ghostd not ready"; cat "$tmp/ghostd.log"; exit 1
}
stop_ghostd() { kill "$ghostd_pid"; wait "$ghostd_pid" 2>/dev/null || true; ghostd_pid=""; }

echo "bench-daemon: $CONNS idle healthy connections ($sockets sockets) in $ns"

# phases BINARY LABEL: run the three phases with one ghostd binary and leave
# the results in r_<label>_{scan,probe,cpu,rss}.
phases() {
	bin=$1
	echo "== $2 ($bin)"

	# Phase 1: scans only, after the warm-up (first owner lookups, suspects formed).
	start_ghostd --no-probe
	sleep "$WARMUP"
	c0=$(cpu_ticks "$ghostd_pid"); s0=$(metric 'ghostd_scan_duration_seconds_count')
	sleep "$PHASE1"
	c1=$(cpu_ticks "$ghostd_pid"); s1=$(metric 'ghostd_scan_duration_seconds_count')
	scans=$((s1 - s0))
	cpu_per_scan=$(awk -v c=$((c1 - c0)) -v hz="$hz" -v n="$scans" 'BEGIN {printf "%.3f", c / hz / (n > 0 ? n : 1)}')
	hwm1=$(hwm_kib "$ghostd_pid")
	stop_ghostd
	echo "phase 1 (no probes, after ${WARMUP}s warm-up): $scans scans in ${PHASE1}s, CPU per scan ${cpu_per_scan}s"

	# Phase 2: the first probe pass at the default rate; it starts once the
	# sockets have been idle for the threshold, which the pass time includes.
	start_ghostd
	c0=$(cpu_ticks "$ghostd_pid"); t0=$(date +%s.%N)
	limit=$(( sockets / RATE * 3 + 300 ))
	while :; do
		acks=$(metric 'ghostd_probe_replies_total\{kind="ack"\}')
		[ "${acks:-0}" -ge $((sockets * 99 / 100)) ] && break
		if [ "$(awk -v t0="$t0" 'BEGIN {srand(); print int(srand() - t0)}')" -gt "$limit" ]; then
			echo "bench-daemon: first pass incomplete after ${limit}s ($acks of $sockets acks)"; break
		fi
		sleep 2
	done
	t1=$(date +%s.%N); c1=$(cpu_ticks "$ghostd_pid")
	probes=$(metric 'ghostd_probes_total'); scans=$(metric 'ghostd_scan_duration_seconds_count')
	pass=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", b - a}')
	cpu_per_probe=$(awk -v c=$((c1 - c0)) -v hz="$hz" -v s="$scans" -v ps="$cpu_per_scan" -v p="$probes" \
		'BEGIN {v = (c / hz - s * ps) / (p > 0 ? p : 1); if (v < 0) v = 0; printf "%.1f", v * 1e6}')
	# The same with its scans' CPU left in: phase 1's scans are steady ones,
	# and a build whose steady scan is cheaper has less taken off above.
	cpu_all=$(awk -v c=$((c1 - c0)) -v hz="$hz" -v p="$probes" 'BEGIN {printf "%.1f", c / hz / (p > 0 ? p : 1) * 1e6}')
	echo "phase 2 (first probe pass): ${pass}s for $probes probes ($acks alive) at $RATE probes/s (idle threshold $IDLE included); CPU per probe ${cpu_per_probe}µs (${cpu_all}µs with its $scans scans)"

	# Phase 3: steady state.
	c0=$(cpu_ticks "$ghostd_pid")
	sleep "$WINDOW"
	c1=$(cpu_ticks "$ghostd_pid")
	avg=$(awk -v c=$((c1 - c0)) -v hz="$hz" -v w="$WINDOW" 'BEGIN {printf "%.2f", 100 * c / hz / w}')
	hwm=$(hwm_kib "$ghostd_pid")
	hwm=$(( hwm > hwm1 ? hwm : hwm1 ))
	echo "phase 3 (steady, ${WINDOW}s after the first pass): average CPU ${avg}% of one core (target ≤ 5%)"
	echo "peak RSS: $((hwm / 1024)) MiB (target ≤ 128 MiB)"
	stop_ghostd
	eval "r_$2_scan=$cpu_per_scan r_$2_probe=$cpu_per_probe r_$2_all=$cpu_all r_$2_cpu=$avg r_$2_rss=$((hwm / 1024))"
}

phases "$tmp/ghostd" new
if [ -n "$BASE" ]; then
	phases "$tmp/ghostd-base" base
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
	echo "new/base ($BASE), same connections, one run: CPU per scan $(ratio "$r_new_scan" "$r_base_scan"), CPU per probe $(ratio "$r_new_probe" "$r_base_probe") ($(ratio "$r_new_all" "$r_base_all") with the scans), steady CPU $(ratio "$r_new_cpu" "$r_base_cpu"), peak RSS $(ratio "$r_new_rss" "$r_base_rss")"
fi
