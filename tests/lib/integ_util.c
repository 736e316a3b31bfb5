#include "tests/lib/integ_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

int64_t
integ_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
integ_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int
integ_reference(void)
{
    const char *t = getenv("OCIREG_TEST_TARGET");
    return t && strcmp(t, "reference") == 0;
}

/* ---- reference registry ---------------------------------------------------- */

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int
reference_start(struct testsrv *s, const char *root)
{
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    if (root) {
        snprintf(s->root, sizeof(s->root), "%s", root);
    } else {
        snprintf(s->root, sizeof(s->root), "/tmp/ocireg-ref.XXXXXX");
        if (!mkdtemp(s->root))
            return -1;
        s->own_root = 1;
    }
    s->port = free_port();
    if (s->port <= 0)
        return -1;
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
    snprintf(s->log, sizeof(s->log), "%s.log", s->root);
    char cfg[300];
    snprintf(cfg, sizeof(cfg), "%s.yml", s->root);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return -1;
    fprintf(f,
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            "    rootdirectory: %s\n  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:%d\n  secret: integ-test-secret\n",
            s->root, s->port);
    fclose(f);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execlp("docker-registry", "docker-registry", "serve", cfg, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 500; i++) {
        struct tresp r;
        if (treq(s, "GET", "/v2/", NULL, NULL, 0, &r) == 0) {
            long st = r.status;
            tresp_free(&r);
            if (st == 200) {
                unlink(cfg);
                return 0;
            }
        }
        if (!testsrv_alive(s))
            break;
        integ_sleep_ms(20);
    }
    unlink(cfg);
    testsrv_kill9(s);
    return -1;
}

int
integ_srv_start(struct testsrv *s, const char *root, const char *const *extra_env)
{
    int rc = integ_reference() ? reference_start(s, root) : testsrv_start(s, root, extra_env);
    if (rc < 0 && !root && s->root[0]) {
        /* a folder made for a server that never came up: remove it (and its log) */
        integ_rm_rf(s->root);
        unlink(s->log);
        s->own_root = 0;
    }
    return rc;
}

int
integ_srv_stop_checked(struct testsrv *s, char *why, size_t cap)
{
    snprintf(why, cap, "ok");
    if (s->pid <= 0) {
        snprintf(why, cap, "server not running (it died earlier)");
        return -1;
    }
    int st = testsrv_stop(s);
    if (integ_reference())
        return 0; /* Go's registry exits 2 on SIGTERM */
    if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    int n = snprintf(why, cap, "server %s %d; log tail:\n",
                     st != -1 && WIFSIGNALED(st) ? "killed by signal" : "exit status",
                     st == -1          ? -1
                     : WIFSIGNALED(st) ? WTERMSIG(st)
                                       : WEXITSTATUS(st));
    FILE *f = fopen(s->log, "r");
    if (f && n > 0 && (size_t)n < cap) {
        size_t room = cap - (size_t)n - 1;
        if (fseek(f, 0, SEEK_END) == 0) {
            long end = ftell(f);
            fseek(f, end > (long)room ? end - (long)room : 0, SEEK_SET);
        }
        size_t r = fread(why + n, 1, room, f);
        why[(size_t)n + r] = '\0';
    }
    if (f)
        fclose(f);
    return -1;
}

/* ---- generator and hashing ---------------------------------------------------- */

static uint64_t
mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void
integ_pattern(uint64_t seed, uint64_t off, void *buf, size_t n)
{
    unsigned char *p = buf;
    uint64_t k = mix64(seed);
    /* word w of the stream is mix64(k ^ w); unaligned ends are copied from it */
    while (n > 0 && (off & 7)) {
        uint64_t w = mix64(k ^ (off >> 3));
        *p++ = (unsigned char)(w >> ((off & 7) * 8));
        off++;
        n--;
    }
    while (n >= 8) {
        uint64_t w = mix64(k ^ (off >> 3));
        memcpy(p, &w, 8);
        p += 8;
        off += 8;
        n -= 8;
    }
    while (n > 0) {
        uint64_t w = mix64(k ^ (off >> 3));
        *p++ = (unsigned char)(w >> ((off & 7) * 8));
        off++;
        n--;
    }
}

struct integ_sha {
    EVP_MD_CTX *c;
};

struct integ_sha *
integ_sha_new(void)
{
    struct integ_sha *h = calloc(1, sizeof(*h));
    if (!h)
        abort();
    h->c = EVP_MD_CTX_new();
    if (!h->c || EVP_DigestInit_ex(h->c, EVP_sha256(), NULL) != 1)
        abort();
    return h;
}

void
integ_sha_update(struct integ_sha *h, const void *p, size_t n)
{
    EVP_DigestUpdate(h->c, p, n);
}

void
integ_sha_final(struct integ_sha *h, char *out)
{
    unsigned char md[32];
    unsigned int mdl = 0;
    EVP_DigestFinal_ex(h->c, md, &mdl);
    int o = snprintf(out, 72, "sha256:");
    for (unsigned i = 0; i < mdl; i++)
        o += snprintf(out + o, (size_t)(72 - o), "%02x", md[i]);
    EVP_MD_CTX_free(h->c);
    free(h);
}

#define GEN_BUF (1u << 20)

void
integ_pattern_digest(uint64_t seed, uint64_t len, char *out)
{
    unsigned char *buf = malloc(GEN_BUF);
    if (!buf)
        abort();
    struct integ_sha *h = integ_sha_new();
    for (uint64_t off = 0; off < len;) {
        size_t n = len - off < GEN_BUF ? (size_t)(len - off) : GEN_BUF;
        integ_pattern(seed, off, buf, n);
        integ_sha_update(h, buf, n);
        off += n;
    }
    integ_sha_final(h, out);
    free(buf);
}

int
integ_hash_file(const char *path, char *out, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    unsigned char *buf = malloc(GEN_BUF);
    if (!buf)
        abort();
    struct integ_sha *h = integ_sha_new();
    uint64_t total = 0;
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf, GEN_BUF);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -1;
            break;
        }
        if (r == 0)
            break;
        integ_sha_update(h, buf, (size_t)r);
        total += (uint64_t)r;
    }
    integ_sha_final(h, out);
    free(buf);
    close(fd);
    if (size)
        *size = total;
    return rc;
}

/* ---- HTTP: curl streaming --------------------------------------------------------- */

struct gen_src {
    uint64_t seed, off, left;
    struct integ_sha *sha;
};

static size_t
gen_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    struct gen_src *g = arg;
    size_t n = size * nitems;
    if (n > g->left)
        n = (size_t)g->left;
    integ_pattern(g->seed, g->off, buf, n);
    if (g->sha)
        integ_sha_update(g->sha, buf, n);
    g->off += n;
    g->left -= n;
    return n;
}

static void
full_url(const struct testsrv *s, const char *url_or_path, char *url, size_t cap)
{
    if (strncmp(url_or_path, "http", 4) == 0)
        snprintf(url, cap, "%s", url_or_path);
    else
        snprintf(url, cap, "%s%s", s->url, url_or_path);
}

int
integ_send_pattern(const struct testsrv *s, const char *method, const char *url_or_path,
                   const char *const *headers, uint64_t seed, uint64_t off, uint64_t len,
                   struct integ_sha *sha, struct tresp *out)
{
    memset(out, 0, sizeof(*out));
    char url[2048];
    full_url(s, url_or_path, url, sizeof(url));
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct tbuf b = {0}, h = {0};
    struct gen_src g = {.seed = seed, .off = off, .left = len, .sha = sha};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, gen_read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &g);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tbuf_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, tbuf_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    testsrv_curl_setup(s, c);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        free(b.p);
        free(h.p);
        return -1;
    }
    out->body = b.p ? b.p : calloc(1, 1);
    out->len = b.n;
    out->headers = h.p ? h.p : calloc(1, 1);
    return 0;
}

struct hash_sink {
    struct integ_sha *sha;
    uint64_t n;
};

static size_t
hash_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct hash_sink *k = arg;
    integ_sha_update(k->sha, data, size * nmemb);
    k->n += size * nmemb;
    return size * nmemb;
}

long
integ_get_hash(const struct testsrv *s, const char *path, const char *const *headers,
               char *digest_out, uint64_t *size)
{
    char url[2048];
    full_url(s, path, url, sizeof(url));
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct hash_sink k = {.sha = integ_sha_new()};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, hash_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    testsrv_curl_setup(s, c);
    long st = -1;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    char dg[72];
    integ_sha_final(k.sha, dg);
    if (digest_out)
        memcpy(digest_out, dg, sizeof(dg));
    if (size)
        *size = k.n;
    return st;
}

long
integ_head_size(const struct testsrv *s, const char *path, int64_t *size)
{
    struct tresp r;
    *size = -1;
    if (treq(s, "HEAD", path, NULL, NULL, 0, &r) < 0)
        return -1;
    char v[64];
    if (tresp_header(&r, "Content-Length", v, sizeof(v)))
        *size = strtoll(v, NULL, 10);
    long st = r.status;
    tresp_free(&r);
    return st;
}

char *
integ_url_with(const char *url, const char *query, char *out, size_t cap)
{
    snprintf(out, cap, "%s%c%s", url, strchr(url, '?') ? '&' : '?', query);
    return out;
}

long
integ_upload_start(const struct testsrv *s, const char *repo, char *loc, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
    struct tresp r;
    if (treq(s, "POST", path, NULL, NULL, 0, &r) < 0)
        return -1;
    long st = r.status;
    if (st == 202 && !tresp_header(&r, "Location", loc, cap))
        st = 0; /* 202 without Location: a protocol error the caller reports */
    tresp_free(&r);
    return st;
}

static uint64_t
range_next(const struct tresp *r)
{
    char v[128];
    if (!tresp_header(r, "Range", v, sizeof(v)))
        return 0;
    const char *dash = strchr(v, '-');
    if (!dash)
        return 0;
    return strtoull(dash + 1, NULL, 10) + 1;
}

long
integ_upload_patch(const struct testsrv *s, char *loc, size_t cap, uint64_t seed, uint64_t off,
                   uint64_t len, uint64_t *next_off)
{
    char cr[96];
    snprintf(cr, sizeof(cr), "Content-Range: %" PRIu64 "-%" PRIu64, off, len ? off + len - 1 : off);
    const char *h[] = {"Content-Type: application/octet-stream", cr, NULL};
    struct tresp r;
    if (integ_send_pattern(s, "PATCH", loc, h, seed, off, len, NULL, &r) < 0)
        return -1;
    long st = r.status;
    if (st == 202) {
        char nl[1024];
        if (tresp_header(&r, "Location", nl, sizeof(nl)))
            snprintf(loc, cap, "%s", nl);
        if (next_off)
            *next_off = range_next(&r);
    }
    tresp_free(&r);
    return st;
}

long
integ_upload_finish(const struct testsrv *s, const char *loc, const char *digest, uint64_t seed,
                    uint64_t off, uint64_t len)
{
    char q[100], url[1200];
    snprintf(q, sizeof(q), "digest=%s", digest);
    integ_url_with(loc, q, url, sizeof(url));
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    struct tresp r;
    if (integ_send_pattern(s, "PUT", url, h, seed, off, len, NULL, &r) < 0)
        return -1;
    long st = r.status;
    tresp_free(&r);
    return st;
}

long
integ_upload_status(const struct testsrv *s, const char *loc, uint64_t *next_off)
{
    struct tresp r;
    if (treq(s, "GET", loc, NULL, NULL, 0, &r) < 0)
        return -1;
    long st = r.status;
    if (next_off)
        *next_off = st == 204 ? range_next(&r) : 0;
    tresp_free(&r);
    return st;
}

int
integ_json_error(const char *body, size_t len, char *code, size_t ccap, char *msg, size_t mcap)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    int rc = -1;
    if (!j)
        return -1;
    json_t *errs = json_object_get(j, "errors");
    json_t *e0 = json_is_array(errs) ? json_array_get(errs, 0) : NULL;
    json_t *c = e0 ? json_object_get(e0, "code") : NULL;
    if (json_is_string(c)) {
        json_t *m = json_object_get(e0, "message");
        if (code)
            snprintf(code, ccap, "%s", json_string_value(c));
        if (msg)
            snprintf(msg, mcap, "%s", json_is_string(m) ? json_string_value(m) : "");
        rc = 0;
    }
    json_decref(j);
    return rc;
}

/* ---- raw streaming sender ---------------------------------------------------------- */

int
integ_status_of(const char *resp)
{
    if (strncmp(resp, "HTTP/1.", 7) != 0 || strlen(resp) < 12)
        return 0;
    return atoi(resp + 9);
}

const char *
integ_body_of(const char *resp)
{
    const char *e = strstr(resp, "\r\n\r\n");
    return e ? e + 4 : "";
}

/* complete: a final (non-1xx) response with its whole Content-Length body */
static int
raw_complete(const char *resp, size_t got, size_t *final_off, int head)
{
    size_t base = 0;
    for (;;) {
        const char *hend = strstr(resp + base, "\r\n\r\n");
        if (!hend)
            return 0;
        int st = integ_status_of(resp + base);
        size_t hlen = (size_t)(hend + 4 - (resp + base));
        if (st >= 100 && st < 200) {
            base += hlen;
            continue;
        }
        *final_off = base;
        if (head || st == 204 || st == 304)
            return 1;
        const char *cl = strcasestr(resp + base, "\r\nContent-Length:");
        if (!cl || cl > hend)
            return 0; /* read until close */
        size_t blen = strtoull(cl + 17, NULL, 10);
        return got >= base + hlen + blen;
    }
}

long
integ_raw_send_pattern(const struct testsrv *s, const char *head, uint64_t seed, uint64_t off,
                       uint64_t len, char *resp, size_t cap, int timeout_ms, uint64_t *sent)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    unsigned char *buf = malloc(GEN_BUF);
    if (!buf)
        abort();
    size_t hlen = strlen(head), hsent = 0, bpos = 0, bfill = 0;
    uint64_t boff = 0;
    size_t got = 0;
    int closed = 0, wdead = 0;
    size_t final_off = 0;
    int is_head = strncmp(head, "HEAD ", 5) == 0;
    int64_t deadline = integ_now_ms() + timeout_ms;
    resp[0] = '\0';
    while (!closed && integ_now_ms() < deadline) {
        int want_w = !wdead && (hsent < hlen || boff < len || bpos < bfill);
        struct pollfd p = {.fd = fd, .events = (short)(POLLIN | (want_w ? POLLOUT : 0))};
        int pr = poll(&p, 1, (int)(deadline - integ_now_ms()));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, resp + got, cap - 1 - got, 0);
            if (r > 0) {
                got += (size_t)r;
                resp[got] = '\0';
                if (raw_complete(resp, got, &final_off, is_head))
                    break;
                if (got + 1 >= cap)
                    break;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                closed = 1;
            }
        }
        if (want_w && (p.revents & POLLOUT)) {
            ssize_t w;
            if (hsent < hlen) {
                w = send(fd, head + hsent, hlen - hsent, MSG_NOSIGNAL);
                if (w > 0)
                    hsent += (size_t)w;
            } else {
                if (bpos == bfill) {
                    size_t n = len - boff < GEN_BUF ? (size_t)(len - boff) : GEN_BUF;
                    integ_pattern(seed, off + boff, buf, n);
                    bpos = 0;
                    bfill = n;
                    boff += n;
                }
                w = send(fd, buf + bpos, bfill - bpos, MSG_NOSIGNAL);
                if (w > 0)
                    bpos += (size_t)w;
            }
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                wdead = 1; /* the server stopped reading: keep reading its reply */
        }
    }
    if (sent)
        *sent = boff - (bfill - bpos);
    free(buf);
    close(fd);
    if (final_off) {
        memmove(resp, resp + final_off, got - final_off + 1);
    } else if (integ_status_of(resp) == 100) {
        const char *e = strstr(resp, "\r\n\r\n");
        if (e)
            memmove(resp, e + 4, strlen(e + 4) + 1);
    }
    return integ_status_of(resp);
}

/* ---- storage root ---------------------------------------------------------------- */

static int
is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    return s[n] == '\0';
}

static int
is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

#define PROBLEM(...)                                                                               \
    do {                                                                                           \
        if (nprob++ == 0)                                                                          \
            snprintf(why, cap, __VA_ARGS__);                                                       \
    } while (0)

int
integ_layout_check(const char *root, int verify, int *nuploads,
                   void (*fn)(void *arg, const char *digest), void *arg, char *why, size_t cap)
{
    int nprob = 0;
    *nuploads = 0;
    snprintf(why, cap, "ok");
    char p[1024];
    DIR *d = opendir(root);
    if (!d) {
        snprintf(why, cap, "cannot open root %s", root);
        return 1;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "blobs") || !strcmp(n, "uploads") ||
            !strncmp(n, "meta.db", 7) || !strcmp(n, "lock"))
            continue;
        PROBLEM("unexpected entry in the storage root: %s", n);
    }
    closedir(d);

    snprintf(p, sizeof(p), "%s/uploads", root);
    if ((d = opendir(p))) {
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            (*nuploads)++;
            if (!is_uuid(de->d_name))
                PROBLEM("unexpected entry in uploads/: %s", de->d_name);
        }
        closedir(d);
    }

    static const char *const algos[] = {"sha256", "sha512"};
    for (int ai = 0; ai < 2; ai++) {
        size_t hexlen = ai == 0 ? 64 : 128;
        snprintf(p, sizeof(p), "%s/blobs/%s", root, algos[ai]);
        DIR *d1 = opendir(p);
        if (!d1)
            continue;
        while ((de = readdir(d1))) {
            const char *n1 = de->d_name;
            if (!strcmp(n1, ".") || !strcmp(n1, ".."))
                continue;
            char p2[1100];
            snprintf(p2, sizeof(p2), "%s/%s", p, n1);
            if (strlen(n1) != 2 || !is_hex(n1, 2)) {
                PROBLEM("unexpected entry in blobs/%s/: %s", algos[ai], n1);
                continue;
            }
            DIR *d2 = opendir(p2);
            if (!d2) {
                PROBLEM("blobs/%s/%s is not a folder", algos[ai], n1);
                continue;
            }
            struct dirent *de2;
            while ((de2 = readdir(d2))) {
                const char *n2 = de2->d_name;
                if (!strcmp(n2, ".") || !strcmp(n2, ".."))
                    continue;
                if (strlen(n2) != hexlen || !is_hex(n2, hexlen) || strncmp(n2, n1, 2) != 0) {
                    PROBLEM("unexpected entry in blobs/%s/%s/: %s", algos[ai], n1, n2);
                    continue;
                }
                char fp[1300];
                snprintf(fp, sizeof(fp), "%s/%s", p2, n2);
                struct stat sb;
                if (lstat(fp, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                    PROBLEM("blob %s is not a regular file", fp);
                    continue;
                }
                if (verify && ai == 0) {
                    char dg[72];
                    if (integ_hash_file(fp, dg, NULL) < 0 || strcmp(dg + 7, n2) != 0)
                        PROBLEM("blob file %s holds bytes hashing to %s", fp, dg);
                }
                if (fn) {
                    char dg[200];
                    snprintf(dg, sizeof(dg), "%s:%s", algos[ai], n2);
                    fn(arg, dg);
                }
            }
            closedir(d2);
        }
        closedir(d1);
    }
    return nprob;
}

uint64_t
integ_free_bytes(const char *path)
{
    struct statvfs v;
    if (statvfs(path, &v) < 0)
        return 0;
    return (uint64_t)v.f_bavail * v.f_frsize;
}

long
integ_proc_kb(pid_t pid, const char *field)
{
    char p[64], line[256];
    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

long
integ_proc_cpu_ms(pid_t pid)
{
    char p[64], line[1024];
    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    long v = -1;
    if (fgets(line, sizeof(line), f)) {
        /* fields after the ")" that ends the command name: state is field 3,
         * utime 14 and stime 15 */
        char *q = strrchr(line, ')');
        unsigned long ut = 0, stm = 0;
        if (q &&
            sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stm) == 2)
            v = (long)((ut + stm) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
    }
    fclose(f);
    return v;
}

int
integ_server_is_asan(void)
{
    const char *b = getenv("OCIREG_BIN");
    if (!b || !*b)
        b = "build/ocireg";
    int fd = open(b, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat sb;
    int found = 0;
    if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            found = memmem(m, (size_t)sb.st_size, "__asan_init", 11) != NULL;
            munmap(m, (size_t)sb.st_size);
        }
    }
    close(fd);
    return found;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void
integ_rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- hostile JSON ---- */

char *
integ_json_padded(const char *base, size_t n, const char *item)
{
    size_t il = item ? strlen(item) + 1 : 2;
    size_t bl = strlen(base) - 1, cap = bl + 16 + n * il;
    char *b = malloc(cap);
    memcpy(b, base, bl);
    size_t off = bl + (size_t)snprintf(b + bl, cap - bl, ",\"x\":");
    if (item) {
        b[off++] = '[';
        for (size_t i = 0; i < n; i++) {
            if (i)
                b[off++] = ',';
            memcpy(b + off, item, il - 1);
            off += il - 1;
        }
        b[off++] = ']';
    } else {
        memset(b + off, '[', n);
        memset(b + off + n, ']', n);
        off += 2 * n;
    }
    b[off++] = '}';
    b[off] = '\0';
    return b;
}
