/* http_uring.c - file replies through io_uring splice: file -> pipe -> socket.
 *
 * One ring per worker thread; its completions wake the worker's libevent loop
 * through an eventfd registered with the ring (io_uring_register_eventfd), so the
 * loop never blocks on the ring. The kernel runs every io_uring splice on an io-wq
 * thread (splice is always async there), so a page-cache miss on the blob file
 * never stalls the event loop (sendfile would).
 *
 * One transfer (struct http_xfer) per file reply, with its own pipe (grown to
 * XFER_PIPE_MAX bytes). States:
 *   FILL        pipe empty, file bytes left: one SQE splices up to a pipe-full
 *               from the file offset into the pipe (c->uring_wait: the connection
 *               waits on neither read nor write until the completion).
 *   DRAIN       bytes in the pipe: the transport's splice (plain: splice(2))
 *               pipe -> socket on the event loop,
 *               SPLICE_F_NONBLOCK and a non-blocking socket, so it never sleeps:
 *               EAGAIN (socket full) -> WAIT_WRITE; pipe empty -> FILL or DONE.
 *   WAIT_WRITE  the connection arms EV_WRITE (with body_timeout) and calls again.
 *   DONE        file and pipe empty: the transfer is freed, the reply is done.
 * (A first version linked a second SQE for the drain; it cost a second io-wq
 * hand-off per pipe-full for no gain: the drain cannot block.)
 *
 * Invariants: the transfer owns the file and pipe descriptors; an SQE names
 * descriptors that the kernel resolves when the io-wq thread runs it, so none of
 * them is closed while a fill is in flight: a connection freed meanwhile detaches
 * (http_uring_detach) and the transfer closes everything at its completion. At
 * worker exit the ring is drained before it is torn down. */
#include "server/http_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"

#include "common/banned.h"

#define RING_ENTRIES 256
#define XFER_PIPE_MAX (1u << 20)

/* user_data: the object's address, its low bit the kind */
enum { OP_FILL = 0, OP_WRITE = 1 };

/* Body writes (upload bytes -> the session's file, http_conn.c): one
 * IORING_OP_WRITE per piece, flagged IOSQE_ASYNC so that the copy into the page
 * cache runs on an io-wq thread while the event loop receives and hashes the
 * next buffer (without the flag the kernel first tries the write inline, inside
 * io_uring_submit on the event loop; on ext4 here that measured the same cost).
 * io-wq runs buffered writes to one file one after another (hashed by inode),
 * so completions normally come in order. */

struct http_uring {
    struct io_uring ring;
    int efd;
    struct event *ev;
    struct http_worker *w;
    unsigned inflight;
};

struct http_xfer {
    struct http_conn *c; /* NULL once the connection is gone */
    struct http_uring *u;
    int pipe_r, pipe_w;
    int file_fd;
    int sock_fd; /* -1, or a socket handed over by a dead connection */
    size_t pipe_cap;
    off_t off;       /* next file offset to splice */
    uint64_t left;   /* file bytes not yet in the pipe */
    size_t in_pipe;  /* bytes in the pipe not yet sent */
    size_t fill_len; /* length asked of the fill in flight */
    unsigned pending;
    unsigned failed : 1;
    int err; /* errno of the failure */
};

static void
xfer_free(struct http_xfer *x)
{
    if (x->pipe_r >= 0)
        close(x->pipe_r);
    if (x->pipe_w >= 0)
        close(x->pipe_w);
    if (x->file_fd >= 0)
        close(x->file_fd);
    if (x->sock_fd >= 0)
        close(x->sock_fd);
    free(x);
}

int
http_uring_probe(char *why, size_t cap)
{
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (f) {
        int v = 0;
        if (fscanf(f, "%d", &v) == 1 && v == 2) {
            fclose(f);
            snprintf(why, cap, "disabled by /proc/sys/kernel/io_uring_disabled");
            return 0;
        }
        fclose(f);
    }
    struct io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) {
        snprintf(why, cap, "io_uring_setup: %s", strerror(-rc));
        return 0;
    }
    int ok = 0;
    struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
    if (p && io_uring_opcode_supported(p, IORING_OP_SPLICE))
        ok = 1;
    else
        snprintf(why, cap, "IORING_OP_SPLICE not supported by this kernel");
    if (p)
        io_uring_free_probe(p);
    io_uring_queue_exit(&ring);
    return ok;
}

static void xfer_complete(struct http_xfer *x);

static void
uring_reap(struct http_uring *u)
{
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        uintptr_t ud = (uintptr_t)io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        if (!ud)
            continue;
        u->inflight--;
        if (ud & OP_WRITE) {
            u->w->writes_inflight--;
            http_conn_write_cqe((struct http_bwrite *)(ud & ~(uintptr_t)1), res);
            continue;
        }
        struct http_xfer *x = (struct http_xfer *)(ud & ~(uintptr_t)1);
        x->pending--;
        if (res > 0) {
            x->left -= (uint64_t)res;
            x->off += res;
            x->in_pipe += (size_t)res;
        } else if (!x->failed) {
            x->failed = 1;
            x->err = res < 0 ? -res : 0; /* 0: the file ended early */
        }
        if (x->pending == 0)
            xfer_complete(x);
    }
}

static void
uring_on_event(evutil_socket_t fd, short what, void *arg)
{
    struct http_uring *u = arg;
    uint64_t v;
    ssize_t rc = read(fd, &v, sizeof(v));
    (void)rc;
    uring_reap(u);
    if (io_uring_sq_ready(&u->ring))
        io_uring_submit(&u->ring);
}

static void
xfer_complete(struct http_xfer *x)
{
    if (!x->c) {
        xfer_free(x);
        return;
    }
    http_conn_uring_done(x->c);
}

int
http_uring_worker_init(struct http_worker *w, struct err *e)
{
    struct http_uring *u = calloc(1, sizeof(*u));
    if (!u)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    u->w = w;
    u->efd = -1;
    int rc = io_uring_queue_init(RING_ENTRIES, &u->ring, 0);
    if (rc < 0) {
        free(u);
        return err_sys(e, ERR_IO, -rc, "io_uring_queue_init");
    }
    u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->efd < 0 || (rc = io_uring_register_eventfd(&u->ring, u->efd)) < 0) {
        int se = u->efd < 0 ? errno : -rc;
        if (u->efd >= 0)
            close(u->efd);
        io_uring_queue_exit(&u->ring);
        free(u);
        return err_sys(e, ERR_IO, se, "io_uring eventfd");
    }
    u->ev = event_new(w->base, u->efd, EV_READ | EV_PERSIST, uring_on_event, u);
    if (!u->ev) {
        close(u->efd);
        io_uring_queue_exit(&u->ring);
        free(u);
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    }
    event_add(u->ev, NULL);
    w->uring = u;
    return 0;
}

void
http_uring_worker_release(struct http_worker *w)
{
    struct http_uring *u = w->uring;
    if (!u)
        return;
    /* every connection is gone: wait for the transfers they left behind */
    while (u->inflight) {
        /* submit_and_wait: an SQE a failed submit left queued goes out too */
        if (io_uring_submit_and_wait(&u->ring, 1) < 0)
            break;
        uring_reap(u);
    }
    event_free(u->ev);
    io_uring_queue_exit(&u->ring);
    close(u->efd);
    free(u);
    w->uring = NULL;
}

static struct io_uring_sqe *
get_sqe(struct http_uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

/* queue the next fill (file -> pipe); 0 on success, -1 when the ring refused */
static int
xfer_submit_fill(struct http_xfer *x)
{
    struct http_uring *u = x->u;
    size_t want = x->left < x->pipe_cap ? (size_t)x->left : x->pipe_cap;
    struct io_uring_sqe *sqe = get_sqe(u);
    if (!sqe)
        return -1;
    io_uring_prep_splice(sqe, x->file_fd, (int64_t)x->off, x->pipe_w, -1, (unsigned)want,
                         SPLICE_F_MOVE);
    io_uring_sqe_set_data(sqe, (void *)((uintptr_t)x | OP_FILL));
    x->fill_len = want;
    x->pending++;
    u->inflight++;
    int rc = io_uring_submit(&u->ring);
    if (rc < 0) {
        log_error("http", NULL, "io_uring_submit: %s", strerror(-rc));
        x->pending--;
        u->inflight--;
        return -1;
    }
    return 0;
}

/* pipe -> socket on the event loop, through the connection's transport (which
 * offered HTTP_TRANSPORT_SPLICE): never blocks (socket and pipe end are
 * non-blocking); 1 pipe empty, 0 socket full, -1 error */
static int
xfer_drain(struct http_xfer *x, struct http_transport *t)
{
    while (x->in_pipe) {
        ssize_t n = t->ops->splice(t, x->pipe_r, x->in_pipe);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            x->failed = 1;
            x->err = errno;
            return -1;
        }
        if (n == 0) {
            x->failed = 1;
            x->err = EPIPE;
            return -1;
        }
        x->in_pipe -= (size_t)n;
    }
    return 1;
}

int
http_uring_send_file(struct http_conn *c)
{
    struct http_req *r = c->req;
    struct http_xfer *x = r->xfer;
    if (!x) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            log_error("http", r->id, "pipe: %s", strerror(errno));
            c->dead = 1;
            return -1;
        }
        x = calloc(1, sizeof(*x));
        if (!x)
            abort();
        x->c = c;
        x->u = c->w->uring;
        x->pipe_r = p[0];
        x->pipe_w = p[1];
        x->sock_fd = -1;
        x->file_fd = r->file_fd;
        r->file_fd = -1;
        x->off = r->file_off;
        x->left = r->file_left;
        int sz = fcntl(x->pipe_w, F_SETPIPE_SZ, (int)XFER_PIPE_MAX);
        if (sz <= 0)
            sz = fcntl(x->pipe_w, F_GETPIPE_SZ);
        x->pipe_cap = sz > 0 ? (size_t)sz : 65536;
        r->xfer = x;
    }
    if (x->pending) {
        c->uring_wait = 1;
        return 0;
    }
    c->uring_wait = 0;
    if (x->failed) {
        if (x->err == 0)
            log_error("http", r->id, "file shorter than the announced length");
        else if (x->err != EPIPE && x->err != ECONNRESET)
            log_warn("http", r->id, "splice: %s", strerror(x->err));
        c->dead = 1;
        return -1;
    }
    if (x->left == 0 && x->in_pipe == 0) {
        r->xfer = NULL;
        xfer_free(x);
        r->file_left = 0;
        return 1;
    }
    int d = xfer_drain(x, &c->t);
    if (d < 0) {
        if (x->err != EPIPE && x->err != ECONNRESET)
            log_warn("http", r->id, "splice: %s", strerror(x->err));
        c->dead = 1;
        return -1;
    }
    if (d == 0)
        return 0; /* socket full: the connection arms EV_WRITE */
    if (x->left == 0) {
        r->xfer = NULL;
        xfer_free(x);
        r->file_left = 0;
        return 1;
    }
    if (xfer_submit_fill(x) < 0) {
        c->dead = 1;
        return -1;
    }
    c->uring_wait = 1;
    return 0;
}

int
http_uring_write(struct http_worker *w, struct http_bwrite *bw)
{
    struct http_uring *u = w->uring;
    if (!u || w->writes_inflight >= HTTP_WRITES_MAX)
        return -1;
    struct io_uring_sqe *sqe = get_sqe(u);
    if (!sqe)
        return -1;
    size_t left = bw->n - bw->written;
    io_uring_prep_write(sqe, bw->fd, bw->data + bw->written, (unsigned)left, bw->off + bw->written);
    sqe->flags |= IOSQE_ASYNC;
    io_uring_sqe_set_data(sqe, (void *)((uintptr_t)bw | OP_WRITE));
    int rc = io_uring_submit(&u->ring);
    if (rc < 0) {
        /* the SQE stays in the submission queue and names bw: it is in flight
         * whatever happens, the next submit (or the drain at exit) sends it */
        log_warn("http", bw->r->id, "io_uring_submit: %s", strerror(-rc));
    }
    u->inflight++;
    w->writes_inflight++;
    atomic_fetch_add(&w->uring_writes, 1);
    return 0;
}

int
http_uring_detach(struct http_xfer *x, int sock_fd)
{
    if (x->pending) {
        x->c = NULL;
        x->sock_fd = sock_fd;
        return 1;
    }
    xfer_free(x);
    return 0;
}
