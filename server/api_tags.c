/* api_tags.c - end-8a/8b (GET tags/list with n and last) and GET /v2/_catalog.
 * Both build their JSON in the worker buffer: no allocation per request.
 *
 * Bounded pages: without `n` a page holds at most [server] max_page entries
 * (the spec lets a registry limit a response and point at the rest with Link
 * even when the client gave no `n`), `n` above max_page is clamped to it, and
 * a page also stops before the entry that would take its body past
 * api->page_bytes. Whenever entries remain, `Link: <...?n=N&last=L>;
 * rel="next"` carries the page size in force and the last entry sent. */
#include <stdio.h>
#include <string.h>

#include "server/api_internal.h"

#include "common/banned.h"

/* room for the JSON around the entries plus one entry of any size, so that the
 * first entry always fits even under a tiny page budget */
#define LIST_SLACK (64u << 10)

struct listctx {
    struct jbuf j;
    struct api_page pg;
};

static int
list_add(void *arg, const char *name)
{
    struct listctx *c = arg;
    size_t mark = c->j.len, n = strlen(name);
    jbuf_item(&c->j, c->pg.count != 0, name, n);
    if (!api_page_fit(&c->pg, &c->j, mark) || c->j.err)
        return 1; /* page full, or the handler answers 500 */
    api_page_keep(&c->pg, name, n);
    return 0;
}

/* the context of one list request, in the arena; NULL after having replied 400 */
static struct listctx *
listctx_new(struct api_worker *w, struct http_req *r, size_t maxlast)
{
    struct listctx *c = http_req_alloc(r, sizeof(*c));
    if (api_page_begin(w, r, 1, maxlast, &c->pg) < 0)
        return NULL;
    jbuf_init(&c->j, w, c->pg.budget + LIST_SLACK);
    return c;
}

/* close the JSON and reply, with the Link when entries remain */
static void
list_reply(struct http_req *r, struct listctx *c, int more, const char *base)
{
    jbuf_lit(&c->j, "]}");
    if (c->j.err) {
        api_reply_jbuf_err(r, &c->j);
        return;
    }
    c->pg.more |= more;
    api_page_link(r, &c->pg, 1, base, "");
    http_reply(r, 200, CT_JSON, jbuf_data(&c->j), c->j.len);
    jbuf_done(&c->j);
}

void
api_tags_list(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    int more = 0;
    struct listctx *c = listctx_new(w, r, TAG_MAX_LEN);
    if (!c)
        return;
    jbuf_lit(&c->j, "{\"name\":");
    jbuf_str(&c->j, rt->name);
    jbuf_lit(&c->j, ",\"tags\":[");
    if (storage_tags_list(w->h, rt->name, c->pg.last, c->pg.n, list_add, c, &more, &e) < 0) {
        jbuf_done(&c->j);
        api_reply_err(r, &e);
        return;
    }
    char base[NAME_MAX_LEN + 32];
    snprintf(base, sizeof(base), "/v2/%s/tags/list", rt->name);
    list_reply(r, c, more, base);
}

/* With auth on, the catalog lists only the repositories the caller may pull:
 * rows it may not see are skipped and the next rows read, until the page is
 * full, the rows end, or CATALOG_SCAN_MAX rows were read for this page (the
 * Link then lets the client go on: the work of one request stays bounded). */
#define CATALOG_SCAN_MAX 100000

struct catfilter {
    struct listctx *c;
    const struct api *a;
    const struct route *rt;
    long scanned;
    int stopped;
    char last[NAME_MAX_LEN + 1];
};

static int
catalog_add(void *arg, const char *name)
{
    struct catfilter *f = arg;
    f->scanned++;
    snprintf(f->last, sizeof(f->last), "%s", name);
    if (!api_auth_may_list(f->a, f->rt, name))
        return 0;
    if (list_add(f->c, name)) {
        f->stopped = 1;
        return 1;
    }
    return 0;
}

void
api_catalog(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    int more = 0;
    struct listctx *c = listctx_new(w, r, NAME_MAX_LEN);
    if (!c)
        return;
    jbuf_lit(&c->j, "{\"repositories\":[");
    if (!api_auth_on(w->a)) {
        if (storage_catalog(w->h, c->pg.last, c->pg.n, list_add, c, &more, &e) < 0)
            goto fail;
        list_reply(r, c, more, "/v2/_catalog");
        return;
    }
    struct catfilter *f = http_req_alloc(r, sizeof(*f));
    *f = (struct catfilter){.c = c, .a = w->a, .rt = rt};
    const char *from = c->pg.last;
    for (;;) {
        more = 0;
        if (storage_catalog(w->h, from, c->pg.n - (long)c->pg.count, catalog_add, f, &more, &e) <
            0)
            goto fail;
        if (f->stopped || !more || (long)c->pg.count >= c->pg.n || f->scanned >= CATALOG_SCAN_MAX)
            break;
        from = f->last;
    }
    list_reply(r, c, more, "/v2/_catalog");
    return;
fail:
    jbuf_done(&c->j);
    api_reply_err(r, &e);
}
