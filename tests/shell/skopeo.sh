#!/bin/sh
# skopeo.sh - push the project's fixture images into a freshly started registry
# with skopeo, pull them back out into new OCI layouts, and check that every
# manifest and blob came back byte-identical.
#
#   sh tests/shell/skopeo.sh
#
# Environment:
#   OCIREG_BIN        registry binary under test (default build/ocireg)
#   OCIREG_FIXTURES   fixture folder (default build/fixtures); built with
#                     tests/fixtures/build.sh when its expected.txt is missing
#   SKOPEO_TARGET     "ocireg" (default) or "reference": run the same checks against
#                     the reference registry (Debian docker-registry) to check the
#                     script itself
#
# For every tag of the fixture layout (busybox, whiteout, cfgtest, multiarch):
#   1. skopeo copy --all oci:FIX/oci:TAG docker://127.0.0.1:PORT/fixtures/TAG:latest
#   2. skopeo inspect --raw of it: the bytes hash to the digest in expected.txt
#   3. skopeo copy --all back into a new layout OUT/TAG: its index.json names the
#      expected digest, every blob there is byte-identical to the fixture's and
#      hashes to its name
# and at the end the union of the blobs copied back equals the fixture's blob set.
# The server is started on port 0 (--ready-file) and stopped by its PID; ocireg
# must exit 0 on SIGTERM.
# Prints "N passed, N failed" last; exits non-zero when a check failed.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${OCIREG_BIN:-$top/build/ocireg}
FIX=${OCIREG_FIXTURES:-$top/build/fixtures}
TARGET=${SKOPEO_TARGET:-ocireg}
pass=0
fail=0
srv_pid=""
work=$(mktemp -d /tmp/ocireg-skopeo.XXXXXX)

cleanup() {
    if [ -n "$srv_pid" ]; then
        kill "$srv_pid" 2>/dev/null
        i=0
        while kill -0 "$srv_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$srv_pid" 2>/dev/null
        wait "$srv_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
    exit $?
}

command -v skopeo >/dev/null || { bad "skopeo not installed"; finish; }

# ---- fixtures --------------------------------------------------------------
if [ ! -f "$FIX/expected.txt" ]; then
    echo "building fixtures into $FIX"
    if ! "$top/tests/fixtures/build.sh" "$FIX" >"$work/fixtures.log" 2>&1; then
        cat "$work/fixtures.log"
        bad "fixture build"
        finish
    fi
fi
tags=$(awk '$1 == "tag" { print $2 }' "$FIX/expected.txt")
[ -n "$tags" ] || { bad "no tags in $FIX/expected.txt"; finish; }

# ---- server ----------------------------------------------------------------
mkdir -p "$work/root" "$work/out"
if [ "$TARGET" = reference ]; then
    # dev check of this script: a free port from the kernel's ephemeral range
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$work/reg.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    docker-registry serve "$work/reg.yml" >"$work/server.log" 2>&1 &
    srv_pid=$!
    i=0
    until curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 100 ] && { cat "$work/server.log"; bad "reference registry start"; finish; }
        sleep 0.1
    done
else
    [ -x "$BIN" ] || { bad "no registry binary at $BIN"; finish; }
    OCIREG_SERVER_LISTEN=127.0.0.1:0 OCIREG_STORAGE_ROOT="$work/root" \
        "$BIN" serve --ready-file "$work/ready" >"$work/server.log" 2>&1 &
    srv_pid=$!
    i=0
    port=""
    while [ $i -lt 100 ]; do
        if [ -s "$work/ready" ]; then
            port=$(sed -n 's/.*:\([0-9][0-9]*\)[^0-9]*$/\1/p' "$work/ready" | head -1)
            [ -n "$port" ] && [ "$port" -gt 0 ] && break
        fi
        kill -0 "$srv_pid" 2>/dev/null || break
        i=$((i + 1))
        sleep 0.1
    done
    if [ -z "$port" ]; then
        cat "$work/server.log"
        bad "ocireg start ($BIN)"
        finish
    fi
fi
reg=127.0.0.1:$port
echo "registry ($TARGET) at $reg"

# ---- push, inspect, pull back -------------------------------------------------
sk() { skopeo --insecure-policy "$@" >>"$work/skopeo.log" 2>&1; }

for t in $tags; do
    want=$(awk -v t="$t" '$1 == "tag" && $2 == t { print $4 }' "$FIX/expected.txt")
    wsize=$(awk -v t="$t" '$1 == "tag" && $2 == t { print $5 }' "$FIX/expected.txt")
    dst="docker://$reg/fixtures/$t:latest"
    if sk copy --all --dest-tls-verify=false "oci:$FIX/oci:$t" "$dst"; then
        ok "push $t"
    else
        tail -5 "$work/skopeo.log"
        bad "push $t"
        continue
    fi

    if skopeo inspect --raw --tls-verify=false "$dst" >"$work/raw-$t" 2>>"$work/skopeo.log"; then
        got="sha256:$(sha256sum <"$work/raw-$t" | cut -d' ' -f1)"
        gsize=$(wc -c <"$work/raw-$t" | tr -d ' ')
        if [ "$got" = "$want" ] && [ "$gsize" = "$wsize" ]; then
            ok "inspect --raw $t"
        else
            bad "inspect --raw $t: got $got ($gsize bytes), want $want ($wsize bytes)"
        fi
    else
        tail -5 "$work/skopeo.log"
        bad "inspect --raw $t"
    fi

    out=$work/out/$t
    if ! sk copy --all --src-tls-verify=false "$dst" "oci:$out:$t"; then
        tail -5 "$work/skopeo.log"
        bad "pull $t"
        continue
    fi
    got=$(jq -r '.manifests[0].digest' "$out/index.json" 2>/dev/null)
    if [ "$got" = "$want" ]; then
        ok "pull $t: manifest digest $want"
    else
        bad "pull $t: manifest digest $got, want $want"
    fi
    nb=0
    mism=""
    for f in "$out"/blobs/sha256/*; do
        [ -f "$f" ] || continue
        h=$(basename "$f")
        nb=$((nb + 1))
        if [ ! -f "$FIX/oci/blobs/sha256/$h" ] || ! cmp -s "$f" "$FIX/oci/blobs/sha256/$h"; then
            mism="$mism $h(differs)"
        elif [ "$(sha256sum <"$f" | cut -d' ' -f1)" != "$h" ]; then
            mism="$mism $h(hash)"
        fi
    done
    if [ $nb -gt 0 ] && [ -z "$mism" ]; then
        ok "pull $t: $nb blobs byte-identical"
    else
        bad "pull $t: $nb blobs, mismatches:$mism"
    fi
done

# skopeo list-tags, and the same after the repository's only image is deleted:
# its blobs stay linked, so the repository still exists with an empty tag list
# (the catalog lists it and tags/list answers 200, as distribution does)
t1=$(echo "$tags" | head -1)
lt=$work/list-tags.json
if skopeo list-tags --tls-verify=false "docker://$reg/fixtures/$t1" >"$lt" 2>>"$work/skopeo.log" &&
    [ "$(jq -c .Tags "$lt")" = '["latest"]' ]; then
    ok "list-tags $t1"
else
    bad "list-tags $t1: $(cat "$lt")"
fi
if sk delete --tls-verify=false "docker://$reg/fixtures/$t1:latest" &&
    skopeo list-tags --tls-verify=false "docker://$reg/fixtures/$t1" >"$lt" 2>>"$work/skopeo.log" &&
    [ "$(jq -c '.Tags | length' "$lt")" = 0 ] &&
    curl -fs "http://$reg/v2/_catalog" | jq -e --arg r "fixtures/$t1" '.repositories | index($r)' >/dev/null; then
    ok "list-tags $t1 after its image was deleted: empty, still in the catalog"
else
    tail -3 "$work/skopeo.log"
    bad "list-tags $t1 after delete: $(cat "$lt")"
fi

# every fixture blob went through the registry and came back
(cd "$FIX/oci/blobs/sha256" && ls) | sort >"$work/want.lst"
for t in $tags; do
    ls "$work/out/$t/blobs/sha256" 2>/dev/null
done | sort -u >"$work/got.lst"
if cmp -s "$work/want.lst" "$work/got.lst"; then
    ok "blob set round trip ($(wc -l <"$work/want.lst" | tr -d ' ') blobs)"
else
    bad "blob set round trip: $(diff "$work/want.lst" "$work/got.lst" | grep '^[<>]' | tr '\n' ' ')"
fi

if [ -n "$srv_pid" ] && ! kill -0 "$srv_pid" 2>/dev/null; then
    bad "server died during the run"
    tail -20 "$work/server.log"
elif [ "$TARGET" != reference ]; then
    # a clean shutdown on SIGTERM: exit status 0 (under ASan: no leak report)
    kill "$srv_pid"
    wait "$srv_pid"
    rc=$?
    srv_pid=""
    if [ $rc -eq 0 ]; then
        ok "clean shutdown"
    else
        bad "server exit status $rc after SIGTERM"
        tail -20 "$work/server.log"
    fi
fi
finish
