#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/ini.h"
#include "common/log.h"

#include "common/banned.h"

enum key_type { K_STR, K_INT, K_LONG, K_SIZE, K_MS, K_SEC, K_BOOL, K_LEVEL, K_FORMAT, K_IO, K_KTLS };

struct key {
    const char *section, *name;
    enum key_type type;
    size_t off, cap;  /* cap: for K_STR */
    int64_t min, max; /* numeric range (for K_MS in ms, K_SEC in s) */
};

#define OFF(f) offsetof(struct config, f)
#define CAP(f) sizeof(((struct config *)0)->f)

/* Adding a key: a field in struct config, a row here, a default in
 * config_defaults, a commented entry in registry.conf. */
static const struct key keys[] = {
    {"server", "listen", K_STR, OFF(server.listen), CAP(server.listen), 0, 0},
    {"server", "workers", K_INT, OFF(server.workers), 0, 0, 256},
    {"server", "max_connections", K_INT, OFF(server.max_connections), 0, 1, 10000000},
    {"server", "header_max", K_SIZE, OFF(server.header_max), 0, 1024, 1 << 20},
    {"server", "header_timeout", K_MS, OFF(server.header_timeout_ms), 0, 1, INT_MAX},
    {"server", "idle_timeout", K_MS, OFF(server.idle_timeout_ms), 0, 1, INT_MAX},
    {"server", "body_timeout", K_MS, OFF(server.body_timeout_ms), 0, 1, INT_MAX},
    {"server", "body_buffer", K_SIZE, OFF(server.body_buffer), 0, 4096, 64 << 20},
    {"server", "max_manifest", K_SIZE, OFF(server.max_manifest), 0, 1024, 1LL << 30},
    {"server", "max_page", K_LONG, OFF(server.max_page), 0, 1, 10000000},
    {"server", "blocking_threads", K_INT, OFF(server.blocking_threads), 0, 0, 1024},
    {"server", "upload_threads", K_INT, OFF(server.upload_threads), 0, -1, 1024},
    {"server", "upload_nice", K_INT, OFF(server.upload_nice), 0, 0, 19},
    {"server", "drain_timeout", K_MS, OFF(server.drain_timeout_ms), 0, 0, INT_MAX},
    {"server", "read_only", K_BOOL, OFF(server.read_only), 0, 0, 0},
    {"server", "debug_listen", K_STR, OFF(server.debug_listen), CAP(server.debug_listen), 0, 0},
    {"storage", "root", K_STR, OFF(storage.root), CAP(storage.root), 0, 0},
    {"storage", "fsync", K_BOOL, OFF(storage.fsync), 0, 0, 0},
    {"storage", "upload_expiry", K_SEC, OFF(storage.upload_expiry_sec), 0, 0, INT_MAX},
    {"storage", "max_blob_size", K_SIZE, OFF(storage.max_blob_size), 0, 0, INT64_MAX},
    {"storage", "max_uploads", K_INT, OFF(storage.max_uploads), 0, 1, 100000000},
    {"storage", "max_uploads_per_repo", K_INT, OFF(storage.max_uploads_per_repo), 0, 1, 100000000},
    {"storage", "max_manifest_refs", K_INT, OFF(storage.max_manifest_refs), 0, 1, 100000000},
    {"storage", "io", K_IO, OFF(storage.io), 0, 0, 0},
    {"auth", "htpasswd", K_STR, OFF(auth.htpasswd), CAP(auth.htpasswd), 0, 0},
    {"auth", "rules", K_STR, OFF(auth.rules), CAP(auth.rules), 0, 0},
    {"auth", "service", K_STR, OFF(auth.service), CAP(auth.service), 0, 0},
    {"auth", "issuer", K_STR, OFF(auth.issuer), CAP(auth.issuer), 0, 0},
    {"auth", "token_key", K_STR, OFF(auth.token_key), CAP(auth.token_key), 0, 0},
    {"auth", "token_ttl", K_SEC, OFF(auth.token_ttl_sec), 0, 10, 86400},
    {"auth", "refresh_ttl", K_SEC, OFF(auth.refresh_ttl_sec), 0, 60, 366 * 86400},
    {"auth", "token_realm", K_STR, OFF(auth.token_realm), CAP(auth.token_realm), 0, 0},
    {"auth", "token_service", K_STR, OFF(auth.token_service), CAP(auth.token_service), 0, 0},
    {"auth", "token_issuer", K_STR, OFF(auth.token_issuer), CAP(auth.token_issuer), 0, 0},
    {"auth", "token_certs", K_STR, OFF(auth.token_certs), CAP(auth.token_certs), 0, 0},
    {"auth", "token_jwks", K_STR, OFF(auth.token_jwks), CAP(auth.token_jwks), 0, 0},
    {"auth", "max_failures", K_INT, OFF(auth.max_failures), 0, 0, 1000000},
    {"auth", "failure_window", K_SEC, OFF(auth.failure_window_sec), 0, 1, 86400},
    {"retention", "rules", K_STR, OFF(retention.rules), CAP(retention.rules), 0, 0},
    {"events", "endpoints", K_STR, OFF(events.endpoints), CAP(events.endpoints), 0, 0},
    {"log", "level", K_LEVEL, OFF(log.level), 0, 0, 0},
    {"log", "format", K_FORMAT, OFF(log.json), 0, 0, 0},
    {"tls", "cert", K_STR, OFF(tls.cert), CAP(tls.cert), 0, 0},
    {"tls", "key", K_STR, OFF(tls.key), CAP(tls.key), 0, 0},
    {"tls", "client_ca", K_STR, OFF(tls.client_ca), CAP(tls.client_ca), 0, 0},
    {"tls", "client_cert_required", K_BOOL, OFF(tls.client_cert_required), 0, 0, 0},
    {"tls", "ktls", K_KTLS, OFF(tls.ktls), 0, 0, 0},
    {"gc", "interval", K_MS, OFF(gc.interval_ms), 0, 0, INT_MAX},
    {"gc", "grace", K_SEC, OFF(gc.grace_sec), 0, 0, INT_MAX},
    {"gc", "delete_untagged", K_BOOL, OFF(gc.delete_untagged), 0, 0, 0},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void
config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->server.listen, sizeof(c->server.listen), "127.0.0.1:5000");
    c->server.workers = 0;
    c->server.max_connections = 10000;
    c->server.header_max = 16384;
    c->server.header_timeout_ms = 10000;
    c->server.idle_timeout_ms = 60000;
    c->server.body_timeout_ms = 60000;
    c->server.body_buffer = 1048576;
    c->server.max_manifest = 4194304;
    c->server.max_page = 10000;
    c->server.blocking_threads = 0;
    c->server.upload_threads = 0;
    c->server.upload_nice = 10;
    c->server.drain_timeout_ms = 30000;
    c->server.read_only = 0;
    snprintf(c->storage.root, sizeof(c->storage.root), "./data");
    c->storage.fsync = 1;
    c->storage.upload_expiry_sec = 86400;
    c->storage.max_blob_size = 0;
    c->storage.max_uploads = 10000;
    c->storage.max_uploads_per_repo = 1000;
    c->storage.max_manifest_refs = 10000;
    c->storage.io = CONFIG_IO_AUTO;
    snprintf(c->auth.service, sizeof(c->auth.service), "ocireg");
    snprintf(c->auth.issuer, sizeof(c->auth.issuer), "ocireg");
    c->auth.token_ttl_sec = 300;
    c->auth.refresh_ttl_sec = 30 * 86400;
    c->auth.max_failures = 5;
    c->auth.failure_window_sec = 60;
    c->log.level = LOG_INFO;
    c->log.json = 0;
    c->tls.client_cert_required = 0;
    c->tls.ktls = 1;
    c->gc.interval_ms = 3600000;
    c->gc.grace_sec = 3600;
    c->gc.delete_untagged = 0;
}

static int
parse_u64(const char *s, uint64_t *out, const char **rest)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    *out = v;
    while (*end == ' ' || *end == '\t')
        end++;
    *rest = end;
    return 0;
}

int
config_parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *u;
    if (parse_u64(s, &v, &u) < 0)
        return -1;
    uint64_t mul = 1;
    if (!*u || strcasecmp(u, "b") == 0)
        mul = 1;
    else if (strcasecmp(u, "k") == 0 || strcasecmp(u, "kib") == 0 || strcasecmp(u, "kb") == 0)
        mul = 1ULL << 10;
    else if (strcasecmp(u, "m") == 0 || strcasecmp(u, "mib") == 0 || strcasecmp(u, "mb") == 0)
        mul = 1ULL << 20;
    else if (strcasecmp(u, "g") == 0 || strcasecmp(u, "gib") == 0 || strcasecmp(u, "gb") == 0)
        mul = 1ULL << 30;
    else
        return -1;
    if (v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

int
config_parse_duration_ms(const char *s, int64_t *out)
{
    uint64_t v;
    const char *u;
    if (parse_u64(s, &v, &u) < 0)
        return -1;
    uint64_t mul;
    if (!*u || strcmp(u, "s") == 0 || strcmp(u, "sec") == 0)
        mul = 1000;
    else if (strcmp(u, "ms") == 0)
        mul = 1;
    else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
        mul = 60000;
    else if (strcmp(u, "h") == 0)
        mul = 3600000;
    else
        return -1;
    if (v > (uint64_t)INT64_MAX / mul)
        return -1;
    *out = (int64_t)(v * mul);
    return 0;
}

int
config_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static const struct key *
find_key(const char *section, const char *name, int *section_known)
{
    *section_known = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcasecmp(keys[i].section, section) != 0)
            continue;
        *section_known = 1;
        if (strcasecmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

int
config_set(struct config *c, const char *section, const char *name, const char *value,
           const char *where, struct err *e)
{
    const char *pre = where ? where : "";
    const char *sep = where ? ": " : "";
    int known;
    const struct key *k = find_key(section, name, &known);
    if (!known)
        return err_set(e, ERR_CONFIG, 0, "%s%sunknown section [%s]", pre, sep, section);
    if (!k)
        return err_set(e, ERR_CONFIG, 0, "%s%sunknown key '%s' in [%s]", pre, sep, name, section);
    char *field = (char *)c + k->off;
    uint64_t u;
    int64_t ms;
    int b;
    switch (k->type) {
    case K_STR: {
        size_t n = strlen(value);
        if (n == 0 || n >= k->cap)
            return err_set(e, ERR_CONFIG, 0, "%s%s%s.%s: %s", pre, sep, section, name,
                           n ? "value too long" : "empty value");
        memcpy(field, value, n + 1);
        return 0;
    }
    case K_INT:
    case K_LONG: {
        const char *rest;
        int neg = value[0] == '-'; /* only keys whose range goes below 0 take it */
        int64_t v = 0;
        int ok = parse_u64(value + neg, &u, &rest) == 0 && !*rest && u <= (uint64_t)INT64_MAX;
        if (ok)
            v = neg ? -(int64_t)u : (int64_t)u;
        if (!ok || v < k->min || v > k->max)
            return err_set(e, ERR_CONFIG, 0, "%s%s%s.%s: '%s' is not an integer in [%lld, %lld]",
                           pre, sep, section, name, value, (long long)k->min, (long long)k->max);
        if (k->type == K_INT)
            *(int *)field = (int)v;
        else
            *(long *)field = (long)v;
        return 0;
    }
    case K_SIZE:
        if (config_parse_size(value, &u) < 0 || u < (uint64_t)k->min || u > (uint64_t)k->max)
            return err_set(e, ERR_CONFIG, 0,
                           "%s%s%s.%s: '%s' is not a size in [%lld, %lld] bytes (e.g. 16KiB)", pre,
                           sep, section, name, value, (long long)k->min, (long long)k->max);
        *(uint64_t *)field = u;
        return 0;
    case K_MS:
    case K_SEC: {
        int64_t lo = k->type == K_SEC ? k->min * 1000 : k->min;
        int64_t hi = k->type == K_SEC ? k->max * 1000 : k->max;
        if (config_parse_duration_ms(value, &ms) < 0 || ms < lo || ms > hi)
            return err_set(e, ERR_CONFIG, 0,
                           "%s%s%s.%s: '%s' is not a duration (e.g. 10s, 500ms, 2m, 1h)", pre, sep,
                           section, name, value);
        *(int *)field = (int)(k->type == K_SEC ? ms / 1000 : ms);
        return 0;
    }
    case K_BOOL:
        if (config_parse_bool(value, &b) < 0)
            return err_set(e, ERR_CONFIG, 0, "%s%s%s.%s: '%s' is not a boolean (true/false)", pre,
                           sep, section, name, value);
        *(int *)field = b;
        return 0;
    case K_LEVEL: {
        int lv = log_level_parse(value);
        if (lv < 0)
            return err_set(e, ERR_CONFIG, 0, "%s%s%s.%s: '%s' is not error|warn|info|debug", pre,
                           sep, section, name, value);
        *(int *)field = lv;
        return 0;
    }
    case K_FORMAT:
        if (strcmp(value, "text") == 0)
            *(int *)field = 0;
        else if (strcmp(value, "json") == 0)
            *(int *)field = 1;
        else
            return err_set(e, ERR_CONFIG, 0, "%s%s%s.%s: '%s' is not text|json", pre, sep, section,
                           name, value);
        return 0;
    case K_IO:
        if (strcasecmp(value, "auto") == 0)
            *(int *)field = CONFIG_IO_AUTO;
        else if (strcasecmp(value, "uring") == 0)
            *(int *)field = CONFIG_IO_URING;
        else if (strcasecmp(value, "posix") == 0)
            *(int *)field = CONFIG_IO_POSIX;
        else
            return err_set(e, ERR_CONFIG, 0, "%s%s%s.%s: '%s' is not auto|uring|posix", pre, sep,
                           section, name, value);
        return 0;
    case K_KTLS:
        if (strcasecmp(value, "auto") == 0)
            *(int *)field = 1;
        else if (strcasecmp(value, "off") == 0)
            *(int *)field = 0;
        else
            return err_set(e, ERR_CONFIG, 0, "%s%s%s.%s: '%s' is not auto|off", pre, sep, section,
                           name, value);
        return 0;
    }
    return err_set(e, ERR_CONFIG, 0, "%s%sinternal: bad key type", pre, sep);
}

/* strip a trailing " # comment" / " ; comment" outside quotes, and the quotes */
static char *
value_text(char *v)
{
    v = ini_trim(v);
    if (*v == '"') {
        char *end = strchr(v + 1, '"');
        if (!end)
            return NULL;
        *end = '\0';
        char *after = ini_trim(end + 1);
        if (*after && *after != '#' && *after != ';')
            return NULL;
        return v + 1;
    }
    ini_cut_comment(v);
    return ini_trim(v);
}

/* report (may be NULL): every error is passed to it and reading goes on with
 * the next line (keys of an unknown section are skipped); the return is then
 * -1 when there was any, e holding the last. Without report: -1 at the first. */
static int
load_file(struct config *c, const char *path, struct err *e,
          void (*report)(void *arg, const struct err *e), void *arg)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        err_sys(e, errno == ENOENT ? ERR_CONFIG : ERR_IO, errno, "config file '%s'", path);
        if (report)
            report(arg, e);
        return -1;
    }
    char line[8192], section[64] = "";
    char where[600];
    int lineno = 0, rc = 0, skip = 0, errors = 0;
    while (fgets(line, sizeof(line), f)) {
        if (rc < 0 && report) {
            report(arg, e);
            rc = 0;
            err_clear(e);
            errors++;
        }
        lineno++;
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            rc = err_set(e, ERR_CONFIG, 0, "%s: line too long", where);
            break;
        }
        char *s = ini_trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end || *ini_trim(end + 1)) {
                rc = err_set(e, ERR_CONFIG, 0, "%s: malformed section header", where);
                skip = 1;
                if (report)
                    continue;
                break;
            }
            *end = '\0';
            char *name = ini_trim(s + 1);
            int known = 0;
            for (size_t i = 0; i < NKEYS; i++)
                if (strcasecmp(keys[i].section, name) == 0)
                    known = 1;
            if (!known || strlen(name) >= sizeof(section)) {
                rc = err_set(e, ERR_CONFIG, 0, "%s: unknown section [%s]", where, name);
                skip = 1;
                if (report)
                    continue;
                break;
            }
            skip = 0;
            snprintf(section, sizeof(section), "%s", name);
            continue;
        }
        if (skip)
            continue; /* under an unknown section: that line said it once */
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = err_set(e, ERR_CONFIG, 0, "%s: expected 'key = value'", where);
            if (report)
                continue;
            break;
        }
        *eq = '\0';
        char *key = ini_trim(s);
        char *val = value_text(eq + 1);
        if (!*section) {
            rc = err_set(e, ERR_CONFIG, 0, "%s: key '%s' outside of a [section]", where, key);
            if (report)
                continue;
            break;
        }
        if (!val) {
            rc = err_set(e, ERR_CONFIG, 0, "%s: unterminated quoted value", where);
            if (report)
                continue;
            break;
        }
        if (config_set(c, section, key, val, where, e) < 0) {
            rc = -1;
            if (report)
                continue;
            break;
        }
    }
    if (rc < 0 && report) {
        report(arg, e);
        errors++;
    }
    if (rc == 0 && ferror(f)) {
        rc = err_sys(e, ERR_IO, errno, "reading '%s'", path);
        if (report)
            report(arg, e);
        errors++;
    }
    fclose(f);
    return errors ? -1 : rc;
}

static int
load_env(struct config *c, struct err *e, void (*report)(void *arg, const struct err *e),
         void *arg)
{
    int errors = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        char var[128];
        int n = snprintf(var, sizeof(var), "OCIREG_%s_%s", keys[i].section, keys[i].name);
        for (int j = 0; j < n; j++)
            var[j] = (char)toupper((unsigned char)var[j]);
        const char *v = getenv(var);
        if (!v)
            continue;
        char where[160];
        snprintf(where, sizeof(where), "environment %s", var);
        char buf[CONFIG_STR_MAX];
        snprintf(buf, sizeof(buf), "%s", v);
        if (config_set(c, keys[i].section, keys[i].name, ini_trim(buf), where, e) < 0) {
            if (!report)
                return -1;
            report(arg, e);
            errors++;
        }
    }
    return errors ? -1 : 0;
}

/* the checks across keys */
static int
check_keys(const struct config *c, struct err *e)
{
    if (!c->tls.cert[0] != !c->tls.key[0])
        return err_set(e, ERR_CONFIG, 0,
                       "[tls] cert and key must be set together (cert %s, key %s; "
                       "OCIREG_TLS_CERT, OCIREG_TLS_KEY)",
                       c->tls.cert[0] ? "set" : "unset", c->tls.key[0] ? "set" : "unset");
    return 0;
}

int
config_load(struct config *c, const char *path, struct err *e)
{
    config_defaults(c);
    if (path && load_file(c, path, e, NULL, NULL) < 0)
        return -1;
    if (load_env(c, e, NULL, NULL) < 0)
        return -1;
    return check_keys(c, e);
}

int
config_check(struct config *c, const char *path,
             void (*report)(void *arg, const struct err *e), void *arg)
{
    struct err e = {0};
    int errors = 0;
    config_defaults(c);
    if (path && load_file(c, path, &e, report, arg) < 0)
        errors++;
    err_clear(&e);
    if (load_env(c, &e, report, arg) < 0)
        errors++;
    err_clear(&e);
    if (check_keys(c, &e) < 0) {
        report(arg, &e);
        errors++;
    }
    return errors ? -1 : 0;
}
