/* http_layer_test.c - the connection layer (server/http.h) run in-process with a
 * test app of its own, driven over raw loopback sockets.
 *
 * Routes of the test app:
 *   /echo            stream the body into SHA-256, reply the hex digest
 *                    (?fail_after=N: on_body fails with 500 after N bytes)
 *   /collect?max=N   http_req_collect_body(N), reply the body back
 *   /file?off=&len=  reply a range of a test file with http_reply_fd
 *   /info...         reply method, decoded path, raw target, query values
 *   /reject          reply 403 without accepting the body
 *   /noreply         dispatch returns without replying (layer answers 500)
 *   /close           reply with http_reply_close
 *   /stream?len=N    http_reply_stream of N pattern bytes (chunked; &fixed=1:
 *                    Content-Length), pieces of at most &piece=K; &again=1: the
 *                    producer says HTTP_STREAM_AGAIN once after the first piece
 *                    and waits for /wake; &fail=1: it fails after the first piece
 *   /wake            http_req_stream_wake of the stream waiting (one worker) */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "server/http.h"
#include "server/reply.h"

#include "common/banned.h"

/* ---- the test app ---- */

static atomic_int n_abort, n_complete, n_worker_init, n_worker_release, n_file, n_echo_bytes;
static char file_path[256];
static size_t file_size;

static void *
app_worker_init(void *arg, int idx, struct err *e)
{
    atomic_fetch_add(&n_worker_init, 1);
    return (void *)(intptr_t)(idx + 1);
}

static void
app_worker_release(void *wctx)
{
    atomic_fetch_add(&n_worker_release, 1);
}

struct echo_state {
    EVP_MD_CTX *md;
    uint64_t seen, fail_after;
};

static void
hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int
echo_body(struct http_req *r, void *state, const void *data, size_t n)
{
    struct echo_state *s = state;
    s->seen += n;
    atomic_fetch_add(&n_echo_bytes, (int)n);
    if (s->fail_after && s->seen > s->fail_after) {
        http_reply_errorf(r, ERR_IO, "failing after %llu bytes", (unsigned long long)s->fail_after);
        return -1;
    }
    EVP_DigestUpdate(s->md, data, n);
    return 0;
}

static void
echo_complete(struct http_req *r, void *state)
{
    struct echo_state *s = state;
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(s->md, d, &dl);
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    char h[65];
    hex(d, 32, h);
    atomic_fetch_add(&n_complete, 1);
    http_reply(r, 200, "text/plain", h, 64);
}

static void
echo_abort(struct http_req *r, void *state)
{
    struct echo_state *s = state;
    atomic_fetch_add(&n_abort, 1);
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
}

/* /write: the body goes to an unlinked temp file through http_req_body_write
 * (io_uring when the worker has a ring, else written at once); on_complete
 * checks that every write ended before it, then replies with the SHA-256 of the
 * file read back and how many writes were asynchronous */
static atomic_int n_write_violations, n_write_abort;
struct write_state {
    int fd;
    uint64_t off;
    unsigned inflight, async_seen, max_inflight;
    int bad;
};

static void
sha_hex_fwd(const void *p, size_t n, char *out)
{
    unsigned char d[32];
    unsigned int dl;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
    hex(d, 32, out);
}

static int
write_done(struct http_req *r, void *state, uint64_t off, size_t n, long res)
{
    struct write_state *s = state;
    if (s->inflight == 0 || res != (long)n)
        s->bad = 1;
    s->inflight--;
    return 0;
}

static int
write_body(struct http_req *r, void *state, const void *data, size_t n)
{
    struct write_state *s = state;
    s->inflight++;
    if (s->inflight > s->max_inflight)
        s->max_inflight = s->inflight;
    unsigned before = s->inflight;
    http_req_body_write(r, s->fd, s->off, data, n, write_done);
    if (s->inflight == before)
        s->async_seen++; /* done did not run before the return: queued */
    s->off += n;
    return 0;
}

static void
write_complete(struct http_req *r, void *state)
{
    struct write_state *s = state;
    if (s->inflight)
        atomic_fetch_add(&n_write_violations, 1);
    char *b = malloc(s->off + 1);
    ssize_t got = pread(s->fd, b, s->off, 0);
    char h[65] = "";
    if (got == (ssize_t)s->off)
        sha_hex_fwd(b, s->off, h);
    free(b);
    close(s->fd);
    s->fd = -1;
    char out[200];
    int n = snprintf(out, sizeof(out), "%s async=%u max_inflight=%u bad=%d", h, s->async_seen,
                     s->max_inflight, s->bad);
    http_reply(r, 200, "text/plain", out, (size_t)n);
}

static void
write_abort(struct http_req *r, void *state)
{
    struct write_state *s = state;
    if (s->inflight)
        atomic_fetch_add(&n_write_violations, 1);
    atomic_fetch_add(&n_write_abort, 1);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

static void
collect_complete(struct http_req *r, void *state)
{
    size_t n;
    const char *b = http_req_body(r, &n);
    http_reply(r, 200, "application/octet-stream", b, n);
}

/* /stream: the producer's counters, read by the tests */
static atomic_int n_produce, n_release, n_again;
static atomic_long produced_bytes, client_received, max_gap;
static struct http_req *waiting_req; /* worker thread only */

struct stream_state {
    uint64_t pos, len;
    size_t piece;
    int again, fail;
};

static int
file_byte(size_t i)
{
    return (unsigned char)(i * 7 + i / 251);
}

static ssize_t
stream_produce(struct http_req *r, void *arg, char *buf, size_t cap)
{
    struct stream_state *s = arg;
    atomic_fetch_add(&n_produce, 1);
    if (s->again == 1 && s->pos > 0) {
        s->again = 2;
        waiting_req = r;
        atomic_fetch_add(&n_again, 1);
        return HTTP_STREAM_AGAIN;
    }
    if (s->fail && s->pos > 0)
        return -1;
    size_t n = s->len - s->pos < cap ? (size_t)(s->len - s->pos) : cap;
    if (n > s->piece)
        n = s->piece;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)file_byte(s->pos + i);
    s->pos += n;
    /* how far the producer runs ahead of what the client has read */
    long gap = atomic_fetch_add(&produced_bytes, (long)n) + (long)n -
               atomic_load(&client_received);
    long m = atomic_load(&max_gap);
    while (gap > m && !atomic_compare_exchange_weak(&max_gap, &m, gap))
        ;
    return (ssize_t)n;
}

static void
stream_release(struct http_req *r, void *arg)
{
    struct stream_state *s = arg;
    if (waiting_req == r)
        waiting_req = NULL;
    atomic_fetch_add(&n_release, 1);
    free(s);
}

static void
app_dispatch(struct http_req *r, void *wctx)
{
    const char *p = http_req_path(r);
    if (strcmp(p, "/stream") == 0) {
        /* heap, not the request arena: release must be able to free it */
        struct stream_state *s = calloc(1, sizeof(*s));
        const char *v;
        s->len = (v = http_req_query(r, "len")) ? strtoull(v, NULL, 10) : 100000;
        s->piece = (v = http_req_query(r, "piece")) ? strtoul(v, NULL, 10) : 1u << 20;
        s->again = http_req_query(r, "again") ? 1 : 0;
        s->fail = http_req_query(r, "fail") ? 1 : 0;
        int64_t len = http_req_query(r, "fixed") ? (int64_t)s->len : -1;
        http_reply_stream(r, 200, "application/octet-stream", len, stream_produce, stream_release,
                          s);
        return;
    }
    if (strcmp(p, "/wake") == 0) {
        int had = waiting_req != NULL;
        if (had)
            http_req_stream_wake(waiting_req);
        http_reply(r, 200, "text/plain", had ? "woken" : "none", had ? 5 : 4);
        return;
    }
    if (strcmp(p, "/echo") == 0) {
        struct echo_state *s = http_req_alloc(r, sizeof(*s));
        memset(s, 0, sizeof(*s));
        const char *fa = http_req_query(r, "fail_after");
        s->fail_after = fa ? strtoull(fa, NULL, 10) : 0;
        s->md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
        http_req_on_body(r, echo_body, echo_complete, echo_abort, s);
    } else if (strcmp(p, "/write") == 0) {
        struct write_state *s = http_req_alloc(r, sizeof(*s));
        memset(s, 0, sizeof(*s));
        char tmpl[] = "/tmp/http_layer_write.XXXXXX";
        s->fd = mkstemp(tmpl);
        unlink(tmpl);
        http_req_on_body(r, write_body, write_complete, write_abort, s);
    } else if (strcmp(p, "/collect") == 0) {
        const char *m = http_req_query(r, "max");
        http_req_collect_body(r, m ? strtoul(m, NULL, 10) : 1024, collect_complete, NULL);
    } else if (strcmp(p, "/file") == 0) {
        const char *o = http_req_query(r, "off"), *l = http_req_query(r, "len");
        uint64_t off = o ? strtoull(o, NULL, 10) : 0;
        uint64_t len = l ? strtoull(l, NULL, 10) : file_size - off;
        int fd = open(file_path, O_RDONLY | O_CLOEXEC);
        atomic_fetch_add(&n_file, 1);
        http_reply_header(r, "X-Test", "file %d", 1);
        http_reply_fd(r, 200, "application/octet-stream", fd, off, len);
    } else if (strncmp(p, "/info", 5) == 0) {
        char buf[4096];
        const char *vals[8];
        size_t nv = http_req_query_all(r, "a", vals, 8);
        int n = snprintf(buf, sizeof(buf), "method=%s m=%d\npath=%s\nraw=%s\nid=%s\nwctx=%ld\n",
                         http_req_method_name(r), (int)http_req_method(r), p,
                         http_req_raw_target(r), http_req_id(r), (long)(intptr_t)wctx);
        for (size_t i = 0; i < nv; i++)
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, "a=%s\n", vals[i]);
        const char *h = http_req_header(r, "x-hdr");
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "x-hdr=%s\n", h ? h : "(none)");
        http_reply(r, 200, "text/plain", buf, (size_t)n);
    } else if (strcmp(p, "/reject") == 0) {
        http_reply_errorf(r, ERR_DENIED, "no");
    } else if (strcmp(p, "/noreply") == 0) {
        /* a bug the layer must survive */
    } else if (strcmp(p, "/close") == 0) {
        http_reply_close(r);
        http_reply(r, 200, "text/plain", "bye", 3);
    } else {
        http_reply_errorf(r, ERR_NOT_FOUND, "no route");
    }
}

/* ---- the server in a thread ---- */

static struct http_server *srv;
static pthread_t srv_thread;
static int srv_port;
static int srv_joined; /* stopped and joined by the test itself (server_join) */

static void *
srv_main(void *arg)
{
    struct err e = {0};
    if (http_server_run(srv, &e) < 0)
        fprintf(stderr, "http_server_run: %s\n", e.msg);
    return NULL;
}

static void
make_file(size_t n)
{
    snprintf(file_path, sizeof(file_path), "/tmp/http_layer_test.XXXXXX");
    int fd = mkstemp(file_path);
    cr_assert(fd >= 0);
    char *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(i * 7 + i / 251);
    cr_assert_eq(write(fd, b, n), (ssize_t)n);
    free(b);
    close(fd);
    file_size = n;
}

static size_t want_file_size = 3 * 1024 * 1024 + 17;
static int want_decline;   /* start_io*: decline_zero_copy */
static int want_plain_app; /* start_with: an app that is not the registry */

/* an app's own error rendering: plain text, its own status map */
static int
plain_error(void *arg, const struct err *e, char *body, size_t cap, size_t *len,
            const char **content_type)
{
    *content_type = "text/plain";
    int n = snprintf(body, cap, "plain %s: %s", err_code_name(e->code), e->msg);
    *len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    return e->code == ERR_HEADERS_TOO_LARGE ? 431 : e->code == ERR_OVERLOADED ? 503 : 400;
}

static void
start_with(struct http_server_opts *o)
{
    signal(SIGPIPE, SIG_IGN);
    log_setup(LOG_WARN, 0, 2);
    if (!file_path[0])
        make_file(want_file_size);
    /* the registry's error rendering and headers (server/reply.h): the layer
     * itself sends neither (layer_errors_and_headers_come_from_the_app) */
    struct http_app app = {.arg = NULL,
                           .worker_init = app_worker_init,
                           .worker_release = app_worker_release,
                           .dispatch = app_dispatch,
                           .error = reply_error_render,
                           .headers = REPLY_HEADERS};
    if (want_plain_app) {
        app.error = plain_error;
        app.headers = "X-Plain-App: 1\r\n";
    }
    o->listen = "127.0.0.1:0";
    if (!o->workers)
        o->workers = 2;
    struct err e = {0};
    srv = http_server_new(o, &app, &e);
    cr_assert_not_null(srv, "http_server_new: %s", e.msg);
    const char *a = http_server_address(srv);
    cr_assert_eq(strncmp(a, "127.0.0.1:", 10), 0, "address %s", a);
    srv_port = atoi(a + 10);
    cr_assert_gt(srv_port, 0);
    cr_assert_eq(pthread_create(&srv_thread, NULL, srv_main, NULL), 0);
}

static void
start_default(void)
{
    struct http_server_opts o = {0};
    start_with(&o);
}

static void
stop_server(void)
{
    if (!srv)
        return;
    if (!srv_joined) {
        http_server_stop(srv);
        pthread_join(srv_thread, NULL);
    }
    srv_joined = 0;
    want_decline = 0;
    want_plain_app = 0;
    http_server_free(srv);
    srv = NULL;
    if (file_path[0])
        unlink(file_path);
    file_path[0] = '\0';
    libevent_global_shutdown();
}

/* stop the server and wait for its workers: their counters are final */
static void
server_join(void)
{
    http_server_stop(srv);
    pthread_join(srv_thread, NULL);
    srv_joined = 1;
}

/* ---- a raw client ---- */

struct tc {
    int fd;
    char *buf;
    size_t len, cap;
};

static int
tc_open(struct tc *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
                 strerror(errno));
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    return 0;
}

static void
tc_close(struct tc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static void
tc_send(struct tc *c, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        cr_assert(w > 0, "send: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
    }
}

static void
tc_sends(struct tc *c, const char *s)
{
    tc_send(c, s, strlen(s));
}

/* read more bytes; 0 on EOF, -1 on timeout/error, else bytes read */
static long
tc_fill(struct tc *c, int timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr <= 0)
        return -1;
    if (c->len + 65536 > c->cap) {
        c->cap = (c->len + 65536) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    if (n < 0)
        return errno == ECONNRESET ? 0 : -1;
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return n;
}

struct resp {
    int status;
    char head[8192];
    char *body;
    size_t blen;
};

static void
resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* read one response; no_body for HEAD. Returns 0, or -1 if the connection closed
 * or timed out before a whole response. */
static int
tc_read(struct tc *c, struct resp *r, int no_body, int timeout_ms)
{
    memset(r, 0, sizeof(*r));
    for (;;) {
        char *end = c->len ? strstr(c->buf, "\r\n\r\n") : NULL;
        if (end) {
            size_t hl = (size_t)(end - c->buf) + 4;
            cr_assert_lt(hl, sizeof(r->head));
            memcpy(r->head, c->buf, hl);
            r->head[hl] = '\0';
            r->status = atoi(r->head + 9);
            size_t cl = 0;
            char *p = strcasestr(r->head, "\r\nContent-Length:");
            if (p)
                cl = strtoul(p + 17, NULL, 10);
            if (no_body || r->status < 200 || r->status == 204 || r->status == 304)
                cl = 0;
            while (c->len < hl + cl) {
                if (tc_fill(c, timeout_ms) <= 0)
                    return -1;
            }
            r->body = malloc(cl + 1);
            memcpy(r->body, c->buf + hl, cl);
            r->body[cl] = '\0';
            r->blen = cl;
            memmove(c->buf, c->buf + hl + cl, c->len - hl - cl);
            c->len -= hl + cl;
            c->buf[c->len] = '\0';
            return 0;
        }
        if (tc_fill(c, timeout_ms) <= 0)
            return -1;
    }
}

/* 1 when the server closed the connection (EOF or reset) within timeout_ms */
static int
tc_closed(struct tc *c, int timeout_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long n = tc_fill(c, timeout_ms);
        if (n == 0)
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (n < 0 || el > timeout_ms)
            return 0;
    }
}

static void
sha_hex(const void *p, size_t n, char *out)
{
    unsigned char d[32];
    unsigned int dl;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
    hex(d, 32, out);
}

static void
assert_common_headers(const struct resp *r)
{
    cr_assert_not_null(strstr(r->head, "\r\nDocker-Distribution-API-Version: registry/2.0\r\n"),
                       "missing API version header in:\n%s", r->head);
    cr_assert(strncmp(r->head, "HTTP/1.1 ", 9) == 0);
    cr_assert_not_null(strstr(r->head, "\r\nDate: "), "missing Date in:\n%s", r->head);
}

/* one request on a fresh connection */
static void
roundtrip(const char *req, struct resp *r)
{
    struct tc c;
    tc_open(&c);
    tc_sends(&c, req);
    cr_assert_eq(tc_read(&c, r, 0, 5000), 0, "no response to %s", req);
    tc_close(&c);
}

/* ---- tests ---- */

TestSuite(http_layer, .fini = stop_server);

Test(http_layer, keepalive_serves_several_requests_on_one_connection)
{
    start_default();
    struct tc c;
    tc_open(&c);
    for (int i = 0; i < 5; i++) {
        tc_sends(&c, "GET /info?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        struct resp r;
        cr_assert_eq(tc_read(&c, &r, 0, 5000), 0, "request %d", i);
        cr_assert_eq(r.status, 200);
        assert_common_headers(&r);
        cr_assert_null(strcasestr(r.head, "Connection: close"));
        cr_assert_not_null(strstr(r.body, "method=GET m=0\npath=/info\n"), "%s", r.body);
        resp_free(&r);
    }
    tc_close(&c);
    /* the worker that did not serve may still be starting (30 s: a guard only) */
    for (int i = 0; i < 3000 && atomic_load(&n_worker_init) < 2; i++)
        usleep(10000);
    cr_assert_eq(atomic_load(&n_worker_init), 2);
}

Test(http_layer, pipelined_requests_answered_in_order)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /info?a=first HTTP/1.1\r\nHost: x\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                 "GET /file?off=0&len=1000000 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /info?a=last HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "a=first\n"));
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    char want[65];
    sha_hex("hello", 5, want);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.blen, 1000000);
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "a=last\n"));
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, content_length_body_streams_to_on_body)
{
    start_default();
    size_t n = 3 * 1024 * 1024 + 5;
    char *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(i % 253);
    struct tc c;
    tc_open(&c);
    char h[256];
    snprintf(h, sizeof(h), "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    tc_sends(&c, h);
    tc_send(&c, b, n);
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 10000), 0);
    cr_assert_eq(r.status, 200);
    char want[65];
    sha_hex(b, n, want);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
    tc_close(&c);
    free(b);
}

Test(http_layer, chunked_body_with_extensions_and_trailers)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5;name=value\r\nhello\r\n"
                 "1\r\n \r\n"
                 "A\r\n0123456789\r\n"
                 "0;last\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    char want[65];
    sha_hex("hello 0123456789", 16, want);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
    /* the connection is still usable */
    tc_sends(&c, "GET /info HTTP/1.1\r\nHost: x\r\nX-Hdr:  spaced value  \r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "x-hdr=spaced value\n"), "%s", r.body);
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, expect_100_continue_sent_when_body_accepted)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 "Expect: 100-continue\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 1, 5000), 0);
    cr_assert_eq(r.status, 100);
    resp_free(&r);
    tc_sends(&c, "abc");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    char want[65];
    sha_hex("abc", 3, want);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, expect_100_continue_not_sent_when_app_rejects)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "PUT /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n"
                 "Expect: 100-continue\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 403);
    assert_common_headers(&r);
    cr_assert_not_null(strstr(r.body, "\"code\":\"DENIED\""), "%s", r.body);
    cr_assert_not_null(strcasestr(r.head, "Connection: close"));
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, head_sends_length_without_body)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "HEAD /file HTTP/1.1\r\nHost: x\r\n\r\nGET /file?off=10&len=20 HTTP/1.1\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 1, 5000), 0);
    cr_assert_eq(r.status, 200);
    char want[64];
    snprintf(want, sizeof(want), "Content-Length: %zu\r\n", file_size);
    cr_assert_not_null(strstr(r.head, want), "%s", r.head);
    cr_assert_not_null(strstr(r.head, "X-Test: file 1\r\n"));
    resp_free(&r);
    /* the next response starts right away: no body bytes were sent for HEAD */
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.blen, 20);
    for (size_t i = 0; i < 20; i++)
        cr_assert_eq((unsigned char)r.body[i], (unsigned char)((i + 10) * 7 + (i + 10) / 251));
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, file_reply_streams_whole_file_to_slow_reader)
{
    start_default();
    struct tc c;
    tc_open(&c);
    int small = 32768;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    tc_sends(&c, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
    /* read nothing until the server has filled the socket (then it waits for
     * the write event); 30 s: a guard only */
    int queued = 0;
    for (int i = 0; i < 3000 && queued < small / 2; i++) {
        if (ioctl(c.fd, FIONREAD, &queued) < 0)
            break;
        if (queued < small / 2)
            usleep(10000);
    }
    cr_assert_geq(queued, small / 2, "%d bytes queued", queued);
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 10000), 0);
    cr_assert_eq(r.blen, file_size);
    char *b = malloc(file_size);
    for (size_t i = 0; i < file_size; i++)
        b[i] = (char)(i * 7 + i / 251);
    cr_assert_eq(memcmp(b, r.body, file_size), 0);
    free(b);
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, client_connection_close_is_honoured)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strcasestr(r.head, "Connection: close"));
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);

    tc_open(&c);
    tc_sends(&c, "GET /info HTTP/1.0\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);

    tc_open(&c);
    tc_sends(&c, "GET /info HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strcasestr(r.head, "Connection: keep-alive"));
    resp_free(&r);
    tc_sends(&c, "GET /close HTTP/1.1\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_str_eq(r.body, "bye");
    cr_assert_not_null(strcasestr(r.head, "Connection: close"));
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, header_block_over_limit_gets_431)
{
    struct http_server_opts o = {.header_max = 4096};
    start_with(&o);
    struct tc c;
    tc_open(&c);
    char big[6000];
    memset(big, 'a', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    tc_sends(&c, "GET /info HTTP/1.1\r\nX-Big: ");
    tc_sends(&c, big);
    tc_sends(&c, "\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 431);
    assert_common_headers(&r);
    cr_assert_not_null(strstr(r.body, "\"errors\""));
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);

    /* just under the limit is fine */
    tc_open(&c);
    big[3000] = '\0';
    tc_sends(&c, "GET /info HTTP/1.1\r\nX-Hdr: ");
    tc_sends(&c, big);
    tc_sends(&c, "\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, too_many_header_lines_get_431)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /info HTTP/1.1\r\n");
    for (int i = 0; i < 200; i++)
        tc_sends(&c, "X: y\r\n");
    tc_sends(&c, "\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 431);
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, content_length_with_transfer_encoding_is_400)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 400);
    assert_common_headers(&r);
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, bad_chunk_size_is_400_and_aborts)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 400);
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);
    cr_assert_eq(atomic_load(&n_abort), 1);
    cr_assert_eq(atomic_load(&n_complete), 0);
}

Test(http_layer, garbage_gets_400_and_server_keeps_serving)
{
    start_default();
    static const char *const junk[] = {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                                       "GET\r\n\r\n",
                                       "GET /info HTTP/9.9\r\n\r\n",
                                       "GET /in fo HTTP/1.1\r\n\r\n",
                                       "GET /info HTTP/1.1\r\nBad Header\r\n\r\n",
                                       "POST /echo HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
                                       "POST /echo HTTP/1.1\r\nContent-Length\t: 5\r\n\r\nhello",
                                       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA /\r\n"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        struct tc c;
        tc_open(&c);
        tc_sends(&c, junk[i]);
        struct resp r;
        cr_assert_eq(tc_read(&c, &r, 0, 5000), 0, "junk %zu", i);
        cr_assert_eq(r.status, 400, "junk %zu: %d", i, r.status);
        cr_assert(tc_closed(&c, 3000), "junk %zu", i);
        resp_free(&r);
        tc_close(&c);
    }
    struct resp r;
    roundtrip("GET /info HTTP/1.1\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
}

Test(http_layer, unknown_method_reaches_dispatch_as_other)
{
    start_default();
    struct resp r;
    roundtrip("BREW /info HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", &r);
    cr_assert_eq(r.status, 200);
    char want[32];
    snprintf(want, sizeof(want), "method=BREW m=%d\n", (int)HTTP_M_OTHER);
    cr_assert_not_null(strstr(r.body, want), "%s", r.body);
    resp_free(&r);
    roundtrip("PATCH /info HTTP/1.1\r\n\r\n", &r);
    snprintf(want, sizeof(want), "method=PATCH m=%d\n", (int)HTTP_M_PATCH);
    cr_assert_not_null(strstr(r.body, want), "%s", r.body);
    resp_free(&r);
    roundtrip("TRACE /info HTTP/1.1\r\n\r\n", &r);
    snprintf(want, sizeof(want), "method=TRACE m=%d\n", (int)HTTP_M_OTHER);
    cr_assert_not_null(strstr(r.body, want), "%s", r.body);
    resp_free(&r);
}

Test(http_layer, collect_over_max_is_413_before_the_body)
{
    start_default();
    struct tc c;
    tc_open(&c);
    /* only the headers: the 413 must come without the body being sent */
    tc_sends(&c, "PUT /collect?max=10 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 413);
    cr_assert_not_null(strstr(r.body, "SIZE_INVALID"), "%s", r.body);
    cr_assert_not_null(strcasestr(r.head, "Connection: close"));
    resp_free(&r);
    tc_close(&c);

    /* within the limit */
    roundtrip("PUT /collect?max=10 HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "0123456789");
    resp_free(&r);

    /* chunked growing over the limit */
    tc_open(&c);
    tc_sends(&c, "PUT /collect?max=10 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 413);
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);

    /* small over-limit body that is sent anyway: read and dropped, connection kept */
    tc_open(&c);
    tc_sends(&c, "PUT /collect?max=4 HTTP/1.1\r\nContent-Length: 8\r\n\r\n01234567"
                 "GET /info HTTP/1.1\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 413);
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, on_body_failure_replies_and_aborts)
{
    start_default();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "PUT /echo?fail_after=4 HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"
                 "GET /info HTTP/1.1\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 500);
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    tc_close(&c);
    cr_assert_eq(atomic_load(&n_abort), 1);
}

Test(http_layer, dispatch_without_reply_gets_500)
{
    start_default();
    struct resp r;
    roundtrip("GET /noreply HTTP/1.1\r\n\r\n", &r);
    cr_assert_eq(r.status, 500);
    assert_common_headers(&r);
    resp_free(&r);
}

Test(http_layer, slowloris_header_timeout_closes)
{
    struct http_server_opts o = {.header_timeout_ms = 300};
    start_with(&o);
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /info HTTP/1.1\r\n");
    for (int i = 0; i < 3; i++) {
        usleep(100000);
        tc_sends(&c, "X-A: b\r\n");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert(tc_closed(&c, 3000));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 2);
    /* a 408 may precede the close */
    if (c.len)
        cr_assert_eq(strncmp(c.buf, "HTTP/1.1 408 ", 13), 0, "%s", c.buf);
    tc_close(&c);

    /* a connection that sends nothing is closed too */
    tc_open(&c);
    cr_assert(tc_closed(&c, 3000));
    cr_assert_eq(c.len, 0);
    tc_close(&c);
}

Test(http_layer, idle_and_body_timeouts_close)
{
    struct http_server_opts o = {.idle_timeout_ms = 300, .body_timeout_ms = 300};
    start_with(&o);
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /info HTTP/1.1\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    resp_free(&r);
    cr_assert(tc_closed(&c, 3000));
    tc_close(&c);

    tc_open(&c);
    tc_sends(&c, "PUT /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\n012");
    cr_assert(tc_closed(&c, 3000));
    tc_close(&c);
    for (int i = 0; i < 1500 && atomic_load(&n_abort) == 0; i++) /* 30 s: a guard only */
        usleep(20000);
    cr_assert_eq(atomic_load(&n_abort), 1);
}

Test(http_layer, max_connections_answers_503)
{
    struct http_server_opts o = {.max_connections = 2, .workers = 1};
    start_with(&o);
    struct tc a, b, c;
    struct resp r;
    tc_open(&a);
    tc_sends(&a, "GET /info HTTP/1.1\r\n\r\n");
    cr_assert_eq(tc_read(&a, &r, 0, 5000), 0);
    resp_free(&r);
    tc_open(&b);
    tc_sends(&b, "GET /info HTTP/1.1\r\n\r\n");
    cr_assert_eq(tc_read(&b, &r, 0, 5000), 0);
    resp_free(&r);
    tc_open(&c);
    tc_sends(&c, "GET /info HTTP/1.1\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 503);
    assert_common_headers(&r);
    cr_assert_not_null(strstr(r.body, "\"code\":\"TOOMANYREQUESTS\""), "%s", r.body);
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);
    /* a freed slot is usable again, once the server has seen the close (503
     * until then; 30 s: a guard only) */
    tc_close(&a);
    long st = 503;
    for (int i = 0; i < 300 && st == 503; i++) {
        if (i)
            usleep(100000);
        tc_open(&c);
        tc_sends(&c, "GET /info HTTP/1.1\r\n\r\n");
        cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
        st = r.status;
        resp_free(&r);
        tc_close(&c);
    }
    cr_assert_eq(st, 200);
    tc_close(&b);
}

Test(http_layer, path_is_percent_decoded_once_and_query_parsed)
{
    start_default();
    struct resp r;
    roundtrip("GET /info/%2e%2e/x%2Fy%252e?a=1&b=2&a=%41%2B+&a HTTP/1.1\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body, "path=/info/../x/y%2e\n"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "raw=/info/%2e%2e/x%2Fy%252e?a=1&b=2&a=%41%2B+&a\n"), "%s",
                       r.body);
    cr_assert_not_null(strstr(r.body, "a=1\na=A++\na=\n"), "%s", r.body);
    resp_free(&r);

    roundtrip("GET /info/%00 HTTP/1.1\r\n\r\n", &r);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    roundtrip("GET /info/%zz HTTP/1.1\r\n\r\n", &r);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    roundtrip("GET /info/%4 HTTP/1.1\r\n\r\n", &r);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    roundtrip("GET http://example.com/info?a=abs HTTP/1.1\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body, "path=/info\n"), "%s", r.body);
    resp_free(&r);
}

Test(http_layer, request_ids_are_unique)
{
    start_default();
    struct tc c;
    tc_open(&c);
    char prev[64] = "";
    for (int i = 0; i < 3; i++) {
        tc_sends(&c, "GET /info HTTP/1.1\r\n\r\n");
        struct resp r;
        cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
        char *id = strstr(r.body, "id=");
        cr_assert_not_null(id);
        char cur[64];
        sscanf(id, "id=%63s", cur);
        cr_assert(strcmp(cur, prev) != 0);
        snprintf(prev, sizeof(prev), "%s", cur);
        resp_free(&r);
    }
    tc_close(&c);
}

Test(http_layer, stop_with_open_connections_ends_run)
{
    start_default();
    struct tc a, b;
    tc_open(&a);
    tc_open(&b);
    tc_sends(&b, "GET /info HTTP/1.1\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&b, &r, 0, 5000), 0);
    resp_free(&r);
    stop_server(); /* joins the thread: must not hang on idle connections */
    cr_assert(tc_closed(&a, 3000));
    cr_assert(tc_closed(&b, 3000));
    cr_assert_eq(atomic_load(&n_worker_release), 2);
    tc_close(&a);
    tc_close(&b);
}

Test(http_layer, stop_lets_a_request_in_progress_finish)
{
    start_default();
    struct tc c;
    tc_open(&c);
    int echoed = atomic_load(&n_echo_bytes);
    tc_sends(&c, "PUT /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234");
    /* the request is in progress once its first bytes reached the app (30 s:
     * a guard only) */
    for (int i = 0; i < 3000 && atomic_load(&n_echo_bytes) < echoed + 5; i++)
        usleep(10000);
    cr_assert_eq(atomic_load(&n_echo_bytes), echoed + 5);
    http_server_stop(srv);
    /* a new connection, whether it comes before or after the worker has seen
     * the stop, is refused or closed without a reply */
    struct tc d;
    memset(&d, 0, sizeof(d));
    d.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(d.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        d.cap = 1 << 16;
        d.buf = malloc(d.cap);
        cr_assert(tc_closed(&d, 3000));
        cr_assert_eq(d.len, 0);
    }
    tc_close(&d);
    tc_sends(&c, "56789");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strcasestr(r.head, "Connection: close"));
    char want[65];
    sha_hex("0123456789", 10, want);
    cr_assert_str_eq(r.body, want);
    cr_assert(tc_closed(&c, 3000));
    resp_free(&r);
    tc_close(&c);
    stop_server();
    cr_assert_eq(atomic_load(&n_worker_release), 2);
}

static long
vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

Test(http_layer, big_streamed_body_keeps_memory_flat)
{
    start_default();
    /* warm up: one small request so lazily allocated buffers exist */
    struct resp r;
    roundtrip("PUT /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", &r);
    resp_free(&r);
    size_t chunk = 1 << 16;
    char *b = malloc(chunk);
    for (size_t i = 0; i < chunk; i++)
        b[i] = (char)(i * 31);
    uint64_t total = 512ULL << 20;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    long before = vm_hwm_kib();
    struct tc c;
    tc_open(&c);
    char h[256];
    snprintf(h, sizeof(h), "PUT /echo HTTP/1.1\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)total);
    tc_sends(&c, h);
    for (uint64_t sent = 0; sent < total; sent += chunk) {
        tc_send(&c, b, chunk);
        EVP_DigestUpdate(md, b, chunk);
    }
    cr_assert_eq(tc_read(&c, &r, 0, 60000), 0);
    long after = vm_hwm_kib();
    cr_assert_eq(r.status, 200);
    unsigned char d[32];
    unsigned int dl;
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    char want[65];
    hex(d, 32, want);
    cr_assert_str_eq(r.body, want);
    cr_assert_lt(after - before, 16 * 1024, "VmHWM rose by %ld KiB", after - before);
    resp_free(&r);
    tc_close(&c);
    free(b);
}

/* A client that pipelines 1 MiB of requests behind a GET of a big file and
 * never reads: while the reply waits for the socket, a connection keeps at most
 * HTTP_READ_AHEAD_MAX bytes of what it read (the rest stays in the kernel),
 * instead of everything its last recv got (up to body_buffer, 1 MiB). */
Test(http_layer, pipelined_input_behind_a_blocked_reply_is_bounded)
{
    start_default();
    enum { NCONN = 16 };
    static const char first[] = "GET /file HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char next[] = "GET /info?a=pipelined HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t len = 1 << 20;
    char *flood = malloc(len);
    memcpy(flood, first, sizeof(first) - 1);
    for (size_t o = sizeof(first) - 1; o < len; o += sizeof(next) - 1)
        memcpy(flood + o, next, o + sizeof(next) - 1 <= len ? sizeof(next) - 1 : len - o);
    int fds[NCONN];
    for (int i = 0; i < NCONN; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert(fds[i] >= 0);
        /* a small receive window: the file reply fills the socket at once */
        int rcv = 4096;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv_port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
                     strerror(errno));
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        /* as much as the socket buffers take: the server stops reading */
        size_t sent = 0;
        while (sent < len) {
            ssize_t n = send(fds[i], flood + sent, len - sent, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            sent += (size_t)n;
        }
        cr_assert_gt(sent, 4 * HTTP_READ_AHEAD_MAX, "only %zu bytes sent", sent);
    }
    free(flood);
    /* every connection got to its file reply */
    for (int waited = 0; atomic_load(&n_file) < NCONN; waited++) {
        cr_assert_lt(waited, 3000, "%d of %d file replies started", atomic_load(&n_file), NCONN);
        usleep(10000);
    }
    for (int i = 0; i < NCONN; i++)
        close(fds[i]);
    server_join();
    unsigned long held = http_server_input_held_max(srv);
    cr_assert_leq(held, HTTP_READ_AHEAD_MAX, "a connection kept %lu bytes of input", held);
}

/* PUT /write with a chunked body of 1000 bytes sent after the 100 Continue (so
 * that it is received into the request's own buffer and written through the
 * ring), and npipe pipelined GETs in the same send: the message ends while
 * its write is in flight, and what follows must wait. Returns the connection
 * after the PUT's 200 was read and checked. */
static void
chunked_write_then_pipelined(struct tc *c, int npipe, struct resp *r)
{
    tc_open(c);
    tc_sends(c, "PUT /write HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                "Expect: 100-continue\r\n\r\n");
    cr_assert_eq(tc_read(c, r, 0, 5000), 0);
    cr_assert_eq(r->status, 100);
    resp_free(r);
    static const char next[] = "GET /info?a=next HTTP/1.1\r\nHost: x\r\n\r\n";
    char body[1000];
    memset(body, 'b', sizeof(body));
    size_t cap = 64 + sizeof(body) + (size_t)npipe * sizeof(next);
    char *msg = malloc(cap);
    size_t n = (size_t)snprintf(msg, cap, "%zx\r\n", sizeof(body));
    memcpy(msg + n, body, sizeof(body));
    n += sizeof(body);
    memcpy(msg + n, "\r\n0\r\n\r\n", 7);
    n += 7;
    for (int i = 0; i < npipe; i++) {
        memcpy(msg + n, next, sizeof(next) - 1);
        n += sizeof(next) - 1;
    }
    tc_send(c, msg, n);
    free(msg);
    cr_assert_eq(tc_read(c, r, 0, 5000), 0);
    cr_assert_eq(r->status, 200, "%s", r->head);
    char want[65];
    sha_hex(body, sizeof(body), want);
    cr_assert_eq(strncmp(r->body, want, 64), 0, "%s", r->body);
}

/* After a chunked body, whose end no read limit can foresee, a recv may take
 * more pipelined input than a connection keeps: beyond HTTP_READ_AHEAD_MAX it
 * is dropped and the connection closes after the reply (which says so), so
 * nothing behind it is answered; less is kept and answered in order. */
Test(http_layer, pipelined_input_after_chunked_body_over_the_bound_closes)
{
    struct http_server_opts o = {.io = HTTP_IO_URING, .workers = 1};
    start_with(&o);
    cr_assert_str_eq(http_server_upload_io_name(srv), "uring");
    struct tc c;
    struct resp r;
    chunked_write_then_pipelined(&c, 2, &r);
    cr_assert_null(strcasestr(r.head, "Connection: close"), "%s", r.head);
    resp_free(&r);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tc_read(&c, &r, 0, 5000), 0, "pipelined request %d not answered", i);
        cr_assert_not_null(strstr(r.body, "a=next\n"));
        resp_free(&r);
    }
    tc_close(&c);

    chunked_write_then_pipelined(&c, 2 * HTTP_READ_AHEAD_MAX / 40, &r);
    cr_assert_not_null(strcasestr(r.head, "Connection: close"), "%s", r.head);
    resp_free(&r);
    cr_assert(tc_closed(&c, 3000), "connection left open");
    cr_assert_null(strstr(c.buf, "a=next"), "pipelined request answered");
    tc_close(&c);
    cr_assert_leq(http_server_input_held_max(srv), HTTP_READ_AHEAD_MAX);
}

/* ---- framing defects found in review ---- */

/* send req; expect status `want`, Connection: close and the connection closed
 * without an answer to the pipelined request that followed */
static void
expect_fail_and_close(const char *req, int want)
{
    struct tc c;
    tc_open(&c);
    tc_sends(&c, req);
    tc_sends(&c, "GET /info?a=next HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0, "no response to %s", req);
    cr_assert_eq(r.status, want, "status %d for:\n%s", r.status, req);
    cr_assert_not_null(strcasestr(r.head, "Connection: close"), "%s", r.head);
    resp_free(&r);
    cr_assert(tc_closed(&c, 3000), "connection left open after:\n%s", req);
    cr_assert_null(strstr(c.buf, "a=next"), "pipelined request answered after:\n%s", req);
    tc_close(&c);
}

Test(http_layer, content_length_above_int64_max_is_400_and_closes)
{
    start_default();
    expect_fail_and_close("PATCH /reject HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: 9223372036854775808\r\n\r\n",
                          400);
    expect_fail_and_close("POST /echo HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: 18446744073709551615\r\n\r\nhello",
                          400);
    cr_assert_eq(atomic_load(&n_complete), 0);
    /* the largest valid value still reaches dispatch */
    struct resp r;
    roundtrip("POST /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775807\r\n\r\n",
              &r);
    cr_assert_eq(r.status, 403);
    resp_free(&r);
}

Test(http_layer, unknown_transfer_coding_is_501_and_closes)
{
    start_default();
    expect_fail_and_close("POST /reject HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
                          "5\r\nhello\r\n0\r\n\r\n",
                          501);
    expect_fail_and_close("POST /reject HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    expect_fail_and_close("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                          "5\r\nhello\r\n0\r\n\r\n",
                          501);
    cr_assert_eq(atomic_load(&n_complete), 0);
}

Test(http_layer, chunked_not_final_is_400_and_closes)
{
    start_default();
    expect_fail_and_close("POST /reject HTTP/1.1\r\nHost: x\r\n"
                          "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                          400);
    expect_fail_and_close("POST /reject HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          "Transfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                          400);
    expect_fail_and_close("POST /reject HTTP/1.1\r\nHost: x\r\n"
                          "Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                          400);
    /* a plain chunked body still works, case-insensitively */
    struct resp r;
    roundtrip("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
              "5\r\nhello\r\n0\r\n\r\n",
              &r);
    cr_assert_eq(r.status, 200);
    char want[65];
    sha_hex("hello", 5, want);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
}

/* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing
 * (a 1.0 hop may have forwarded the chunked body as raw bytes): 400, and
 * nothing after it on the connection is answered, even with keep-alive */
Test(http_layer, http10_with_transfer_encoding_is_400_and_closes)
{
    start_default();
    expect_fail_and_close("POST /echo HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                          400);
    expect_fail_and_close("GET /info HTTP/1.0\r\nConnection: keep-alive\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                          400);
    expect_fail_and_close("POST /echo HTTP/1.0\r\nConnection: keep-alive\r\n"
                          "Transfer-Encoding: gzip\r\n\r\n",
                          400);
    cr_assert_eq(atomic_load(&n_complete), 0);
    /* HTTP/1.0 keep-alive with a Content-Length body still works */
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"
                 "GET /info?a=next HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strcasestr(r.head, "Connection: keep-alive"), "%s", r.head);
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "a=next\n"));
    resp_free(&r);
    tc_close(&c);
}

Test(http_layer, obs_fold_header_is_400_and_closes)
{
    start_default();
    expect_fail_and_close("GET /info HTTP/1.1\r\nHost: x\r\nX-Hdr: a\r\n b\r\n\r\n", 400);
    expect_fail_and_close("GET /info HTTP/1.1\r\nHost: x\r\nX-Hdr: a\r\n\tb\r\n\r\n", 400);
    /* split across reads: the LF ends one send, the SP starts the next */
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /info HTTP/1.1\r\nHost: x\r\nX-Hdr: a\r\n");
    usleep(50000);
    tc_sends(&c, " b\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    tc_close(&c);
}

/* ---- file replies, once with io_uring splice and once with sendfile ---- */

static void
start_io_timeout(int io, size_t fsize, int body_timeout_ms)
{
    want_file_size = fsize;
    struct http_server_opts o = {0};
    o.io = io;
    o.body_timeout_ms = body_timeout_ms;
    o.decline_zero_copy = want_decline;
    start_with(&o);
    cr_assert_str_eq(http_server_io_name(srv), io == HTTP_IO_URING ? "uring" : "posix");
}

static void
start_io(int io, size_t fsize)
{
    start_io_timeout(io, fsize, 0);
}

static void
check_file_bytes(const char *b, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)b[i] != file_byte(off + i))
            cr_assert_fail("byte %zu of the range at %zu: %d, want %d", i, off,
                           (unsigned char)b[i], file_byte(off + i));
}

#define BIG_FILE (40u * 1024 * 1024 + 333)

static void
file_big_keepalive(int io)
{
    start_io(io, BIG_FILE);
    struct tc c;
    tc_open(&c);
    /* two whole-file replies and a small request, pipelined on one connection */
    tc_sends(&c, "GET /file HTTP/1.1\r\nHost: x\r\n\r\nGET /file HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /info?a=after HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int k = 0; k < 2; k++) {
        struct resp r;
        cr_assert_eq(tc_read(&c, &r, 0, 20000), 0, "reply %d", k);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.blen, BIG_FILE);
        check_file_bytes(r.body, 0, r.blen);
        resp_free(&r);
    }
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "a=after\n"));
    resp_free(&r);
    tc_close(&c);
}

static void
file_ranges(int io)
{
    start_io(io, BIG_FILE);
    static const struct {
        size_t off, len;
    } rg[] = {{0, 1},           {1, 4095},          {4093, 70001},   {1048575, 1048577},
              {1000003, 5000000}, {BIG_FILE - 10, 10}, {BIG_FILE / 2, BIG_FILE / 2}};
    struct tc c;
    tc_open(&c);
    for (size_t i = 0; i < sizeof(rg) / sizeof(rg[0]); i++) {
        char req[160];
        snprintf(req, sizeof(req), "GET /file?off=%zu&len=%zu HTTP/1.1\r\nHost: x\r\n\r\n",
                 rg[i].off, rg[i].len);
        tc_sends(&c, req);
        struct resp r;
        cr_assert_eq(tc_read(&c, &r, 0, 20000), 0, "range %zu", i);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.blen, rg[i].len);
        check_file_bytes(r.body, rg[i].off, r.blen);
        resp_free(&r);
    }
    /* HEAD: headers only, the full length */
    tc_sends(&c, "HEAD /file?off=5&len=1000000 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /info?a=z HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 1, 5000), 0);
    cr_assert_not_null(strstr(r.head, "Content-Length: 1000000\r\n"), "%s", r.head);
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "a=z\n"));
    resp_free(&r);
    tc_close(&c);
    /* the copy path ran exactly when the transport declined zero-copy; after
     * the first decline, the small ranges went out with their headers */
    cr_assert_eq(http_server_file_copies(srv) > 0, want_decline != 0);
    cr_assert_eq(http_server_files_with_headers(srv) > 0, want_decline != 0);
}

/* a client that reads a little at a time: the server must wait for the socket
 * (backpressure) without losing or reordering bytes */
static void
file_slow_reader(int io)
{
    start_io(io, 8u * 1024 * 1024 + 5);
    struct tc c;
    tc_open(&c);
    int small = 16384;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    tc_sends(&c, "GET /file HTTP/1.1\r\nHost: x\r\n\r\nGET /info?a=next HTTP/1.1\r\n\r\n");
    int rounds = 0;
    while (c.len < 200 || !strstr(c.buf, "\r\n\r\n")) {
        cr_assert_gt(tc_fill(&c, 5000), 0);
    }
    /* read in small steps with pauses for the first part */
    while (rounds < 40) {
        usleep(5000);
        long n = tc_fill(&c, 5000);
        cr_assert_gt(n, 0);
        rounds++;
    }
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 20000), 0);
    cr_assert_eq(r.blen, want_file_size);
    check_file_bytes(r.body, 0, r.blen);
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "a=next\n"));
    resp_free(&r);
    tc_close(&c);
}

/* the client goes away in the middle of a body: the server frees the
 * connection (and, with io_uring, the transfer still in flight) and serves on */
static void
file_client_disconnect(int io)
{
    start_io_timeout(io, BIG_FILE, 1500);
    for (int k = 0; k < 8; k++) {
        struct tc c;
        tc_open(&c);
        tc_sends(&c, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
        size_t want = 100000 + (size_t)k * 300000;
        while (c.len < want)
            cr_assert_gt(tc_fill(&c, 5000), 0);
        if (k & 1) {
            struct linger lg = {1, 0}; /* reset instead of FIN */
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        tc_close(&c);
    }
    struct resp r;
    roundtrip("GET /file?off=7&len=3000000 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.blen, 3000000);
    check_file_bytes(r.body, 7, r.blen);
    resp_free(&r);
    /* a client that stops reading is cut after body_timeout */
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
    usleep(100000);
    cr_assert(tc_closed(&c, 200) == 0);
    usleep(2000000);
    size_t before = c.len;
    while (tc_fill(&c, 2000) > 0)
        ;
    cr_assert_lt(c.len - before + 200000, (size_t)BIG_FILE, "the whole body came");
    tc_close(&c);
    stop_server();
}

/* a file reply whose file is shorter than announced: the connection is cut,
 * never left hanging */
static void
file_shorter_than_announced(int io)
{
    start_io(io, 100000);
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /file?off=0&len=200000 HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(tc_closed(&c, 5000));
    cr_assert_eq(c.len > 100000, 1);
    tc_close(&c);
    struct resp r;
    roundtrip("GET /info?a=ok HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
}

Test(http_layer, file_big_keepalive_uring) { file_big_keepalive(HTTP_IO_URING); }
Test(http_layer, file_big_keepalive_posix) { file_big_keepalive(HTTP_IO_POSIX); }
Test(http_layer, file_ranges_uring) { file_ranges(HTTP_IO_URING); }
Test(http_layer, file_ranges_posix) { file_ranges(HTTP_IO_POSIX); }
Test(http_layer, file_slow_reader_uring) { file_slow_reader(HTTP_IO_URING); }
Test(http_layer, file_slow_reader_posix) { file_slow_reader(HTTP_IO_POSIX); }
Test(http_layer, file_client_disconnect_uring)
{
    file_client_disconnect(HTTP_IO_URING);
}
Test(http_layer, file_client_disconnect_posix)
{
    file_client_disconnect(HTTP_IO_POSIX);
}
Test(http_layer, file_shorter_than_announced_uring)
{
    file_shorter_than_announced(HTTP_IO_URING);
}
Test(http_layer, file_shorter_than_announced_posix)
{
    file_shorter_than_announced(HTTP_IO_POSIX);
}

Test(http_layer, io_auto_is_sendfile)
{
    start_default();
    cr_assert_str_eq(http_server_io_name(srv), "posix");
}

/* ---- asynchronous body writes (http_req_body_write) ---- */

static void
body_writes(int io)
{
    struct http_server_opts o = {.io = io, .workers = 1, .body_buffer = 64 * 1024};
    start_with(&o);
    cr_assert_str_eq(http_server_upload_io_name(srv), io == HTTP_IO_URING ? "uring" : "posix");
    size_t n = 5 * 1024 * 1024 + 3;
    char *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(i * 13 + i / 509);
    char want[65], h[200];
    sha_hex(b, n, want);
    struct tc c;
    tc_open(&c);
    /* the body, and a pipelined request right behind it: it must wait for the
     * writes and on_complete, and be answered after */
    snprintf(h, sizeof(h), "PUT /write HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    tc_sends(&c, h);
    tc_send(&c, b, n);
    tc_sends(&c, "GET /info HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp r;
    cr_assert_eq(tc_read(&c, &r, 0, 10000), 0);
    cr_assert_eq(r.status, 200, "%s", r.head);
    cr_assert_eq(strncmp(r.body, want, 64), 0, "file content differs: %s", r.body);
    cr_assert_not_null(strstr(r.body, "bad=0"), "%s", r.body);
    unsigned async = 0, maxin = 0;
    const char *a = strstr(r.body, "async=");
    const char *m = strstr(r.body, "max_inflight=");
    cr_assert(a && m);
    async = (unsigned)atoi(a + 6);
    maxin = (unsigned)atoi(m + 13);
    cr_log_info("io %d: %u asynchronous writes, at most %u in flight", io, async, maxin);
    if (io == HTTP_IO_URING) {
        cr_assert_gt(async, 40, "%s", r.body);
        cr_assert_gt(http_server_uring_writes(srv), 40);
        /* a Content-Length body: one write per receive buffer, and at most 4
         * buffers per request are held by writes (then reading stops) */
        cr_assert_leq(maxin, 4, "%s", r.body);
    } else {
        cr_assert_eq(async, 0, "%s", r.body);
        cr_assert_eq(maxin, 1);
        cr_assert_eq(http_server_uring_writes(srv), 0);
    }
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body, "path=/info"));
    resp_free(&r);
    /* a client that leaves in the middle of a body: on_abort, never with a
     * write in flight */
    int aborts0 = atomic_load(&n_write_abort);
    for (int k = 0; k < 4; k++) {
        struct tc d;
        tc_open(&d);
        tc_sends(&d, h);
        tc_send(&d, b, n / 2 + (size_t)k * 100000);
        if (k & 1) {
            struct linger lg = {1, 0}; /* RST */
            setsockopt(d.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        tc_close(&d);
    }
    for (int i = 0; i < 3000 && atomic_load(&n_write_abort) < aborts0 + 4; i++) /* 30 s guard */
        usleep(10000);
    cr_assert_eq(atomic_load(&n_write_abort), aborts0 + 4);
    cr_assert_eq(atomic_load(&n_write_violations), 0,
                 "on_complete/on_abort ran with a write in flight");
    tc_close(&c);
    free(b);
}

Test(http_layer, body_writes_through_io_uring_complete_before_on_complete)
{
    body_writes(HTTP_IO_URING);
}

Test(http_layer, body_writes_posix_are_synchronous)
{
    body_writes(HTTP_IO_POSIX);
}

/* ---- the transport declines zero-copy: bounded pread + sendv (including
 * ranges, a slow reader, a client leaving, a file shorter than announced) ---- */

Test(http_layer, file_ranges_copy_posix)
{
    want_decline = 1;
    file_ranges(HTTP_IO_POSIX);
}
Test(http_layer, file_ranges_copy_uring)
{
    want_decline = 1;
    file_ranges(HTTP_IO_URING);
}
Test(http_layer, file_big_keepalive_copy)
{
    want_decline = 1;
    file_big_keepalive(HTTP_IO_POSIX);
    cr_assert_geq(http_server_file_copies(srv), 2);
}
Test(http_layer, file_slow_reader_copy)
{
    want_decline = 1;
    file_slow_reader(HTTP_IO_URING);
    cr_assert_gt(http_server_file_copies(srv), 0);
}
Test(http_layer, file_client_disconnect_copy)
{
    want_decline = 1;
    file_client_disconnect(HTTP_IO_POSIX);
}
Test(http_layer, file_shorter_than_announced_copy)
{
    want_decline = 1;
    file_shorter_than_announced(HTTP_IO_POSIX);
}

/* ---- the layer knows nothing of the registry ---- */

Test(http_layer, layer_errors_and_headers_come_from_the_app)
{
    want_plain_app = 1;
    struct http_server_opts o = {.max_connections = 1, .workers = 1};
    start_with(&o);
    struct tc a, b;
    struct resp r;
    tc_open(&a);
    tc_sends(&a, "GET /info HTTP/1.1\r\n\r\n");
    cr_assert_eq(tc_read(&a, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.head, "\r\nX-Plain-App: 1\r\n"), "%s", r.head);
    cr_assert_null(strstr(r.head, "Docker-Distribution"), "%s", r.head);
    cr_assert_not_null(strstr(r.head, "\r\nDate: "));
    resp_free(&r);
    /* over max_connections: the 503 is the app's */
    tc_open(&b);
    cr_assert_eq(tc_read(&b, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 503);
    cr_assert_not_null(strstr(r.head, "\r\nContent-Type: text/plain\r\n"), "%s", r.head);
    cr_assert_not_null(strstr(r.head, "\r\nX-Plain-App: 1\r\n"), "%s", r.head);
    cr_assert_not_null(strstr(r.head, "\r\nRetry-After: 1\r\n"), "%s", r.head);
    cr_assert_null(strstr(r.head, "Docker-Distribution"), "%s", r.head);
    cr_assert_eq(strncmp(r.body, "plain ", 6), 0, "%s", r.body);
    resp_free(&r);
    tc_close(&b);
    tc_close(&a);
    stop_server();

    /* the layer's own errors (431 here) are rendered by the app */
    want_plain_app = 1;
    struct http_server_opts o2 = {.header_max = 4096};
    start_with(&o2);
    tc_open(&a);
    char big[6000];
    memset(big, 'a', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    tc_sends(&a, "GET /info HTTP/1.1\r\nX-Big: ");
    tc_sends(&a, big);
    tc_sends(&a, "\r\n\r\n");
    cr_assert_eq(tc_read(&a, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 431);
    cr_assert_not_null(strstr(r.head, "\r\nX-Plain-App: 1\r\n"), "%s", r.head);
    cr_assert_null(strstr(r.head, "Docker-Distribution"), "%s", r.head);
    cr_assert_str_eq(r.body, "plain SIZE_INVALID: request header block too large");
    resp_free(&r);
    tc_close(&a);
}

Test(http_layer, app_without_error_callback_is_refused)
{
    struct http_app app = {.dispatch = app_dispatch};
    struct http_server_opts o = {.listen = "127.0.0.1:0", .workers = 1};
    struct err e = {0};
    log_setup(LOG_ERROR, 0, 2);
    cr_assert_null(http_server_new(&o, &app, &e));
    cr_assert_eq(e.code, ERR_CONFIG);
}

/* ---- streamed replies (http_reply_stream) ---- */

static void
wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 1500 && atomic_load(v) < want; i++) /* 30 s: a guard only */
        usleep(20000);
}

/* decode the chunked body that follows the head tc_read took into r->body;
 * 0, or -1 on bad framing, a timeout or a close */
static int
tc_read_chunked(struct tc *c, struct resp *r, int timeout_ms)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (;;) {
        char *eol;
        while (!(eol = memmem(c->buf, c->len, "\r\n", 2)))
            if (tc_fill(c, timeout_ms) <= 0)
                goto bad;
        char *endp;
        size_t sz = strtoul(c->buf, &endp, 16);
        if (endp == c->buf || endp != eol)
            goto bad;
        size_t hl = (size_t)(eol + 2 - c->buf);
        while (c->len < hl + sz + 2)
            if (tc_fill(c, timeout_ms) <= 0)
                goto bad;
        if (memcmp(c->buf + hl + sz, "\r\n", 2) != 0)
            goto bad;
        if (len + sz + 1 > cap) {
            cap = (len + sz + 1) * 2;
            out = realloc(out, cap);
        }
        memcpy(out + len, c->buf + hl, sz);
        len += sz;
        memmove(c->buf, c->buf + hl + sz + 2, c->len - hl - sz - 2);
        c->len -= hl + sz + 2;
        c->buf[c->len] = '\0';
        if (sz == 0)
            break;
    }
    out[len] = '\0';
    free(r->body);
    r->body = out;
    r->blen = len;
    return 0;
bad:
    free(out);
    return -1;
}

static void
start_stream_server(void)
{
    struct http_server_opts o = {.workers = 1}; /* /wake runs on the stream's worker */
    start_with(&o);
}

Test(http_layer, stream_chunked_and_fixed_length)
{
    start_stream_server();
    struct tc c;
    struct resp r;
    tc_open(&c);
    tc_sends(&c, "GET /stream?len=300001&piece=7000 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /stream?len=300001&fixed=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /stream?len=0 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /info?a=after HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(r.status, 200);
    assert_common_headers(&r);
    cr_assert_not_null(strstr(r.head, "\r\nTransfer-Encoding: chunked\r\n"), "%s", r.head);
    cr_assert_null(strcasestr(r.head, "Content-Length"), "%s", r.head);
    cr_assert_eq(tc_read_chunked(&c, &r, 5000), 0);
    cr_assert_eq(r.blen, 300001);
    check_file_bytes(r.body, 0, r.blen);
    resp_free(&r);

    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    assert_common_headers(&r);
    cr_assert_not_null(strstr(r.head, "\r\nContent-Length: 300001\r\n"), "%s", r.head);
    cr_assert_null(strcasestr(r.head, "Transfer-Encoding"), "%s", r.head);
    cr_assert_eq(r.blen, 300001);
    check_file_bytes(r.body, 0, r.blen);
    resp_free(&r);

    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(tc_read_chunked(&c, &r, 5000), 0);
    cr_assert_eq(r.blen, 0);
    resp_free(&r);

    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "a=after\n"));
    resp_free(&r);
    tc_close(&c);

    /* HTTP/1.0 has no chunks: the body ends with the connection */
    tc_open(&c);
    tc_sends(&c, "GET /stream?len=200000 HTTP/1.0\r\n\r\n");
    cr_assert(tc_closed(&c, 5000));
    char *end = strstr(c.buf, "\r\n\r\n");
    cr_assert_not_null(end);
    size_t hl = (size_t)(end + 4 - c.buf);
    char head[2048];
    cr_assert_lt(hl, sizeof(head));
    memcpy(head, c.buf, hl);
    head[hl] = '\0';
    cr_assert_null(strcasestr(head, "Transfer-Encoding"), "%s", head);
    cr_assert_null(strcasestr(head, "Content-Length"), "%s", head);
    cr_assert_not_null(strcasestr(head, "Connection: close"), "%s", head);
    cr_assert_eq(c.len - hl, 200000);
    check_file_bytes(c.buf + hl, 0, 200000);
    tc_close(&c);

    wait_for(&n_release, 4);
    cr_assert_eq(atomic_load(&n_release), 4);
}

Test(http_layer, stream_head_sends_headers_only)
{
    start_stream_server();
    struct tc c;
    struct resp r;
    tc_open(&c);
    tc_sends(&c, "HEAD /stream?len=1000&fixed=1 HTTP/1.1\r\n\r\n"
                 "HEAD /stream?len=1000 HTTP/1.1\r\n\r\n"
                 "GET /info?a=z HTTP/1.1\r\n\r\n");
    cr_assert_eq(tc_read(&c, &r, 1, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.head, "\r\nContent-Length: 1000\r\n"), "%s", r.head);
    resp_free(&r);
    cr_assert_eq(tc_read(&c, &r, 1, 5000), 0);
    cr_assert_not_null(strstr(r.head, "\r\nTransfer-Encoding: chunked\r\n"), "%s", r.head);
    resp_free(&r);
    /* no body byte came between: the next reply follows the heads at once */
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_not_null(strstr(r.body, "a=z\n"), "%s", r.body);
    resp_free(&r);
    tc_close(&c);
    cr_assert_eq(atomic_load(&n_produce), 0);
    cr_assert_eq(atomic_load(&n_release), 2);
}

static long
proc_long_field(const char *path, int field, long dflt)
{
    FILE *f = fopen(path, "re");
    long v[3] = {0, 0, 0};
    int n = f ? fscanf(f, "%ld %ld %ld", &v[0], &v[1], &v[2]) : 0;
    if (f)
        fclose(f);
    return n > field ? v[field] : dflt;
}

/* A client that reads nothing at first, then everything: the producer must
 * never run further ahead of the client than the socket buffers and the
 * layer's own buffer hold (it is asked for more only when the socket took what
 * it gave before). */
Test(http_layer, stream_backpressure_slow_reader)
{
    start_stream_server();
    const long total = 48L << 20;
    struct tc c;
    tc_open(&c);
    int small = 65536;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    int rcv = 0;
    socklen_t sl = sizeof(rcv);
    getsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcv, &sl);
    long wmem = proc_long_field("/proc/sys/net/ipv4/tcp_wmem", 2, 4L << 20);
    long bound = wmem + 2L * rcv + (2L << 20); /* socket buffers, the layer's, slack */
    cr_assert_lt(bound, total / 2, "socket buffers too large for this test: %ld", bound);
    char req[128];
    snprintf(req, sizeof(req), "GET /stream?len=%ld&fixed=1 HTTP/1.1\r\nHost: x\r\n\r\n", total);
    tc_sends(&c, req);

    /* read nothing until the layer found the socket full */
    for (int i = 0; i < 1500 && http_server_stream_stalls(srv) == 0; i++) /* a guard only */
        usleep(20000);
    cr_assert_gt(http_server_stream_stalls(srv), 0);
    cr_assert_leq(atomic_load(&produced_bytes), bound, "produced %ld while the client read nothing",
                  atomic_load(&produced_bytes));

    /* then read it all, telling the producer's counter what arrived */
    char *end;
    while (!(end = strstr(c.buf, "\r\n\r\n")))
        cr_assert_gt(tc_fill(&c, 5000), 0);
    size_t hl = (size_t)(end + 4 - c.buf);
    cr_assert_not_null(strstr(c.buf, "\r\nContent-Length: 50331648\r\n"));
    size_t got = c.len - hl;
    check_file_bytes(c.buf + hl, 0, got);
    atomic_store(&client_received, (long)got);
    char *buf = malloc(1 << 16);
    while (got < (size_t)total) {
        ssize_t n = recv(c.fd, buf, 1 << 16, 0);
        cr_assert_gt(n, 0, "recv: %s", strerror(errno));
        for (ssize_t i = 0; i < n; i++)
            if ((unsigned char)buf[i] != file_byte(got + (size_t)i))
                cr_assert_fail("byte %zu differs", got + (size_t)i);
        got += (size_t)n;
        atomic_store(&client_received, (long)got);
    }
    free(buf);
    cr_assert_eq(got, (size_t)total);
    cr_assert_leq(atomic_load(&max_gap), bound, "the producer ran %ld bytes ahead of the client",
                  atomic_load(&max_gap));
    wait_for(&n_release, 1);
    cr_assert_eq(atomic_load(&n_release), 1);
    tc_close(&c);
}

Test(http_layer, stream_again_waits_for_wake)
{
    start_stream_server();
    struct tc c;
    struct resp r;
    tc_open(&c);
    tc_sends(&c, "GET /stream?len=500000&again=1&piece=50000 HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for(&n_again, 1);
    cr_assert_eq(atomic_load(&n_again), 1);
    /* the first piece came, and the producer is not asked again until woken */
    while (c.len < 50000)
        cr_assert_gt(tc_fill(&c, 5000), 0);
    cr_assert_eq(atomic_load(&n_produce), 2);
    struct resp w;
    roundtrip("GET /wake HTTP/1.1\r\nHost: x\r\n\r\n", &w);
    cr_assert_str_eq(w.body, "woken");
    resp_free(&w);
    cr_assert_eq(tc_read(&c, &r, 0, 5000), 0);
    cr_assert_eq(tc_read_chunked(&c, &r, 5000), 0);
    cr_assert_eq(r.blen, 500000);
    check_file_bytes(r.body, 0, r.blen);
    resp_free(&r);
    tc_close(&c);
    wait_for(&n_release, 1);
    cr_assert_eq(atomic_load(&n_release), 1);
}

Test(http_layer, stream_producer_error_closes_the_connection)
{
    start_stream_server();
    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /stream?len=1000000&fail=1&piece=1000 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /info HTTP/1.1\r\n\r\n");
    cr_assert(tc_closed(&c, 5000));
    cr_assert_not_null(strstr(c.buf, "\r\n\r\n3e8\r\n"), "%s", c.buf);
    cr_assert_null(strstr(c.buf, "\r\n0\r\n\r\n"), "the body must not look complete");
    tc_close(&c);
    wait_for(&n_release, 1);
    cr_assert_eq(atomic_load(&n_release), 1);
}

/* clients leave mid-stream (FIN or RST), one while its producer waits for a
 * wake: every release runs exactly once, the server serves on (ASan: no leak) */
Test(http_layer, stream_client_disconnect_releases_once)
{
    start_stream_server();
    for (int k = 0; k < 4; k++) {
        struct tc c;
        tc_open(&c);
        char req[128];
        snprintf(req, sizeof(req), "GET /stream?len=67108864%s HTTP/1.1\r\nHost: x\r\n\r\n",
                 k & 2 ? "&fixed=1" : "");
        tc_sends(&c, req);
        while (c.len < 100000 + (size_t)k * 200000)
            cr_assert_gt(tc_fill(&c, 5000), 0);
        if (k & 1) {
            struct linger lg = {1, 0};
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        tc_close(&c);
    }
    wait_for(&n_release, 4);
    cr_assert_eq(atomic_load(&n_release), 4);

    struct tc c;
    tc_open(&c);
    tc_sends(&c, "GET /stream?len=10000000&again=1&piece=1000 HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for(&n_again, 1);
    tc_close(&c);
    struct resp r;
    roundtrip("GET /wake HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    cr_assert_str_eq(r.body, "woken");
    resp_free(&r);
    wait_for(&n_release, 5);
    cr_assert_eq(atomic_load(&n_release), 5);
    roundtrip("GET /info?a=still HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    cr_assert_not_null(strstr(r.body, "a=still\n"));
    resp_free(&r);
}
