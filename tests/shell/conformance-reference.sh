#!/bin/sh
# conformance-reference.sh - validate the conformance suite itself against the
# reference registry (Debian's docker-registry, CNCF distribution 2.8).
#
# Starts the reference on 127.0.0.1 with a free port and a temporary storage
# root, runs $CONFORMANCE_BIN against it, and passes only when the set of
# failing check ids is exactly the list of known reference gaps in
# conformance/reference-gaps.txt: a check that fails on the reference but is not
# listed is a suite bug (or an undocumented gap), a listed gap that passes is a
# stale entry. That the reference passes everything else shows the suite tests
# the spec and not ocireg's own behaviour.
#
# Environment: CONFORMANCE_BIN (default $BUILD/conformance), OCIREG_SRC (source
# tree, default the parent of this script's folder), REFERENCE_REGISTRY
# (default docker-registry). The last line of output is "N passed, N failed",
# counting checks whose outcome matched (passed) or contradicted (failed) the
# expectation.
set -u

src=${OCIREG_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${CONFORMANCE_BIN:-$src/${BUILD:-build}/conformance}
reg=${REFERENCE_REGISTRY:-docker-registry}
gaps_file=$src/conformance/reference-gaps.txt

fail_early() {
    echo "conformance-reference: $*"
    echo "0 passed, 1 failed"
    exit 1
}

[ -x "$bin" ] || fail_early "conformance binary not found: $bin"
command -v "$reg" >/dev/null 2>&1 || fail_early "reference registry not found: $reg"
[ -f "$gaps_file" ] || fail_early "gap list not found: $gaps_file"
command -v curl >/dev/null 2>&1 || fail_early "curl not found (used to wait for the registry)"

work=$(mktemp -d) || fail_early "mktemp failed"
pid=""
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start the reference on a random free port; a taken port makes it exit, then
# another one is tried
port=""
for _ in 1 2 3 4 5 6 7 8; do
    p=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000 + 20000 ))
    rm -rf "$work/data"
    cat >"$work/config.yml" <<CFG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$p
CFG
    "$reg" serve "$work/config.yml" >"$work/registry.log" 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 100 ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            pid=""
            break
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/v2/" 2>/dev/null)
        if [ "$code" = 200 ]; then
            port=$p
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$port" ] && break
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        pid=""
    fi
done
if [ -z "$port" ]; then
    tail -20 "$work/registry.log"
    fail_early "the reference registry did not start"
fi

"$bin" "http://127.0.0.1:$port" >"$work/out.txt" 2>&1
rc=$?
cat "$work/out.txt"

kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
pid=""

grep -q '^[0-9]* passed, [0-9]* failed$' "$work/out.txt" ||
    fail_early "the conformance program did not finish (exit $rc)"

sed -n 's/^FAIL \([^ ]*\) .*/\1/p' "$work/out.txt" | sort -u >"$work/failed.txt"
sed -n 's/^PASS \([^ ]*\) .*/\1/p' "$work/out.txt" | sort -u >"$work/passed.txt"
sed -e 's/#.*//' -e 's/[[:space:]]//g' "$gaps_file" | grep -v '^$' | sort -u >"$work/gaps.txt"

unexpected_fail=$(comm -23 "$work/failed.txt" "$work/gaps.txt")
unexpected_pass=$(comm -13 "$work/failed.txt" "$work/gaps.txt")
total=$(cat "$work/failed.txt" "$work/passed.txt" | wc -l)
bad=0
echo "--- against the reference gap list ($gaps_file)"
for id in $unexpected_fail; do
    echo "UNEXPECTED FAIL $id (fails on the reference but is not a known gap)"
    bad=$((bad + 1))
done
for id in $unexpected_pass; do
    if grep -qx "$id" "$work/passed.txt"; then
        echo "UNEXPECTED PASS $id (listed as a reference gap but passes)"
    else
        echo "MISSING $id (listed as a reference gap but the program has no such check)"
        total=$((total + 1))
    fi
    bad=$((bad + 1))
done
[ "$bad" -eq 0 ] && echo "the reference fails exactly the $(wc -l <"$work/gaps.txt") known gaps"
echo "$((total - bad)) passed, $bad failed"
[ "$bad" -eq 0 ]
