/* storage.h - the public interface of the storage module: grammar checks, digests,
 * the content-addressable blob store, upload sessions, manifests and the sqlite3
 * metadata. Nothing above this header (server, auth, gc, tools) touches files
 * under the root or the database directly: bytes are behind a blob backend
 * (storage/blob.h; the filesystem one today, S3 later) and rows behind the
 * metadata interface (storage/meta.h; sqlite today, PostgreSQL later). No file
 * descriptor crosses this header except a reader's or an upload writer's
 * zero-copy offer.
 *
 * Threads: one `struct storage` per process (thread-safe, shared). Each worker
 * thread opens its own `struct storage_handle` (its sqlite connection and prepared
 * statements); a handle is never used by two threads at once.
 *
 * Layout under the root:
 *   blobs/sha256/<2 hex>/<hex>, blobs/sha512/<2 hex>/<hex>   immutable blob files
 *   uploads/<uuid>                                            in-progress uploads
 *   meta.db                                                   sqlite3, WAL
 *
 * Crash safety: a blob becomes visible only after data written, digest verified,
 * fsync, rename into blobs/, directory fsync, then its metadata row committed.
 * Never a row without its file; a file without a row is garbage for gc. With
 * fsync on, every acknowledged commit (blob, manifest, tag/manifest/blob delete,
 * mount) is durable when the call returns (sqlite synchronous=FULL); upload
 * session rows are not (a power loss may forget a session).
 *
 * Errors: every function takes `struct err *e` last; the codes it sets are the
 * spec's (ERR_BLOB_UNKNOWN, ...) or ERR_IO / ERR_NOSPACE / ERR_DB. */
#ifndef OCIREG_STORAGE_H
#define OCIREG_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* ---- grammar ------------------------------------------------------------ */

#define NAME_MAX_LEN 255    /* whole repository name, spec recommends <= 255 */
#define TAG_MAX_LEN 128

/* name_validate - repository name against the spec's path-component grammar
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 * and NAME_MAX_LEN. Returns 0, or -1 with ERR_NAME_INVALID. */
int name_validate(const char *name, size_t len, struct err *e);

/* tag_validate - [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. Returns 0, or -1 with
 * ERR_MANIFEST_INVALID ("invalid tag"). */
int tag_validate(const char *tag, size_t len, struct err *e);

/* ---- digests ------------------------------------------------------------ */

enum digest_algo { DIGEST_SHA256 = 0, DIGEST_SHA512 = 1 };

#define DIGEST_STR_MAX (7 + 128 + 1) /* "sha512:" + 128 hex + NUL */

struct digest {
    enum digest_algo algo;
    unsigned char len;   /* hex length: 64 or 128 */
    char hex[129];       /* lower-case hex, NUL-terminated */
};

/* digest_parse - "sha256:<64 lower hex>" or "sha512:<128 lower hex>". Returns 0,
 * or -1 with ERR_DIGEST_INVALID (bad form) / ERR_UNSUPPORTED (unknown algorithm
 * of valid form, e.g. "blake3:..."). */
int digest_parse(const char *s, size_t len, struct digest *out, struct err *e);

/* digest_algo_parse - "sha256"/"sha512" -> algo; -1 with ERR_UNSUPPORTED. */
int digest_algo_parse(const char *s, size_t len, enum digest_algo *out, struct err *e);

/* digest_format - writes "algo:hex" into out (DIGEST_STR_MAX bytes); returns out. */
char *digest_format(const struct digest *d, char *out);

/* digest_equal - 1 if same algorithm and hex. */
int digest_equal(const struct digest *a, const struct digest *b);

/* hashing of a byte stream (OpenSSL EVP). */
struct hasher;
struct hasher *hasher_new(enum digest_algo algo);  /* NULL only on OOM */
void hasher_update(struct hasher *h, const void *data, size_t n);
void hasher_final(struct hasher *h, struct digest *out); /* h may be updated no more */
void hasher_free(struct hasher *h);
/* digest_of - one-shot digest of a buffer */
void digest_of(enum digest_algo algo, const void *data, size_t n, struct digest *out);

/* ---- Content-Range / Range ------------------------------------------------- */

/* range_parse_content - PATCH's "Content-Range: <start>-<end>" (the spec form, no
 * unit) and also "bytes <start>-<end>/<total|*>". Returns 0 with inclusive start
 * and end, or -1 with ERR_RANGE_INVALID. */
int range_parse_content(const char *s, size_t len, uint64_t *start, uint64_t *end,
                        struct err *e);

/* range_parse_request - GET's "Range: bytes=a-b", "bytes=a-", "bytes=-n" against a
 * body of `size` bytes. Returns 1 with [*start, *end] inclusive when satisfiable,
 * 0 when the header should be ignored (multi-range, other unit), -1 with
 * ERR_RANGE_NOT_SATISFIABLE when out of range. */
int range_parse_request(const char *s, size_t len, uint64_t size, uint64_t *start,
                        uint64_t *end, struct err *e);

/* ---- manifests ------------------------------------------------------------- */

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

/* REF_FOREIGN: a layer with a non-distributable media type or `urls` (image-spec
 * "non-distributable layers"); recorded, but need not exist in the registry. */
enum ref_kind { REF_BLOB = 0, REF_MANIFEST = 1, REF_FOREIGN = 2 };

struct manifest_ref {
    struct digest digest;
    enum ref_kind kind;    /* config/layers/blobs are blobs; index entries manifests */
    uint64_t size;
};

/* What the registry needs to know about a manifest; produced by manifest_parse.
 * All strings are owned by the struct. */
struct manifest_info {
    char media_type[256];     /* effective: mediaType field, else Content-Type */
    char artifact_type[256];  /* artifactType, else config.mediaType for OCI image
                                 manifests (distribution-spec referrers rule); "" if
                                 none (indexes without one, Docker types) */
    int has_subject;
    struct digest subject;
    char *annotations_json;   /* compact JSON object text or NULL; malloc'd */
    size_t nrefs;
    struct manifest_ref *refs; /* malloc'd array */
};

/* The JSON shape a manifest body may have: jansson spends 40-250 bytes of heap
 * per value, so a 4 MiB body of tiny values ("[],[],...") would cost ~185 MiB.
 * manifest_parse scans the bytes first (no allocation) and refuses a body with
 * more values (objects, arrays, strings, numbers, true/false/null; object keys
 * are not counted) or deeper nesting with ERR_MANIFEST_INVALID, before building
 * anything. An index of 10,000 descriptors, each with a platform and a few
 * annotations, holds ~100,000 values and nests 4 deep. */
#define MANIFEST_MAX_JSON_VALUES 150000u
#define MANIFEST_MAX_JSON_DEPTH 64u

/* manifest_parse - validate a manifest body: JSON object, schemaVersion 2, a known
 * media type (the body's mediaType must agree with content_type when both are
 * given; content_type may be NULL), descriptors well-formed (digest grammar, size
 * >= 0), config and layers present for image manifests, manifests[] for indexes.
 * At most MANIFEST_MAX_JSON_VALUES values nested MANIFEST_MAX_JSON_DEPTH deep
 * (ERR_MANIFEST_INVALID naming the limit). Parses are admitted against a
 * process-wide budget of estimated heap (a large one may wait for others to
 * finish), and freed heap is given back to the system after a large one.
 * Returns 0 with *out filled (free with manifest_info_release), or -1 with
 * ERR_MANIFEST_INVALID / ERR_DIGEST_INVALID / ERR_UNSUPPORTED (unknown media type). */
int manifest_parse(const char *body, size_t len, const char *content_type,
                   struct manifest_info *out, struct err *e);
void manifest_info_release(struct manifest_info *mi);

/* ---- the store --------------------------------------------------------------- */

struct storage;
struct storage_handle;
struct blob_backend;

struct storage_opts {
    const char *root;          /* created if missing */
    int fsync;                 /* 1 (default): fsync data and directories */
    uint64_t max_manifest;     /* bytes; manifests above are ERR_TOO_LARGE */
    int upload_expiry_sec;     /* idle upload sessions older than this are removed
                                  by storage_expire_uploads; 0 = never */
    /* 0 always means "the default" for the fields below. */
    uint64_t max_blob_size;    /* bytes an upload may reach; over it upload_write
                                  fails with ERR_TOO_LARGE. 0 = unlimited */
    unsigned max_uploads;      /* open upload sessions in all repositories;
                                  0 = STORAGE_DEFAULT_MAX_UPLOADS */
    unsigned max_uploads_per_repo; /* open sessions per repository;
                                      0 = STORAGE_DEFAULT_MAX_UPLOADS_PER_REPO */
    unsigned max_manifest_refs;    /* descriptors in one manifest (config, layers,
                                      manifests[], subject); over it
                                      ERR_MANIFEST_INVALID. 0 = default */
    int track_pulls;           /* 1: record when each tag is pulled (a manifest
                                  GET/HEAD by tag), for retention's keep_within
                                  (storage_pulls_flush writes them); 0: off, no
                                  cost */
    /* tests only: replaces the filesystem blob backend by what this returns
     * (tests/lib/blob_nofd.c wraps it into a backend offering no
     * descriptor); it owns fs from then on. NULL: the filesystem backend. */
    struct blob_backend *(*test_blobs)(struct blob_backend *fs, struct err *e);
};

#define STORAGE_DEFAULT_MAX_UPLOADS 10000u
#define STORAGE_DEFAULT_MAX_UPLOADS_PER_REPO 1000u
#define STORAGE_DEFAULT_MAX_MANIFEST_REFS 10000u

/* storage_open - create/open the root, the database (WAL, schema migration) and
 * recover: upload files without a session row are removed, session rows without
 * a file are dropped, stray temp files removed. Returns a new object owned by the
 * caller (storage_close), or NULL with ERR_IO / ERR_DB / ERR_CONFIG. */
struct storage *storage_open(const struct storage_opts *opts, struct err *e);
void storage_close(struct storage *st);

/* storage_handle_open - a per-thread handle. Owned by the caller. */
struct storage_handle *storage_handle_open(struct storage *st, struct err *e);
void storage_handle_close(struct storage_handle *h);

/* ---- health and figures (for /readyz and /metrics) ---- */

/* storage_healthy - whether the store takes writes now: no failed durability
 * flush of the metadata (after one, durable writes are refused until a
 * restart: storage/gsync.c), the root writable (not a read-only remount, not
 * a permission change), and the metadata answering a read through h (the
 * calling thread's handle). No allocation; two syscalls at most. Returns 1
 * when healthy, 0 with why in e (ERR_IO, ERR_DB). */
int storage_healthy(struct storage_handle *h, struct err *e);

/* the bounds of storage_stats' histogram of waiters per WAL fsync: 1, 2, 4
 * ... 128, then +Inf */
#define STORAGE_GROUP_BUCKETS 8
struct storage_stats {
    /* rows counted in the metadata, at most STORAGE_STATS_TTL_MS old */
    uint64_t repos, blobs, blob_bytes, manifests, tags;
    uint64_t uploads_open; /* upload sessions open now */
    /* group commit of the metadata (storage/gsync.c), exact */
    uint64_t fsyncs;          /* WAL fsync rounds */
    uint64_t durable_commits; /* commits that waited for one */
    uint64_t waiters;         /* waits the rounds answered (commits, durable points) */
    uint64_t group[STORAGE_GROUP_BUCKETS + 1]; /* rounds by waiters covered: bucket i
                                                  holds (2^(i-1), 2^i], the last more */
    int failed;               /* 1: a fsync failed, durable writes refused */
};
/* the row counts are a scan of the tables: kept this long, so a scrape storm
 * costs nothing */
#define STORAGE_STATS_TTL_MS 5000
/* storage_stats - the figures above into *out (thread-safe; a connection of
 * its own, opened at the first call, counts the rows when the cached counts
 * are older than STORAGE_STATS_TTL_MS). Returns 0, or -1 with ERR_DB /
 * ERR_NOMEM: *out is then filled with the last counts (0 before the first)
 * and the exact figures. */
int storage_stats(struct storage *st, struct storage_stats *out, struct err *e);

/* ---- the two interfaces under a handle, for the gc/ layer ----
 * gc/check.c works on rows and bytes through storage/meta.h and storage/blob.h
 * and keeps storage's order itself (a row goes in the transaction that moves
 * or removes its file). Both are borrowed: they live as long as h's store. */
struct meta_conn;
/* storage_handle_meta - h's metadata connection (same thread rules as h) */
struct meta_conn *storage_handle_meta(struct storage_handle *h);
/* storage_handle_blobs - the store's blob backend */
struct blob_backend *storage_handle_blobs(struct storage_handle *h);

/* Test hook (sqlite's habit): the next `count` write()/fsync() calls made by the
 * storage layer on data files (not the db) fail with `err_no` (ENOSPC, EIO).
 * count 0 disables. Thread-safe; meant for tests only. */
enum storage_fault_op {
    FAULT_WRITE = 1, FAULT_FSYNC = 2, FAULT_RENAME = 4, FAULT_DB = 8,
    FAULT_WALSYNC = 16 /* the group fsync of the metadata WAL */
};
void storage_fault_inject(struct storage *st, unsigned ops, int err_no, int count);
/* Test hook: fn(arg) runs on the calling thread before each fsync of blob data
 * (upload commits, storage_blob_put; also when fsync is off), so a test can hold
 * a commit mid-way on a barrier of its own. fn NULL clears it. */
void storage_fsync_hook(struct storage *st, void (*fn)(void *arg), void *arg);

/* ---- last-pulled times of tags (with track_pulls; storage/pulls.c) ----
 * A manifest GET or HEAD by tag that finds its manifest notes (repo, tag,
 * now) in a fixed in-memory table of the calling handle: no allocation, no
 * I/O. The notes reach the database (tags' pulled time) only through
 * storage_pulls_flush, which a periodic thread calls; a crash loses those
 * not flushed yet. */

/* storage_pulls_flush - write every handle's notes since the last flush in
 * one light transaction (a later time than the stored one wins; a tag deleted
 * meanwhile is skipped) on h (the calling thread's). Returns how many tags
 * changed (0 also when track_pulls is off), or -1 with ERR_DB / ERR_NOSPACE /
 * ERR_NOMEM: the notes taken out are then lost (they are hints, see pulls.c). */
long storage_pulls_flush(struct storage_handle *h, struct err *e);

/* storage_pulls_notify - fn(arg) is called when a handle's table is filling
 * up, so that a flush runs soon: from the request's thread, with a storage
 * lock held (fn must only signal, e.g. a condition variable, and never call
 * into storage). At most once per table between two flushes. fn NULL: no
 * callback (and, once this returns, fn is never called again). */
void storage_pulls_notify(struct storage *st, void (*fn)(void *arg), void *arg);

/* storage_tag_times - 1 with *pushed (when tag was last set) and *pulled (its
 * last flushed pull, 0: never), 0 when repo has no such tag, or -1 with
 * ERR_DB */
int storage_tag_times(struct storage_handle *h, const char *repo, const char *tag,
                      int64_t *pushed, int64_t *pulled, struct err *e);

/* ---- readers ----
 * The bytes of a blob or manifest body as the blob backend offers them. The
 * struct lives in the caller's memory (opening one allocates nothing on the
 * filesystem backend); its fields are the backend's, used only through the
 * functions below. */
struct blob_reader_ops;
struct blob_reader {
    const struct blob_reader_ops *ops; /* NULL: nothing open */
    uint64_t size;                     /* bytes of the blob */
    int fd;                            /* backend state */
    void *priv;                        /* backend state */
};

/* blob_reader_fd - the zero-copy offer: 0 with a local descriptor of the
 * bytes (which start at *off in it), handed over to the caller (who closes
 * it; blob_reader_close is still called), or -1 when the backend has none
 * (then read, or redirect). fd NULL only asks (nothing handed over). */
int blob_reader_fd(struct blob_reader *rd, int *fd, uint64_t *off);
/* blob_reader_read - up to n bytes at off into buf: bytes read (0 at the end),
 * or -1 with ERR_IO */
long blob_reader_read(struct blob_reader *rd, uint64_t off, void *buf, size_t n, struct err *e);
/* blob_reader_read_all - the whole blob (rd->size bytes) into buf; a blob
 * that ends early is ERR_IO */
int blob_reader_read_all(struct blob_reader *rd, void *buf, struct err *e);
/* blob_reader_redirect - a URL the client may fetch the bytes from (an object
 * store's presigned URL): 0, or -1 when the backend offers none */
int blob_reader_redirect(struct blob_reader *rd, char *url, size_t urlsz, struct err *e);
/* blob_reader_close - release what is left; a closed or zeroed reader is fine */
void blob_reader_close(struct blob_reader *rd);

/* ---- blobs ---- */

/* storage_blob_open - a blob linked to repo. On success *rd (when not NULL)
 * is an open reader the caller closes, and *size the blob's length.
 * ERR_BLOB_UNKNOWN when the blob is not linked to this repo (even if another
 * repo has it). rd may be NULL to only test existence (HEAD). Both forms look
 * at the stored blob (HEAD: one stat): when it is missing or has the wrong
 * size the blob is ERR_BLOB_UNKNOWN and its rows are deleted (in every repo)
 * so that a re-push heals it. */
int storage_blob_open(struct storage_handle *h, const char *repo, const struct digest *d,
                      struct blob_reader *rd, uint64_t *size, struct err *e);

/* storage_blob_delete - unlink the blob from repo (the file stays for gc).
 * ERR_BLOB_UNKNOWN if not linked. */
int storage_blob_delete(struct storage_handle *h, const char *repo, const struct digest *d,
                        struct err *e);

/* storage_blob_mount - link an existing blob into repo. `from` names the source
 * repository; NULL means any repository that has it (automatic mount). Returns 1
 * when mounted (or already linked), 0 when the blob is not available from there
 * (caller falls back to an upload session), -1 on error. A blob whose file is
 * missing is not mounted (0) and its rows are deleted. */
int storage_blob_mount(struct storage_handle *h, const char *repo, const char *from,
                       const struct digest *d, struct err *e);

/* storage_blob_put - store a whole small buffer as a blob linked to repo (used for
 * manifests and tests). Crash-safe like an upload. */
int storage_blob_put(struct storage_handle *h, const char *repo, const void *data, size_t n,
                     enum digest_algo algo, struct digest *out, struct err *e);

/* ---- uploads ----
 * States: (none) --start--> OPEN --append*--> OPEN --commit--> (blob) | --cancel--> (none).
 * A session is used by one request at a time: storage_upload_acquire takes a lease
 * (ERR_BUSY while another request holds it), upload_release gives it back. The
 * running hash lives in memory with the session; after a restart, or when the
 * in-memory state was dropped, acquire rebuilds it by re-reading the file. */
struct upload;

#define UPLOAD_ID_LEN 36     /* uuid text */

/* storage_upload_start - new session in repo. uuid_out gets UPLOAD_ID_LEN+1 bytes.
 * ERR_TOOMANYREQUESTS (429) when max_uploads sessions exist in all, or
 * max_uploads_per_repo in repo; a session counts until committed, cancelled,
 * destroyed or expired. */
int storage_upload_start(struct storage_handle *h, const char *repo, enum digest_algo algo,
                         char *uuid_out, struct err *e);

/* storage_upload_acquire - lease the session (repo must match). Returns the
 * session or NULL with ERR_BLOB_UPLOAD_UNKNOWN / ERR_BUSY / ERR_IO. */
struct upload *storage_upload_acquire(struct storage_handle *h, const char *repo,
                                      const char *uuid, struct err *e);

/* storage_upload_lease - storage_upload_acquire without its part of unbounded
 * length: a session that has no in-memory state (after a restart) comes back
 * leased but not rebuilt, upload_needs_rehash(u) = 1, and the caller must run
 * upload_rehash(u) (it reads and hashes the whole file: a blocking-work thread's
 * job) before any call on u but upload_release. Errors as acquire's. */
struct upload *storage_upload_lease(struct storage_handle *h, const char *repo,
                                    const char *uuid, struct err *e);
/* upload_needs_rehash - 1 when upload_rehash must run before u is used */
int upload_needs_rehash(const struct upload *u);
/* upload_rehash - rebuild the running hash and the offset from the file (no-op
 * when not needed); 0, or -1 with ERR_IO and u gone for the caller (the lease is
 * given back: the session stays, as after a failed acquire). Any thread. */
int upload_rehash(struct upload *u, struct err *e);
/* upload_handle_set - the lease moves to another thread: the calls on u that
 * touch the database (upload_commit, the destruction of a failed session) use
 * h, that thread's handle, from now on. */
void upload_handle_set(struct upload *u, struct storage_handle *h);

/* upload_offset - bytes received so far (the next expected offset). */
uint64_t upload_offset(const struct upload *u);

/* upload_write - append n bytes at the current offset (hashing them). On a write
 * error (ENOSPC, EIO) the session is destroyed at once (file removed, row deleted,
 * so the space is freed), the upload is released and -1 returned with
 * ERR_NOSPACE / ERR_IO; the caller must not touch u again. The same with
 * ERR_TOO_LARGE (413 SIZE_INVALID) when the upload would grow past
 * max_blob_size: nothing of the chunk is written and the session is destroyed. */
int upload_write(struct upload *u, const void *data, size_t n, struct err *e);

/* Asynchronous writes: the caller writes the bytes itself (the server queues
 * them on its io_uring) between a begin and an end, and may begin the next
 * chunk before the previous one ended (up to a few in flight). Only when the
 * session's blob writer offers a descriptor (upload_write_async); else the
 * caller uses upload_write.
 *
 * upload_write_async - 1 when the session offers asynchronous writes.
 *
 * upload_write_begin - checks as upload_write does (ERR_TOO_LARGE past
 * max_blob_size, ERR_BLOB_UPLOAD_INVALID on a finished session), hashes the n
 * bytes and reserves [*off, *off + n) of the file. On success *fd is the
 * writer's offered descriptor (still owned by u: it stays open until the lease ends)
 * and the caller must write the bytes there and call upload_write_end once.
 * On failure -1 with the code; the session is then doomed: destroyed at once
 * when no write is in flight (u gone for the caller), else by the
 * upload_write_end of the last write in flight.
 * upload_write_end - the write of [off, off + n) ended with res (bytes written,
 * or -errno). 0 when it and every earlier write succeeded. -1 when this or an
 * earlier write failed (ERR_NOSPACE for ENOSPC, ERR_IO) or a begin failed: the
 * session is destroyed (file removed, space freed) by the call that ends the
 * last write in flight; after that call u is gone for the caller. The fault
 * hook FAULT_WRITE fires here. upload_offset advances as writes end (never past
 * bytes not yet written). upload_release / upload_commit only with no write in
 * flight. */
int upload_write_async(const struct upload *u);
int upload_write_begin(struct upload *u, const void *data, size_t n, int *fd, uint64_t *off,
                       struct err *e);
int upload_write_end(struct upload *u, uint64_t off, size_t n, long res, struct err *e);

/* Pieces worked on another thread: the server hashes and writes a body's
 * pieces on its upload pool, one at a time and in order, while its worker goes
 * on receiving the next ones. Any blob backend (no descriptor needed).
 *
 * upload_piece_begin - on the thread that holds the lease, before a piece is
 * handed over: 0, or -1 with the code when the session takes no more bytes (an
 * earlier piece failed: its error; a finished session: ERR_BLOB_UPLOAD_INVALID,
 * and the session is doomed as by upload_write_begin).
 * upload_piece_write - on any thread, never two of one session at once, pieces
 * in the order begun: what upload_write does (max_blob_size check, append at
 * the offset, hash, early writeback) without the database and without
 * destroying anything. 0, or -1 when the piece failed (ERR_TOO_LARGE: nothing
 * of it written; ERR_NOSPACE / ERR_IO) or an earlier one had (nothing done);
 * the error is kept for upload_piece_end.
 * upload_piece_end - on the lease's thread, once per begun piece, in order,
 * after its upload_piece_write (and while no piece of the session is being
 * written): 0, or -1 with the first failure when this or an earlier piece
 * failed; the session is destroyed (space freed) by the end of the last piece
 * in flight, after which u is gone for the caller. upload_offset advances as
 * pieces are written. upload_release / upload_commit only with no piece in
 * flight. */
int upload_piece_begin(struct upload *u, struct err *e);
int upload_piece_write(struct upload *u, const void *data, size_t n);
int upload_piece_end(struct upload *u, struct err *e);

/* upload_size_limit - max_blob_size (0 = unlimited), for an early 413 on a
 * declared Content-Length. */
uint64_t upload_size_limit(const struct upload *u);

/* upload_commit - finish: verify the digest against `expected`, fsync, rename
 * into blobs/, fsync the directory, commit the rows (blob + link to repo), remove
 * the session. On success the lease is consumed (u is freed). On
 * ERR_DIGEST_INVALID / ERR_SIZE_INVALID the session is destroyed too (spec: a
 * failed finish invalidates it); on ERR_IO/ERR_NOSPACE while writing the file
 * likewise. A database error once the data is verified and installed (ERR_DB,
 * or ERR_NOSPACE from the database) keeps the session instead: it is released,
 * not destroyed, and a retried PUT with the same digest commits it (its bytes can
 * no longer be appended to: a write destroys it). In every case u is gone for the
 * caller after the call. `expected_size` < 0 means unknown. */
int upload_commit(struct upload *u, const struct digest *expected, int64_t expected_size,
                  struct err *e);

/* upload_release - give the lease back, keep the session. */
void upload_release(struct upload *u);

/* storage_upload_status - offset of a session without leasing it. */
int storage_upload_status(struct storage_handle *h, const char *repo, const char *uuid,
                          uint64_t *offset, struct err *e);

/* storage_upload_cancel - remove session and file. ERR_BLOB_UPLOAD_UNKNOWN. */
int storage_upload_cancel(struct storage_handle *h, const char *repo, const char *uuid,
                          struct err *e);

/* storage_expire_uploads - remove sessions idle for more than the configured
 * expiry (upload_expiry_sec; 0 = does nothing). Returns how many were removed, or
 * -1. May run on any thread with its own handle (a timer), concurrently with
 * requests: a session leased right now (being written, committed or rebuilt) or
 * being started is skipped. */
int storage_expire_uploads(struct storage_handle *h, struct err *e);

/* ---- manifests and tags ---- */

struct manifest_meta {
    struct digest digest;
    char media_type[256];
    uint64_t size;
};

#define PUT_MAX_TAGS 32

/* storage_manifest_put - validate (manifest_parse), check that every referenced
 * blob is linked to repo and every referenced child manifest exists in repo
 * (ERR_MANIFEST_BLOB_UNKNOWN), store the body as a blob, record the manifest row
 * (media type, size, subject, artifactType, annotations, references) and point
 * each of `tags` (ntags may be 0: a push by digest) at it. If `ref_digest` is not
 * NULL the body must hash to it (ERR_DIGEST_INVALID). Out: *meta, and
 * *has_subject / *subject for the OCI-Subject header (may be NULL).
 * More than max_manifest_refs descriptors (config + layers, or manifests[], plus
 * subject; repeats count) is ERR_MANIFEST_INVALID ("too many descriptors"). A
 * referenced blob whose file is missing is ERR_MANIFEST_BLOB_UNKNOWN. Any size of
 * annotations is accepted (it is the client's content); those of a manifest with
 * a subject are stored whole (at most the body's size, max_manifest) for the
 * referrers listing, which never reads a body. */
int storage_manifest_put(struct storage_handle *h, const char *repo, const char *body,
                         size_t len, const char *content_type, const struct digest *ref_digest,
                         const char *const *tags, size_t ntags, struct manifest_meta *meta,
                         int *has_subject, struct digest *subject, struct err *e);

/* storage_manifest_get - resolve ref (a tag, or a digest string) in repo. On
 * success *meta is filled and, when rd is not NULL, *rd is an open reader of
 * the body that the caller closes. ERR_MANIFEST_UNKNOWN (also for an unknown
 * repo, the spec allows NAME_UNKNOWN but clients expect this). */
int storage_manifest_get(struct storage_handle *h, const char *repo, const char *ref,
                         struct manifest_meta *meta, struct blob_reader *rd, struct err *e);

/* storage_manifest_delete - ref is a digest: remove the manifest from repo and
 * every tag pointing at it; ref is a tag: remove only the tag. ERR_MANIFEST_UNKNOWN. */
int storage_manifest_delete(struct storage_handle *h, const char *repo, const char *ref,
                            struct err *e);

/* iteration callback: return 0 to go on, non-zero to stop */
typedef int (*storage_name_fn)(void *arg, const char *name);

/* A repository exists while it has at least one blob link or manifest: it is
 * then listed by storage_catalog and storage_tags_list answers for it (an
 * empty list when nothing is tagged); once its last link and manifest are
 * deleted it is neither. */

/* storage_tags_list - tags of repo in lexical (byte) order, after `last` (NULL =
 * from the start), at most n (n < 0 = all). *more = 1 when further tags exist.
 * ERR_NAME_UNKNOWN when the repo does not exist (no blob link, no manifest). */
int storage_tags_list(struct storage_handle *h, const char *repo, const char *last, long n,
                      storage_name_fn fn, void *arg, int *more, struct err *e);

/* storage_catalog - names of the repositories that exist, in lexical order,
 * same paging as tags; a page reads only its own rows. */
int storage_catalog(struct storage_handle *h, const char *last, long n, storage_name_fn fn,
                    void *arg, int *more, struct err *e);

/* referrers: one descriptor per manifest of repo whose subject is `subject`. */
struct referrer {
    const char *media_type;
    const struct digest *digest;
    uint64_t size;
    const char *artifact_type;     /* "" if none */
    const char *annotations_json;  /* NULL if none; valid during the callback */
};
typedef int (*storage_referrer_fn)(void *arg, const struct referrer *r);

/* storage_referrers - call fn for each referrer (artifact_type filter when not
 * NULL), ordered by digest. An unknown subject yields none (not an error). */
int storage_referrers(struct storage_handle *h, const char *repo, const struct digest *subject,
                      const char *artifact_type, storage_referrer_fn fn, void *arg,
                      struct err *e);

/* storage_referrers_page - one page of the same list: the referrers whose
 * digest string sorts after *last (byte order; last NULL = from the start), at
 * most n of them (n < 0 = all), in digest order. *more (may be NULL) = 1 when
 * further referrers follow the n-th. A keyset query: the rows before `last`
 * are not read. fn returning non-zero ends the page early (*more is then
 * left 0: the caller knows it stopped). Everything listed comes from the
 * database (no manifest body is read). Errors: ERR_DB. */
int storage_referrers_page(struct storage_handle *h, const char *repo,
                           const struct digest *subject, const char *artifact_type,
                           const struct digest *last, long n, storage_referrer_fn fn, void *arg,
                           int *more, struct err *e);

/* ---- garbage collection steps ----
 * gc/gc.c drives a pass with these; the invariants live here (docs/gc.md,
 * docs/storage.md "Rule for gc"). Candidates come from the review queue that
 * the writes above fill in their own transactions. Every step re-checks its
 * condition inside its own write transaction, so a writer that references a
 * thing in its transaction either commits first (the thing is kept) or finds
 * it gone (a manifest PUT: ERR_MANIFEST_BLOB_UNKNOWN). A queue row goes only
 * in the transaction that settled it; a thing younger than `before` keeps its
 * row for a later pass. Blob rows are deleted and made durable before their
 * files are removed, with the write lock held until the files are gone, and a
 * blob being installed by a concurrent commit keeps its file: never a row
 * without its file, whatever crash. A reader that has the file open finishes.
 *
 * A dry run (storage_gc_begin with dry_run) runs every step inside one write
 * transaction that storage_gc_end rolls back and removes no file: the same
 * decisions and counts as a real pass, nothing changed (writers wait for it:
 * meant for a stopped store). */
enum storage_gc_kind { /* the queue's kinds (storage/meta.h enum meta_gc_kind) */
    STORAGE_GC_BLOB = 0,     /* a blob row and its file (repo "") */
    STORAGE_GC_LINK = 1,     /* a blob link of repo */
    STORAGE_GC_MANIFEST = 2, /* an untagged manifest of repo (delete_untagged) */
    STORAGE_GC_REPO = 3,     /* a repository: queue all its links and manifests */
    STORAGE_GC_RETAINED = 4  /* a manifest whose tag retention removed */
};

struct storage_gc_item {
    enum storage_gc_kind kind;
    char repo[NAME_MAX_LEN + 1];
    char digest[DIGEST_STR_MAX];
    int keep;      /* in: settle it as needed (its queue row goes) without
                      looking: manifests when untagged ones are not collected */
    int removed;   /* out: 1 when removed (dry run: would be) */
    uint64_t size; /* out: a removed blob's bytes */
};

/* storage_gc_begin - start a pass on h: *full_needed = 1 when the store has
 * never been reviewed whole (from before the queue). dry_run: every step from
 * here to storage_gc_end runs in one transaction that is then rolled back.
 * 0, or -1 with ERR_DB. */
int storage_gc_begin(struct storage_handle *h, int dry_run, int *full_needed, struct err *e);
/* storage_gc_end - end the pass (a dry run's transaction is rolled back) */
void storage_gc_end(struct storage_handle *h);
/* storage_gc_fill - queue every thing of kind (LINK, MANIFEST, BLOB; BLOB
 * last: it clears full_needed), one transaction. 0 or -1 (ERR_DB). */
int storage_gc_fill(struct storage_handle *h, enum storage_gc_kind kind, struct err *e);
/* storage_gc_queue_page - up to n queued candidates of kind, in key order
 * after *after (NULL: from the start), into items. Returns how many, or -1. */
int storage_gc_queue_page(struct storage_handle *h, enum storage_gc_kind kind,
                          const struct storage_gc_item *after, struct storage_gc_item *items,
                          int n, struct err *e);
/* storage_gc_collect - settle n candidates of one kind in one transaction
 * (blobs: one durable transaction, then their files): each is removed when
 * it is garbage (the rules in gc/gc.h) and created before `before`, kept
 * otherwise; items[i].removed and .size are filled. REPO candidates queue
 * their repository's links and manifests; a RETAINED manifest removed queues
 * its child manifests and its referrers as RETAINED too (what retention lets
 * go takes its platform manifests, signatures and SBOMs with it unless
 * something else needs them).
 * Returns how many were removed, or -1 with ERR_DB / ERR_IO / ERR_NOSPACE
 * (nothing of the batch is then counted; the queue keeps it). */
int storage_gc_collect(struct storage_handle *h, struct storage_gc_item *items, int n,
                       int64_t before, struct err *e);
/* storage_gc_tags - every tag of repo: fn(tag, digest, pushed, pulled)
 * (seconds since the epoch; pulled 0: never or not tracked). fn non-zero
 * stops. */
int storage_gc_tags(struct storage_handle *h, const char *repo,
                    int (*fn)(void *arg, const char *tag, const struct digest *d, int64_t pushed,
                              int64_t pulled),
                    void *arg, struct err *e);
/* storage_gc_untag - remove tags[i] of repo when it still names digests[i]
 * (a push may have moved it), in one transaction; their manifests are queued
 * (RETAINED). removed[i] is set to 1 for each tag removed. Returns how many. */
int storage_gc_untag(struct storage_handle *h, const char *repo, const char *const *tags,
                     const struct digest *digests, int *removed, size_t n, struct err *e);
/* Test hook: fn(arg, point) runs at these points of storage_gc_collect (a
 * crash test _exit()s there). fn NULL clears it. */
enum storage_gc_point {
    STORAGE_GC_AT_ROWS_SETTLED = 1, /* a batch of links/manifests committed */
    STORAGE_GC_AT_BLOB_ROWS_GONE,   /* blob rows durably deleted, files still there */
    STORAGE_GC_AT_BLOB_FILE_GONE,   /* after each blob file removed */
    STORAGE_GC_AT_BLOBS_SETTLED     /* their queue rows removed */
};
void storage_gc_hook(struct storage *st, void (*fn)(void *arg, enum storage_gc_point pt),
                     void *arg);
/* storage_gc_queued - rows in the review queue (tests, logs) */
int storage_gc_queued(struct storage_handle *h, int64_t *n, struct err *e);

/* storage_expire_uploads_each - storage_expire_uploads that calls fn(uuid)
 * for each session removed; dry_run: only those it would remove, removing
 * nothing. Returns how many, or -1. */
int storage_expire_uploads_each(struct storage_handle *h, int dry_run,
                                void (*fn)(void *arg, const char *uuid), void *arg,
                                struct err *e);

/* storage_root_owner - the pid written in root's lock file by the process
 * that has the root open: 1 with *pid when the lock is held now, 0 when not
 * (or no root there), -1 on error */
int storage_root_owner(const char *root, long *pid, struct err *e);

#endif
