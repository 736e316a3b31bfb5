#!/bin/sh
# ocirun-pull.sh - ocirun-lite's pull side against real registries.
#
# Starts the reference registry (Debian docker-registry, CNCF distribution 2.8)
# on a free 127.0.0.1 port, pushes the fixture images into it with skopeo, and
# checks with $OCIRUN_BIN: pull by tag and by digest, a second image on the
# same base fetches only its new blobs, an index resolves to linux/amd64 (and
# --platform picks arm64), Docker schema 2 manifests and manifest lists (skopeo
# --format v2s2), concurrent pulls into one store, whiteouts, images / rmi and
# the content sharing between images, HTTP Basic auth (--creds and
# $REGISTRY_AUTH_FILE), plain HTTP only with --insecure or
# $OCIRUN_INSECURE_REGISTRIES, and a corrupted layer (one byte flipped in the
# registry's own storage) refused with a digest error, nothing half-stored.
# When $OCIREG_BIN exists and starts, the pull checks run against ocireg too.
# As root, `run` checks the exit code and the image config end to end.
#
# Environment: OCIRUN_BIN, OCIREG_BIN, OCIREG_FIXTURES (built by
# tests/fixtures/build.sh when missing), OCIREG_SRC. Last line: "N passed, N failed".
set -u

src=${OCIREG_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
ocirun=${OCIRUN_BIN:-$src/${BUILD:-build}/ocirun-lite}
ocireg=${OCIREG_BIN:-$src/${BUILD:-build}/ocireg}
reg=${REFERENCE_REGISTRY:-docker-registry}

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "PASS $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { # NAME COMMAND...: pass when the command succeeds
    name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
fail_early() {
    echo "ocirun-pull: $*"
    failed=$((failed + 1))
    finish
}

[ -x "$ocirun" ] || fail_early "ocirun-lite binary not found: $ocirun"
command -v "$reg" >/dev/null 2>&1 || fail_early "reference registry not found: $reg"
command -v skopeo >/dev/null 2>&1 || fail_early "skopeo not found"
command -v curl >/dev/null 2>&1 || fail_early "curl not found"

work=$(mktemp -d) || fail_early "mktemp failed"
regpid=""
ocipid=""
cleanup() {
    for p in $regpid $ocipid; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fx=${OCIREG_FIXTURES:-}
if [ -z "$fx" ] || [ ! -f "$fx/expected.txt" ]; then
    fx=$work/fixtures
    "$src/tests/fixtures/build.sh" "$fx" >"$work/fixtures.log" 2>&1 ||
        { cat "$work/fixtures.log"; fail_early "fixture build failed"; }
fi
E=$fx/expected.txt
# expected values
tag_digest() { awk -v t="$1" '$1 == "tag" && $2 == t { print $4 }' "$E"; }
cfg_digest() { awk -v n="$1" '$1 == "image" && $2 == n && $3 == "config" { print $4 }' "$E"; }
layer_digest() { awk -v n="$1" '$1 == "layer" && $2 == n { print $6 }' "$E"; }
layer_diffid() { awk -v n="$1" '$1 == "layer" && $2 == n { print $4 }' "$E"; }
hex() { echo "${1#sha256:}"; }

BUSYBOX=$(tag_digest busybox)
BASE_LAYER=$(layer_digest base)
BASE_DIFF=$(layer_diffid base)
APP_LAYER=$(layer_digest app)
APP_DIFF=$(layer_diffid app)
CFG_AMD=$(cfg_digest multiarch-amd64)
CFG_ARM=$(cfg_digest multiarch-arm64)
[ -n "$BUSYBOX" ] && [ -n "$APP_LAYER" ] && [ -n "$CFG_AMD" ] || fail_early "bad $E"

# ---- registries -------------------------------------------------------------------
# start_reference NAME [AUTHCONF]: sets REGPORT, regpid; data in $work/NAME
start_reference() {
    name=$1
    auth=${2:-}
    REGPORT=""
    for attempt in 1 2 3 4 5 6 7 8; do
        p=$(($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000 + 20000))
        rm -rf "$work/$name"
        cat >"$work/$name.yml" <<CFG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/$name
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$p
$auth
CFG
        "$reg" serve "$work/$name.yml" >"$work/$name.log" 2>&1 &
        regpid=$!
        i=0
        while [ $i -lt 100 ]; do
            if ! kill -0 "$regpid" 2>/dev/null; then
                wait "$regpid" 2>/dev/null
                regpid=""
                break
            fi
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/v2/" 2>/dev/null)
            if [ "$code" = 200 ] || [ "$code" = 401 ]; then
                REGPORT=$p
                return 0
            fi
            sleep 0.1
            i=$((i + 1))
        done
        if [ -n "$regpid" ]; then
            kill "$regpid" 2>/dev/null
            wait "$regpid" 2>/dev/null
            regpid=""
        fi
    done
    tail -20 "$work/$name.log"
    return 1
}

stop_reference() {
    if [ -n "$regpid" ]; then
        kill "$regpid" 2>/dev/null
        wait "$regpid" 2>/dev/null
        regpid=""
    fi
}

push_fixtures() { # HOST:PORT [skopeo creds args]
    dest=$1
    shift
    for t in busybox whiteout cfgtest; do
        skopeo copy --quiet --dest-tls-verify=false "$@" "oci:$fx/oci:$t" \
            "docker://$dest/ocirun/$t:latest" >>"$work/skopeo.log" 2>&1 || return 1
    done
    skopeo copy --quiet --all --dest-tls-verify=false "$@" "oci:$fx/oci:multiarch" \
        "docker://$dest/ocirun/multiarch:latest" >>"$work/skopeo.log" 2>&1
}

count_files() { find "$1" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# ---- the pull checks, against any registry ------------------------------------------
# pull_suite LABEL HOST:PORT
pull_suite() {
    L=$1
    R=$2
    root=$work/root-$L
    O="$ocirun --root $root"
    rm -rf "$root"

    out=$($O pull --insecure -q "$R/ocirun/busybox" 2>"$work/err")
    rc=$?
    check "$L: pull busybox exits 0" [ $rc -eq 0 ]
    [ $rc -eq 0 ] || cat "$work/err"
    check "$L: pull prints the manifest digest" [ "$out" = "$BUSYBOX" ]
    check "$L: base layer blob stored" [ -f "$root/blobs/sha256/$(hex "$BASE_LAYER")" ]
    check "$L: base layer unpacked by diff_id" [ -x "$root/layers/$(hex "$BASE_DIFF")/fs/bin/busybox" ]
    check "$L: tmp is empty after a pull" [ "$(count_files "$root/tmp")" -eq 0 ]
    nblobs=$(count_files "$root/blobs/sha256")
    check "$L: busybox = manifest + config + 1 layer" [ "$nblobs" -eq 3 ]

    # second image on the same base: only its manifest, config and app layer
    $O pull --insecure "$R/ocirun/cfgtest" >/dev/null 2>"$work/err"
    check "$L: pull cfgtest exits 0" [ $? -eq 0 ]
    check "$L: shared base not fetched again" grep -q "^Fetched 2 blob(s), .*; 1 already present" "$work/err"
    check "$L: cfgtest adds exactly 3 blobs" [ "$(count_files "$root/blobs/sha256")" -eq $((nblobs + 3)) ]
    app=$root/layers/$(hex "$APP_DIFF")/fs/home/app
    if [ "$(id -u)" = 0 ]; then
        check "$L: layer ownership kept (1000:1000 0750)" [ "$(stat -c '%u:%g %a' "$app")" = "1000:1000 750" ]
    fi

    # index: host platform (amd64 on this machine), or --platform
    $O pull --insecure -q "$R/ocirun/multiarch" >/dev/null 2>"$work/err"
    check "$L: pull multiarch exits 0" [ $? -eq 0 ]
    check "$L: index resolved to linux/amd64 config" \
        sh -c "$O images | grep -q '^$R/ocirun/multiarch:latest  *$(hex "$CFG_AMD" | cut -c1-12) *linux/amd64'"
    r2=$work/root-$L-arm
    $ocirun --root "$r2" pull --insecure -q --platform linux/arm64 "$R/ocirun/multiarch" >/dev/null 2>"$work/err"
    check "$L: --platform linux/arm64 picks the arm64 manifest" \
        sh -c "$ocirun --root $r2 images | grep -q '$(hex "$CFG_ARM" | cut -c1-12) *linux/arm64'"
    $ocirun --root "$r2" pull --insecure -q --platform linux/s390x "$R/ocirun/multiarch" >/dev/null 2>"$work/err"
    check "$L: unknown platform refused" [ $? -ne 0 ]
    check "$L: platform error lists the offers" grep -q "linux/arm64" "$work/err"
    rm -rf "$r2"

    # by digest
    $O pull --insecure -q "$R/ocirun/busybox@$BUSYBOX" >"$work/out" 2>"$work/err"
    check "$L: pull by digest" [ "$(cat "$work/out")" = "$BUSYBOX" ]
    bogus=sha256:0000000000000000000000000000000000000000000000000000000000000000
    $O pull --insecure -q "$R/ocirun/busybox@$bogus" >/dev/null 2>"$work/err"
    check "$L: unknown digest refused" [ $? -ne 0 ]
    $O pull --insecure -q "$R/ocirun/nonexistent:latest" >/dev/null 2>"$work/err"
    check "$L: unknown repository refused" [ $? -eq 1 ]

    # whiteouts, as stacked by the copy-based flattening (bundle)
    $O pull --insecure -q "$R/ocirun/whiteout" >/dev/null 2>"$work/err"
    check "$L: pull whiteout exits 0" [ $? -eq 0 ]
    if OCIRUN_NO_OVERLAY=1 $O bundle -q "$R/ocirun/whiteout" "$work/bundle-$L" >/dev/null 2>"$work/err"; then
        rf=$work/bundle-$L/rootfs
        check "$L: bundle has config.json" [ -s "$work/bundle-$L/config.json" ]
        check "$L: whiteout deleted file" [ ! -e "$rf/data/remove-me.txt" ]
        check "$L: whiteout deleted dir" [ ! -e "$rf/gone" ]
        check "$L: opaque dir hides lower entries" [ ! -e "$rf/opq/old1.txt" ] && [ ! -e "$rf/opq/sub" ]
        check "$L: opaque dir keeps its own layer's entries" [ -f "$rf/opq/-early.txt" ] && [ -f "$rf/opq/new.txt" ]
        check "$L: no whiteout markers in the rootfs" [ -z "$(find "$rf" -name '.wh.*')" ]
        check "$L: hard link kept" [ "$(stat -c %i "$rf/data/keep.txt")" = "$(stat -c %i "$rf/data/keep-hardlink.txt")" ]
    else
        cat "$work/err"
        bad "$L: bundle whiteout"
    fi
    rm -rf "$work/bundle-$L"

    # images / rmi / sharing
    n=$($O images -q | wc -l)
    check "$L: images lists 5 records (busybox by tag and by digest)" [ "$n" -eq 5 ]
    $O rmi "$R/ocirun/cfgtest" >/dev/null 2>"$work/err"
    check "$L: rmi cfgtest" [ $? -eq 0 ]
    check "$L: rmi drops the app layer blob" [ ! -e "$root/blobs/sha256/$(hex "$APP_LAYER")" ]
    check "$L: rmi drops the app layer dir" [ ! -e "$root/layers/$(hex "$APP_DIFF")" ]
    check "$L: rmi keeps the shared base" [ -f "$root/blobs/sha256/$(hex "$BASE_LAYER")" ]
    $O rmi "$R/ocirun/cfgtest" >/dev/null 2>"$work/err"
    check "$L: rmi of a missing image fails" [ $? -eq 1 ]
    $O rmi "$R/ocirun/busybox" "$R/ocirun/busybox@$BUSYBOX" "$R/ocirun/multiarch" "$R/ocirun/whiteout" >/dev/null 2>&1
    check "$L: rmi of everything empties the store" \
        [ "$(count_files "$root/blobs/sha256")" -eq 0 ] && [ "$(count_files "$root/layers")" -eq 0 ]
    rm -rf "$root"
}

# ---- reference registry: pulls ----------------------------------------------------------
start_reference ref || fail_early "the reference registry did not start"
R=127.0.0.1:$REGPORT
push_fixtures "$R" || { cat "$work/skopeo.log"; fail_early "skopeo push failed"; }
pull_suite reference "$R"

# Docker schema 2 media types (manifest, manifest list, config, layers):
# skopeo --format v2s2 converts the fixtures; the config blob stays the same
root=$work/root-v2s2
if skopeo copy --quiet --format v2s2 --dest-tls-verify=false "oci:$fx/oci:cfgtest" \
    "docker://$R/ocirun/cfgtest-v2s2:latest" >>"$work/skopeo.log" 2>&1 &&
    skopeo copy --quiet --all --format v2s2 --dest-tls-verify=false "oci:$fx/oci:multiarch" \
        "docker://$R/ocirun/multiarch-v2s2:latest" >>"$work/skopeo.log" 2>&1; then
    ct=$(curl -s -o /dev/null -w '%{content_type}' \
        -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
        "http://$R/v2/ocirun/multiarch-v2s2/manifests/latest")
    check "v2s2: registry serves a Docker manifest list" \
        [ "$ct" = "application/vnd.docker.distribution.manifest.list.v2+json" ]
    $ocirun --root "$root" pull --insecure -q "$R/ocirun/cfgtest-v2s2" >/dev/null 2>"$work/err"
    check "v2s2: Docker schema 2 manifest pulled" [ $? -eq 0 ]
    $ocirun --root "$root" pull --insecure -q "$R/ocirun/multiarch-v2s2" >/dev/null 2>"$work/err"
    check "v2s2: Docker manifest list resolved" [ $? -eq 0 ]
    $ocirun --root "$root" images >"$work/out"
    check "v2s2: same config (image id) as the OCI cfgtest" \
        grep -q "cfgtest-v2s2:latest  *$(hex "$(cfg_digest cfgtest)" | cut -c1-12)" "$work/out"
    check "v2s2: manifest list picked linux/amd64" \
        grep -q "multiarch-v2s2:latest  *$(hex "$CFG_AMD" | cut -c1-12) *linux/amd64" "$work/out"
else
    bad "v2s2: skopeo could not push Docker-format images"
fi
rm -rf "$root"

# two pulls of the same image into one store at the same time
root=$work/root-race
$ocirun --root "$root" pull --insecure -q "$R/ocirun/whiteout" >/dev/null 2>"$work/err1" &
p1=$!
$ocirun --root "$root" pull --insecure -q "$R/ocirun/whiteout" >/dev/null 2>"$work/err2" &
p2=$!
wait $p1
r1=$?
wait $p2
r2=$?
check "concurrent pulls of one image both succeed" [ $r1 -eq 0 ] && [ $r2 -eq 0 ]
check "concurrent pulls: one copy of each layer, tmp empty" \
    [ "$(count_files "$root/layers")" -eq 2 ] && [ "$(count_files "$root/tmp")" -eq 0 ]
rm -rf "$root"

# plain HTTP needs --insecure or OCIRUN_INSECURE_REGISTRIES
root=$work/root-http
$ocirun --root "$root" pull -q "$R/ocirun/busybox" >/dev/null 2>"$work/err"
check "https is the default (plain-HTTP registry fails without --insecure)" [ $? -ne 0 ]
check "plain HTTP without --insecure: said so, not OpenSSL's words" \
    grep -q "server gave an HTTP response to an HTTPS client; .*use --insecure" "$work/err"
OCIRUN_INSECURE_REGISTRIES="example.com,127.0.0.1:$REGPORT" \
    $ocirun --root "$root" pull -q "$R/ocirun/busybox" >/dev/null 2>"$work/err"
check "OCIRUN_INSECURE_REGISTRIES allows plain HTTP" [ $? -eq 0 ]
OCIRUN_ROOT=$root $ocirun images -q >"$work/out"
check "OCIRUN_ROOT selects the store" grep -qx "$R/ocirun/busybox:latest" "$work/out"

# run end to end (needs root; the runtime owns the deeper checks)
if [ "$(id -u)" = 0 ]; then
    out=$(timeout 120 $ocirun --root "$root" run --rm --insecure -q "$R/ocirun/cfgtest" 2>"$work/err")
    rc=$?
    check "run propagates the exit code (7)" [ $rc -eq 7 ]
    check "run applies the image config" [ "$(echo "$out" | tr '\n' ' ')" = "hello ocirun 1000 1000 /home/app " ]
    [ $rc -eq 7 ] || cat "$work/err"
    out=$(timeout 120 $ocirun --root "$root" run --rm --insecure -q "$R/ocirun/whiteout" 2>&1)
    check "run whiteout image (overlay or copy)" [ "$out" = "WHITEOUT-OK" ]
    out=$(OCIRUN_NO_OVERLAY=1 timeout 120 $ocirun --root "$root" run --rm --insecure -q "$R/ocirun/whiteout" 2>&1)
    check "run whiteout image (copy-based rootfs)" [ "$out" = "WHITEOUT-OK" ]
    check "copy-based rootfs removed after run" [ "$(count_files "$root/tmp")" -eq 0 ]
    out=$(timeout 120 $ocirun --root "$root" run --rm --insecure -q "$R/ocirun/multiarch" 2>&1)
    check "run multiarch prints amd64" [ "$out" = "amd64" ]
    timeout 60 $ocirun --root "$root" run --rm --pull never "$R/ocirun/nothere" >/dev/null 2>&1
    check "run --pull never of a missing image exits 125" [ $? -eq 125 ]
fi
rm -rf "$root"

# corrupted layer in the registry's storage: refused, nothing half-stored
blob=$work/ref/docker/registry/v2/blobs/sha256/$(hex "$APP_LAYER" | cut -c1-2)/$(hex "$APP_LAYER")/data
if [ -f "$blob" ]; then
    cp "$blob" "$work/app.orig"
    perl -e 'open(my $f, "+<", $ARGV[0]) or die; binmode $f; seek($f, 4, 0); read($f, my $c, 1);
             seek($f, 4, 0); print $f chr(ord($c) ^ 0xff); close $f' "$blob"
    root=$work/root-corrupt
    $ocirun --root "$root" pull --insecure -q "$R/ocirun/cfgtest" >/dev/null 2>"$work/err"
    rc=$?
    check "corrupt layer: pull fails" [ $rc -eq 1 ]
    check "corrupt layer: error names the digest" grep -q "digest mismatch.*$APP_LAYER" "$work/err"
    cat "$work/err"
    check "corrupt layer: blob not stored" [ ! -e "$root/blobs/sha256/$(hex "$APP_LAYER")" ]
    check "corrupt layer: no temporary file left" [ "$(count_files "$root/tmp")" -eq 0 ]
    check "corrupt layer: no image record" [ -z "$($ocirun --root "$root" images -q)" ]
    check "corrupt layer: nothing unpacked" [ ! -e "$root/layers/$(hex "$APP_DIFF")" ]
    cp "$work/app.orig" "$blob"
    $ocirun --root "$root" pull --insecure -q "$R/ocirun/cfgtest" >/dev/null 2>"$work/err"
    check "after repair the same store pulls fine" [ $? -eq 0 ]
    rm -rf "$root"
else
    bad "corrupt layer: registry blob file not found at $blob"
fi
stop_reference

# ---- reference registry with HTTP Basic auth ----------------------------------------------
hash=$(perl -e 'print crypt("s3cret", "\$2b\$05\$abcdefghijklmnopqrstuu")')
case "$hash" in
'$2b$'*)
    printf 'alice:%s\n' "$hash" >"$work/htpasswd"
    if start_reference refauth "auth:
  htpasswd:
    realm: ocirun-test
    path: $work/htpasswd"; then
        R=127.0.0.1:$REGPORT
        push_fixtures "$R" --dest-creds alice:s3cret || cat "$work/skopeo.log"
        root=$work/root-auth
        $ocirun --root "$root" pull --insecure -q "$R/ocirun/busybox" >/dev/null 2>"$work/err"
        check "basic auth: anonymous pull refused" [ $? -eq 1 ]
        check "basic auth: error says credentials are needed" grep -q "requires authentication" "$work/err"
        $ocirun --root "$root" pull --insecure -q --creds alice:wrong "$R/ocirun/busybox" >/dev/null 2>"$work/err"
        check "basic auth: wrong password refused" [ $? -eq 1 ]
        $ocirun --root "$root" pull --insecure -q --creds alice:s3cret "$R/ocirun/busybox" >/dev/null 2>"$work/err"
        check "basic auth: --creds works" [ $? -eq 0 ]
        auth=$(printf 'alice:s3cret' | base64)
        printf '{"auths":{"%s":{"auth":"%s"}}}' "$R" "$auth" >"$work/auth.json"
        REGISTRY_AUTH_FILE=$work/auth.json $ocirun --root "$root" pull --insecure -q \
            "$R/ocirun/multiarch" >/dev/null 2>"$work/err"
        check "basic auth: REGISTRY_AUTH_FILE works" [ $? -eq 0 ]
        mkdir -p "$work/dockercfg"
        cp "$work/auth.json" "$work/dockercfg/config.json"
        DOCKER_CONFIG=$work/dockercfg XDG_RUNTIME_DIR=$work/none $ocirun --root "$root" pull \
            --insecure -q "$R/ocirun/cfgtest" >/dev/null 2>"$work/err"
        check "basic auth: docker config.json works" [ $? -eq 0 ]
        stop_reference
        rm -rf "$root"
    else
        bad "basic auth: reference registry with htpasswd did not start"
    fi
    ;;
*) echo "SKIP basic auth: crypt() has no bcrypt here" ;;
esac

# ---- ocireg, when it is built and starts -----------------------------------------------
if [ -x "$ocireg" ]; then
    oroot=$work/ocireg-data
    mkdir -p "$oroot"
    OCIREG_SERVER_LISTEN=127.0.0.1:0 OCIREG_STORAGE_ROOT=$oroot \
        "$ocireg" serve --ready-file "$work/ocireg.ready" >"$work/ocireg.log" 2>&1 &
    ocipid=$!
    addr=""
    i=0
    while [ $i -lt 100 ]; do
        if [ -s "$work/ocireg.ready" ]; then
            addr=$(head -n 1 "$work/ocireg.ready")
            case "$addr" in *:[0-9]*) break ;; *) addr="" ;; esac
        fi
        kill -0 "$ocipid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    if [ -n "$addr" ] && push_fixtures "$addr"; then
        pull_suite ocireg "$addr"
        $ocirun --root "$work/root-ocireg-https" pull -q "$addr/ocirun/busybox" >/dev/null 2>"$work/err"
        check "ocireg: plain HTTP without --insecure fails" [ $? -ne 0 ]
        check "ocireg: ... with the server gave an HTTP response to an HTTPS client" \
            grep -q "^ocirun-lite: error: $addr: the server gave an HTTP response to an HTTPS client; for a plain-HTTP registry use --insecure" "$work/err"
        grep -q "wrong version number" "$work/err" && bad "ocireg: OpenSSL's message shown: $(cat "$work/err")"
        rm -rf "$work/root-ocireg-https"
    else
        echo "SKIP ocireg: it did not start or did not accept the fixtures"
        tail -5 "$work/ocireg.log" "$work/skopeo.log" 2>/dev/null
    fi
    kill "$ocipid" 2>/dev/null
    wait "$ocipid" 2>/dev/null
    ocipid=""
else
    echo "SKIP ocireg: $ocireg not built"
fi

finish
