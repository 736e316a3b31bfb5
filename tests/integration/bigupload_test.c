/* bigupload_test.c - a 4 GiB blob pushed in one PUT and in 512 MiB PATCH chunks,
 * streamed from a generator (libcurl READFUNCTION, never a file, never in memory)
 * with its digest computed while sending. The server must answer 201 with the
 * right digest, HEAD must give the size, the stored bytes must match at both ends
 * (Range GETs), and the server's peak RSS (VmHWM) must rise by less than 16 MiB:
 * memory per connection is bounded whatever the blob size.
 * With less than 10 GiB free on the storage disk, or a storage root on tmpfs, the
 * size drops to 1 GiB (noted in the log). BIGUPLOAD_MIB=N forces a size. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/vfs.h>

#include "tests/lib/integ_util.h"
#include "tests/lib/testsrv.h"

#include "common/banned.h"

#define MIB ((uint64_t)1024 * 1024)
#define GIB (1024 * MIB)
#define HWM_LIMIT_KB (16 * 1024)

static struct testsrv SRV;

/* io: the upload write path, "uring" (io_uring writes from the request's own
 * receive buffers) or "posix" (pwrite) */
static void
setup_io(const char *io)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static char io_env[64];
    snprintf(io_env, sizeof(io_env), "OCIREG_STORAGE_IO=%s", io);
    /* ASan keeps freed memory in a quarantine (256 MiB by default), which
     * would show as RSS growth of a server that frees what it allocates */
    const char *env[3] = {io_env, NULL, NULL};
    if (!integ_reference() && integ_server_is_asan())
        env[1] = "ASAN_OPTIONS=quarantine_size_mb=4:detect_leaks=1:abort_on_error=0";
    cr_assert_eq(integ_srv_start(&SRV, NULL, (const char *const *)env), 0,
                 "server did not start");
}

static void
setup(void)
{
    setup_io("uring");
}

static void
setup_posix(void)
{
    setup_io("posix");
}

static void
teardown(void)
{
    testsrv_cleanup(&SRV);
    curl_global_cleanup();
}

/* a clean shutdown: exit status 0 (under ASan: no leak, no error report) */
static void
finish(void)
{
    static char why[8192];
    cr_assert_eq(integ_srv_stop_checked(&SRV, why, sizeof(why)), 0, "%s", why);
}

static uint64_t
pick_size(void)
{
    const char *f = getenv("BIGUPLOAD_MIB");
    if (f && atoi(f) > 0)
        return (uint64_t)atoi(f) * MIB;
    uint64_t avail = integ_free_bytes(SRV.root);
    struct statfs sf;
    if (statfs(SRV.root, &sf) == 0 && sf.f_type == TMPFS_MAGIC) {
        cr_log_warn("bigupload: %s is on tmpfs (memory): using 1 GiB instead of 4 GiB", SRV.root);
        return GIB;
    }
    if (avail < 10 * GIB) {
        cr_log_warn("bigupload: only %" PRIu64 " MiB free under %s: using 1 GiB instead of 4 GiB",
                    avail / MIB, SRV.root);
        return GIB;
    }
    return 4 * GIB;
}

/* bring every per-connection and per-worker buffer into use before the baseline */
static void
warm_up(void)
{
    char dg[72], loc[1024];
    for (uint64_t seed = 100; seed < 104; seed++) {
        integ_pattern_digest(seed, 8 * MIB, dg);
        cr_assert_eq(integ_upload_start(&SRV, "big/warm", loc, sizeof(loc)), 202);
        cr_assert_eq(integ_upload_patch(&SRV, loc, sizeof(loc), seed, 0, 4 * MIB, NULL), 202);
        cr_assert_eq(integ_upload_finish(&SRV, loc, dg, seed, 4 * MIB, 4 * MIB), 201);
    }
}

static void
check_stored(uint64_t seed, uint64_t size, const char *dg)
{
    char path[256], hdr[96], v[128];
    int64_t hs;
    snprintf(path, sizeof(path), "/v2/big/blob/blobs/%s", dg);
    cr_assert_eq(integ_head_size(&SRV, path, &hs), 200, "HEAD %s", path);
    cr_assert_eq(hs, (int64_t)size, "HEAD size %" PRId64 ", want %" PRIu64, hs, size);
    /* both ends of the stored bytes */
    uint64_t offs[2] = {0, size - MIB};
    unsigned char *want = malloc(MIB);
    cr_assert_not_null(want);
    for (int i = 0; i < 2; i++) {
        snprintf(hdr, sizeof(hdr), "Range: bytes=%" PRIu64 "-%" PRIu64, offs[i], offs[i] + MIB - 1);
        const char *h[] = {hdr, NULL};
        struct tresp r;
        cr_assert_eq(treq(&SRV, "GET", path, h, NULL, 0, &r), 0);
        integ_pattern(seed, offs[i], want, MIB);
        cr_expect(r.status == 206 || (r.status == 200 && integ_reference()),
                  "Range GET: status %ld", r.status);
        if (r.status == 206) {
            cr_expect_eq(r.len, MIB, "Range GET returned %zu bytes", r.len);
            cr_expect(r.len == MIB && memcmp(r.body, want, MIB) == 0,
                      "stored bytes at %" PRIu64 " differ from what was sent", offs[i]);
            cr_expect_not_null(tresp_header(&r, "Content-Range", v, sizeof(v)));
        }
        tresp_free(&r);
    }
    free(want);
}

static void
check_memory(long base_kb, long cpu0, const char *what, uint64_t size, int64_t ms)
{
    long hwm = integ_proc_kb(SRV.pid, "VmHWM");
    long rss = integ_proc_kb(SRV.pid, "VmRSS");
    long cpu = integ_proc_cpu_ms(SRV.pid) - cpu0;
    cr_log_info("%s: %" PRIu64 " MiB in %.1f s (%.0f MiB/s), server CPU %.1f s; server VmHWM "
                "%ld -> %ld KiB (+%ld), VmRSS %ld KiB",
                what, size / MIB, (double)ms / 1000.0, (double)size / MIB * 1000.0 / (double)ms,
                (double)cpu / 1000.0, base_kb, hwm, hwm - base_kb, rss);
    if (integ_reference())
        return;
    cr_expect_lt(hwm - base_kb, HWM_LIMIT_KB,
                 "%s: the server's peak RSS rose by %ld KiB (limit %d KiB)", what, hwm - base_kb,
                 HWM_LIMIT_KB);
}

static void
monolithic_put_streamed(void)
{
    uint64_t size = pick_size(), seed = 0xb16b16;
    warm_up();
    long base = integ_proc_kb(SRV.pid, "VmHWM");
    long cpu0 = integ_proc_cpu_ms(SRV.pid);
    cr_assert_gt(base, 0);
    /* a monolithic PUT names the digest up front: hash the generator once */
    char dg[72], loc[1024], q[100], url[1200];
    int64_t t0 = integ_now_ms();
    integ_pattern_digest(seed, size, dg);
    cr_log_info("digest of %" PRIu64 " MiB computed in %.1f s", size / MIB,
                (double)(integ_now_ms() - t0) / 1000.0);
    cr_assert_eq(integ_upload_start(&SRV, "big/blob", loc, sizeof(loc)), 202);
    snprintf(q, sizeof(q), "digest=%s", dg);
    integ_url_with(loc, q, url, sizeof(url));
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    struct tresp r;
    t0 = integ_now_ms();
    int rc = integ_send_pattern(&SRV, "PUT", url, h, seed, 0, size, NULL, &r);
    int64_t ms = integ_now_ms() - t0;
    cr_assert_eq(rc, 0, "PUT of %" PRIu64 " bytes: transport failure", size);
    char v[128] = "";
    tresp_header(&r, "Docker-Content-Digest", v, sizeof(v));
    long st = r.status;
    tresp_free(&r);
    cr_assert_eq(st, 201, "PUT of %" PRIu64 " bytes: status %ld", size, st);
    cr_expect_str_eq(v, dg, "Docker-Content-Digest");
    check_memory(base, cpu0, "monolithic PUT", size, ms);
    check_stored(seed, size, dg);
    finish();
}

Test(bigupload, monolithic_put_streamed, .init = setup, .fini = teardown)
{
    monolithic_put_streamed();
}

Test(bigupload, monolithic_put_streamed_posix, .init = setup_posix, .fini = teardown)
{
    monolithic_put_streamed();
}

Test(bigupload, chunked_patch_512mib, .init = setup, .fini = teardown)
{
    uint64_t size = pick_size(), seed = 0xc4c4c4;
    uint64_t chunk = 512 * MIB < size ? 512 * MIB : size / 2;
    warm_up();
    long base = integ_proc_kb(SRV.pid, "VmHWM");
    long cpu0 = integ_proc_cpu_ms(SRV.pid);
    cr_assert_gt(base, 0);
    char dg[72], loc[1024];
    cr_assert_eq(integ_upload_start(&SRV, "big/blob", loc, sizeof(loc)), 202);
    struct integ_sha *sha = integ_sha_new();
    int64_t t0 = integ_now_ms();
    for (uint64_t off = 0; off < size; off += chunk) {
        uint64_t n = size - off < chunk ? size - off : chunk;
        char cr[96];
        snprintf(cr, sizeof(cr), "Content-Range: %" PRIu64 "-%" PRIu64, off, off + n - 1);
        const char *h[] = {"Content-Type: application/octet-stream", cr, NULL};
        struct tresp r;
        int rc = integ_send_pattern(&SRV, "PATCH", loc, h, seed, off, n, sha, &r);
        cr_assert_eq(rc, 0, "PATCH at %" PRIu64 ": transport failure", off);
        long st = r.status;
        char nl[1024], range[96] = "";
        if (tresp_header(&r, "Location", nl, sizeof(nl)))
            snprintf(loc, sizeof(loc), "%s", nl);
        tresp_header(&r, "Range", range, sizeof(range));
        tresp_free(&r);
        cr_assert_eq(st, 202, "PATCH at %" PRIu64 ": status %ld", off, st);
        if (!integ_reference()) {
            char want[96];
            snprintf(want, sizeof(want), "0-%" PRIu64, off + n - 1);
            cr_expect_str_eq(range, want, "Range after PATCH at %" PRIu64, off);
        }
    }
    integ_sha_final(sha, dg);
    long st = integ_upload_finish(&SRV, loc, dg, seed, 0, 0);
    int64_t ms = integ_now_ms() - t0;
    cr_assert_eq(st, 201, "final PUT of the chunked upload: status %ld", st);
    check_memory(base, cpu0, "chunked PATCH", size, ms);
    check_stored(seed, size, dg);
    finish();
}
