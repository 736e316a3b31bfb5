#!/bin/sh
# regbench.sh - regbench against a reference registry (docker-registry) started
# here: every scenario runs briefly and its JSON is sane; a blob corrupted in the
# registry's storage is caught by the digest check (error reported, no figure);
# an unreachable registry, a non-loopback URL and bad options are refused. Then
# against a second one with TLS (a test CA made here) and htpasswd: every
# scenario with --user over https (raw client and --curl), -H, --insecure, and
# the refusals (wrong password, no credentials, untrusted certificate).
# Ends with "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
RB=${REGBENCH_BIN:-$top/${BUILD:-build}/regbench}
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok:   $1"; }
no() { fail=$((fail + 1)); echo "FAIL: $1"; }
check() {   # DESCRIPTION COMMAND...
    d=$1
    shift
    if "$@"; then ok "$d"; else no "$d"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

[ -x "$RB" ] || { no "regbench binary $RB exists"; finish; }
for c in docker-registry jq curl sha256sum; do
    command -v $c >/dev/null 2>&1 || { no "$c is installed (scripts/install-deps.sh)"; finish; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/regbench-test.XXXXXX")
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- reference registry on a free port ------------------------------------------------
URL=""
for try in 1 2 3; do
    port=$("$RB" --free-port) || break
    cat >"$tmp/reg.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    docker-registry serve "$tmp/reg.yml" >"$tmp/reg.log" 2>&1 &
    PID=$!
    i=0
    while [ $i -lt 100 ]; do
        code=$(curl -s -o /dev/null --noproxy '*' -m 2 -w '%{http_code}' "http://127.0.0.1:$port/v2/")
        [ "$code" = 200 ] && { URL=http://127.0.0.1:$port; break; }
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$URL" ] && break
    kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""
done
if [ -z "$URL" ]; then
    no "reference registry starts"; cat "$tmp/reg.log"; finish
fi
ok "reference registry starts at $URL"

# ---- every scenario, JSON sanity (350 tags: docker-registry answers with a chunked
# body past 2 KiB, so the raw client's chunked decoding is exercised) --------
ALL=push,push-chunked,pull,pull-range,manifest-put,manifest-get,head-blob,tags-list,catalog
"$RB" -u "$URL" -s $ALL -c 4 -d 0.4 -S 64K --chunk 16K --range-size 4K --tags 350 --repos 3 \
    --server-pid "$PID" --json >"$tmp/all.json" 2>"$tmp/all.err"
rc=$?
check "all scenarios exit 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { cat "$tmp/all.err"; jq -c '.results[] | select(.ok | not)' "$tmp/all.json"; }
j() { jq -e "$1" "$tmp/all.json" >/dev/null 2>&1; }
jqe() { jq -e "$@" >/dev/null 2>&1; }
check "JSON has one result per scenario" j '.results | length == 9'
check "JSON scenario names in order" \
    j '[.results[].scenario] == ["push","push-chunked","pull","pull-range","manifest-put","manifest-get","head-blob","tags-list","catalog"]'
check "every result ok with ops > 0 and req/s > 0" j 'all(.results[]; .ok and .ops > 0 and .req_per_s > 0 and .seconds > 0)'
check "latency percentiles ordered p50 <= p90 <= p99 <= max" \
    j 'all(.results[]; .latency_ms.p50 > 0 and .latency_ms.p50 <= .latency_ms.p90 and .latency_ms.p90 <= .latency_ms.p99 and .latency_ms.p99 <= .latency_ms.max)'
check "push bytes = ops x 64 KiB, 2 requests per push" \
    j '.results[0] | .bytes == .ops * 65536 and .http_requests == .ops * 2'
check "chunked push: POST + 4 PATCH + PUT per push" \
    j '.results[1] | .bytes == .ops * 65536 and .http_requests == .ops * 6'
check "pull bytes = ops x 64 KiB and MB/s consistent" \
    j '.results[2] | .bytes == .ops * 65536 and ((.mb_per_s - .bytes / 1e6 / .seconds) | fabs) < 0.01'
check "range pull bytes = ops x 4 KiB" j '.results[3] | .bytes == .ops * 4096'
check "server CPU and RSS reported for --server-pid" \
    j 'all(.results[]; .server.cpu_s >= 0 and .server.rss_kib > 0 and .server.hwm_kib >= .server.rss_kib)'
check "no errors key on passing results" j 'all(.results[]; has("errors") | not)'

# the same GET/HEAD scenarios through libcurl instead of the raw client
"$RB" -u "$URL" -s pull,pull-range,manifest-get,head-blob,tags-list,catalog -c 3 -n 40 -S 64K \
    --range-size 4K --tags 7 --repos 3 --curl --json >"$tmp/curl.json" 2>"$tmp/curl.err"
check "GET/HEAD scenarios with --curl exit 0" [ $? -eq 0 ]
check "--curl: 6 results, all ok, 40 ops each" \
    jqe '(.results | length == 6) and all(.results[]; .ok and .ops == 40)' "$tmp/curl.json"

# ---- idle connections ---------------------------------------------------------------------
"$RB" -u "$URL" -s idle --idle 25 -c 2 -d 0.3 --server-pid "$PID" --json >"$tmp/idle.json" 2>&1
check "idle scenario exits 0" [ $? -eq 0 ]
check "idle holds 25 connections, none closed" \
    jqe '.results[0] | .ok and .idle.connections == 25 and .idle.closed_by_server == 0 and (.idle | has("rss_delta_kib")) and .ops > 0' "$tmp/idle.json"

# ---- table output -----------------------------------------------------------------------------
"$RB" -u "$URL" -s head-blob -c 2 -n 20 -S 4K >"$tmp/table.txt" 2>&1
check "table mode exits 0" [ $? -eq 0 ]
check "table row has 20 ops and figures" grep -Eq '^head-blob +1 +2 +4K +20 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$tmp/table.txt"

# ---- digest verification: a blob corrupted in the registry's storage --------------------------
head -c 300000 /dev/urandom >"$tmp/blob"
hex=$(sha256sum "$tmp/blob" | cut -d' ' -f1)
loc=$(curl -s -D - -o /dev/null --noproxy '*' -X POST "$URL/v2/test/verify/blobs/uploads/" |
      tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case "$loc" in /*) loc=$URL$loc ;; esac
case "$loc" in *\?*) put="$loc&digest=sha256:$hex" ;; *) put="$loc?digest=sha256:$hex" ;; esac
code=$(curl -s -o /dev/null --noproxy '*' -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
       --data-binary @"$tmp/blob" "$put")
check "test blob pushed with curl (201)" [ "$code" = 201 ]

"$RB" -u "$URL" -s pull --blob "sha256:$hex:300000" --blob-repo test/verify -n 3 -c 1 --json \
    >"$tmp/good.json" 2>&1
check "intact blob: pull passes the digest check" [ $? -eq 0 ]
check "intact blob: 3 pulls, 900000 bytes" jqe '.results[0] | .ok and .ops == 3 and .bytes == 900000' "$tmp/good.json"

data=$tmp/root/docker/registry/v2/blobs/sha256/$(echo "$hex" | cut -c1-2)/$hex/data
check "blob data file found in the registry storage" [ -f "$data" ]
printf 'CORRUPTED' | dd of="$data" bs=1 seek=150000 conv=notrunc 2>/dev/null
check "corruption changed the stored bytes, same size" \
    sh -c "[ \"\$(sha256sum '$data' | cut -d' ' -f1)\" != '$hex' ] && [ \$(stat -c %s '$data') = 300000 ]"

"$RB" -u "$URL" -s pull --blob "sha256:$hex:300000" --blob-repo test/verify -n 3 -c 1 --json \
    >"$tmp/bad.json" 2>&1
check "corrupted blob: regbench exits 1" [ $? -eq 1 ]
check "corrupted blob: result not ok, digest mismatch x3" \
    jqe '.results[0] | (.ok | not) and (.errors[0].message | test("digest mismatch")) and .errors[0].count == 3' "$tmp/bad.json"
check "corrupted blob: no figure reported" \
    jqe '.results[0] | (has("req_per_s") or has("mb_per_s") or has("latency_ms") or has("ops")) | not' "$tmp/bad.json"
"$RB" -u "$URL" -s pull --blob "sha256:$hex:300000" --blob-repo test/verify -n 2 -c 1 --curl \
    --json >"$tmp/badcurl.json" 2>&1
check "corrupted blob via --curl: exit 1, digest mismatch x2, no figure" \
    sh -c "[ $? -eq 1 ] && jq -e '.results[0] | (.ok | not) and (.errors[0].message | test(\"digest mismatch\")) and .errors[0].count == 2 and (has(\"ops\") | not)' '$tmp/badcurl.json' >/dev/null"
"$RB" -u "$URL" -s pull --blob "sha256:$hex:300000" --blob-repo test/verify -n 2 -c 1 >"$tmp/bad.txt" 2>&1
check "corrupted blob: table says ERROR and prints the error" \
    sh -c "grep -q '^pull .* ERROR\$' '$tmp/bad.txt' && grep -q 'digest mismatch' '$tmp/bad.txt'"

# ---- refusals ---------------------------------------------------------------------------------
dead=$("$RB" --free-port)
"$RB" -u "http://127.0.0.1:$dead" -s head-blob -n 2 --json >"$tmp/dead.json" 2>&1
check "unreachable registry: exit 1" [ $? -eq 1 ]
check "unreachable registry: error, no figure" \
    jqe '.results[0] | (.ok | not) and (.errors | length > 0) and (has("req_per_s") | not)' "$tmp/dead.json"
"$RB" -u http://192.0.2.1:5000 -s head-blob -n 1 >"$tmp/remote.txt" 2>&1
check "non-loopback URL refused (exit 2)" [ $? -eq 2 ]
check "non-loopback refusal says why" grep -q 'not loopback' "$tmp/remote.txt"
"$RB" -u "$URL" -s nosuch >/dev/null 2>&1
check "unknown scenario refused (exit 2)" [ $? -eq 2 ]
"$RB" -u "$URL" -S 12Q >/dev/null 2>&1
check "bad size refused (exit 2)" [ $? -eq 2 ]
"$RB" -u "$URL" --cacert /dev/null -s head-blob >"$tmp/tlsplain.txt" 2>&1
check "TLS options with an http:// URL refused (exit 2)" [ $? -eq 2 ]

# ---- TLS and auth: a second reference registry with TLS (a test CA made now) and
# htpasswd (Basic; bcrypt cost 10, checked on every request by the reference) ----
if ! command -v htpasswd >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    no "htpasswd and openssl are installed (scripts/install-deps.sh)"
    finish
fi
mkdir -p "$tmp/certs" "$tmp/other"
check "test CA and certificates made" sh "$top/scripts/test-certs.sh" "$tmp/certs"
sh "$top/scripts/test-certs.sh" "$tmp/other"
htpasswd -nbB -C 10 bench 's3cret:x' >"$tmp/htpasswd"
kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""
TURL=""
for try in 1 2 3; do
    port=$("$RB" --free-port) || break
    cat >"$tmp/tls.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/troot
  delete:
    enabled: true
auth:
  htpasswd:
    realm: regbench-test
    path: $tmp/htpasswd
http:
  addr: 127.0.0.1:$port
  tls:
    certificate: $tmp/certs/server.crt
    key: $tmp/certs/server.key
EOF
    docker-registry serve "$tmp/tls.yml" >"$tmp/tls.log" 2>&1 &
    PID=$!
    i=0
    while [ $i -lt 100 ]; do
        code=$(curl -s -o /dev/null --noproxy '*' -m 2 --cacert "$tmp/certs/ca.crt" -w '%{http_code}' "https://127.0.0.1:$port/v2/")
        [ "$code" = 401 ] && { TURL=https://127.0.0.1:$port; break; }
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$TURL" ] && break
    kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""
done
if [ -z "$TURL" ]; then
    no "reference registry with TLS and htpasswd starts"; cat "$tmp/tls.log"; finish
fi
ok "reference registry with TLS and htpasswd starts at $TURL"
CA="--cacert $tmp/certs/ca.crt"
# the password has a colon: only the first one splits user from password
# shellcheck disable=SC2086
"$RB" -u "$TURL" $CA --user 'bench:s3cret:x' -s push,push-chunked,pull,pull-range,manifest-put,manifest-get,head-blob,tags-list,catalog \
    -c 2 -n 6 -S 64K --chunk 32K --range-size 4K --tags 3 --repos 2 --json >"$tmp/tls.json" 2>"$tmp/tls.err"
rc=$?
check "TLS + Basic: every scenario exits 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { cat "$tmp/tls.err"; jq -c '.results[] | select(.ok | not)' "$tmp/tls.json"; }
check "TLS + Basic: 9 results, all ok, 6 ops each" \
    jqe '(.results | length == 9) and all(.results[]; .ok and .ops == 6)' "$tmp/tls.json"
check "TLS + Basic: the login says basic" grep -q 'auth: basic' "$tmp/tls.err"
# shellcheck disable=SC2086
"$RB" -u "$TURL" $CA --user 'bench:s3cret:x' -s pull,manifest-get,head-blob -c 2 -n 6 -S 64K \
    --curl --json >"$tmp/tlscurl.json" 2>"$tmp/tlscurl.err"
check "TLS + Basic via --curl: exit 0, all ok" \
    sh -c "[ $? -eq 0 ] && jq -e 'all(.results[]; .ok and .ops == 6)' '$tmp/tlscurl.json' >/dev/null"
basic=$(printf 'bench:s3cret:x' | base64)
# shellcheck disable=SC2086
"$RB" -u "https://localhost:${TURL##*:}" $CA -H "Authorization: Basic $basic" -s manifest-get -c 2 -n 4 \
    --json >"$tmp/hdr.json" 2>&1
check "TLS by name (localhost) with a fixed -H header: exit 0" [ $? -eq 0 ]
"$RB" -u "$TURL" --insecure --user 'bench:s3cret:x' -s head-blob -c 1 -n 2 --json >/dev/null 2>&1
check "--insecure accepts the server without its CA" [ $? -eq 0 ]
# shellcheck disable=SC2086
"$RB" -u "$TURL" $CA --user 'bench:Wr0ngPass' -s head-blob -n 1 >"$tmp/wrong.txt" 2>&1
check "wrong password: exit 2, 401 named" sh -c "[ $? -eq 2 ] && grep -q 401 '$tmp/wrong.txt'"
check "wrong password: not echoed" sh -c "! grep -q Wr0ngPass '$tmp/wrong.txt'"
# shellcheck disable=SC2086
"$RB" -u "$TURL" $CA -s manifest-get -n 2 --json >"$tmp/anon.json" 2>&1
check "no credentials: exit 1, 401 errors, no figure" \
    sh -c "[ $? -eq 1 ] && jq -e '.results[0] | (.ok | not) and (has(\"ops\") | not)' '$tmp/anon.json' >/dev/null && grep -q 'status 401' '$tmp/anon.json'"
"$RB" -u "$TURL" --cacert "$tmp/other/ca.crt" --user 'bench:s3cret:x' -s head-blob -n 1 >"$tmp/untrusted.txt" 2>&1
check "an untrusted server certificate: exit 2 at login" \
    sh -c "[ $? -eq 2 ] && grep -qi 'certificate' '$tmp/untrusted.txt'"
"$RB" -u "$TURL" --cacert "$tmp/other/ca.crt" -H "Authorization: Basic $basic" -s pull \
    --blob "sha256:$hex:300000" --blob-repo test/verify -n 2 --json >"$tmp/untrusted.json" 2>&1
check "an untrusted server certificate (raw client): exit 1, verify failed" \
    sh -c "[ $? -eq 1 ] && grep -q 'certificate verify failed' '$tmp/untrusted.json'"

finish
