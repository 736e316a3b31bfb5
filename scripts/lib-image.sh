# shellcheck shell=bash
# lib-image.sh - what make-base-image.sh, build-image.sh and test-image.sh share:
# which engine builds and runs the image, and the private storage podman uses.
# Sourced by bash, never run. The caller sets `top` to the source tree first.
#
# Environment:
#   IMAGE_ENGINE  podman or docker (default: podman when installed, else docker)
#   IMAGE         the image built (default localhost/ocireg:latest)
#   BASE_IMAGE    the Debian base the Dockerfile's ARG BASE receives (default
#                 localhost/debian:12-slim, made by make-base-image.sh when missing)
#   IMAGE_STATE   podman's private storage (default $top/build/podman)
#   IMAGE_CACHE   where the base tarball is kept, made once per machine
#                 (default /var/cache/ocireg when writable, else
#                 $top/build/image-cache)
#
# podman never touches the system's store (/var/lib/containers): it gets its own
# --root, --runroot and --tmpdir under IMAGE_STATE, so repeated builds in one tree
# reuse the base and the layers, concurrent test runs of other checkouts or of
# the other test suites never see them, and `make clean` removes everything.
# Its containers.conf holds what MACHINE-NOTES.md found podman run needs here
# (runc: crun refuses the hybrid cgroups; cgroupfs: no systemd; default_ulimits:
# RLIMIT_NOFILE/NPROC can only be lowered). docker has no such knobs: it uses
# the daemon it finds.

IMAGE=${IMAGE:-localhost/ocireg:latest}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian:12-slim}
IMAGE_STATE=${IMAGE_STATE:-$top/build/podman}
if [ -z "${IMAGE_CACHE:-}" ]; then
    if mkdir -p /var/cache/ocireg 2>/dev/null && [ -w /var/cache/ocireg ]; then
        IMAGE_CACHE=/var/cache/ocireg
    else
        IMAGE_CACHE=$top/build/image-cache
    fi
fi

if [ -z "${IMAGE_ENGINE:-}" ]; then
    if command -v podman >/dev/null 2>&1; then
        IMAGE_ENGINE=podman
    elif command -v docker >/dev/null 2>&1; then
        IMAGE_ENGINE=docker
    else
        echo "image: neither podman nor docker is installed (sh scripts/install-deps.sh)" >&2
        exit 1
    fi
fi

# Limits of the containers: the engines' defaults (1048576 files) are above
# this shell's hard limits, and raising a limit is refused on this machine (no
# CAP_SYS_RESOURCE), so runc fails. Open files: this shell's hard limit (the
# most a registry can use here). Processes: 4096 (a server runs at most 129
# threads; higher values, though below this shell's hard limit, were refused
# here by runc as well). podman run takes them from containers.conf, podman
# build from --ulimit.
IMAGE_NOFILE=$(ulimit -Hn)
[ "$IMAGE_NOFILE" = unlimited ] && IMAGE_NOFILE=1048576
IMAGE_NPROC=$(ulimit -Hu)
{ [ "$IMAGE_NPROC" = unlimited ] || [ "$IMAGE_NPROC" -gt 4096 ]; } && IMAGE_NPROC=4096

# engine ARGS...: the engine with this tree's storage and settings
engine() {
    if [ "$IMAGE_ENGINE" = podman ]; then
        CONTAINERS_CONF=$IMAGE_STATE/containers.conf podman \
            --root "$IMAGE_STATE/root" --runroot "$IMAGE_STATE/run" \
            --tmpdir "$IMAGE_STATE/tmp" --storage-driver overlay "$@"
    else
        docker "$@"
    fi
}

# image_setup: the private podman folders and their containers.conf
image_setup() {
    mkdir -p "$IMAGE_CACHE"
    [ "$IMAGE_ENGINE" = podman ] || return 0
    mkdir -p "$IMAGE_STATE/root" "$IMAGE_STATE/run" "$IMAGE_STATE/tmp"
    cat >"$IMAGE_STATE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$IMAGE_NOFILE:$IMAGE_NOFILE", "nproc=$IMAGE_NPROC:$IMAGE_NPROC"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$IMAGE_STATE/events.log"
EOF
}

# image_exists NAME: 0 when the engine's store holds NAME
image_exists() {
    engine image inspect "$1" >/dev/null 2>&1
}
