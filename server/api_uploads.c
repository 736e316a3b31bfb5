/* api_uploads.c - blob upload sessions over HTTP: end-4a/4b/4c (POST), end-11
 * (mount), end-5 (PATCH), end-6 (PUT), end-13 (GET status), end-14 (DELETE).
 *
 * A request that writes to a session holds its lease (storage_upload_acquire)
 * from dispatch to the end of the request:
 *
 *   dispatch --acquire--> LEASED --on_body*--> LEASED --on_complete--> released | committed
 *                            |                     |
 *                            |                     +--write error--> session destroyed by
 *                            |                     |                 storage (u = NULL), 5xx
 *                            |                     +--on_abort--> released (monolithic POST:
 *                            |                                    session cancelled)
 *                            +--bad Content-Range--> released, 416 (session stays valid)
 *
 * Writes: when the worker has an io_uring (http_req_async_writes), each piece of
 * the body is hashed and its place reserved (upload_write_begin), then written
 * by the ring from the connection's receive buffer (http_req_body_write) while
 * the next piece is received; up_written ends it (upload_write_end). The layer
 * calls on_complete / on_abort only after the last write ended, so the lease
 * (and the file descriptor the ring writes to) outlives every write. A failed
 * write dooms the session: storage destroys it when the last write in flight
 * has ended (ctx->inflight reaches 0). Without a ring, or when the session's
 * blob writer offers no descriptor (upload_write_async): upload_write.
 *
 * A declared Content-Length that would take the upload past max_blob_size is
 * answered 413 (SIZE_INVALID) before any body byte is read.
 *
 * Blocking work goes to the api's pool (http_req_offload; the request waits,
 * its worker serves its other connections): the commit of a PUT or monolithic
 * POST (hash check, fsync, rename, directory fsync, durable rows), run with the
 * pool thread's storage handle (upload_handle_set), and the re-hash of a session
 * leased without in-memory state after a restart (storage_upload_lease,
 * upload_rehash), before the request goes on. A client gone meanwhile changes
 * nothing: the commit stands (its reply is dropped), a re-hashed lease is given
 * back. A full pool queue is 503 TOOMANYREQUESTS; the session stays (released).
 *
 * Invariants: ctx->u is NULL exactly when the lease is no longer ours (released,
 * committed, or destroyed by a failed write/commit); every path that replies
 * has given the lease back first, so a client may follow up at once. A write
 * error while other writes are in flight is answered only once the last one
 * has ended and storage has destroyed the session (FAILING: body bytes that
 * arrive meanwhile are read and dropped), so a client that follows up after
 * the error finds the session gone, never half-alive. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "auth/access.h"
#include "server/api_internal.h"
#include "server/events.h"

#include "common/banned.h"

struct upctx {
    struct api_worker *w;
    const struct route *rt;
    struct upload *u;
    const char *uuid;    /* request-arena copy */
    int finish;          /* commit at the end (PUT, monolithic POST) */
    int cancel_on_abort; /* monolithic POST: the client never saw the session */
    struct digest want;
    int64_t want_size;
    unsigned inflight; /* asynchronous writes begun, not yet ended */
    int failed;        /* a write failed: FAILING until replied */
    int replied;       /* the error reply is out */
    struct err ferr;   /* the first failure, for the deferred reply */
    /* a job on the pool: the lease it was given (commit), its outcome */
    struct upload *cu;
    uint64_t size; /* of the committed blob (its push event) */
    int job_rc;
    struct err job_err;
};

static void
reply_created(struct http_req *r, const char *name, const struct digest *d)
{
    char ds[DIGEST_STR_MAX];
    digest_format(d, ds);
    http_reply_header(r, "Location", "/v2/%s/blobs/%s", name, ds);
    http_reply_header(r, "Docker-Content-Digest", "%s", ds);
    http_reply(r, 201, NULL, NULL, 0);
}

static int up_fail_reply(struct http_req *r, struct upctx *c);

/* on a pool thread: spec end-6, the digest of the whole upload must match; the
 * lease is gone after the call whatever the outcome (a database error keeps the
 * session for a retried PUT, except for a monolithic POST, whose id the client
 * never saw) */
static void
commit_work(void *tctx, void *arg)
{
    struct upctx *c = arg;
    struct storage_handle *h = api_pool_handle(tctx, &c->job_err);
    if (!h) {
        upload_release(c->cu); /* the session stays for a retried PUT */
        c->cu = NULL;
        c->job_rc = -1;
        return;
    }
    upload_handle_set(c->cu, h);
    c->size = upload_offset(c->cu);
    c->job_rc = upload_commit(c->cu, &c->want, c->want_size, &c->job_err);
    c->cu = NULL;
    if (c->job_rc < 0 && c->cancel_on_abort)
        storage_upload_cancel(h, c->rt->name, c->uuid, NULL);
}

/* back on the worker */
static void
commit_done(struct http_req *r, void *arg)
{
    struct upctx *c = arg;
    if (c->job_rc < 0) {
        api_reply_err(r, &c->job_err);
        return;
    }
    /* distribution sends push events for blobs too */
    char ds[DIGEST_STR_MAX];
    api_event(c->w, r, c->rt, EVENTS_PUSH, 0, digest_format(&c->want, ds), NULL, CT_OCTET, c->size);
    reply_created(r, c->rt->name, &c->want);
}

static void
up_complete(struct http_req *r, void *state)
{
    struct upctx *c = state;
    struct err e;
    struct upload *u = c->u;

    if (c->failed) {
        /* the body ended while FAILING; no write is in flight now */
        up_fail_reply(r, c);
        return;
    }
    c->u = NULL;
    if (c->finish) {
        c->cu = u;
        if (http_req_offload(r, c->w->a->pool, commit_work, commit_done, c, &e) < 0) {
            c->cu = NULL;
            upload_release(u);
            if (c->cancel_on_abort)
                storage_upload_cancel(c->w->h, c->rt->name, c->uuid, NULL);
            api_reply_err(r, &e);
        }
        return;
    }
    uint64_t off = upload_offset(u);
    upload_release(u);
    api_upload_headers(r, c->rt->name, c->uuid, off);
    http_reply(r, 202, NULL, NULL, 0);
}

/* reply the failure once no write is in flight (storage has destroyed the
 * session by then); -1 once replied, 0 while FAILING */
static int
up_fail_reply(struct http_req *r, struct upctx *c)
{
    if (c->replied)
        return -1;
    if (c->inflight)
        return 0; /* FAILING: keep reading (and dropping) until the writes end */
    c->u = NULL;
    c->replied = 1;
    api_reply_err(r, &c->ferr);
    return -1;
}

/* a write failed (or a begin): the session is destroyed by storage once no
 * write is in flight */
static int
up_write_failed(struct http_req *r, struct upctx *c, const struct err *e)
{
    if (!c->failed) {
        c->failed = 1;
        c->ferr = *e;
    }
    return up_fail_reply(r, c);
}

static int
up_written(struct http_req *r, void *state, uint64_t off, size_t n, long res)
{
    struct upctx *c = state;
    struct err e;
    c->inflight--;
    if (upload_write_end(c->u, off, n, res, &e) < 0)
        return up_write_failed(r, c, &e);
    return c->failed ? up_fail_reply(r, c) : 0;
}

/* on an upload-pool thread: hash and write one piece (no reply, no database) */
static long
up_piece(void *tctx, void *state, const void *data, size_t n)
{
    struct upctx *c = state;
    return upload_piece_write(c->u, data, n) < 0 ? -1 : (long)n;
}

/* back on the worker, pieces in order */
static int
up_piece_done(struct http_req *r, void *state, uint64_t off, size_t n, long res)
{
    struct upctx *c = state;
    struct err e;
    c->inflight--;
    if (upload_piece_end(c->u, &e) < 0)
        return up_write_failed(r, c, &e);
    return c->failed ? up_fail_reply(r, c) : 0;
}

static int
up_body(struct http_req *r, void *state, const void *data, size_t n)
{
    struct upctx *c = state;
    struct err e;
    if (c->failed)
        return up_fail_reply(r, c);
    if (!c->u)
        return -1;
    if (http_req_body_pooled(r)) {
        if (upload_piece_begin(c->u, &e) < 0)
            return up_write_failed(r, c, &e);
        c->inflight++;
        /* up_piece_done may run before this returns (worked at once) */
        http_req_body_offload(r, data, n, up_piece, up_piece_done);
        return c->failed ? up_fail_reply(r, c) : 0;
    }
    if (!http_req_async_writes(r) || !upload_write_async(c->u)) {
        if (upload_write(c->u, data, n, &e) < 0) {
            c->u = NULL; /* storage destroyed the session and released it */
            api_reply_err(r, &e);
            return -1;
        }
        return 0;
    }
    int fd;
    uint64_t off;
    if (upload_write_begin(c->u, data, n, &fd, &off, &e) < 0)
        return up_write_failed(r, c, &e);
    c->inflight++;
    /* up_written may run before this returns (a synchronous fallback) */
    http_req_body_write(r, fd, off, data, n, up_written);
    return c->failed ? up_fail_reply(r, c) : 0;
}

static void
up_abort(struct http_req *r, void *state)
{
    struct upctx *c = state;
    if (c->u) {
        upload_release(c->u);
        c->u = NULL;
    }
    if (c->cancel_on_abort)
        storage_upload_cancel(c->w->h, c->rt->name, c->uuid, NULL);
}

/* the early 413: a declared length that would take the upload past
 * max_blob_size is refused before any byte is read (storage would refuse it
 * when the limit is crossed, after having received and written up to it).
 * The session stays usable (nothing was written), except a monolithic POST's,
 * which the client never saw. Returns 1 after having replied. */
static int
refuse_too_large(struct http_req *r, struct upctx *c)
{
    uint64_t max = upload_size_limit(c->u);
    int64_t cl = http_req_content_length(r);
    if (!max || cl <= 0)
        return 0;
    uint64_t off = upload_offset(c->u);
    if (off <= max && (uint64_t)cl <= max - off)
        return 0;
    upload_release(c->u);
    c->u = NULL;
    if (c->cancel_on_abort)
        storage_upload_cancel(c->w->h, c->rt->name, c->uuid, NULL);
    http_reply_errorf(r, ERR_TOO_LARGE, "blob larger than the limit of %llu bytes",
                      (unsigned long long)max);
    return 1;
}

static void
begin_body(struct http_req *r, struct upctx *c)
{
    if (refuse_too_large(r, c))
        return;
    if (http_req_has_body(r)) {
        if (c->w->a->upload_pool)
            http_req_body_pool(r, c->w->a->upload_pool);
        http_req_on_body(r, up_body, up_complete, up_abort, c);
    }
    else
        up_complete(r, c);
}

static struct upctx *
upctx_new(struct api_worker *w, struct http_req *r, const struct route *rt, const char *uuid)
{
    struct upctx *c = http_req_alloc(r, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->w = w;
    c->rt = rt;
    c->uuid = http_req_strdup(r, uuid);
    c->want_size = -1;
    return c;
}

/* spec end-5: a chunk must start at the current offset and its Content-Range
 * must agree with its length; otherwise 416 with the current Range, and the
 * session stays usable. Returns 0 to go on, -1 after having replied (the lease
 * is then released). */
static int
check_content_range(struct http_req *r, struct upctx *c)
{
    const char *cr = http_req_header(r, "Content-Range");
    if (!cr)
        return 0;
    struct err e;
    uint64_t start = 0, end = 0;
    uint64_t off = upload_offset(c->u);
    int64_t cl = http_req_content_length(r);

    if (range_parse_content(cr, strlen(cr), &start, &end, &e) < 0) {
        err_set(&e, ERR_RANGE_INVALID, 0, "invalid Content-Range");
    } else if (start != off) {
        err_set(&e, ERR_RANGE_INVALID, 0,
                "out-of-order chunk: starts at %" PRIu64 ", expected %" PRIu64, start, off);
    } else if (cl < 0) {
        /* a chunked body cannot be checked against the range before its bytes
         * are appended: refuse the combination up front */
        upload_release(c->u);
        c->u = NULL;
        http_reply_errorf(r, ERR_BLOB_UPLOAD_INVALID,
                          "Content-Range needs a Content-Length, not a chunked body");
        return -1;
    } else if ((uint64_t)cl != end - start + 1) {
        err_set(&e, ERR_RANGE_INVALID, 0, "Content-Length does not match Content-Range");
    } else {
        return 0;
    }
    upload_release(c->u);
    c->u = NULL;
    api_upload_headers(r, c->rt->name, c->uuid, off);
    http_reply_error(r, &e);
    return -1;
}

/* the request holds the lease of a session with its state: a PATCH checks its
 * Content-Range, a PUT with a body too, then the body */
static void
upload_proceed(struct http_req *r, struct upctx *c)
{
    if ((!c->finish || http_req_has_body(r)) && check_content_range(r, c) < 0)
        return;
    begin_body(r, c);
}

/* on a pool thread: rebuild the hash of a session leased after a restart */
static void
rehash_work(void *tctx, void *arg)
{
    struct upctx *c = arg;
    c->job_rc = upload_rehash(c->u, &c->job_err);
    if (c->job_rc < 0)
        c->u = NULL; /* the lease was given back */
}

static void
rehash_done(struct http_req *r, void *arg)
{
    struct upctx *c = arg;
    if (c->job_rc < 0) {
        api_reply_err(r, &c->job_err);
        return;
    }
    if (http_req_is_dead(r)) {
        upload_release(c->u);
        c->u = NULL;
        return;
    }
    upload_proceed(r, c);
}

/* lease the session of the route for c; then upload_proceed, at once or after
 * the re-hash on the pool */
static void
upload_lease_and_proceed(struct api_worker *w, struct http_req *r, struct upctx *c)
{
    struct err e;
    c->u = storage_upload_lease(w->h, c->rt->name, c->rt->ref, &e);
    if (!c->u) {
        api_reply_err(r, &e);
        return;
    }
    if (!upload_needs_rehash(c->u)) {
        upload_proceed(r, c);
        return;
    }
    if (http_req_offload(r, w->a->pool, rehash_work, rehash_done, c, &e) < 0) {
        upload_release(c->u);
        c->u = NULL;
        api_reply_err(r, &e);
    }
}

/* spec: an unsupported algorithm is the client's error (400), not a media type */
static int
parse_query_digest(const char *s, struct digest *d, struct err *e)
{
    if (digest_parse(s, strlen(s), d, e) == 0)
        return 0;
    err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest parameter");
    return -1;
}

static void
start_session(struct api_worker *w, struct http_req *r, const struct route *rt,
              enum digest_algo algo)
{
    struct err e;
    char uuid[UPLOAD_ID_LEN + 1];
    if (storage_upload_start(w->h, rt->name, algo, uuid, &e) < 0) {
        api_reply_err(r, &e);
        return;
    }
    api_upload_headers(r, rt->name, uuid, 0);
    http_reply(r, 202, NULL, NULL, 0);
}

/* a session (POST without a mount, or after a mount not done): end-4b's
 * monolithic upload with ?digest=, else an empty session. After a mount
 * attempt, a digest-algorithm is not looked at (the mount's digest names it). */
static void
upload_begin(struct api_worker *w, struct http_req *r, const struct route *rt, int mounting)
{
    struct err e;
    const char *dq = http_req_query(r, "digest");
    const char *alg = http_req_query(r, "digest-algorithm");
    enum digest_algo algo = DIGEST_SHA256;

    if (mounting && !dq) {
        start_session(w, r, rt, algo);
        return;
    }
    if (dq) {
        /* end-4b: monolithic single-request upload */
        struct digest d;
        char uuid[UPLOAD_ID_LEN + 1];
        if (parse_query_digest(dq, &d, &e) < 0) {
            http_reply_error(r, &e);
            return;
        }
        if (storage_upload_start(w->h, rt->name, d.algo, uuid, &e) < 0) {
            api_reply_err(r, &e);
            return;
        }
        struct upctx *c = upctx_new(w, r, rt, uuid);
        c->u = storage_upload_acquire(w->h, rt->name, uuid, &e);
        if (!c->u) {
            storage_upload_cancel(w->h, rt->name, uuid, NULL);
            api_reply_err(r, &e);
            return;
        }
        c->finish = 1;
        c->cancel_on_abort = 1;
        c->want = d;
        c->want_size = http_req_content_length(r);
        begin_body(r, c);
        return;
    }

    if (alg && digest_algo_parse(alg, strlen(alg), &algo, &e) < 0) {
        http_reply_errorf(r, ERR_DIGEST_INVALID, "unsupported digest-algorithm");
        return;
    }
    start_session(w, r, rt, algo);
}

/* end-11: the mount's durable commit (the link row) waits for the group WAL
 * fsync, so it runs on the pool; the session that follows a mount not done is
 * started back on the worker (a light transaction) */
struct mountctx {
    const char *from;
    struct digest md;
};

static int
mount_call(struct storage_handle *h, const struct route *rt, void *arg, struct err *e)
{
    struct mountctx *m = arg;
    return storage_blob_mount(h, rt->name, m->from, &m->md, e);
}

static void
mount_done(struct api_worker *w, struct http_req *r, const struct route *rt, void *arg, int rc)
{
    struct mountctx *m = arg;
    if (rc != 1) {
        upload_begin(w, r, rt, 1);
        return;
    }
    /* distribution's mount event: the blob's descriptor and the source (the
     * size is looked up only when events are on: one row and one stat) */
    uint64_t size = 0;
    char ds[DIGEST_STR_MAX];
    if (w->a->o.events)
        storage_blob_open(w->h, rt->name, &m->md, NULL, &size, NULL);
    api_event_mount(w, r, rt, digest_format(&m->md, ds), m->from, size);
    reply_created(r, rt->name, &m->md);
}

void
api_upload_start(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    const char *mount = http_req_query(r, "mount");

    if (!mount) {
        upload_begin(w, r, rt, 0);
        return;
    }
    /* spec: a mount that cannot be done for invalid arguments falls back to a
     * normal upload session (202) */
    struct mountctx *m = http_req_alloc(r, sizeof(*m));
    m->from = http_req_query(r, "from");
    if (m->from && !*m->from)
        m->from = NULL; /* no source: automatic mount from any repository */
    /* with auth on, a mount happens only when the caller may pull `from` (an
     * automatic mount, from any repository, only for admins): otherwise a
     * normal session, which tells nothing of where the blob exists */
    if (digest_parse(mount, strlen(mount), &m->md, NULL) == 0 &&
        (!m->from || name_validate(m->from, strlen(m->from), NULL) == 0) &&
        api_auth_may(w->a, rt, m->from, ACCESS_PULL)) {
        api_offload_call(w, r, rt, mount_call, mount_done, m);
        return;
    }
    upload_begin(w, r, rt, 1);
}

void
api_upload_patch(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    upload_lease_and_proceed(w, r, upctx_new(w, r, rt, rt->ref));
}

void
api_upload_put(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    struct digest d;
    const char *dq = http_req_query(r, "digest");

    if (!dq) {
        http_reply_errorf(r, ERR_DIGEST_INVALID, "digest parameter missing");
        return;
    }
    if (parse_query_digest(dq, &d, &e) < 0) {
        http_reply_error(r, &e);
        return;
    }
    struct upctx *c = upctx_new(w, r, rt, rt->ref);
    c->finish = 1;
    c->want = d;
    upload_lease_and_proceed(w, r, c);
}

void
api_upload_status(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    uint64_t off = 0;
    if (storage_upload_status(w->h, rt->name, rt->ref, &off, &e) < 0) {
        api_reply_err(r, &e);
        return;
    }
    api_upload_headers(r, rt->name, rt->ref, off);
    http_reply(r, 204, NULL, NULL, 0);
}

void
api_upload_cancel(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    if (storage_upload_cancel(w->h, rt->name, rt->ref, &e) < 0) {
        api_reply_err(r, &e);
        return;
    }
    http_reply(r, 204, NULL, NULL, 0);
}
