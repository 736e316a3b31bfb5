/* manifest_test.c - manifest_parse: the four known types, artifacts, media type
 * agreement, descriptor validation, references and invalid bodies. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "tests/lib/integ_util.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define CFG_OCI "application/vnd.oci.image.config.v1+json"
#define LAYER_OCI "application/vnd.oci.image.layer.v1.tar+gzip"

#define DESC(mt, d, sz) "{\"mediaType\":\"" mt "\",\"digest\":\"" d "\",\"size\":" #sz "}"

static const char oci_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
    "\",\"config\":" DESC(CFG_OCI, D1, 10) ",\"layers\":[" DESC(LAYER_OCI, D2, 20) "," DESC(
        LAYER_OCI, D3,
        30) "],\"annotations\":{\"org.opencontainers.image.created\":\"2024-01-01\"}}";

static int
parse(const char *body, const char *ct, struct manifest_info *mi, enum err_code *code)
{
    struct err e = {0};
    memset(mi, 0, sizeof(*mi));
    int rc = manifest_parse(body, strlen(body), ct, mi, &e);
    *code = e.code;
    return rc;
}

static void
expect_fail(const char *body, const char *ct, enum err_code want)
{
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(body, ct, &mi, &c), -1, "should fail: %s", body);
    cr_assert_eq(c, want, "code %d want %d for: %s", c, want, body);
}

Test(manifest, oci_image_manifest)
{
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(oci_manifest, MT_OCI_MANIFEST, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.media_type, MT_OCI_MANIFEST);
    cr_assert_str_eq(mi.artifact_type, CFG_OCI, "referrers rule: config.mediaType");
    cr_assert_eq(mi.has_subject, 0);
    cr_assert_eq(mi.nrefs, 3);
    char buf[DIGEST_STR_MAX];
    cr_assert_str_eq(digest_format(&mi.refs[0].digest, buf), D1);
    cr_assert_eq(mi.refs[0].kind, REF_BLOB);
    cr_assert_eq(mi.refs[0].size, 10);
    cr_assert_str_eq(digest_format(&mi.refs[2].digest, buf), D3);
    cr_assert_eq(mi.refs[2].size, 30);
    cr_assert_str_eq(mi.annotations_json, "{\"org.opencontainers.image.created\":\"2024-01-01\"}");
    manifest_info_release(&mi);
    manifest_info_release(&mi); /* idempotent */
}

Test(manifest, content_type_parameters_are_ignored)
{
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(oci_manifest, " " MT_OCI_MANIFEST " ; charset=utf-8", &mi, &c), 0);
    manifest_info_release(&mi);
    cr_assert_eq(parse(oci_manifest, NULL, &mi, &c), 0);
    manifest_info_release(&mi);
}

Test(manifest, media_type_from_content_type_when_field_absent)
{
    const char *body = "{\"schemaVersion\":2,\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[]}";
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(body, MT_OCI_MANIFEST, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.media_type, MT_OCI_MANIFEST);
    cr_assert_eq(mi.nrefs, 1);
    manifest_info_release(&mi);
    /* neither given: the structure decides */
    cr_assert_eq(parse(body, NULL, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.media_type, MT_OCI_MANIFEST);
    manifest_info_release(&mi);
    const char *idx = "{\"schemaVersion\":2,\"manifests\":[]}";
    cr_assert_eq(parse(idx, NULL, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.media_type, MT_OCI_INDEX);
    manifest_info_release(&mi);
}

Test(manifest, media_type_mismatch_is_invalid)
{
    expect_fail(oci_manifest, MT_DOCKER_MANIFEST, ERR_MANIFEST_INVALID);
    expect_fail(oci_manifest, MT_OCI_INDEX, ERR_MANIFEST_INVALID);
    expect_fail(oci_manifest, "application/json", ERR_MANIFEST_INVALID);
}

Test(manifest, unknown_media_types_are_unsupported)
{
    expect_fail("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.foo+json\",\"layers\":[]}",
                NULL, ERR_UNSUPPORTED);
    expect_fail("{\"schemaVersion\":1,\"name\":\"x\",\"tag\":\"y\",\"fsLayers\":[]}",
                "application/vnd.docker.distribution.manifest.v1+prettyjws", ERR_UNSUPPORTED);
    expect_fail("{\"schemaVersion\":2,\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[]}",
                "application/octet-stream", ERR_UNSUPPORTED);
}

Test(manifest, oci_index_refs_are_manifests)
{
    const char *body = "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":["
                       "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":5,"
                       "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}," DESC(
                           MT_OCI_MANIFEST, D2, 6) "],\"artifactType\":\"application/vnd.x\"}";
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(body, MT_OCI_INDEX, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.media_type, MT_OCI_INDEX);
    cr_assert_str_eq(mi.artifact_type, "application/vnd.x");
    cr_assert_eq(mi.nrefs, 2);
    cr_assert_eq(mi.refs[0].kind, REF_MANIFEST);
    cr_assert_eq(mi.refs[1].kind, REF_MANIFEST);
    cr_assert_null(mi.annotations_json);
    manifest_info_release(&mi);
}

Test(manifest, docker_schema2_and_list)
{
    const char *m =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"config\":" DESC(
            "application/vnd.docker.container.image.v1+json", D1,
            7) ",\"layers\":[" DESC("application/vnd.docker.image.rootfs.diff.tar.gzip", D2,
                                    9) "]}";
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(m, MT_DOCKER_MANIFEST, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.media_type, MT_DOCKER_MANIFEST);
    cr_assert_str_eq(mi.artifact_type, "", "docker types have no artifactType");
    cr_assert_eq(mi.nrefs, 2);
    manifest_info_release(&mi);
    const char *l = "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_LIST
                    "\",\"manifests\":[" DESC(MT_DOCKER_MANIFEST, D1, 5) "]}";
    cr_assert_eq(parse(l, NULL, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.media_type, MT_DOCKER_LIST);
    cr_assert_eq(mi.nrefs, 1);
    cr_assert_eq(mi.refs[0].kind, REF_MANIFEST);
    manifest_info_release(&mi);
}

Test(manifest, artifact_with_unknown_config_type_and_subject)
{
    const char *body =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
        "\"artifactType\":\"application/vnd.example.sbom\","
        "\"config\":" DESC(
            "application/vnd.oci.empty.v1+json",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            2) ",\"layers\":[" DESC("application/vnd.example.sbom.v1+json", D2,
                                    100) "],"
                                         "\"subject\":" DESC(MT_OCI_MANIFEST, D3, 500) "}";
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(body, MT_OCI_MANIFEST, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.artifact_type, "application/vnd.example.sbom");
    cr_assert_eq(mi.has_subject, 1);
    char buf[DIGEST_STR_MAX];
    cr_assert_str_eq(digest_format(&mi.subject, buf), D3);
    cr_assert_eq(mi.nrefs, 2, "subject is not a reference");
    manifest_info_release(&mi);

    /* no artifactType: config.mediaType stands in */
    const char *b2 =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
        "\",\"config\":" DESC("application/vnd.example.config+json", D1, 2) ",\"layers\":[]}";
    cr_assert_eq(parse(b2, NULL, &mi, &c), 0, "code %d", c);
    cr_assert_str_eq(mi.artifact_type, "application/vnd.example.config+json");
    manifest_info_release(&mi);
}

Test(manifest, foreign_layers_are_marked)
{
    const char *body = "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
                       "\",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[" DESC(
                           "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", D2,
                           2) ","
                              "{\"mediaType\":\"" LAYER_OCI "\",\"digest\":\"" D3
                              "\",\"size\":3,\"urls\":[\"https://x/y\"]}," DESC(
                                  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", D1,
                                  4) "," DESC(LAYER_OCI, D2, 5) "]}";
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(body, NULL, &mi, &c), 0, "code %d", c);
    cr_assert_eq(mi.nrefs, 5);
    cr_assert_eq(mi.refs[0].kind, REF_BLOB);
    cr_assert_eq(mi.refs[1].kind, REF_FOREIGN);
    cr_assert_eq(mi.refs[2].kind, REF_FOREIGN);
    cr_assert_eq(mi.refs[3].kind, REF_FOREIGN);
    cr_assert_eq(mi.refs[4].kind, REF_BLOB);
    manifest_info_release(&mi);
}

Test(manifest, rejects_structurally_invalid)
{
#define M(rest) "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\"" rest "}"
    const char *bad[] = {
        "",
        "not json",
        "[]",
        "\"str\"",
        "{\"schemaVersion\":2,",
        M(",\"config\":" DESC(CFG_OCI, D1, 1)),                    /* no layers */
        M(",\"layers\":[]"),                                       /* no config */
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":{}"),   /* layers not array */
        M(",\"config\":\"x\",\"layers\":[]"),                      /* config not object */
        M(",\"config\":" DESC(CFG_OCI, D1, -1) ",\"layers\":[]"),  /* negative size */
        M(",\"config\":" DESC(CFG_OCI, D1, 1.5) ",\"layers\":[]"), /* real size */
        M(",\"config\":{\"mediaType\":\"" CFG_OCI "\",\"digest\":\"" D1 "\",\"size\":\"1\"},"
          "\"layers\":[]"), /* string size */
        M(",\"config\":{\"mediaType\":\"" CFG_OCI "\",\"digest\":\"" D1 "\"},\"layers\":[]"),
        M(",\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":[]"), /* no mediaType */
        M(",\"config\":" DESC("noslash", D1, 1) ",\"layers\":[]"),
        M(",\"config\":{\"mediaType\":\"" CFG_OCI "\",\"size\":1},\"layers\":[]"), /* no digest */
        M(",\"config\":" DESC(CFG_OCI, "blake3:abc", 1) ",\"layers\":[]"), /* unknown algo */
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[1]"),
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[],\"manifests\":[]"),
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[],\"annotations\":{\"a\":1}"),
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[],\"annotations\":[]"),
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[],\"subject\":\"x\""),
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[],\"artifactType\":5"),
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":["
                                              "{\"mediaType\":\"" LAYER_OCI "\",\"digest\":\"" D2
                                              "\",\"size\":1,\"urls\":\"x\"}"
                                              "]"),
        /* duplicate keys are ambiguous */
        M(",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[],\"layers\":[]"),
        "{\"schemaVersion\":1,\"mediaType\":\"" MT_OCI_MANIFEST
        "\",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[]}",
        "{\"schemaVersion\":\"2\",\"mediaType\":\"" MT_OCI_MANIFEST
        "\",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[]}",
        "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":5,\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\"}",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":{}}",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":[],\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX
        "\",\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1
        "\",\"size\":1,\"platform\":\"linux\"}]}",
        "{\"schemaVersion\":2}",
    };
#undef M
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        expect_fail(bad[i], NULL, ERR_MANIFEST_INVALID);
}

Test(manifest, bad_descriptor_digest_is_digest_invalid)
{
    expect_fail("{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
                "\",\"config\":" DESC(CFG_OCI, "sha256:XYZ", 1) ",\"layers\":[]}",
                NULL, ERR_DIGEST_INVALID);
    expect_fail("{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX
                "\",\"manifests\":[" DESC(MT_OCI_MANIFEST, "sha256:../../etc", 1) "]}",
                NULL, ERR_DIGEST_INVALID);
}

Test(manifest, body_need_not_be_nul_terminated)
{
    size_t n = strlen(oci_manifest);
    char *copy = malloc(n);
    memcpy(copy, oci_manifest, n);
    struct manifest_info mi;
    struct err e = {0};
    cr_assert_eq(manifest_parse(copy, n, NULL, &mi, &e), 0, "%s", e.msg);
    manifest_info_release(&mi);
    cr_assert_eq(manifest_parse(copy, n - 1, NULL, &mi, &e), -1, "truncated body");
    free(copy);
}

Test(manifest, many_layers)
{
    size_t cap = 200 + 1000 * 200;
    char *b = malloc(cap);
    size_t off = (size_t)snprintf(
        b, cap, "{\"schemaVersion\":2,\"config\":" DESC(CFG_OCI, D1, 1) ",\"layers\":[");
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(b + off, cap - off, "%s" DESC(LAYER_OCI, D2, 1), i ? "," : "");
    snprintf(b + off, cap - off, "]}");
    struct manifest_info mi;
    enum err_code c;
    cr_assert_eq(parse(b, MT_OCI_MANIFEST, &mi, &c), 0, "code %d", c);
    cr_assert_eq(mi.nrefs, 1001);
    manifest_info_release(&mi);
    free(b);
}

/* oci_manifest with an extra top-level "x" holding `n` copies of `item`, or
 * `n` nested arrays when item is NULL; malloc'd */
static char *
with_extra(size_t n, const char *item)
{
    return integ_json_padded(oci_manifest, n, item);
}

/* values of oci_manifest itself: root, schemaVersion, mediaType, config (4),
 * layers (1 + 2 * 4), annotations (2) */
#define OWN_VALUES 18u

Test(manifest, values_over_the_limit_are_refused_before_parsing)
{
    /* at the limit: x itself plus MAX - OWN - 1 empty arrays */
    char *b = with_extra(MANIFEST_MAX_JSON_VALUES - OWN_VALUES - 1, "[]");
    struct manifest_info mi;
    struct err e = {0};
    cr_assert_eq(manifest_parse(b, strlen(b), NULL, &mi, &e), 0, "%s", e.msg);
    manifest_info_release(&mi);
    free(b);

    const char *items[] = {"[]", "{}", "0", "\"\"", "null", "{\"a\":{}}"};
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        b = with_extra(MANIFEST_MAX_JSON_VALUES - OWN_VALUES, items[i]);
        memset(&e, 0, sizeof(e));
        cr_assert_eq(manifest_parse(b, strlen(b), NULL, &mi, &e), -1, "item %s", items[i]);
        cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
        cr_assert(strstr(e.msg, "more than 150000 values"), "%s", e.msg);
        free(b);
    }
    /* over the limit and broken at the end: still the limit, not a syntax error
     * after building the tree */
    b = with_extra(2 * MANIFEST_MAX_JSON_VALUES, "[]");
    b[strlen(b) - 3] = '#';
    memset(&e, 0, sizeof(e));
    cr_assert_eq(manifest_parse(b, strlen(b), NULL, &mi, &e), -1);
    cr_assert(strstr(e.msg, "more than"), "%s", e.msg);
    free(b);
}

Test(manifest, nesting_deeper_than_the_limit_is_refused)
{
    /* the root object is level 1, x's arrays levels 2.. */
    char *b = with_extra(MANIFEST_MAX_JSON_DEPTH - 1, NULL);
    struct manifest_info mi;
    struct err e = {0};
    cr_assert_eq(manifest_parse(b, strlen(b), NULL, &mi, &e), 0, "%s", e.msg);
    manifest_info_release(&mi);
    free(b);
    b = with_extra(MANIFEST_MAX_JSON_DEPTH, NULL);
    cr_assert_eq(manifest_parse(b, strlen(b), NULL, &mi, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
    cr_assert(strstr(e.msg, "deeper than 64 levels"), "%s", e.msg);
    free(b);
}

Test(manifest, brackets_and_escapes_inside_strings_are_not_values)
{
    /* one string value of 400,000 brackets, quotes and backslashes */
    size_t n = 400000;
    char *item = malloc(n + 3);
    item[0] = '"';
    for (size_t i = 0; i < n; i += 4)
        memcpy(item + 1 + i, "[{\\\"", 4);
    item[n + 1] = '"';
    item[n + 2] = '\0';
    char *b = with_extra(1, item);
    struct manifest_info mi;
    struct err e = {0};
    cr_assert_eq(manifest_parse(b, strlen(b), NULL, &mi, &e), 0, "%s", e.msg);
    manifest_info_release(&mi);
    free(b);
    free(item);
}

/* an index of 10,000 descriptors (the default max_manifest_refs), each with a
 * platform and annotations: far inside the limits */
Test(manifest, big_index_with_annotations_is_within_the_limits)
{
    size_t cap = 10000 * 400 + 200;
    char *b = malloc(cap);
    size_t off = (size_t)snprintf(b, cap, "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX
                                          "\",\"manifests\":[");
    for (int i = 0; i < 10000; i++)
        off += (size_t)snprintf(
            b + off, cap - off,
            "%s{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":%d,"
            "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\",\"variant\":\"v%d\"},"
            "\"annotations\":{\"org.opencontainers.image.ref.name\":\"v%d\","
            "\"org.opencontainers.image.created\":\"2024-01-01T00:00:00Z\"}}",
            i ? "," : "", i, i % 4, i);
    snprintf(b + off, cap - off, "]}");
    struct manifest_info mi;
    struct err e = {0};
    cr_assert_eq(manifest_parse(b, strlen(b), NULL, &mi, &e), 0, "%s", e.msg);
    cr_assert_eq(mi.nrefs, 10000);
    manifest_info_release(&mi);
    free(b);
}

struct par {
    const char *body;
    int rc;
};

static void *
par_parse(void *arg)
{
    struct par *p = arg;
    struct manifest_info mi;
    struct err e = {0};
    p->rc = manifest_parse(p->body, strlen(p->body), NULL, &mi, &e);
    if (p->rc == 0)
        manifest_info_release(&mi);
    return NULL;
}

/* large parses queue on the process-wide budget: all finish, none fails */
Test(manifest, concurrent_large_parses_all_complete)
{
    char *big = with_extra(MANIFEST_MAX_JSON_VALUES - OWN_VALUES - 1, "{}");
    pthread_t t[8];
    struct par p[8];
    for (int i = 0; i < 8; i++) {
        p[i].body = i % 2 ? big : oci_manifest;
        p[i].rc = -2;
        cr_assert_eq(pthread_create(&t[i], NULL, par_parse, &p[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(p[i].rc, 0, "parse %d", i);
    }
    free(big);
}
