/* api.h - the registry application: the routes of the OCI distribution-spec on
 * top of storage/, plugged into the connection layer as a `struct http_app`. */
#ifndef OCIREG_API_H
#define OCIREG_API_H

#include <stdint.h>

#include "common/err.h"

struct storage;
struct http_app;
struct events;

/* auth (docs/auth.md): on when htpasswd or token_realm is set; paths are read
 * by api_new and at api_reload */
struct api_auth_opts {
    const char *htpasswd;     /* users (bcrypt), or NULL */
    const char *rules;        /* access rules file, or NULL: the default policy */
    const char *service;      /* the built-in issuer's aud ("ocireg") */
    const char *issuer;       /* its iss ("ocireg") */
    const char *token_key;    /* its ES256 key file (created when missing) */
    int token_ttl_sec;        /* access token lifetime */
    int refresh_ttl_sec;      /* refresh token lifetime */
    const char *token_realm;  /* an external token server's realm, or NULL */
    const char *token_service, *token_issuer; /* its aud and iss */
    const char *token_certs;  /* its certificates (PEM bundle), or NULL */
    const char *token_jwks;   /* its keys (JWKS file), or NULL */
    unsigned max_failures;    /* failed logins per (address, user) per window; 0: no limit */
    int failure_window_sec;
    int tls;                  /* the server speaks TLS: the built-in realm is https */
};

struct api_opts {
    uint64_t max_manifest;  /* bytes, [server] max_manifest (default 4 MiB) */
    long max_page;          /* largest page of tags list / catalog / referrers, also the
                               page size when `n` is absent (default 10000) */
    int blocking_threads;   /* threads of the blocking-work pool ([server]
                               blocking_threads; <= 0: four per core, 4..64) */
    unsigned blocking_queue; /* jobs that may wait for a pool thread (0: 1024);
                                main passes max_connections: a request has at most
                                one job at a time, so only a bug fills it */
    int upload_threads;     /* threads of the upload pool, which hashes and writes
                               upload bodies ([server] upload_threads; 0: two per
                               core, 2..32; < 0: none, the workers do it) */
    int upload_nice;        /* their nice value, 0..19 ([server] upload_nice) */
    const struct api_auth_opts *auth; /* NULL: no auth (anyone may do anything) */
    int read_only;          /* [server] read_only: see api_set_read_only */
    struct events *events;  /* webhook notifications (server/events.h), borrowed:
                               it must outlive the api; NULL: none */
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

/* api_reload - re-read the access rules and the htpasswd file (SIGHUP).
 * Returns 0, or -1 with the load error (ERR_CONFIG, ERR_IO): the old ones stay
 * in force. Thread-safe; 0 when auth is off. */
int api_reload(struct api *a, struct err *e);

/* api_set_read_only - on: PUT, POST, PATCH and DELETE of a /v2/ route are
 * answered 405 UNSUPPORTED "the registry is read-only" before auth is asked
 * (refusing needs no identity, and a client gets the reason, not a 401 loop);
 * pulls and /auth/token go on. Thread-safe; takes effect for requests
 * dispatched afterwards (an upload already accepted finishes). */
void api_set_read_only(struct api *a, int on);

/* api_set_draining - on != 0: the server is shutting down (SIGTERM): /readyz
 * answers 503 from now on (load balancers stop sending new requests); 0:
 * ready again. Thread-safe and lock-free (a plain atomic store: callable from
 * the sigwait thread). */
void api_set_draining(struct api *a, int on);

/* api_draining - 1 after api_set_draining(a, 1), else 0 */
int api_draining(const struct api *a);

/* api_set_max_page - [server] max_page for requests dispatched afterwards
 * (SIGHUP); <= 0 keeps the current one. Thread-safe. */
void api_set_max_page(struct api *a, long max_page);

/* api_blocking_jobs - jobs the blocking-work pool has taken (tests, stats) */
unsigned long api_blocking_jobs(const struct api *a);
/* api_upload_jobs - jobs of upload pieces the upload pool has taken (tests) */
unsigned long api_upload_jobs(const struct api *a);

/* api_http_app - fill *out with the callbacks the connection layer calls */
void api_http_app(struct api *a, struct http_app *out);

/* ---- operations (docs/operations.md) ---- */

struct http_server;
/* api_attach_server - the main listener's server, whose open and refused
 * connections /metrics reports (NULL: detach, before http_server_free).
 * Thread-safe. */
void api_attach_server(struct api *a, const struct http_server *s);

/* api_debug_http_app - the app of the [server] debug_listen listener: only
 * /metrics (no auth), /livez, /readyz and /startupz, 404 for anything else.
 * Its workers each open a storage handle (for /readyz); its requests are not
 * counted in the request metrics. a must outlive that server. */
void api_debug_http_app(struct api *a, struct http_app *out);

#endif
