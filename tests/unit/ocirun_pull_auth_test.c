/* ocirun_pull_auth_test.c - WWW-Authenticate parsing, credentials files,
 * --creds and base64. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/ocirun-lite/regauth.h"

#include "common/banned.h"

static struct regauth_challenge
chal_ok(const char *h)
{
    struct regauth_challenge c;
    struct err e;
    err_clear(&e);
    cr_assert_eq(regauth_parse_challenge(h, &c, &e), 0, "\"%s\": %s", h, e.msg);
    return c;
}

Test(regauth, bearer_challenge_of_docker_hub)
{
    struct regauth_challenge c =
        chal_ok("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
                "scope=\"repository:library/busybox:pull\"");
    cr_assert_eq(c.scheme, REGAUTH_BEARER);
    cr_assert_str_eq(c.realm, "https://auth.docker.io/token");
    cr_assert_str_eq(c.service, "registry.docker.io");
    cr_assert_str_eq(c.scope, "repository:library/busybox:pull");
}

Test(regauth, bearer_params_any_order_spaces_and_case)
{
    struct regauth_challenge c =
        chal_ok("bearer  Service = \"svc\" ,  REALM=\"http://127.0.0.1:1/t?x=1\"");
    cr_assert_eq(c.scheme, REGAUTH_BEARER);
    cr_assert_str_eq(c.realm, "http://127.0.0.1:1/t?x=1");
    cr_assert_str_eq(c.service, "svc");
    cr_assert_str_eq(c.scope, "");
}

Test(regauth, quoted_values_with_commas_and_escapes)
{
    struct regauth_challenge c =
        chal_ok("Bearer realm=\"https://a/t\",scope=\"repository:a/b:pull,push repository:c:pull\","
                "service=\"we\\\"ird\"");
    cr_assert_str_eq(c.scope, "repository:a/b:pull,push repository:c:pull");
    cr_assert_str_eq(c.service, "we\"ird");
}

Test(regauth, token_values_unquoted)
{
    struct regauth_challenge c = chal_ok("Bearer realm=https://x/token,service=reg");
    cr_assert_str_eq(c.realm, "https://x/token");
    cr_assert_str_eq(c.service, "reg");
}

Test(regauth, basic_challenge)
{
    struct regauth_challenge c = chal_ok("Basic realm=\"Registry Realm\"");
    cr_assert_eq(c.scheme, REGAUTH_BASIC);
    cr_assert_str_eq(c.realm, "Registry Realm");
}

Test(regauth, bearer_preferred_among_several_challenges)
{
    struct regauth_challenge c =
        chal_ok("Basic realm=\"r\", Negotiate abc==, Bearer realm=\"https://t/x\",service=\"s\"");
    cr_assert_eq(c.scheme, REGAUTH_BEARER);
    cr_assert_str_eq(c.realm, "https://t/x");
    cr_assert_str_eq(c.service, "s");
}

Test(regauth, refuses_unusable_challenges)
{
    struct regauth_challenge c;
    struct err e;
    cr_assert_eq(regauth_parse_challenge(NULL, &c, &e), -1);
    cr_assert_eq(e.code, ERR_UNAUTHORIZED);
    cr_assert_eq(regauth_parse_challenge("", &c, &e), -1);
    cr_assert_eq(regauth_parse_challenge("Negotiate", &c, &e), -1);
    cr_assert_eq(regauth_parse_challenge("Bearer service=\"x\"", &c, &e), -1);
    cr_assert(strstr(e.msg, "realm") != NULL, "%s", e.msg);
    cr_assert_eq(regauth_parse_challenge("Bearer realm=\"unterminated", &c, &e), -1);
}

Test(regauth, base64_decodes_padding_variants)
{
    char out[64];
    cr_assert_eq(regauth_base64_decode("dXNlcjpwYXNz", out, sizeof(out)), 9);
    cr_assert_str_eq(out, "user:pass");
    cr_assert_eq(regauth_base64_decode("YQ==", out, sizeof(out)), 1);
    cr_assert_str_eq(out, "a");
    cr_assert_eq(regauth_base64_decode("YWI=", out, sizeof(out)), 2);
    cr_assert_str_eq(out, "ab");
    cr_assert_eq(regauth_base64_decode("", out, sizeof(out)), 0);
    cr_assert_eq(regauth_base64_decode("a*b", out, sizeof(out)), -1);
    cr_assert_eq(regauth_base64_decode("YQ==YQ", out, sizeof(out)), -1);
    cr_assert_eq(regauth_base64_decode("dXNlcjpwYXNz", out, 4), -1);
}

Test(regauth, creds_option_splits_at_first_colon)
{
    struct regauth_creds c;
    struct err e;
    cr_assert_eq(regauth_parse_creds("bob:pa:ss", &c, &e), 0);
    cr_assert_str_eq(c.user, "bob");
    cr_assert_str_eq(c.pass, "pa:ss");
    cr_assert_eq(regauth_parse_creds("nocolon", &c, &e), -1);
    cr_assert_eq(regauth_parse_creds(":pw", &c, &e), -1);
}

static char *
write_tmp(const char *text)
{
    char *path = strdup("/tmp/ocirun-auth-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static const char config_json[] =
    "{\"auths\": {"
    "  \"https://index.docker.io/v1/\": {\"auth\": \"aHViOmh1YnB3\"},"
    "  \"127.0.0.1:5000\": {\"auth\": \"YWxpY2U6c2VjcmV0OjE=\"},"
    "  \"http://reg.example.com/\": {\"username\": \"u2\", \"password\": \"p2\"},"
    "  \"empty.example.com\": {}"
    "}, \"credsStore\": \"desktop\"}";

Test(regauth, config_file_matches_host_and_port)
{
    char *p = write_tmp(config_json);
    struct regauth_creds c;
    struct err e;
    err_clear(&e);
    cr_assert_eq(regauth_lookup_file(p, "127.0.0.1:5000", &c, &e), 1, "%s", e.msg);
    cr_assert_str_eq(c.user, "alice");
    cr_assert_str_eq(c.pass, "secret:1");
    cr_assert_eq(regauth_lookup_file(p, "127.0.0.1:5001", &c, &e), 0);
    cr_assert_eq(regauth_lookup_file(p, "reg.example.com", &c, &e), 1);
    cr_assert_str_eq(c.user, "u2");
    cr_assert_str_eq(c.pass, "p2");
    cr_assert_eq(regauth_lookup_file(p, "empty.example.com", &c, &e), 0);
    unlink(p);
    free(p);
}

Test(regauth, config_file_docker_hub_aliases)
{
    char *p = write_tmp(config_json);
    struct regauth_creds c;
    struct err e;
    cr_assert_eq(regauth_lookup_file(p, "docker.io", &c, &e), 1);
    cr_assert_str_eq(c.user, "hub");
    cr_assert_str_eq(c.pass, "hubpw");
    cr_assert_eq(regauth_lookup_file(p, "registry-1.docker.io", &c, &e), 1);
    unlink(p);
    free(p);
}

Test(regauth, config_file_missing_is_not_an_error)
{
    struct regauth_creds c;
    struct err e;
    cr_assert_eq(regauth_lookup_file("/nonexistent/ocirun/config.json", "x", &c, &e), 0);
}

Test(regauth, config_file_malformed_is_an_error)
{
    char *p = write_tmp("{\"auths\": {");
    struct regauth_creds c;
    struct err e;
    cr_assert_eq(regauth_lookup_file(p, "x", &c, &e), -1);
    cr_assert_eq(e.code, ERR_CONFIG);
    unlink(p);
    free(p);
    p = write_tmp("{\"auths\": {\"h\": {\"auth\": \"bm9jb2xvbg==\"}}}"); /* "nocolon" */
    cr_assert_eq(regauth_lookup_file(p, "h", &c, &e), -1);
    unlink(p);
    free(p);
}

Test(regauth, lookup_honours_registry_auth_file)
{
    char *p = write_tmp(config_json);
    struct regauth_creds c;
    struct err e;
    setenv("REGISTRY_AUTH_FILE", p, 1);
    cr_assert_eq(regauth_lookup("127.0.0.1:5000", &c, &e), 1);
    cr_assert_str_eq(c.user, "alice");
    unsetenv("REGISTRY_AUTH_FILE");
    /* DOCKER_CONFIG points at a dir holding config.json */
    char dir[] = "/tmp/ocirun-dcfg-XXXXXX";
    cr_assert(mkdtemp(dir) != NULL);
    char cfg[64];
    snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
    cr_assert_eq(rename(p, cfg), 0);
    setenv("DOCKER_CONFIG", dir, 1);
    unsetenv("XDG_RUNTIME_DIR");
    cr_assert_eq(regauth_lookup("reg.example.com", &c, &e), 1);
    cr_assert_str_eq(c.user, "u2");
    unsetenv("DOCKER_CONFIG");
    unlink(cfg);
    rmdir(dir);
    free(p);
}
