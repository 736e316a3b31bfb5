#!/bin/sh
# bench.sh - side-by-side benchmark of ocireg and the reference registry
# (Debian's docker-registry, CNCF distribution 2.8) with build/regbench.
#
#   BUILD=build sh scripts/bench.sh [quick|full]      (make bench [BENCH=full])
#
# Starts both servers on free 127.0.0.1 ports with their own temporary storage,
# runs the same regbench scenarios against both, interleaved (ref, ocireg, ref,
# ocireg ...), and prints one table: figure, reference, ocireg, ratio (ocireg /
# reference), then each server's peak RSS and CPU, and the machine's ceilings.
# Quick mode takes under a minute, full mode under five. When build/ocireg is
# missing or does not start, its column says n/a and the reference's figures are
# still printed. A scenario that had errors shows ERROR and its error lines,
# never a figure. Both servers are stopped by PID on exit.
#
# Environment: BUILD (default build), BENCH_KEEP=1 keeps the temp dir (JSON of
# every run) and prints its path.
set -u
MODE=${1:-quick}
BUILD=${BUILD:-build}
case "$MODE" in quick|full) ;; *) echo "usage: $0 [quick|full]" >&2; exit 2 ;; esac
T_START=$(date +%s)
say() { echo "bench: [$(($(date +%s) - T_START))s] $*" >&2; }
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 2
RB=$top/$BUILD/regbench
OCIREG=$top/$BUILD/ocireg
if [ ! -x "$RB" ]; then
    echo "bench: $RB is not built (make BUILD=$BUILD $BUILD/regbench)" >&2
    exit 2
fi
command -v docker-registry >/dev/null 2>&1 || { echo "bench: docker-registry not installed (scripts/install-deps.sh)" >&2; exit 2; }
command -v jq >/dev/null 2>&1 || { echo "bench: jq not installed (scripts/install-deps.sh)" >&2; exit 2; }
command -v curl >/dev/null 2>&1 || { echo "bench: curl not installed (scripts/install-deps.sh)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ocireg-bench.XXXXXX") || exit 2
REF_PID="" OCI_PID="" AT_PIDS=""
stop_wait() {   # PID: up to 3 s for it to exit after TERM, then KILL, then reap
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 30 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -0 "$1" 2>/dev/null && { say "pid $1 still running 3 s after TERM: KILL"; kill -9 "$1" 2>/dev/null; }
    wait "$1" 2>/dev/null
}
stop_pid() {    # PID: TERM, then stop_wait
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null
    stop_wait "$1"
}
cleanup() {
    # TERM, up to 3 s to exit, then KILL: every server by the PID started here
    for p in $REF_PID $OCI_PID $AT_PIDS; do
        kill "$p" 2>/dev/null
    done
    for p in $REF_PID $OCI_PID $AT_PIDS; do
        stop_wait "$p"
    done
    say "servers stopped"
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: results kept in $tmp"
    else
        # the root fs here is ext4 mounted with discard: deleting a few hundred MB
        # of blobs takes ~10 s of synchronous TRIM, which is no part of the bench,
        # so the removal finishes in the background after this script has ended
        (nice rm -rf "$tmp" >/dev/null 2>&1 &)
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

http_code() {   # URL -> the status of a GET (000: none); https trusts the test CA
    curl -s -o /dev/null -m 2 --noproxy '*' --cacert "$tmp/certs/ca.crt" -w '%{http_code}' "$1" 2>/dev/null
}
http_ok() {   # URL -> 0 when GET answers 200 or 401
    code=$(http_code "$1")
    [ "$code" = 200 ] || [ "$code" = 401 ]
}

# ---- reference registry -------------------------------------------------------
REF_ADDR="" REF_WHY=""
start_ref() {
    for try in 1 2 3; do
        port=$("$RB" --free-port) || break
        mkdir -p "$tmp/ref-root"
        cat >"$tmp/ref.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/ref-root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
        docker-registry serve "$tmp/ref.yml" >"$tmp/ref.log" 2>&1 &
        REF_PID=$!
        i=0
        while [ $i -lt 100 ]; do
            if http_ok "http://127.0.0.1:$port/v2/"; then
                REF_ADDR=127.0.0.1:$port
                return 0
            fi
            kill -0 "$REF_PID" 2>/dev/null || break
            sleep 0.1
            i=$((i + 1))
        done
        kill "$REF_PID" 2>/dev/null
        wait "$REF_PID" 2>/dev/null
        REF_PID=""
    done
    REF_WHY="did not start: $(tail -3 "$tmp/ref.log" 2>/dev/null | tr '\n' ' ')"
    return 1
}

# ---- ocireg ---------------------------------------------------------------------
# start_oci TAG SCHEME LEVEL [VAR=VALUE...]: an ocireg on a free port with its own
# root ($tmp/TAG-root), log ($tmp/TAG.log) and log level, the extra environment
# given; ready when GET SCHEME://ADDR/v2/ answers 200 or 401 (https: trusting the
# bench's test CA). Sets V_PID and V_ADDR (HOST:PORT), or V_WHY; returns 0 or 1.
start_oci() {
    tag=$1 scheme=$2 level=$3
    shift 3
    V_PID="" V_ADDR="" V_WHY=""
    if [ ! -x "$OCIREG" ]; then
        V_WHY="$OCIREG is not built"
        return 1
    fi
    mkdir -p "$tmp/$tag-root"
    rm -f "$tmp/$tag.ready"
    env OCIREG_SERVER_LISTEN=127.0.0.1:0 OCIREG_STORAGE_ROOT="$tmp/$tag-root" \
        OCIREG_LOG_LEVEL="$level" "$@" \
        "$OCIREG" serve --ready-file "$tmp/$tag.ready" >"$tmp/$tag.log" 2>&1 &
    V_PID=$!
    i=0
    while [ $i -lt 100 ]; do
        if [ -s "$tmp/$tag.ready" ]; then
            addr=$(tr -d ' \r\n' <"$tmp/$tag.ready")
            if http_ok "$scheme://$addr/v2/"; then
                V_ADDR=$addr
                return 0
            fi
            if [ "$scheme" = https ] && http_ok "http://$addr/v2/"; then
                V_WHY="it answers plain HTTP, not TLS"
                stop_pid "$V_PID"
                V_PID=""
                return 1
            fi
        fi
        if ! kill -0 "$V_PID" 2>/dev/null; then
            wait "$V_PID" 2>/dev/null
            V_PID=""
            V_WHY="exited at start: $(tail -3 "$tmp/$tag.log" | tr '\n' ' ')"
            return 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
    V_WHY="not ready after 10 s ($scheme): $(tail -3 "$tmp/$tag.log" | tr '\n' ' ')"
    stop_pid "$V_PID"
    V_PID=""
    return 1
}
OCI_ADDR="" OCI_WHY=""
start_ocireg() {
    start_oci oci http error
    rc=$?
    OCI_PID=$V_PID OCI_ADDR=$V_ADDR OCI_WHY=$V_WHY
    return $rc
}

start_ref
start_ocireg
say "servers started: reference ${REF_ADDR:-unavailable}, ocireg ${OCI_ADDR:-unavailable}"

if [ -z "$REF_ADDR" ] && [ -z "$OCI_ADDR" ]; then
    echo "bench: no server to measure: reference $REF_WHY; ocireg $OCI_WHY" >&2
    exit 1
fi

# ---- scenarios ---------------------------------------------------------------------
# One line each: ID | regbench arguments. Figures below refer to IDs.
if [ "$MODE" = full ]; then
    REPS=2 D=3 TAGS=1000 BIG=256M BIGN=2 CONC=64M IDLE=5000 BUDGET=235 SLACK=20
else
    REPS=1 D=1.5 TAGS=300 BIG=32M BIGN=3 CONC=16M IDLE=500 BUDGET=34 SLACK=8
fi
SCEN="mget|-s manifest-get -c 64 -d $D
head|-s head-blob -c 64 -S 4K -d $D
tags|-s tags-list -c 8 --tags $TAGS -d $D
pushbig|-s push -c 1 -S $BIG -n $BIGN
pushchunk|-s push-chunked -c 1 -S $BIG --chunk 8M -n $BIGN
pullbig|-s pull -c 1 -S $BIG -n 3
pullconc|-s pull -c 16 -S $CONC --blobs 4 -n 16
push4k|-s push -c 16 -S 4K -d $D
mput|-s manifest-put -c 16 -d $D
idle|-s idle -c 16 --idle $IDLE -d $D
range|-s pull-range -c 8 -S 16M --range-size 256K -d $D
catalog|-s catalog -c 8 --repos 20 -d $D"

cpu_of() {   # PID -> utime+stime ticks
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
REF_CPU0=$(cpu_of "$REF_PID")
OCI_CPU0=$(cpu_of "$OCI_PID")

mkdir -p "$tmp/out"
start=$(date +%s)
rep=1
while [ $rep -le $REPS ]; do
    echo "$SCEN" | while IFS='|' read -r id args; do
        for srv in ref oci; do
            if [ $srv = ref ]; then addr=$REF_ADDR pid=$REF_PID; else addr=$OCI_ADDR pid=$OCI_PID; fi
            [ -n "$addr" ] || continue
            # the time budget keeps quick under 1 minute and full under 5, even on
            # a busy machine: runs past it are skipped (and say so)
            now=$(($(date +%s) - start))
            if [ $now -ge $BUDGET ]; then
                echo "bench: $id $srv rep $rep skipped: time budget (${BUDGET}s) spent" >&2
                : >"$tmp/out/$id.$srv.$rep.skip"
                continue
            fi
            left=$((BUDGET + SLACK - now))
            printf 'bench: %-9s %-3s rep %d\n' "$id" "$srv" "$rep" >&2
            # shellcheck disable=SC2086
            "$RB" -u "http://$addr" $args --server-pid "$pid" --timeout 60 --max-time $left \
                --json >"$tmp/out/$id.$srv.$rep.json" 2>"$tmp/out/$id.$srv.$rep.err"
            echo $? >"$tmp/out/$id.$srv.$rep.rc"
        done
    done
    rep=$((rep + 1))
done
elapsed=$(($(date +%s) - start))
say "runs done"

# a server that died during the bench: say so (its later runs show ERROR)
REF_DIED="" OCI_DIED=""
if [ -n "$REF_PID" ] && ! kill -0 "$REF_PID" 2>/dev/null; then
    REF_DIED="reference registry exited during the bench: $(tail -3 "$tmp/ref.log" | tr '\n' ' ')"
fi
if [ -n "$OCI_PID" ] && ! kill -0 "$OCI_PID" 2>/dev/null; then
    OCI_DIED="ocireg exited during the bench: $(tail -3 "$tmp/oci.log" | tr '\n' ' ')"
fi
REF_CPU1=$(cpu_of "$REF_PID")
OCI_CPU1=$(cpu_of "$OCI_PID")
hwm_of() {   # PID -> VmHWM in MiB
    [ -n "$1" ] && [ -r "/proc/$1/status" ] || { echo ""; return; }
    awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}
REF_HWM=$(hwm_of "$REF_PID")
OCI_HWM=$(hwm_of "$OCI_PID")

# ---- report ----------------------------------------------------------------------
# One jq over every result file writes "ID.SRV.REP KEY VALUE" facts (or "ERROR"),
# one awk turns them into the table: process start-ups are slow on this machine.
facts=$tmp/facts.txt
: >"$facts"
JQ_FACTS='input_filename as $f | ($f | split("/") | last | rtrimstr(".json")) as $n |
  .results[0] as $r |
  if ($r.ok // false) then
    (["req_per_s", $r.req_per_s], ["mb_per_s", $r.mb_per_s], ["p99", $r.latency_ms.p99],
     ["cpu_us_per_op", $r.server.cpu_us_per_op], ["cpu_s_per_gb", $r.server.cpu_s_per_gb],
     ["rss_delta_kib", $r.idle.rss_delta_kib], ["rss_per_conn", $r.idle.rss_bytes_per_conn],
     ["idle_closed", $r.idle.closed_by_server])
    | select(.[1] != null) | "\($n) \(.[0]) \(.[1])"
  else "\($n) ERROR -" end'
files=""
for f in "$tmp"/out/*.json; do
    [ -f "$f" ] || continue
    n=${f##*/}
    n=${n%.json}
    if [ -s "$f" ]; then files="$files $f"; else echo "$n ERROR -" >>"$facts"; fi
done
for f in "$tmp"/out/*.skip; do
    [ -f "$f" ] || continue
    n=${f##*/}
    echo "${n%.skip} SKIP -" >>"$facts"
done
if [ -n "$files" ]; then
    # shellcheck disable=SC2086
    if ! jq -r "$JQ_FACTS" $files >"$facts.all" 2>/dev/null; then
        : >"$facts.all"   # a broken file: go file by file, a broken one is an error
        for f in $files; do
            n=${f##*/}
            jq -r "$JQ_FACTS" "$f" >>"$facts.all" 2>/dev/null || echo "${n%.json} ERROR -" >>"$facts.all"
        done
    fi
    cat "$facts.all" >>"$facts"
fi

tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
REF_CPU=n/a OCI_CPU=n/a
[ -n "$REF_ADDR" ] && [ -z "$REF_DIED" ] && REF_CPU=$(((REF_CPU1 - REF_CPU0) * 10 / tck))
[ -n "$OCI_ADDR" ] && [ -z "$OCI_DIED" ] && OCI_CPU=$(((OCI_CPU1 - OCI_CPU0) * 10 / tck))
case "$REF_CPU" in n/a) ;; *) REF_CPU=$((REF_CPU / 10)).$((REF_CPU % 10)) ;; esac
case "$OCI_CPU" in n/a) ;; *) OCI_CPU=$((OCI_CPU / 10)).$((OCI_CPU % 10)) ;; esac

echo
echo "== regbench: ocireg vs reference registry ($MODE mode, $REPS repetition(s), mean; ${elapsed}s) =="
nskip=0
for f in "$tmp"/out/*.skip; do [ -f "$f" ] && nskip=$((nskip + 1)); done
[ "$nskip" -gt 0 ] && echo "note: $nskip run(s) skipped: the ${BUDGET}s time budget was spent (busy machine?)"
printf 'reference: %s\n' "${REF_ADDR:-unavailable: $REF_WHY}"
printf 'ocireg:    %s\n' "${OCI_ADDR:-unavailable: $OCI_WHY}"
echo
# rows: LABEL|ID|KEY; a KEY "=A,B" gives the two values as they are
awk -v refok="${REF_ADDR:+1}" -v ociok="${OCI_ADDR:+1}" '
function fmt(m) { if (m >= 1000 || m <= -1000) return sprintf("%.0f", m); return sprintf("%.4g", m) }
function val(id, srv, key, ok,   k) {
    if (!ok) return "n/a"
    if ((id SUBSEP srv) in err) return "ERROR"
    k = id SUBSEP srv SUBSEP key
    if (k in cnt) return fmt(sum[k] / cnt[k])
    return ((id SUBSEP srv) in ran) ? "n/a" : "skipped"
}
function ratio(a, b) {
    if (a !~ /^-?[0-9.e+]+$/ || b !~ /^-?[0-9.e+]+$/ || a + 0 == 0) return "-"
    return sprintf("%.2f", b / a)
}
FNR == NR {
    split($1, p, "."); id = p[1]; srv = p[2]
    if ($2 == "SKIP") next
    ran[id SUBSEP srv] = 1
    if ($2 == "ERROR") { err[id SUBSEP srv] = 1; next }
    sum[id SUBSEP srv SUBSEP $2] += $3; cnt[id SUBSEP srv SUBSEP $2]++
    next
}
FNR == 1 { printf "%-52s %12s %12s %7s\n%-52s %12s %12s %7s\n", "figure", "reference", "ocireg", "ratio", "------", "---------", "------", "-----" }
{
    split($0, r, "|")
    if (r[3] ~ /^=/) { split(substr(r[3], 2), v, ","); a = v[1]; b = v[2] }
    else { a = val(r[2], "ref", r[3], refok); b = val(r[2], "oci", r[3], ociok) }
    printf "%-52s %12s %12s %7s\n", r[1], a, b, ratio(a, b)
}' "$facts" - <<EOF
manifest GET by tag, 64 conns: req/s|mget|req_per_s
manifest GET by tag, 64 conns: p99 ms|mget|p99
manifest GET by tag: server CPU us/op|mget|cpu_us_per_op
HEAD blob, 64 conns: req/s|head|req_per_s
HEAD blob, 64 conns: p99 ms|head|p99
HEAD blob: server CPU us/op|head|cpu_us_per_op
tags list of a $TAGS-tag repo, 8 conns: req/s|tags|req_per_s
tags list of a $TAGS-tag repo, 8 conns: p99 ms|tags|p99
tags list: server CPU us/op|tags|cpu_us_per_op
push $BIG monolithic: MB/s|pushbig|mb_per_s
push $BIG monolithic: server CPU s/GB|pushbig|cpu_s_per_gb
push $BIG chunked (8 MiB PATCHes): MB/s|pushchunk|mb_per_s
push $BIG chunked: server CPU s/GB|pushchunk|cpu_s_per_gb
pull $BIG single stream: MB/s|pullbig|mb_per_s
pull $BIG single stream: server CPU s/GB|pullbig|cpu_s_per_gb
16 concurrent $CONC pulls: MB/s (aggregate)|pullconc|mb_per_s
16 concurrent $CONC pulls: p99 ms|pullconc|p99
16 concurrent $CONC pulls: server CPU s/GB|pullconc|cpu_s_per_gb
4 KiB blob push (POST+PUT), 16 clients: pushes/s|push4k|req_per_s
4 KiB blob push, 16 clients: p99 ms|push4k|p99
manifest PUT, 16 clients: req/s|mput|req_per_s
manifest PUT, 16 clients: p99 ms|mput|p99
$IDLE idle keep-alive conns: server RSS increase KiB|idle|rss_delta_kib
$IDLE idle conns: RSS bytes per connection|idle|rss_per_conn
$IDLE idle conns: closed by the server|idle|idle_closed
meanwhile manifest GET, 16 conns: req/s|idle|req_per_s
meanwhile manifest GET, 16 conns: p99 ms|idle|p99
Range pull 256 KiB of 16 MiB, 8 conns: req/s|range|req_per_s
Range pull 256 KiB, 8 conns: p99 ms|range|p99
catalog (20+ repos), 8 conns: req/s|catalog|req_per_s
server CPU seconds over the whole bench||=$REF_CPU,$OCI_CPU
server peak RSS (VmHWM) MiB||=${REF_HWM:-n/a},${OCI_HWM:-n/a}
EOF
echo "(ratio = ocireg / reference: above 1 is better for req/s and MB/s, worse for ms, CPU and RSS)"

# errors: every failed run of DIR, with its messages (regbench's own, else its
# exit and stderr), under the heading TITLE; nerr counts them
nerr=0
list_errors() {   # DIR TITLE
    shown=0
    for f in "$1"/*.rc; do
        [ -f "$f" ] || continue
        base=${f%.rc}
        read -r rc <"$f"
        [ "$rc" = 0 ] && continue
        [ $shown = 0 ] && { echo; echo "$2:"; }
        shown=1
        nerr=$((nerr + 1))
        echo "  ${base##*/} (exit $rc):"
        if [ -s "$base.json" ]; then
            jq -r '.results[]? | select(.ok | not) | .errors[] | "    \(.message) (x\(.count))"' "$base.json" 2>/dev/null
        fi
        [ -s "$base.err" ] && grep -v '^regbench: auth: ' "$base.err" | sed 's/^/    /' | head -5
    done
}
list_errors "$tmp/out" errors

say "report done"

# ---- auth and TLS (ocireg only), each beside plain ocireg ------------------------------
# Three more ocireg instances: auth (OCIREG_AUTH_HTPASSWD, plain HTTP), TLS
# (OCIREG_TLS_CERT/KEY, [tls] ktls at its default, auto) and TLS with
# OCIREG_TLS_KTLS=off, with a test CA made now (scripts/test-certs.sh) and an
# htpasswd of one user with a random password (bcrypt cost 10). Interleaved per
# repetition: manifest GET plain, with a token, over TLS; then 256 MiB pulls
# plain, TLS (ktls auto), TLS (ktls off). A variant the server does not support
# (it does not start with those variables, /v2/ does not answer 401, it does not
# speak TLS) is skipped and the reason printed. The server's kTLS log lines come
# from a short probe instance at log level info (the measured ones log errors
# only, like plain). BENCH_AUTH_TLS=0 skips this part; AT_SIZE sets the pull size.
AT_SIZE=${AT_SIZE:-256M}
if [ "$MODE" = full ]; then AT_N=3; else AT_N=2; fi
at=$tmp/at
mkdir -p "$at"
AT_WHY="" AUTH_ADDR="" AUTH_PID="" AUTH_WHY="" TLS_ADDR="" TLS_PID="" TLS_WHY=""
TLSOFF_ADDR="" TLSOFF_PID="" TLSOFF_WHY="" KTLS_AUTO_LOG="" KTLS_OFF_LOG=""
CA=$tmp/certs/ca.crt
TLS_ENV="OCIREG_TLS_CERT=$tmp/certs/server.crt OCIREG_TLS_KEY=$tmp/certs/server.key"
if [ "${BENCH_AUTH_TLS:-1}" = 0 ]; then
    AT_WHY="BENCH_AUTH_TLS=0"
elif [ -z "$OCI_ADDR" ] || [ -n "$OCI_DIED" ]; then
    AT_WHY="plain ocireg unavailable"
fi
if [ -z "$AT_WHY" ]; then
    say "auth and TLS: starting ocireg with auth, with TLS (ktls auto and off)"
    if ! command -v htpasswd >/dev/null 2>&1; then
        AUTH_WHY="htpasswd not installed (apache2-utils; scripts/install-deps.sh)"
    else
        AT_PASS=$(openssl rand -hex 12 2>/dev/null || echo "p$$-$(date +%s)")
        htpasswd -nbB -C 10 bench "$AT_PASS" >"$tmp/htpasswd" 2>/dev/null
        # the login storm's user: bcrypt cost 12; its logins use wrong
        # passwords (never cached), so each one costs a full bcrypt, and the
        # failed-login limit is off on this instance so that they all do
        htpasswd -nbB -C 12 storm "$AT_PASS" >>"$tmp/htpasswd" 2>/dev/null
        if ! start_oci auth http error OCIREG_AUTH_HTPASSWD="$tmp/htpasswd" OCIREG_AUTH_MAX_FAILURES=0; then
            AUTH_WHY="ocireg does not start with OCIREG_AUTH_HTPASSWD: $V_WHY"
        else
            AT_PIDS="$AT_PIDS $V_PID"
            code=$(http_code "http://$V_ADDR/v2/")
            if [ "$code" = 401 ]; then
                AUTH_ADDR=$V_ADDR AUTH_PID=$V_PID
            else
                AUTH_WHY="ocireg does not enforce auth with OCIREG_AUTH_HTPASSWD (GET /v2/ answered $code, not 401)"
                stop_pid "$V_PID"
            fi
        fi
    fi
    mkdir -p "$tmp/certs"
    if ! sh "$top/scripts/test-certs.sh" "$tmp/certs" 2>"$tmp/certs.err"; then
        TLS_WHY="test certificates: $(head -2 "$tmp/certs.err" | tr '\n' ' ')"
        TLSOFF_WHY=$TLS_WHY
    else
        # shellcheck disable=SC2086
        if start_oci tls https error $TLS_ENV; then
            AT_PIDS="$AT_PIDS $V_PID" TLS_ADDR=$V_ADDR TLS_PID=$V_PID
        else
            TLS_WHY="ocireg does not serve TLS with OCIREG_TLS_CERT/OCIREG_TLS_KEY: $V_WHY"
        fi
        # shellcheck disable=SC2086
        if start_oci tlsoff https error $TLS_ENV OCIREG_TLS_KTLS=off; then
            AT_PIDS="$AT_PIDS $V_PID" TLSOFF_ADDR=$V_ADDR TLSOFF_PID=$V_PID
        else
            TLSOFF_WHY="ocireg does not serve TLS with OCIREG_TLS_KTLS=off: $V_WHY"
        fi
        # what the server says about kTLS: a probe at log level info pulls one blob
        for kt in auto off; do
            [ $kt = auto ] && [ -z "$TLS_ADDR" ] && continue
            [ $kt = off ] && [ -z "$TLSOFF_ADDR" ] && continue
            ktenv=""
            [ $kt = off ] && ktenv=OCIREG_TLS_KTLS=off
            # shellcheck disable=SC2086
            if start_oci "probe$kt" https info $TLS_ENV $ktenv; then
                "$RB" -u "https://$V_ADDR" --cacert "$CA" -s pull -S 1M -n 1 -c 1 --timeout 30 \
                    --max-time 30 >/dev/null 2>&1
                stop_pid "$V_PID"
            fi
            lines=$(grep -iE 'ktls|kernel tls|ssl_sendfile|tls ulp' "$tmp/probe$kt.log" 2>/dev/null |
                    head -3 | sed 's/^/    /')
            [ -n "$lines" ] || lines="    (no line about kTLS in the server log at level info)"
            if [ $kt = auto ]; then KTLS_AUTO_LOG=$lines; else KTLS_OFF_LOG=$lines; fi
        done
    fi
    say "auth and TLS: auth ${AUTH_ADDR:-skipped}, tls ${TLS_ADDR:-skipped}, tls ktls=off ${TLSOFF_ADDR:-skipped}"

    [ -z "$AUTH_ADDR$TLS_ADDR$TLSOFF_ADDR" ] && AT_WHY="no variant runs on this ocireg (reasons below)"
    at_run() {   # ID VARIANT REP URL PID ARGS...: one regbench run into $at/ID.VARIANT.REP.*
        id=$1 var=$2 r=$3 url=$4 pid=$5
        shift 5
        printf 'bench: %-9s %-7s rep %d\n' "$id" "$var" "$r" >&2
        "$RB" -u "$url" "$@" --server-pid "$pid" --timeout 60 --max-time 120 --json \
            >"$at/$id.$var.$r.json" 2>"$at/$id.$var.$r.err"
        echo $? >"$at/$id.$var.$r.rc"
    }
    rep=1
    while [ -z "$AT_WHY" ] && [ $rep -le $REPS ]; do
        [ -n "$AUTH_ADDR$TLS_ADDR" ] && at_run mget plain $rep "http://$OCI_ADDR" "$OCI_PID" -s manifest-get -c 64 -d $D
        [ -n "$AUTH_ADDR" ] && at_run mget auth $rep "http://$AUTH_ADDR" "$AUTH_PID" \
            --user "bench:$AT_PASS" -s manifest-get -c 64 -d $D
        if [ -n "$AUTH_ADDR" ]; then
            # 50 clients logging in at once (bcrypt cost 12 each), while the
            # token-authenticated manifest GETs are measured: the password
            # checks run on a low-priority pool and must not raise their p99
            rm -f "$at/storm.stop"
            STORM_PIDS=""
            i=0
            while [ $i -lt 50 ]; do
                (n=0; while [ ! -e "$at/storm.stop" ] && [ $n -lt 200 ]; do
                    curl -s -o /dev/null -m 30 -u "storm:wrong-$i" \
                        "http://$AUTH_ADDR/auth/token?service=ocireg&scope=repository:bench/x:pull"
                    n=$((n + 1)); done) &
                STORM_PIDS="$STORM_PIDS $!"
                i=$((i + 1))
            done
            at_run mget storm $rep "http://$AUTH_ADDR" "$AUTH_PID" \
                --user "bench:$AT_PASS" -s manifest-get -c 64 -d $D
            : >"$at/storm.stop"
            for p in $STORM_PIDS; do wait "$p" 2>/dev/null; done
        fi
        [ -n "$TLS_ADDR" ] && at_run mget tls $rep "https://$TLS_ADDR" "$TLS_PID" \
            --cacert "$CA" -s manifest-get -c 64 -d $D
        [ -n "$TLS_ADDR$TLSOFF_ADDR" ] && at_run pull plain $rep "http://$OCI_ADDR" "$OCI_PID" -s pull -c 1 -S "$AT_SIZE" -n $AT_N
        [ -n "$TLS_ADDR" ] && at_run pull tls $rep "https://$TLS_ADDR" "$TLS_PID" \
            --cacert "$CA" -s pull -c 1 -S "$AT_SIZE" -n $AT_N
        [ -n "$TLSOFF_ADDR" ] && at_run pull tlsoff $rep "https://$TLSOFF_ADDR" "$TLSOFF_PID" \
            --cacert "$CA" -s pull -c 1 -S "$AT_SIZE" -n $AT_N
        rep=$((rep + 1))
    done
    for p in $AT_PIDS; do stop_pid "$p"; done
    AT_PIDS=""
    say "auth and TLS: runs done"
fi

echo
echo "== auth and TLS (ocireg): each beside plain ocireg, interleaved, $REPS repetition(s), mean =="
[ -n "$AUTH_WHY" ] && echo "auth: skipped: $AUTH_WHY"
[ -n "$TLS_WHY" ] && echo "TLS: skipped: $TLS_WHY"
[ -n "$TLSOFF_WHY" ] && echo "TLS with ktls = off: skipped: $TLSOFF_WHY"
if [ -n "$AT_WHY" ]; then
    echo "skipped: $AT_WHY"
else
    scheme=$(sed -n 's/^regbench: auth: \([a-z]*\).*/\1/p' "$at"/mget.auth.*.err 2>/dev/null | head -1)
    AUTH_LABEL="auth (${scheme:-?})"
    [ "$scheme" = bearer ] && AUTH_LABEL="bearer token"
    [ "$scheme" = basic ] && echo "note: ocireg asked for Basic, not Bearer: every request carries the password"
    : >"$at/facts"
    files=""
    for f in "$at"/*.json; do
        [ -f "$f" ] || continue
        n=${f##*/}
        if [ -s "$f" ]; then files="$files $f"; else echo "${n%.json} ERROR -" >>"$at/facts"; fi
    done
    for f in $files; do
        n=${f##*/}
        jq -r "$JQ_FACTS" "$f" >>"$at/facts" 2>/dev/null || echo "${n%.json} ERROR -" >>"$at/facts"
    done
    # rows: LABEL|ID|VARIANT|KEY|TARGET (the least variant/plain ratio, or empty)
    awk '
function fmt(m) { if (m >= 1000 || m <= -1000) return sprintf("%.0f", m); return sprintf("%.4g", m) }
function val(id, var, key,   k) {
    if ((id SUBSEP var) in err) return "ERROR"
    k = id SUBSEP var SUBSEP key
    if (k in cnt) return fmt(sum[k] / cnt[k])
    return "skipped"
}
FNR == NR {
    split($1, p, "."); id = p[1]; var = p[2]
    if ($2 == "ERROR") { err[id SUBSEP var] = 1; next }
    sum[id SUBSEP var SUBSEP $2] += $3; cnt[id SUBSEP var SUBSEP $2]++
    next
}
FNR == 1 { printf "%-56s %10s %10s %7s %8s\n%-56s %10s %10s %7s %8s\n", "figure", "plain", "variant", "ratio", "target", "------", "-----", "-------", "-----", "------" }
{
    split($0, r, "|")
    a = val(r[2], "plain", r[4]); b = val(r[2], r[3], r[4])
    q = "-"
    if (a ~ /^-?[0-9.e+]+$/ && b ~ /^-?[0-9.e+]+$/ && a + 0 != 0) q = sprintf("%.2f", b / a)
    t = ""
    if (r[5] != "") t = (q == "-") ? ">=" r[5] : (q + 0 >= r[5] + 0 ? ">=" r[5] " ok" : ">=" r[5] " NO")
    printf "%-56s %10s %10s %7s %8s\n", r[1], a, b, q, t
}' "$at/facts" - <<EOF
manifest GET by tag, 64 conns, $AUTH_LABEL: req/s|mget|auth|req_per_s|0.90
manifest GET by tag, 64 conns, $AUTH_LABEL: p99 ms|mget|auth|p99|
manifest GET, $AUTH_LABEL: server CPU us/op|mget|auth|cpu_us_per_op|
manifest GET, $AUTH_LABEL, 50 logins (bcrypt 12) at once: req/s|mget|storm|req_per_s|
manifest GET, $AUTH_LABEL, 50 logins at once: p99 ms (<= 10)|mget|storm|p99|
manifest GET by tag, 64 conns, TLS: req/s|mget|tls|req_per_s|0.70
manifest GET by tag, 64 conns, TLS: p99 ms|mget|tls|p99|
manifest GET, TLS: server CPU us/op|mget|tls|cpu_us_per_op|
pull $AT_SIZE single stream, TLS (ktls auto): MB/s|pull|tls|mb_per_s|
pull $AT_SIZE, TLS (ktls auto): server CPU s/GB|pull|tls|cpu_s_per_gb|
pull $AT_SIZE single stream, TLS (ktls off): MB/s|pull|tlsoff|mb_per_s|
pull $AT_SIZE, TLS (ktls off): server CPU s/GB|pull|tlsoff|cpu_s_per_gb|
EOF
    echo "(ratio = variant / plain: above 1 is better for req/s and MB/s, worse for ms and CPU)"
    if [ -n "$KTLS_AUTO_LOG$KTLS_OFF_LOG" ]; then
        echo "kTLS, as the server logged it (a probe pulling one blob at log level info):"
        [ -n "$KTLS_AUTO_LOG" ] && { echo "  ktls = auto:"; echo "$KTLS_AUTO_LOG"; }
        [ -n "$KTLS_OFF_LOG" ] && { echo "  ktls = off:"; echo "$KTLS_OFF_LOG"; }
    fi
    list_errors "$at" "auth and TLS errors"
fi

# ---- latency isolation ------------------------------------------------------------
# manifest GET by tag on 64 connections, alone, then while 4 clients push ISO_SIZE
# blobs (each commit fsyncs the whole blob): no event loop may wait on a commit
# (docs/server.md "Requests that wait"). ocireg only (the reference would take
# as long again). The loaded GETs run in ISO_WIN-second windows from the moment
# the pushes' bytes reach the server until the pushes have ended (commits
# included); p99 is the worst window's, max the largest of all.
ISO_SIZE=${ISO_SIZE:-1G} ISO_WIN=2
iso_fig() {   # JSON files -> "p99 max" (worst p99, largest max) or "ERROR"
    jq -rs 'if length > 0 and all(.[]; .results[0].ok // false) then
        "\([.[].results[0].latency_ms.p99] | max) \([.[].results[0].latency_ms.max] | max) \(length)"
        else "ERROR" end' "$@" 2>/dev/null || echo ERROR
}
if [ -n "$OCI_ADDR" ] && [ -z "$OCI_DIED" ]; then
    iso=$tmp/iso
    mkdir -p "$iso"
    say "latency isolation: manifest GET alone"
    "$RB" -u "http://$OCI_ADDR" -s manifest-get -c 64 -d $ISO_WIN --timeout 60 --json \
        >"$iso/alone.json" 2>"$iso/alone.err"
    say "latency isolation: 4 pushes of $ISO_SIZE (the client hashes them first)"
    # the server's own view: its event loops' lag histogram (/metrics), before and after
    curl -s "http://$OCI_ADDR/metrics" >"$iso/metrics.0" 2>/dev/null
    "$RB" -u "http://$OCI_ADDR" -s push -c 4 -S "$ISO_SIZE" -n 4 --timeout 600 --json \
        >"$iso/push.json" 2>"$iso/push.err" &
    ISO_PUSH=$!
    # the pushes' bytes arrive: an upload file of 64 MiB or more
    i=0
    while kill -0 "$ISO_PUSH" 2>/dev/null && [ $i -lt 1200 ]; do
        [ -n "$(find "$tmp/oci-root/uploads" -type f -size +65536k 2>/dev/null | head -1)" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    w=0
    while kill -0 "$ISO_PUSH" 2>/dev/null && [ $w -lt 300 ]; do
        w=$((w + 1))
        "$RB" -u "http://$OCI_ADDR" -s manifest-get -c 64 -d $ISO_WIN --timeout 60 --json \
            >"$iso/load.$w.json" 2>"$iso/load.$w.err"
    done
    wait "$ISO_PUSH"
    push_rc=$?
    curl -s "http://$OCI_ADDR/metrics" >"$iso/metrics.1" 2>/dev/null
    set -- $(iso_fig "$iso/alone.json")
    A_P99=${1:-ERROR} A_MAX=${2:-}
    if [ $w -gt 0 ]; then set -- $(iso_fig "$iso"/load.*.json); else set -- ERROR; fi
    L_P99=${1:-ERROR} L_MAX=${2:-}
    push_mbs=$(jq -r '.results[0] | if .ok then .mb_per_s else "ERROR" end' "$iso/push.json" 2>/dev/null)
    echo
    echo "== latency isolation (ocireg): manifest GET by tag, 64 conns; targets under load: p99 <= 10 ms, max <= 50 ms =="
    printf '%-52s %12s %12s\n' "state" "p99 ms" "max ms"
    printf '%-52s %12s %12s\n' "alone" "$A_P99" "${A_MAX:-}"
    printf '%-52s %12s %12s\n' "while 4 clients push $ISO_SIZE ($w windows)" "$L_P99" "${L_MAX:-}"
    printf 'the 4 pushes: %s MB/s (exit %s)\n' "${push_mbs:-ERROR}" "$push_rc"
    # ticks of the workers' 100 ms lag timer during the pushes, those late by
    # more than 10 ms, and the largest lateness since the start
    awk 'FNR == 1 { f++ }
         /^ocireg_http_event_loop_lag_seconds_count/ { n[f] = $2 }
         /^ocireg_http_event_loop_lag_seconds_bucket\{le="0.01"\}/ { ok[f] = $2 }
         /^ocireg_http_event_loop_lag_max_seconds/ { mx = $2 }
         END { if (f == 2) printf "server event loops meanwhile: %d lag-timer ticks, %d late by more than 10 ms; largest lag since start %.1f ms\n", n[2] - n[1], (n[2] - n[1]) - (ok[2] - ok[1]), mx * 1000 }' \
        "$iso/metrics.0" "$iso/metrics.1" 2>/dev/null
    [ "$push_rc" = 0 ] || { sed 's/^/    /' "$iso/push.err" | head -5; nerr=$((nerr + 1)); }
    for f in "$iso"/alone.json "$iso"/load.*.json; do
        [ -f "$f" ] || continue
        jq -e '.results[0].ok' "$f" >/dev/null 2>&1 && continue
        echo "  ${f##*/}:"
        jq -r '.results[]? | select(.ok | not) | .errors[] | "    \(.message) (x\(.count))"' "$f" 2>/dev/null
        sed 's/^/    /' "${f%.json}.err" | head -3
        nerr=$((nerr + 1))
    done
    say "latency isolation done"
fi
# ---- gc -------------------------------------------------------------------------------
# docs/gc.md "gc in the server": a store of GC_BLOBS blobs and GC_MANIFESTS tagged
# manifests over GC_REPOS repositories, built through the storage API by
# build/gcbench (offline, seconds); then a full pass (duration, peak RSS), an
# incremental pass after 100 manifest deletes, and manifest GETs (by tag, 16
# connections, 1 s windows, worst window's p99) while the server runs a pass
# over GC_LOAD_DELETES deleted manifests (asked with SIGUSR1); last, the gc
# stress test for GC_STRESS_SECONDS. Full mode (or BENCH_GC=1) only: the store
# alone takes ~10 s to build and ~500 MB of disk.
GCB=$top/$BUILD/gcbench
GC_STRESS=$top/$BUILD/tests/integration/gc_stress
if [ "$MODE" != full ] && [ "${BENCH_GC:-0}" != 1 ]; then
    echo
    echo "gc: skipped in quick mode (BENCH=full or BENCH_GC=1 runs it)"
elif [ ! -x "$GCB" ]; then
    echo
    echo "gc: $GCB is not built"
    nerr=$((nerr + 1))
else
    GC_BLOBS=${GC_BLOBS:-100000} GC_MANIFESTS=${GC_MANIFESTS:-10000} GC_REPOS=${GC_REPOS:-100}
    GC_LOAD_DELETES=${GC_LOAD_DELETES:-2000}
    gcr=$tmp/gc-root
    say "gc: building a store of $GC_BLOBS blobs, $GC_MANIFESTS manifests"
    pop=$("$GCB" populate "$gcr" "$GC_BLOBS" "$GC_MANIFESTS" "$GC_REPOS" 2>&1) || nerr=$((nerr + 1))
    say "gc: full pass"
    full=$("$GCB" pass "$gcr" --full --repos "$GC_REPOS" 2>&1) || nerr=$((nerr + 1))
    say "gc: incremental pass after 100 deletes"
    incr=$("$GCB" pass "$gcr" --delete 100 --repos "$GC_REPOS" 2>&1 | grep -v '^deleted') ||
        nerr=$((nerr + 1))
    "$GCB" pass "$gcr" --delete "$GC_LOAD_DELETES" --no-pass --repos "$GC_REPOS" >/dev/null 2>&1 ||
        nerr=$((nerr + 1))
    L_P99=ERROR L_MAX="" A_P99=ERROR pass_line="" w=0
    if start_oci gc http debug OCIREG_GC_INTERVAL=0 OCIREG_GC_GRACE=0; then
        GC_PID=$V_PID AT_PIDS="$AT_PIDS $V_PID"
        gcl=$tmp/gcl
        mkdir -p "$gcl"
        "$RB" -u "http://$V_ADDR" -s manifest-get -c 16 -d 2 --timeout 60 --json \
            >"$gcl/alone.json" 2>"$gcl/alone.err"
        kill -USR1 "$GC_PID"
        while [ $w -lt 120 ]; do
            w=$((w + 1))
            "$RB" -u "http://$V_ADDR" -s manifest-get -c 16 -d 1 --timeout 60 --json \
                >"$gcl/load.$w.json" 2>"$gcl/load.$w.err"
            grep -q 'maint gc: .* removed in ' "$tmp/gc.log" && break
        done
        pass_line=$(grep 'maint gc: .* removed in ' "$tmp/gc.log" | tail -1 | sed 's/.*maint gc: //')
        set -- $(iso_fig "$gcl/alone.json")
        A_P99=${1:-ERROR}
        set -- $(iso_fig "$gcl"/load.*.json)
        L_P99=${1:-ERROR} L_MAX=${2:-}
        stop_pid "$GC_PID"
    else
        echo "gc: the server did not start on the store: $V_WHY"
        nerr=$((nerr + 1))
    fi
    echo
    echo "== gc (ocireg): $(echo "$pop" | sed 's/^populate: //') =="
    printf '%-44s %s\n' "full pass (target < 10 s, RSS ~ candidates)" "$(echo "$full" | sed 's/^pass (full): //')"
    printf '%-44s %s\n' "incremental pass after 100 deletes (< 1 s)" "$(echo "$incr" | sed 's/^pass: //')"
    printf '%-44s %s\n' "server pass over $GC_LOAD_DELETES deleted manifests" "${pass_line:-none ended (ERROR)}"
    printf '%-44s p99 %s ms alone; p99 %s ms, max %s ms during the pass (%d windows)\n' \
        "manifest GET by tag, 16 conns (p99 <= 10 ms)" "$A_P99" "$L_P99" "${L_MAX:-}" "$w"
    [ -n "$pass_line" ] || nerr=$((nerr + 1))
    for f in "$tmp"/gcl/alone.json "$tmp"/gcl/load.*.json; do
        [ -f "$f" ] || continue
        jq -e '.results[0].ok' "$f" >/dev/null 2>&1 && continue
        echo "  ${f##*/}:"
        jq -r '.results[]? | select(.ok | not) | .errors[] | "    \(.message) (x\(.count))"' "$f" 2>/dev/null
        sed 's/^/    /' "${f%.json}.err" | head -3
        nerr=$((nerr + 1))
    done
    if [ -x "$GC_STRESS" ]; then
        s=${GC_STRESS_SECONDS:-300}
        say "gc: stress test for $s s"
        if OCIREG_BIN=$OCIREG GC_STRESS_SECONDS=$s "$GC_STRESS" --verbose >"$tmp/gc-stress.txt" 2>&1; then
            echo "gc stress ($s s): passed; $(grep -o 'gc_stress: [0-9]* pushes.*' "$tmp/gc-stress.txt" | head -1)"
        else
            echo "gc stress ($s s): FAILED"
            grep -E '\[(ERR|FAIL|----)\]' "$tmp/gc-stress.txt" | head -15 | sed 's/^/    /'
            nerr=$((nerr + 1))
        fi
    fi
    say "gc done"
fi
# ---- machine ceilings ---------------------------------------------------------------
echo
echo "machine ceilings:"
"$RB" --ceilings | sed 's/^/  /'
if command -v openssl >/dev/null 2>&1; then
    openssl speed -evp sha256 -seconds 1 -bytes 16384 2>/dev/null |
        awk '/^sha256/ {printf "  openssl speed sha256 (16 KiB blocks): %.1f MB/s\n", $(NF) / 1000}'
fi
dd if=/dev/zero of="$tmp/dd.bin" bs=1M count=256 conv=fsync 2>"$tmp/dd.txt" >/dev/null
awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) { printf "  fsync'"'"'d disk write (dd 256 MiB, conv=fsync): %.1f MB/s\n", 268.435456 / $(i - 1); exit } }' "$tmp/dd.txt" | sed 's/,//'
rm -f "$tmp/dd.bin"
say "ceilings done"
[ -z "$OCI_ADDR" ] && echo "note: ocireg unavailable ($OCI_WHY): only the reference was measured"
[ -n "$REF_DIED" ] && echo "note: $REF_DIED"
[ -n "$OCI_DIED" ] && { echo "note: $OCI_DIED"; nerr=$((nerr + 1)); }
[ $nerr -gt 0 ] && exit 1
exit 0
