/* regbench_test.c - regbench's building blocks: the latency histogram, the
 * seekable PRNG content and its digest, size and URL parsing, the token flow's
 * challenge and answer parsing; and the engine's TLS client and the login
 * against small HTTP(S) servers run in-process here (a test CA made at test
 * time with scripts/test-certs.sh). (The engine is exercised against a real
 * registry, with TLS and auth too, by tests/shell/regbench.sh.) */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/ssl.h>

#include "common/err.h"
#include "tools/regbench/rb_auth.h"
#include "tools/regbench/rb_engine.h"
#include "tools/regbench/rb_gen.h"
#include "tools/regbench/rb_hist.h"
#include "tools/regbench/rb_json.h"
#include "tools/regbench/rb_tls.h"
#include "tools/regbench/rb_util.h"
#include "common/banned.h"

static struct rb_hist *
hist_new(void)
{
    struct rb_hist *h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    rb_hist_init(h);
    return h;
}

Test(regbench, hist_percentiles_of_uniform_values_within_two_percent)
{
    struct rb_hist *h = hist_new();
    for (uint64_t v = 1; v <= 100000; v++)
        rb_hist_add(h, v * 1000); /* 1 us .. 100 ms in ns */
    cr_assert_eq(h->count, 100000);
    const double ps[] = {50, 90, 99, 99.9};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        double want = ps[i] / 100.0 * 100000 * 1000;
        double got = (double)rb_hist_percentile(h, ps[i]);
        cr_assert(got > want * 0.98 && got < want * 1.02, "p%g: got %.0f want %.0f", ps[i], got,
                  want);
    }
    cr_assert_eq(rb_hist_percentile(h, 100), 100000 * 1000);
    cr_assert_eq(rb_hist_percentile(h, 0), 1000);
    free(h);
}

Test(regbench, hist_small_values_are_exact_and_empty_is_zero)
{
    struct rb_hist *h = hist_new();
    cr_assert_eq(rb_hist_percentile(h, 50), 0);
    for (uint64_t v = 0; v < 100; v++)
        rb_hist_add(h, v);
    cr_assert_eq(rb_hist_percentile(h, 50), 49);
    cr_assert_eq(rb_hist_percentile(h, 99), 98);
    free(h);
}

Test(regbench, hist_merge_adds_counts_and_bounds)
{
    struct rb_hist *a = hist_new(), *b = hist_new();
    for (int i = 0; i < 90; i++)
        rb_hist_add(a, 1000);
    for (int i = 0; i < 10; i++)
        rb_hist_add(b, 1000000);
    rb_hist_merge(a, b);
    cr_assert_eq(a->count, 100);
    cr_assert_eq(a->min, 1000);
    cr_assert_eq(a->max, 1000000);
    uint64_t p50 = rb_hist_percentile(a, 50), p99 = rb_hist_percentile(a, 99);
    cr_assert(p50 >= 985 && p50 <= 1015, "p50 %lu", (unsigned long)p50);
    cr_assert(p99 >= 985000 && p99 <= 1000000, "p99 %lu", (unsigned long)p99);
    free(a);
    free(b);
}

Test(regbench, gen_fill_is_seekable_at_any_offset)
{
    enum { N = 4096 };
    unsigned char *whole = malloc(N), *part = malloc(N);
    rb_gen_fill(42, 0, whole, N);
    const uint64_t offs[] = {0, 1, 3, 7, 8, 9, 1000, 4095};
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        size_t len = N - offs[i];
        memset(part, 0, N);
        rb_gen_fill(42, offs[i], part, len);
        cr_assert(memcmp(part, whole + offs[i], len) == 0, "offset %lu", (unsigned long)offs[i]);
    }
    rb_gen_fill(43, 0, part, N);
    cr_assert(memcmp(part, whole, N) != 0, "another seed gives other content");
    free(whole);
    free(part);
}

Test(regbench, blob_digest_matches_sha256_of_its_content)
{
    static const unsigned char abc[] = "abc";
    struct rb_blob m = {.mem = abc, .size = 3};
    cr_assert_eq(rb_blob_digest(&m), 0);
    cr_assert_str_eq(m.digest,
                     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* a PRNG blob larger than the digest's internal step: same as hashing it whole */
    enum { N = 300 * 1024 + 5 };
    unsigned char *buf = malloc(N);
    rb_gen_fill(7, 0, buf, N);
    struct rb_blob g = {.seed = 7, .size = N};
    char want[RB_DIGEST_MAX];
    cr_assert_eq(rb_blob_digest(&g), 0);
    cr_assert_eq(rb_sha256_buf(buf, N, want), 0);
    cr_assert_str_eq(g.digest, want);
    unsigned char back[16];
    rb_blob_read(&g, N - 16, back, 16);
    cr_assert(memcmp(back, buf + N - 16, 16) == 0);
    free(buf);
}

Test(regbench, parse_size_units_and_refusals)
{
    struct err e;
    uint64_t v = 0;
    cr_assert_eq(rb_parse_size("4096", &v, &e), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(rb_parse_size("4K", &v, &e), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(rb_parse_size("256MiB", &v, &e), 0);
    cr_assert_eq(v, 256u << 20);
    cr_assert_eq(rb_parse_size("1g", &v, &e), 0);
    cr_assert_eq(v, 1u << 30);
    cr_assert_eq(rb_parse_size("0", &v, &e), -1);
    cr_assert_eq(rb_parse_size("12Q", &v, &e), -1);
    cr_assert_eq(rb_parse_size("", &v, &e), -1);
    cr_assert_eq(rb_parse_size("-1", &v, &e), -1);
    cr_assert_eq(rb_parse_size("99999999999999999999G", &v, &e), -1);
}

Test(regbench, parse_url_splits_and_refuses_paths)
{
    struct err e;
    char base[128], host[64], port[8];
    cr_assert_eq(rb_parse_url("http://127.0.0.1:5000/", base, sizeof(base), host, sizeof(host),
                              port, sizeof(port), &e),
                 0);
    cr_assert_str_eq(base, "http://127.0.0.1:5000");
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_str_eq(port, "5000");
    cr_assert_eq(rb_parse_url("http://[::1]:80", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_str_eq(base, "http://[::1]:80");
    cr_assert_eq(rb_parse_url("http://localhost", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 0);
    cr_assert_str_eq(port, "80");
    cr_assert_eq(rb_parse_url("http://h:1/v2/", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 -1);
    cr_assert_eq(
        rb_parse_url("ftp://h:1", base, sizeof(base), host, sizeof(host), port, sizeof(port), &e),
        -1);
    cr_assert_eq(rb_parse_url("http://u@h:1", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 -1);
    cr_assert_eq(rb_parse_url("http://h:99999", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 -1);
}

Test(regbench, loopback_hosts_only)
{
    cr_assert(rb_host_is_loopback("127.0.0.1"));
    cr_assert(rb_host_is_loopback("127.1.2.3"));
    cr_assert(rb_host_is_loopback("localhost"));
    cr_assert(rb_host_is_loopback("::1"));
    cr_assert(!rb_host_is_loopback("10.0.0.1"));
    cr_assert(!rb_host_is_loopback("192.168.1.1"));
    cr_assert(!rb_host_is_loopback("example.com"));
    cr_assert(!rb_host_is_loopback("::2"));
}

static int
tags_of(const char *body, size_t *n, char *name, size_t namecap)
{
    const char *nm;
    size_t nl;
    int esc;
    char why[128];
    int rc = rb_json_tags(body, strlen(body), &nm, &nl, &esc, n, why, sizeof(why));
    if (rc == 0)
        snprintf(name, namecap, "%.*s", (int)nl, nm);
    return rc;
}

Test(regbench, json_tags_counts_valid_lists)
{
    size_t n = 99;
    char name[64];
    cr_assert_eq(
        tags_of("{\"name\":\"a/b\",\"tags\":[\"t1\",\"t2\",\"x\\\"y\"]}", &n, name, sizeof(name)),
        0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(name, "a/b");
    cr_assert_eq(tags_of(" { \"tags\" : [ ] , \"name\" : \"r\" } \n", &n, name, sizeof(name)), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(tags_of("{\"name\":\"r\",\"tags\":null}", &n, name, sizeof(name)), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(tags_of("{\"x\":{\"y\":[1,-2.5e3,true,false,null,{}]},\"name\":\"r\","
                         "\"tags\":[\"\\u00e9\"]}",
                         &n, name, sizeof(name)),
                 0);
    cr_assert_eq(n, 1);
}

Test(regbench, json_tags_rejects_malformed_bodies)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"name\":\"r\"}",                         /* no tags */
        "{\"tags\":[]}",                            /* no name */
        "{\"name\":\"r\",\"tags\":[\"a\",]}",       /* trailing comma */
        "{\"name\":\"r\",\"tags\":[\"a\",1]}",      /* non-string tag */
        "{\"name\":\"r\",\"tags\":[\"a\"]} x",      /* bytes after */
        "{\"name\":\"r\",\"tags\":[\"a\\q\"]}",     /* bad escape */
        "{\"name\":\"r\",\"tags\":[\"a\"}",         /* unterminated array */
        "{\"name\":1,\"tags\":[]}",                 /* name not a string */
        "{\"name\":\"r\",\"tags\":[],\"tags\":[]}", /* duplicate */
        "{\"name\":\"r\",\"tags\":[],\"x\":01}",    /* bad number */
        "{\"name\":\"r\",\"tags\":[],\"x\":tru}",   /* bad literal */
        "{\"name\":\"r\" \"tags\":[]}",             /* missing comma */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n;
        char name[64];
        cr_assert_eq(tags_of(bad[i], &n, name, sizeof(name)), -1, "accepted: %s", bad[i]);
    }
}

/* ---- the token flow: challenge and answer ------------------------------------ */

static int
token_url(const char *www, const char *const *scopes, size_t n, enum rb_auth_scheme *sch,
          char *url, size_t cap)
{
    struct err e = {0};
    int rc = rb_auth_token_url(www, scopes, n, sch, url, cap, &e);
    return rc;
}

Test(regbench, token_url_from_a_bearer_challenge_with_quoted_commas_and_escapes)
{
    char url[1024];
    enum rb_auth_scheme sch = RB_AUTH_NONE;
    cr_assert_eq(token_url("Bearer realm=\"https://127.0.0.1:5000/auth/token\","
                           "service=\"reg \\\"one\\\", two\",scope=\"repository:a/b:pull,push\"",
                           NULL, 0, &sch, url, sizeof(url)),
                 0);
    cr_assert_eq(sch, RB_AUTH_BEARER);
    /* the challenge's own scope when none is named; every value percent-encoded */
    cr_assert_str_eq(url, "https://127.0.0.1:5000/auth/token?service=reg%20%22one%22%2C%20two"
                          "&scope=repository%3Aa%2Fb%3Apull%2Cpush");

    static const char *const scopes[] = {"repository:r/x-1:pull,push", "registry:catalog:*"};
    cr_assert_eq(token_url("bearer   service=svc , realm=\"http://localhost/t?a=1\"", scopes, 2,
                           &sch, url, sizeof(url)),
                 0);
    cr_assert_str_eq(url, "http://localhost/t?a=1&service=svc"
                          "&scope=repository%3Ar%2Fx-1%3Apull%2Cpush&scope=registry%3Acatalog%3A%2A");
    /* no service: none sent */
    cr_assert_eq(token_url("Bearer realm=\"http://h/t\"", scopes, 1, &sch, url, sizeof(url)), 0);
    cr_assert_str_eq(url, "http://h/t?scope=repository%3Ar%2Fx-1%3Apull%2Cpush");
}

Test(regbench, token_url_prefers_bearer_and_knows_basic)
{
    char url[256] = "x";
    enum rb_auth_scheme sch = RB_AUTH_NONE;
    cr_assert_eq(token_url("Basic realm=\"Registry, Realm\"", NULL, 0, &sch, url, sizeof(url)), 0);
    cr_assert_eq(sch, RB_AUTH_BASIC);
    cr_assert_str_eq(url, "");
    cr_assert_eq(token_url("Basic realm=\"a,b\", Bearer realm=\"http://h/t\",service=s", NULL, 0,
                           &sch, url, sizeof(url)),
                 0);
    cr_assert_eq(sch, RB_AUTH_BEARER);
    cr_assert_str_eq(url, "http://h/t?service=s");
}

Test(regbench, token_url_refuses_unusable_challenges)
{
    static const char *const bad[] = {
        "",
        "Negotiate",
        "Bearer service=\"x\"",                  /* no realm */
        "Bearer realm=\"http://h/t",             /* unterminated quote */
        "Bearer realm=\"ftp://h/t\",service=x",  /* not http(s) */
        "Bearer realm=\"/auth/token\"",          /* not absolute */
    };
    char url[256];
    enum rb_auth_scheme sch;
    struct err e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(rb_auth_token_url(bad[i], NULL, 0, &sch, url, sizeof(url), &e), -1,
                     "accepted: %s", bad[i]);
    cr_assert_eq(rb_auth_token_url(NULL, NULL, 0, &sch, url, sizeof(url), &e), -1);
    /* too many scopes for the URL: refused, not truncated */
    static const char *const many[] = {"repository:aaaaaaaaaaaaaaaaaaaaaaaaaaaa:pull",
                                       "repository:bbbbbbbbbbbbbbbbbbbbbbbbbbbb:pull"};
    cr_assert_eq(rb_auth_token_url("Bearer realm=\"http://h/t\"", many, 2, &sch, url, 80, &e), -1);
    cr_assert_eq(e.code, ERR_CONFIG);
}

Test(regbench, token_answer_gives_token_or_access_token)
{
    struct err e;
    char *tok = NULL;
    long exp = -1;
    const char *a = "{\"token\":\"abc.def.ghi\",\"expires_in\":300,\"issued_at\":\"x\"}";
    cr_assert_eq(rb_auth_token_parse(a, strlen(a), &tok, &exp, &e), 0);
    cr_assert_str_eq(tok, "abc.def.ghi");
    cr_assert_eq(exp, 300);
    free(tok);
    const char *b = "{\"token\":\"\",\"access_token\":\"zz\"}";
    cr_assert_eq(rb_auth_token_parse(b, strlen(b), &tok, &exp, &e), 0);
    cr_assert_str_eq(tok, "zz");
    cr_assert_eq(exp, 0);
    free(tok);
    static const char *const bad[] = {"", "[]", "{\"token\":1}", "{\"tok\":\"x\"}",
                                      "{\"token\":\"a b\"}", "{\"token\":\"a\\r\\nX: y\"}", "{"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(rb_auth_token_parse(bad[i], strlen(bad[i]), &tok, &exp, &e), -1,
                     "accepted: %s", bad[i]);
}

/* ---- an in-process HTTP(S) server ------------------------------------------------
 * One thread accepts on 127.0.0.1:0, one thread per connection (blocking sockets,
 * SSL_accept for TLS) answers keep-alive GETs through the test's handler. It
 * counts connections and completed handshakes. */

enum fake_mode { FAKE_MANIFEST, FAKE_TOKEN, FAKE_BASIC };

#define FAKE_MAX_CONNS 32
#define MANIFEST_BODY "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"}"
#define BASIC_BENCH "Basic YmVuY2g6czNjcmV0" /* bench:s3cret */

struct fake {
    enum fake_mode mode;
    SSL_CTX *ctx; /* NULL: plain HTTP */
    int lfd, port;
    atomic_int stop, accepts, handshakes, requests, unauthorized;
    const char *want_auth; /* FAKE_MANIFEST: the Authorization value required, or NULL */
    pthread_t th;
    pthread_t conns[FAKE_MAX_CONNS];
    int nconns;
    char token_query[2048]; /* FAKE_TOKEN: the query of the last token request */
};

struct fake_conn {
    struct fake *f;
    int fd;
};

static void
auth_of(const char *head, char *out, size_t cap)
{
    const char *a = strcasestr(head, "\r\nAuthorization:");
    out[0] = '\0';
    if (!a)
        return;
    a += 16;
    while (*a == ' ')
        a++;
    size_t n = strcspn(a, "\r\n");
    snprintf(out, cap, "%.*s", (int)n, a);
}

/* the response to one request head */
static int
fake_answer(struct fake *f, const char *head, char *out, size_t cap)
{
    char auth[1024], path[1024];
    auth_of(head, auth, sizeof(auth));
    if (sscanf(head, "%*s %1023s", path) != 1)
        snprintf(path, sizeof(path), "?");
    const char *st = "404 Not Found", *body = "{}", *extra = "";
    char hdr[512] = "", tok[128];
    if (f->mode == FAKE_MANIFEST) {
        if (f->want_auth && strcmp(auth, f->want_auth) != 0) {
            st = "401 Unauthorized";
            atomic_fetch_add(&f->unauthorized, 1);
        } else if (strcmp(path, "/v2/r/manifests/bench0") == 0) {
            st = "200 OK";
            body = MANIFEST_BODY;
        }
    } else if (strcmp(path, "/v2/") == 0) {
        int ok = f->mode == FAKE_TOKEN ? strcmp(auth, "Bearer tok123") == 0
                                       : strcmp(auth, BASIC_BENCH) == 0;
        st = ok ? "200 OK" : "401 Unauthorized";
        if (!ok && f->mode == FAKE_TOKEN)
            snprintf(hdr, sizeof(hdr),
                     "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/auth/token\","
                     "service=\"fake \\\"svc\\\", one\",scope=\"repository:x:pull\"\r\n",
                     f->port);
        else if (!ok)
            snprintf(hdr, sizeof(hdr), "WWW-Authenticate: Basic realm=\"fake, realm\"\r\n");
    } else if (f->mode == FAKE_TOKEN && strncmp(path, "/auth/token?", 12) == 0) {
        snprintf(f->token_query, sizeof(f->token_query), "%s", path + 12);
        if (strcmp(auth, BASIC_BENCH) == 0) {
            st = "200 OK";
            snprintf(tok, sizeof(tok), "{\"token\":\"tok123\",\"expires_in\":60}");
            body = tok;
        } else {
            st = "401 Unauthorized";
        }
    }
    extra = hdr;
    return snprintf(out, cap,
                    "HTTP/1.1 %s\r\nContent-Type: application/json\r\n%sContent-Length: %zu\r\n\r\n%s",
                    st, extra, strlen(body), body);
}

static void *
fake_conn_main(void *arg)
{
    struct fake_conn *fc = arg;
    struct fake *f = fc->f;
    SSL *ssl = NULL;
    char buf[16384], out[4096];
    size_t have = 0;
    struct timeval tv = {5, 0};
    setsockopt(fc->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (f->ctx) {
        ssl = SSL_new(f->ctx);
        SSL_set_fd(ssl, fc->fd);
        if (SSL_accept(ssl) != 1)
            goto out;
        atomic_fetch_add(&f->handshakes, 1);
    }
    for (;;) {
        char *eoh;
        while (!(eoh = memmem(buf, have, "\r\n\r\n", 4))) {
            if (have == sizeof(buf) - 1)
                goto out;
            ssize_t k = ssl ? SSL_read(ssl, buf + have, (int)(sizeof(buf) - 1 - have))
                            : recv(fc->fd, buf + have, sizeof(buf) - 1 - have, 0);
            if (k <= 0)
                goto out;
            have += (size_t)k;
        }
        size_t hl = (size_t)(eoh - buf) + 4;
        char c = buf[hl - 1];
        buf[hl - 1] = '\0';
        atomic_fetch_add(&f->requests, 1);
        int n = fake_answer(f, buf, out, sizeof(out));
        buf[hl - 1] = c;
        if ((ssl ? SSL_write(ssl, out, n) : send(fc->fd, out, (size_t)n, MSG_NOSIGNAL)) != n)
            goto out;
        memmove(buf, buf + hl, have - hl);
        have -= hl;
    }
out:
    SSL_free(ssl);
    close(fc->fd);
    free(fc);
    return NULL;
}

static void *
fake_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd pf = {.fd = f->lfd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&f->accepts, 1);
        struct fake_conn *fc = malloc(sizeof(*fc));
        if (!fc || f->nconns == FAKE_MAX_CONNS) {
            free(fc);
            close(fd);
            continue;
        }
        fc->f = f;
        fc->fd = fd;
        if (pthread_create(&f->conns[f->nconns], NULL, fake_conn_main, fc) == 0)
            f->nconns++;
        else
            close(fd);
    }
    return NULL;
}

/* the test's certificates: "<dir>/{ca,server,client}.{crt,key}" */
static void
make_certs(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/regbench-tls.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    const char *src = getenv("OCIREG_SRC");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "sh '%s/scripts/test-certs.sh' '%s'", src ? src : ".", dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

static void
rm_certs(const char *dir)
{
    static const char *const names[] = {"ca.crt", "ca.key", "server.crt", "server.key",
                                        "client.crt", "client.key"};
    char p[512];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void
fake_start(struct fake *f, enum fake_mode mode, const char *certdir)
{
    memset(f, 0, sizeof(*f));
    signal(SIGPIPE, SIG_IGN);
    f->mode = mode;
    if (certdir) {
        char crt[512], key[512];
        snprintf(crt, sizeof(crt), "%s/server.crt", certdir);
        snprintf(key, sizeof(key), "%s/server.key", certdir);
        f->ctx = SSL_CTX_new(TLS_server_method());
        cr_assert_not_null(f->ctx);
        cr_assert_eq(SSL_CTX_use_certificate_chain_file(f->ctx, crt), 1);
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(f->ctx, key, SSL_FILETYPE_PEM), 1);
    }
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(f->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    cr_assert_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(f->lfd, 64), 0);
    cr_assert_eq(getsockname(f->lfd, (struct sockaddr *)&a, &al), 0);
    f->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void
fake_stop(struct fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    close(f->lfd);
    /* the client has closed its connections: each thread ends on EOF */
    for (int i = 0; i < f->nconns; i++)
        pthread_join(f->conns[i], NULL);
    SSL_CTX_free(f->ctx);
}

/* manifest GETs over the engine against f; r filled */
static void
run_mget(struct fake *f, const char *host, const struct rb_tls *tls, const char *const *headers,
         int use_curl, int conns, uint64_t ops, struct rb_result *r)
{
    char base[128], digest[RB_DIGEST_MAX];
    snprintf(base, sizeof(base), "%s://%s:%d", tls ? "https" : "http", host, f->port);
    cr_assert_eq(rb_sha256_buf(MANIFEST_BODY, strlen(MANIFEST_BODY), digest), 0);
    struct rb_phase p = {
        .base = base,
        .tls = tls,
        .headers = headers,
        .repo = "r",
        .op = RB_OP_MANIFEST_GET,
        .conns = conns,
        .threads = 2,
        .max_ops = ops,
        .req_timeout = 10,
        .use_curl = use_curl,
        .tag = "bench0",
        .manifest_digest = digest,
    };
    struct err e = {0};
    cr_assert_eq(rb_phase_run(&p, r, &e), 0, "%s", e.msg);
}

static struct rb_tls *
tls_for(const char *dir, const char *host, const char *ca, int insecure)
{
    char cafile[512];
    snprintf(cafile, sizeof(cafile), "%s/%s", dir, ca);
    struct rb_tls_opts o = {.host = host, .cacert = ca ? cafile : NULL, .insecure = insecure};
    struct err e = {0};
    struct rb_tls *t = rb_tls_new(&o, &e);
    cr_assert_not_null(t, "%s", e.msg);
    return t;
}

Test(regbench, tls_engine_keeps_one_handshake_per_connection_and_sends_headers)
{
    char dir[64];
    make_certs(dir, sizeof(dir));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct fake *f = calloc(1, sizeof(*f));
    struct rb_result *r = malloc(sizeof(*r));
    fake_start(f, FAKE_MANIFEST, dir);
    f->want_auth = "Bearer t0k";
    static const char *const hdrs[] = {"X-Other: 1", "Authorization: Bearer t0k", NULL};
    struct rb_tls *t = tls_for(dir, "127.0.0.1", "ca.crt", 0);

    /* the raw engine: 4 connections, 400 requests, one handshake each */
    run_mget(f, "127.0.0.1", t, hdrs, 0, 4, 400, r);
    cr_assert_eq(r->errors, 0, "%s", r->nerr ? r->err_msg[0] : "");
    cr_assert_eq(r->ops, 400);
    cr_assert_eq(atomic_load(&f->requests), 400);
    cr_assert_eq(atomic_load(&f->accepts), 4);
    cr_assert_eq(atomic_load(&f->handshakes), 4);
    cr_assert_eq(atomic_load(&f->unauthorized), 0);

    /* libcurl (--curl) over the same settings: keep-alive too */
    run_mget(f, "127.0.0.1", t, hdrs, 1, 2, 100, r);
    cr_assert_eq(r->errors, 0, "%s", r->nerr ? r->err_msg[0] : "");
    cr_assert_eq(r->ops, 100);
    cr_assert_eq(atomic_load(&f->handshakes), 6);

    /* without the header every request is refused */
    run_mget(f, "127.0.0.1", t, NULL, 0, 2, 10, r);
    cr_assert_eq(r->ops, 0);
    cr_assert_eq(r->errors, 10);
    cr_assert(strstr(r->err_msg[0], "status 401"), "%s", r->err_msg[0]);
    rb_tls_free(t);
    fake_stop(f);
    free(f);
    free(r);
    curl_global_cleanup();
    rm_certs(dir);
}

Test(regbench, tls_engine_refuses_an_untrusted_or_misnamed_server)
{
    char dir[64], other[64];
    make_certs(dir, sizeof(dir));
    make_certs(other, sizeof(other));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct fake *f = calloc(1, sizeof(*f));
    struct rb_result *r = malloc(sizeof(*r));
    fake_start(f, FAKE_MANIFEST, dir);

    /* another CA: no request gets through */
    struct rb_tls *t = tls_for(other, "127.0.0.1", "ca.crt", 0);
    run_mget(f, "127.0.0.1", t, NULL, 0, 2, 6, r);
    cr_assert_eq(r->ops, 0);
    cr_assert_eq(r->errors, 6);
    cr_assert(strstr(r->err_msg[0], "certificate verify failed"), "%s", r->err_msg[0]);
    cr_assert_eq(atomic_load(&f->requests), 0);
    run_mget(f, "127.0.0.1", t, NULL, 1, 1, 2, r);
    cr_assert_eq(r->ops, 0);
    rb_tls_free(t);

    /* the right CA, but checked for a name the certificate does not carry */
    t = tls_for(dir, "127.0.0.2", "ca.crt", 0);
    run_mget(f, "127.0.0.1", t, NULL, 0, 1, 2, r);
    cr_assert_eq(r->ops, 0);
    cr_assert(strstr(r->err_msg[0], "certificate verify failed"), "%s", r->err_msg[0]);
    rb_tls_free(t);

    /* --insecure: the same server is accepted without any CA */
    t = tls_for(other, "127.0.0.2", NULL, 1);
    run_mget(f, "127.0.0.1", t, NULL, 0, 2, 20, r);
    cr_assert_eq(r->errors, 0, "%s", r->nerr ? r->err_msg[0] : "");
    cr_assert_eq(r->ops, 20);
    rb_tls_free(t);

    /* a plain-HTTP server behind an https URL: a handshake error, no hang */
    struct fake *plain = calloc(1, sizeof(*plain));
    fake_start(plain, FAKE_MANIFEST, NULL);
    t = tls_for(dir, "127.0.0.1", "ca.crt", 0);
    run_mget(plain, "127.0.0.1", t, NULL, 0, 1, 2, r);
    cr_assert_eq(r->ops, 0);
    cr_assert(strstr(r->err_msg[0], "tls handshake"), "%s", r->err_msg[0]);
    rb_tls_free(t);
    fake_stop(plain);
    free(plain);

    fake_stop(f);
    free(f);
    free(r);
    curl_global_cleanup();
    rm_certs(dir);
    rm_certs(other);
}

static int
login_to(struct fake *f, const char *userpass, const char *const *scopes, size_t n, char **hdr,
         enum rb_auth_scheme *sch, long *exp, struct err *e)
{
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", f->port);
    struct rb_auth_opts o = {
        .base = base, .userpass = userpass, .scopes = scopes, .nscopes = n, .timeout = 10};
    return rb_auth_login(&o, hdr, sch, exp, e);
}

Test(regbench, login_does_the_token_flow_for_a_bearer_challenge)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct fake *f = calloc(1, sizeof(*f));
    fake_start(f, FAKE_TOKEN, NULL);
    static const char *const scopes[] = {"repository:rb/pull-1:pull,push", "registry:catalog:*"};
    char *hdr = NULL;
    enum rb_auth_scheme sch;
    long exp = 0;
    struct err e = {0};
    cr_assert_eq(login_to(f, "bench:s3cret", scopes, 2, &hdr, &sch, &exp, &e), 0, "%s", e.msg);
    cr_assert_eq(sch, RB_AUTH_BEARER);
    cr_assert_str_eq(hdr, "Authorization: Bearer tok123");
    cr_assert_eq(exp, 60);
    cr_assert_str_eq(f->token_query, "service=fake%20%22svc%22%2C%20one"
                                     "&scope=repository%3Arb%2Fpull-1%3Apull%2Cpush"
                                     "&scope=registry%3Acatalog%3A%2A");
    free(hdr);
    hdr = NULL;
    /* a wrong password: refused, and the message holds no secret */
    cr_assert_eq(login_to(f, "bench:wrong", scopes, 2, &hdr, &sch, &exp, &e), -1);
    cr_assert_eq(e.code, ERR_UNAUTHORIZED);
    cr_assert(strstr(e.msg, "401"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "wrong"));
    cr_assert_null(hdr);
    cr_assert_eq(login_to(f, "nocolon", scopes, 2, &hdr, &sch, &exp, &e), -1);
    fake_stop(f);
    free(f);
    curl_global_cleanup();
}

Test(regbench, login_sends_basic_for_a_basic_challenge)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct fake *f = calloc(1, sizeof(*f));
    fake_start(f, FAKE_BASIC, NULL);
    char *hdr = NULL;
    enum rb_auth_scheme sch;
    long exp = 1;
    struct err e = {0};
    cr_assert_eq(login_to(f, "bench:s3cret", NULL, 0, &hdr, &sch, &exp, &e), 0, "%s", e.msg);
    cr_assert_eq(sch, RB_AUTH_BASIC);
    cr_assert_str_eq(hdr, "Authorization: " BASIC_BENCH);
    cr_assert_eq(exp, 0);
    free(hdr);
    cr_assert_eq(login_to(f, "bench:nope", NULL, 0, &hdr, &sch, &exp, &e), -1);
    cr_assert(strstr(e.msg, "401"), "%s", e.msg);
    /* a registry without auth: no header at all */
    struct fake *open_ = calloc(1, sizeof(*open_));
    fake_start(open_, FAKE_BASIC, NULL);
    open_->mode = FAKE_MANIFEST; /* answers /v2/ 404: neither 200 nor 401 */
    cr_assert_eq(login_to(open_, "bench:s3cret", NULL, 0, &hdr, &sch, &exp, &e), -1);
    cr_assert(strstr(e.msg, "404"), "%s", e.msg);
    fake_stop(open_);
    free(open_);
    fake_stop(f);
    free(f);
    curl_global_cleanup();
}
