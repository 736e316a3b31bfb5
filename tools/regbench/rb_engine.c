/* rb_engine.c - the load engine, see rb_engine.h.
 *
 * Per connection operation state (struct rb_conn.step):
 *   push:          0 POST upload -> 1 PUT ?digest= with body -> done
 *   push chunked:  0 POST upload -> 1 PATCH chunk (repeat while bytes left)
 *                  -> 2 PUT ?digest= empty -> done
 *   every other op: 0 one request -> done
 * After an operation completes (or fails) the connection takes the next one if
 * the phase's budget (count, deadline, error cap) allows, else it retires.
 *
 * libcurl path (uploads, or everything with use_curl): the easy handle is
 * removed from and re-added to the worker's multi handle between requests so its
 * connection returns to the multi's cache and is reused; the multi-socket API
 * with epoll services only the sockets with activity. The raw path for GET/HEAD
 * has its own state machine, described above raw_submit(). */
#include "tools/regbench/rb_engine.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "common/err.h"
#include "tools/regbench/rb_json.h"
#include "tools/regbench/rb_tls.h"
#include "tools/regbench/rb_util.h"
#include "common/banned.h"

#define ERR_CAP 100 /* a phase stops starting operations after this many errors */
#define SNIPPET 240 /* bytes of an error response body kept for the message */

struct rb_shared {
    const struct rb_phase *p;
    atomic_uint_fast64_t next; /* next operation index */
    atomic_uint_fast64_t nerrors;
    atomic_int stop;
    uint64_t deadline_ns; /* 0 = none */
    pthread_mutex_t mu;   /* guards the error list of r */
    struct rb_result *r;
    size_t baselen;
    struct curl_slist *h_octet; /* PUT blob */
    struct curl_slist *h_mput;  /* PUT manifest */
    struct curl_slist *h_mget;  /* GET manifest */
    struct curl_slist *h_post;  /* POST upload */
    struct curl_slist *h_get;   /* GET/HEAD without Accept: the extra headers (or NULL) */
    char *raw_hdrs;             /* raw engine: the extra headers, "Name: value\r\n"... */
    /* raw engine (GET/HEAD over plain sockets) */
    int raw;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char hostport[300];
};

struct rb_worker;

struct rb_conn {
    CURL *h;
    struct rb_worker *w;
    int step;
    uint64_t idx;
    uint64_t t0;
    const struct rb_blob *blob;
    struct rb_blob own; /* inline-generated push blob */
    char repo[300];
    /* upload source */
    uint64_t up_pos, up_end;
    const unsigned char *up_mem; /* manifest body, else blob */
    uint64_t chunk_off;
    uint64_t range_off, range_len;
    struct curl_slist *h_patch; /* per-chunk headers */
    /* response */
    long status;
    char location[1024];
    char dcd[RB_DIGEST_MAX];
    char crange[128];
    int has_link;
    uint64_t rx;
    int hashing;
    int range_check;
    int range_bad;
    int keep_body;
    EVP_MD_CTX *md;
    char *body;
    size_t body_len, body_cap;
    char snippet[SNIPPET + 1];
    size_t snippet_len;
    unsigned char *scratch; /* expected bytes for Range checks */
    size_t scratch_cap;
    char url[2048];
    char manifest[4096];
    size_t manifest_len;
    char mdigest[RB_DIGEST_MAX];
    char range_hdr[64];
    char errbuf[CURL_ERROR_SIZE];
    int64_t clen;   /* Content-Length of the response, -1 if none */
    uint32_t watch; /* raw engine: events registered with epoll, 0 = none */
    /* raw engine state */
    int fd;
    int rstate;     /* RAW_* */
    int head;       /* HEAD request: no body */
    int reused;     /* the request went out on a kept-alive connection */
    int retried;    /* re-sent once after the server closed a kept-alive one */
    int conn_close; /* response said Connection: close */
    uint64_t deadline;
    SSL *ssl;       /* TLS of the raw connection, NULL for plain HTTP */
    uint32_t want;  /* TLS: the event OpenSSL waits for after WANT_READ/WRITE */
    char *req;      /* formatted request, req_cap bytes */
    size_t req_cap;
    size_t req_len, req_off;
    unsigned char *rbuf;
    size_t rcap, rlen;
    int body_mode; /* BODY_* */
    uint64_t body_left;
    int ck_state; /* CK_* chunked decoder */
    uint64_t ck_size;
    int ck_digits;
    int ck_line_empty;
    const char *terr; /* transport error of the raw engine */
    char terrbuf[320];
    char tlswhy[240]; /* the OpenSSL reason of the last TLS failure (errno EPROTO) */
};

struct rb_worker {
    pthread_t th;
    struct rb_shared *sh;
    CURLM *m;
    struct rb_conn *conns;
    int nconns;
    struct rb_hist hist;
    uint64_t ops, reqs, bytes, errs;
    int started;
    int ep; /* epoll fd, -1 if none */
    int timer_set;
    uint64_t timer_ns;
};

uint64_t
rb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *
op_name(enum rb_op op)
{
    switch (op) {
    case RB_OP_PUSH:
        return "push";
    case RB_OP_PUSH_CHUNKED:
        return "push-chunked";
    case RB_OP_PULL:
        return "pull";
    case RB_OP_RANGE:
        return "pull-range";
    case RB_OP_MANIFEST_PUT:
        return "manifest-put";
    case RB_OP_MANIFEST_GET:
        return "manifest-get";
    case RB_OP_HEAD:
        return "head-blob";
    case RB_OP_TAGS:
        return "tags-list";
    case RB_OP_CATALOG:
        return "catalog";
    }
    return "?";
}

/* record one failed operation; identical messages are counted together */
static void __attribute__((format(printf, 2, 3))) conn_fail(struct rb_conn *c, const char *fmt, ...)
{
    struct rb_shared *sh = c->w->sh;
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->w->errs++;
    if (atomic_fetch_add(&sh->nerrors, 1) + 1 >= ERR_CAP)
        atomic_store(&sh->stop, 1);
    pthread_mutex_lock(&sh->mu);
    struct rb_result *r = sh->r;
    int i;
    for (i = 0; i < r->nerr; i++)
        if (strcmp(r->err_msg[i], msg) == 0)
            break;
    if (i < r->nerr) {
        r->err_count[i]++;
    } else if (r->nerr < RB_MAX_ERRS) {
        snprintf(r->err_msg[r->nerr], sizeof(r->err_msg[0]), "%s", msg);
        r->err_count[r->nerr++] = 1;
    } else {
        r->err_count[RB_MAX_ERRS - 1]++; /* counted with the last kept message */
    }
    pthread_mutex_unlock(&sh->mu);
}

/* ---- curl callbacks ------------------------------------------------------ */

static void
copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int
hdr_is(const char *p, size_t n, const char *name, size_t *vofs)
{
    size_t k = strlen(name);
    if (n <= k || p[k] != ':' || strncasecmp(p, name, k) != 0)
        return 0;
    *vofs = k + 1;
    return 1;
}

static size_t
on_header(char *p, size_t sz, size_t nm, void *ud)
{
    struct rb_conn *c = ud;
    size_t n = sz * nm, v;
    if (n > 5 && memcmp(p, "HTTP/", 5) == 0) {
        const char *sp = memchr(p, ' ', n);
        c->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        c->location[0] = c->dcd[0] = c->crange[0] = '\0';
        c->has_link = 0;
        c->clen = -1;
    } else if (hdr_is(p, n, "location", &v)) {
        copy_value(c->location, sizeof(c->location), p + v, n - v);
    } else if (hdr_is(p, n, "docker-content-digest", &v)) {
        copy_value(c->dcd, sizeof(c->dcd), p + v, n - v);
    } else if (hdr_is(p, n, "content-range", &v)) {
        copy_value(c->crange, sizeof(c->crange), p + v, n - v);
    } else if (hdr_is(p, n, "link", &v)) {
        c->has_link = 1;
    } else if (hdr_is(p, n, "content-length", &v)) {
        c->clen = strtoll(p + v, NULL, 10);
    }
    return n;
}

static size_t
on_body(char *p, size_t sz, size_t nm, void *ud)
{
    struct rb_conn *c = ud;
    size_t n = sz * nm;
    if (c->status < 200 || c->status > 299) {
        size_t k = SNIPPET - c->snippet_len < n ? SNIPPET - c->snippet_len : n;
        memcpy(c->snippet + c->snippet_len, p, k);
        c->snippet_len += k;
        c->snippet[c->snippet_len] = '\0';
        return n;
    }
    if (c->hashing)
        EVP_DigestUpdate(c->md, p, n);
    if (c->range_check && !c->range_bad) {
        if (c->rx + n > c->range_len) {
            c->range_bad = 1;
        } else {
            if (n > c->scratch_cap) {
                free(c->scratch);
                c->scratch_cap = n;
                c->scratch = malloc(n);
                if (!c->scratch)
                    return 0;
            }
            rb_blob_read(c->blob, c->range_off + c->rx, c->scratch, n);
            if (memcmp(c->scratch, p, n) != 0)
                c->range_bad = 1;
        }
    }
    if (c->keep_body) {
        if (c->body_len + n + 1 > c->body_cap) {
            size_t cap = c->body_cap ? c->body_cap : 4096;
            while (cap < c->body_len + n + 1)
                cap *= 2;
            char *nb = realloc(c->body, cap);
            if (!nb)
                return 0;
            c->body = nb;
            c->body_cap = cap;
        }
        memcpy(c->body + c->body_len, p, n);
        c->body_len += n;
        c->body[c->body_len] = '\0';
    }
    c->rx += n;
    return n;
}

static size_t
on_read(char *buf, size_t sz, size_t nm, void *ud)
{
    struct rb_conn *c = ud;
    size_t want = sz * nm;
    if (c->up_end - c->up_pos < want)
        want = (size_t)(c->up_end - c->up_pos);
    if (want == 0)
        return 0;
    if (c->up_mem)
        memcpy(buf, c->up_mem + c->up_pos, want);
    else
        rb_blob_read(c->blob, c->up_pos, buf, want);
    c->up_pos += want;
    return want;
}

/* ---- request set-up ------------------------------------------------------ */

static void
req_reset(struct rb_conn *c, const char *url)
{
    if (url != c->url)
        snprintf(c->url, sizeof(c->url), "%s", url);
    c->status = 0;
    c->location[0] = c->dcd[0] = c->crange[0] = '\0';
    c->has_link = 0;
    c->clen = -1;
    c->rx = 0;
    c->snippet_len = 0;
    c->snippet[0] = '\0';
    c->body_len = 0;
    c->hashing = c->range_check = c->range_bad = c->keep_body = 0;
    c->errbuf[0] = '\0';
    if (c->w->sh->raw)
        return;
    curl_easy_setopt(c->h, CURLOPT_URL, c->url);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L); /* also clears NOBODY, UPLOAD, POST */
    curl_easy_setopt(c->h, CURLOPT_RANGE, NULL);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, NULL);
}

#define ACCEPT_MANIFESTS                                                                           \
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "        \
    "application/vnd.docker.distribution.manifest.v2+json, "                                       \
    "application/vnd.docker.distribution.manifest.list.v2+json"

/* GET (or HEAD) url; accept: send the manifest Accept types; range: "a-b" or NULL */
static void
req_get(struct rb_conn *c, const char *url, int accept, const char *range, int head)
{
    struct rb_shared *sh = c->w->sh;
    req_reset(c, url);
    c->head = head;
    if (sh->raw) {
        /* the raw engine writes the whole request at once; no heap */
        const char *path = c->url + sh->baselen;
        int n = snprintf(c->req, c->req_cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s%s\r\n",
                         head ? "HEAD" : "GET", path, sh->hostport,
                         accept ? "Accept: " ACCEPT_MANIFESTS "\r\n" : "",
                         range ? "Range: bytes=" : "", range ? range : "", range ? "\r\n" : "",
                         "User-Agent: regbench\r\n", sh->raw_hdrs ? sh->raw_hdrs : "");
        c->req_len = n > 0 && (size_t)n < c->req_cap ? (size_t)n : 0;
        return;
    }
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, accept ? sh->h_mget : sh->h_get);
    if (range)
        curl_easy_setopt(c->h, CURLOPT_RANGE, range);
    if (head)
        curl_easy_setopt(c->h, CURLOPT_NOBODY, 1L);
}

static void
req_post_empty(struct rb_conn *c, const char *url)
{
    req_reset(c, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->w->sh->h_post);
    curl_easy_setopt(c->h, CURLOPT_POST, 1L);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
}

/* PUT or PATCH with the body [pos, end) of the blob (or of up_mem) */
static void
req_upload(struct rb_conn *c, const char *url, const char *method, struct curl_slist *hdrs,
           const unsigned char *mem, uint64_t pos, uint64_t end)
{
    req_reset(c, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c->h, CURLOPT_UPLOAD, 1L);
    if (method)
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    c->up_mem = mem;
    c->up_pos = pos;
    c->up_end = end;
    curl_easy_setopt(c->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(end - pos));
}

/* the upload URL from the Location header; it must stay on the base URL */
static int
next_location(struct rb_conn *c, const char *what)
{
    struct rb_shared *sh = c->w->sh;
    const char *loc = c->location;
    char tmp[2048];
    if (loc[0] == '\0') {
        conn_fail(c, "%s: no Location header in the %ld response", what, c->status);
        return -1;
    }
    if (loc[0] == '/') {
        snprintf(tmp, sizeof(tmp), "%s%s", sh->p->base, loc);
    } else if (strncmp(loc, sh->p->base, sh->baselen) == 0 && loc[sh->baselen] == '/') {
        snprintf(tmp, sizeof(tmp), "%s", loc);
    } else {
        conn_fail(c, "%s: Location '%.200s' leaves the registry URL", what, loc);
        return -1;
    }
    snprintf(c->url, sizeof(c->url), "%s", tmp);
    return 0;
}

static void
fail_status(struct rb_conn *c, const char *what, long want)
{
    for (size_t i = 0; i < c->snippet_len; i++)
        if (!isprint((unsigned char)c->snippet[i]))
            c->snippet[i] = ' ';
    conn_fail(c, "%s: status %ld (want %ld)%s%.200s", what, c->status, want,
              c->snippet_len ? ": " : "", c->snippet);
}

/* 0 if the response has status want, else the op fails (recorded) with -1 */
static int
expect_status(struct rb_conn *c, const char *what, long want)
{
    if (c->status == want)
        return 0;
    fail_status(c, what, want);
    return -1;
}

/* 0 unless the response's Docker-Content-Digest is present and not want; then
 * the op fails (recorded) with -1. `whose` ends the message ("blob's digest") */
static int
expect_dcd(struct rb_conn *c, const char *what, const char *want, const char *whose)
{
    if (!c->dcd[0] || strcmp(c->dcd, want) == 0)
        return 0;
    conn_fail(c, "%s: Docker-Content-Digest %.80s is not the %s", what, c->dcd, whose);
    return -1;
}

/* ---- operations ------------------------------------------------------------ */

static void
start_patch(struct rb_conn *c)
{
    struct rb_shared *sh = c->w->sh;
    uint64_t end = c->chunk_off + sh->p->chunk;
    if (end > c->blob->size)
        end = c->blob->size;
    char cr[96];
    curl_slist_free_all(c->h_patch);
    snprintf(cr, sizeof(cr), "Content-Range: %" PRIu64 "-%" PRIu64, c->chunk_off, end - 1);
    c->h_patch = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    c->h_patch = curl_slist_append(c->h_patch, "Expect:");
    c->h_patch = curl_slist_append(c->h_patch, cr);
    for (const char *const *x = sh->p->headers; x && *x; x++)
        c->h_patch = curl_slist_append(c->h_patch, *x);
    req_upload(c, c->url, "PATCH", c->h_patch, c->blob->mem, c->chunk_off, end);
}

static void
put_digest_url(struct rb_conn *c)
{
    size_t n = strlen(c->url);
    snprintf(c->url + n, sizeof(c->url) - n, "%cdigest=%s", strchr(c->url, '?') ? '&' : '?',
             c->blob->digest);
}

/* set up the first request of operation i; returns 0, or -1 (error recorded) */
static int
op_start(struct rb_conn *c, uint64_t i)
{
    struct rb_shared *sh = c->w->sh;
    const struct rb_phase *p = sh->p;
    char url[2048];
    c->idx = i;
    c->step = 0;
    if (p->repo_per_op)
        snprintf(c->repo, sizeof(c->repo), "%s-%" PRIu64, p->repo, i);
    else
        snprintf(c->repo, sizeof(c->repo), "%s", p->repo);
    if (p->nblobs > 0)
        c->blob = &p->blobs[i % p->nblobs];

    switch (p->op) {
    case RB_OP_PUSH:
    case RB_OP_PUSH_CHUNKED:
        if (p->nblobs == 0) {
            c->own.seed = p->seed + i;
            c->own.size = p->blob_size;
            c->own.mem = NULL;
            if (rb_blob_digest(&c->own) != 0) {
                conn_fail(c, "push: sha-256 failed");
                return -1;
            }
            c->blob = &c->own;
        }
        c->chunk_off = 0;
        snprintf(url, sizeof(url), "%s/v2/%s/blobs/uploads/", p->base, c->repo);
        req_post_empty(c, url);
        break;
    case RB_OP_PULL:
        snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", p->base, c->repo, c->blob->digest);
        req_get(c, url, 0, NULL, 0);
        EVP_DigestInit_ex(c->md, EVP_sha256(), NULL);
        c->hashing = 1;
        break;
    case RB_OP_RANGE: {
        uint64_t len = p->range_len < c->blob->size ? p->range_len : c->blob->size;
        uint64_t span = c->blob->size - len;
        /* a cheap deterministic spread of offsets */
        uint64_t x = (i + 1) * UINT64_C(0x9E3779B97F4A7C15) ^ p->seed;
        c->range_off = span ? (x >> 11) % (span + 1) : 0;
        c->range_len = len;
        snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", p->base, c->repo, c->blob->digest);
        snprintf(c->range_hdr, sizeof(c->range_hdr), "%" PRIu64 "-%" PRIu64, c->range_off,
                 c->range_off + len - 1);
        req_get(c, url, 0, c->range_hdr, 0);
        c->range_check = 1;
        break;
    }
    case RB_OP_HEAD:
        snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", p->base, c->repo, c->blob->digest);
        req_get(c, url, 0, NULL, 1);
        break;
    case RB_OP_MANIFEST_PUT: {
        int n = snprintf(c->manifest, sizeof(c->manifest), "%s%" PRIu64 "%s", p->manifest_head, i,
                         p->manifest_tail);
        if (n < 0 || (size_t)n >= sizeof(c->manifest)) {
            conn_fail(c, "manifest-put: manifest too large");
            return -1;
        }
        c->manifest_len = (size_t)n;
        if (rb_sha256_buf(c->manifest, c->manifest_len, c->mdigest) != 0) {
            conn_fail(c, "manifest-put: sha-256 failed");
            return -1;
        }
        snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s%" PRIu64, p->base, c->repo, p->tag_prefix,
                 i);
        req_upload(c, url, NULL, sh->h_mput, (const unsigned char *)c->manifest, 0,
                   c->manifest_len);
        break;
    }
    case RB_OP_MANIFEST_GET:
        snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", p->base, c->repo, p->tag);
        req_get(c, url, 1, NULL, 0);
        EVP_DigestInit_ex(c->md, EVP_sha256(), NULL);
        c->hashing = 1;
        break;
    case RB_OP_TAGS:
        snprintf(url, sizeof(url), "%s/v2/%s/tags/list", p->base, c->repo);
        req_get(c, url, 0, NULL, 0);
        c->keep_body = 1;
        break;
    case RB_OP_CATALOG:
        snprintf(url, sizeof(url), "%s/v2/_catalog", p->base);
        req_get(c, url, 0, NULL, 0);
        c->keep_body = 1;
        break;
    }
    c->t0 = rb_now_ns();
    return 0;
}

static int
digest_final_matches(struct rb_conn *c, const char *want)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char got[RB_DIGEST_MAX];
    if (EVP_DigestFinal_ex(c->md, md, &mdlen) != 1 || mdlen != 32)
        return 0;
    rb_sha256_hex(md, got);
    return strcmp(got, want) == 0;
}

static int
check_tags(struct rb_conn *c)
{
    const struct rb_phase *p = c->w->sh->p;
    const char *name;
    size_t name_len, n;
    int esc;
    char why[128];
    if (rb_json_tags(c->body ? c->body : "", c->body_len, &name, &name_len, &esc, &n, why,
                     sizeof(why)) != 0) {
        conn_fail(c, "tags-list: body is not {\"name\",\"tags\"} JSON: %s", why);
        return 0;
    }
    if (esc || name_len != strlen(c->repo) || memcmp(name, c->repo, name_len) != 0) {
        conn_fail(c, "tags-list: name '%.*s' is not '%.100s'",
                  (int)(name_len < 100 ? name_len : 100), name, c->repo);
        return 0;
    }
    if (p->expect_tags && n != p->expect_tags) {
        conn_fail(c, "tags-list: %zu tags, want %" PRIu64 "%s", n, p->expect_tags,
                  c->has_link ? " (paginated: Link header)" : "");
        return 0;
    }
    return 1;
}

static int
check_catalog(struct rb_conn *c)
{
    json_error_t je;
    int ok = 0;
    json_t *j = json_loadb(c->body, c->body_len, 0, &je);
    json_t *repos = j ? json_object_get(j, "repositories") : NULL;
    if (!j || !json_is_array(repos)) {
        conn_fail(c, "catalog: body is not {\"repositories\":[...]} JSON");
        goto out;
    }
    int found = 0;
    for (size_t k = 0; k < json_array_size(repos); k++) {
        json_t *s = json_array_get(repos, k);
        if (!json_is_string(s)) {
            conn_fail(c, "catalog: a repository is not a string");
            goto out;
        }
        if (strcmp(json_string_value(s), c->repo) == 0)
            found = 1;
    }
    /* a paginated answer may legitimately end before our repository */
    if (!found && !c->has_link) {
        conn_fail(c, "catalog: repository '%.100s' missing", c->repo);
        goto out;
    }
    ok = 1;
out:
    json_decref(j);
    return ok;
}

/* a transfer finished: 1 = next request of the op set up, 0 = op done and
 * passed its checks, -1 = op failed (recorded) */
static int
op_done(struct rb_conn *c, const char *terr)
{
    struct rb_shared *sh = c->w->sh;
    const struct rb_phase *p = sh->p;
    const char *what = op_name(p->op);
    if (terr) {
        conn_fail(c, "%s: %s%s%s", what, terr, c->errbuf[0] ? ": " : "", c->errbuf);
        return -1;
    }
    switch (p->op) {
    case RB_OP_PUSH:
    case RB_OP_PUSH_CHUNKED:
        if (c->step == 0) {
            if (expect_status(c, "push: POST upload", 202) != 0 ||
                next_location(c, "push: POST upload") != 0)
                return -1;
            if (p->op == RB_OP_PUSH) {
                put_digest_url(c);
                c->step = 2;
                req_upload(c, c->url, NULL, sh->h_octet, c->blob->mem, 0, c->blob->size);
            } else {
                c->step = 1;
                start_patch(c);
            }
            return 1;
        }
        if (c->step == 1) {
            if (expect_status(c, "push-chunked: PATCH", 202) != 0 ||
                next_location(c, "push-chunked: PATCH") != 0)
                return -1;
            c->chunk_off = c->up_end;
            if (c->chunk_off < c->blob->size) {
                start_patch(c);
            } else {
                put_digest_url(c);
                c->step = 2;
                req_upload(c, c->url, NULL, sh->h_octet, NULL, 0, 0);
            }
            return 1;
        }
        if (expect_status(c, "push: PUT upload", 201) != 0 ||
            expect_dcd(c, "push", c->blob->digest, "blob's digest") != 0)
            return -1;
        c->w->bytes += c->blob->size;
        return 0;
    case RB_OP_PULL:
        if (expect_status(c, "pull: GET blob", 200) != 0)
            return -1;
        if (c->rx != c->blob->size) {
            conn_fail(c, "pull: body has %" PRIu64 " bytes, blob has %" PRIu64, c->rx,
                      c->blob->size);
            return -1;
        }
        if (!digest_final_matches(c, c->blob->digest)) {
            conn_fail(c, "pull: digest mismatch: body of %.80s does not hash to it",
                      c->blob->digest);
            return -1;
        }
        if (expect_dcd(c, "pull", c->blob->digest, "blob's digest") != 0)
            return -1;
        c->w->bytes += c->rx;
        return 0;
    case RB_OP_RANGE: {
        if (expect_status(c, "pull-range: GET blob with Range", 206) != 0)
            return -1;
        char want[128];
        snprintf(want, sizeof(want), "bytes %" PRIu64 "-%" PRIu64 "/", c->range_off,
                 c->range_off + c->range_len - 1);
        if (strncmp(c->crange, want, strlen(want)) != 0) {
            conn_fail(c, "pull-range: Content-Range '%.60s' does not start with '%s'", c->crange,
                      want);
            return -1;
        }
        if (c->range_bad || c->rx != c->range_len) {
            conn_fail(c, "pull-range: body differs from the blob's bytes at that range");
            return -1;
        }
        c->w->bytes += c->rx;
        return 0;
    }
    case RB_OP_HEAD: {
        if (expect_status(c, "head-blob: HEAD", 200) != 0)
            return -1;
        if (c->clen != (int64_t)c->blob->size) {
            conn_fail(c, "head-blob: Content-Length %" PRId64 " is not the blob size %" PRIu64,
                      c->clen, c->blob->size);
            return -1;
        }
        return expect_dcd(c, "head-blob", c->blob->digest, "blob's digest");
    }
    case RB_OP_MANIFEST_PUT:
        if (expect_status(c, "manifest-put: PUT manifest", 201) != 0 ||
            expect_dcd(c, "manifest-put", c->mdigest, "manifest's") != 0)
            return -1;
        c->w->bytes += c->manifest_len;
        return 0;
    case RB_OP_MANIFEST_GET:
        if (expect_status(c, "manifest-get: GET manifest", 200) != 0)
            return -1;
        if (!digest_final_matches(c, p->manifest_digest)) {
            conn_fail(c, "manifest-get: digest mismatch: body does not hash to %.80s",
                      p->manifest_digest);
            return -1;
        }
        if (expect_dcd(c, "manifest-get", p->manifest_digest, "manifest's") != 0)
            return -1;
        c->w->bytes += c->rx;
        return 0;
    case RB_OP_TAGS:
    case RB_OP_CATALOG: {
        int tags = p->op == RB_OP_TAGS;
        if (expect_status(c, tags ? "tags-list: GET" : "catalog: GET", 200) != 0 ||
            !(tags ? check_tags(c) : check_catalog(c)))
            return -1;
        c->w->bytes += c->rx;
        return 0;
    }
    }
    return -1;
}

/* ---- raw engine: GET/HEAD over plain keep-alive sockets ---------------------
 *
 * For the request-rate scenarios libcurl's per-transfer work (handle re-adds,
 * liveness polls, header lists) costs the client more CPU than a fast server
 * spends on the request, and both share 2 cores. So GET and HEAD go out as one
 * pre-formatted send() on a kept-alive socket and the response is parsed in
 * place (status line and headers through on_header, the body through on_body,
 * Content-Length, chunked or until-close framing). Per request: one send, one or
 * more recv, a share of epoll_wait; no heap. --curl switches this off.
 *
 * States: IDLE -> (CONNECTING -> [HANDSHAKE ->]) [SENDING ->] HEAD -> BODY -> IDLE.
 * A request that finds its kept-alive connection closed before any byte of the
 * response is re-sent once on a new connection (what every HTTP/1.1 client does).
 *
 * TLS (an https base URL): the same machine over an SSL object on the same
 * non-blocking socket. HANDSHAKE runs once per connection, right after the TCP
 * connect; the keep-alive connection then carries every later request. OpenSSL
 * may want to read while writing or the reverse, so after WANT_READ/WANT_WRITE
 * the connection watches the event OpenSSL named (c->want), not the one its
 * state implies. Plain HTTP takes the send()/recv() branch of raw_io_*: one
 * predictable test of c->ssl per call is all it costs. */

enum { RAW_IDLE, RAW_CONNECTING, RAW_HANDSHAKE, RAW_SENDING, RAW_HEAD, RAW_BODY };
enum { BODY_NONE, BODY_LEN, BODY_CHUNKED, BODY_CLOSE };
enum { CK_SIZE, CK_EXT, CK_DATA, CK_DATA_END, CK_TRAILER };

static void
raw_close(struct rb_conn *c)
{
    /* no close_notify: the connection is dropped like a plain one, and the
     * server treats both the same */
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->watch = 0;
}

/* the result k of an SSL_read/SSL_write/SSL_do_handshake as send()/recv() would
 * give it: k > 0, 0 for the end of the stream, or -1 with errno EAGAIN (c->want
 * names the event to wait for), EPROTO (c->tlswhy holds OpenSSL's reason) or
 * the socket's errno */
static ssize_t
tls_result(struct rb_conn *c, int k)
{
    if (k > 0)
        return k;
    int saved = errno;
    switch (SSL_get_error(c->ssl, k)) {
    case SSL_ERROR_WANT_READ:
        c->want = EPOLLIN;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->want = EPOLLOUT;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN: /* close_notify, or an EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (saved == 0)
            return 0;
        errno = saved;
        return -1;
    default: {
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK)
            snprintf(c->tlswhy, sizeof(c->tlswhy), "certificate verify failed: %s",
                     X509_verify_cert_error_string(vr));
        else
            rb_tls_error(c->tlswhy, sizeof(c->tlswhy));
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
    }
}

static ssize_t
raw_io_send(struct rb_conn *c, const void *p, size_t n)
{
    if (!c->ssl)
        return send(c->fd, p, n, MSG_NOSIGNAL);
    return tls_result(c, SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
}

static ssize_t
raw_io_recv(struct rb_conn *c, void *p, size_t n)
{
    if (!c->ssl)
        return recv(c->fd, p, n, 0);
    return tls_result(c, SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
}

static int
raw_watch(struct rb_conn *c, uint32_t events)
{
    if (c->watch == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(c->w->ep, c->watch ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) != 0)
        return -1;
    c->watch = events;
    return 0;
}

static int
raw_terr(struct rb_conn *c, const char *what, int errnum)
{
    if (errnum == EPROTO && c->tlswhy[0])
        snprintf(c->terrbuf, sizeof(c->terrbuf), "%s: %s%s", what,
                 strncmp(what, "tls", 3) == 0 ? "" : "tls: ", c->tlswhy);
    else if (errnum)
        snprintf(c->terrbuf, sizeof(c->terrbuf), "%s: %s", what, strerror(errnum));
    else
        snprintf(c->terrbuf, sizeof(c->terrbuf), "%s", what);
    c->terr = c->terrbuf;
    return -1;
}

static int raw_submit(struct rb_conn *c);

/* the kept-alive connection died under a request with no response byte yet:
 * re-send once on a fresh connection, else fail */
static int
raw_lost(struct rb_conn *c, const char *what, int errnum)
{
    if (c->reused && !c->retried && c->rstate == RAW_HEAD && c->rlen == 0) {
        raw_close(c);
        c->retried = 1;
        return raw_submit(c);
    }
    if (c->reused && !c->retried && (c->rstate == RAW_SENDING || c->rstate == RAW_IDLE)) {
        raw_close(c);
        c->retried = 1;
        return raw_submit(c);
    }
    return raw_terr(c, what, errnum);
}

static int
raw_send(struct rb_conn *c)
{
    while (c->req_off < c->req_len) {
        ssize_t k = raw_io_send(c, c->req + c->req_off, c->req_len - c->req_off);
        if (k <= 0) {
            if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
                c->rstate = RAW_SENDING;
                return raw_watch(c, c->ssl ? c->want : EPOLLOUT) == 0
                           ? 0
                           : raw_terr(c, "epoll_ctl", errno);
            }
            return raw_lost(c, "send", k < 0 ? errno : EPIPE);
        }
        c->req_off += (size_t)k;
    }
    c->rstate = RAW_HEAD;
    return raw_watch(c, EPOLLIN) == 0 ? 0 : raw_terr(c, "epoll_ctl", errno);
}

/* send c->req (on the kept-alive connection, or a new one): 0 or -1 (c->terr) */
static int
raw_submit(struct rb_conn *c)
{
    struct rb_shared *sh = c->w->sh;
    if (c->req_len == 0)
        return raw_terr(c, "request line too long", 0);
    c->req_off = 0;
    c->rlen = 0;
    c->conn_close = 0;
    c->deadline = rb_now_ns() + (uint64_t)(sh->p->req_timeout * 1e9);
    if (c->fd >= 0) {
        c->reused = 1;
        c->rstate = RAW_IDLE;
        return raw_send(c);
    }
    c->reused = 0;
    c->fd = socket(sh->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return raw_terr(c, "socket", errno);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sh->addr, sh->addrlen) != 0 && errno != EINPROGRESS) {
        int en = errno;
        raw_close(c);
        return raw_terr(c, "connect", en);
    }
    c->rstate = RAW_CONNECTING;
    return raw_watch(c, EPOLLOUT) == 0 ? 0 : raw_terr(c, "epoll_ctl", errno);
}

static int
raw_sink(struct rb_conn *c, const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (on_body((char *)p, 1, n, c) != n)
        return raw_terr(c, "out of memory", 0);
    return 0;
}

/* end of a chunk-size line: the next chunk, or the trailer after the last */
static int
ck_size_done(struct rb_conn *c)
{
    if (c->ck_digits == 0)
        return raw_terr(c, "bad chunked encoding: no chunk size", 0);
    c->ck_state = c->ck_size ? CK_DATA : CK_TRAILER;
    c->ck_line_empty = 1;
    return 0;
}

/* feed n body bytes; *used = bytes that belong to this response. Returns 1 when
 * the body is complete, 0 for more, -1 on error */
static int
raw_body(struct rb_conn *c, const unsigned char *p, size_t n, size_t *used)
{
    size_t i = 0;
    *used = 0;
    switch (c->body_mode) {
    case BODY_NONE:
        return 1;
    case BODY_CLOSE:
        *used = n;
        return raw_sink(c, p, n) == 0 ? 0 : -1;
    case BODY_LEN: {
        size_t take = c->body_left < n ? (size_t)c->body_left : n;
        if (raw_sink(c, p, take) != 0)
            return -1;
        c->body_left -= take;
        *used = take;
        return c->body_left == 0;
    }
    }
    while (i < n) { /* chunked */
        unsigned char ch;
        switch (c->ck_state) {
        case CK_SIZE:
            ch = p[i++];
            if (isxdigit(ch)) {
                if (++c->ck_digits > 15)
                    return raw_terr(c, "bad chunked encoding: chunk size too long", 0);
                c->ck_size =
                    c->ck_size * 16 + (uint64_t)(isdigit(ch) ? ch - '0' : (ch | 32) - 'a' + 10);
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->ck_state = CK_EXT;
            } else if (ch == '\n') {
                if (ck_size_done(c) != 0)
                    return -1;
            } else if (ch != '\r') {
                return raw_terr(c, "bad chunked encoding: bad chunk size", 0);
            }
            break;
        case CK_EXT:
            if (p[i++] == '\n' && ck_size_done(c) != 0)
                return -1;
            break;
        case CK_DATA: {
            size_t take = c->ck_size < n - i ? (size_t)c->ck_size : n - i;
            if (raw_sink(c, p + i, take) != 0)
                return -1;
            i += take;
            c->ck_size -= take;
            if (c->ck_size == 0)
                c->ck_state = CK_DATA_END;
            break;
        }
        case CK_DATA_END:
            ch = p[i++];
            if (ch == '\n') {
                c->ck_state = CK_SIZE;
                c->ck_size = 0;
                c->ck_digits = 0;
            } else if (ch != '\r') {
                return raw_terr(c, "bad chunked encoding: no CRLF after chunk", 0);
            }
            break;
        case CK_TRAILER:
            ch = p[i++];
            if (ch == '\n') {
                if (c->ck_line_empty) {
                    *used = i;
                    return 1;
                }
                c->ck_line_empty = 1;
            } else if (ch != '\r') {
                c->ck_line_empty = 0;
            }
            break;
        }
    }
    *used = n;
    return 0;
}

/* headers complete in rbuf[0, hlen): parse them and set up the body framing */
static int
raw_headers(struct rb_conn *c, size_t hlen)
{
    char *b = (char *)c->rbuf, *end = b + hlen;
    int chunked = 0, close_ = 0;
    for (char *line = b; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t n = nl ? (size_t)(nl - line) + 1 : (size_t)(end - line);
        on_header(line, 1, n, c);
        if (line == b && n > 8 && memcmp(line, "HTTP/1.0", 8) == 0)
            close_ = 1;
        size_t v;
        if (hdr_is(line, n, "transfer-encoding", &v) && memmem(line + v, n - v, "chunked", 7))
            chunked = 1;
        if (hdr_is(line, n, "connection", &v) && memmem(line + v, n - v, "close", 5))
            close_ = 1;
        line += n;
    }
    if (c->status < 200)
        return raw_terr(c, "no HTTP status line", 0);
    c->conn_close = close_;
    c->ck_state = CK_SIZE;
    c->ck_size = 0;
    c->ck_digits = 0;
    if (c->head || c->status == 204 || c->status == 304) {
        c->body_mode = BODY_NONE;
    } else if (chunked) {
        c->body_mode = BODY_CHUNKED;
    } else if (c->clen >= 0) {
        c->body_mode = BODY_LEN;
        c->body_left = (uint64_t)c->clen;
    } else {
        c->body_mode = BODY_CLOSE;
        c->conn_close = 1;
    }
    return 0;
}

/* a read would block: 0, after watching the event TLS waits for (a plain
 * connection in HEAD/BODY watches EPOLLIN already) */
static int
raw_wait(struct rb_conn *c)
{
    if (c->ssl && raw_watch(c, c->want) != 0)
        return raw_terr(c, "epoll_ctl", errno);
    return 0;
}

/* TLS handshake step: 0 = in progress or done (then c->rstate is SENDING),
 * -1 = failed */
static int
raw_handshake(struct rb_conn *c)
{
    ssize_t k = tls_result(c, SSL_do_handshake(c->ssl));
    if (k > 0) {
        c->rstate = RAW_SENDING;
        return 0;
    }
    if (k < 0 && (errno == EAGAIN || errno == EINTR))
        return raw_wait(c);
    return raw_terr(c, k == 0 ? "tls handshake: connection closed by the server" : "tls handshake",
                    k == 0 ? 0 : errno);
}

/* socket activity: 0 = in progress, 1 = response complete, -1 = failed */
static int
raw_event(struct rb_conn *c)
{
    if (c->rstate == RAW_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err)
            return raw_terr(c, "connect", err);
        c->rstate = RAW_SENDING;
        if (c->w->sh->p->tls) {
            struct err e = {0};
            c->ssl = rb_tls_ssl_new(c->w->sh->p->tls, c->fd, &e);
            if (!c->ssl)
                return raw_terr(c, e.msg, 0);
            c->rstate = RAW_HANDSHAKE;
        }
    }
    if (c->rstate == RAW_HANDSHAKE) {
        if (raw_handshake(c) != 0)
            return -1;
        if (c->rstate == RAW_HANDSHAKE)
            return 0;
    }
    if (c->rstate == RAW_SENDING)
        return raw_send(c);
    for (;;) {
        if (c->rstate == RAW_HEAD) {
            if (c->rlen == c->rcap)
                return raw_terr(c, "response headers too large", 0);
            ssize_t k = raw_io_recv(c, c->rbuf + c->rlen, c->rcap - c->rlen);
            if (k < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return raw_wait(c);
                return raw_lost(c, "recv", errno);
            }
            if (k == 0)
                return raw_lost(c, "connection closed before the response", 0);
            size_t from = c->rlen > 3 ? c->rlen - 3 : 0;
            c->rlen += (size_t)k;
            unsigned char *eoh = memmem(c->rbuf + from, c->rlen - from, "\r\n\r\n", 4);
            if (!eoh)
                continue;
            size_t hlen = (size_t)(eoh - c->rbuf) + 4;
            if (raw_headers(c, hlen) != 0)
                return -1;
            c->rstate = RAW_BODY;
            size_t used;
            int r = raw_body(c, c->rbuf + hlen, c->rlen - hlen, &used);
            if (r < 0)
                return -1;
            if (r == 1)
                return hlen + used == c->rlen
                           ? 1
                           : raw_terr(c, "unexpected bytes after the response", 0);
            c->rlen = 0;
            continue;
        }
        ssize_t k = raw_io_recv(c, c->rbuf, c->rcap);
        if (k < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return raw_wait(c);
            return raw_terr(c, "recv", errno);
        }
        if (k == 0) {
            if (c->body_mode == BODY_CLOSE)
                return 1;
            return raw_terr(c, "connection closed in the middle of the body", 0);
        }
        size_t used;
        int r = raw_body(c, c->rbuf, (size_t)k, &used);
        if (r < 0)
            return -1;
        if (r == 1)
            return used == (size_t)k ? 1 : raw_terr(c, "unexpected bytes after the response", 0);
    }
}

/* ---- workers ------------------------------------------------------------- */

static int
take_op(struct rb_shared *sh, uint64_t *i)
{
    if (atomic_load(&sh->stop))
        return 0;
    if (sh->deadline_ns && rb_now_ns() >= sh->deadline_ns)
        return 0;
    uint64_t k = atomic_fetch_add(&sh->next, 1);
    if (sh->p->max_ops && k >= sh->p->max_ops)
        return 0;
    *i = k;
    return 1;
}

/* start the connection's next operation; 1 = started, 0 = budget spent */
static int
conn_next(struct rb_conn *c)
{
    uint64_t i;
    while (take_op(c->w->sh, &i)) {
        if (op_start(c, i) != 0)
            continue;
        if (!c->w->sh->raw) {
            curl_multi_add_handle(c->w->m, c->h);
            return 1;
        }
        c->retried = 0;
        if (raw_submit(c) == 0)
            return 1;
        raw_close(c);
        c->rstate = RAW_IDLE;
        c->w->reqs++;
        op_done(c, c->terr);
    }
    return 0;
}

/* a transfer of c ended (terr NULL: response complete): counted, and op_done's
 * answer returned; unless that is 1 (the op's next request is set up) the op is
 * over, recorded in the histogram when it passed, and c moves on to its next op
 * (*active drops when it has none) */
static int
transfer_done(struct rb_conn *c, const char *terr, int *active)
{
    struct rb_worker *w = c->w;
    w->reqs++;
    int rc = op_done(c, terr);
    if (rc == 1)
        return 1;
    if (rc == 0) {
        rb_hist_add(&w->hist, rb_now_ns() - c->t0);
        w->ops++;
    }
    if (!conn_next(c))
        (*active)--;
    return rc;
}

/* a raw request ended (terr NULL: response complete); the raw engine runs
 * GET/HEAD ops only, which are over after one request */
static void
raw_finish(struct rb_conn *c, const char *terr, int *active)
{
    if (terr || c->conn_close)
        raw_close(c);
    c->rstate = RAW_IDLE;
    transfer_done(c, terr, active);
}

static void *
worker_raw(void *arg)
{
    struct rb_worker *w = arg;
    struct epoll_event evs[64];
    int active = 0;
    uint64_t last_check = rb_now_ns();
    for (int k = 0; k < w->nconns; k++)
        active += conn_next(&w->conns[k]);
    while (active > 0) {
        int n = epoll_wait(w->ep, evs, 64, 50);
        for (int i = 0; i < n; i++) {
            struct rb_conn *c = evs[i].data.ptr;
            if (c->rstate == RAW_IDLE)
                continue;
            int r = raw_event(c);
            if (r != 0)
                raw_finish(c, r == 1 ? NULL : c->terr, &active);
        }
        uint64_t now = rb_now_ns();
        if (now - last_check > 50000000u) {
            last_check = now;
            for (int k = 0; k < w->nconns; k++) {
                struct rb_conn *c = &w->conns[k];
                if (c->rstate != RAW_IDLE && now > c->deadline)
                    raw_finish(c, "timeout", &active);
            }
        }
    }
    return NULL;
}

/* curl's multi_socket interface: curl tells which sockets to watch (epoll) and
 * when to call it back (timer); only sockets with activity are serviced, instead
 * of curl_multi_perform polling every connection on every turn. */
static int
on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct rb_worker *w = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.fd = s};
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    /* socketp marks a socket already in the epoll set (curl forgets it on REMOVE) */
    int first = socketp == NULL;
    if (epoll_ctl(w->ep, first ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, &ev) != 0)
        epoll_ctl(w->ep, first ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    if (first)
        curl_multi_assign(w->m, s, w);
    return 0;
}

static int
on_timer(CURLM *m, long ms, void *userp)
{
    struct rb_worker *w = userp;
    w->timer_ns = ms < 0 ? 0 : rb_now_ns() + (uint64_t)ms * 1000000u;
    w->timer_set = ms >= 0;
    return 0;
}

static void
drain_done(struct rb_worker *w, int *active)
{
    CURLMsg *msg;
    int q = 0;
    while ((msg = curl_multi_info_read(w->m, &q)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *h = msg->easy_handle;
        CURLcode res = msg->data.result;
        struct rb_conn *c = NULL;
        curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
        curl_multi_remove_handle(w->m, h);
        if (transfer_done(c, res == CURLE_OK ? NULL : curl_easy_strerror(res), active) == 1)
            curl_multi_add_handle(w->m, h);
    }
}

static void *
worker_main(void *arg)
{
    struct rb_worker *w = arg;
    struct epoll_event evs[64];
    int active = 0, running = 0;
    for (int k = 0; k < w->nconns; k++)
        active += conn_next(&w->conns[k]);
    while (active > 0) {
        int timeout = 100; /* ms; a ceiling so a lost timer cannot hang the phase */
        if (w->timer_set) {
            uint64_t now = rb_now_ns();
            uint64_t left = w->timer_ns > now ? w->timer_ns - now : 0;
            if (left / 1000000u < (uint64_t)timeout)
                timeout = (int)((left + 999999u) / 1000000u);
        }
        int n = epoll_wait(w->ep, evs, 64, timeout);
        for (int i = 0; i < n; i++) {
            int flags = 0;
            if (evs[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(w->m, evs[i].data.fd, flags, &running);
        }
        if (n <= 0 || (w->timer_set && rb_now_ns() >= w->timer_ns)) {
            w->timer_set = 0;
            curl_multi_socket_action(w->m, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain_done(w, &active);
    }
    return NULL;
}

static int
conn_init(struct rb_conn *c, struct rb_worker *w, const struct rb_phase *p)
{
    c->w = w;
    c->fd = -1;
    c->md = EVP_MD_CTX_new();
    if (!c->md)
        return -1;
    if (w->sh->raw) {
        c->rcap = (p->op == RB_OP_PULL || p->op == RB_OP_RANGE) ? 256 * 1024 : 64 * 1024;
        c->rbuf = malloc(c->rcap);
        /* request line, Host, Accept, Range, User-Agent: 2800; then the extra headers */
        c->req_cap = 2800 + (w->sh->raw_hdrs ? strlen(w->sh->raw_hdrs) : 0);
        c->req = malloc(c->req_cap);
        return c->rbuf && c->req ? 0 : -1;
    }
    c->h = curl_easy_init();
    if (!c->h)
        return -1;
    long big = (p->op == RB_OP_PULL || p->op == RB_OP_PUSH || p->op == RB_OP_PUSH_CHUNKED ||
                p->op == RB_OP_RANGE);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, (char *)c);
    curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c->h, CURLOPT_READDATA, c);
    curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_FOLLOWLOCATION, 0L); /* only the URL given */
    curl_easy_setopt(c->h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->h, CURLOPT_PROXY, ""); /* never an environment proxy */
    curl_easy_setopt(c->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, (long)(p->req_timeout * 1000));
    curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c->h, CURLOPT_ACCEPT_ENCODING, NULL);
    if (big) {
        curl_easy_setopt(c->h, CURLOPT_BUFFERSIZE, 512L * 1024);
        curl_easy_setopt(c->h, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    }
    if (p->tls)
        rb_tls_curl(p->tls, c->h);
    return 0;
}

int
rb_phase_run(const struct rb_phase *p, struct rb_result *r, struct err *e)
{
    memset(r, 0, sizeof(*r));
    rb_hist_init(&r->hist);
    if (p->conns < 1 || p->threads < 1 || (p->max_ops == 0 && p->duration <= 0))
        return err_set(e, ERR_INTERNAL, 0, "phase needs connections, threads and a bound");
    if ((p->op == RB_OP_PULL || p->op == RB_OP_RANGE || p->op == RB_OP_HEAD) && p->nblobs == 0)
        return err_set(e, ERR_INTERNAL, 0, "%s needs blobs", op_name(p->op));
    if (p->op == RB_OP_PUSH_CHUNKED && p->chunk == 0)
        return err_set(e, ERR_INTERNAL, 0, "chunked push needs a chunk size");
    int https = strncmp(p->base, "https://", 8) == 0;
    if (https != (p->tls != NULL))
        return err_set(e, ERR_INTERNAL, 0, "%s needs %s", p->base,
                       https ? "TLS settings" : "no TLS settings");

    int rc = -1;
    int nth = p->threads < p->conns ? p->threads : p->conns;
    struct rb_shared sh;
    memset(&sh, 0, sizeof(sh));
    sh.p = p;
    sh.r = r;
    sh.baselen = strlen(p->base);
    atomic_init(&sh.next, 0);
    atomic_init(&sh.nerrors, 0);
    atomic_init(&sh.stop, 0);
    pthread_mutex_init(&sh.mu, NULL);
    sh.h_octet = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    sh.h_octet = curl_slist_append(sh.h_octet, "Expect:");
    sh.h_mput = curl_slist_append(NULL, "Content-Type: application/vnd.oci.image.manifest.v1+json");
    sh.h_mput = curl_slist_append(sh.h_mput, "Expect:");
    sh.h_mget =
        curl_slist_append(NULL, "Accept: application/vnd.oci.image.manifest.v1+json, "
                                "application/vnd.oci.image.index.v1+json, "
                                "application/vnd.docker.distribution.manifest.v2+json, "
                                "application/vnd.docker.distribution.manifest.list.v2+json");
    sh.h_post = curl_slist_append(NULL, "Expect:");
    size_t hl = 0;
    for (const char *const *x = p->headers; x && *x; x++) {
        sh.h_octet = curl_slist_append(sh.h_octet, *x);
        sh.h_mput = curl_slist_append(sh.h_mput, *x);
        sh.h_mget = curl_slist_append(sh.h_mget, *x);
        sh.h_post = curl_slist_append(sh.h_post, *x);
        sh.h_get = curl_slist_append(sh.h_get, *x);
        hl += strlen(*x) + 2;
    }
    if (hl) {
        sh.raw_hdrs = malloc(hl + 1);
        if (sh.raw_hdrs) {
            size_t o = 0;
            for (const char *const *x = p->headers; *x; x++)
                o += (size_t)snprintf(sh.raw_hdrs + o, hl + 1 - o, "%s\r\n", *x);
        }
    }

    struct rb_worker *ws = calloc((size_t)nth, sizeof(*ws));
    struct rb_conn *cs = calloc((size_t)p->conns, sizeof(*cs));
    if (!ws || !cs || !sh.h_octet || !sh.h_mput || !sh.h_mget || !sh.h_post ||
        (hl && (!sh.h_get || !sh.raw_hdrs))) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    if (!p->use_curl &&
        (p->op == RB_OP_PULL || p->op == RB_OP_RANGE || p->op == RB_OP_HEAD ||
         p->op == RB_OP_MANIFEST_GET || p->op == RB_OP_TAGS || p->op == RB_OP_CATALOG)) {
        char base[512], host[256], port[16];
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
        if (rb_parse_url(p->base, base, sizeof(base), host, sizeof(host), port, sizeof(port), e) !=
            0)
            goto out;
        int gai = getaddrinfo(host, port, &hints, &ai);
        if (gai != 0 || !ai || ai->ai_addrlen > sizeof(sh.addr)) {
            err_set(e, ERR_CONFIG, 0, "resolve '%s': %s", host,
                    gai ? gai_strerror(gai) : "no address");
            if (ai)
                freeaddrinfo(ai);
            goto out;
        }
        memcpy(&sh.addr, ai->ai_addr, ai->ai_addrlen);
        sh.addrlen = ai->ai_addrlen;
        freeaddrinfo(ai);
        snprintf(sh.hostport, sizeof(sh.hostport), "%s", p->base + (https ? 8 : 7));
        sh.raw = 1;
    }
    for (int t = 0, k = 0; t < nth; t++) {
        struct rb_worker *w = &ws[t];
        w->sh = &sh;
        rb_hist_init(&w->hist);
        w->nconns = p->conns / nth + (t < p->conns % nth);
        w->conns = &cs[k];
        k += w->nconns;
        w->m = curl_multi_init();
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!w->m || w->ep < 0) {
            err_set(e, ERR_INTERNAL, errno, "curl_multi_init or epoll_create1 failed");
            goto out;
        }
        curl_multi_setopt(w->m, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(w->m, CURLMOPT_SOCKETDATA, w);
        curl_multi_setopt(w->m, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(w->m, CURLMOPT_TIMERDATA, w);
        curl_multi_setopt(w->m, CURLMOPT_MAXCONNECTS, (long)w->nconns + 4);
        for (int j = 0; j < w->nconns; j++) {
            if (conn_init(&w->conns[j], w, p) != 0) {
                err_set(e, ERR_NOMEM, 0, "curl_easy_init failed");
                goto out;
            }
        }
    }

    uint64_t t0 = rb_now_ns();
    if (p->duration > 0)
        sh.deadline_ns = t0 + (uint64_t)(p->duration * 1e9);
    for (int t = 0; t < nth; t++) {
        if (pthread_create(&ws[t].th, NULL, sh.raw ? worker_raw : worker_main, &ws[t]) != 0) {
            atomic_store(&sh.stop, 1);
            err_set(e, ERR_INTERNAL, 0, "pthread_create failed");
            for (int u = 0; u < t; u++)
                pthread_join(ws[u].th, NULL);
            goto out;
        }
        ws[t].started = 1;
    }
    for (int t = 0; t < nth; t++)
        pthread_join(ws[t].th, NULL);
    r->seconds = (double)(rb_now_ns() - t0) / 1e9;
    for (int t = 0; t < nth; t++) {
        rb_hist_merge(&r->hist, &ws[t].hist);
        r->ops += ws[t].ops;
        r->http_reqs += ws[t].reqs;
        r->bytes += ws[t].bytes;
        r->errors += ws[t].errs;
    }
    rc = 0;
out:
    if (cs) {
        for (int k = 0; k < p->conns; k++) {
            struct rb_conn *c = &cs[k];
            if (c->h && c->w && c->w->m)
                curl_multi_remove_handle(c->w->m, c->h);
            if (c->h)
                curl_easy_cleanup(c->h);
            EVP_MD_CTX_free(c->md);
            SSL_free(c->ssl);
            if (c->w && c->fd >= 0)
                close(c->fd);
            free(c->rbuf);
            free(c->req);
            curl_slist_free_all(c->h_patch);
            free(c->body);
            free(c->scratch);
        }
    }
    if (ws)
        for (int t = 0; t < nth; t++) {
            if (ws[t].m)
                curl_multi_cleanup(ws[t].m);
            if (ws[t].ep > 0)
                close(ws[t].ep);
        }
    free(cs);
    free(ws);
    curl_slist_free_all(sh.h_octet);
    curl_slist_free_all(sh.h_mput);
    curl_slist_free_all(sh.h_mget);
    curl_slist_free_all(sh.h_post);
    curl_slist_free_all(sh.h_get);
    free(sh.raw_hdrs);
    pthread_mutex_destroy(&sh.mu);
    return rc;
}
