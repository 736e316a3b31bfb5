/* digest_test.c - digest grammar, formatting and hashing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"

#define SHA256_EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA256_ABC "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA512_ABC                                                                                 \
    "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a83"     \
    "6ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"

static int
parse(const char *s, struct digest *d, enum err_code *code)
{
    struct err e = {0};
    int rc = digest_parse(s, strlen(s), d, &e);
    *code = e.code;
    return rc;
}

Test(digest, parses_and_formats_sha256_and_sha512)
{
    struct digest d;
    enum err_code c;
    char buf[DIGEST_STR_MAX];
    cr_assert_eq(parse(SHA256_ABC, &d, &c), 0);
    cr_assert_eq(d.algo, DIGEST_SHA256);
    cr_assert_eq(d.len, 64);
    cr_assert_str_eq(digest_format(&d, buf), SHA256_ABC);
    cr_assert_eq(parse(SHA512_ABC, &d, &c), 0);
    cr_assert_eq(d.algo, DIGEST_SHA512);
    cr_assert_eq(d.len, 128);
    cr_assert_str_eq(digest_format(&d, buf), SHA512_ABC);
}

Test(digest, rejects_malformed_as_digest_invalid)
{
    const char *bad[] = {
        "",
        "sha256",
        ":abc",
        "sha256:",
        "sha256::",
        "SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
        "sha256:ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256:../../../../etc/passwd",
        "sha256:ba7816bf/8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "+sha256:abc",
        "sha256+:abc",
        "sha++256:abc",
        "blake3:ab/c",
        "blake3:",
        " sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct digest d;
        enum err_code c;
        cr_assert_eq(parse(bad[i], &d, &c), -1, "'%s' should be invalid", bad[i]);
        cr_assert_eq(c, ERR_DIGEST_INVALID, "'%s': code %d", bad[i], c);
    }
}

Test(digest, unknown_algorithm_of_valid_form_is_unsupported)
{
    const char *unsup[] = {"blake3:abcdef",
                           "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
                           "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
                           "sha384:abc", "md5:d41d8cd98f00b204e9800998ecf8427e"};
    for (size_t i = 0; i < sizeof(unsup) / sizeof(*unsup); i++) {
        struct digest d;
        enum err_code c;
        cr_assert_eq(parse(unsup[i], &d, &c), -1);
        cr_assert_eq(c, ERR_UNSUPPORTED, "'%s': code %d", unsup[i], c);
    }
}

Test(digest, parse_uses_only_len_bytes)
{
    char buf[200];
    snprintf(buf, sizeof(buf), "%sXYZ", SHA256_ABC);
    struct digest d;
    struct err e = {0};
    cr_assert_eq(digest_parse(buf, strlen(SHA256_ABC), &d, &e), 0);
    cr_assert_eq(digest_parse(buf, strlen(buf), &d, &e), -1);
}

Test(digest, algo_parse)
{
    enum digest_algo a;
    struct err e = {0};
    cr_assert_eq(digest_algo_parse("sha256", 6, &a, &e), 0);
    cr_assert_eq(a, DIGEST_SHA256);
    cr_assert_eq(digest_algo_parse("sha512", 6, &a, &e), 0);
    cr_assert_eq(a, DIGEST_SHA512);
    cr_assert_eq(digest_algo_parse("sha384", 6, &a, &e), -1);
    cr_assert_eq(e.code, ERR_UNSUPPORTED);
    cr_assert_eq(digest_algo_parse("sha25", 5, &a, &e), -1);
    cr_assert_eq(digest_algo_parse("SHA256", 6, &a, &e), -1);
}

Test(digest, equal_compares_algo_and_hex)
{
    struct digest a, b, c;
    digest_of(DIGEST_SHA256, "abc", 3, &a);
    digest_of(DIGEST_SHA256, "abc", 3, &b);
    digest_of(DIGEST_SHA256, "abd", 3, &c);
    cr_assert(digest_equal(&a, &b));
    cr_assert(!digest_equal(&a, &c));
    digest_of(DIGEST_SHA512, "abc", 3, &c);
    cr_assert(!digest_equal(&a, &c));
}

Test(digest, known_vectors_one_shot_and_streaming)
{
    char buf[DIGEST_STR_MAX];
    struct digest d;
    digest_of(DIGEST_SHA256, "", 0, &d);
    cr_assert_str_eq(digest_format(&d, buf), SHA256_EMPTY);
    digest_of(DIGEST_SHA256, "abc", 3, &d);
    cr_assert_str_eq(digest_format(&d, buf), SHA256_ABC);
    digest_of(DIGEST_SHA512, "abc", 3, &d);
    cr_assert_str_eq(digest_format(&d, buf), SHA512_ABC);

    struct hasher *h = hasher_new(DIGEST_SHA512);
    cr_assert_not_null(h);
    hasher_update(h, "a", 1);
    hasher_update(h, "", 0);
    hasher_update(h, "bc", 2);
    hasher_final(h, &d);
    hasher_free(h);
    cr_assert_str_eq(digest_format(&d, buf), SHA512_ABC);
    hasher_free(NULL);
}

Test(digest, streaming_equals_one_shot_on_large_input)
{
    size_t n = 1 << 20;
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 131 + 7);
    struct digest one, two;
    digest_of(DIGEST_SHA256, data, n, &one);
    struct hasher *h = hasher_new(DIGEST_SHA256);
    for (size_t off = 0; off < n; off += 4093)
        hasher_update(h, data + off, n - off < 4093 ? n - off : 4093);
    hasher_final(h, &two);
    hasher_free(h);
    free(data);
    cr_assert(digest_equal(&one, &two));
}
