#!/bin/bash
# test-image.sh - run the container image built by `make image` and check it
# (`make test-image`, which builds the image first).
#
#   bash scripts/test-image.sh
#
# Checks:
#   - the image's configuration: a numeric non-root USER, HEALTHCHECK on
#     /readyz, port 5000 exposed, volume /var/lib/ocireg, entrypoint ocireg
#   - every shared library of ocireg and ocirun-lite resolves in the image (ldd)
#   - /etc/ocireg/registry.conf is the repository's registry.conf with exactly
#     two lines changed: listen = 0.0.0.0:5000, root = /var/lib/ocireg
#   - the container started with the README's port mapping (-p
#     127.0.0.1:PORT:5000) and a read-only root (as contrib/kubernetes.yaml
#     runs it) turns healthy: its HEALTHCHECK passes
#   - the server runs as uid 10001, inside (exec id -u) and as seen from the
#     host (top's huser of every process)
#   - skopeo pushes the busybox fixture (tests/fixtures/build.sh) into it and
#     pulls it back: the pulled manifest has the fixture's digest, every blob
#     comes back byte-identical
#   - what the server stored in the volume belongs to its user
#   - it stops on SIGTERM (PID 1 in the container) with exit status 0
# The container is removed by its id, with its anonymous volume, at exit.
#
# Network: podman's default bridge with the port published on 127.0.0.1 is how
# the README runs the image. When the engine cannot start it so (no CNI or
# iptables), or the published port leads nowhere (dockerd with --bridge=none
# accepts -p and publishes nothing), the container shares the host's network
# instead and the server listens on 127.0.0.1:PORT through OCIREG_SERVER_LISTEN,
# which the HEALTHCHECK follows. The mode taken is printed.
# Health: without systemd podman runs no health timers, so the test runs the
# image's check itself (podman healthcheck run), which records the status that
# inspect shows; dockerd runs the checks itself (interval lowered to 1 s).
# Environment: scripts/lib-image.sh (IMAGE_ENGINE, IMAGE, IMAGE_STATE);
# OCIREG_FIXTURES (default build/fixtures, built when missing).
# Prints "N passed, N failed" last; exits non-zero when a check failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-image.sh
. "$top/scripts/lib-image.sh"
image_setup
FIX=${OCIREG_FIXTURES:-$top/build/fixtures}
pass=0
fail=0
cid=""
work=$(mktemp -d /tmp/ocireg-test-image.XXXXXX)
log=$work/engine.log

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    if [ -n "$cid" ]; then
        engine rm -f -v "$cid" >>"$log" 2>&1 || echo "test-image: could not remove container $cid"
    fi
    rm -rf "$work"
    echo "$pass passed, $fail failed"
    # explicit: a bare exit in a trap returns the status from before the trap
    [ "$fail" -eq 0 ] && exit 0
    exit 1
}
trap finish EXIT
# e ARGS...: the engine, its output kept in the log (and stdout for captures)
e() {
    echo "+ $IMAGE_ENGINE $*" >>"$log"
    engine "$@" 2>>"$log"
}
show_log() { tail -"${1:-5}" "$log" | sed 's/^/    /'; }

for t in skopeo jq curl sha256sum; do
    command -v "$t" >/dev/null || { bad "missing tool: $t"; exit; }
done
if ! image_exists "$IMAGE"; then
    bad "no image $IMAGE (make image)"
    exit
fi

# ---- the image's configuration ---------------------------------------------
cfg=$(e image inspect --format '{{json .Config}}' "$IMAGE")
user=$(echo "$cfg" | jq -r '.User // ""')
case "$user" in
    "" | 0 | 0:* | root | root:*) bad "image user '$user' is root" ;;
    [0-9]*:[0-9]* | [0-9]*) ok "image user $user (numeric, not root)" ;;
    *) bad "image user '$user' is not numeric (runAsNonRoot cannot check it)" ;;
esac
# podman's .Config leaves the docker-format Healthcheck out of its JSON
hc=$(e image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" | jq -r '.Test // [] | join(" ")')
case "$hc" in
    *"/readyz"*) ok "HEALTHCHECK on /readyz" ;;
    *) bad "HEALTHCHECK '$hc' (the image must be built in the docker format)" ;;
esac
if echo "$cfg" | jq -e '(.ExposedPorts | has("5000/tcp")) and (.Volumes | has("/var/lib/ocireg"))
        and .Entrypoint == ["ocireg"]' >/dev/null; then
    ok "EXPOSE 5000, VOLUME /var/lib/ocireg, ENTRYPOINT ocireg"
else
    bad "image config: $cfg"
fi

# ---- what is inside ---------------------------------------------------------
out=$(e run --rm --network none --entrypoint ldd "$IMAGE" \
    /usr/local/bin/ocireg /usr/local/bin/ocirun-lite)
if [ -n "$out" ] && ! echo "$out" | grep -q 'not found'; then
    ok "every shared library of ocireg and ocirun-lite resolves in the image"
else
    echo "$out" | grep 'not found' | sed 's/^/    /'
    show_log
    bad "shared libraries missing in the image"
fi

e run --rm --network none --entrypoint cat "$IMAGE" /etc/ocireg/registry.conf \
    >"$work/registry.conf"
changed=$(diff "$top/registry.conf" "$work/registry.conf" | grep '^>' | LC_ALL=C sort | tr '\n' '|')
if [ "$changed" = "> listen = 0.0.0.0:5000|> root = /var/lib/ocireg|" ] &&
    [ "$(diff "$top/registry.conf" "$work/registry.conf" | grep -c '^<')" = 2 ]; then
    ok "/etc/ocireg/registry.conf: the shipped file, listen 0.0.0.0:5000 and root /var/lib/ocireg"
else
    diff "$top/registry.conf" "$work/registry.conf" | head -10 | sed 's/^/    /'
    bad "/etc/ocireg/registry.conf differs from registry.conf by more than listen and root"
fi

# ---- run it -----------------------------------------------------------------
# a read-only root with a /tmp of its own, as contrib/kubernetes.yaml runs it:
# the server writes only to its volume
opts=(--read-only --tmpfs /tmp)
[ "$IMAGE_ENGINE" = docker ] && opts+=(--health-interval 1s)

# start MODE: the container on a random port (a taken one fails the start,
# then another is tried); MODE bridge publishes 5000 on 127.0.0.1:PORT, host
# shares the host's network; sets cid, port and net
start() {
    local _
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 10000))
        if [ "$1" = bridge ]; then
            cid=$(e run -d "${opts[@]}" -p "127.0.0.1:$port:5000" "$IMAGE") &&
                net="bridge, published on 127.0.0.1:$port"
        else
            cid=$(e run -d "${opts[@]}" --network host \
                -e "OCIREG_SERVER_LISTEN=127.0.0.1:$port" "$IMAGE") &&
                net="host network, listening on 127.0.0.1:$port"
        fi && { cid=$(echo "$cid" | tail -1); return 0; }
        cid=""
    done
    return 1
}
# wait_healthy: the image's own check passes (up to 60 s: the server recovers
# first); sets status
wait_healthy() {
    local deadline=$((SECONDS + 60))
    status=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        if [ "$IMAGE_ENGINE" = podman ]; then
            e healthcheck run "$cid" >/dev/null
        fi
        status=$(e inspect --format '{{.State.Health.Status}}' "$cid")
        [ "$status" = healthy ] && return 0
        [ "$(e inspect --format '{{.State.Running}}' "$cid")" = true ] || return 1
        sleep 0.5
    done
    return 1
}
# reachable: the host reaches the server (a published port may go nowhere:
# dockerd with --bridge=none accepts -p and publishes nothing)
reachable() {
    curl -s -o /dev/null -m 5 --retry 5 --retry-connrefused --retry-delay 1 \
        "http://127.0.0.1:$port/v2/"
}

if start bridge; then
    if wait_healthy && ! reachable; then
        echo "test-image: 127.0.0.1:$port leads nowhere on the bridge: host network instead"
        e rm -f -v "$cid" >/dev/null
        cid=""
        start host
    fi
else
    start host
fi
if [ -z "$cid" ]; then
    show_log 10
    bad "the container does not start"
    exit
fi
echo "container ${cid:0:12}: $net"
REG=127.0.0.1:$port

if wait_healthy; then
    ok "the container turns healthy (HEALTHCHECK on /readyz)"
else
    echo "    /readyz answers: $(curl -s -m 5 -w ' HTTP %{http_code}' "http://$REG/readyz")"
    e logs "$cid" 2>&1 | tail -5 | sed 's/^/    /'
    bad "the container is '$status', not healthy"
fi

uid_in=$(e exec "$cid" id -u)
if [ "$IMAGE_ENGINE" = podman ]; then
    husers=$(e top "$cid" huser | tail -n +2 | sort -u | tr '\n' ' ')
else
    husers=$(e top "$cid" -o pid,uid | awk 'NR > 1 { print $2 }' | sort -u | tr '\n' ' ')
fi
if [ "$uid_in" = 10001 ] && [ "$husers" = "10001 " ]; then
    ok "the server runs as uid 10001 (exec id -u; top huser: $husers)"
else
    e top "$cid" 2>&1 | sed 's/^/    /'
    bad "the server runs as '$uid_in' inside, host users '$husers'"
fi

# ---- push and pull through it ----------------------------------------------
if [ ! -f "$FIX/expected.txt" ]; then
    "$top/tests/fixtures/build.sh" "$FIX" >"$work/fixtures.log" 2>&1 ||
        { tail -5 "$work/fixtures.log"; bad "fixture build"; exit; }
fi
want=$(awk '$1 == "tag" && $2 == "busybox" { print $4 }' "$FIX/expected.txt")
if skopeo copy --quiet --dest-tls-verify=false --digestfile "$work/digest" \
    "oci:$FIX/oci:busybox" "docker://$REG/test/busybox:v1" >>"$log" 2>&1 &&
    [ "$(cat "$work/digest")" = "$want" ]; then
    ok "skopeo push of the busybox fixture: $want"
else
    show_log
    bad "skopeo push: digest '$(cat "$work/digest" 2>/dev/null)', want '$want'"
fi
if skopeo copy --quiet --src-tls-verify=false \
    "docker://$REG/test/busybox:v1" "oci:$work/pulled:busybox" >>"$log" 2>&1; then
    got=$(jq -r '.manifests[0].digest' "$work/pulled/index.json")
    same=1
    for b in "$work"/pulled/blobs/sha256/*; do
        cmp -s "$b" "$FIX/oci/blobs/sha256/${b##*/}" || { same=0; echo "    differs: ${b##*/}"; }
    done
    if [ "$got" = "$want" ] && [ "$same" = 1 ]; then
        ok "skopeo pull back: digest $got, every blob byte-identical"
    else
        bad "skopeo pull back: digest '$got', want '$want'"
    fi
else
    show_log
    bad "skopeo pull back"
fi

others=$(e exec "$cid" find /var/lib/ocireg ! -user 10001)
stored=$(e exec "$cid" find /var/lib/ocireg -type f | wc -l)
if [ "$stored" -gt 0 ] && [ -z "$others" ]; then
    ok "the volume holds $stored files, every one the server user's"
else
    echo "$others" | head -5 | sed 's/^/    /'
    bad "the volume: $stored files, others' files: '$others'"
fi

# ---- stop -------------------------------------------------------------------
if e stop -t 10 "$cid" >/dev/null &&
    [ "$(e inspect --format '{{.State.ExitCode}}' "$cid")" = 0 ]; then
    ok "stops on SIGTERM with exit status 0"
else
    e logs "$cid" 2>&1 | tail -5 | sed 's/^/    /'
    bad "stop: exit status '$(e inspect --format '{{.State.ExitCode}}' "$cid")'"
fi
