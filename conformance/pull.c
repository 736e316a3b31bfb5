/* pull.c - spec "Pull" workflow: end-1 (API version check), end-2 (blobs,
 * GET/HEAD, Range), end-3 (manifests by tag and digest, GET/HEAD) and the
 * manifest types a registry must serve back (OCI image/index, Docker schema2
 * manifest and manifest list). */
#include "conformance/suite.h"

#include <stdio.h>
#include <string.h>

#include "conformance/check.h"
#include "conformance/client.h"
#include "common/banned.h"

void
suite_base(struct ctx *x)
{
    struct check c;
    struct resp r;

    client_do(x->cl, "GET", "/v2/", NULL, NULL, 0, &r);
    check_begin(&c, "base-v2", "GET /v2/ answers 200 (end-1)");
    check_status(&c, &r, 200, "GET /v2/");
    x->base_ok = check_end(&c);

    /* spec "API Version Check" (Docker Registry HTTP API V2, which the OCI spec
     * is based on): the header SHOULD be set to "registry/2.0" */
    check_begin(&c, "base-v2-api-version",
                "GET /v2/ sends Docker-Distribution-API-Version: registry/2.0");
    check_status(&c, &r, 200, "GET /v2/");
    check_header_eq(&c, &r, "Docker-Distribution-API-Version", "registry/2.0", "GET /v2/");
    check_end(&c);
    resp_release(&r);
}

/* the headers and body of a GET/HEAD of d (spec "Pulling manifests", "Pulling
 * blobs" and "Checking if content exists"); a manifest also has its media type
 * as Content-Type */
static void
expect_content(struct check *c, const struct resp *r, const struct doc *d, int manifest, int head,
               const char *what)
{
    char cl[32];

    snprintf(cl, sizeof(cl), "%zu", d->len);
    check_status(c, r, 200, what);
    if (manifest)
        check_content_type(c, r, d->media_type, what);
    check_header_eq(c, r, "Docker-Content-Digest", d->digest, what);
    check_header_eq(c, r, "Content-Length", cl, what);
    if (head)
        check_true(c, r->body_len == 0, "%s: HEAD answered a body of %zu bytes", what, r->body_len);
    else
        check_body_eq(c, r, d->data, d->len, what);
}

static void
pull_manifests(struct ctx *x, const struct image *im, int ok, const char *tag)
{
    struct check c;
    struct resp r;
    char path[1024];
    struct {
        const char *id, *desc, *method, *ref;
    } t[] = {
        {"pull-manifest-get-tag",
         "GET manifest by tag: 200, Content-Type, Content-Length, Docker-Content-Digest, same "
         "bytes",
         "GET", tag},
        {"pull-manifest-get-digest",
         "GET manifest by digest: 200, Content-Type, Content-Length, Docker-Content-Digest, same "
         "bytes",
         "GET", im->manifest.digest},
        {"pull-manifest-head-tag",
         "HEAD manifest by tag: 200, Content-Type, Content-Length, Docker-Content-Digest, no body",
         "HEAD", tag},
        {"pull-manifest-head-digest",
         "HEAD manifest by digest: 200, Content-Type, Content-Length, Docker-Content-Digest, no "
         "body",
         "HEAD", im->manifest.digest},
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        check_begin(&c, t[i].id, t[i].desc);
        if (check_require(&c, ok, "pull-setup")) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, t[i].ref);
            suite_req(x, t[i].method, path, &r);
            expect_content(&c, &r, &im->manifest, 1, t[i].method[0] == 'H', path);
            resp_release(&r);
        }
        check_end(&c);
    }

    /* spec "Pulling manifests": not found *in the repository* is 404 */
    check_begin(&c, "pull-manifest-other-repo",
                "a manifest pushed only to another repository is 404 here, by digest");
    if (check_require(&c, ok, "pull-setup")) {
        struct image other;
        struct image_opts oo = {.no_layer = 1};
        char why[512];
        suite_image_make(&other, &oo);
        if (check_true(&c, suite_image_push(x, x->repo2, &other, NULL, why, sizeof(why)) == 0,
                       "setup in %s: %s", x->repo2, why)) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, other.manifest.digest);
            suite_expect_404(x, &c, path, 1);
        }
        suite_image_release(&other);
    }
    check_end(&c);

    check_begin(&c, "pull-manifest-unknown", "GET/HEAD of an unknown tag or digest answers 404");
    if (check_require(&c, x->base_ok, "base-v2")) {
        char dg[UTIL_DIGEST_MAX], hex[17];
        const char *refs[] = {util_random_hex(hex, 16), NULL};
        util_digest("sha256", hex, strlen(hex), dg);
        refs[1] = dg;
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, refs[i]);
            suite_expect_404(x, &c, path, 1);
        }
    }
    check_end(&c);
}

static void
pull_blobs(struct ctx *x, const struct image *im, int ok)
{
    struct check c;
    struct resp r;
    char path[1024], want[128];
    const struct doc *b = &im->layer;

    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo, b->digest);

    struct {
        const char *id, *desc, *method;
    } t[] = {
        {"pull-blob-get",
         "GET blob: 200, Content-Length, Docker-Content-Digest, byte-identical body", "GET"},
        {"pull-blob-head", "HEAD blob: 200, Content-Length, Docker-Content-Digest, no body",
         "HEAD"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        check_begin(&c, t[i].id, t[i].desc);
        if (check_require(&c, ok, "pull-setup")) {
            client_do(x->cl, t[i].method, path, NULL, NULL, 0, &r);
            expect_content(&c, &r, b, 0, t[i].method[0] == 'H', path);
            resp_release(&r);
        }
        check_end(&c);
    }

    /* spec "Pulling blobs": a registry SHOULD support Range (RFC 9110 §14) */
    check_begin(&c, "pull-blob-range",
                "GET blob with Range: bytes=10-99 answers 206 with Content-Range and those bytes");
    if (check_require(&c, ok, "pull-setup")) {
        const char *h[] = {"Range: bytes=10-99", NULL};
        client_do(x->cl, "GET", path, h, NULL, 0, &r);
        snprintf(want, sizeof(want), "bytes 10-99/%zu", b->len);
        check_status(&c, &r, 206, "GET blob with Range: bytes=10-99");
        check_header_eq(&c, &r, "Content-Range", want, "GET blob with Range");
        check_body_eq(&c, &r, b->data + 10, 90, "GET blob with Range");
        resp_release(&r);
    }
    check_end(&c);

    check_begin(&c, "pull-blob-range-open",
                "GET blob with Range: bytes=N- answers 206 with the tail");
    if (check_require(&c, ok, "pull-setup")) {
        char rh[64];
        const char *h[] = {rh, NULL};
        snprintf(rh, sizeof(rh), "Range: bytes=%zu-", b->len - 100);
        client_do(x->cl, "GET", path, h, NULL, 0, &r);
        snprintf(want, sizeof(want), "bytes %zu-%zu/%zu", b->len - 100, b->len - 1, b->len);
        check_status(&c, &r, 206, rh);
        check_header_eq(&c, &r, "Content-Range", want, rh);
        check_body_eq(&c, &r, b->data + b->len - 100, 100, rh);
        resp_release(&r);
    }
    check_end(&c);

    check_begin(&c, "pull-blob-range-416", "GET blob with an unsatisfiable Range answers 416");
    if (check_require(&c, ok, "pull-setup")) {
        char rh[64];
        const char *h[] = {rh, NULL};
        snprintf(rh, sizeof(rh), "Range: bytes=%zu-%zu", b->len + 100, b->len + 200);
        client_do(x->cl, "GET", path, h, NULL, 0, &r);
        check_status(&c, &r, 416, rh);
        resp_release(&r);
    }
    check_end(&c);

    check_begin(&c, "pull-blob-unknown", "GET/HEAD of an unknown blob answers 404");
    if (check_require(&c, x->base_ok, "base-v2")) {
        char dg[UTIL_DIGEST_MAX], hex[33];
        util_random_hex(hex, 32);
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo,
                 util_digest("sha256", hex, 32, dg));
        suite_expect_404(x, &c, path, 0);
    }
    check_end(&c);

    /* spec "Pulling blobs": not found *in the repository* is 404; a blob is
     * scoped to the repositories it was pushed to or mounted into */
    check_begin(&c, "pull-blob-other-repo", "a blob pushed only to another repository is 404 here");
    if (check_require(&c, x->base_ok, "base-v2")) {
        struct doc other;
        char why[512];
        suite_doc_random(&other, "application/octet-stream", 777);
        if (check_true(&c, suite_blob_push(x, x->repo2, &other, why, sizeof(why)) == 0,
                       "setup in %s: %s", x->repo2, why)) {
            snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo, other.digest);
            suite_expect_404(x, &c, path, 0);
        }
        suite_doc_release(&other);
    }
    check_end(&c);
}

/* push a manifest (whose blobs/children are already there) at tag, then GET it
 * by tag and by digest and compare */
static void
pull_typed(struct ctx *x, const char *id, const char *desc, int ok, const char *prereq,
           const struct doc *m, const char *tag)
{
    struct check c;
    struct resp r;
    char path[1024];

    check_begin(&c, id, desc);
    if (check_require(&c, ok, prereq)) {
        suite_manifest_put(x, x->repo, tag, m, &r);
        check_status(&c, &r, 201, "setup: PUT manifest");
        resp_release(&r);
        const char *refs[] = {tag, m->digest};
        for (int i = 0; i < 2 && check_ok(&c); i++) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, refs[i]);
            suite_req(x, "GET", path, &r);
            expect_content(&c, &r, m, 1, 0, path);
            resp_release(&r);
        }
    }
    check_end(&c);
}

static void
pull_types(struct ctx *x, const struct image *im, int ok)
{
    struct doc idx, list;
    struct image dk;
    struct image_opts dopts = {.docker = 1};
    char why[512];
    int dk_ok;

    /* OCI image index over the pull image */
    suite_index_doc(&idx, MT_OCI_INDEX, &im->manifest);
    pull_typed(x, "pull-oci-index",
               "an OCI image index is served back by tag and digest with its media type and bytes",
               ok, "pull-setup", &idx, "index");
    suite_doc_release(&idx);

    /* Docker schema2 manifest and manifest list */
    suite_image_make(&dk, &dopts);
    {
        struct check c;
        check_begin(&c, "pull-docker-setup", "push the config and layer of a Docker schema2 image");
        if (check_require(&c, x->base_ok, "base-v2"))
            check_true(&c,
                       suite_blob_push(x, x->repo, &dk.config, why, sizeof(why)) == 0 &&
                           suite_blob_push(x, x->repo, &dk.layer, why, sizeof(why)) == 0,
                       "%s", why);
        dk_ok = check_end(&c);
    }
    pull_typed(x, "pull-docker-manifest",
               "a Docker schema2 manifest is served back by tag and digest with its media type and "
               "bytes",
               dk_ok, "pull-docker-setup", &dk.manifest, "docker");
    suite_index_doc(&list, MT_DOCKER_LIST, &dk.manifest);
    {
        /* the list needs its child manifest present */
        struct resp r;
        int child_ok = 0;
        if (dk_ok) {
            suite_manifest_put(x, x->repo, dk.manifest.digest, &dk.manifest, &r);
            child_ok = r.status == 201;
            resp_release(&r);
        }
        pull_typed(
            x, "pull-docker-manifest-list",
            "a Docker manifest list is served back by tag and digest with its media type and "
            "bytes",
            child_ok, "pull-docker-manifest", &list, "docker-list");
    }
    suite_doc_release(&list);
    suite_image_release(&dk);
}

void
suite_pull(struct ctx *x)
{
    struct image im;
    struct image_opts o = {0};
    struct check c;
    char why[512];
    int ok;

    suite_image_make(&im, &o);
    check_begin(&c, "pull-setup",
                "push an OCI image (config, layer, manifest tagged \"pull\") to pull");
    if (check_require(&c, x->base_ok, "base-v2"))
        check_true(&c, suite_image_push(x, x->repo, &im, "pull", why, sizeof(why)) == 0, "%s", why);
    ok = check_end(&c);

    pull_manifests(x, &im, ok, "pull");
    pull_blobs(x, &im, ok);
    pull_types(x, &im, ok);
    suite_image_release(&im);
}
