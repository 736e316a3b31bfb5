/* pool.h - a bounded pool of threads for blocking work (fsync, rename, hashing a
 * whole file, later bcrypt and remote calls), so that no event-loop thread waits
 * on it. Generic: it knows nothing of HTTP or storage.
 *
 * Each pool thread may keep a context of its own (thread_init, e.g. a storage
 * handle: one sqlite connection per thread); every job runs on one pool thread
 * and gets that thread's context.
 *
 * Jobs wait in a FIFO of at most queue_max entries; pool_submit refuses a job
 * when it is full (ERR_OVERLOADED) instead of blocking its caller, which is an
 * event loop. pool_free runs every job still queued before the threads end. */
#ifndef OCIREG_POOL_H
#define OCIREG_POOL_H

#include "common/err.h"

struct pool;

/* the context of pool thread `index` (0-based), created on that thread before it
 * takes a job; NULL with e->code set fails pool_new (NULL with ERR_NONE is a
 * valid context) */
typedef void *(*pool_thread_init_fn)(void *arg, int index, struct err *e);
/* releases what thread_init made, on the same thread, after its last job */
typedef void (*pool_thread_release_fn)(void *tctx);
/* one job: runs on a pool thread with that thread's context */
typedef void (*pool_work_fn)(void *tctx, void *arg);

struct pool_opts {
    const char *name;      /* for log lines and thread names ("blocking") */
    int threads;           /* <= 0: POOL_DEFAULT_THREADS */
    unsigned queue_max;    /* jobs waiting at most; 0: POOL_DEFAULT_QUEUE */
    pool_thread_init_fn thread_init;       /* may be NULL */
    pool_thread_release_fn thread_release; /* may be NULL */
    void *arg;             /* thread_init's first argument */
};

#define POOL_DEFAULT_THREADS 4
#define POOL_DEFAULT_QUEUE 1024

/* pool_new - start the threads and wait until each ran thread_init. Returns a
 * pool owned by the caller (pool_free), or NULL with thread_init's error,
 * ERR_NOMEM or ERR_IO (thread creation). */
struct pool *pool_new(const struct pool_opts *o, struct err *e);

/* pool_submit - queue fn(tctx, arg) for the next free pool thread. Thread-safe,
 * never blocks on the work. Returns 0, or -1 with ERR_OVERLOADED when queue_max
 * jobs already wait (fn will not run; arg stays the caller's). */
int pool_submit(struct pool *p, pool_work_fn fn, void *arg, struct err *e);

/* pool_threads - the number of threads */
int pool_threads(const struct pool *p);

/* pool_jobs_done - jobs taken by a thread so far (counted before they run, so
 * that a job that ends by telling its submitter is counted when it is told);
 * for tests and stats */
unsigned long pool_jobs_done(const struct pool *p);

/* pool_queued - jobs waiting for a thread now (thread-safe; for metrics) */
unsigned pool_queued(struct pool *p);

/* pool_per_core - per_core threads for each online core, clamped to [min, max]
 * (the default size of the server's pools and event loops) */
int pool_per_core(int per_core, int min, int max);

/* pool_free - run every queued job, end and join the threads (thread_release
 * on each), free. NULL accepted. Must not be called from a pool thread. */
void pool_free(struct pool *p);

#endif
