/* http_internal.h - the structures shared by the connection layer's files:
 *   http.c       server, worker threads, listening sockets, accept, stop
 *   http_conn.c  one connection: reading, parsing, body streaming, writing, timeouts
 *   http_req.c   one request: accessors, percent-decoding, query, replies
 *   http_uring.c file replies through io_uring splice (one ring per worker)
 *   http_transport.c  the plain transports (every socket call, http_transport.h)
 * Nothing outside server/http*.c includes this header. */
#ifndef OCIREG_HTTP_INTERNAL_H
#define OCIREG_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* libhttp-parser names its method enum `enum http_method`, like our contract
 * does: rename the parser's tag while its header is read. */
#define http_method http_parser_method
#include <http_parser.h>
#undef http_method

#include "server/http.h"
#include "server/http_transport.h"

struct event;
struct event_base;

/* more header lines than this: 431 */
#define HTTP_MAX_HEADERS 128
/* an unread body up to this is read and dropped after an early reply; a larger one
 * closes the connection */
#define HTTP_DISCARD_MAX 65536
/* lingering close: read and drop for at most this */
#define HTTP_LINGER_MS 2000
/* a limit of struct http_server_opts that http_server_set_limits may change
 * while workers read it (timeouts, max_connections, drain timeout) */
#define OPT_LIVE(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
/* a file body the transport will not send zero-copy goes through a buffer of
 * this size per worker (pread + sendv; allocated at the first such reply) */
#define HTTP_COPY_BUF 65536
/* a streamed reply's buffer: what one producer call may fill, with room before
 * it for a chunk-size line (16 hex digits + CRLF) and after it for the CRLF */
#define HTTP_STREAM_BUF 65536
#define HTTP_STREAM_HEAD 18
#define HTTP_STREAM_ALLOC (HTTP_STREAM_HEAD + HTTP_STREAM_BUF + 2)

enum body_mode { BODY_NONE = 0, BODY_STREAM, BODY_COLLECT, BODY_DISCARD };

/* Receive buffers of streamed bodies whose pieces go to a pool or are written
 * through io_uring (http_conn.c), body_buffer bytes each: a request takes up to
 * HTTP_RBUFS_PER_REQ from its worker while its body is read and gives them back
 * when it ends; a worker has at most HTTP_RBUFS_PER_WORKER (16 uploads at once
 * with one loop per core; beyond: the shared buffer, and the pieces worked or
 * written on the loop) and keeps HTTP_RBUF_CACHE free ones (fresh memory costs
 * page faults, ~15 us each here). Idle connections hold none. */
#define HTTP_RBUFS_PER_REQ 4
#define HTTP_RBUFS_PER_WORKER 64
#define HTTP_RBUF_CACHE 4
/* writes in flight on one worker's ring; beyond: synchronous (the ring's
 * completion queue can never overflow) */
#define HTTP_WRITES_MAX 128

struct http_rbuf {
    struct http_rbuf *next; /* worker free list */
    unsigned refs;          /* writes in flight naming its bytes */
    size_t cap;
    _Alignas(64) char data[];
};

/* a node of a worker's wake-up stack (http.c): a resumption, in the struct
 * http_req it names, or a job of body pieces come back from a pool, in the
 * struct http_bwrite of its first piece */
enum http_wake_kind { HTTP_WAKE_RESUME = 1, HTTP_WAKE_PIECES };
struct http_wnode {
    struct http_wnode *next;
    enum http_wake_kind kind;
};

/* one asynchronous body write (http_req_body_write) */
struct http_bwrite {
    struct http_req *r;
    struct http_rbuf *rb;
    http_write_done_fn done;
    int fd;
    uint64_t off;     /* file offset of data[0] */
    const char *data;
    size_t n;
    size_t written;   /* bytes done so far (short writes are continued) */
    /* a piece worked on a pool (http_req_body_offload) */
    struct http_bwrite *next;      /* the next piece of its job or queue */
    struct http_wnode wake;        /* on the worker's stack when its job is done */
    struct http_worker *w;
    http_piece_fn work;
    void *state;
    char *copy; /* the piece's own copy of bytes outside the request's buffers */
    long res;
};

struct arena_blk;
struct http_uring;
struct http_xfer;

struct http_worker {
    struct http_server *srv;
    int index;
    pthread_t thread;
    int started;
    struct event_base *base;
    int listen_fd; /* owned by the server (closed by http_server_free) */
    int stop_fd;   /* eventfd written by http_server_stop */
    struct event *listen_ev, *stop_ev, *drain_ev;
    struct event *pause_ev; /* re-enables listen_ev after EMFILE/ENFILE */
    struct timespec emfile_logged; /* last "out of file descriptors" line */
    unsigned long emfile_quiet;    /* pauses since that line */
    void *wctx;    /* app->worker_init's context */
    char *scratch; /* receive buffer, body_buffer bytes, shared by the
                      worker's connections: input is consumed before the
                      callback returns (leftovers are copied out) */
    size_t scratch_cap;
    struct http_conn *conns; /* doubly-linked list of open connections */
    int nconns;
    int stopping;
    uint64_t req_counter;
    time_t date_sec;
    char date[40]; /* cached "Date: ...\r\n" for date_sec */
    int failed;
    struct err err;
    struct http_uring *uring; /* NULL: file replies use sendfile, uploads pwrite */
    int uring_files;          /* file replies through the ring */
    int uring_writes_on;      /* upload writes through the ring */
    struct http_rbuf *rbuf_free;
    unsigned rbuf_nfree, rbuf_total;
    unsigned writes_inflight;
    atomic_int nzombies; /* dead connections waiting for their writes or their
                     resumption (http_conn.c) */
    /* resumptions (http_req_resume) and jobs of body pieces done: a lock-free
     * stack pushed by any thread, taken whole by the worker; the pusher that
     * finds it empty writes resume_fd (an eventfd watched by resume_ev) */
    struct http_wnode *wake_head;
    int resume_fd;
    struct event *resume_ev;
    atomic_int nsuspended; /* requests waiting for a resumption */
    atomic_int npieces;          /* jobs of body pieces on a pool, not yet taken back */
    atomic_ulong pieces_pooled;  /* pieces worked on a pool (tests) */
    atomic_ulong uring_writes, overlapped_reads; /* counters for tests */
    atomic_ulong held_max; /* most input bytes one connection kept (c->pend) */
    char *copybuf;         /* HTTP_COPY_BUF bytes, or NULL */
    char *stream_spare;    /* a free streamed-reply buffer, or NULL */
    atomic_ulong file_copies, stream_stalls; /* counters for tests */
    atomic_ulong files_with_headers;          /* conn_file_with_headers: for tests */
    /* event-loop lag: a timer due every HTTP_LAG_TICK_MS records how late it
     * ran (http_server_loop_lag): what a request waits before its worker can
     * look at it when the loop is busy or blocked */
    struct event *lag_ev;
    int64_t lag_due_ns; /* CLOCK_MONOTONIC */
    atomic_ulong lag_hist[HTTP_LAG_BUCKETS + 1];
    atomic_ulong lag_sum_ns, lag_max_ns;
};

struct http_server {
    struct http_server_opts o;
    char *listen; /* copy of o.listen */
    struct http_app app;
    int nworkers;
    struct http_worker *workers;
    char addr[80];
    atomic_int nconns; /* open connections, all workers */
    atomic_ulong refused; /* connections refused over max_connections */
    char id_prefix[12];   /* of made request ids: 8 hex digits, random per run */
    atomic_int stop;
    int use_uring; /* file replies through io_uring: chosen once in http_server_new */
    int upload_uring; /* upload writes through io_uring: likewise */
    const struct http_transport_ops *transport; /* given to every accepted connection */
    void *transport_arg; /* its t->arg: o.tls for TLS, else NULL */
    /* the 503 response for max_connections, around its Date line */
    char reject_head[1024], reject_tail[256];
    size_t app_headers_len; /* strlen(app.headers) */
};

/* One TCP connection. Kept small: an idle keep-alive connection holds only this
 * struct and its two events (allocated in the same block). */
struct http_conn {
    struct http_worker *w;
    struct http_conn *prev, *next;
    struct event *rev, *wev; /* point into this allocation (event_assign) */
    struct http_transport t; /* every socket call goes through t.ops */
    unsigned counted : 1; /* counts in srv->nconns */
    unsigned rd_on : 1, wr_on : 1;
    unsigned dead : 1;      /* close now (peer gone, error, timeout) */
    unsigned closing : 1;   /* close after the current reply is written */
    unsigned lingering : 1; /* write side shut, reading and dropping */
    unsigned served : 1;    /* at least one request answered */
    unsigned peer_eof : 1;
    /* the transport declined zero-copy once (TLS without kernel TLS): a small
     * file body of a later reply is read at once and sent with its headers,
     * in one sendv (one TLS record, one send) */
    unsigned files_copied : 1;
    unsigned uring_wait : 1; /* io_uring splices in flight: wait for their completion */
    unsigned zombie : 1;     /* dead, kept only until its request's writes end
                                or its resumption ran */
    unsigned closed_watch : 1; /* wev watches EV_CLOSED (a suspended request) */
    unsigned woken : 1;      /* wev activated by http_req_stream_wake */
    unsigned rev_inv : 1;    /* rev waits for EV_WRITE (the transport's read wants it) */
    unsigned wev_inv : 1;    /* wev waits for EV_READ (the transport's write wants it) */
    struct timespec deadline; /* header or linger deadline (CLOCK_MONOTONIC) */
    char *pend;               /* unprocessed input saved while a reply is written
                                 (at most HTTP_READ_AHEAD_MAX bytes) */
    size_t pend_len;
    http_parser parser;
    struct http_req *req; /* the request in progress, NULL when idle */
};

struct http_req {
    struct http_conn *c;
    struct arena_blk *arena;
    enum http_method method;
    const char *method_name;
    char id[HTTP_REQ_ID_MAX + 1];
    int tag; /* http_req_set_tag */
    struct timespec t0;

    /* header block as received: url \0 name \0 value \0 name \0 value \0 ... */
    char *hb;
    size_t hb_len, hb_cap;
    size_t hdr_bytes; /* bytes of request line + headers fed to the parser */
    int last_cb;      /* 0 none, 1 url, 2 field, 3 value */
    unsigned nh;
    uint32_t hname[HTTP_MAX_HEADERS], hval[HTTP_MAX_HEADERS];
    unsigned too_many_headers : 1;
    unsigned hb_overflow : 1;
    unsigned bad_header_name : 1;
    unsigned scanned : 1; /* method token read, parser started */
    unsigned hdr_lf : 1;    /* the last header byte fed to the parser was LF */
    unsigned obs_fold : 1;  /* a header line started with SP/HT (RFC 9112 5.2) */

    const char *raw_target;
    const char *path;
    const char *tls_id;  /* http_req_tls_identity's answer, once asked */
    const char *peer;    /* http_req_peer_addr's answer, once asked */
    unsigned tls_id_done : 1, peer_done : 1;
    size_t nq;
    const char **qk, **qv;

    int64_t content_length; /* -1 when not given */
    unsigned chunked : 1;
    unsigned expect_continue : 1;
    unsigned continue_sent : 1;
    unsigned http10 : 1;
    unsigned keepalive : 1; /* the client allows another request */
    unsigned head : 1;

    /* phases */
    unsigned headers_done : 1;
    unsigned msg_done : 1;   /* the parser saw the end of the message */
    unsigned completed : 1;  /* on_complete was called */
    unsigned replied : 1;    /* a reply was queued */
    unsigned reply_done : 1; /* ... and fully written */
    unsigned in_dispatch : 1;
    unsigned in_complete : 1; /* on_complete is running */
    unsigned in_resume : 1;   /* a resumption fn is running */
    unsigned suspended : 1;   /* waits for http_req_resume */

    enum body_mode body_mode;
    unsigned stream_accepted : 1; /* http_req_on_body was called: on_abort is owed */
    http_body_fn on_body;
    http_complete_fn on_complete;
    http_abort_fn on_abort;
    void *state;
    char *cbody; /* collected body (NUL-terminated) */
    size_t cbody_len, cbody_cap, cbody_max;
    uint64_t body_seen;

    /* reply */
    char *rh; /* extra headers added by the app */
    size_t rh_len, rh_cap;
    int status;
    uint64_t bytes_out; /* body bytes of the reply */
    char *out;          /* unsent part of the header + memory body */
    size_t out_len, out_pos;
    unsigned out_heap : 1; /* out is malloc'd (else a stack buffer of the replier) */
    int file_fd;           /* -1 when none */
    off_t file_off;
    uint64_t file_left;
    struct http_xfer *xfer; /* io_uring transfer of the file body, or NULL */
    unsigned file_copy : 1; /* the transport declined zero-copy: pread + sendv */

    /* streamed reply (http_reply_stream) */
    http_produce_fn produce; /* NULL when the reply is not streamed */
    http_release_fn release;
    void *sarg;
    char *sbuf;           /* HTTP_STREAM_BUF + framing room */
    size_t s_pos, s_end;  /* the unsent bytes of sbuf */
    int64_t s_left;       /* body bytes still to produce; -1: unknown length */
    unsigned s_chunked : 1;
    unsigned s_ended : 1;     /* the producer said end; its last bytes may be unsent */
    unsigned s_wait : 1;      /* the producer said HTTP_STREAM_AGAIN */
    unsigned s_in_produce : 1;
    unsigned s_woken : 1;     /* woken while producing */
    unsigned s_released : 1;  /* release ran */

    /* asynchronous body writes */
    struct http_rbuf *rb[HTTP_RBUFS_PER_REQ];
    unsigned nrb;
    unsigned wr_inflight; /* http_req_body_write / _offload calls whose done has not run */
    struct pool *body_pool;                /* http_req_body_pool */
    struct http_bwrite *pq_head, *pq_tail; /* pieces waiting for the job in flight */
    unsigned p_running : 1;                /* a job of r's pieces is on the pool */

    /* the pending resumption: written by the resuming thread before it pushes r
     * on the worker's stack, read by the worker after taking the stack */
    int resume_queued; /* http_req_resume was called for this suspension (atomic) */
    http_resume_fn resume_fn;
    void *resume_arg;
    struct http_wnode wake;
};

/* http_req.c */
struct http_req *http_req_new(struct http_conn *c);
void http_req_free(struct http_req *r);
/* after the header block: decode the path, parse the query. 0, or -1 (400). */
int http_req_finish_headers(struct http_req *r);
/* append header-block bytes; -1 when the block would exceed header_max */
int http_req_hb_append(struct http_req *r, const char *p, size_t n);
/* append to the collected body; -1 when it would grow over the limit */
int http_req_collect_append(struct http_req *r, const char *p, size_t n);
/* a reply generated by the layer itself (errors before or outside the app),
 * rendered by the app's error callback; the connection closes after it */
void http_req_fail(struct http_req *r, enum err_code code, const char *msg);
/* run the release callback of the request's stream now, if it has one and it
 * has not run (http_req_free also does) */
void http_req_stream_release(struct http_req *r);

/* http_conn.c */
struct http_conn *http_conn_new(struct http_worker *w, int fd, int counted);
/* arm the connection's events (after http_conn_new) */
void http_conn_start(struct http_conn *c);
void http_conn_free(struct http_conn *c);
void http_conn_reject(struct http_worker *w, int fd);
/* try to write the pending output of the current request; 1 when all written, 0 when
 * the socket is full (the write event is then armed), -1 on error (conn marked dead). */
int http_conn_flush(struct http_conn *c);
/* the worker is stopping: close an idle connection, mark the others to close */
void http_conn_shutdown(struct http_conn *c);
void http_conn_kill(struct http_conn *c);
/* http_conn_feed - hand the connection bytes as if recv() had returned them
 * (after the input it kept in c->pend), without the event loop: the same parser
 * callbacks, limits and dispatch. Replies are still sent to c->fd. Returns how
 * many of the len bytes were taken (at most the worker's scratch_cap minus what
 * was kept); 0 once the connection is dead or lingering. buf must not point
 * into w->scratch. For tests/fuzz/http_fuzz.c. */
size_t http_conn_feed(struct http_conn *c, const char *buf, size_t len);
/* run r's resumption on its worker and go on with the request (http_req_resume) */
void http_conn_resume_req(struct http_req *r);

/* the io_uring transfers are over for now (see http_uring.c): go on writing */
void http_conn_uring_done(struct http_conn *c);
/* a body write's SQE completed with res (http_uring.c) */
void http_conn_write_cqe(struct http_bwrite *bw, int res);
/* a job of body pieces came back from the pool (first: its first piece) */
void http_conn_pieces_done(struct http_bwrite *first);
/* at worker exit: free the cached receive buffers */
void http_worker_rbufs_free(struct http_worker *w);

/* http_uring.c */
/* 1 when io_uring with IORING_OP_SPLICE can be used, else 0 and why */
int http_uring_probe(char *why, size_t cap);
/* the worker's ring, wired into w->base; 0 or -1 with ERR_IO / ERR_NOMEM */
int http_uring_worker_init(struct http_worker *w, struct err *e);
/* waits for transfers still in flight, then frees the ring; NULL ring accepted */
void http_uring_worker_release(struct http_worker *w);
/* move the request's file body: 1 done, 0 waiting (c->uring_wait: for a
 * completion, else for EV_WRITE), -1 error (c->dead set) */
int http_uring_send_file(struct http_conn *c);
/* the request is going away: 1 when the transfer still has SQEs in flight and
 * took ownership of sock_fd (closed when they end), 0 when it was freed */
int http_uring_detach(struct http_xfer *x, int sock_fd);
/* queue the (rest of the) write on the worker's ring: 0, or -1 when the ring
 * refused (nothing queued) */
int http_uring_write(struct http_worker *w, struct http_bwrite *bw);

/* http.c */
void http_worker_conn_gone(struct http_worker *w);
/* queue r's resumption on w and wake w's loop (any thread) */
void http_worker_resume_push(struct http_worker *w, struct http_req *r);
const char *http_worker_date(struct http_worker *w);
/* hand a job of body pieces back to w and wake w's loop (a pool thread) */
void http_worker_pieces_push(struct http_worker *w, struct http_bwrite *first);

#endif
