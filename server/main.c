/* main.c - the ocireg command line: serve, gc, check, check-config, version, help. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "auth/access.h"
#include "auth/htpasswd.h"
#include "auth/tls.h"
#include "auth/token.h"
#include "common/config.h"
#include "common/err.h"
#include "common/log.h"
#include "gc/check.h"
#include "gc/gc.h"
#include "gc/retention.h"
#include "server/api.h"
#include "server/events.h"
#include "server/http.h"
#include "server/maint.h"
#include "storage/storage.h"

#include "common/banned.h"

#ifndef OCIREG_VERSION
#define OCIREG_VERSION "0.1.0"
#endif

static const char usage_text[] =
    "usage: ocireg <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve [-c FILE] [--ready-file PATH]   run the registry\n"
    "      -c, --config FILE    read registry.conf-style settings from FILE\n"
    "                           (default: built-in defaults; every key can be set\n"
    "                           with OCIREG_<SECTION>_<KEY>, e.g. OCIREG_SERVER_LISTEN)\n"
    "      --ready-file PATH    once listening, write \"ADDR:PORT\\n\" to PATH\n"
    "  gc [-c FILE] [--dry-run] [--delete-untagged] [--full]\n"
    "                                        one garbage collection pass on a stopped\n"
    "                                        store (a running server collects on its own)\n"
    "      --dry-run            list what would be removed, remove nothing\n"
    "      --delete-untagged    also untagged manifests ([gc] delete_untagged)\n"
    "      --full               review the whole store, not only what changed\n"
    "  check [-c FILE] [--repair]            verify a stopped store (docs/gc.md); exit 0 when\n"
    "                                        sound, 1 when something is wrong, 2 when it cannot\n"
    "                                        run; --repair quarantines damaged blobs, removes\n"
    "                                        their rows and the manifests they break\n"
    "  check-config [-c FILE]                validate a configuration: FILE (or the defaults)\n"
    "                                        with the environment, and every file it names\n"
    "                                        (htpasswd, rules, retention rules, TLS\n"
    "                                        certificates and keys, token certificates or\n"
    "                                        JWKS); exit 0 when valid, 1 with each error's\n"
    "                                        file:line and key, 2 on a usage error\n"
    "  version                               print the version\n"
    "\n"
    "signals (serve): TERM, INT  stop accepting, let requests in progress finish for up\n"
    "                            to [server] drain_timeout, exit 0\n"
    "                 HUP        reload the configuration (docs/operations.md)\n"
    "                 USR1       a gc pass now\n"
    "  help                                  this text\n";

static void
raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("main", NULL, "raising the open-file limit: %s", strerror(errno));
    }
}

/* Signals. TERM, INT, HUP and USR1 are blocked in every thread (before the
 * first one starts) and taken by one thread with sigwait, so they are handled
 * as ordinary code, never in a signal handler, never on an event loop:
 *   TERM, INT  /readyz turns 503 (api_set_draining), the server stops
 *              accepting and drains (http_server_stop; [server] drain_timeout);
 *              main then returns 0. Before the server exists (start-up) the
 *              signal ends the process as its default action would.
 *   HUP        reload_all: the configuration is read again and what can change
 *              live is swapped in, all or nothing.
 *   USR1       a gc pass now, on the maintenance thread. */
struct reloader {
    pthread_t thr;
    int started;
    atomic_int stop;
    atomic_int term;          /* TERM or INT arrived */
    const char *conf_path;    /* -c FILE, or NULL */
    struct config *cur;       /* the configuration in force; the thread's own */
    struct tls_ctx *tls;      /* NULL without TLS */
    /* set (atomically) once they exist, after the thread started */
    struct api *api;
    struct maint *maint;
    struct http_server *srv; /* the last one: the server is complete */
};

static struct tls_opts
tls_opts_of(const struct config *cfg)
{
    return (struct tls_opts){.cert = cfg->tls.cert,
                             .key = cfg->tls.key,
                             .client_ca = cfg->tls.client_ca,
                             .client_cert_required = cfg->tls.client_cert_required,
                             .ktls = cfg->tls.ktls};
}

/* Keys a running server cannot take: their values stay those of the start
 * (copied back into the new configuration) and a warning names them. */
struct restart_key {
    const char *name;
    size_t off, len;
    int str;
};
#define RK(name, f, str)                                                                           \
    {name, offsetof(struct config, f), sizeof(((struct config *)0)->f), str}
static const struct restart_key restart_keys[] = {
    RK("[server] listen", server.listen, 1),
    RK("[server] workers", server.workers, 0),
    RK("[server] header_max", server.header_max, 0),
    RK("[server] body_buffer", server.body_buffer, 0),
    RK("[server] max_manifest", server.max_manifest, 0),
    RK("[server] blocking_threads", server.blocking_threads, 0),
    RK("[server] upload_threads", server.upload_threads, 0),
    RK("[server] upload_nice", server.upload_nice, 0),
    RK("[storage] root", storage.root, 1),
    RK("[storage] fsync", storage.fsync, 0),
    RK("[storage] upload_expiry", storage.upload_expiry_sec, 0),
    RK("[storage] max_blob_size", storage.max_blob_size, 0),
    RK("[storage] max_uploads", storage.max_uploads, 0),
    RK("[storage] max_uploads_per_repo", storage.max_uploads_per_repo, 0),
    RK("[storage] max_manifest_refs", storage.max_manifest_refs, 0),
    RK("[storage] io", storage.io, 0),
    RK("[auth] htpasswd", auth.htpasswd, 1),
    RK("[auth] rules", auth.rules, 1),
    RK("[auth] service", auth.service, 1),
    RK("[auth] issuer", auth.issuer, 1),
    RK("[auth] token_key", auth.token_key, 1),
    RK("[auth] token_ttl", auth.token_ttl_sec, 0),
    RK("[auth] refresh_ttl", auth.refresh_ttl_sec, 0),
    RK("[auth] token_realm", auth.token_realm, 1),
    RK("[auth] token_service", auth.token_service, 1),
    RK("[auth] token_issuer", auth.token_issuer, 1),
    RK("[auth] token_certs", auth.token_certs, 1),
    RK("[auth] token_jwks", auth.token_jwks, 1),
    RK("[auth] max_failures", auth.max_failures, 0),
    RK("[auth] failure_window", auth.failure_window_sec, 0),
    RK("[tls] ktls", tls.ktls, 0),
    RK("[events] endpoints", events.endpoints, 1),
    RK("[server] debug_listen", server.debug_listen, 1),
};

/* keep n's restart-only values at cur's, logging each that differed */
static void
keep_restart_keys(const struct config *cur, struct config *n)
{
    for (size_t i = 0; i < sizeof(restart_keys) / sizeof(restart_keys[0]); i++) {
        const struct restart_key *k = &restart_keys[i];
        const char *a = (const char *)cur + k->off;
        char *b = (char *)n + k->off;
        if (k->str ? strcmp(a, b) == 0 : memcmp(a, b, k->len) == 0)
            continue;
        log_warn("main", NULL, "reload: %s changed: takes effect at restart", k->name);
        memcpy(b, a, k->len);
    }
    /* TLS on/off and retention on/off: the transport of every connection and
     * the pull tracking of storage are chosen at start */
    if (!cur->tls.cert[0] != !n->tls.cert[0]) {
        log_warn("main", NULL, "reload: [tls] %s: takes effect at restart",
                 cur->tls.cert[0] ? "turned off" : "turned on");
        memcpy(&n->tls, &cur->tls, sizeof(n->tls));
    }
    if (!cur->retention.rules[0] != !n->retention.rules[0]) {
        log_warn("main", NULL, "reload: [retention] rules %s: takes effect at restart",
                 cur->retention.rules[0] ? "removed" : "set");
        memcpy(&n->retention, &cur->retention, sizeof(n->retention));
    }
}

/* SIGHUP. All or nothing: first everything that can fail (the configuration,
 * then the new TLS context and retention rules, then auth, whose reload is
 * itself all or nothing and comes last), then the swaps, which cannot fail. A
 * refusal leaves the running configuration whole and logs the error's
 * file:line. */
static void
reload_all(struct reloader *rl)
{
    struct err e = {0};
    struct api *api = __atomic_load_n(&rl->api, __ATOMIC_SEQ_CST);
    struct maint *maint = __atomic_load_n(&rl->maint, __ATOMIC_SEQ_CST);
    struct http_server *srv = __atomic_load_n(&rl->srv, __ATOMIC_SEQ_CST);
    if (!srv) {
        log_warn("main", NULL, "reload: SIGHUP during start-up, ignored");
        return;
    }
    struct config *n = malloc(sizeof(*n));
    struct tls_ctx *ntls = NULL;
    struct retention_rules *nret = NULL;
    if (!n) {
        log_error("main", NULL, "reload refused: out of memory");
        return;
    }
    log_info("main", NULL, "reload: reading %s", rl->conf_path ? rl->conf_path : "the defaults");
    if (config_load(n, rl->conf_path, &e) < 0) {
        log_error("main", NULL, "reload refused: %s (the running configuration stays)", e.msg);
        goto out;
    }
    keep_restart_keys(rl->cur, n);
    if (rl->tls) {
        struct tls_opts to = tls_opts_of(n);
        to.ktls = rl->cur->tls.ktls;
        ntls = tls_ctx_new(&to, &e);
        if (!ntls) {
            log_error("main", NULL,
                      "reload refused: reloading the TLS certificate ([tls]): %s (the running "
                      "configuration stays)", e.msg);
            goto out;
        }
    }
    if (n->retention.rules[0]) {
        nret = retention_load(n->retention.rules, &e);
        if (!nret) {
            log_error("main", NULL,
                      "reload refused: [retention] rules: %s (the running configuration stays)",
                      e.msg);
            goto out;
        }
    }
    if (api && api_reload(api, &e) < 0) {
        log_error("main", NULL,
                  "reload refused: [auth]: %s (the running configuration stays)", e.msg);
        goto out;
    }
    /* from here on nothing fails */
    if (ntls) {
        tls_ctx_adopt(rl->tls, ntls);
        ntls = NULL;
        log_info("main", NULL, "reloaded TLS certificate: %s", n->tls.cert);
    }
    if (api)
        log_info("main", NULL, "reloaded auth rules and users");
    struct maint_gc_config gc = {.interval_ms = n->gc.interval_ms,
                                 .grace_sec = n->gc.grace_sec,
                                 .delete_untagged = n->gc.delete_untagged,
                                 .retention = nret};
    maint_reconfigure(maint, &gc);
    nret = NULL;
    if (api) {
        api_set_read_only(api, n->server.read_only);
        api_set_max_page(api, n->server.max_page);
    }
    struct http_server_limits lim = {.header_timeout_ms = n->server.header_timeout_ms,
                                     .idle_timeout_ms = n->server.idle_timeout_ms,
                                     .body_timeout_ms = n->server.body_timeout_ms,
                                     .max_connections = n->server.max_connections,
                                     .drain_timeout_ms = n->server.drain_timeout_ms};
    http_server_set_limits(srv, &lim);
    log_reconfigure((enum log_level)n->log.level, n->log.json);
    if (n->server.read_only != rl->cur->server.read_only)
        log_info("main", NULL, "read-only mode %s", n->server.read_only ? "on" : "off");
    memcpy(rl->cur, n, sizeof(*n));
    log_info("main", NULL, "reloaded: limits, read_only, log, gc and retention");
    log_debug("main", NULL, "reload: log level debug");
out:
    tls_ctx_free(ntls);
    retention_free(nret);
    free(n);
}

static void
on_term(struct reloader *rl, int sig)
{
    if (atomic_exchange(&rl->term, 1)) {
        log_info("main", NULL, "%s: already draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
    struct api *api = __atomic_load_n(&rl->api, __ATOMIC_SEQ_CST);
    struct http_server *srv = __atomic_load_n(&rl->srv, __ATOMIC_SEQ_CST);
    if (!srv) {
        /* start-up (storage recovery can take long): end as before, the store
         * is crash-safe */
        log_info("main", NULL, "%s during start-up: exiting", sig == SIGINT ? "SIGINT" : "SIGTERM");
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        return;
    }
    log_info("main", NULL, "%s: draining, [server] drain_timeout %d ms; new connections refused",
             sig == SIGINT ? "SIGINT" : "SIGTERM", rl->cur->server.drain_timeout_ms);
    if (api)
        api_set_draining(api, 1);
    http_server_stop(srv);
}

static void *
reload_thread(void *arg)
{
    struct reloader *rl = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (atomic_load(&rl->stop))
            return NULL;
        if (sig == SIGTERM || sig == SIGINT) {
            on_term(rl, sig);
            continue;
        }
        if (sig == SIGUSR1) {
            struct maint *m = __atomic_load_n(&rl->maint, __ATOMIC_ACQUIRE);
            if (m) {
                log_info("main", NULL, "gc: pass requested (SIGUSR1)");
                maint_gc_now(m);
            } else {
                log_warn("main", NULL, "gc: SIGUSR1 before the maintenance thread started, ignored");
            }
            continue;
        }
        reload_all(rl);
    }
}

static int
reloader_start(struct reloader *rl, struct err *e)
{
    int rc = pthread_create(&rl->thr, NULL, reload_thread, rl);
    if (rc != 0)
        return err_sys(e, ERR_INTERNAL, rc, "signal thread");
    rl->started = 1;
    return 0;
}

static void
reloader_stop(struct reloader *rl)
{
    if (!rl->started)
        return;
    atomic_store(&rl->stop, 1);
    pthread_kill(rl->thr, SIGHUP); /* ends its sigwait */
    pthread_join(rl->thr, NULL);
    rl->started = 0;
}

/* OCIREG_TEST_GC_KILL_STEP=N (tests only, see struct maint_opts): the
 * server SIGKILLs itself at the N-th step of its gc passes; 0 or unset: never */
static unsigned long
test_gc_kill_step(void)
{
    const char *v = getenv("OCIREG_TEST_GC_KILL_STEP");
    return v && *v ? strtoul(v, NULL, 10) : 0;
}

/* [server] debug_listen: the second listener runs on a thread of its own and
 * is stopped after the main server's workers have ended */
struct debug_listener {
    struct http_server *srv;
    pthread_t thr;
    int started;
};

static void *
debug_run(void *arg)
{
    struct debug_listener *d = arg;
    struct err e = {0};
    if (http_server_run(d->srv, &e) < 0)
        log_error("main", NULL, "debug listener: %s", e.msg);
    return NULL;
}

/* debug_start - the listener of cfg's debug_listen (nothing when empty):
 * one worker, plain HTTP, the api's debug app. 0, or -1 with e set */
static int
debug_start(struct debug_listener *d, const struct config *cfg, struct api *api, struct err *e)
{
    if (!cfg->server.debug_listen[0])
        return 0;
    struct http_app app;
    api_debug_http_app(api, &app);
    struct http_server_opts o = {
        .listen = cfg->server.debug_listen,
        .workers = 1,
        .header_max = (size_t)cfg->server.header_max,
        .header_timeout_ms = cfg->server.header_timeout_ms,
        .idle_timeout_ms = cfg->server.idle_timeout_ms,
        .body_timeout_ms = cfg->server.body_timeout_ms,
        .max_connections = 64, /* scrapers and probes */
        .io = HTTP_IO_POSIX,
    };
    d->srv = http_server_new(&o, &app, e);
    if (!d->srv) {
        char why[sizeof(e->msg)];
        snprintf(why, sizeof(why), "%s", e->msg);
        err_set(e, e->code, e->sys_errno, "debug_listen '%.200s': %.200s",
                cfg->server.debug_listen, why);
        return -1;
    }
    int rc = pthread_create(&d->thr, NULL, debug_run, d);
    if (rc != 0)
        return err_sys(e, ERR_INTERNAL, rc, "debug listener thread");
    d->started = 1;
    log_info("main", NULL, "debug listener (metrics, health) on %s",
             http_server_address(d->srv));
    return 0;
}

static void
debug_stop(struct debug_listener *d)
{
    if (d->started) {
        http_server_stop(d->srv);
        pthread_join(d->thr, NULL);
        d->started = 0;
    }
    http_server_free(d->srv);
    d->srv = NULL;
}

/* write text to path atomically: a temp file beside it, then rename */
static int
write_ready_file(const char *path, const char *text, struct err *e)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "ready file '%s'", tmp);
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    if (w != (ssize_t)n || close(fd) < 0) {
        int se = w < 0 ? errno : EIO;
        unlink(tmp);
        return err_sys(e, ERR_IO, se, "ready file '%s'", tmp);
    }
    if (rename(tmp, path) < 0) {
        int se = errno;
        unlink(tmp);
        return err_sys(e, ERR_IO, se, "ready file '%s'", path);
    }
    return 0;
}

/* storage options from the configuration (serve and gc) */
static struct storage_opts
storage_opts_of(const struct config *cfg)
{
    return (struct storage_opts){
        .root = cfg->storage.root,
        .fsync = cfg->storage.fsync,
        .max_manifest = cfg->server.max_manifest,
        .upload_expiry_sec = cfg->storage.upload_expiry_sec,
        .max_blob_size = cfg->storage.max_blob_size,
        .max_uploads = (unsigned)cfg->storage.max_uploads,
        .max_uploads_per_repo = (unsigned)cfg->storage.max_uploads_per_repo,
        .max_manifest_refs = (unsigned)cfg->storage.max_manifest_refs,
    };
}

/* the webhook endpoints of [events] endpoints; source.addr of the events is
 * this host with the configured port, as distribution's */
static struct events *
events_start(const struct config *cfg, int tls, struct err *e)
{
    struct events_conf *ec = events_conf_load(cfg->events.endpoints, e);
    if (!ec)
        return NULL;
    char host[256] = "localhost", source[300];
    gethostname(host, sizeof(host) - 1);
    const char *port = strrchr(cfg->server.listen, ':');
    snprintf(source, sizeof(source), "%s%s", host, port ? port : "");
    struct events *evs = events_new(ec, source, tls ? "https" : "http", e);
    free(ec);
    return evs;
}

static int
cmd_serve(int argc, char **argv)
{
    const char *conf_path = NULL, *ready = NULL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            conf_path = argv[++i];
        } else if (strcmp(argv[i], "--ready-file") == 0 && i + 1 < argc) {
            ready = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "ocireg serve: unknown or incomplete option '%s'\n\n%s", argv[i],
                    usage_text);
            return 2;
        }
    }

    struct err e = {0};
    struct config cfg;
    struct storage *st = NULL;
    struct api *api = NULL;
    struct http_server *srv = NULL;
    struct maint *maint = NULL;
    struct retention_rules *retention = NULL;
    struct tls_ctx *tls = NULL;
    struct reloader rl = {0};
    struct events *events = NULL;
    struct debug_listener dbg = {0};
    int rc = 1;

    if (config_load(&cfg, conf_path, &e) < 0) {
        fprintf(stderr, "ocireg: %s\n", e.msg);
        return 1;
    }
    log_setup((enum log_level)cfg.log.level, cfg.log.json, 2);
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    /* before any thread starts: every thread inherits the mask, so these
     * reach only the signal thread's sigwait (struct reloader) */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    rl.conf_path = conf_path;
    rl.cur = &cfg;

    if (cfg.tls.cert[0]) {
        struct tls_opts to = tls_opts_of(&cfg);
        tls = tls_ctx_new(&to, &e);
        if (!tls) {
            log_error("main", NULL, "%s", e.msg);
            goto out;
        }
        log_info("main", NULL, "TLS on: TLS 1.2-1.3, client certificates: %s",
                 tls_client_mode(tls));
    }
    rl.tls = tls;
    if (reloader_start(&rl, &e) < 0) {
        log_error("main", NULL, "%s", e.msg);
        goto out;
    }

    /* read at start so that a broken file stops the server with its file:line
     * (gc passes use the rules; pull times are recorded only with them) */
    if (cfg.retention.rules[0]) {
        retention = retention_load(cfg.retention.rules, &e);
        if (!retention) {
            log_error("main", NULL, "retention rules: %s", e.msg);
            goto out;
        }
    }
    struct storage_opts so = storage_opts_of(&cfg);
    so.track_pulls = retention != NULL;
    st = storage_open(&so, &e);
    if (!st) {
        log_error("main", NULL, "storage '%s': %s", cfg.storage.root, e.msg);
        goto out;
    }
    struct maint_opts mo = {
        .upload_expiry_sec = cfg.storage.upload_expiry_sec,
        .pull_flush_ms = retention ? MAINT_PULL_FLUSH_MS : 0,
        .gc_interval_ms = cfg.gc.interval_ms,
        .gc_grace_sec = cfg.gc.grace_sec,
        .gc_delete_untagged = cfg.gc.delete_untagged,
        .retention = retention,
        .test_kill_step = test_gc_kill_step(),
    };
    maint = maint_start(st, &mo, &e);
    if (!maint) {
        log_error("main", NULL, "maintenance thread: %s", e.msg);
        goto out;
    }
    __atomic_store_n(&rl.maint, maint, __ATOMIC_SEQ_CST);
    char token_key[CONFIG_STR_MAX + 16];
    if (cfg.auth.token_key[0])
        snprintf(token_key, sizeof(token_key), "%s", cfg.auth.token_key);
    else
        snprintf(token_key, sizeof(token_key), "%s/token.key", cfg.storage.root);
    struct api_auth_opts auo = {
        .htpasswd = cfg.auth.htpasswd,
        .rules = cfg.auth.rules,
        .service = cfg.auth.service,
        .issuer = cfg.auth.issuer,
        .token_key = token_key,
        .token_ttl_sec = cfg.auth.token_ttl_sec,
        .refresh_ttl_sec = cfg.auth.refresh_ttl_sec,
        .token_realm = cfg.auth.token_realm,
        .token_service = cfg.auth.token_service,
        .token_issuer = cfg.auth.token_issuer,
        .token_certs = cfg.auth.token_certs,
        .token_jwks = cfg.auth.token_jwks,
        .max_failures = (unsigned)cfg.auth.max_failures,
        .failure_window_sec = cfg.auth.failure_window_sec,
        .tls = tls != NULL,
    };
    if (cfg.events.endpoints[0] && !(events = events_start(&cfg, tls != NULL, &e))) {
        log_error("main", NULL, "events: %s", e.msg);
        goto out;
    }
    struct api_opts ao = {.max_manifest = cfg.server.max_manifest,
                          .max_page = cfg.server.max_page,
                          .blocking_threads = cfg.server.blocking_threads,
                          .blocking_queue = (unsigned)cfg.server.max_connections,
                          .upload_threads = cfg.server.upload_threads,
                          .upload_nice = cfg.server.upload_nice,
                          .auth = &auo,
                          .read_only = cfg.server.read_only,
                          .events = events};
    api = api_new(st, &ao, &e);
    if (!api) {
        log_error("main", NULL, "api: %s", e.msg);
        goto out;
    }
    __atomic_store_n(&rl.api, api, __ATOMIC_SEQ_CST);
    struct http_app app;
    memset(&app, 0, sizeof(app));
    api_http_app(api, &app);
    struct http_server_opts ho = {
        .listen = cfg.server.listen,
        .workers = cfg.server.workers,
        .header_max = (size_t)cfg.server.header_max,
        .body_buffer = (size_t)cfg.server.body_buffer,
        .header_timeout_ms = cfg.server.header_timeout_ms,
        .idle_timeout_ms = cfg.server.idle_timeout_ms,
        .body_timeout_ms = cfg.server.body_timeout_ms,
        .max_connections = cfg.server.max_connections,
        .drain_timeout_ms = cfg.server.drain_timeout_ms,
        .io = cfg.storage.io == CONFIG_IO_URING   ? HTTP_IO_URING
              : cfg.storage.io == CONFIG_IO_POSIX ? HTTP_IO_POSIX
                                                  : HTTP_IO_AUTO,
        .tls = tls,
    };
    srv = http_server_new(&ho, &app, &e);
    if (!srv) {
        log_error("main", NULL, "listen '%s': %s", cfg.server.listen, e.msg);
        goto out;
    }
    api_attach_server(api, srv);
    if (debug_start(&dbg, &cfg, api, &e) < 0) {
        log_error("main", NULL, "%s", e.msg);
        goto out;
    }

    /* the signal thread may use the server from here on; a TERM it took
     * before (and found no server) is answered here */
    __atomic_store_n(&rl.srv, srv, __ATOMIC_SEQ_CST);
    if (atomic_load(&rl.term))
        http_server_stop(srv);
    if (cfg.server.read_only)
        log_info("main", NULL, "read-only mode on: pushes and deletes are refused");
    log_info("main", NULL, "listening on %s", http_server_address(srv));
    if (ready) {
        char text[128];
        snprintf(text, sizeof(text), "%s\n", http_server_address(srv));
        if (write_ready_file(ready, text, &e) < 0) {
            log_error("main", NULL, "%s", e.msg);
            goto out;
        }
    }
    if (http_server_run(srv, &e) < 0) {
        log_error("main", NULL, "server: %s", e.msg);
        goto out;
    }
    log_info("main", NULL, "stopped");
    rc = 0;
out:
    reloader_stop(&rl);
    debug_stop(&dbg);
    if (api)
        api_attach_server(api, NULL);
    http_server_free(srv);
    tls_ctx_free(tls);
    api_free(api);
    events_free(events); /* after the api: nothing emits any more */
    maint_stop(maint); /* joined before its storage goes away */
    if (st)
        storage_close(st);
    retention_free(retention);
    libevent_global_shutdown();
    return rc;
}

static void
print_line(void *arg, const char *line)
{
    (void)arg;
    printf("  %s\n", line);
}

/* ocireg gc - one pass on a stopped store. The root's lock keeps it from a
 * store a server has open (its recovery and ours would fight over files);
 * that server collects by itself every [gc] interval. */
static int
cmd_gc(int argc, char **argv)
{
    const char *conf_path = NULL;
    int dry = 0, untagged = 0, full = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            conf_path = argv[++i];
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            dry = 1;
        } else if (strcmp(argv[i], "--delete-untagged") == 0) {
            untagged = 1;
        } else if (strcmp(argv[i], "--full") == 0) {
            full = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "ocireg gc: unknown or incomplete option '%s'\n\n%s", argv[i],
                    usage_text);
            return 2;
        }
    }
    struct err e = {0};
    struct config cfg;
    if (config_load(&cfg, conf_path, &e) < 0) {
        fprintf(stderr, "ocireg gc: %s\n", e.msg);
        return 1;
    }
    /* warnings and errors only: the command prints its own result */
    log_setup(cfg.log.level < LOG_WARN ? (enum log_level)cfg.log.level : LOG_WARN, cfg.log.json, 2);
    struct storage_opts so = storage_opts_of(&cfg);
    struct storage *st = storage_open(&so, &e);
    if (!st) {
        long pid = 0;
        struct err oe = {0};
        if (storage_root_owner(cfg.storage.root, &pid, &oe) == 1)
            fprintf(stderr,
                    "ocireg gc: the store '%s' is in use by a running ocireg (pid %ld): it "
                    "collects on its own every [gc] interval; send it SIGUSR1 for a pass now\n",
                    cfg.storage.root, pid);
        else
            fprintf(stderr, "ocireg gc: storage '%s': %s\n", cfg.storage.root, e.msg);
        return 1;
    }
    int rc = 1;
    struct retention_rules *retention = NULL;
    struct storage_handle *h = storage_handle_open(st, &e);
    if (!h) {
        fprintf(stderr, "ocireg gc: %s\n", e.msg);
        goto out;
    }
    if (cfg.retention.rules[0]) {
        retention = retention_load(cfg.retention.rules, &e);
        if (!retention) {
            fprintf(stderr, "ocireg gc: retention rules: %s\n", e.msg);
            goto out;
        }
    }
    struct gc_opts o = {
        .retention = retention,
        .grace_sec = cfg.gc.grace_sec,
        .delete_untagged = cfg.gc.delete_untagged || untagged,
        .dry_run = dry,
        .full = full,
        .report = dry ? print_line : NULL,
    };
    if (dry)
        printf("would remove:\n");
    struct gc_stats gs;
    int prc = gc_pass(h, &o, &gs, &e);
    printf("%s: %llu blobs (%llu bytes), %llu manifests, %llu links, %llu uploads, %llu tags; "
           "%llu candidates reviewed in %.3f s\n",
           dry ? "would remove" : "removed", (unsigned long long)gs.blobs,
           (unsigned long long)gs.bytes, (unsigned long long)gs.manifests,
           (unsigned long long)gs.links, (unsigned long long)gs.uploads,
           (unsigned long long)gs.tags, (unsigned long long)gs.reviewed, gs.seconds);
    if (prc < 0) {
        fprintf(stderr, "ocireg gc: %s (what was removed stays removed; the next pass goes on)\n",
                e.msg);
        goto out;
    }
    rc = 0;
out:
    retention_free(retention);
    storage_handle_close(h);
    storage_close(st);
    return rc;
}

static void
check_print(void *arg, enum check_line kind, const char *line)
{
    (void)arg;
    printf("%s%s\n", kind == CHECK_REPAIRED ? "repaired: " : kind == CHECK_NOTE ? "note: " : "",
           line);
}

/* cmd_check - `ocireg check`: 0 sound, 1 something wrong (also when --repair
 * put it right: the next check says 0), 2 usage or the run could not finish */
static int
cmd_check(int argc, char **argv)
{
    const char *conf_path = NULL;
    struct check_opts co = {.report = check_print};
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            conf_path = argv[++i];
        } else if (strcmp(argv[i], "--repair") == 0) {
            co.repair = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "ocireg check: unknown or incomplete option '%s'\n\n%s", argv[i],
                    usage_text);
            return 2;
        }
    }
    struct err e = {0};
    struct config cfg;
    if (config_load(&cfg, conf_path, &e) < 0) {
        fprintf(stderr, "ocireg check: %s\n", e.msg);
        return 2;
    }
    log_setup((enum log_level)cfg.log.level, cfg.log.json, 2);
    /* storage_open would create a store: a mistyped root must not check clean */
    char db[CONFIG_STR_MAX + 16];
    snprintf(db, sizeof(db), "%s/meta.db", cfg.storage.root);
    if (access(db, F_OK) < 0) {
        fprintf(stderr, "ocireg check: storage '%s': no store there (%s: %s)\n", cfg.storage.root,
                db, strerror(errno));
        return 2;
    }
    struct storage_opts so = storage_opts_of(&cfg);
    struct storage *st = storage_open(&so, &e);
    if (!st) {
        fprintf(stderr, "ocireg check: storage '%s': %s%s\n", cfg.storage.root, e.msg,
                strstr(e.msg, "in use") ? " (check needs the store to itself: stop the server)"
                                        : "");
        return 2;
    }
    struct storage_handle *h = storage_handle_open(st, &e);
    struct check_stats cs;
    int rc = h ? check_run(h, &co, &cs, &e) : -1;
    storage_handle_close(h);
    storage_close(st);
    if (rc < 0) {
        fprintf(stderr, "ocireg check: %s\n", e.msg);
        return 2;
    }
    if (cs.garbage_files)
        printf("garbage: %llu blob files, %llu bytes without a row (gc removes them)\n",
               (unsigned long long)cs.garbage_files, (unsigned long long)cs.garbage_bytes);
    if (cs.absent_subjects)
        printf("note: %llu referrers whose subject is not stored (the spec allows it)\n",
               (unsigned long long)cs.absent_subjects);
    printf("checked %llu blobs, %llu manifests, %llu links, %llu tags: %llu problems, "
           "%llu repaired (%llu quarantined); %llu bytes read in %.2f s\n",
           (unsigned long long)cs.blobs, (unsigned long long)cs.manifests,
           (unsigned long long)cs.links, (unsigned long long)cs.tags,
           (unsigned long long)cs.problems, (unsigned long long)cs.repaired,
           (unsigned long long)cs.quarantined, (unsigned long long)cs.bytes_read, cs.seconds);
    return cs.problems ? 1 : 0;
}

/* ---- check-config ---- */

struct cc_state {
    const char *prog;
    int errors;
};

static void
cc_report(void *arg, const struct err *e)
{
    struct cc_state *cs = arg;
    fprintf(stderr, "%s: %s\n", cs->prog, e->msg);
    cs->errors++;
}

/* one file a key names: load it as the server would, report its error under
 * the key's name */
static void
cc_file_error(struct cc_state *cs, const char *key, const struct err *e)
{
    struct err k;
    err_set(&k, e->code, 0, "%s: %s", key, e->msg);
    cc_report(cs, &k);
}

/* cmd_check_config - `ocireg check-config`: 0 valid, 1 with the errors on
 * stderr, 2 usage. Reads every file the configuration names and creates none
 * (the token key is only read when it exists: serve creates it). */
static int
cmd_check_config(int argc, char **argv)
{
    const char *conf_path = NULL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            conf_path = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "ocireg check-config: unknown or incomplete option '%s'\n\n%s",
                    argv[i], usage_text);
            return 2;
        }
    }
    /* the loaders below log nothing useful for this command */
    log_setup(LOG_ERROR, 0, 2);
    struct cc_state cs = {.prog = "ocireg check-config"};
    struct config *cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        fprintf(stderr, "ocireg check-config: out of memory\n");
        return 1;
    }
    config_check(cfg, conf_path, cc_report, &cs);
    struct err e = {0};
    const struct config *c = cfg;
    if (c->auth.htpasswd[0]) {
        struct htpasswd *h = htpasswd_open(c->auth.htpasswd, &e);
        if (!h)
            cc_file_error(&cs, "[auth] htpasswd", &e);
        htpasswd_free(h);
    }
    if (c->auth.rules[0]) {
        struct access_rules *r = access_load(c->auth.rules, &e);
        if (!r)
            cc_file_error(&cs, "[auth] rules", &e);
        access_free(r);
    }
    if (c->auth.token_key[0] && access(c->auth.token_key, F_OK) == 0) {
        struct token_key *k = token_key_load(c->auth.token_key, 0, &e);
        if (!k)
            cc_file_error(&cs, "[auth] token_key", &e);
        token_key_free(k);
    }
    if (c->auth.token_realm[0] && (!c->auth.token_service[0] || !c->auth.token_issuer[0] ||
                                   (!c->auth.token_certs[0] && !c->auth.token_jwks[0]))) {
        err_set(&e, ERR_CONFIG, 0,
                "[auth] token_realm needs token_service, token_issuer and token_certs or "
                "token_jwks");
        cc_report(&cs, &e);
    }
    if (c->auth.token_certs[0] || c->auth.token_jwks[0]) {
        struct token_verifier_opts vo = {
            .issuer = c->auth.token_issuer[0] ? c->auth.token_issuer : "-",
            .audience = c->auth.token_service[0] ? c->auth.token_service : "-",
            .certs_pem = c->auth.token_certs[0] ? c->auth.token_certs : NULL,
            .jwks = c->auth.token_jwks[0] ? c->auth.token_jwks : NULL};
        struct token_verifier *v = token_verifier_new(&vo, &e);
        if (!v)
            cc_file_error(&cs, c->auth.token_certs[0] ? "[auth] token_certs" : "[auth] token_jwks",
                          &e);
        token_verifier_free(v);
    }
    if (c->retention.rules[0]) {
        struct retention_rules *r = retention_load(c->retention.rules, &e);
        if (!r)
            cc_file_error(&cs, "[retention] rules", &e);
        retention_free(r);
    }
    if (c->events.endpoints[0]) {
        struct events_conf *ec = events_conf_load(c->events.endpoints, &e);
        if (!ec)
            cc_file_error(&cs, "[events] endpoints", &e);
        free(ec);
    }
    if (c->tls.cert[0] && c->tls.key[0]) {
        struct tls_opts to = tls_opts_of(c);
        struct tls_ctx *t = tls_ctx_new(&to, &e);
        if (!t)
            cc_file_error(&cs, "[tls]", &e);
        tls_ctx_free(t);
    }
    free(cfg);
    if (cs.errors) {
        fprintf(stderr, "%s: %d error%s in %s\n", cs.prog, cs.errors, cs.errors == 1 ? "" : "s",
                conf_path ? conf_path : "the environment");
        return 1;
    }
    printf("configuration valid: %s\n", conf_path ? conf_path : "defaults and environment");
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "gc") == 0)
        return cmd_gc(argc - 2, argv + 2);
    if (strcmp(cmd, "check-config") == 0)
        return cmd_check_config(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ocireg %s\n", OCIREG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    fprintf(stderr, "ocireg: unknown command '%s'\n\n%s", cmd, usage_text);
    return 2;
}
