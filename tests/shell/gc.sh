#!/bin/sh
# gc.sh - `ocireg gc` on a store: refused while a server has it open (with the
# server's pid and the SIGUSR1 hint), then, stopped: the grace period keeps
# young blobs, --dry-run lists and removes nothing, a pass removes the files of
# a deleted image and a loose blob and prints the counts.
#
# Environment: OCIREG_BIN, OCIREG_SRC. Last line: "N passed, N failed".
set -u

src=${OCIREG_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
ocireg=${OCIREG_BIN:-$src/${BUILD:-build}/ocireg}

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "PASS $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
fail_early() {
    echo "gc: $*"
    failed=$((failed + 1))
    finish
}

[ -x "$ocireg" ] || fail_early "ocireg binary not found: $ocireg"
command -v curl >/dev/null 2>&1 || fail_early "curl not found"

work=$(mktemp -d) || fail_early "mktemp failed"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

root=$work/root
export OCIREG_STORAGE_ROOT="$root" OCIREG_STORAGE_FSYNC=false
unset OCIREG_GC_GRACE OCIREG_GC_DELETE_UNTAGGED OCIREG_GC_INTERVAL

OCIREG_SERVER_LISTEN=127.0.0.1:0 "$ocireg" serve --ready-file "$work/ready" \
    >"$work/server.log" 2>&1 &
pid=$!
i=0
while [ ! -s "$work/ready" ] && [ $i -lt 200 ] && kill -0 "$pid" 2>/dev/null; do
    sleep 0.05
    i=$((i + 1))
done
[ -s "$work/ready" ] || { cat "$work/server.log"; fail_early "server did not start"; }
base="http://$(cat "$work/ready")"

sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
push_blob() { # REPO TEXT
    curl -sf -o /dev/null -X POST --data-binary "$2" -H 'Content-Type: application/octet-stream' \
        "$base/v2/$1/blobs/uploads/?digest=sha256:$(sha "$2")"
}

cfg='{"architecture":"amd64","os":"linux"}'
layer='layer bytes of the gc test'
loose='a blob no manifest references'
push_blob r "$cfg" || fail_early "push config"
push_blob r "$layer" || fail_early "push layer"
push_blob r "$loose" || fail_early "push loose blob"
manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
    "$(sha "$cfg")" "${#cfg}" "$(sha "$layer")" "${#layer}")
curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$manifest" "$base/v2/r/manifests/v1" || fail_early "push manifest"
curl -sf -o /dev/null -X DELETE "$base/v2/r/manifests/sha256:$(sha "$manifest")" ||
    fail_early "delete manifest"
bytes=$((${#cfg} + ${#layer} + ${#loose} + ${#manifest}))

files() { find "$root/blobs" -type f | wc -l; }

# a live store is refused, with the server's pid
out=$("$ocireg" gc 2>&1)
rc=$?
if [ $rc -eq 1 ] && echo "$out" | grep -q "in use by a running ocireg (pid $pid)" &&
    echo "$out" | grep -q "SIGUSR1"; then
    ok "refused on a live store"
else
    bad "refused on a live store (rc $rc): $out"
fi

kill "$pid"
wait "$pid" 2>/dev/null
pid=""
[ "$(files)" -eq 4 ] && ok "four blob files before" || bad "four blob files before: $(files)"

# the default grace (1h) keeps everything just pushed
out=$("$ocireg" gc 2>&1)
rc=$?
if [ $rc -eq 0 ] && echo "$out" | grep -q "^removed: 0 blobs (0 bytes)" && [ "$(files)" -eq 4 ]; then
    ok "grace keeps young blobs"
else
    bad "grace keeps young blobs (rc $rc): $out"
fi

out=$(OCIREG_GC_GRACE=0 "$ocireg" gc --dry-run 2>&1)
rc=$?
n=$(echo "$out" | grep -c "^  blob sha256:")
if [ $rc -eq 0 ] && [ "$n" -eq 4 ] &&
    echo "$out" | grep -q "^would remove: 4 blobs ($bytes bytes), 0 manifests, 3 links" &&
    [ "$(files)" -eq 4 ]; then
    ok "dry run lists and removes nothing"
else
    bad "dry run (rc $rc, $n blob lines, $(files) files): $out"
fi

out=$(OCIREG_GC_GRACE=0 "$ocireg" gc 2>&1)
rc=$?
if [ $rc -eq 0 ] && echo "$out" | grep -q "^removed: 4 blobs ($bytes bytes), 0 manifests, 3 links" &&
    echo "$out" | grep -q " s$" && [ "$(files)" -eq 0 ]; then
    ok "a pass removes the files and prints the counts"
else
    bad "a pass (rc $rc, $(files) files): $out"
fi

out=$("$ocireg" gc --bogus 2>&1)
[ $? -eq 2 ] && ok "unknown option" || bad "unknown option: $out"

finish
