/* rb_engine.h - the load engine: a few threads, each driving many keep-alive
 * connections from one epoll set.
 *
 * A phase runs one kind of operation (push a blob, pull a blob, GET a manifest,
 * ...) on `conns` connections split over `threads` threads until `max_ops`
 * operations were started or `duration` seconds passed, whichever comes first;
 * operations in flight then finish (each HTTP request is bounded by
 * `req_timeout`). An operation may take several HTTP requests (a push is POST +
 * PUT, a chunked push POST + PATCH... + PUT); its latency is recorded from its
 * first request to its last.
 *
 * Uploads go through libcurl's multi-socket interface (one easy handle reused per
 * connection, so curl's connection cache keeps the TCP connection open). GET and
 * HEAD go through a small raw HTTP/1.1 client (one send per request, response
 * parsed in place, no heap per request) unless `use_curl` is set. An https base
 * URL runs both over TLS (OpenSSL in the raw client: one handshake per
 * connection, then keep-alive); SIGPIPE must be ignored by the caller, since
 * OpenSSL writes with write(2).
 *
 * Every response is checked: status code, Location staying on the base URL,
 * Docker-Content-Digest when present, and every body pulled is verified (SHA-256
 * against the digest, or byte for byte against the generated content for a Range
 * pull, or validated as JSON for tags list and catalog). A failed check is an
 * error; the first distinct error messages are kept with their counts. */
#ifndef REGBENCH_RB_ENGINE_H
#define REGBENCH_RB_ENGINE_H

#include <stdint.h>

#include "tools/regbench/rb_gen.h"
#include "tools/regbench/rb_hist.h"

struct err;
struct rb_tls;

enum rb_op {
    RB_OP_PUSH,         /* POST upload + PUT ?digest= with the whole body */
    RB_OP_PUSH_CHUNKED, /* POST upload + PATCH per chunk + PUT ?digest= (empty) */
    RB_OP_PULL,         /* GET blob, SHA-256 of the body against its digest */
    RB_OP_RANGE,        /* GET blob with Range, bytes compared with the content */
    RB_OP_MANIFEST_PUT, /* PUT manifest by tag (a new manifest per operation) */
    RB_OP_MANIFEST_GET, /* GET manifest by tag, SHA-256 of the body checked */
    RB_OP_HEAD,         /* HEAD blob: status, Content-Length, digest header */
    RB_OP_TAGS,         /* GET tags/list, JSON parsed, tag count checked */
    RB_OP_CATALOG,      /* GET _catalog, JSON parsed, repository present */
};

struct rb_phase {
    const char *base; /* "http://127.0.0.1:5000" or https://..., no trailing slash */
    const struct rb_tls *tls;   /* borrowed; set exactly when base is https:// */
    const char *const *headers; /* "Name: value" sent on every request, NULL-terminated;
                                 * NULL = none (Authorization for a registry with auth) */
    const char *repo; /* repository name */
    enum rb_op op;
    int conns;
    int threads;
    uint64_t max_ops;   /* 0 = unbounded (then duration must be set) */
    double duration;    /* seconds, 0 = unbounded (then max_ops must be set) */
    double req_timeout; /* seconds per HTTP request */
    uint64_t seed;      /* push without a pool: blob i has seed seed+i */
    int use_curl;       /* 1 = libcurl for GET/HEAD too (default: the raw engine) */

    /* push: blobs[i] for operation i when nblobs > 0, else generated inline
     * (seed + i, blob_size bytes, digest computed before the op's timer starts).
     * pull/range/head: blobs[i % nblobs]. */
    const struct rb_blob *blobs;
    uint64_t nblobs;
    uint64_t blob_size;
    int repo_per_op; /* push: operation i pushes to repository "<repo>-<i>" */

    uint64_t chunk;     /* chunked push: PATCH size */
    uint64_t range_len; /* range pull: bytes per request */

    /* manifest put: operation i PUTs a manifest made of manifest_head +
     * "<i>" + manifest_tail under tag "<tag_prefix><i>". */
    const char *manifest_head;
    const char *manifest_tail;
    const char *tag_prefix;
    /* manifest get: tag and the manifest's digest */
    const char *tag;
    const char *manifest_digest;
    /* tags list: the exact tag count expected */
    uint64_t expect_tags;
};

#define RB_MAX_ERRS 8

struct rb_result {
    uint64_t ops;        /* operations that completed with every check passed */
    uint64_t http_reqs;  /* HTTP requests completed (any outcome) */
    uint64_t bytes;      /* body bytes pushed or pulled by successful operations */
    uint64_t errors;     /* failed operations */
    double seconds;      /* wall time of the phase */
    struct rb_hist hist; /* operation latency, nanoseconds */
    int nerr;
    uint64_t err_count[RB_MAX_ERRS];
    char err_msg[RB_MAX_ERRS][320];
};

/* rb_phase_run - run the phase against p->base and fill *r (zeroed first).
 * Errors of operations end up in r->errors/err_msg, not in e. Returns 0 when
 * the phase ran (even with operation errors), -1 if it could not run (bad
 * parameters, curl or thread setup failure; e is filled). */
int rb_phase_run(const struct rb_phase *p, struct rb_result *r, struct err *e);

/* rb_now_ns - CLOCK_MONOTONIC in nanoseconds. */
uint64_t rb_now_ns(void);

#endif
