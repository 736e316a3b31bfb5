/* api_paths_test.c - hostile and unknown paths over a raw socket (no client-side
 * normalisation): traversal, %2e%2e, %2F, overlong names, bad digests, tags and
 * upload ids are all answered 4xx with the spec JSON error, and nothing changes
 * in or next to the storage root; unknown routes 404, wrong methods 405 + Allow. */
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/api_test.h"

#include "common/banned.h"

static char parent[256];
static char root[300];

static void
paths_setup(void)
{
    snprintf(parent, sizeof(parent), "/tmp/api-paths.XXXXXX");
    cr_assert(mkdtemp(parent));
    snprintf(root, sizeof(root), "%s/root", parent);
    cr_assert_eq(mkdir(root, 0755), 0);
    char secret[400];
    snprintf(secret, sizeof(secret), "%s/secret", parent);
    FILE *f = fopen(secret, "w");
    cr_assert(f);
    fputs("do not touch\n", f);
    fclose(f);
    cr_assert_eq(testsrv_start(&S, root, NULL), 0);
}

static int
rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void
paths_teardown(void)
{
    int alive = testsrv_alive(&S);
    int st = testsrv_stop(&S);
    testsrv_cleanup(&S);
    nftw(parent, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    cr_assert(alive, "server died");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %#x", st);
}

TestSuite(api_paths, .init = paths_setup, .fini = paths_teardown, .timeout = 60);

/* ---- tree snapshot: every path under `parent` with type and size, but the
 * database files (whose WAL/shm legitimately change on reads) ---- */
static char *snap;
static size_t snap_len, snap_cap;

static int
snap_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    char line[600];
    if (strstr(p, "/meta.db"))
        return 0; /* sqlite's files: WAL and shm come and go with checkpoints */
    if (strcmp(p + strlen(p) - 9, "/root.log") == 0)
        return 0; /* the server's own log (testsrv puts it beside the root) */
    int n = snprintf(line, sizeof(line), "%s %d %lld\n", p, flag,
                     flag == FTW_F ? (long long)sb->st_size : 0LL);
    if (snap_len + (size_t)n + 1 > snap_cap) {
        snap_cap = (snap_cap + (size_t)n + 1) * 2;
        snap = realloc(snap, snap_cap);
    }
    memcpy(snap + snap_len, line, (size_t)n + 1);
    snap_len += (size_t)n;
    return 0;
}

static char *
snapshot(void)
{
    snap = NULL;
    snap_len = snap_cap = 0;
    nftw(parent, snap_cb, 16, FTW_PHYS);
    return snap ? snap : calloc(1, 1);
}

/* raw request; returns the status, response text in resp */
static int
raw(const char *method, const char *target, const char *body, char *resp, size_t cap)
{
    char buf[20000];
    size_t bl = body ? strlen(body) : 0;
    int n = snprintf(buf, sizeof(buf),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, target, bl, body ? body : "");
    cr_assert(n > 0 && (size_t)n < sizeof(buf));
    long got = traw(&S, buf, (size_t)n, resp, cap, 5000);
    cr_assert(got > 0, "%s %s: no answer", method, target);
    cr_assert(strncmp(resp, "HTTP/1.1 ", 9) == 0, "%s", resp);
    return atoi(resp + 9);
}

static const char *
raw_body(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

/* the JSON error code of a raw response, "" when none */
static const char *
raw_code(const char *resp)
{
    struct tresp r = {.body = (char *)raw_body(resp)};
    r.len = strlen(r.body);
    return ecode(&r);
}

Test(api_paths, traversal_and_garbage_are_4xx_and_touch_nothing)
{
    /* something real in the store, so that a traversal would have a target */
    char dg[80];
    push_image("victim", "latest", "v", dg);
    char *before = snapshot();

    static const struct {
        const char *method, *target;
        int status;       /* exact status wanted, or 0 for any 4xx */
        const char *code; /* JSON code wanted, or NULL */
    } cases[] = {
        {"GET", "/v2/../../etc/passwd", 0, NULL},
        {"GET", "/v2/../../../../etc/passwd/manifests/latest", 400, "NAME_INVALID"},
        {"GET", "/v2/%2e%2e/%2e%2e/etc/passwd/manifests/latest", 400, "NAME_INVALID"},
        {"GET", "/v2/victim/%2e%2e/%2e%2e/secret/tags/list", 400, "NAME_INVALID"},
        {"GET", "/v2/%2E%2E/tags/list", 400, "NAME_INVALID"},
        {"PUT", "/v2/../../x/manifests/latest", 400, "NAME_INVALID"},
        {"PUT", "/v2/victim/manifests/..", 400, "MANIFEST_INVALID"},
        {"PUT", "/v2/victim/manifests/%2e%2e%2fsecret", 0, NULL},
        {"GET", "/v2/victim/manifests/%2e%2e", 404, "MANIFEST_UNKNOWN"},
        {"GET", "/v2/victim/blobs/sha256:..%2f..%2f..%2fsecret", 0, NULL},
        {"GET", "/v2/victim/blobs/sha256:%2e%2e", 400, "DIGEST_INVALID"},
        {"GET", "/v2/victim/blobs/sha256:XYZ", 400, "DIGEST_INVALID"},
        {"GET", "/v2/victim/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", 400, "DIGEST_INVALID"},
        {"DELETE", "/v2/victim/blobs/..", 400, "DIGEST_INVALID"},
        {"PATCH", "/v2/victim/blobs/uploads/..%2f..%2fmeta.db", 0, NULL},
        {"PATCH", "/v2/victim/blobs/uploads/%2e%2e", 404, "BLOB_UPLOAD_UNKNOWN"},
        {"PUT", "/v2/victim/blobs/uploads/..?digest=sha256:00", 404, "BLOB_UPLOAD_UNKNOWN"},
        {"DELETE", "/v2/victim/blobs/uploads/...", 404, "BLOB_UPLOAD_UNKNOWN"},
        {"GET", "/v2/victim/blobs/uploads/a.b", 404, "BLOB_UPLOAD_UNKNOWN"},
        {"POST", "/v2/../blobs/uploads/", 400, "NAME_INVALID"},
        {"GET", "/v2/Victim/tags/list", 400, "NAME_INVALID"},
        {"GET", "/v2/victim//x/tags/list", 400, "NAME_INVALID"},
        {"GET", "/v2/victim%2F..%2F..%2Fsecret/tags/list", 400, "NAME_INVALID"},
        {"GET", "/v2/victim/referrers/sha256:..", 400, "DIGEST_INVALID"},
        {"GET", "/v2/victim/manifests/-x", 404, "MANIFEST_UNKNOWN"},
        {"GET", "/etc/passwd", 404, NULL},
        {"GET", "/v2/victim", 404, "UNSUPPORTED"},
        {"GET", "/v2/victim/unknown/thing", 404, "UNSUPPORTED"},
    };
    char resp[8192];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *body = strcmp(cases[i].method, "PUT") == 0 ? "{}" : NULL;
        int st = raw(cases[i].method, cases[i].target, body, resp, sizeof(resp));
        if (cases[i].status)
            cr_assert_eq(st, cases[i].status, "%s %s: %d\n%s", cases[i].method, cases[i].target, st,
                         resp);
        else
            cr_assert(st >= 400 && st < 500, "%s %s: %d\n%s", cases[i].method, cases[i].target, st,
                      resp);
        if (cases[i].code)
            cr_assert_str_eq(raw_code(resp), cases[i].code, "%s %s:\n%s", cases[i].method,
                             cases[i].target, resp);
    }

    /* %2F inside a name decodes to a slash: a valid, unknown repository */
    int st = raw("GET", "/v2/victim%2Fsub/tags/list", NULL, resp, sizeof(resp));
    cr_assert_eq(st, 404, "%s", resp);
    cr_assert_str_eq(raw_code(resp), "NAME_UNKNOWN");

    /* overlong names: 400 NAME_INVALID; an enormous target: some 4xx from the layer */
    char target[16384];
    int n = snprintf(target, sizeof(target), "/v2/");
    for (int i = 0; i < 300; i++)
        target[n++] = 'a';
    snprintf(target + n, sizeof(target) - (size_t)n, "/tags/list");
    st = raw("GET", target, NULL, resp, sizeof(resp));
    cr_assert_eq(st, 400, "%s", resp);
    cr_assert_str_eq(raw_code(resp), "NAME_INVALID");
    n = snprintf(target, sizeof(target), "/v2/");
    for (int i = 0; i < 15000; i++)
        target[n++] = i % 2 ? '/' : 'a';
    snprintf(target + n, sizeof(target) - (size_t)n, "/tags/list");
    st = raw("GET", target, NULL, resp, sizeof(resp));
    cr_assert(st >= 400 && st < 500, "%d", st);

    /* the victim is intact and nothing changed in or next to the root */
    char path[300];
    snprintf(path, sizeof(path), "/v2/victim/manifests/%s", dg);
    cr_assert_eq(status_of("GET", path), 200);
    char *after = snapshot();
    cr_assert_str_eq(after, before);
    free(before);
    free(after);
}

Test(api_paths, wrong_method_is_405_with_allow)
{
    static const struct {
        const char *method, *target, *allow;
    } cases[] = {
        {"POST", "/v2/", "GET, HEAD"},
        {"DELETE", "/v2/_catalog", "GET, HEAD"},
        {"POST", "/v2/x/manifests/latest", "GET, HEAD, PUT, DELETE"},
        {"PUT", "/v2/x/tags/list", "GET, HEAD"},
        {"PATCH",
         "/v2/x/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "GET, HEAD, DELETE"},
        {"GET", "/v2/x/blobs/uploads/", "POST"},
        {"POST", "/v2/x/blobs/uploads/abc", "GET, PATCH, PUT, DELETE"},
        {"DELETE",
         "/v2/x/referrers/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "GET, HEAD"},
    };
    char resp[8192];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int st = raw(cases[i].method, cases[i].target, NULL, resp, sizeof(resp));
        cr_assert_eq(st, 405, "%s %s: %d", cases[i].method, cases[i].target, st);
        char want[128];
        snprintf(want, sizeof(want), "\r\nAllow: %s\r\n", cases[i].allow);
        cr_assert(strcasestr(resp, want), "%s %s:\n%s", cases[i].method, cases[i].target, resp);
        cr_assert_str_eq(raw_code(resp), "UNSUPPORTED");
    }
}
