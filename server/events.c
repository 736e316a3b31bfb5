/* events.c - webhook notifications (events.h has the contract).
 *
 * Per endpoint, a ring of fixed-size records and one sender thread:
 *
 *   events_emit ──(mutex, memcpy)──> ring[queue] ──(sender takes <= batch)──> inflight[batch]
 *                                                                                 │
 *                     POST envelope ──2xx/3xx──> sent += n, inflight emptied  <───┘
 *                          └──error/timeout/4xx/5xx──> failed++, wait backoff, POST the
 *                                                      same body again (same event ids)
 *
 * Invariants: the ring holds at most `queue` records and the in-flight batch at
 * most `batch`, so memory per endpoint is fixed at start; a record in flight is
 * no longer in the ring, so a full ring drops only records that were never
 * sent (the oldest of them); every record taken by events_emit ends counted
 * exactly once as sent or dropped. The JSON body of a batch is built once, on
 * the sender thread (jansson), and re-sent unchanged on retries, so a receiver
 * can deduplicate by event id (a POST that timed out may have arrived).
 *
 * Shutdown (events_free): `stop` is set with a deadline EVENTS_FLUSH_MS ahead;
 * senders go on while there is something to send and time left, a POST in
 * progress is cut at the deadline (libcurl's progress callback), then whatever
 * is left is counted as dropped. */
#include "server/events.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "common/config.h"
#include "common/ini.h"
#include "common/log.h"
#include "common/metrics.h"
#include "storage/storage.h"

#include "common/banned.h"

#define MOD "events"
#define LINE_MAX_LEN 8192

static const char *const action_names[EVENTS__COUNT] = {
    [EVENTS_PUSH] = "push",
    [EVENTS_PULL] = "pull",
    [EVENTS_MOUNT] = "mount",
    [EVENTS_DELETE] = "delete",
};

const char *
events_action_name(enum events_action a)
{
    return (unsigned)a < EVENTS__COUNT ? action_names[a] : "unknown";
}

/* ---- the endpoints file ------------------------------------------------------ */

struct parser {
    struct events_conf *c;
    const char *path;
    int lineno;
    struct err *e;
};

static int bad(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* an ERR_CONFIG "FILE:LINE: what" */
static int
bad(struct parser *p, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return err_set(p->e, ERR_CONFIG, 0, "%s:%d: %s", p->path, p->lineno, what);
}

static void
endpoint_defaults(struct events_endpoint_conf *ep)
{
    memset(ep, 0, sizeof(*ep));
    ep->timeout_ms = 5000;
    ep->backoff_ms = 1000;
    ep->max_backoff_ms = 60000;
    ep->queue = 1000;
    ep->batch = 100;
}

/* http://host[:port][/path] or https://...: a host is required, and nothing
 * that would let the URL carry a second request (blanks, control bytes) */
static int
url_ok(const char *u)
{
    const char *h;
    if (strncasecmp(u, "http://", 7) == 0)
        h = u + 7;
    else if (strncasecmp(u, "https://", 8) == 0)
        h = u + 8;
    else
        return 0;
    const char *at = strchr(h, '@'), *slash = strchr(h, '/');
    if (at && (!slash || at < slash))
        h = at + 1;
    if (!*h || *h == '/' || *h == ':' || *h == '?' || *h == '#')
        return 0;
    for (const char *s = u; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

/* "Name: value": a token name, no line breaks anywhere */
static int
header_ok(const char *hd)
{
    const char *colon = strchr(hd, ':');
    if (!colon || colon == hd)
        return 0;
    for (const char *s = hd; s < colon; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    for (const char *s = colon; *s; s++)
        if (*s == '\r' || *s == '\n' || *s == '\0')
            return 0;
    if (strncasecmp(hd, "Content-Type:", 13) == 0 || strncasecmp(hd, "Content-Length:", 15) == 0)
        return 0;
    return 1;
}

static int
duration_key(struct parser *p, const char *key, const char *val, int64_t min, int *out)
{
    int64_t ms;
    if (config_parse_duration_ms(val, &ms) < 0 || ms < min || ms > 3600000) {
        return bad(p, "%s: '%.60s' is not a duration in [%lldms, 1h] (e.g. 500ms, 5s)", key, val,
                   (long long)min);
    }
    *out = (int)ms;
    return 0;
}

static int
count_key(struct parser *p, const char *key, const char *val, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = isdigit((unsigned char)*val) ? strtoul(val, &end, 10) : 0;
    if (!isdigit((unsigned char)*val) || errno || *end || v < 1 || v > max) {
        return bad(p, "%s: '%.60s' is not a number in [1, %u]", key, val, max);
    }
    *out = (unsigned)v;
    return 0;
}

/* a list separated by commas and/or blanks; fn(p, item) per item */
static int
each_item(struct parser *p, char *val, int (*fn)(struct parser *, const char *))
{
    char *save = NULL;
    for (char *it = strtok_r(val, ", \t", &save); it; it = strtok_r(NULL, ", \t", &save))
        if (fn(p, it) < 0)
            return -1;
    return 0;
}

static int
ignore_action(struct parser *p, const char *it)
{
    struct events_endpoint_conf *ep = &p->c->ep[p->c->n - 1];
    for (unsigned a = 0; a < EVENTS__COUNT; a++) {
        if (strcasecmp(it, action_names[a]) == 0) {
            ep->ignore_actions |= 1u << a;
            return 0;
        }
    }
    return bad(p, "ignore_actions: '%.60s' is not push|pull|mount|delete", it);
}

static int
ignore_type(struct parser *p, const char *it)
{
    struct events_endpoint_conf *ep = &p->c->ep[p->c->n - 1];
    if (ep->nignore_types == EVENTS_MAX_IGNORED_TYPES)
        return bad(p, "ignore_media_types: more than 16 media types");
    if (strlen(it) >= sizeof(ep->ignore_types[0]))
        return bad(p, "ignore_media_types: media type too long");
    snprintf(ep->ignore_types[ep->nignore_types++], sizeof(ep->ignore_types[0]), "%s", it);
    return 0;
}

static int
parse_key(struct parser *p, const char *key, char *val)
{
    struct events_endpoint_conf *ep = &p->c->ep[p->c->n - 1];
    if (strcasecmp(key, "url") == 0) {
        if (strlen(val) >= sizeof(ep->url) || !url_ok(val))
            return bad(p, "url: not an http:// or https:// URL with a host");
        snprintf(ep->url, sizeof(ep->url), "%s", val);
        return 0;
    }
    if (strcasecmp(key, "header") == 0) {
        if (ep->nheaders == EVENTS_MAX_HEADERS)
            return bad(p, "header: more than 16 headers");
        /* the value is never echoed: it may be a credential */
        if (strlen(val) >= sizeof(ep->headers[0]) || !header_ok(val))
            return bad(p, "header: expected 'Name: value' (not Content-Type or Content-Length)");
        snprintf(ep->headers[ep->nheaders++], sizeof(ep->headers[0]), "%s", val);
        return 0;
    }
    if (strcasecmp(key, "timeout") == 0)
        return duration_key(p, "timeout", val, 1, &ep->timeout_ms);
    if (strcasecmp(key, "backoff") == 0)
        return duration_key(p, "backoff", val, 1, &ep->backoff_ms);
    if (strcasecmp(key, "max_backoff") == 0)
        return duration_key(p, "max_backoff", val, 1, &ep->max_backoff_ms);
    if (strcasecmp(key, "queue") == 0)
        return count_key(p, "queue", val, 1000000, &ep->queue);
    if (strcasecmp(key, "batch") == 0)
        return count_key(p, "batch", val, 1000, &ep->batch);
    if (strcasecmp(key, "ignore_actions") == 0)
        return each_item(p, val, ignore_action);
    if (strcasecmp(key, "ignore_media_types") == 0)
        return each_item(p, val, ignore_type);
    return bad(p,
               "unknown key '%.60s' (url, header, timeout, backoff, max_backoff, queue, batch, "
               "ignore_actions, ignore_media_types)",
               key);
}

static int
finish_section(struct parser *p)
{
    if (p->c->n == 0)
        return 0;
    struct events_endpoint_conf *ep = &p->c->ep[p->c->n - 1];
    if (!ep->url[0])
        return err_set(p->e, ERR_CONFIG, 0, "%s:%d: [endpoint \"%s\"] needs a url", p->path,
                       ep->lineno, ep->name);
    if (ep->max_backoff_ms < ep->backoff_ms)
        ep->max_backoff_ms = ep->backoff_ms;
    return 0;
}

static int
parse_header(struct parser *p, char *s)
{
    size_t n = strlen(s);
    if (n < 2 || s[n - 1] != ']')
        return bad(p, "malformed section header");
    s[n - 1] = '\0';
    char *name = ini_trim(s + 1);
    if (strncasecmp(name, "endpoint", 8) != 0 || (name[8] != ' ' && name[8] != '\t'))
        return bad(p, "unknown section (only [endpoint \"name\"])");
    char *q = ini_trim(name + 9);
    size_t qn = strlen(q);
    if (qn < 3 || q[0] != '"' || q[qn - 1] != '"')
        return bad(p, "expected [endpoint \"name\"]");
    q[qn - 1] = '\0';
    q++;
    if (strlen(q) >= EVENTS_NAME_MAX)
        return bad(p, "endpoint name longer than 63 bytes");
    for (const char *c = q; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("._-", *c))
            return bad(p, "endpoint name '%.60s': only letters, digits, '.', '_' and '-'", q);
    if (finish_section(p) < 0)
        return -1;
    for (size_t i = 0; i < p->c->n; i++)
        if (strcmp(p->c->ep[i].name, q) == 0)
            return bad(p, "endpoint '%.60s' declared twice", q);
    if (p->c->n == EVENTS_MAX_ENDPOINTS)
        return bad(p, "more than 16 endpoints");
    struct events_endpoint_conf *ep = &p->c->ep[p->c->n++];
    endpoint_defaults(ep);
    snprintf(ep->name, sizeof(ep->name), "%s", q);
    ep->lineno = p->lineno;
    return 0;
}

struct events_conf *
events_conf_load(const char *path, struct err *e)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        err_sys(e, errno == ENOENT ? ERR_CONFIG : ERR_IO, errno, "events endpoints file '%s'",
                path);
        return NULL;
    }
    struct events_conf *c = calloc(1, sizeof(*c));
    if (!c) {
        fclose(f);
        err_set(e, ERR_NOMEM, ENOMEM, "events endpoints: out of memory");
        return NULL;
    }
    struct parser p = {.c = c, .path = path, .e = e};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        p.lineno++;
        if (len > LINE_MAX_LEN) {
            rc = bad(&p, "line too long");
            break;
        }
        if (strlen(line) != (size_t)len) {
            rc = bad(&p, "NUL byte in line");
            break;
        }
        ini_cut_comment(line);
        char *s = ini_trim(line);
        if (!*s)
            continue;
        if (*s == '[') {
            if ((rc = parse_header(&p, s)) < 0)
                break;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = bad(&p, "expected 'name = value'");
            break;
        }
        *eq = '\0';
        char *key = ini_trim(s), *val = ini_trim(eq + 1);
        if (!*key)
            rc = bad(&p, "missing name before '='");
        else if (c->n == 0)
            rc = bad(&p, "line outside of an [endpoint \"name\"] section");
        else if (!*val)
            rc = bad(&p, "%s: empty value", key);
        else
            rc = parse_key(&p, key, val);
        if (rc < 0)
            break;
    }
    if (rc == 0 && ferror(f))
        rc = err_sys(e, ERR_IO, errno, "reading '%s'", path);
    if (rc == 0)
        rc = finish_section(&p);
    free(line);
    fclose(f);
    if (rc < 0) {
        free(c);
        return NULL;
    }
    return c;
}

/* ---- records and queues ------------------------------------------------------ */

/* one event as events_emit copies it: fixed size, so a queue is one array */
struct rec {
    struct timespec ts;
    uint64_t size;
    uint8_t action;
    uint8_t manifest;
    char repo[NAME_MAX_LEN + 1];
    char from[NAME_MAX_LEN + 1];
    char digest[DIGEST_STR_MAX];
    char tag[TAG_MAX_LEN + 1];
    char media_type[256];
    char actor[256];
    char req_id[64];
    char addr[64];
    char host[256];
    char method[16];
    char useragent[256];
};

struct endpoint {
    struct events *evs;
    struct events_endpoint_conf c;
    pthread_t thr;
    int started;

    pthread_mutex_t mu;
    pthread_cond_t cond; /* an event was queued, or stop */
    struct rec *ring;    /* c.queue records; [head, head + count) mod queue */
    size_t head, count;
    size_t inflight; /* records in the sender's batch (read under mu for stats) */
    uint64_t sent, failed, dropped;
    int stop;                 /* events_free began */
    struct timespec deadline; /* with stop: when sending ends */

    /* the sender's own */
    struct rec *batch; /* c.batch records */
    CURL *curl;
    struct curl_slist *hdrs;
    char url_shown[EVENTS_URL_MAX]; /* scheme://host[:port]/path: no userinfo, no query */
};

struct events {
    struct endpoint *ep;
    size_t n;
    char source[300];
    char instance[40];
    char scheme[8];
    int registered;
};

static void
cpy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

static int
ignored(const struct events_endpoint_conf *c, const struct rec *r)
{
    if (c->ignore_actions & (1u << r->action))
        return 1;
    for (size_t i = 0; i < c->nignore_types; i++)
        if (r->media_type[0] && strcasecmp(c->ignore_types[i], r->media_type) == 0)
            return 1;
    return 0;
}

void
events_emit(struct events *evs, const struct events_event *ev)
{
    if (!evs || (unsigned)ev->action >= EVENTS__COUNT)
        return;
    /* filled once on the stack, copied into each queue with one memcpy; the
     * fields are copied up to their NUL, never the whole record */
    struct rec r;
    clock_gettime(CLOCK_REALTIME, &r.ts);
    r.size = ev->size;
    r.action = (uint8_t)ev->action;
    r.manifest = (uint8_t) !!ev->manifest;
    cpy(r.repo, sizeof(r.repo), ev->repository);
    cpy(r.from, sizeof(r.from), ev->from_repository);
    cpy(r.digest, sizeof(r.digest), ev->digest);
    cpy(r.tag, sizeof(r.tag), ev->tag);
    cpy(r.media_type, sizeof(r.media_type), ev->media_type);
    cpy(r.actor, sizeof(r.actor), ev->actor);
    cpy(r.req_id, sizeof(r.req_id), ev->request_id);
    cpy(r.addr, sizeof(r.addr), ev->addr);
    cpy(r.host, sizeof(r.host), ev->host);
    cpy(r.method, sizeof(r.method), ev->method);
    cpy(r.useragent, sizeof(r.useragent), ev->useragent);
    for (size_t i = 0; i < evs->n; i++) {
        struct endpoint *ep = &evs->ep[i];
        if (ignored(&ep->c, &r))
            continue;
        pthread_mutex_lock(&ep->mu);
        if (ep->count == ep->c.queue) {
            /* full: the oldest event never sent goes */
            ep->head = (ep->head + 1) % ep->c.queue;
            ep->count--;
            ep->dropped++;
        }
        ep->ring[(ep->head + ep->count) % ep->c.queue] = r;
        ep->count++;
        pthread_cond_signal(&ep->cond);
        pthread_mutex_unlock(&ep->mu);
    }
}

/* ---- the envelope ------------------------------------------------------------ */

static void
set_str(json_t *o, const char *k, const char *v)
{
    /* distribution's fields are omitempty */
    if (v && *v)
        json_object_set_new(o, k, json_string(v));
}

/* RFC 3339 with nanoseconds, UTC (Go's time.RFC3339Nano, as distribution) */
static void
fmt_time(const struct timespec *ts, char *out, size_t cap)
{
    struct tm tm;
    time_t t = ts->tv_sec;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%09ldZ", base, (long)ts->tv_nsec);
}

static void
fmt_uuid(const unsigned char b[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char u[16];
    memcpy(u, b, 16);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    size_t j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hex[u[i] >> 4];
        out[j++] = hex[u[i] & 15];
    }
    out[j] = '\0';
}

static int
random_bytes(unsigned char *p, size_t n)
{
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static json_t *
event_json(const struct events *evs, const struct rec *r, const char *id)
{
    char ts[64];
    fmt_time(&r->ts, ts, sizeof(ts));
    json_t *o = json_object();
    set_str(o, "id", id);
    set_str(o, "timestamp", ts);
    set_str(o, "action", action_names[r->action]);

    json_t *t = json_object();
    set_str(t, "mediaType", r->media_type);
    if (r->size) {
        json_object_set_new(t, "size", json_integer((json_int_t)r->size));
    }
    set_str(t, "digest", r->digest);
    if (r->size)
        json_object_set_new(t, "length", json_integer((json_int_t)r->size));
    set_str(t, "repository", r->repo);
    set_str(t, "fromRepository", r->from);
    if (r->digest[0] && r->repo[0] && r->host[0]) {
        char url[EVENTS_URL_MAX];
        snprintf(url, sizeof(url), "%s://%s/v2/%s/%s/%s", evs->scheme, r->host, r->repo,
                 r->manifest ? "manifests" : "blobs", r->digest);
        set_str(t, "url", url);
    }
    set_str(t, "tag", r->tag);
    json_object_set_new(o, "target", t);

    json_t *q = json_object();
    set_str(q, "id", r->req_id);
    set_str(q, "addr", r->addr);
    set_str(q, "host", r->host);
    set_str(q, "method", r->method);
    set_str(q, "useragent", r->useragent);
    json_object_set_new(o, "request", q);

    json_t *a = json_object();
    set_str(a, "name", r->actor);
    json_object_set_new(o, "actor", a);

    json_t *s = json_object();
    set_str(s, "addr", evs->source);
    set_str(s, "instanceID", evs->instance);
    json_object_set_new(o, "source", s);
    return o;
}

/* the envelope of recs[0..n): a new string (free), or NULL when out of memory */
static char *
envelope(const struct events *evs, const struct rec *recs, size_t n)
{
    unsigned char *rnd = malloc(n * 16);
    json_t *root = json_object(), *list = json_array();
    char *body = NULL;
    if (!rnd || !root || !list || random_bytes(rnd, n * 16) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        char id[37];
        fmt_uuid(rnd + i * 16, id);
        json_array_append_new(list, event_json(evs, &recs[i], id));
    }
    json_object_set(root, "events", list);
    body = json_dumps(root, JSON_COMPACT);
out:
    json_decref(list);
    json_decref(root);
    free(rnd);
    return body;
}

/* ---- the sender -------------------------------------------------------------- */

static int
past(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static int
before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static int
stopping_late(struct endpoint *ep)
{
    pthread_mutex_lock(&ep->mu);
    int late = ep->stop && past(&ep->deadline);
    pthread_mutex_unlock(&ep->mu);
    return late;
}

/* libcurl's progress callback: a non-zero return aborts the transfer, so a
 * hung receiver holds a shutdown up to the flush deadline only */
static int
xfer_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    return stopping_late(arg);
}

static size_t
discard_cb(char *p, size_t sz, size_t n, void *arg)
{
    return sz * n;
}

/* one POST: 1 delivered, 0 failed (logged) */
static int
post(struct endpoint *ep, const char *body)
{
    CURL *c = ep->curl;
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    /* distribution counts any 2xx or 3xx as delivered (redirects not followed) */
    if (rc == CURLE_OK && status >= 200 && status < 400)
        return 1;
    if (rc != CURLE_OK)
        log_warn(MOD, NULL, "endpoint '%s' (%s): %s", ep->c.name, ep->url_shown,
                 curl_easy_strerror(rc));
    else
        log_warn(MOD, NULL, "endpoint '%s' (%s): status %ld", ep->c.name, ep->url_shown, status);
    return 0;
}

static void
add_ms(struct timespec *t, long ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static void *
sender(void *arg)
{
    struct endpoint *ep = arg;
    struct events *evs = ep->evs;
    char *body = NULL;
    long delay = 0; /* ms before the next attempt; 0 after a success */
    for (;;) {
        pthread_mutex_lock(&ep->mu);
        if (delay > 0) {
            /* backoff: cut short by stop, and then it ends at the deadline */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            add_ms(&until, delay);
            while (!past(&until) && !(ep->stop && past(&ep->deadline)))
                pthread_cond_timedwait(&ep->cond, &ep->mu,
                                       ep->stop && before(&ep->deadline, &until) ? &ep->deadline
                                                                                 : &until);
        }
        while (!ep->stop && ep->count == 0 && ep->inflight == 0)
            pthread_cond_wait(&ep->cond, &ep->mu);
        if (ep->stop && (past(&ep->deadline) || (ep->count == 0 && ep->inflight == 0))) {
            ep->dropped += ep->count + ep->inflight;
            ep->head = ep->count = ep->inflight = 0;
            pthread_mutex_unlock(&ep->mu);
            break;
        }
        if (ep->inflight == 0) {
            size_t n = ep->count < ep->c.batch ? ep->count : ep->c.batch;
            for (size_t i = 0; i < n; i++)
                ep->batch[i] = ep->ring[(ep->head + i) % ep->c.queue];
            ep->head = (ep->head + n) % ep->c.queue;
            ep->count -= n;
            ep->inflight = n;
        }
        size_t n = ep->inflight;
        pthread_mutex_unlock(&ep->mu);

        if (!body && !(body = envelope(evs, ep->batch, n))) {
            log_error(MOD, NULL, "endpoint '%s': out of memory building %zu events", ep->c.name, n);
            pthread_mutex_lock(&ep->mu);
            ep->failed++;
            pthread_mutex_unlock(&ep->mu);
            delay = ep->c.backoff_ms;
            continue;
        }
        int ok = post(ep, body);
        pthread_mutex_lock(&ep->mu);
        if (ok) {
            ep->sent += n;
            ep->inflight = 0;
        } else {
            ep->failed++;
        }
        pthread_mutex_unlock(&ep->mu);
        if (ok) {
            free(body);
            body = NULL;
            delay = 0;
        } else {
            delay = delay ? delay * 2 : ep->c.backoff_ms;
            if (delay > ep->c.max_backoff_ms)
                delay = ep->c.max_backoff_ms;
        }
    }
    free(body);
    return NULL;
}

/* ---- metrics ----------------------------------------------------------------- */

static void
collect(void *arg, struct metrics_out *o)
{
    struct events *evs = arg;
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"ocireg_events_sent_total", "counter", "Events delivered to a webhook endpoint."},
        {"ocireg_events_failed_total", "counter",
         "POSTs to a webhook endpoint that failed (each retried)."},
        {"ocireg_events_dropped_total", "counter",
         "Events lost: the endpoint's queue was full, or they were left at shutdown."},
        {"ocireg_events_queue_length", "gauge",
         "Events waiting for a webhook endpoint, with the batch being sent."},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metrics_family(o, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < evs->n; i++) {
            struct events_stats s;
            events_stats(evs, evs->ep[i].c.name, &s);
            char esc[EVENTS_NAME_MAX * 2], labels[EVENTS_NAME_MAX * 2 + 16];
            snprintf(labels, sizeof(labels), "endpoint=\"%s\"",
                     metrics_label_escape(evs->ep[i].c.name, esc, sizeof(esc)));
            uint64_t v = f == 0   ? s.sent
                         : f == 1 ? s.failed
                         : f == 2 ? s.dropped
                                  : s.queued + s.inflight;
            metrics_sample_u64(o, fam[f].name, labels, v);
        }
    }
}

int
events_stats(struct events *evs, const char *name, struct events_stats *out)
{
    for (size_t i = 0; evs && i < evs->n; i++) {
        struct endpoint *ep = &evs->ep[i];
        if (strcmp(ep->c.name, name) != 0)
            continue;
        pthread_mutex_lock(&ep->mu);
        out->sent = ep->sent;
        out->failed = ep->failed;
        out->dropped = ep->dropped;
        out->queued = ep->count;
        out->inflight = ep->inflight;
        pthread_mutex_unlock(&ep->mu);
        return 0;
    }
    return -1;
}

/* ---- life -------------------------------------------------------------------- */

/* the URL as logged: scheme://host[:port]/path, without userinfo or query,
 * which may carry credentials */
static void
url_for_log(const char *u, char *out, size_t cap)
{
    const char *h = strstr(u, "://");
    h = h ? h + 3 : u;
    const char *at = strchr(h, '@'), *slash = strchr(h, '/');
    const char *host = at && (!slash || at < slash) ? at + 1 : h;
    size_t plen = strcspn(host, "?#");
    snprintf(out, cap, "%.*s%.*s", (int)(h - u), u, (int)plen, host);
}

static int
endpoint_open(struct events *evs, struct endpoint *ep, const struct events_endpoint_conf *c,
              struct err *e)
{
    ep->evs = evs;
    ep->c = *c;
    pthread_mutex_init(&ep->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&ep->cond, &ca);
    pthread_condattr_destroy(&ca);
    url_for_log(c->url, ep->url_shown, sizeof(ep->url_shown));
    /* calloc'd: pages of the ring a quiet endpoint never fills are never touched */
    ep->ring = calloc(c->queue, sizeof(*ep->ring));
    ep->batch = calloc(c->batch, sizeof(*ep->batch));
    if (!ep->ring || !ep->batch)
        return err_set(e, ERR_NOMEM, ENOMEM, "events endpoint '%s': out of memory", c->name);
    /* "Expect:" with no value: no 100-continue round trip before each batch */
    const char *fixed[] = {"Content-Type: " EVENTS_CONTENT_TYPE, "Expect:"};
    for (size_t i = 0; i < 2 + c->nheaders; i++) {
        struct curl_slist *h = curl_slist_append(ep->hdrs, i < 2 ? fixed[i] : c->headers[i - 2]);
        if (!h)
            return err_set(e, ERR_NOMEM, ENOMEM, "events endpoint '%s': out of memory", c->name);
        ep->hdrs = h;
    }
    if (!(ep->curl = curl_easy_init()))
        return err_set(e, ERR_INTERNAL, 0, "events endpoint '%s': libcurl init failed", c->name);
    CURL *cu = ep->curl;
    curl_easy_setopt(cu, CURLOPT_URL, c->url);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, ep->hdrs);
    curl_easy_setopt(cu, CURLOPT_USERAGENT, "ocireg-events");
    curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(cu, CURLOPT_XFERINFOFUNCTION, xfer_cb);
    curl_easy_setopt(cu, CURLOPT_XFERINFODATA, ep);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http,https");
    int rc = pthread_create(&ep->thr, NULL, sender, ep);
    if (rc != 0)
        return err_sys(e, ERR_INTERNAL, rc, "events endpoint '%s': thread", c->name);
    ep->started = 1;
    log_info(MOD, NULL, "endpoint '%s': %s timeout=%dms queue=%u batch=%u headers=%zu", c->name,
             ep->url_shown, c->timeout_ms, c->queue, c->batch, c->nheaders);
    return 0;
}

struct events *
events_new(const struct events_conf *conf, const char *source_addr, const char *scheme,
           struct err *e)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        err_set(e, ERR_INTERNAL, 0, "events: libcurl global init failed");
        return NULL;
    }
    struct events *evs = calloc(1, sizeof(*evs));
    if (!evs || (conf->n && !(evs->ep = calloc(conf->n, sizeof(*evs->ep))))) {
        free(evs);
        curl_global_cleanup();
        err_set(e, ERR_NOMEM, ENOMEM, "events: out of memory");
        return NULL;
    }
    snprintf(evs->source, sizeof(evs->source), "%s", source_addr ? source_addr : "");
    snprintf(evs->scheme, sizeof(evs->scheme), "%s", scheme ? scheme : "http");
    unsigned char rnd[16];
    if (random_bytes(rnd, sizeof(rnd)) < 0) {
        err_sys(e, ERR_INTERNAL, errno, "events: getrandom");
        goto fail;
    }
    fmt_uuid(rnd, evs->instance);
    for (size_t i = 0; i < conf->n; i++) {
        evs->n = i + 1; /* events_free releases what endpoint_open began */
        if (endpoint_open(evs, &evs->ep[i], &conf->ep[i], e) < 0)
            goto fail;
    }
    if (metrics_register(collect, evs, e) < 0)
        goto fail;
    evs->registered = 1;
    return evs;
fail:
    events_free(evs);
    return NULL;
}

void
events_free(struct events *evs)
{
    if (!evs)
        return;
    if (evs->registered)
        metrics_unregister(collect, evs);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    add_ms(&deadline, EVENTS_FLUSH_MS);
    for (size_t i = 0; i < evs->n; i++) {
        struct endpoint *ep = &evs->ep[i];
        pthread_mutex_lock(&ep->mu);
        ep->stop = 1;
        ep->deadline = deadline;
        pthread_cond_broadcast(&ep->cond);
        pthread_mutex_unlock(&ep->mu);
    }
    for (size_t i = 0; i < evs->n; i++) {
        struct endpoint *ep = &evs->ep[i];
        if (ep->started) {
            pthread_join(ep->thr, NULL);
            if (ep->dropped)
                log_warn(MOD, NULL, "endpoint '%s': %llu events dropped, %llu sent", ep->c.name,
                         (unsigned long long)ep->dropped, (unsigned long long)ep->sent);
        }
        if (ep->curl)
            curl_easy_cleanup(ep->curl);
        curl_slist_free_all(ep->hdrs);
        free(ep->ring);
        free(ep->batch);
        pthread_mutex_destroy(&ep->mu);
        pthread_cond_destroy(&ep->cond);
    }
    free(evs->ep);
    free(evs);
    curl_global_cleanup();
}
