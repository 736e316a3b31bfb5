/* events.h - webhook notifications: every push, pull, mount and delete becomes
 * an event POSTed to the configured endpoints in CNCF distribution's
 * notification envelope, so consumers written for distribution work unchanged:
 *
 *   POST <url>   Content-Type: application/vnd.docker.distribution.events.v1+json
 *   {"events":[{"id","timestamp","action","target":{...},"request":{...},
 *               "actor":{...},"source":{...}}, ...]}
 *
 * Endpoints come from the file named by registry.conf's [events] endpoints
 * (docs/operations.md "Events (webhooks)"):
 *
 *   [endpoint "audit"]
 *   url = https://hooks.example.com/registry
 *   header = Authorization: Bearer s3cr3t    # may repeat; never logged
 *   timeout = 5s                             # one POST
 *   backoff = 1s                             # first retry delay, doubling ...
 *   max_backoff = 1m                         # ... up to this
 *   queue = 1000                             # events held while the receiver lags
 *   batch = 100                              # events per POST at most
 *   ignore_actions = pull                    # push, pull, mount, delete
 *   ignore_media_types = application/octet-stream
 *
 * Delivery: events_emit copies a fixed-size record into each endpoint's
 * bounded ring (a short mutex, no allocation, no I/O); one sender thread per
 * endpoint takes up to `batch` of them, POSTs the envelope with libcurl and
 * retries the same body (same event ids) with exponential backoff until the
 * receiver answers 2xx/3xx: at-least-once within the queue bound. A full ring
 * drops its oldest event (counted). The metrics collector exposes
 * ocireg_events_{sent,failed,dropped}_total and ocireg_events_queue_length by
 * endpoint. */
#ifndef OCIREG_EVENTS_H
#define OCIREG_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define EVENTS_CONTENT_TYPE "application/vnd.docker.distribution.events.v1+json"

/* limits of an endpoints file; over them is a load error */
#define EVENTS_MAX_ENDPOINTS 16
#define EVENTS_MAX_HEADERS 16
#define EVENTS_MAX_IGNORED_TYPES 16
#define EVENTS_URL_MAX 1024
#define EVENTS_HEADER_MAX 1024
#define EVENTS_NAME_MAX 64

/* events_free waits at most this long for the queues to drain at shutdown */
#define EVENTS_FLUSH_MS 2000

enum events_action { EVENTS_PUSH = 0, EVENTS_PULL, EVENTS_MOUNT, EVENTS_DELETE, EVENTS__COUNT };

/* one [endpoint "name"] section */
struct events_endpoint_conf {
    char name[EVENTS_NAME_MAX];
    char url[EVENTS_URL_MAX];
    char headers[EVENTS_MAX_HEADERS][EVENTS_HEADER_MAX]; /* "Name: value" */
    size_t nheaders;
    int timeout_ms;          /* 5 s */
    int backoff_ms;          /* 1 s */
    int max_backoff_ms;      /* 60 s */
    unsigned queue;          /* 1000 */
    unsigned batch;          /* 100 */
    unsigned ignore_actions; /* bit (1u << enum events_action) set: not sent */
    char ignore_types[EVENTS_MAX_IGNORED_TYPES][256];
    size_t nignore_types;
    int lineno; /* of its section header */
};

struct events_conf {
    struct events_endpoint_conf ep[EVENTS_MAX_ENDPOINTS];
    size_t n;
};

/* events_conf_load - parse the endpoints file at path. Returns a new conf
 * owned by the caller (free()), or NULL with ERR_CONFIG ("FILE:LINE: ...": an
 * unknown key or section, a bad value, a URL that is not http(s)://host...,
 * a duplicate name, a section without url), ERR_IO (unreadable) or ERR_NOMEM. */
struct events_conf *events_conf_load(const char *path, struct err *e);

/* what happened; every string borrowed for the call only (NULL or "": absent) */
struct events_event {
    enum events_action action;
    int manifest; /* 1: target is a manifest (url .../manifests/), 0: a blob */
    const char *repository;
    const char *digest;
    const char *tag;
    const char *media_type;
    uint64_t size;
    const char *from_repository; /* mount: the source repository */
    const char *actor;           /* authenticated user, NULL: anonymous */
    const char *request_id;
    const char *addr; /* client address */
    const char *host; /* Host header */
    const char *method;
    const char *useragent;
};

struct events;

/* events_new - start one sender thread per endpoint of conf (copied) and
 * register the metrics collector. source_addr is the "source.addr" of every
 * event (this instance, "host:port"); scheme ("http"/"https") builds target
 * urls. Returns a new object owned by the caller, or NULL with ERR_NOMEM /
 * ERR_INTERNAL (thread, libcurl). */
struct events *events_new(const struct events_conf *conf, const char *source_addr,
                          const char *scheme, struct err *e);

/* events_emit - queue ev for every endpoint that does not ignore it. Never
 * blocks on I/O, never allocates; a full queue loses its oldest event
 * (counted). evs NULL: nothing (no endpoint configured). Thread-safe. */
void events_emit(struct events *evs, const struct events_event *ev);

/* events_free - flush: senders keep delivering for at most EVENTS_FLUSH_MS
 * (a POST in progress is cut at that bound), what is left is counted as
 * dropped; then the threads end and everything is freed. NULL is a no-op. */
void events_free(struct events *evs);

/* figures of one endpoint (tests, logs) */
struct events_stats {
    uint64_t sent;     /* events delivered (the receiver answered 2xx/3xx) */
    uint64_t failed;   /* POSTs that failed (transport error, timeout, 4xx/5xx) */
    uint64_t dropped;  /* events lost: queue full, or left at shutdown */
    uint64_t queued;   /* events waiting, not counting a batch being sent */
    uint64_t inflight; /* events of the batch being sent (or waiting to retry) */
};

/* events_stats - the figures of endpoint `name`: 0, or -1 when there is none */
int events_stats(struct events *evs, const char *name, struct events_stats *out);

/* events_action_name - "push", "pull", "mount", "delete" */
const char *events_action_name(enum events_action a);

#endif
