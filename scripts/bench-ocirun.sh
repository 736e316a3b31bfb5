#!/bin/bash
# bench-ocirun.sh - container start+exit latency: `ocirun-lite run busybox true`
# (image already in the store) against runc and crun running the bundle that
# `ocirun-lite bundle` writes for the same image, and a bare
# `unshare --fork --pid --mount --uts --ipc --net chroot ROOTFS /bin/true`
# (the floor: namespaces + exec, no mounts, cgroups or capability work).
# A "rt_run driver" row times the runtime alone: a 20-line C program linked
# against $BUILD/lib/libocirun.a that calls rt_run once (overlay of the bundle's
# rootfs, --rm), i.e. without the CLI's start-up and image-store work.
#
#   BUILD=build N=30 scripts/bench-ocirun.sh
#
# Runs are interleaved (one of each tool per round, so a busy neighbour hits all
# alike) and the table gives the median, min and max wall time per tool in ms.
# crun 1.8 refuses hybrid cgroup hosts, so on those it runs as
# `unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified;
# exec crun run ...'` (the extra unshare+sh is part of its figure; the
# "unshare+sh" row measures that wrapper alone, with /bin/true).
#
# Setup: the busybox fixture image (tests/fixtures/build.sh) is pushed with
# skopeo to a reference registry (docker-registry) on a free loopback port,
# pulled once into a private ocirun-lite store, and the registry is stopped
# before timing: the warm runs cannot touch the network.
# Without the ocirun-lite binary (or registry tools), the script builds the
# busybox rootfs and a runc bundle itself, measures what it can, and says
# what is missing. Needs root.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
N=${N:-30}
OCIRUN=${OCIRUN_BIN:-$top/$BUILD/ocirun-lite}
FIX=${OCIREG_FIXTURES:-$top/$BUILD/fixtures}
work=$(mktemp -d /tmp/bench-ocirun.XXXXXX)
srv_pid=""
missing=()

cleanup() {
    if [ -n "$srv_pid" ]; then
        kill "$srv_pid" 2>/dev/null
        wait "$srv_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

if [ "$(id -u)" != 0 ]; then
    echo "bench-ocirun: needs root (namespaces, mounts, cgroups); skipped"
    exit 0
fi

# ---- the image in an ocirun-lite store (or a hand-made rootfs) ---------------
have_ocirun=0
ref=""
store="$work/store"
if [ -x "$OCIRUN" ]; then
    if [ ! -f "$FIX/expected.txt" ]; then
        "$top/tests/fixtures/build.sh" "$FIX" >"$work/fixtures.log" 2>&1 ||
            { cat "$work/fixtures.log"; missing+=("fixtures (tests/fixtures/build.sh failed)"); }
    fi
    if [ -f "$FIX/expected.txt" ] && command -v docker-registry >/dev/null &&
        command -v skopeo >/dev/null; then
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        cat >"$work/reg.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/reg
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
        docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
        srv_pid=$!
        for _ in $(seq 100); do
            curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
            sleep 0.1
        done
        ref=127.0.0.1:$port/bench/busybox:latest
        if skopeo --insecure-policy copy --dest-tls-verify=false "oci:$FIX/oci:busybox" \
            "docker://$ref" >"$work/skopeo.log" 2>&1 &&
            "$OCIRUN" --root "$store" pull --insecure -q "$ref" >"$work/pull.log" 2>&1 &&
            "$OCIRUN" --root "$store" bundle --insecure "$ref" "$work/bundle" true \
                >"$work/bundle.log" 2>&1; then
            have_ocirun=1
        else
            cat "$work/skopeo.log" "$work/pull.log" "$work/bundle.log" 2>/dev/null | tail -20
            missing+=("ocirun-lite pull/bundle of the fixture failed (see above)")
        fi
        kill "$srv_pid" 2>/dev/null
        wait "$srv_pid" 2>/dev/null
        srv_pid=""
    else
        missing+=("docker-registry/skopeo/fixtures for the ocirun-lite run (image cannot be pulled)")
    fi
else
    missing+=("$OCIRUN (the ocirun-lite binary: make BUILD=$BUILD)")
fi

if [ "$have_ocirun" = 0 ]; then
    # a runc bundle by hand: busybox rootfs + `runc spec` with args ["true"]
    mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/dev" \
        "$work/bundle/rootfs/sys" "$work/bundle/rootfs/tmp"
    cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$work/bundle/rootfs/bin/$a"
    done
    (cd "$work/bundle" && runc spec)
    jq '.process.args = ["true"] | .process.terminal = false' "$work/bundle/config.json" \
        >"$work/bundle/c.json" && mv "$work/bundle/c.json" "$work/bundle/config.json"
fi
rootfs="$work/bundle/rootfs"

# ---- a driver for rt_run alone ---------------------------------------------------
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
        $(pkg-config --libs jansson libcurl libarchive openssl sqlite3 2>/dev/null) -lcap \
        >"$work/drv.log" 2>&1; then
        driver="$work/drv"
    else
        tail -5 "$work/drv.log"
        missing+=("rt_run driver (does not build against $BUILD/lib)")
    fi
else
    missing+=("rt_run driver ($BUILD/lib/libocirun.a not built)")
fi

# ---- the contenders --------------------------------------------------------------
hybrid=0
# hybrid: a v1 tmpfs at /sys/fs/cgroup with systemd's v2 tree mounted beside
if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then
    hybrid=1
fi
names=()
cmds=()
add() { names+=("$1"); cmds+=("$2"); }
[ "$have_ocirun" = 1 ] &&
    add "ocirun-lite run" "\"$OCIRUN\" --root \"$store\" run --rm --pull never \"$ref\" true"
[ -n "$driver" ] && add "rt_run driver (runtime only)" "\"$driver\" \"$rootfs\" \"$work/drvstate\""
if command -v runc >/dev/null; then
    add "runc run" "runc --root \"$work/runc\" run -b \"$work/bundle\" bench-runc-\$i"
else
    missing+=("runc")
fi
if command -v crun >/dev/null; then
    if [ "$hybrid" = 1 ]; then
        add "crun run (unshare+sh)" "unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; exec crun --root \"$work/crun\" run -b \"$work/bundle\" bench-crun-\$i'"
        add "unshare+sh (crun wrapper)" "unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; exec /bin/true'"
    else
        add "crun run" "crun --root \"$work/crun\" run -b \"$work/bundle\" bench-crun-\$i"
    fi
else
    missing+=("crun")
fi
add "unshare+chroot (floor)" "unshare --fork --pid --mount --uts --ipc --net chroot \"$rootfs\" /bin/true"

# check each once, and drop the ones that fail rather than timing errors
i=0
keep_n=()
keep_c=()
for k in "${!names[@]}"; do
    if eval "${cmds[$k]}" >"$work/check.log" 2>&1; then
        keep_n+=("${names[$k]}")
        keep_c+=("${cmds[$k]}")
    else
        echo "bench-ocirun: '${names[$k]}' fails here, left out:"
        tail -5 "$work/check.log"
        missing+=("${names[$k]} (fails on this machine)")
    fi
done

# ---- interleaved rounds ---------------------------------------------------------
for k in "${!keep_n[@]}"; do : >"$work/t$k"; done
for ((i = 1; i <= N; i++)); do
    for k in "${!keep_n[@]}"; do
        t0=$EPOCHREALTIME
        eval "${keep_c[$k]}" >/dev/null 2>&1
        t1=$EPOCHREALTIME
        echo "$t0 $t1" | awk '{ printf "%.3f\n", ($2 - $1) * 1000 }' >>"$work/t$k"
    done
done

echo
echo "container start+exit, busybox 'true', $N interleaved runs each (ms)"
printf '%-28s %9s %9s %9s\n' tool median min max
for k in "${!keep_n[@]}"; do
    sort -n "$work/t$k" | awk -v name="${keep_n[$k]}" '
        { v[NR] = $1 }
        END {
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%-28s %9.2f %9.2f %9.2f\n", name, med, v[1], v[NR]
        }'
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo
    for m in "${missing[@]}"; do echo "not measured: $m"; done
fi
exit 0
