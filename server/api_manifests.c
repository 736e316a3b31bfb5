/* api_manifests.c - end-2/end-3 (GET/HEAD manifest), end-7 (PUT, with ?tag=),
 * end-9 (DELETE manifest or tag). */
#include <string.h>

#include "server/api_internal.h"
#include "server/events.h"

#include "common/banned.h"

void
api_manifest_get(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    struct manifest_meta meta;
    struct blob_reader rd = {0};
    int head = http_req_method(r) == HTTP_M_HEAD;

    /* No Accept negotiation: the stored media type is served whatever the client
     * lists (there is one representation per digest; see docs/api.md). */
    if (storage_manifest_get(w->h, rt->name, rt->ref, &meta, head ? NULL : &rd, &e) < 0) {
        api_reply_err(r, &e);
        return;
    }
    char ds[DIGEST_STR_MAX];
    digest_format(&meta.digest, ds);
    http_reply_header(r, "Docker-Content-Digest", "%s", ds);
    http_reply_header(r, "ETag", "\"%s\"", ds);
    const char *ct = meta.media_type[0] ? meta.media_type : MT_OCI_MANIFEST;
    if (head) {
        api_reply_head(r, 200, ct, meta.size);
        return;
    }
    /* distribution: a GET is a pull, a HEAD (an existence check) is not */
    api_event(w, r, rt, EVENTS_PULL, 1, ds, rt->ref_is_digest ? NULL : rt->ref, ct, meta.size);
    api_reply_reader(w, r, 200, ct, &rd, 0, meta.size);
}

/* A manifest PUT runs storage_manifest_put on the api's pool (api_offload_call):
 * the parse (admitted against a process-wide heap budget, it may wait for
 * others), the checks, and the durable commit (it waits for the group WAL
 * fsync) never hold up the worker. The body, headers and tags stay in the
 * request, which waits meanwhile. */
struct putctx {
    struct api_worker *w;
    const struct route *rt;
    const char **tags;
    size_t ntags;
    const char *body, *ct;
    size_t len;
    /* the job's outcome */
    struct manifest_meta meta;
    int has_subject;
    struct digest subject;
};

static int
put_call(struct storage_handle *h, const struct route *rt, void *arg, struct err *e)
{
    struct putctx *c = arg;
    c->has_subject = 0;
    return storage_manifest_put(
        h, rt->name, c->body, c->len, c->ct, rt->ref_is_digest ? &rt->digest : NULL,
        (const char *const *)c->tags, c->ntags, &c->meta, &c->has_subject, &c->subject, e);
}

static void
put_done(struct api_worker *w, struct http_req *r, const struct route *rt, void *arg, int rc)
{
    struct putctx *c = arg;
    char ds[DIGEST_STR_MAX];
    digest_format(&c->meta.digest, ds);
    http_reply_header(r, "Location", "/v2/%s/manifests/%s", rt->name, ds);
    http_reply_header(r, "Docker-Content-Digest", "%s", ds);
    if (c->has_subject) {
        char ss[DIGEST_STR_MAX];
        http_reply_header(r, "OCI-Subject", "%s", digest_format(&c->subject, ss));
    }
    for (size_t i = 0; i < c->ntags; i++)
        http_reply_header(r, "OCI-Tag", "%s", c->tags[i]);
    /* one push event per tag set (distribution has one tag per PUT), one
     * without a tag for a push by digest */
    for (size_t i = 0; i < (c->ntags ? c->ntags : 1); i++)
        api_event(w, r, rt, EVENTS_PUSH, 1, ds, c->ntags ? c->tags[i] : NULL, c->meta.media_type,
                  c->meta.size);
    http_reply(r, 201, NULL, NULL, 0);
}

static void
put_complete(struct http_req *r, void *state)
{
    struct putctx *c = state;
    const char *body = http_req_body(r, &c->len);
    c->body = body ? body : "";
    c->ct = http_req_header(r, "Content-Type");
    api_offload_call(c->w, r, c->rt, put_call, put_done, c);
}

void
api_manifest_put(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    struct putctx *c = http_req_alloc(r, sizeof(*c));
    const char *q[PUT_MAX_TAGS + 1];

    c->w = w;
    c->rt = rt;
    c->ntags = 0;
    c->tags = http_req_alloc(r, sizeof(*c->tags) * (PUT_MAX_TAGS + 1));

    /* end-7 and, in the spec's main branch, several ?tag= at once: the tags of
     * the query plus the path reference when it is a tag, each validated before
     * the body is read */
    if (!rt->ref_is_digest)
        c->tags[c->ntags++] = rt->ref;
    size_t nq = http_req_query_all(r, "tag", q, PUT_MAX_TAGS + 1);
    for (size_t i = 0; i < nq; i++) {
        if (tag_validate(q[i], strlen(q[i]), &e) < 0) {
            http_reply_errorf(r, ERR_MANIFEST_INVALID, "invalid tag in query");
            return;
        }
        size_t k;
        for (k = 0; k < c->ntags; k++)
            if (strcmp(c->tags[k], q[i]) == 0)
                break;
        if (k < c->ntags)
            continue;
        if (c->ntags == PUT_MAX_TAGS) {
            http_reply_errorf(r, ERR_MANIFEST_INVALID, "too many tags");
            return;
        }
        c->tags[c->ntags++] = q[i];
    }
    http_req_collect_body(r, (size_t)w->a->o.max_manifest, put_complete, c);
}

/* the delete's durable commit waits for the group WAL fsync: on the pool */
static int
delete_call(struct storage_handle *h, const struct route *rt, void *arg, struct err *e)
{
    return storage_manifest_delete(h, rt->name, rt->ref, e);
}

void
api_manifest_delete(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    api_offload_call(w, r, rt, delete_call, api_reply_deleted, NULL);
}
