/* fuzz_http.c - see fuzz_http.h. */
#include "tests/fuzz/fuzz_http.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "server/http_internal.h"

static struct http_server srv;
static struct http_worker wk;
static int dump; /* FUZZ_HTTP_DUMP set: the connection's output goes to stderr */

void
fuzz_http_init(const struct http_server_opts *o, const struct http_app *app, void *wctx)
{
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0)
        abort();
    /* error lines are still formatted (their code runs), then dropped */
    log_setup(LOG_ERROR, 0, devnull);
    dump = getenv("FUZZ_HTTP_DUMP") != NULL;
    srv.o = *o;
    srv.app = *app;
    if (!app->error)
        abort(); /* http_server_new refuses such an app too */
    srv.app_headers_len = app->headers ? strlen(app->headers) : 0;
    srv.transport = &http_transport_plain;
    srv.nworkers = 1;
    srv.workers = &wk;
    wk.srv = &srv;
    wk.base = event_base_new();
    wk.listen_fd = wk.stop_fd = wk.resume_fd = -1;
    wk.wctx = wctx;
    wk.scratch_cap = o->body_buffer;
    wk.scratch = malloc(wk.scratch_cap);
    if (!wk.base || !wk.scratch)
        abort();
}

/* read what the connection sent; returns the running total */
static size_t
drain(int fd, size_t total, char *out, size_t cap)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            return total;
        if (dump)
            fwrite(buf, 1, (size_t)n, stderr);
        if (out && total < cap) {
            size_t k = (size_t)n < cap - total ? (size_t)n : cap - total;
            memcpy(out + total, buf, k);
        }
        total += (size_t)n;
    }
}

size_t
fuzz_http_run(const uint8_t *data, size_t len, size_t piece, char *out, size_t cap)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    struct http_conn *c = http_conn_new(&wk, sv[0], 0);
    size_t off = 0, sent = 0;
    /* every turn either takes input or finishes a reply; the bound only guards
     * the driver against a connection that stops making progress */
    for (size_t turns = 0; turns < 4 * len + 64; turns++) {
        sent = drain(sv[1], sent, out, cap);
        if (c->dead || c->lingering)
            break;
        struct http_req *r = c->req;
        if (r && r->replied && !r->reply_done) {
            /* the write event: the rest of the reply, then the input kept meanwhile */
            int rc = http_conn_flush(c);
            if (rc < 0)
                break;
            if (rc == 1)
                http_conn_feed(c, NULL, 0);
            continue;
        }
        /* conn_settle: after the last reply of a closing connection nothing is read */
        if (c->closing && (!r || r->reply_done))
            break;
        if (off == len)
            break;
        size_t n = piece && piece < len - off ? piece : len - off;
        size_t took = http_conn_feed(c, (const char *)data + off, n);
        if (took == 0) {
            if (!c->dead && !c->lingering)
                abort(); /* kept input filled the buffer: conn_on_read's "cannot happen" */
            break;
        }
        off += took;
    }
    sent = drain(sv[1], sent, out, cap);
    http_conn_free(c); /* the peer went away: on_abort of a request in progress */
    close(sv[1]);
    return sent;
}
