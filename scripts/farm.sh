# farm.sh — sourced by the benchmarks that hold many connections
# (bench-inventory.sh, bench-onewalk.sh, bench-scan.sh, bench-daemon.sh):
# scratch network namespaces, connfarm processes holding loopback
# connections in them, and the tools they run, built into a scratch
# directory. The caller sets bench (its name, for messages), calls
# bench_start and build_tools, and calls stop_farms and del_namespaces from
# its EXIT trap.

namespaces=()
farm_pids=()
farm_fds=()

# bench_start WHY TOOL...: skip the benchmark (exit 0) unless it runs as root
# (it needs root to WHY) with every TOOL installed; then work from the
# repository's root, with a scratch directory $tmp and a random $tag for
# names.
bench_start() {
	local why=$1 t
	shift
	if [ "$(id -u)" != 0 ]; then
		echo "$bench: skipped, needs root ($why)"
		exit 0
	fi
	for t in "$@"; do
		command -v "$t" >/dev/null || { echo "$bench: skipped, $t missing"; exit 0; }
	done
	cd "$(dirname "${BASH_SOURCE[0]}")/.."
	tmp=$(mktemp -d "/tmp/$bench.XXXXXX")
	tag=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
}

# build_tools [TOOL...]: connfarm and invbench, or only the TOOLs named
# (either of them), into $tmp.
build_tools() {
	local t tools=("$@")
	[ $# -gt 0 ] || tools=(connfarm invbench)
	echo "$bench: building"
	for t in "${tools[@]}"; do
		case $t in
		connfarm) go build -o "$tmp/connfarm" ./internal/connfarm ;;
		invbench) go build -o "$tmp/invbench" ./internal/cmd/invbench ;;
		*) echo "$bench: build_tools: unknown tool $t"; exit 1 ;;
		esac
	done
}

# new_ns NAME: a namespace with loopback up and the whole port range, deleted
# by del_namespaces.
new_ns() {
	ip netns add "$1"
	namespaces+=("$1")
	ip -n "$1" link set lo up
	ip netns exec "$1" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
}

# start_farm FD NAMES CONNS: hold CONNS connections in each namespace of
# NAMES (comma-separated) until stop_farms; FD holds the connfarm's input
# open. Waits up to 600 s for the connections.
start_farm() {
	local fd=$1 names=$2 conns=$3 out="$tmp/farm$1.out" pid
	rm -f "$tmp/hold$fd" && mkfifo "$tmp/hold$fd"
	eval "exec $fd<>\"$tmp/hold$fd\""
	farm_fds+=("$fd")
	"$tmp/connfarm" -netns "$names" -conns "$conns" -hold 30m <"$tmp/hold$fd" >"$out" &
	pid=$!
	farm_pids+=("$pid")
	for _ in $(seq 1200); do
		if grep -q '^ready' "$out" 2>/dev/null; then
			echo "  connfarm: $(cat "$out")"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || { echo "$bench: connfarm failed"; exit 1; }
		sleep 0.5
	done
	echo "$bench: connfarm not ready after 600 s"
	exit 1
}

# stop_farms: end every connfarm start_farm started.
stop_farms() {
	local fd p
	for fd in "${farm_fds[@]}"; do eval "exec $fd>&-" 2>/dev/null || true; done
	for p in "${farm_pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	farm_fds=()
	farm_pids=()
}

# del_namespaces: delete every namespace new_ns made.
del_namespaces() {
	local ns
	for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	namespaces=()
}

# field NAME LINE: the value of NAME=value in one of invbench's lines.
field() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<"$2"; }
