/* api_manifests_test.c - manifests of the four media types by tag and digest,
 * GET/HEAD headers, several ?tag= at once, errors, subject + OCI-Subject +
 * referrers (with artifactType filter), size limit, deletes. */
#include "tests/integration/api_test.h"

#include "common/banned.h"

TestSuite(api_manifests, .init = api_setup, .fini = api_teardown, .timeout = 60);

static void
expect_manifest(const char *repo, const char *ref, const char *ct, const char *body,
                const char *digest)
{
    char path[400];
    struct tresp r;
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
    cr_assert_str_eq(H(&r, "Content-Type"), ct);
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), digest);
    cr_assert_eq(r.len, strlen(body));
    cr_assert(memcmp(r.body, body, r.len) == 0);
    cr_assert_eq(atol(H(&r, "Content-Length")), (long)strlen(body));
    tresp_free(&r);

    req("HEAD", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 0);
    cr_assert_str_eq(H(&r, "Content-Type"), ct);
    cr_assert_str_eq(H(&r, "Docker-Content-Digest"), digest);
    cr_assert_eq(atol(H(&r, "Content-Length")), (long)strlen(body));
    tresp_free(&r);
}

Test(api_manifests, oci_image_by_tag_and_digest)
{
    char body[1024], dg[80], want[80], path[400];
    struct tresp r;
    make_image("img", 0, "a", body, sizeof(body));
    tdigest(body, strlen(body), want);

    snprintf(path, sizeof(path), "/v2/img/manifests/latest");
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
    req("PUT", path, h, body, strlen(body), &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    snprintf(dg, sizeof(dg), "%s", H(&r, "Docker-Content-Digest"));
    cr_assert_str_eq(dg, want);
    snprintf(path, sizeof(path), "/v2/img/manifests/%s", want);
    cr_assert_str_eq(H(&r, "Location"), path);
    cr_assert_str_eq(H(&r, "OCI-Subject"), "");
    tresp_free(&r);

    expect_manifest("img", "latest", MT_OCI_MANIFEST, body, want);
    expect_manifest("img", want, MT_OCI_MANIFEST, body, want);
    /* served as stored whatever Accept says */
    const char *acc[] = {"Accept: " MT_DOCKER_MANIFEST, NULL};
    req("GET", "/v2/img/manifests/latest", acc, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(H(&r, "Content-Type"), MT_OCI_MANIFEST);
    tresp_free(&r);

    /* push by digest */
    char b2[1024], d2[80];
    make_image("img", 0, "b", b2, sizeof(b2));
    tdigest(b2, strlen(b2), d2);
    cr_assert_eq(put_manifest("img", d2, MT_OCI_MANIFEST, b2, dg), 201);
    cr_assert_str_eq(dg, d2);
    expect_manifest("img", d2, MT_OCI_MANIFEST, b2, d2);
}

Test(api_manifests, docker_manifest_index_and_list)
{
    char img[1024], dimg[1024], d1[80], d2[80], idx[2048], dg[80];
    make_image("multi", 0, "oci", img, sizeof(img));
    make_image("multi", 1, "docker", dimg, sizeof(dimg));
    cr_assert_eq(put_manifest("multi", "oci", MT_OCI_MANIFEST, img, d1), 201);
    cr_assert_eq(put_manifest("multi", "docker", MT_DOCKER_MANIFEST, dimg, d2), 201);
    expect_manifest("multi", "docker", MT_DOCKER_MANIFEST, dimg, d2);

    snprintf(idx, sizeof(idx),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":["
             "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,"
             "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}",
             d1, strlen(img));
    cr_assert_eq(put_manifest("multi", "index", MT_OCI_INDEX, idx, dg), 201);
    expect_manifest("multi", "index", MT_OCI_INDEX, idx, dg);

    snprintf(idx, sizeof(idx),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_LIST "\",\"manifests\":["
             "{\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,"
             "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}}]}",
             d2, strlen(dimg));
    cr_assert_eq(put_manifest("multi", "list", MT_DOCKER_LIST, idx, dg), 201);
    expect_manifest("multi", "list", MT_DOCKER_LIST, idx, dg);

    /* an index over a manifest that is not in the repository */
    char missing[80];
    tdigest("no such manifest", 16, missing);
    snprintf(idx, sizeof(idx),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":["
             "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":10}]}",
             missing);
    struct tresp r;
    const char *h[] = {"Content-Type: " MT_OCI_INDEX, NULL};
    req("PUT", "/v2/multi/manifests/broken", h, idx, strlen(idx), &r);
    assert_err(&r, 400, "MANIFEST_BLOB_UNKNOWN");
    tresp_free(&r);
}

Test(api_manifests, several_tags_at_once)
{
    char body[1024], dg[80], path[400];
    struct tresp r;
    make_image("tags", 0, "t", body, sizeof(body));
    tdigest(body, strlen(body), dg);
    snprintf(path, sizeof(path), "/v2/tags/manifests/%s?tag=v1&tag=v1.0&tag=stable", dg);
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
    req("PUT", path, h, body, strlen(body), &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    /* spec (main): one OCI-Tag response header per accepted tag */
    cr_assert(strcasestr(r.headers, "\r\nOCI-Tag: v1\r\n"), "%s", r.headers);
    cr_assert(strcasestr(r.headers, "\r\nOCI-Tag: v1.0\r\n"), "%s", r.headers);
    cr_assert(strcasestr(r.headers, "\r\nOCI-Tag: stable\r\n"), "%s", r.headers);
    tresp_free(&r);
    expect_manifest("tags", "v1", MT_OCI_MANIFEST, body, dg);
    expect_manifest("tags", "v1.0", MT_OCI_MANIFEST, body, dg);
    expect_manifest("tags", "stable", MT_OCI_MANIFEST, body, dg);

    /* the path tag plus query tags */
    req("PUT", "/v2/tags/manifests/latest?tag=extra&tag=latest", h, body, strlen(body), &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert(strcasestr(r.headers, "\r\nOCI-Tag: latest\r\n"), "%s", r.headers);
    cr_assert(strcasestr(r.headers, "\r\nOCI-Tag: extra\r\n"), "%s", r.headers);
    tresp_free(&r);
    expect_manifest("tags", "latest", MT_OCI_MANIFEST, body, dg);
    expect_manifest("tags", "extra", MT_OCI_MANIFEST, body, dg);

    /* at most PUT_MAX_TAGS (32) tags in one push */
    char many[2048];
    int n = snprintf(many, sizeof(many), "/v2/tags/manifests/%s?", dg);
    for (int i = 0; i < 33; i++)
        n += snprintf(many + n, sizeof(many) - (size_t)n, "%stag=m%d", i ? "&" : "", i);
    req("PUT", many, h, body, strlen(body), &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    tresp_free(&r);
    cr_assert_eq(status_of("GET", "/v2/tags/manifests/m0"), 404);

    /* one bad tag refuses the whole push */
    req("PUT", "/v2/tags/manifests/ok?tag=-bad", h, body, strlen(body), &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    tresp_free(&r);
    cr_assert_eq(status_of("GET", "/v2/tags/manifests/ok"), 404);
}

Test(api_manifests, put_errors)
{
    char body[1024], dg[80], path[400];
    struct tresp r;
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};

    req("PUT", "/v2/err/manifests/x", h, "{not json", 9, &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    tresp_free(&r);
    req("PUT", "/v2/err/manifests/x", h, "{\"schemaVersion\":1}", 19, &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    tresp_free(&r);

    /* an unknown media type: 415 UNSUPPORTED; a body whose mediaType disagrees
     * with Content-Type: 400 MANIFEST_INVALID */
    const char *hx[] = {"Content-Type: application/x-unknown", NULL};
    const char *unk = "{\"schemaVersion\":2,\"layers\":[]}";
    req("PUT", "/v2/err/manifests/x", hx, unk, strlen(unk), &r);
    assert_err(&r, 415, "UNSUPPORTED");
    tresp_free(&r);
    const char *idx = "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":[]}";
    req("PUT", "/v2/err/manifests/x", h, idx, strlen(idx), &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    tresp_free(&r);

    /* layers not pushed to this repository */
    make_image("other", 0, "e", body, sizeof(body));
    req("PUT", "/v2/err/manifests/x", h, body, strlen(body), &r);
    assert_err(&r, 400, "MANIFEST_BLOB_UNKNOWN");
    tresp_free(&r);

    /* reference digest that is not the body's */
    make_image("err", 0, "e", body, sizeof(body));
    snprintf(path, sizeof(path), "/v2/err/manifests/%s", tdigest("something else", 14, dg));
    req("PUT", path, h, body, strlen(body), &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);

    /* bad tag in the path */
    req("PUT", "/v2/err/manifests/bad+tag", h, body, strlen(body), &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    tresp_free(&r);

    /* over max_manifest (4 MiB default): 413 before the body is read */
    size_t big = (4u << 20) + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    req("PUT", "/v2/err/manifests/huge", h, huge, big, &r);
    free(huge);
    assert_err(&r, 413, "SIZE_INVALID");
    tresp_free(&r);

    /* nothing was stored */
    cr_assert_eq(status_of("GET", "/v2/err/manifests/x"), 404);
}

Test(api_manifests, unknown_manifest_is_404)
{
    struct tresp r;
    char dg[80], path[300];
    push_image("known", "v1", "k", NULL);
    req("GET", "/v2/known/manifests/nope", NULL, NULL, 0, &r);
    assert_err(&r, 404, "MANIFEST_UNKNOWN");
    tresp_free(&r);
    snprintf(path, sizeof(path), "/v2/known/manifests/%s", tdigest("n", 1, dg));
    req("GET", path, NULL, NULL, 0, &r);
    assert_err(&r, 404, "MANIFEST_UNKNOWN");
    tresp_free(&r);
    cr_assert_eq(status_of("HEAD", path), 404);
    req("GET", "/v2/unknown/repo/manifests/v1", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 404);
    tresp_free(&r);
}

Test(api_manifests, subject_and_referrers)
{
    char subj[80], empty[80], l1[80], body[2048], a1[80], a2[80], path[400];
    struct tresp r;
    push_image("ref", "base", "s", subj);
    push_blob("ref", "{}", empty);
    push_blob("ref", "signature bytes", l1);

    /* an artifact manifest with a subject, artifactType and annotations */
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
             "\"artifactType\":\"application/vnd.example.sig\","
             "\"config\":{\"mediaType\":\"" MT_EMPTY "\",\"digest\":\"%s\",\"size\":2},"
             "\"layers\":[{\"mediaType\":\"application/octet-stream\",\"digest\":\"%s\","
             "\"size\":15}],"
             "\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":1},"
             "\"annotations\":{\"org.example.k\":\"v \\\"q\\\"\"}}",
             empty, l1, subj);
    tdigest(body, strlen(body), a1);
    snprintf(path, sizeof(path), "/v2/ref/manifests/%s", a1);
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
    req("PUT", path, h, body, strlen(body), &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert_str_eq(H(&r, "OCI-Subject"), subj);
    tresp_free(&r);

    /* a second referrer, another type (config media type as artifact type) */
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
             "\"config\":{\"mediaType\":\"application/vnd.example.sbom\",\"digest\":\"%s\","
             "\"size\":2},\"layers\":[],"
             "\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":1}}",
             empty, subj);
    tdigest(body, strlen(body), a2);
    snprintf(path, sizeof(path), "/v2/ref/manifests/%s", a2);
    req("PUT", path, h, body, strlen(body), &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert_str_eq(H(&r, "OCI-Subject"), subj);
    tresp_free(&r);

    snprintf(path, sizeof(path), "/v2/ref/referrers/%s", subj);
    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(H(&r, "Content-Type"), MT_OCI_INDEX);
    cr_assert_str_eq(H(&r, "OCI-Filters-Applied"), "");
    json_error_t je;
    json_t *j = json_loadb(r.body, r.len, 0, &je);
    cr_assert(j, "bad JSON: %s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(j, "schemaVersion")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(j, "mediaType")), MT_OCI_INDEX);
    json_t *ms = json_object_get(j, "manifests");
    cr_assert_eq(json_array_size(ms), 2, "%s", r.body);
    int seen = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_array_get(ms, i);
        const char *d = json_string_value(json_object_get(m, "digest"));
        cr_assert_str_eq(json_string_value(json_object_get(m, "mediaType")), MT_OCI_MANIFEST);
        cr_assert(json_integer_value(json_object_get(m, "size")) > 0);
        if (strcmp(d, a1) == 0) {
            seen |= 1;
            cr_assert_str_eq(json_string_value(json_object_get(m, "artifactType")),
                             "application/vnd.example.sig");
            json_t *an = json_object_get(m, "annotations");
            cr_assert_str_eq(json_string_value(json_object_get(an, "org.example.k")), "v \"q\"");
        } else if (strcmp(d, a2) == 0) {
            seen |= 2;
            cr_assert_str_eq(json_string_value(json_object_get(m, "artifactType")),
                             "application/vnd.example.sbom");
        }
    }
    cr_assert_eq(seen, 3, "%s", r.body);
    json_decref(j);
    tresp_free(&r);

    snprintf(path, sizeof(path), "/v2/ref/referrers/%s?artifactType=application/vnd.example.sbom",
             subj);
    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(H(&r, "OCI-Filters-Applied"), "artifactType");
    j = json_loadb(r.body, r.len, 0, &je);
    cr_assert(j);
    ms = json_object_get(j, "manifests");
    cr_assert_eq(json_array_size(ms), 1, "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ms, 0), "digest")), a2);
    json_decref(j);
    tresp_free(&r);

    /* unknown subject: an empty index; bad digest: 400 */
    char none[80];
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s", tdigest("none", 4, none));
    req("GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    j = json_loadb(r.body, r.len, 0, &je);
    cr_assert(j, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(j, "manifests")), 0);
    cr_assert(json_is_array(json_object_get(j, "manifests")));
    json_decref(j);
    tresp_free(&r);
    req("GET", "/v2/ref/referrers/sha256:short", NULL, NULL, 0, &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);

    /* deleting a referrer removes it from the list */
    snprintf(path, sizeof(path), "/v2/ref/manifests/%s", a1);
    req("DELETE", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202);
    tresp_free(&r);
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s", subj);
    req("GET", path, NULL, NULL, 0, &r);
    j = json_loadb(r.body, r.len, 0, &je);
    cr_assert(j);
    cr_assert_eq(json_array_size(json_object_get(j, "manifests")), 1, "%s", r.body);
    json_decref(j);
    tresp_free(&r);
}

Test(api_manifests, delete_by_tag_and_by_digest)
{
    char dg[80], path[400];
    struct tresp r;
    push_image("d", "one", "x", dg);
    push_image("d", "two", "x", NULL);

    /* by tag: only the tag goes */
    req("DELETE", "/v2/d/manifests/one", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    tresp_free(&r);
    cr_assert_eq(status_of("GET", "/v2/d/manifests/one"), 404);
    cr_assert_eq(status_of("GET", "/v2/d/manifests/two"), 200);
    snprintf(path, sizeof(path), "/v2/d/manifests/%s", dg);
    cr_assert_eq(status_of("GET", path), 200);
    req("DELETE", "/v2/d/manifests/one", NULL, NULL, 0, &r);
    assert_err(&r, 404, "MANIFEST_UNKNOWN");
    tresp_free(&r);

    /* by digest: the manifest and every tag pointing at it */
    req("DELETE", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 202);
    tresp_free(&r);
    cr_assert_eq(status_of("GET", path), 404);
    cr_assert_eq(status_of("GET", "/v2/d/manifests/two"), 404);
    req("DELETE", path, NULL, NULL, 0, &r);
    assert_err(&r, 404, "MANIFEST_UNKNOWN");
    tresp_free(&r);
}

/* lines of the server log at level error (the text format's level column) */
static int
error_lines_in_log(char *first, size_t cap)
{
    FILE *f = fopen(S.log, "r");
    char line[1024];
    int n = 0;
    while (f && fgets(line, sizeof(line), f)) {
        if (strstr(line, " error ")) {
            if (n++ == 0)
                snprintf(first, cap, "%s", line);
        }
    }
    if (f)
        fclose(f);
    return n;
}

/* a manifest naming a blob that was never pushed is an ordinary client
 * mistake: 400 MANIFEST_BLOB_UNKNOWN, and not the lost-file repair (which logs
 * an error and commits a transaction) */
Test(api_manifests, never_pushed_blob_is_400_without_an_error_log)
{
    char cdg[80], missing[80], body[1024], first[1024] = "";
    push_blob("nb", "{}", cdg);
    tdigest("never pushed", 12, missing);
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":{"
             "\"mediaType\":\"" MT_OCI_CONFIG "\",\"digest\":\"%s\",\"size\":2},\"layers\":[{"
             "\"mediaType\":\"" MT_OCI_LAYER "\",\"digest\":\"%s\",\"size\":12}]}",
             cdg, missing);
    struct tresp r;
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
    req("PUT", "/v2/nb/manifests/v1", h, body, strlen(body), &r);
    assert_err(&r, 400, "MANIFEST_BLOB_UNKNOWN");
    tresp_free(&r);
    /* the reply was sent after the request was handled, so the log line of a
     * repair would already be written */
    cr_assert_eq(error_lines_in_log(first, sizeof(first)), 0, "error logged: %s", first);
}

/* GET, HEAD and DELETE of a reference that is neither a tag nor a digest: the
 * manifest cannot exist, 404 MANIFEST_UNKNOWN (as the reference registry,
 * whose route does not match it); PUT keeps its 400 */
Test(api_manifests, invalid_reference_is_unknown_except_on_put)
{
    push_image("ir", "v1", "i", NULL);
    char longtag[140], path[400];
    memset(longtag, 'a', 129);
    longtag[129] = '\0';
    const char *refs[] = {"bad+tag", "-dash", ".dot", longtag, "sha256:abc", "sha256:nothex",
                          "md5:d41d8cd98f00b204e9800998ecf8427e"};
    const char *methods[] = {"GET", "HEAD", "DELETE"};
    struct tresp r;
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        snprintf(path, sizeof(path), "/v2/ir/manifests/%s", refs[i]);
        for (size_t m = 0; m < 3; m++) {
            req(methods[m], path, NULL, NULL, 0, &r);
            if (m == 1)
                cr_assert_eq(r.status, 404, "HEAD %s: %ld", path, r.status);
            else
                assert_err(&r, 404, "MANIFEST_UNKNOWN");
            tresp_free(&r);
        }
    }
    char body[1024];
    make_image("ir", 0, "j", body, sizeof(body));
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
    req("PUT", "/v2/ir/manifests/bad+tag", h, body, strlen(body), &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    tresp_free(&r);
    req("PUT", "/v2/ir/manifests/sha256:abc", h, body, strlen(body), &r);
    assert_err(&r, 400, "DIGEST_INVALID");
    tresp_free(&r);
    /* an invalid repository name is still NAME_INVALID */
    req("GET", "/v2/Bad/manifests/bad+tag", NULL, NULL, 0, &r);
    assert_err(&r, 400, "NAME_INVALID");
    tresp_free(&r);
    cr_assert_eq(status_of("GET", "/v2/ir/manifests/v1"), 200);
}
