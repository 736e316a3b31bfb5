/* api_tags.c - end-8a/8b (GET tags/list with n and last) and GET /v2/_catalog.
 * Both build their JSON in the worker buffer: no allocation per request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api_internal.h"

#include "common/banned.h"

struct listctx {
    struct jbuf j;
    size_t count;
    char last[NAME_MAX_LEN + 1];
};

static int
list_add(void *arg, const char *name)
{
    struct listctx *c = arg;
    if (c->count++)
        jbuf_lit(&c->j, ",");
    jbuf_str(&c->j, name);
    size_t n = strlen(name);
    if (n > NAME_MAX_LEN)
        n = NAME_MAX_LEN;
    memcpy(c->last, name, n);
    c->last[n] = '\0';
    return 0;
}

/* `n`: absent -> -1 (everything); digits only; above max_page clamped to it
 * (documented). Returns 0, or -1 after having replied 400. */
static int
parse_n(struct http_req *r, long max_page, long *out)
{
    const char *s = http_req_query(r, "n");
    *out = -1;
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

void
api_tags_list(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    long n;
    int more = 0;
    struct listctx *c = http_req_alloc(r, sizeof(*c));

    if (parse_n(r, w->a->o.max_page, &n) < 0)
        return;
    c->count = 0;
    c->last[0] = '\0';
    jbuf_init(&c->j, w);
    jbuf_lit(&c->j, "{\"name\":");
    jbuf_str(&c->j, rt->name);
    jbuf_lit(&c->j, ",\"tags\":[");
    if (storage_tags_list(w->h, rt->name, http_req_query(r, "last"), n, list_add, c, &more, &e) <
        0) {
        jbuf_done(&c->j);
        api_reply_err(r, &e);
        return;
    }
    jbuf_lit(&c->j, "]}");
    if (more && n > 0 && c->count) {
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
    int more = 0;
    struct listctx *c = http_req_alloc(r, sizeof(*c));

    if (parse_n(r, w->a->o.max_page, &n) < 0)
        return;
    c->count = 0;
    c->last[0] = '\0';
    jbuf_init(&c->j, w);
    jbuf_lit(&c->j, "{\"repositories\":[");
    if (storage_catalog(w->h, http_req_query(r, "last"), n, list_add, c, &more, &e) < 0) {
        jbuf_done(&c->j);
        api_reply_err(r, &e);
        return;
    }
    jbuf_lit(&c->j, "]}");
    if (more && n > 0 && c->count)
        add_link(r, "/v2/_catalog", n, c->last);
    http_reply(r, 200, CT_JSON, jbuf_data(&c->j), c->j.len);
    jbuf_done(&c->j);
}
