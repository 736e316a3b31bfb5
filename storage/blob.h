/* blob.h - the blob backend interface: where blob bytes and the bytes of
 * upload sessions live. storage.c and upload.c reach bytes only through it;
 * the filesystem backend (blob_fs.c) is the first implementation, with the
 * layout and crash-safety order of docs/storage.md.
 *
 * A backend is an ops table plus its state (struct blob_backend is the first
 * member of the backend's own struct). Blobs are named by parsed digests,
 * sessions by upload ids (uuid_valid); nothing else reaches a name.
 *
 * What a backend guarantees, and storage.c builds its invariants on:
 *   - put / w_commit return only when the blob is durable under its digest
 *     (fs: data written, fsync, rename into blobs/, directory fsync), except
 *     with BLOB_PUT_LAZY, where the caller keeps the bytes until sync ran;
 *   - a blob already stored with the same size is kept, not replaced (blobs
 *     are immutable), and made durable again (it may be another thread's, not
 *     yet durable);
 *   - stat after a successful put/commit finds the blob until remove.
 * storage.c then adds the rows (meta.h) only after the bytes are durable and
 * checks the blob again (stat) inside the write transaction, so a row never
 * exists without its blob.
 *
 * Readers are filled in caller-provided memory (struct blob_reader in
 * storage.h) so that opening one allocates nothing on the fs backend. */
#ifndef OCIREG_STORAGE_BLOB_H
#define OCIREG_STORAGE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "storage/storage.h"

struct blob_backend;
struct blob_writer; /* an upload session's bytes, open for appending */
struct fault;

enum blob_put_mode {
    BLOB_PUT_DURABLE, /* durable when put returns (or keep an existing copy) */
    BLOB_PUT_LAZY,    /* no flush: the caller keeps the bytes elsewhere
                         (pending_manifest_files) until sync covered them */
    BLOB_PUT_REPLACE  /* durable, and over whatever is stored (recovery of a
                         possibly torn copy) */
};

/* the reader side (storage.h's struct blob_reader points here) */
struct blob_reader_ops {
    /* hand a local descriptor over (0; *fd then owned by the caller), or -1
     * when the backend has none (fd NULL: only ask) */
    int (*fd)(struct blob_reader *rd, int *fd, uint64_t *off);
    /* read up to n bytes at off: bytes read (0 at the end) or -1 */
    long (*read)(struct blob_reader *rd, uint64_t off, void *buf, size_t n, struct err *e);
    /* a URL the client may fetch the bytes from: 0, or -1 when none */
    int (*redirect)(struct blob_reader *rd, char *url, size_t urlsz, struct err *e);
    void (*close)(struct blob_reader *rd);
};

struct blob_backend_ops {
    const char *name;
    void (*close)(struct blob_backend *b);

    /* ---- blobs ---- */
    /* stat - 1 when blob d is stored (*size its length), 0 when not, -1 */
    int (*stat)(struct blob_backend *b, const struct digest *d, uint64_t *size, struct err *e);
    /* open - 1 with *rd filled (rd->size the stored length), 0 when not
     * stored, -1 */
    int (*open)(struct blob_backend *b, const struct digest *d, struct blob_reader *rd,
                struct err *e);
    /* put - store n bytes as blob d (see the modes) */
    int (*put)(struct blob_backend *b, const struct digest *d, const void *data, size_t n,
               enum blob_put_mode mode, struct err *e);
    /* remove - delete blob d (gc, under the metadata's write lock); a blob
     * that is not there is no error */
    int (*remove)(struct blob_backend *b, const struct digest *d, struct err *e);
    /* list - every stored blob (gc's sweep); fn returning non-zero stops */
    int (*list)(struct blob_backend *b,
                int (*fn)(void *arg, const struct digest *d, uint64_t size), void *arg,
                struct err *e);
    /* sync - make every blob put with BLOB_PUT_LAZY so far durable */
    int (*sync)(struct blob_backend *b, struct err *e);
    /* quarantine - move blob d out of the store, its bytes kept for an
     * operator (ocireg check --repair; fs: <root>/quarantine/<algo>/<hex>.<tag>,
     * durably); *where (wsz bytes) names the place. 1 moved, 0 when the blob
     * is not stored, -1. NULL: the backend has no such place. */
    int (*quarantine)(struct blob_backend *b, const struct digest *d, const char *tag,
                      char *where, size_t wsz, struct err *e);

    /* ---- upload sessions' bytes, named by upload id ---- */
    /* w_create - empty session data (fails when it exists) */
    int (*w_create)(struct blob_backend *b, const char *id, struct err *e);
    /* w_open - 1 with *w, 0 when there is no such session data, -1 */
    int (*w_open)(struct blob_backend *b, const char *id, struct blob_writer **w,
                  struct err *e);
    /* w_stat - 1 with *size (bytes so far), 0 when none, -1 */
    int (*w_stat)(struct blob_backend *b, const char *id, uint64_t *size, struct err *e);
    /* w_remove - delete the session data (not open); none is no error */
    int (*w_remove)(struct blob_backend *b, const char *id, struct err *e);
    /* w_list - every entry of the session area, valid or not (recovery) */
    int (*w_list)(struct blob_backend *b, int (*fn)(void *arg, const char *name), void *arg,
                  struct err *e);

    /* ---- an open writer ---- */
    /* w_append - write n bytes at off (the caller's offset: sessions are written
     * in order); ERR_NOSPACE / ERR_IO */
    int (*w_append)(struct blob_writer *w, const void *data, size_t n, uint64_t off,
                  struct err *e);
    /* w_fd - offer a descriptor the caller may write to itself at *off + offset
     * (asynchronous zero-copy writes); -1 when the backend has none */
    int (*w_fd)(struct blob_writer *w, int *fd, uint64_t *off);
    /* w_written - the bytes up to `end` have been appended (a hint: the fs
     * backend starts their writeback) */
    void (*w_written)(struct blob_writer *w, uint64_t end);
    /* w_hash - read the session's bytes again: *size their length, *out (may be
     * NULL) their digest, *keep (may be NULL) the running hasher */
    int (*w_hash)(struct blob_writer *w, enum digest_algo algo, struct digest *out,
                uint64_t *size, struct hasher **keep, struct err *e);
    /* w_commit - the bytes (size of them, verified by the caller to hash to d)
     * become blob d, durably; the session data is gone on success. The writer
     * stays open for w_close. */
    int (*w_commit)(struct blob_writer *w, const struct digest *d, uint64_t size, struct err *e);
    /* w_close - release the writer (the session data stays unless committed) */
    void (*w_close)(struct blob_writer *w);
};

struct blob_backend {
    const struct blob_backend_ops *ops;
};

/* blob_fs_open - the filesystem backend under root (blobs/, uploads/, both
 * created with the 2 x 256 fan-out directories). fsync 0: no flushes at all.
 * fault: FAULT_WRITE / FAULT_FSYNC / FAULT_RENAME injection (may be NULL). */
struct blob_backend *blob_fs_open(int rootfd, int fsync, struct fault *fault, struct err *e);
/* blob_fs_dir_fsyncs - directory fsyncs done so far (tests) */
unsigned long blob_fs_dir_fsyncs(const struct blob_backend *b);

#endif
