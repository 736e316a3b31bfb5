/* grammar_test.c - repository name and tag grammars, incl. traversal attempts
 * and length limits. */
#include <criterion/criterion.h>
#include <string.h>

#include "storage/storage.h"

static int
name_ok(const char *s)
{
    struct err e = {0};
    int rc = name_validate(s, strlen(s), &e);
    if (rc < 0)
        cr_assert_eq(e.code, ERR_NAME_INVALID, "code for '%s'", s);
    return rc == 0;
}

static int
tag_ok(const char *s)
{
    struct err e = {0};
    int rc = tag_validate(s, strlen(s), &e);
    if (rc < 0)
        cr_assert_eq(e.code, ERR_MANIFEST_INVALID, "code for '%s'", s);
    return rc == 0;
}

Test(grammar, name_accepts_spec_examples)
{
    const char *good[] = {
        "a",     "0",           "library/ubuntu",     "a.b",     "a_b",    "a__b", "a-b",
        "a---b", "foo/bar/baz", "a0.b1_c2__d3-e4/f5", "x/y-z.w", "123/456"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        cr_assert(name_ok(good[i]), "'%s' should be valid", good[i]);
}

Test(grammar, name_rejects_bad_forms_and_traversal)
{
    const char *bad[] = {"",      "A",     "Library/ubuntu", "a//b",   "/a",    "a/",
                         "a..b",  "..",    "../etc",         "a/../b", "a/./b", ".",
                         "a___b", "a_.b",  "a._b",           "a-",     "-a",    "a_",
                         "_a",    "a%2fb", "%2e%2e",         "a b",    "a:b",   ".a",
                         "a.",    "a/.b",  "a/-b",           "a\\b",   "a?b",   "a#b",
                         "a-.b",  "a.-b",  "a/_b",           "é",      "a\tb",  "a\nb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        cr_assert(!name_ok(bad[i]), "'%s' should be invalid", bad[i]);
}

Test(grammar, name_rejects_embedded_nul)
{
    struct err e = {0};
    cr_assert_eq(name_validate("ab\0cd", 5, &e), -1);
    cr_assert_eq(e.code, ERR_NAME_INVALID);
    cr_assert_eq(name_validate("abcd", 2, &e), 0, "only len bytes are looked at");
}

Test(grammar, name_length_limit_255)
{
    char buf[300];
    memset(buf, 'a', sizeof(buf));
    struct err e = {0};
    cr_assert_eq(name_validate(buf, NAME_MAX_LEN, &e), 0);
    cr_assert_eq(name_validate(buf, NAME_MAX_LEN + 1, &e), -1);
    cr_assert_eq(e.code, ERR_NAME_INVALID);
    /* many components also count towards the total */
    for (int i = 1; i < 299; i += 2)
        buf[i] = '/';
    cr_assert_eq(name_validate(buf, 255, &e), 0);
    cr_assert_eq(name_validate(buf, 257, &e), -1);
    cr_assert_eq(name_validate(NULL, 0, &e), -1);
}

Test(grammar, tag_accepts_grammar)
{
    const char *good[] = {"latest", "_x", "v1.0-rc_1", "A", "0", "a..b", "a--", "a.", "__"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        cr_assert(tag_ok(good[i]), "'%s' should be valid", good[i]);
}

Test(grammar, tag_rejects_bad_forms)
{
    const char *bad[] = {"",    ".x",   "-x", "a/b", "..",         "../x", "a:b",
                         "a b", "a%20", "ä",  "a@b", "sha256:abc", "a\n",  "/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        cr_assert(!tag_ok(bad[i]), "'%s' should be invalid", bad[i]);
}

Test(grammar, tag_length_limit_128)
{
    char buf[200];
    memset(buf, 'a', sizeof(buf));
    struct err e = {0};
    cr_assert_eq(tag_validate(buf, TAG_MAX_LEN, &e), 0);
    cr_assert_eq(tag_validate(buf, TAG_MAX_LEN + 1, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
    cr_assert_eq(tag_validate("a\0b", 3, &e), -1);
}
