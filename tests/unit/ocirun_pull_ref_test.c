/* ocirun_pull_ref_test.c - image reference parsing and normalisation. */
#include <criterion/criterion.h>
#include <string.h>

#include "tools/ocirun-lite/imgref.h"

#include "common/banned.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct imgref
parse_ok(const char *s)
{
    struct imgref r;
    struct err e;
    err_clear(&e);
    int rc = imgref_parse(s, &r, &e);
    cr_assert_eq(rc, 0, "parse \"%s\" failed: %s", s, e.msg);
    return r;
}

static void
parse_bad(const char *s, enum err_code code)
{
    struct imgref r;
    struct err e;
    err_clear(&e);
    cr_assert_eq(imgref_parse(s, &r, &e), -1, "\"%s\" should be refused", s);
    cr_assert_eq(e.code, code, "\"%s\": code %d, want %d (%s)", s, e.code, code, e.msg);
    cr_assert(e.msg[0] != '\0');
}

Test(imgref, docker_hub_short_name_gets_library_and_latest)
{
    struct imgref r = parse_ok("busybox");
    cr_assert_str_eq(r.domain, "docker.io");
    cr_assert_str_eq(r.path, "library/busybox");
    cr_assert_str_eq(r.tag, "latest");
    cr_assert_str_eq(r.digest, "");
    cr_assert_str_eq(imgref_api_host(&r), "registry-1.docker.io");
    cr_assert_str_eq(imgref_reference(&r), "latest");
}

Test(imgref, docker_hub_user_repo_keeps_path)
{
    struct imgref r = parse_ok("someuser/app:1.2");
    cr_assert_str_eq(r.domain, "docker.io");
    cr_assert_str_eq(r.path, "someuser/app");
    cr_assert_str_eq(r.tag, "1.2");
}

Test(imgref, explicit_docker_io_and_index_normalised)
{
    struct imgref r = parse_ok("docker.io/alpine");
    cr_assert_str_eq(r.path, "library/alpine");
    r = parse_ok("index.docker.io/library/alpine:3");
    cr_assert_str_eq(r.domain, "docker.io");
    cr_assert_str_eq(r.path, "library/alpine");
    cr_assert_str_eq(r.tag, "3");
}

Test(imgref, host_port_repo_tag)
{
    struct imgref r = parse_ok("127.0.0.1:5000/ocirun/busybox:v1");
    cr_assert_str_eq(r.domain, "127.0.0.1:5000");
    cr_assert_str_eq(r.path, "ocirun/busybox");
    cr_assert_str_eq(r.tag, "v1");
    cr_assert_str_eq(imgref_api_host(&r), "127.0.0.1:5000");
}

Test(imgref, port_without_tag_is_not_a_tag)
{
    struct imgref r = parse_ok("localhost:5000/foo");
    cr_assert_str_eq(r.domain, "localhost:5000");
    cr_assert_str_eq(r.path, "foo");
    cr_assert_str_eq(r.tag, "latest");
}

Test(imgref, localhost_without_port_is_a_domain)
{
    struct imgref r = parse_ok("localhost/foo/bar");
    cr_assert_str_eq(r.domain, "localhost");
    cr_assert_str_eq(r.path, "foo/bar");
}

Test(imgref, digest_only_has_no_tag)
{
    struct imgref r = parse_ok("quay.io/org/img@sha256:" D64);
    cr_assert_str_eq(r.domain, "quay.io");
    cr_assert_str_eq(r.path, "org/img");
    cr_assert_str_eq(r.tag, "");
    cr_assert_str_eq(r.digest, "sha256:" D64);
    cr_assert_str_eq(imgref_reference(&r), "sha256:" D64);
}

Test(imgref, tag_and_digest_fetch_by_digest)
{
    struct imgref r = parse_ok("example.com/a:t@sha256:" D64);
    cr_assert_str_eq(r.tag, "t");
    cr_assert_str_eq(imgref_reference(&r), "sha256:" D64);
    char buf[600];
    cr_assert_str_eq(imgref_format(&r, buf, sizeof(buf)), "example.com/a:t@sha256:" D64);
}

Test(imgref, format_is_canonical)
{
    char buf[600];
    struct imgref r = parse_ok("busybox");
    cr_assert_str_eq(imgref_format(&r, buf, sizeof(buf)), "docker.io/library/busybox:latest");
    r = parse_ok("127.0.0.1:5000/x@sha256:" D64);
    cr_assert_str_eq(imgref_format(&r, buf, sizeof(buf)), "127.0.0.1:5000/x@sha256:" D64);
}

Test(imgref, separators_in_components)
{
    parse_ok("ab_c__d-e---f/g.h");
    parse_ok("example.com/a-b/c.d/e_f:tag_1.0-rc");
}

Test(imgref, refuses_uppercase_repository)
{
    parse_bad("Busybox", ERR_NAME_INVALID);
    parse_bad("example.com/Org/img", ERR_NAME_INVALID);
}

Test(imgref, uppercase_domain_is_allowed)
{
    struct imgref r = parse_ok("Example.COM/img");
    cr_assert_str_eq(r.domain, "Example.COM");
}

Test(imgref, refuses_bad_names)
{
    parse_bad("", ERR_NAME_INVALID);
    parse_bad("a//b", ERR_NAME_INVALID);
    parse_bad("a/", ERR_NAME_INVALID);
    parse_bad("-a", ERR_NAME_INVALID);
    parse_bad("a..b", ERR_NAME_INVALID);
    parse_bad("a_-b", ERR_NAME_INVALID);
    parse_bad("example.com:port/x", ERR_NAME_INVALID);
    parse_bad("a:", ERR_NAME_INVALID);
    parse_bad("a:-bad", ERR_NAME_INVALID);
    parse_bad(":tag", ERR_NAME_INVALID);
}

Test(imgref, refuses_long_tag)
{
    char s[200];
    memset(s, 0, sizeof(s));
    memcpy(s, "a:", 2);
    memset(s + 2, 'x', 129);
    parse_bad(s, ERR_NAME_INVALID);
    s[2 + 128] = '\0';
    parse_ok(s);
}

Test(imgref, refuses_bad_digests)
{
    parse_bad("a@sha256:abc", ERR_DIGEST_INVALID);
    parse_bad("a@md5:" D64, ERR_DIGEST_INVALID);
    parse_bad("a@sha256:"
              "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
              ERR_DIGEST_INVALID);
    parse_bad("a@" D64, ERR_DIGEST_INVALID);
}

Test(imgref, insecure_host_list_matching)
{
    cr_assert_eq(imgref_host_in_list("127.0.0.1:5000", "127.0.0.1:5000"), 1);
    cr_assert_eq(imgref_host_in_list("127.0.0.1:5000", "example.com, 127.0.0.1"), 1);
    cr_assert_eq(imgref_host_in_list("127.0.0.1:5000", "127.0.0.1:5001"), 0);
    cr_assert_eq(imgref_host_in_list("127.0.0.1", "127.0.0.1:5000"), 0);
    cr_assert_eq(imgref_host_in_list("127.0.0.10:5000", "127.0.0.1"), 0);
    cr_assert_eq(imgref_host_in_list("reg.local", "a,reg.local,b"), 1);
    cr_assert_eq(imgref_host_in_list("[::1]:5000", "[::1]"), 1);
    cr_assert_eq(imgref_host_in_list("x", NULL), 0);
    cr_assert_eq(imgref_host_in_list("x", ""), 0);
}
