/* router.h - method + path of a /v2/ request -> route, as a pure function (no I/O,
 * no allocation), so that it is unit-testable and so that every name, reference,
 * digest and upload id is validated before any storage call.
 *
 * Repository names may contain slashes, so the path is parsed from the right:
 *   /v2/                                   ROUTE_BASE
 *   /v2/_catalog                           ROUTE_CATALOG
 *   /v2/<name>/tags/list                   ROUTE_TAGS
 *   /v2/<name>/manifests/<reference>       ROUTE_MANIFEST   (tag or digest)
 *   /v2/<name>/blobs/uploads/              ROUTE_UPLOAD_START (trailing slash optional)
 *   /v2/<name>/blobs/uploads/<id>          ROUTE_UPLOAD
 *   /v2/<name>/blobs/<digest>              ROUTE_BLOB
 *   /v2/<name>/referrers/<digest>          ROUTE_REFERRERS
 * The path given is the one the connection layer percent-decoded once. */
#ifndef OCIREG_ROUTER_H
#define OCIREG_ROUTER_H

#include <stddef.h>

#include "common/err.h"
#include "server/http.h"
#include "storage/storage.h"

enum route_kind {
    ROUTE_NONE = 0,
    ROUTE_BASE,
    ROUTE_CATALOG,
    ROUTE_TAGS,
    ROUTE_MANIFEST,
    ROUTE_BLOB,
    ROUTE_UPLOAD_START,
    ROUTE_UPLOAD,
    ROUTE_REFERRERS,
};

#define ROUTE_UPLOAD_ID_MAX 64

struct route {
    enum route_kind kind;
    char name[NAME_MAX_LEN + 1]; /* repository, validated; "" for base/catalog */
    /* ROUTE_MANIFEST: the reference as given (tag or "algo:hex");
     * ROUTE_UPLOAD: the session id; otherwise "" */
    char ref[DIGEST_STR_MAX + 1];
    int ref_is_digest;    /* ROUTE_MANIFEST: 1 when ref is a digest */
    struct digest digest; /* ROUTE_BLOB, ROUTE_REFERRERS, digest manifests */
};

/* router_match - map (method, path) to *out. Returns 0 when the route is known,
 * the method allowed and every path component valid. Returns -1 with:
 *   ERR_NOT_FOUND            no such route (out->kind = ROUTE_NONE)
 *   ERR_METHOD               known route, method not allowed (out->kind set:
 *                            router_allow() gives the Allow header)
 *   ERR_NAME_INVALID         repository name fails the grammar (this is where
 *                            "..", "%2e%2e", empty components, upper case end up)
 *   ERR_DIGEST_INVALID       malformed or unsupported digest in the path (a
 *                            manifest reference: on PUT only)
 *   ERR_MANIFEST_INVALID     malformed tag (PUT of a manifest)
 *   ERR_MANIFEST_UNKNOWN     GET/HEAD/DELETE of a manifest reference that is
 *                            neither a tag nor a digest (it cannot exist)
 *   ERR_BLOB_UPLOAD_UNKNOWN  upload id of a form the registry never issues
 * out is always written (kind at least). */
int router_match(enum http_method m, const char *path, struct route *out, struct err *e);

/* router_allow - the methods a route kind answers, for the Allow header
 * ("GET, HEAD"); "" for ROUTE_NONE. Static string. */
const char *router_allow(enum route_kind k);

/* router_kind_name - short name for logs and tests ("manifest"). Static string. */
const char *router_kind_name(enum route_kind k);

#endif
