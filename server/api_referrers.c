/* api_referrers.c - end-12a/12b: GET /v2/<name>/referrers/<digest>, an OCI image
 * index of the manifests whose subject is <digest>, optionally filtered by
 * ?artifactType= (then OCI-Filters-Applied: artifactType).
 *
 * Paging (the spec lets a registry page this response with a Link header,
 * rel="next", as for tags; see api_page_* in api.c): a page holds at most
 * [server] max_page descriptors and stops before the descriptor that would
 * take its JSON body past api->page_bytes (1 MiB). A single descriptor bigger
 * than that on its own (annotations of up to max_manifest bytes) is sent alone
 * on its page, whole: the body is then bounded by page_bytes + max_manifest.
 * The next page is `?last=<digest of the last descriptor sent>` (plus the
 * artifactType filter); storage answers it with a keyset query (digest >
 * last, ordered by digest, LIMIT n + 1), so a page costs the same wherever it
 * is in the list. */
#include <stdio.h>
#include <string.h>

#include "server/api_internal.h"

#include "common/banned.h"

/* the JSON around a descriptor besides its strings: ample */
#define REF_SLACK (64u << 10)

struct refctx {
    struct jbuf j;
    struct api_page pg;
};

static void
ref_write(struct refctx *c, const struct referrer *rf, const char *ds, int annotations)
{
    if (c->pg.count)
        jbuf_lit(&c->j, ",");
    jbuf_lit(&c->j, "{\"mediaType\":");
    jbuf_str(&c->j, rf->media_type ? rf->media_type : "");
    jbuf_lit(&c->j, ",\"digest\":");
    jbuf_str(&c->j, ds);
    jbuf_lit(&c->j, ",\"size\":");
    jbuf_u64(&c->j, rf->size);
    if (rf->artifact_type && *rf->artifact_type) {
        jbuf_lit(&c->j, ",\"artifactType\":");
        jbuf_str(&c->j, rf->artifact_type);
    }
    /* storage keeps the annotations as compact JSON object text it produced
     * itself from a parsed manifest: it is copied as is */
    if (annotations && rf->annotations_json && *rf->annotations_json) {
        jbuf_lit(&c->j, ",\"annotations\":");
        jbuf_put(&c->j, rf->annotations_json, strlen(rf->annotations_json));
    }
    jbuf_lit(&c->j, "}");
}

static int
ref_add(void *arg, const struct referrer *rf)
{
    struct refctx *c = arg;
    char ds[DIGEST_STR_MAX];
    digest_format(rf->digest, ds);
    size_t mark = c->j.len;
    ref_write(c, rf, ds, 1);
    if (!api_page_fit(&c->pg, &c->j, mark))
        return 1;
    if (c->j.err == JBUF_E_NOMEM)
        return 1; /* the handler answers 500 */
    if (c->j.err) {
        /* alone and still over the hard limit: only when the stored annotations
         * outgrew max_manifest; send the descriptor without them rather than
         * fail this page for ever */
        jbuf_rewind(&c->j, mark);
        ref_write(c, rf, ds, 0);
        if (c->j.err)
            return 1;
    }
    api_page_keep(&c->pg, ds, strlen(ds));
    return 0;
}

/* append s to out percent-encoded (all but RFC 3986 unreserved and '/'),
 * truncating at cap */
static void
query_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = strlen(out);
    for (; *s && o + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~/", ch)) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

void
api_referrers(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    const char *at = http_req_query(r, "artifactType");
    struct digest ld;
    int more = 0;

    if (at && !*at)
        at = NULL;
    if (at && strlen(at) > 255) {
        /* media types are at most 127/127 characters (RFC 6838) */
        http_reply_errorf(r, ERR_BAD_REQUEST, "invalid artifactType: too long");
        return;
    }
    struct refctx *c = http_req_alloc(r, sizeof(*c));
    /* no `n` here (the spec defines none for referrers): max_page per page;
     * `last` is checked as a digest below, whatever its length */
    if (api_page_begin(w, r, 0, (size_t)-1, &c->pg) < 0)
        return;
    const char *last = c->pg.last;
    if (last && *last && digest_parse(last, strlen(last), &ld, NULL) < 0) {
        http_reply_errorf(r, ERR_DIGEST_INVALID, "invalid pagination marker last");
        return;
    }
    jbuf_init(&c->j, w, c->pg.budget + w->a->o.max_manifest + REF_SLACK);
    jbuf_lit(&c->j, "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":[");
    if (storage_referrers_page(w->h, rt->name, &rt->digest, at, last && *last ? &ld : NULL, c->pg.n,
                               ref_add, c, &more, &e) < 0) {
        jbuf_done(&c->j);
        api_reply_err(r, &e);
        return;
    }
    jbuf_lit(&c->j, "]}");
    if (c->j.err) {
        api_reply_jbuf_err(r, &c->j);
        return;
    }
    if (at)
        http_reply_header(r, "OCI-Filters-Applied", "artifactType");
    c->pg.more |= more;
    if (c->pg.more && c->pg.count) {
        char base[NAME_MAX_LEN + DIGEST_STR_MAX + 32], ds[DIGEST_STR_MAX];
        char q[3 * 256 + 32] = "";
        snprintf(base, sizeof(base), "/v2/%s/referrers/%s", rt->name,
                 digest_format(&rt->digest, ds));
        if (at) {
            snprintf(q, sizeof(q), "&artifactType=");
            query_escape(at, q, sizeof(q));
        }
        api_page_link(r, &c->pg, 0, base, q);
    }
    http_reply(r, 200, MT_OCI_INDEX, jbuf_data(&c->j), c->j.len);
    jbuf_done(&c->j);
}
