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
#include <stdlib.h>
#include <string.h>

#include "server/api_internal.h"

#include "common/banned.h"

/* room for the JSON around the entries plus one entry of any size, so that the
 * first entry always fits even under a tiny page budget */
#define LIST_SLACK (64u << 10)

struct listctx {
    struct jbuf j;
    size_t count;
    size_t budget; /* soft byte budget of the body */
    int stopped;   /* 1: we ended the page early on the budget (entries remain) */
    char last[NAME_MAX_LEN + 1];
};

static int
list_add(void *arg, const char *name)
{
    struct listctx *c = arg;
    size_t mark = c->j.len;
    if (c->count)
        jbuf_lit(&c->j, ",");
    jbuf_str(&c->j, name);
    if (c->j.err == JBUF_E_NOMEM)
        return 1; /* the handler answers 500 */
    /* +2 for the closing "]}"; the first entry is always sent */
    if (c->count && (c->j.err || c->j.len + 2 > c->budget)) {
        jbuf_rewind(&c->j, mark);
        c->stopped = 1;
        return 1;
    }
    if (c->j.err)
        return 1;
    c->count++;
    size_t n = strlen(name);
    if (n > NAME_MAX_LEN)
        n = NAME_MAX_LEN;
    memcpy(c->last, name, n);
    c->last[n] = '\0';
    return 0;
}

/* `n`: absent -> max_page; digits only; above max_page clamped to it
 * (documented). `last`: at most maxlast bytes (a longer one cannot be a tag or
 * repository name). Returns 0, or -1 after having replied 400. */
static int
parse_paging(struct http_req *r, long max_page, size_t maxlast, long *out, const char **last)
{
    const char *s = http_req_query(r, "n");
    *last = http_req_query(r, "last");
    if (*last && strlen(*last) > maxlast) {
        api_reply_code(r, 400, ERR_UNSUPPORTED, "invalid pagination marker last: too long");
        return -1;
    }
    *out = max_page;
    if (!s)
        return 0;
    if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18) {
        api_reply_code(r, 400, ERR_UNSUPPORTED, "invalid pagination number n");
        return -1;
    }
    long n = strtol(s, NULL, 10);
    *out = n > max_page ? max_page : n;
    return 0;
}

/* Link: <...?n=N&last=LAST>; rel="next" (RFC 5988). Names and tags hold only
 * [a-z0-9._/-] and [A-Za-z0-9._-]: nothing to escape in a query. */
static void
add_link(struct http_req *r, const char *base, long n, const char *last)
{
    http_reply_header(r, "Link", "<%s?n=%ld&last=%s>; rel=\"next\"", base, n, last);
}

static struct listctx *
listctx_new(struct api_worker *w, struct http_req *r)
{
    struct listctx *c = http_req_alloc(r, sizeof(*c));
    c->count = 0;
    c->stopped = 0;
    c->last[0] = '\0';
    c->budget = w->a->page_bytes;
    jbuf_init(&c->j, w, c->budget + LIST_SLACK);
    return c;
}

void
api_tags_list(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    long n;
    const char *last;
    int more = 0;

    if (parse_paging(r, w->a->o.max_page, TAG_MAX_LEN, &n, &last) < 0)
        return;
    struct listctx *c = listctx_new(w, r);
    jbuf_lit(&c->j, "{\"name\":");
    jbuf_str(&c->j, rt->name);
    jbuf_lit(&c->j, ",\"tags\":[");
    if (storage_tags_list(w->h, rt->name, last, n, list_add, c, &more, &e) < 0) {
        jbuf_done(&c->j);
        api_reply_err(r, &e);
        return;
    }
    jbuf_lit(&c->j, "]}");
    if (c->j.err) {
        api_reply_jbuf_err(r, &c->j);
        return;
    }
    if ((more || c->stopped) && n > 0 && c->count) {
        char base[NAME_MAX_LEN + 32];
        snprintf(base, sizeof(base), "/v2/%s/tags/list", rt->name);
        add_link(r, base, n, c->last);
    }
    http_reply(r, 200, CT_JSON, jbuf_data(&c->j), c->j.len);
    jbuf_done(&c->j);
}

void
api_catalog(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    long n;
    const char *last;
    int more = 0;
    (void)rt;

    if (parse_paging(r, w->a->o.max_page, NAME_MAX_LEN, &n, &last) < 0)
        return;
    struct listctx *c = listctx_new(w, r);
    jbuf_lit(&c->j, "{\"repositories\":[");
    if (storage_catalog(w->h, last, n, list_add, c, &more, &e) < 0) {
        jbuf_done(&c->j);
        api_reply_err(r, &e);
        return;
    }
    jbuf_lit(&c->j, "]}");
    if (c->j.err) {
        api_reply_jbuf_err(r, &c->j);
        return;
    }
    if ((more || c->stopped) && n > 0 && c->count)
        add_link(r, "/v2/_catalog", n, c->last);
    http_reply(r, 200, CT_JSON, jbuf_data(&c->j), c->j.len);
    jbuf_done(&c->j);
}
