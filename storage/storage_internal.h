/* storage_internal.h - what the storage .c files share and nobody else sees.
 *
 * Files:
 *   grammar.c   name/tag matchers               digest.c   digest text, EVP hashing
 *   range.c     Content-Range / Range parsing     manifest.c manifest_parse (jansson)
 *   blobstore.c paths, data-file I/O, fsync, rename, fault injection
 *   metadb.c    sqlite schema, migrations, per-handle prepared statements, transactions
 *   gsync.c     group sync: one fsync shared by every thread waiting for one
 *   ckpt.c      the WAL checkpointer thread
 *   sqlmem.c    sqlite's allocator: per-thread free lists (Debian's build has
 *               no lookaside)
 *   upload.c    upload sessions (state machine documented there)
 *   storage.c   storage_open/close and recovery, blobs, manifests, tags, catalog, referrers */
#ifndef OCIREG_STORAGE_INTERNAL_H
#define OCIREG_STORAGE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "storage/storage.h"

struct sqlite3;
struct sqlite3_stmt;

#define STORAGE_DEFAULT_MAX_MANIFEST (4u * 1024 * 1024)
#define UPLOAD_BUCKETS 256
/* "sha512/ab/" + 128 hex + NUL */
#define BLOB_RELPATH_MAX (7 + 3 + 128 + 1)

/* ---- blobstore.c ---- */

struct fault {
    pthread_mutex_t mu;
    int armed; /* read without the lock as a fast path (atomic) */
    unsigned ops;
    int err_no;
    int count;
};

/* An in-memory upload session (see upload.c for the state machine). Lives in the
 * table of struct storage; `leased` and table membership change under st->mu. */
struct upload {
    struct upload *next; /* hash chain */
    struct storage *st;
    struct storage_handle *h; /* lease holder's handle, NULL when not leased */
    char uuid[UPLOAD_ID_LEN + 1];
    char repo[NAME_MAX_LEN + 1];
    enum digest_algo algo;
    struct hasher *hash; /* NULL while a placeholder is being rebuilt */
    uint64_t offset;     /* atomically accessed: status reads it unleased */
    int leased;
    int fd;            /* open while leased, else -1 */
    int64_t last_used; /* time of start/acquire/release (atomic) */
    /* INSTALLED (see upload.c): the data is the blob installed_digest, only the
     * rows are missing; set by the lease holder */
    int installed;
    struct digest installed_digest;
    /* asynchronous writes (upload_write_begin/end, see upload.c); lease holder only */
    uint64_t wr_next;     /* next offset to reserve while wr_inflight > 0 */
    unsigned wr_inflight; /* begun, not yet ended */
    int wr_failed;        /* a write failed: destroyed when the last one ends */
    struct err wr_err;
    uint64_t wb_start;    /* early writeback started for [0, wb_start) */
};

/* ---- gsync.c ---- */
struct gsync {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t asked;  /* tickets taken */
    uint64_t done;   /* every ticket up to this is durable */
    int running;     /* a leader is in fn */
    int failed;      /* a round failed: final (see gsync.c) */
    unsigned long rounds; /* fn calls (tests read it) */
};
void gsync_init(struct gsync *g);
void gsync_destroy(struct gsync *g);
/* gsync_wait - return once fn has run to completion after this call began (run
 * by this thread or another one's); 0, or -1 with ERR_IO when that run, or any
 * earlier one, failed. fn(arg) runs with no lock held. */
int gsync_wait(struct gsync *g, int (*fn)(void *arg, struct err *e), void *arg, struct err *e);

/* ---- sqlmem.c ---- */
/* sqlmem_install - make sqlite allocate through sqlmem.c (once per process,
 * before sqlite initialises; later it is a no-op). 1 when installed. */
int sqlmem_install(void);

/* ---- ckpt.c ---- */
struct ckpt;
/* ckpt_start - the thread that checkpoints meta.db's WAL (worker connections do
 * not: they run synchronous=OFF, see metadb.c). NULL with e on failure. */
struct ckpt *ckpt_start(struct storage *st, struct err *e);
/* ckpt_poke - the WAL has grown to `pages` pages (called after commits) */
void ckpt_poke(struct ckpt *k, int pages);
/* ckpt_poke_files - manifest files are pending (see storage.c "manifest files") */
void ckpt_poke_files(struct ckpt *k);
/* storage_pending_sync - one syncfs for every pending manifest file, then their
 * rows go (storage.c); run by the checkpointer thread. Nothing pending: only
 * one indexed read. -1 leaves the rows for the next call. */
int storage_pending_sync(struct storage_handle *h, struct err *e);
/* how often pending manifest files are synced */
#define PENDING_SYNC_MS 100
/* ckpt_stop - final pending sync and checkpoint (TRUNCATE), join, free. NULL is
 * fine. */
void ckpt_stop(struct ckpt *k);
/* WAL pages after which the checkpointer runs (sqlite's own default) */
#define CKPT_PAGES 1000

struct storage {
    char *root;
    int rootfd, blobsfd, uploadsfd, lockfd;
    int fsync;
    uint64_t max_manifest;
    int upload_expiry_sec;
    uint64_t max_blob_size; /* 0 = unlimited */
    unsigned max_uploads, max_uploads_per_repo, max_manifest_refs;
    char *dbpath;
    pthread_mutex_t mu; /* guards the upload table and the session counts */
    struct upload *uploads[UPLOAD_BUCKETS];
    /* open sessions (rows in uploads), in all and per repository: taken before a
     * session's file and row are created, given back when its row is deleted */
    unsigned nsessions;
    struct upload_count *counts[UPLOAD_BUCKETS];
    unsigned long dir_fsyncs; /* directory fsyncs done (atomic; tests read it) */
    struct fault fault;
    void (*fsync_hook)(void *arg); /* storage_fsync_hook (atomic) */
    void *fsync_hook_arg;
    /* write transactions: one at a time in this process, queued on this mutex
     * instead of sqlite's sleeping busy handler; taken by metadb_begin*, given
     * back by metadb_commit / metadb_rollback */
    pthread_mutex_t wmu;
    struct gsync walsync; /* durable commits share WAL fsyncs (metadb.c) */
    /* the one connection every write transaction runs on (under wmu), so its
     * page cache stays warm: a cache is dropped whenever another connection
     * wrote, and with a connection per worker that was every commit */
    struct storage_handle *wh;
    int walfd; /* meta.db-wal, opened by the first group fsync; -1 before */
    unsigned long pending_syncs; /* syncfs rounds for pending manifest files
                                    (atomic; tests read it) */
    unsigned long durable_commits; /* commits that waited for walsync (atomic) */
    struct ckpt *ckpt;
};

/* fault_hit - 1 when an injected fault for `op` fires now (errno set to the
 * configured value), else 0. */
int fault_hit(struct storage *st, unsigned op);

/* blob_relpath - "sha256/ab/<hex>" relative to st->blobsfd into buf
 * (BLOB_RELPATH_MAX). Only ever built from a parsed digest. */
void blob_relpath(const struct digest *d, char *buf);
/* blob_dirpath - "sha256/ab" */
void blob_dirpath(const struct digest *d, char *buf, size_t bufsz);

/* blobstore_write_all - the one write path for data files: pwrite n bytes at off
 * (looping on short writes), subject to FAULT_WRITE. 0 or -1 with ERR_IO/NOSPACE. */
int blobstore_write_all(struct storage *st, int fd, const void *data, size_t n, uint64_t off,
                        struct err *e);
/* blobstore_fsync - fsync(fd) when st->fsync, subject to FAULT_FSYNC. */
int blobstore_fsync(struct storage *st, int fd, struct err *e);
/* blobstore_fsync_dir - open the directory relative to dirfd, fsync, close
 * (counted in st->dir_fsyncs). */
int blobstore_fsync_dir(struct storage *st, int dirfd, const char *rel, struct err *e);
/* blobstore_install - rename (fromdir, from) to the blob's final path, then fsync
 * the blob's directory. If the final file already exists with the same size it is
 * kept (immutable, identical content) and `from` is unlinked instead; the
 * directory is fsync'd on that path too (another thread may have renamed it a
 * moment ago and not yet made the entry durable). */
int blobstore_install(struct storage *st, int fromdir, const char *from, const struct digest *d,
                      uint64_t size, struct err *e);
/* blobstore_exists - 1 when the blob file exists with `size` bytes (size
 * UINT64_MAX: any size), 0 when not, -1 with ERR_IO on other errors. */
int blobstore_exists(struct storage *st, const struct digest *d, uint64_t size, struct err *e);
enum blob_put_mode {
    BLOB_PUT_DURABLE, /* fsync, rename (or keep an existing copy), directory fsync */
    BLOB_PUT_LAZY,    /* no fsync at all: the caller keeps the bytes elsewhere
                         (pending_manifest_files) until a syncfs covered them */
    BLOB_PUT_REPLACE  /* durable, and over whatever file is there (recovery) */
};
/* blobstore_put_buffer_mode - blobstore_put_buffer with a mode */
int blobstore_put_buffer_mode(struct storage *st, const struct digest *d, const void *data,
                              size_t n, enum blob_put_mode mode, struct err *e);
/* blobstore_put_buffer - write a buffer as blob d (tmp file under uploads/, fsync,
 * install). No-op when it already exists. */
int blobstore_put_buffer(struct storage *st, const struct digest *d, const void *data, size_t n,
                         struct err *e);
/* blobstore_hash_fd - hash the whole file; *size gets its length. */
int blobstore_hash_fd(int fd, enum digest_algo algo, struct digest *out, uint64_t *size,
                      struct hasher **keep, struct err *e);
/* uuid_generate / uuid_valid - random (v4) lower-case uuid text. */
int uuid_generate(char out[UPLOAD_ID_LEN + 1], struct err *e);
int uuid_valid(const char *s);

/* ---- manifest.c ---- */
/* manifest_annotations_of - the compact JSON text of the body's top-level
 * "annotations" (what manifest_parse puts in annotations_json); *out NULL when
 * there are none. *out is malloc'd, owned by the caller. Within the same JSON
 * limits as manifest_parse (ERR_MANIFEST_INVALID). Only the v4 migration reads
 * stored bodies with it (storage_open). */
int manifest_annotations_of(const char *body, size_t len, char **out, struct err *e);

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
    Q_UP_COUNTS,
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
    Q__COUNT
};

struct storage_handle {
    struct storage *st;
    struct sqlite3 *db;
    struct sqlite3_stmt *q[Q__COUNT];
    int in_txn;  /* holds st->wmu and an open transaction */
    int durable; /* the open transaction waits for the WAL fsync at commit */
};

#define METADB_SCHEMA_VERSION 4
/* "unix-excl": the process holds an exclusive lock on meta.db (one process per
 * root anyway, see the flock in storage_open) and the WAL index lives in heap
 * memory shared by the process's connections, so a read transaction takes no
 * fcntl() lock round trip (2 syscalls per query with the default VFS). */
#define METADB_VFS "unix-excl"

/* metadb_connect - open a connection with the pragmas (WAL, busy_timeout,
 * foreign keys off) and synchronous FULL when `full`, else OFF (worker handles:
 * their durability is metadb_commit's group WAL fsync). */
int metadb_connect(const char *path, int full, struct sqlite3 **out, struct err *e);
/* metadb_migrate - bring the schema to METADB_SCHEMA_VERSION (ERR_CONFIG when the
 * database is newer than this program). */
int metadb_migrate(struct sqlite3 *db, struct err *e);
/* metadb_prepare - prepare every statement of the handle. */
int metadb_prepare(struct storage_handle *h, struct err *e);
void metadb_finalize(struct storage_handle *h);

/* q - a reset, cleared statement ready for binding */
struct sqlite3_stmt *metadb_q(struct storage_handle *h, enum stmt_id id);
/* metadb_exec_done - step a non-SELECT statement to completion and reset. */
int metadb_run(struct storage_handle *h, struct sqlite3_stmt *s, struct err *e);
/* metadb_err - set ERR_DB from the connection's message. Returns -1. */
int metadb_err(struct storage_handle *h, const char *what, struct err *e);
/* metadb_begin - take st->wmu, BEGIN IMMEDIATE of a durable transaction: its
 * metadb_commit returns once the WAL holding it is fsync'd. ERR_IO after a
 * failed WAL fsync (the store refuses acknowledged writes until a restart). */
int metadb_begin(struct storage_handle *h, struct err *e);
/* metadb_begin_light - the same for a transaction whose loss on power failure is
 * harmless (upload session rows, recovery): its commit does not wait; the next
 * durable commit's fsync covers it (the WAL is written in order). */
int metadb_begin_light(struct storage_handle *h, struct err *e);
/* metadb_commit - COMMIT, give st->wmu back, then (durable) wait for the group
 * WAL fsync. Subject to FAULT_DB (then rolls back). */
int metadb_commit(struct storage_handle *h, struct err *e);
/* metadb_rollback - ROLLBACK and give st->wmu back; no-op outside a transaction */
void metadb_rollback(struct storage_handle *h);
/* metadb_changes - rows changed by the last statement of h's transaction (or of
 * h outside one) */
int metadb_changes(struct storage_handle *h);
/* metadb_durable_point - wait until everything committed so far is durable (a
 * read that acknowledges a state, e.g. a mount of an already linked blob). */
int metadb_durable_point(struct storage_handle *h, struct err *e);
/* metadb_repo_prune - inside a write transaction that removed a link or a
 * manifest of repo: remove repo's row when nothing of it is left */
int metadb_repo_prune(struct storage_handle *h, const char *repo, struct err *e);
/* metadb_repos_prune_all - remove the row of every repository without links or
 * manifests (storage_open). Returns how many, or -1. */
int metadb_repos_prune_all(struct storage_handle *h, struct err *e);
/* bind helpers (SQLITE_STATIC: the caller keeps the text alive until reset) */
void metadb_bind_text(struct sqlite3_stmt *s, int i, const char *t);
void metadb_bind_int64(struct sqlite3_stmt *s, int i, int64_t v);

/* ---- upload.c ---- */
/* per-repository count of open sessions (hash chain under st->mu) */
struct upload_count {
    struct upload_count *next;
    unsigned n;
    char repo[NAME_MAX_LEN + 1];
};
/* upload_table_free - free every in-memory session and count (storage_close). */
void upload_table_free(struct storage *st);
/* upload_counts_load - count the session rows (storage_open, after recovery). */
int upload_counts_load(struct storage_handle *h, struct err *e);

#endif
