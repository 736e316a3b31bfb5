/* diskfull_test.c - the registry on a small tmpfs (16 MiB, mounted by the test in
 * a private mount namespace, so the mount goes away with the test process even
 * when it fails) runs out of space:
 *   - a monolithic blob larger than the free space: 507 with the spec's JSON error
 *     body naming the cause, the partial data freed at once (statvfs back to what
 *     it was), nothing visible (HEAD 404, no file in blobs/, no upload file left),
 *     and the next smaller push succeeds;
 *   - a chunked PATCH session that hits ENOSPC: the same, and the session is gone;
 *   - manifest PUTs on a full disk (the test fills the rest of the tmpfs with a
 *     file outside the storage root): 5xx with a JSON body or 201, never anything
 *     else; tag-only PUTs of an existing manifest only need the database (sqlite
 *     must grow its WAL): same rule; reads keep being served; once space is back
 *     every PUT that got a 201 is readable and new PUTs succeed.
 * Skipped (with the reason) only when mount(2) is not permitted. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/lib/integ_util.h"
#include "tests/lib/testsrv.h"

#include "common/banned.h"

#define MIB ((uint64_t)1024 * 1024)

static struct testsrv SRV;
static char MNT[256], ROOT[300], FILLER[300];
static int MOUNTED;

static const char *const *SRV_ENV; /* extra environment of the server */

static void
setup(void)
{
    memset(&SRV, 0, sizeof(SRV));
    SRV.pid = -1;
    snprintf(MNT, sizeof(MNT), "/tmp/ocireg-diskfull.XXXXXX");
    cr_assert_not_null(mkdtemp(MNT));
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", MNT, "tmpfs", 0, "size=16m,mode=0755") < 0) {
        int e = errno;
        rmdir(MNT);
        MNT[0] = '\0';
        cr_skip_test("mounting a tmpfs is not permitted here (%s): test skipped", strerror(e));
    }
    MOUNTED = 1;
    snprintf(ROOT, sizeof(ROOT), "%s/root", MNT);
    snprintf(FILLER, sizeof(FILLER), "%s/filler", MNT);
    cr_assert_eq(mkdir(ROOT, 0755), 0);
    if (integ_srv_start(&SRV, ROOT, SRV_ENV) < 0) {
        umount2(MNT, MNT_DETACH);
        rmdir(MNT);
        MOUNTED = 0;
        MNT[0] = '\0';
        cr_assert_fail("server did not start (OCIREG_BIN=%s)", getenv("OCIREG_BIN"));
    }
}

/* both upload write paths (docs/server.md): io_uring writes and pwrite */
static void
setup_uring(void)
{
    static const char *const env[] = {"OCIREG_STORAGE_IO=uring", NULL};
    SRV_ENV = env;
    setup();
}

static void
setup_posix(void)
{
    static const char *const env[] = {"OCIREG_STORAGE_IO=posix", NULL};
    SRV_ENV = env;
    setup();
}

static void
teardown(void)
{
    testsrv_cleanup(&SRV);
    if (MOUNTED) {
        unlink(FILLER);
        if (umount2(MNT, MNT_DETACH) < 0)
            cr_log_warn("umount %s: %s", MNT, strerror(errno));
        MOUNTED = 0;
    }
    if (MNT[0]) {
        /* testsrv keeps its log and ready file next to the root, on the tmpfs */
        rmdir(MNT);
    }
}

/* a clean shutdown: exit status 0 (under ASan: no leak, no error report) */
static void
finish(void)
{
    static char why[8192];
    cr_assert_eq(integ_srv_stop_checked(&SRV, why, sizeof(why)), 0, "%s", why);
}

/* the reply must be the spec's JSON error naming "no space" */
static void
expect_nospace(const char *what, int st, const char *resp)
{
    const char *body = integ_body_of(resp);
    char code[64] = "", msg[256] = "";
    if (integ_reference()) {
        cr_log_info("reference: %s: status %d %.120s", what, st, body);
        cr_expect(st >= 500 && st < 600, "%s: status %d, want 5xx", what, st);
        return;
    }
    cr_expect_eq(st, 507, "%s: status %d, want 507; reply: %.300s", what, st, resp);
    cr_expect_eq(integ_json_error(body, strlen(body), code, sizeof(code), msg, sizeof(msg)), 0,
                 "%s: body is not the spec's JSON error: %.200s", what, body);
    cr_expect(strcasestr(code, "SPACE") || strcasestr(msg, "space"),
              "%s: the error does not name the cause: code '%s' message '%s'", what, code, msg);
}

/* free space returns to `before` (minus a little for the database); 30 s is a
 * guard only */
static void
expect_space_back(const char *what, uint64_t before)
{
    uint64_t now = 0;
    for (int i = 0; i < 600; i++) {
        now = integ_free_bytes(MNT);
        if (now + 512 * 1024 >= before)
            break;
        integ_sleep_ms(50);
    }
    cr_expect_geq(now + 512 * 1024, before,
                  "%s: free space %" PRIu64 " KiB, was %" PRIu64 " KiB before: partial data kept",
                  what, now / 1024, before / 1024);
}

static void
expect_invisible(const char *repo, const char *digest)
{
    char path[256];
    int64_t sz;
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    cr_expect_eq(integ_head_size(&SRV, path, &sz), 404, "HEAD %s after ENOSPC", path);
    if (integ_reference())
        return;
    char f[600];
    snprintf(f, sizeof(f), "%s/blobs/sha256/%.2s/%s", ROOT, digest + 7, digest + 7);
    cr_expect_neq(access(f, F_OK), 0, "blob file %s exists after ENOSPC", f);
    char why[512];
    int nup = 0;
    cr_expect_eq(integ_layout_check(ROOT, 1, &nup, NULL, NULL, why, sizeof(why)), 0, "%s", why);
    cr_expect_eq(nup, 0, "%d upload files left in uploads/ after ENOSPC", nup);
}

static void
push_ok(const char *repo, uint64_t seed, uint64_t size)
{
    char dg[72], loc[1024], path[256], got[72];
    integ_pattern_digest(seed, size, dg);
    cr_assert_eq(integ_upload_start(&SRV, repo, loc, sizeof(loc)), 202);
    long st = integ_upload_finish(&SRV, loc, dg, seed, 0, size);
    cr_assert_eq(st, 201, "push of %" PRIu64 " bytes after ENOSPC: status %ld", size, st);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, dg);
    uint64_t n;
    cr_assert_eq(integ_get_hash(&SRV, path, NULL, got, &n), 200);
    cr_assert_str_eq(got, dg);
}

static const char *
path_of(const char *loc)
{
    if (strncmp(loc, "http", 4) == 0 && strstr(loc, "://")) {
        const char *p = strchr(strstr(loc, "://") + 3, '/');
        return p ? p : "/";
    }
    return loc;
}

static void
monolithic_blob_larger_than_free_space(void)
{
    push_ok("full/a", 1, 4096);
    integ_sleep_ms(100);
    uint64_t free0 = integ_free_bytes(MNT);
    /* 200 MiB more than fits: the reply must come long before the end */
    uint64_t big = free0 + 200 * MIB;
    cr_log_info("free %" PRIu64 " KiB, pushing %" PRIu64 " KiB", free0 / 1024, big / 1024);
    char dg[72], loc[1024], head[2048], q[100], url[1200];
    static char resp[65536];
    integ_pattern_digest(7, big, dg);

    /* POST then PUT with the whole body */
    cr_assert_eq(integ_upload_start(&SRV, "full/a", loc, sizeof(loc)), 202);
    snprintf(q, sizeof(q), "digest=%s", dg);
    integ_url_with(path_of(loc), q, url, sizeof(url));
    snprintf(head, sizeof(head),
             "PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
             "Content-Length: %" PRIu64 "\r\n\r\n",
             url, big);
    uint64_t sent = 0;
    long st = integ_raw_send_pattern(&SRV, head, 7, 0, big, resp, sizeof(resp), 20000, &sent);
    cr_log_info("PUT: status %ld after %" PRIu64 " KiB sent", st, sent / 1024);
    expect_nospace("monolithic PUT larger than the disk", (int)st, resp);
    if (!integ_reference())
        cr_expect_lt(sent, big - 100 * MIB,
                     "the 507 came only after %" PRIu64 " KiB of the %" PRIu64 " KiB body: it "
                     "should come as soon as the disk is full",
                     sent / 1024, big / 1024);
    expect_space_back("monolithic PUT", free0);
    expect_invisible("full/a", dg);
    if (!integ_reference())
        cr_expect_eq(integ_upload_status(&SRV, path_of(loc), NULL), 404,
                     "the upload session survived ENOSPC");

    /* single POST ?digest= with the body (not in distribution 2.8) */
    if (!integ_reference()) {
        snprintf(head, sizeof(head),
                 "POST /v2/full/a/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/octet-stream\r\nContent-Length: %" PRIu64 "\r\n\r\n",
                 dg, big);
        st = integ_raw_send_pattern(&SRV, head, 7, 0, big, resp, sizeof(resp), 20000, &sent);
        expect_nospace("monolithic POST larger than the disk", (int)st, resp);
        expect_space_back("monolithic POST", free0);
        expect_invisible("full/a", dg);
    }
    push_ok("full/a", 2, 2 * MIB);
    cr_assert(testsrv_alive(&SRV));
    /* space is still usable up to nearly all of it */
    push_ok("full/a", 3, free0 > 6 * MIB ? free0 - 6 * MIB : MIB);
    finish();
}

Test(diskfull, monolithic_blob_larger_than_free_space, .init = setup_uring, .fini = teardown,
     .timeout = 60)
{
    monolithic_blob_larger_than_free_space();
}

Test(diskfull, monolithic_blob_larger_than_free_space_posix, .init = setup_posix,
     .fini = teardown, .timeout = 60)
{
    monolithic_blob_larger_than_free_space();
}

static void
chunked_session_hits_enospc(void)
{
    push_ok("full/b", 1, 4096);
    integ_sleep_ms(100);
    uint64_t free0 = integ_free_bytes(MNT);
    char loc[1024], head[2048];
    static char resp[65536];
    cr_assert_eq(integ_upload_start(&SRV, "full/b", loc, sizeof(loc)), 202);
    uint64_t off = 0, chunk = 2 * MIB;
    long st = 202;
    int n = 0;
    while (st == 202 && n++ < 20) {
        snprintf(
            head, sizeof(head),
            "PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            "Content-Range: %" PRIu64 "-%" PRIu64 "\r\nContent-Length: %" PRIu64 "\r\n\r\n",
            path_of(loc), off, off + chunk - 1, chunk);
        st = integ_raw_send_pattern(&SRV, head, 9, off, chunk, resp, sizeof(resp), 20000, NULL);
        if (st == 202) {
            char *l = strcasestr(resp, "\r\nLocation: ");
            if (l) {
                l += 12;
                size_t ln = strcspn(l, "\r\n");
                snprintf(loc, sizeof(loc), "%.*s", (int)ln, l);
            }
            off += chunk;
        }
    }
    cr_log_info("PATCH %d failed with %ld after %" PRIu64 " KiB accepted", n, st, off / 1024);
    cr_assert_neq(st, 202, "the disk never filled");
    expect_nospace("PATCH past the free space", (int)st, resp);
    expect_space_back("chunked session", free0);
    if (!integ_reference()) {
        char code[64] = "";
        struct tresp r;
        cr_assert_eq(treq(&SRV, "GET", path_of(loc), NULL, NULL, 0, &r), 0);
        integ_json_error(r.body, r.len, code, sizeof(code), NULL, 0);
        cr_expect_eq(r.status, 404, "session after ENOSPC: GET status %ld, want 404", r.status);
        cr_expect_str_eq(code, "BLOB_UPLOAD_UNKNOWN");
        tresp_free(&r);
        char why[512];
        int nup = 0;
        cr_expect_eq(integ_layout_check(ROOT, 1, &nup, NULL, NULL, why, sizeof(why)), 0, "%s", why);
        cr_expect_eq(nup, 0, "%d upload files left after ENOSPC", nup);
    }
    push_ok("full/b", 4, 3 * MIB);
    finish();
}

Test(diskfull, chunked_session_hits_enospc, .init = setup_uring, .fini = teardown)
{
    chunked_session_hits_enospc();
}

Test(diskfull, chunked_session_hits_enospc_posix, .init = setup_posix, .fini = teardown)
{
    chunked_session_hits_enospc();
}

/* fill the tmpfs to the last byte with a file outside the storage root */
static void
fill_disk(void)
{
    int fd = open(FILLER, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    static char buf[1 << 16];
    memset(buf, 'f', sizeof(buf));
    for (size_t n = sizeof(buf); n > 0; n /= 2) {
        while (write(fd, buf, n) == (ssize_t)n)
            ;
    }
    close(fd);
    cr_log_info("disk filled: %" PRIu64 " bytes free", integ_free_bytes(MNT));
}

static char *
manifest_json(const char *cdg, uint64_t csz, const char *ldg, uint64_t lsz, int salt)
{
    char *m = malloc(1024);
    cr_assert_not_null(m);
    snprintf(m, 1024,
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
             "\"%s\",\"size\":%" PRIu64 "},\"layers\":[{\"mediaType\":\"application/vnd.oci.image."
             "layer.v1.tar\",\"digest\":\"%s\",\"size\":%" PRIu64
             "}],\"annotations\":{\"n\":\"%d\"}}",
             cdg, csz, ldg, lsz, salt);
    return m;
}

static long
put_manifest(const char *ref, const char *body, struct tresp *r)
{
    char path[256];
    snprintf(path, sizeof(path), "/v2/full/m/manifests/%s", ref);
    const char *h[] = {"Content-Type: application/vnd.oci.image.manifest.v1+json", NULL};
    cr_assert_eq(treq(&SRV, "PUT", path, h, body, strlen(body), r), 0, "PUT %s: no answer", path);
    return r->status;
}

static void
expect_manifest(const char *ref, const char *digest)
{
    char path[256], got[72];
    uint64_t n;
    snprintf(path, sizeof(path), "/v2/full/m/manifests/%s", ref);
    const char *h[] = {"Accept: application/vnd.oci.image.manifest.v1+json", NULL};
    long st = integ_get_hash(&SRV, path, h, got, &n);
    cr_expect_eq(st, 200, "GET %s: %ld", path, st);
    cr_expect_str_eq(got, digest, "GET %s", path);
}

Test(diskfull, manifest_put_on_a_full_disk, .init = setup, .fini = teardown)
{
    char cdg[72], ldg[72], d0[72], d1[72];
    push_ok("full/m", 11, 300);
    push_ok("full/m", 12, 5000);
    integ_pattern_digest(11, 300, cdg);
    integ_pattern_digest(12, 5000, ldg);
    char *m0 = manifest_json(cdg, 300, ldg, 5000, 0);
    char *m1 = manifest_json(cdg, 300, ldg, 5000, 1);
    tdigest(m0, strlen(m0), d0);
    tdigest(m1, strlen(m1), d1);
    struct tresp r;
    cr_assert_eq(put_manifest("v0", m0, &r), 201);
    tresp_free(&r);

    fill_disk();
    /* a new manifest needs a new blob file */
    long st = put_manifest("v1", m1, &r);
    cr_log_info("manifest PUT on a full disk: %ld %.200s", st, r.body);
    int m1_ok = st == 201;
    if (st != 201) {
        cr_expect(st >= 500 && st < 600, "manifest PUT on a full disk: status %ld, want 5xx", st);
        char code[64];
        cr_expect_eq(integ_json_error(r.body, r.len, code, sizeof(code), NULL, 0), 0,
                     "manifest PUT on a full disk: not a JSON error: %.200s", r.body);
    }
    tresp_free(&r);

    /* tag-only PUTs of the stored manifest: only the database grows */
    int ok = 0, failed = 0;
    char tag[32];
    int tagged[200] = {0};
    for (int i = 0; i < 200; i++) {
        snprintf(tag, sizeof(tag), "t%d", i);
        st = put_manifest(tag, m0, &r);
        if (st == 201) {
            ok++;
            tagged[i] = 1;
        } else {
            if (failed == 0)
                cr_log_info("first failed tag PUT (%s): %ld %.200s", tag, st, r.body);
            failed++;
            cr_expect(st >= 500 && st < 600, "tag PUT %s on a full disk: status %ld", tag, st);
            char code[64];
            cr_expect_eq(integ_json_error(r.body, r.len, code, sizeof(code), NULL, 0), 0,
                         "tag PUT on a full disk: not a JSON error: %.200s", r.body);
        }
        tresp_free(&r);
        /* reads keep working */
        if (i % 20 == 0) {
            expect_manifest("v0", d0);
            char path[256], got[72];
            uint64_t n;
            snprintf(path, sizeof(path), "/v2/full/m/blobs/%s", ldg);
            cr_expect_eq(integ_get_hash(&SRV, path, NULL, got, &n), 200);
            cr_expect_str_eq(got, ldg);
        }
        if (failed > 20)
            break;
    }
    cr_log_info("tag PUTs on a full disk: %d answered 201, %d failed (database path %s)", ok,
                failed, failed ? "reached" : "not reached: sqlite had room in its WAL");
    cr_assert(testsrv_alive(&SRV), "server died on a full disk");
    st = treq(&SRV, "GET", "/v2/full/m/tags/list", NULL, NULL, 0, &r) == 0 ? r.status : -1;
    if (st > 0)
        tresp_free(&r);
    cr_expect_eq(st, 200, "tags list on a full disk: %ld", st);

    /* space back: everything acknowledged is there, new writes work */
    unlink(FILLER);
    integ_sleep_ms(50);
    for (int i = 0; i < 200; i++) {
        if (!tagged[i])
            continue;
        snprintf(tag, sizeof(tag), "t%d", i);
        expect_manifest(tag, d0);
    }
    if (m1_ok) {
        expect_manifest("v1", d1);
    } else {
        cr_assert_eq(put_manifest("v1", m1, &r), 201, "manifest PUT after space came back: %ld",
                     r.status);
        tresp_free(&r);
        expect_manifest("v1", d1);
    }
    cr_assert_eq(put_manifest("after", m0, &r), 201);
    tresp_free(&r);
    expect_manifest("v0", d0);
    if (!integ_reference()) {
        char why[512];
        int nup = 0;
        cr_expect_eq(integ_layout_check(ROOT, 1, &nup, NULL, NULL, why, sizeof(why)), 0, "%s", why);
    }
    free(m0);
    free(m1);
    finish();
}
