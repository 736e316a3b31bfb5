/* pool.c - the blocking-work pool: N threads taking jobs from one bounded FIFO
 * (a ring of queue_max slots) under one mutex.
 *
 * A job is two pointers; the queue never allocates after pool_new. Threads
 * start in pool_new, each runs thread_init on itself (its context lives on its
 * stack frame for its whole life) and pool_new waits until all did. pool_free
 * sets `stopping`: threads go on taking jobs until the queue is empty, then end
 * (so every job submitted before pool_free runs, and whoever waits for a job's
 * effect, e.g. a suspended HTTP request, is not left waiting). */
#include "common/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#include "common/banned.h"

struct pool_job {
    pool_work_fn fn;
    void *arg;
};

struct pool_thread {
    struct pool *p;
    int index;
    pthread_t tid;
    int started;
};

struct pool {
    struct pool_opts o;
    char name[32];
    pthread_mutex_t mu;
    pthread_cond_t work;  /* a job was queued, or stopping */
    pthread_cond_t ready; /* a thread finished thread_init */
    struct pool_job *q;
    unsigned cap, head, len;
    int stopping;
    int nready, nfailed;
    struct err init_err; /* the first thread_init failure */
    int nthreads;
    struct pool_thread *th;
    atomic_ulong done;
};

static void *
pool_main(void *arg)
{
    struct pool_thread *t = arg;
    struct pool *p = t->p;
    struct err e;
    err_clear(&e);
    void *tctx = p->o.thread_init ? p->o.thread_init(p->o.arg, t->index, &e) : NULL;
    int failed = !tctx && e.code != ERR_NONE;
    pthread_mutex_lock(&p->mu);
    if (failed) {
        if (p->nfailed++ == 0)
            p->init_err = e;
    }
    p->nready++;
    pthread_cond_broadcast(&p->ready);
    pthread_mutex_unlock(&p->mu);
    if (failed)
        return NULL;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->len && !p->stopping)
            pthread_cond_wait(&p->work, &p->mu);
        if (!p->len)
            break; /* stopping and nothing left */
        struct pool_job j = p->q[p->head];
        p->head = (p->head + 1) % p->cap;
        p->len--;
        /* counted when taken: a job's last step may tell its submitter it is
         * over (a resumption), who may then read the count */
        atomic_fetch_add_explicit(&p->done, 1, memory_order_relaxed);
        pthread_mutex_unlock(&p->mu);
        j.fn(tctx, j.arg);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    if (p->o.thread_release)
        p->o.thread_release(tctx);
    return NULL;
}

struct pool *
pool_new(const struct pool_opts *o, struct err *e)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (!p) {
        err_set(e, ERR_NOMEM, ENOMEM, "pool: out of memory");
        return NULL;
    }
    p->o = *o;
    snprintf(p->name, sizeof(p->name), "%s", o->name ? o->name : "pool");
    p->nthreads = o->threads > 0 ? o->threads : POOL_DEFAULT_THREADS;
    p->cap = o->queue_max ? o->queue_max : POOL_DEFAULT_QUEUE;
    p->q = calloc(p->cap, sizeof(*p->q));
    p->th = calloc((size_t)p->nthreads, sizeof(*p->th));
    if (!p->q || !p->th) {
        free(p->q);
        free(p->th);
        free(p);
        err_set(e, ERR_NOMEM, ENOMEM, "pool: out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->ready, NULL);
    atomic_init(&p->done, 0);
    int started = 0;
    for (int i = 0; i < p->nthreads; i++) {
        struct pool_thread *t = &p->th[i];
        t->p = p;
        t->index = i;
        int rc = pthread_create(&t->tid, NULL, pool_main, t);
        if (rc != 0) {
            err_sys(e, ERR_IO, rc, "pool %s: starting thread %d", p->name, i);
            break;
        }
        t->started = 1;
        started++;
    }
    pthread_mutex_lock(&p->mu);
    while (p->nready < started)
        pthread_cond_wait(&p->ready, &p->mu);
    int failed = p->nfailed || started < p->nthreads;
    if (p->nfailed && e)
        *e = p->init_err;
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        pool_free(p);
        return NULL;
    }
    log_debug("pool", NULL, "pool %s: %d threads, queue of %u", p->name, p->nthreads, p->cap);
    return p;
}

int
pool_submit(struct pool *p, pool_work_fn fn, void *arg, struct err *e)
{
    pthread_mutex_lock(&p->mu);
    if (p->len == p->cap || p->stopping) {
        pthread_mutex_unlock(&p->mu);
        return err_set(e, ERR_OVERLOADED, 0, "server busy: %u %s jobs waiting", p->cap,
                       p->name);
    }
    p->q[(p->head + p->len) % p->cap] = (struct pool_job){fn, arg};
    p->len++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int
pool_threads(const struct pool *p)
{
    return p->nthreads;
}

unsigned long
pool_jobs_done(const struct pool *p)
{
    return atomic_load_explicit(&((struct pool *)p)->done, memory_order_relaxed);
}

unsigned
pool_queued(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    unsigned n = p->len;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void
pool_free(struct pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        if (p->th[i].started)
            pthread_join(p->th[i].tid, NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->ready);
    pthread_mutex_destroy(&p->mu);
    free(p->q);
    free(p->th);
    free(p);
}

int
pool_per_core(int per_core, int min, int max)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    long t = (n > 0 ? n : 1) * per_core;
    return t < min ? min : t > max ? max : (int)t;
}
