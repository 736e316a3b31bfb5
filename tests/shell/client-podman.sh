#!/bin/sh
# client-podman.sh - podman logs into the registry over TLS (test CA made now)
# with an htpasswd user, pushes the busybox fixture, pulls it back and logs out.
#
#   sh tests/shell/client-podman.sh                          # against build/ocireg
#   CLIENT_TARGET=reference sh tests/shell/client-podman.sh  # against docker-registry
#
# Setup (CA, certificate, htpasswd, registry start) is tests/shell/lib-auth.sh.
# podman gets its own --root, --runroot and --tmpdir in the work folder (vfs
# storage: nothing is mounted) and its own containers.conf; push and pull need
# no OCI runtime. Checks:
#   - podman pull oci:FIX/oci:busybox (the fixture into podman's store)
#   - login without the CA is refused by TLS verification
#   - login with a wrong password fails
#   - podman login --cert-dir --authfile
#   - podman push (digest from --digestfile): the registry holds that digest
#   - podman rmi --all, podman pull back: the pulled image's digest and repo
#     digest are the pushed one
#   - podman logout, then a pull of the private repository fails
# Prints "N passed, N failed" last; exits non-zero when a check failed.
# shellcheck source-path=SCRIPTDIR source=lib-auth.sh
. "$(dirname "$0")/lib-auth.sh"
auth_init client-podman
auth_need podman skopeo openssl htpasswd curl jq
auth_fixtures
auth_tls
auth_users
auth_start_registry

log=$work/podman.log
auth=$work/auth.json
pd=$work/podman
mkdir -p "$pd/root" "$pd/run" "$pd/tmp"
# MACHINE-NOTES: crun fails here, runc with cgroupfs works; only push/pull run
# below, but podman reads the engine settings at every start
cat >"$pd/containers.conf" <<EOF
[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$pd/events.log"
EOF
CONTAINERS_CONF=$pd/containers.conf
export CONTAINERS_CONF
pm() {
    echo "+ podman $*" >>"$log"
    auth_run podman --root "$pd/root" --runroot "$pd/run" --tmpdir "$pd/tmp" \
        --storage-driver vfs "$@" >>"$log" 2>&1
}
img=$REG/private/podman:v1

if pm pull -q "oci:$FIX/oci:busybox" && pm tag "$(tail -1 "$log")" "$img"; then
    ok "podman pull oci:FIX/oci:busybox, tagged $img"
else
    tail -3 "$log"
    bad "podman pull oci:FIX/oci:busybox"
    auth_finish
fi

if printf '%s' "$PUSH_PASS" | pm login --authfile "$work/untrusted.json" \
    -u "$PUSH_USER" --password-stdin "$REG"; then
    bad "login without the test CA succeeded"
elif tail -3 "$log" | grep -q 'certificate signed by unknown authority'; then
    ok "login without the test CA: refused by TLS verification"
else
    tail -3 "$log"
    bad "login without the test CA failed, but not on the certificate"
fi

if printf 'wrong-%s' "$PUSH_PASS" | pm login --cert-dir "$CERT_DIR" --authfile "$auth" \
    -u "$PUSH_USER" --password-stdin "$REG"; then
    bad "login with a wrong password succeeded"
elif auth_refused "$log"; then
    ok "login with a wrong password fails"
else
    tail -3 "$log"
    bad "login with a wrong password failed, but not on authentication"
fi

if printf '%s' "$PUSH_PASS" | pm login --cert-dir "$CERT_DIR" --authfile "$auth" \
    -u "$PUSH_USER" --password-stdin "$REG" &&
    jq -e --arg r "$REG" '.auths[$r].auth' "$auth" >/dev/null 2>&1; then
    ok "podman login --cert-dir --authfile"
else
    tail -3 "$log"
    bad "podman login"
fi

pushed=""
if pm push --cert-dir "$CERT_DIR" --authfile "$auth" --digestfile "$work/digest" "$img"; then
    pushed=$(cat "$work/digest")
    got=$(auth_remote_digest private/podman:v1)
    if [ -n "$pushed" ] && [ "$got" = "$pushed" ]; then
        ok "podman push: the registry holds $pushed"
    else
        tail -3 "$work/inspect.log"
        bad "podman push: digest file '$pushed', registry '$got'"
    fi
else
    tail -3 "$log"
    bad "podman push"
fi

# every image goes: the oci: pull's own name would keep the layers and the
# digest of the fixture in the store
if pm rmi --all && [ -z "$(auth_run podman --root "$pd/root" --runroot "$pd/run" --tmpdir "$pd/tmp" \
    --storage-driver vfs images -q 2>>"$log")" ]; then
    ok "podman rmi --all: the store is empty"
else
    tail -3 "$log"
    bad "podman rmi"
fi

if pm pull --cert-dir "$CERT_DIR" --authfile "$auth" "$img"; then
    pm image inspect --format '{{.Digest}} {{join .RepoDigests ","}}' "$img"
    got=$(tail -1 "$log" | cut -d' ' -f1)
    rd=$(tail -1 "$log" | cut -d' ' -f2)
    if [ -n "$pushed" ] && [ "$got" = "$pushed" ] && [ "$rd" = "$REG/private/podman@$pushed" ]; then
        ok "podman pull back: digest $got, the pushed one"
    else
        bad "podman pull back: digest '$got' (repo digests $rd), pushed '$pushed'"
    fi
else
    tail -3 "$log"
    bad "podman pull back"
fi

if pm logout --authfile "$auth" "$REG" &&
    ! jq -e --arg r "$REG" '.auths[$r]' "$auth" >/dev/null 2>&1; then
    pm rmi --all
    if pm pull --cert-dir "$CERT_DIR" --authfile "$auth" "$img"; then
        bad "pull of a private repository after podman logout succeeded"
    elif auth_refused "$log"; then
        ok "podman logout: a pull of the private repository then fails"
    else
        tail -3 "$log"
        bad "pull after podman logout failed, but not on authentication"
    fi
else
    tail -3 "$log"
    bad "podman logout"
fi
auth_finish
