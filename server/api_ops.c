/* api_ops.c - what an operator asks of a running registry, outside /v2/:
 * Prometheus metrics (/metrics) and the health probes (/livez, /readyz,
 * /startupz), on the main listener and on the debug listener
 * ([server] debug_listen); and the request counters behind the metrics.
 *
 * Counters stay off the hot path's locks and allocations: each worker has its
 * own block of counters (struct api_wstats), written only by that worker at a
 * request's end (on_end) with relaxed atomic loads and stores (one writer: no
 * read-modify-write needed), and summed by the scrape under ops_mu, which
 * only worker start, worker end and scrapes take. A scrape renders on the
 * blocking pool (main listener) or on the debug listener's own worker, never
 * on a main worker's event loop: counting the metadata's rows may take a scan
 * (cached for STORAGE_STATS_TTL_MS by storage_stats). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/pool.h"
#include "server/api_internal.h"
#include "server/reply.h"

#include "common/banned.h"

#define CT_TEXT "text/plain; charset=utf-8"
/* the exposition format's content type (text format 0.0.4) */
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* ---- the counters ---- */

/* request latency buckets (seconds): a manifest GET is well under a
 * millisecond, a blob upload's PUT may take seconds */
static const double lat_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define LAT_N (sizeof(lat_bounds) / sizeof(lat_bounds[0]))

/* the statuses counted by their code; any other one is counted as "other" */
static const int statuses[] = {0,   100, 200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308,
                               400, 401, 403, 404, 405, 406, 408, 409, 411, 412, 413, 414, 415,
                               416, 417, 422, 429, 431, 500, 501, 502, 503, 504, 505, 507};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))
#define STATUS_OTHER NSTATUS
#define NMETHOD (HTTP_M_OTHER + 1)

static const char *const method_names[NMETHOD] = {"GET",   "HEAD",   "POST",    "PUT",
                                                  "PATCH", "DELETE", "OPTIONS", "OTHER"};

struct api_wstats {
    struct api_wstats *next; /* the api's list (ops_mu) */
    uint64_t requests[API_TAGS][NMETHOD][NSTATUS + 1];
    uint64_t lat[API_TAGS][LAT_N + 1]; /* per bucket, not cumulative */
    uint64_t lat_ns[API_TAGS];         /* sum of latencies */
    uint64_t bytes_in[API_TAGS], bytes_out[API_TAGS];
};

/* one writer per block: a relaxed load and store, no locked instruction */
#define WADD(field, v)                                                                            \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (v), __ATOMIC_RELAXED)

static unsigned
status_index(int status)
{
    /* ordered: a binary search, ~5 compares */
    size_t lo = 0, hi = NSTATUS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (statuses[mid] == status)
            return (unsigned)mid;
        if (statuses[mid] < status)
            lo = mid + 1;
        else
            hi = mid;
    }
    return STATUS_OTHER;
}

void
api_ops_on_end(struct http_req *r, void *wctx, int status, uint64_t bytes_in, uint64_t bytes_out,
               double seconds)
{
    struct api_worker *w = wctx;
    if (!w || !w->stats)
        return;
    struct api_wstats *ws = w->stats;
    int tag = http_req_tag(r);
    if (tag < 0 || tag >= API_TAGS)
        tag = 0;
    unsigned m = (unsigned)http_req_method(r);
    if (m >= NMETHOD)
        m = HTTP_M_OTHER;
    WADD(ws->requests[tag][m][status_index(status)], 1);
    unsigned b = 0;
    while (b < LAT_N && seconds > lat_bounds[b])
        b++;
    WADD(ws->lat[tag][b], 1);
    WADD(ws->lat_ns[tag], seconds > 0 ? (uint64_t)(seconds * 1e9) : 0);
    WADD(ws->bytes_in[tag], bytes_in);
    WADD(ws->bytes_out[tag], bytes_out);
}

#define RLOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static void
wstats_add(struct api_wstats *to, const struct api_wstats *from)
{
    for (int t = 0; t < API_TAGS; t++) {
        for (unsigned m = 0; m < NMETHOD; m++)
            for (unsigned s = 0; s <= NSTATUS; s++)
                to->requests[t][m][s] += RLOAD(from->requests[t][m][s]);
        for (size_t b = 0; b <= LAT_N; b++)
            to->lat[t][b] += RLOAD(from->lat[t][b]);
        to->lat_ns[t] += RLOAD(from->lat_ns[t]);
        to->bytes_in[t] += RLOAD(from->bytes_in[t]);
        to->bytes_out[t] += RLOAD(from->bytes_out[t]);
    }
}

struct api_wstats *
api_ops_worker_init(struct api *a, struct err *e)
{
    struct api_wstats *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        err_set(e, ERR_NOMEM, 0, "api worker counters: out of memory");
        return NULL;
    }
    pthread_mutex_lock(&a->ops_mu);
    ws->next = a->wstats;
    a->wstats = ws;
    pthread_mutex_unlock(&a->ops_mu);
    return ws;
}

void
api_ops_worker_release(struct api *a, struct api_wstats *ws)
{
    if (!ws)
        return;
    pthread_mutex_lock(&a->ops_mu);
    for (struct api_wstats **pp = &a->wstats; *pp; pp = &(*pp)->next) {
        if (*pp == ws) {
            *pp = ws->next;
            break;
        }
    }
    /* counters never go back: an ended worker's stay in the totals */
    if (a->retired)
        wstats_add(a->retired, ws);
    pthread_mutex_unlock(&a->ops_mu);
    free(ws);
}

void
api_attach_server(struct api *a, const struct http_server *s)
{
    pthread_mutex_lock(&a->ops_mu);
    a->srv = s;
    pthread_mutex_unlock(&a->ops_mu);
}

/* ---- the collector ---- */

static const char *
tag_name(int tag)
{
    switch (tag) {
    case API_TAG_TOKEN:
        return "token";
    case API_TAG_METRICS:
        return "metrics";
    case API_TAG_HEALTH:
        return "health";
    default:
        return router_kind_name((enum route_kind)tag);
    }
}

static void
collect_http(struct api *a, struct metrics_out *o)
{
    struct api_wstats *sum = calloc(1, sizeof(*sum));
    if (!sum) {
        log_warn(API_MOD, NULL, "metrics: out of memory summing the request counters");
        return;
    }
    unsigned long conns = 0, refused = 0;
    uint64_t lag[HTTP_LAG_BUCKETS + 1];
    double lag_sum = 0, lag_max = 0;
    int have_srv = 0;
    pthread_mutex_lock(&a->ops_mu);
    for (struct api_wstats *ws = a->wstats; ws; ws = ws->next)
        wstats_add(sum, ws);
    if (a->retired)
        wstats_add(sum, a->retired);
    if (a->srv) {
        have_srv = 1;
        conns = http_server_connections(a->srv);
        refused = http_server_refused(a->srv);
        http_server_loop_lag(a->srv, lag, &lag_sum, &lag_max);
    }
    pthread_mutex_unlock(&a->ops_mu);

    char lbl[160];
    metrics_family(o, "ocireg_http_requests_total", "counter",
                   "HTTP requests answered, by route, method and status (status 0: the client "
                   "went away before a reply)");
    for (int t = 0; t < API_TAGS; t++)
        for (unsigned m = 0; m < NMETHOD; m++)
            for (unsigned s = 0; s <= NSTATUS; s++) {
                uint64_t v = sum->requests[t][m][s];
                if (!v)
                    continue;
                char st[16];
                if (s == STATUS_OTHER)
                    snprintf(st, sizeof(st), "other");
                else
                    snprintf(st, sizeof(st), "%d", statuses[s]);
                snprintf(lbl, sizeof(lbl), "route=\"%s\",method=\"%s\",status=\"%s\"",
                         tag_name(t), method_names[m], st);
                metrics_sample_u64(o, "ocireg_http_requests_total", lbl, v);
            }
    metrics_family(o, "ocireg_http_request_duration_seconds", "histogram",
                   "time from a request's first byte to its end, by route");
    for (int t = 0; t < API_TAGS; t++) {
        uint64_t n = 0;
        for (size_t b = 0; b <= LAT_N; b++)
            n += sum->lat[t][b];
        if (!n)
            continue;
        snprintf(lbl, sizeof(lbl), "route=\"%s\"", tag_name(t));
        metrics_histogram(o, "ocireg_http_request_duration_seconds", lbl, lat_bounds, LAT_N,
                          sum->lat[t], (double)sum->lat_ns[t] / 1e9);
    }
    metrics_family(o, "ocireg_http_received_bytes_total", "counter",
                   "request body bytes received, by route");
    for (int t = 0; t < API_TAGS; t++) {
        if (!sum->bytes_in[t])
            continue;
        snprintf(lbl, sizeof(lbl), "route=\"%s\"", tag_name(t));
        metrics_sample_u64(o, "ocireg_http_received_bytes_total", lbl, sum->bytes_in[t]);
    }
    metrics_family(o, "ocireg_http_sent_bytes_total", "counter",
                   "response body bytes sent, by route");
    for (int t = 0; t < API_TAGS; t++) {
        if (!sum->bytes_out[t])
            continue;
        snprintf(lbl, sizeof(lbl), "route=\"%s\"", tag_name(t));
        metrics_sample_u64(o, "ocireg_http_sent_bytes_total", lbl, sum->bytes_out[t]);
    }
    free(sum);
    if (have_srv) {
        metrics_family(o, "ocireg_http_open_connections", "gauge",
                       "client connections open on the main listener");
        metrics_sample_u64(o, "ocireg_http_open_connections", NULL, conns);
        metrics_family(o, "ocireg_http_refused_connections_total", "counter",
                       "connections refused with 503 because [server] max_connections were open");
        metrics_sample_u64(o, "ocireg_http_refused_connections_total", NULL, refused);
        metrics_family(o, "ocireg_http_event_loop_lag_seconds", "histogram",
                       "how late the workers' event loops ran a timer due every 100 ms: what "
                       "a request waits before its worker can look at it");
        metrics_histogram(o, "ocireg_http_event_loop_lag_seconds", NULL, http_lag_bounds_s,
                          HTTP_LAG_BUCKETS, lag, lag_sum);
        metrics_family(o, "ocireg_http_event_loop_lag_max_seconds", "gauge",
                       "the largest such lateness since the start");
        metrics_sample(o, "ocireg_http_event_loop_lag_max_seconds", NULL, lag_max);
    }
}

static void
collect_storage(struct api *a, struct metrics_out *o)
{
    struct storage_stats ss;
    struct err e;
    if (storage_stats(a->st, &ss, &e) < 0)
        log_warn(API_MOD, NULL, "metrics: counting the stored rows: %s", e.msg);
    static const struct {
        const char *name, *help;
        size_t off;
    } gauges[] = {
        {"ocireg_storage_repositories", "repositories stored",
         offsetof(struct storage_stats, repos)},
        {"ocireg_storage_blobs", "blobs stored (each once, however many repositories link it)",
         offsetof(struct storage_stats, blobs)},
        {"ocireg_storage_blob_bytes", "bytes of the blobs stored",
         offsetof(struct storage_stats, blob_bytes)},
        {"ocireg_storage_manifests", "manifests stored (per repository)",
         offsetof(struct storage_stats, manifests)},
        {"ocireg_storage_tags", "tags stored", offsetof(struct storage_stats, tags)},
        {"ocireg_storage_upload_sessions", "upload sessions open",
         offsetof(struct storage_stats, uploads_open)},
    };
    for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
        uint64_t v;
        memcpy(&v, (const char *)&ss + gauges[i].off, sizeof(v));
        metrics_family(o, gauges[i].name, "gauge", gauges[i].help);
        metrics_sample_u64(o, gauges[i].name, NULL, v);
    }
    metrics_family(o, "ocireg_storage_wal_fsyncs_total", "counter",
                   "group fsyncs of the metadata WAL (one covers every commit waiting)");
    metrics_sample_u64(o, "ocireg_storage_wal_fsyncs_total", NULL, ss.fsyncs);
    metrics_family(o, "ocireg_storage_durable_commits_total", "counter",
                   "metadata commits that waited for a WAL fsync");
    metrics_sample_u64(o, "ocireg_storage_durable_commits_total", NULL, ss.durable_commits);
    double bounds[STORAGE_GROUP_BUCKETS];
    for (int i = 0; i < STORAGE_GROUP_BUCKETS; i++)
        bounds[i] = (double)(1u << i);
    metrics_family(o, "ocireg_storage_wal_fsync_group_size", "histogram",
                   "waiters (commits and durable reads) one WAL fsync answered");
    metrics_histogram(o, "ocireg_storage_wal_fsync_group_size", NULL, bounds,
                      STORAGE_GROUP_BUCKETS, ss.group, (double)ss.waiters);
    metrics_family(o, "ocireg_storage_write_failed", "gauge",
                   "1 after a failed fsync of the metadata: writes are refused until a restart");
    metrics_sample_u64(o, "ocireg_storage_write_failed", NULL, (uint64_t)ss.failed);
}

static void
collect_auth(struct api *a, struct metrics_out *o)
{
    struct api_auth_counts c;
    api_auth_counts(a, &c);
    metrics_family(o, "ocireg_auth_successes_total", "counter",
                   "credentials accepted: Basic passwords and bearer tokens");
    metrics_sample_u64(o, "ocireg_auth_successes_total", "scheme=\"basic\"", c.ok_basic);
    metrics_sample_u64(o, "ocireg_auth_successes_total", "scheme=\"bearer\"", c.ok_bearer);
    metrics_family(o, "ocireg_auth_failures_total", "counter",
                   "credentials refused: wrong or malformed passwords, invalid or expired tokens");
    metrics_sample_u64(o, "ocireg_auth_failures_total", "scheme=\"basic\"", c.fail_basic);
    metrics_sample_u64(o, "ocireg_auth_failures_total", "scheme=\"bearer\"", c.fail_bearer);
    metrics_family(o, "ocireg_auth_rate_limited_total", "counter",
                   "logins refused with 429 after too many failures ([auth] max_failures)");
    metrics_sample_u64(o, "ocireg_auth_rate_limited_total", NULL, c.limited);
}

/* ocireg_<name>_jobs_total and ocireg_<name>_queue_length of a pool */
static void
collect_pool(struct metrics_out *o, struct pool *p, const char *name, const char *jobs_help,
             const char *queue_help)
{
    char jobs[64], queue[64];
    snprintf(jobs, sizeof(jobs), "ocireg_%s_jobs_total", name);
    snprintf(queue, sizeof(queue), "ocireg_%s_queue_length", name);
    metrics_family(o, jobs, "counter", jobs_help);
    metrics_sample_u64(o, jobs, NULL, pool_jobs_done(p));
    metrics_family(o, queue, "gauge", queue_help);
    metrics_sample_u64(o, queue, NULL, pool_queued(p));
}

static void
api_collect(void *arg, struct metrics_out *o)
{
    struct api *a = arg;
    collect_http(a, o);
    collect_storage(a, o);
    collect_auth(a, o);
    collect_pool(o, a->pool, "blocking",
                 "jobs the blocking-work pool has taken (commits, re-hashes, deletes)",
                 "jobs waiting for a blocking-work thread");
    if (a->upload_pool)
        collect_pool(o, a->upload_pool, "upload",
                     "jobs the upload pool has taken (pieces of upload bodies hashed and written)",
                     "jobs of upload pieces waiting for an upload thread");
    metrics_family(o, "ocireg_draining", "gauge", "1 while the server drains (/readyz is 503)");
    metrics_sample_u64(o, "ocireg_draining", NULL,
                       (uint64_t)api_draining(a));
}

int
api_ops_init(struct api *a, struct err *e)
{
    pthread_mutex_init(&a->ops_mu, NULL);
    a->retired = calloc(1, sizeof(*a->retired));
    if (!a->retired || metrics_register(api_collect, a, e) < 0) {
        free(a->retired);
        a->retired = NULL;
        pthread_mutex_destroy(&a->ops_mu);
        return err_set(e, ERR_NOMEM, 0, "api metrics: out of memory");
    }
    return 0;
}

void
api_ops_release(struct api *a)
{
    metrics_unregister(api_collect, a);
    free(a->retired);
    a->retired = NULL;
    pthread_mutex_destroy(&a->ops_mu);
}

/* ---- the endpoints ---- */

enum ops_ep { EP_NONE = 0, EP_METRICS, EP_LIVEZ, EP_READYZ, EP_STARTUPZ };

static enum ops_ep
ops_endpoint(const char *path)
{
    if (strcmp(path, "/metrics") == 0)
        return EP_METRICS;
    if (strcmp(path, "/livez") == 0)
        return EP_LIVEZ;
    if (strcmp(path, "/readyz") == 0)
        return EP_READYZ;
    if (strcmp(path, "/startupz") == 0)
        return EP_STARTUPZ;
    return EP_NONE;
}

static void
reply_text(struct http_req *r, int status, const char *text)
{
    http_reply(r, status, CT_TEXT, text, strlen(text));
}

/* /readyz: ready when not draining and storage takes writes (storage_healthy:
 * no failed fsync, the root writable, the metadata answering through h) */
static void
ops_readyz(struct api *a, struct storage_handle *h, struct http_req *r)
{
    struct err e;
    if (api_draining(a)) {
        reply_text(r, 503, "draining\n");
        return;
    }
    if (!h || !storage_healthy(h, &e)) {
        char body[sizeof(e.msg) + 32];
        snprintf(body, sizeof(body), "storage not ready: %s\n",
                 h ? e.msg : "no storage handle");
        log_warn(API_MOD, http_req_id(r), "readyz: %s", body);
        reply_text(r, 503, body);
        return;
    }
    reply_text(r, 200, "ok\n");
}

/* the probes need no storage but readyz's, and no auth (probes carry no
 * credentials); /startupz is 200 whenever the server answers, because it
 * listens only once storage_open has recovered the store */
static void
ops_probe(struct api *a, struct storage_handle *h, struct http_req *r, enum ops_ep ep)
{
    if (ep == EP_READYZ)
        ops_readyz(a, h, r);
    else
        reply_text(r, 200, "ok\n");
}

static void
reply_metrics(struct http_req *r, char *text, size_t len, const struct err *e)
{
    if (!text) {
        http_reply_error(r, e);
        return;
    }
    http_reply(r, 200, CT_METRICS, text, len);
    free(text);
}

struct metrics_job {
    char *text;
    size_t len;
    struct err e;
};

static void
metrics_work(void *tctx, void *arg)
{
    struct metrics_job *j = arg;
    j->text = metrics_render(&j->len, &j->e);
}

static void
metrics_done(struct http_req *r, void *arg)
{
    struct metrics_job *j = arg;
    if (http_req_is_dead(r)) {
        free(j->text);
        return;
    }
    reply_metrics(r, j->text, j->len, &j->e);
}

/* the main listener's /metrics, past auth: rendered on the blocking pool */
static void
ops_metrics_run(struct api_worker *w, struct http_req *r, struct route *rt)
{
    struct err e;
    struct metrics_job *j = http_req_alloc(r, sizeof(*j));
    *j = (struct metrics_job){0};
    if (http_req_offload(r, w->a->pool, metrics_work, metrics_done, j, &e) < 0)
        api_reply_err(r, &e);
}

/* GET and HEAD only (HEAD: the layer drops the body) */
static int
ops_method_ok(struct http_req *r)
{
    enum http_method m = http_req_method(r);
    if (m == HTTP_M_GET || m == HTTP_M_HEAD)
        return 1;
    http_reply_header(r, "Allow", "GET, HEAD");
    http_reply_errorf(r, ERR_METHOD, "method not allowed");
    return 0;
}

int
api_ops_dispatch(struct api_worker *w, struct http_req *r, const char *path)
{
    enum ops_ep ep = ops_endpoint(path);
    if (ep == EP_NONE)
        return 0;
    http_req_set_tag(r, ep == EP_METRICS ? API_TAG_METRICS : API_TAG_HEALTH);
    if (!ops_method_ok(r))
        return 1;
    if (ep != EP_METRICS) {
        ops_probe(w->a, w->h, r, ep);
        return 1;
    }
    /* with auth on, the metrics are an admin's: they name repositories'
     * counts and traffic, which the access rules may hide from others */
    if (api_auth_on(w->a)) {
        struct api_call *call = http_req_alloc(r, sizeof(*call));
        memset(call, 0, sizeof(*call));
        call->rt.kind = ROUTE_NONE;
        api_auth_admin(w, r, &call->rt, ops_metrics_run);
        return 1;
    }
    ops_metrics_run(w, r, NULL);
    return 1;
}

/* ---- the debug listener's app ---- */

struct debug_worker {
    struct api *a;
    struct storage_handle *h;
};

static void *
debug_worker_init(void *arg, int worker_index, struct err *e)
{
    struct api *a = arg;
    struct debug_worker *dw = calloc(1, sizeof(*dw));
    if (!dw) {
        err_set(e, ERR_NOMEM, 0, "debug worker %d: out of memory", worker_index);
        return NULL;
    }
    dw->a = a;
    dw->h = storage_handle_open(a->st, e);
    if (!dw->h) {
        free(dw);
        return NULL;
    }
    return dw;
}

static void
debug_worker_release(void *wctx)
{
    struct debug_worker *dw = wctx;
    if (!dw)
        return;
    storage_handle_close(dw->h);
    free(dw);
}

/* open: the listener is meant for a loopback or management address; the
 * scrape renders here, on the debug listener's own worker */
static void
debug_dispatch(struct http_req *r, void *wctx)
{
    struct debug_worker *dw = wctx;
    enum ops_ep ep = ops_endpoint(http_req_path(r));
    if (ep == EP_NONE) {
        http_reply_errorf(r, ERR_NOT_FOUND,
                          "no such endpoint here: /metrics, /livez, /readyz, /startupz");
        return;
    }
    if (!ops_method_ok(r))
        return;
    if (ep != EP_METRICS) {
        ops_probe(dw->a, dw->h, r, ep);
        return;
    }
    struct err e;
    size_t len = 0;
    char *text = metrics_render(&len, &e);
    reply_metrics(r, text, len, &e);
}

void
api_debug_http_app(struct api *a, struct http_app *out)
{
    memset(out, 0, sizeof(*out));
    out->arg = a;
    out->worker_init = debug_worker_init;
    out->worker_release = debug_worker_release;
    out->dispatch = debug_dispatch;
    out->error = reply_error_render;
}
