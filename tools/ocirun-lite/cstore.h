/* cstore.h - ocirun-lite's local content store.
 *
 *   ROOT/blobs/sha256/<hex>       verified blobs (manifests, indexes, configs, layers)
 *   ROOT/layers/<diffid hex>/     unpacked layers (see layerfs.h), one per diff_id
 *   ROOT/images/<sha256(ref)>.json  image records: ref -> digests
 *   ROOT/tmp/                     downloads and unpacks in progress (same fs: rename)
 *   ROOT/containers/              the runtime's state (runtime.h)
 *   ROOT/lock                     flock: shared while pulling/running, exclusive for gc
 *
 * A blob appears in blobs/ only after its bytes were hashed and counted,
 * fsync'd and renamed there; a reader never sees a partial or wrong blob. */
#ifndef OCIRUN_CSTORE_H
#define OCIRUN_CSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct cstore;
struct cstore_writer;

#define CSTORE_DIGEST_LEN 72 /* "sha256:" + 64 hex + NUL, rounded */

struct cstore_image {
    char ref[600];                    /* canonical reference (imgref_format) */
    char digest[CSTORE_DIGEST_LEN];   /* what the reference resolved to (index or manifest) */
    char manifest[CSTORE_DIGEST_LEN]; /* the platform manifest */
    char config[CSTORE_DIGEST_LEN];
    char platform[64]; /* "linux/amd64" */
    int64_t size;      /* config + compressed layers, bytes */
    int64_t created;   /* unix time of the pull */
    char **blobs;      /* every blob digest it uses, NULL-terminated */
    char **layers;     /* diff_ids, bottom first, NULL-terminated */
};

/* cstore_open - open (creating the folders) the store at root and take the
 * shared lock. Returns a handle owned by the caller (cstore_close), or NULL with
 * ERR_IO / ERR_CONFIG. */
struct cstore *cstore_open(const char *root, struct err *e);
void cstore_close(struct cstore *cs);

/* cstore_root - the absolute root path. Static storage of cs. */
const char *cstore_root(const struct cstore *cs);

/* cstore_blob_path - "ROOT/blobs/sha256/<hex>" for digest into buf. Returns
 * 0, or -1 with ERR_DIGEST_INVALID. */
int cstore_blob_path(const struct cstore *cs, const char *digest, char *buf, size_t len,
                     struct err *e);

/* cstore_blob_has - 1 when the blob is stored (and, if size >= 0, has that
 * size), else 0. */
int cstore_blob_has(const struct cstore *cs, const char *digest, int64_t size);

/* cstore_blob_read - read a stored blob of at most maxlen bytes and check its
 * digest again. *data (NUL-terminated, malloc'd) and *len owned by the caller.
 * Returns 0, or -1 with ERR_BLOB_UNKNOWN, ERR_DIGEST_INVALID, ERR_TOO_LARGE,
 * ERR_IO. */
int cstore_blob_read(const struct cstore *cs, const char *digest, size_t maxlen, char **data,
                     size_t *len, struct err *e);

/* cstore_blob_put - store data whose digest must be `digest` (NULL: any; the
 * computed one is written to digest_out when not NULL). Returns 0 or -1 with
 * ERR_DIGEST_INVALID (mismatch) or ERR_IO / ERR_NOSPACE. */
int cstore_blob_put(struct cstore *cs, const char *digest, const void *data, size_t len,
                    char digest_out[CSTORE_DIGEST_LEN], struct err *e);

/* cstore_writer_new - start streaming a blob that must hash to `digest` and
 * be exactly `size` bytes (size < 0: any size). Returns a writer owned by
 * the caller (commit or abort it), or NULL with the error set. */
struct cstore_writer *cstore_writer_new(struct cstore *cs, const char *digest, int64_t size,
                                        struct err *e);
/* cstore_writer_write - append; fails with ERR_SIZE_INVALID past the size. */
int cstore_writer_write(struct cstore_writer *w, const void *buf, size_t n, struct err *e);
/* cstore_writer_reset - drop what was written (retry from the start). */
int cstore_writer_reset(struct cstore_writer *w, struct err *e);
/* cstore_writer_written - bytes written so far. */
int64_t cstore_writer_written(const struct cstore_writer *w);
/* cstore_writer_commit - verify size and digest, fsync, rename into blobs/.
 * Frees w in every case. On a mismatch (ERR_DIGEST_INVALID / ERR_SIZE_INVALID,
 * message naming the expected and the actual digest) nothing is stored. */
int cstore_writer_commit(struct cstore_writer *w, struct err *e);
/* cstore_writer_abort - remove the temporary file and free w (NULL: no-op). */
void cstore_writer_abort(struct cstore_writer *w);

/* cstore_tmpdir - create a fresh private directory under ROOT/tmp with the
 * given name prefix; its path goes to buf. Returns 0 or -1 with ERR_IO. */
int cstore_tmpdir(struct cstore *cs, const char *prefix, char *buf, size_t len, struct err *e);

/* image records. cstore_image_put replaces the record of img->ref.
 * cstore_image_get returns 1 and fills *img (release it with
 * cstore_image_release), 0 when absent, -1 on error. cstore_image_list gives
 * a malloc'd array of *n records sorted by ref (free with
 * cstore_image_list_free). cstore_image_delete returns 1 if removed, 0 if
 * absent, -1 on error. */
int cstore_image_put(struct cstore *cs, const struct cstore_image *img, struct err *e);
int cstore_image_get(struct cstore *cs, const char *ref, struct cstore_image *img, struct err *e);
int cstore_image_list(struct cstore *cs, struct cstore_image **imgs, size_t *n, struct err *e);
void cstore_image_list_free(struct cstore_image *imgs, size_t n);
int cstore_image_delete(struct cstore *cs, const char *ref, struct err *e);
void cstore_image_release(struct cstore_image *img);

/* cstore_gc - remove blobs and layers that no image record uses, and stale
 * tmp entries. Needs the exclusive lock: returns 1 when done, 0 when another
 * ocirun-lite process uses the store (nothing removed), -1 on error.
 * *freed counts the removed blobs + layers. */
int cstore_gc(struct cstore *cs, size_t *freed, struct err *e);

/* cstore_digest_hex - pointer to the 64 hex digits of a valid "sha256:<hex>",
 * or NULL if digest is not one. */
const char *cstore_digest_hex(const char *digest);

/* cstore_sha256 - "sha256:<hex>" of data into out. */
void cstore_sha256(const void *data, size_t len, char out[CSTORE_DIGEST_LEN]);

#endif
