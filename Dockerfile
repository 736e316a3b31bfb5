# ocireg container image: the registry server and ocirun-lite on Debian 12.
#
#   make image                         # podman or docker; works without Docker Hub
#   docker build -t ocireg .           # where debian:12-slim can be pulled
#   docker run -d -p 5000:5000 -v ocireg-data:/var/lib/ocireg ocireg
#
# BASE is the Debian 12 image both stages start from. `make image` passes
# localhost/debian:12-slim, a debootstrap of bookworm made on this machine
# (scripts/make-base-image.sh); the default is Docker Hub's.
# Only classic Dockerfile instructions: docker's legacy builder, BuildKit and
# podman/buildah all build it. With podman, pass --format docker: the OCI image
# format has no HEALTHCHECK and podman drops it otherwise.
ARG BASE=debian:12-slim

# ---- build: the -dev packages of the Makefile's PKGS and the compiler ------------
FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        build-essential pkg-config libcrypt-dev libevent-dev libssl-dev libjansson-dev \
        libsqlite3-dev libarchive-dev liburing-dev libcurl4-openssl-dev libhttp-parser-dev \
        libcap-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# the sources the two binaries are made of (not tests/ or docs/: editing those
# keeps the compiled layer cached)
COPY Makefile registry.conf ./
COPY common common/
COPY storage storage/
COPY auth auth/
COPY gc gc/
COPY server server/
COPY tools tools/
RUN make NODEPS=1 -j"$(nproc)" build/ocireg build/ocirun-lite
# /out holds what the runtime stage takes:
# - the binaries;
# - registry.conf as shipped, with the two settings a container needs: listen on
#   every address of the container, data in the volume (checked: a changed line
#   in registry.conf fails the build instead of shipping the defaults);
# - runtime-packages: the Debian packages owning every shared library the
#   binaries load (ldd, so the libraries of libraries too), so that the runtime
#   stage holds exactly those and follows the Makefile's link line by itself.
RUN set -e; mkdir -p /out \
 && cp build/ocireg build/ocirun-lite /out/ \
 && sed -e 's|^# listen = 127\.0\.0\.1:5000$|listen = 0.0.0.0:5000|' \
        -e 's|^# root = \./data$|root = /var/lib/ocireg|' registry.conf >/out/registry.conf \
 && grep -qx 'listen = 0.0.0.0:5000' /out/registry.conf \
 && grep -qx 'root = /var/lib/ocireg' /out/registry.conf \
 && for b in /out/ocireg /out/ocirun-lite; do ldd "$b"; done \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u >/tmp/libs \
 && while read -r lib; do \
        p=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")") \
        || { echo "no package owns $lib" >&2; exit 1; }; \
        echo "${p%%:*}"; \
    done </tmp/libs | sort -u >/out/runtime-packages \
 && cat /out/runtime-packages

# ---- runtime: the libraries, the binaries, a user, the volume --------------------
FROM ${BASE}
COPY --from=build /out/runtime-packages /tmp/runtime-packages
# busybox (0.8 MB, needs only libc) gives the HEALTHCHECK its HTTP client: curl
# would bring libcurl and a dozen libraries more. ca-certificates: outgoing
# HTTPS (webhook endpoints).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        $(cat /tmp/runtime-packages) busybox ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 ocireg \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ocireg --no-create-home \
        --shell /usr/sbin/nologin ocireg \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/ocireg \
 && install -d -m 0755 /etc/ocireg
COPY --from=build /out/ocireg /out/ocirun-lite /usr/local/bin/
COPY --from=build /out/registry.conf /etc/ocireg/registry.conf

# numeric, so that Kubernetes' runAsNonRoot can tell it is not root
USER 10001:10001
WORKDIR /var/lib/ocireg
VOLUME /var/lib/ocireg
EXPOSE 5000
# /readyz answers 200 when the storage is writable, the metadata answers and the
# server is not draining. The port follows OCIREG_SERVER_LISTEN when that is
# set (e.g. with --network host); a server speaking TLS needs its own check.
# wget exits 1 on any status but 2xx. No -T: Debian 12's busybox (1.35) wget
# crashes with it; --timeout bounds the check instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "p=${OCIREG_SERVER_LISTEN##*:}; exec busybox wget -q -O /dev/null http://127.0.0.1:${p:-5000}/readyz"]
LABEL org.opencontainers.image.title="ocireg" \
      org.opencontainers.image.description="self-hosted OCI registry (and ocirun-lite)"
ENTRYPOINT ["ocireg"]
CMD ["serve", "-c", "/etc/ocireg/registry.conf"]
