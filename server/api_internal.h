/* api_internal.h - shared by server/api*.c only: the per-worker context, the
 * reply helpers, a small JSON writer, and one handler per route and method. */
#ifndef OCIREG_API_INTERNAL_H
#define OCIREG_API_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "server/api.h"
#include "server/http.h"
#include "server/router.h"
#include "storage/storage.h"

#define API_MOD "api"
#define CT_JSON "application/json"
#define CT_OCTET "application/octet-stream"

struct api {
    struct storage *st;
    struct api_opts o;
    /* blocking work (upload commits, re-hashes, manifest PUTs, DELETEs,
     * mounts): each thread's context is a struct api_pool_ctx; handlers reach
     * it with http_req_offload or api_offload_call */
    struct pool *pool;
    struct pool *upload_pool; /* NULL: the workers hash and write upload bodies */
    /* byte budget of one page of tags list / catalog / referrers JSON
     * (API_PAGE_BYTES; tests lower it in-process to page with small data) */
    size_t page_bytes;
    /* auth (server/api_auth.c), NULL when off */
    struct api_auth *auth;
    /* lifecycle flags, set from any thread (api_set_read_only, api_set_draining):
     * read and written with atomic builtins; o.max_page likewise. /readyz
     * answers 503 while draining */
    int read_only;
    int draining;
    /* operations (server/api_ops.c): the per-worker request counters, those
     * of workers that ended, and the main server (open and refused
     * connections), under ops_mu */
    pthread_mutex_t ops_mu;
    struct api_wstats *wstats;
    struct api_wstats *retired;
    const struct http_server *srv;
};

/* ---- operations endpoints and metrics (server/api_ops.c) ----
 * The app's label of a request (http_req_set_tag): a route kind (enum
 * route_kind, 0 = "none": no such endpoint, or a request the layer refused
 * before dispatch), or one of these endpoints outside /v2/. */
enum {
    API_TAG_TOKEN = ROUTE_REFERRERS + 1, /* /auth/token */
    API_TAG_METRICS,                     /* /metrics */
    API_TAG_HEALTH,                      /* /livez, /readyz, /startupz */
    API_TAGS
};
struct api_wstats;
/* api_ops_init - the api's part of metrics: its collector registered
 * (ERR_NOMEM), its lock made. api_ops_release undoes it (in api_free). */
int api_ops_init(struct api *a, struct err *e);
void api_ops_release(struct api *a);
/* api_ops_worker_init - the worker's counters, linked into the api's list;
 * NULL on ERR_NOMEM. api_ops_worker_release adds them to the retired totals
 * and frees them. */
struct api_wstats *api_ops_worker_init(struct api *a, struct err *e);
void api_ops_worker_release(struct api *a, struct api_wstats *ws);
/* api_ops_on_end - the http_app on_end callback (the worker's counters) */
void api_ops_on_end(struct http_req *r, void *wctx, int status, uint64_t bytes_in,
                    uint64_t bytes_out, double seconds);
/* api_ops_dispatch - /metrics, /livez, /readyz and /startupz on the main
 * listener: 1 when path is one of them (the request is then answered or
 * suspended), 0 otherwise (nothing done) */
struct api_worker;
int api_ops_dispatch(struct api_worker *w, struct http_req *r, const char *path);

/* ---- auth (server/api_auth.c) ----
 * Who a request is, decided before its handler runs (DESIGN.md: "auth decides
 * from (identity, repository, action) before a handler runs"). dispatch
 * allocates a struct api_call per request and hands &call->rt to the
 * handlers, which find the identity with api_who(rt). */
struct token_claims;
struct api_ident {
    const char *user;                /* NULL: anonymous */
    const struct token_claims *tok;  /* a bearer token's claims, or NULL */
};
struct api_call {
    struct route rt;
    struct api_ident who;
};
static inline const struct api_ident *
api_who(const struct route *rt)
{
    return &((const struct api_call *)(const void *)rt)->who;
}

struct api_auth;
struct api_worker;
typedef void (*api_route_fn)(struct api_worker *w, struct http_req *r, struct route *rt);
/* api_auth_new - load htpasswd, rules, keys per o. NULL with ERR_CONFIG/ERR_IO */
struct api_auth *api_auth_new(const struct api_auth_opts *o, struct err *e);
void api_auth_free(struct api_auth *au);
int api_auth_reload(struct api_auth *au, struct err *e);
/* api_auth_request - decide whether the routed request may run: run(w, r, rt)
 * at once or after a password check on the auth pool, or reply 401 (with the
 * challenge), 403 DENIED or 429. */
void api_auth_request(struct api_worker *w, struct http_req *r, struct route *rt,
                      api_route_fn run);
/* api_auth_token - the built-in token issuer (GET or POST /auth/token) */
void api_auth_token(struct api_worker *w, struct http_req *r);
/* api_auth_may - 1 when the request's identity may do `action` (ACCESS_*) in
 * repository repo (always 1 with auth off): what mounts (pull of `from`) ask */
int api_auth_may(const struct api *a, const struct route *rt, const char *repo, unsigned action);
/* api_auth_may_list - 1 when repo belongs in the caller's _catalog (it may pull
 * it by the rules, whatever its token names) */
int api_auth_may_list(const struct api *a, const struct route *rt, const char *repo);
/* api_auth_on - 1 when auth is on */
int api_auth_on(const struct api *a);
/* api_auth_admin - like api_auth_request, for an endpoint of admins only
 * (/metrics): run(w, r, rt) when the request's identity (Basic user, bearer
 * token's subject, TLS certificate) is an admin by the access rules, else 401
 * with the challenge (no or bad credentials), 403 DENIED or 429. rt is the
 * request's api_call route (kind ROUTE_NONE). */
void api_auth_admin(struct api_worker *w, struct http_req *r, struct route *rt, api_route_fn run);
/* what the auth step has decided since start (relaxed counters): logins and
 * tokens accepted and refused by scheme, logins refused by the failure limit */
struct api_auth_counts {
    uint64_t ok_basic, ok_bearer;     /* credentials accepted */
    uint64_t fail_basic, fail_bearer; /* wrong, malformed or expired */
    uint64_t limited;                 /* 429: too many failures */
};
/* api_auth_counts - the counters into *out (zeros when auth is off) */
void api_auth_counts(const struct api *a, struct api_auth_counts *out);

/* A page of tags, repositories or referrers stops before the entry that would
 * take its JSON body past this many bytes (and a Link header points at the
 * rest), so one request never builds a body of unbounded size. A single
 * referrer descriptor larger than the budget is sent alone (see
 * api_referrers.c). */
#define API_PAGE_BYTES (1u << 20)

/* a blocking-work pool thread's context: its storage handle, opened by
 * api_pool_handle at the first job that needs it */
struct api_pool_ctx {
    struct api *a;
    struct storage_handle *h;
};
/* api_pool_handle - the pool thread's storage handle (tctx: the job's thread
 * context), opened on first use; NULL with the open's error (ERR_DB, ERR_IO) */
struct storage_handle *api_pool_handle(void *tctx, struct err *e);

/* api_offload_call - run a storage call that waits for a durable commit (the
 * group WAL fsync) on the api's pool, never on the worker's event loop:
 * call(h, rt, arg, e) on a pool thread with that thread's storage handle, then
 * on the request's worker: its error replied (api_reply_err) when it returned
 * < 0, else done(w, r, rt, arg, rc) unless the client has gone meanwhile. A
 * refused job (full queue: 503 TOOMANYREQUESTS) is replied here. arg must live
 * as long as the request (http_req_alloc). */
struct api_worker;
typedef int (*api_call_fn)(struct storage_handle *h, const struct route *rt, void *arg,
                           struct err *e);
typedef void (*api_done_fn)(struct api_worker *w, struct http_req *r, const struct route *rt,
                            void *arg, int rc);
void api_offload_call(struct api_worker *w, struct http_req *r, const struct route *rt,
                      api_call_fn call, api_done_fn done, void *arg);
/* api_reply_accepted - an api_done_fn replying 202 without a body (DELETEs) */
/* api_reply_deleted - the same after a manifest, tag or blob DELETE, with its
 * delete event (api_event) */
void api_reply_deleted(struct api_worker *w, struct http_req *r, const struct route *rt,
                       void *arg, int rc);
void api_reply_accepted(struct api_worker *w, struct http_req *r, const struct route *rt, void *arg,
                        int rc);

/* one per worker thread: its storage handle and a reusable output buffer (JSON
 * bodies are built here and copied by http_reply). The buffer is kept between
 * requests up to JBUF_KEEP bytes, so a request normally allocates nothing; a
 * larger one (a single oversized referrer) is freed after its reply. */
struct api_worker {
    struct api *a;
    struct storage_handle *h;
    struct api_wstats *stats; /* request counters (api_ops.c) */
    char *buf;
    size_t cap;
};

/* ---- JSON writer over the worker buffer ----
 * Bounded: jbuf_init gives the largest body the request may build. Growing past
 * it sets err = JBUF_E_LIMIT, a failed allocation err = JBUF_E_NOMEM; from then
 * on every write is a no-op until jbuf_rewind. Nothing here aborts: the handler
 * checks err and answers (500 for JBUF_E_NOMEM), one request's OOM never takes
 * the server down. */
enum { JBUF_OK = 0, JBUF_E_LIMIT = 1, JBUF_E_NOMEM = 2 };
struct jbuf {
    struct api_worker *w;
    size_t len;
    size_t limit;
    int err;
};
void jbuf_init(struct jbuf *j, struct api_worker *w, size_t limit);
void jbuf_put(struct jbuf *j, const char *s, size_t n);
#define jbuf_lit(j, lit) jbuf_put((j), lit, sizeof(lit) - 1)
/* a JSON string literal with quotes; bytes >= 0x80 pass through (UTF-8) */
void jbuf_str(struct jbuf *j, const char *s);
/* a list item: ',' (when comma) then s[0..n) as a JSON string, in one reserve */
void jbuf_item(struct jbuf *j, int comma, const char *s, size_t n);
void jbuf_u64(struct jbuf *j, uint64_t v);
/* back to length `mark` (a value of j->len taken earlier), clearing err */
void jbuf_rewind(struct jbuf *j, size_t mark);
const char *jbuf_data(const struct jbuf *j);
/* after the reply: drop an unusually large buffer so one huge reply does not
 * pin memory for the worker's life */
void jbuf_done(struct jbuf *j);
/* reply 500 for a jbuf in error (NOMEM, or a body over its limit) */
void api_reply_jbuf_err(struct http_req *r, struct jbuf *j);

/* ---- paging of tags list, catalog and referrers ----
 * One page: at most `n` entries (the client's `n` clamped to [server]
 * max_page, max_page without one), stopping earlier before the entry that
 * would take the JSON body past the byte budget (api->page_bytes; the first
 * entry always goes). When entries remain, `Link: <BASE?n=N&last=L>;
 * rel="next"` (RFC 5988, spec end-8b) names the page size and the last entry
 * sent; referrers take no `n` and their Link is `<BASE?last=L&FILTER>`. */
#define API_PAGE_KEY_MAX 256 /* >= NAME_MAX_LEN, TAG_MAX_LEN, DIGEST_STR_MAX */
struct api_page {
    long n;                         /* entries at most on this page */
    const char *last;               /* resume after this entry (decoded query value), NULL: start */
    size_t budget;                  /* soft byte budget of the body */
    size_t count;                   /* entries kept so far */
    int more;                       /* entries remain after this page */
    char key[API_PAGE_KEY_MAX + 1]; /* the last entry kept (Link's last=) */
};
/* api_page_begin - read `n` (when with_n) and `last` of the query into p.
 * `n`: digits only (else ERR_BAD_REQUEST, 400), any number of them (above
 * max_page it is clamped); `last`: at most maxlast bytes (else ERR_BAD_REQUEST;
 * pass SIZE_MAX to check it elsewhere). Returns 0, or -1 after having replied. */
int api_page_begin(struct api_worker *w, struct http_req *r, int with_n, size_t maxlast,
                   struct api_page *p);
/* api_page_fit - after an entry was written to j from `mark`: 1 when it stays
 * (then call api_page_keep), 0 when the page is full (the entry is taken back,
 * p->more set: the caller stops). An entry that fails on its own (j->err) is
 * left to the caller (1 is returned with j->err set). */
int api_page_fit(struct api_page *p, struct jbuf *j, size_t mark);
/* api_page_keep - count the entry written last and remember its key (n bytes) */
void api_page_keep(struct api_page *p, const char *key, size_t n);
/* api_page_link - the Link header when entries remain and this page is not
 * empty: `<BASE?n=N&last=KEY EXTRA>` (with_n) or `<BASE?last=KEY EXTRA>`; base
 * and extra are already URL-safe (extra "" or "&name=value") */
void api_page_link(struct http_req *r, const struct api_page *p, int with_n, const char *base,
                   const char *extra);

/* Test hook (fault injection): the next `count` growths of a worker's JSON
 * buffer fail as if malloc had returned NULL. Thread-safe; 0 disables. */
void api_fault_alloc(int count);

/* ---- events (server/events.h) ---- */
/* api_event - emit `action` (enum events_action) for the request's repository
 * (rt->name) with its identity, request id, client address, Host and
 * User-Agent; digest, tag and media_type may be NULL. manifest: 1 for a
 * manifest, 0 for a blob. Returns at once, reading nothing, when no endpoint
 * is configured (the hot paths stay allocation-free); never allocates. */
void api_event(struct api_worker *w, struct http_req *r, const struct route *rt, int action,
               int manifest, const char *digest, const char *tag, const char *media_type,
               uint64_t size);
/* api_event_mount - the mount event of blob `digest` from repository `from`
 * (NULL: an automatic mount) into rt->name */
void api_event_mount(struct api_worker *w, struct http_req *r, const struct route *rt,
                     const char *digest, const char *from, uint64_t size);

/* ---- replies ---- */
/* reply the error of e (http_reply_error), logging 5xx once */
void api_reply_err(struct http_req *r, const struct err *e);
/* answer a HEAD: Content-Length `size`, no body, no file opened */
/* api_reply_reader - reply with len bytes of rd from off; takes over rd (closed
 * by the time the reply ends): zero-copy (http_reply_fd) when the blob backend
 * offers a descriptor, else streamed from the reader (http_reply_stream) */
void api_reply_reader(struct api_worker *w, struct http_req *r, int status,
                      const char *content_type, struct blob_reader *rd, uint64_t off,
                      uint64_t len);
void api_reply_head(struct http_req *r, int status, const char *content_type, uint64_t size);
/* Location + Range + Docker-Upload-UUID of an upload session */
void api_upload_headers(struct http_req *r, const char *name, const char *uuid, uint64_t offset);

/* ---- handlers (route already validated) ---- */
void api_blob_get(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_blob_delete(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_start(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_patch(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_put(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_status(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_cancel(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_manifest_get(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_manifest_put(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_manifest_delete(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_tags_list(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_catalog(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_referrers(struct api_worker *w, struct http_req *r, const struct route *rt);

#endif
