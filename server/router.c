#include "server/router.h"

#include <string.h>

#include "common/banned.h"

/* Methods per route kind. HEAD is answered wherever GET is (the connection layer
 * drops the body). */
enum {
    M_GET = 1 << HTTP_M_GET,
    M_HEAD = 1 << HTTP_M_HEAD,
    M_POST = 1 << HTTP_M_POST,
    M_PUT = 1 << HTTP_M_PUT,
    M_PATCH = 1 << HTTP_M_PATCH,
    M_DELETE = 1 << HTTP_M_DELETE,
};

static const struct {
    unsigned methods;
    const char *allow;
    const char *name;
} kinds[] = {
    [ROUTE_NONE] = {0, "", "none"},
    [ROUTE_BASE] = {M_GET | M_HEAD, "GET, HEAD", "base"},
    [ROUTE_CATALOG] = {M_GET | M_HEAD, "GET, HEAD", "catalog"},
    [ROUTE_TAGS] = {M_GET | M_HEAD, "GET, HEAD", "tags"},
    [ROUTE_MANIFEST] = {M_GET | M_HEAD | M_PUT | M_DELETE, "GET, HEAD, PUT, DELETE", "manifest"},
    [ROUTE_BLOB] = {M_GET | M_HEAD | M_DELETE, "GET, HEAD, DELETE", "blob"},
    [ROUTE_UPLOAD_START] = {M_POST, "POST", "upload-start"},
    [ROUTE_UPLOAD] = {M_GET | M_PATCH | M_PUT | M_DELETE, "GET, PATCH, PUT, DELETE", "upload"},
    [ROUTE_REFERRERS] = {M_GET | M_HEAD, "GET, HEAD", "referrers"},
};

const char *
router_allow(enum route_kind k)
{
    return (unsigned)k < sizeof(kinds) / sizeof(kinds[0]) ? kinds[k].allow : "";
}

const char *
router_kind_name(enum route_kind k)
{
    return (unsigned)k < sizeof(kinds) / sizeof(kinds[0]) ? kinds[k].name : "none";
}

/* does s[0..len) end with the literal suf? */
static int
ends_with(const char *s, size_t len, const char *suf, size_t slen)
{
    return len >= slen && memcmp(s + len - slen, suf, slen) == 0;
}
#define ENDS(s, len, lit) ends_with((s), (len), lit, sizeof(lit) - 1)

/* the digest grammar, with an unknown-but-well-formed algorithm folded into
 * DIGEST_INVALID: in a path it is a client error (400), not a media type (415) */
static int
parse_digest(const char *s, size_t len, struct digest *out, struct err *e)
{
    if (digest_parse(s, len, out, e) == 0)
        return 0;
    if (e && e->code == ERR_UNSUPPORTED)
        e->code = ERR_DIGEST_INVALID;
    return -1;
}

/* upload ids are issued by storage (uuid text); accept only what could be one so
 * that no other byte ever reaches a file name */
static int
upload_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > ROUTE_UPLOAD_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

int
router_match(enum http_method m, const char *path, struct route *out, struct err *e)
{
    out->kind = ROUTE_NONE;
    out->name[0] = '\0';
    out->ref[0] = '\0';
    out->ref_is_digest = 0;

    if (!path || strncmp(path, "/v2", 3) != 0)
        goto notfound;
    const char *rest = path + 3;
    if (*rest == '\0') {
        out->kind = ROUTE_BASE;
        goto method;
    }
    if (*rest != '/')
        goto notfound;
    rest++;
    size_t rlen = strlen(rest);

    const char *name = rest;
    size_t nlen = 0;
    const char *seg = NULL;
    size_t slen = 0;

    if (rlen == 0) {
        out->kind = ROUTE_BASE;
        goto method;
    }
    if (rlen == 8 && memcmp(rest, "_catalog", 8) == 0) {
        out->kind = ROUTE_CATALOG;
        goto method;
    }
    if (ENDS(rest, rlen, "/tags/list")) {
        out->kind = ROUTE_TAGS;
        nlen = rlen - (sizeof("/tags/list") - 1);
    } else if (ENDS(rest, rlen, "/blobs/uploads/")) {
        out->kind = ROUTE_UPLOAD_START;
        nlen = rlen - (sizeof("/blobs/uploads/") - 1);
    } else if (ENDS(rest, rlen, "/blobs/uploads")) {
        out->kind = ROUTE_UPLOAD_START;
        nlen = rlen - (sizeof("/blobs/uploads") - 1);
    } else {
        const char *slash = memrchr(rest, '/', rlen);
        if (!slash)
            goto notfound;
        size_t plen = (size_t)(slash - rest);
        seg = slash + 1;
        slen = rlen - plen - 1;
        if (slen == 0)
            goto notfound;
        if (ENDS(rest, plen, "/blobs/uploads")) {
            out->kind = ROUTE_UPLOAD;
            nlen = plen - (sizeof("/blobs/uploads") - 1);
        } else if (ENDS(rest, plen, "/blobs")) {
            out->kind = ROUTE_BLOB;
            nlen = plen - (sizeof("/blobs") - 1);
        } else if (ENDS(rest, plen, "/manifests")) {
            out->kind = ROUTE_MANIFEST;
            nlen = plen - (sizeof("/manifests") - 1);
        } else if (ENDS(rest, plen, "/referrers")) {
            out->kind = ROUTE_REFERRERS;
            nlen = plen - (sizeof("/referrers") - 1);
        } else {
            goto notfound;
        }
    }

    /* a wrong method is reported before the arguments are looked at, as a route
     * that exists answers 405 whatever its arguments */
    if (!(kinds[out->kind].methods & (1u << m)))
        return err_set(e, ERR_METHOD, 0, "method not allowed on %s", kinds[out->kind].name);

    if (nlen == 0 || nlen > NAME_MAX_LEN)
        return err_set(e, ERR_NAME_INVALID, 0, "invalid repository name");
    if (name_validate(name, nlen, e) < 0) {
        if (e)
            e->code = ERR_NAME_INVALID;
        return -1;
    }
    memcpy(out->name, name, nlen);
    out->name[nlen] = '\0';

    switch (out->kind) {
    case ROUTE_MANIFEST:
        if (memchr(seg, ':', slen)) {
            if (slen > DIGEST_STR_MAX || parse_digest(seg, slen, &out->digest, e) < 0)
                goto badref;
            out->ref_is_digest = 1;
        } else {
            if (slen > TAG_MAX_LEN || tag_validate(seg, slen, e) < 0)
                goto badref;
        }
        memcpy(out->ref, seg, slen);
        out->ref[slen] = '\0';
        break;
    case ROUTE_BLOB:
    case ROUTE_REFERRERS:
        if (slen > DIGEST_STR_MAX || parse_digest(seg, slen, &out->digest, e) < 0)
            return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest");
        memcpy(out->ref, seg, slen);
        out->ref[slen] = '\0';
        break;
    case ROUTE_UPLOAD:
        if (!upload_id_ok(seg, slen))
            return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "unknown upload session");
        memcpy(out->ref, seg, slen);
        out->ref[slen] = '\0';
        break;
    default:
        break;
    }
    return 0;

badref:
    /* a reference that is neither a tag nor a digest names no manifest: a read
     * or delete of it is MANIFEST_UNKNOWN (spec: a manifest not found MUST be
     * 404; the reference registry's route does not match it either); only a
     * PUT, which would create it, is told what is wrong with it */
    if (m != HTTP_M_PUT)
        return err_set(e, ERR_MANIFEST_UNKNOWN, 0, "manifest unknown");
    if (memchr(seg, ':', slen))
        return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest reference");
    return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid tag");

method:
    if (!(kinds[out->kind].methods & (1u << m)))
        return err_set(e, ERR_METHOD, 0, "method not allowed on %s", kinds[out->kind].name);
    return 0;

notfound:
    out->kind = ROUTE_NONE;
    return err_set(e, ERR_NOT_FOUND, 0, "no such route");
}
