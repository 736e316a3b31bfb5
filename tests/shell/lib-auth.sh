# lib-auth.sh - shared setup of the stock-client tests (client-*.sh): sourced,
# never run on its own (tests/run-all.sh skips tests/shell/lib-*.sh).
#
#   . "$(dirname "$0")/lib-auth.sh"
#   auth_init NAME        work folder /tmp/ocireg-NAME.XXXXXX, counters, EXIT trap
#   auth_fixtures         build/fixtures (built when missing); sets FIX, FIX_DIGEST
#   auth_tls              a test CA and a server certificate for IP:127.0.0.1 and
#                         DNS:localhost (openssl CLI, generated now); sets CA_CRT,
#                         CERT_DIR (holds only ca.crt: the --cert-dir of
#                         podman/skopeo), SRV_CRT, SRV_KEY
#   auth_users            an htpasswd file (bcrypt cost 10) with a push user and a
#                         second user, random passwords; sets HTPASSWD, PUSH_USER,
#                         PUSH_PASS, OTHER_USER, OTHER_PASS
#   auth_start_registry   starts the target over TLS with htpasswd auth; sets REG
#                         (127.0.0.1:PORT) and SRV_PID; fails the script when it
#                         cannot start
#   auth_track_pid PID    stop PID (SIGTERM, then SIGKILL after a bounded wait)
#                         when the script ends; pids are stopped last-started first
#   auth_track_child PID MATCH  stop a daemon's child PID after the tracked
#                         pids, if its command line still contains MATCH
#   auth_track_path P     remove P (rm -rf) when the script ends; AUTH_RMDIRS
#                         lists folders removed after them when empty
#   auth_run CMD...       CMD under a deadline (AUTH_CMD_TIMEOUT, 60 s)
#   auth_wait TENTHS CMD...   run CMD every 0.1 s until it succeeds; 1 when it
#                         did not within TENTHS tenths of a second
#   auth_refused LOG      whether LOG's last lines tell a 401/403 refusal
#   ok / bad / skip MSG   one "ok ..." / "FAIL ..." / "skip: ..." line
#   auth_finish           checks that the registry's log holds no password,
#                         Basic credential or token, that the registry is still
#                         alive (and, for ocireg, exits 0 on SIGTERM), prints
#                         "N passed, N failed", exits
# AUTH_KEEP=1 keeps the work folder (every client's log, the registry's log).
#
# The target is chosen by CLIENT_TARGET:
#   ocireg (default)  $OCIREG_BIN (default build/ocireg) with OCIREG_AUTH_HTPASSWD,
#                     OCIREG_TLS_CERT, OCIREG_TLS_KEY, OCIREG_SERVER_LISTEN=127.0.0.1:0,
#                     OCIREG_STORAGE_ROOT and `serve --ready-file F` (F receives
#                     "127.0.0.1:PORT"); it answers 401 with a Bearer challenge and
#                     issues tokens itself
#   reference         Debian's docker-registry (CNCF distribution 2.8) with
#                     `auth: htpasswd` (Basic challenge) and `http: tls`, on a free
#                     port; checks the scripts themselves
# Everything started is stopped by its PID; nothing is killed by name.
# shellcheck shell=sh

auth_init() {
    set -u
    AUTH_NAME=$1
    top=$(cd "$(dirname "$0")/../.." && pwd)
    TARGET=${CLIENT_TARGET:-ocireg}
    case "$TARGET" in
        ocireg | reference) ;;
        *) echo "CLIENT_TARGET must be ocireg or reference, not '$TARGET'"; exit 2 ;;
    esac
    pass=0
    fail=0
    skipped=0
    SRV_PID=""
    AUTH_PIDS=""
    AUTH_PATHS=""
    work=$(mktemp -d "/tmp/ocireg-$AUTH_NAME.XXXXXX") || { echo "mktemp failed"; exit 1; }
    trap auth_cleanup EXIT
    trap 'exit 1' INT TERM HUP
    # the clients read $HOME (~/.docker/config.json, ~/.config/containers): give
    # them an empty one so that nothing of the machine's own logins leaks in
    mkdir -p "$work/home"
    HOME=$work/home
    export HOME
    unset XDG_RUNTIME_DIR XDG_CONFIG_HOME REGISTRY_AUTH_FILE DOCKER_CONFIG DOCKER_HOST \
        CONTAINERD_ADDRESS CONTAINERS_CONF CONTAINERS_REGISTRIES_CONF CONTAINERS_STORAGE_CONF
}

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "skip: $*"; }

# stop one process by its PID: SIGTERM, up to TENTHS/10 s, then SIGKILL; reaps it
# when it is this shell's child
auth_stop_pid() {   # PID [TENTHS]
    kill "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
    _i=0
    while kill -0 "$1" 2>/dev/null && [ $_i -lt "${2:-100}" ]; do
        # a child that exited stays a zombie (kill -0 succeeds) until reaped
        [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ] && break
        sleep 0.1
        _i=$((_i + 1))
    done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

auth_track_pid() { AUTH_PIDS="$1 $AUTH_PIDS"; }
# a process this script did not start itself (a daemon's child): stopped after
# every tracked pid, and only while its command line still contains MATCH (no
# space in MATCH), so that a reused pid is never signalled
auth_track_child() { AUTH_CHILDREN="${AUTH_CHILDREN:-} $1@$2"; }
auth_track_path() { AUTH_PATHS="$AUTH_PATHS $1"; }

# shellcheck disable=SC2317 # called from the EXIT trap
auth_cleanup() {
    for _p in $AUTH_PIDS; do auth_stop_pid "$_p" 150; done
    for _c in ${AUTH_CHILDREN:-}; do
        if { tr '\0' ' ' <"/proc/${_c%%@*}/cmdline"; } 2>/dev/null | grep -qF "${_c#*@}"; then
            auth_stop_pid "${_c%%@*}" 50
        fi
    done
    if [ -n "$SRV_PID" ]; then auth_stop_pid "$SRV_PID" 50; fi
    for _d in $AUTH_PATHS; do rm -rf "$_d"; done
    for _d in ${AUTH_RMDIRS:-}; do rmdir "$_d" 2>/dev/null; done
    # a daemon killed hard may leave a mount under the work folder: never follow
    # rm into a mounted file system
    if grep -q " $work/" /proc/self/mounts 2>/dev/null; then
        awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r |
            while read -r _m; do umount -l "$_m" 2>/dev/null; done
    fi
    [ -n "${AUTH_KEEP:-}" ] && { echo "kept $work"; return; }
    rm -rf "$work"
}

# every client command runs under a deadline: a client stuck on a server that
# stopped answering fails its check instead of hanging the suite
auth_run() {   # CMD...
    timeout -k 5 "${AUTH_CMD_TIMEOUT:-60}" "$@"
}

auth_wait() {   # TENTHS CMD...
    _n=$1
    shift
    _i=0
    until "$@"; do
        _i=$((_i + 1))
        [ $_i -ge "$_n" ] && return 1
        sleep 0.1
    done
    return 0
}

# no password, Basic credential or token may reach the registry's log; the
# clients above sent all three (and wrong passwords, which contain the right ones)
auth_log_clean() {
    [ -n "${AUTH_SERVING:-}" ] && [ -f "$work/server.log" ] || return 0
    _b1=$(printf '%s:%s' "$PUSH_USER" "$PUSH_PASS" | base64 -w0)
    _b2=$(printf '%s:%s' "$OTHER_USER" "$OTHER_PASS" | base64 -w0)
    if grep -qF -e "$PUSH_PASS" -e "$OTHER_PASS" -e "$_b1" -e "$_b2" "$work/server.log" ||
        grep -Eq 'eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}' "$work/server.log"; then
        bad "the registry's log holds a password, a Basic credential or a token"
    else
        ok "no password, credential or token in the registry's log ($(wc -l <"$work/server.log" | tr -d ' ') lines)"
    fi
}

auth_finish() {
    auth_log_clean
    if [ -n "$SRV_PID" ] && ! kill -0 "$SRV_PID" 2>/dev/null; then
        bad "the registry died during the run"
        tail -20 "$work/server.log"
    elif [ -n "$SRV_PID" ] && [ "$TARGET" = ocireg ]; then
        # a clean shutdown on SIGTERM: exit status 0 (under ASan: no leak report)
        kill "$SRV_PID"
        wait "$SRV_PID"
        _rc=$?
        SRV_PID=""
        if [ $_rc -eq 0 ]; then
            ok "clean shutdown of ocireg"
        else
            bad "ocireg exit status $_rc after SIGTERM"
            tail -20 "$work/server.log"
        fi
    fi
    echo "$pass passed, $fail failed"
    # a client skipped entirely is neither a pass nor a failure
    [ "$fail" -eq 0 ] && { [ "$pass" -gt 0 ] || [ "$skipped" -gt 0 ]; }
    exit $?
}

# whether the last lines of a client's LOG tell an authentication or
# authorization refusal (not a TLS or connection failure, which must not pass
# as "refused"): the wording of c/image, containerd and docker for a 401 or 403
auth_refused() {   # LOG
    tail -5 "$1" | grep -Eiq 'unauthorized|authentication required|access.*denied|denied.*access|invalid username|incorrect username|\b40[13]\b'
}

auth_need() {   # COMMAND...: each must be installed (scripts/install-deps.sh)
    for _c in "$@"; do
        command -v "$_c" >/dev/null 2>&1 ||
            { bad "$_c not installed (sh scripts/install-deps.sh)"; auth_finish; }
    done
}

auth_fixtures() {
    FIX=${OCIREG_FIXTURES:-$top/build/fixtures}
    if [ ! -f "$FIX/expected.txt" ]; then
        echo "building fixtures into $FIX"
        if ! "$top/tests/fixtures/build.sh" "$FIX" >"$work/fixtures.log" 2>&1; then
            cat "$work/fixtures.log"
            bad "fixture build"
            auth_finish
        fi
    fi
    # the busybox image: one manifest, one small layer
    FIX_DIGEST=$(awk '$1 == "tag" && $2 == "busybox" { print $4 }' "$FIX/expected.txt")
    [ -n "$FIX_DIGEST" ] || { bad "no busybox tag in $FIX/expected.txt"; auth_finish; }
}

auth_tls() {
    _t=$work/tls
    mkdir -p "$_t" "$work/certs"
    # P-256 keys: quick to generate; every client (Go's crypto/tls) and openssl take them
    if ! {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$_t/ca.key" -out "$_t/ca.crt" -days 2 -subj "/CN=ocireg test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$_t/server.key" -out "$_t/server.csr" -subj "/CN=127.0.0.1" &&
            printf '%s\n' "basicConstraints=CA:FALSE" \
                "keyUsage=critical,digitalSignature,keyEncipherment" \
                "extendedKeyUsage=serverAuth" \
                "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$_t/server.ext" &&
            openssl x509 -req -in "$_t/server.csr" -CA "$_t/ca.crt" -CAkey "$_t/ca.key" \
                -CAcreateserial -days 2 -extfile "$_t/server.ext" -out "$_t/server.crt"
    } >"$_t/openssl.log" 2>&1; then
        cat "$_t/openssl.log"
        bad "test CA and server certificate (openssl)"
        auth_finish
    fi
    CA_CRT=$_t/ca.crt
    SRV_CRT=$_t/server.crt
    SRV_KEY=$_t/server.key
    CERT_DIR=$work/certs
    cp "$CA_CRT" "$CERT_DIR/ca.crt"
}

auth_users() {
    HTPASSWD=$work/htpasswd
    PUSH_USER=pusher
    OTHER_USER=other
    PUSH_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    OTHER_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    # -n prints "user:hash" and an empty line
    if ! { htpasswd -nbB -C 10 "$PUSH_USER" "$PUSH_PASS" &&
        htpasswd -nbB -C 10 "$OTHER_USER" "$OTHER_PASS"; } >"$HTPASSWD.tmp" 2>"$work/htpasswd.log"; then
        cat "$work/htpasswd.log"
        bad "htpasswd file"
        auth_finish
    fi
    grep -v '^$' "$HTPASSWD.tmp" >"$HTPASSWD"
    rm -f "$HTPASSWD.tmp"
}

# the status of GET /v2/ over TLS with the test CA, no credentials: 401 once the
# registry serves
auth_v2_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$CA_CRT" "https://$REG/v2/" 2>/dev/null
}

# shellcheck disable=SC2317 # conditions run by auth_wait
auth_srv_up() { [ "$(auth_v2_status)" = 401 ] || ! kill -0 "$SRV_PID" 2>/dev/null; }
# shellcheck disable=SC2317
auth_srv_ready() { [ -s "$work/ready" ] || ! kill -0 "$SRV_PID" 2>/dev/null; }

auth_start_registry() {
    mkdir -p "$work/root"
    if [ "$TARGET" = reference ]; then
        command -v docker-registry >/dev/null 2>&1 || { bad "docker-registry not installed"; auth_finish; }
        # a random free port; a taken one makes the registry exit, then another is tried
        REG=""
        for _ in 1 2 3 4 5 6 7 8; do
            _p=$(($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000 + 20000))
            cat >"$work/reg.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/root
  delete:
    enabled: true
auth:
  htpasswd:
    realm: ocireg-test
    path: $HTPASSWD
http:
  addr: 127.0.0.1:$_p
  tls:
    certificate: $SRV_CRT
    key: $SRV_KEY
EOF
            docker-registry serve "$work/reg.yml" >"$work/server.log" 2>&1 &
            SRV_PID=$!
            REG=127.0.0.1:$_p
            if auth_wait 150 auth_srv_up && kill -0 "$SRV_PID" 2>/dev/null; then break; fi
            auth_stop_pid "$SRV_PID" 20
            SRV_PID=""
            REG=""
        done
        [ -n "$REG" ] || { tail -20 "$work/server.log"; bad "reference registry start"; auth_finish; }
    else
        BIN=${OCIREG_BIN:-$top/build/ocireg}
        [ -x "$BIN" ] || { bad "no registry binary at $BIN"; auth_finish; }
        OCIREG_AUTH_HTPASSWD=$HTPASSWD OCIREG_TLS_CERT=$SRV_CRT OCIREG_TLS_KEY=$SRV_KEY \
            OCIREG_SERVER_LISTEN=127.0.0.1:0 OCIREG_STORAGE_ROOT=$work/root \
            "$BIN" serve --ready-file "$work/ready" >"$work/server.log" 2>&1 &
        SRV_PID=$!
        auth_wait 300 auth_srv_ready
        REG=$(sed -n 's/^\(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' "$work/ready" 2>/dev/null | head -1)
        if [ -z "$REG" ] || ! kill -0 "$SRV_PID" 2>/dev/null; then
            tail -20 "$work/server.log"
            bad "ocireg start ($BIN)"
            auth_finish
        fi
    fi
    _st=$(auth_v2_status)
    if [ "$_st" != 401 ]; then
        tail -20 "$work/server.log"
        bad "GET https://$REG/v2/ without credentials: $_st, want 401"
        auth_finish
    fi
    AUTH_SERVING=1
    echo "registry ($TARGET) at https://$REG, TLS and htpasswd auth"
}

# the digest of a manifest in the registry, read with skopeo and the other
# user's credentials: the bytes' sha256 (skopeo inspect --raw)
auth_remote_digest() {   # REPO:TAG; prints sha256:HEX, 1 when skopeo failed
    auth_run skopeo inspect --raw --cert-dir "$CERT_DIR" --creds "$OTHER_USER:$OTHER_PASS" \
        "docker://$REG/$1" >"$work/remote.raw" 2>>"$work/inspect.log" || return 1
    echo "sha256:$(sha256sum <"$work/remote.raw" | cut -d' ' -f1)"
}
