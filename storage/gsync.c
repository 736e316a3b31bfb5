/* gsync.c - group sync: many threads that each need "everything written so far
 * is durable" share one fsync.
 *
 * A caller takes a ticket after its own writes have returned, then waits until a
 * round that started after its ticket has finished. One waiter at a time runs the
 * round (the leader) with the mutex released; it covers every ticket taken before
 * it started. Waiters that arrive while a round runs wait for it and then for the
 * next one, which one of them leads: with N committers and a sync taking T, each
 * waits at most 2T and the number of syncs is that of rounds, not of callers.
 *
 *   idle --ticket--> leader runs fn (mutex released) --done = its target--> idle
 *                      |
 *                      +--fn fails--> FAILED: every caller not yet covered, and
 *                                     every later one, gets ERR_IO
 *
 * FAILED is final: after fsync reports an error the kernel may have dropped the
 * dirty pages, so a later fsync's success would prove nothing. The store's
 * acknowledged writes stop until a restart (which recovers from what is on
 * disk), as PostgreSQL does after a failed fsync. */
#include "storage/metadb.h"

#include <string.h>

#include "common/banned.h"

void
gsync_init(struct gsync *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->asked = g->done = 0;
    g->failed = 0;
    g->running = 0;
    g->rounds = 0;
    g->waiters = 0;
    memset(g->group, 0, sizeof(g->group));
}

/* the histogram bucket of a round that covered n tickets (n >= 1) */
static unsigned
group_bucket(uint64_t n)
{
    unsigned b = 0;
    while (b < META_GROUP_BUCKETS && (1ull << b) < n)
        b++;
    return b;
}

void
gsync_destroy(struct gsync *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

int
gsync_wait(struct gsync *g, int (*fn)(void *arg, struct err *e), void *arg, struct err *e)
{
    pthread_mutex_lock(&g->mu);
    uint64_t mine = ++g->asked;
    int rc = 0;
    for (;;) {
        if (g->done >= mine)
            break;
        if (g->failed) {
            rc = err_set(e, ERR_IO, 0,
                         "an earlier fsync of the metadata failed: writes are refused "
                         "until the server restarts");
            break;
        }
        if (g->running) {
            pthread_cond_wait(&g->cv, &g->mu);
            continue;
        }
        /* lead a round for every ticket taken so far */
        uint64_t target = g->asked;
        g->running = 1;
        pthread_mutex_unlock(&g->mu);
        int frc = fn(arg, e);
        pthread_mutex_lock(&g->mu);
        g->running = 0;
        g->rounds++;
        if (frc < 0) {
            __atomic_store_n(&g->failed, 1, __ATOMIC_RELAXED);
            rc = -1;
            pthread_cond_broadcast(&g->cv);
            break;
        }
        g->waiters += target - g->done;
        g->group[group_bucket(target - g->done)]++;
        g->done = target;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}
