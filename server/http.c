/* http.c - the server: listening sockets, worker threads, accept, stop.
 *
 * Every worker owns one event_base (no locks: nothing crosses threads but the
 * connection counter and the stop eventfds) and one listening socket of a
 * SO_REUSEPORT group bound in http_server_new, so the kernel spreads new
 * connections over the workers and a port 0 resolves once.
 *
 * Stop (http_server_stop, async-signal-safe): a write to each worker's eventfd.
 * The worker stops accepting, closes idle connections, lets requests in progress
 * finish with Connection: close, and ends when it has no connection left (or after
 * the drain timeout, when the rest is cut).
 *
 * Limits that change live (http_server_set_limits: timeouts, max_connections,
 * the drain timeout) are ints of s->o written and read with atomic builtins: a
 * reader takes the old or the new value, never a torn one. */
#include "server/http.h"

#include "server/http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pool.h"

#include "common/banned.h"

#define HTTP_DRAIN_MS_DEFAULT 30000
#define ACCEPT_BATCH 64
/* out of descriptors: stop accepting for this long (the pending connection stays
 * in the backlog and keeps the listening socket readable: without a pause the
 * event loop would spin on it) */
#define ACCEPT_PAUSE_MS 100
/* at most one "out of file descriptors" line per this many ms and worker */
#define EMFILE_LOG_MS 5000
/* descriptors kept free of connections when max_connections is clamped to the
 * open-file limit: stdio, log, the database and its WAL per storage handle, and
 * per worker its listening socket, eventfds, epoll and io_uring descriptors */
#define FD_RESERVE_BASE 16
#define FD_RESERVE_PER_WORKER 8

static void
opts_defaults(struct http_server_opts *o)
{
    if (!o->listen || !*o->listen)
        o->listen = "127.0.0.1:5000";
    if (o->workers <= 0) {
        /* One event loop per core. Eight per core paid when a worker blocked
         * in fsync for every upload commit and manifest PUT; those run on the
         * blocking-work pool now, and upload bodies are hashed and written on
         * the upload pool, so nothing CPU-long or disk-long stays on a loop.
         * Measured on 2 cores (docs/server.md, "Threads and sockets"): with 16
         * busy loops the scheduler rotates them, and a preempted loop (with
         * all its connections) waited up to 43 ms for the others' slices;
         * manifest GETs beside 4 x 1 GiB pushes had a max of 58-68 ms with 16
         * or 4 loops, 18-34 ms with 2. Small requests cost less CPU each too
         * (more events per epoll_wait wake-up). */
        o->workers = pool_per_core(1, 1, 64);
    }
    if (o->workers > 256)
        o->workers = 256;
    if (o->header_max == 0)
        o->header_max = 16384;
    if (o->header_max < 256)
        o->header_max = 256;
    if (o->body_buffer == 0)
        o->body_buffer = 1048576; /* 4x fewer recv/pwrite/epoll_wait per MB than 256 KiB */
    if (o->body_buffer < 4096)
        o->body_buffer = 4096;
    if (o->header_timeout_ms <= 0)
        o->header_timeout_ms = 10000;
    if (o->idle_timeout_ms <= 0)
        o->idle_timeout_ms = 60000;
    if (o->body_timeout_ms <= 0)
        o->body_timeout_ms = 60000;
    if (o->max_connections <= 0)
        o->max_connections = 10000;
    if (o->drain_timeout_ms <= 0)
        o->drain_timeout_ms = HTTP_DRAIN_MS_DEFAULT;
}

/* A connection needs at least its socket: more connections than free descriptors
 * would end in EMFILE on accept (and on open for the blob it asks for). */
static void
clamp_max_connections(struct http_server_opts *o, int workers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    long reserve = FD_RESERVE_BASE + (long)FD_RESERVE_PER_WORKER * workers;
    long room = (long)rl.rlim_cur - reserve;
    if (room < 1)
        room = 1;
    if (o->max_connections > room) {
        log_warn("http", NULL,
                 "max_connections lowered from %d to %ld: open-file limit %llu, %ld kept in reserve",
                 o->max_connections, room, (unsigned long long)rl.rlim_cur, reserve);
        o->max_connections = (int)room;
    }
}

/* split "host:port" / "[v6]:port" / ":port"; host "" means every interface */
static int
split_listen(const char *s, char *host, size_t hcap, char *port, size_t pcap, struct err *e)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return err_set(e, ERR_CONFIG, 0, "listen address '%s': expected [ipv6]:port", s);
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return err_set(e, ERR_CONFIG, 0, "listen address '%s': expected host:port", s);
        hl = (size_t)(colon - s);
    }
    if (hl >= hcap || strlen(colon + 1) >= pcap || !colon[1])
        return err_set(e, ERR_CONFIG, 0, "listen address '%s': invalid", s);
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return err_set(e, ERR_CONFIG, 0, "listen address '%s': invalid port", s);
    return 0;
}

static int
listen_socket(const struct sockaddr *sa, socklen_t salen, struct err *e)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        err_sys(e, ERR_IO, errno, "setsockopt SO_REUSEPORT");
        close(fd);
        return -1;
    }
    /* inherited by accepted sockets on Linux: replies are single writes, never
     * worth Nagle's delay */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, sa, salen) < 0) {
        err_sys(e, ERR_IO, errno, "bind");
        close(fd);
        return -1;
    }
    if (listen(fd, 4096) < 0) {
        err_sys(e, ERR_IO, errno, "listen");
        close(fd);
        return -1;
    }
    return fd;
}

/* SO_REUSEPORT would let us share a port with another process of the same user
 * (a second ocireg, silently taking half the connections): bind once without it
 * first, so a port in use is an error. */
static int
probe_in_use(const struct sockaddr *sa, socklen_t salen, struct err *e)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = bind(fd, sa, salen);
    int se = errno;
    close(fd);
    if (rc < 0)
        return err_sys(e, ERR_IO, se, "bind");
    return 0;
}

struct http_server *
http_server_new(const struct http_server_opts *opts, const struct http_app *app, struct err *e)
{
    struct http_server *s = calloc(1, sizeof(*s));
    struct addrinfo *ai = NULL;
    if (!s) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    s->o = *opts;
    if (!app->dispatch || !app->error) {
        free(s);
        err_set(e, ERR_CONFIG, 0, "http app without dispatch or error callback");
        return NULL;
    }
    opts_defaults(&s->o);
    clamp_max_connections(&s->o, s->o.workers);
    s->listen = strdup(s->o.listen);
    if (!s->listen)
        abort();
    s->o.listen = s->listen;
    s->app = *app;
    s->app_headers_len = app->headers ? strlen(app->headers) : 0;
    s->transport = s->o.decline_zero_copy ? &http_transport_plain_copy : &http_transport_plain;
    if (s->o.tls) {
        s->transport = &http_transport_tls;
        s->transport_arg = s->o.tls;
    }
    if (s->o.transport) {
        s->transport = s->o.transport;
        s->transport_arg = NULL;
    }
    s->nworkers = s->o.workers;
    atomic_init(&s->nconns, 0);
    atomic_init(&s->refused, 0);
    {
        /* made request ids differ between runs, so ids in kept logs and in
         * webhook consumers stay unique across restarts */
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
            rnd = (uint32_t)getpid() ^ (uint32_t)time(NULL);
        snprintf(s->id_prefix, sizeof(s->id_prefix), "%08x", rnd);
    }
    atomic_init(&s->stop, 0);
    s->workers = calloc((size_t)s->nworkers, sizeof(*s->workers));
    if (!s->workers)
        abort();
    for (int i = 0; i < s->nworkers; i++) {
        s->workers[i].listen_fd = -1;
        s->workers[i].stop_fd = -1;
        s->workers[i].resume_fd = -1;
    }

    char host[256], port[16];
    if (split_listen(s->listen, host, sizeof(host), port, sizeof(port), e) < 0)
        goto fail;
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
    if (gai != 0) {
        err_set(e, ERR_CONFIG, 0, "listen address '%s': %s", s->listen, gai_strerror(gai));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = (socklen_t)ai->ai_addrlen;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (strcmp(port, "0") != 0 && probe_in_use((struct sockaddr *)&ss, sslen, e) < 0)
        goto fail;
    for (int i = 0; i < s->nworkers; i++) {
        int fd = listen_socket((struct sockaddr *)&ss, sslen, e);
        if (fd < 0)
            goto fail;
        s->workers[i].listen_fd = fd;
        if (i == 0) {
            /* port 0: every other socket of the group binds the port just chosen */
            socklen_t l = sizeof(ss);
            if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0) {
                err_sys(e, ERR_IO, errno, "getsockname");
                goto fail;
            }
            sslen = l;
        }
    }
    char ip[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof(ip));
        snprintf(s->addr, sizeof(s->addr), "[%s]:%u", ip, ntohs(a6->sin6_port));
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof(ip));
        snprintf(s->addr, sizeof(s->addr), "%s:%u", ip, ntohs(a4->sin_port));
    }
    freeaddrinfo(ai);
    ai = NULL;

    for (int i = 0; i < s->nworkers; i++) {
        struct http_worker *w = &s->workers[i];
        w->srv = s;
        w->index = i;
        w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->stop_fd < 0) {
            err_sys(e, ERR_IO, errno, "eventfd");
            goto fail;
        }
    }

    /* auto = sendfile and pwrite. Measured with regbench on the 2-core build
     * machine (docs/server.md): io_uring splice cost 1.3-2x the server CPU per GB
     * of sendfile (page-cache-hot blobs; io-wq hand-offs); io_uring upload writes
     * (IORING_OP_WRITE on io-wq, overlapping the next receive and hash) gave the
     * same push throughput as pwrite for ~15-25 % more server CPU per GB (one
     * io-wq wake-up and completion per MiB; the copy into the page cache costs
     * the same on either thread). `io = uring` keeps both for storage where the
     * event loop would block on the disk (cold reads, dirty-page throttling). */
    int want_files = s->o.io == HTTP_IO_URING;
    int want_writes = s->o.io == HTTP_IO_URING;
    const char *ioname = s->o.io == HTTP_IO_URING   ? "uring"
                         : s->o.io == HTTP_IO_POSIX ? "posix"
                                                    : "auto";
    char why[160] = "";
    int have = (want_files || want_writes) && http_uring_probe(why, sizeof(why));
    s->use_uring = want_files && have;
    s->upload_uring = want_writes && have;
    if (s->o.tls)
        /* the transport decides per connection: SSL_sendfile or the copy */
        log_info("http", NULL, "file replies: through TLS (logged at the first connection)");
    else if (s->use_uring)
        log_info("http", NULL, "file replies: io_uring splice (io = %s)", ioname);
    else if (want_files)
        /* ENOSYS, EPERM (seccomp, container policy), io_uring_disabled */
        log_warn("http", NULL, "file replies: sendfile (io = uring, but io_uring is unavailable: %s)",
                 why);
    else
        log_info("http", NULL, "file replies: sendfile (io = %s)", ioname);
    if (s->upload_uring)
        log_info("http", NULL, "upload writes: io_uring (io = %s)", ioname);
    else if (want_writes)
        log_warn("http", NULL, "upload writes: pwrite (io = %s, but io_uring is unavailable: %s)",
                 ioname, why);
    else
        log_info("http", NULL, "upload writes: pwrite (io = %s)", ioname);

    /* the parser's own header limit must not be the smaller one (process-wide) */
    if (s->o.header_max + 1024 > 80 * 1024)
        http_parser_set_max_header_size((uint32_t)(s->o.header_max + 1024));

    /* the 503 over max_connections, rendered once by the app */
    struct err oe;
    err_set(&oe, ERR_OVERLOADED, 0, "too many connections");
    char body[200];
    size_t bl = 0;
    const char *ct = NULL;
    int rs = s->app.error(s->app.arg, &oe, body, sizeof(body), &bl, &ct);
    if (bl > sizeof(body))
        bl = sizeof(body);
    int hl = snprintf(s->reject_head, sizeof(s->reject_head),
                      "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s%s%s%sRetry-After: 1\r\n"
                      "Connection: close\r\n",
                      rs, http_status_reason(rs), bl, ct ? "Content-Type: " : "", ct ? ct : "",
                      ct ? "\r\n" : "", s->app.headers ? s->app.headers : "");
    if (hl < 0 || (size_t)hl >= sizeof(s->reject_head)) {
        err_set(e, ERR_CONFIG, 0, "http app headers too long");
        goto fail;
    }
    snprintf(s->reject_tail, sizeof(s->reject_tail), "\r\n%.*s", (int)bl, body);

    /* a peer that resets while we send must be an EPIPE, not a signal */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    return s;

fail:
    if (ai)
        freeaddrinfo(ai);
    http_server_free(s);
    return NULL;
}

unsigned long
http_server_connections(const struct http_server *s)
{
    int n = atomic_load_explicit(&((struct http_server *)s)->nconns, memory_order_relaxed);
    return n > 0 ? (unsigned long)n : 0;
}

unsigned long
http_server_refused(const struct http_server *s)
{
    return atomic_load_explicit(&((struct http_server *)s)->refused, memory_order_relaxed);
}

const char *
http_server_address(const struct http_server *s)
{
    return s->addr;
}

const char *
http_server_io_name(const struct http_server *s)
{
    return s->use_uring ? "uring" : "posix";
}

const char *
http_server_upload_io_name(const struct http_server *s)
{
    return s->upload_uring ? "uring" : "posix";
}

/* the test counters: one field of every worker, summed */
#define WORKER_SUM(s, field)                                                                       \
    ({                                                                                             \
        unsigned long n_ = 0;                                                                      \
        for (int i_ = 0; i_ < (s)->nworkers; i_++)                                                 \
            n_ += (unsigned long)atomic_load(&(s)->workers[i_].field);                             \
        n_;                                                                                        \
    })

unsigned long
http_server_uring_writes(const struct http_server *s)
{
    return WORKER_SUM(s, uring_writes);
}

unsigned long
http_server_pooled_pieces(const struct http_server *s)
{
    return WORKER_SUM(s, pieces_pooled);
}

unsigned long
http_server_overlapped_reads(const struct http_server *s)
{
    return WORKER_SUM(s, overlapped_reads);
}

unsigned long
http_server_files_with_headers(const struct http_server *s)
{
    return WORKER_SUM(s, files_with_headers);
}

unsigned long
http_server_file_copies(const struct http_server *s)
{
    return WORKER_SUM(s, file_copies);
}

unsigned long
http_server_suspended(const struct http_server *s)
{
    return WORKER_SUM(s, nsuspended);
}

unsigned long
http_server_stream_stalls(const struct http_server *s)
{
    return WORKER_SUM(s, stream_stalls);
}

unsigned long
http_server_zombies(const struct http_server *s)
{
    return WORKER_SUM(s, nzombies);
}

unsigned long
http_server_input_held_max(const struct http_server *s)
{
    unsigned long n = 0;
    for (int i = 0; i < s->nworkers; i++) {
        unsigned long v = atomic_load(&s->workers[i].held_max);
        if (v > n)
            n = v;
    }
    return n;
}

void
http_server_set_limits(struct http_server *s, const struct http_server_limits *l)
{
    struct http_server_opts o = {.max_connections = l->max_connections};
    if (o.max_connections > 0) {
        clamp_max_connections(&o, s->nworkers);
        __atomic_store_n(&s->o.max_connections, o.max_connections, __ATOMIC_RELAXED);
    }
    if (l->header_timeout_ms > 0)
        __atomic_store_n(&s->o.header_timeout_ms, l->header_timeout_ms, __ATOMIC_RELAXED);
    if (l->idle_timeout_ms > 0)
        __atomic_store_n(&s->o.idle_timeout_ms, l->idle_timeout_ms, __ATOMIC_RELAXED);
    if (l->body_timeout_ms > 0)
        __atomic_store_n(&s->o.body_timeout_ms, l->body_timeout_ms, __ATOMIC_RELAXED);
    if (l->drain_timeout_ms > 0)
        __atomic_store_n(&s->o.drain_timeout_ms, l->drain_timeout_ms, __ATOMIC_RELAXED);
}

void
http_server_stop(struct http_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    uint64_t one = 1;
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].stop_fd >= 0) {
            ssize_t rc = write(s->workers[i].stop_fd, &one, sizeof(one));
            (void)rc;
        }
}

void
http_server_free(struct http_server *s)
{
    if (!s)
        return;
    for (int i = 0; s->workers && i < s->nworkers; i++) {
        if (s->workers[i].listen_fd >= 0)
            close(s->workers[i].listen_fd);
        if (s->workers[i].stop_fd >= 0)
            close(s->workers[i].stop_fd);
    }
    free(s->workers);
    free(s->listen);
    free(s);
}

/* ---- workers ---- */

const char *
http_worker_date(struct http_worker *w)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof(w->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        w->date_sec = now;
    }
    return w->date;
}

void
http_worker_conn_gone(struct http_worker *w)
{
    if (w->stopping && w->nconns == 0)
        event_base_loopbreak(w->base);
}

/* push n on w's wake-up stack (any thread); the pusher that finds it empty
 * wakes the loop (a non-empty stack has its wake-up written already, and is
 * taken whole) */
static void
worker_wake_push(struct http_worker *w, struct http_wnode *n)
{
    struct http_wnode *head = __atomic_load_n(&w->wake_head, __ATOMIC_RELAXED);
    do {
        n->next = head;
    } while (!__atomic_compare_exchange_n(&w->wake_head, &head, n, 1, __ATOMIC_RELEASE,
                                          __ATOMIC_RELAXED));
    if (!head) {
        uint64_t one = 1;
        ssize_t rc = write(w->resume_fd, &one, sizeof(one));
        (void)rc; /* EAGAIN only when the counter is full: the loop is awake */
    }
}

void
http_worker_resume_push(struct http_worker *w, struct http_req *r)
{
    r->wake.kind = HTTP_WAKE_RESUME;
    worker_wake_push(w, &r->wake);
}

void
http_worker_pieces_push(struct http_worker *w, struct http_bwrite *first)
{
    first->wake.kind = HTTP_WAKE_PIECES;
    worker_wake_push(w, &first->wake);
}

/* run the resumptions and take back the jobs of body pieces queued so far,
 * oldest first */
static void
worker_wakes_run(struct http_worker *w)
{
    struct http_wnode *n = __atomic_exchange_n(&w->wake_head, NULL, __ATOMIC_ACQUIRE);
    struct http_wnode *fifo = NULL;
    while (n) {
        struct http_wnode *next = n->next;
        n->next = fifo;
        fifo = n;
        n = next;
    }
    while (fifo) {
        struct http_wnode *next = fifo->next;
        if (fifo->kind == HTTP_WAKE_RESUME)
            http_conn_resume_req(
                (struct http_req *)((char *)fifo - offsetof(struct http_req, wake)));
        else
            http_conn_pieces_done(
                (struct http_bwrite *)((char *)fifo - offsetof(struct http_bwrite, wake)));
        fifo = next;
    }
}

static void
worker_on_resume(evutil_socket_t fd, short what, void *arg)
{
    uint64_t v;
    ssize_t rc = read(fd, &v, sizeof(v));
    (void)rc;
    worker_wakes_run(arg);
}

/* At exit: the connections are gone, but requests that were suspended or
 * whose body pieces are on a pool stay (zombies) until their resumption ran
 * and their pieces came back; the work they wait for always ends (the pool
 * runs its queue to the end), so wait for it. */
static void
worker_resumes_drain(struct http_worker *w)
{
    while (atomic_load(&w->nsuspended) > 0 || atomic_load(&w->npieces) > 0) {
        struct pollfd pfd = {.fd = w->resume_fd, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            break;
        uint64_t v;
        ssize_t rc = read(w->resume_fd, &v, sizeof(v));
        (void)rc;
        worker_wakes_run(w);
    }
}

static void
worker_on_unpause(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    if (!w->stopping && w->listen_ev && w->listen_fd >= 0)
        event_add(w->listen_ev, NULL);
}

/* EMFILE/ENFILE: the connection stays in the backlog, so the listening socket
 * stays readable; pause accepting instead of spinning, and log rarely. */
static void
accept_pause(struct http_worker *w, int err_no)
{
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    event_del(w->listen_ev);
    evtimer_add(w->pause_ev, &tv);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - w->emfile_logged.tv_sec) * 1000L +
              (now.tv_nsec - w->emfile_logged.tv_nsec) / 1000000L;
    if (w->emfile_logged.tv_sec == 0 || ms >= EMFILE_LOG_MS) {
        log_warn("http", NULL,
                 "accept: out of file descriptors (%s): accepting paused for %d ms "
                 "(%lu more pauses since the last such line)",
                 strerror(err_no), ACCEPT_PAUSE_MS, w->emfile_quiet);
        w->emfile_logged = now;
        w->emfile_quiet = 0;
    } else {
        w->emfile_quiet++;
    }
}

static void
worker_on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct http_worker *w = arg;
    struct http_server *s = w->srv;
    for (int i = 0; i < ACCEPT_BATCH && !w->stopping; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                accept_pause(w, errno);
            else if (errno != EAGAIN)
                log_warn("http", NULL, "accept: %s", strerror(errno));
            return;
        }
        if (atomic_fetch_add(&s->nconns, 1) >=
            __atomic_load_n(&s->o.max_connections, __ATOMIC_RELAXED)) {
            atomic_fetch_sub(&s->nconns, 1);
            atomic_fetch_add_explicit(&s->refused, 1, memory_order_relaxed);
            http_conn_reject(w, fd);
            continue;
        }
        struct http_conn *c = http_conn_new(w, fd, 1);
        http_conn_start(c);
    }
}

static void
worker_on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    if (w->nconns)
        log_warn("http", NULL, "worker %d: closing %d connections still busy at shutdown", w->index,
                 w->nconns);
    while (w->conns)
        http_conn_kill(w->conns);
    event_base_loopbreak(w->base);
}

static void
worker_on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    uint64_t v;
    ssize_t rc = read(fd, &v, sizeof(v));
    (void)rc;
    if (w->stopping)
        return;
    w->stopping = 1;
    event_del(w->stop_ev);
    if (w->lag_ev)
        event_del(w->lag_ev);
    if (w->listen_ev)
        event_del(w->listen_ev);
    if (w->pause_ev)
        event_del(w->pause_ev);
    /* new connections are refused at once instead of waiting in a backlog nobody
     * accepts from */
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    struct http_conn *c = w->conns;
    while (c) {
        struct http_conn *next = c->next;
        http_conn_shutdown(c);
        c = next;
    }
    if (w->nconns == 0) {
        event_base_loopbreak(w->base);
        return;
    }
    int ms = __atomic_load_n(&w->srv->o.drain_timeout_ms, __ATOMIC_RELAXED);
    log_debug("http", NULL, "worker %d: draining %d connections for at most %d ms", w->index,
              w->nconns, ms);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    w->drain_ev = evtimer_new(w->base, worker_on_drain, w);
    if (w->drain_ev)
        evtimer_add(w->drain_ev, &tv);
}

const double http_lag_bounds_s[HTTP_LAG_BUCKETS] = {0.001, 0.002, 0.005, 0.01, 0.02,
                                                     0.05,  0.1,   0.2,   0.5};

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
worker_lag_arm(struct http_worker *w)
{
    struct timeval tv = {0, HTTP_LAG_TICK_MS * 1000};
    w->lag_due_ns = mono_ns() + (int64_t)HTTP_LAG_TICK_MS * 1000000;
    evtimer_add(w->lag_ev, &tv);
}

/* the lag timer: record how late it ran, then arm it again */
static void
worker_on_lag(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    int64_t late = mono_ns() - w->lag_due_ns;
    if (late < 0)
        late = 0;
    size_t b = 0;
    while (b < HTTP_LAG_BUCKETS && (double)late / 1e9 > http_lag_bounds_s[b])
        b++;
    atomic_fetch_add_explicit(&w->lag_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->lag_sum_ns, (unsigned long)late, memory_order_relaxed);
    if ((unsigned long)late > atomic_load_explicit(&w->lag_max_ns, memory_order_relaxed))
        atomic_store_explicit(&w->lag_max_ns, (unsigned long)late, memory_order_relaxed);
    if (!w->stopping)
        worker_lag_arm(w);
}

void
http_server_loop_lag(const struct http_server *s, uint64_t *counts, double *sum_s, double *max_s)
{
    uint64_t sum = 0, mx = 0;
    for (size_t b = 0; b <= HTTP_LAG_BUCKETS; b++)
        counts[b] = 0;
    for (int i = 0; i < s->nworkers; i++) {
        const struct http_worker *w = &s->workers[i];
        for (size_t b = 0; b <= HTTP_LAG_BUCKETS; b++)
            counts[b] += atomic_load_explicit(&w->lag_hist[b], memory_order_relaxed);
        sum += atomic_load_explicit(&w->lag_sum_ns, memory_order_relaxed);
        uint64_t m = atomic_load_explicit(&w->lag_max_ns, memory_order_relaxed);
        if (m > mx)
            mx = m;
    }
    *sum_s = (double)sum / 1e9;
    *max_s = (double)mx / 1e9;
}

static void *
worker_main(void *arg)
{
    struct http_worker *w = arg;
    struct http_server *s = w->srv;
    struct event_config *cfg = event_config_new();
    if (cfg) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    w->scratch_cap = s->o.body_buffer;
    w->scratch = malloc(w->scratch_cap);
    if (!w->base || !w->scratch) {
        err_set(&w->err, ERR_NOMEM, 0, "worker %d: cannot create its event loop", w->index);
        w->failed = 1;
        http_server_stop(s);
        goto out;
    }
    w->stop_ev = event_new(w->base, w->stop_fd, EV_READ | EV_PERSIST, worker_on_stop, w);
    w->listen_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, worker_on_accept, w);
    w->pause_ev = evtimer_new(w->base, worker_on_unpause, w);
    w->lag_ev = evtimer_new(w->base, worker_on_lag, w);
    w->resume_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->resume_fd >= 0)
        w->resume_ev =
            event_new(w->base, w->resume_fd, EV_READ | EV_PERSIST, worker_on_resume, w);
    if (!w->stop_ev || !w->listen_ev || !w->pause_ev || !w->resume_ev || !w->lag_ev) {
        err_set(&w->err, ERR_NOMEM, 0, "worker %d: out of memory", w->index);
        w->failed = 1;
        http_server_stop(s);
        goto out;
    }
    event_add(w->stop_ev, NULL);
    event_add(w->resume_ev, NULL);
    worker_lag_arm(w);
    if ((s->use_uring || s->upload_uring) && http_uring_worker_init(w, &w->err) < 0) {
        /* e.g. RLIMIT_MEMLOCK on older kernels: this worker uses sendfile/pwrite */
        log_warn("http", NULL, "worker %d: %s; its file replies use sendfile, its uploads pwrite",
                 w->index, w->err.msg);
        err_clear(&w->err);
    }
    w->uring_files = w->uring && s->use_uring;
    w->uring_writes_on = w->uring && s->upload_uring;
    if (s->app.worker_init) {
        err_clear(&w->err);
        w->wctx = s->app.worker_init(s->app.arg, w->index, &w->err);
        if (!w->wctx && w->err.code != ERR_NONE) {
            log_error("http", NULL, "worker %d: %s", w->index, w->err.msg);
            w->failed = 1;
            http_server_stop(s);
            goto out;
        }
    }
    /* tests wait for this line: the worker holds every descriptor it needs */
    log_debug("http", NULL, "worker %d: accepting", w->index);
    if (!atomic_load(&s->stop))
        event_add(w->listen_ev, NULL);
    event_base_dispatch(w->base);
    while (w->conns)
        http_conn_kill(w->conns);
    worker_resumes_drain(w);
    http_uring_worker_release(w);
    if (s->app.worker_release && w->wctx)
        s->app.worker_release(w->wctx);
    w->wctx = NULL;
out:
    http_uring_worker_release(w);
    if (w->listen_ev)
        event_free(w->listen_ev);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->drain_ev)
        event_free(w->drain_ev);
    if (w->pause_ev)
        event_free(w->pause_ev);
    if (w->resume_ev)
        event_free(w->resume_ev);
    if (w->lag_ev)
        event_free(w->lag_ev);
    w->listen_ev = w->stop_ev = w->drain_ev = w->pause_ev = w->resume_ev = w->lag_ev = NULL;
    if (w->resume_fd >= 0)
        close(w->resume_fd);
    w->resume_fd = -1;
    if (w->base)
        event_base_free(w->base);
    w->base = NULL;
    free(w->scratch);
    w->scratch = NULL;
    free(w->copybuf);
    w->copybuf = NULL;
    free(w->stream_spare);
    w->stream_spare = NULL;
    http_worker_rbufs_free(w);
    return NULL;
}

int
http_server_run(struct http_server *s, struct err *e)
{
    int rc = 0;
    for (int i = 0; i < s->nworkers; i++) {
        struct http_worker *w = &s->workers[i];
        w->failed = 0;
        w->stopping = 0;
        int pe = pthread_create(&w->thread, NULL, worker_main, w);
        if (pe != 0) {
            err_sys(e, ERR_IO, pe, "starting worker thread %d", i);
            rc = -1;
            http_server_stop(s);
            break;
        }
        w->started = 1;
    }
    for (int i = 0; i < s->nworkers; i++) {
        struct http_worker *w = &s->workers[i];
        if (!w->started)
            continue;
        pthread_join(w->thread, NULL);
        w->started = 0;
        if (w->failed && rc == 0) {
            if (e)
                *e = w->err;
            rc = -1;
        }
    }
    return rc;
}
