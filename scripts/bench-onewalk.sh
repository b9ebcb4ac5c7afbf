#!/usr/bin/env bash
# bench-onewalk.sh — scan cost with many namespaces: sock_diag per namespace
# against the one BPF walk (inventory/bpfwalk), side by side in one run.
#
# BENCH_OW_NS namespaces hold BENCH_OW_SMALL connections each (pods), and
# one more holds BENCH_OW_CONNS connections (2 sockets each: a busy ingress
# pod). invbench then times, interleaved run after run so that every mode
# sees the kernel's tables in the same state, an inventory.Scanner scan of
#   scan-walk        every namespace, from the one walk;
#   scan             every namespace, one sock_diag dump each;
#   scan-alone       the busy namespace alone, sock_diag (today's baseline);
#   scan-walk-alone  the busy namespace alone, from the walk;
# and prints the medians of BENCH_OW_RUNS runs (CPU: user + system time of
# the scanning process, where the kernel's table walks are charged) and the
# ratios. Target: scan-walk / scan-alone <= 1.5.
#
# Needs root (ip netns add, BPF). Everything it creates lives in namespaces
# named gd-ow-*, which it deletes, with the processes it started, on exit.
# Quick run: BENCH_OW_NS=20 BENCH_OW_CONNS=20000 scripts/bench-onewalk.sh
set -euo pipefail

NS_COUNT=${BENCH_OW_NS:-110}
SMALL=${BENCH_OW_SMALL:-10}
CONNS=${BENCH_OW_CONNS:-100000}
RUNS=${BENCH_OW_RUNS:-5}

if [ "$RUNS" -lt 3 ]; then RUNS=3; fi

bench=bench-onewalk
# shellcheck source=farm.sh
. "$(dirname "$0")/farm.sh"
bench_start "creates network namespaces, loads BPF" ip go

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

build_tools

echo "== $NS_COUNT namespaces x $SMALL connections, plus one with $CONNS connections ($((2 * CONNS)) sockets); medians of $RUNS runs"
busy="gd-ow-$tag-busy"
new_ns "$busy"
small=()
for i in $(seq "$NS_COUNT"); do
	small+=("gd-ow-$tag-$i")
	new_ns "gd-ow-$tag-$i"
done
start_farm 3 "$busy" "$CONNS"
start_farm 4 "$(IFS=,; echo "${small[*]}")" "$SMALL"
all=$(IFS=,; echo "$busy,${small[*]}")
host_sockets=$(cat /proc/net/sockstat | sed -n 's/^TCP: inuse \([0-9]*\).*/\1/p')
echo "  TCP sockets in the host's namespace: $host_sockets (other namespaces share its tables too)"

out=$("$tmp/invbench" -mode scan-walk,scan,scan-alone,scan-walk-alone -netns "$all" -alone "$busy" -runs "$RUNS")
echo "$out" | sed 's/^/  /'
walk=$(grep '^mode=scan-walk ' <<<"$out")
diag=$(grep '^mode=scan ' <<<"$out")
alone=$(grep '^mode=scan-alone ' <<<"$out")
walk_alone=$(grep '^mode=scan-walk-alone ' <<<"$out")
awk -v w="$(field median_cpu_ms "$walk")" -v d="$(field median_cpu_ms "$diag")" \
	-v a="$(field median_cpu_ms "$alone")" -v wa="$(field median_cpu_ms "$walk_alone")" \
	-v ww="$(field median_ms "$walk")" -v dw="$(field median_ms "$diag")" -v aw="$(field median_ms "$alone")" \
	-v n="$((NS_COUNT + 1))" 'BEGIN {
	printf "  CPU per scan (median): walk, all %d namespaces %.1f ms; sock_diag, all %.1f ms; sock_diag, busy alone %.1f ms; walk, busy alone %.1f ms\n", n, w, d, a, wa
	printf "  wall time per scan (median): walk %.1f ms; sock_diag all %.1f ms; sock_diag busy alone %.1f ms\n", ww, dw, aw
	printf "  walk (all) / sock_diag (busy alone):     %.2f  (target <= 1.5)\n", w / a
	printf "  sock_diag (all) / sock_diag (busy alone): %.2f  (for comparison)\n", d / a
	if (w / a > 1.5) printf "  WARNING: over the 1.5 target\n"
}'
