#!/bin/sh
# client-skopeo.sh - skopeo logs into the registry over TLS (test CA made now)
# with htpasswd users, pushes the busybox fixture with the saved login and
# copies it back out with --src-creds.
#
#   sh tests/shell/client-skopeo.sh                          # against build/ocireg
#   CLIENT_TARGET=reference sh tests/shell/client-skopeo.sh  # against docker-registry
#
# Setup (CA, certificate, htpasswd, registry start) is tests/shell/lib-auth.sh.
# Checks:
#   - login without the CA is refused by skopeo (unknown authority)
#   - login with a wrong password fails and saves nothing
#   - skopeo login --cert-dir --authfile, then skopeo copy oci:FIX docker://...
#     with that authfile; the registry holds the fixture's manifest digest
#   - an anonymous copy out (--src-no-creds) fails
#   - copy out with --src-creds of the second user: the manifest digest in the
#     new layout is the fixture's, every blob byte-identical
#   - copy out with a wrong password fails
#   - skopeo logout empties the authfile; a copy with it then fails
# Prints "N passed, N failed" last; exits non-zero when a check failed.
# shellcheck source-path=SCRIPTDIR source=lib-auth.sh
. "$(dirname "$0")/lib-auth.sh"
auth_init client-skopeo
auth_need skopeo openssl htpasswd curl jq
auth_fixtures
auth_tls
auth_users
auth_start_registry

log=$work/skopeo.log
sk() { echo "+ skopeo $*" >>"$log"; auth_run skopeo --insecure-policy "$@" >>"$log" 2>&1; }
auth=$work/auth.json
repo=$REG/private/busybox

if printf '%s' "$PUSH_PASS" | sk login --authfile "$work/untrusted.json" \
    -u "$PUSH_USER" --password-stdin "$REG"; then
    bad "login without the test CA succeeded"
elif tail -3 "$log" | grep -q 'certificate signed by unknown authority'; then
    ok "login without the test CA: refused by TLS verification"
else
    tail -3 "$log"
    bad "login without the test CA failed, but not on the certificate"
fi

if printf 'wrong-%s' "$PUSH_PASS" | sk login --cert-dir "$CERT_DIR" --authfile "$auth" \
    -u "$PUSH_USER" --password-stdin "$REG"; then
    bad "login with a wrong password succeeded"
elif [ -s "$auth" ] && jq -e --arg r "$REG" '.auths[$r]' "$auth" >/dev/null 2>&1; then
    bad "login with a wrong password saved credentials"
elif auth_refused "$log"; then
    ok "login with a wrong password fails"
else
    tail -3 "$log"
    bad "login with a wrong password failed, but not on authentication"
fi

if printf '%s' "$PUSH_PASS" | sk login --cert-dir "$CERT_DIR" --authfile "$auth" \
    -u "$PUSH_USER" --password-stdin "$REG" &&
    jq -e --arg r "$REG" '.auths[$r].auth' "$auth" >/dev/null 2>&1; then
    ok "skopeo login --cert-dir --authfile"
else
    tail -3 "$log"
    bad "skopeo login"
fi

if sk copy --authfile "$auth" --dest-cert-dir "$CERT_DIR" \
    "oci:$FIX/oci:busybox" "docker://$repo:v1"; then
    ok "skopeo copy to the registry with the saved login"
else
    tail -3 "$log"
    bad "skopeo copy to the registry with the saved login"
fi
got=$(auth_remote_digest private/busybox:v1)
if [ "$got" = "$FIX_DIGEST" ]; then
    ok "the registry holds the fixture's manifest $FIX_DIGEST"
else
    tail -3 "$work/inspect.log"
    bad "remote manifest digest '$got', want $FIX_DIGEST"
fi

if sk copy --src-no-creds --src-cert-dir "$CERT_DIR" "docker://$repo:v1" "oci:$work/anon:busybox"; then
    bad "anonymous copy out of a private repository succeeded"
elif auth_refused "$log"; then
    ok "anonymous copy out fails"
else
    tail -3 "$log"
    bad "anonymous copy out failed, but not on authentication"
fi

out=$work/out
if sk copy --src-creds "$OTHER_USER:$OTHER_PASS" --src-cert-dir "$CERT_DIR" \
    "docker://$repo:v1" "oci:$out:busybox"; then
    got=$(jq -r '.manifests[0].digest' "$out/index.json" 2>/dev/null)
    mism=""
    nb=0
    for f in "$out"/blobs/sha256/*; do
        nb=$((nb + 1))
        cmp -s "$f" "$FIX/oci/blobs/sha256/$(basename "$f")" || mism="$mism $(basename "$f")"
    done
    if [ "$got" = "$FIX_DIGEST" ] && [ -z "$mism" ]; then
        ok "skopeo copy --src-creds back out: digest $got, $nb blobs byte-identical"
    else
        bad "copied back: digest $got (want $FIX_DIGEST), differing blobs:$mism"
    fi
else
    tail -3 "$log"
    bad "skopeo copy --src-creds back out"
fi

if sk copy --src-creds "$OTHER_USER:wrong-$OTHER_PASS" --src-cert-dir "$CERT_DIR" \
    "docker://$repo:v1" "oci:$work/wrong:busybox"; then
    bad "copy out with a wrong password succeeded"
elif auth_refused "$log"; then
    ok "copy out with a wrong password fails"
else
    tail -3 "$log"
    bad "copy out with a wrong password failed, but not on authentication"
fi

if sk logout --authfile "$auth" "$REG" &&
    ! jq -e --arg r "$REG" '.auths[$r]' "$auth" >/dev/null 2>&1; then
    if sk copy --src-authfile "$auth" --src-cert-dir "$CERT_DIR" \
        "docker://$repo:v1" "oci:$work/loggedout:busybox"; then
        bad "copy out after skopeo logout succeeded"
    elif ! auth_refused "$log"; then
        tail -3 "$log"
        bad "copy out after skopeo logout failed, but not on authentication"
    else
        ok "skopeo logout: a copy with the authfile then fails"
    fi
else
    tail -3 "$log"
    bad "skopeo logout"
fi
auth_finish
