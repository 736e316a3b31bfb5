/* push.c - spec "Push" workflow: blob uploads (end-4a POST+PUT, end-4b single
 * POST, end-4c digest-algorithm, end-5 PATCH chunks, end-6 closing PUT, end-13
 * upload status, end-14 cancel), cross-repository mounts (end-11) and manifest
 * pushes (end-7, with ?tag= and subject). */
#include "conformance/suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/check.h"
#include "conformance/client.h"
#include "common/banned.h"

static const char *const OCTET[] = {"Content-Type: application/octet-stream", NULL};

/* POST an upload session; the Location goes into loc. Returns 1 on 202. */
static int
start_upload(struct ctx *x, struct check *c, const char *repo, const char *query, char *loc,
             size_t loc_size)
{
    char path[1024];
    struct resp r;

    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/%s", repo, query ? query : "");
    client_do(x->cl, "POST", path, NULL, NULL, 0, &r);
    check_status(c, &r, 202, path);
    check_header_present(c, &r, "Location", loc, loc_size, path);
    resp_release(&r);
    return check_ok(c);
}

/* PATCH one chunk; range is "start-end" or NULL for none */
static void
patch(struct ctx *x, const char *loc, const void *data, size_t len, const char *range,
      struct resp *r)
{
    char cr[96];
    const char *h[] = {"Content-Type: application/octet-stream", cr, NULL};

    if (range != NULL)
        snprintf(cr, sizeof(cr), "Content-Range: %s", range);
    else
        h[1] = NULL;
    client_do(x->cl, "PATCH", loc, h, data, len, r);
}

/* PUT <loc>?digest=<digest> with an optional final chunk */
static void
close_upload(struct ctx *x, const char *loc, const char *digest, const void *data, size_t len,
             const char *range, struct resp *r)
{
    char url[4096], q[200], cr[96];
    const char *h[] = {"Content-Type: application/octet-stream", cr, NULL};

    if (range != NULL)
        snprintf(cr, sizeof(cr), "Content-Range: %s", range);
    else
        h[1] = NULL;
    snprintf(q, sizeof(q), "digest=%s", digest);
    util_with_query(loc, q, url, sizeof(url));
    client_do(x->cl, "PUT", url, data ? h : NULL, data, len, r);
}

/* the blob answers 200 with exactly these bytes at `where` (a Location or a
 * path) */
static void
expect_pullable(struct ctx *x, struct check *c, const char *where, const struct doc *b)
{
    if (check_ok(c))
        suite_expect_get(x, c, where, 0, b, "GET of the blob Location");
}

/* r (released here) ends the upload of b: 201 with a Location that serves b */
static void
expect_blob_created(struct ctx *x, struct check *c, struct resp *r, const struct doc *b,
                    const char *what)
{
    char bloc[2048];

    check_status(c, r, 201, what);
    check_header_present(c, r, "Location", bloc, sizeof(bloc), what);
    resp_release(r);
    expect_pullable(x, c, bloc, b);
}

/* the closing PUT ?digest= of b at loc, carrying b's bytes from `from` on as
 * the last chunk (none when from is b->len), answers as expect_blob_created */
static void
close_ok(struct ctx *x, struct check *c, const char *loc, const struct doc *b, size_t from,
         const char *range, const char *what)
{
    struct resp r;

    if (!check_ok(c))
        return;
    if (from < b->len)
        close_upload(x, loc, b->digest, b->data + from, b->len - from, range, &r);
    else
        close_upload(x, loc, b->digest, NULL, 0, NULL, &r);
    expect_blob_created(x, c, &r, b, what);
}

/* PATCH a chunk the registry must take: 202 with a Location (written to loc
 * for the next request) and, unless want_range is NULL, that Range. Returns
 * check_ok. */
static int
patch_ok(struct ctx *x, struct check *c, char *loc, size_t loc_size, const void *data, size_t len,
         const char *range, const char *want_range, const char *what)
{
    struct resp r;

    if (!check_ok(c))
        return 0;
    patch(x, loc, data, len, range, &r);
    check_status(c, &r, 202, what);
    check_header_present(c, &r, "Location", loc, loc_size, what);
    if (want_range != NULL)
        check_header_eq(c, &r, "Range", want_range, what);
    resp_release(&r);
    return check_ok(c);
}

/* spec end-4b: POST ?digest=<digest> with b's bytes. A registry that does not
 * take a blob in one request answers 202 with a Location, and the upload is
 * then closed with PUT ?digest=<digest>. r is the last response (the caller
 * releases it). Returns 1 when the upload went on with the PUT. */
static int
single_post(struct ctx *x, struct check *c, const char *digest, const struct doc *b, struct resp *r)
{
    char path[1024], loc[2048];

    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", x->repo, digest);
    client_do(x->cl, "POST", path, OCTET, b->data, b->len, r);
    if (r->status != 202)
        return 0;
    check_header_present(c, r, "Location", loc, sizeof(loc), "POST ?digest= (202)");
    resp_release(r);
    if (check_ok(c))
        close_upload(x, loc, digest, b->data, b->len, NULL, r);
    return 1;
}

/* r (released here) ended an upload pushed with the digest `wrong`: 400
 * DIGEST_INVALID, and nothing is stored under that digest */
static void
expect_digest_refused(struct ctx *x, struct check *c, struct resp *r, const char *wrong,
                      const char *what)
{
    char path[1024];

    check_error_body(c, r, 400, "DIGEST_INVALID", what);
    resp_release(r);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo, wrong);
    client_do(x->cl, "HEAD", path, NULL, NULL, 0, r);
    check_status(c, r, 404, "HEAD of the wrong digest afterwards");
    resp_release(r);
}

static void
push_monolithic(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct doc b;
    char loc[2048];

    check_begin(&c, "push-post-session",
                "POST /v2/<name>/blobs/uploads/ answers 202 with a Location (end-4a)");
    if (check_require(&c, x->base_ok, "base-v2"))
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc));
    int session_ok = check_end(&c);

    suite_doc_random(&b, "application/octet-stream", 3000);
    check_begin(
        &c, "push-monolithic-put",
        "POST then PUT ?digest= with the whole blob answers 201 with a pullable Location (end-6)");
    if (check_require(&c, session_ok, "push-post-session"))
        close_ok(x, &c, loc, &b, 0, NULL, "PUT <location>?digest=");
    check_end(&c);
    suite_doc_release(&b);

    /* spec "Single POST": a registry MAY support it; one that does not SHOULD
     * answer 202 with a Location and the client goes on with PUT */
    suite_doc_random(&b, "application/octet-stream", 2500);
    check_begin(&c, "push-single-post",
                "POST ?digest= with the blob answers 201 with a pullable Location (or 202 + "
                "Location, then PUT; end-4b)");
    if (check_require(&c, x->base_ok, "base-v2")) {
        int via_put = single_post(x, &c, b.digest, &b, &r);
        expect_blob_created(x, &c, &r, &b,
                            via_put ? "PUT after a 202 single POST" : "POST ?digest=");
    }
    check_end(&c);
    suite_doc_release(&b);

    /* end-4b: "the <digest> MUST match the blob's digest" */
    suite_doc_random(&b, "application/octet-stream", 1200);
    check_begin(&c, "push-single-post-mismatch",
                "POST ?digest=<wrong> with a body answers 400 DIGEST_INVALID (or 202, and the PUT "
                "with the wrong digest 400)");
    if (check_require(&c, x->base_ok, "base-v2")) {
        char wrong[UTIL_DIGEST_MAX];
        util_digest("sha256", "not this body", 13, wrong);
        single_post(x, &c, wrong, &b, &r);
        expect_digest_refused(x, &c, &r, wrong, "upload with a wrong digest");
    }
    check_end(&c);
    suite_doc_release(&b);

    suite_doc_random(&b, "application/octet-stream", 1000);
    check_begin(
        &c, "push-digest-mismatch",
        "closing PUT with a digest that does not match the content answers 400 DIGEST_INVALID");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc))) {
        char wrong[UTIL_DIGEST_MAX];
        util_digest("sha256", "not the content", 15, wrong);
        close_upload(x, loc, wrong, b.data, b.len, NULL, &r);
        expect_digest_refused(x, &c, &r, wrong, "PUT ?digest=<wrong digest>");
    }
    check_end(&c);

    /* spec "Pushing blobs": an invalid digest SHOULD be answered with 400 */
    check_begin(&c, "push-digest-malformed",
                "closing PUT with a malformed digest answers 400 DIGEST_INVALID");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc))) {
        close_upload(x, loc, "sha256:not-hex", b.data, b.len, NULL, &r);
        check_error_body(&c, &r, 400, "DIGEST_INVALID", "PUT ?digest=sha256:not-hex");
        resp_release(&r);
    }
    check_end(&c);
    suite_doc_release(&b);
}

/* a fresh session with bytes 0-99, then a chunk [start, end] that does not
 * begin at offset 100: the registry must refuse it with 416 and keep the
 * session at 0-99 */
static void
refused_chunk(struct ctx *x, struct check *c, const struct doc *b, size_t start, size_t end,
              const char *what)
{
    char loc[2048], range[64];
    struct resp r;

    if (!start_upload(x, c, x->repo, NULL, loc, sizeof(loc)) ||
        !patch_ok(x, c, loc, sizeof(loc), b->data, 100, "0-99", NULL, "PATCH 0-99"))
        return;
    snprintf(range, sizeof(range), "%zu-%zu", start, end);
    patch(x, loc, b->data + start, end - start + 1, range, &r);
    check_status(c, &r, 416, what);
    resp_release(&r);
    if (check_ok(c)) {
        client_do(x->cl, "GET", loc, NULL, NULL, 0, &r);
        check_status(c, &r, 204, "GET <location> after the 416");
        check_header_eq(c, &r, "Range", "0-99", "GET <location> after the 416");
        resp_release(&r);
    }
    client_do(x->cl, "DELETE", loc, NULL, NULL, 0, &r);
    resp_release(&r);
}

static void
push_chunked(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct doc b;
    char loc[2048], range[96], want[96];
    const size_t a = 1024, m = 2500; /* chunk ends: [0,a) [a,m) [m,len) */
    int ok;

    suite_doc_random(&b, "application/octet-stream", 4000);

    check_begin(&c, "push-chunked-patch",
                "PATCH first chunk with Content-Range 0-1023 answers 202 with Location and Range: "
                "0-1023 (end-5)");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc))) {
        snprintf(range, sizeof(range), "0-%zu", a - 1);
        patch_ok(x, &c, loc, sizeof(loc), b.data, a, range, range, "PATCH 0-1023");
    }
    ok = check_end(&c);

    check_begin(&c, "push-chunked-patch-next",
                "PATCH the next chunk with Content-Range 1024-2499 answers 202 with Range: 0-2499");
    if (check_require(&c, ok, "push-chunked-patch")) {
        snprintf(range, sizeof(range), "%zu-%zu", a, m - 1);
        snprintf(want, sizeof(want), "0-%zu", m - 1);
        patch_ok(x, &c, loc, sizeof(loc), b.data + a, m - a, range, want, "PATCH 1024-2499");
    }
    ok = check_end(&c);

    snprintf(want, sizeof(want), "0-%zu", m - 1);
    check_begin(&c, "push-chunked-status",
                "GET of the upload answers 204 with Location and Range: 0-2499 (end-13)");
    if (check_require(&c, ok, "push-chunked-patch-next")) {
        client_do(x->cl, "GET", loc, NULL, NULL, 0, &r);
        check_status(&c, &r, 204, "GET <location>");
        check_header_present(&c, &r, "Location", loc, sizeof(loc), "GET <location>");
        check_header_eq(&c, &r, "Range", want, "GET <location>");
        resp_release(&r);
    }
    ok = check_end(&c) && ok;

    /* the refused chunks each get their own session, so a registry that
     * accepts one does not spoil the others */
    check_begin(&c, "push-chunked-out-of-order",
                "PATCH a chunk that leaves a gap after the uploaded bytes answers 416");
    if (check_require(&c, x->base_ok, "base-v2"))
        refused_chunk(x, &c, &b, 200, 299, "PATCH 200-299 after 0-99");
    check_end(&c);

    check_begin(&c, "push-chunked-overlap",
                "PATCH a chunk that overlaps the uploaded bytes answers 416");
    if (check_require(&c, x->base_ok, "base-v2"))
        refused_chunk(x, &c, &b, 50, 149, "PATCH 50-149 after 0-99");
    check_end(&c);

    /* spec: "A GET request may be used to retrieve the current valid offset
     * and upload location" after a 416 */
    check_begin(&c, "push-chunked-status-after-416",
                "after a refused chunk, GET of the upload still answers 204 with Location and "
                "Range: 0-2499");
    if (check_require(&c, ok, "push-chunked-status")) {
        snprintf(range, sizeof(range), "%zu-%zu", m + 100, m + 199);
        patch(x, loc, b.data + m, 100, range, &r);
        check_status(&c, &r, 416, "PATCH with a gap");
        resp_release(&r);
        if (check_ok(&c)) {
            client_do(x->cl, "GET", loc, NULL, NULL, 0, &r);
            check_status(&c, &r, 204, "GET <location> after the 416");
            check_header_present(&c, &r, "Location", loc, sizeof(loc), "GET <location>");
            check_header_eq(&c, &r, "Range", want, "GET <location> after the 416");
            resp_release(&r);
        }
    }
    check_end(&c);

    check_begin(&c, "push-chunked-close-with-chunk",
                "closing PUT ?digest= carrying the last chunk (Content-Range) answers 201 with a "
                "Location of the whole blob");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc))) {
        snprintf(range, sizeof(range), "0-%zu", m - 1);
        patch_ok(x, &c, loc, sizeof(loc), b.data, m, range, NULL, "PATCH 0-2499");
        snprintf(range, sizeof(range), "%zu-%zu", m, b.len - 1);
        close_ok(x, &c, loc, &b, m, range, "PUT ?digest= with the last chunk");
    }
    check_end(&c);
    suite_doc_release(&b);

    /* chunks without Content-Range (what docker and containerd send) */
    suite_doc_random(&b, "application/octet-stream", 3000);
    check_begin(&c, "push-chunked-no-range",
                "PATCH chunks without Content-Range answer 202 with Range: 0-<end>; closing PUT "
                "without a body answers 201");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc))) {
        patch_ok(x, &c, loc, sizeof(loc), b.data, 1000, NULL, "0-999",
                 "first PATCH without Content-Range");
        patch_ok(x, &c, loc, sizeof(loc), b.data + 1000, b.len - 1000, NULL, "0-2999",
                 "second PATCH without Content-Range");
        close_ok(x, &c, loc, &b, b.len, NULL, "PUT ?digest= without a body");
    }
    check_end(&c);
    suite_doc_release(&b);
}

/* a blob larger than any buffer a registry would hold in memory per request,
 * in two PATCHes and a body-less PUT, read back whole and by Range */
static void
push_large(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct doc b;
    char loc[2048], path[1024], range[96], rh[96];
    const size_t half = 6u << 20;

    suite_doc_random(&b, "application/octet-stream", 2 * half + 12345);
    check_begin(
        &c, "push-large-blob",
        "a 12 MiB blob pushed in two PATCHes reads back byte-identical, whole and by Range");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc))) {
        snprintf(range, sizeof(range), "0-%zu", half - 1);
        patch_ok(x, &c, loc, sizeof(loc), b.data, half, range, range, "PATCH of 6 MiB");
        snprintf(range, sizeof(range), "%zu-%zu", half, b.len - 1);
        patch_ok(x, &c, loc, sizeof(loc), b.data + half, b.len - half, range, NULL, "second PATCH");
        close_ok(x, &c, loc, &b, b.len, NULL, "closing PUT");
        if (check_ok(&c)) {
            const char *h[] = {rh, NULL};
            snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo, b.digest);
            snprintf(rh, sizeof(rh), "Range: bytes=%zu-%zu", half - 1000, half + 999);
            client_do(x->cl, "GET", path, h, NULL, 0, &r);
            check_status(&c, &r, 206, rh);
            check_body_eq(&c, &r, b.data + half - 1000, 2000, rh);
            resp_release(&r);
        }
    }
    check_end(&c);
    suite_doc_release(&b);
}

static void
push_sessions(struct ctx *x)
{
    struct check c;
    struct resp r;
    char loc[2048], path[1024], hex[33];

    /* an upload session belongs to its repository: with the common
     * /v2/<name>/blobs/uploads/<id> layout, the same id under another name
     * must not reach it (a Location in another layout cannot be re-scoped, and
     * the check has nothing to try) */
    check_begin(&c, "push-upload-other-repo",
                "an upload session of one repository is 404 BLOB_UPLOAD_UNKNOWN under another "
                "repository's name");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc))) {
        char prefix[400];
        snprintf(prefix, sizeof(prefix), "/v2/%s/blobs/uploads/", x->repo);
        const char *at = strstr(loc, prefix);
        if (at != NULL) {
            snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/%s", x->repo2, at + strlen(prefix));
            client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
            check_error_body(&c, &r, 404, "BLOB_UPLOAD_UNKNOWN", path);
            resp_release(&r);
            client_do(x->cl, "PATCH", path, OCTET, "abc", 3, &r);
            check_error_body(&c, &r, 404, "BLOB_UPLOAD_UNKNOWN", path);
            resp_release(&r);
        }
        client_do(x->cl, "DELETE", loc, NULL, NULL, 0, &r);
        resp_release(&r);
    }
    check_end(&c);

    check_begin(
        &c, "push-upload-cancel",
        "DELETE of an upload answers 204; the upload is then 404 BLOB_UPLOAD_UNKNOWN (end-14)");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc, sizeof(loc))) {
        if (patch_ok(x, &c, loc, sizeof(loc), "0123456789", 10, "0-9", NULL, "PATCH 0-9")) {
            client_do(x->cl, "DELETE", loc, NULL, NULL, 0, &r);
            check_status(&c, &r, 204, "DELETE <location>");
            resp_release(&r);
        }
        if (check_ok(&c)) {
            client_do(x->cl, "GET", loc, NULL, NULL, 0, &r);
            check_error_body(&c, &r, 404, "BLOB_UPLOAD_UNKNOWN", "GET of the cancelled upload");
            resp_release(&r);
        }
    }
    check_end(&c);

    check_begin(&c, "push-upload-unknown",
                "GET, PATCH, PUT and DELETE of an unknown upload answer 404 BLOB_UPLOAD_UNKNOWN");
    if (check_require(&c, x->base_ok, "base-v2")) {
        const char *methods[] = {"GET", "PATCH", "PUT", "DELETE"};
        char dg[UTIL_DIGEST_MAX];
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/%s?digest=%s", x->repo,
                 util_random_hex(hex, 32), util_digest("sha256", "x", 1, dg));
        for (int i = 0; i < 4 && check_ok(&c); i++) {
            char what[64];
            snprintf(what, sizeof(what), "%s of an unknown upload", methods[i]);
            int body = methods[i][1] == 'A' || methods[i][1] == 'U';
            client_do(x->cl, methods[i], path, body ? OCTET : NULL, body ? "x" : NULL, body ? 1 : 0,
                      &r);
            check_error_body(&c, &r, 404, "BLOB_UPLOAD_UNKNOWN", what);
            resp_release(&r);
        }
    }
    check_end(&c);
}

/* spec "Pushing a blob in chunks" (main): a client pushing a digest other
 * than sha256 SHOULD pass ?digest-algorithm= on the POST (end-4c); "if the
 * client provided digest ... uses an unsupported algorithm, the registry
 * SHOULD respond with 400". So: a full sha512 round trip passes, and so does a
 * clean 400 refusal; anything else (5xx, accepting then losing the blob,
 * answering the blob under another digest) fails. */
/* spec "POST then PUT": registries MUST support concurrent uploads */
static void
push_concurrent(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct doc b[2];
    char loc[2][2048];

    suite_doc_random(&b[0], "application/octet-stream", 1800);
    suite_doc_random(&b[1], "application/octet-stream", 1900);
    check_begin(&c, "push-concurrent-sessions",
                "two interleaved upload sessions get distinct Locations and both complete");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc[0], sizeof(loc[0])) &&
        start_upload(x, &c, x->repo, NULL, loc[1], sizeof(loc[1]))) {
        check_true(&c, strcmp(loc[0], loc[1]) != 0, "both sessions got Location %s", loc[0]);
        for (int i = 0; i < 2; i++)
            patch_ok(x, &c, loc[i], sizeof(loc[i]), b[i].data, 1000, "0-999", NULL, "PATCH 0-999");
        for (int i = 0; i < 2; i++) {
            char range[64];
            snprintf(range, sizeof(range), "1000-%zu", b[i].len - 1);
            close_ok(x, &c, loc[i], &b[i], 1000, range, "closing PUT");
        }
    }
    check_end(&c);
    suite_doc_release(&b[0]);
    suite_doc_release(&b[1]);

    /* spec: "The closing PUT request MUST include the <digest> of the whole
     * blob" */
    check_begin(&c, "push-close-without-digest",
                "closing PUT without ?digest= answers 400 with an error body");
    if (check_require(&c, x->base_ok, "base-v2") &&
        start_upload(x, &c, x->repo, NULL, loc[0], sizeof(loc[0]))) {
        client_do(x->cl, "PUT", loc[0], OCTET, "abc", 3, &r);
        check_error_body(&c, &r, 400, NULL, "PUT <location> without digest");
        resp_release(&r);
    }
    check_end(&c);
}

static void
push_sha512(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct doc b;
    char loc[2048], bloc[2048], path[1024], d512[UTIL_DIGEST_MAX];

    suite_doc_random(&b, "application/octet-stream", 2222);
    util_digest("sha512", b.data, b.len, d512);
    check_begin(&c, "push-sha512",
                "POST ?digest-algorithm=sha512 then PUT ?digest=sha512:... stores the blob under "
                "its sha512 digest, or refuses with 400 (end-4c)");
    if (check_require(&c, x->base_ok, "base-v2")) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest-algorithm=sha512", x->repo);
        client_do(x->cl, "POST", path, NULL, NULL, 0, &r);
        if (r.status == 400) {
            check_error_body(&c, &r, 400, NULL, "POST ?digest-algorithm=sha512 (refused)");
            resp_release(&r);
            goto out;
        }
        check_status(&c, &r, 202, path);
        check_header_present(&c, &r, "Location", loc, sizeof(loc), path);
        resp_release(&r);
        if (!check_ok(&c))
            goto out;
        close_upload(x, loc, d512, b.data, b.len, NULL, &r);
        if (r.status == 400) {
            check_error_body(&c, &r, 400, NULL, "PUT ?digest=sha512:... (refused)");
            resp_release(&r);
            goto out;
        }
        check_status(&c, &r, 201, "PUT ?digest=sha512:...");
        check_header_present(&c, &r, "Location", bloc, sizeof(bloc), "PUT ?digest=sha512:...");
        resp_release(&r);
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo, d512);
        if (check_ok(&c)) {
            client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
            check_status(&c, &r, 200, "GET /blobs/sha512:...");
            check_body_eq(&c, &r, b.data, b.len, "GET /blobs/sha512:...");
            /* spec "Pulling blobs": Docker-Content-Digest, if present, MUST
             * match the body; it MAY use another algorithm than the request */
            char dh[UTIL_DIGEST_MAX + 8], calc[UTIL_DIGEST_MAX];
            if (resp_header(&r, "Docker-Content-Digest", dh, sizeof(dh))) {
                int known = strncmp(dh, "sha256:", 7) == 0 || strncmp(dh, "sha512:", 7) == 0;
                if (known) {
                    dh[6] = '\0';
                    util_digest(dh, r.body, r.body_len, calc);
                    dh[6] = ':';
                }
                check_true(
                    &c, known && strcmp(dh, calc) == 0,
                    "GET /blobs/sha512:...: Docker-Content-Digest %s does not match the body", dh);
            }
            resp_release(&r);
        }
    }
out:
    check_end(&c);
    suite_doc_release(&b);
}

static void
push_mount(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct doc b;
    char loc[2048], path[1024], why[512];
    int have;

    suite_doc_random(&b, "application/octet-stream", 1500);
    have = x->base_ok && suite_blob_push(x, x->repo, &b, why, sizeof(why)) == 0;

    check_begin(&c, "push-mount",
                "POST ?mount=<digest>&from=<other repo> answers 201 with a Location; the blob is "
                "then pullable here (end-11)");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, have, "setup: push to %s: %s", x->repo, why)) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?mount=%s&from=%s", x->repo2, b.digest,
                 x->repo);
        client_do(x->cl, "POST", path, NULL, NULL, 0, &r);
        check_status(&c, &r, 201, path);
        check_header_present(&c, &r, "Location", loc, sizeof(loc), path);
        resp_release(&r);
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo2, b.digest);
        expect_pullable(x, &c, path, &b);
    }
    check_end(&c);

    check_begin(
        &c, "push-mount-missing",
        "mount of a blob the source does not have answers 202 with a Location (an upload session)");
    if (check_require(&c, x->base_ok, "base-v2")) {
        char dg[UTIL_DIGEST_MAX], hex[33];
        util_digest("sha256", util_random_hex(hex, 32), 32, dg);
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?mount=%s&from=%s", x->repo2, dg,
                 x->repo);
        client_do(x->cl, "POST", path, NULL, NULL, 0, &r);
        check_status(&c, &r, 202, path);
        check_header_present(&c, &r, "Location", loc, sizeof(loc), path);
        resp_release(&r);
        if (check_ok(&c)) {
            /* the session is a real one: it reports an empty upload */
            client_do(x->cl, "GET", loc, NULL, NULL, 0, &r);
            check_status(&c, &r, 204, "GET of the session a failed mount opened");
            resp_release(&r);
            client_do(x->cl, "DELETE", loc, NULL, NULL, 0, &r);
            resp_release(&r);
        }
    }
    check_end(&c);

    /* spec: "The registry MAY treat the from parameter as optional, and it MAY
     * cross-mount the blob if it can be found"; otherwise it SHOULD answer 202 */
    check_begin(&c, "push-mount-no-from",
                "mount without from answers 201 with a pullable blob, or 202 with a Location");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, have, "setup: push to %s: %s", x->repo, why)) {
        char third[300];
        snprintf(third, sizeof(third), "%s/nofrom", x->repo);
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?mount=%s", third, b.digest);
        client_do(x->cl, "POST", path, NULL, NULL, 0, &r);
        if (r.status == 201) {
            check_header_present(&c, &r, "Location", loc, sizeof(loc), path);
            snprintf(path, sizeof(path), "/v2/%s/blobs/%s", third, b.digest);
            expect_pullable(x, &c, path, &b);
        } else {
            check_status(&c, &r, 202, path);
            check_header_present(&c, &r, "Location", loc, sizeof(loc), path);
        }
        resp_release(&r);
    }
    check_end(&c);
    suite_doc_release(&b);
}

/* PUT manifest, expect 201 + Location + Docker-Content-Digest; the Location
 * must serve the same bytes */
static void
expect_manifest_put(struct ctx *x, struct check *c, const char *repo, const char *ref,
                    const struct doc *m)
{
    struct resp r;
    char loc[2048];

    suite_manifest_put(x, repo, ref, m, &r);
    check_status(c, &r, 201, "PUT manifest");
    check_header_present(c, &r, "Location", loc, sizeof(loc), "PUT manifest");
    check_header_eq(c, &r, "Docker-Content-Digest", m->digest, "PUT manifest");
    resp_release(&r);
    if (check_ok(c))
        suite_expect_get(x, c, loc, 1, m, "GET of the manifest Location");
}

static void
push_manifests(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct image im, sub;
    struct image_opts o = {0};
    char why[512], path[1024];
    int blobs;

    suite_image_make(&im, &o);
    blobs = x->base_ok && suite_blob_push(x, x->repo, &im.config, why, sizeof(why)) == 0 &&
            suite_blob_push(x, x->repo, &im.layer, why, sizeof(why)) == 0;

    check_begin(&c, "push-manifest-tag",
                "PUT manifest by tag answers 201 with Location and Docker-Content-Digest (end-7)");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, blobs, "setup: push the image blobs: %s", why))
        expect_manifest_put(x, &c, x->repo, "pushed", &im.manifest);
    check_end(&c);

    check_begin(&c, "push-manifest-digest",
                "PUT manifest by digest answers 201 with Location and Docker-Content-Digest");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, blobs, "setup: push the image blobs: %s", why))
        expect_manifest_put(x, &c, x->repo, im.manifest.digest, &im.manifest);
    check_end(&c);

    /* distribution-spec main, end-7b: PUT by digest with several tag query
     * parameters tags the manifest with each */
    check_begin(&c, "push-manifest-multi-tag",
                "PUT manifest by digest with ?tag=a&tag=b&tag=c answers 201 and each tag resolves "
                "to it (end-7b)");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, blobs, "setup: push the image blobs: %s", why)) {
        char ref[512];
        const char *tags[] = {"multi-a", "multi-b", "multi-c"};
        snprintf(ref, sizeof(ref), "%s?tag=%s&tag=%s&tag=%s", im.manifest.digest, tags[0], tags[1],
                 tags[2]);
        suite_manifest_put(x, x->repo, ref, &im.manifest, &r);
        check_status(&c, &r, 201, "PUT manifests/<digest>?tag=...");
        check_header_eq(&c, &r, "Docker-Content-Digest", im.manifest.digest, "PUT ?tag=");
        resp_release(&r);
        for (int i = 0; i < 3 && check_ok(&c); i++) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, tags[i]);
            suite_expect_get(x, &c, path, 1, &im.manifest, path);
        }
    }
    check_end(&c);

    /* a tag is a pointer: pushing another manifest at it moves it, and the
     * first manifest stays reachable by digest */
    check_begin(
        &c, "push-manifest-retag",
        "PUT of a second manifest at an existing tag moves the tag; the first stays by digest");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, blobs, "setup: push the image blobs: %s", why)) {
        struct image two;
        struct image_opts to = {.no_layer = 1};
        suite_image_make(&two, &to);
        suite_manifest_put(x, x->repo, "retag", &im.manifest, &r);
        check_status(&c, &r, 201, "PUT first manifest at retag");
        resp_release(&r);
        if (check_ok(&c))
            check_true(&c, suite_image_push(x, x->repo, &two, "retag", why, sizeof(why)) == 0, "%s",
                       why);
        if (check_ok(&c)) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/retag", x->repo);
            suite_expect_get(x, &c, path, 1, &two.manifest, "GET of the moved tag");
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, im.manifest.digest);
            suite_expect_get(x, &c, path, 1, &im.manifest, "GET of the first manifest by digest");
        }
        suite_image_release(&two);
    }
    check_end(&c);

    /* spec "Push": a registry MAY reject a manifest referencing unknown blobs;
     * when it does, the error MUST be MANIFEST_BLOB_UNKNOWN. ocireg rejects,
     * so the suite expects the rejection. */
    check_begin(
        &c, "push-manifest-blob-unknown",
        "PUT manifest referencing a blob that was never pushed answers 400 MANIFEST_BLOB_UNKNOWN");
    if (check_require(&c, x->base_ok, "base-v2")) {
        struct image miss;
        suite_image_make(&miss, &o);
        if (check_true(&c, suite_blob_push(x, x->repo, &miss.config, why, sizeof(why)) == 0,
                       "setup: push config: %s", why)) {
            suite_manifest_put(x, x->repo, "missing-blob", &miss.manifest, &r);
            check_error_body(&c, &r, 400, "MANIFEST_BLOB_UNKNOWN",
                             "PUT manifest with a missing layer");
            resp_release(&r);
        }
        suite_image_release(&miss);
    }
    check_end(&c);

    check_begin(&c, "push-manifest-invalid",
                "PUT manifest whose body is not valid JSON answers 400 MANIFEST_INVALID");
    if (check_require(&c, x->base_ok, "base-v2")) {
        struct doc bad;
        suite_doc_set(&bad, MT_OCI_MANIFEST, "{\"schemaVersion\": 2, \"mediaType\": ", 33);
        suite_manifest_put(x, x->repo, "invalid", &bad, &r);
        check_error_body(&c, &r, 400, "MANIFEST_INVALID", "PUT invalid JSON");
        resp_release(&r);
        suite_doc_release(&bad);
    }
    check_end(&c);

    check_begin(
        &c, "push-manifest-digest-mismatch",
        "PUT manifest at a digest that does not match its bytes answers 400 DIGEST_INVALID");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, blobs, "setup: push the image blobs: %s", why)) {
        char wrong[UTIL_DIGEST_MAX];
        util_digest("sha256", "something else", 14, wrong);
        suite_manifest_put(x, x->repo, wrong, &im.manifest, &r);
        check_error_body(&c, &r, 400, "DIGEST_INVALID", "PUT manifest at a wrong digest");
        resp_release(&r);
    }
    check_end(&c);

    /* spec "Pushing Manifests with Subject": a registry that supports the
     * referrers API MUST answer OCI-Subject */
    o.artifact_type = "application/vnd.conformance.subject-test";
    o.empty_config = 1;
    o.subject = &im.manifest;
    suite_image_make(&sub, &o);
    check_begin(&c, "push-manifest-subject",
                "PUT manifest with a subject answers 201 with OCI-Subject: <subject digest>");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, blobs, "setup: push the image blobs: %s", why) &&
        check_true(&c,
                   suite_blob_push(x, x->repo, &sub.config, why, sizeof(why)) == 0 &&
                       suite_blob_push(x, x->repo, &sub.layer, why, sizeof(why)) == 0,
                   "setup: %s", why)) {
        suite_manifest_put(x, x->repo, sub.manifest.digest, &sub.manifest, &r);
        check_status(&c, &r, 201, "PUT manifest with subject");
        check_header_eq(&c, &r, "OCI-Subject", im.manifest.digest, "PUT manifest with subject");
        resp_release(&r);
    }
    check_end(&c);
    suite_image_release(&sub);

    /* spec "Push": a registry MUST initially accept a manifest whose subject
     * does not exist (yet) */
    {
        struct doc ghost;
        suite_doc_random(&ghost, MT_OCI_MANIFEST, 321);
        o.subject = &ghost;
        suite_image_make(&sub, &o);
        check_begin(&c, "push-manifest-subject-missing",
                    "PUT manifest whose subject does not exist answers 201");
        if (check_require(&c, x->base_ok, "base-v2") &&
            check_true(&c,
                       suite_blob_push(x, x->repo, &sub.config, why, sizeof(why)) == 0 &&
                           suite_blob_push(x, x->repo, &sub.layer, why, sizeof(why)) == 0,
                       "setup: %s", why)) {
            suite_manifest_put(x, x->repo, sub.manifest.digest, &sub.manifest, &r);
            check_status(&c, &r, 201, "PUT manifest with a missing subject");
            resp_release(&r);
        }
        check_end(&c);
        suite_image_release(&sub);
        suite_doc_release(&ghost);
    }

    /* the other manifest types real clients push */
    {
        struct doc idx, list;
        struct image dk;
        struct image_opts dopts = {.docker = 1};

        suite_index_doc(&idx, MT_OCI_INDEX, &im.manifest);
        check_begin(&c, "push-manifest-oci-index",
                    "PUT an OCI image index answers 201 with Location and Docker-Content-Digest");
        if (check_require(&c, x->base_ok, "base-v2") &&
            check_true(&c, blobs, "setup: push the image blobs: %s", why)) {
            suite_manifest_put(x, x->repo, im.manifest.digest, &im.manifest, &r);
            check_status(&c, &r, 201, "setup: PUT the child manifest");
            resp_release(&r);
            if (check_ok(&c))
                expect_manifest_put(x, &c, x->repo, "pushed-index", &idx);
        }
        check_end(&c);
        suite_doc_release(&idx);

        suite_image_make(&dk, &dopts);
        check_begin(
            &c, "push-manifest-docker",
            "PUT a Docker schema2 manifest answers 201 with Location and Docker-Content-Digest");
        int dk_ok = 0;
        if (check_require(&c, x->base_ok, "base-v2") &&
            check_true(&c,
                       suite_blob_push(x, x->repo, &dk.config, why, sizeof(why)) == 0 &&
                           suite_blob_push(x, x->repo, &dk.layer, why, sizeof(why)) == 0,
                       "setup: %s", why)) {
            expect_manifest_put(x, &c, x->repo, "pushed-docker", &dk.manifest);
        }
        dk_ok = check_end(&c);

        suite_index_doc(&list, MT_DOCKER_LIST, &dk.manifest);
        check_begin(
            &c, "push-manifest-docker-list",
            "PUT a Docker manifest list answers 201 with Location and Docker-Content-Digest");
        if (check_require(&c, dk_ok, "push-manifest-docker"))
            expect_manifest_put(x, &c, x->repo, "pushed-docker-list", &list);
        check_end(&c);
        suite_doc_release(&list);
        suite_image_release(&dk);
    }
    suite_image_release(&im);
}

void
suite_push(struct ctx *x)
{
    push_monolithic(x);
    push_chunked(x);
    push_large(x);
    push_sessions(x);
    push_concurrent(x);
    push_sha512(x);
    push_mount(x);
    push_manifests(x);
}
