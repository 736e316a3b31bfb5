/* errors.c - the error responses of the spec ("Error Codes"): the JSON body
 * shape, the codes for unknown content and invalid names and digests, and
 * path traversal attempts, which must never succeed. */
#include "conformance/suite.h"

#include <stdio.h>
#include <string.h>

#include "conformance/check.h"
#include "conformance/client.h"
#include "common/banned.h"

/* 400 with `code`, or 404 (with a spec error body if the body is JSON) */
static void
expect_400_or_404(struct check *c, const struct resp *r, const char *code, const char *what)
{
    if (!check_transport(c, r, what))
        return;
    if (r->status == 400) {
        check_error_body(c, r, 400, code, what);
    } else if (r->status == 404) {
        char ct[128];
        resp_header(r, "Content-Type", ct, sizeof(ct));
        if (strncmp(ct, "application/json", 16) == 0)
            check_error_body(c, r, 404, NULL, what);
    } else {
        check_true(c, 0, "%s: expected 400 %s or 404, got %ld", what, code, r->status);
    }
}

/* GET and HEAD of manifests/<ref> in the run's repository: 404, and a JSON
 * body (the spec allows any 4xx body format) with code MANIFEST_UNKNOWN */
static void
expect_manifest_unknown(struct ctx *x, struct check *c, const char *ref)
{
    char path[2048];
    struct resp r;
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, ref);
    suite_req(x, "GET", path, &r);
    if (check_transport(c, &r, path)) {
        char ct[128];
        resp_header(&r, "Content-Type", ct, sizeof(ct));
        if (strncmp(ct, "application/json", 16) == 0)
            check_error_body(c, &r, 404, "MANIFEST_UNKNOWN", path);
        else
            check_status(c, &r, 404, path);
    }
    resp_release(&r);
    if (!check_ok(c))
        return;
    suite_req(x, "HEAD", path, &r);
    if (check_transport(c, &r, path))
        check_status(c, &r, 404, path);
    resp_release(&r);
}

void
suite_errors(struct ctx *x)
{
    struct check c;
    struct resp r;
    char path[2048], hex[33];

    check_begin(&c, "err-blob-unknown",
                "GET of an unknown blob answers 404 with Content-Type application/json and code "
                "BLOB_UNKNOWN");
    if (check_require(&c, x->base_ok, "base-v2"))
        suite_expect_unknown(x, &c, "GET", "blobs", "BLOB_UNKNOWN");
    check_end(&c);

    check_begin(&c, "err-manifest-unknown",
                "GET of an unknown tag or digest answers 404 with code MANIFEST_UNKNOWN");
    if (check_require(&c, x->base_ok, "base-v2")) {
        snprintf(path, sizeof(path), "/v2/%s/manifests/no-such-tag-%s", x->repo,
                 util_random_hex(hex, 8));
        suite_req(x, "GET", path, &r);
        check_error_body(&c, &r, 404, "MANIFEST_UNKNOWN", path);
        resp_release(&r);
        suite_expect_unknown(x, &c, "GET", "manifests", "MANIFEST_UNKNOWN");
    }
    check_end(&c);

    /* spec "Pulling manifests": a manifest not found MUST be 404. A reference
     * that is neither a tag nor a digest names no manifest, so a GET or HEAD
     * of it is 404 as well, not 400 (clients treat 404 as "not there"); a
     * JSON body says MANIFEST_UNKNOWN */
    check_begin(&c, "err-manifest-invalid-reference",
                "GET/HEAD of a manifest reference that is not a valid tag (leading '-' or '.', "
                "129 characters, '+') answers 404 (code MANIFEST_UNKNOWN when JSON), never 400");
    if (check_require(&c, x->base_ok, "base-v2")) {
        char longtag[140];
        memset(longtag, 'a', 129);
        longtag[129] = '\0';
        const char *refs[] = {"-dash", ".dot", longtag, "bad+tag"};
        for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]) && check_ok(&c); i++)
            expect_manifest_unknown(x, &c, refs[i]);
    }
    check_end(&c);

    check_begin(&c, "err-manifest-malformed-digest",
                "GET/HEAD of a manifest at a malformed digest (sha256:abc, sha256:nothex) answers "
                "404 (code MANIFEST_UNKNOWN when JSON)");
    if (check_require(&c, x->base_ok, "base-v2")) {
        const char *refs[] = {"sha256:abc", "sha256:nothex"};
        for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]) && check_ok(&c); i++)
            expect_manifest_unknown(x, &c, refs[i]);
    }
    check_end(&c);

    /* spec: code-8 NAME_INVALID "invalid repository name"; the endpoint table
     * lists 404 as the failure of every <name> endpoint, so a registry whose
     * router does not match an invalid name may answer 404 instead */
    check_begin(
        &c, "err-name-invalid",
        "requests on an invalid repository name answer 400 NAME_INVALID (or 404), never 2xx");
    if (check_require(&c, x->base_ok, "base-v2")) {
        const char *names[] = {"Conformance/UPPER", "conformance/a..b", "conformance/-lead",
                               "conformance/trail-"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && check_ok(&c); i++) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/latest", names[i]);
            suite_req(x, "GET", path, &r);
            expect_400_or_404(&c, &r, "NAME_INVALID", path);
            resp_release(&r);
            snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", names[i]);
            client_do(x->cl, "POST", path, NULL, NULL, 0, &r);
            expect_400_or_404(&c, &r, "NAME_INVALID", path);
            resp_release(&r);
        }
    }
    check_end(&c);

    /* spec "Pulling manifests": a tag is at most 128 characters of
     * [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}; anything else is not a reference */
    check_begin(&c, "err-tag-invalid",
                "PUT manifest at an invalid tag (leading '.', '-', 129 characters) answers 400 or "
                "404, never 201");
    if (check_require(&c, x->base_ok, "base-v2")) {
        char longtag[140];
        memset(longtag, 'a', 129);
        longtag[129] = '\0';
        const char *tags[] = {".dot", "-dash", longtag};
        for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]) && check_ok(&c); i++) {
            struct doc m;
            suite_doc_set(&m, MT_OCI_MANIFEST, "{}", 2);
            suite_manifest_put(x, x->repo, tags[i], &m, &r);
            if (check_transport(&c, &r, tags[i]))
                check_true(&c, r.status == 400 || r.status == 404,
                           "PUT manifests/%.20s...: expected 400 or 404, got %ld", tags[i],
                           r.status);
            resp_release(&r);
            suite_doc_release(&m);
        }
    }
    check_end(&c);

    check_begin(&c, "err-digest-invalid",
                "a malformed digest answers 400 DIGEST_INVALID (or 404 on GET), never 2xx");
    if (check_require(&c, x->base_ok, "base-v2")) {
        const char *bad[] = {"sha256:nothex", "sha256:abc",
                             ("sha256:"
                              "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeX"),
                             "md5:d41d8cd98f00b204e9800998ecf8427e"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]) && check_ok(&c); i++) {
            snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo, bad[i]);
            client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
            expect_400_or_404(&c, &r, "DIGEST_INVALID", path);
            resp_release(&r);
        }
        /* on upload the digest is a query parameter the route always matches:
         * spec "Pushing blobs": invalid digest SHOULD be 400 */
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=sha256:nothex", x->repo);
        client_do(x->cl, "POST", path, NULL, "abc", 3, &r);
        if (r.status == 202) {
            /* single POST not supported: the digest is checked on PUT */
            char loc[2048], url[4096];
            check_header_present(&c, &r, "Location", loc, sizeof(loc), path);
            resp_release(&r);
            if (check_ok(&c)) {
                util_with_query(loc, "digest=sha256:nothex", url, sizeof(url));
                client_do(x->cl, "PUT", url, NULL, "abc", 3, &r);
                check_error_body(&c, &r, 400, "DIGEST_INVALID", "PUT ?digest=sha256:nothex");
            }
        } else {
            check_error_body(&c, &r, 400, "DIGEST_INVALID", path);
        }
        resp_release(&r);
    }
    check_end(&c);

    check_begin(&c, "err-path-traversal",
                "path traversal attempts (../, %2e%2e, %2f) never answer 2xx");
    if (check_require(&c, x->base_ok, "base-v2")) {
        /* {prefix the repository?, rest of the path after /v2/[<repo>/]} */
        static const struct {
            int in_repo;
            const char *rest;
        } t[] = {
            {0, "../../../../etc/passwd"},
            {0, "%2e%2e/%2e%2e/%2e%2e/etc/passwd"},
            {1, "blobs/..%2f..%2f..%2f..%2fetc%2fpasswd"},
            {1, "blobs/sha256:..%2f..%2f..%2fmeta.db"},
            {1, "manifests/..%2f..%2f..%2f..%2fetc%2fpasswd"},
            {1, "manifests/../../../../etc/passwd"},
            {1, "../../../etc/passwd/tags/list"},
            {0, "%2e%2e%2f%2e%2e%2fetc/tags/list"},
            {1, "blobs/uploads/..%2f..%2f..%2fetc%2fpasswd"},
            {1, "%2e%2e/%2e%2e/blobs/uploads/"},
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]) && check_ok(&c); i++) {
            snprintf(path, sizeof(path), "/v2/%s%s%s", t[i].in_repo ? x->repo : "",
                     t[i].in_repo ? "/" : "", t[i].rest);
            const char *method = i == 9 ? "POST" : "GET";
            client_do(x->cl, method, path, NULL, NULL, 0, &r);
            if (check_transport(&c, &r, path)) {
                check_true(&c, r.status < 200 || r.status > 299, "%s %s answered %ld", method, path,
                           r.status);
                check_true(&c, strstr(r.body, "root:") == NULL, "%s %s leaked /etc/passwd", method,
                           path);
            }
            resp_release(&r);
        }
    }
    check_end(&c);
}
