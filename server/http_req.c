/* http_req.c - one HTTP request: its arena, the header block and accessors, the
 * percent-decoded path and query, the body-acceptance calls, and the replies.
 *
 * A reply is built (status line, headers, a memory body) in one buffer and sent
 * with one sendv of the connection's transport; a file body follows zero-copy
 * (sendfile or io_uring splice) or copied, a streamed body piece by piece from
 * its producer (http_conn.c, http_uring.c). Every reply carries Content-Length
 * (except 1xx/204/304, and chunked streams), Date and the app's headers; error
 * bodies are the app's (struct http_app: error). */
#include "server/http_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pool.h"

#include "common/banned.h"

struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

/* The request arena. Its first block is ARENA_BLOCK bytes, enough for every
 * GET/HEAD (route, decoded path and query, the handler's context); a request
 * that needs more chains further blocks.
 *
 * Per-thread spares: when a request ends, its struct, one standard arena block,
 * and its header-block and reply-header buffers (when they are of the usual
 * size) go back to this thread's spare slots (each worker thread serves its own
 * connections, so the slots are per worker) and the next request on that thread
 * starts from them: in steady state a request costs no malloc/free at all
 * (tests/integration/hotpath_alloc_test.c counts). The slots are freed by a
 * thread-exit destructor. */
#define ARENA_BLOCK 4096
/* header and reply-header buffers up to this are kept for the next request */
#define SPARE_BUF_MAX 8192

struct req_spares {
    struct arena_blk *arena;
    struct http_req *req;
    char *hb, *rh;
    size_t hb_cap, rh_cap;
    int registered; /* the destructor knows this thread's slots */
};

static __thread struct req_spares spares;
static pthread_key_t spares_key;
static pthread_once_t spares_once = PTHREAD_ONCE_INIT;

static void
spares_free(void *p)
{
    struct req_spares *sp = p;
    free(sp->arena);
    free(sp->req);
    free(sp->hb);
    free(sp->rh);
    memset(sp, 0, sizeof(*sp));
}

static void
spares_key_init(void)
{
    if (pthread_key_create(&spares_key, spares_free) != 0)
        abort(); /* only at the first request; no way to run without it */
}

static void
spares_register(void)
{
    if (spares.registered)
        return;
    if (pthread_once(&spares_once, spares_key_init) != 0)
        abort();
    pthread_setspecific(spares_key, &spares);
    spares.registered = 1;
}

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort(); /* allocation failure: the documented exception to "never abort" */
    return p;
}

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

/* free the request's arena blocks, keeping one standard block as this thread's
 * spare (the first request of a thread registers the exit destructor) */
static void
arena_release(struct http_req *r)
{
    struct arena_blk *b = r->arena;
    r->arena = NULL;
    while (b) {
        struct arena_blk *n = b->next;
        if (!spares.arena && b->cap == ARENA_BLOCK) {
            spares_register();
            spares.arena = b;
        } else {
            free(b);
        }
        b = n;
    }
}

struct http_req *
http_req_new(struct http_conn *c)
{
    struct http_req *r = spares.req;
    if (r) {
        spares.req = NULL;
        memset(r, 0, sizeof(*r));
    } else {
        r = calloc(1, sizeof(*r));
        if (!r)
            abort();
    }
    if (spares.hb) {
        r->hb = spares.hb;
        r->hb_cap = spares.hb_cap;
        spares.hb = NULL;
    }
    if (spares.rh) {
        r->rh = spares.rh;
        r->rh_cap = spares.rh_cap;
        spares.rh = NULL;
    }
    r->c = c;
    r->content_length = -1;
    r->file_fd = -1;
    r->method = HTTP_M_OTHER;
    r->method_name = "-";
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    struct http_worker *w = c->w;
    snprintf(r->id, sizeof(r->id), "%s-%d-%llu", w->srv->id_prefix, w->index,
             (unsigned long long)++w->req_counter);
    return r;
}

void
http_req_stream_release(struct http_req *r)
{
    if (r->s_released)
        return;
    r->s_released = 1;
    if (r->release)
        r->release(r, r->sarg);
}

void
http_req_free(struct http_req *r)
{
    if (!r)
        return;
    http_req_stream_release(r); /* the client went away, or an error */
    if (r->sbuf) {
        struct http_worker *w = r->c->w;
        if (!w->stream_spare)
            w->stream_spare = r->sbuf;
        else
            free(r->sbuf);
        r->sbuf = NULL;
    }
    arena_release(r);
    if (r->xfer)
        http_uring_detach(r->xfer, -1); /* the connection normally detached it */
    if (r->file_fd >= 0)
        close(r->file_fd);
    if (r->out_heap)
        free(r->out);
    free(r->cbody);
    spares_register();
    if (r->hb && !spares.hb && r->hb_cap <= SPARE_BUF_MAX) {
        spares.hb = r->hb;
        spares.hb_cap = r->hb_cap;
    } else {
        free(r->hb);
    }
    if (r->rh && !spares.rh && r->rh_cap <= SPARE_BUF_MAX) {
        spares.rh = r->rh;
        spares.rh_cap = r->rh_cap;
    } else {
        free(r->rh);
    }
    if (!spares.req)
        spares.req = r;
    else
        free(r);
}

void *
http_req_alloc(struct http_req *r, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct arena_blk *b = r->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        if (cap == ARENA_BLOCK && spares.arena) {
            b = spares.arena; /* the slot is emptied: the exit destructor will
                                 not free a block a request holds */
            spares.arena = NULL;
        } else {
            b = xmalloc(sizeof(*b) + cap);
        }
        b->cap = cap;
        b->used = 0;
        b->next = r->arena;
        r->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *
http_req_strdup(struct http_req *r, const char *s)
{
    size_t n = strlen(s);
    char *p = http_req_alloc(r, n + 1);
    memcpy(p, s, n + 1);
    return p;
}

/* ---- header block ---- */

int
http_req_hb_append(struct http_req *r, const char *p, size_t n)
{
    size_t limit = r->c->w->srv->o.header_max + 2 * HTTP_MAX_HEADERS + 16;
    if (r->hb_len + n + 1 > limit) {
        r->hb_overflow = 1;
        return -1;
    }
    if (r->hb_len + n + 1 > r->hb_cap) {
        size_t cap = r->hb_cap ? r->hb_cap : 512;
        while (cap < r->hb_len + n + 1)
            cap *= 2;
        r->hb = xrealloc(r->hb, cap);
        r->hb_cap = cap;
    }
    memcpy(r->hb + r->hb_len, p, n);
    r->hb_len += n;
    return 0;
}

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* percent-decode s[0..n) once into the arena; -1 on an invalid escape or %00.
 * '+' stays '+': registry query values (media types) contain it and no registry
 * parameter carries a space. */
static char *
pct_decode(struct http_req *r, const char *s, size_t n)
{
    char *out = http_req_alloc(r, n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        int hi = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return NULL;
        int v = hi * 16 + lo;
        if (v == 0)
            return NULL;
        out[o++] = (char)v;
        i += 2;
    }
    out[o] = '\0';
    return out;
}

static int
parse_query(struct http_req *r, const char *q, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (q[i] == '&')
            count++;
    count++;
    r->qk = http_req_alloc(r, count * sizeof(char *));
    r->qv = http_req_alloc(r, count * sizeof(char *));
    r->nq = 0;
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && q[j] != '&')
            j++;
        if (j > i) {
            size_t eq = i;
            while (eq < j && q[eq] != '=')
                eq++;
            const char *k = pct_decode(r, q + i, eq - i);
            const char *v = eq < j ? pct_decode(r, q + eq + 1, j - eq - 1) : "";
            if (!k || !v)
                return -1;
            r->qk[r->nq] = k;
            r->qv[r->nq] = v;
            r->nq++;
        }
        i = j + 1;
    }
    return 0;
}

/* the client's X-Request-Id replaces the made id when it is sane: it goes
 * into log lines (one line each: no control characters, no quote or
 * backslash to escape) and back into a response header */
static void
req_id_adopt(struct http_req *r)
{
    const char *v = http_req_header(r, "X-Request-Id");
    if (!v)
        return;
    size_t n = 0;
    for (; v[n]; n++) {
        unsigned char c = (unsigned char)v[n];
        if (n >= HTTP_REQ_ID_MAX || c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return;
    }
    if (n == 0)
        return;
    memcpy(r->id, v, n + 1);
}

int
http_req_finish_headers(struct http_req *r)
{
    /* trim trailing whitespace of values (the parser drops the leading one) */
    for (unsigned i = 0; i < r->nh; i++) {
        char *v = r->hb + r->hval[i];
        size_t n = strlen(v);
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
    }
    req_id_adopt(r);
    const char *url = r->hb ? r->hb : "";
    size_t ulen = strlen(url);
    r->raw_target = url;
    if (ulen == 1 && url[0] == '*') {
        r->path = "*";
        return 0;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (ulen == 0 || http_parser_parse_url(url, ulen, 0, &u) != 0)
        return -1;
    if (u.field_set & (1 << UF_PATH)) {
        r->path = pct_decode(r, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        if (!r->path)
            return -1;
    } else {
        r->path = "/";
    }
    if (u.field_set & (1 << UF_QUERY)) {
        if (parse_query(r, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len) < 0)
            return -1;
    }
    return 0;
}

/* ---- accessors ---- */

enum http_method
http_req_method(const struct http_req *r)
{
    return r->method;
}

const char *
http_req_method_name(const struct http_req *r)
{
    return r->method_name;
}

const char *
http_req_path(const struct http_req *r)
{
    return r->path ? r->path : "";
}

const char *
http_req_raw_target(const struct http_req *r)
{
    return r->raw_target ? r->raw_target : "";
}

const char *
http_req_query(const struct http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nq; i++)
        if (strcmp(r->qk[i], name) == 0)
            return r->qv[i];
    return NULL;
}

size_t
http_req_query_all(const struct http_req *r, const char *name, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nq && n < max; i++)
        if (strcmp(r->qk[i], name) == 0)
            out[n++] = r->qv[i];
    return n;
}

const char *
http_req_header(const struct http_req *r, const char *name)
{
    if (!r->headers_done)
        return NULL;
    for (unsigned i = 0; i < r->nh; i++)
        if (strcasecmp(r->hb + r->hname[i], name) == 0)
            return r->hb + r->hval[i];
    return NULL;
}

int64_t
http_req_content_length(const struct http_req *r)
{
    return r->content_length;
}

int
http_req_has_body(const struct http_req *r)
{
    return r->chunked || r->content_length > 0;
}

const char *
http_req_id(const struct http_req *r)
{
    return r->id;
}

void
http_req_set_tag(struct http_req *r, int tag)
{
    r->tag = tag;
}

int
http_req_tag(const struct http_req *r)
{
    return r->tag;
}

/* both answers are asked once and kept in the request (the const accessors
 * fill a cache: the request is the layer's own memory) */
const char *
http_req_tls_identity(const struct http_req *cr)
{
    struct http_req *r = (struct http_req *)cr;
    if (!r->tls_id_done) {
        struct http_transport *t = &r->c->t;
        const char *id = t->ops->identity && !r->c->dead ? t->ops->identity(t) : NULL;
        r->tls_id = id ? http_req_strdup(r, id) : NULL;
        r->tls_id_done = 1;
    }
    return r->tls_id;
}

const char *
http_req_peer_addr(const struct http_req *cr)
{
    struct http_req *r = (struct http_req *)cr;
    if (!r->peer_done) {
        char buf[64];
        const char *a = http_transport_peer_addr(&r->c->t, buf, sizeof(buf));
        r->peer = a ? http_req_strdup(r, a) : NULL;
        r->peer_done = 1;
    }
    return r->peer;
}

/* ---- body acceptance ---- */

void
http_req_on_body(struct http_req *r, http_body_fn on_body, http_complete_fn on_complete,
                 http_abort_fn on_abort, void *state)
{
    if (r->replied || r->body_mode != BODY_NONE) {
        log_error("http", r->id, "http_req_on_body after a reply or a second time");
        return;
    }
    r->body_mode = BODY_STREAM;
    r->stream_accepted = 1;
    r->on_body = on_body;
    r->on_complete = on_complete;
    r->on_abort = on_abort;
    r->state = state;
}

void
http_req_collect_body(struct http_req *r, size_t max, http_complete_fn on_complete, void *state)
{
    if (r->replied || r->body_mode != BODY_NONE) {
        log_error("http", r->id, "http_req_collect_body after a reply or a second time");
        return;
    }
    if (r->content_length >= 0 && (uint64_t)r->content_length > max) {
        http_reply_errorf(r, ERR_TOO_LARGE, "body of %lld bytes exceeds the limit of %zu",
                          (long long)r->content_length, max);
        return;
    }
    r->body_mode = BODY_COLLECT;
    r->cbody_max = max;
    r->on_complete = on_complete;
    r->state = state;
    size_t want = r->content_length > 0 ? (size_t)r->content_length + 1 : 1024;
    if (want > max + 1)
        want = max + 1;
    r->cbody = xmalloc(want);
    r->cbody_cap = want;
    r->cbody_len = 0;
    r->cbody[0] = '\0';
}

int
http_req_collect_append(struct http_req *r, const char *p, size_t n)
{
    if (n > r->cbody_max - r->cbody_len)
        return -1;
    if (r->cbody_len + n + 1 > r->cbody_cap) {
        size_t cap = r->cbody_cap * 2;
        while (cap < r->cbody_len + n + 1)
            cap *= 2;
        if (cap > r->cbody_max + 1)
            cap = r->cbody_max + 1;
        r->cbody = xrealloc(r->cbody, cap);
        r->cbody_cap = cap;
    }
    memcpy(r->cbody + r->cbody_len, p, n);
    r->cbody_len += n;
    r->cbody[r->cbody_len] = '\0';
    return 0;
}

const char *
http_req_body(const struct http_req *r, size_t *len)
{
    if (len)
        *len = r->cbody ? r->cbody_len : 0;
    return r->cbody ? r->cbody : "";
}

/* ---- requests that wait ---- */

int
http_req_suspend(struct http_req *r)
{
    int from_ok = r->in_dispatch || r->in_complete || r->in_resume;
    /* a body being streamed cannot wait (on_body); one accepted in dispatch
     * is read first: dispatch suspends before accepting it */
    int body_ok = r->body_mode == BODY_NONE || r->completed;
    if (r->suspended || r->replied || !from_ok || !body_ok || r->wr_inflight) {
        log_error("http", r->id, "http_req_suspend refused (replied=%d suspended=%d)",
                  (int)r->replied, (int)r->suspended);
        return -1;
    }
    r->suspended = 1;
    __atomic_store_n(&r->resume_queued, 0, __ATOMIC_RELAXED);
    atomic_fetch_add(&r->c->w->nsuspended, 1);
    return 0;
}

void
http_req_resume(struct http_req *r, http_resume_fn fn, void *arg)
{
    if (__atomic_exchange_n(&r->resume_queued, 1, __ATOMIC_ACQ_REL)) {
        log_error("http", r->id, "second http_req_resume for one suspension ignored");
        return;
    }
    r->resume_fn = fn;
    r->resume_arg = arg;
    http_worker_resume_push(r->c->w, r);
}

int
http_req_is_dead(const struct http_req *r)
{
    return r->c->dead || r->c->zombie;
}

/* one http_req_offload: lives in the request's arena (allocated on the
 * worker before the job is queued; the pool thread only reads it) */
struct offload {
    struct http_req *r;
    void (*work)(void *tctx, void *arg);
    http_resume_fn done;
    void *arg;
};

static void
offload_run(void *tctx, void *arg)
{
    struct offload *o = arg;
    o->work(tctx, o->arg);
    http_req_resume(o->r, o->done, o->arg);
}

int
http_req_offload(struct http_req *r, struct pool *p, void (*work)(void *tctx, void *arg),
                 http_resume_fn done, void *arg, struct err *e)
{
    struct offload *o = http_req_alloc(r, sizeof(*o));
    o->r = r;
    o->work = work;
    o->done = done;
    o->arg = arg;
    if (http_req_suspend(r) < 0)
        return err_set(e, ERR_INTERNAL, 0, "request cannot wait now");
    if (pool_submit(p, offload_run, o, e) < 0) {
        /* nothing queued: take the suspension back, the caller answers */
        r->suspended = 0;
        atomic_fetch_sub(&r->c->w->nsuspended, 1);
        return -1;
    }
    return 0;
}

/* ---- replies ---- */

void
http_reply_header(struct http_req *r, const char *name, const char *fmt, ...)
{
    if (r->replied)
        return;
    /* the layer owns framing and persistence */
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0)
        return;
    char val[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(val))
        n = sizeof(val) - 1;
    /* no header injection: CR, LF and NUL never reach the wire */
    for (int i = 0; i < n; i++)
        if (val[i] == '\r' || val[i] == '\n')
            val[i] = ' ';
    if (strcasecmp(name, "Connection") == 0) {
        if (strcasestr(val, "close"))
            r->c->closing = 1;
        return;
    }
    size_t nl = strlen(name);
    size_t need = r->rh_len + nl + 2 + (size_t)n + 2 + 1;
    if (need > r->rh_cap) {
        size_t cap = r->rh_cap ? r->rh_cap * 2 : 512;
        while (cap < need)
            cap *= 2;
        r->rh = xrealloc(r->rh, cap);
        r->rh_cap = cap;
    }
    memcpy(r->rh + r->rh_len, name, nl);
    r->rh_len += nl;
    memcpy(r->rh + r->rh_len, ": ", 2);
    r->rh_len += 2;
    memcpy(r->rh + r->rh_len, val, (size_t)n);
    r->rh_len += (size_t)n;
    memcpy(r->rh + r->rh_len, "\r\n", 2);
    r->rh_len += 2;
}

void
http_reply_close(struct http_req *r)
{
    r->c->closing = 1;
}

/* A reply before the whole request body was read: the rest is read and dropped
 * when it is small and announced, else the connection closes after the reply
 * (a client that waits for 100-continue will not send it; a chunked body's size
 * is unknown). */
static void
early_reply_policy(struct http_req *r)
{
    if (!r->headers_done || r->msg_done || !http_req_has_body(r))
        return;
    if (r->expect_continue && !r->continue_sent)
        r->c->closing = 1;
    else if (r->chunked)
        r->c->closing = 1;
    else if ((uint64_t)r->content_length - r->body_seen > HTTP_DISCARD_MAX)
        r->c->closing = 1;
}

static int
status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

const char *
http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}

/* The reply's headers, then its body: memory (body, n), a file (fd >= 0: flen
 * bytes from off), or a stream (r->produce set by http_reply_stream, length
 * r->s_left, -1 unknown). */
static void
reply_send(struct http_req *r, int status, const char *ctype, const void *body, size_t n, int fd,
           uint64_t off, uint64_t flen)
{
    struct http_conn *c = r->c;
    const struct http_server *srv = c->w->srv;
    if (r->replied) {
        log_error("http", r->id, "second reply to one request ignored (status %d)", status);
        if (fd >= 0)
            close(fd);
        return;
    }
    r->replied = 1;
    r->status = status;
    early_reply_policy(r);
    if (!r->keepalive || c->w->stopping)
        c->closing = 1;

    int has_body = status_has_body(status);
    int stream = r->produce != NULL;
    int64_t slen = stream ? r->s_left : 0;
    uint64_t clen = fd >= 0 ? flen : stream ? (uint64_t)slen : n;
    int send_body = has_body && !r->head;
    if (!send_body) {
        n = 0;
        if (fd >= 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0 && flen == 0) {
        close(fd);
        fd = -1;
    }
    if (stream && has_body && slen < 0) {
        if (!r->http10)
            r->s_chunked = 1;
        else
            c->closing = 1; /* HTTP/1.0 has no chunks: the body ends with the connection */
    }
    if (stream && !send_body) {
        r->produce = NULL; /* no body: the producer is never asked */
        http_req_stream_release(r);
    }

    char stackbuf[8192];
    size_t hcap = 512 + sizeof(r->id) + r->rh_len + srv->app_headers_len +
                  (ctype ? strlen(ctype) : 0);
    size_t total_cap = hcap + (fd >= 0 ? 0 : n);
    char *buf = total_cap <= sizeof(stackbuf) ? stackbuf : xmalloc(total_cap);
    size_t h = 0;
    h += (size_t)snprintf(buf + h, hcap - h, "HTTP/1.1 %d %s\r\n", status,
                          http_status_reason(status));
    if (has_body && (!stream || slen >= 0))
        h += (size_t)snprintf(buf + h, hcap - h, "Content-Length: %llu\r\n",
                              (unsigned long long)clen);
    else if (has_body && r->s_chunked)
        h += (size_t)snprintf(buf + h, hcap - h, "Transfer-Encoding: chunked\r\n");
    if (ctype && *ctype && has_body)
        h += (size_t)snprintf(buf + h, hcap - h, "Content-Type: %s\r\n", ctype);
    if (srv->app_headers_len) {
        memcpy(buf + h, srv->app.headers, srv->app_headers_len);
        h += srv->app_headers_len;
    }
    h += (size_t)snprintf(buf + h, hcap - h, "%sX-Request-Id: %s\r\n", http_worker_date(c->w),
                          r->id);
    if (c->closing)
        h += (size_t)snprintf(buf + h, hcap - h, "Connection: close\r\n");
    else if (r->http10)
        h += (size_t)snprintf(buf + h, hcap - h, "Connection: keep-alive\r\n");
    if (r->rh_len) {
        memcpy(buf + h, r->rh, r->rh_len);
        h += r->rh_len;
    }
    memcpy(buf + h, "\r\n", 2);
    h += 2;
    if (fd < 0 && n) {
        memcpy(buf + h, body, n);
        h += n;
    }
    r->bytes_out = send_body && !stream ? clen : 0; /* a stream counts as it goes */
    r->out = buf;
    r->out_len = h;
    r->out_pos = 0;
    r->out_heap = buf != stackbuf;
    if (fd >= 0) {
        r->file_fd = fd;
        r->file_off = (off_t)off;
        r->file_left = flen;
    }
    if (r->produce) {
        struct http_worker *w = c->w;
        r->sbuf = w->stream_spare ? w->stream_spare : xmalloc(HTTP_STREAM_ALLOC);
        w->stream_spare = NULL;
        r->s_pos = r->s_end = 0;
    }
    int rc = http_conn_flush(c);
    if (rc == 0 && r->out && !r->out_heap) {
        /* the socket is full: keep the unsent part */
        size_t left = r->out_len - r->out_pos;
        char *copy = xmalloc(left);
        memcpy(copy, r->out + r->out_pos, left);
        r->out = copy;
        r->out_len = left;
        r->out_pos = 0;
        r->out_heap = 1;
    } else if (rc != 0 && r->out && !r->out_heap) {
        r->out = NULL;
    }
}

void
http_reply(struct http_req *r, int status, const char *content_type, const void *body, size_t n)
{
    reply_send(r, status, content_type, body, n, -1, 0, 0);
}

void
http_reply_fd(struct http_req *r, int status, const char *content_type, int fd, uint64_t off,
              uint64_t len)
{
    if (fd < 0) {
        http_reply_errorf(r, ERR_IO, "reply body file unavailable");
        return;
    }
    reply_send(r, status, content_type, NULL, 0, fd, off, len);
}

void
http_reply_stream(struct http_req *r, int status, const char *content_type, int64_t len,
                  http_produce_fn produce, http_release_fn release, void *arg)
{
    if (r->replied || r->release) {
        log_error("http", r->id, "second reply to one request ignored (status %d)", status);
        if (release)
            release(r, arg);
        return;
    }
    r->produce = produce;
    r->release = release;
    r->sarg = arg;
    r->s_left = len < 0 ? -1 : len;
    reply_send(r, status, content_type, NULL, 0, -1, 0, 0);
}

void
http_reply_error(struct http_req *r, const struct err *e)
{
    static const struct err internal = {.code = ERR_INTERNAL, .msg = "internal error"};
    const struct http_app *app = &r->c->w->srv->app;
    char body[1024];
    size_t n = 0;
    const char *ctype = NULL;
    int status = app->error(app->arg, e ? e : &internal, body, sizeof(body), &n, &ctype);
    if (n > sizeof(body))
        n = sizeof(body);
    reply_send(r, status, ctype, body, n, -1, 0, 0);
}

void
http_reply_errorf(struct http_req *r, enum err_code code, const char *fmt, ...)
{
    struct err e;
    e.code = code;
    e.sys_errno = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    http_reply_error(r, &e);
}

void
http_req_fail(struct http_req *r, enum err_code code, const char *msg)
{
    r->c->closing = 1;
    if (r->replied)
        return;
    http_reply_errorf(r, code, "%s", msg);
}
