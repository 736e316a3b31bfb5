/* api_referrers_test.c - GET /v2/<name>/referrers/<digest> is paged: at most
 * max_page descriptors and about 1 MiB of JSON per page, the rest reached by
 * following `Link: <...?last=<digest>>; rel="next"` (with the artifactType
 * filter carried along); a descriptor over the byte budget comes alone. */
#include "tests/integration/api_test.h"

#include "common/banned.h"

TestSuite(api_referrers, .init = api_setup, .fini = api_teardown, .timeout = 120);

#define PAGE_BYTES (1u << 20)

/* push an artifact manifest whose subject is subj: artifactType at, one
 * annotation whose value is `ann` bytes of 'a' + seed; digest gets its digest */
static void
push_referrer(const char *repo, const char *subj, const char *at, size_t ann, int seed,
              char *digest)
{
    char empty[80];
    push_blob(repo, "{}", empty);
    size_t cap = ann + 2048;
    char *body = malloc(cap);
    char *val = malloc(ann + 1);
    cr_assert(body && val);
    memset(val, 'a', ann);
    val[ann] = '\0';
    snprintf(body, cap,
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
             "\"artifactType\":\"%s\","
             "\"config\":{\"mediaType\":\"" MT_EMPTY "\",\"digest\":\"%s\",\"size\":2},"
             "\"layers\":[],"
             "\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":1},"
             "\"annotations\":{\"seed\":\"%d\",\"big\":\"%s\"}}",
             at, empty, subj, seed, val);
    char path[300];
    tdigest(body, strlen(body), digest);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, digest);
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
    struct tresp r;
    req("PUT", path, h, body, strlen(body), &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    tresp_free(&r);
    free(body);
    free(val);
}

/* the path of a Link header value "<path>; rel=\"next\"" into out; 0 if none */
static int
link_path(const char *link, char *out, size_t cap)
{
    if (!*link)
        return 0;
    const char *e = strstr(link, ">; rel=\"next\"");
    cr_assert(link[0] == '<' && e, "bad Link %s", link);
    snprintf(out, cap, "%.*s", (int)(e - link - 1), link + 1);
    return 1;
}

struct walk {
    int pages;
    size_t total;
    size_t sizes[16];          /* descriptors per page */
    char digests[64][80];      /* in the order received */
    char links[16][600];       /* Link of each page ("" on the last) */
    size_t body_len[16];
    int big_alone;             /* pages over the budget held a single descriptor */
};

/* follow the Link chain from path, checking each page */
static void
walk(const char *path0, struct walk *w)
{
    char path[600];
    snprintf(path, sizeof(path), "%s", path0);
    memset(w, 0, sizeof(*w));
    w->big_alone = 1;
    for (;;) {
        struct tresp r;
        cr_assert_lt(w->pages, 16, "too many pages");
        req("GET", path, NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
        cr_assert_str_eq(H(&r, "Content-Type"), MT_OCI_INDEX);
        json_error_t je;
        json_t *j = json_loadb(r.body, r.len, 0, &je);
        cr_assert(j, "bad JSON page %d: %s", w->pages, je.text);
        json_t *ms = json_object_get(j, "manifests");
        cr_assert(json_is_array(ms));
        size_t n = json_array_size(ms);
        if (r.len > PAGE_BYTES && n != 1)
            w->big_alone = 0;
        for (size_t i = 0; i < n; i++) {
            cr_assert_lt(w->total, 64);
            snprintf(w->digests[w->total++], 80, "%s",
                     json_string_value(json_object_get(json_array_get(ms, i), "digest")));
        }
        json_decref(j);
        w->sizes[w->pages] = n;
        w->body_len[w->pages] = r.len;
        snprintf(w->links[w->pages], 600, "%s", H(&r, "Link"));
        int more = link_path(w->links[w->pages], path, sizeof(path));
        w->pages++;
        tresp_free(&r);
        if (!more)
            break;
    }
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

Test(api_referrers, paged_by_bytes_big_descriptor_alone)
{
    char subj[80], path[300], dg[8][80];
    push_image("ref", "base", "s", subj);
    /* 6 x ~330 kB: three fit in 1 MiB, four do not; one of 1.5 MB alone */
    for (int i = 0; i < 6; i++)
        push_referrer("ref", subj, "application/vnd.example.sig", 330000, i, dg[i]);
    push_referrer("ref", subj, "application/vnd.example.sig", 1500000, 6, dg[6]);

    struct walk w;
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s", subj);
    walk(path, &w);
    cr_assert_eq(w.total, 7, "saw %zu descriptors", w.total);
    cr_assert_geq(w.pages, 3, "only %d pages", w.pages);
    cr_assert(w.big_alone, "a page over the budget held several descriptors");
    size_t big_pages = 0;
    for (int p = 0; p < w.pages; p++) {
        cr_assert_leq(w.sizes[p], 3, "page %d holds %zu", p, w.sizes[p]);
        cr_assert_gt(w.sizes[p], 0, "empty page %d", p);
        if (w.body_len[p] > PAGE_BYTES)
            big_pages++;
        /* every Link but the last page's */
        cr_assert_eq(w.links[p][0] != '\0', p + 1 < w.pages, "page %d link '%s'", p, w.links[p]);
    }
    cr_assert_eq(big_pages, 1);
    /* each exactly once, in digest order */
    char want[8][80];
    memcpy(want, dg, sizeof(want));
    qsort(want, 7, 80, cmp_str);
    for (int i = 0; i < 7; i++)
        cr_assert_str_eq(w.digests[i], want[i]);
    /* the Link names the last digest sent */
    char exp[400];
    snprintf(exp, sizeof(exp), "</v2/ref/referrers/%s?last=%s>; rel=\"next\"", subj,
             w.digests[w.sizes[0] - 1]);
    cr_assert_str_eq(w.links[0], exp);
}

Test(api_referrers, paged_by_max_page_with_filter)
{
    testsrv_cleanup(&S);
    const char *env[] = {"OCIREG_SERVER_MAX_PAGE=2", NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0);
    char subj[80], path[400], dg[8][80];
    push_image("a/b", "base", "s", subj);
    for (int i = 0; i < 5; i++)
        push_referrer("a/b", subj, "application/vnd.example.sig+json", 10, i, dg[i]);
    push_referrer("a/b", subj, "application/vnd.other", 10, 9, dg[5]);

    struct walk w;
    snprintf(path, sizeof(path), "/v2/a/b/referrers/%s", subj);
    walk(path, &w);
    cr_assert_eq(w.total, 6);
    cr_assert_eq(w.pages, 3);
    for (int p = 0; p < 3; p++)
        cr_assert_eq(w.sizes[p], 2);

    /* the filter: 5 match -> 2, 2, 1, and every Link keeps it ('+' encoded) */
    snprintf(path, sizeof(path), "/v2/a/b/referrers/%s?artifactType=application/vnd.example.sig%%2Bjson",
             subj);
    walk(path, &w);
    cr_assert_eq(w.total, 5);
    cr_assert_eq(w.pages, 3);
    cr_assert_eq(w.sizes[2], 1);
    char exp[600];
    snprintf(exp, sizeof(exp),
             "</v2/a/b/referrers/%s?last=%s&artifactType=application/vnd.example.sig%%2Bjson>; "
             "rel=\"next\"",
             subj, w.digests[1]);
    cr_assert_str_eq(w.links[0], exp);
    char want[8][80];
    memcpy(want, dg, sizeof(want));
    qsort(want, 5, 80, cmp_str);
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(w.digests[i], want[i]);
}

Test(api_referrers, bad_last_is_400)
{
    char subj[80], path[600];
    struct tresp r;
    push_image("ref", "base", "s", subj);
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s?last=nodigest", subj);
    req("GET", path, NULL, NULL, 0, &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);
    /* a digest past every referrer: an empty last page */
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s?last=sha512:%0128d", subj, 0);
    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(H(&r, "Link"), "");
    tresp_free(&r);
}

Test(api_referrers, last_between_digests_resumes_after_it_and_n_is_ignored)
{
    testsrv_cleanup(&S);
    const char *env[] = {"OCIREG_SERVER_MAX_PAGE=2", NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0);
    char subj[80], path[600], dg[5][80];
    push_image("k", "base", "s", subj);
    for (int i = 0; i < 5; i++)
        push_referrer("k", subj, "application/vnd.example.sig", 10, i, dg[i]);
    qsort(dg, 5, 80, cmp_str);

    /* a marker that is no referrer's digest: the hex string just before the
     * 4th digest; the page starts at the 4th and holds the 4th and 5th */
    char mid[80];
    memcpy(mid, dg[3], sizeof(mid));
    size_t k = strlen(mid) - 1;
    while (mid[k] == '0')
        mid[k--] = 'f';
    mid[k] = mid[k] == 'a' ? '9' : (char)(mid[k] - 1);
    cr_assert(strcmp(mid, dg[2]) > 0);
    struct walk w;
    snprintf(path, sizeof(path), "/v2/k/referrers/%s?last=%s", subj, mid);
    walk(path, &w);
    cr_assert_eq(w.pages, 1);
    cr_assert_eq(w.total, 2);
    cr_assert_str_eq(w.digests[0], dg[3]);
    cr_assert_str_eq(w.digests[1], dg[4]);

    /* from the 1st: a full page of max_page whose Link names the 3rd */
    snprintf(path, sizeof(path), "/v2/k/referrers/%s?last=%s", subj, dg[0]);
    struct tresp r;
    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    char exp[400];
    snprintf(exp, sizeof(exp), "</v2/k/referrers/%s?last=%s>; rel=\"next\"", subj, dg[2]);
    cr_assert_str_eq(H(&r, "Link"), exp);
    tresp_free(&r);

    /* `n` is no referrers parameter: ignored, not an error, the page size
     * stays max_page and the chain still covers all five once */
    snprintf(path, sizeof(path), "/v2/k/referrers/%s?n=1", subj);
    walk(path, &w);
    cr_assert_eq(w.total, 5);
    cr_assert_eq(w.pages, 3);
    cr_assert_eq(w.sizes[0], 2);
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(w.digests[i], dg[i]);
    snprintf(path, sizeof(path), "/v2/k/referrers/%s?n=abc", subj);
    cr_assert_eq(status_of("GET", path), 200);
}

/* annotations over 64 KiB used to be read from the stored body by every GET
 * (a parse of the whole manifest per referrer); they are stored at PUT now, so
 * a body overwritten with garbage (same size) does not change the listing */
Test(api_referrers, large_annotations_are_served_without_reading_the_body)
{
    char subj[80], dg[80], path[300], file[600];
    push_image("ann", "base", "s", subj);
    push_referrer("ann", subj, "application/vnd.example.sig", 300000, 7, dg);

    const char *hex = strchr(dg, ':') + 1;
    snprintf(file, sizeof(file), "%s/blobs/sha256/%.2s/%s", S.root, hex, hex);
    FILE *f = fopen(file, "r+");
    cr_assert_not_null(f, "%s", file);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    cr_assert_gt(size, 300000);
    rewind(f);
    for (long i = 0; i < size; i++)
        fputc('[', f);
    cr_assert_eq(fclose(f), 0);

    snprintf(path, sizeof(path), "/v2/ann/referrers/%s", subj);
    struct tresp r;
    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_error_t je;
    json_t *j = json_loadb(r.body, r.len, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    json_t *d = json_array_get(json_object_get(j, "manifests"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(d, "digest")), dg);
    json_t *ann = json_object_get(d, "annotations");
    cr_assert_str_eq(json_string_value(json_object_get(ann, "seed")), "7");
    const char *big = json_string_value(json_object_get(ann, "big"));
    cr_assert_not_null(big);
    cr_assert_eq(strlen(big), 300000);
    cr_assert_eq(strspn(big, "a"), 300000);
    json_decref(j);
    tresp_free(&r);
}
