#!/bin/sh
# conformance.sh - run the conformance program against a freshly started
# ocireg: `$OCIREG_BIN serve` on 127.0.0.1:0 with an empty temporary storage
# root, the address read back from --ready-file. Exits non-zero on any failed
# check; the last line of output is the program's "N passed, N failed".
#
# Environment: OCIREG_BIN (default $BUILD/ocireg), CONFORMANCE_BIN (default
# $BUILD/conformance), OCIREG_SRC (source tree), CONFORMANCE_ARGS (extra
# arguments for the program, e.g. "--only 'push-*'"), CONFORMANCE_AUTH=1 (auth
# on: a user in a fresh htpasswd file, whose credentials the program sends as
# OCI_USERNAME / OCI_PASSWORD; tests/shell/conformance-auth.sh).
set -u

src=${OCIREG_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
ocireg=${OCIREG_BIN:-$src/${BUILD:-build}/ocireg}
bin=${CONFORMANCE_BIN:-$src/${BUILD:-build}/conformance}

fail_early() {
    echo "conformance: $*"
    echo "0 passed, 1 failed"
    exit 1
}

[ -x "$ocireg" ] || fail_early "ocireg binary not found: $ocireg"
[ -x "$bin" ] || fail_early "conformance binary not found: $bin"

root=$(mktemp -d) || fail_early "mktemp failed"
work=$(mktemp -d) || { rm -rf "$root"; fail_early "mktemp failed"; }
pid=""
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$root" "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${CONFORMANCE_AUTH:-0}" = 1 ]; then
    command -v htpasswd >/dev/null || fail_early "htpasswd (apache2-utils) not installed"
    OCI_USERNAME=conformance
    OCI_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    htpasswd -nbB -C 4 "$OCI_USERNAME" "$OCI_PASSWORD" >"$work/htpasswd" ||
        fail_early "htpasswd failed"
    export OCI_USERNAME OCI_PASSWORD OCIREG_AUTH_HTPASSWD="$work/htpasswd"
fi
OCIREG_SERVER_LISTEN=127.0.0.1:0 OCIREG_STORAGE_ROOT=$root \
    "$ocireg" serve --ready-file "$work/ready" >"$work/server.log" 2>&1 &
pid=$!

# the server writes "127.0.0.1:PORT" into the ready file once it listens
addr=""
i=0
while [ $i -lt 100 ]; do
    if [ -s "$work/ready" ]; then
        addr=$(head -n 1 "$work/ready")
        case "$addr" in
        *:[0-9]*) break ;;
        *) addr="" ;;
        esac
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        pid=""
        tail -20 "$work/server.log"
        fail_early "ocireg exited before it was ready"
    fi
    sleep 0.1
    i=$((i + 1))
done
if [ -z "$addr" ]; then
    tail -20 "$work/server.log"
    fail_early "ocireg did not write $work/ready within 10 s"
fi

# shellcheck disable=SC2086
eval "set -- ${CONFORMANCE_ARGS:-}"
"$bin" "$@" "http://$addr" >"$work/out.txt" 2>&1
rc=$?

kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
pid=""

if [ "$rc" -ne 0 ]; then
    echo "--- ocireg log (last 30 lines)"
    tail -30 "$work/server.log"
    echo "---"
fi
cat "$work/out.txt"
grep -q '^[0-9]* passed, [0-9]* failed$' "$work/out.txt" ||
    fail_early "the conformance program did not finish (exit $rc)"
exit "$rc"
