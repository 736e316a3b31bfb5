#!/bin/bash
# build-image.sh - build the container image of the top-level Dockerfile
# (`make image`).
#
#   bash scripts/build-image.sh
#
# Makes the base first when the store lacks it (make-base-image.sh), then builds
# $IMAGE (default localhost/ocireg:latest) with podman, else docker
# (scripts/lib-image.sh has the environment and podman's private store). podman
# builds in the docker format, which keeps the HEALTHCHECK, with its layer
# cache: a rebuild after a source change only compiles and copies (the apt
# steps stay cached; from scratch the build stage downloads ~100 MB).
# RUN steps use the host's network: nothing is needed from the engine's
# network setup (CNI, iptables).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-image.sh
. "$top/scripts/lib-image.sh"
image_setup
bash "$top/scripts/make-base-image.sh"

t0=$(date +%s)
if [ "$IMAGE_ENGINE" = podman ]; then
    engine build --format docker --layers --pull=never --network host \
        --ulimit "nofile=$IMAGE_NOFILE:$IMAGE_NOFILE" --ulimit "nproc=$IMAGE_NPROC:$IMAGE_NPROC" \
        --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" -f "$top/Dockerfile" "$top"
else
    docker build --network host --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" \
        -f "$top/Dockerfile" "$top"
fi
echo "build-image: $IMAGE built with $IMAGE_ENGINE in $(( $(date +%s) - t0 )) s" >&2
