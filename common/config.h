/* config.h - registry.conf: an INI file ([section], key = value, '#' or ';'
 * comments) whose every key can be overridden by the environment variable
 * OCIREG_<SECTION>_<KEY> (upper case). Without a file the defaults apply.
 *
 * Values: integers; sizes with an optional unit (B, K/KiB, M/MiB, G/GiB; powers of
 * two: "16KiB", "4MiB"); durations with an optional unit (ms, s, m, h; a bare number
 * is seconds: "10s", "500ms"); booleans (true/false, yes/no, on/off, 1/0); strings
 * (optionally in double quotes). An unknown section or key, or a bad value, is an
 * ERR_CONFIG naming file:line (or the environment variable). The shipped
 * registry.conf documents every key with its default. */
#ifndef OCIREG_CONFIG_H
#define OCIREG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define CONFIG_STR_MAX 4096

/* [storage] io: how file bodies (blob and manifest GETs) reach the socket */
enum config_io {
    CONFIG_IO_AUTO = 0,  /* the measured cheaper path: posix today */
    CONFIG_IO_URING = 1, /* io_uring splice; posix (logged) when unavailable */
    CONFIG_IO_POSIX = 2  /* sendfile(2) */
};

struct config {
    struct {
        char listen[256];      /* "127.0.0.1:5000" */
        int workers;           /* 0 = number of cores */
        int max_connections;   /* 10000 */
        uint64_t header_max;   /* 16384 bytes */
        int header_timeout_ms; /* 10 s */
        int idle_timeout_ms;   /* 60 s */
        int body_timeout_ms;   /* 60 s */
        uint64_t body_buffer;  /* 262144 bytes */
        uint64_t max_manifest; /* 4194304 bytes */
        long max_page;         /* 10000 */
        int blocking_threads;  /* 0 = four per core, 4..64 */
        int upload_threads;    /* 0 = two per core, 2..32; -1 = none (the workers) */
        int upload_nice;       /* 10: the upload pool's nice value, 0..19 */
        /* lifecycle (docs/operations.md) */
        int drain_timeout_ms;  /* 30 s: SIGTERM lets requests in progress finish */
        int read_only;         /* 0: pushes and deletes get 405 UNSUPPORTED when set */
        /* a second, plain-HTTP listener serving only /metrics (open) and the
         * health endpoints (docs/operations.md); "" = none */
        char debug_listen[256];
    } server;
    struct {
        char root[CONFIG_STR_MAX]; /* "./data" */
        int fsync;                 /* 1 */
        int upload_expiry_sec;     /* 86400 */
        uint64_t max_blob_size;    /* 0 = unlimited */
        int max_uploads;           /* 10000 open upload sessions */
        int max_uploads_per_repo;  /* 1000 */
        int max_manifest_refs;     /* 10000 descriptors per manifest */
        int io;                    /* enum config_io, CONFIG_IO_AUTO */
    } storage;
    struct {
        /* auth is on when htpasswd or token_realm is set (docs/auth.md) */
        char htpasswd[CONFIG_STR_MAX];     /* "" = off */
        char rules[CONFIG_STR_MAX];        /* "" = authenticated: all, anonymous: none */
        char service[256];                 /* "ocireg": aud of the built-in issuer's tokens */
        char issuer[256];                  /* "ocireg": their iss */
        char token_key[CONFIG_STR_MAX];    /* "" = <storage root>/token.key */
        int token_ttl_sec;                 /* 300 */
        int refresh_ttl_sec;               /* 30 days */
        char token_realm[1024];            /* external token server: its realm URL */
        char token_service[256];           /* its service (aud) */
        char token_issuer[256];            /* its iss */
        char token_certs[CONFIG_STR_MAX];  /* PEM bundle of its certificates */
        char token_jwks[CONFIG_STR_MAX];   /* or a JWKS file of its keys */
        int max_failures;                  /* 5 failed logins per (address, user) ... */
        int failure_window_sec;            /* ... within 60 s, then 429 */
    } auth;
    struct {
        /* tag retention rules file (docs/gc.md "Retention"); "" = none: every
         * tag is kept and pull times are not recorded */
        char rules[CONFIG_STR_MAX];
    } retention;
    struct {
        /* webhook endpoints file (docs/operations.md "Events (webhooks)",
         * server/events.h); "" = no events are sent */
        char endpoints[CONFIG_STR_MAX];
    } events;
    struct {
        int level; /* enum log_level, LOG_INFO */
        int json;  /* format = json */
    } log;
    struct {
        char cert[CONFIG_STR_MAX];      /* "" = plain HTTP; PEM chain */
        char key[CONFIG_STR_MAX];       /* "" ; set together with cert */
        char client_ca[CONFIG_STR_MAX]; /* "" = client certificates not requested */
        int client_cert_required;       /* 0 */
        int ktls;                       /* 1 = auto, 0 = off */
    } tls;
    struct {
        int interval_ms;     /* 1 h between passes; 0 = no periodic pass */
        int grace_sec;       /* 1 h: a blob younger than this is never collected */
        int delete_untagged; /* 0 */
    } gc;
};

/* config_defaults - fill c with the built-in defaults. */
void config_defaults(struct config *c);

/* config_load - defaults, then the file at path (NULL: none), then the
 * environment, then the checks across keys ([tls] cert and key go together).
 * Returns 0, or -1 with ERR_CONFIG ("FILE:LINE: unknown key 'x' in
 * [server]", "environment OCIREG_SERVER_WORKERS: ...") or ERR_IO (file unreadable).
 * On failure *c holds partial values and must not be used. */
int config_load(struct config *c, const char *path, struct err *e);

/* config_check - config_load for `ocireg check-config`: every error is given
 * to report (each line of the file is read, keys under an unknown section are
 * skipped, every environment variable is tried) instead of stopping at the
 * first. Returns 0, or -1 when report was called at least once; *c then holds
 * the values that were valid. */
int config_check(struct config *c, const char *path,
                 void (*report)(void *arg, const struct err *e), void *arg);

/* config_set - set one key from text, as the file and the environment do
 * (section and key case-insensitive). Returns 0, or -1 with ERR_CONFIG
 * (unknown section/key, invalid value); where (may be NULL) prefixes the message. */
int config_set(struct config *c, const char *section, const char *key, const char *value,
               const char *where, struct err *e);

/* parsers of the value syntaxes above, exposed for tests and other modules;
 * each returns 0 or -1 (no err: the caller names the key). */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration_ms(const char *s, int64_t *out);
int config_parse_bool(const char *s, int *out);

#endif
