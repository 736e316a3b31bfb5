/* regbench_test.c - regbench's building blocks: the latency histogram, the
 * seekable PRNG content and its digest, size and URL parsing. (The HTTP engine
 * is exercised against a real registry by tests/shell/regbench.sh.) */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "tools/regbench/rb_gen.h"
#include "tools/regbench/rb_hist.h"
#include "tools/regbench/rb_json.h"
#include "tools/regbench/rb_util.h"
#include "common/banned.h"

static struct rb_hist *
hist_new(void)
{
    struct rb_hist *h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    rb_hist_init(h);
    return h;
}

Test(regbench, hist_percentiles_of_uniform_values_within_two_percent)
{
    struct rb_hist *h = hist_new();
    for (uint64_t v = 1; v <= 100000; v++)
        rb_hist_add(h, v * 1000); /* 1 us .. 100 ms in ns */
    cr_assert_eq(h->count, 100000);
    const double ps[] = {50, 90, 99, 99.9};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        double want = ps[i] / 100.0 * 100000 * 1000;
        double got = (double)rb_hist_percentile(h, ps[i]);
        cr_assert(got > want * 0.98 && got < want * 1.02, "p%g: got %.0f want %.0f", ps[i], got,
                  want);
    }
    cr_assert_eq(rb_hist_percentile(h, 100), 100000 * 1000);
    cr_assert_eq(rb_hist_percentile(h, 0), 1000);
    free(h);
}

Test(regbench, hist_small_values_are_exact_and_empty_is_zero)
{
    struct rb_hist *h = hist_new();
    cr_assert_eq(rb_hist_percentile(h, 50), 0);
    for (uint64_t v = 0; v < 100; v++)
        rb_hist_add(h, v);
    cr_assert_eq(rb_hist_percentile(h, 50), 49);
    cr_assert_eq(rb_hist_percentile(h, 99), 98);
    free(h);
}

Test(regbench, hist_merge_adds_counts_and_bounds)
{
    struct rb_hist *a = hist_new(), *b = hist_new();
    for (int i = 0; i < 90; i++)
        rb_hist_add(a, 1000);
    for (int i = 0; i < 10; i++)
        rb_hist_add(b, 1000000);
    rb_hist_merge(a, b);
    cr_assert_eq(a->count, 100);
    cr_assert_eq(a->min, 1000);
    cr_assert_eq(a->max, 1000000);
    uint64_t p50 = rb_hist_percentile(a, 50), p99 = rb_hist_percentile(a, 99);
    cr_assert(p50 >= 985 && p50 <= 1015, "p50 %lu", (unsigned long)p50);
    cr_assert(p99 >= 985000 && p99 <= 1000000, "p99 %lu", (unsigned long)p99);
    free(a);
    free(b);
}

Test(regbench, gen_fill_is_seekable_at_any_offset)
{
    enum { N = 4096 };
    unsigned char *whole = malloc(N), *part = malloc(N);
    rb_gen_fill(42, 0, whole, N);
    const uint64_t offs[] = {0, 1, 3, 7, 8, 9, 1000, 4095};
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        size_t len = N - offs[i];
        memset(part, 0, N);
        rb_gen_fill(42, offs[i], part, len);
        cr_assert(memcmp(part, whole + offs[i], len) == 0, "offset %lu", (unsigned long)offs[i]);
    }
    rb_gen_fill(43, 0, part, N);
    cr_assert(memcmp(part, whole, N) != 0, "another seed gives other content");
    free(whole);
    free(part);
}

Test(regbench, blob_digest_matches_sha256_of_its_content)
{
    static const unsigned char abc[] = "abc";
    struct rb_blob m = {.mem = abc, .size = 3};
    cr_assert_eq(rb_blob_digest(&m), 0);
    cr_assert_str_eq(m.digest,
                     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* a PRNG blob larger than the digest's internal step: same as hashing it whole */
    enum { N = 300 * 1024 + 5 };
    unsigned char *buf = malloc(N);
    rb_gen_fill(7, 0, buf, N);
    struct rb_blob g = {.seed = 7, .size = N};
    char want[RB_DIGEST_MAX];
    cr_assert_eq(rb_blob_digest(&g), 0);
    cr_assert_eq(rb_sha256_buf(buf, N, want), 0);
    cr_assert_str_eq(g.digest, want);
    unsigned char back[16];
    rb_blob_read(&g, N - 16, back, 16);
    cr_assert(memcmp(back, buf + N - 16, 16) == 0);
    free(buf);
}

Test(regbench, parse_size_units_and_refusals)
{
    struct err e;
    uint64_t v = 0;
    cr_assert_eq(rb_parse_size("4096", &v, &e), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(rb_parse_size("4K", &v, &e), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(rb_parse_size("256MiB", &v, &e), 0);
    cr_assert_eq(v, 256u << 20);
    cr_assert_eq(rb_parse_size("1g", &v, &e), 0);
    cr_assert_eq(v, 1u << 30);
    cr_assert_eq(rb_parse_size("0", &v, &e), -1);
    cr_assert_eq(rb_parse_size("12Q", &v, &e), -1);
    cr_assert_eq(rb_parse_size("", &v, &e), -1);
    cr_assert_eq(rb_parse_size("-1", &v, &e), -1);
    cr_assert_eq(rb_parse_size("99999999999999999999G", &v, &e), -1);
}

Test(regbench, parse_url_splits_and_refuses_paths)
{
    struct err e;
    char base[128], host[64], port[8];
    cr_assert_eq(rb_parse_url("http://127.0.0.1:5000/", base, sizeof(base), host, sizeof(host),
                              port, sizeof(port), &e),
                 0);
    cr_assert_str_eq(base, "http://127.0.0.1:5000");
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_str_eq(port, "5000");
    cr_assert_eq(rb_parse_url("http://[::1]:80", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_str_eq(base, "http://[::1]:80");
    cr_assert_eq(rb_parse_url("http://localhost", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 0);
    cr_assert_str_eq(port, "80");
    cr_assert_eq(rb_parse_url("http://h:1/v2/", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 -1);
    cr_assert_eq(
        rb_parse_url("ftp://h:1", base, sizeof(base), host, sizeof(host), port, sizeof(port), &e),
        -1);
    cr_assert_eq(rb_parse_url("http://u@h:1", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 -1);
    cr_assert_eq(rb_parse_url("http://h:99999", base, sizeof(base), host, sizeof(host), port,
                              sizeof(port), &e),
                 -1);
}

Test(regbench, loopback_hosts_only)
{
    cr_assert(rb_host_is_loopback("127.0.0.1"));
    cr_assert(rb_host_is_loopback("127.1.2.3"));
    cr_assert(rb_host_is_loopback("localhost"));
    cr_assert(rb_host_is_loopback("::1"));
    cr_assert(!rb_host_is_loopback("10.0.0.1"));
    cr_assert(!rb_host_is_loopback("192.168.1.1"));
    cr_assert(!rb_host_is_loopback("example.com"));
    cr_assert(!rb_host_is_loopback("::2"));
}

static int
tags_of(const char *body, size_t *n, char *name, size_t namecap)
{
    const char *nm;
    size_t nl;
    int esc;
    char why[128];
    int rc = rb_json_tags(body, strlen(body), &nm, &nl, &esc, n, why, sizeof(why));
    if (rc == 0)
        snprintf(name, namecap, "%.*s", (int)nl, nm);
    return rc;
}

Test(regbench, json_tags_counts_valid_lists)
{
    size_t n = 99;
    char name[64];
    cr_assert_eq(
        tags_of("{\"name\":\"a/b\",\"tags\":[\"t1\",\"t2\",\"x\\\"y\"]}", &n, name, sizeof(name)),
        0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(name, "a/b");
    cr_assert_eq(tags_of(" { \"tags\" : [ ] , \"name\" : \"r\" } \n", &n, name, sizeof(name)), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(tags_of("{\"name\":\"r\",\"tags\":null}", &n, name, sizeof(name)), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(tags_of("{\"x\":{\"y\":[1,-2.5e3,true,false,null,{}]},\"name\":\"r\","
                         "\"tags\":[\"\\u00e9\"]}",
                         &n, name, sizeof(name)),
                 0);
    cr_assert_eq(n, 1);
}

Test(regbench, json_tags_rejects_malformed_bodies)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"name\":\"r\"}",                         /* no tags */
        "{\"tags\":[]}",                            /* no name */
        "{\"name\":\"r\",\"tags\":[\"a\",]}",       /* trailing comma */
        "{\"name\":\"r\",\"tags\":[\"a\",1]}",      /* non-string tag */
        "{\"name\":\"r\",\"tags\":[\"a\"]} x",      /* bytes after */
        "{\"name\":\"r\",\"tags\":[\"a\\q\"]}",     /* bad escape */
        "{\"name\":\"r\",\"tags\":[\"a\"}",         /* unterminated array */
        "{\"name\":1,\"tags\":[]}",                 /* name not a string */
        "{\"name\":\"r\",\"tags\":[],\"tags\":[]}", /* duplicate */
        "{\"name\":\"r\",\"tags\":[],\"x\":01}",    /* bad number */
        "{\"name\":\"r\",\"tags\":[],\"x\":tru}",   /* bad literal */
        "{\"name\":\"r\" \"tags\":[]}",             /* missing comma */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n;
        char name[64];
        cr_assert_eq(tags_of(bad[i], &n, name, sizeof(name)), -1, "accepted: %s", bad[i]);
    }
}
