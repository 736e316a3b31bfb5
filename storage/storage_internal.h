/* storage_internal.h - what the storage .c files share and nobody else sees.
 *
 * Files:
 *   grammar.c   name/tag matchers               digest.c   digest text, EVP hashing
 *   range.c     Content-Range / Range parsing     manifest.c manifest_parse (jansson)
 *   blob.h      the blob backend interface; blob_fs.c its filesystem backend
 *               (paths, data-file I/O, fsync, rename)
 *   util.c      fault injection, upload ids
 *   meta.h      the metadata interface (domain operations, transactions); its
 *               sqlite implementation, the only SQL: metadb.c (+ metadb.h),
 *               gsync.c (group commit), ckpt.c (checkpointer), sqlmem.c
 *   upload.c    upload sessions (state machine documented there)
 *   storage.c   storage_open/close and recovery, blobs, manifests, tags, catalog, referrers
 *   gcstore.c   gc's steps (storage.h "garbage collection steps") and the marks of
 *               blobs being installed
 *   pulls.c     last-pulled times of tags: per-handle tables, their flush */
#ifndef OCIREG_STORAGE_INTERNAL_H
#define OCIREG_STORAGE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "storage/storage.h"

#define STORAGE_DEFAULT_MAX_MANIFEST (4u * 1024 * 1024)
#define UPLOAD_BUCKETS 256
/* "sha512/ab/" + 128 hex + NUL */
#define BLOB_RELPATH_MAX (7 + 3 + 128 + 1)

/* ---- util.c, upload.c ---- */

struct fault {
    pthread_mutex_t mu;
    int armed; /* read without the lock as a fast path (atomic) */
    unsigned ops;
    int err_no;
    int count;
    void (*fsync_hook)(void *arg); /* storage_fsync_hook (atomic) */
    void *fsync_hook_arg;
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
    struct blob_writer *w; /* the session's bytes, open while leased, else NULL */
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
    /* upload_piece_write's own (the piece's thread): a piece failed, and why */
    int pc_failed;
    struct err pc_err;
};

/* storage_pending_sync - one sync of the blob backend for every pending
 * manifest file, then their rows go (storage.c); run by the metadata's
 * background thread (meta_start). Nothing pending: only one indexed read. -1
 * leaves the rows for the next call. */
int storage_pending_sync(struct storage_handle *h, struct err *e);
/* how often pending manifest files are synced */
#define PENDING_SYNC_MS 100

struct storage {
    char *root;
    int rootfd, lockfd;
    struct blob_backend *blobs;
    int fsync;
    uint64_t max_manifest;
    int upload_expiry_sec;
    uint64_t max_blob_size; /* 0 = unlimited */
    unsigned max_uploads, max_uploads_per_repo, max_manifest_refs;
    pthread_mutex_t mu; /* guards the upload table and the session counts */
    struct upload *uploads[UPLOAD_BUCKETS];
    /* open sessions (rows in uploads), in all and per repository: taken before a
     * session's file and row are created, given back when its row is deleted */
    unsigned nsessions;
    struct upload_count *counts[UPLOAD_BUCKETS];
    struct fault fault;
    struct meta *meta;
    /* the handle the metadata's background thread syncs pending manifest
     * files with (storage_pending_sync) */
    struct storage_handle *synch;
    unsigned long pending_syncs; /* syncfs rounds for pending manifest files
                                    (atomic; tests read it) */
    /* blobs a commit is installing right now (under mu): from before the
     * bytes go into the backend until the rows' transaction ended. gc keeps
     * such a blob's file (gcstore.c): the committer then finds it and adds
     * its row back */
    struct installing *inst;
    size_t ninst, capinst;
    void (*gc_hook)(void *arg, enum storage_gc_point pt); /* storage_gc_hook */
    void *gc_hook_arg;
    /* pulls.c: on with track_pulls; the list of tables and the callback
     * under pulls_mu */
    int track_pulls;
    pthread_mutex_t pulls_mu;
    struct pull_table *pulls;
    void (*pulls_full)(void *arg);
    void *pulls_full_arg;
    /* storage_stats: its own connection and the cached row counts, under
     * stats_mu */
    pthread_mutex_t stats_mu;
    struct meta_conn *stats_mc;
    struct meta_stats *stats;  /* NULL before the first count */
    int64_t stats_at_ms;       /* CLOCK_MONOTONIC of that count */
};

struct meta_stats;
struct installing {
    struct digest d;
    unsigned n; /* commits of d in flight */
};

/* storage_install_mark / _unmark - a commit installs blob d (gcstore.c);
 * mark returns 0 or -1 with ERR_NOMEM */
int storage_install_mark(struct storage *st, const struct digest *d, struct err *e);
void storage_install_unmark(struct storage *st, const struct digest *d);

/* one thread's view of the store: its metadata connection */
struct storage_handle {
    struct storage *st;
    struct meta_conn *mc;
    int gc_dry; /* a dry gc pass holds a transaction open (gcstore.c) */
    struct pull_table *pulls; /* pulls.c: its table, NULL before its first pull */
};

/* ---- pulls.c ---- */
struct pull_table;
/* pulls_note - tag of repo was pulled now through h (no allocation after the
 * handle's first call, no I/O) */
void pulls_note(struct storage_handle *h, const char *repo, const char *tag);
/* pulls_detach - h closes: its table's notes wait for the next flush, and
 * the table may serve another handle */
void pulls_detach(struct storage_handle *h);
/* pulls_free_all - free every table (storage_close) */
void pulls_free_all(struct storage *st);

/* fault_hit - 1 when an injected fault for `op` fires now (errno set to the
 * configured value), else 0. */
int fault_hit(struct fault *f, unsigned op);
/* fault_fsync_hook - run the test hook of storage_fsync_hook, if one is set
 * (f may be NULL); the blob backend calls it before a blob data fsync */
void fault_fsync_hook(struct fault *f);

/* storage_blob_present - blob d is stored with `size` bytes (UINT64_MAX: any
 * size): 1, 0, or -1 with ERR_IO (storage.c) */
int storage_blob_present(struct storage *st, const struct digest *d, uint64_t size, struct err *e);

/* blob_relpath - "sha256/ab/<hex>", a blob's path under <root>/blobs in the
 * filesystem backend, into buf (BLOB_RELPATH_MAX). Only ever built from a
 * parsed digest. */
void blob_relpath(const struct digest *d, char *buf);
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
