/* maint.c - the maintenance thread (see maint.h).
 *
 * States: RUNNING (sleeping on cv until the next round or stop) -> STOPPING
 * (stop set under mu, cv signalled) -> joined. A round runs without mu held, so
 * maint_stop waits at most for one round to end. */
#include "server/maint.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "common/log.h"
#include "storage/storage.h"

#include "common/banned.h"

#define MAINT_MAX_INTERVAL_MS 60000L
#define MAINT_MIN_INTERVAL_MS 100L

struct maint {
    struct storage *st;
    struct storage_handle *h;
    struct maint_opts o;
    long interval_ms;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int stop;          /* under mu */
    int poked;         /* under mu: a round is wanted now */
    atomic_ulong runs;
};

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
        log_warn("maint", NULL, "recording tags' pull times (those since the last round are lost): %s",
                 e.msg);
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

static void *
maint_main(void *arg)
{
    struct maint *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        long ms = m->interval_ms ? m->interval_ms : MAINT_MAX_INTERVAL_MS;
        dl.tv_sec += ms / 1000;
        dl.tv_nsec += (ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!m->stop && !m->poked && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&m->cv, &m->mu, &dl);
        if (m->stop)
            break;
        m->poked = 0;
        if (!m->interval_ms)
            continue; /* nothing periodic configured: sleep on */
        pthread_mutex_unlock(&m->mu);
        maint_round(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
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
    atomic_init(&m->runs, 0);
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
    if (o->pull_flush_ms > 0)
        storage_pulls_notify(st, poke, m);
    if (o->upload_expiry_sec > 0)
        log_info("maint", NULL, "upload sessions idle for more than %d s are removed (checked every %ld ms)",
                 o->upload_expiry_sec, m->interval_ms);
    if (o->pull_flush_ms > 0)
        log_info("maint", NULL, "tags' pull times are recorded, written every %ld ms",
                 o->pull_flush_ms < m->interval_ms ? m->interval_ms : o->pull_flush_ms);
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
maint_stop(struct maint *m)
{
    if (!m)
        return;
    if (m->started) {
        if (m->o.pull_flush_ms > 0)
            storage_pulls_notify(m->st, NULL, NULL);
        pthread_mutex_lock(&m->mu);
        m->stop = 1;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
        /* the thread has ended: its handle is this thread's now */
        if (m->o.pull_flush_ms > 0)
            flush_pulls(m);
    }
    storage_handle_close(m->h);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
