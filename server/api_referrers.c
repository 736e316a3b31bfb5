/* api_referrers.c - end-12a/12b: GET /v2/<name>/referrers/<digest>, an OCI image
 * index of the manifests whose subject is <digest>, optionally filtered by
 * ?artifactType= (then OCI-Filters-Applied: artifactType). */
#include <string.h>

#include "server/api_internal.h"

#include "common/banned.h"

struct refctx {
    struct jbuf j;
    size_t count;
};

static int
ref_add(void *arg, const struct referrer *rf)
{
    struct refctx *c = arg;
    char ds[DIGEST_STR_MAX];
    if (c->count++)
        jbuf_lit(&c->j, ",");
    jbuf_lit(&c->j, "{\"mediaType\":");
    jbuf_str(&c->j, rf->media_type ? rf->media_type : "");
    jbuf_lit(&c->j, ",\"digest\":");
    jbuf_str(&c->j, digest_format(rf->digest, ds));
    jbuf_lit(&c->j, ",\"size\":");
    jbuf_u64(&c->j, rf->size);
    if (rf->artifact_type && *rf->artifact_type) {
        jbuf_lit(&c->j, ",\"artifactType\":");
        jbuf_str(&c->j, rf->artifact_type);
    }
    /* storage keeps the annotations as compact JSON object text it produced
     * itself from a parsed manifest: it is copied as is */
    if (rf->annotations_json && *rf->annotations_json) {
        jbuf_lit(&c->j, ",\"annotations\":");
        jbuf_put(&c->j, rf->annotations_json, strlen(rf->annotations_json));
    }
    jbuf_lit(&c->j, "}");
    return 0;
}

void
api_referrers(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    struct refctx *c = http_req_alloc(r, sizeof(*c));
    const char *at = http_req_query(r, "artifactType");

    if (at && !*at)
        at = NULL;
    c->count = 0;
    jbuf_init(&c->j, w);
    jbuf_lit(&c->j, "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":[");
    if (storage_referrers(w->h, rt->name, &rt->digest, at, ref_add, c, &e) < 0) {
        jbuf_done(&c->j);
        api_reply_err(r, &e);
        return;
    }
    jbuf_lit(&c->j, "]}");
    if (at)
        http_reply_header(r, "OCI-Filters-Applied", "artifactType");
    http_reply(r, 200, MT_OCI_INDEX, jbuf_data(&c->j), c->j.len);
    jbuf_done(&c->j);
}
