/* http_transport.c - the plain TCP transports (see http_transport.h). */
#include "server/http_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/banned.h"

static int
plain_open(struct http_transport *t)
{
    t->zc = HTTP_TRANSPORT_SPLICE;
    t->state = NULL;
    return 0;
}

static ssize_t
plain_recv(struct http_transport *t, void *buf, size_t n)
{
    return recv(t->fd, buf, n, 0);
}

static ssize_t
plain_sendv(struct http_transport *t, const struct iovec *iov, int iovcnt, int more)
{
    /* one iovec is the common case (a reply built in one buffer): send(2) is
     * the cheaper call for it */
    if (iovcnt == 1)
        return send(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return sendmsg(t->fd, &mh, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
}

static ssize_t
plain_sendfile(struct http_transport *t, int fd, off_t *off, size_t n)
{
    return sendfile(t->fd, fd, off, n);
}

static ssize_t
plain_splice(struct http_transport *t, int pipe_fd, size_t n)
{
    return splice(pipe_fd, NULL, t->fd, NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

static int
plain_shutdown(struct http_transport *t)
{
    return shutdown(t->fd, SHUT_WR);
}

static void
plain_close(struct http_transport *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

const struct http_transport_ops http_transport_plain = {
    .name = "plain",
    .open = plain_open,
    .recv = plain_recv,
    .sendv = plain_sendv,
    .sendfile = plain_sendfile,
    .splice = plain_splice,
    .shutdown = plain_shutdown,
    .close = plain_close,
};

static int
copy_open(struct http_transport *t)
{
    t->zc = 0;
    t->state = NULL;
    return 0;
}

static ssize_t
copy_sendfile(struct http_transport *t, int fd, off_t *off, size_t n)
{
    return HTTP_TRANSPORT_DECLINED;
}

const struct http_transport_ops http_transport_plain_copy = {
    .name = "plain-copy",
    .open = copy_open,
    .recv = plain_recv,
    .sendv = plain_sendv,
    .sendfile = copy_sendfile,
    .splice = NULL,
    .shutdown = plain_shutdown,
    .close = plain_close,
};

const char *
http_transport_peer_addr(const struct http_transport *t, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (t->fd < 0 || getpeername(t->fd, (struct sockaddr *)&ss, &sl) < 0)
        return NULL;
    const void *a = NULL;
    int family = ss.ss_family;
    if (family == AF_INET) {
        a = &((struct sockaddr_in *)&ss)->sin_addr;
    } else if (family == AF_INET6) {
        const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        a = a6;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            /* a dual-stack listener: the client is an IPv4 one (rate limits and
             * rules see one spelling of an address) */
            family = AF_INET;
            a = &a6->s6_addr[12];
        }
    } else {
        return NULL;
    }
    return inet_ntop(family, a, buf, (socklen_t)cap);
}
