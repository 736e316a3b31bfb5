/* http_async_test.c - requests that wait (http_req_suspend / http_req_resume /
 * http_req_offload in server/http.h): the layer in-process with a test app of
 * its own, driven over raw loopback sockets; the resumptions come from the test
 * thread (not a worker) or from a pool thread.
 *
 * Routes of the test app:
 *   /wait       dispatch suspends; the test thread resumes it (wait_resume_all)
 *   /waitbody   dispatch suspends; the resumption accepts the body (SHA-256 echo)
 *   /waitdone   the body is collected; on_complete suspends; the resumption
 *               replies the body back
 *   /offload    the work runs on the pool, blocked until the test opens a gate;
 *               done replies "pool=<1 if another thread than the worker's>"
 *   /pieces     the body's pieces go to the pool (http_req_body_offload): each
 *               is hashed there (SHA-256: order matters), checked to run alone;
 *               with ?gate a piece worked on a pool thread first waits for the
 *               gate; the reply is "<sha256> pool=<pieces worked off the
 *               worker> bad=<pieces that overlapped, or done off the worker>"
 *   /fast       replies at once
 * Every resumption counts itself (once per request: n_resumed, n_dead) and
 * replies even when the client is gone (the layer must drop it). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pool.h"
#include "server/http.h"
#include "server/reply.h"

#include "common/banned.h"

/* ---- the test app ---- */

#define MAX_WAITING 64

static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static struct waiter {
    struct http_req *r;
    http_resume_fn fn;
    struct wstate *s;
} waiting[MAX_WAITING];
static int nwaiting;
static atomic_int n_resumed, n_dead, n_abort, n_twice;
static struct pool *pool;

/* the gate the offloaded work waits on */
static pthread_mutex_t gmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gcv = PTHREAD_COND_INITIALIZER;
static int gate_open, n_work_started;

struct wstate {
    pthread_t worker;
    pthread_t ran_on;
    EVP_MD_CTX *md;
    int resumed;
};

struct wstate;
static void
remember(struct http_req *r, http_resume_fn fn, struct wstate *s)
{
    pthread_mutex_lock(&wmu);
    cr_assert_lt(nwaiting, MAX_WAITING);
    waiting[nwaiting++] = (struct waiter){r, fn, s};
    pthread_mutex_unlock(&wmu);
}

static int
waiting_count(void)
{
    pthread_mutex_lock(&wmu);
    int n = nwaiting;
    pthread_mutex_unlock(&wmu);
    return n;
}

static void
count_resume(struct http_req *r, struct wstate *s)
{
    if (s->resumed++)
        atomic_fetch_add(&n_twice, 1);
    atomic_fetch_add(&n_resumed, 1);
    if (http_req_is_dead(r))
        atomic_fetch_add(&n_dead, 1);
}

static void
wait_resumed(struct http_req *r, void *arg)
{
    struct wstate *s = arg;
    count_resume(r, s);
    /* replies also when dead: the layer drops it */
    http_reply(r, 200, "text/plain", "resumed", 7);
}

static int
echo_body(struct http_req *r, void *state, const void *data, size_t n)
{
    struct wstate *s = state;
    EVP_DigestUpdate(s->md, data, n);
    return 0;
}

/* the SHA-256 of *md in hex (64 digits and a NUL); frees *md */
static void
md_final_hex(EVP_MD_CTX **md, char *out)
{
    unsigned char d[32];
    unsigned dl = 0;
    EVP_DigestFinal_ex(*md, d, &dl);
    EVP_MD_CTX_free(*md);
    *md = NULL;
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void
echo_complete(struct http_req *r, void *state)
{
    struct wstate *s = state;
    char h[65];
    md_final_hex(&s->md, h);
    http_reply(r, 200, "text/plain", h, 64);
}

static void
echo_abort(struct http_req *r, void *state)
{
    struct wstate *s = state;
    atomic_fetch_add(&n_abort, 1);
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
}

static void
waitbody_resumed(struct http_req *r, void *arg)
{
    struct wstate *s = arg;
    count_resume(r, s);
    if (http_req_is_dead(r))
        return;
    s->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
    http_req_on_body(r, echo_body, echo_complete, echo_abort, s);
}

static void
waitdone_resumed(struct http_req *r, void *arg)
{
    struct wstate *s = arg;
    count_resume(r, s);
    size_t n;
    const char *b = http_req_body(r, &n);
    http_reply(r, 200, "application/octet-stream", b, n);
}

static void
waitdone_complete(struct http_req *r, void *state)
{
    cr_assert_eq(http_req_suspend(r), 0);
    remember(r, waitdone_resumed, state);
}

/* on a pool thread: count a start, then wait until the test opens the gate */
static void
gate_wait(void)
{
    pthread_mutex_lock(&gmu);
    n_work_started++;
    pthread_cond_broadcast(&gcv);
    while (!gate_open)
        pthread_cond_wait(&gcv, &gmu);
    pthread_mutex_unlock(&gmu);
}

static void
offload_work(void *tctx, void *arg)
{
    struct wstate *s = arg;
    s->ran_on = pthread_self();
    gate_wait();
}

static void
offload_done(struct http_req *r, void *arg)
{
    struct wstate *s = arg;
    count_resume(r, s);
    char out[32];
    int n = snprintf(out, sizeof(out), "pool=%d",
                     !pthread_equal(s->ran_on, s->worker) && pthread_equal(pthread_self(), s->worker));
    http_reply(r, 200, "text/plain", out, (size_t)n);
}

/* ---- /pieces ---- */

static atomic_int n_pieces_worked, n_pieces_done;

struct pstate {
    pthread_t worker;
    EVP_MD_CTX *md;
    int gate;
    atomic_int running; /* pieces of this request being worked now */
    atomic_int pooled;  /* pieces worked on another thread than the worker */
    atomic_int bad;
};

static long
piece_work(void *tctx, void *state, const void *data, size_t n)
{
    struct pstate *s = state;
    if (atomic_fetch_add(&s->running, 1) != 0)
        atomic_fetch_add(&s->bad, 1);
    int off_worker = !pthread_equal(pthread_self(), s->worker);
    if (off_worker) {
        atomic_fetch_add(&s->pooled, 1);
        if (s->gate)
            gate_wait();
    }
    EVP_DigestUpdate(s->md, data, n);
    atomic_fetch_sub(&s->running, 1);
    atomic_fetch_add(&n_pieces_worked, 1);
    return (long)n;
}

static int
piece_done(struct http_req *r, void *state, uint64_t off, size_t n, long res)
{
    struct pstate *s = state;
    if (!pthread_equal(pthread_self(), s->worker) || res != (long)n)
        atomic_fetch_add(&s->bad, 1);
    atomic_fetch_add(&n_pieces_done, 1);
    return 0;
}

static int
pieces_body(struct http_req *r, void *state, const void *data, size_t n)
{
    http_req_body_offload(r, data, n, piece_work, piece_done);
    return 0;
}

static void
pieces_complete(struct http_req *r, void *state)
{
    struct pstate *s = state;
    char out[160];
    md_final_hex(&s->md, out);
    int n = snprintf(out + 64, sizeof(out) - 64, " pool=%d bad=%d", atomic_load(&s->pooled),
                     atomic_load(&s->bad));
    http_reply(r, 200, "text/plain", out, 64 + (size_t)n);
}

static void
pieces_abort(struct http_req *r, void *state)
{
    struct pstate *s = state;
    /* every piece has come back: nothing runs on s any more */
    if (atomic_load(&s->running) != 0)
        atomic_fetch_add(&n_twice, 1);
    atomic_fetch_add(&n_abort, 1);
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
}

static void
app_dispatch(struct http_req *r, void *wctx)
{
    const char *p = http_req_path(r);
    struct wstate *s = http_req_alloc(r, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->worker = pthread_self();
    struct err e;
    if (strcmp(p, "/wait") == 0 || strcmp(p, "/waitbody") == 0) {
        cr_assert_eq(http_req_suspend(r), 0);
        cr_assert_neq(http_req_suspend(r), 0); /* already waiting */
        remember(r, p[5] ? waitbody_resumed : wait_resumed, s);
    } else if (strcmp(p, "/waitdone") == 0) {
        http_req_collect_body(r, 1 << 20, waitdone_complete, s);
    } else if (strcmp(p, "/offload") == 0) {
        if (http_req_offload(r, pool, offload_work, offload_done, s, &e) < 0)
            http_reply_error(r, &e);
    } else if (strcmp(p, "/pieces") == 0) {
        struct pstate *ps = http_req_alloc(r, sizeof(*ps));
        memset(ps, 0, sizeof(*ps));
        ps->worker = pthread_self();
        ps->gate = http_req_query(r, "gate") != NULL;
        ps->md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(ps->md, EVP_sha256(), NULL);
        cr_assert_eq(http_req_body_pooled(r), 0);
        http_req_body_pool(r, pool);
        cr_assert_eq(http_req_body_pooled(r), 1);
        http_req_on_body(r, pieces_body, pieces_complete, pieces_abort, ps);
    } else if (strcmp(p, "/fast") == 0) {
        http_reply(r, 200, "text/plain", "fast", 4);
    } else {
        http_reply_errorf(r, ERR_NOT_FOUND, "no route");
    }
}

/* resume every remembered request from this (the test's) thread; the
 * second resume of each is ignored by the layer */
static void
resume_all(int twice)
{
    pthread_mutex_lock(&wmu);
    for (int i = 0; i < nwaiting; i++) {
        http_req_resume(waiting[i].r, waiting[i].fn, waiting[i].s);
        if (twice)
            http_req_resume(waiting[i].r, waiting[i].fn, waiting[i].s);
    }
    nwaiting = 0;
    pthread_mutex_unlock(&wmu);
}

/* ---- the server in a thread ---- */

static struct http_server *srv;
static pthread_t srv_thread;
static int srv_port;
static int srv_joined;
static size_t srv_body_buffer; /* 0: the layer's default */
static int srv_drain_ms;        /* 0: the layer's default */

static void *
srv_main(void *arg)
{
    struct err e = {0};
    if (http_server_run(srv, &e) < 0)
        fprintf(stderr, "http_server_run: %s\n", e.msg);
    return NULL;
}

static void
start_server(int pool_threads, unsigned queue)
{
    signal(SIGPIPE, SIG_IGN);
    log_setup(LOG_ERROR, 0, 2);
    atomic_store(&n_resumed, 0);
    atomic_store(&n_dead, 0);
    atomic_store(&n_abort, 0);
    atomic_store(&n_twice, 0);
    atomic_store(&n_pieces_worked, 0);
    atomic_store(&n_pieces_done, 0);
    nwaiting = 0;
    gate_open = 0;
    n_work_started = 0;
    struct err e = {0};
    struct pool_opts po = {.name = "test", .threads = pool_threads, .queue_max = queue};
    pool = pool_new(&po, &e);
    cr_assert_not_null(pool, "pool_new: %s", e.msg);
    struct http_app app = {
        .dispatch = app_dispatch, .error = reply_error_render, .headers = REPLY_HEADERS};
    /* one worker: every connection shares its event loop */
    struct http_server_opts o = {
        .listen = "127.0.0.1:0",
        .workers = 1,
        .body_buffer = srv_body_buffer,
        .drain_timeout_ms = srv_drain_ms};
    srv = http_server_new(&o, &app, &e);
    cr_assert_not_null(srv, "http_server_new: %s", e.msg);
    srv_port = atoi(strrchr(http_server_address(srv), ':') + 1);
    cr_assert_eq(pthread_create(&srv_thread, NULL, srv_main, NULL), 0);
}

static void
open_gate(void)
{
    pthread_mutex_lock(&gmu);
    gate_open = 1;
    pthread_cond_broadcast(&gcv);
    pthread_mutex_unlock(&gmu);
}

static void resume_all(int twice);

static void
stop_server(void)
{
    open_gate();
    resume_all(0); /* a failed test's leftovers: the worker waits for them */
    if (!srv_joined) {
        http_server_stop(srv);
        pthread_join(srv_thread, NULL);
    }
    srv_joined = 0;
    pool_free(pool);
    pool = NULL;
    http_server_free(srv);
    srv = NULL;
    libevent_global_shutdown();
}

/* wait (by condition, bounded) until cond() holds */
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        for (int i_ = 0; i_ < 2000 && !(cond); i_++)                                               \
            usleep(5000);                                                                          \
        cr_assert(cond, "timed out waiting for " #cond);                                           \
    } while (0)

/* ---- a raw client ---- */

struct tc {
    int fd;
    char buf[1 << 16];
    size_t len;
};

static void
tc_open(struct tc *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void
tc_close(struct tc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* close with RST instead of FIN */
static void
tc_reset(struct tc *c)
{
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    tc_close(c);
}

static void
tc_sends(struct tc *c, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        cr_assert(w > 0, "send: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
    }
}

/* one response: status, body copied to body (cap bytes); -1 on EOF/timeout */
static int
tc_read(struct tc *c, char *body, size_t cap)
{
    for (;;) {
        c->buf[c->len] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (end) {
            size_t hl = (size_t)(end - c->buf) + 4;
            char *p = strcasestr(c->buf, "\r\nContent-Length:");
            size_t cl = p && p < end ? strtoul(p + 17, NULL, 10) : 0;
            if (c->len >= hl + cl) {
                int status = atoi(c->buf + 9);
                size_t k = cl < cap - 1 ? cl : cap - 1;
                memcpy(body, c->buf + hl, k);
                body[k] = '\0';
                memmove(c->buf, c->buf + hl + cl, c->len - hl - cl);
                c->len -= hl + cl;
                return status;
            }
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0)
            return -1;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
        if (n <= 0)
            return -1;
        c->len += (size_t)n;
    }
}

/* nothing has arrived (and nothing is kept unread) */
static int
tc_quiet(struct tc *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    return c->len == 0 && n < 0 && errno == EAGAIN;
}

/* a request on a fresh connection answered: the worker has gone round its loop */
static void
roundtrip(void)
{
    struct tc c;
    char body[64];
    tc_open(&c);
    tc_sends(&c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(tc_read(&c, body, sizeof(body)), 200);
    cr_assert_str_eq(body, "fast");
    tc_close(&c);
}

/* ---- tests ---- */

TestSuite(http_async, .fini = stop_server, .timeout = 60);

Test(http_async, suspended_requests_resume_from_another_thread)
{
    start_server(1, 16);
    enum { N = 8 };
    struct tc c[N];
    char body[256];
    for (int i = 0; i < N; i++) {
        tc_open(&c[i]);
        /* a pipelined request behind each: it waits its turn */
        tc_sends(&c[i], "GET /wait HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    WAIT_FOR(waiting_count() == N);
    cr_assert_eq(http_server_suspended(srv), N);
    roundtrip(); /* the worker serves others meanwhile */
    for (int i = 0; i < N; i++)
        cr_assert(tc_quiet(&c[i]), "client %d got a reply before the resumption", i);
    resume_all(1); /* from this thread, each twice: the second is ignored */
    for (int i = 0; i < N; i++) {
        cr_assert_eq(tc_read(&c[i], body, sizeof(body)), 200);
        cr_assert_str_eq(body, "resumed");
        cr_assert_eq(tc_read(&c[i], body, sizeof(body)), 200);
        cr_assert_str_eq(body, "fast");
    }
    roundtrip();
    for (int i = 0; i < N; i++) {
        cr_assert(tc_quiet(&c[i]), "client %d got a second reply", i);
        tc_close(&c[i]);
    }
    cr_assert_eq(atomic_load(&n_resumed), N);
    cr_assert_eq(atomic_load(&n_dead), 0);
    cr_assert_eq(atomic_load(&n_twice), 0);
    cr_assert_eq(http_server_suspended(srv), 0);
}

Test(http_async, resumption_accepts_the_body_and_on_complete_may_wait)
{
    start_server(1, 16);
    struct tc c;
    char body[256];
    tc_open(&c);
    /* the body's first bytes come with the headers; 100-continue is sent only
     * once the resumption accepted it */
    tc_sends(&c, "PUT /waitbody HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    WAIT_FOR(waiting_count() == 1);
    resume_all(0);
    cr_assert_eq(tc_read(&c, body, sizeof(body)), 200);
    cr_assert_str_eq(body, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    tc_sends(&c, "PUT /waitbody HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 "Expect: 100-continue\r\n\r\n");
    WAIT_FOR(waiting_count() == 1);
    roundtrip();
    cr_assert(tc_quiet(&c), "100 Continue before the body was accepted");
    resume_all(0);
    cr_assert_eq(tc_read(&c, body, sizeof(body)), 100);
    tc_sends(&c, "abc");
    cr_assert_eq(tc_read(&c, body, sizeof(body)), 200);
    cr_assert_str_eq(body, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* a large body read after a resumption, on the same connection: the watch
     * of the wait must not leave the descriptor edge-triggered (the reads of
     * the body stalled after the second wait of a keep-alive connection) */
    for (int k = 0; k < 2; k++) {
        enum { BIG = 4 << 20 };
        char head[160];
        snprintf(head, sizeof(head), "PUT /waitbody HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
                 BIG);
        tc_sends(&c, head);
        WAIT_FOR(waiting_count() == 1);
        resume_all(0);
        char *big = malloc(BIG + 1);
        memset(big, 'z', BIG);
        big[BIG] = '\0';
        tc_sends(&c, big);
        free(big);
        cr_assert_eq(tc_read(&c, body, sizeof(body)), 200, "large body after wait %d", k);
        cr_assert_eq(strlen(body), 64);
    }
    /* on_complete suspends; the resumption replies the collected body */
    tc_sends(&c, "POST /waitdone HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                 "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT_FOR(waiting_count() == 1);
    roundtrip();
    cr_assert(tc_quiet(&c));
    resume_all(0);
    cr_assert_eq(tc_read(&c, body, sizeof(body)), 200);
    cr_assert_str_eq(body, "hello");
    cr_assert_eq(tc_read(&c, body, sizeof(body)), 200);
    cr_assert_str_eq(body, "fast");
    tc_close(&c);
    cr_assert_eq(atomic_load(&n_abort), 0);
}

Test(http_async, clients_killed_while_waiting_are_cleaned_up_once)
{
    start_server(1, 16);
    enum { N = 12 };
    struct tc c[N];
    char body[256];
    for (int i = 0; i < N; i++) {
        tc_open(&c[i]);
        tc_sends(&c[i], i % 3 == 2 ? "PUT /waitbody HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nxx"
                                   : "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    WAIT_FOR(waiting_count() == N);
    /* half of them go away, by FIN or by RST */
    int killed = 0;
    for (int i = 0; i < N; i += 2) {
        if (i % 4 == 0)
            tc_close(&c[i]);
        else
            tc_reset(&c[i]);
        killed++;
    }
    /* the worker notices while they wait: their sockets close, the requests stay */
    WAIT_FOR(http_server_zombies(srv) == (unsigned long)killed);
    cr_assert_eq(http_server_suspended(srv), N);
    resume_all(0);
    WAIT_FOR(atomic_load(&n_resumed) == N);
    WAIT_FOR(http_server_zombies(srv) == 0);
    cr_assert_eq(atomic_load(&n_dead), killed);
    cr_assert_eq(atomic_load(&n_twice), 0);
    /* no body was accepted by a dead one: no on_abort owed */
    cr_assert_eq(atomic_load(&n_abort), 0);
    for (int i = 1; i < N; i += 2) {
        if (i % 3 == 2) {
            /* the live /waitbody ones are reading their body now: cut them */
            tc_close(&c[i]);
            continue;
        }
        cr_assert_eq(tc_read(&c[i], body, sizeof(body)), 200);
        cr_assert_str_eq(body, "resumed");
        tc_sends(&c[i], "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
        cr_assert_eq(tc_read(&c[i], body, sizeof(body)), 200);
        cr_assert_str_eq(body, "fast"); /* exactly one reply before it */
        tc_close(&c[i]);
    }
    /* the cut body readers end with on_abort, once each */
    WAIT_FOR(atomic_load(&n_abort) == 2);
    roundtrip();
    cr_assert_eq(atomic_load(&n_abort), 2);
}

Test(http_async, stop_waits_for_suspended_requests)
{
    start_server(1, 16);
    struct tc a, b;
    char body[256];
    tc_open(&a);
    tc_open(&b);
    tc_sends(&a, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    tc_sends(&b, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT_FOR(waiting_count() == 2);
    tc_reset(&b);
    WAIT_FOR(http_server_zombies(srv) == 1);
    http_server_stop(srv);
    /* the live one is answered (Connection: close) once resumed, then the
     * worker ends; the dead one is freed after its resumption */
    resume_all(0);
    cr_assert_eq(tc_read(&a, body, sizeof(body)), 200);
    cr_assert_str_eq(body, "resumed");
    pthread_join(srv_thread, NULL);
    srv_joined = 1;
    cr_assert_eq(atomic_load(&n_resumed), 2);
    cr_assert_eq(atomic_load(&n_dead), 1);
    tc_close(&a);
}

Test(http_async, offloaded_work_runs_on_the_pool_and_the_worker_serves_on)
{
    start_server(1, 1);
    struct tc a, b, c;
    char body[256];
    tc_open(&a);
    tc_sends(&a, "GET /offload HTTP/1.1\r\nHost: x\r\n\r\n");
    pthread_mutex_lock(&gmu);
    while (n_work_started < 1)
        pthread_cond_wait(&gcv, &gmu);
    pthread_mutex_unlock(&gmu);
    /* the pool's one thread is held by the gate: the worker serves on */
    roundtrip();
    cr_assert(tc_quiet(&a));
    /* one more waits in the queue (of 1); the next is refused: 503 */
    tc_open(&b);
    tc_sends(&b, "GET /offload HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT_FOR(http_server_suspended(srv) == 2);
    tc_open(&c);
    tc_sends(&c, "GET /offload HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(tc_read(&c, body, sizeof(body)), 503);
    cr_assert(strstr(body, "TOOMANYREQUESTS"), "%s", body);
    open_gate();
    cr_assert_eq(tc_read(&a, body, sizeof(body)), 200);
    cr_assert_str_eq(body, "pool=1");
    cr_assert_eq(tc_read(&b, body, sizeof(body)), 200);
    cr_assert_str_eq(body, "pool=1");
    cr_assert_eq(pool_jobs_done(pool), 2);
    tc_close(&a);
    tc_close(&b);
    tc_close(&c);
}

/* ---- body pieces on a pool (http_req_body_offload) ---- */

#define PIECE_BUF (64 * 1024)

/* a body sent from a thread of its own (it blocks while the server holds
 * back: backpressure); the reply is read by the test */
struct sender {
    pthread_t t;
    int fd;
    const char *p;
    size_t n;
    int err;
};

static void *
sender_main(void *arg)
{
    struct sender *sd = arg;
    size_t off = 0;
    while (off < sd->n) {
        ssize_t w = send(sd->fd, sd->p + off, sd->n - off, MSG_NOSIGNAL);
        if (w <= 0) {
            sd->err = errno ? errno : EIO;
            return NULL;
        }
        off += (size_t)w;
    }
    return NULL;
}

static void
send_async(struct sender *sd, struct tc *c, const char *p, size_t n)
{
    memset(sd, 0, sizeof(*sd));
    sd->fd = c->fd;
    sd->p = p;
    sd->n = n;
    cr_assert_eq(pthread_create(&sd->t, NULL, sender_main, sd), 0);
}

static void
sha256_hex(const void *p, size_t n, char out[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, p, n);
    md_final_hex(&md, out);
}

static char *
pattern_body(size_t n, unsigned seed)
{
    char *b = malloc(n);
    cr_assert_not_null(b);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (char)(x >> 16);
    }
    return b;
}

/* the reply of /pieces: the hash matches, nothing overlapped; returns pool= */
static int
expect_pieces_reply(struct tc *c, const char *body, size_t n)
{
    char got[256], want[65];
    cr_assert_eq(tc_read(c, got, sizeof(got)), 200);
    sha256_hex(body, n, want);
    cr_assert(strncmp(got, want, 64) == 0, "hash %.64s, want %s", got, want);
    const char *bad = strstr(got, "bad=");
    cr_assert(bad && atoi(bad + 4) == 0, "%s", got);
    const char *pl = strstr(got, "pool=");
    cr_assert_not_null(pl);
    return atoi(pl + 5);
}

static void
wait_work_started(int n)
{
    pthread_mutex_lock(&gmu);
    while (n_work_started < n)
        pthread_cond_wait(&gcv, &gmu);
    pthread_mutex_unlock(&gmu);
}

Test(http_async, body_pieces_are_worked_on_the_pool_in_order_while_the_worker_serves_on)
{
    srv_body_buffer = PIECE_BUF;
    start_server(4, 64); /* four threads: the order is the layer's doing */
    enum { BIG = 4 << 20 };
    char *body = pattern_body(BIG, 1);
    struct tc a;
    struct sender sd;
    char head[160];
    tc_open(&a);
    snprintf(head, sizeof(head), "PUT /pieces?gate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
             BIG);
    tc_sends(&a, head);
    send_async(&sd, &a, body, BIG);
    wait_work_started(1); /* a piece waits at the gate on a pool thread */
    /* the worker serves on, and holds at most the request's buffers: one piece
     * per receive buffer (HTTP_RBUFS_PER_REQ of them) besides the bytes that
     * came with the headers, however much the client has sent */
    WAIT_FOR(http_server_pooled_pieces(srv) == 4);
    roundtrip();
    roundtrip();
    cr_assert_eq(http_server_pooled_pieces(srv), 4, "reading went on while every buffer was held");
    cr_assert(tc_quiet(&a));
    open_gate();
    int pooled = expect_pieces_reply(&a, body, BIG);
    pthread_join(sd.t, NULL);
    cr_assert_eq(sd.err, 0);
    cr_assert_geq(pooled, BIG / PIECE_BUF / 2, "only %d pieces worked on the pool", pooled);
    cr_assert_eq(atomic_load(&n_pieces_done), atomic_load(&n_pieces_worked));

    /* a chunked body of small chunks: many pieces per receive, and those that
     * arrive while a job runs go to the pool together as the next job */
    enum { CH = 1000, NCH = 2048 };
    char *chunked = malloc((size_t)NCH * (CH + 16) + 16);
    size_t cl = 0;
    for (int i = 0; i < NCH; i++) {
        cl += (size_t)snprintf(chunked + cl, 16, "%x\r\n", CH);
        memcpy(chunked + cl, body + (size_t)i * CH, CH);
        cl += CH;
        memcpy(chunked + cl, "\r\n", 2);
        cl += 2;
    }
    memcpy(chunked + cl, "0\r\n\r\n", 5);
    cl += 5;
    unsigned long jobs0 = pool_jobs_done(pool), pieces0 = http_server_pooled_pieces(srv);
    tc_sends(&a, "PUT /pieces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    send_async(&sd, &a, chunked, cl);
    expect_pieces_reply(&a, body, (size_t)NCH * CH);
    pthread_join(sd.t, NULL);
    cr_assert_eq(sd.err, 0);
    unsigned long jobs = pool_jobs_done(pool) - jobs0;
    unsigned long pieces = http_server_pooled_pieces(srv) - pieces0;
    cr_log_info("chunked: %lu pieces in %lu pool jobs", pieces, jobs);
    cr_assert_geq(pieces, NCH);
    cr_assert_lt(jobs * 4, pieces, "%lu pieces in %lu jobs: not batched", pieces, jobs);
    roundtrip();
    cr_assert_eq(atomic_load(&n_pieces_done), atomic_load(&n_pieces_worked));
    cr_assert_eq(atomic_load(&n_abort), 0);
    tc_close(&a);
    free(chunked);
    free(body);
}

Test(http_async, clients_killed_while_their_pieces_wait_are_cleaned_up_once)
{
    srv_body_buffer = PIECE_BUF;
    start_server(2, 64);
    enum { N = 4, PART = 300 * 1024 };
    char *body = pattern_body(PART, 2);
    struct tc c[N];
    for (int i = 0; i < N; i++) {
        tc_open(&c[i]);
        tc_sends(&c[i], "PUT /pieces?gate HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
        struct sender sd;
        send_async(&sd, &c[i], body, PART);
        pthread_join(sd.t, NULL); /* fits in the socket buffers */
        cr_assert_eq(sd.err, 0);
    }
    /* two pieces wait at the gate on the pool's two threads, the other two
     * requests' jobs wait in its queue */
    wait_work_started(2);
    WAIT_FOR(pool_queued(pool) == N - 2);
    for (int i = 0; i < N; i++) {
        if (i % 2)
            tc_close(&c[i]);
        else
            tc_reset(&c[i]);
    }
    /* (their connections are not read while every buffer is held: the deaths
     * are found when the pieces have come back and reading goes on) */
    roundtrip();
    cr_assert_eq(atomic_load(&n_abort), 0, "on_abort while pieces were out");
    open_gate();
    WAIT_FOR(http_server_zombies(srv) == 0);
    WAIT_FOR(atomic_load(&n_abort) == N);
    cr_assert_eq(atomic_load(&n_twice), 0, "on_abort while a piece was being worked");
    cr_assert_eq(atomic_load(&n_pieces_done), atomic_load(&n_pieces_worked));
    roundtrip();
    cr_assert_eq(atomic_load(&n_abort), N);
    free(body);
}

Test(http_async, stop_waits_for_pieces_on_the_pool)
{
    srv_body_buffer = PIECE_BUF;
    srv_drain_ms = 50;
    start_server(1, 16);
    enum { PART = 200 * 1024 };
    char *body = pattern_body(PART, 3);
    struct tc a;
    tc_open(&a);
    tc_sends(&a, "PUT /pieces?gate HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
    struct sender sd;
    send_async(&sd, &a, body, PART);
    pthread_join(sd.t, NULL);
    wait_work_started(1);
    /* the drain time ends with the body unfinished: the connection is cut,
     * its request stays (a zombie) while its pieces are out, and the worker
     * must not end before they came back */
    http_server_stop(srv);
    WAIT_FOR(http_server_zombies(srv) == 1);
    cr_assert_eq(atomic_load(&n_abort), 0);
    open_gate();
    pthread_join(srv_thread, NULL);
    srv_joined = 1;
    cr_assert_eq(atomic_load(&n_abort), 1, "the request did not end before the worker");
    cr_assert_eq(atomic_load(&n_pieces_done), atomic_load(&n_pieces_worked));
    tc_close(&a);
    free(body);
}

Test(http_async, pieces_the_pool_refuses_are_worked_on_the_worker)
{
    srv_body_buffer = PIECE_BUF;
    start_server(1, 1); /* one thread, a queue of one */
    enum { N = 512 * 1024 };
    char *body = pattern_body(N, 4);
    struct tc a, b, c;
    struct sender sa, sb, sc;
    char head[160];
    snprintf(head, sizeof(head), "PUT /pieces?gate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", N);
    tc_open(&a);
    tc_sends(&a, head);
    send_async(&sa, &a, body, N);
    wait_work_started(1); /* a's first job holds the thread */
    tc_open(&b);
    tc_sends(&b, head);
    send_async(&sb, &b, body, N);
    WAIT_FOR(pool_queued(pool) == 1); /* b's job fills the queue */
    /* c's jobs are refused: worked at once on the worker, in order */
    tc_open(&c);
    snprintf(head, sizeof(head), "PUT /pieces HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", N);
    tc_sends(&c, head);
    send_async(&sc, &c, body, N);
    cr_assert_eq(expect_pieces_reply(&c, body, N), 0);
    pthread_join(sc.t, NULL);
    open_gate();
    cr_assert_gt(expect_pieces_reply(&a, body, N), 0);
    cr_assert_gt(expect_pieces_reply(&b, body, N), 0);
    pthread_join(sa.t, NULL);
    pthread_join(sb.t, NULL);
    cr_assert_eq(sa.err + sb.err + sc.err, 0);
    cr_assert_eq(atomic_load(&n_pieces_done), atomic_load(&n_pieces_worked));
    tc_close(&a);
    tc_close(&b);
    tc_close(&c);
    free(body);
}
