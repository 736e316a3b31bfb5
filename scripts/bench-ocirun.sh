#!/bin/bash
# bench-ocirun.sh - ocirun-lite against crun, runc and a bare unshare+chroot,
# on the three figures of issue 4:
#
#   warm   `ocirun-lite run --rm REF true` with the image in the store (default
#          pull policy "missing": no network), against runc and crun running
#          the bundle `ocirun-lite bundle` writes for the same image, and the
#          floor `unshare --fork --pid --mount --uts --ipc --net chroot ROOTFS
#          /bin/true`. Targets: <= crun's median and <= 1.5x the floor.
#   cold   `ocirun-lite run --rm REF true` into an empty store: probe, pull
#          (manifest, config, layer, every digest verified), unpack, run, from
#          ocireg on 127.0.0.1. Target: <= 100 ms.
#   big    `ocirun-lite pull` of the BIG=1 fixture (10,000 small files + 32 MiB
#          random, 34 MB compressed) into an empty store, against
#          `curl BLOB | bsdtar -x` of the same layers into the same filesystem,
#          on ext4 (the work disk, under /tmp) and on a private tmpfs.
#          Target: <= 1.2x curl|bsdtar. ocirun-lite also verifies every digest
#          and diff_id and syncfs()es the store before it reports success;
#          curl|bsdtar does neither (the "+sync" row adds a `sync -f`).
#
#   BUILD=build N=20 NCOLD=10 NBIG=2 scripts/bench-ocirun.sh
#
# Every figure is a median over interleaved rounds (one run of each contender
# per round, so a busy neighbour hits all alike), in ms. "rt_run" rows time the
# runtime alone (a small C driver calling rt_run on the bundle's rootfs, no CLI
# or store work). crun 1.8 refuses hybrid cgroup hosts; there it runs as
# `unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified;
# exec crun run ...'` and the wrapper's own cost is shown in its own row.
#
# The registry is $BUILD/ocireg (started here on 127.0.0.1:0, stopped by its
# PID); without it, docker-registry. The BIG=1 fixture is built once into
# $BUILD/fixtures-big (deterministic; ~20 s) and reused. Needs root.
#
# OCIRUN_BASE_BIN=/path/to/an/older/ocirun-lite adds that binary as one more
# contender in the same interleaved rounds ("before" rows): a before/after
# comparison that a busy machine cannot skew.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
N=${N:-20}
NCOLD=${NCOLD:-10}
NBIG=${NBIG:-2}
OCIRUN=${OCIRUN_BIN:-$top/$BUILD/ocirun-lite}
OCIREG=${OCIREG_BIN:-$top/$BUILD/ocireg}
BASE=${OCIRUN_BASE_BIN:-}
FIX=${OCIREG_FIXTURES:-$top/$BUILD/fixtures}
BIGFIX=${OCIRUN_BIG_FIXTURES:-$top/$BUILD/fixtures-big}
work=$(mktemp -d /tmp/bench-ocirun.XXXXXX)
srv_pid=""
tmpfs_mounted=0
missing=()

cleanup() {
    if [ -n "$srv_pid" ]; then
        kill "$srv_pid" 2>/dev/null
        wait "$srv_pid" 2>/dev/null
    fi
    [ "$tmpfs_mounted" = 1 ] && umount "$work/tmpfs" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

if [ "$(id -u)" != 0 ]; then
    echo "bench-ocirun: needs root (namespaces, mounts, cgroups); skipped"
    exit 0
fi
for t in "$OCIRUN" skopeo curl jq; do
    if ! command -v "$t" >/dev/null; then
        echo "bench-ocirun: $t is missing (make BUILD=$BUILD; scripts/install-deps.sh)"
        exit 1
    fi
done

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'; }
median() { sort -n "$1" | awk '{ v[NR] = $1 } END {
    if (!NR) { print "-"; exit }
    printf "%.1f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- fixtures --------------------------------------------------------------------
if [ ! -f "$FIX/expected.txt" ]; then
    "$top/tests/fixtures/build.sh" "$FIX" >"$work/fixtures.log" 2>&1 ||
        { cat "$work/fixtures.log"; exit 1; }
fi
if [ "$NBIG" -gt 0 ] && [ ! -f "$BIGFIX/expected.txt" ]; then
    echo "bench-ocirun: building the BIG=1 fixture into $BIGFIX (once)"
    BIG=1 "$top/tests/fixtures/build.sh" "$BIGFIX" >"$work/bigfix.log" 2>&1 ||
        { tail -5 "$work/bigfix.log"; missing+=("big fixture (build failed)"); NBIG=0; }
fi

# ---- the registry ------------------------------------------------------------------
addr=""
regname=""
if [ -x "$OCIREG" ]; then
    mkdir -p "$work/ocireg-data"
    OCIREG_SERVER_LISTEN=127.0.0.1:0 OCIREG_STORAGE_ROOT=$work/ocireg-data \
        "$OCIREG" serve --ready-file "$work/ocireg.ready" >"$work/reg.log" 2>&1 &
    srv_pid=$!
    for _ in $(seq 100); do
        [ -s "$work/ocireg.ready" ] && addr=$(head -n 1 "$work/ocireg.ready") && break
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.1
    done
    case "$addr" in *:[0-9]*) regname=ocireg ;; *) addr="" ;; esac
fi
if [ -z "$addr" ] && command -v docker-registry >/dev/null; then
    [ -n "$srv_pid" ] && { kill "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null; }
    missing+=("ocireg ($OCIREG not built or did not start): docker-registry used instead")
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$work/reg" "$port" >"$work/reg.yml"
    docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
    srv_pid=$!
    addr=127.0.0.1:$port
    for _ in $(seq 100); do
        curl -fs "http://$addr/v2/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    regname=docker-registry
fi
[ -n "$addr" ] || { echo "bench-ocirun: no registry could be started"; exit 1; }
ref=$addr/bench/busybox:latest
bigref=$addr/bench/big:latest
push() {
    skopeo --insecure-policy copy --dest-tls-verify=false "oci:$1" "docker://$2" \
        >>"$work/skopeo.log" 2>&1
}
push "$FIX/oci:busybox" "$ref" || { tail -5 "$work/skopeo.log"; exit 1; }
if [ "$NBIG" -gt 0 ] && ! push "$BIGFIX/oci:big" "$bigref"; then
    tail -5 "$work/skopeo.log"
    missing+=("big (skopeo push failed)")
    NBIG=0
fi

# ---- warm store, bundle, rt_run driver -----------------------------------------------
store=$work/store
O() { "$OCIRUN" --root "$1" "${@:2}"; }
if ! O "$store" pull --insecure -q "$ref" >"$work/pull.log" 2>&1 ||
    ! O "$store" bundle --insecure "$ref" "$work/bundle" true >"$work/bundle.log" 2>&1; then
    cat "$work/pull.log" "$work/bundle.log"
    exit 1
fi
rootfs=$work/bundle/rootfs
driver=""
if [ -f "$top/$BUILD/lib/libocirun.a" ] && [ -f "$top/$BUILD/lib/libocireg.a" ]; then
    cat >"$work/drv.c" <<'EOF'
#include "tools/ocirun-lite/runtime.h"
#include <stdio.h>
int main(int argc, char **argv) {
    const char *lower[1] = {argv[1]};
    const char *av[] = {"true", NULL};
    struct rt_rootfs r = {.lower = lower, .nlower = 1};
    struct rt_opts o = {.argv = av, .rm = 1};
    struct err e;
    int code = 1;
    if (argc < 3 || rt_run(argv[2], "{\"config\":{}}", &r, &o, &code, &e) < 0) {
        fprintf(stderr, "rt_run: %s\n", argc < 3 ? "usage" : e.msg);
        return 125;
    }
    return code;
}
EOF
    # shellcheck disable=SC2046
    if cc -O2 -D_GNU_SOURCE -I"$top" -o "$work/drv" "$work/drv.c" "$top/$BUILD/lib/libocirun.a" \
        "$top/$BUILD/lib/libocireg.a" -Wl,--as-needed \
        $(pkg-config --libs jansson openssl 2>/dev/null) -lcap >"$work/drv.log" 2>&1; then
        driver="$work/drv"
    else
        tail -5 "$work/drv.log"
        missing+=("rt_run driver (does not build against $BUILD/lib)")
    fi
fi

# ---- warm: interleaved rounds ----------------------------------------------------------
hybrid=0
mountpoint -q /sys/fs/cgroup/unified 2>/dev/null && hybrid=1
names=()
cmds=()
add() { names+=("$1"); cmds+=("$2"); }
add ocirun "O \"$store\" run --rm \"$ref\" true"
[ -n "$BASE" ] && add base "\"$BASE\" --root \"$store\" run --rm \"$ref\" true"
[ -n "$driver" ] && add rt_run "\"$driver\" \"$rootfs\" \"$work/drvstate\""
command -v runc >/dev/null && add runc "runc --root \"$work/runc\" run -b \"$work/bundle\" bench-runc-\$i"
if command -v crun >/dev/null; then
    if [ "$hybrid" = 1 ]; then
        add crun "unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; exec crun --root \"$work/crun\" run -b \"$work/bundle\" bench-crun-\$i'"
        add crunwrap "unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; exec /bin/true'"
    else
        add crun "crun --root \"$work/crun\" run -b \"$work/bundle\" bench-crun-\$i"
    fi
fi
add bare "unshare --fork --pid --mount --uts --ipc --net chroot \"$rootfs\" /bin/true"

declare -A W
i=0
for k in "${!names[@]}"; do
    if ! eval "${cmds[$k]}" >"$work/check.log" 2>&1; then
        echo "bench-ocirun: '${names[$k]}' fails here, left out:"
        tail -5 "$work/check.log"
        missing+=("${names[$k]} (fails on this machine)")
        cmds[$k]=""
    fi
    : >"$work/w.${names[$k]}"
done
for ((i = 1; i <= N; i++)); do
    for k in "${!names[@]}"; do
        [ -n "${cmds[$k]}" ] || continue
        t0=$EPOCHREALTIME
        eval "${cmds[$k]}" >/dev/null 2>&1
        t1=$EPOCHREALTIME
        ms "$t0" "$t1" >>"$work/w.${names[$k]}"
    done
done
for k in "${!names[@]}"; do
    W[${names[$k]}]=$(median "$work/w.${names[$k]}")
done

# ---- cold: pull + run into an empty store -----------------------------------------------
: >"$work/cold"
: >"$work/cold.base"
cold_one() { # BINARY OUTFILE
    rm -rf "$work/cold-store"
    t0=$EPOCHREALTIME
    "$1" --root "$work/cold-store" run --rm --insecure -q "$ref" true >"$work/cold.log" 2>&1
    rc=$?
    t1=$EPOCHREALTIME
    if [ "$rc" != 0 ]; then
        tail -3 "$work/cold.log"
        missing+=("cold pull+run with $1 (failed: exit $rc)")
        return 1
    fi
    ms "$t0" "$t1" >>"$2"
}
for ((i = 1; i <= NCOLD; i++)); do
    cold_one "$OCIRUN" "$work/cold" || { : >"$work/cold"; break; }
    [ -n "$BASE" ] && { cold_one "$BASE" "$work/cold.base" || : >"$work/cold.base"; }
done
COLD=$(median "$work/cold")
COLDB=$(median "$work/cold.base")

# ---- big: pull + unpack vs curl | bsdtar ------------------------------------------------
declare -A B
big_round() { # DIR(parent on the filesystem) TAG
    local d=$1 tag=$2 t0 t1 n=0
    rm -rf "$d/s" "$d/b"
    sync -f "$d" 2>/dev/null
    t0=$EPOCHREALTIME
    O "$d/s" pull --insecure -q "$bigref" >"$work/bigpull.log" 2>&1 ||
        { tail -3 "$work/bigpull.log"; return 1; }
    t1=$EPOCHREALTIME
    ms "$t0" "$t1" >>"$work/b.$tag.ocirun"
    rm -rf "$d/s"
    sync -f "$d" 2>/dev/null
    if [ -n "$BASE" ]; then
        t0=$EPOCHREALTIME
        "$BASE" --root "$d/s" pull --insecure -q "$bigref" >"$work/bigpull.log" 2>&1 ||
            { tail -3 "$work/bigpull.log"; return 1; }
        t1=$EPOCHREALTIME
        ms "$t0" "$t1" >>"$work/b.$tag.base"
        rm -rf "$d/s"
        sync -f "$d" 2>/dev/null
    fi
    t0=$EPOCHREALTIME
    for dg in $biglayers; do
        mkdir -p "$d/b/$n"
        curl -fsS "http://$addr/v2/bench/big/blobs/$dg" | bsdtar -xf - -C "$d/b/$n" || return 1
        n=$((n + 1))
    done
    t1=$EPOCHREALTIME
    sync -f "$d" 2>/dev/null
    ts=$EPOCHREALTIME
    ms "$t0" "$t1" >>"$work/b.$tag.bare"
    ms "$t0" "$ts" >>"$work/b.$tag.baresync"
    rm -rf "$d/b"
}
if [ "$NBIG" -gt 0 ] && ! command -v bsdtar >/dev/null; then
    missing+=("big (bsdtar missing: apt-get install libarchive-tools)")
    NBIG=0
fi
if [ "$NBIG" -gt 0 ]; then
    biglayers=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$addr/v2/bench/big/manifests/latest" | jq -r '.layers[].digest')
    mkdir -p "$work/ext4" "$work/tmpfs"
    mount -t tmpfs -o size=2g tmpfs "$work/tmpfs" && tmpfs_mounted=1
    for fs in ext4 tmpfs; do
        for x in ocirun base bare baresync; do : >"$work/b.$fs.$x"; done
    done
    for ((i = 1; i <= NBIG; i++)); do
        big_round "$work/ext4" ext4 || { missing+=("big on ext4 (failed)"); break; }
        [ "$tmpfs_mounted" = 1 ] && { big_round "$work/tmpfs" tmpfs ||
            { missing+=("big on tmpfs (failed)"); break; }; }
    done
    for fs in ext4 tmpfs; do
        for x in ocirun base bare baresync; do B[$fs.$x]=$(median "$work/b.$fs.$x"); done
    done
fi

# ---- the table -------------------------------------------------------------------------
met() { # VALUE LIMIT
    awk -v v="$1" -v l="$2" 'BEGIN { if (v == "-" || l == "-" || v == "" || l == "") print "?";
        else print (v + 0 <= l + 0) ? "yes" : "NO" }'
}
mul() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "-" || v == "") print "-"; else printf "%.1f\n", v * f }'; }
minof() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || a == "") print b; else if (b == "-" || b == "") print a;
    else print (a + 0 < b + 0) ? a : b }'; }
row() { printf '%-34s %9s %9s %9s %9s %11s %5s\n' "$@"; }

echo
echo "ocirun-lite benchmark: medians in ms; warm N=$N, cold N=$NCOLD, big N=$NBIG;" \
    "registry $regname on $addr; load average $(cut -d' ' -f1-3 /proc/loadavg)"
row figure ocirun-lite crun runc bare target met?
w_o=${W[ocirun]:--}
w_c=${W[crun]:--}
w_b=${W[bare]:--}
w_lim=$(minof "$w_c" "$(mul "$w_b" 1.5)")
row "warm run busybox true" "$w_o" "$w_c" "${W[runc]:--}" "$w_b" "<=$w_lim" "$(met "$w_o" "$w_lim")"
[ -n "$BASE" ] && row "  before (OCIRUN_BASE_BIN)" "${W[base]:--}" "" "" "" "" "$(met "${W[base]:--}" "$w_lim")"
row "  runtime alone (rt_run driver)" "${W[rt_run]:--}" "" "" "" "" ""
[ -n "${W[crunwrap]:-}" ] && row "  crun's unshare+sh wrapper alone" "" "${W[crunwrap]}" "" "" "" ""
row "cold pull+run busybox" "$COLD" - - - "<=100" "$(met "$COLD" 100)"
[ -n "$BASE" ] && row "  before (OCIRUN_BASE_BIN)" "$COLDB" "" "" "" "" "$(met "$COLDB" 100)"
if [ "$NBIG" -gt 0 ]; then
    for fs in ext4 tmpfs; do
        lim=$(mul "${B[$fs.bare]}" 1.2)
        row "big pull+unpack, $fs" "${B[$fs.ocirun]}" - - "${B[$fs.bare]}" "<=$lim" \
            "$(met "${B[$fs.ocirun]}" "$lim")"
        [ -n "$BASE" ] && row "  before (OCIRUN_BASE_BIN)" "${B[$fs.base]}" "" "" "" "" \
            "$(met "${B[$fs.base]}" "$lim")"
        lim=$(mul "${B[$fs.baresync]}" 1.2)
        row "  vs curl|bsdtar + sync -f, $fs" "${B[$fs.ocirun]}" - - "${B[$fs.baresync]}" "<=$lim" \
            "$(met "${B[$fs.ocirun]}" "$lim")"
    done
fi
echo "(bare: warm = unshare+chroot of the same rootfs; big = curl BLOB | bsdtar -x per layer)"
if [ "${#missing[@]}" -gt 0 ]; then
    echo
    for m in "${missing[@]}"; do echo "not measured / note: $m"; done
fi
exit 0
