/* api.h - the registry application: the routes of the OCI distribution-spec on
 * top of storage/, plugged into the connection layer as a `struct http_app`. */
#ifndef OCIREG_API_H
#define OCIREG_API_H

#include <stdint.h>

#include "common/err.h"

struct storage;
struct http_app;

struct api_opts {
    uint64_t max_manifest;  /* bytes, [server] max_manifest (default 4 MiB) */
    long max_page;          /* largest page of tags list / catalog / referrers, also the
                               page size when `n` is absent (default 10000) */
    int blocking_threads;   /* threads of the blocking-work pool ([server]
                               blocking_threads; <= 0: four per core, 4..64) */
    unsigned blocking_queue; /* jobs that may wait for a pool thread (0: 1024);
                                main passes max_connections: a request has at most
                                one job at a time, so only a bug fills it */
};

struct api;

/* api_new - the app over an open storage (borrowed: it must outlive the api),
 * with its blocking-work pool started (each pool thread opens a storage handle
 * of its own at its first job that needs one). Returns a new api owned by the
 * caller, or NULL with ERR_NOMEM / ERR_IO (a thread).
 * api_free: after the http server's workers have ended (it runs the pool's
 * remaining jobs, whose requests those workers wait for, then joins it). */
struct api *api_new(struct storage *st, const struct api_opts *o, struct err *e);
void api_free(struct api *a);

/* api_blocking_jobs - jobs the blocking-work pool has taken (tests, stats) */
unsigned long api_blocking_jobs(const struct api *a);

/* api_http_app - fill *out with the callbacks the connection layer calls */
void api_http_app(struct api *a, struct http_app *out);

#endif
