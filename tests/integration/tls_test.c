/* tls_test.c - the server over TLS ([tls] cert, key, client_ca): protocol
 * versions, blob push and pull (zero-copy declined: the bounded copy path),
 * pipelining inside one TLS record, clients that go away, plain HTTP on the TLS
 * port, client certificates and the identity they give, SIGHUP reload, and the
 * memory a large GET takes. Certificates are made at test time (testpki). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "auth/tls.h"
#include "common/log.h"
#include "server/http.h"
#include "server/http_transport.h"
#include "tests/lib/integ_util.h"
#include "tests/lib/testpki.h"
#include "tests/lib/testsrv.h"

static struct testpki pki;
static struct testsrv srv;

static void
pki_setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(testpki_make(&pki, "alice"), 0);
}

static void
pki_teardown(void)
{
    testsrv_cleanup(&srv);
    testpki_free(&pki);
}

/* the server with the test PKI's certificate; more: extra "K=V" (NULL-ended) */
static void
start_tls(const char *cert, const char *key, const char *const *more)
{
    static char ecert[300], ekey[300];
    snprintf(ecert, sizeof(ecert), "OCIREG_TLS_CERT=%s", cert ? cert : pki.server_cert);
    snprintf(ekey, sizeof(ekey), "OCIREG_TLS_KEY=%s", key ? key : pki.server_key);
    const char *env[16] = {ecert, ekey, "OCIREG_STORAGE_FSYNC=false"};
    size_t n = 3;
    for (size_t i = 0; more && more[i] && n < 15; i++)
        env[n++] = more[i];
    env[n] = NULL;
    cr_assert_eq(testsrv_start(&srv, NULL, env), 0, "server did not start");
    cr_assert_eq(strncmp(srv.url, "https://", 8), 0, "url %s", srv.url);
    testsrv_tls(&srv, pki.ca_cert, NULL, NULL);
}

static void
stop_checked(void)
{
    char why[2048];
    cr_assert_eq(integ_srv_stop_checked(&srv, why, sizeof(why)), 0, "%s", why);
}

/* count of lines of the server log holding needle */
static int
log_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/* wait (up to 10 s) for the log to hold at least n lines with needle */
static int
log_wait(const char *path, const char *needle, int n)
{
    for (int i = 0; i < 1000; i++) {
        if (log_count(path, needle) >= n)
            return 1;
        integ_sleep_ms(10);
    }
    return 0;
}

static int
tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* GET path with curl bounded to the TLS versions of sslversion (min | max).
 * Returns the status, -1 when no response came. */
static long
get_with_version(const char *path, long sslversion)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", srv.url, path);
    CURL *c = curl_easy_init();
    struct tbuf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, sslversion);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tbuf_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    testsrv_curl_setup(&srv, c);
    long st = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_cleanup(c);
    free(b.p);
    return st;
}

/* the raw client bounded to one version: the version the server agreed to */
static int
version_agreed(int version)
{
    char why[256];
    SSL *ssl = testpki_connect(srv.port, pki.ca_cert, NULL, NULL, version, version, why,
                               sizeof(why));
    cr_assert_not_null(ssl, "%s", why);
    int v = SSL_version(ssl);
    testpki_close(ssl);
    return v;
}

TestSuite(tls, .init = pki_setup, .fini = pki_teardown, .timeout = 120);

Test(tls, tls12_and_tls13_handshakes_work)
{
    start_tls(NULL, NULL, NULL);
    cr_assert_eq(get_with_version("/v2/", CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2),
                 200);
    cr_assert_eq(get_with_version("/v2/", CURL_SSLVERSION_TLSv1_3 | CURL_SSLVERSION_MAX_TLSv1_3),
                 200);
    cr_assert_eq(version_agreed(TLS1_2_VERSION), TLS1_2_VERSION);
    cr_assert_eq(version_agreed(TLS1_3_VERSION), TLS1_3_VERSION);
    /* the raw client: TLS 1.2 with an AEAD ECDHE suite, ALPN http/1.1 */
    char why[256];
    SSL *ssl = testpki_connect(srv.port, pki.ca_cert, NULL, NULL, TLS1_2_VERSION, TLS1_2_VERSION,
                               why, sizeof(why));
    cr_assert_not_null(ssl, "%s", why);
    const char *cipher = SSL_get_cipher_name(ssl);
    cr_assert(strstr(cipher, "ECDHE") && (strstr(cipher, "GCM") || strstr(cipher, "CHACHA20")),
              "cipher %s", cipher);
    testpki_close(ssl);
    cr_assert(log_wait(srv.log, "tls kernel TLS", 1), "no kernel TLS line in the log");
    stop_checked();
    int n = log_count(srv.log, "kernel TLS: SSL_sendfile") +
            log_count(srv.log, "kernel TLS unavailable (");
    cr_assert_eq(n, 1, "the kernel TLS path is logged %d times", n);
}

Test(tls, alpn_selects_http11)
{
    start_tls(NULL, NULL, NULL);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2\x08http/1.1", 12);
    int fd = tcp_connect(srv.port);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    cr_assert_eq(SSL_connect(ssl), 1);
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(p, "http/1.1", 8), 0);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    stop_checked();
}

Test(tls, tls11_and_sslv3_are_refused)
{
    start_tls(NULL, NULL, NULL);
    char why[256];
    SSL *ssl = testpki_connect(srv.port, pki.ca_cert, NULL, NULL, TLS1_1_VERSION, TLS1_1_VERSION,
                               why, sizeof(why));
    cr_assert_null(ssl, "a TLS 1.1 handshake succeeded");
    /* OpenSSL 3 clients cannot speak SSLv3: a hand-made SSLv3 ClientHello */
    static const unsigned char hello[] = {
        0x16, 0x03, 0x00, 0x00, 0x2d,                   /* handshake record, SSL 3.0 */
        0x01, 0x00, 0x00, 0x29, 0x03, 0x00,             /* ClientHello, version 3.0 */
        1,    2,    3,    4,    5,    6,    7,    8,    9,    10,   11,   12,   13,   14,
        15,   16,   17,   18,   19,   20,   21,   22,   23,   24,   25,   26,   27,   28,
        29,   30,   31,   32,                         /* random */
        0x00,                                           /* no session id */
        0x00, 0x02, 0x00, 0x2f,                         /* TLS_RSA_WITH_AES_128_CBC_SHA */
        0x01, 0x00,                                     /* no compression */
    };
    char resp[4096];
    long n = traw(&srv, hello, sizeof(hello), resp, sizeof(resp), 5000);
    cr_assert_geq(n, 0);
    /* no ServerHello: at most an alert record (type 21), then the close */
    cr_assert(n == 0 || (unsigned char)resp[0] == 21, "answered with record type %d",
              (unsigned char)resp[0]);
    cr_assert_eq(get_with_version("/v2/", CURL_SSLVERSION_TLSv1_2), 200);
    stop_checked();
}

Test(tls, blobs_push_and_pull_byte_identical)
{
    start_tls(NULL, NULL, NULL);
    /* monolithic */
    char small[1000], dg[72], got[72], path[256];
    integ_pattern(1, 0, small, sizeof(small));
    cr_assert_eq(tpush_blob(&srv, "tls/a", small, sizeof(small), dg), 201);
    snprintf(path, sizeof(path), "/v2/tls/a/blobs/%s", dg);
    uint64_t size = 0;
    cr_assert_eq(integ_get_hash(&srv, path, NULL, got, &size), 200);
    cr_assert_str_eq(got, dg);
    cr_assert_eq(size, sizeof(small));

    /* chunked: 6 MiB + 5 in three PATCHes and the PUT; GET through the copy path */
    const uint64_t total = (6u << 20) + 5;
    char loc[1024], want[72];
    integ_pattern_digest(7, total, want);
    cr_assert_eq(integ_upload_start(&srv, "tls/b", loc, sizeof(loc)), 202);
    uint64_t off = 0, next = 0;
    uint64_t part = 2u << 20;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(integ_upload_patch(&srv, loc, sizeof(loc), 7, off, part, &next), 202);
        off += part;
        cr_assert_eq(next, off);
    }
    cr_assert_eq(integ_upload_finish(&srv, loc, want, 7, off, total - off), 201);
    snprintf(path, sizeof(path), "/v2/tls/b/blobs/%s", want);
    cr_assert_eq(integ_get_hash(&srv, path, NULL, got, &size), 200);
    cr_assert_str_eq(got, want);
    cr_assert_eq(size, total);

    /* a Range GET in the middle */
    const char *h[] = {"Range: bytes=1048570-2097160", NULL};
    struct tresp r;
    cr_assert_eq(treq(&srv, "GET", path, h, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.len, 2097160 - 1048570 + 1);
    char *exp = malloc(r.len);
    integ_pattern(7, 1048570, exp, r.len);
    cr_assert_eq(memcmp(exp, r.body, r.len), 0, "Range body differs");
    free(exp);
    tresp_free(&r);
    stop_checked();
}

/* read one response from ssl (headers, then Content-Length bytes of body):
 * returns the status, the Docker-Content-Digest header into dg; -1 on EOF */
static int
read_response(SSL *ssl, char *buf, size_t cap, size_t *have, char *dg, size_t dgcap)
{
    for (;;) {
        char *end = memmem(buf, *have, "\r\n\r\n", 4);
        if (end) {
            size_t hl = (size_t)(end - buf) + 4;
            *end = '\0';
            long cl = 0;
            char *p = strcasestr(buf, "\r\nContent-Length:");
            if (p)
                cl = atol(p + 17);
            dg[0] = '\0';
            p = strcasestr(buf, "\r\nDocker-Content-Digest:");
            if (p) {
                p += 24;
                while (*p == ' ')
                    p++;
                size_t k = strcspn(p, "\r\n");
                snprintf(dg, dgcap, "%.*s", (int)k, p);
            }
            int status = atoi(buf + 9);
            while (*have < hl + (size_t)cl) {
                int n = SSL_read(ssl, buf + *have, (int)(cap - *have));
                if (n <= 0)
                    return -1;
                *have += (size_t)n;
            }
            memmove(buf, buf + hl + cl, *have - hl - (size_t)cl);
            *have -= hl + (size_t)cl;
            return status;
        }
        if (*have == cap)
            return -1;
        int n = SSL_read(ssl, buf + *have, (int)(cap - *have));
        if (n <= 0)
            return -1;
        *have += (size_t)n;
    }
}

Test(tls, pipelined_requests_in_one_record_are_all_answered_in_order)
{
    start_tls(NULL, NULL, NULL);
    char dgs[3][72], data[3][64];
    for (int i = 0; i < 3; i++) {
        integ_pattern(100 + (uint64_t)i, 0, data[i], sizeof(data[i]));
        cr_assert_eq(tpush_blob(&srv, "tls/pipe", data[i], sizeof(data[i]), dgs[i]), 201);
    }
    /* 60 GETs (~7 KiB: more than the layer reads ahead at once) in one SSL_write,
     * that is one TLS record: the rest of the record waits inside OpenSSL, where
     * the socket's readiness never shows it */
    enum { N = 60 };
    char *reqs = malloc(N * 200);
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(reqs + len, 200,
                                "GET /v2/tls/pipe/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n",
                                dgs[i % 3]);
    cr_assert_gt(len, 4096);
    char why[256];
    SSL *ssl = testpki_connect(srv.port, pki.ca_cert, NULL, NULL, 0, 0, why, sizeof(why));
    cr_assert_not_null(ssl, "%s", why);
    cr_assert_eq(SSL_write(ssl, reqs, (int)len), (int)len);
    struct timeval tv = {20, 0};
    setsockopt(SSL_get_fd(ssl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[65536], dg[80];
    size_t have = 0;
    for (int i = 0; i < N; i++) {
        int st = read_response(ssl, buf, sizeof(buf), &have, dg, sizeof(dg));
        cr_assert_eq(st, 200, "response %d: status %d", i, st);
        cr_assert_str_eq(dg, dgs[i % 3], "response %d out of order", i);
    }
    testpki_close(ssl);
    free(reqs);
    stop_checked();
}

Test(tls, clients_that_go_away_are_cleaned_up)
{
    const char *more[] = {"OCIREG_SERVER_HEADER_TIMEOUT=1s", NULL};
    start_tls(NULL, NULL, more);
    char why[256];
    /* an upload cut in the middle of its body */
    SSL *ssl = testpki_connect(srv.port, pki.ca_cert, NULL, NULL, 0, 0, why, sizeof(why));
    cr_assert_not_null(ssl, "%s", why);
    char loc[1024];
    cr_assert_eq(integ_upload_start(&srv, "tls/cut", loc, sizeof(loc)), 202);
    char head[1400];
    int hl = snprintf(head, sizeof(head),
                      "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: 1048576\r\n\r\n",
                      loc);
    cr_assert_eq(SSL_write(ssl, head, hl), hl);
    char part[16384];
    integ_pattern(5, 0, part, sizeof(part));
    for (int i = 0; i < 4; i++)
        cr_assert_eq(SSL_write(ssl, part, sizeof(part)), (int)sizeof(part));
    testpki_close(ssl); /* no close_notify: a reset-like end mid-body */

    /* a handshake never finished: half a ClientHello, then silence */
    int fd = tcp_connect(srv.port);
    static const unsigned char half[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc};
    cr_assert_eq(send(fd, half, sizeof(half), 0), (ssize_t)sizeof(half));
    /* the server closes it at header_timeout: the handshake counts against it */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 15000), 1, "the server kept an unfinished handshake open");
    char c;
    cr_assert_leq(recv(fd, &c, 1, 0), 0);
    close(fd);
    /* a TLS client that connects and never sends a byte */
    fd = tcp_connect(srv.port);
    pfd.fd = fd;
    cr_assert_eq(poll(&pfd, 1, 15000), 1, "the server kept a silent connection open");
    close(fd);

    cr_assert_eq(get_with_version("/v2/", CURL_SSLVERSION_TLSv1_2), 200);
    /* the session of the cut upload is still there: its PATCH aborted cleanly */
    uint64_t next = 1;
    cr_assert_eq(integ_upload_status(&srv, loc, &next), 204);
    stop_checked();
}

Test(tls, plain_http_on_the_tls_port_is_closed)
{
    start_tls(NULL, NULL, NULL);
    static const char req[] = "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n";
    char resp[4096];
    long n = traw(&srv, req, sizeof(req) - 1, resp, sizeof(resp), 5000);
    cr_assert_geq(n, 0);
    cr_assert_null(strstr(resp, "HTTP/1.1 200"), "plain HTTP was served: %s", resp);
    cr_assert(log_wait(srv.log, "handshake failed: http request", 1));
    cr_assert_eq(get_with_version("/v2/", CURL_SSLVERSION_TLSv1_2), 200);
    stop_checked();
}

Test(tls, sighup_reloads_the_certificate_and_keeps_open_connections)
{
    char live_crt[300], live_key[300], why[256];
    snprintf(live_crt, sizeof(live_crt), "%s/live.crt", pki.dir);
    snprintf(live_key, sizeof(live_key), "%s/live.key", pki.dir);
    cr_assert_eq(link(pki.server_cert, live_crt), 0);
    cr_assert_eq(link(pki.server_key, live_key), 0);
    start_tls(live_crt, live_key, NULL);

    SSL *old = testpki_connect(srv.port, pki.ca_cert, NULL, NULL, 0, 0, why, sizeof(why));
    cr_assert_not_null(old, "%s", why);
    cr_assert_eq(testpki_peer_serial(old), 1000);

    char c2[192], k2[192];
    cr_assert_eq(testpki_issue(&pki, "server2", "127.0.0.1", "IP:127.0.0.1,DNS:localhost", 1001,
                               0, c2, k2, sizeof(c2)),
                 0);
    cr_assert_eq(rename(k2, live_key), 0);
    cr_assert_eq(rename(c2, live_crt), 0);
    kill(srv.pid, SIGHUP);
    cr_assert(log_wait(srv.log, "reloaded TLS certificate", 1), "no reload logged");

    SSL *fresh = testpki_connect(srv.port, pki.ca_cert, NULL, NULL, 0, 0, why, sizeof(why));
    cr_assert_not_null(fresh, "%s", why);
    cr_assert_eq(testpki_peer_serial(fresh), 1001, "a new connection kept the old certificate");
    testpki_close(fresh);

    /* the connection opened before the reload still works */
    static const char req[] = "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(SSL_write(old, req, sizeof(req) - 1), (int)sizeof(req) - 1);
    char buf[4096], dg[80];
    size_t have = 0;
    cr_assert_eq(read_response(old, buf, sizeof(buf), &have, dg, sizeof(dg)), 200);
    testpki_close(old);

    /* a broken certificate file: logged, the current one stays */
    FILE *f = fopen(live_crt, "w");
    fputs("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    kill(srv.pid, SIGHUP);
    cr_assert(log_wait(srv.log, "reloading the TLS certificate", 1), "no failed reload logged");
    fresh = testpki_connect(srv.port, pki.ca_cert, NULL, NULL, 0, 0, why, sizeof(why));
    cr_assert_not_null(fresh, "%s", why);
    cr_assert_eq(testpki_peer_serial(fresh), 1001);
    testpki_close(fresh);
    stop_checked();
}

Test(tls, large_blob_get_keeps_server_rss_bounded)
{
    /* before the server starts: a skipped test does not reach .fini, so a
     * server started first would be left running */
    if (integ_server_is_asan()) {
        cr_skip_test("RSS figures are meaningless under AddressSanitizer");
        return;
    }
    start_tls(NULL, NULL, NULL);
    const uint64_t total = 64u << 20;
    char want[72], got[72], path[256];
    integ_pattern_digest(9, total, want);
    struct tresp r;
    char url[256];
    snprintf(url, sizeof(url), "/v2/tls/big/blobs/uploads/?digest=%s", want);
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    cr_assert_eq(integ_send_pattern(&srv, "POST", url, h, 9, 0, total, NULL, &r), 0);
    cr_assert_eq(r.status, 201);
    tresp_free(&r);

    /* reset the peak to the current RSS (clear_refs 5), then GET */
    char cr_path[64];
    snprintf(cr_path, sizeof(cr_path), "/proc/%d/clear_refs", (int)srv.pid);
    int fd = open(cr_path, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "5", 1), 1);
    close(fd);
    long before = integ_proc_kb(srv.pid, "VmRSS");
    snprintf(path, sizeof(path), "/v2/tls/big/blobs/%s", want);
    uint64_t size = 0;
    cr_assert_eq(integ_get_hash(&srv, path, NULL, got, &size), 200);
    cr_assert_str_eq(got, want);
    cr_assert_eq(size, total);
    long peak = integ_proc_kb(srv.pid, "VmHWM");
    cr_assert_lt(peak - before, 8 * 1024, "peak RSS grew by %ld KiB during a 64 MiB GET",
                 peak - before);
    stop_checked();
}

/* ---- client certificates: an in-process server with a tiny app ---- */

static int
tiny_error(void *arg, const struct err *e, char *body, size_t cap, size_t *len,
           const char **content_type)
{
    *content_type = "text/plain";
    int n = snprintf(body, cap, "%s", e->msg);
    *len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    return 400;
}

static char big_path[128];
static const uint64_t big_size = (3u << 20) + 11;

/* /id: "<identity or ->|<peer address>"; /file: a several-MiB file reply */
static void
tiny_dispatch(struct http_req *r, void *wctx)
{
    if (strcmp(http_req_path(r), "/file") == 0) {
        int fd = open(big_path, O_RDONLY | O_CLOEXEC);
        http_reply_fd(r, 200, "application/octet-stream", fd, 0, big_size);
        return;
    }
    const char *id = http_req_tls_identity(r);
    const char *peer = http_req_peer_addr(r);
    char body[512];
    int n = snprintf(body, sizeof(body), "%s|%s", id ? id : "-", peer ? peer : "?");
    http_reply(r, 200, "text/plain", body, (size_t)n);
}

static struct http_server *isrv;
static struct tls_ctx *itls;
static pthread_t ithr;

static void *
irun(void *arg)
{
    struct err e;
    http_server_run(isrv, &e);
    return NULL;
}

static void
start_inproc(const char *client_ca, int required)
{
    log_setup(LOG_WARN, 0, 2);
    struct err e = {0};
    struct tls_opts to = {.cert = pki.server_cert,
                          .key = pki.server_key,
                          .client_ca = client_ca,
                          .client_cert_required = required,
                          .ktls = 1};
    itls = tls_ctx_new(&to, &e);
    cr_assert_not_null(itls, "%s", e.msg);
    struct http_app app = {.dispatch = tiny_dispatch, .error = tiny_error};
    struct http_server_opts o = {.listen = "127.0.0.1:0",
                                 .workers = 1,
                                 .header_max = 16384,
                                 .body_buffer = 65536,
                                 .header_timeout_ms = 10000,
                                 .idle_timeout_ms = 10000,
                                 .body_timeout_ms = 10000,
                                 .max_connections = 64,
                                 .tls = itls};
    isrv = http_server_new(&o, &app, &e);
    cr_assert_not_null(isrv, "%s", e.msg);
    memset(&srv, 0, sizeof(srv));
    srv.pid = -1;
    srv.port = atoi(strrchr(http_server_address(isrv), ':') + 1);
    snprintf(srv.url, sizeof(srv.url), "https://127.0.0.1:%d", srv.port);
    testsrv_tls(&srv, pki.ca_cert, NULL, NULL);
    cr_assert_eq(pthread_create(&ithr, NULL, irun, NULL), 0);
}

static void
stop_inproc(void)
{
    if (isrv) {
        http_server_stop(isrv);
        pthread_join(ithr, NULL);
        http_server_free(isrv);
        isrv = NULL;
    }
    tls_ctx_free(itls);
    itls = NULL;
    if (big_path[0])
        unlink(big_path);
    big_path[0] = '\0';
}

static void
mtls_teardown(void)
{
    stop_inproc();
    pki_teardown();
}

TestSuite(mtls, .init = pki_setup, .fini = mtls_teardown, .timeout = 60);

/* GET /id as the client with cert/key (NULL: none): the body, or NULL when the
 * request failed (a refused handshake) */
static char *
id_as(const char *cert, const char *key)
{
    struct testsrv s = srv;
    testsrv_tls(&s, pki.ca_cert, cert, key);
    struct tresp r;
    if (treq(&s, "GET", "/id", NULL, NULL, 0, &r) < 0)
        return NULL;
    char *b = strdup(r.body);
    tresp_free(&r);
    return b;
}

Test(mtls, trusted_client_certificate_gives_an_identity)
{
    start_inproc(pki.ca_cert, 0);
    char *b = id_as(pki.client_cert, pki.client_key);
    cr_assert_not_null(b);
    cr_assert_str_eq(b, "alice|127.0.0.1");
    free(b);
    /* no CN: the first SAN email */
    char c[192], k[192];
    cr_assert_eq(testpki_issue(&pki, "bob", NULL, "email:bob@example.org,DNS:bob.example.org",
                               2001, 1, c, k, sizeof(c)),
                 0);
    b = id_as(c, k);
    cr_assert_not_null(b);
    cr_assert_str_eq(b, "bob@example.org|127.0.0.1");
    free(b);
    /* optional: no certificate, no identity */
    b = id_as(NULL, NULL);
    cr_assert_not_null(b);
    cr_assert_str_eq(b, "-|127.0.0.1");
    free(b);
}

Test(mtls, untrusted_client_certificate_is_refused)
{
    start_inproc(pki.ca_cert, 0);
    char *b = id_as(pki.rogue_cert, pki.rogue_key);
    cr_assert_null(b, "a rogue certificate was accepted: %s", b);
    b = id_as(pki.client_cert, pki.client_key);
    cr_assert_not_null(b, "the server stopped serving");
    free(b);
}

Test(mtls, missing_certificate_refused_when_required)
{
    start_inproc(pki.ca_cert, 1);
    char *b = id_as(NULL, NULL);
    cr_assert_null(b, "a client without certificate was served: %s", b);
    b = id_as(pki.client_cert, pki.client_key);
    cr_assert_not_null(b);
    cr_assert_str_eq(b, "alice|127.0.0.1");
    free(b);
}

Test(mtls, no_client_ca_no_identity_even_with_a_certificate)
{
    start_inproc(NULL, 0);
    char *b = id_as(pki.client_cert, pki.client_key);
    cr_assert_not_null(b);
    cr_assert_str_eq(b, "-|127.0.0.1");
    free(b);
}

Test(mtls, file_reply_takes_the_bounded_copy_path)
{
    snprintf(big_path, sizeof(big_path), "/tmp/ocireg-tlsfile.XXXXXX");
    int fd = mkstemp(big_path);
    cr_assert_geq(fd, 0);
    char *data = malloc(big_size);
    integ_pattern(3, 0, data, big_size);
    cr_assert_eq(write(fd, data, big_size), (ssize_t)big_size);
    close(fd);
    start_inproc(NULL, 0);
    unsigned long copies = http_server_file_copies(isrv);
    struct tresp r;
    cr_assert_eq(treq(&srv, "GET", "/file", NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, big_size);
    cr_assert_eq(memcmp(r.body, data, big_size), 0, "file body differs");
    tresp_free(&r);
    free(data);
    /* without kernel TLS sendfile is declined and the layer copies */
    char ulp[256] = "";
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
    if (f) {
        if (!fgets(ulp, sizeof(ulp), f))
            ulp[0] = '\0';
        fclose(f);
    }
    if (!strstr(ulp, "tls"))
        cr_assert_gt(http_server_file_copies(isrv), copies);
}

/* ---- the layer honours t->want: a fake transport over plain TCP ----
 * Its recv takes the bytes from the socket but answers EAGAIN asking for
 * writability first (as a TLS read that must send a record does); its sendv
 * answers EAGAIN asking for readability while the socket has nothing to read.
 * A layer that waited for the natural direction would hang on the first and
 * spin on the second. */

struct fake_conn {
    char buf[16384];
    size_t len;
};
static struct http_transport_ops fake_ops;
static atomic_int fake_recv_waits, fake_send_waits;
static atomic_int fake_send_block; /* sendv waits for readability */

static int
fake_open(struct http_transport *t)
{
    t->zc = 0;
    t->state = calloc(1, sizeof(struct fake_conn));
    return 0;
}

static ssize_t
fake_recv(struct http_transport *t, void *buf, size_t n)
{
    struct fake_conn *f = t->state;
    t->want = 0;
    if (f->len) {
        size_t k = n < f->len ? n : f->len;
        memcpy(buf, f->buf, k);
        memmove(f->buf, f->buf + k, f->len - k);
        f->len -= k;
        return (ssize_t)k;
    }
    ssize_t k = recv(t->fd, f->buf, n < sizeof(f->buf) ? n : sizeof(f->buf), 0);
    if (k <= 0)
        return k;
    f->len = (size_t)k;
    atomic_fetch_add(&fake_recv_waits, 1);
    t->want = HTTP_TRANSPORT_WANT_WRITE;
    errno = EAGAIN;
    return -1;
}

static ssize_t
fake_sendv(struct http_transport *t, const struct iovec *iov, int iovcnt, int more)
{
    struct pollfd p = {.fd = t->fd, .events = POLLIN};
    t->want = 0;
    if (atomic_load(&fake_send_block) && poll(&p, 1, 0) == 0) {
        atomic_fetch_add(&fake_send_waits, 1);
        t->want = HTTP_TRANSPORT_WANT_READ;
        errno = EAGAIN;
        return -1;
    }
    return http_transport_plain.sendv(t, iov, iovcnt, more);
}

static void
fake_close(struct http_transport *t)
{
    free(t->state);
    t->state = NULL;
    http_transport_plain.close(t);
}

static void
start_fake(void)
{
    log_setup(LOG_WARN, 0, 2);
    fake_ops = http_transport_plain_copy;
    fake_ops.name = "fake";
    fake_ops.open = fake_open;
    fake_ops.recv = fake_recv;
    fake_ops.sendv = fake_sendv;
    fake_ops.close = fake_close;
    struct err e = {0};
    struct http_app app = {.dispatch = tiny_dispatch, .error = tiny_error};
    struct http_server_opts o = {.listen = "127.0.0.1:0",
                                 .workers = 1,
                                 .header_max = 16384,
                                 .body_buffer = 65536,
                                 .header_timeout_ms = 10000,
                                 .idle_timeout_ms = 10000,
                                 .body_timeout_ms = 10000,
                                 .max_connections = 64,
                                 .transport = &fake_ops};
    isrv = http_server_new(&o, &app, &e);
    cr_assert_not_null(isrv, "%s", e.msg);
    srv.port = atoi(strrchr(http_server_address(isrv), ':') + 1);
    cr_assert_eq(pthread_create(&ithr, NULL, irun, NULL), 0);
}

TestSuite(want, .fini = stop_inproc, .timeout = 60);

/* read one reply ending in "-|127.0.0.1" from fd; poke (when set) sends a
 * blank line (ignored between requests) before each wait of 50 ms */
static int
fake_reply(int fd, int poke)
{
    char resp[4096];
    size_t got = 0;
    for (int i = 0; i < 200; i++) {
        if (poke)
            cr_assert_eq(send(fd, "\r\n", 2, MSG_NOSIGNAL), 2);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) == 1) {
            ssize_t k = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
            if (k <= 0)
                return 0;
            got += (size_t)k;
            resp[got] = '\0';
            if (strstr(resp, "HTTP/1.1 200") && strstr(resp, "-|127.0.0.1"))
                return 1;
        }
    }
    return 0;
}

Test(want, a_read_that_waits_for_writability_and_a_write_for_readability)
{
    start_fake();
    int fd = tcp_connect(srv.port);
    static const char req[] = "GET /id HTTP/1.1\r\nHost: x\r\n\r\n";
    /* the read waits for writability: no byte more comes from the client */
    cr_assert_eq(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    cr_assert(fake_reply(fd, 0), "no reply: the read waited for readability");
    cr_assert_geq(atomic_load(&fake_recv_waits), 1);
    /* the write waits for readability: blank lines until the reply comes */
    atomic_store(&fake_send_block, 1);
    cr_assert_eq(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    cr_assert(fake_reply(fd, 1), "no reply to the second request");
    cr_assert_geq(atomic_load(&fake_send_waits), 1);
    /* waited for readability, not retried on every writable round */
    cr_assert_leq(atomic_load(&fake_send_waits), 4, "%d blocked writes: the layer spun",
                  atomic_load(&fake_send_waits));
    close(fd);
}
