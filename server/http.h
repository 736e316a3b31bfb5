/* http.h - ocireg's own HTTP/1.1 connection layer (libevent 2.1's evhttp buffers
 * whole request bodies, so it cannot carry multi-GiB uploads).
 *
 * Threads: N workers, each with its own event_base and its own listening socket
 * bound with SO_REUSEPORT; a connection lives on one worker for its whole life.
 * The app (server/api.c) gets a per-worker context from worker_init, where it keeps
 * its storage handle; every call for a request happens on that worker's thread.
 *
 * A request's life:
 *   1. headers read into a bounded buffer (header_max; larger: 431 and close),
 *      parsed (libhttp-parser). Malformed: 400 and close.
 *   2. app->dispatch(r, wctx) is called once the headers are complete. It either
 *      replies at once (an error, a GET), or calls http_req_on_body() to accept
 *      the body, or http_req_collect_body() to have it buffered (manifests).
 *      `Expect: 100-continue` gets its "100 Continue" only when the body is
 *      accepted; when dispatch replies without accepting, a small body is read
 *      and discarded, a large one closes the connection after the reply.
 *   3. body bytes (Content-Length or chunked; both together is 400) go to on_body
 *      in pieces of at most the connection's buffer size; then on_complete runs
 *      and must reply. If the connection dies first, on_abort runs instead.
 *   4. exactly one reply per request; pipelined requests are answered in order;
 *      keep-alive unless the client or the reply says Connection: close.
 * Instead of replying, dispatch and on_complete may suspend the request
 * (http_req_suspend) and resume it later from any thread (http_req_resume): the
 * resumption then runs on the worker and takes step 2's or step 3's place.
 * Blocking work goes to a pool (common/pool.h) with http_req_offload.
 *
 * Ownership: the request and everything from http_req_alloc() is freed by the
 * layer after the reply is written or the connection dies (a request that waits
 * for its resumption: once that has run).
 *
 * The layer speaks HTTP only: error bodies and the headers every response
 * carries come from the app (struct http_app: error, headers), and bytes reach
 * the client through the connection's transport (server/http_transport.h). */
#ifndef OCIREG_HTTP_H
#define OCIREG_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

enum http_method {
    HTTP_M_GET, HTTP_M_HEAD, HTTP_M_POST, HTTP_M_PUT, HTTP_M_PATCH, HTTP_M_DELETE,
    HTTP_M_OPTIONS, HTTP_M_OTHER
};

struct http_req;
struct http_server;
struct tls_ctx;
struct http_transport_ops;

/* ---- the application side ---- */

struct http_app {
    void *arg;
    /* per-worker context, created on the worker thread before it accepts. */
    void *(*worker_init)(void *arg, int worker_index, struct err *e);
    void (*worker_release)(void *wctx);
    /* called with complete headers; see step 2 above */
    void (*dispatch)(struct http_req *r, void *wctx);
    /* How an error reply looks: for http_reply_error and for the layer's own
     * errors (400 malformed request, 408, 413, 431, 501 transfer coding, 500 no
     * reply, 503 over max_connections), which carry ERR_BAD_REQUEST,
     * ERR_TIMEOUT, ERR_TOO_LARGE, ERR_HEADERS_TOO_LARGE, ERR_NOT_IMPLEMENTED,
     * ERR_INTERNAL, ERR_OVERLOADED. Writes the body (at most cap bytes) to body
     * and its length to *len, sets *content_type (a static string) and returns
     * the status. Called on any thread (the 503 is rendered once by
     * http_server_new); must not allocate per call. Required. */
    int (*error)(void *arg, const struct err *e, char *body, size_t cap, size_t *len,
                 const char **content_type);
    /* header lines sent on every response after Date, each "Name: value\r\n";
     * NULL for none. Borrowed: must outlive the server. */
    const char *headers;
    /* The request is over (the one access-log line is written with it): on
     * the worker thread, once per request that got as far as a request line
     * (also the layer's own error replies, and requests whose client went
     * away: status is then the reply's if one was made, else 0), before r is
     * freed. bytes_in: body bytes received; bytes_out: body bytes of the reply
     * sent; seconds: from the first byte of the request to now. For metrics:
     * must not block or allocate (the hot paths allocate nothing). wctx: the
     * worker's context (NULL when worker_init is NULL). May be NULL. */
    void (*on_end)(struct http_req *r, void *wctx, int status, uint64_t bytes_in,
                   uint64_t bytes_out, double seconds);
};

/* body callbacks; return 0 to go on, -1 after having replied (an error): the
 * rest of the body is then discarded or the connection closed. */
typedef int (*http_body_fn)(struct http_req *r, void *state, const void *data, size_t n);
typedef void (*http_complete_fn)(struct http_req *r, void *state);
typedef void (*http_abort_fn)(struct http_req *r, void *state);

/* http_req_on_body - accept the body: stream it to on_body, then on_complete
 * (must reply). on_abort (may be NULL) releases state if the request dies.
 * (Connection layer note: on_abort runs exactly once whenever on_complete will not:
 * the connection died, a timeout, a malformed chunk, or on_body returned -1 / replied;
 * it runs on the worker thread before the request is freed and must not reply.) */
void http_req_on_body(struct http_req *r, http_body_fn on_body, http_complete_fn on_complete,
                      http_abort_fn on_abort, void *state);

/* http_req_collect_body - accept the body into memory, at most max bytes: a
 * declared Content-Length over max is answered 413 (SIZE_INVALID) before any byte
 * is read; a chunked body that grows over max likewise. on_complete then finds
 * the bytes with http_req_body(). */
void http_req_collect_body(struct http_req *r, size_t max, http_complete_fn on_complete,
                           void *state);
const char *http_req_body(const struct http_req *r, size_t *len);

/* ---- asynchronous body writes ----
 * A streamed body (http_req_on_body) may be written to a file without a copy
 * and without blocking the worker: on_body passes the bytes it was given (or a
 * part of them) to http_req_body_write. When the worker writes uploads through
 * io_uring (http_req_async_writes), the layer received them into a buffer of
 * the request's own, keeps that buffer until the write has ended and meanwhile
 * goes on receiving into another one (at most a few per request; while all are
 * held, the connection is not read: backpressure). on_complete and on_abort run
 * only after every write has ended (done called); the connection may die
 * meanwhile: the request then lives on until its writes end, done still runs
 * (a reply is then ignored) and on_abort follows. */

/* done: the write of n bytes at off ended; res = n, or -errno (a short write is
 * continued by the layer). Runs on the worker thread, possibly before
 * http_req_body_write returns. Return 0, or -1 after having replied (an error;
 * the rest of the body is then discarded or the connection closed). */
typedef int (*http_write_done_fn)(struct http_req *r, void *state, uint64_t off, size_t n,
                                  long res);
/* 1 when this request's worker writes bodies through io_uring, else 0 (the app
 * then writes synchronously itself, as before) */
int http_req_async_writes(const struct http_req *r);
/* write the n bytes at data (inside what on_body was given, called from on_body)
 * to fd at off; fd must stay open until done ran. Queued on the worker's ring,
 * or, when that is impossible (the bytes are in the shared receive buffer, the
 * ring is full or refused), written at once with pwrite and done called before
 * the return. */
void http_req_body_write(struct http_req *r, int fd, uint64_t off, const void *data, size_t n,
                         http_write_done_fn done);

/* ---- body pieces worked on a pool ----
 * Instead of writing them itself, on_body may hand the bytes it was given (or
 * a part of them) to a pool thread (common/pool.h), where the app hashes and
 * writes them, so that the worker only receives: the CPU of a large upload
 * runs beside the event loops, on threads that may run at a lower priority,
 * and no loop waits on the disk. Call http_req_body_pool(r, p) before
 * http_req_on_body; then on_body calls http_req_body_offload. The layer
 * receives the body into buffers of the request's own, as for asynchronous
 * writes (at most a few; while all are held, the connection is not read), keeps
 * a buffer while a piece in it waits or is worked, and works the pieces of one
 * request one at a time and in the order given: the pieces queued while one
 * job runs go to the pool as the next job. work(tctx, state, data, n) runs on
 * a pool thread (tctx: its context; state: the request's) and returns n or
 * -errno; it must not call the layer or touch what the worker uses meanwhile.
 * done(r, state, 0, n, res) then runs on the worker, pieces in order, as for
 * writes; on_complete and on_abort wait for the last done, and a connection
 * that dies meanwhile lives on until then. Pieces the pool refuses (its queue
 * is full) and a piece outside the request's buffers (the bytes that came with
 * the headers) while none waits are worked at once on the worker (tctx NULL,
 * done before the return); such a piece while others wait is copied first. */
struct pool;
/* one piece: n, or -errno */
typedef long (*http_piece_fn)(void *tctx, void *state, const void *data, size_t n);
/* the pieces of r's body go to p (http_req_body_offload); before http_req_on_body */
void http_req_body_pool(struct http_req *r, struct pool *p);
/* 1 after http_req_body_pool, else 0 */
int http_req_body_pooled(const struct http_req *r);
/* from on_body: queue work on the bytes at data (inside what on_body was given) */
void http_req_body_offload(struct http_req *r, const void *data, size_t n, http_piece_fn work,
                           http_write_done_fn done);

/* ---- requests that wait ----
 * A request may wait for something that takes long (a disk flush, a hash of a
 * whole file, later a password hash or a remote call) without holding up its
 * worker: the handler suspends it and returns from dispatch or on_complete
 * without a reply; later, any thread resumes it, and fn runs on the request's
 * worker thread (the worker's event loop is woken). Meanwhile the request keeps
 * its connection, buffers and limits; the connection is not read (pipelined
 * requests wait their turn) and no timeout runs (the waiting is the app's: its
 * work must end); the layer only watches for the client going away. A client
 * that goes away while the request waits: the socket is closed at once, the
 * request stays until its resumption ran; fn then finds http_req_is_dead(r) = 1,
 * must release what it holds, and any reply it makes is dropped (on_abort
 * follows when owed). fn continues the step it took the place of: after a
 * suspension in dispatch it replies, accepts the body (http_req_on_body,
 * http_req_collect_body) or suspends again; after one in on_complete it replies
 * or suspends again; returning without any of these gets a 500. */

typedef void (*http_resume_fn)(struct http_req *r, void *arg);

/* http_req_suspend - from dispatch (before accepting a body), on_complete, or a
 * resumption fn: the request waits for exactly one http_req_resume. Call it
 * before handing r to whatever will resume it. Returns 0, or -1 when the
 * request cannot wait now (already replied, suspended, or called from on_body):
 * the caller must then go on as if it had not tried. */
int http_req_suspend(struct http_req *r);
/* http_req_resume - thread-safe, once per suspension: fn(r, arg) will run on
 * r's worker thread (never inside this call). A second call for the same
 * suspension is logged and ignored. r stays valid until fn has run. */
void http_req_resume(struct http_req *r, http_resume_fn fn, void *arg);
/* 1 when the client went away (the reply would be dropped), else 0 */
int http_req_is_dead(const struct http_req *r);

/* http_req_offload - suspend r, run work(tctx, arg) on pool p (tctx: the pool
 * thread's context), then done(r, arg) on r's worker as a resumption. Returns
 * 0, or -1 without suspending (nothing will run) with ERR_OVERLOADED when the
 * pool's queue is full (answer it: 503 TOOMANYREQUESTS) or the code of a
 * refused http_req_suspend (ERR_INTERNAL). */
int http_req_offload(struct http_req *r, struct pool *p, void (*work)(void *tctx, void *arg),
                     http_resume_fn done, void *arg, struct err *e);

/* ---- request accessors (strings live as long as the request) ---- */
enum http_method http_req_method(const struct http_req *r);
const char *http_req_method_name(const struct http_req *r);
/* path: percent-decoded once, without the query; NULL-free: a path whose decoding
 * yields NUL or invalid escapes makes the layer answer 400 before dispatch. */
const char *http_req_path(const struct http_req *r);
const char *http_req_raw_target(const struct http_req *r);
/* first value of query parameter `name` (decoded), NULL if absent */
const char *http_req_query(const struct http_req *r, const char *name);
/* every value of query parameter `name`, in order; returns the count (<= max) */
size_t http_req_query_all(const struct http_req *r, const char *name, const char **out,
                          size_t max);
/* header value (case-insensitive name, first occurrence), NULL if absent */
const char *http_req_header(const struct http_req *r, const char *name);
int64_t http_req_content_length(const struct http_req *r); /* -1 when not given */
int http_req_has_body(const struct http_req *r);             /* CL > 0 or chunked */
/* The request's id, at most HTTP_REQ_ID_MAX characters: the client's
 * X-Request-Id when it is sane (1..HTTP_REQ_ID_MAX visible ASCII characters,
 * neither '"' nor '\\'), else one made by the layer ("<8 hex of the process
 * run>-<worker>-<counter>", unique across restarts in practice). Every
 * response carries it in X-Request-Id; the access-log line names it. Before
 * the headers are complete it is the made one. */
#define HTTP_REQ_ID_MAX 64
const char *http_req_id(const struct http_req *r);
/* a number the app attaches to the request (0 until set), read back at its end
 * (on_end): the app's label of the request, e.g. its route for metrics */
void http_req_set_tag(struct http_req *r, int tag);
int http_req_tag(const struct http_req *r);
/* the identity the client proved with a TLS client certificate verified
 * against [tls] client_ca (its subject's CN, else its first SAN email or DNS
 * name: auth/tls.h tls_peer_identity), or NULL (plain TCP, no certificate) */
const char *http_req_tls_identity(const struct http_req *r);
/* the client's IP address as text ("127.0.0.1", "::1"; IPv4-mapped IPv6 as
 * IPv4), or NULL when the connection is gone */
const char *http_req_peer_addr(const struct http_req *r);
/* request-scoped allocation, freed with the request; never NULL (aborts on OOM) */
void *http_req_alloc(struct http_req *r, size_t n);
char *http_req_strdup(struct http_req *r, const char *s);

/* ---- replies (exactly one per request) ---- */

/* add a response header (before the reply call); value printf-style */
void http_reply_header(struct http_req *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* reply with a body copied from memory (Content-Length set; no body on HEAD) */
void http_reply(struct http_req *r, int status, const char *content_type, const void *body,
                size_t n);
/* reply with `len` bytes of file fd from `off`; takes ownership of fd (closed by the
 * layer). On HEAD only the headers go out, Content-Length = len. */
void http_reply_fd(struct http_req *r, int status, const char *content_type, int fd,
                   uint64_t off, uint64_t len);
/* Reply with a body produced on demand (backpressure): produce is asked for more
 * only when everything it gave before was taken by the socket; it fills at most
 * cap bytes at buf and returns their count, 0 at the end of the body,
 * HTTP_STREAM_AGAIN when it has nothing yet (it is asked again after
 * http_req_stream_wake), or -1 on an error (the headers are out: the connection
 * is closed). len >= 0: Content-Length (a producer that ends early or gives more
 * is an error); -1: Transfer-Encoding: chunked (HTTP/1.0: the body ends with
 * the connection). release (may be NULL) runs exactly once on the worker thread:
 * after the end, an error, or the client going away; at once when no body goes
 * out (HEAD, 1xx/204/304, a second reply). After release, r must not be used. */
#define HTTP_STREAM_AGAIN (-2)
typedef ssize_t (*http_produce_fn)(struct http_req *r, void *arg, char *buf, size_t cap);
typedef void (*http_release_fn)(struct http_req *r, void *arg);
void http_reply_stream(struct http_req *r, int status, const char *content_type, int64_t len,
                       http_produce_fn produce, http_release_fn release, void *arg);
/* a producer that returned HTTP_STREAM_AGAIN has more: call it again soon.
 * Worker thread only (the one running the request), before release ran. */
void http_req_stream_wake(struct http_req *r);
/* reply with the app's rendering of error e (struct http_app, error) */
void http_reply_error(struct http_req *r, const struct err *e);
/* shorthand: http_reply_error with a code and message */
void http_reply_errorf(struct http_req *r, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* close the connection after this reply */
void http_reply_close(struct http_req *r);

/* ---- the server ---- */

/* how file replies (http_reply_fd) reach the socket */
enum http_io {
    HTTP_IO_AUTO = 0,  /* the measured cheaper path: sendfile and pwrite today
                          (docs/server.md) */
    HTTP_IO_URING = 1, /* io_uring splice / writes; sendfile and pwrite (logged)
                          when io_uring is unavailable */
    HTTP_IO_POSIX = 2  /* sendfile(2), pwrite(2) */
};

/* Input a connection reads ahead of the request it serves (pipelined requests):
 * at most this many bytes are kept while a reply waits for the socket, the rest
 * stays in the kernel's socket buffer (docs/server.md, "Connections"). */
#define HTTP_READ_AHEAD_MAX 4096

struct http_server_opts {
    const char *listen;          /* "host:port"; port 0 picks a free port */
    int workers;                 /* threads; <= 0: number of cores */
    size_t header_max;           /* bytes of request line + headers (431 above) */
    size_t body_buffer;          /* per-worker receive buffer (default 1 MiB) */
    int header_timeout_ms;       /* whole header block must arrive within */
    int idle_timeout_ms;         /* keep-alive idle */
    int body_timeout_ms;         /* no body byte for this long: close */
    int max_connections;         /* across all workers; over: 503 and close */
    int drain_timeout_ms;        /* after http_server_stop, requests in progress may
                                    finish for this long, then the rest is cut
                                    (<= 0: 30 s) */
    int io;                      /* enum http_io (0 = auto) */
    int decline_zero_copy;       /* tests: connections get a transport that declines
                                    sendfile and splice (server/http_transport.h), so
                                    file bodies take the bounded copy path */
    struct tls_ctx *tls;         /* borrowed, must outlive the server: connections
                                    speak TLS (auth/tls.h); NULL: plain TCP */
    const struct http_transport_ops *transport; /* tests: every connection gets this
                                    transport (server/http_transport.h; t->arg NULL),
                                    whatever tls and decline_zero_copy say */
};

/* http_server_new - bind the listening sockets (so the port is known at once).
 * Returns a server owned by the caller, or NULL with ERR_CONFIG / ERR_IO. */
struct http_server *http_server_new(const struct http_server_opts *o, const struct http_app *app,
                                    struct err *e);
/* "uring" or "posix": the file-reply path chosen by http_server_new */
const char *http_server_io_name(const struct http_server *s);
/* "uring" or "posix": the upload write path chosen by http_server_new */
const char *http_server_upload_io_name(const struct http_server *s);
/* counters over all workers, for tests: body writes that went
 * through io_uring, and body receives done while a write of the same request
 * was in flight (the overlap of the next read with the previous write) */
unsigned long http_server_uring_writes(const struct http_server *s);
unsigned long http_server_overlapped_reads(const struct http_server *s);
/* body pieces handed to a pool (http_req_body_offload, those worked at once
 * included), over all workers; for tests */
unsigned long http_server_pooled_pieces(const struct http_server *s);
/* the most bytes of input one connection has kept, read but not yet parsed
 * (pipelined requests behind a reply that waits for the socket): at most
 * HTTP_READ_AHEAD_MAX; for tests */
unsigned long http_server_input_held_max(const struct http_server *s);
/* counters over all workers, for tests: file replies (or their rest) copied
 * through a bounded buffer because the transport declined zero-copy, and times a
 * streamed reply found the socket full and waited before asking its producer
 * for more */
unsigned long http_server_file_copies(const struct http_server *s);
/* http_server_loop_lag - how late the workers' event loops ran a timer due
 * every HTTP_LAG_TICK_MS (ms): counts[i] the ticks late by at most
 * http_lag_bounds_s[i] seconds (not cumulative; counts[HTTP_LAG_BUCKETS]: later
 * than the last bound), *sum_s their total lateness, *max_s the largest. A
 * loop that waits on a disk flush or hashes for long shows here, whatever the
 * clients see. */
#define HTTP_LAG_TICK_MS 100
#define HTTP_LAG_BUCKETS 9
extern const double http_lag_bounds_s[HTTP_LAG_BUCKETS];
void http_server_loop_lag(const struct http_server *s, uint64_t *counts, double *sum_s,
                          double *max_s);
/* file bodies read at once and sent with their headers (a connection whose
 * transport declined zero-copy before: one sendv, one TLS record) */
unsigned long http_server_files_with_headers(const struct http_server *s);
unsigned long http_server_stream_stalls(const struct http_server *s);
/* the reason phrase of an HTTP status ("Not Found"; "Unknown" for others) */
const char *http_status_reason(int status);
/* requests suspended right now, and connections that died while their request
 * was busy (writes in flight, suspended) and wait for it, all workers; for tests */
unsigned long http_server_suspended(const struct http_server *s);
unsigned long http_server_zombies(const struct http_server *s);
/* connections open now (all workers), and connections refused since start
 * because max_connections were open (answered 503 and closed); thread-safe */
unsigned long http_server_connections(const struct http_server *s);
unsigned long http_server_refused(const struct http_server *s);
/* "ip:port" actually bound (port resolved when 0 was asked) */
const char *http_server_address(const struct http_server *s);
/* the limits that can change while the server runs (SIGHUP): timeouts apply
 * to waits that start afterwards, max_connections to connections accepted
 * afterwards (clamped to the open-file limit as at start), drain_timeout to a
 * stop that comes afterwards; a value <= 0 keeps the current one */
struct http_server_limits {
    int header_timeout_ms, idle_timeout_ms, body_timeout_ms;
    int max_connections;
    int drain_timeout_ms;
};
/* http_server_set_limits - thread-safe (any thread, the server running or not) */
void http_server_set_limits(struct http_server *s, const struct http_server_limits *l);
/* run the workers; returns when http_server_stop was called and all have ended */
int http_server_run(struct http_server *s, struct err *e);
/* ask every worker to stop (thread-safe and async-signal-safe) */
void http_server_stop(struct http_server *s);
void http_server_free(struct http_server *s);

#endif
