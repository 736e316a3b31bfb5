#!/bin/sh
# fuzz.sh - run every libFuzzer target built by `make fuzz` for a bounded time.
#
#   BUILD_FUZZ=build-fuzz FUZZ_SECONDS=60 sh scripts/fuzz.sh [target...]
#
# Each target runs alone (one core) for FUZZ_SECONDS on a scratch copy of its
# seed corpus tests/fuzz/corpus/<name>/ (the tree's corpus is never written),
# with tests/fuzz/<name>.dict when there is one. Prints the executions of each
# target (libFuzzer's final "Done N runs in S second(s)" line). A crash, leak,
# timeout or out-of-memory makes the script fail; the input that caused it is
# kept in $BUILD_FUZZ/crashes/<name>/ with the target's log.
#
# Knobs (environment): FUZZ_SECONDS (60), FUZZ_TIMEOUT (10: seconds one input
# may take), FUZZ_RSS_MB (1024: memory limit of a target), FUZZ_FLAGS (extra
# libFuzzer flags, e.g. -seed=1).
set -u
BUILD_FUZZ=${BUILD_FUZZ:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-1024}
FUZZ_FLAGS=${FUZZ_FLAGS:-}
here=$(cd "$(dirname "$0")/.." && pwd)

if [ $# -gt 0 ]; then
    targets="$*"
else
    targets=$(cd "$BUILD_FUZZ/fuzz" && ls | sed -n 's/_fuzz$//p')
fi
[ -n "$targets" ] || { echo "fuzz: no targets in $BUILD_FUZZ/fuzz" >&2; exit 1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ocireg-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT INT TERM
failed=""
printf '%-12s %12s %8s %10s  %s\n' target runs seconds runs/s result
for t in $targets; do
    bin="$BUILD_FUZZ/fuzz/${t}_fuzz"
    if [ ! -x "$bin" ]; then
        echo "fuzz: no target $bin" >&2
        failed="$failed $t"
        continue
    fi
    dir="$scratch/$t"
    mkdir -p "$dir/corpus" "$dir/tmp"
    if [ -d "$here/tests/fuzz/corpus/$t" ]; then
        cp "$here/tests/fuzz/corpus/$t"/* "$dir/corpus/" 2>/dev/null
    fi
    dict=""
    [ -f "$here/tests/fuzz/$t.dict" ] && dict="-dict=$here/tests/fuzz/$t.dict"
    # shellcheck disable=SC2086 # FUZZ_FLAGS and dict are lists of flags
    TMPDIR="$dir/tmp" "$bin" -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" \
        -rss_limit_mb="$FUZZ_RSS_MB" -artifact_prefix="$dir/" -print_final_stats=1 \
        $dict $FUZZ_FLAGS "$dir/corpus" >"$dir/log" 2>&1
    rc=$?
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$dir/log" | tail -n 1)
    runs=$(echo "$done_line" | sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p')
    secs=$(echo "$done_line" | sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p')
    if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
        rate=$(( runs / (secs > 0 ? secs : 1) ))
        printf '%-12s %12s %8s %10s  %s\n' "$t" "$runs" "$secs" "$rate" ok
        continue
    fi
    failed="$failed $t"
    keep="$BUILD_FUZZ/crashes/$t"
    mkdir -p "$keep"
    cp "$dir/log" "$keep/log"
    for a in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* "$dir"/slow-unit-*; do
        [ -f "$a" ] && cp "$a" "$keep/"
    done
    printf '%-12s %12s %8s %10s  %s\n' "$t" "${runs:--}" "${secs:--}" - "FAILED (exit $rc)"
    echo "---- $t: last lines of $keep/log"
    tail -n 40 "$dir/log"
    echo "---- input(s) kept in $keep/; reproduce with: $bin $keep/<file>"
done
if [ -n "$failed" ]; then
    echo "fuzz: FAILED:$failed" >&2
    exit 1
fi
echo "fuzz: every target ran ${FUZZ_SECONDS}s without a finding"
