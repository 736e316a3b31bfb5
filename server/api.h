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
};

struct api;

/* api_new - the app over an open storage (borrowed: it must outlive the api).
 * Returns a new api owned by the caller, or NULL with ERR_NOMEM. */
struct api *api_new(struct storage *st, const struct api_opts *o, struct err *e);
void api_free(struct api *a);

/* api_http_app - fill *out with the callbacks the connection layer calls */
void api_http_app(struct api *a, struct http_app *out);

#endif
