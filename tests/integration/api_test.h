/* api_test.h - shared by tests/integration/api_*_test.c: one fresh server per
 * test (real binary on 127.0.0.1:0, mkdtemp root), and small assertion helpers
 * on status, headers and the spec's JSON error body. Static functions only: each
 * test file is its own binary. */
#ifndef OCIREG_API_TEST_H
#define OCIREG_API_TEST_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include "tests/lib/testsrv.h"

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_EMPTY "application/vnd.oci.empty.v1+json"

static struct testsrv S;

static __attribute__((unused)) void
api_setup(void)
{
    cr_assert_eq(testsrv_start(&S, NULL, NULL), 0, "server did not start");
}

static __attribute__((unused)) void
api_teardown(void)
{
    int alive = testsrv_alive(&S);
    /* a clean exit on SIGTERM; under ASan this is also where LeakSanitizer's
     * verdict on the server shows (non-zero exit) */
    int st = testsrv_stop(&S);
    if (alive && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        FILE *f = fopen(S.log, "r");
        char line[512];
        while (f && fgets(line, sizeof(line), f))
            fputs(line, stderr);
        if (f)
            fclose(f);
    }
    testsrv_cleanup(&S);
    cr_assert(alive, "server died during the test");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %#x", st);
}

/* header value or "" (static buffer: use before the next call) */
static __attribute__((unused)) const char *
H(const struct tresp *r, const char *name)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    if (!tresp_header(r, name, b, 1024))
        b[0] = '\0';
    return b;
}

/* the spec's error body: errors[0].code, or "" when the body is not one */
static __attribute__((unused)) const char *
ecode(const struct tresp *r)
{
    static char code[64];
    code[0] = '\0';
    json_error_t je;
    json_t *j = json_loadb(r->body, r->len, 0, &je);
    if (!j)
        return code;
    json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
    json_t *c = json_object_get(e0, "code");
    if (json_is_string(c))
        snprintf(code, sizeof(code), "%s", json_string_value(c));
    json_decref(j);
    return code;
}

#define assert_err(r, st, code)                                                                    \
    do {                                                                                           \
        cr_assert_eq((r)->status, (st), "status %ld want %d, body %s", (r)->status, (st),          \
                     (r)->body);                                                                   \
        cr_assert_str_eq(ecode(r), (code), "body %s", (r)->body);                                  \
    } while (0)

/* one request, asserting transport success */
static __attribute__((unused)) void
req(const char *method, const char *path, const char *const *hdrs, const void *body, size_t n,
    struct tresp *out)
{
    cr_assert_eq(treq(&S, method, path, hdrs, body, n, out), 0, "%s %s: no response", method, path);
}

static __attribute__((unused)) long
status_of(const char *method, const char *path)
{
    struct tresp r;
    req(method, path, NULL, NULL, 0, &r);
    long st = r.status;
    tresp_free(&r);
    return st;
}

static __attribute__((unused)) void
push_blob(const char *repo, const char *data, char *dg)
{
    long st = tpush_blob(&S, repo, data, strlen(data), dg);
    cr_assert_eq(st, 201, "push blob to %s: %ld", repo, st);
}

/* PUT a manifest; returns the status; digest (may be NULL) gets the
 * Docker-Content-Digest of a 201 */
static __attribute__((unused)) long
put_manifest(const char *repo, const char *ref, const char *ct, const char *body, char *digest)
{
    char path[512], cth[160];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    snprintf(cth, sizeof(cth), "Content-Type: %s", ct);
    const char *h[] = {cth, NULL};
    struct tresp r;
    req("PUT", path, h, body, strlen(body), &r);
    long st = r.status;
    if (digest)
        snprintf(digest, 80, "%s", H(&r, "Docker-Content-Digest"));
    tresp_free(&r);
    return st;
}

/* an OCI (or Docker) image manifest over a config and one layer pushed to repo;
 * body gets the manifest text (cap >= 1024) */
static __attribute__((unused)) void
make_image(const char *repo, int docker, const char *seed, char *body, size_t cap)
{
    char cfg[128], layer[128], cdg[80], ldg[80];
    snprintf(cfg, sizeof(cfg), "{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"%s\"}",
             seed);
    snprintf(layer, sizeof(layer), "layer bytes of %s", seed);
    push_blob(repo, cfg, cdg);
    push_blob(repo, layer, ldg);
    snprintf(body, cap,
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":"
             "\"%s\",\"size\":%zu}]}",
             docker ? MT_DOCKER_MANIFEST : MT_OCI_MANIFEST,
             docker ? "application/vnd.docker.container.image.v1+json" : MT_OCI_CONFIG, cdg,
             strlen(cfg),
             docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip" : MT_OCI_LAYER, ldg,
             strlen(layer));
}

/* push an image manifest under ref; digest gets its digest */
static __attribute__((unused)) void
push_image(const char *repo, const char *ref, const char *seed, char *digest)
{
    char body[1024];
    make_image(repo, 0, seed, body, sizeof(body));
    long st = put_manifest(repo, ref, MT_OCI_MANIFEST, body, digest);
    cr_assert_eq(st, 201, "push image %s:%s: %ld", repo, ref, st);
}

/* entries (not . or ..) left in root/uploads: sessions and temp files */
static __attribute__((unused)) int
uploads_left_in(const char *root)
{
    char p[200];
    snprintf(p, sizeof(p), "%s/uploads", root);
    DIR *d = opendir(p);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n;
}

/* POST a new upload session in repo; loc gets its Location */
static __attribute__((unused)) void
upload_start_at(const char *repo, char *loc, size_t cap)
{
    char path[200];
    struct tresp r;
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
    req("POST", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202);
    snprintf(loc, cap, "%s", H(&r, "Location"));
    tresp_free(&r);
}

#endif
