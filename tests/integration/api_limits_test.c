/* api_limits_test.c - the JSON bodies of tags list, catalog and referrers are
 * bounded: a page stops at the byte budget (lowered here to a few bytes so small
 * data shows it) with a Link to the rest, and a failed allocation of the
 * response buffer answers 500 with the JSON error instead of aborting: the next
 * request is served. The server runs in this process (storage + api + http on
 * 127.0.0.1:0, one worker) to reach api->page_bytes and api_fault_alloc. */
#include <ftw.h>
#include <pthread.h>

#include "tests/integration/api_test.h"
#include "tests/lib/inproc.h"

#include "server/api.h"
#include "server/api_internal.h"
#include "server/http.h"
#include "storage/storage.h"

#include "common/banned.h"

static struct inproc P;

static void
limits_setup(void)
{
    cr_assert_eq(inproc_start(&P, "api-limits", 0, 100, &S), 0, "in-process server did not start");
}

static void
limits_teardown(void)
{
    api_fault_alloc(0);
    inproc_stop(&P);
}

TestSuite(api_limits, .init = limits_setup, .fini = limits_teardown, .timeout = 60);

/* GET path: the `key` array joined with ',' into out, the Link into link */
static long
list(const char *path, const char *key, char *out, size_t cap, char *link, size_t lcap,
     size_t *body_len)
{
    struct tresp r;
    req("GET", path, NULL, NULL, 0, &r);
    long st_ = r.status;
    out[0] = '\0';
    snprintf(link, lcap, "%s", H(&r, "Link"));
    *body_len = r.len;
    if (st_ == 200) {
        json_error_t je;
        json_t *j = json_loadb(r.body, r.len, 0, &je);
        cr_assert(j, "bad JSON %s", r.body);
        json_t *a = json_object_get(j, key);
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(a); i++) {
            json_t *v = json_array_get(a, i);
            if (!json_is_string(v))
                v = json_object_get(v, "digest");
            n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "", json_string_value(v));
        }
        json_decref(j);
    } else {
        snprintf(out, cap, "%s", ecode(&r));
    }
    tresp_free(&r);
    return st_;
}

Test(api_limits, tags_and_catalog_pages_stop_at_the_byte_budget)
{
    char out[1024], link[512];
    size_t len;
    const char *tags[] = {"tag-aaaaaaaaaa-1", "tag-aaaaaaaaaa-2", "tag-aaaaaaaaaa-3",
                          "tag-aaaaaaaaaa-4", "tag-aaaaaaaaaa-5"};
    for (size_t i = 0; i < 5; i++) {
        char body[1024];
        make_image("r", 0, "m", body, sizeof(body));
        cr_assert_eq(put_manifest("r", tags[i], MT_OCI_MANIFEST, body, NULL), 201);
    }
    /* {"name":"r","tags":[ = 20 bytes, a tag 18 (+1 comma), "]}" 2: two per 60 */
    P.api->page_bytes = 60;
    cr_assert_eq(list("/v2/r/tags/list", "tags", out, sizeof(out), link, sizeof(link), &len), 200);
    cr_assert_str_eq(out, "tag-aaaaaaaaaa-1,tag-aaaaaaaaaa-2");
    cr_assert_leq(len, 60);
    cr_assert_str_eq(link, "</v2/r/tags/list?n=100&last=tag-aaaaaaaaaa-2>; rel=\"next\"");
    cr_assert_eq(list("/v2/r/tags/list?n=100&last=tag-aaaaaaaaaa-4", "tags", out, sizeof(out),
                      link, sizeof(link), &len),
                 200);
    cr_assert_str_eq(out, "tag-aaaaaaaaaa-5");
    cr_assert_str_eq(link, "");
    /* n smaller than what the budget allows still rules */
    cr_assert_eq(
        list("/v2/r/tags/list?n=1", "tags", out, sizeof(out), link, sizeof(link), &len), 200);
    cr_assert_str_eq(out, "tag-aaaaaaaaaa-1");
    cr_assert_str_eq(link, "</v2/r/tags/list?n=1&last=tag-aaaaaaaaaa-1>; rel=\"next\"");

    /* a budget smaller than one entry still sends one per page */
    P.api->page_bytes = 1;
    cr_assert_eq(list("/v2/r/tags/list", "tags", out, sizeof(out), link, sizeof(link), &len), 200);
    cr_assert_str_eq(out, "tag-aaaaaaaaaa-1");
    cr_assert_str_eq(link, "</v2/r/tags/list?n=100&last=tag-aaaaaaaaaa-1>; rel=\"next\"");

    push_image("repository-number-two", "t", "m", NULL);
    push_image("repository-number-one", "t", "m", NULL);
    /* {"repositories":[ = 17, "r" 3, ,"repository-number-one" 24: two fit 50 */
    P.api->page_bytes = 50;
    cr_assert_eq(
        list("/v2/_catalog", "repositories", out, sizeof(out), link, sizeof(link), &len), 200);
    cr_assert_str_eq(out, "r,repository-number-one");
    cr_assert_str_eq(link, "</v2/_catalog?n=100&last=repository-number-one>; rel=\"next\"");
    cr_assert_eq(list("/v2/_catalog?last=repository-number-one", "repositories", out, sizeof(out),
                      link, sizeof(link), &len),
                 200);
    cr_assert_str_eq(out, "repository-number-two");
    cr_assert_str_eq(link, "");
}

Test(api_limits, oom_building_a_body_is_500_and_the_server_goes_on)
{
    char out[1024], link[512], subj[80];
    size_t len;
    push_image("r", "t", "m", subj);

    /* the worker buffer does not exist yet: its first growth fails */
    api_fault_alloc(1);
    cr_assert_eq(list("/v2/r/tags/list", "tags", out, sizeof(out), link, sizeof(link), &len), 500);
    cr_assert_str_eq(out, "NOMEM");
    cr_assert_eq(list("/v2/r/tags/list", "tags", out, sizeof(out), link, sizeof(link), &len), 200);
    cr_assert_str_eq(out, "t");

    /* a referrer whose annotations need a bigger buffer than the 4 KiB one */
    char empty[80], dg[80], path[300];
    push_blob("r", "{}", empty);
    size_t big = 20000;
    char *body = malloc(big + 2048), *val = malloc(big + 1);
    cr_assert(body && val);
    memset(val, 'z', big);
    val[big] = '\0';
    snprintf(body, big + 2048,
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
             "\"artifactType\":\"application/vnd.example.sig\","
             "\"config\":{\"mediaType\":\"" MT_EMPTY "\",\"digest\":\"%s\",\"size\":2},"
             "\"layers\":[],"
             "\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":1},"
             "\"annotations\":{\"big\":\"%s\"}}",
             empty, subj, val);
    cr_assert_eq(put_manifest("r", "sig", MT_OCI_MANIFEST, body, dg), 201);
    free(body);
    free(val);
    snprintf(path, sizeof(path), "/v2/r/referrers/%s", subj);
    api_fault_alloc(1);
    cr_assert_eq(list(path, "manifests", out, sizeof(out), link, sizeof(link), &len), 500);
    cr_assert_str_eq(out, "NOMEM");
    cr_assert_eq(list(path, "manifests", out, sizeof(out), link, sizeof(link), &len), 200);
    cr_assert_str_eq(out, dg);
    cr_assert_gt(len, 20000);

    /* the worker keeps its buffer: later replies of that size allocate nothing */
    api_fault_alloc(1000);
    cr_assert_eq(list("/v2/_catalog", "repositories", out, sizeof(out), link, sizeof(link), &len),
                 200);
    cr_assert_eq(list(path, "manifests", out, sizeof(out), link, sizeof(link), &len), 200);
    api_fault_alloc(0);
    cr_assert_eq(list("/v2/_catalog", "repositories", out, sizeof(out), link, sizeof(link), &len),
                 200);
    cr_assert_str_eq(out, "r");
}

Test(api_limits, referrers_page_stops_at_the_byte_budget)
{
    char subj[80], empty[80], dg[3][80], out[1024], link[512], path[400], body[2048];
    size_t len;
    push_image("r", "t", "m", subj);
    push_blob("r", "{}", empty);
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof(body),
                 "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
                 "\"artifactType\":\"application/vnd.example.sig\","
                 "\"config\":{\"mediaType\":\"" MT_EMPTY "\",\"digest\":\"%s\",\"size\":2},"
                 "\"layers\":[],"
                 "\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\","
                 "\"size\":1},\"annotations\":{\"i\":\"%d\"}}",
                 empty, subj, i);
        cr_assert_eq(put_manifest("r", "t", MT_OCI_MANIFEST, body, dg[i]), 201);
    }
    qsort(dg, 3, 80, (int (*)(const void *, const void *))strcmp);
    /* one descriptor is ~250 bytes: a 300-byte budget holds one per page */
    P.api->page_bytes = 300;
    snprintf(path, sizeof(path), "/v2/r/referrers/%s", subj);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(list(path, "manifests", out, sizeof(out), link, sizeof(link), &len), 200,
                     "%s: %s", path, out);
        cr_assert_str_eq(out, dg[i]);
        cr_assert_leq(len, 400);
        if (i < 2) {
            char exp[400];
            snprintf(exp, sizeof(exp), "</v2/r/referrers/%s?last=%s>; rel=\"next\"", subj, dg[i]);
            cr_assert_str_eq(link, exp);
            snprintf(path, sizeof(path), "%.*s", (int)(strlen(link) - 14), link + 1);
        } else {
            cr_assert_str_eq(link, "");
        }
    }
}
