#!/bin/sh
# client-ctr.sh - containerd's ctr pushes the busybox fixture to the registry
# over TLS (test CA made now) with --user, and pulls it back, against a
# containerd this script starts with its own root, state and socket.
#
#   sh tests/shell/client-ctr.sh                          # against build/ocireg
#   CLIENT_TARGET=reference sh tests/shell/client-ctr.sh  # against docker-registry
#
# Setup (CA, certificate, htpasswd, registry start) is tests/shell/lib-auth.sh.
# containerd: its own config.toml (root, state, grpc/ttrpc sockets and the opt
# folder in the work folder, the CRI plugin disabled), started here, reached with
# `ctr -a SOCK`, stopped by its PID; when it cannot start the client is skipped.
# Checks:
# ctr reaches the registry through a hosts dir (--hosts-dir) whose hosts.toml
# names https://127.0.0.1:PORT (ctr 1.6 uses plain HTTP for 127.0.0.1 without
# it) and gets the CA by --tlscacert.
#   - ctr images import of the fixture as an OCI archive (skopeo oci-archive:)
#   - push without the CA is refused by TLS verification
#   - push with a wrong password fails
#   - ctr images push --user --tlscacert: the registry holds the fixture digest
#   - ctr images rm --sync: the image and its content are gone
#   - anonymous pull and pull with a wrong password fail
#   - ctr images pull --user (second user) --tlscacert: the image's digest is
#     the fixture's
# Prints "N passed, N failed" last; exits non-zero when a check failed.
# shellcheck source-path=SCRIPTDIR source=lib-auth.sh
. "$(dirname "$0")/lib-auth.sh"
auth_init client-ctr
auth_need containerd ctr skopeo openssl htpasswd curl jq
auth_fixtures
auth_tls
auth_users

cd_dir=$work/containerd
sock=$cd_dir/containerd.sock
mkdir -p "$cd_dir"
cat >"$cd_dir/config.toml" <<EOF
version = 2
root = "$cd_dir/root"
state = "$cd_dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$cd_dir/opt"
EOF
containerd --config "$cd_dir/config.toml" --log-level warn >"$cd_dir/containerd.log" 2>&1 &
cd_pid=$!
auth_track_pid "$cd_pid"
# shellcheck disable=SC2317 # run by auth_wait
cd_up() { timeout 5 ctr -a "$sock" version >/dev/null 2>&1 || ! kill -0 "$cd_pid" 2>/dev/null; }
if ! auth_wait 300 cd_up || ! kill -0 "$cd_pid" 2>/dev/null; then
    tail -20 "$cd_dir/containerd.log"
    skip "containerd did not start here (log above): ctr not tested"
    auth_finish
fi
echo "containerd $(auth_run ctr -a "$sock" version 2>/dev/null | awk '/Version/ { print $2; exit }') at $sock"

auth_start_registry

log=$work/ctr.log
c() { echo "+ ctr $*" >>"$log"; auth_run ctr -a "$sock" "$@" >>"$log" 2>&1; }
# ctr 1.6 speaks plain HTTP to 127.0.0.1/localhost on any port but 443, even with
# --tlscacert; a hosts.toml naming an https host is what makes it use TLS
hosts=$work/hosts
mkdir -p "$hosts/$REG"
cat >"$hosts/$REG/hosts.toml" <<EOF
server = "https://$REG"

[host."https://$REG"]
  capabilities = ["pull", "resolve", "push"]
EOF
img=$REG/private/ctr:v1

# the fixture as a one-image OCI archive whose ref.name is the target reference
if auth_run skopeo --insecure-policy copy -q "oci:$FIX/oci:busybox" "oci-archive:$work/busybox.tar:$img" \
    >>"$log" 2>&1 && c images import "$work/busybox.tar"; then
    ok "ctr images import of the fixture as $img"
else
    tail -3 "$log"
    bad "ctr images import"
    auth_finish
fi

if c images push --hosts-dir "$hosts" --user "$PUSH_USER:$PUSH_PASS" "$img"; then
    bad "push without the test CA succeeded"
elif tail -3 "$log" | grep -q 'certificate signed by unknown authority'; then
    ok "push without the test CA: refused by TLS verification"
else
    tail -3 "$log"
    bad "push without the test CA failed, but not on the certificate"
fi

if c images push --user "$PUSH_USER:wrong-$PUSH_PASS" --hosts-dir "$hosts" --tlscacert "$CA_CRT" "$img"; then
    bad "push with a wrong password succeeded"
elif auth_refused "$log"; then
    ok "push with a wrong password fails"
else
    tail -3 "$log"
    bad "push with a wrong password failed, but not on authentication"
fi

if c images push --user "$PUSH_USER:$PUSH_PASS" --hosts-dir "$hosts" --tlscacert "$CA_CRT" "$img"; then
    got=$(auth_remote_digest private/ctr:v1)
    if [ "$got" = "$FIX_DIGEST" ]; then
        ok "ctr images push --user --tlscacert: the registry holds $got"
    else
        tail -3 "$work/inspect.log"
        bad "ctr images push: registry digest '$got', want $FIX_DIGEST"
    fi
else
    tail -3 "$log"
    bad "ctr images push --user --tlscacert"
fi

# --sync: the garbage collection runs before rm returns, so the pull below has
# to fetch every blob again
layer=$(awk '$1 == "layer" && $2 == "base" { print $6 }' "$FIX/expected.txt")
if c images rm --sync "$img" && [ -z "$(auth_run ctr -a "$sock" images ls -q 2>>"$log")" ] &&
    ! auth_run ctr -a "$sock" content ls -q 2>>"$log" | grep -qx "$layer"; then
    ok "ctr images rm --sync: no image, the layer's content is gone"
else
    tail -3 "$log"
    bad "ctr images rm --sync"
fi

if c images pull --hosts-dir "$hosts" --tlscacert "$CA_CRT" "$img"; then
    bad "anonymous pull of a private repository succeeded"
elif auth_refused "$log"; then
    ok "anonymous pull fails"
else
    tail -3 "$log"
    bad "anonymous pull failed, but not on authentication"
fi

if c images pull --user "$OTHER_USER:wrong-$OTHER_PASS" --hosts-dir "$hosts" --tlscacert "$CA_CRT" "$img"; then
    bad "pull with a wrong password succeeded"
elif auth_refused "$log"; then
    ok "pull with a wrong password fails"
else
    tail -3 "$log"
    bad "pull with a wrong password failed, but not on authentication"
fi

if c images pull --user "$OTHER_USER:$OTHER_PASS" --hosts-dir "$hosts" --tlscacert "$CA_CRT" "$img"; then
    got=$(auth_run ctr -a "$sock" images ls 2>>"$log" | awk -v r="$img" '$1 == r { print $3 }')
    if [ "$got" = "$FIX_DIGEST" ]; then
        ok "ctr images pull --user --tlscacert: digest $got, the fixture's"
    else
        bad "ctr images pull: digest '$got', want $FIX_DIGEST"
    fi
else
    tail -3 "$log"
    bad "ctr images pull --user --tlscacert"
fi

if ! kill -0 "$cd_pid" 2>/dev/null; then
    tail -10 "$cd_dir/containerd.log"
    bad "containerd died during the run"
fi
auth_finish
