/* range_test.c - Content-Range (PATCH) and Range (GET) parsing. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "storage/storage.h"

static int
cr_parse(const char *s, uint64_t *a, uint64_t *b)
{
    struct err e = {0};
    int rc = range_parse_content(s, strlen(s), a, b, &e);
    if (rc < 0)
        cr_assert_eq(e.code, ERR_RANGE_INVALID);
    return rc;
}

static int
rq(const char *s, uint64_t size, uint64_t *a, uint64_t *b)
{
    struct err e = {0};
    int rc = range_parse_request(s, strlen(s), size, a, b, &e);
    if (rc < 0)
        cr_assert_eq(e.code, ERR_RANGE_NOT_SATISFIABLE);
    return rc;
}

Test(range, content_range_spec_form)
{
    uint64_t a, b;
    cr_assert_eq(cr_parse("0-99", &a, &b), 0);
    cr_assert_eq(a, 0);
    cr_assert_eq(b, 99);
    cr_assert_eq(cr_parse(" 100-100 ", &a, &b), 0);
    cr_assert_eq(a, 100);
    cr_assert_eq(b, 100);
    cr_assert_eq(cr_parse("18446744073709551614-18446744073709551615", &a, &b), 0);
    cr_assert_eq(b, UINT64_MAX);
}

Test(range, content_range_bytes_form)
{
    uint64_t a, b;
    cr_assert_eq(cr_parse("bytes 0-99/100", &a, &b), 0);
    cr_assert_eq(a, 0);
    cr_assert_eq(b, 99);
    cr_assert_eq(cr_parse("bytes 5-9/*", &a, &b), 0);
    cr_assert_eq(a, 5);
    cr_assert_eq(b, 9);
    cr_assert_eq(cr_parse("bytes 0-99/50", &a, &b), -1, "end past total");
    cr_assert_eq(cr_parse("bytes 0-99", &a, &b), -1, "missing total");
}

Test(range, content_range_rejects_garbage)
{
    const char *bad[] = {"",
                         "-",
                         "5-",
                         "-5",
                         "9-5",
                         "a-b",
                         "0-1x",
                         "0 - 1",
                         "+0-1",
                         "0-+1",
                         "18446744073709551616-18446744073709551617",
                         "0-1,2-3",
                         "bytes=0-1",
                         "bytes 0-1/",
                         "bytes 0-1/x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        uint64_t a = 77, b = 77;
        cr_assert_eq(cr_parse(bad[i], &a, &b), -1, "'%s' should be invalid", bad[i]);
        cr_assert_eq(a, 77, "out-parameters untouched on error");
    }
}

Test(range, request_forms)
{
    uint64_t a, b;
    cr_assert_eq(rq("bytes=0-9", 100, &a, &b), 1);
    cr_assert_eq(a, 0);
    cr_assert_eq(b, 9);
    cr_assert_eq(rq("bytes=90-", 100, &a, &b), 1);
    cr_assert_eq(a, 90);
    cr_assert_eq(b, 99);
    cr_assert_eq(rq("bytes=-10", 100, &a, &b), 1);
    cr_assert_eq(a, 90);
    cr_assert_eq(b, 99);
    cr_assert_eq(rq("bytes=-1000", 100, &a, &b), 1, "suffix longer than body = all of it");
    cr_assert_eq(a, 0);
    cr_assert_eq(b, 99);
    cr_assert_eq(rq("bytes=50-1000", 100, &a, &b), 1, "end clamped");
    cr_assert_eq(b, 99);
    cr_assert_eq(rq("BYTES=1-1", 100, &a, &b), 1, "unit is case-insensitive");
    cr_assert_eq(a, 1);
    cr_assert_eq(b, 1);
}

Test(range, request_unsatisfiable)
{
    uint64_t a, b;
    cr_assert_eq(rq("bytes=100-", 100, &a, &b), -1);
    cr_assert_eq(rq("bytes=100-200", 100, &a, &b), -1);
    cr_assert_eq(rq("bytes=-0", 100, &a, &b), -1);
    cr_assert_eq(rq("bytes=0-", 0, &a, &b), -1);
    cr_assert_eq(rq("bytes=-5", 0, &a, &b), -1);
}

Test(range, request_ignored_forms)
{
    uint64_t a, b;
    cr_assert_eq(rq("items=0-9", 100, &a, &b), 0);
    cr_assert_eq(rq("bytes=0-9,20-29", 100, &a, &b), 0, "multi-range ignored");
    cr_assert_eq(rq("bytes=9-0", 100, &a, &b), 0, "invalid spec ignored");
    cr_assert_eq(rq("bytes=x-y", 100, &a, &b), 0);
    cr_assert_eq(rq("bytes=", 100, &a, &b), 0);
    cr_assert_eq(rq("", 100, &a, &b), 0);
}
