/* ocirun_pull_platform_test.c - platform strings and picking a manifest from
 * an image index. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/utsname.h>

#include "tools/ocirun-lite/pull.h"

#include "common/banned.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define DD "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

#define ENTRY(d, sz, pf)                                                                           \
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" d "\","          \
    "\"size\":" #sz ",\"platform\":" pf "}"

static const char index_json[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":[" ENTRY(DA, 11, "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}") "," ENTRY(
        DB, 22,
        "{\"architecture\":\"amd64\",\"os\":\"linux\"}") "," ENTRY(DC, 33,
                                                                   "{\"architecture\":\"arm\","
                                                                   "\"os\":\"linux\",\"variant\":"
                                                                   "\"v6\"}") "," ENTRY(DD, 44,
                                                                                        "{\"archite"
                                                                                        "cture\":"
                                                                                        "\"arm\","
                                                                                        "\"os\":"
                                                                                        "\"linux\","
                                                                                        "\"variant"
                                                                                        "\":"
                                                                                        "\"v7\"}") ",{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DA
                                                                                                   "\",\"size\":5,\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}}"
                                                                                                   "]}";

static void
pick(const char *json, const char *want, const char *digest, int64_t size)
{
    struct platform p;
    struct err e;
    char d[CSTORE_DIGEST_LEN], mt[128];
    int64_t sz = -1;
    err_clear(&e);
    cr_assert_eq(pull_platform_parse(want, &p, &e), 0);
    cr_assert_eq(pull_select_platform(json, &p, d, &sz, mt, sizeof(mt), &e), 0, "%s: %s", want,
                 e.msg);
    cr_assert_str_eq(d, digest, "%s picked %s", want, d);
    cr_assert_eq(sz, size);
    cr_assert_str_eq(mt, "application/vnd.oci.image.manifest.v1+json");
}

Test(platform, picks_amd64)
{
    pick(index_json, "linux/amd64", DB, 22);
}

Test(platform, arm64_with_or_without_v8)
{
    pick(index_json, "linux/arm64", DA, 11);
    pick(index_json, "linux/arm64/v8", DA, 11);
}

Test(platform, arm_variant_exact)
{
    pick(index_json, "linux/arm/v7", DD, 44);
    pick(index_json, "linux/arm/v6", DC, 33);
}

Test(platform, no_match_lists_offers)
{
    struct platform p;
    struct err e;
    char d[CSTORE_DIGEST_LEN], mt[128];
    int64_t sz;
    cr_assert_eq(pull_platform_parse("linux/s390x", &p, &e), 0);
    cr_assert_eq(pull_select_platform(index_json, &p, d, &sz, mt, sizeof(mt), &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
    cr_assert(strstr(e.msg, "linux/s390x") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "linux/amd64") != NULL, "%s", e.msg);
    cr_assert_eq(pull_platform_parse("windows/amd64", &p, &e), 0);
    cr_assert_eq(pull_select_platform(index_json, &p, d, &sz, mt, sizeof(mt), &e), -1);
    cr_assert_eq(pull_platform_parse("linux/arm/v5", &p, &e), 0);
    cr_assert_eq(pull_select_platform(index_json, &p, d, &sz, mt, sizeof(mt), &e), -1);
}

Test(platform, docker_manifest_list_and_variantless_entry)
{
    static const char list[] =
        "{\"schemaVersion\":2,\"mediaType\":"
        "\"application/vnd.docker.distribution.manifest.list.v2+json\",\"manifests\":["
        "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" DC
        "\",\"size\":7,\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\"}},"
        "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" DD
        "\",\"size\":8,\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":"
        "\"v7\"}}]}";
    struct platform p;
    struct err e;
    char d[CSTORE_DIGEST_LEN], mt[128];
    int64_t sz;
    /* an exact variant wins over an entry that names none */
    cr_assert_eq(pull_platform_parse("linux/arm/v7", &p, &e), 0);
    cr_assert_eq(pull_select_platform(list, &p, d, &sz, mt, sizeof(mt), &e), 0);
    cr_assert_str_eq(d, DD);
    cr_assert_str_eq(mt, "application/vnd.docker.distribution.manifest.v2+json");
    /* a variant the index does not list falls back to the variant-less entry */
    cr_assert_eq(pull_platform_parse("linux/arm/v6", &p, &e), 0);
    cr_assert_eq(pull_select_platform(list, &p, d, &sz, mt, sizeof(mt), &e), 0);
    cr_assert_str_eq(d, DC);
}

Test(platform, refuses_bad_index)
{
    struct platform p;
    struct err e;
    char d[CSTORE_DIGEST_LEN], mt[128];
    int64_t sz;
    pull_platform_host(&p);
    cr_assert_eq(pull_select_platform("not json", &p, d, &sz, mt, sizeof(mt), &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
    cr_assert_eq(pull_select_platform("{\"manifests\":[{\"digest\":\"sha256:x\",\"size\":1,"
                                      "\"platform\":{\"os\":\"linux\",\"architecture\":\""
                                      "amd64\"}}]}",
                                      &p, d, &sz, mt, sizeof(mt), &e),
                 -1);
}

Test(platform, parse_and_format)
{
    struct platform p;
    struct err e;
    char buf[64];
    cr_assert_eq(pull_platform_parse("linux/arm64/v8", &p, &e), 0);
    cr_assert_str_eq(p.os, "linux");
    cr_assert_str_eq(p.arch, "arm64");
    cr_assert_str_eq(p.variant, "v8");
    cr_assert_str_eq(pull_platform_format(&p, buf, sizeof(buf)), "linux/arm64/v8");
    cr_assert_eq(pull_platform_parse("linux", &p, &e), -1);
    cr_assert_eq(pull_platform_parse("/amd64", &p, &e), -1);
    cr_assert_eq(pull_platform_parse("linux/", &p, &e), -1);
    cr_assert_eq(pull_platform_parse("linux/arm/v7/x", &p, &e), -1);
}

Test(platform, host_platform_matches_uname)
{
    struct platform p;
    struct utsname u;
    pull_platform_host(&p);
    cr_assert_str_eq(p.os, "linux");
    cr_assert_eq(uname(&u), 0);
    if (strcmp(u.machine, "x86_64") == 0)
        cr_assert_str_eq(p.arch, "amd64");
    else if (strcmp(u.machine, "aarch64") == 0)
        cr_assert_str_eq(p.arch, "arm64");
    else
        cr_assert(p.arch[0] != '\0');
}
