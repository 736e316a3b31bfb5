/* api_tags_test.c - GET tags/list and /v2/_catalog: sorting, n/last paging with
 * the Link header, n=0, clamping, bad n, unknown repository. */
#include "tests/integration/api_test.h"

#include "common/banned.h"

TestSuite(api_tags, .init = api_setup, .fini = api_teardown, .timeout = 60);

/* GET path; the JSON array `key` joined with ',' into out; returns status */
static long
list(const char *path, const char *key, char *out, size_t cap, char *link, size_t lcap)
{
    struct tresp r;
    req("GET", path, NULL, NULL, 0, &r);
    long st = r.status;
    out[0] = '\0';
    if (link)
        snprintf(link, lcap, "%s", H(&r, "Link"));
    if (st == 200) {
        cr_assert(strstr(H(&r, "Content-Type"), "application/json"));
        json_error_t je;
        json_t *j = json_loadb(r.body, r.len, 0, &je);
        cr_assert(j, "bad JSON %s", r.body);
        json_t *a = json_object_get(j, key);
        cr_assert(json_is_array(a), "%s", r.body);
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "",
                                  json_string_value(json_array_get(a, i)));
        json_decref(j);
    } else {
        snprintf(out, cap, "%s", ecode(&r));
    }
    tresp_free(&r);
    return st;
}

Test(api_tags, list_sorted_and_paged)
{
    char dg[80], out[1024], link[512];
    push_image("lib/app", "v2", "p", dg);
    const char *more[] = {"v1", "latest", "A", "b", "v10"};
    for (size_t i = 0; i < 5; i++) {
        char body[1024];
        make_image("lib/app", 0, "p", body, sizeof(body));
        cr_assert_eq(put_manifest("lib/app", more[i], MT_OCI_MANIFEST, body, NULL), 201);
    }

    struct tresp r;
    req("GET", "/v2/lib/app/tags/list", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"name\":\"lib/app\""), "%s", r.body);
    cr_assert_str_eq(H(&r, "Link"), "");
    tresp_free(&r);

    cr_assert_eq(list("/v2/lib/app/tags/list", "tags", out, sizeof(out), link, sizeof(link)), 200);
    cr_assert_str_eq(out, "A,b,latest,v1,v10,v2");
    cr_assert_str_eq(link, "");

    cr_assert_eq(list("/v2/lib/app/tags/list?n=2", "tags", out, sizeof(out), link, sizeof(link)),
                 200);
    cr_assert_str_eq(out, "A,b");
    cr_assert_str_eq(link, "</v2/lib/app/tags/list?n=2&last=b>; rel=\"next\"");

    cr_assert_eq(
        list("/v2/lib/app/tags/list?n=2&last=b", "tags", out, sizeof(out), link, sizeof(link)),
        200);
    cr_assert_str_eq(out, "latest,v1");
    cr_assert_str_eq(link, "</v2/lib/app/tags/list?n=2&last=v1>; rel=\"next\"");

    cr_assert_eq(
        list("/v2/lib/app/tags/list?n=2&last=v1", "tags", out, sizeof(out), link, sizeof(link)),
        200);
    cr_assert_str_eq(out, "v10,v2");
    cr_assert_str_eq(link, "");

    cr_assert_eq(
        list("/v2/lib/app/tags/list?last=latest", "tags", out, sizeof(out), link, sizeof(link)),
        200);
    cr_assert_str_eq(out, "v1,v10,v2");

    cr_assert_eq(list("/v2/lib/app/tags/list?n=0", "tags", out, sizeof(out), link, sizeof(link)),
                 200);
    cr_assert_str_eq(out, "");
    cr_assert_str_eq(link, "");

    cr_assert_eq(list("/v2/lib/app/tags/list?n=100", "tags", out, sizeof(out), link, sizeof(link)),
                 200);
    cr_assert_str_eq(out, "A,b,latest,v1,v10,v2");
    cr_assert_str_eq(link, "");
}

Test(api_tags, bad_n_and_unknown_repo)
{
    char out[256];
    push_image("x", "t", "q", NULL);
    cr_assert_eq(list("/v2/x/tags/list?n=-1", "tags", out, sizeof(out), NULL, 0), 400);
    cr_assert_str_eq(out, "UNSUPPORTED");
    cr_assert_eq(list("/v2/x/tags/list?n=abc", "tags", out, sizeof(out), NULL, 0), 400);
    cr_assert_eq(list("/v2/x/tags/list?n=", "tags", out, sizeof(out), NULL, 0), 400);
    cr_assert_eq(list("/v2/nosuch/tags/list", "tags", out, sizeof(out), NULL, 0), 404);
    cr_assert_str_eq(out, "NAME_UNKNOWN");
    cr_assert_eq(list("/v2/nosuch/tags/list?n=0", "tags", out, sizeof(out), NULL, 0), 404);
    cr_assert_eq(status_of("HEAD", "/v2/x/tags/list"), 200);
}

Test(api_tags, catalog_paged)
{
    char out[1024], link[512];
    cr_assert_eq(list("/v2/_catalog", "repositories", out, sizeof(out), link, sizeof(link)), 200);
    cr_assert_str_eq(out, "");
    const char *repos[] = {"zeta", "alpha/one", "alpha", "mid/x/y"};
    for (size_t i = 0; i < 4; i++)
        push_image(repos[i], "t", "c", NULL);

    cr_assert_eq(list("/v2/_catalog", "repositories", out, sizeof(out), link, sizeof(link)), 200);
    cr_assert_str_eq(out, "alpha,alpha/one,mid/x/y,zeta");
    cr_assert_str_eq(link, "");
    cr_assert_eq(list("/v2/_catalog?n=3", "repositories", out, sizeof(out), link, sizeof(link)),
                 200);
    cr_assert_str_eq(out, "alpha,alpha/one,mid/x/y");
    cr_assert_str_eq(link, "</v2/_catalog?n=3&last=mid/x/y>; rel=\"next\"");
    cr_assert_eq(
        list("/v2/_catalog?n=3&last=mid/x/y", "repositories", out, sizeof(out), link, sizeof(link)),
        200);
    cr_assert_str_eq(out, "zeta");
    cr_assert_str_eq(link, "");
    cr_assert_eq(list("/v2/_catalog?n=0", "repositories", out, sizeof(out), link, sizeof(link)),
                 200);
    cr_assert_str_eq(out, "");
    cr_assert_eq(list("/v2/_catalog?n=x", "repositories", out, sizeof(out), NULL, 0), 400);
}

Test(api_tags, n_over_max_page_is_clamped)
{
    /* restart with a small max_page through the environment */
    testsrv_cleanup(&S);
    const char *env[] = {"OCIREG_SERVER_MAX_PAGE=2", NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0);
    char dg[80], out[256], link[256], path[300];
    push_image("c", "t1", "m", dg);
    for (int i = 2; i <= 4; i++) {
        snprintf(path, sizeof(path), "t%d", i);
        char body[1024];
        make_image("c", 0, "m", body, sizeof(body));
        cr_assert_eq(put_manifest("c", path, MT_OCI_MANIFEST, body, NULL), 201);
    }
    cr_assert_eq(list("/v2/c/tags/list?n=1000", "tags", out, sizeof(out), link, sizeof(link)), 200);
    cr_assert_str_eq(out, "t1,t2");
    cr_assert_str_eq(link, "</v2/c/tags/list?n=2&last=t2>; rel=\"next\"");
    /* however many digits: clamped as docs/api.md says, not a 400 */
    const char *huge[] = {"/v2/c/tags/list?n=9999999999999999999",
                          "/v2/c/tags/list?n=123456789012345678901234567890",
                          "/v2/_catalog?n=99999999999999999999999"};
    for (size_t i = 0; i < 3; i++) {
        const char *key = i == 2 ? "repositories" : "tags";
        cr_assert_eq(list(huge[i], key, out, sizeof(out), link, sizeof(link)), 200, "%s: %s",
                     huge[i], out);
        cr_assert_str_eq(out, i == 2 ? "c" : "t1,t2", "%s", huge[i]);
    }
    /* leading zeros are still the number they spell */
    cr_assert_eq(list("/v2/c/tags/list?n=00000000000000000000001", "tags", out, sizeof(out), link,
                      sizeof(link)),
                 200);
    cr_assert_str_eq(out, "t1");
    cr_assert_str_eq(link, "</v2/c/tags/list?n=1&last=t1>; rel=\"next\"");
}

/* the spec lets a registry page even without `n`: max_page is the default */
Test(api_tags, no_n_pages_at_max_page_with_link)
{
    testsrv_cleanup(&S);
    const char *env[] = {"OCIREG_SERVER_MAX_PAGE=2", NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0);
    char out[256], link[256], path[300];
    for (int i = 1; i <= 3; i++) {
        snprintf(path, sizeof(path), "t%d", i);
        char body[1024];
        make_image("c", 0, "m", body, sizeof(body));
        cr_assert_eq(put_manifest("c", path, MT_OCI_MANIFEST, body, NULL), 201);
    }
    push_image("d", "t", "m", NULL);
    push_image("e", "t", "m", NULL);

    cr_assert_eq(list("/v2/c/tags/list", "tags", out, sizeof(out), link, sizeof(link)), 200);
    cr_assert_str_eq(out, "t1,t2");
    cr_assert_str_eq(link, "</v2/c/tags/list?n=2&last=t2>; rel=\"next\"");
    cr_assert_eq(list("/v2/c/tags/list?last=t2", "tags", out, sizeof(out), link, sizeof(link)),
                 200);
    cr_assert_str_eq(out, "t3");
    cr_assert_str_eq(link, "");

    cr_assert_eq(list("/v2/_catalog", "repositories", out, sizeof(out), link, sizeof(link)), 200);
    cr_assert_str_eq(out, "c,d");
    cr_assert_str_eq(link, "</v2/_catalog?n=2&last=d>; rel=\"next\"");
    cr_assert_eq(list("/v2/_catalog?last=d", "repositories", out, sizeof(out), link, sizeof(link)),
                 200);
    cr_assert_str_eq(out, "e");
    cr_assert_str_eq(link, "");
}

Test(api_tags, overlong_last_is_400)
{
    char out[256], path[700];
    push_image("x", "t", "q", NULL);
    snprintf(path, sizeof(path), "/v2/x/tags/list?last=%0129d", 0);
    cr_assert_eq(list(path, "tags", out, sizeof(out), NULL, 0), 400);
    cr_assert_str_eq(out, "UNSUPPORTED");
    snprintf(path, sizeof(path), "/v2/x/tags/list?last=%0128d", 0);
    cr_assert_eq(list(path, "tags", out, sizeof(out), NULL, 0), 200);
    snprintf(path, sizeof(path), "/v2/_catalog?last=%0256d", 0);
    cr_assert_eq(list(path, "repositories", out, sizeof(out), NULL, 0), 400);
    snprintf(path, sizeof(path), "/v2/_catalog?last=%0255d", 0);
    cr_assert_eq(list(path, "repositories", out, sizeof(out), NULL, 0), 200);
}

Test(api_tags, page_body_and_link_are_byte_exact)
{
    /* the exact bytes clients get (one paging helper serves tags, catalog and
     * referrers; the JSON is written directly, no JSON library in between) */
    char dg[80];
    push_image("x/y", "b-2", "s1", dg);
    push_image("x/y", "a.1", "s2", NULL);
    push_image("x/y", "C_3", "s3", NULL);
    struct tresp r;
    req("GET", "/v2/x/y/tags/list?n=2", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"name\":\"x/y\",\"tags\":[\"C_3\",\"a.1\"]}");
    cr_assert_str_eq(H(&r, "Content-Type"), "application/json");
    char cl[32];
    snprintf(cl, sizeof(cl), "%zu", r.len);
    cr_assert_str_eq(H(&r, "Content-Length"), cl);
    cr_assert_str_eq(H(&r, "Link"), "</v2/x/y/tags/list?n=2&last=a.1>; rel=\"next\"");
    tresp_free(&r);
    req("GET", "/v2/x/y/tags/list?n=2&last=a.1", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"name\":\"x/y\",\"tags\":[\"b-2\"]}");
    cr_assert_str_eq(H(&r, "Link"), "");
    tresp_free(&r);
    req("GET", "/v2/_catalog?n=1", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"repositories\":[\"x/y\"]}");
    cr_assert_str_eq(H(&r, "Link"), "");
    tresp_free(&r);
    /* HEAD: the same headers, no body */
    req("HEAD", "/v2/x/y/tags/list?n=2", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 0);
    cr_assert_str_eq(H(&r, "Link"), "</v2/x/y/tags/list?n=2&last=a.1>; rel=\"next\"");
    tresp_free(&r);
}

/* one definition of "the repository exists" for the catalog and tags/list:
 * with blob links but no manifest left it is listed and its tag list is empty
 * (200, as distribution answers: skopeo list-tags works); with nothing left it
 * is neither listed nor known */
Test(api_tags, catalog_and_tags_list_agree_on_emptied_repositories)
{
    char dg[80], out[256], path[300], cdg[80], ldg[80];
    push_image("emptied", "v1", "e", dg);
    push_image("other", "v1", "o", NULL);
    snprintf(path, sizeof(path), "/v2/emptied/manifests/%s", dg);
    cr_assert_eq(status_of("DELETE", path), 202);

    cr_assert_eq(list("/v2/_catalog", "repositories", out, sizeof(out), NULL, 0), 200);
    cr_assert_str_eq(out, "emptied,other");
    cr_assert_eq(list("/v2/emptied/tags/list", "tags", out, sizeof(out), NULL, 0), 200);
    cr_assert_str_eq(out, "");
    struct tresp r;
    req("GET", "/v2/emptied/tags/list", NULL, NULL, 0, &r);
    cr_assert_eq(r.len, strlen("{\"name\":\"emptied\",\"tags\":[]}"), "%s", r.body);
    cr_assert(memcmp(r.body, "{\"name\":\"emptied\",\"tags\":[]}", r.len) == 0, "%s", r.body);
    tresp_free(&r);

    /* the blobs make_image pushed (same bytes as its config and layer) */
    char cfg[128], layer[128];
    snprintf(cfg, sizeof(cfg), "{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"%s\"}",
             "e");
    snprintf(layer, sizeof(layer), "layer bytes of %s", "e");
    tdigest(cfg, strlen(cfg), cdg);
    tdigest(layer, strlen(layer), ldg);
    snprintf(path, sizeof(path), "/v2/emptied/blobs/%s", cdg);
    cr_assert_eq(status_of("DELETE", path), 202);
    snprintf(path, sizeof(path), "/v2/emptied/blobs/%s", ldg);
    cr_assert_eq(status_of("DELETE", path), 202);

    cr_assert_eq(list("/v2/_catalog", "repositories", out, sizeof(out), NULL, 0), 200);
    cr_assert_str_eq(out, "other");
    cr_assert_eq(list("/v2/emptied/tags/list", "tags", out, sizeof(out), NULL, 0), 404);
    cr_assert_str_eq(out, "NAME_UNKNOWN");
}
