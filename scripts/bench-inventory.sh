#!/usr/bin/env bash
# bench-inventory.sh — time ghostd's inventory pass against its floor and ss.
#
# Part 1: one namespace holding BENCH_CONNS established loopback connections
# (2 sockets each): a ghostd inventory pass (inventory.Dial once, Dump per
# run), a bare dump that receives the same messages and discards them (the
# floor; also the two per-family dumps ss makes, where Dump walks the kernel's
# table once), and `ss -tinH`. Medians of BENCH_RUNS runs, with ratios, allocations
# per socket and peak RSS.
# Part 2: BENCH_NS namespaces x BENCH_NS_CONNS connections: one pass over every
# namespace, first as created by default (every namespace shares the host's
# TCP hash, so each dump walks all of it), then created after
# net.ipv4.tcp_child_ehash_entries=BENCH_CHILD_EHASH (each namespace gets its
# own hash; the sysctl is restored at once).
#
# Needs root (ip netns add). Everything it creates lives in namespaces named
# gd-inv-*, which it deletes, with the processes it started, on exit.
# Quick run: BENCH_CONNS=10000 BENCH_NS=10 BENCH_NS_CONNS=200 scripts/bench-inventory.sh
# BENCH_PARTS="2" runs only part 2; BENCH_RUNS (>= 5) sets the runs per median.
set -euo pipefail

CONNS=${BENCH_CONNS:-100000}
RUNS=${BENCH_RUNS:-5}
NS_COUNT=${BENCH_NS:-100}
NS_CONNS=${BENCH_NS_CONNS:-1000}
CHILD_EHASH=${BENCH_CHILD_EHASH:-4096}
PARTS=${BENCH_PARTS:-"1 2"}

if [ "$RUNS" -lt 5 ]; then RUNS=5; fi

bench=bench-inventory
# shellcheck source=farm.sh
. "$(dirname "$0")/farm.sh"
bench_start "creates network namespaces" ip ss nsenter go
old_child_ehash=$(sysctl -n net.ipv4.tcp_child_ehash_entries 2>/dev/null || echo "")

cleanup() {
	if [ -n "$old_child_ehash" ]; then sysctl -qw net.ipv4.tcp_child_ehash_entries="$old_child_ehash" || true; fi
	bench_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_tools

# check LINE WANT: warn when a run saw another number of sockets than the
# farm holds (a dump is not a snapshot, but nothing else touches these).
check() {
	local got
	got=$(field sockets "$1")
	if [ "$got" != "$2" ]; then echo "  WARNING: saw $got sockets, the farm holds $2"; fi
}

median_ms() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if [[ " $PARTS " == *" 1 "* ]]; then
echo
echo "== Part 1: one namespace, $CONNS connections ($((2 * CONNS)) sockets), median of $RUNS runs"
ns="gd-inv-$tag"
new_ns "$ns"
start_farm 3 "$ns" "$CONNS"
# The three modes run interleaved, so they see the kernel's table in the same state.
out=$("$tmp/invbench" -mode pass,bare,bare-two-walks -netns "$ns" -runs "$RUNS")
pass=$(grep '^mode=pass ' <<<"$out")
bare=$(grep '^mode=bare ' <<<"$out")
bare2=$(grep '^mode=bare-two-walks ' <<<"$out")
ss_lines=$(nsenter --net="/run/netns/$ns" ss -tinH | grep -c '^[A-Z]' || true)
for _ in $(seq "$RUNS"); do
	s=$(date +%s%N)
	nsenter --net="/run/netns/$ns" ss -tinH >/dev/null
	e=$(date +%s%N)
	echo "$(( (e - s) / 1000 ))" | awk '{printf "%.1f\n", $1/1000}'
done >"$tmp/ss.ms"
ss_ms=$(median_ms <"$tmp/ss.ms")
pass_ms=$(field median_ms "$pass")
bare_ms=$(field median_ms "$bare")
echo "  pass: $pass"
check "$pass" $((2 * CONNS))
echo "  bare: $bare"
check "$bare" $((2 * CONNS))
echo "  bare, one dump per family (as ss): $bare2"
check "$bare2" $((2 * CONNS))
echo "  ss -tinH: sockets=$ss_lines median_ms=$ss_ms runs_ms=$(paste -sd, "$tmp/ss.ms")"
awk -v p="$pass_ms" -v b="$bare_ms" -v s="$ss_ms" -v a="$(field allocs_per_socket "$pass")" \
	-v r="$(field maxrss_kib "$pass")" -v n="$(field sockets "$pass")" 'BEGIN {
	printf "  sockets per pass:        %d\n", n
	printf "  pass / bare:             %.2f   (target <= 1.3)\n", p / b
	printf "  ss / pass:               %.1f    (target >= 4)\n", s / p
	printf "  ns per socket (pass):    %.0f\n", p * 1e6 / n
	printf "  allocs per socket:       %.4f (target <= 0.05)\n", a
	printf "  peak RSS of the pass:    %.1f MiB (target <= 64)\n", r / 1024
}'
stop_farms
del_namespaces
fi

# part2 LABEL: create the namespaces, fill them, time one pass over all.
part2() {
	local names=() list
	for i in $(seq "$NS_COUNT"); do
		names+=("gd-inv-$tag-$i")
	done
	for n in "${names[@]}"; do new_ns "$n"; done
	list=$(IFS=,; echo "${names[*]}")
	start_farm 3 "$list" "$NS_CONNS"
	local out r l want=$((2 * NS_COUNT * NS_CONNS))
	out=$("$tmp/invbench" -mode pass,bare,bare-two-walks -netns "$list" -runs "$RUNS")
	while read -r l; do
		echo "  $1: $l"
		check "$l" "$want"
	done <<<"$out"
	r=$(grep '^mode=pass ' <<<"$out")
	awk -v m="$(field median_ms "$r")" -v n="$NS_COUNT" -v d="$(field dial_ms "$r")" \
		'BEGIN { printf "  %s: total scan %.1f ms, %.2f ms per namespace (first Dial of all: %.1f ms)\n", "'"$1"'", m, m / n, d }'
	stop_farms
	del_namespaces
	sleep 3 # namespace teardown is asynchronous; let it finish
}

if [[ " $PARTS " == *" 2 "* ]]; then
echo
echo "== Part 2: $NS_COUNT namespaces x $NS_CONNS connections, median of $RUNS passes over all"
part2 "shared hash (tcp_child_ehash_entries=0)"
if [ -n "$old_child_ehash" ]; then
	# The sysctl applies to namespaces created while it is set: set it,
	# create, and restore at once so nobody else's namespaces get it.
	names=()
	for i in $(seq "$NS_COUNT"); do names+=("gd-inv-$tag-$i"); done
	sysctl -qw net.ipv4.tcp_child_ehash_entries="$CHILD_EHASH"
	for n in "${names[@]}"; do new_ns "$n"; done
	sysctl -qw net.ipv4.tcp_child_ehash_entries="$old_child_ehash"
	list=$(IFS=,; echo "${names[*]}")
	start_farm 3 "$list" "$NS_CONNS"
	out=$("$tmp/invbench" -mode pass,bare-two-walks -netns "$list" -runs "$RUNS")
	while read -r l; do
		echo "  own hash (tcp_child_ehash_entries=$CHILD_EHASH): $l"
		check "$l" $((2 * NS_COUNT * NS_CONNS))
	done <<<"$out"
	r=$(grep '^mode=pass ' <<<"$out")
	awk -v m="$(field median_ms "$r")" -v n="$NS_COUNT" \
		'BEGIN { printf "  own hash: total scan %.1f ms, %.2f ms per namespace\n", m, m / n }'
	stop_farms
	del_namespaces
else
	echo "  net.ipv4.tcp_child_ehash_entries missing (kernel < 6.1): second run skipped"
fi
fi
