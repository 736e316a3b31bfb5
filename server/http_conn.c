/* http_conn.c - one HTTP/1.1 connection: read, parse (libhttp-parser), dispatch,
 * stream the body, write the reply, keep alive or close.
 *
 * States (c->req is the request in progress):
 *   IDLE      req == NULL. Waiting for the first byte of a request: header_timeout
 *             on a fresh connection, idle_timeout after a reply. Leading CR/LF skipped.
 *   HEADERS   req, !headers_done. Bytes go to the parser until the header block ends;
 *             more than header_max bytes -> 431, malformed -> 400 (both close). The
 *             whole block must arrive within header_timeout of its first byte (408).
 *   BODY      headers_done, !msg_done. app->dispatch ran; body bytes go to on_body /
 *             the collect buffer / nowhere (after an early reply). No byte for
 *             body_timeout: the connection dies (on_abort).
 *   WRITING   replied, !reply_done. Reading is off; input already read stays in
 *             c->pend (at most HTTP_READ_AHEAD_MAX bytes: conn_read_limit bounds
 *             each recv). The write event drives http_conn_flush (body_timeout
 *             when the client reads nothing). A streamed reply whose producer
 *             said HTTP_STREAM_AGAIN waits on no event (s_wait) until
 *             http_req_stream_wake activates the write event.
 *   LINGER    the last reply is out and the connection must close: the write side is
 *             shut and input is read and dropped for at most HTTP_LINGER_MS, so that
 *             a client still sending gets our reply instead of a reset.
 * A request ends (access log, on_abort if owed, free) when its reply is written and
 * either the message was read to its end or the connection closes.
 *
 * Asynchronous body writes (uploads through io_uring, http_req_body_write): while
 * a streamed body is read, recv() goes into one of the request's own receive
 * buffers (struct http_rbuf, from the worker's pool); on_body may queue writes of
 * those bytes, which keep the buffer (refs) until their completion. No free
 * buffer: reading stops (backpressure) until a write ends. The request cannot
 * move on while writes are in flight (r->wr_inflight): on_complete waits for
 * the last one (the message is read, input stays in c->pend), and so does the
 * end of the request (on_abort, free). A connection that dies meanwhile becomes
 * a zombie: socket closed, out of the worker's list, but the struct and its
 * request stay until the last write ends (the kernel still reads the buffers,
 * the app's fd stays open), then on_abort runs and both are freed.
 *
 * Every socket call goes through the connection's transport (c->t.ops,
 * http_transport.h), never to the socket directly. A blocked transport call may
 * ask for the other readiness (t->want: a TLS read that must write first):
 * read_on and write_on point their event at it. Input the transport holds
 * (ops->pending: decrypted TLS records) is read in the loop's next round, since
 * the socket will not signal it.
 *
 * Suspended requests (http_req_suspend, from dispatch, on_complete or a
 * resumption): the request waits in place of the step it suspended (SUSPENDED,
 * beside HEADERS/BODY: headers_done, and either no body accepted yet or the
 * message read and on_complete run). The connection is neither read nor
 * written and no timeout runs; its write event watches EV_CLOSED only (EPOLLRDHUP:
 * the client went away). Input read with the headers stays in c->pend (up to
 * the receive buffer: body bytes that came with the headers) and is parsed once
 * the resumption ran. The resumption arrives through the worker's queue
 * (http.c) and runs http_conn_resume_req: fn, then the tail of the step it
 * replaced (dispatch: 500 without a reply or a body, 100 Continue; on_complete:
 * 500 without a reply), then the kept input. A connection that dies while its
 * request is suspended becomes a zombie like one with writes in flight: the
 * socket closes at once, the request stays until its resumption ran (fn sees
 * http_req_is_dead, its reply is dropped since c->dead), then on_abort if owed
 * and the free. A request waits for at most one thing at a time: never
 * suspended with writes in flight.
 *
 * Invariants: at most one request per connection at a time (pipelined bytes wait in
 * c->pend or the socket); the worker's scratch buffer holds input only during one
 * callback; every request gets exactly one reply unless the connection dies; the
 * connection is freed only from the event callbacks' tail (conn_settle), from a
 * write completion (conn_resume) or from a resumption (http_conn_resume_req). */
#include "server/http_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pool.h"

#include "common/banned.h"

static int cb_message_begin(http_parser *p);
static int cb_url(http_parser *p, const char *at, size_t n);
static int cb_header_field(http_parser *p, const char *at, size_t n);
static int cb_header_value(http_parser *p, const char *at, size_t n);
static int cb_headers_complete(http_parser *p);
static int cb_body(http_parser *p, const char *at, size_t n);
static int cb_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
    .on_message_begin = cb_message_begin,
    .on_url = cb_url,
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
};

static void conn_on_read(evutil_socket_t fd, short what, void *arg);
static void conn_on_write(evutil_socket_t fd, short what, void *arg);
static void conn_settle(struct http_conn *c);

static void
now_mono(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
}

static long
ms_until(const struct timespec *deadline)
{
    struct timespec now;
    now_mono(&now);
    return (deadline->tv_sec - now.tv_sec) * 1000L + (deadline->tv_nsec - now.tv_nsec) / 1000000L;
}

static void
deadline_in(struct timespec *d, long ms)
{
    now_mono(d);
    d->tv_sec += ms / 1000;
    d->tv_nsec += (ms % 1000) * 1000000L;
    if (d->tv_nsec >= 1000000000L) {
        d->tv_sec++;
        d->tv_nsec -= 1000000000L;
    }
}

/* ---- parser callbacks: they run inside http_parser_execute ---- */

/* end the url / name / value being received with a NUL */
static int
hb_close_current(struct http_req *r)
{
    static const char nul[2] = {0, 0};
    switch (r->last_cb) {
    case 0:
    case 1:
        return http_req_hb_append(r, nul, 1);
    case 2: /* a name without a value: empty value */
        if (http_req_hb_append(r, nul, 1) < 0)
            return -1;
        r->hval[r->nh - 1] = (uint32_t)r->hb_len;
        return http_req_hb_append(r, nul, 1);
    default:
        return http_req_hb_append(r, nul, 1);
    }
}

static int
cb_message_begin(http_parser *p)
{
    return 0;
}

static int
cb_url(http_parser *p, const char *at, size_t n)
{
    struct http_req *r = ((struct http_conn *)p->data)->req;
    r->last_cb = 1;
    return http_req_hb_append(r, at, n);
}

static int
cb_header_field(http_parser *p, const char *at, size_t n)
{
    struct http_req *r = ((struct http_conn *)p->data)->req;
    if (r->headers_done)
        return 0; /* chunked trailers: ignored */
    /* RFC 9112 5.1: no whitespace between name and colon; a server must reject it
     * (else "Content-Length : 5" would smuggle a body past us) */
    if (memchr(at, ' ', n) || memchr(at, '\t', n)) {
        r->bad_header_name = 1;
        return -1;
    }
    if (r->last_cb != 2) {
        if (hb_close_current(r) < 0)
            return -1;
        if (r->nh == HTTP_MAX_HEADERS) {
            r->too_many_headers = 1;
            return -1;
        }
        r->hname[r->nh] = (uint32_t)r->hb_len;
        r->hval[r->nh] = 0;
        r->nh++;
        r->last_cb = 2;
    }
    return http_req_hb_append(r, at, n);
}

static int
cb_header_value(http_parser *p, const char *at, size_t n)
{
    struct http_req *r = ((struct http_conn *)p->data)->req;
    if (r->headers_done)
        return 0;
    if (r->last_cb != 3) {
        static const char nul[1] = {0};
        if (http_req_hb_append(r, nul, 1) < 0)
            return -1;
        r->hval[r->nh - 1] = (uint32_t)r->hb_len;
        r->last_cb = 3;
    }
    return http_req_hb_append(r, at, n);
}

static int
cb_headers_complete(http_parser *p)
{
    struct http_req *r = ((struct http_conn *)p->data)->req;
    if (hb_close_current(r) < 0)
        return -1;
    r->headers_done = 1;
    /* stop here: dispatch runs outside the parser */
    http_parser_pause(p, 1);
    return 0;
}

static int
cb_body(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->req;
    r->body_seen += n;
    if (r->replied)
        return c->closing ? -1 : 0; /* after an early reply: dropped */
    if (r->body_mode == BODY_STREAM) {
        int rc = r->on_body(r, r->state, at, n);
        if (rc != 0 && !r->replied) {
            log_error("http", r->id, "on_body failed without a reply");
            http_req_fail(r, ERR_INTERNAL, "request body handler failed");
        }
        if (r->replied)
            return c->closing ? -1 : 0;
    } else if (r->body_mode == BODY_COLLECT) {
        if (http_req_collect_append(r, at, n) < 0) {
            http_reply_errorf(r, ERR_TOO_LARGE, "body exceeds the limit of %zu bytes",
                              r->cbody_max);
            return c->closing ? -1 : 0;
        }
    }
    return 0;
}

static int
cb_message_complete(http_parser *p)
{
    struct http_req *r = ((struct http_conn *)p->data)->req;
    r->msg_done = 1;
    http_parser_pause(p, 1);
    return 0;
}

/* ---- request steps ---- */

enum { TOK_MORE = 0, TOK_NATIVE = 1, TOK_OTHER = 2, TOK_BAD = -1 };

static int
is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return 1;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

#define METHOD_TOKEN_MAX 32

/* The method token decides the parse: libhttp-parser knows a fixed list and
 * rejects the others, while the contract wants any token to reach dispatch as
 * HTTP_M_OTHER (the API answers 405). Tokens outside our seven are fed to the
 * parser as "GET" and keep their own name. */
static int
method_scan(const char *p, size_t len, size_t *toklen, enum http_method *m)
{
    static const struct {
        const char *s;
        enum http_method m;
    } known[] = {{"GET", HTTP_M_GET},        {"HEAD", HTTP_M_HEAD},   {"POST", HTTP_M_POST},
                 {"PUT", HTTP_M_PUT},        {"PATCH", HTTP_M_PATCH}, {"DELETE", HTTP_M_DELETE},
                 {"OPTIONS", HTTP_M_OPTIONS}};
    size_t i = 0;
    while (i < len && i < METHOD_TOKEN_MAX && is_tchar((unsigned char)p[i]))
        i++;
    if (i == len && i < METHOD_TOKEN_MAX)
        return TOK_MORE;
    if (i == 0 || i == METHOD_TOKEN_MAX || p[i] != ' ')
        return TOK_BAD;
    *toklen = i;
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
        if (strlen(known[k].s) == i && memcmp(known[k].s, p, i) == 0) {
            *m = known[k].m;
            return TOK_NATIVE;
        }
    }
    *m = HTTP_M_OTHER;
    return TOK_OTHER;
}

/* RFC 9112 6.1 / 6.3: the Transfer-Encoding list of every TE line, in order.
 * Returns 0 when absent or exactly "chunked"; 400 when chunked is not the final
 * coding (or repeated, or the list is empty): the body length is then unknown;
 * 501 for any other coding (we decode none): the server cannot read the body.
 * Either way the connection must close after the answer. */
static int
te_check(const struct http_req *r)
{
    int seen = 0, ncodings = 0, chunked_at = -1, chunked_count = 0, other = 0;
    for (unsigned i = 0; i < r->nh; i++) {
        if (strcasecmp(r->hb + r->hname[i], "Transfer-Encoding") != 0)
            continue;
        seen = 1;
        const char *v = r->hb + r->hval[i];
        while (*v) {
            while (*v == ' ' || *v == '\t' || *v == ',')
                v++;
            if (!*v)
                break;
            const char *tok = v;
            while (*v && *v != ',' && *v != ';' && *v != ' ' && *v != '\t')
                v++;
            size_t tl = (size_t)(v - tok);
            while (*v && *v != ',')
                v++; /* parameters */
            if (tl == 7 && strncasecmp(tok, "chunked", 7) == 0) {
                chunked_at = ncodings;
                chunked_count++;
            } else {
                other = 1;
            }
            ncodings++;
        }
    }
    if (!seen)
        return 0;
    if (ncodings == 0 || chunked_count > 1 || (chunked_count == 1 && chunked_at != ncodings - 1))
        return 400;
    if (other)
        return 501;
    return 0;
}

static void conn_after_dispatch(struct http_conn *c);

static void
conn_headers_done(struct http_conn *c)
{
    struct http_req *r = c->req;
    struct http_worker *w = c->w;
    http_parser *p = &c->parser;

    if ((p->flags & F_CONTENTLENGTH) && p->content_length > (uint64_t)INT64_MAX) {
        /* the parser takes any 64-bit value; as int64 it would turn negative and
         * the body would be read as the next request (desync) */
        c->closing = 1;
        http_req_fail(r, ERR_BAD_REQUEST, "Content-Length out of range");
        return;
    }
    if (r->obs_fold) {
        http_req_fail(r, ERR_BAD_REQUEST, "obsolete line folding in a header");
        return;
    }
    r->content_length = (p->flags & F_CONTENTLENGTH) ? (int64_t)p->content_length : -1;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    if (r->chunked)
        r->content_length = -1;
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    r->keepalive = http_should_keep_alive(p) && !p->upgrade;
    if (!r->keepalive || w->stopping)
        c->closing = 1;
    r->head = r->method == HTTP_M_HEAD;

    if (p->http_major != 1) {
        http_req_fail(r, ERR_BAD_REQUEST, "unsupported HTTP version");
        return;
    }
    if (http_req_finish_headers(r) < 0) {
        http_req_fail(r, ERR_BAD_REQUEST, "invalid request target");
        return;
    }
    if (r->http10 && http_req_header(r, "Transfer-Encoding")) {
        /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty
         * framing (a 1.0 hop may have passed a chunked body on as raw bytes),
         * and a request whose body length is unreliable gets 400 and a close
         * (6.3): nothing after it on this connection can be trusted */
        http_req_fail(r, ERR_BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request");
        return;
    }
    int te = te_check(r);
    if (te == 400) {
        http_req_fail(r, ERR_BAD_REQUEST, "chunked is not the final transfer coding");
        return;
    }
    if (te == 501) {
        http_req_fail(r, ERR_NOT_IMPLEMENTED, "transfer coding not implemented");
        return;
    }
    const char *exp = http_req_header(r, "Expect");
    if (exp && strcasecmp(exp, "100-continue") == 0 && !r->http10)
        r->expect_continue = 1;

    r->in_dispatch = 1;
    w->srv->app.dispatch(r, w->wctx);
    r->in_dispatch = 0;
    conn_after_dispatch(c);
}

/* what follows dispatch, or a resumption that took its place: the rule that a
 * request without a body accepted must have replied, and 100 Continue */
static void
conn_after_dispatch(struct http_conn *c)
{
    struct http_req *r = c->req;
    if (c->dead || r->suspended)
        return;
    if (!r->replied && r->body_mode == BODY_NONE) {
        log_error("http", r->id, "dispatch returned without a reply for %s %s", r->method_name,
                  r->raw_target);
        http_req_fail(r, ERR_INTERNAL, "no reply");
        return;
    }
    if (!r->replied && r->expect_continue && http_req_has_body(r)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct iovec iov = {.iov_base = (void *)cont, .iov_len = sizeof(cont) - 1};
        ssize_t n = c->t.ops->sendv(&c->t, &iov, 1, 0);
        if (n != (ssize_t)sizeof(cont) - 1) {
            /* an empty socket buffer takes 25 bytes; anything else is a dead peer */
            c->dead = 1;
            return;
        }
        r->continue_sent = 1;
    }
}

static void
conn_message_done(struct http_conn *c)
{
    struct http_req *r = c->req;
    if (r->replied)
        return;
    if (r->body_mode == BODY_STREAM || r->body_mode == BODY_COLLECT) {
        if (r->wr_inflight)
            return; /* on_complete after the last write ended (conn_resume) */
        r->completed = 1;
        r->in_complete = 1;
        if (r->on_complete)
            r->on_complete(r, r->state);
        r->in_complete = 0;
        if (c->dead || r->suspended)
            return;
        if (!r->replied) {
            log_error("http", r->id, "on_complete returned without a reply");
            http_req_fail(r, ERR_INTERNAL, "no reply");
        }
        return;
    }
    http_req_fail(r, ERR_INTERNAL, "no reply");
}

/* ---- receive buffers of streamed bodies (asynchronous writes) ---- */

static struct http_rbuf *
rbuf_get(struct http_worker *w)
{
    struct http_rbuf *b = w->rbuf_free;
    if (b) {
        w->rbuf_free = b->next;
        w->rbuf_nfree--;
        b->next = NULL;
        return b;
    }
    if (w->rbuf_total >= HTTP_RBUFS_PER_WORKER)
        return NULL;
    /* as large as the shared buffer: one recv, one SQE, one completion per
     * body_buffer bytes (256 KiB buffers measured ~25 % slower than 1 MiB) */
    size_t cap = w->srv->o.body_buffer;
    b = malloc(sizeof(*b) + cap);
    if (!b)
        abort();
    b->next = NULL;
    b->refs = 0;
    b->cap = cap;
    w->rbuf_total++;
    return b;
}

static void
rbuf_put(struct http_worker *w, struct http_rbuf *b)
{
    if (b->refs)
        log_error("http", NULL, "receive buffer given back with %u writes in flight", b->refs);
    if (w->rbuf_nfree < HTTP_RBUF_CACHE) {
        b->next = w->rbuf_free;
        w->rbuf_free = b;
        w->rbuf_nfree++;
        return;
    }
    free(b);
    w->rbuf_total--;
}

void
http_worker_rbufs_free(struct http_worker *w)
{
    while (w->rbuf_free) {
        struct http_rbuf *b = w->rbuf_free;
        w->rbuf_free = b->next;
        free(b);
        w->rbuf_total--;
    }
    w->rbuf_nfree = 0;
}

static void
conn_rbufs_release(struct http_worker *w, struct http_req *r)
{
    for (unsigned i = 0; i < r->nrb; i++)
        rbuf_put(w, r->rb[i]);
    r->nrb = 0;
}

/* the body is read now and its bytes may be written asynchronously */
static int
conn_async_body(const struct http_conn *c)
{
    const struct http_req *r = c->req;
    return r && (c->w->uring_writes_on || r->body_pool) && r->body_mode == BODY_STREAM &&
           r->headers_done &&
           !r->msg_done && !r->replied && !c->lingering;
}

/* The buffer for the next recv of a streamed body: a free one of the request's,
 * else a new one from the worker (up to HTTP_RBUFS_PER_REQ). NULL with *wait = 1
 * when all of the request's are held by writes (read again when one ends); NULL
 * with *wait = 0 when the worker has none to give: the shared buffer is used and
 * its bytes are written synchronously. take = 0 only tells. */
static struct http_rbuf *
conn_rbuf_pick(struct http_conn *c, int take, int *wait)
{
    struct http_req *r = c->req;
    struct http_worker *w = c->w;
    *wait = 0;
    for (unsigned i = 0; i < r->nrb; i++)
        if (r->rb[i]->refs == 0)
            return r->rb[i];
    if (r->nrb < HTTP_RBUFS_PER_REQ && (w->rbuf_free || w->rbuf_total < HTTP_RBUFS_PER_WORKER)) {
        if (!take)
            return NULL;
        struct http_rbuf *b = rbuf_get(w);
        r->rb[r->nrb++] = b;
        return b;
    }
    *wait = r->nrb > 0;
    return NULL;
}

static long
conn_pwrite(int fd, const char *p, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, p + done, n - done, (off_t)(off + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -(long)errno;
        }
        if (w == 0)
            return -EIO;
        done += (size_t)w;
    }
    return (long)n;
}

int
http_req_async_writes(const struct http_req *r)
{
    return r->c->w->uring_writes_on;
}

void
http_req_body_write(struct http_req *r, int fd, uint64_t off, const void *data, size_t n,
                    http_write_done_fn done)
{
    struct http_conn *c = r->c;
    struct http_rbuf *rb = NULL;
    uintptr_t p = (uintptr_t)data;
    if (c->w->uring_writes_on && n) {
        for (unsigned i = 0; i < r->nrb; i++) {
            uintptr_t b = (uintptr_t)r->rb[i]->data;
            if (p >= b && p + n <= b + r->rb[i]->cap) {
                rb = r->rb[i];
                break;
            }
        }
    }
    if (rb) {
        struct http_bwrite *bw = calloc(1, sizeof(*bw));
        if (!bw)
            abort();
        bw->r = r;
        bw->rb = rb;
        bw->done = done;
        bw->fd = fd;
        bw->off = off;
        bw->data = data;
        bw->n = n;
        rb->refs++;
        r->wr_inflight++;
        if (http_uring_write(c->w, bw) == 0)
            return;
        rb->refs--;
        r->wr_inflight--;
        free(bw);
    }
    /* the shared buffer (reused by the next recv), or the ring is full */
    long res = conn_pwrite(fd, data, n, off);
    done(r, r->state, off, n, res);
}

/* ---- body pieces worked on a pool (http_req_body_offload) ---- */

void
http_req_body_pool(struct http_req *r, struct pool *p)
{
    r->body_pool = p;
}

int
http_req_body_pooled(const struct http_req *r)
{
    return r->body_pool != NULL;
}

/* the receive buffer of the request that holds [data, data + n), or NULL */
static struct http_rbuf *
req_rbuf_of(struct http_req *r, const void *data, size_t n)
{
    uintptr_t p = (uintptr_t)data;
    for (unsigned i = 0; i < r->nrb; i++) {
        uintptr_t b = (uintptr_t)r->rb[i]->data;
        if (p >= b && p + n <= b + r->rb[i]->cap)
            return r->rb[i];
    }
    return NULL;
}

/* work a job's pieces in order (tctx: the pool thread's, NULL on the worker) */
static void
pieces_work(struct http_bwrite *first, void *tctx)
{
    for (struct http_bwrite *b = first; b; b = b->next)
        b->res = b->work(tctx, b->state, b->data, b->n);
}

/* on a pool thread: work the job, then hand it back */
static void
pieces_job(void *tctx, void *arg)
{
    struct http_bwrite *first = arg;
    pieces_work(first, tctx);
    http_worker_pieces_push(first->w, first);
}

/* the pieces of a job are worked: give back their buffers and tell the app,
 * in order. 1 when a done failed without a reply. */
static int
pieces_end(struct http_req *r, struct http_bwrite *first)
{
    int bad = 0;
    while (first) {
        struct http_bwrite *b = first;
        first = b->next;
        if (b->rb)
            b->rb->refs--;
        r->wr_inflight--;
        long res = b->res;
        size_t n = b->n;
        http_write_done_fn done = b->done;
        free(b->copy);
        free(b);
        if (done(r, r->state, 0, n, res) != 0 && !r->replied)
            bad = 1;
    }
    return bad;
}

/* send r's queued pieces to its pool as one job, unless one is there; a job
 * the pool refuses is worked here, now. 1 when a done failed without a reply. */
static int
pieces_kick(struct http_req *r)
{
    struct http_worker *w = r->c->w;
    int bad = 0;
    while (r->pq_head && !r->p_running) {
        struct http_bwrite *first = r->pq_head;
        r->pq_head = r->pq_tail = NULL;
        r->p_running = 1;
        atomic_fetch_add(&w->npieces, 1);
        struct err e;
        if (pool_submit(r->body_pool, pieces_job, first, &e) == 0)
            return bad;
        atomic_fetch_sub(&w->npieces, 1);
        pieces_work(first, NULL);
        r->p_running = 0;
        bad |= pieces_end(r, first);
    }
    return bad;
}

void
http_req_body_offload(struct http_req *r, const void *data, size_t n, http_piece_fn work,
                      http_write_done_fn done)
{
    struct http_rbuf *rb = n ? req_rbuf_of(r, data, n) : NULL;
    if (!r->body_pool || (!rb && !r->pq_head && !r->p_running)) {
        /* nothing of r waits: worked here, in order */
        long res = work(NULL, r->state, data, n);
        done(r, r->state, 0, n, res);
        return;
    }
    struct http_bwrite *b = calloc(1, sizeof(*b));
    if (!b)
        abort();
    if (!rb) {
        /* outside the request's buffers while pieces wait: a copy keeps the order */
        b->copy = malloc(n);
        if (!b->copy)
            abort();
        memcpy(b->copy, data, n);
        data = b->copy;
    } else {
        rb->refs++;
    }
    b->r = r;
    b->rb = rb;
    b->w = r->c->w;
    b->work = work;
    b->done = done;
    b->state = r->state;
    b->data = data;
    b->n = n;
    r->wr_inflight++;
    atomic_fetch_add_explicit(&b->w->pieces_pooled, 1, memory_order_relaxed);
    if (r->pq_tail)
        r->pq_tail->next = b;
    else
        r->pq_head = b;
    r->pq_tail = b;
    pieces_kick(r); /* a done that fails here has on_body's return to tell it */
}

static void conn_resume(struct http_conn *c);

void
http_conn_pieces_done(struct http_bwrite *first)
{
    struct http_req *r = first->r;
    struct http_conn *c = r->c;
    atomic_fetch_sub(&c->w->npieces, 1);
    r->p_running = 0;
    int bad = pieces_end(r, first);
    /* queued pieces run even when the client went away: the request and the
     * app's state stay until every piece ended (as for writes in flight) */
    bad |= pieces_kick(r);
    if (bad && !r->replied && !c->dead) {
        log_error("http", r->id, "body piece completion failed without a reply");
        http_req_fail(r, ERR_INTERNAL, "request body handler failed");
    }
    conn_resume(c);
}

/* the request is over: on_abort if owed, the access log line, free */
static void
conn_req_end(struct http_conn *c)
{
    struct http_req *r = c->req;
    if (!r)
        return;
    c->req = NULL;
    if (r->stream_accepted && !r->completed && r->on_abort)
        r->on_abort(r, r->state);
    if (r->scanned || r->replied) {
        struct timespec now;
        now_mono(&now);
        double ms =
            (double)(now.tv_sec - r->t0.tv_sec) * 1e3 + (double)(now.tv_nsec - r->t0.tv_nsec) / 1e6;
        const struct http_app *app = &c->w->srv->app;
        if (app->on_end)
            app->on_end(r, c->w->wctx, r->replied ? r->status : 0, r->body_seen,
                        r->reply_done ? r->bytes_out : 0, ms / 1e3);
        if (r->reply_done)
            log_info("http", r->id, "%s %s status=%d bytes=%llu in=%llu ms=%.3f", r->method_name,
                     r->raw_target ? r->raw_target : "-", r->status,
                     (unsigned long long)r->bytes_out, (unsigned long long)r->body_seen, ms);
        else
            log_info("http", r->id, "%s %s status=%d aborted in=%llu ms=%.3f", r->method_name,
                     r->raw_target ? r->raw_target : "-", r->replied ? r->status : 0,
                     (unsigned long long)r->body_seen, ms);
    }
    c->served = 1;
    conn_rbufs_release(c->w, r);
    http_req_free(r);
}

/* Keep input read ahead of the request in progress until it can be parsed (its
 * reply waits for the socket, or for the request's writes). conn_read_limit
 * keeps that below HTTP_READ_AHEAD_MAX, except after a chunked body, whose end
 * no limit can foresee: more than that is dropped and the connection closes
 * after the current reply (a client that pipelines must be ready to send
 * unanswered requests again, RFC 9112 9.3.2). */
/* the most input kept unparsed: a request suspended in dispatch keeps the body
 * bytes that came with its headers (one receive: at most the shared buffer,
 * into which they go back), otherwise HTTP_READ_AHEAD_MAX */
static size_t
conn_pend_max(const struct http_conn *c)
{
    const struct http_req *r = c->req;
    return r && r->suspended && !r->msg_done ? c->w->scratch_cap : HTTP_READ_AHEAD_MAX;
}

static void
conn_save_input(struct http_conn *c, const char *buf, size_t len)
{
    if (!len)
        return;
    if (len > conn_pend_max(c)) {
        c->closing = 1;
        return;
    }
    char *p = malloc(len);
    if (!p)
        abort();
    memcpy(p, buf, len);
    free(c->pend);
    c->pend = p;
    c->pend_len = len;
    struct http_worker *w = c->w;
    if (len > atomic_load_explicit(&w->held_max, memory_order_relaxed))
        atomic_store_explicit(&w->held_max, len, memory_order_relaxed);
}

/* Consume input. Returns when it is all used, when a reply waits for the socket
 * (the rest is kept in c->pend), or when the connection must close. */
static void
conn_input(struct http_conn *c, const char *buf, size_t len)
{
    const struct http_server_opts *o = &c->w->srv->o;
    for (;;) {
        struct http_req *r = c->req;
        if (c->dead)
            return;
        if (r) {
            if (r->suspended) {
                conn_save_input(c, buf, len);
                return;
            }
            if (r->replied && !r->reply_done) {
                conn_save_input(c, buf, len);
                return;
            }
            if (r->reply_done && (r->msg_done || c->closing)) {
                if (r->wr_inflight) {
                    /* the request ends when its writes have (conn_resume) */
                    if (!c->closing)
                        conn_save_input(c, buf, len);
                    return;
                }
                conn_req_end(c);
                if (c->closing)
                    return; /* whatever else came is dropped */
                continue;
            }
        }
        if (len == 0)
            return;
        if (!r) {
            while (len && (*buf == '\r' || *buf == '\n')) {
                buf++;
                len--;
            }
            if (!len)
                return;
            r = c->req = http_req_new(c);
            /* a handshake (TLS) counts against the first request's header
             * timeout: its deadline runs from accept */
            if (c->served || !c->t.ops->handshake)
                deadline_in(&c->deadline, OPT_LIVE(o->header_timeout_ms));
        }
        if (!r->scanned) {
            size_t tl = 0;
            enum http_method m = HTTP_M_OTHER;
            int k = method_scan(buf, len, &tl, &m);
            if (k == TOK_MORE) {
                conn_save_input(c, buf, len);
                return;
            }
            if (k == TOK_BAD) {
                r->scanned = 1;
                http_req_fail(r, ERR_BAD_REQUEST, "malformed request line");
                len = 0;
                continue;
            }
            r->scanned = 1;
            r->method = m;
            http_parser_init(&c->parser, HTTP_REQUEST);
            c->parser.data = c;
            if (k == TOK_OTHER) {
                char *name = http_req_alloc(r, tl + 1);
                memcpy(name, buf, tl);
                name[tl] = '\0';
                r->method_name = name;
                http_parser_execute(&c->parser, &parser_settings, "GET", 3);
                buf += tl;
                len -= tl;
                r->hdr_bytes += tl;
            } else {
                r->method_name =
                    http_method_str((enum http_parser_method)(m == HTTP_M_GET      ? HTTP_GET
                                                              : m == HTTP_M_HEAD   ? HTTP_HEAD
                                                              : m == HTTP_M_POST   ? HTTP_POST
                                                              : m == HTTP_M_PUT    ? HTTP_PUT
                                                              : m == HTTP_M_PATCH  ? HTTP_PATCH
                                                              : m == HTTP_M_DELETE ? HTTP_DELETE
                                                                                   : HTTP_OPTIONS));
            }
        }
        if (!r->headers_done) {
            size_t room = o->header_max + 1 - r->hdr_bytes;
            size_t feed = len < room ? len : room;
            size_t n = http_parser_execute(&c->parser, &parser_settings, buf, feed);
            enum http_errno he = HTTP_PARSER_ERRNO(&c->parser);
            /* RFC 9112 5.2: obs-fold (a line starting with SP/HT) is rejected, not
             * folded in; libhttp-parser would fold it */
            for (size_t i = 0; i < n; i++) {
                if (r->hdr_lf && (buf[i] == ' ' || buf[i] == '\t'))
                    r->obs_fold = 1;
                r->hdr_lf = buf[i] == '\n';
            }
            buf += n;
            len -= n;
            r->hdr_bytes += n;
            if (r->headers_done) {
                http_parser_pause(&c->parser, 0);
                conn_headers_done(c);
                continue;
            }
            if (he != HPE_OK) {
                if (he == HPE_HEADER_OVERFLOW || r->too_many_headers || r->hb_overflow)
                    http_req_fail(r, ERR_HEADERS_TOO_LARGE, "request header block too large");
                else
                    http_req_fail(r, ERR_BAD_REQUEST,
                                  r->bad_header_name ? "whitespace in a header name"
                                                     : http_errno_description(he));
                len = 0;
                continue;
            }
            if (r->hdr_bytes > o->header_max) {
                http_req_fail(r, ERR_HEADERS_TOO_LARGE, "request header block too large");
                len = 0;
            }
            continue;
        }
        if (!r->msg_done) {
            size_t n = http_parser_execute(&c->parser, &parser_settings, buf, len);
            enum http_errno he = HTTP_PARSER_ERRNO(&c->parser);
            buf += n;
            len -= n;
            if (he == HPE_PAUSED)
                http_parser_pause(&c->parser, 0);
            if (c->dead)
                return;
            if (r->msg_done) {
                conn_message_done(c);
                continue;
            }
            if (he != HPE_OK && he != HPE_PAUSED) {
                if (r->replied) {
                    c->closing = 1;
                } else {
                    const char *why = he == HPE_INVALID_CHUNK_SIZE ? "invalid chunk size"
                                                                   : http_errno_description(he);
                    http_req_fail(r, ERR_BAD_REQUEST, why);
                }
                len = 0;
            }
            continue;
        }
        /* msg_done: replied is handled at the top; not replied: on_complete waits
         * for the request's writes, what follows is kept */
        conn_save_input(c, buf, len);
        return;
    }
}

/* ---- events ---- */

/* How many bytes the next recv may add to the have bytes kept. Input read
 * beyond the message in progress is kept on the heap when a reply then waits
 * for the socket (conn_save_input), so a recv may take at most
 * HTTP_READ_AHEAD_MAX bytes beyond what the message still needs (the rest of a
 * Content-Length body); pipelined input past that stays in the kernel and a
 * client that does not read its replies holds no more than that here. A
 * chunked body's end is unknown: a whole buffer (uploads need large reads). */
static size_t
conn_read_limit(const struct http_conn *c, size_t have, size_t cap)
{
    const struct http_req *r = c->req;
    size_t limit = HTTP_READ_AHEAD_MAX;
    if (c->lingering || (r && r->headers_done && !r->msg_done && r->chunked)) {
        limit = cap;
    } else if (r && r->headers_done && !r->msg_done && r->content_length >= 0) {
        uint64_t left = (uint64_t)r->content_length - r->body_seen;
        limit = left >= cap ? cap : (size_t)left + HTTP_READ_AHEAD_MAX;
    }
    if (limit > cap)
        limit = cap;
    return limit > have ? limit - have : 0;
}

/* The read event waits for what the transport's last blocked call asked: a
 * TLS read may need the socket writable (http_transport.h, t->want); the
 * callback is conn_on_read either way. */
static void
read_on(struct http_conn *c, long ms)
{
    if (ms < 1)
        ms = 1;
    unsigned inv = c->t.want == HTTP_TRANSPORT_WANT_WRITE;
    if (inv != c->rev_inv) {
        if (c->rd_on)
            event_del(c->rev);
        event_assign(c->rev, c->w->base, c->t.fd, (inv ? EV_WRITE : EV_READ) | EV_PERSIST,
                     conn_on_read, c);
        c->rev_inv = inv;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(c->rev, &tv);
    c->rd_on = 1;
    /* input the transport holds already (decrypted TLS records) never makes
     * the socket readable: read it in the loop's next round */
    if (c->t.ops->pending && c->t.ops->pending(&c->t))
        event_active(c->rev, EV_READ, 1);
}

static void
read_off(struct http_conn *c)
{
    if (c->rd_on) {
        event_del(c->rev);
        c->rd_on = 0;
    }
}

/* 1 when the write event waits for the readiness the transport asked for */
static int
write_dir_ok(const struct http_conn *c)
{
    return (c->t.want == HTTP_TRANSPORT_WANT_READ) == c->wev_inv;
}

static void
write_on(struct http_conn *c, long ms)
{
    if (!write_dir_ok(c)) {
        /* a TLS write waiting for input (a handshake message): the write
         * callback runs when the socket is readable */
        unsigned inv = !c->wev_inv;
        if (c->wr_on || c->woken)
            event_del(c->wev);
        c->woken = 0;
        event_assign(c->wev, c->w->base, c->t.fd, (inv ? EV_READ : EV_WRITE) | EV_PERSIST,
                     conn_on_write, c);
        c->wev_inv = inv;
    }
    /* EV_PERSIST: libevent re-arms the timeout after each activation */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(c->wev, &tv);
    c->wr_on = 1;
}

static void
write_off(struct http_conn *c)
{
    if (c->wr_on || c->woken) {
        event_del(c->wev); /* also drops an activation by http_req_stream_wake */
        c->wr_on = 0;
        c->woken = 0;
    }
}

static void conn_on_closed(evutil_socket_t fd, short what, void *arg);

/* While a request is suspended the write event is not needed (nothing to
 * send): it watches for the client going away instead. EV_CLOSED (EPOLLRDHUP)
 * tells a FIN; libevent reports a reset (EPOLLHUP|EPOLLERR) as EV_READ|EV_WRITE
 * only, so EV_READ is watched too (level-triggered: an edge-triggered event
 * leaves EPOLLET on the descriptor for the reads after the resumption, which
 * then stall). Input that arrives meanwhile is read into c->pend, up to what
 * the request may keep (conn_pend_max); beyond that the watch stops and a death
 * is found when the request goes on. */
static void
conn_closed_watch_on(struct http_conn *c)
{
    struct event_base *base = c->w->base;
    if (c->closed_watch || !(event_base_get_features(base) & EV_FEATURE_EARLY_CLOSE))
        return;
    write_off(c);
    event_assign(c->wev, base, c->t.fd, EV_READ | EV_CLOSED | EV_PERSIST, conn_on_closed, c);
    event_add(c->wev, NULL);
    c->closed_watch = 1;
    c->wev_inv = 0; /* conn_closed_watch_off assigns the natural direction */
}

static void
conn_closed_watch_off(struct http_conn *c)
{
    if (!c->closed_watch)
        return;
    event_del(c->wev);
    event_assign(c->wev, c->w->base, c->t.fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
    c->closed_watch = 0;
}

static void
conn_on_closed(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (!(what & EV_CLOSED) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
        soerr == 0) {
        size_t max = conn_pend_max(c);
        if (c->pend_len >= max) {
            event_del(c->wev); /* kept all it may: the rest waits in the kernel */
            return;
        }
        char *p = realloc(c->pend, max);
        if (!p)
            abort();
        c->pend = p;
        ssize_t n = c->t.ops->recv(&c->t, c->pend + c->pend_len, max - c->pend_len);
        if (n > 0) {
            c->pend_len += (size_t)n;
            return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
    }
    c->peer_eof = 1;
    c->dead = 1;
    conn_settle(c);
}

/* decide what to wait for next; frees the connection when it is over */
static void
conn_settle(struct http_conn *c)
{
    const struct http_server_opts *o = &c->w->srv->o;
    struct http_req *r = c->req;
    if (c->dead) {
        http_conn_free(c);
        return;
    }
    if (r && r->suspended) {
        read_off(c);
        conn_closed_watch_on(c);
        return;
    }
    if (r && r->replied && !r->reply_done) {
        read_off(c);
        if (c->uring_wait || r->s_wait)
            write_off(c); /* the ring's completion or http_req_stream_wake calls back */
        else if (!c->wr_on || !write_dir_ok(c))
            write_on(c, OPT_LIVE(o->body_timeout_ms));
        return;
    }
    write_off(c);
    if (r && r->wr_inflight) {
        int wait = 0;
        if (conn_async_body(c))
            conn_rbuf_pick(c, 0, &wait);
        if (r->msg_done || (r->reply_done && c->closing) || wait) {
            /* a write must end first (conn_resume): for on_complete, for the end
             * of the request, or for a free receive buffer (backpressure) */
            read_off(c);
            return;
        }
    }
    if (c->closing && !c->lingering && (!r || r->reply_done)) {
        if (r)
            conn_req_end(c);
        if (c->peer_eof || c->t.ops->shutdown(&c->t) < 0) {
            http_conn_free(c);
            return;
        }
        c->lingering = 1;
        free(c->pend);
        c->pend = NULL;
        c->pend_len = 0;
        deadline_in(&c->deadline, HTTP_LINGER_MS);
    }
    if (c->lingering) {
        read_on(c, ms_until(&c->deadline));
        return;
    }
    if (!r) {
        if (c->pend_len || !c->served)
            read_on(c, ms_until(&c->deadline));
        else
            read_on(c, OPT_LIVE(o->idle_timeout_ms));
    } else if (!r->headers_done) {
        read_on(c, ms_until(&c->deadline));
    } else {
        read_on(c, OPT_LIVE(o->body_timeout_ms));
    }
}

static void
conn_timeout(struct http_conn *c)
{
    struct http_req *r = c->req;
    if (c->lingering || !r) {
        if (!c->lingering && c->pend_len && ms_until(&c->deadline) > 0)
            return;
        c->dead = 1;
        return;
    }
    if (!r->headers_done) {
        if (ms_until(&c->deadline) > 0)
            return;
        /* slowloris: the header block did not arrive in time */
        http_req_fail(r, ERR_TIMEOUT, "request header timeout");
        if (!r->reply_done)
            c->dead = 1;
        return;
    }
    c->dead = 1; /* body_timeout, or a reply the client does not read */
}

static void
conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    struct http_worker *w = c->w;
    if (what & EV_TIMEOUT) {
        conn_timeout(c);
        conn_settle(c);
        return;
    }
    size_t have = c->pend_len;
    char *buf = w->scratch;
    size_t cap = w->scratch_cap;
    if (conn_async_body(c) && have < w->srv->o.body_buffer / 2) {
        int wait = 0;
        struct http_rbuf *rb = conn_rbuf_pick(c, 1, &wait);
        if (wait) {
            conn_settle(c); /* turns reading off until a write ends */
            return;
        }
        if (rb) {
            buf = rb->data;
            cap = rb->cap;
        }
    }
    size_t want = conn_read_limit(c, have, cap);
    if (want == 0) {
        /* cannot happen: reading is off while more than a method token is kept */
        log_error("http", NULL, "connection input buffer overrun");
        c->dead = 1;
        conn_settle(c);
        return;
    }
    ssize_t n = c->t.ops->recv(&c->t, buf + have, want);
    if (n > 0) {
        if (c->lingering) {
            if (ms_until(&c->deadline) <= 0)
                c->dead = 1;
        } else {
            if (have) {
                memcpy(buf, c->pend, have);
                free(c->pend);
                c->pend = NULL;
                c->pend_len = 0;
            }
            if (c->req && c->req->wr_inflight)
                atomic_fetch_add_explicit(&w->overlapped_reads, 1, memory_order_relaxed);
            conn_input(c, buf, have + (size_t)n);
        }
    } else if (n == 0) {
        c->peer_eof = 1;
        c->dead = 1;
    } else if (errno != EAGAIN && errno != EINTR) {
        c->dead = 1;
    }
    conn_settle(c);
}

static void conn_write_ready(struct http_conn *c);

static void
conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    c->woken = 0;
    if (what & EV_TIMEOUT) {
        c->dead = 1;
        conn_settle(c);
        return;
    }
    conn_write_ready(c);
}

void
http_req_stream_wake(struct http_req *r)
{
    struct http_conn *c = r->c;
    if (!r->produce || r->s_ended)
        return;
    if (r->s_in_produce) {
        r->s_woken = 1; /* the producer is asked again as soon as it returns */
        return;
    }
    if (!r->s_wait)
        return;
    r->s_wait = 0;
    if (c->dead || c->zombie)
        return;
    /* not a direct call: the caller may be inside this connection's own
     * callbacks; the write callback runs in the loop's next round */
    c->woken = 1;
    event_active(c->wev, EV_WRITE, 1);
}

void
http_conn_uring_done(struct http_conn *c)
{
    c->uring_wait = 0;
    conn_write_ready(c);
}

static void conn_zombie_end(struct http_conn *c);

/* a write of the request ended (ring completion): go on where it waited */
static void
conn_resume(struct http_conn *c)
{
    struct http_req *r = c->req;
    if (c->zombie) {
        if (r->wr_inflight == 0 && !r->suspended)
            conn_zombie_end(c);
        return;
    }
    if (!c->dead && r->wr_inflight == 0 && r->msg_done && !r->replied && !r->completed)
        conn_message_done(c);
    if (!c->dead && r->replied) {
        conn_write_ready(c); /* flush, then input kept meanwhile, then settle */
        return;
    }
    conn_settle(c);
}

void
http_conn_write_cqe(struct http_bwrite *bw, int res)
{
    long total;
    if (res > 0 && bw->written + (size_t)res < bw->n) {
        /* a short write: the rest, on the ring or at once */
        bw->written += (size_t)res;
        if (http_uring_write(bw->r->c->w, bw) == 0)
            return;
        total =
            conn_pwrite(bw->fd, bw->data + bw->written, bw->n - bw->written, bw->off + bw->written);
        if (total >= 0)
            total = (long)bw->n;
    } else if (res > 0) {
        total = (long)bw->n;
    } else {
        total = res < 0 ? res : -EIO; /* 0: no progress */
    }
    struct http_req *r = bw->r;
    struct http_conn *c = r->c;
    bw->rb->refs--;
    r->wr_inflight--;
    http_write_done_fn done = bw->done;
    uint64_t off = bw->off;
    size_t n = bw->n;
    free(bw);
    int rc = done(r, r->state, off, n, total);
    if (rc != 0 && !r->replied && !c->dead) {
        log_error("http", r->id, "write completion failed without a reply");
        http_req_fail(r, ERR_INTERNAL, "request body handler failed");
    }
    conn_resume(c);
}

/* parse the input kept meanwhile (c->pend), or go on without */
static void
conn_input_kept(struct http_conn *c)
{
    struct http_worker *w = c->w;
    if (c->pend) {
        size_t len = c->pend_len;
        memcpy(w->scratch, c->pend, len);
        free(c->pend);
        c->pend = NULL;
        c->pend_len = 0;
        conn_input(c, w->scratch, len);
    } else {
        conn_input(c, NULL, 0);
    }
}

static void
conn_write_ready(struct http_conn *c)
{
    if (http_conn_flush(c) == 1)
        conn_input_kept(c);
    conn_settle(c);
}

void
http_conn_resume_req(struct http_req *r)
{
    struct http_conn *c = r->c;
    struct http_worker *w = c->w;
    http_resume_fn fn = r->resume_fn;
    void *arg = r->resume_arg;
    r->suspended = 0;
    atomic_fetch_sub(&w->nsuspended, 1);
    r->in_resume = 1;
    fn(r, arg);
    r->in_resume = 0;
    if (c->zombie) {
        if (!r->suspended && !r->wr_inflight)
            conn_zombie_end(c);
        return;
    }
    if (r->suspended) {
        conn_settle(c); /* (c->dead: the free makes it a zombie) */
        return;
    }
    conn_closed_watch_off(c);
    if (!c->dead) {
        if (!r->completed) {
            conn_after_dispatch(c);
        } else if (!r->replied) {
            log_error("http", r->id, "resumed request ended without a reply");
            http_req_fail(r, ERR_INTERNAL, "no reply");
        }
    }
    if (c->dead || r->suspended) {
        conn_settle(c);
        return;
    }
    if (r->replied) {
        conn_write_ready(c); /* flush, then input kept meanwhile, then settle */
        return;
    }
    conn_input_kept(c); /* the body accepted by fn, and what follows */
    conn_settle(c);
}

/* ---- output ---- */

/* A file body the transport will not send from the descriptor: pread into the
 * worker's copy buffer and sendv, HTTP_COPY_BUF bytes at a time. What a short
 * send left is read again next time, so nothing is kept between calls and the
 * buffer is shared by the worker's connections. 1 done, 0 socket full, -1 error. */
static int
conn_copy_file(struct http_conn *c)
{
    struct http_req *r = c->req;
    struct http_worker *w = c->w;
    if (!w->copybuf) {
        w->copybuf = malloc(HTTP_COPY_BUF);
        if (!w->copybuf)
            abort();
    }
    while (r->file_left) {
        size_t want = r->file_left > HTTP_COPY_BUF ? HTTP_COPY_BUF : (size_t)r->file_left;
        ssize_t n = pread(r->file_fd, w->copybuf, want, r->file_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                log_error("http", r->id, "file shorter than the announced length");
            else
                log_error("http", r->id, "reading the reply file: %s", strerror(errno));
            c->dead = 1;
            return -1;
        }
        struct iovec iov = {.iov_base = w->copybuf, .iov_len = (size_t)n};
        ssize_t k = c->t.ops->sendv(&c->t, &iov, 1, r->file_left > (uint64_t)n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            c->dead = 1;
            return -1;
        }
        r->file_off += k;
        r->file_left -= (uint64_t)k;
        if (k < n)
            return 0;
    }
    close(r->file_fd);
    r->file_fd = -1;
    return 1;
}

static void
conn_file_copy_start(struct http_conn *c)
{
    c->req->file_copy = 1;
    c->files_copied = 1;
    atomic_fetch_add_explicit(&c->w->file_copies, 1, memory_order_relaxed);
}

/* The one place that moves file bytes to the socket: io_uring splice when the
 * worker has a ring and the transport takes a pipe (http_uring.c), else the
 * transport's sendfile, else (declined) a bounded copy. 1 when done, 0 when
 * waiting (the socket is full, or a ring completion is awaited), -1 on error. */
static int
conn_send_file(struct http_conn *c)
{
    struct http_req *r = c->req;
    if (r->file_copy)
        return conn_copy_file(c);
    if (c->w->uring_files && (c->t.zc & HTTP_TRANSPORT_SPLICE))
        return http_uring_send_file(c);
    while (r->file_left) {
        size_t want = r->file_left > (1u << 30) ? (1u << 30) : (size_t)r->file_left;
        ssize_t n = c->t.ops->sendfile(&c->t, r->file_fd, &r->file_off, want);
        if (n == HTTP_TRANSPORT_DECLINED) {
            conn_file_copy_start(c);
            return conn_copy_file(c);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            c->dead = 1;
            return -1;
        }
        if (n == 0) {
            log_error("http", r->id, "file shorter than the announced length");
            c->dead = 1;
            return -1;
        }
        r->file_left -= (uint64_t)n;
        if ((size_t)n < want && r->file_left)
            return 0; /* the socket took what it could: wait for the write event */
    }
    close(r->file_fd);
    r->file_fd = -1;
    return 1;
}

/* Ask a streamed reply's producer for the next piece (its buffer is empty: all
 * it gave was sent). 1: bytes wait in sbuf; 0: nothing now (the producer waits
 * for http_req_stream_wake, or the stream is over); -1: error, c->dead set. */
static int
stream_fill(struct http_conn *c)
{
    struct http_req *r = c->req;
    for (;;) {
        if (r->s_ended || r->s_wait)
            return 0;
        if (r->s_left == 0) {
            r->s_ended = 1;
            http_req_stream_release(r);
            return 0;
        }
        char *data = r->sbuf + HTTP_STREAM_HEAD;
        size_t cap = HTTP_STREAM_BUF;
        if (r->s_left > 0 && (uint64_t)r->s_left < cap)
            cap = (size_t)r->s_left;
        r->s_in_produce = 1;
        r->s_woken = 0;
        ssize_t n = r->produce(r, r->sarg, data, cap);
        r->s_in_produce = 0;
        if (n == HTTP_STREAM_AGAIN) {
            if (r->s_woken)
                continue;
            r->s_wait = 1;
            return 0;
        }
        if (n < 0 || (size_t)n > cap || (n == 0 && r->s_left > 0)) {
            if (n == 0)
                log_error("http", r->id, "streamed body ended %lld bytes short",
                          (long long)r->s_left);
            else if (n > 0)
                log_error("http", r->id, "stream producer overran its buffer");
            c->dead = 1; /* the headers are out: only a close tells the client */
            return -1;
        }
        if (n == 0) {
            r->s_ended = 1;
            http_req_stream_release(r);
            if (!r->s_chunked)
                return 0;
            memcpy(r->sbuf, "0\r\n\r\n", 5);
            r->s_pos = 0;
            r->s_end = 5;
            return 1;
        }
        r->bytes_out += (uint64_t)n;
        if (r->s_left > 0)
            r->s_left -= n;
        if (r->s_chunked) {
            char line[HTTP_STREAM_HEAD + 1];
            int hl = snprintf(line, sizeof(line), "%zx\r\n", (size_t)n);
            memcpy(data - hl, line, (size_t)hl);
            memcpy(data + n, "\r\n", 2);
            r->s_pos = HTTP_STREAM_HEAD - (size_t)hl;
            r->s_end = HTTP_STREAM_HEAD + (size_t)n + 2;
        } else {
            r->s_pos = HTTP_STREAM_HEAD;
            r->s_end = HTTP_STREAM_HEAD + (size_t)n;
        }
        return 1;
    }
}

/* The body of a file reply that fits the copy buffer, read now to go with
 * its headers, on a connection whose transport declined zero-copy before
 * (each file would take the copy path anyway): its length, or 0 (send it
 * the usual way: no such reply, too large, a read that came up short). From
 * here on the reply takes the copy path for whatever the send leaves. */
static size_t
conn_file_with_headers(struct http_conn *c)
{
    struct http_req *r = c->req;
    struct http_worker *w = c->w;
    if (!c->files_copied || !r->file_left || r->file_left > HTTP_COPY_BUF || r->produce)
        return 0;
    if (!w->copybuf) {
        w->copybuf = malloc(HTTP_COPY_BUF);
        if (!w->copybuf)
            abort();
    }
    ssize_t n = pread(r->file_fd, w->copybuf, (size_t)r->file_left, r->file_off);
    if (n != (ssize_t)r->file_left)
        return 0;
    if (!r->file_copy)
        conn_file_copy_start(c);
    atomic_fetch_add_explicit(&w->files_with_headers, 1, memory_order_relaxed);
    return (size_t)n;
}

int
http_conn_flush(struct http_conn *c)
{
    struct http_req *r = c->req;
    if (c->dead)
        return -1;
    /* the unsent headers (and memory body) and a streamed reply's pending piece
     * go out together: one sendv for the headers and the first piece; so does
     * a small file body on a connection whose transport copies files */
    for (;;) {
        if (r->produce && r->s_pos == r->s_end && stream_fill(c) < 0)
            return -1;
        struct iovec iov[2];
        int niov = 0;
        size_t total = 0, file_part = 0;
        if (r->out && r->out_pos < r->out_len) {
            iov[niov].iov_base = r->out + r->out_pos;
            iov[niov].iov_len = r->out_len - r->out_pos;
            total += iov[niov++].iov_len;
            file_part = conn_file_with_headers(c);
            if (file_part) {
                iov[niov].iov_base = c->w->copybuf;
                iov[niov].iov_len = file_part;
                total += iov[niov++].iov_len;
            }
        }
        if (r->produce && r->s_pos < r->s_end) {
            iov[niov].iov_base = r->sbuf + r->s_pos;
            iov[niov].iov_len = r->s_end - r->s_pos;
            total += iov[niov++].iov_len;
        }
        if (niov == 0)
            break;
        ssize_t n = c->t.ops->sendv(&c->t, iov, niov, r->file_left > file_part);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (r->produce)
                    atomic_fetch_add_explicit(&c->w->stream_stalls, 1, memory_order_relaxed);
                return 0;
            }
            c->dead = 1;
            return -1;
        }
        size_t k = (size_t)n;
        if (r->out && r->out_pos < r->out_len) {
            size_t o = r->out_len - r->out_pos;
            if (o > k)
                o = k;
            r->out_pos += o;
            k -= o;
        }
        if (file_part) {
            /* what the send left of it is read again by conn_copy_file */
            size_t f = k < file_part ? k : file_part;
            r->file_off += (off_t)f;
            r->file_left -= f;
            k -= f;
        }
        if (r->produce)
            r->s_pos += k;
        if ((size_t)n < total) {
            if (r->produce)
                atomic_fetch_add_explicit(&c->w->stream_stalls, 1, memory_order_relaxed);
            return 0;
        }
    }
    if (r->out) {
        if (r->out_heap)
            free(r->out);
        r->out = NULL;
        r->out_heap = 0;
    }
    if (r->produce && !r->s_ended)
        return 0; /* the producer waits for http_req_stream_wake */
    if (r->file_left) {
        int rc = conn_send_file(c);
        if (rc <= 0)
            return rc;
    }
    r->reply_done = 1;
    return 1;
}

/* ---- lifecycle ---- */

static size_t
conn_alloc_size(size_t *ev_off)
{
    size_t base = (sizeof(struct http_conn) + 15) & ~(size_t)15;
    *ev_off = base;
    size_t evsz = (event_get_struct_event_size() + 15) & ~(size_t)15;
    return base + 2 * evsz;
}

struct http_conn *
http_conn_new(struct http_worker *w, int fd, int counted)
{
    size_t off;
    size_t sz = conn_alloc_size(&off);
    struct http_conn *c = calloc(1, sz);
    if (!c)
        abort();
    size_t evsz = (event_get_struct_event_size() + 15) & ~(size_t)15;
    c->rev = (struct event *)((char *)c + off);
    c->wev = (struct event *)((char *)c + off + evsz);
    c->w = w;
    c->t.ops = w->srv->transport;
    c->t.arg = w->srv->transport_arg;
    c->t.fd = fd;
    c->counted = counted ? 1 : 0;
    event_assign(c->rev, w->base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
    event_assign(c->wev, w->base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    deadline_in(&c->deadline, OPT_LIVE(w->srv->o.header_timeout_ms));
    if (c->t.ops->open(&c->t) < 0)
        c->dead = 1; /* closed by the first conn_settle */
    return c;
}

void
http_conn_start(struct http_conn *c)
{
    conn_settle(c);
}

static void
conn_unlink(struct http_conn *c)
{
    struct http_worker *w = c->w;
    read_off(c);
    write_off(c);
    conn_closed_watch_off(c);
    c->t.ops->close(&c->t);
    c->t.fd = -1;
    free(c->pend);
    c->pend = NULL;
    c->pend_len = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    w->nconns--;
    if (c->counted)
        atomic_fetch_sub(&w->srv->nconns, 1);
    c->counted = 0;
}

/* the last write of a dead connection's request ended */
static void
conn_zombie_end(struct http_conn *c)
{
    struct http_worker *w = c->w;
    conn_req_end(c); /* on_abort */
    w->nzombies--;
    free(c);
}

void
http_conn_free(struct http_conn *c)
{
    struct http_worker *w = c->w;
    if (c->zombie)
        return;
    if (c->req && c->req->xfer) {
        /* splices in flight name the socket: it stays open until they end */
        if (http_uring_detach(c->req->xfer, c->t.fd))
            c->t.fd = -1; /* the transport frees its state, the transfer closes the fd */
        c->req->xfer = NULL;
    }
    if (c->req && (c->req->wr_inflight || c->req->suspended)) {
        /* writes in flight read the request's buffers and name the app's file,
         * a resumption will run on the request: the request (and on_abort)
         * waits for them; the socket goes now */
        c->dead = 1;
        c->zombie = 1;
        conn_unlink(c);
        w->nzombies++;
        http_worker_conn_gone(w);
        return;
    }
    if (c->req)
        conn_req_end(c);
    conn_unlink(c);
    free(c);
    http_worker_conn_gone(w);
}

void
http_conn_reject(struct http_worker *w, int fd)
{
    struct http_server *s = w->srv;
    char buf[sizeof(s->reject_head) + sizeof(s->reject_tail) + 64];
    int len =
        snprintf(buf, sizeof(buf), "%s%s%s", s->reject_head, http_worker_date(w), s->reject_tail);
    struct http_conn *c = http_conn_new(w, fd, 0);
    struct iovec iov = {.iov_base = buf, .iov_len = len > 0 ? (size_t)len : 0};
    if (c->dead || len <= 0 || c->t.ops->sendv(&c->t, &iov, 1, 0) != (ssize_t)len ||
        c->t.ops->shutdown(&c->t) < 0) {
        http_conn_free(c);
        return;
    }
    c->lingering = 1;
    deadline_in(&c->deadline, HTTP_LINGER_MS);
    conn_settle(c);
}

void
http_conn_shutdown(struct http_conn *c)
{
    if (c->lingering)
        return;
    /* nothing dispatched yet: nothing is lost by closing now */
    if (!c->req || (!c->req->headers_done && !c->req->replied)) {
        http_conn_free(c);
        return;
    }
    c->closing = 1;
}

void
http_conn_kill(struct http_conn *c)
{
    c->dead = 1;
    http_conn_free(c);
}

/* ---- test entry ---- */

size_t
http_conn_feed(struct http_conn *c, const char *buf, size_t len)
{
    struct http_worker *w = c->w;
    size_t have = c->pend_len;
    if (c->dead || c->lingering || have >= w->scratch_cap)
        return 0;
    if (len > w->scratch_cap - have)
        len = w->scratch_cap - have;
    /* what conn_on_read does around its recv: kept input first */
    if (have) {
        memcpy(w->scratch, c->pend, have);
        free(c->pend);
        c->pend = NULL;
        c->pend_len = 0;
    }
    if (len)
        memcpy(w->scratch + have, buf, len);
    conn_input(c, w->scratch, have + len);
    return len;
}
