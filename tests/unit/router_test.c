/* router_test.c - route parsing: names with slashes, every route kind, methods,
 * and hostile paths (traversal, bad names, digests, tags, upload ids). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "server/api_internal.h"
#include "server/router.h"

#include "common/banned.h"

#define D64 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct route rt;
static struct err e;

static int
match(enum http_method m, const char *path)
{
    memset(&rt, 0x5a, sizeof(rt));
    err_clear(&e);
    return router_match(m, path, &rt, &e);
}

static void
expect_ok(enum http_method m, const char *path, enum route_kind k, const char *name,
          const char *ref)
{
    int rc = match(m, path);
    cr_assert_eq(rc, 0, "%s: rc %d code %d (%s)", path, rc, e.code, e.msg);
    cr_assert_eq(rt.kind, k, "%s: kind %s", path, router_kind_name(rt.kind));
    cr_assert_str_eq(rt.name, name, "%s", path);
    cr_assert_str_eq(rt.ref, ref, "%s", path);
}

static void
expect_err(enum http_method m, const char *path, enum err_code code)
{
    int rc = match(m, path);
    cr_assert_eq(rc, -1, "%s: accepted as %s", path, router_kind_name(rt.kind));
    cr_assert_eq(e.code, code, "%s: code %d, want %d (%s)", path, e.code, code, e.msg);
}

Test(router, base_and_catalog)
{
    expect_ok(HTTP_M_GET, "/v2/", ROUTE_BASE, "", "");
    expect_ok(HTTP_M_GET, "/v2", ROUTE_BASE, "", "");
    expect_ok(HTTP_M_HEAD, "/v2/", ROUTE_BASE, "", "");
    expect_ok(HTTP_M_GET, "/v2/_catalog", ROUTE_CATALOG, "", "");
    expect_err(HTTP_M_POST, "/v2/", ERR_METHOD);
    cr_assert_eq(rt.kind, ROUTE_BASE);
    expect_err(HTTP_M_DELETE, "/v2/_catalog", ERR_METHOD);
}

Test(router, every_route_kind)
{
    expect_ok(HTTP_M_GET, "/v2/foo/tags/list", ROUTE_TAGS, "foo", "");
    expect_ok(HTTP_M_GET, "/v2/foo/manifests/latest", ROUTE_MANIFEST, "foo", "latest");
    cr_assert_eq(rt.ref_is_digest, 0);
    expect_ok(HTTP_M_PUT, "/v2/foo/manifests/" D64, ROUTE_MANIFEST, "foo", D64);
    cr_assert_eq(rt.ref_is_digest, 1);
    cr_assert_eq(rt.digest.algo, DIGEST_SHA256);
    expect_ok(HTTP_M_POST, "/v2/foo/blobs/uploads/", ROUTE_UPLOAD_START, "foo", "");
    expect_ok(HTTP_M_POST, "/v2/foo/blobs/uploads", ROUTE_UPLOAD_START, "foo", "");
    expect_ok(HTTP_M_PATCH, "/v2/foo/blobs/uploads/0b9d6a1e-7c3f-4e52-9a1b-1c2d3e4f5a6b",
              ROUTE_UPLOAD, "foo", "0b9d6a1e-7c3f-4e52-9a1b-1c2d3e4f5a6b");
    expect_ok(HTTP_M_GET, "/v2/foo/blobs/" D64, ROUTE_BLOB, "foo", D64);
    cr_assert_str_eq(rt.digest.hex, &D64[7]);
    expect_ok(HTTP_M_DELETE, "/v2/foo/blobs/" D64, ROUTE_BLOB, "foo", D64);
    expect_ok(HTTP_M_GET, "/v2/foo/referrers/" D64, ROUTE_REFERRERS, "foo", D64);
}

Test(router, names_with_slashes_parse_from_the_right)
{
    expect_ok(HTTP_M_GET, "/v2/a/b/c/tags/list", ROUTE_TAGS, "a/b/c", "");
    expect_ok(HTTP_M_GET, "/v2/blobs/manifests/latest", ROUTE_MANIFEST, "blobs", "latest");
    expect_ok(HTTP_M_GET, "/v2/a/blobs/b/manifests/v1", ROUTE_MANIFEST, "a/blobs/b", "v1");
    expect_ok(HTTP_M_GET, "/v2/tags/list/tags/list", ROUTE_TAGS, "tags/list", "");
    expect_ok(HTTP_M_GET, "/v2/x/manifests/y/blobs/" D64, ROUTE_BLOB, "x/manifests/y", D64);
    expect_ok(HTTP_M_POST, "/v2/my.org/team_a/app-1/blobs/uploads/", ROUTE_UPLOAD_START,
              "my.org/team_a/app-1", "");
    expect_ok(HTTP_M_GET, "/v2/blobs/uploads/blobs/uploads/abc", ROUTE_UPLOAD, "blobs/uploads",
              "abc");
}

Test(router, wrong_method_is_405_with_allow)
{
    expect_err(HTTP_M_POST, "/v2/foo/manifests/latest", ERR_METHOD);
    cr_assert_eq(rt.kind, ROUTE_MANIFEST);
    cr_assert_str_eq(router_allow(rt.kind), "GET, HEAD, PUT, DELETE");
    expect_err(HTTP_M_GET, "/v2/foo/blobs/uploads/", ERR_METHOD);
    cr_assert_str_eq(router_allow(rt.kind), "POST");
    expect_err(HTTP_M_PUT, "/v2/foo/blobs/" D64, ERR_METHOD);
    cr_assert_str_eq(router_allow(rt.kind), "GET, HEAD, DELETE");
    expect_err(HTTP_M_POST, "/v2/foo/tags/list", ERR_METHOD);
    expect_err(HTTP_M_OTHER, "/v2/foo/referrers/" D64, ERR_METHOD);
    expect_err(HTTP_M_HEAD, "/v2/foo/blobs/uploads/abc", ERR_METHOD);
    cr_assert_str_eq(router_allow(ROUTE_NONE), "");
}

Test(router, unknown_routes_are_not_found)
{
    const char *paths[] = {
        "/",
        "/v1/",
        "/v3/",
        "/v2x",
        "/v2/foo",
        "/v2/foo/bar",
        "/v2/foo/tags",
        "/v2/foo/tags/list/",
        "/v2/foo/manifests/",
        "/v2/foo/blobs/",
        "/v2/_catalog/",
        "/v2/foo/referrers/",
        "/v2/../../etc/passwd",
        "/v2/foo/blobs/../../x",
        "",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        expect_err(HTTP_M_GET, paths[i], ERR_NOT_FOUND);
        cr_assert_eq(rt.kind, ROUTE_NONE, "%s", paths[i]);
    }
    cr_assert_eq(router_match(HTTP_M_GET, NULL, &rt, &e), -1);
    cr_assert_eq(e.code, ERR_NOT_FOUND);
}

Test(router, traversal_and_bad_names_are_name_invalid)
{
    const char *paths[] = {
        "/v2/../manifests/latest",
        "/v2/../../etc/manifests/latest",
        "/v2/foo/../bar/manifests/latest",
        "/v2/./foo/tags/list",
        "/v2/%2e%2e/manifests/latest", /* not decoded: '%' is not in the grammar */
        "/v2/foo%2Fbar/tags/list",
        "/v2//foo/tags/list",
        "/v2/foo//bar/tags/list",
        "/v2/foo/tags/list/tags/list/",
        "/v2/Foo/tags/list",
        "/v2/foo./tags/list",
        "/v2/-foo/tags/list",
        "/v2/foo bar/tags/list",
        "/v2/foo\\bar/tags/list",
        "/v2/_catalog/tags/list",
        "/v2//tags/list",
        "/v2/foo/blobs/uploads/../../blobs/uploads/",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int rc = match(HTTP_M_GET, paths[i]);
        if (rc == 0)
            cr_assert_fail("%s accepted as %s name=%s", paths[i], router_kind_name(rt.kind),
                           rt.name);
        cr_assert(e.code == ERR_NAME_INVALID || e.code == ERR_NOT_FOUND || e.code == ERR_METHOD,
                  "%s: code %d", paths[i], e.code);
    }
    expect_err(HTTP_M_GET, "/v2/../manifests/latest", ERR_NAME_INVALID);
    expect_err(HTTP_M_GET, "/v2/foo/../bar/tags/list", ERR_NAME_INVALID);
    expect_err(HTTP_M_GET, "/v2/%2e%2e/tags/list", ERR_NAME_INVALID);
    expect_err(HTTP_M_GET, "/v2/Foo/tags/list", ERR_NAME_INVALID);
}

Test(router, name_length_limit)
{
    char path[1024];
    char name[NAME_MAX_LEN + 2];
    memset(name, 'a', NAME_MAX_LEN);
    name[NAME_MAX_LEN] = '\0';
    snprintf(path, sizeof(path), "/v2/%s/tags/list", name);
    expect_ok(HTTP_M_GET, path, ROUTE_TAGS, name, "");
    name[NAME_MAX_LEN] = 'a';
    name[NAME_MAX_LEN + 1] = '\0';
    snprintf(path, sizeof(path), "/v2/%s/tags/list", name);
    expect_err(HTTP_M_GET, path, ERR_NAME_INVALID);
}

Test(router, references_tags_and_digests)
{
    expect_ok(HTTP_M_GET, "/v2/foo/manifests/v1.2.3-rc_1", ROUTE_MANIFEST, "foo", "v1.2.3-rc_1");
    expect_ok(HTTP_M_GET, "/v2/foo/manifests/_x", ROUTE_MANIFEST, "foo", "_x");
    /* a reference that is neither a tag nor a digest cannot name a manifest:
     * unknown on GET/HEAD/DELETE, invalid on PUT */
    expect_err(HTTP_M_GET, "/v2/foo/manifests/-bad", ERR_MANIFEST_UNKNOWN);
    expect_err(HTTP_M_HEAD, "/v2/foo/manifests/.bad", ERR_MANIFEST_UNKNOWN);
    expect_err(HTTP_M_DELETE, "/v2/foo/manifests/..", ERR_MANIFEST_UNKNOWN);
    expect_err(HTTP_M_PUT, "/v2/foo/manifests/-bad", ERR_MANIFEST_INVALID);
    expect_err(HTTP_M_PUT, "/v2/foo/manifests/a+b", ERR_MANIFEST_INVALID);
    char path[512], tag[TAG_MAX_LEN + 2];
    memset(tag, 'x', TAG_MAX_LEN);
    tag[TAG_MAX_LEN] = '\0';
    snprintf(path, sizeof(path), "/v2/foo/manifests/%s", tag);
    expect_ok(HTTP_M_GET, path, ROUTE_MANIFEST, "foo", tag);
    tag[TAG_MAX_LEN] = 'x';
    tag[TAG_MAX_LEN + 1] = '\0';
    snprintf(path, sizeof(path), "/v2/foo/manifests/%s", tag);
    expect_err(HTTP_M_GET, path, ERR_MANIFEST_UNKNOWN);
    expect_err(HTTP_M_PUT, path, ERR_MANIFEST_INVALID);

    expect_err(HTTP_M_GET, "/v2/foo/manifests/sha256:abc", ERR_MANIFEST_UNKNOWN);
    expect_err(HTTP_M_HEAD, "/v2/foo/manifests/sha256:..", ERR_MANIFEST_UNKNOWN);
    expect_err(HTTP_M_PUT, "/v2/foo/manifests/sha256:abc", ERR_DIGEST_INVALID);
    expect_err(HTTP_M_PUT, "/v2/foo/manifests/sha256:..", ERR_DIGEST_INVALID);
    expect_err(HTTP_M_GET, "/v2/foo/blobs/sha256:0123", ERR_DIGEST_INVALID);
    expect_err(HTTP_M_GET, "/v2/foo/blobs/latest", ERR_DIGEST_INVALID);
    expect_err(
        HTTP_M_GET,
        "/v2/foo/blobs/sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        ERR_DIGEST_INVALID);
    expect_err(
        HTTP_M_GET,
        "/v2/foo/blobs/blake3:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ERR_DIGEST_INVALID);
    expect_err(HTTP_M_GET, "/v2/foo/referrers/notadigest", ERR_DIGEST_INVALID);
    expect_err(HTTP_M_GET, "/v2/foo/blobs/" D64 "00", ERR_DIGEST_INVALID);
    char d512[200];
    snprintf(d512, sizeof(d512), "/v2/foo/blobs/sha512:%s%s", &D64[7], &D64[7]);
    expect_ok(HTTP_M_GET, d512, ROUTE_BLOB, "foo", d512 + 14);
    cr_assert_eq(rt.digest.algo, DIGEST_SHA512);
}

Test(router, upload_ids_only_of_issuable_form)
{
    expect_err(HTTP_M_PATCH, "/v2/foo/blobs/uploads/..", ERR_BLOB_UPLOAD_UNKNOWN);
    expect_err(HTTP_M_PATCH, "/v2/foo/blobs/uploads/a.b", ERR_BLOB_UPLOAD_UNKNOWN);
    expect_err(HTTP_M_GET, "/v2/foo/blobs/uploads/a%2fb", ERR_BLOB_UPLOAD_UNKNOWN);
    char path[256], id[80];
    memset(id, 'a', 65);
    id[65] = '\0';
    snprintf(path, sizeof(path), "/v2/foo/blobs/uploads/%s", id);
    expect_err(HTTP_M_DELETE, path, ERR_BLOB_UPLOAD_UNKNOWN);
    id[64] = '\0';
    snprintf(path, sizeof(path), "/v2/foo/blobs/uploads/%s", id);
    expect_ok(HTTP_M_DELETE, path, ROUTE_UPLOAD, "foo", id);
}

/* the JSON writer the api builds its listings with (server/api.c) */
Test(api_json, escapes_and_grows)
{
    struct api_worker w;
    memset(&w, 0, sizeof(w));
    struct jbuf j;
    jbuf_init(&j, &w, 1u << 20);
    jbuf_lit(&j, "[");
    jbuf_str(&j, "a\"b\\c\n\x01\x7f\xc3\xa9/");
    jbuf_lit(&j, ",");
    jbuf_u64(&j, 18446744073709551615ull);
    jbuf_lit(&j, "]");
    cr_assert_eq(j.len,
                 strlen("[\"a\\\"b\\\\c\\u000a\\u0001\\u007f\xc3\xa9/\",18446744073709551615]"));
    cr_assert(memcmp(jbuf_data(&j),
                     "[\"a\\\"b\\\\c\\u000a\\u0001\\u007f\xc3\xa9/\",18446744073709551615]",
                     j.len) == 0,
              "%.*s", (int)j.len, jbuf_data(&j));
    jbuf_done(&j);
    /* growth well past the first buffer, then the large buffer is dropped */
    jbuf_init(&j, &w, 64u << 20);
    char chunk[1000];
    memset(chunk, 'x', sizeof(chunk) - 1);
    chunk[sizeof(chunk) - 1] = '\0';
    for (int i = 0; i < 3000; i++)
        jbuf_str(&j, chunk);
    cr_assert_eq(j.len, 3000u * 1001u);
    cr_assert_eq(jbuf_data(&j)[0], '"');
    cr_assert_eq(jbuf_data(&j)[j.len - 1], '"');
    cr_assert_eq(j.err, JBUF_OK);
    jbuf_done(&j);
    cr_assert_null(w.buf);
    cr_assert_eq(w.cap, 0);
}

/* the writer is bounded: past its limit it stops (no growth, no abort) and
 * says so; a rewind goes back to a mark and clears the error */
Test(api_json, stops_at_its_limit_and_rewinds)
{
    struct api_worker w;
    memset(&w, 0, sizeof(w));
    struct jbuf j;
    jbuf_init(&j, &w, 10);
    jbuf_lit(&j, "[");
    jbuf_str(&j, "abcdef"); /* 8 bytes: 9 in all */
    size_t mark = j.len;
    cr_assert_eq(j.err, JBUF_OK);
    jbuf_lit(&j, ",");
    cr_assert_eq(j.err, JBUF_OK);
    jbuf_str(&j, "x"); /* 3 more: 13 > 10 */
    cr_assert_eq(j.err, JBUF_E_LIMIT);
    cr_assert_eq(j.len, 10);
    jbuf_lit(&j, "]"); /* a no-op once in error */
    cr_assert_eq(j.len, 10);
    cr_assert_leq(w.cap, 10, "grew past the limit: %zu", w.cap);
    jbuf_rewind(&j, mark);
    cr_assert_eq(j.err, JBUF_OK);
    jbuf_lit(&j, "]");
    cr_assert_eq(j.len, 10);
    cr_assert(memcmp(jbuf_data(&j), "[\"abcdef\"]", 10) == 0);
    jbuf_done(&j);
    free(w.buf);

    /* an allocation failure is reported, not fatal */
    memset(&w, 0, sizeof(w));
    api_fault_alloc(1);
    jbuf_init(&j, &w, 1u << 20);
    jbuf_lit(&j, "{}");
    cr_assert_eq(j.err, JBUF_E_NOMEM);
    cr_assert_eq(j.len, 0);
    cr_assert_null(w.buf);
    jbuf_rewind(&j, 0);
    jbuf_lit(&j, "{}");
    cr_assert_eq(j.err, JBUF_OK);
    cr_assert_eq(j.len, 2);
    jbuf_done(&j);
    free(w.buf);
}
