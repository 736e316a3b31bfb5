#!/bin/sh
# run-all.sh - run every test of the project and print one closing line
# "total: N passed, N failed" that sums Criterion's per-binary synthesis and the
# shell suites' own "N passed, N failed" lines.
#
#   BUILD=build sh tests/run-all.sh [GLOB...]
#
# Test programs:
#   $BUILD/tests/unit/*          Criterion binaries (one per module)
#   $BUILD/tests/integration/*   Criterion binaries that start a real server
#   tests/shell/*.sh             shell suites (skopeo, conformance, ...), each ends
#                                with a line "N passed, N failed"; lib-*.sh
#                                there are helpers the suites source
# Environment given to every test: OCIREG_BIN, OCIRUN_BIN, REGBENCH_BIN,
# CONFORMANCE_BIN (absolute paths of the binaries under test), OCIREG_SRC (the
# source tree), OCIREG_FIXTURES (built once here by tests/fixtures/build.sh).
set -u
BUILD=${BUILD:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
B=$top/$BUILD
export OCIREG_BIN="$B/ocireg" OCIRUN_BIN="$B/ocirun-lite" REGBENCH_BIN="$B/regbench" \
       CONFORMANCE_BIN="$B/conformance" OCIREG_SRC="$top" BUILD
# fixtures are built once per build folder and reused (deterministic output)
export OCIREG_FIXTURES="$B/fixtures"
if [ -x tests/fixtures/build.sh ] && [ ! -f "$OCIREG_FIXTURES/expected.txt" ]; then
    tests/fixtures/build.sh "$OCIREG_FIXTURES" >"$B/fixtures.log" 2>&1 ||
        { echo "fixture build failed:"; cat "$B/fixtures.log"; }
fi

GLOBS="$*"
match() {
    [ -z "$GLOBS" ] && return 0
    set -f   # the globs are name patterns, never file names
    for g in $GLOBS; do
        # shellcheck disable=SC2254
        case "$1" in $g) set +f; return 0 ;; esac
    done
    set +f
    return 1
}

passed=0 failed=0 bad=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

add_result() {   # NAME PASS FAIL
    passed=$((passed + $2)); failed=$((failed + $3))
    [ "$3" -gt 0 ] && bad="$bad $1"
    printf '%-34s %4d passed, %d failed\n' "$1" "$2" "$3"
}

run_criterion() {   # NAME BINARY: one Criterion binary, its synthesis counted
    "$2" --jobs 2 >"$log" 2>&1
    rc=$?
    syn=$(grep 'Synthesis:' "$log" | tail -1)
    if [ -z "$syn" ]; then
        cat "$log"; add_result "$1" 0 1; return
    fi
    p=$(echo "$syn" | sed -n 's/.*Passing: *\([0-9]*\).*/\1/p')
    f=$(echo "$syn" | sed -n 's/.*Failing: *\([0-9]*\).*/\1/p')
    c=$(echo "$syn" | sed -n 's/.*Crashing: *\([0-9]*\).*/\1/p')
    f=$((f + c))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1   # sanitizer exit, leak report, ...
    [ "$f" -gt 0 ] && grep -v '^\[----\] *$' "$log" | grep -E '\[(FAIL|----)\]|ERROR|Sanitizer|runtime error|crash' | head -40
    add_result "$1" "$p" "$f"
}

for t in "$B"/tests/unit/* "$B"/tests/integration/*; do
    [ -x "$t" ] || continue
    match "$(basename "$t")" || continue
    run_criterion "$(basename "$(dirname "$t")")/$(basename "$t")" "$t"
done

# The API suites and the upload write paths once more on the test blob backend
# that offers no file descriptor (tests/lib/blob_nofd.h): the server must serve
# and store through readers and writers alone.
for t in "$B"/tests/unit/storage "$B"/tests/unit/upload "$B"/tests/integration/api_* \
         "$B"/tests/integration/upload_io; do
    [ -x "$t" ] || continue
    match "$(basename "$t")" || continue
    OCIREG_TEST_BLOBS=nofd run_criterion "$(basename "$(dirname "$t")")/$(basename "$t")@nofd" "$t"
done

# The API suites and the upload write paths a third time on the test blob
# backend that holds bytes in memory behind read and write only
# (tests/lib/blob_mem.h): no descriptor, no rename, no file. The storage and
# upload unit suites look at the files and inject filesystem faults, so they
# stay on the nofd pass.
for t in "$B"/tests/integration/api_* "$B"/tests/integration/upload_io; do
    [ -x "$t" ] || continue
    match "$(basename "$t")" || continue
    OCIREG_TEST_BLOBS=mem run_criterion "$(basename "$(dirname "$t")")/$(basename "$t")@mem" "$t"
done

for s in tests/shell/*.sh; do
    [ -f "$s" ] || continue
    case "$(basename "$s")" in lib-*) continue ;; esac   # sourced helpers, not suites
    match "$(basename "$s" .sh)" || continue
    sh "$s" >"$log" 2>&1
    rc=$?
    line=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    p=$(echo "$line" | sed -n 's/^\([A-Za-z-]*: \)\{0,1\}\([0-9]*\) passed.*/\2/p')
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    p=${p:-0}; f=${f:-0}
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    [ "$f" -gt 0 ] && tail -40 "$log"
    add_result "shell/$(basename "$s" .sh)" "$p" "$f"
done

[ -n "$bad" ] && echo "failing:$bad"
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
