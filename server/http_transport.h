/* http_transport.h - how the connection layer moves bytes over a connection.
 *
 * Every read, write, zero-copy send, shutdown and close of a client connection
 * goes through the ops table of its struct http_transport, chosen when the
 * connection is accepted (http.c). The connection layer (http_conn.c,
 * http_uring.c) never calls recv/send/sendfile/splice/shutdown/close on a client
 * socket itself, so a TLS transport (kernel TLS, SSL_sendfile) plugs in here
 * without touching the HTTP code.
 *
 * Conventions: the socket is non-blocking; functions return like the system
 * call they stand for (bytes, or -1 with errno; EAGAIN: wait for the socket's
 * readiness on t->fd, which the layer watches with libevent). Zero-copy sends
 * are offers: sendfile may answer HTTP_TRANSPORT_DECLINED (nothing was sent;
 * the layer then copies the rest of the file through a bounded buffer with
 * pread + sendv, re-reading what a short send left), and the io_uring
 * file -> pipe -> socket path is used only when the transport sets
 * HTTP_TRANSPORT_SPLICE in t->zc (the decision must be made before any byte
 * is in the pipe).
 *
 * Readiness: an operation that returns -1/EAGAIN sets t->want to the
 * readiness it waits for (HTTP_TRANSPORT_WANT_READ or _WRITE; a TLS read may
 * need the socket writable, a TLS write readable, during a handshake or a key
 * update); 0 (the plain transports, which never set it) means the natural
 * direction of the operation. A transport that sets it on EAGAIN resets it to 0
 * whenever an operation does not block, so the layer may read it after any call.
 *
 * Buffered input: a transport that keeps input of its own (TLS records read
 * and decrypted ahead of the bytes asked for) says so with ops->pending; the
 * layer then reads again without waiting for t->fd to become readable, which
 * it never would for bytes already taken from the kernel. */
#ifndef OCIREG_HTTP_TRANSPORT_H
#define OCIREG_HTTP_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>

struct iovec;
struct http_transport;

/* sendfile's answer when the transport cannot send from a file descriptor */
#define HTTP_TRANSPORT_DECLINED (-2)

/* t->zc: ops->splice may be given a pipe (the io_uring file-reply path) */
#define HTTP_TRANSPORT_SPLICE 1u

/* t->want after -1/EAGAIN: the readiness the operation waits for */
#define HTTP_TRANSPORT_WANT_READ 1u
#define HTTP_TRANSPORT_WANT_WRITE 2u

struct http_transport_ops {
    const char *name;
    /* at accept, t->fd set: prepare the per-connection state and t->zc.
     * 0, or -1 (the layer then closes the connection with ops->close) */
    int (*open)(struct http_transport *t);
    /* like recv(2): bytes, 0 at the peer's end, -1 with errno */
    ssize_t (*recv)(struct http_transport *t, void *buf, size_t n);
    /* like sendmsg(2) without SIGPIPE; more: further bytes follow at once
     * (MSG_MORE: headers before a file body) */
    ssize_t (*sendv)(struct http_transport *t, const struct iovec *iov, int iovcnt, int more);
    /* like sendfile(2): up to n bytes of file fd from *off (advanced by what was
     * sent); or HTTP_TRANSPORT_DECLINED when nothing was sent and the layer must
     * copy instead */
    ssize_t (*sendfile)(struct http_transport *t, int fd, off_t *off, size_t n);
    /* like splice(2) from pipe_fd to the connection, never blocking; called only
     * when t->zc has HTTP_TRANSPORT_SPLICE */
    ssize_t (*splice)(struct http_transport *t, int pipe_fd, size_t n);
    /* end the write side (the peer reads EOF after the last reply): 0 or -1 */
    int (*shutdown)(struct http_transport *t);
    /* free the per-connection state and close t->fd, unless the layer set it to
     * -1 first (io_uring operations still name the socket: the layer closes it
     * with close(2) when they end) */
    void (*close)(struct http_transport *t);
    /* 1 when input waits inside the transport (a recv would return bytes at
     * once although t->fd is not readable), else 0; NULL: never */
    int (*pending)(struct http_transport *t);
    /* the identity the peer proved at connection set-up (TLS: a client
     * certificate verified against [tls] client_ca), or NULL; the string lives
     * as long as the connection. NULL op: none */
    const char *(*identity)(struct http_transport *t);
    /* 1: the connection opens with a handshake that counts against the first
     * request's header_timeout (measured from accept, not from its first byte) */
    unsigned handshake;
};

/* one connection's transport: embedded in struct http_conn */
struct http_transport {
    const struct http_transport_ops *ops;
    int fd;      /* the connected socket */
    unsigned zc; /* HTTP_TRANSPORT_SPLICE or 0 */
    unsigned want; /* HTTP_TRANSPORT_WANT_* after -1/EAGAIN, else 0 */
    void *state; /* the transport's own per connection (TLS: its SSL object) */
    void *arg;   /* the transport's own per server, set by the layer before open
                    (TLS: the struct tls_ctx of http_server_opts) */
};

/* plain TCP: recv, sendmsg, sendfile(2), splice(2), shutdown(2), close(2) */
extern const struct http_transport_ops http_transport_plain;
/* plain TCP that declines every zero-copy send (http_server_opts
 * decline_zero_copy, for tests): file bodies take the bounded copy path */
extern const struct http_transport_ops http_transport_plain_copy;
/* http_transport_peer_addr - the connection's peer address as text
 * ("127.0.0.1", "::1"; an IPv4-mapped IPv6 address as IPv4) into buf. Returns
 * buf, or NULL when the socket has no peer (closed, reset). */
const char *http_transport_peer_addr(const struct http_transport *t, char *buf, size_t cap);

/* TLS (auth/tls.h) over TCP: t->arg is a struct tls_ctx. A non-blocking
 * handshake runs in the first recv (or sendv); then SSL_read/SSL_write.
 * sendfile: SSL_sendfile when kernel TLS carries the connection's sends, else
 * HTTP_TRANSPORT_DECLINED (the layer's bounded copy); no splice (t->zc = 0).
 * shutdown sends close_notify, then shuts the socket's write side. */
extern const struct http_transport_ops http_transport_tls;

#endif
