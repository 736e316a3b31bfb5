#!/bin/sh
# ocirun-run.sh - `ocirun-lite run` and `ocirun-lite bundle` end to end, on the
# fixture images, as a user would run them.
#
#   sh tests/shell/ocirun-run.sh
#
# The fixture layout (tests/fixtures/build.sh) is pushed with skopeo to ocireg
# ($OCIREG_BIN; the reference docker-registry only when ocireg is not built) on a
# free loopback port, pulled
# into a private store with `ocirun-lite pull --insecure`, and then run with
# --pull never. Checks: busybox echo; cfgtest's config (Entrypoint, Cmd, Env,
# WorkingDir, User 1000:1000, exit 7) and -e/-w/-u/--entrypoint overrides; the
# whiteout image's own check script (WHITEOUT-OK); --memory OOM kill -> 137;
# --pids bounds a fork loop; SIGTERM to ocirun-lite reaches the container's
# trap; --net none shows only lo; --hostname; --rm; and a bundle of the same
# image under runc (and crun, inside a private mount namespace without the
# cgroup v2 mount, on hybrid hosts) prints what `run` prints.
# Needs root. Skips (0 passed, 0 failed) without the binary or the tools.
# Environment: OCIRUN_BIN, OCIREG_FIXTURES (as tests/run-all.sh sets them).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${OCIRUN_BIN:-$top/build/ocirun-lite}
FIX=${OCIREG_FIXTURES:-$top/build/fixtures}
pass=0
fail=0
srv_pid=""
work=$(mktemp -d /tmp/ocirun-run.XXXXXX)

cleanup() {
    if [ -n "$srv_pid" ]; then
        kill "$srv_pid" 2>/dev/null
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
    [ "$fail" -eq 0 ]
    exit $?
}
skip() { echo "skipped: $*"; finish; }

[ "$(id -u)" = 0 ] || skip "needs root"
[ -x "$BIN" ] || skip "no ocirun-lite binary at $BIN"
for t in docker-registry skopeo curl python3; do
    command -v $t >/dev/null || skip "$t not installed"
done
if [ ! -f "$FIX/expected.txt" ]; then
    "$top/tests/fixtures/build.sh" "$FIX" >"$work/fixtures.log" 2>&1 ||
        { cat "$work/fixtures.log"; bad "fixture build"; finish; }
fi

# ---- registry with the fixtures, pulled into a private store -----------------------
# ocireg itself (started here on 127.0.0.1:0, stopped by PID); the reference
# registry only when no ocireg binary was built.
OCIREG=${OCIREG_BIN:-$top/build/ocireg}
if [ -x "$OCIREG" ]; then
    OCIREG_SERVER_LISTEN=127.0.0.1:0 OCIREG_STORAGE_ROOT="$work/reg" \
        "$OCIREG" serve --ready-file "$work/ready" >"$work/reg.log" 2>&1 &
    srv_pid=$!
    i=0
    until [ -s "$work/ready" ]; do
        i=$((i + 1))
        [ $i -gt 100 ] && { cat "$work/reg.log"; bad "ocireg start"; finish; }
        sleep 0.1
    done
    port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$work/ready")
    echo "registry: ocireg on 127.0.0.1:$port"
else
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$work/reg" "$port" >"$work/reg.yml"
    docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
    srv_pid=$!
    i=0
    until curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 100 ] && { cat "$work/reg.log"; bad "reference registry start"; finish; }
        sleep 0.1
    done
    echo "registry: reference docker-registry on 127.0.0.1:$port (no ocireg binary)"
fi
reg=127.0.0.1:$port
store="$work/store"
oc() { "$BIN" --root "$store" "$@"; }
for t in busybox cfgtest whiteout; do
    if skopeo --insecure-policy copy --dest-tls-verify=false "oci:$FIX/oci:$t" \
        "docker://$reg/fx/$t:latest" >>"$work/skopeo.log" 2>&1 &&
        oc pull --insecure -q "$reg/fx/$t:latest" >>"$work/pull.log" 2>&1; then
        :
    else
        tail -5 "$work/skopeo.log" "$work/pull.log"
        bad "push+pull $t"
        finish
    fi
done
BB=$reg/fx/busybox:latest
CFG=$reg/fx/cfgtest:latest
WH=$reg/fx/whiteout:latest
# the multi-arch index (--all: both platform manifests): run must pick linux/amd64
MA=$reg/fx/multiarch:latest
if skopeo --insecure-policy copy --all --dest-tls-verify=false "oci:$FIX/oci:multiarch" \
    "docker://$MA" >>"$work/skopeo.log" 2>&1 &&
    oc pull --insecure -q "$MA" >>"$work/pull.log" 2>&1; then
    :
else
    tail -5 "$work/skopeo.log" "$work/pull.log"
    bad "push+pull multiarch"
    finish
fi

# expect NAME WANT_EXIT WANT_OUTPUT -- ocirun-lite args...
expect() {
    name=$1 want_rc=$2 want_out=$3
    shift 4
    out=$(oc run --pull never "$@" 2>&1)
    rc=$?
    if [ "$rc" = "$want_rc" ] && [ "$out" = "$want_out" ]; then
        ok "$name"
    else
        bad "$name: exit $rc (want $want_rc), output:"
        printf '%s\n' "$out" | head -20
    fi
}

nl='
'
expect "run busybox echo" 0 "hi" -- --rm "$BB" echo hi
expect "cfgtest image config" 7 "hello ocirun${nl}1000${nl}1000${nl}/home/app" -- --rm "$CFG"
expect "cfgtest -e overrides Env" 7 "hello there${nl}1000${nl}1000${nl}/home/app" -- \
    --rm -e GREETING=there "$CFG"
expect "cfgtest -u -w and CMD ARGS" 0 "0 0 /tmp" -- --rm -u root -w /tmp "$CFG" \
    'echo $(id -u) $(id -g) $(pwd)'
expect "--entrypoint drops the image Cmd" 0 "x" -- --rm --entrypoint /bin/echo "$CFG" x
expect "cfgtest user can read its home" 0 "$(printf 'hello\n')" -- --rm "$CFG" \
    'head -c 5 hello.txt; echo'
expect "whiteout image check script" 0 "WHITEOUT-OK" -- --rm "$WH"
expect "multiarch index runs the amd64 image" 0 "amd64" -- --rm "$MA"
expect "whiteout image in a user namespace" 0 "WHITEOUT-OK" -- --rm --userns "$WH"
expect "--hostname" 0 "box7" -- --rm --hostname box7 "$BB" hostname
expect "--net none: only lo, up" 0 "lo${nl}up" -- --rm "$BB" sh -c \
    "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ip link show lo | grep -q LOOPBACK,UP && echo up"
expect "--memory OOM kill is 137" 137 "" -- --rm --memory 32m "$BB" sh -c \
    'x=0123456789abcdef; i=0; while [ $i -lt 30 ]; do x=$x$x; i=$((i+1)); done; echo survived'
out=$(oc run --pull never --rm --pids 20 "$BB" sh -c \
    'i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); done; echo all-started' 2>&1)
rc=$?
case "$out" in
*all-started*) bad "--pids 20 did not bound the fork loop (exit $rc)" ;;
*fork*) [ "$rc" != 0 ] && ok "--pids bounds a fork loop" || bad "--pids: exit $rc" ;;
*) bad "--pids: unexpected output: $out" ;;
esac

# SIGTERM to ocirun-lite reaches the container's PID 1
# (not through the oc function: $! must be ocirun-lite itself, not a subshell)
"$BIN" --root "$store" run --pull never --rm --name sigtest "$BB" sh -c \
    'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.1; done' \
    >"$work/sig.out" 2>&1 &
rpid=$!
i=0
until grep -q ready "$work/sig.out" 2>/dev/null || [ $i -gt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM "$rpid"
wait "$rpid"
rc=$?
if [ "$rc" = 3 ] && grep -q got-term "$work/sig.out"; then
    ok "SIGTERM forwarded to PID 1"
else
    bad "SIGTERM: exit $rc, output: $(cat "$work/sig.out")"
fi

# --rm removes the container's state; without it the state stays
oc run --pull never --name keepme "$BB" true >/dev/null 2>&1
oc run --pull never --rm --name dropme "$BB" true >/dev/null 2>&1
if [ -d "$store/containers/keepme" ] && [ ! -e "$store/containers/dropme" ]; then
    ok "--rm removes the container dir, its absence keeps it"
else
    bad "--rm: $(ls "$store/containers" 2>&1)"
fi

# start-up cost (docs/ocirun-lite.md "Performance"): pull policy, probe cache,
# lazily loaded libraries, volatile upper layer for --rm
# default policy "missing": a cached image runs without the registry; the
# registry is plain HTTP and no --insecure is given, so any contact would fail
if oc run --rm "$BB" true >"$work/pm.log" 2>&1; then
    ok "--pull missing (default) runs the cached image without contacting the registry"
else
    bad "--pull missing with a cached image: $(cat "$work/pm.log")"
fi
if ! oc run --rm --pull always "$BB" true >"$work/pa.log" 2>&1 &&
    oc run --rm --pull always --insecure "$BB" true >>"$work/pa.log" 2>&1; then
    ok "--pull always contacts the registry (fails without --insecure, works with it)"
else
    bad "--pull always: $(cat "$work/pa.log")"
fi
if [ -f "$store/probe" ] && grep -q "^ocirun-probe v1 $(uname -r) " "$store/probe"; then
    ok "overlay probe result cached in ROOT/probe under the kernel release"
else
    bad "probe cache: $(cat "$store/probe" 2>&1)"
fi
if ldd "$BIN" | grep -q 'libcurl\|libarchive\|libcrypto'; then
    bad "the binary links libcurl/libarchive/libcrypto at start-up: $(ldd "$BIN" | grep 'curl\|archive\|crypto')"
else
    ok "libcurl, libarchive and libcrypto are not loaded at start-up (dlopen on first use)"
fi
# the root line of the container's mountinfo: " / / " then the super options
rm_opts=$(oc run --pull never --rm "$BB" cat /proc/self/mountinfo 2>&1 | awk '$5 == "/"')
keep_opts=$(oc run --pull never --name keepvol "$BB" cat /proc/self/mountinfo 2>&1 | awk '$5 == "/"')
case "$rm_opts|$keep_opts" in
*volatile*"|"*volatile*) bad "volatile without --rm: $keep_opts" ;;
*volatile*"|"*overlay*) ok "--rm mounts the overlay volatile (no syncfs on teardown), a kept container not" ;;
*) bad "volatile: --rm '$rm_opts' / kept '$keep_opts'" ;;
esac

# --rm: rootfs/upper/work live on a tmpfs in the container's own mount ns, so
# while it runs the container dir on disk holds config.json only, and what the
# container writes never reaches the store's disk; a kept container's upper
# layer is on disk
oc run --pull never --rm --name scratchy "$BB" \
    sh -c 'echo scratch-data >/written && cat /written && echo ready && sleep 3' \
    >"$work/scratch.out" 2>&1 &
spid=$!
i=0
until grep -q ready "$work/scratch.out" 2>/dev/null || [ $i -gt 100 ]; do sleep 0.1; i=$((i + 1)); done
during=$(cd "$store/containers/scratchy" 2>/dev/null && find . | sort | tr '\n' ' ')
ondisk=$(find "$store/containers" -name written 2>/dev/null)
wait "$spid"
src=$?
if [ "$src" = 0 ] && grep -q '^scratch-data$' "$work/scratch.out" && [ "$during" = ". ./config.json " ] &&
    [ -z "$ondisk" ] && [ ! -e "$store/containers/scratchy" ] && [ -d "$store/containers/keepme/upper" ]; then
    ok "--rm keeps rootfs/upper/work off the disk (tmpfs in the container's mount ns); kept containers' upper on disk"
else
    bad "--rm scratch: rc=$src during='$during' ondisk='$ondisk' out=$(cat "$work/scratch.out")"
fi

# ---- bundles under runc and crun -------------------------------------------------
bundle_same() {   # NAME REF [CMD...]
    name=$1 ref=$2
    shift 2
    want=$(oc run --pull never --rm --hostname bundlebox "$ref" "$@" 2>&1; echo "rc=$?")
    b="$work/bundle-$name"
    if ! oc bundle --pull never --hostname bundlebox "$ref" "$b" "$@" >"$work/bundle.log" 2>&1; then
        bad "bundle $name: $(tail -3 "$work/bundle.log")"
        return
    fi
    if command -v runc >/dev/null; then
        got=$(cd "$b" && runc --root "$work/runc" run "rt-$name-$$" </dev/null 2>&1; echo "rc=$?")
        [ "$got" = "$want" ] && ok "runc runs the $name bundle like run" ||
            bad "runc $name:${nl}$got${nl}--- run:${nl}$want"
    fi
    if command -v crun >/dev/null; then
        if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then
            got=$(cd "$b" && unshare -m --propagation private sh -c \
                "umount -l /sys/fs/cgroup/unified; exec crun --root '$work/crun' run 'ct-$name-$$'" \
                </dev/null 2>&1; echo "rc=$?")
        else
            got=$(cd "$b" && crun --root "$work/crun" run "ct-$name-$$" </dev/null 2>&1; echo "rc=$?")
        fi
        [ "$got" = "$want" ] && ok "crun runs the $name bundle like run" ||
            bad "crun $name:${nl}$got${nl}--- run:${nl}$want"
    fi
}
bundle_same cfgtest "$CFG"
bundle_same whiteout "$WH"
# /dev/core: runc links it only when the host has /proc/kcore, crun always
bundle_same ids "$CFG" 'hostname; id; grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status; ls /dev | grep -vx core | tr "\n" " "'

finish
