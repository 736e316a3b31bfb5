#!/bin/bash
# make-base-image.sh - make the Debian 12 base image the Dockerfile builds on,
# for machines that cannot pull debian:12-slim from Docker Hub.
#
#   bash scripts/make-base-image.sh
#
# Does nothing when the engine's store already holds $BASE_IMAGE (default
# localhost/debian:12-slim). Otherwise imports $IMAGE_CACHE/debian-12-slim.tar,
# made first when missing: `debootstrap --variant=minbase bookworm` from
# $DEBIAN_MIRROR (default http://deb.debian.org/debian) into a temporary folder,
# trimmed the way debian:12-slim is (no manuals, documentation or translations,
# no package lists), packed with numeric owners. The download thus happens once
# per machine (IMAGE_CACHE defaults to /var/cache/ocireg); an import takes
# seconds. Needs root and debootstrap for the first run.
#
# The import is named localhost/debian:12-slim, not debian:12-slim: a short name
# is what Docker Hub's image answers to, and an image made here is not that
# image. A fully qualified localhost/ name can never be pulled from or confused
# with a registry's; `make image` passes it as the Dockerfile's ARG BASE, whose
# default stays debian:12-slim for a plain `docker build .` elsewhere.
# Environment: see scripts/lib-image.sh (IMAGE_ENGINE, BASE_IMAGE, IMAGE_STATE,
# IMAGE_CACHE); DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-image.sh
. "$top/scripts/lib-image.sh"
image_setup

if image_exists "$BASE_IMAGE"; then
    exit 0
fi

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
tarball=$IMAGE_CACHE/debian-12-slim.tar

if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null 2>&1 ||
        { echo "make-base-image: debootstrap is missing (sh scripts/install-deps.sh)" >&2; exit 1; }
    [ "$(id -u)" = 0 ] ||
        { echo "make-base-image: debootstrap needs root" >&2; exit 1; }
    t0=$(date +%s)
    echo "make-base-image: debootstrap --variant=minbase bookworm from $MIRROR (once per machine)" >&2
    work=$(mktemp -d "$IMAGE_CACHE/debootstrap.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    root=$work/rootfs
    if ! debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$work/log" 2>&1; then
        tail -20 "$work/log" >&2
        echo "make-base-image: debootstrap failed" >&2
        exit 1
    fi
    # what debian:12-slim leaves out, and keeps out of later installs
    cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    find "${root:?}/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "${root:?}/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "${root:?}/usr/share/man/"* "${root:?}/usr/share/info/"* \
        "${root:?}/usr/share/locale/"* "${root:?}/usr/share/lintian/"*
    printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/no-languages"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
EOF
    rm -rf "${root:?}/var/lib/apt/lists/"* "${root:?}/var/cache/apt/archives/"*.deb \
        "${root:?}/var/cache/apt/"*.bin "${root:?}/var/log/"*.log "${root:?}/dev/"*
    mkdir -p "$root/var/lib/apt/lists/partial"
    # no host name or resolver of this machine in the image: the engine sets both
    : >"$root/etc/hostname"
    rm -f "$root/etc/resolv.conf"
    # written beside, then renamed: a concurrent run sees no half-written tarball
    tar --numeric-owner --xattrs -C "$root" -cf "$work/base.tar" .
    mv "$work/base.tar" "$tarball"
    rm -rf "$work"
    trap - EXIT
    echo "make-base-image: $tarball made in $(( $(date +%s) - t0 )) s" >&2
fi

engine import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null
echo "make-base-image: imported $tarball as $BASE_IMAGE" >&2
