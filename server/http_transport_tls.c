/* http_transport_tls.c - the TLS transport (see http_transport.h, auth/tls.h).
 *
 * States of a connection (struct tls_conn):
 *   HANDSHAKE  !hs_done. recv and sendv first drive SSL_do_handshake, which
 *              may wait for either readiness (t->want). The layer's header
 *              deadline runs from accept (ops->handshake), so a client that
 *              never finishes is closed at header_timeout.
 *   OPEN       hs_done. SSL_read / SSL_write; a call that cannot go on returns
 *              -1/EAGAIN with t->want (TLS 1.3 key updates and session tickets
 *              make a read write and a write read). sendfile goes through
 *              SSL_sendfile when kernel TLS carries the sends, else declines.
 *   FAILED     fatal. A protocol error or a reset: every call fails at once
 *              (OpenSSL must not be called again after a fatal error, not even
 *              SSL_shutdown).
 *
 * Writes: SSL_MODE_ENABLE_PARTIAL_WRITE makes SSL_write return after each
 * record, so a short count is reported like send(2) does. A write that blocks
 * keeps its last record inside OpenSSL; the layer's next call presents the same
 * bytes from the same position (it advanced by exactly what was reported), as
 * OpenSSL's retry rule requires (ACCEPT_MOVING_WRITE_BUFFER: not always at the
 * same address). */
#include "server/http_transport.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "auth/tls.h"
#include "common/log.h"

#include "common/banned.h"

/* several small pieces (headers and a short body) are written as one record:
 * one SSL_write, one send, one record overhead */
#define TLS_COALESCE_MAX 16384

struct tls_conn {
    SSL *ssl;
    unsigned hs_done : 1;
    unsigned fatal : 1;
    unsigned ktls_send : 1; /* kernel TLS carries the sends: SSL_sendfile works */
    unsigned read_wait : 1; /* the last read waited for the socket: what OpenSSL
                               holds (a partial record) cannot be read yet */
    unsigned id_done : 1;
    char *identity; /* verified client certificate's name, or NULL */
};

static int
tls_open(struct http_transport *t)
{
    struct err e = {0};
    t->zc = 0; /* no splice: bytes must pass through SSL_write or kernel TLS */
    t->want = 0;
    t->state = NULL;
    SSL *ssl = tls_ssl_new(t->arg, t->fd, &e);
    if (!ssl) {
        log_error("tls", NULL, "%s", e.msg);
        return -1;
    }
    struct tls_conn *tc = calloc(1, sizeof(*tc));
    if (!tc)
        abort();
    tc->ssl = ssl;
    t->state = tc;
    return 0;
}

/* An SSL call returned rc (not success): -1 with errno (EAGAIN and t->want
 * when it waits for the socket), or 0 when the peer ended the stream cleanly. */
static ssize_t
tls_blocked(struct http_transport *t, struct tls_conn *tc, int rc, int sys_errno)
{
    switch (SSL_get_error(tc->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        t->want = HTTP_TRANSPORT_WANT_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        t->want = HTTP_TRANSPORT_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify, or an EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
    case SSL_ERROR_SYSCALL:
        tc->fatal = 1;
        ERR_clear_error();
        errno = sys_errno ? sys_errno : ECONNRESET;
        return -1;
    default: {
        char why[160];
        tc->fatal = 1;
        log_debug("tls", NULL, "connection failed: %s", tls_ssl_error(why, sizeof(why)));
        errno = EPROTO;
        return -1;
    }
    }
}

/* drive the handshake: 0 done, -1 with errno (EAGAIN: t->want says for what) */
static int
tls_handshake(struct http_transport *t, struct tls_conn *tc)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(tc->ssl);
    if (rc == 1) {
        tc->hs_done = 1;
        tc->ktls_send = tls_handshake_done(t->arg, tc->ssl) ? 1 : 0;
        return 0;
    }
    int se = errno;
    int err = SSL_get_error(tc->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return (int)tls_blocked(t, tc, rc, se);
    /* a failed handshake is the client's business (an untrusted certificate,
     * plain HTTP on the TLS port, a scanner): info, with OpenSSL's reason, which
     * never holds key material */
    char why[160], peer[64];
    if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        log_debug("tls", NULL, "handshake ended by the client: %s peer=%s",
                  se ? strerror(se) : "connection closed",
                  http_transport_peer_addr(t, peer, sizeof(peer)) ? peer : "-");
    } else {
        log_info("tls", NULL, "handshake failed: %s peer=%s", tls_ssl_error(why, sizeof(why)),
                 http_transport_peer_addr(t, peer, sizeof(peer)) ? peer : "-");
    }
    tc->fatal = 1;
    errno = se && err == SSL_ERROR_SYSCALL ? se : ECONNRESET;
    return -1;
}

/* the handshake must be complete before data: 0 when it is */
static int
tls_ready(struct http_transport *t, struct tls_conn *tc)
{
    t->want = 0;
    if (tc->fatal) {
        errno = EPROTO;
        return -1;
    }
    return tc->hs_done ? 0 : tls_handshake(t, tc);
}

static ssize_t
tls_recv(struct http_transport *t, void *buf, size_t n)
{
    struct tls_conn *tc = t->state;
    if (tls_ready(t, tc) < 0)
        return -1;
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(tc->ssl, buf, n, &got);
    if (rc == 1) {
        tc->read_wait = 0;
        return (ssize_t)got;
    }
    ssize_t r = tls_blocked(t, tc, rc, errno);
    tc->read_wait = r < 0 && errno == EAGAIN && t->want == HTTP_TRANSPORT_WANT_READ;
    return r;
}

/* one SSL_write: bytes written (a record or more), or -1/EAGAIN/errno */
static ssize_t
tls_write(struct http_transport *t, struct tls_conn *tc, const void *p, size_t n)
{
    size_t done = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write_ex(tc->ssl, p, n, &done);
    if (rc == 1)
        return (ssize_t)done;
    ssize_t r = tls_blocked(t, tc, rc, errno);
    if (r == 0) {
        tc->fatal = 1;
        errno = EPIPE;
        return -1;
    }
    return r;
}

static ssize_t
tls_sendv(struct http_transport *t, const struct iovec *iov, int iovcnt, int more)
{
    struct tls_conn *tc = t->state;
    if (tls_ready(t, tc) < 0)
        return -1;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    if (iovcnt > 1 && total <= TLS_COALESCE_MAX) {
        static _Thread_local char one[TLS_COALESCE_MAX];
        size_t o = 0;
        for (int i = 0; i < iovcnt; i++) {
            memcpy(one + o, iov[i].iov_base, iov[i].iov_len);
            o += iov[i].iov_len;
        }
        return tls_write(t, tc, one, total);
    }
    size_t sent = 0;
    for (int i = 0; i < iovcnt; i++) {
        const char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left) {
            ssize_t k = tls_write(t, tc, p, left);
            if (k < 0) {
                if (sent && errno == EAGAIN) {
                    t->want = 0; /* what was sent is reported; the next call blocks again */
                    return (ssize_t)sent;
                }
                return -1; /* nothing sent, or the connection failed */
            }
            p += k;
            left -= (size_t)k;
            sent += (size_t)k;
        }
    }
    return (ssize_t)sent;
}

/* Kernel TLS sends: SSL_sendfile wraps sendfile(2) on a socket whose records
 * the kernel builds. Untested on the machine this was written on (its kernel
 * has no CONFIG_TLS): written from OpenSSL 3.0's SSL_sendfile, which returns
 * the bytes sent or -1 leaving sendfile's errno (EAGAIN, EINTR and EBUSY mark
 * a retry). */
static ssize_t
tls_sendfile(struct http_transport *t, int fd, off_t *off, size_t n)
{
    struct tls_conn *tc = t->state;
    t->want = 0;
    if (tc->fatal || !tc->hs_done || !tc->ktls_send)
        return HTTP_TRANSPORT_DECLINED;
    ERR_clear_error();
    errno = 0;
    ossl_ssize_t k = SSL_sendfile(tc->ssl, fd, *off, n, 0);
    if (k >= 0) {
        *off += (off_t)k;
        return (ssize_t)k;
    }
    int se = errno;
    ERR_clear_error();
    if (se == EAGAIN || se == EINTR || se == EBUSY) {
        t->want = HTTP_TRANSPORT_WANT_WRITE;
        errno = se == EINTR ? EINTR : EAGAIN;
        return -1;
    }
    tc->fatal = 1;
    errno = se ? se : EIO;
    return -1;
}

static int
tls_shutdown(struct http_transport *t)
{
    struct tls_conn *tc = t->state;
    t->want = 0;
    if (tc && tc->hs_done && !tc->fatal) {
        /* close_notify, best effort: the reply is complete either way (HTTP
         * framing), and the peer still gets the FIN below */
        ERR_clear_error();
        SSL_shutdown(tc->ssl);
        ERR_clear_error();
    }
    return shutdown(t->fd, SHUT_WR);
}

static void
tls_close(struct http_transport *t)
{
    struct tls_conn *tc = t->state;
    if (tc) {
        SSL_free(tc->ssl); /* drops its reference on the SSL_CTX; the fd stays */
        free(tc->identity);
        free(tc);
    }
    t->state = NULL;
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

static int
tls_pending(struct http_transport *t)
{
    struct tls_conn *tc = t->state;
    if (!tc || !tc->hs_done || tc->fatal)
        return 0;
    return SSL_pending(tc->ssl) > 0 || (!tc->read_wait && SSL_has_pending(tc->ssl));
}

static const char *
tls_identity(struct http_transport *t)
{
    struct tls_conn *tc = t->state;
    if (!tc || !tc->hs_done)
        return NULL;
    if (!tc->id_done) {
        char buf[256];
        tc->id_done = 1;
        if (tls_peer_identity(tc->ssl, buf, sizeof(buf)) == 0) {
            tc->identity = strdup(buf);
            if (!tc->identity)
                abort();
        }
    }
    return tc->identity;
}

const struct http_transport_ops http_transport_tls = {
    .name = "tls",
    .open = tls_open,
    .recv = tls_recv,
    .sendv = tls_sendv,
    .sendfile = tls_sendfile,
    .splice = NULL,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .pending = tls_pending,
    .identity = tls_identity,
    .handshake = 1,
};
