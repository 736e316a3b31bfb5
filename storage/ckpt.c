/* ckpt.c - the WAL checkpointer: one thread per store with its own connection.
 *
 * Worker connections run synchronous=OFF and have autocheckpoint off (their WAL
 * hook replaces it), because a checkpoint run on an OFF connection would copy
 * pages into meta.db without fsyncing it and then let the WAL restart over
 * frames that were the only durable copy. This thread's connection runs
 * synchronous=FULL (when the store fsyncs): a checkpoint fsyncs the WAL, copies,
 * fsyncs meta.db. It also keeps checkpoint work out of requests.
 *
 *   WAITING --poke_files--> (PENDING_SYNC_MS) storage_pending_sync --> WAITING
 *   WAITING --poke (WAL >= CKPT_PAGES)--> PASSIVE checkpoint --> WAITING
 *      |                                  (holding st->wmu when the WAL has
 *      |                                   grown past CKPT_CATCHUP pages)
 *      +--stop--> pending sync, TRUNCATE checkpoint (best effort) --> joined
 *
 * PASSIVE never waits for readers or writers: it copies what it can, and the
 * next writer restarts the WAL from its start once everything is copied and no
 * reader needs it. Under a steady stream of commits the copy may never catch up
 * (frames are appended while it runs) and the WAL file would only grow; past
 * CKPT_CATCHUP pages the checkpoint therefore runs with the write mutex held, so
 * it copies everything and the next commit restarts the WAL (the measured pause:
 * a few ms). A checkpoint error is logged and retried at the next poke. */
#include "storage/metadb.h"

#include <stdlib.h>
#include <time.h>

#include <sqlite3.h>

#include "common/log.h"

#include "common/banned.h"

#define CKPT_CATCHUP (4 * CKPT_PAGES)

struct ckpt {
    struct meta *m;
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int poked; /* under mu */
    int stop;  /* under mu */
    int armed; /* atomic: 1 while a poke is pending (fast path for ckpt_poke) */
    int pages; /* atomic: WAL size reported by the last poke */
    int (*sync_files)(void *arg, struct err *e); /* pending manifest files */
    void *sync_arg;
    int files;       /* under mu: manifest files are pending */
    int files_armed; /* atomic: fast path for ckpt_poke_files */
};

static void
wait_ms(struct ckpt *k, long ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += (ms % 1000) * 1000000L;
    dl.tv_sec += ms / 1000 + dl.tv_nsec / 1000000000L;
    dl.tv_nsec %= 1000000000L;
    while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &dl) == 0)
        ; /* a checkpoint poke does not cut the wait short */
}

/* 0, or -1 after logging (the rows stay; the caller tries again later) */
static int
sync_pending(struct ckpt *k)
{
    struct err e = {0};
    if (!k->sync_files || k->sync_files(k->sync_arg, &e) == 0)
        return 0;
    log_warn("storage", NULL, "sync of new manifest files failed (retried): %s", e.msg);
    return -1;
}

static void *
ckpt_main(void *arg)
{
    struct ckpt *k = arg;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (!k->poked && !k->files && !k->stop)
            pthread_cond_wait(&k->cv, &k->mu);
        if (k->stop)
            break;
        if (k->files) {
            /* let PENDING_SYNC_MS of manifest PUTs share one syncfs */
            wait_ms(k, PENDING_SYNC_MS);
            k->files = 0;
            __atomic_store_n(&k->files_armed, 0, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&k->mu);
            int failed = sync_pending(k) < 0;
            pthread_mutex_lock(&k->mu);
            if (failed)
                k->files = 1; /* again after another PENDING_SYNC_MS */
            if (k->stop)
                break;
        }
        if (!k->poked)
            continue;
        k->poked = 0;
        pthread_mutex_unlock(&k->mu);
        __atomic_store_n(&k->armed, 0, __ATOMIC_RELEASE);
        int catchup = __atomic_load_n(&k->pages, __ATOMIC_RELAXED) >= CKPT_CATCHUP;
        if (catchup)
            pthread_mutex_lock(&k->m->wmu);
        int wal = 0, copied = 0;
        int rc = sqlite3_wal_checkpoint_v2(k->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &wal, &copied);
        if (catchup)
            pthread_mutex_unlock(&k->m->wmu);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("storage", NULL, "WAL checkpoint failed: %s", sqlite3_errmsg(k->db));
        else
            log_debug("storage", NULL, "WAL checkpoint%s: %d of %d pages copied",
                      catchup ? " (writes held)" : "", copied, wal);
        pthread_mutex_lock(&k->mu);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

struct ckpt *
ckpt_start(struct meta *m, int (*sync_files)(void *arg, struct err *e), void *arg, struct err *e)
{
    struct ckpt *k = calloc(1, sizeof(*k));
    if (!k) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    k->m = m;
    k->sync_files = sync_files;
    k->sync_arg = arg;
    if (metadb_connect(m->dbpath, m->fsync, &k->db, e) < 0) {
        free(k);
        return NULL;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    if (pthread_create(&k->thread, NULL, ckpt_main, k) != 0) {
        err_set(e, ERR_INTERNAL, 0, "cannot start the checkpoint thread");
        pthread_mutex_destroy(&k->mu);
        pthread_cond_destroy(&k->cv);
        sqlite3_close(k->db);
        free(k);
        return NULL;
    }
    return k;
}

void
ckpt_poke(struct ckpt *k, int pages)
{
    if (!k || pages < CKPT_PAGES)
        return;
    __atomic_store_n(&k->pages, pages, __ATOMIC_RELAXED);
    if (__atomic_exchange_n(&k->armed, 1, __ATOMIC_ACQ_REL))
        return; /* one is pending already */
    pthread_mutex_lock(&k->mu);
    k->poked = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

void
ckpt_poke_files(struct ckpt *k)
{
    if (!k || __atomic_exchange_n(&k->files_armed, 1, __ATOMIC_ACQ_REL))
        return;
    pthread_mutex_lock(&k->mu);
    k->files = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

void
ckpt_stop(struct ckpt *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->stop = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    sync_pending(k); /* a clean stop leaves no pending manifest file */
    /* every handle is closed by now (storage_close's contract): copy all and
     * shrink the WAL to nothing, so the next start reads a small one */
    sqlite3_busy_timeout(k->db, 200); /* a handle still reading: give up soon */
    int rc = sqlite3_wal_checkpoint_v2(k->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        log_warn("storage", NULL, "final WAL checkpoint: %s", sqlite3_errmsg(k->db));
    sqlite3_close(k->db);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    free(k);
}
