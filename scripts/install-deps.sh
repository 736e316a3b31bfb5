#!/bin/sh
# install-deps.sh - install every Debian package that ocireg's build, tests and
# benchmarks need. Idempotent: prints nothing and touches nothing when all are
# present. Must run as root on Debian 12 (or use sudo) when something is missing.
# (podman is also the engine of make image; debootstrap makes its Debian base
# where Docker Hub is out of reach: scripts/make-base-image.sh)
set -eu

# clang and libclang-rt-14-dev: make fuzz (libFuzzer) and make CC=clang;
# libcrypt-dev: bcrypt of htpasswd entries; apache2-utils: htpasswd(1) for the
# auth tests; podman, containerd, docker.io: the stock clients of the auth and
# TLS tests (each started by its test with its own directories); prometheus:
# promtool, which checks the /metrics exposition (tests/integration/metrics_test.c)
PKGS="build-essential libcrypt-dev apache2-utils podman containerd docker.io pkg-config clang libclang-rt-14-dev
libevent-dev libssl-dev libjansson-dev libsqlite3-dev libarchive-dev liburing-dev
libcriterion-dev libcurl4-openssl-dev libhttp-parser-dev libcap-dev debootstrap
docker-registry skopeo busybox-static runc crun curl jq libarchive-tools
e2fsprogs util-linux iproute2 procps prometheus"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install:$missing" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# a fresh machine has no package lists; refresh once, quietly
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# docker-registry's package starts a system service on :5000, which would take
# the port that `make run` uses; the tests start their own instances.
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
    # prometheus's package starts a server on :9090; only promtool is wanted
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    # likewise docker.io's and containerd's system daemons: the tests start
    # their own, each with its own directories and socket
    $SUDO systemctl disable --now docker.socket docker containerd >/dev/null 2>&1 || true
fi
