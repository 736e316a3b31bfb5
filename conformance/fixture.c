/* fixture.c - content the conformance checks push: random blobs, image
 * configs, OCI and Docker manifests, and the push helpers they share. */
#include "conformance/suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/check.h"
#include "conformance/client.h"
#include "common/banned.h"

void
suite_doc_set(struct doc *d, const char *media_type, const void *data, size_t len)
{
    d->data = util_xmalloc(len + 1);
    memcpy(d->data, data, len);
    d->data[len] = '\0';
    d->len = len;
    util_digest("sha256", d->data, len, d->digest);
    snprintf(d->media_type, sizeof(d->media_type), "%s", media_type);
}

void
suite_doc_json(struct doc *d, const char *media_type, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);

    if (s == NULL) {
        fprintf(stderr, "conformance: json_dumps failed\n");
        abort();
    }
    suite_doc_set(d, media_type, s, strlen(s));
    free(s);
    json_decref(j);
}

void
suite_doc_random(struct doc *d, const char *media_type, size_t len)
{
    unsigned char *b = util_xmalloc(len);

    util_random(b, len);
    suite_doc_set(d, media_type, b, len);
    free(b);
}

void
suite_doc_release(struct doc *d)
{
    if (d == NULL)
        return;
    free(d->data);
    memset(d, 0, sizeof(*d));
}

json_t *
suite_descriptor(const struct doc *d)
{
    return json_pack("{s:s, s:s, s:I}", "mediaType", d->media_type, "digest", d->digest, "size",
                     (json_int_t)d->len);
}

void
suite_image_make(struct image *im, const struct image_opts *o)
{
    char nonce[33];
    const char *mt = o->docker ? MT_DOCKER_MANIFEST : MT_OCI_MANIFEST;
    json_t *m, *layers;

    memset(im, 0, sizeof(*im));
    util_random_hex(nonce, 32);
    if (o->empty_config) {
        suite_doc_set(&im->config, MT_OCI_EMPTY, "{}", 2);
    } else {
        /* a nonce in the config keeps every image of every run distinct */
        json_t *cfg = json_pack("{s:s, s:s, s:{s:s, s:[]}, s:{s:[s]}}", "architecture", "amd64",
                                "os", "linux", "rootfs", "type", "layers", "diff_ids", "config",
                                "Env", "CONFORMANCE_NONCE=x");
        json_object_set_new(json_object_get(cfg, "config"), "Labels",
                            json_pack("{s:s}", "conformance.nonce", nonce));
        const char *cmt = o->config_media_type ? o->config_media_type
                          : o->docker          ? MT_DOCKER_CONFIG
                                               : MT_OCI_CONFIG;
        suite_doc_json(&im->config, cmt, cfg);
    }
    layers = json_array();
    if (!o->no_layer) {
        suite_doc_random(&im->layer, o->docker ? MT_DOCKER_LAYER : MT_OCI_LAYER, 4096 + 37);
        json_array_append_new(layers, suite_descriptor(&im->layer));
    }
    m = json_pack("{s:i, s:s, s:o, s:o}", "schemaVersion", 2, "mediaType", mt, "config",
                  suite_descriptor(&im->config), "layers", layers);
    if (o->artifact_type != NULL)
        json_object_set_new(m, "artifactType", json_string(o->artifact_type));
    if (o->subject != NULL)
        json_object_set_new(m, "subject", suite_descriptor(o->subject));
    if (o->annotation_key != NULL)
        json_object_set_new(m, "annotations",
                            json_pack("{s:s}", o->annotation_key, o->annotation_value));
    suite_doc_json(&im->manifest, mt, m);
}

void
suite_image_release(struct image *im)
{
    suite_doc_release(&im->config);
    suite_doc_release(&im->layer);
    suite_doc_release(&im->manifest);
}

int
suite_req(struct ctx *x, const char *method, const char *path, struct resp *r)
{
    const char *h[] = {SUITE_ACCEPT, NULL};

    return client_do(x->cl, method, path, h, NULL, 0, r);
}

void
suite_index_doc(struct doc *d, const char *media_type, const struct doc *m)
{
    json_t *entry = suite_descriptor(m);

    json_object_set_new(entry, "platform",
                        json_pack("{s:s, s:s}", "architecture", "amd64", "os", "linux"));
    suite_doc_json(d, media_type,
                   json_pack("{s:i, s:s, s:[o]}", "schemaVersion", 2, "mediaType", media_type,
                             "manifests", entry));
}

static void
request(struct ctx *x, const char *method, const char *path, int manifest, struct resp *r)
{
    if (manifest)
        suite_req(x, method, path, r);
    else
        client_do(x->cl, method, path, NULL, NULL, 0, r);
}

void
suite_expect_get(struct ctx *x, struct check *c, const char *path, int manifest,
                 const struct doc *d, const char *what)
{
    struct resp r;

    request(x, "GET", path, manifest, &r);
    check_status(c, &r, 200, what);
    check_body_eq(c, &r, d->data, d->len, what);
    resp_release(&r);
}

void
suite_expect_404(struct ctx *x, struct check *c, const char *path, int manifest)
{
    struct resp r;

    request(x, "GET", path, manifest, &r);
    check_status(c, &r, 404, path);
    resp_release(&r);
    request(x, "HEAD", path, manifest, &r);
    check_status(c, &r, 404, path);
    resp_release(&r);
}

void
suite_expect_unknown(struct ctx *x, struct check *c, const char *method, const char *kind,
                     const char *code)
{
    char hex[33], dg[UTIL_DIGEST_MAX], path[1024];
    struct resp r;

    util_digest("sha256", util_random_hex(hex, 32), 32, dg);
    snprintf(path, sizeof(path), "/v2/%s/%s/%s", x->repo, kind, dg);
    request(x, method, path, strcmp(kind, "manifests") == 0, &r);
    check_error_body(c, &r, 404, code, path);
    resp_release(&r);
}

int
suite_blob_push(struct ctx *x, const char *repo, const struct doc *b, char *why, size_t why_size)
{
    const char *oct[] = {"Content-Type: application/octet-stream", NULL};
    char path[1024], loc[2048], url[4096], q[200];
    struct resp r;
    int ret = -1;

    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
    client_do(x->cl, "POST", path, NULL, NULL, 0, &r);
    if (r.status != 202 || !resp_header(&r, "Location", loc, sizeof(loc))) {
        snprintf(why, why_size, "POST %s: expected 202 with Location, got %ld %s", path, r.status,
                 r.error);
        goto out;
    }
    resp_release(&r);
    snprintf(q, sizeof(q), "digest=%s", b->digest);
    util_with_query(loc, q, url, sizeof(url));
    client_do(x->cl, "PUT", url, oct, b->data, b->len, &r);
    if (r.status != 201) {
        snprintf(why, why_size, "PUT upload of %s: expected 201, got %ld %.120s", b->digest,
                 r.status, r.body);
        goto out;
    }
    ret = 0;
out:
    resp_release(&r);
    return ret;
}

int
suite_manifest_put(struct ctx *x, const char *repo, const char *ref, const struct doc *m,
                   struct resp *r)
{
    char path[1024], ct[200];
    const char *h[] = {ct, NULL};

    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    snprintf(ct, sizeof(ct), "Content-Type: %s", m->media_type);
    return client_do(x->cl, "PUT", path, h, m->data, m->len, r);
}

int
suite_image_push(struct ctx *x, const char *repo, const struct image *im, const char *ref,
                 char *why, size_t why_size)
{
    struct resp r;
    int ret = -1;

    if (suite_blob_push(x, repo, &im->config, why, why_size) < 0)
        return -1;
    if (im->layer.len > 0 && suite_blob_push(x, repo, &im->layer, why, why_size) < 0)
        return -1;
    suite_manifest_put(x, repo, ref ? ref : im->manifest.digest, &im->manifest, &r);
    if (r.status != 201) {
        snprintf(why, why_size, "PUT manifest %s: expected 201, got %ld %.160s",
                 ref ? ref : im->manifest.digest, r.status, r.body);
        goto out;
    }
    ret = 0;
out:
    resp_release(&r);
    return ret;
}
