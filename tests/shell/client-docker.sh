#!/bin/sh
# client-docker.sh - docker logs into the registry over TLS (test CA made now)
# with an htpasswd user, pushes the busybox fixture, pulls it back and logs
# out, against a dockerd this script starts with its own roots and socket.
#
#   sh tests/shell/client-docker.sh                          # against build/ocireg
#   CLIENT_TARGET=reference sh tests/shell/client-docker.sh  # against docker-registry
#
# Setup (CA, certificate, htpasswd, registry start) is tests/shell/lib-auth.sh.
# dockerd (Debian docker.io 20.10, /usr/sbin/dockerd) runs with its own
# --config-file, --data-root, --exec-root, --pidfile, -H unix://SOCK, vfs storage,
# --bridge=none --iptables=false and no NAT or proxy; its daemon.json moves the
# libtrust key (/etc/docker/key.json otherwise) into the work folder. The client
# is /usr/bin/docker (the Debian one; /usr/local/bin/docker may be another
# version) with DOCKER_CONFIG in the work folder. dockerd reads registry CAs only
# from /etc/docker/certs.d/HOST:PORT/ca.crt: the script creates that folder for
# this port and removes it at exit. When dockerd cannot start the client is
# skipped with its log.
#
# dockerd counts 127.0.0.0/8 as an insecure registry whatever its flags say: it
# speaks TLS to 127.0.0.1:PORT but does not verify the certificate there, so no
# "untrusted CA" check is possible over loopback (the other clients have one).
# Checks:
#   - docker load of the fixture (skopeo docker-archive:)
#   - login with a wrong password fails and saves nothing
#   - docker login -u --password-stdin; docker push: the registry holds the
#     digest docker push printed
#   - docker rmi: no image left; docker pull back: its repo digest is the
#     pushed one
#   - docker logout; a pull then fails
# Prints "N passed, N failed" last; exits non-zero when a check failed.
# shellcheck source-path=SCRIPTDIR source=lib-auth.sh
. "$(dirname "$0")/lib-auth.sh"
auth_init client-docker
DOCKER=/usr/bin/docker
auth_need dockerd "$DOCKER" skopeo openssl htpasswd curl jq
auth_fixtures
auth_tls
auth_users

# what of these did not exist goes again at exit (rmdir: only when empty, so
# nothing another test or daemon put there): dockerd creates its plugin folder
# /run/docker/plugins whatever its roots, the CA goes to /etc/docker/certs.d
for d in /etc/docker /etc/docker/certs.d /run/docker /run/docker/plugins; do
    [ -d "$d" ] || AUTH_RMDIRS="$d ${AUTH_RMDIRS:-}"
done

dk_dir=$work/docker
sock=$dk_dir/docker.sock
mkdir -p "$dk_dir/config"
DOCKER_CONFIG=$dk_dir/config
export DOCKER_CONFIG
printf '{ "deprecated-key-path": "%s/key.json" }\n' "$dk_dir" >"$dk_dir/daemon.json"
dockerd --config-file "$dk_dir/daemon.json" --data-root "$dk_dir/data" \
    --exec-root "$dk_dir/exec" --pidfile "$dk_dir/docker.pid" -H "unix://$sock" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --userland-proxy=false --storage-driver vfs >"$dk_dir/dockerd.log" 2>&1 &
dk_pid=$!
auth_track_pid "$dk_pid"
dk() { echo "+ docker $*" >>"$log"; auth_run "$DOCKER" -H "unix://$sock" "$@" >>"$log" 2>&1; }
# shellcheck disable=SC2317 # run by auth_wait
dk_up() { timeout 5 "$DOCKER" -H "unix://$sock" version >/dev/null 2>&1 || ! kill -0 "$dk_pid" 2>/dev/null; }
if ! auth_wait 400 dk_up || ! kill -0 "$dk_pid" 2>/dev/null; then
    tail -20 "$dk_dir/dockerd.log"
    skip "dockerd did not start here (log above): docker not tested"
    auth_finish
fi
# dockerd stops the containerd it started when it exits on SIGTERM; should it
# need SIGKILL, that containerd is stopped by its pid as well
cpid=$(cat "$dk_dir/exec/containerd/containerd.pid" 2>/dev/null)
[ -n "$cpid" ] && auth_track_child "$cpid" "$dk_dir/exec/"
echo "dockerd $(auth_run "$DOCKER" -H "unix://$sock" version -f '{{.Server.Version}}' 2>/dev/null) at $sock"

auth_start_registry

log=$work/docker.log
img=$REG/private/docker:v1

# the CA for this port only, where dockerd looks for it
certs_d=/etc/docker/certs.d/$REG
auth_track_path "$certs_d"
if ! { mkdir -p "$certs_d" && cp "$CA_CRT" "$certs_d/ca.crt"; }; then
    bad "cannot write $certs_d/ca.crt"
    auth_finish
fi

if auth_run skopeo --insecure-policy copy -q "oci:$FIX/oci:busybox" "docker-archive:$work/busybox.tar:$img" \
    >>"$log" 2>&1 && dk load -i "$work/busybox.tar"; then
    ok "docker load of the fixture as $img"
else
    tail -3 "$log"
    bad "docker load"
    auth_finish
fi

if printf 'wrong-%s' "$PUSH_PASS" | dk login -u "$PUSH_USER" --password-stdin "$REG"; then
    bad "login with a wrong password succeeded"
elif jq -e --arg r "$REG" '.auths[$r]' "$DOCKER_CONFIG/config.json" >/dev/null 2>&1; then
    bad "login with a wrong password saved credentials"
elif auth_refused "$log"; then
    ok "login with a wrong password fails"
else
    tail -3 "$log"
    bad "login with a wrong password failed, but not on authentication"
fi

if printf '%s' "$PUSH_PASS" | dk login -u "$PUSH_USER" --password-stdin "$REG" &&
    jq -e --arg r "$REG" '.auths[$r] | .auth // .identitytoken' "$DOCKER_CONFIG/config.json" \
        >/dev/null 2>&1; then
    # a token server that hands out a refresh token (offline_token=true, as
    # ocireg's does) gets it saved as "identitytoken" instead of the password
    ok "docker login -u --password-stdin (saved in \$DOCKER_CONFIG/config.json)"
else
    tail -3 "$log"
    bad "docker login"
fi

pushed=""
if dk push "$img"; then
    # "v1: digest: sha256:... size: N"
    pushed=$(sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\) size: .*/\1/p' "$log" | tail -1)
    got=$(auth_remote_digest private/docker:v1)
    if [ -n "$pushed" ] && [ "$got" = "$pushed" ]; then
        ok "docker push: the registry holds $pushed"
    else
        tail -3 "$work/inspect.log"
        bad "docker push: printed digest '$pushed', registry '$got'"
    fi
else
    tail -3 "$log"
    bad "docker push"
fi

if dk rmi "$img" && [ -z "$(auth_run "$DOCKER" -H "unix://$sock" images -aq 2>>"$log")" ]; then
    ok "docker rmi: no image left"
else
    tail -3 "$log"
    bad "docker rmi"
fi

if dk pull "$img"; then
    dk image inspect --format '{{join .RepoDigests ","}}' "$img"
    got=$(tail -1 "$log")
    if [ -n "$pushed" ] && [ "$got" = "$REG/private/docker@$pushed" ]; then
        ok "docker pull back: repo digest $got"
    else
        bad "docker pull back: repo digests '$got', pushed '$pushed'"
    fi
else
    tail -3 "$log"
    bad "docker pull back"
fi

if dk logout "$REG" &&
    ! jq -e --arg r "$REG" '.auths[$r]' "$DOCKER_CONFIG/config.json" >/dev/null 2>&1; then
    dk rmi "$img"
    if dk pull "$img"; then
        bad "pull of a private repository after docker logout succeeded"
    elif auth_refused "$log"; then
        ok "docker logout: a pull of the private repository then fails"
    elif tail -1 "$log" | grep -Eq 'connection reset|EOF|malformed HTTP|HTTP response to HTTPS'; then
        # refused over https, dockerd then tries plain http (127.0.0.0/8 is an
        # "insecure" registry to it) and reports only that last error; the
        # authenticated pull above went through the same https endpoint
        ok "docker logout: a pull of the private repository then fails (dockerd reports its plain-HTTP fallback's error)"
    else
        tail -3 "$log"
        bad "pull after docker logout failed, but not on authentication"
    fi
else
    tail -3 "$log"
    bad "docker logout"
fi

if ! kill -0 "$dk_pid" 2>/dev/null; then
    tail -10 "$dk_dir/dockerd.log"
    bad "dockerd died during the run"
fi
auth_finish
