/* ocirun_pull_registry_test.c - the registry client against a small fake
 * registry started by the test (a thread on 127.0.0.1:0) that serves the
 * fixture OCI layout and demands the Docker token flow: 401 + WWW-Authenticate
 * Bearer, GET realm?service&scope (Basic credentials), retry with the token.
 * Also: redirected blob downloads, a token that expires mid-pull, a corrupted
 * blob and a tampered manifest (refused, nothing stored). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/ocirun-lite/cstore.h"
#include "tools/ocirun-lite/fsutil.h"
#include "tools/ocirun-lite/pull.h"

#include "common/banned.h"

/* ---- the fake registry ------------------------------------------------------------- */

struct fake {
    int lfd;
    int port;
    pthread_t th;
    char layout[512];     /* OCI layout served */
    int need_basic;       /* token endpoint demands alice:s3cret */
    int redirect_blobs;   /* blobs answer 307 to /cdn/<digest> */
    int expire_once;      /* the first blob GET with a token answers 401 */
    int tamper_manifests; /* manifests fetched by digest get one byte changed */
    int stop;
    /* observations */
    int token_requests;
    int blob_gets;
    int cdn_gets;
    char last_scope[256];
    char last_service[64];
    int token_basic_ok;
};

static struct fake g_fake;
static char g_tmp[128];
static char g_fixtures[512];

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return NULL;
    }
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void
send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void
reply(int fd, int status, const char *extra_headers, const char *ctype, const char *body,
      size_t len)
{
    char h[2048];
    int n = snprintf(h, sizeof(h),
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n"
                     "Docker-Distribution-API-Version: registry/2.0\r\n%s%s%s%s\r\n",
                     status, len, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                     ctype ? "\r\n" : "", extra_headers ? extra_headers : "");
    send_all(fd, h, (size_t)n);
    if (len)
        send_all(fd, body, len);
}

static void
challenge(int fd, const char *repo)
{
    char h[512];
    snprintf(h, sizeof(h),
             "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"fake\","
             "scope=\"repository:%s:pull\"\r\n",
             g_fake.port, repo);
    const char body[] = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"auth\"}]}";
    reply(fd, 401, h, "application/json", body, sizeof(body) - 1);
}

static const char *
header(const char *req, const char *name, char *out, size_t len)
{
    const char *p = req;
    size_t nl = strlen(name);
    while ((p = strchr(p, '\n')) != NULL) {
        p++;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r\n");
            if (n >= len)
                n = len - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

static void
query_param(const char *q, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    const char *p = strstr(q, name);
    if (!p)
        return;
    p += strlen(name);
    size_t o = 0;
    while (*p && *p != '&' && *p != ' ' && o + 1 < len) {
        if (*p == '%' && p[1] && p[2]) {
            char hx[3] = {p[1], p[2], 0};
            out[o++] = (char)strtol(hx, NULL, 16);
            p += 3;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

/* tag -> digest through index.json's ref.name annotation */
static int
resolve_tag(const char *name, char *digest, size_t len)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/index.json", g_fake.layout);
    json_t *o = json_load_file(p, 0, NULL), *d;
    size_t i;
    int found = 0;
    json_array_foreach(json_object_get(o, "manifests"), i, d)
    {
        const char *rn = json_string_value(json_object_get(json_object_get(d, "annotations"),
                                                           "org.opencontainers.image.ref.name"));
        if (rn && strcmp(rn, name) == 0) {
            snprintf(digest, len, "%s", json_string_value(json_object_get(d, "digest")));
            found = 1;
        }
    }
    json_decref(o);
    return found;
}

static void
serve_blob(int fd, const char *digest, int is_manifest, int tamper)
{
    char p[700];
    size_t len;
    snprintf(p, sizeof(p), "%s/blobs/sha256/%s", g_fake.layout, digest + 7);
    char *b = slurp(p, &len);
    if (!b) {
        const char body[] = "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"message\":\"no\"}]}";
        reply(fd, 404, NULL, "application/json", body, sizeof(body) - 1);
        return;
    }
    char ctype[128] = "application/octet-stream";
    if (is_manifest) {
        json_t *o = json_loads(b, 0, NULL);
        const char *mt = json_string_value(json_object_get(o, "mediaType"));
        snprintf(ctype, sizeof(ctype), "%s", mt ? mt : "application/json");
        json_decref(o);
        if (tamper)
            b[len - 1] = b[len - 1] == '}' ? ' ' : '}';
    }
    reply(fd, 200, NULL, ctype, b, len);
    free(b);
}

static void
handle(int fd)
{
    char req[16384];
    size_t n = 0;
    while (n < sizeof(req) - 1) {
        ssize_t r = recv(fd, req + n, sizeof(req) - 1 - n, 0);
        if (r <= 0)
            return;
        n += (size_t)r;
        req[n] = '\0';
        if (req[0] < 'A' || req[0] > 'Z') {
            /* not HTTP (a TLS ClientHello): answered at once, as real servers do */
            reply(fd, 400, NULL, NULL, "", 0);
            return;
        }
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    char method[8], path[1024], auth[1024] = "";
    if (sscanf(req, "%7s %1023s", method, path) != 2)
        return;
    int has_auth = header(req, "Authorization", auth, sizeof(auth)) != NULL;
    int bearer_ok = has_auth && strcmp(auth, "Bearer tok-123") == 0;

    if (strncmp(path, "/token", 6) == 0) {
        g_fake.token_requests++;
        query_param(path, "scope=", g_fake.last_scope, sizeof(g_fake.last_scope));
        query_param(path, "service=", g_fake.last_service, sizeof(g_fake.last_service));
        /* base64("alice:s3cret") */
        g_fake.token_basic_ok = has_auth && strcmp(auth, "Basic YWxpY2U6czNjcmV0") == 0;
        if (g_fake.need_basic && !g_fake.token_basic_ok) {
            reply(fd, 401, "WWW-Authenticate: Basic realm=\"token\"\r\n", NULL, "", 0);
            return;
        }
        const char body[] = "{\"token\":\"tok-123\",\"expires_in\":300}";
        reply(fd, 200, NULL, "application/json", body, sizeof(body) - 1);
        return;
    }
    if (strncmp(path, "/cdn/", 5) == 0) {
        g_fake.cdn_gets++;
        serve_blob(fd, path + 5, 0, 0);
        return;
    }
    if (strncmp(path, "/v2/", 4) != 0) {
        reply(fd, 404, NULL, NULL, "", 0);
        return;
    }
    /* /v2/<repo>/(manifests|blobs)/<ref> */
    char *m = strstr(path, "/manifests/"), *bl = strstr(path, "/blobs/");
    char repo[256] = "";
    char *cut = m ? m : bl;
    if (!cut) {
        if (!bearer_ok)
            challenge(fd, "");
        else
            reply(fd, 200, NULL, "application/json", "{}", 2);
        return;
    }
    snprintf(repo, sizeof(repo), "%.*s", (int)(cut - path - 4), path + 4);
    if (!bearer_ok) {
        challenge(fd, repo);
        return;
    }
    if (m) {
        const char *ref = m + 11;
        char digest[100];
        if (strncmp(ref, "sha256:", 7) == 0) {
            snprintf(digest, sizeof(digest), "%s", ref);
            serve_blob(fd, digest, 1, g_fake.tamper_manifests);
            return;
        }
        const char *name = strrchr(repo, '/');
        name = name ? name + 1 : repo;
        if (!resolve_tag(name, digest, sizeof(digest))) {
            const char body[] = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"x\"}]}";
            reply(fd, 404, NULL, "application/json", body, sizeof(body) - 1);
            return;
        }
        serve_blob(fd, digest, 1, 0);
        return;
    }
    g_fake.blob_gets++;
    if (g_fake.expire_once) {
        g_fake.expire_once = 0;
        challenge(fd, repo);
        return;
    }
    if (g_fake.redirect_blobs) {
        char h[256];
        snprintf(h, sizeof(h), "Location: http://127.0.0.1:%d/cdn/%s\r\n", g_fake.port, bl + 7);
        reply(fd, 307, h, NULL, "", 0);
        return;
    }
    serve_blob(fd, bl + 7, 0, 0);
}

static void *
fake_main(void *arg)
{
    (void)arg;
    while (!g_fake.stop) {
        int c = accept(g_fake.lfd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        handle(c);
        close(c);
    }
    return NULL;
}

static void
fake_start(const char *layout_sub)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    if (layout_sub[0] == '/')
        snprintf(g_fake.layout, sizeof(g_fake.layout), "%s", layout_sub);
    else
        snprintf(g_fake.layout, sizeof(g_fake.layout), "%s/%s", g_fixtures, layout_sub);
    g_fake.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(g_fake.lfd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(g_fake.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(g_fake.lfd, 64), 0);
    cr_assert_eq(getsockname(g_fake.lfd, (struct sockaddr *)&a, &al), 0);
    g_fake.port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&g_fake.th, NULL, fake_main, NULL), 0);
}

static void
setup(void)
{
    const char *fx = getenv("OCIREG_FIXTURES");
    memset(&g_fake, 0, sizeof(g_fake));
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/ocirun-fakereg-XXXXXX");
    cr_assert(mkdtemp(g_tmp) != NULL);
    if (fx && *fx) {
        snprintf(g_fixtures, sizeof(g_fixtures), "%s", fx);
    } else {
        /* build our own copy (run from the source tree, or OCIREG_SRC) */
        const char *src = getenv("OCIREG_SRC");
        char cmd[1024];
        snprintf(g_fixtures, sizeof(g_fixtures), "%s/fixtures", g_tmp);
        snprintf(cmd, sizeof(cmd), "%s/tests/fixtures/build.sh %s >/dev/null 2>&1",
                 src && *src ? src : ".", g_fixtures);
        cr_assert_eq(system(cmd), 0, "fixture build failed: %s", cmd);
    }
}

static void
teardown(void)
{
    if (g_fake.lfd > 0) {
        g_fake.stop = 1;
        shutdown(g_fake.lfd, SHUT_RDWR);
        pthread_join(g_fake.th, NULL);
        close(g_fake.lfd);
    }
    fsutil_rm_rf_at(AT_FDCWD, g_tmp, NULL);
}

/* ---- helpers -------------------------------------------------------------------------- */

static struct regauth_creds g_creds = {"alice", "s3cret"};

static int
do_pull_scheme(const char *name, int with_creds, int plain_http, struct cstore *cs,
               struct cstore_image *img, struct err *e)
{
    char s[256];
    struct imgref r;
    struct pull_opts o;
    snprintf(s, sizeof(s), "127.0.0.1:%d/ocirun/%s", g_fake.port, name);
    cr_assert_eq(imgref_parse(s, &r, e), 0);
    memset(&o, 0, sizeof(o));
    o.client.plain_http = plain_http;
    o.client.tls_verify = 1;
    o.client.creds = with_creds ? &g_creds : NULL;
    o.quiet = 1;
    pull_platform_host(&o.platform);
    snprintf(o.platform.arch, sizeof(o.platform.arch), "amd64");
    o.platform.variant[0] = '\0';
    err_clear(e);
    return pull_image(cs, &r, &o, img, e);
}

static int
do_pull(const char *name, int with_creds, struct cstore *cs, struct cstore_image *img,
        struct err *e)
{
    return do_pull_scheme(name, with_creds, 1, cs, img, e);
}

static const char *
expected(const char *kind, const char *name, const char *sub, int field)
{
    static char out[128];
    char path[600], line[512];
    snprintf(path, sizeof(path), "%s/expected.txt", g_fixtures);
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f)) {
        char *save = NULL, *tok[8] = {0};
        int n = 0;
        for (char *t = strtok_r(line, " \n", &save); t && n < 8; t = strtok_r(NULL, " \n", &save))
            tok[n++] = t;
        if (n > field && strcmp(tok[0], kind) == 0 && strcmp(tok[1], name) == 0 &&
            (!sub || strcmp(tok[2], sub) == 0)) {
            snprintf(out, sizeof(out), "%s", tok[field]);
            break;
        }
    }
    fclose(f);
    cr_assert(out[0], "%s %s not in expected.txt", kind, name);
    return out;
}

static struct cstore *
store(const char *name)
{
    char p[256];
    struct err e;
    snprintf(p, sizeof(p), "%s/%s", g_tmp, name);
    struct cstore *cs = cstore_open(p, &e);
    cr_assert(cs != NULL, "%s", e.msg);
    return cs;
}

/* ---- tests ------------------------------------------------------------------------------ */

Test(fakereg, token_flow_with_basic_credentials, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    g_fake.need_basic = 1;
    fake_start("oci");
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("busybox", 1, cs, &img, &e), 0, "%s", e.msg);
    cr_assert_str_eq(img.digest, expected("tag", "busybox", NULL, 3));
    cr_assert_eq(g_fake.token_requests, 1, "token fetched %d times", g_fake.token_requests);
    cr_assert(g_fake.token_basic_ok, "token request did not carry the Basic credentials");
    cr_assert_str_eq(g_fake.last_scope, "repository:ocirun/busybox:pull");
    cr_assert_str_eq(g_fake.last_service, "fake");
    cr_assert_eq(g_fake.blob_gets, 2); /* config + layer */
    cstore_image_release(&img);
    cstore_close(cs);
}

Test(fakereg, anonymous_token_is_enough_when_the_realm_allows, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    fake_start("oci");
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("cfgtest", 0, cs, &img, &e), 0, "%s", e.msg);
    cr_assert_eq(g_fake.token_basic_ok, 0);
    cr_assert_str_eq(img.config, expected("image", "cfgtest", "config", 3));
    cstore_image_release(&img);
    cstore_close(cs);
}

Test(fakereg, token_refused_without_credentials, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    g_fake.need_basic = 1;
    fake_start("oci");
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("busybox", 0, cs, &img, &e), -1);
    cr_assert_eq(e.code, ERR_UNAUTHORIZED, "%d %s", e.code, e.msg);
    cr_assert(strstr(e.msg, "token") != NULL, "%s", e.msg);
    cstore_close(cs);
}

Test(fakereg, redirected_blobs_followed_without_credentials, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    g_fake.redirect_blobs = 1;
    fake_start("oci");
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("whiteout", 0, cs, &img, &e), 0, "%s", e.msg);
    cr_assert_eq(g_fake.cdn_gets, 3); /* config + 2 layers, all via the redirect */
    cstore_image_release(&img);
    cstore_close(cs);
}

Test(fakereg, expired_token_renewed_mid_pull, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    g_fake.expire_once = 1;
    fake_start("oci");
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("busybox", 1, cs, &img, &e), 0, "%s", e.msg);
    cr_assert_eq(g_fake.token_requests, 2);
    cstore_image_release(&img);
    cstore_close(cs);
}

Test(fakereg, index_resolves_to_amd64, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    fake_start("oci");
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("multiarch", 0, cs, &img, &e), 0, "%s", e.msg);
    cr_assert_str_eq(img.digest, expected("tag", "multiarch", NULL, 3));
    cr_assert_str_eq(img.manifest, expected("image", "multiarch-amd64", "manifest", 3));
    cr_assert_str_eq(img.platform, "linux/amd64");
    /* the index itself is kept (a record lists it) */
    cr_assert_eq(cstore_blob_has(cs, img.digest, -1), 1);
    cstore_image_release(&img);
    cstore_close(cs);
}

Test(fakereg, corrupt_layer_refused_and_nothing_stored, .init = setup, .fini = teardown)
{
    struct cstore_image img, none;
    struct err e;
    char app[128], diff[128], p[512];
    fake_start("oci-corrupt");
    snprintf(app, sizeof(app), "%s", expected("layer", "app", NULL, 5));
    snprintf(diff, sizeof(diff), "%s", expected("layer", "app", NULL, 3));
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("cfgtest", 0, cs, &img, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID, "%d %s", e.code, e.msg);
    cr_assert(strstr(e.msg, app) != NULL, "error must name %s: %s", app, e.msg);
    cr_assert_eq(cstore_blob_has(cs, app, -1), 0);
    snprintf(p, sizeof(p), "%s/layers/%s", cstore_root(cs), diff + 7);
    cr_assert_eq(access(p, F_OK), -1);
    snprintf(p, sizeof(p), "%s/tmp", cstore_root(cs));
    cr_assert_eq(rmdir(p), 0, "tmp/ is not empty");
    cr_assert_eq(mkdir(p, 0755), 0);
    struct err e2;
    cr_assert_eq(cstore_image_get(cs, img.ref[0] ? img.ref : "x", &none, &e2), 0);
    /* the busybox image of the same layout is intact */
    cr_assert_eq(do_pull("busybox", 0, cs, &img, &e), 0, "%s", e.msg);
    cstore_image_release(&img);
    cstore_close(cs);
}

Test(fakereg, tampered_manifest_by_digest_refused, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    g_fake.tamper_manifests = 1;
    fake_start("oci");
    struct cstore *cs = store("root");
    /* the index comes by tag (intact), the platform manifest by digest (tampered) */
    cr_assert_eq(do_pull("multiarch", 0, cs, &img, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID, "%d %s", e.code, e.msg);
    cr_assert(strstr(e.msg, expected("image", "multiarch-amd64", "manifest", 3)) != NULL, "%s",
              e.msg);
    cstore_close(cs);
}

Test(fakereg, unknown_tag_is_manifest_unknown, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    fake_start("oci");
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("nothere", 0, cs, &img, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN, "%d %s", e.code, e.msg);
    cr_assert(strstr(e.msg, "MANIFEST_UNKNOWN") != NULL, "%s", e.msg);
    cstore_close(cs);
}

/* an OCI manifest without the optional mediaType field, served as
 * application/json: recognised by its shape */
Test(fakereg, manifest_without_media_type_recognised, .init = setup, .fini = teardown)
{
    char lay[256], cmd[1200], p[512], d[CSTORE_DIGEST_LEN];
    struct cstore_image img;
    struct err e;
    size_t len;
    snprintf(lay, sizeof(lay), "%s/layout", g_tmp);
    snprintf(cmd, sizeof(cmd), "cp -a %s/oci %s", g_fixtures, lay);
    cr_assert_eq(system(cmd), 0);
    snprintf(p, sizeof(p), "%s/blobs/sha256/%s", lay, expected("tag", "busybox", NULL, 3) + 7);
    char *body = slurp(p, &len);
    cr_assert(body != NULL);
    json_t *o = json_loads(body, 0, NULL);
    free(body);
    cr_assert(o != NULL);
    json_object_del(o, "mediaType");
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    cstore_sha256(text, strlen(text), d);
    snprintf(p, sizeof(p), "%s/blobs/sha256/%s", lay, d + 7);
    FILE *f = fopen(p, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/index.json", lay);
    f = fopen(p, "w");
    cr_assert(f != NULL);
    fprintf(f,
            "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
            "\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":\"nomt\"}}]}",
            REGCLIENT_MT_OCI_MANIFEST, d, strlen(text));
    fclose(f);
    free(text);
    fake_start(lay);
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull("nomt", 0, cs, &img, &e), 0, "%s", e.msg);
    cr_assert_str_eq(img.digest, d);
    cr_assert_str_eq(img.config, expected("image", "busybox", "config", 3));
    cstore_image_release(&img);
    cstore_close(cs);
}

/* https (the default) to a registry that speaks plain HTTP: OpenSSL reports
 * "wrong version number"; the user is told what podman says and what to do */
Test(fakereg, plain_http_registry_without_insecure_says_so, .init = setup, .fini = teardown)
{
    struct cstore_image img;
    struct err e;
    fake_start("oci");
    struct cstore *cs = store("root");
    cr_assert_eq(do_pull_scheme("busybox", 0, 0, cs, &img, &e), -1);
    cr_assert_eq(e.code, ERR_IO, "%d %s", e.code, e.msg);
    cr_assert(strstr(e.msg, "server gave an HTTP response to an HTTPS client") != NULL, "%s",
              e.msg);
    cr_assert(strstr(e.msg, "--insecure") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "wrong version number") == NULL, "%s", e.msg);
    cstore_close(cs);
}
