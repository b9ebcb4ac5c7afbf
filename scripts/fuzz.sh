#!/usr/bin/env bash
# fuzz.sh — run every fuzz target of the module for FUZZTIME (default 30s)
# each, whatever fails on the way, then print one line per target (package,
# target, result, time fuzzed, executions) and exit 1 if any target failed.
# A failing input is saved under the package's testdata/fuzz/ by go test.
set -uo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
# How long a worker may spend shrinking an input: go test's default (60 s) is
# spent on every new-coverage input too, and on a target with large seeds
# (inventory's FuzzParseDump) it used the whole FUZZTIME, so the target
# never fuzzed. A failing input is saved either way.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT

rows=()
failed=0
while read -r pkg dir; do
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | cut -d' ' -f2 | sort -u); do
		log="$logdir/${pkg//\//_}.$f.log"
		echo "fuzz $pkg $f ($FUZZTIME)"
		result=ok
		if ! "$GO" test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg" >"$log" 2>&1; then
			result=FAIL
			failed=$((failed + 1))
			cat "$log"
		fi
		# The last progress line: "fuzz: elapsed: 45s, execs: 123 (3/sec), ...".
		last=$(grep -o 'elapsed: [0-9hms.]*, execs: [0-9]*' "$log" | tail -1)
		elapsed=$(sed -n 's/^elapsed: \([^,]*\),.*/\1/p' <<<"$last")
		execs=$(sed -n 's/.*execs: \([0-9]*\)$/\1/p' <<<"$last")
		rows+=("$(printf '%-45s %-30s %-4s %6s %12s' "$pkg" "$f" "$result" "${elapsed:--}" "${execs:--}")")
	done
done < <("$GO" list -f '{{.ImportPath}} {{.Dir}}' ./...)

echo
printf '%-45s %-30s %-4s %6s %12s\n' PACKAGE TARGET RES TIME EXECS
printf '%s\n' "${rows[@]}"
if [ "$failed" -gt 0 ]; then
	echo "fuzz: $failed of ${#rows[@]} targets failed"
	exit 1
fi
echo "fuzz: all ${#rows[@]} targets passed"
