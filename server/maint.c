/* maint.c - the maintenance thread (see maint.h).
 *
 * States: SLEEPING (on cv, until the earlier of the two deadlines, a gc
 * request or stop) -> WORKING (an upload round and/or a gc pass, without mu
 * held) -> SLEEPING ... ; stop set under mu and cv signalled -> the thread
 * leaves at its next look at `stop` -> joined.
 *
 * Invariants: a gc request (gc_asked, bumped by maint_gc_now) is answered by a
 * pass that starts after it: the thread copies gc_asked into gc_taken under mu
 * right before such a pass. The next periodic pass is due gc_interval after
 * the previous one ended, so a pass longer than the interval never makes the
 * next start at once. `stop` is also read without mu (atomic) by the pass's
 * stop callback, between its steps, so maint_stop waits at most for one step.
 * With pull tracking (retention rules), the upload round also writes the
 * tags' pull times, and a pull table filling up pokes the thread (`poked`)
 * into a round at once. */
#include "server/maint.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "gc/gc.h"
#include "gc/retention.h"
#include "storage/storage.h"

#include "common/banned.h"

#define MAINT_MAX_INTERVAL_MS 60000L
#define MAINT_MIN_INTERVAL_MS 100L
#define MAINT_NEVER INT64_MAX

struct maint {
    struct storage *st;
    struct storage_handle *h;
    struct maint_opts o;
    long interval_ms; /* upload expiry and pull times; 0: none */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* CLOCK_MONOTONIC */
    atomic_int stop;      /* written under mu; read also by the pass (gc_should_stop) */
    unsigned long gc_asked; /* under mu: maint_gc_now calls */
    unsigned long gc_taken; /* under mu: gc_asked as the last pass started */
    struct gc_stats gc_last; /* under mu */
    int gc_last_failed;      /* under mu; -1: no pass yet */
    struct gc_stats gc_total; /* under mu: every pass's figures added (metrics) */
    unsigned long gc_failed;  /* under mu: passes that failed */
    int64_t gc_last_end;      /* under mu: wall-clock seconds the last pass ended */
    int poked;               /* under mu: a pull table fills up, a round is wanted now */
    atomic_ulong runs;
    atomic_ulong gc_passes;
    atomic_ulong gc_steps; /* stop callbacks, for test_kill_step */
    /* maint_reconfigure: waiting settings (under mu, taken by the thread
     * between passes), and the rules given by it that this object frees */
    struct maint_gc_config pending;
    int have_pending;
    struct retention_rules *owned;
};

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long
maint_interval_ms(const struct maint_opts *o)
{
    if (o->upload_expiry_sec <= 0 && o->pull_flush_ms <= 0)
        return 0;
    long ms = MAINT_MAX_INTERVAL_MS;
    if (o->upload_expiry_sec > 0 && (long)o->upload_expiry_sec * 100L < ms)
        ms = (long)o->upload_expiry_sec * 100L; /* a tenth of the expiry */
    if (o->pull_flush_ms > 0 && o->pull_flush_ms < ms)
        ms = o->pull_flush_ms;
    if (ms > MAINT_MAX_INTERVAL_MS)
        ms = MAINT_MAX_INTERVAL_MS;
    if (ms < MAINT_MIN_INTERVAL_MS)
        ms = MAINT_MIN_INTERVAL_MS;
    return ms;
}

static void
flush_pulls(struct maint *m)
{
    struct err e = {0};
    long n = storage_pulls_flush(m->h, &e);
    if (n < 0)
        log_warn("maint", NULL,
                 "recording tags' pull times (those since the last round are lost): %s", e.msg);
    else if (n > 0)
        log_debug("maint", NULL, "recorded pull times tags=%ld", n);
}

static void
maint_round(struct maint *m)
{
    struct err e = {0};
    if (m->o.upload_expiry_sec > 0) {
        int n = storage_expire_uploads(m->h, &e);
        if (n < 0)
            log_warn("maint", NULL, "expiring upload sessions: %s", e.msg);
        else if (n > 0)
            log_info("maint", NULL, "expired %d upload session%s idle for more than %d s", n,
                     n == 1 ? "" : "s", m->o.upload_expiry_sec);
    }
    if (m->o.pull_flush_ms > 0)
        flush_pulls(m);
    atomic_fetch_add(&m->runs, 1);
}

/* storage_pulls_notify's callback: a pull table is filling up (called on a
 * request's thread: only signal) */
static void
poke(void *arg)
{
    struct maint *m = arg;
    pthread_mutex_lock(&m->mu);
    m->poked = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

/* the pass's stop callback: asked between its steps */
static int
gc_should_stop(void *arg)
{
    struct maint *m = arg;
    unsigned long k = m->o.test_kill_step;
    if (k && atomic_fetch_add(&m->gc_steps, 1) + 1 == k) {
        /* tests only: a crash in the middle of a pass (maint.h) */
        log_warn("maint", NULL, "gc: test kill at step %lu", k);
        kill(getpid(), SIGKILL);
    }
    return atomic_load(&m->stop);
}

static void
gc_round(struct maint *m)
{
    struct gc_opts go = {
        .grace_sec = m->o.gc_grace_sec,
        .delete_untagged = m->o.gc_delete_untagged,
        .retention = m->o.retention,
        .stop = gc_should_stop,
        .stop_arg = m,
    };
    struct gc_stats st = {0};
    struct err e = {0};
    log_debug("maint", NULL, "gc: pass starting");
    int rc = gc_pass(m->h, &go, &st, &e);
    pthread_mutex_lock(&m->mu);
    m->gc_last = st;
    m->gc_last_failed = rc < 0;
    m->gc_total.tags += st.tags;
    m->gc_total.manifests += st.manifests;
    m->gc_total.links += st.links;
    m->gc_total.blobs += st.blobs;
    m->gc_total.bytes += st.bytes;
    m->gc_total.uploads += st.uploads;
    m->gc_total.reviewed += st.reviewed;
    m->gc_total.seconds += st.seconds;
    m->gc_failed += rc < 0;
    m->gc_last_end = (int64_t)time(NULL);
    pthread_mutex_unlock(&m->mu);
    const char *early = atomic_load(&m->stop) ? " (stopped early: shutdown)" : "";
    if (rc < 0)
        log_warn("maint", NULL,
                 "gc: pass failed: %s (removed before the failure: %llu manifests, %llu links,"
                 " %llu blobs; the next pass goes on)",
                 e.msg, (unsigned long long)st.manifests, (unsigned long long)st.links,
                 (unsigned long long)st.blobs);
    /* info when something went, debug for the quiet passes of an idle store;
     * the line's shape is documented in docs/gc.md and parsed by tests */
    int removed = st.tags || st.manifests || st.links || st.blobs || st.uploads;
    enum log_level lv = removed ? LOG_INFO : LOG_DEBUG;
    if (lv <= log_current_level)
        log_write(lv, "maint",
                  NULL, "gc: %llu manifests, %llu links, %llu blobs (%.1f MiB), %llu uploads"
                  " removed in %.3f s%s tags=%llu reviewed=%llu",
                  (unsigned long long)st.manifests, (unsigned long long)st.links,
                  (unsigned long long)st.blobs, (double)st.bytes / (1024.0 * 1024.0),
                  (unsigned long long)st.uploads, st.seconds, early,
                  (unsigned long long)st.tags, (unsigned long long)st.reviewed);
    atomic_fetch_add(&m->gc_passes, 1);
}

/* wait on cv until deadline (monotonic ms; MAINT_NEVER: no timeout); mu held */
static void
sleep_until(struct maint *m, int64_t deadline)
{
    if (deadline == MAINT_NEVER) {
        pthread_cond_wait(&m->cv, &m->mu);
        return;
    }
    struct timespec dl = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000L};
    pthread_cond_timedwait(&m->cv, &m->mu, &dl);
}

static void *
maint_main(void *arg)
{
    struct maint *m = arg;
    int64_t gc_every = m->o.gc_interval_ms;
    int64_t now = mono_ms();
    int64_t next_up = m->interval_ms ? now + m->interval_ms : MAINT_NEVER;
    int64_t next_gc = gc_every > 0 ? now + gc_every : MAINT_NEVER;
    pthread_mutex_lock(&m->mu);
    while (!atomic_load(&m->stop)) {
        int64_t due = next_up < next_gc ? next_up : next_gc;
        now = mono_ms();
        if (m->gc_asked == m->gc_taken && !m->poked && !m->have_pending && now < due) {
            sleep_until(m, due); /* spurious and early wake-ups: look again */
            continue;
        }
        if (m->have_pending) {
            /* between passes: nothing uses the rules being replaced */
            struct maint_gc_config *c = &m->pending;
            m->have_pending = 0;
            m->o.gc_interval_ms = c->interval_ms;
            m->o.gc_grace_sec = c->grace_sec;
            m->o.gc_delete_untagged = c->delete_untagged;
            m->o.retention = c->retention;
            if (m->owned != c->retention)
                retention_free(m->owned);
            m->owned = c->retention;
            c->retention = NULL;
            gc_every = m->o.gc_interval_ms;
            next_gc = gc_every > 0 ? now + gc_every : MAINT_NEVER;
            continue;
        }
        int run_gc = m->gc_asked != m->gc_taken || now >= next_gc;
        int run_up = now >= next_up || m->poked;
        m->poked = 0;
        if (run_gc)
            m->gc_taken = m->gc_asked;
        pthread_mutex_unlock(&m->mu);
        if (run_up) {
            maint_round(m);
            next_up = m->interval_ms ? mono_ms() + m->interval_ms : MAINT_NEVER;
        }
        if (run_gc) {
            gc_round(m);
            if (gc_every > 0)
                next_gc = mono_ms() + gc_every;
        }
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* the gc figures for /metrics (a collector: common/metrics.h) */
static void
maint_collect(void *arg, struct metrics_out *o)
{
    struct maint *m = arg;
    pthread_mutex_lock(&m->mu);
    struct gc_stats tot = m->gc_total, last = m->gc_last;
    int have_last = m->gc_last_failed >= 0;
    unsigned long failed = m->gc_failed;
    int64_t last_end = m->gc_last_end;
    pthread_mutex_unlock(&m->mu);
    metrics_family(o, "ocireg_gc_passes_total", "counter", "garbage collection passes ended");
    metrics_sample_u64(o, "ocireg_gc_passes_total", NULL, atomic_load(&m->gc_passes));
    metrics_family(o, "ocireg_gc_failed_passes_total", "counter",
                   "garbage collection passes that failed (the next one goes on)");
    metrics_sample_u64(o, "ocireg_gc_failed_passes_total", NULL, failed);
    metrics_family(o, "ocireg_gc_removed_total", "counter",
                   "things garbage collection removed, by kind (tags: by retention rules)");
    const struct {
        const char *kind;
        uint64_t v;
    } kinds[] = {{"manifests", tot.manifests}, {"links", tot.links}, {"blobs", tot.blobs},
                 {"tags", tot.tags},           {"uploads", tot.uploads}};
    char lbl[64];
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        snprintf(lbl, sizeof(lbl), "kind=\"%s\"", kinds[i].kind);
        metrics_sample_u64(o, "ocireg_gc_removed_total", lbl, kinds[i].v);
    }
    metrics_family(o, "ocireg_gc_freed_bytes_total", "counter",
                   "bytes of the blob files garbage collection removed");
    metrics_sample_u64(o, "ocireg_gc_freed_bytes_total", NULL, tot.bytes);
    metrics_family(o, "ocireg_gc_reviewed_total", "counter",
                   "candidates garbage collection looked at");
    metrics_sample_u64(o, "ocireg_gc_reviewed_total", NULL, tot.reviewed);
    metrics_family(o, "ocireg_gc_duration_seconds_total", "counter",
                   "time spent in garbage collection passes");
    metrics_sample(o, "ocireg_gc_duration_seconds_total", NULL, tot.seconds);
    if (have_last) {
        metrics_family(o, "ocireg_gc_last_pass_duration_seconds", "gauge",
                       "duration of the last garbage collection pass");
        metrics_sample(o, "ocireg_gc_last_pass_duration_seconds", NULL, last.seconds);
        metrics_family(o, "ocireg_gc_last_pass_end_timestamp_seconds", "gauge",
                       "when the last garbage collection pass ended (Unix time)");
        metrics_sample_u64(o, "ocireg_gc_last_pass_end_timestamp_seconds", NULL,
                           (uint64_t)last_end);
    }
}

struct maint *
maint_start(struct storage *st, const struct maint_opts *o, struct err *e)
{
    struct maint *m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    m->o = *o;
    m->st = st;
    m->interval_ms = maint_interval_ms(o);
    m->gc_last_failed = -1;
    atomic_init(&m->stop, 0);
    atomic_init(&m->runs, 0);
    atomic_init(&m->gc_passes, 0);
    atomic_init(&m->gc_steps, 0);
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    m->h = storage_handle_open(st, e);
    if (!m->h)
        goto fail;
    int pe = pthread_create(&m->thread, NULL, maint_main, m);
    if (pe != 0) {
        err_sys(e, ERR_INTERNAL, pe, "starting the maintenance thread");
        goto fail;
    }
    m->started = 1;
    if (metrics_register(maint_collect, m, e) < 0)
        goto fail;
    if (o->pull_flush_ms > 0)
        storage_pulls_notify(st, poke, m);
    if (o->upload_expiry_sec > 0)
        log_info("maint", NULL,
                 "upload sessions idle for more than %d s are removed (checked every %ld ms)",
                 o->upload_expiry_sec, m->interval_ms);
    if (o->pull_flush_ms > 0)
        log_info("maint", NULL, "tags' pull times are recorded, written every %ld ms",
                 m->interval_ms);
    if (o->gc_interval_ms > 0)
        log_info("maint", NULL,
                 "gc: a pass every %d ms (grace %lld s, delete_untagged %s); SIGUSR1 runs one now",
                 o->gc_interval_ms, (long long)o->gc_grace_sec,
                 o->gc_delete_untagged ? "on" : "off");
    else
        log_info("maint", NULL, "gc: no periodic pass ([gc] interval = 0); SIGUSR1 runs one");
    return m;
fail:
    maint_stop(m);
    return NULL;
}

unsigned long
maint_runs(struct maint *m)
{
    return m ? atomic_load(&m->runs) : 0;
}

void
maint_gc_now(struct maint *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->gc_asked++;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

void
maint_reconfigure(struct maint *m, const struct maint_gc_config *c)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    if (m->have_pending && m->pending.retention != m->owned && m->pending.retention != c->retention)
        retention_free(m->pending.retention); /* replaced before the thread took it */
    m->pending = *c;
    m->have_pending = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

unsigned long
maint_gc_passes(struct maint *m)
{
    return m ? atomic_load(&m->gc_passes) : 0;
}

int
maint_gc_last(struct maint *m, struct gc_stats *out)
{
    pthread_mutex_lock(&m->mu);
    int rc = m->gc_last_failed;
    if (rc >= 0)
        *out = m->gc_last;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

void
maint_stop(struct maint *m)
{
    if (!m)
        return;
    metrics_unregister(maint_collect, m);
    if (m->started) {
        if (m->o.pull_flush_ms > 0)
            storage_pulls_notify(m->st, NULL, NULL);
        pthread_mutex_lock(&m->mu);
        atomic_store(&m->stop, 1);
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
        /* the thread has ended: its handle is this thread's now */
        if (m->o.pull_flush_ms > 0)
            flush_pulls(m);
    }
    if (m->have_pending && m->pending.retention != m->owned)
        retention_free(m->pending.retention);
    retention_free(m->owned);
    storage_handle_close(m->h);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
