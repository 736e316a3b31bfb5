/* regclient.h - a small OCI distribution client on libcurl (pull side only).
 *
 * Speaks https by default; plain http for hosts given with --insecure or listed
 * in $OCIRUN_INSECURE_REGISTRIES. Authentication: anonymous first; on a 401 the
 * WWW-Authenticate challenge decides: Bearer (the token flow: GET realm with
 * service and scope, Basic credentials if any, then retry with the token) or
 * Basic (credentials required). Blobs are fetched in parallel (curl multi) and
 * streamed into the content store, which verifies size and digest. */
#ifndef OCIRUN_REGCLIENT_H
#define OCIRUN_REGCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "tools/ocirun-lite/imgref.h"
#include "tools/ocirun-lite/regauth.h"

struct regclient;
struct cstore;

/* every manifest media type we understand, for Accept */
#define REGCLIENT_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define REGCLIENT_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define REGCLIENT_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define REGCLIENT_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

struct regclient_opts {
    int plain_http;                    /* 1: http:// instead of https:// */
    int tls_verify;                    /* 0: accept any certificate (https only) */
    const struct regauth_creds *creds; /* NULL: none known (anonymous + token flow) */
    int progress;                      /* 1: draw progress bars on stderr */
    int parallel;                      /* concurrent blob downloads, 0 = 4 */
};

struct regclient_blob {
    const char *digest;
    int64_t size;      /* from the descriptor; -1 unknown */
    const char *label; /* for progress and errors, e.g. "layer 2/3" */
};

struct regclient_stats {
    uint64_t fetched; /* blobs downloaded */
    uint64_t skipped; /* blobs already in the store */
    uint64_t bytes;   /* bytes downloaded */
};

/* regclient_new - a client for the repository of ref. Returns a client owned
 * by the caller (regclient_free) or NULL with ERR_INTERNAL. */
struct regclient *regclient_new(const struct imgref *ref, const struct regclient_opts *o,
                                struct err *e);
void regclient_free(struct regclient *rc);

/* regclient_get_manifest - GET /v2/<path>/manifests/<reference>. On success
 * *body (malloc'd, NUL-terminated, owned by the caller), *len, the media type
 * (Content-Type, or the body's mediaType) and the sha256 digest of the body;
 * when reference is a digest the body must hash to it. Returns 0, or -1 with
 * ERR_MANIFEST_UNKNOWN, ERR_UNAUTHORIZED, ERR_DENIED, ERR_DIGEST_INVALID,
 * ERR_TOO_LARGE, ERR_IO (network). */
int regclient_get_manifest(struct regclient *rc, const char *reference, char **body, size_t *len,
                           char *mediatype, size_t mtlen, char digest[72], struct err *e);

/* called once per blob index when that blob is in the store (already there,
 * or downloaded and verified), from the calling thread */
typedef void regclient_done_fn(void *ctx, size_t index);

/* regclient_fetch_blobs - download every blob not yet in cs, in parallel, into
 * the store (verified; see cstore_writer_commit). done (may be NULL) is called
 * for each blob as soon as it is stored. Stops at the first failure: nothing
 * of a failed blob is stored. stats may be NULL. Returns 0, or -1 with
 * ERR_DIGEST_INVALID / ERR_SIZE_INVALID (the message names the digest),
 * ERR_BLOB_UNKNOWN, ERR_UNAUTHORIZED, ERR_IO. */
int regclient_fetch_blobs(struct regclient *rc, struct cstore *cs,
                          const struct regclient_blob *blobs, size_t n, regclient_done_fn *done,
                          void *done_ctx, struct regclient_stats *stats, struct err *e);

#endif
