/* rb_ceil.c - machine ceilings, see rb_ceil.h. */
#include "tools/regbench/rb_ceil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/err.h"
#include "tools/regbench/rb_engine.h"
#include "common/banned.h"

#define BUF (256 * 1024)

static int
listen_any(int *port, struct err *e)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        err_sys(e, ERR_IO, errno, "bind 127.0.0.1:0");
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

int
rb_free_port(int *port, struct err *e)
{
    int fd = listen_any(port, e);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static void *
sink(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    char *buf = malloc(BUF);
    if (fd >= 0 && buf)
        while (read(fd, buf, BUF) > 0)
            ;
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}

int
rb_ceil_loopback(double seconds, double *mbs, struct err *e)
{
    int port, rc = -1, cfd = -1, connected = 0;
    int lfd = listen_any(&port, e);
    if (lfd < 0)
        return -1;
    pthread_t th;
    if (pthread_create(&th, NULL, sink, &lfd) != 0) {
        close(lfd);
        return err_set(e, ERR_INTERNAL, 0, "pthread_create failed");
    }
    char *buf = calloc(1, BUF);
    cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (!buf || cfd < 0 || connect(cfd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        err_sys(e, ERR_IO, errno, "loopback connect");
        goto out;
    }
    connected = 1;
    uint64_t t0 = rb_now_ns(), end = t0 + (uint64_t)(seconds * 1e9), bytes = 0, now = t0;
    while (now < end) {
        ssize_t k = write(cfd, buf, BUF);
        if (k <= 0) {
            err_sys(e, ERR_IO, errno, "loopback write");
            goto out;
        }
        bytes += (uint64_t)k;
        now = rb_now_ns();
    }
    *mbs = (double)bytes / 1e6 / ((double)(now - t0) / 1e9);
    rc = 0;
out:
    if (cfd >= 0)
        close(cfd);
    if (!connected)
        shutdown(lfd, SHUT_RDWR); /* wake the sink's accept */
    pthread_join(th, NULL);
    close(lfd);
    free(buf);
    return rc;
}

int
rb_ceil_sha256(double seconds, double *mbs, struct err *e)
{
    enum { N = 1 << 20 };
    int rc = -1;
    unsigned char *buf = calloc(1, N), md[32];
    unsigned int mdlen;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        err_set(e, ERR_INTERNAL, 0, "sha-256 set-up failed");
        goto out;
    }
    uint64_t t0 = rb_now_ns(), end = t0 + (uint64_t)(seconds * 1e9), bytes = 0, now = t0;
    while (now < end) {
        EVP_DigestUpdate(ctx, buf, N);
        bytes += N;
        now = rb_now_ns();
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    *mbs = (double)bytes / 1e6 / ((double)(now - t0) / 1e9);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return rc;
}
