/* api.c - the registry application: per-worker context, dispatch of a routed
 * request to its handler (server/api_*.c), and the helpers they share. */
#include "server/api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pool.h"
#include "server/api_internal.h"
#include "server/events.h"
#include "server/reply.h"

#include "common/banned.h"

#define JBUF_START 4096
/* a full page (API_PAGE_BYTES) fits without being freed after each reply */
#define JBUF_KEEP (2u << 20)

static int fault_alloc; /* api_fault_alloc: growths left to fail (atomic) */

void
api_fault_alloc(int count)
{
    __atomic_store_n(&fault_alloc, count, __ATOMIC_SEQ_CST);
}

static int
fault_alloc_hit(void)
{
    int n = __atomic_load_n(&fault_alloc, __ATOMIC_SEQ_CST);
    while (n > 0) {
        if (__atomic_compare_exchange_n(&fault_alloc, &n, n - 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            return 1;
    }
    return 0;
}

/* A pool thread's context (struct api_pool_ctx) holds a storage handle of its
 * own: a handle is one sqlite connection and is never used by two threads
 * (storage.h). It is opened by the thread's first job that needs one and kept
 * for the thread's life, so threads that never commit hold no descriptors (the
 * open-file reserve of http.c counts workers, not these). */
static void *
pool_thread_init(void *arg, int index, struct err *e)
{
    struct api_pool_ctx *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        err_set(e, ERR_NOMEM, 0, "api pool thread %d: out of memory", index);
        return NULL;
    }
    pc->a = arg;
    return pc;
}

static void
pool_thread_release(void *tctx)
{
    struct api_pool_ctx *pc = tctx;
    if (!pc)
        return;
    storage_handle_close(pc->h);
    free(pc);
}

struct storage_handle *
api_pool_handle(void *tctx, struct err *e)
{
    struct api_pool_ctx *pc = tctx;
    if (!pc->h)
        pc->h = storage_handle_open(pc->a->st, e);
    return pc->h;
}

/* A storage call that waits for a durable commit runs on the pool: the job
 * takes the pool thread's handle, the request waits (its worker serves the
 * others), and the reply is made back on the worker. */
struct api_job {
    struct api_worker *w;
    const struct route *rt;
    api_call_fn call;
    api_done_fn done;
    void *arg;
    int rc;
    struct err e;
};

static void
job_work(void *tctx, void *arg)
{
    struct api_job *j = arg;
    struct storage_handle *h = api_pool_handle(tctx, &j->e);
    j->rc = h ? j->call(h, j->rt, j->arg, &j->e) : -1;
}

static void
job_done(struct http_req *r, void *arg)
{
    struct api_job *j = arg;
    if (j->rc < 0) {
        api_reply_err(r, &j->e);
        return;
    }
    /* a client gone meanwhile: the commit stands, nothing more is started */
    if (http_req_is_dead(r))
        return;
    j->done(j->w, r, j->rt, j->arg, j->rc);
}

void
api_offload_call(struct api_worker *w, struct http_req *r, const struct route *rt, api_call_fn call,
                 api_done_fn done, void *arg)
{
    struct err e;
    struct api_job *j = http_req_alloc(r, sizeof(*j));
    *j = (struct api_job){.w = w, .rt = rt, .call = call, .done = done, .arg = arg};
    if (http_req_offload(r, w->a->pool, job_work, job_done, j, &e) < 0)
        api_reply_err(r, &e);
}

/* an api_done_fn: 202 without a body (the DELETEs) */
void
api_reply_accepted(struct api_worker *w, struct http_req *r, const struct route *rt, void *arg,
                   int rc)
{
    http_reply(r, 202, NULL, NULL, 0);
}

void
api_reply_deleted(struct api_worker *w, struct http_req *r, const struct route *rt, void *arg,
                  int rc)
{
    /* distribution: a manifest deleted by digest names the digest, a tag
     * deleted names only the tag */
    if (rt->kind == ROUTE_MANIFEST)
        api_event(w, r, rt, EVENTS_DELETE, 1, rt->ref_is_digest ? rt->ref : NULL,
                  rt->ref_is_digest ? NULL : rt->ref, NULL, 0);
    else
        api_event(w, r, rt, EVENTS_DELETE, 0, NULL, NULL, NULL, 0);
    http_reply(r, 202, NULL, NULL, 0);
}

static void
emit(struct api_worker *w, struct http_req *r, const struct route *rt, int action, int manifest,
     const char *digest, const char *tag, const char *media_type, uint64_t size, const char *from)
{
    struct events *evs = w->a->o.events;
    if (!evs)
        return;
    char ds[DIGEST_STR_MAX];
    if (!digest && !manifest && rt->kind == ROUTE_BLOB)
        digest = digest_format(&rt->digest, ds);
    struct events_event ev = {
        .action = (enum events_action)action,
        .manifest = manifest,
        .repository = rt->name,
        .digest = digest,
        .tag = tag,
        .media_type = media_type,
        .size = size,
        .from_repository = from,
        .actor = api_who(rt)->user,
        .request_id = http_req_id(r),
        .addr = http_req_peer_addr(r),
        .host = http_req_header(r, "Host"),
        .method = http_req_method_name(r),
        .useragent = http_req_header(r, "User-Agent"),
    };
    events_emit(evs, &ev);
}

void
api_event(struct api_worker *w, struct http_req *r, const struct route *rt, int action,
          int manifest, const char *digest, const char *tag, const char *media_type, uint64_t size)
{
    emit(w, r, rt, action, manifest, digest, tag, media_type, size, NULL);
}

void
api_event_mount(struct api_worker *w, struct http_req *r, const struct route *rt,
                const char *digest, const char *from, uint64_t size)
{
    emit(w, r, rt, EVENTS_MOUNT, 0, digest, NULL, CT_OCTET, size, from);
}

/* Four per core: the jobs mostly wait on the disk (fsync), and concurrent
 * fsyncs are merged by the block layer; at least 4 so that a few long commits
 * do not queue the short ones of a single-core host. */
static int
default_blocking_threads(void)
{
    return pool_per_core(4, 4, 64);
}

/* The upload pool hashes and writes the pieces of upload bodies (pure CPU and
 * page-cache copies, and the waits of dirty-page throttling): its threads run
 * at [server] upload_nice, below the event loops, so that a loop serving small
 * requests wins the CPU from a push (docs/server.md "Upload pieces"). */
static void *
upload_thread_init(void *arg, int index, struct err *e)
{
    const struct api *a = arg;
    if (a->o.upload_nice > 0 &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), a->o.upload_nice) < 0)
        log_warn("api", NULL, "upload thread %d: setpriority(%d): %s", index, a->o.upload_nice,
                 strerror(errno));
    return NULL;
}

static int
default_upload_threads(void)
{
    return pool_per_core(2, 2, 32);
}

struct api *
api_new(struct storage *st, const struct api_opts *o, struct err *e)
{
    struct api *a = calloc(1, sizeof(*a));
    if (!a) {
        err_set(e, ERR_NOMEM, 0, "api: out of memory");
        return NULL;
    }
    a->st = st;
    if (o)
        a->o = *o;
    if (a->o.max_manifest == 0)
        a->o.max_manifest = 4u << 20;
    if (a->o.max_page <= 0)
        a->o.max_page = 10000;
    a->page_bytes = API_PAGE_BYTES;
    a->read_only = a->o.read_only != 0;
    struct pool_opts po = {.name = "blocking",
                           .threads = a->o.blocking_threads > 0 ? a->o.blocking_threads
                                                                : default_blocking_threads(),
                           .queue_max = a->o.blocking_queue,
                           .thread_init = pool_thread_init,
                           .thread_release = pool_thread_release,
                           .arg = a};
    a->pool = pool_new(&po, e);
    if (!a->pool) {
        free(a);
        return NULL;
    }
    if (a->o.upload_nice < 0)
        a->o.upload_nice = 0;
    if (a->o.upload_nice > 19)
        a->o.upload_nice = 19;
    if (a->o.upload_threads >= 0) {
        struct pool_opts uo = {.name = "upload",
                               .threads = a->o.upload_threads > 0 ? a->o.upload_threads
                                                                  : default_upload_threads(),
                               .queue_max = a->o.blocking_queue,
                               .thread_init = upload_thread_init,
                               .arg = a};
        a->upload_pool = pool_new(&uo, e);
        if (!a->upload_pool) {
            pool_free(a->pool);
            free(a);
            return NULL;
        }
    }
    if (a->o.auth && ((a->o.auth->htpasswd && *a->o.auth->htpasswd) ||
                      (a->o.auth->token_realm && *a->o.auth->token_realm))) {
        a->auth = api_auth_new(a->o.auth, e);
        if (!a->auth) {
            pool_free(a->upload_pool);
            pool_free(a->pool);
            free(a);
            return NULL;
        }
    }
    a->o.auth = NULL; /* borrowed for api_new only; api_auth keeps its copy */
    if (api_ops_init(a, e) < 0) {
        api_auth_free(a->auth);
        pool_free(a->upload_pool);
        pool_free(a->pool);
        free(a);
        return NULL;
    }
    return a;
}

void
api_free(struct api *a)
{
    if (!a)
        return;
    api_ops_release(a); /* no scrape reads the pool or the counters after this */
    pool_free(a->upload_pool);
    pool_free(a->pool);
    api_auth_free(a->auth);
    free(a);
}

int
api_reload(struct api *a, struct err *e)
{
    return api_auth_reload(a->auth, e);
}

void
api_set_read_only(struct api *a, int on)
{
    __atomic_store_n(&a->read_only, on != 0, __ATOMIC_RELAXED);
}

void
api_set_draining(struct api *a, int on)
{
    __atomic_store_n(&a->draining, on != 0, __ATOMIC_RELEASE);
}

int
api_draining(const struct api *a)
{
    return __atomic_load_n(&a->draining, __ATOMIC_ACQUIRE);
}

void
api_set_max_page(struct api *a, long max_page)
{
    if (max_page > 0)
        __atomic_store_n(&a->o.max_page, max_page, __ATOMIC_RELAXED);
}

unsigned long
api_blocking_jobs(const struct api *a)
{
    return pool_jobs_done(a->pool);
}

unsigned long
api_upload_jobs(const struct api *a)
{
    return a->upload_pool ? pool_jobs_done(a->upload_pool) : 0;
}

/* ---- JSON writer ---- */

void
jbuf_init(struct jbuf *j, struct api_worker *w, size_t limit)
{
    j->w = w;
    j->len = 0;
    j->limit = limit;
    j->err = JBUF_OK;
}

/* grow the worker buffer to hold n more bytes (the slow path of
 * jbuf_reserve); 0, or -1 with j->err set (no abort: a request that cannot get
 * its memory is answered 500, the others go on) */
static __attribute__((noinline)) int
jbuf_grow(struct jbuf *j, size_t n)
{
    struct api_worker *w = j->w;
    if (j->err)
        return -1;
    if (n > j->limit || j->len > j->limit - n) {
        j->err = JBUF_E_LIMIT;
        return -1;
    }
    size_t need = j->len + n;
    if (need <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : JBUF_START;
    while (cap < need)
        cap *= 2;
    if (cap > j->limit)
        cap = j->limit; /* >= need, checked above */
    char *p = fault_alloc_hit() ? NULL : realloc(w->buf, cap);
    if (!p) {
        j->err = JBUF_E_NOMEM;
        return -1;
    }
    w->buf = p;
    w->cap = cap;
    return 0;
}

/* room for n more bytes: the common case (no error, fits the buffer and the
 * limit) is two compares, inlined into every writer (a tags page calls this
 * once per tag) */
static inline int
jbuf_reserve(struct jbuf *j, size_t n)
{
    size_t need = j->len + n;
    if (__builtin_expect(!j->err && need >= j->len && need <= j->w->cap && need <= j->limit, 1))
        return 0;
    return jbuf_grow(j, n);
}

void
jbuf_put(struct jbuf *j, const char *s, size_t n)
{
    if (jbuf_reserve(j, n) < 0)
        return;
    memcpy(j->w->buf + j->len, s, n);
    j->len += n;
}

/* the escaping writer for a string that has bytes to escape (rare: tags, names
 * and digests never do) */
static void
jbuf_str_escaped(struct jbuf *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t out = 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out += (c == '"' || c == '\\') ? 2 : (c < 0x20 || c == 0x7f) ? 6 : 1;
    }
    if (jbuf_reserve(j, out) < 0)
        return;
    char *o = j->w->buf + j->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            *o++ = '\\';
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    j->len += out;
}

/* 1 when s[0..n) goes into a JSON string as is */
static inline int
json_plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\' || c == 0x7f)
            return 0;
    }
    return 1;
}

void
jbuf_item(struct jbuf *j, int comma, const char *s, size_t n)
{
    if (!json_plain(s, n)) {
        if (comma)
            jbuf_lit(j, ",");
        jbuf_str_escaped(j, s, n);
        return;
    }
    /* one reserve and one copy per entry: a tags page is mostly this */
    size_t k = n + 2 + (comma ? 1 : 0);
    if (jbuf_reserve(j, k) < 0)
        return;
    char *o = j->w->buf + j->len;
    if (comma)
        *o++ = ',';
    *o++ = '"';
    memcpy(o, s, n);
    o[n] = '"';
    j->len += k;
}

void
jbuf_str(struct jbuf *j, const char *s)
{
    jbuf_item(j, 0, s, strlen(s));
}

void
jbuf_u64(struct jbuf *j, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    jbuf_put(j, tmp, (size_t)n);
}

void
jbuf_rewind(struct jbuf *j, size_t mark)
{
    if (mark < j->len)
        j->len = mark;
    j->err = JBUF_OK;
}

const char *
jbuf_data(const struct jbuf *j)
{
    return j->w->buf ? j->w->buf : "";
}

void
jbuf_done(struct jbuf *j)
{
    struct api_worker *w = j->w;
    if (w->cap > JBUF_KEEP) {
        free(w->buf);
        w->buf = NULL;
        w->cap = 0;
    }
    j->len = 0;
}

void
api_reply_jbuf_err(struct http_req *r, struct jbuf *j)
{
    struct err e;
    if (j->err == JBUF_E_NOMEM)
        err_set(&e, ERR_NOMEM, 0, "out of memory building the response");
    else
        err_set(&e, ERR_INTERNAL, 0, "response body over its limit of %zu bytes", j->limit);
    jbuf_done(j);
    api_reply_err(r, &e);
}

/* ---- paging ---- */

int
api_page_begin(struct api_worker *w, struct http_req *r, int with_n, size_t maxlast,
               struct api_page *p)
{
    long max_page = __atomic_load_n(&w->a->o.max_page, __ATOMIC_RELAXED);
    p->n = max_page;
    p->budget = w->a->page_bytes;
    p->count = 0;
    p->more = 0;
    p->key[0] = '\0';
    p->last = http_req_query(r, "last");
    if (p->last && strlen(p->last) > maxlast) {
        http_reply_errorf(r, ERR_BAD_REQUEST, "invalid pagination marker last: too long");
        return -1;
    }
    const char *s = with_n ? http_req_query(r, "n") : NULL;
    if (!s)
        return 0;
    /* absent -> max_page; digits only; above max_page clamped to it (the spec
     * lets a registry return fewer than n and point at the rest with Link),
     * however many digits: digits stop counting once above max_page (at most
     * 10^7, common/config.c), so the value never overflows */
    size_t sl = strlen(s);
    if (!sl || strspn(s, "0123456789") != sl) {
        http_reply_errorf(r, ERR_BAD_REQUEST, "invalid pagination number n");
        return -1;
    }
    long n = 0;
    for (size_t i = 0; i < sl && n <= max_page; i++)
        n = n * 10 + (s[i] - '0');
    p->n = n > max_page ? max_page : n;
    return 0;
}

int
api_page_fit(struct api_page *p, struct jbuf *j, size_t mark)
{
    if (j->err == JBUF_E_NOMEM)
        return 1; /* the handler answers 500 */
    /* +2 for the closing "]}"; the first entry is always sent */
    if (p->count && (j->err || j->len + 2 > p->budget)) {
        jbuf_rewind(j, mark);
        p->more = 1;
        return 0;
    }
    return 1;
}

void
api_page_keep(struct api_page *p, const char *key, size_t n)
{
    if (n > API_PAGE_KEY_MAX)
        n = API_PAGE_KEY_MAX;
    memcpy(p->key, key, n);
    p->key[n] = '\0';
    p->count++;
}

void
api_page_link(struct http_req *r, const struct api_page *p, int with_n, const char *base,
              const char *extra)
{
    if (!p->more || !p->count)
        return;
    if (with_n)
        http_reply_header(r, "Link", "<%s?n=%ld&last=%s%s>; rel=\"next\"", base, p->n, p->key,
                          extra);
    else
        http_reply_header(r, "Link", "<%s?last=%s%s>; rel=\"next\"", base, p->key, extra);
}

/* ---- replies ---- */

void
api_reply_err(struct http_req *r, const struct err *e)
{
    if (reply_status(e->code) >= 500)
        log_error(API_MOD, http_req_id(r), "%s %s: %s", http_req_method_name(r), http_req_path(r),
                  e->msg);
    http_reply_error(r, e);
}

/* ---- replies from a blob reader without a descriptor ---- */
struct reader_stream {
    struct blob_reader rd;
    uint64_t off, left;
};

static ssize_t
reader_produce(struct http_req *r, void *arg, char *buf, size_t cap)
{
    struct reader_stream *s = arg;
    if (s->left == 0)
        return 0;
    struct err e;
    size_t want = cap < s->left ? cap : (size_t)s->left;
    long n = blob_reader_read(&s->rd, s->off, buf, want, &e);
    if (n <= 0) {
        /* the headers are out: the layer closes the connection, the client
         * sees a short body */
        log_error(API_MOD, http_req_id(r), "blob read failed mid-reply: %s",
                  n == 0 ? "blob ends early" : e.msg);
        return -1;
    }
    s->off += (uint64_t)n;
    s->left -= (uint64_t)n;
    return n;
}

static void
reader_release(struct http_req *r, void *arg)
{
    struct reader_stream *s = arg;
    blob_reader_close(&s->rd);
}

void
api_reply_reader(struct api_worker *w, struct http_req *r, int status, const char *content_type,
                 struct blob_reader *rd, uint64_t off, uint64_t len)
{
    int fd;
    uint64_t base;
    if (blob_reader_fd(rd, &fd, &base) == 0) {
        blob_reader_close(rd);
        http_reply_fd(r, status, content_type, fd, base + off, len);
        return;
    }
    /* A backend without local descriptors (an object store, the test
     * backend): the body streams from the reader, read piece by piece as the
     * socket takes it (backpressure), so memory stays one buffer whatever the
     * size. The reads run on the worker: fine for a local backend; a remote
     * one must read ahead on the blocking pool and wake the stream. */
    struct reader_stream *s = http_req_alloc(r, sizeof(*s));
    s->rd = *rd; /* the copy owns the backend state from here on */
    memset(rd, 0, sizeof(*rd));
    s->off = off;
    s->left = len;
    http_reply_stream(r, status, content_type, (int64_t)len, reader_produce, reader_release, s);
}

void
api_reply_head(struct http_req *r, int status, const char *content_type, uint64_t size)
{
    /* http.h: http_reply sets Content-Length to n and sends no body on HEAD, so
     * the body pointer is never read; the size comes from the metadata alone */
    http_reply(r, status, content_type, NULL, (size_t)size);
}

void
api_upload_headers(struct http_req *r, const char *name, const char *uuid, uint64_t offset)
{
    http_reply_header(r, "Location", "/v2/%s/blobs/uploads/%s", name, uuid);
    /* the spec's inclusive "0-<last byte>"; a session without bytes says 0-0 as
     * CNCF distribution does */
    http_reply_header(r, "Range", "0-%" PRIu64, offset ? offset - 1 : 0);
    http_reply_header(r, "Docker-Upload-UUID", "%s", uuid);
}

/* ---- the http_app ---- */

static void *
worker_init(void *arg, int worker_index, struct err *e)
{
    struct api *a = arg;
    struct api_worker *w = calloc(1, sizeof(*w));
    if (!w) {
        err_set(e, ERR_NOMEM, 0, "api worker %d: out of memory", worker_index);
        return NULL;
    }
    w->a = a;
    w->h = storage_handle_open(a->st, e);
    if (!w->h) {
        free(w);
        return NULL;
    }
    w->stats = api_ops_worker_init(a, e);
    if (!w->stats) {
        storage_handle_close(w->h);
        free(w);
        return NULL;
    }
    return w;
}

static void
worker_release(void *wctx)
{
    struct api_worker *w = wctx;
    if (!w)
        return;
    api_ops_worker_release(w->a, w->stats);
    storage_handle_close(w->h);
    free(w->buf);
    free(w);
}

static void
api_base(struct http_req *r)
{
    /* end-1; Docker-Distribution-API-Version comes with every reply (REPLY_HEADERS) */
    http_reply(r, 200, CT_JSON, "{}", 2);
}

/* the handler of a routed request, once auth (if on) has let it through */
static void
route_run(struct api_worker *w, struct http_req *r, struct route *rt)
{
    enum http_method m = http_req_method(r);
    switch (rt->kind) {
    case ROUTE_BASE:
        api_base(r);
        return;
    case ROUTE_CATALOG:
        api_catalog(w, r, rt);
        return;
    case ROUTE_TAGS:
        api_tags_list(w, r, rt);
        return;
    case ROUTE_REFERRERS:
        api_referrers(w, r, rt);
        return;
    case ROUTE_MANIFEST:
        if (m == HTTP_M_PUT)
            api_manifest_put(w, r, rt);
        else if (m == HTTP_M_DELETE)
            api_manifest_delete(w, r, rt);
        else
            api_manifest_get(w, r, rt);
        return;
    case ROUTE_BLOB:
        if (m == HTTP_M_DELETE)
            api_blob_delete(w, r, rt);
        else
            api_blob_get(w, r, rt);
        return;
    case ROUTE_UPLOAD_START:
        api_upload_start(w, r, rt);
        return;
    case ROUTE_UPLOAD:
        switch (m) {
        case HTTP_M_PATCH:
            api_upload_patch(w, r, rt);
            return;
        case HTTP_M_PUT:
            api_upload_put(w, r, rt);
            return;
        case HTTP_M_DELETE:
            api_upload_cancel(w, r, rt);
            return;
        default:
            api_upload_status(w, r, rt);
            return;
        }
    case ROUTE_NONE:
        break;
    }
    http_reply_errorf(r, ERR_NOT_FOUND, "no such endpoint");
}

static void
dispatch(struct http_req *r, void *wctx)
{
    struct api_worker *w = wctx;
    struct api_call *call = http_req_alloc(r, sizeof(*call));
    struct route *rt = &call->rt;
    struct err e;
    enum http_method m = http_req_method(r);

    call->who = (struct api_ident){0};
    const char *path = http_req_path(r);
    /* outside /v2/: the token issuer, metrics and probes */
    if (strncmp(path, "/v2", 3) != 0) {
        if (w->a->auth && strcmp(path, "/auth/token") == 0) {
            http_req_set_tag(r, API_TAG_TOKEN);
            api_auth_token(w, r);
            return;
        }
        if (api_ops_dispatch(w, r, path))
            return;
    }
    int rc = router_match(m, path, rt, &e);
    http_req_set_tag(r, (int)rt->kind);
    if (rc < 0) {
        /* ERR_NOT_FOUND (no such endpoint) is 404 with the spec code closest
         * to it, UNSUPPORTED (common/err.c) */
        if (e.code == ERR_METHOD)
            http_reply_header(r, "Allow", "%s", router_allow(rt->kind));
        http_reply_error(r, &e);
        return;
    }
    if (m != HTTP_M_GET && m != HTTP_M_HEAD && __atomic_load_n(&w->a->read_only, __ATOMIC_RELAXED)) {
        /* before auth: the refusal is the same for everyone (api.h) */
        http_reply_header(r, "Allow", "GET, HEAD");
        http_reply_errorf(r, ERR_METHOD, "the registry is read-only");
        return;
    }
    if (w->a->auth) {
        api_auth_request(w, r, rt, route_run);
        return;
    }
    route_run(w, r, rt);
}

void
api_http_app(struct api *a, struct http_app *out)
{
    memset(out, 0, sizeof(*out));
    out->arg = a;
    out->worker_init = worker_init;
    out->worker_release = worker_release;
    out->dispatch = dispatch;
    out->error = reply_error_render;
    out->headers = REPLY_HEADERS;
    out->on_end = api_ops_on_end;
}
