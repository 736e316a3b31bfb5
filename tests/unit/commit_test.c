/* commit_test.c - group commit (storage/gsync.c, metadb.c) and the WAL
 * checkpointer (storage/ckpt.c): one fsync shared by concurrent committers,
 * a failed WAL fsync refusing later writes until a restart, checkpoints keeping
 * the WAL bounded, and everything committed surviving a close and reopen. */
#include "storage/metadb.h"
#include "tests/unit/storage_testutil.h"

#include <sqlite3.h>
#include "common/log.h"
#include <sys/wait.h>
#include <time.h>

/* ---- gsync on its own ---- */

struct slow_sync {
    pthread_mutex_t mu;
    struct gsync *g;
    int waiters; /* the first round lasts until they all hold a ticket */
    int calls;
    uint64_t started[64]; /* per call: the calls counter of arrivals when it began */
    int arrived;          /* waiters that took their ticket (set before the call) */
    int fail;
};

static void
ms_sleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t
tickets_taken(struct gsync *g)
{
    pthread_mutex_lock(&g->mu);
    uint64_t n = g->asked;
    pthread_mutex_unlock(&g->mu);
    return n;
}

static int
slow_fn(void *arg, struct err *e)
{
    struct slow_sync *s = arg;
    pthread_mutex_lock(&s->mu);
    int i = s->calls++;
    if (i < 64)
        s->started[i] = (uint64_t)s->arrived;
    pthread_mutex_unlock(&s->mu);
    /* the first round runs until every waiter has taken its ticket: a
     * condition, not a sleep long enough on a quiet machine (the 60 s is only
     * a guard against a hang) */
    for (int t = 0; i == 0 && tickets_taken(s->g) < (uint64_t)s->waiters && t < 60000; t++)
        ms_sleep(1);
    if (s->fail)
        return err_set(e, ERR_IO, EIO, "injected");
    return 0;
}

struct gs_arg {
    struct gsync *g;
    struct slow_sync *s;
    int rc;
    int calls_before; /* fn calls started before this waiter arrived */
    int calls_after;  /* fn calls started when it returned */
};

static pthread_barrier_t gs_barrier;

static void *
gs_waiter(void *p)
{
    struct gs_arg *a = p;
    pthread_barrier_wait(&gs_barrier);
    pthread_mutex_lock(&a->s->mu);
    a->calls_before = a->s->calls;
    a->s->arrived++;
    pthread_mutex_unlock(&a->s->mu);
    struct err e = {0};
    a->rc = gsync_wait(a->g, slow_fn, a->s, &e);
    pthread_mutex_lock(&a->s->mu);
    a->calls_after = a->s->calls;
    pthread_mutex_unlock(&a->s->mu);
    return NULL;
}

static void
run_waiters(struct gsync *g, struct slow_sync *s, struct gs_arg *a, int n)
{
    pthread_t th[16];
    pthread_barrier_init(&gs_barrier, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        a[i] = (struct gs_arg){.g = g, .s = s};
        cr_assert_eq(pthread_create(&th[i], NULL, gs_waiter, &a[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&gs_barrier);
}

Test(gsync, concurrent_waiters_share_rounds)
{
    struct gsync g;
    gsync_init(&g);
    struct slow_sync s = {.mu = PTHREAD_MUTEX_INITIALIZER, .g = &g, .waiters = 12};
    struct gs_arg a[12];
    run_waiters(&g, &s, a, 12);
    for (int i = 0; i < 12; i++) {
        cr_assert_eq(a[i].rc, 0);
        /* a waiter returns only after a round that began after it arrived */
        cr_assert_gt(a[i].calls_after, a[i].calls_before, "waiter %d returned before a round", i);
    }
    /* the first waiter leads a round for its own ticket; the 11 others all take
     * theirs while it runs, so one more round covers them all */
    cr_assert_eq(s.calls, 2, "%d rounds for 12 waiters", s.calls);
    cr_assert_eq((int)g.rounds, s.calls);
    gsync_destroy(&g);
}

Test(gsync, a_failed_round_fails_its_waiters_and_every_later_one)
{
    struct gsync g;
    gsync_init(&g);
    struct slow_sync s = {.mu = PTHREAD_MUTEX_INITIALIZER, .g = &g, .waiters = 6, .fail = 1};
    struct gs_arg a[6];
    run_waiters(&g, &s, a, 6);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(a[i].rc, -1, "waiter %d", i);
    /* final: a later call fails without running fn again, even if it would work */
    s.fail = 0;
    int calls = s.calls;
    struct err e = {0};
    cr_assert_eq(gsync_wait(&g, slow_fn, &s, &e), -1);
    cr_assert_eq(e.code, ERR_IO);
    cr_assert_eq(s.calls, calls);
    gsync_destroy(&g);
}

/* ---- group commit through storage ---- */

static int
put_manifest_round(struct storage_handle *h, int worker, int round)
{
    char seed[32], tag[32];
    snprintf(seed, sizeof(seed), "w%d-r%d", worker, round);
    snprintf(tag, sizeof(tag), "t%d-%d", worker, round);
    char *m = tu_manifest(h, "gc/repo", seed, NULL);
    const char *tags[1] = {tag};
    struct err e = {0};
    int rc = storage_manifest_put(h, "gc/repo", m, strlen(m), MT_OCI_MANIFEST, NULL, tags, 1,
                                  NULL, NULL, NULL, &e);
    free(m);
    return rc;
}

static int
tag_cb(void *arg, const char *name)
{
    (void)name;
    (*(int *)arg)++;
    return 0;
}

Test(group_commit, concurrent_manifest_puts_share_wal_fsyncs_and_survive_reopen)
{
    struct tu_store t;
    tu_open(&t, 1);
    enum { W = 8, R = 12 };
    unsigned long c0 = __atomic_load_n(&t.st->meta->durable_commits, __ATOMIC_RELAXED);
    unsigned long r0 = t.st->meta->walsync.rounds;
    tu_run_workers(t.st, W, put_manifest_round, R);
    unsigned long commits = __atomic_load_n(&t.st->meta->durable_commits, __ATOMIC_RELAXED) - c0;
    unsigned long rounds = t.st->meta->walsync.rounds - r0;
    /* each round: 2 blob puts + 1 manifest put, all durable */
    cr_assert_eq(commits, (unsigned long)W * R * 3, "durable commits %lu", commits);
    cr_assert_gt(rounds, 0);
    cr_assert_leq(rounds, commits, "more WAL fsyncs (%lu) than commits (%lu)", rounds, commits);

    /* a restart finds every tag */
    tu_reopen_with(&t, (struct storage_opts){.fsync = 1});
    int n = 0, more = 0;
    struct err e = {0};
    cr_assert_eq(storage_tags_list(t.h, "gc/repo", NULL, 100000, tag_cb, &n, &more, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(n, W * R);
    tu_close(&t);
}

Test(group_commit, a_failed_wal_fsync_refuses_writes_until_restart)
{
    struct tu_store t;
    tu_open(&t, 1);
    struct digest before = tu_manifest_put(t.h, "poison/repo", "keep", "before", NULL);

    storage_fault_inject(t.st, FAULT_WALSYNC, EIO, 1);
    struct err e = {0};
    struct digest d;
    cr_assert_eq(storage_blob_put(t.h, "poison/repo", "x", 1, DIGEST_SHA256, &d, &e), -1,
                 "the commit whose WAL fsync fails is not acknowledged");
    cr_assert_eq(e.code, ERR_IO, "%s", e.msg);
    /* the fault fired once; the next durable write fails all the same */
    e = (struct err){0};
    cr_assert_eq(storage_blob_put(t.h, "poison/repo", "y", 1, DIGEST_SHA256, &d, &e), -1,
                 "a durable write after a failed WAL fsync must fail");
    cr_assert_eq(e.code, ERR_IO, "%s", e.msg);

    /* reads go on */
    struct manifest_meta meta;
    int fd = -1;
    cr_assert_eq(tu_manifest_get_fd(t.h, "poison/repo", "keep", &meta, &fd, &e), 0, "%s",
                 e.msg);
    cr_assert(digest_equal(&meta.digest, &before));
    close(fd);

    /* a restart clears it */
    tu_reopen_with(&t, (struct storage_opts){.fsync = 1});
    tu_manifest_put(t.h, "poison/repo", "after", "after", NULL);
    cr_assert_eq(tu_manifest_get_fd(t.h, "poison/repo", "keep", &meta, &fd, &e), 0, "%s",
                 e.msg);
    close(fd);
    tu_close(&t);
}

/* ---- the checkpointer ---- */

static off_t
wal_size(const char *root)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/meta.db-wal", root);
    struct stat sb;
    return stat(p, &sb) == 0 ? sb.st_size : 0;
}

Test(checkpoint, the_wal_stays_bounded_and_is_emptied_at_close)
{
    struct tu_store t;
    if (getenv("CKPT_DEBUG"))
        log_setup(LOG_DEBUG, 0, 2);
    tu_open(&t, 0);
    /* about 10 pages of WAL per manifest put (blob, link, manifest, refs, tag
     * rows and their indexes): 3000 of them make ~100 MB without checkpoints */
    off_t max = 0;
    for (int i = 0; i < 3000; i++) {
        char seed[32], tag[32];
        snprintf(seed, sizeof(seed), "c%d", i);
        snprintf(tag, sizeof(tag), "t%d", i);
        tu_manifest_put(t.h, "ckpt/repo", tag, seed, NULL);
        off_t w = wal_size(t.root);
        if (w > max)
            max = w;
    }
    /* a checkpoint every CKPT_PAGES (1000) pages lets the WAL restart; allow
     * several times that for a checkpointer that is late on a busy machine */
    cr_assert_lt(max, (off_t)8 * CKPT_PAGES * 4200, "WAL grew to %lld bytes",
                 (long long)max);
    tu_close_only(&t);
    cr_assert_eq(wal_size(t.root), 0, "the WAL is truncated at close");

    /* everything is in meta.db itself: plain sqlite, no WAL */
    char db[128];
    snprintf(db, sizeof(db), "%s/meta.db", t.root);
    sqlite3 *s = NULL;
    cr_assert_eq(sqlite3_open_v2(db, &s, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    cr_assert_eq(sqlite3_prepare_v2(s, "SELECT count(*) FROM tags WHERE repo = 'ckpt/repo'", -1,
                                    &q, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(q, 0), 3000);
    sqlite3_finalize(q);
    sqlite3_close(s);
    tu_rm_rf(t.root);
}

/* ---- manifest files: bodies pending until a syncfs, restored after a crash ---- */

static int64_t
pending_max(struct storage_handle *h)
{
    sqlite3_stmt *s = metadb_q(h->mc, Q_PENDING_MAX);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return v;
}

Test(manifest_files, pending_bodies_are_synced_and_dropped)
{
    struct tu_store t;
    tu_open(&t, 1);
    unsigned long s0 = __atomic_load_n(&t.st->pending_syncs, __ATOMIC_RELAXED);
    for (int i = 0; i < 5; i++) {
        char seed[16];
        snprintf(seed, sizeof(seed), "p%d", i);
        tu_manifest_put(t.h, "pend/repo", seed, seed, NULL);
    }
    cr_assert_gt(pending_max(t.h), 0, "the bodies are pending right after the PUTs");
    /* the checkpointer syncs them PENDING_SYNC_MS later (60 s: a guard only) */
    for (int i = 0; i < 6000 && pending_max(t.h) != 0; i++)
        ms_sleep(10);
    cr_assert_eq(pending_max(t.h), 0, "pending rows are dropped after the syncfs");
    unsigned long rounds = __atomic_load_n(&t.st->pending_syncs, __ATOMIC_RELAXED) - s0;
    cr_assert(rounds >= 1 && rounds <= 5, "%lu syncfs rounds for 5 PUTs", rounds);
    tu_close(&t);
}

/* the child: push two manifests, then tear one file and remove the other the
 * way a power cut before their syncfs could, and die without closing */
static void
crash_child(const char *root, const char *b1, const char *b2)
{
    struct storage_opts o = {.root = root, .fsync = 1};
    struct err e = {0};
    struct storage *st = storage_open(&o, &e);
    struct storage_handle *h = st ? storage_handle_open(st, &e) : NULL;
    if (!h)
        _exit(2);
    const char *bodies[2] = {b1, b2};
    const char *tags[2] = {"torn", "gone"};
    for (int i = 0; i < 2; i++) {
        struct manifest_meta meta;
        if (storage_manifest_put(h, "crash/repo", bodies[i], strlen(bodies[i]), MT_OCI_MANIFEST,
                                 NULL, &tags[i], 1, &meta, NULL, NULL, &e) < 0)
            _exit(3);
        char rel[BLOB_RELPATH_MAX], path[512];
        blob_relpath(&meta.digest, rel);
        snprintf(path, sizeof(path), "%s/blobs/%s", root, rel);
        if (i == 0) {
            int fd = open(path, O_WRONLY);
            char zero[64] = {0};
            if (fd < 0 || pwrite(fd, zero, sizeof(zero), 0) != (ssize_t)sizeof(zero))
                _exit(4);
            close(fd);
        } else if (unlink(path) != 0) {
            _exit(5);
        }
    }
    _exit(0);
}

static char *
read_manifest(struct storage_handle *h, const char *tag)
{
    struct manifest_meta meta;
    int fd = -1;
    struct err e = {0};
    cr_assert_eq(tu_manifest_get_fd(h, "crash/repo", tag, &meta, &fd, &e), 0, "%s: %s", tag,
                 e.msg);
    char *buf = calloc(1, meta.size + 1);
    cr_assert_eq(pread(fd, buf, meta.size, 0), (ssize_t)meta.size);
    close(fd);
    return buf;
}

Test(manifest_files, a_crash_before_the_sync_is_repaired_from_the_pending_bodies)
{
    struct tu_store t;
    tu_open(&t, 1);
    /* the referenced blobs, durable, then closed */
    char *b1 = tu_manifest(t.h, "crash/repo", "one", NULL);
    char *b2 = tu_manifest(t.h, "crash/repo", "two", NULL);
    tu_close_only(&t);

    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        crash_child(t.root, b1, b2);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);

    /* the restart rewrites both files from the bodies kept in the database */
    tu_open_at(&t, 1);
    char *g1 = read_manifest(t.h, "torn");
    char *g2 = read_manifest(t.h, "gone");
    cr_assert_str_eq(g1, b1);
    cr_assert_str_eq(g2, b2);
    cr_assert_eq(pending_max(t.h), 0, "recovery drops the rows it restored");
    free(g1);
    free(g2);
    free(b1);
    free(b2);
    tu_close(&t);
}
