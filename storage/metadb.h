/* metadb.h - the sqlite implementation of meta.h: what metadb.c, gsync.c,
 * ckpt.c (and the white-box unit tests) share. Nothing else in storage/
 * includes it: storage.c and upload.c see only meta.h. */
#ifndef OCIREG_STORAGE_METADB_H
#define OCIREG_STORAGE_METADB_H

#include <pthread.h>
#include <stdint.h>

#include "storage/meta.h"
#include "storage/storage_internal.h"

struct sqlite3;
struct sqlite3_stmt;

/* ---- gsync.c ---- */
struct gsync {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t asked;  /* tickets taken */
    uint64_t done;   /* every ticket up to this is durable */
    int running;     /* a leader is in fn */
    int failed;      /* a round failed: final (see gsync.c) */
    unsigned long rounds; /* fn calls (tests read it) */
    uint64_t waiters;     /* tickets answered by successful rounds */
    /* successful rounds by tickets covered (meta.h META_GROUP_BUCKETS) */
    uint64_t group[META_GROUP_BUCKETS + 1];
};
void gsync_init(struct gsync *g);
void gsync_destroy(struct gsync *g);
/* gsync_wait - return once fn has run to completion after this call began (run
 * by this thread or another one's); 0, or -1 with ERR_IO when that run, or any
 * earlier one, failed. fn(arg) runs with no lock held. */
int gsync_wait(struct gsync *g, int (*fn)(void *arg, struct err *e), void *arg, struct err *e);

/* ---- ckpt.c ---- */
struct ckpt;
/* ckpt_start - the thread that checkpoints meta.db's WAL (worker connections do
 * not: they run synchronous=OFF, see metadb.c) and runs sync_files for pending
 * manifest files. NULL with e on failure. */
struct ckpt *ckpt_start(struct meta *m, int (*sync_files)(void *arg, struct err *e), void *arg,
                        struct err *e);
/* ckpt_poke - the WAL has grown to `pages` pages (called after commits) */
void ckpt_poke(struct ckpt *k, int pages);
/* ckpt_poke_files - manifest files are pending */
void ckpt_poke_files(struct ckpt *k);
/* ckpt_stop - final pending sync and checkpoint (TRUNCATE), join, free. NULL is
 * fine. */
void ckpt_stop(struct ckpt *k);
/* WAL pages after which the checkpointer runs (sqlite's own default) */
#define CKPT_PAGES 1000

/* ---- metadb.c ---- */

enum stmt_id {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_BLOB_STAT,
    Q_BLOB_INSERT,
    Q_REPO_INSERT,
    Q_LINK_INSERT,
    Q_LINK_DELETE,
    Q_LINK_EXISTS,
    Q_LINK_ANY,
    Q_UP_INSERT,
    Q_UP_GET,
    Q_UP_DELETE,
    Q_BLOB_FORGET,
    Q_LINKS_FORGET,
    Q_UP_EXPIRED,
    Q_MF_EXISTS,
    Q_MF_GET_DIGEST,
    Q_MF_GET_TAG,
    Q_MF_INSERT,
    Q_MF_DELETE,
    Q_ANN_PUT,
    Q_ANN_DELETE,
    Q_REF_INSERT,
    Q_REF_DELETE,
    Q_TAG_UPSERT,
    Q_TAG_DELETE,
    Q_TAG_DELETE_DIGEST,
    Q_TAG_PULLED_SET,
    Q_TAG_TIMES,
    Q_TAGS_LIST,
    Q_REPO_EXISTS,
    Q_CATALOG,
    Q_REPO_PRUNE,
    Q_REPO_PRUNE_DIGEST,
    Q_REFERRERS_PAGE,
    Q_REFERRERS_AT_PAGE,
    Q_PENDING_ADD,
    Q_PENDING_MAX,
    Q_PENDING_DONE,
    Q_PENDING_ALL,
    Q_GC_FULL_NEEDED,
    Q_GC_PAGE,
    Q_GC_COUNT,
    Q_GC_ENQUEUE,
    Q_GC_DEQUEUE,
    Q_GC_LINK_DELETE,
    Q_GC_MF_COLLECTABLE,
    Q_GC_BLOB_DELETE,
    Q_GC_PENDING_DELETE,
    Q_GC_LINK_CREATED,
    Q_GC_MF_CREATED,
    Q_GC_BLOB_CREATED,
    Q_GC_RETAIN_CASCADE,
    Q_GC_TAG_DELETE,
    Q_TAGS_RETENTION,
    Q__COUNT
};

struct meta {
    char *dbpath;
    int fsync;
    struct fault *fault;
    /* write transactions: one at a time in this process, queued on this mutex
     * instead of sqlite's sleeping busy handler; taken by meta_begin*, given
     * back by meta_commit / meta_rollback */
    pthread_mutex_t wmu;
    struct gsync walsync; /* durable commits share WAL fsyncs */
    /* the one connection every write transaction runs on (under wmu), so its
     * page cache stays warm: a cache is dropped whenever another connection
     * wrote, and with a connection per worker that was every commit */
    struct meta_conn *wh;
    int walfd; /* meta.db-wal, opened by the first group fsync; -1 before */
    unsigned long durable_commits; /* commits that waited for walsync (atomic) */
    struct ckpt *ckpt;
};

struct meta_conn {
    struct meta *m;
    struct sqlite3 *db;
    struct sqlite3_stmt *q[Q__COUNT];
    int in_txn;  /* holds m->wmu and an open transaction */
    int durable; /* the open transaction waits for the WAL fsync at commit */
    int held;    /* holds m->wmu after meta_commit_hold, until meta_release */
};

#define METADB_SCHEMA_VERSION 6
/* "unix-excl": the process holds an exclusive lock on meta.db (one process per
 * root anyway, see the flock in storage_open) and the WAL index lives in heap
 * memory shared by the process's connections, so a read transaction takes no
 * fcntl() lock round trip (2 syscalls per query with the default VFS). */
#define METADB_VFS "unix-excl"

/* metadb_connect - open a connection with the pragmas (WAL, busy_timeout,
 * foreign keys off) and synchronous FULL when `full`, else OFF (worker
 * connections: their durability is meta_commit's group WAL fsync). */
int metadb_connect(const char *path, int full, struct sqlite3 **out, struct err *e);
/* metadb_q - a reset, cleared statement of the connection c's statements run
 * on now (the write connection inside a transaction) */
struct sqlite3_stmt *metadb_q(struct meta_conn *c, enum stmt_id id);

/* ---- sqlmem.c ---- */
/* sqlmem_install - make sqlite allocate through sqlmem.c (once per process,
 * before sqlite initialises; later it is a no-op). 1 when installed. */
int sqlmem_install(void);

#endif
