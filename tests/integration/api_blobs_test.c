/* api_blobs_test.c - end-1, blobs (GET/HEAD/Range/DELETE), upload sessions
 * (monolithic, chunked with and without Content-Range, 416 then status, PUT with
 * last chunk, cancel, sha512) and cross-repository mounts, against the real server. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/api_test.h"

#include "common/banned.h"

TestSuite(api_blobs, .init = api_setup, .fini = api_teardown, .timeout = 60);

static const char *
sha512_of(const void *p, size_t n)
{
    static char out[8 + 128 + 1];
    unsigned char md[64];
    unsigned int l = 0;
    EVP_Digest(p, n, md, &l, EVP_sha512(), NULL);
    int o = snprintf(out, sizeof(out), "sha512:");
    for (unsigned i = 0; i < l; i++)
        o += snprintf(out + o, sizeof(out) - (size_t)o, "%02x", md[i]);
    return out;
}

/* POST an upload session: returns its Location in loc */
static void
start_upload(const char *repo, const char *query, char *loc, size_t cap)
{
    char path[512];
    struct tresp r;
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/%s", repo, query ? query : "");
    req("POST", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202, "POST %s: %ld %s", path, r.status, r.body);
    snprintf(loc, cap, "%s", H(&r, "Location"));
    char want[300];
    snprintf(want, sizeof(want), "/v2/%s/blobs/uploads/", repo);
    cr_assert(strncmp(loc, want, strlen(want)) == 0, "Location %s", loc);
    cr_assert_str_eq(H(&r, "Range"), "0-0");
    cr_assert_str_eq(H(&r, "Docker-Upload-UUID"), loc + strlen(want));
    tresp_free(&r);
}

static long
patch(const char *loc, const char *range, const void *data, size_t n, struct tresp *r)
{
    char crh[100];
    const char *h[3] = {"Content-Type: application/octet-stream", NULL, NULL};
    if (range) {
        snprintf(crh, sizeof(crh), "Content-Range: %s", range);
        h[1] = crh;
    }
    req("PATCH", loc, h, data, n, r);
    return r->status;
}

static void
expect_status_range(const char *loc, const char *range)
{
    struct tresp r;
    req("GET", loc, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 204, "upload status %ld %s", r.status, r.body);
    cr_assert_str_eq(H(&r, "Range"), range);
    cr_assert_str_eq(H(&r, "Location"), loc);
    tresp_free(&r);
}

static void
finish(const char *loc, const char *digest, const void *last, size_t n, long want)
{
    char path[600];
    struct tresp r;
    snprintf(path, sizeof(path), "%s?digest=%s", loc, digest);
    req("PUT", path, NULL, last, n, &r);
    cr_assert_eq(r.status, want, "PUT %s: %ld %s", path, r.status, r.body);
    tresp_free(&r);
}

static void
expect_blob(const char *repo, const char *digest, const char *content)
{
    char path[300];
    struct tresp r;
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "GET %s: %ld", path, r.status);
    cr_assert_eq(r.len, strlen(content));
    cr_assert(memcmp(r.body, content, r.len) == 0);
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), digest);
    tresp_free(&r);
}

Test(api_blobs, base_is_200_empty_object)
{
    struct tresp r;
    req("GET", "/v2/", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{}");
    cr_assert_str_eq(H(&r, "Docker-Distribution-API-Version"), "registry/2.0");
    cr_assert(strstr(H(&r, "Content-Type"), "application/json"));
    tresp_free(&r);
    cr_assert_eq(status_of("GET", "/v2"), 200);
    cr_assert_eq(status_of("HEAD", "/v2/"), 200);
}

Test(api_blobs, monolithic_post_then_get_and_head)
{
    const char *data = "hello, registry";
    char dg[80], path[300];
    struct tresp r;
    snprintf(path, sizeof(path), "/v2/foo/bar/blobs/uploads/?digest=%s",
             tdigest(data, strlen(data), dg));
    req("POST", path, NULL, data, strlen(data), &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    snprintf(path, sizeof(path), "/v2/foo/bar/blobs/%s", dg);
    cr_assert_str_eq(H(&r, "Location"), path);
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), dg);
    tresp_free(&r);

    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, data);
    cr_assert_str_eq(H(&r, "Content-Type"), "application/octet-stream");
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), dg);
    cr_assert_str_eq(H(&r, "Accept-Ranges"), "bytes");
    cr_assert_eq(atol(H(&r, "Content-Length")), (long)strlen(data));
    tresp_free(&r);

    req("HEAD", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 0);
    cr_assert_eq(atol(H(&r, "Content-Length")), (long)strlen(data));
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), dg);
    tresp_free(&r);
}

Test(api_blobs, unknown_blob_is_404_blob_unknown)
{
    struct tresp r;
    char dg[80], path[300];
    snprintf(path, sizeof(path), "/v2/foo/blobs/%s", tdigest("nope", 4, dg));
    req("GET", path, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UNKNOWN");
    tresp_free(&r);
    req("HEAD", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 404);
    tresp_free(&r);
    req("DELETE", path, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UNKNOWN");
    tresp_free(&r);
}

Test(api_blobs, range_requests)
{
    const char *data = "0123456789";
    char dg[80], path[300];
    struct tresp r;
    push_blob("r", data, dg);
    snprintf(path, sizeof(path), "/v2/r/blobs/%s", dg);

    const char *h1[] = {"Range: bytes=2-5", NULL};
    req("GET", path, h1, NULL, 0, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(r.body, "2345");
    cr_assert_str_eq(H(&r, "Content-Range"), "bytes 2-5/10");
    cr_assert_eq(atol(H(&r, "Content-Length")), 4);
    tresp_free(&r);

    const char *h2[] = {"Range: bytes=-3", NULL};
    req("GET", path, h2, NULL, 0, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(r.body, "789");
    cr_assert_str_eq(H(&r, "Content-Range"), "bytes 7-9/10");
    tresp_free(&r);

    const char *h3[] = {"Range: bytes=6-", NULL};
    req("GET", path, h3, NULL, 0, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(r.body, "6789");
    tresp_free(&r);

    /* an end past the size is clamped to it */
    const char *h6[] = {"Range: bytes=5-100", NULL};
    req("GET", path, h6, NULL, 0, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(r.body, "56789");
    cr_assert_str_eq(H(&r, "Content-Range"), "bytes 5-9/10");
    tresp_free(&r);

    const char *h4[] = {"Range: bytes=10-20", NULL};
    req("GET", path, h4, NULL, 0, &r);
    cr_assert_eq(r.status, 416);
    cr_assert_str_eq(H(&r, "Content-Range"), "bytes */10");
    tresp_free(&r);

    /* a unit we do not serve partially: the whole body */
    const char *h5[] = {"Range: items=1-2", NULL};
    req("GET", path, h5, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, data);
    tresp_free(&r);
}

Test(api_blobs, blobs_are_linked_per_repo_until_mounted_from)
{
    const char *data = "shared layer";
    char dg[80], path[400];
    struct tresp r;
    push_blob("a/src", data, dg);
    snprintf(path, sizeof(path), "/v2/b/dst/blobs/%s", dg);
    cr_assert_eq(status_of("GET", path), 404);
    cr_assert_eq(status_of("HEAD", path), 404);

    snprintf(path, sizeof(path), "/v2/b/dst/blobs/uploads/?mount=%s&from=a/src", dg);
    req("POST", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    snprintf(path, sizeof(path), "/v2/b/dst/blobs/%s", dg);
    cr_assert_str_eq(H(&r, "Location"), path);
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), dg);
    tresp_free(&r);
    expect_blob("b/dst", dg, data);

    /* from a repository that does not have it: a normal upload session */
    snprintf(path, sizeof(path), "/v2/c/blobs/uploads/?mount=%s&from=nothere", dg);
    req("POST", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    cr_assert(strncmp(H(&r, "Location"), "/v2/c/blobs/uploads/", 20) == 0);
    tresp_free(&r);
    snprintf(path, sizeof(path), "/v2/c/blobs/%s", dg);
    cr_assert_eq(status_of("GET", path), 404);

    /* invalid mount arguments fall back to a session too (spec) */
    req("POST", "/v2/c/blobs/uploads/?mount=sha256:bad&from=a/src", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202);
    tresp_free(&r);
    snprintf(path, sizeof(path), "/v2/c/blobs/uploads/?mount=%s&from=../a", dg);
    req("POST", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202);
    tresp_free(&r);

    /* deleting in one repository leaves the other link */
    snprintf(path, sizeof(path), "/v2/a/src/blobs/%s", dg);
    req("DELETE", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202);
    tresp_free(&r);
    cr_assert_eq(status_of("GET", path), 404);
    expect_blob("b/dst", dg, data);
}

Test(api_blobs, automatic_mount_without_from)
{
    const char *data = "auto mounted";
    char dg[80], path[400];
    struct tresp r;
    push_blob("one", data, dg);
    snprintf(path, sizeof(path), "/v2/two/blobs/uploads/?mount=%s", dg);
    req("POST", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    tresp_free(&r);
    expect_blob("two", dg, data);

    char unknown[80];
    snprintf(path, sizeof(path), "/v2/two/blobs/uploads/?mount=%s", tdigest("zz", 2, unknown));
    req("POST", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202);
    tresp_free(&r);
}

Test(api_blobs, chunked_upload_with_content_range)
{
    char loc[400], dg[80];
    struct tresp r;
    start_upload("chunks", NULL, loc, sizeof(loc));
    expect_status_range(loc, "0-0");
    cr_assert_eq(patch(loc, "0-4", "abcde", 5, &r), 202, "%s", r.body);
    cr_assert_str_eq(H(&r, "Range"), "0-4");
    cr_assert_str_eq(H(&r, "Location"), loc);
    cr_assert(H(&r, "Docker-Upload-UUID")[0]);
    tresp_free(&r);
    cr_assert_eq(patch(loc, "5-9", "fghij", 5, &r), 202, "%s", r.body);
    cr_assert_str_eq(H(&r, "Range"), "0-9");
    tresp_free(&r);
    expect_status_range(loc, "0-9");
    finish(loc, tdigest("abcdefghij", 10, dg), NULL, 0, 201);
    expect_blob("chunks", dg, "abcdefghij");
    /* the session is gone after the commit */
    req("GET", loc, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
}

Test(api_blobs, patch_without_content_range_appends)
{
    char loc[400], dg[80];
    struct tresp r;
    start_upload("stream", NULL, loc, sizeof(loc));
    cr_assert_eq(patch(loc, NULL, "12345", 5, &r), 202);
    cr_assert_str_eq(H(&r, "Range"), "0-4");
    tresp_free(&r);

    /* a streamed (Transfer-Encoding: chunked) PATCH over a raw socket */
    char raw[1024], resp[4096];
    int n = snprintf(raw, sizeof(raw),
                     "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     "3\r\n678\r\n2\r\n90\r\n0\r\n\r\n",
                     loc);
    cr_assert(traw(&S, raw, (size_t)n, resp, sizeof(resp), 5000) > 0);
    cr_assert(strncmp(resp, "HTTP/1.1 202", 12) == 0, "%s", resp);
    cr_assert(strstr(resp, "\r\nRange: 0-9\r\n") || strstr(resp, "\r\nrange: 0-9\r\n"), "%s", resp);
    expect_status_range(loc, "0-9");
    finish(loc, tdigest("1234567890", 10, dg), NULL, 0, 201);
    expect_blob("stream", dg, "1234567890");
}

Test(api_blobs, out_of_order_chunk_is_416_and_session_stays_valid)
{
    char loc[400], dg[80];
    struct tresp r;
    start_upload("ooo", NULL, loc, sizeof(loc));
    cr_assert_eq(patch(loc, "0-4", "abcde", 5, &r), 202);
    tresp_free(&r);

    cr_assert_eq(patch(loc, "3-7", "defgh", 5, &r), 416, "%s", r.body);
    cr_assert_str_eq(H(&r, "Range"), "0-4");
    cr_assert_str_eq(H(&r, "Location"), loc);
    cr_assert_str_eq(ecode(&r), "BLOB_UPLOAD_INVALID");
    tresp_free(&r);
    expect_status_range(loc, "0-4");

    /* Content-Length disagreeing with the range */
    cr_assert_eq(patch(loc, "5-9", "fgh", 3, &r), 416, "%s", r.body);
    tresp_free(&r);
    /* malformed Content-Range */
    cr_assert_eq(patch(loc, "five-nine", "fghij", 5, &r), 416, "%s", r.body);
    tresp_free(&r);
    expect_status_range(loc, "0-4");

    cr_assert_eq(patch(loc, "5-9", "fghij", 5, &r), 202);
    tresp_free(&r);
    finish(loc, tdigest("abcdefghij", 10, dg), NULL, 0, 201);
    expect_blob("ooo", dg, "abcdefghij");
}

Test(api_blobs, put_carries_the_last_chunk)
{
    char loc[400], dg[80], path[600];
    struct tresp r;
    start_upload("last", NULL, loc, sizeof(loc));
    cr_assert_eq(patch(loc, "0-2", "abc", 3, &r), 202);
    tresp_free(&r);
    tdigest("abcdef", 6, dg);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, dg);
    const char *h[] = {"Content-Range: 3-5", NULL};
    req("PUT", path, h, "def", 3, &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    char want[300];
    snprintf(want, sizeof(want), "/v2/last/blobs/%s", dg);
    cr_assert_str_eq(H(&r, "Location"), want);
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), dg);
    tresp_free(&r);
    expect_blob("last", dg, "abcdef");

    /* a whole blob in the PUT of a fresh session */
    start_upload("last", NULL, loc, sizeof(loc));
    finish(loc, tdigest("whole", 5, dg), "whole", 5, 201);
    expect_blob("last", dg, "whole");
}

Test(api_blobs, put_errors)
{
    char loc[400], dg[80], path[600];
    struct tresp r;
    start_upload("bad", NULL, loc, sizeof(loc));
    cr_assert_eq(patch(loc, NULL, "data", 4, &r), 202);
    tresp_free(&r);

    /* no digest: 400, the session is untouched */
    req("PUT", loc, NULL, NULL, 0, &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);
    expect_status_range(loc, "0-3");

    snprintf(path, sizeof(path), "%s?digest=sha256:xyz", loc);
    req("PUT", path, NULL, NULL, 0, &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);

    /* a digest that does not match: 400 and the session is gone */
    snprintf(path, sizeof(path), "%s?digest=%s", loc, tdigest("other", 5, dg));
    req("PUT", path, NULL, NULL, 0, &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);
    req("GET", loc, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
    snprintf(path, sizeof(path), "/v2/bad/blobs/%s", dg);
    cr_assert_eq(status_of("GET", path), 404);

    /* monolithic POST with a wrong digest */
    snprintf(path, sizeof(path), "/v2/bad/blobs/uploads/?digest=%s", dg);
    req("POST", path, NULL, "not other", 9, &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);
    req("POST", "/v2/bad/blobs/uploads/?digest=sha256:123", NULL, "x", 1, &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);
}

Test(api_blobs, cancel_and_unknown_sessions)
{
    char loc[400], other[400];
    struct tresp r;
    start_upload("cancel", NULL, loc, sizeof(loc));
    cr_assert_eq(patch(loc, NULL, "xyz", 3, &r), 202);
    tresp_free(&r);

    /* a session belongs to its repository */
    snprintf(other, sizeof(other), "/v2/elsewhere/blobs/uploads/%s", strrchr(loc, '/') + 1);
    req("GET", other, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
    cr_assert_eq(patch(other, NULL, "x", 1, &r), 404);
    tresp_free(&r);

    req("DELETE", loc, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    tresp_free(&r);
    req("GET", loc, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
    req("DELETE", loc, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
    cr_assert_eq(patch(loc, NULL, "x", 1, &r), 404);
    cr_assert_str_eq(ecode(&r), "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
    req("PATCH", "/v2/cancel/blobs/uploads/not-a-session", NULL, "x", 1, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
}

Test(api_blobs, sha512_uploads)
{
    const char *data = "sha512 content";
    char loc[400], path[600];
    struct tresp r;
    start_upload("big", "?digest-algorithm=sha512", loc, sizeof(loc));
    cr_assert_eq(patch(loc, NULL, data, strlen(data), &r), 202);
    tresp_free(&r);
    const char *dg = sha512_of(data, strlen(data));
    snprintf(path, sizeof(path), "%s?digest=%s", loc, dg);
    req("PUT", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), dg);
    tresp_free(&r);
    expect_blob("big", dg, data);

    /* monolithic with a sha512 digest */
    const char *d2 = "monolithic sha512";
    char dg2[140];
    snprintf(dg2, sizeof(dg2), "%s", sha512_of(d2, strlen(d2)));
    snprintf(path, sizeof(path), "/v2/big/blobs/uploads/?digest=%s", dg2);
    req("POST", path, NULL, d2, strlen(d2), &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    tresp_free(&r);
    expect_blob("big", dg2, d2);

    req("POST", "/v2/big/blobs/uploads/?digest-algorithm=md5", NULL, NULL, 0, &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);
}

Test(api_blobs, delete_blob)
{
    char dg[80], path[300];
    struct tresp r;
    push_blob("del", "to be deleted", dg);
    snprintf(path, sizeof(path), "/v2/del/blobs/%s", dg);
    req("DELETE", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    tresp_free(&r);
    cr_assert_eq(status_of("GET", path), 404);
    req("DELETE", path, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UNKNOWN");
    tresp_free(&r);
    /* pushing it again links it again */
    push_blob("del", "to be deleted", dg);
    expect_blob("del", dg, "to be deleted");
}

static void
nap_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

Test(api_blobs, lease_is_exclusive_and_released_when_the_client_dies)
{
    char loc[400], raw[1024];
    struct tresp r;
    start_upload("lease", NULL, loc, sizeof(loc));

    /* a PATCH that announces 100 bytes, sends 10 and stalls */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int n = snprintf(raw, sizeof(raw),
                     "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", loc);
    int fd = -1;
    /* wait until the server holds the lease for it: an empty PATCH (which
     * changes nothing when it gets the lease first) answers 409 from then on
     * (30 s: a guard only). When the empty PATCH held the lease at the moment
     * the stalled one arrived, the stalled one was answered 409 itself: it is
     * sent again on a new connection. */
    long st = 0;
    for (int i = 0; i < 600 && st != 409; i++) {
        char b;
        if (fd >= 0 && recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) != -1) {
            close(fd); /* answered (or closed): it never waits with the lease */
            fd = -1;
        }
        if (fd < 0) {
            fd = socket(AF_INET, SOCK_STREAM, 0);
            cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
            cr_assert_eq(send(fd, raw, (size_t)n, 0), n);
        }
        if (i)
            nap_ms(50);
        req("PATCH", loc, NULL, NULL, 0, &r);
        st = r.status;
        tresp_free(&r);
    }
    cr_assert_eq(st, 409, "the stalled PATCH never took the lease");

    /* the session is busy meanwhile: 409 with a spec code (the spec allows
     * only its own codes in a JSON error body and has none for "busy") */
    cr_assert_eq(patch(loc, NULL, "x", 1, &r), 409, "%ld %s", r.status, r.body);
    cr_assert_str_eq(ecode(&r), "BLOB_UPLOAD_INVALID", "%s", r.body);
    tresp_free(&r);

    /* the client dies mid-body: the lease comes back, the session stays */
    close(fd);
    int ok = 0;
    for (int i = 0; i < 600 && !ok; i++) {
        nap_ms(50);
        req("GET", loc, NULL, NULL, 0, &r);
        ok = r.status == 204;
        tresp_free(&r);
    }
    cr_assert(ok, "session lost after abort");
    req("GET", loc, NULL, NULL, 0, &r);
    const char *range = H(&r, "Range");
    cr_assert(strcmp(range, "0-0") == 0 || strcmp(range, "0-9") == 0, "Range %s", range);
    uint64_t off = strcmp(range, "0-9") == 0 ? 10 : 0;
    tresp_free(&r);

    char cr[40];
    snprintf(cr, sizeof(cr), "%llu-%llu", (unsigned long long)off, (unsigned long long)off + 2);
    cr_assert_eq(patch(loc, cr, "abc", 3, &r), 202, "%ld %s", r.status, r.body);
    tresp_free(&r);
    char dg[80];
    const char *all = off ? "0123456789abc" : "abc";
    finish(loc, tdigest(all, strlen(all), dg), NULL, 0, 201);
    expect_blob("lease", dg, all);
}
