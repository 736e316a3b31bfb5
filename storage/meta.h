/* meta.h - the metadata interface: every row the registry keeps (repositories,
 * blob links, manifests with their references, tags, referrers, upload session
 * rows, pending manifest files) is read and written through these domain
 * operations, never through SQL outside the implementation. sqlite (metadb.c,
 * with its group commit in gsync.c and checkpointer in ckpt.c) is the first
 * implementation; a PostgreSQL one provides the same functions. No type of an
 * implementation appears here.
 *
 * Objects:
 *   struct meta       the store's metadata, one per struct storage (thread-safe)
 *   struct meta_conn  one thread's connection; never used by two threads at once
 *
 * Transactions are explicit: meta_begin (durable: its meta_commit returns once
 * the commit survives a power loss) or meta_begin_light (its loss is harmless:
 * upload session rows, recovery; a later durable commit covers it). One write
 * transaction at a time in the process: begin waits for the previous one to end.
 * Operations marked "txn" run only inside one; the others also run outside (a
 * read sees the last committed state, maybe not yet durable: a read that
 * acknowledges a state calls meta_durable_point first).
 *
 * Errors: ERR_DB (ERR_NOSPACE when the database's disk is full), ERR_IO after a
 * failed durability flush (final: durable writes are then refused until a
 * restart), ERR_NOMEM. Lookups answer 1 (found) / 0 (not found) / -1.
 *
 * Strings given to callbacks are valid only during the call; a callback must
 * not use the same connection. Digests are passed as their "algo:hex" text
 * (what storage.c formats from a parsed struct digest). Hot-path reads
 * (meta_blob_size, meta_manifest_get, meta_tags_page) allocate nothing. */
#ifndef OCIREG_STORAGE_META_H
#define OCIREG_STORAGE_META_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "storage/storage.h"

struct meta;
struct meta_conn;
struct fault;

struct meta_opts {
    const char *root; /* the database lives under it (sqlite: <root>/meta.db) */
    int fsync;        /* 0: no durability flushes at all (tests, caches) */
    struct fault *fault; /* FAULT_DB at commit, FAULT_WALSYNC at the flush */
};

/* meta_open - open (create, migrate) the metadata. NULL with ERR_DB / ERR_CONFIG
 * (a schema newer than this program). */
struct meta *meta_open(const struct meta_opts *o, struct err *e);
/* meta_start - start background work (sqlite: the checkpointer). sync_files is
 * called from that thread every PENDING_SYNC_MS while manifest files are
 * pending (meta_files_pending), and once more by meta_close. */
int meta_start(struct meta *m, int (*sync_files)(void *arg, struct err *e), void *arg,
               struct err *e);
/* meta_close - stop background work (a last sync_files), close. Every
 * connection must be closed before, except that sync_files may still use its
 * own until meta_close returns. NULL is fine. */
void meta_close(struct meta *m);
/* meta_files_pending - a durable commit added pending manifest files: have
 * sync_files run soon */
void meta_files_pending(struct meta *m);

struct meta_conn *meta_conn_open(struct meta *m, struct err *e);
/* meta_conn_close - rolls back an open transaction first. NULL is fine. */
void meta_conn_close(struct meta_conn *c);

/* ---- transactions ---- */
int meta_begin(struct meta_conn *c, struct err *e);
int meta_begin_light(struct meta_conn *c, struct err *e);
/* meta_commit - on failure the transaction is rolled back */
int meta_commit(struct meta_conn *c, struct err *e);
/* meta_rollback - no-op outside a transaction */
void meta_rollback(struct meta_conn *c);
/* meta_durable_point - wait until everything committed so far is durable */
int meta_durable_point(struct meta_conn *c, struct err *e);

/* ---- repositories and blobs ---- */

/* meta_repo_exists - the repository has a blob link or a manifest */
int meta_repo_exists(struct meta_conn *c, const char *repo, struct err *e);
/* meta_blob_size - repo links blob ds: 1 with *size (the blob row's) */
int meta_blob_size(struct meta_conn *c, const char *repo, const char *ds, uint64_t *size,
                   struct err *e);
/* meta_link_exists - repo links ds; repo NULL: any repository does */
int meta_link_exists(struct meta_conn *c, const char *repo, const char *ds, struct err *e);
/* meta_blob_link (txn) - the blob row (size ignored when one exists), the
 * repository and the link; nothing happens for what exists already */
int meta_blob_link(struct meta_conn *c, const char *repo, const char *ds, uint64_t size,
                   struct err *e);
/* meta_blob_unlink (txn) - remove repo's link to ds (1, or 0 when there was
 * none); the repository stops existing when nothing of it is left */
int meta_blob_unlink(struct meta_conn *c, const char *repo, const char *ds, struct err *e);
/* meta_blob_forget (txn) - the blob row and every link of ds (its file is gone
 * or is being deleted), and the repositories this leaves empty */
int meta_blob_forget(struct meta_conn *c, const char *ds, struct err *e);
/* meta_repos_prune_all - in its own light transaction: remove every
 * repository without links or manifests (rows of older versions). Returns how
 * many, or -1. */
int meta_repos_prune_all(struct meta_conn *c, struct err *e);

/* ---- manifests and tags ---- */

/* what meta_manifest_put records; refs already de-duplicated */
struct meta_manifest {
    const char *repo;
    const char *digest;       /* "algo:hex" of the body */
    const char *media_type;
    uint64_t size;
    const char *subject;      /* "algo:hex" or NULL */
    const char *artifact_type; /* "" when none */
    const char *annotations;  /* kept (for referrers) only with a subject; NULL */
    const struct manifest_ref *refs;
    size_t nrefs;
    const char *const *tags;
    size_t ntags;
    /* the body, recorded as a pending manifest file in the same transaction
     * (NULL: the file is durable already) */
    const void *pending_body;
};

/* meta_manifest_exists - repo has manifest ds */
int meta_manifest_exists(struct meta_conn *c, const char *repo, const char *ds, struct err *e);
/* meta_manifest_get - by digest (ds) or, ds NULL, by tag: 1 with *m filled */
int meta_manifest_get(struct meta_conn *c, const char *repo, const char *ds, const char *tag,
                      struct manifest_meta *m, struct err *e);
/* meta_manifest_put (txn) - blob row of the body, repository, manifest row
 * (updated when it exists), annotations, references, tags, pending file */
int meta_manifest_put(struct meta_conn *c, const struct meta_manifest *mf, struct err *e);
/* meta_manifest_delete (txn) - the manifest ds of repo, its annotations,
 * references and every tag naming it; prunes the repository. 1, or 0 when
 * there was no such manifest. */
int meta_manifest_delete(struct meta_conn *c, const char *repo, const char *ds, struct err *e);
/* meta_tag_delete (txn) - 1, or 0 when there was no such tag */
int meta_tag_delete(struct meta_conn *c, const char *repo, const char *tag, struct err *e);

/* ---- last-pulled times of tags (retention's keep_within) ---- */

struct meta_pull {
    const char *repo, *tag;
    int64_t at; /* seconds since the epoch */
};
/* meta_tags_pulled_set (txn) - record that each tag p[i] was pulled at
 * p[i].at: a time later than the recorded one replaces it, a tag that no
 * longer exists is skipped. Returns how many tags changed, or -1. */
long meta_tags_pulled_set(struct meta_conn *c, const struct meta_pull *p, size_t n,
                          struct err *e);
/* meta_tag_times - 1 with *pushed (when the tag was last set) and *pulled (its
 * last recorded pull, 0: never), 0 when there is no such tag, or -1 */
int meta_tag_times(struct meta_conn *c, const char *repo, const char *tag, int64_t *pushed,
                   int64_t *pulled, struct err *e);

/* ---- lists: keyset pages (after `last`, at most n; n < 0 all) ----
 * *more = 1 when rows follow the n-th; *count the rows given to fn. fn
 * returning non-zero ends the page early (*more 0). */
typedef int (*meta_name_fn)(void *arg, const char *name);
int meta_tags_page(struct meta_conn *c, const char *repo, const char *last, long n,
                   meta_name_fn fn, void *arg, int *more, long *count, struct err *e);
int meta_catalog_page(struct meta_conn *c, const char *last, long n, meta_name_fn fn, void *arg,
                      int *more, long *count, struct err *e);
/* referrers of subject (ds text) in repo, by digest after last ("" = from the
 * start), artifact_type filter when not NULL */
typedef int (*meta_referrer_fn)(void *arg, const struct referrer *r);
int meta_referrers_page(struct meta_conn *c, const char *repo, const char *subject,
                        const char *artifact_type, const char *last, long n, meta_referrer_fn fn,
                        void *arg, int *more, struct err *e);

/* ---- upload session rows ---- */

int meta_upload_insert(struct meta_conn *c, const char *uuid, const char *repo,
                       enum digest_algo algo, struct err *e); /* txn */
/* meta_upload_get - 1 with repo (NAME_MAX_LEN + 1 bytes) and *algo */
int meta_upload_get(struct meta_conn *c, const char *uuid, char *repo, enum digest_algo *algo,
                    struct err *e);
/* meta_upload_delete (txn) - 1 with its repo copied (NAME_MAX_LEN + 1), 0 none */
int meta_upload_delete(struct meta_conn *c, const char *uuid, char *repo, struct err *e);
/* meta_uploads_each - every session row (uuid, repo); created_before > 0:
 * only those created before that time (seconds since the epoch) */
int meta_uploads_each(struct meta_conn *c, int64_t created_before,
                      int (*fn)(void *arg, const char *uuid, const char *repo), void *arg,
                      struct err *e);

/* ---- pending manifest files (storage.c "manifest files") ---- */

/* meta_pending_each - every pending body, in order of id */
int meta_pending_each(struct meta_conn *c,
                      int (*fn)(void *arg, int64_t id, const char *ds, const void *body,
                                size_t len),
                      void *arg, struct err *e);
/* meta_pending_max - the highest pending id (0: none). One indexed read. */
int meta_pending_max(struct meta_conn *c, int64_t *max, struct err *e);
/* meta_pending_drop (txn) - the rows up to id max */
int meta_pending_drop(struct meta_conn *c, int64_t max, struct err *e);

/* ---- annotations left unfilled by schema v3 (storage_open) ---- */
int meta_annotations_unfilled(struct meta_conn *c,
                              int (*fn)(void *arg, int64_t id, const char *ds, uint64_t size),
                              void *arg, struct err *e);
/* meta_annotations_set (txn) - ann NULL: the manifest has none */
int meta_annotations_set(struct meta_conn *c, int64_t id, const char *ann, struct err *e);

/* ---- for gc (mark and sweep; a deleter runs inside one durable transaction
 * and removes the file before commit, see docs/storage.md) ---- */

/* meta_blobs_unreferenced - blobs created before `before` that no repository
 * links and no manifest is stored as: (ds, size) */
int meta_blobs_unreferenced(struct meta_conn *c, int64_t before,
                            int (*fn)(void *arg, const char *ds, uint64_t size), void *arg,
                            struct err *e);
/* meta_links_unreferenced - blob links created before `before` that no
 * manifest of their repository references: (repo, ds) */
int meta_links_unreferenced(struct meta_conn *c, int64_t before,
                            int (*fn)(void *arg, const char *repo, const char *ds), void *arg,
                            struct err *e);
/* meta_blob_delete (txn) - the blob row of ds when nothing links it and no
 * manifest is stored as it: 1 deleted, 0 kept (referenced again) */
int meta_blob_delete(struct meta_conn *c, const char *ds, struct err *e);

/* ---- gc's review queue (gc/gc.c, docs/gc.md) ----
 * Every operation that can orphan something queues a candidate in its own
 * transaction: meta_blob_link (the link: it may never be referenced),
 * meta_blob_unlink and meta_blob_forget (the blob), meta_manifest_put (a new
 * manifest: it may stay untagged; a moved tag: the manifest it named),
 * meta_manifest_delete (its body's blob, its blob links and child manifests in
 * its repository, the manifests naming it as subject, the repository when it
 * was the last one), meta_tag_delete (the manifest). One row per candidate
 * (repeats coalesce); a row is removed only by the transaction that settled
 * it (meta_gc_dequeue). */

enum meta_gc_kind {
    META_GC_BLOB = 0,     /* repo "": a blob row (and its file) */
    META_GC_LINK = 1,     /* a blob link of repo */
    META_GC_MANIFEST = 2, /* a manifest of repo (collected with delete_untagged) */
    META_GC_REPO = 3,     /* digest "": every link and manifest of repo */
    META_GC_RETAINED = 4  /* a manifest of repo whose tag retention removed:
                             collected when nothing else needs it */
};

/* meta_gc_full_needed - 1 when the next pass must review everything (a store
 * from before the queue), 0, or -1 */
int meta_gc_full_needed(struct meta_conn *c, struct err *e);
/* meta_gc_fill (txn) - queue every thing of `kind` (META_GC_LINK: every link,
 * META_GC_MANIFEST: every manifest, META_GC_BLOB: every blob row, and then
 * full_needed is cleared); the other kinds do nothing */
int meta_gc_fill(struct meta_conn *c, enum meta_gc_kind kind, struct err *e);
/* meta_gc_queue_page - up to n queued candidates of kind after (repo, ds)
 * (both "" = from the start), in key order: fn(repo, ds) for each. Returns how
 * many were given, or -1. Sees the open transaction of c, if any. */
int meta_gc_queue_page(struct meta_conn *c, enum meta_gc_kind kind, const char *repo,
                       const char *ds, long n,
                       int (*fn)(void *arg, const char *repo, const char *ds), void *arg,
                       struct err *e);
/* meta_gc_queue_count - rows queued (all kinds): *n */
int meta_gc_queue_count(struct meta_conn *c, int64_t *n, struct err *e);
/* meta_gc_enqueue / meta_gc_dequeue (txn) - add / remove one candidate */
int meta_gc_enqueue(struct meta_conn *c, enum meta_gc_kind kind, const char *repo,
                    const char *ds, struct err *e);
int meta_gc_dequeue(struct meta_conn *c, enum meta_gc_kind kind, const char *repo,
                    const char *ds, struct err *e);
/* meta_gc_repo_expand (txn) - queue every link and manifest of repo */
int meta_gc_repo_expand(struct meta_conn *c, const char *repo, struct err *e);
/* meta_gc_link_delete (txn) - remove repo's link to ds when it was created
 * before `before` and no manifest of repo references ds: 1 removed, 0 kept */
int meta_gc_link_delete(struct meta_conn *c, const char *repo, const char *ds, int64_t before,
                        struct err *e);
/* meta_gc_manifest_delete (txn) - delete manifest ds of repo (as
 * meta_manifest_delete) when no tag names it, no manifest of repo references
 * it (a kept index), it has no subject or its subject is not a manifest of
 * repo, and it was created before `before`: 1 deleted, 0 kept. retained: its
 * child manifests and referrers are queued as META_GC_RETAINED first. */
int meta_gc_manifest_delete(struct meta_conn *c, const char *repo, const char *ds,
                            int64_t before, int retained, struct err *e);
/* meta_gc_created - the creation time of a candidate (META_GC_BLOB: the blob
 * row, META_GC_LINK: the link, META_GC_MANIFEST / _RETAINED: the manifest):
 * 1 with *created, 0 when it does not exist */
int meta_gc_created(struct meta_conn *c, enum meta_gc_kind kind, const char *repo,
                    const char *ds, int64_t *created, struct err *e);
/* meta_gc_blob_delete (txn) - delete the blob row of ds when it was created
 * before `before`, nothing links it and no manifest is stored as it: 1 with
 * *size (and its pending manifest file row, if any, goes too: recovery must
 * not write back a file no row names), 0 kept (or no such row) */
int meta_gc_blob_delete(struct meta_conn *c, const char *ds, int64_t before, uint64_t *size,
                        struct err *e);
/* meta_gc_tag_delete (txn) - remove tag of repo if it still names ds (a push
 * may have moved it since it was read) and queue ds as META_GC_RETAINED: 1, 0
 * when it names something else or is gone */
int meta_gc_tag_delete(struct meta_conn *c, const char *repo, const char *tag, const char *ds,
                       struct err *e);
/* meta_tags_for_retention - every tag of repo: fn(tag, digest, pushed,
 * pulled) with pushed the last time the tag was set and pulled the last
 * manifest GET by the tag (0: never or not tracked); fn non-zero stops */
int meta_tags_for_retention(struct meta_conn *c, const char *repo,
                            int (*fn)(void *arg, const char *tag, const char *ds, int64_t pushed,
                                      int64_t pulled),
                            void *arg, struct err *e);
/* meta_commit_hold - meta_commit (durable: returns once the commit survives a
 * power loss) that keeps the write lock: no other write transaction begins
 * until meta_release. For gc: the blob rows are gone, durably, before their
 * files are removed, and no writer can add a row back in between. On failure
 * the transaction is rolled back and the lock given back. */
int meta_commit_hold(struct meta_conn *c, struct err *e);
/* meta_release - give back the lock kept by meta_commit_hold */
void meta_release(struct meta_conn *c);

/* ---- for ocireg check (gc/check.c) ----
 * Read-only listings in bounded memory (keyset pages, or one pass of a
 * statement feeding a callback), and the one repair no operation above makes
 * (meta_check_refs_drop). Nothing here is on a request's path. */

/* meta_check_blobs_page - blob rows whose digest text sorts after `last` (""
 * = from the start), in that order, at most n (n < 0: all): fn(ds, size).
 * *more = 1 when rows follow the n-th; fn returning non-zero ends the page
 * (*more 0). The digest text is given as stored (it may not parse). */
int meta_check_blobs_page(struct meta_conn *c, const char *last, long n,
                          int (*fn)(void *arg, const char *ds, uint64_t size), void *arg,
                          int *more, struct err *e);
/* meta_check_blob_row - 1 with *size when ds has a blob row, 0 when not */
int meta_check_blob_row(struct meta_conn *c, const char *ds, uint64_t *size, struct err *e);
/* meta_check_users - the manifests stored as ds (kind -1) and those that
 * reference ds (kind: its enum ref_kind): fn(repo, manifest digest, kind) */
int meta_check_users(struct meta_conn *c, const char *ds,
                     int (*fn)(void *arg, const char *repo, const char *mds, int kind),
                     void *arg, struct err *e);

/* rows that name a row that is not there (what meta_check_dangling lists) */
enum meta_dangling_kind {
    META_DANGLING_LINK,         /* link of repo to `digest` without a blob row */
    META_DANGLING_BODY,         /* manifest repo@digest without its body's blob row */
    META_DANGLING_BODY_SIZE,    /* manifest repo@digest of size a, its body's row b */
    META_DANGLING_REF_BLOB,     /* manifest repo@digest references blob `ref`, which
                                   repo does not link */
    META_DANGLING_REF_MANIFEST, /* ... child manifest `ref`, which repo lacks */
    META_DANGLING_REF_ORPHAN,   /* reference rows of repo@digest without the
                                   manifest row */
    META_DANGLING_TAG,          /* tag `ref` of repo names `digest`, which repo lacks */
};
struct meta_dangling {
    enum meta_dangling_kind kind;
    const char *repo, *digest;
    const char *ref; /* the reference or tag; "" when the kind has none */
    uint64_t a, b;
};
/* meta_check_dangling - every such row, kind by kind (one anti-join over the
 * indexes each); fn returning non-zero stops the listing (0 is returned) */
int meta_check_dangling(struct meta_conn *c,
                        int (*fn)(void *arg, const struct meta_dangling *d), void *arg,
                        struct err *e);

struct meta_check_counts {
    uint64_t blobs, links, manifests, tags;
    uint64_t absent_subjects; /* manifests whose subject is not in their
                                 repository (the spec allows it) */
};
/* meta_check_counts - rows of each kind */
int meta_check_counts(struct meta_conn *c, struct meta_check_counts *out, struct err *e);

/* meta_check_integrity - the database's own check (sqlite: PRAGMA
 * quick_check): fn(message) for each problem it names; none: it is sound */
int meta_check_integrity(struct meta_conn *c, int (*fn)(void *arg, const char *msg), void *arg,
                         struct err *e);

/* meta_check_refs_drop (txn) - the reference rows of repo@ds when no manifest
 * row holds them (META_DANGLING_REF_ORPHAN): 1 dropped, 0 none */
int meta_check_refs_drop(struct meta_conn *c, const char *repo, const char *ds, struct err *e);

/* ---- figures for metrics (storage_stats) ---- */

struct meta_stats {
    uint64_t repos, blobs, blob_bytes, manifests, tags;
};
/* meta_stats - rows counted (a scan of each table: the caller caches the
 * answer, see storage_stats): 0, or -1 with ERR_DB */
int meta_stats(struct meta_conn *c, struct meta_stats *out, struct err *e);

/* waiters covered by one group fsync of the WAL: the bucket bounds of
 * meta_sync_stats' histogram (1, 2, 4, ... 128; then +Inf) */
#define META_GROUP_BUCKETS 8
struct meta_sync_stats {
    uint64_t fsyncs;          /* durability flushes run (group rounds) */
    uint64_t durable_commits; /* commits that waited for one */
    uint64_t waiters;         /* waits they answered (commits and durable points) */
    uint64_t group[META_GROUP_BUCKETS + 1]; /* rounds by waiters covered: bucket i
                                               holds (2^(i-1), 2^i], the last the rest */
};
/* meta_sync_stats - the group commit's counters so far (thread-safe) */
void meta_sync_stats(struct meta *m, struct meta_sync_stats *out);
/* meta_failed - 1 once a durability flush failed (durable writes are refused
 * until a restart, see gsync.c), else 0. Thread-safe, lock-free. */
int meta_failed(struct meta *m);

#endif
