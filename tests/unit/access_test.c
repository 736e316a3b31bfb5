/* access_test.c - the rules file: globs, first match wins, union within a
 * section, groups, admins, anonymous, load errors with file:line, the
 * default policy, a large file. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/access.h"

#include "common/banned.h"

static char dir[64], path[128];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/access_test.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/access.conf", dir);
}

static void
teardown(void)
{
    unlink(path);
    rmdir(dir);
}

TestSuite(access, .init = setup, .fini = teardown);

static void
write_rules(const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static struct access_rules *
load(const char *text)
{
    write_rules(text);
    struct err e = {0};
    struct access_rules *r = access_load(path, &e);
    cr_assert_not_null(r, "%s", e.msg);
    return r;
}

/* the load fails with ERR_CONFIG naming path:line and containing what */
static void
load_fails(const char *text, int line, const char *what)
{
    write_rules(text);
    struct err e = {0};
    struct access_rules *r = access_load(path, &e);
    cr_assert_null(r, "loaded: %s", text);
    cr_assert_eq(e.code, ERR_CONFIG, "%s", e.msg);
    char where[200];
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    cr_assert_not_null(strstr(e.msg, where), "'%s' lacks '%s'", e.msg, where);
    cr_assert_not_null(strstr(e.msg, what), "'%s' lacks '%s'", e.msg, what);
}

Test(access, single_star_stays_within_one_path_component)
{
    struct access_rules *r = load("[repo \"library/*\"]\nalice = pull\n");
    cr_assert_eq(access_allowed(r, "alice", "library/ubuntu"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "alice", "library/a.b-c_d"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "alice", "library/team/app"), 0);
    cr_assert_eq(access_allowed(r, "alice", "library"), 0);
    cr_assert_eq(access_allowed(r, "alice", "other/ubuntu"), 0);
    cr_assert_eq(access_allowed(r, "alice", "xlibrary/ubuntu"), 0);
    access_free(r);
}

Test(access, double_star_crosses_slashes)
{
    struct access_rules *r = load("[repo \"team/**\"]\nalice = push\n"
                                  "[repo \"**/cache\"]\nalice = delete\n");
    cr_assert_eq(access_allowed(r, "alice", "team/app"), ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "alice", "team/a/b/c"), ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "alice", "team"), 0);
    cr_assert_eq(access_allowed(r, "alice", "x/y/cache"), ACCESS_DELETE);
    cr_assert_eq(access_allowed(r, "alice", "x/y/cachex"), 0);
    access_free(r);
}

Test(access, question_mark_is_one_character_but_not_a_slash)
{
    struct access_rules *r = load("[repo \"app?\"]\nalice = pull\n"
                                  "[repo \"a?b\"]\nalice = push\n");
    cr_assert_eq(access_allowed(r, "alice", "app1"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "alice", "app"), 0);
    cr_assert_eq(access_allowed(r, "alice", "app12"), 0);
    cr_assert_eq(access_allowed(r, "alice", "a/b"), 0);
    cr_assert_eq(access_allowed(r, "alice", "axb"), ACCESS_PUSH);
    access_free(r);
}

Test(access, literal_glob_and_mixed_wildcards)
{
    struct access_rules *r = load("[repo \"exact/name\"]\nalice = pull\n"
                                  "[repo \"a*b*c\"]\nalice = push\n"
                                  "[repo \"**a**a**a**a**a**b\"]\nalice = delete\n");
    cr_assert_eq(access_allowed(r, "alice", "exact/name"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "alice", "exact/name2"), 0);
    cr_assert_eq(access_allowed(r, "alice", "abc"), ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "alice", "axxbyyc"), ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "alice", "axxbyy/c"), 0);
    /* a pattern that makes a backtracking matcher explode */
    char name[256];
    memset(name, 'a', 200);
    name[200] = '\0';
    cr_assert_eq(access_allowed(r, "alice", name), 0);
    name[199] = 'b';
    cr_assert_eq(access_allowed(r, "alice", name), ACCESS_DELETE);
    access_free(r);
}

Test(access, first_matching_section_decides_alone)
{
    struct access_rules *r = load("[repo \"library/private\"]\n"
                                  "bob = pull\n"
                                  "[repo \"library/*\"]\n"
                                  "alice = pull, push, delete\n"
                                  "bob = pull, push\n");
    /* alice may do everything in library/..., but the first section names only bob */
    cr_assert_eq(access_allowed(r, "alice", "library/private"), 0);
    cr_assert_eq(access_allowed(r, "bob", "library/private"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "alice", "library/public"), ACCESS_ALL);
    cr_assert_eq(access_allowed(r, "bob", "library/public"), ACCESS_PULL | ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "alice", "elsewhere"), 0);
    access_free(r);
}

Test(access, lines_of_a_section_add_up)
{
    struct access_rules *r = load("[groups]\n"
                                  "devs = alice, bob\n"
                                  "ops = alice\n"
                                  "[repo \"**\"]\n"
                                  "anonymous = pull\n"
                                  "* = pull\n"
                                  "@devs = push\n"
                                  "@ops = delete\n"
                                  "carol = push ; a comment\n");
    cr_assert_eq(access_allowed(r, "alice", "x"), ACCESS_ALL);
    cr_assert_eq(access_allowed(r, "bob", "x"), ACCESS_PULL | ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "carol", "x"), ACCESS_PULL | ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "dave", "x"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, NULL, "x"), ACCESS_PULL);
    access_free(r);
}

Test(access, star_means_authenticated_only)
{
    struct access_rules *r = load("[repo \"**\"]\n* = pull, push\n");
    cr_assert_eq(access_allowed(r, "anyone", "a/b"), ACCESS_PULL | ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, NULL, "a/b"), 0);
    cr_assert_eq(access_allowed(r, "", "a/b"), 0);
    access_free(r);
}

Test(access, groups_may_be_defined_after_use)
{
    struct access_rules *r = load("[repo \"**\"]\n@late = pull\n[groups]\nlate = zed\n");
    cr_assert_eq(access_allowed(r, "zed", "a"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "alice", "a"), 0);
    access_free(r);
}

Test(access, admins_by_user_and_by_group)
{
    struct access_rules *r = load("# admins\n"
                                  "[groups]\n"
                                  "admins = root, boss\n"
                                  "devs = dev\n"
                                  "[admin]\n"
                                  "groups = admins\n"
                                  "users = ops-bot\n"
                                  "[repo \"library/*\"]\n"
                                  "dev = pull\n");
    cr_assert_eq(access_is_admin(r, "root"), 1);
    cr_assert_eq(access_is_admin(r, "boss"), 1);
    cr_assert_eq(access_is_admin(r, "ops-bot"), 1);
    cr_assert_eq(access_is_admin(r, "dev"), 0);
    cr_assert_eq(access_is_admin(r, "nobody"), 0);
    cr_assert_eq(access_allowed(r, "root", "anything/at/all"), ACCESS_ALL);
    cr_assert_eq(access_allowed(r, "ops-bot", "library/x"), ACCESS_ALL);
    cr_assert_eq(access_allowed(r, "dev", "library/x"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "dev", "other"), 0);
    access_free(r);
}

Test(access, anonymous_pull_only_where_granted)
{
    struct access_rules *r = load("[repo \"public/**\"]\n"
                                  "anonymous = pull\n"
                                  "alice = push\n"
                                  "[repo \"**\"]\n"
                                  "alice = pull\n");
    cr_assert_eq(access_allowed(r, NULL, "public/x"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, NULL, "private/x"), 0);
    /* an authenticated user may do at least what anonymous may */
    cr_assert_eq(access_allowed(r, "alice", "public/x"), ACCESS_PULL | ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "bob", "public/x"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "bob", "private/x"), 0);
    access_free(r);
}

Test(access, user_names_are_exact_and_case_sensitive)
{
    struct access_rules *r = load("[repo \"**\"]\nAlice = pull\nCN With Spaces = push\n");
    cr_assert_eq(access_allowed(r, "Alice", "x"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "alice", "x"), 0);
    cr_assert_eq(access_allowed(r, "Alic", "x"), 0);
    cr_assert_eq(access_allowed(r, "CN With Spaces", "x"), ACCESS_PUSH);
    access_free(r);
}

Test(access, anonymous_push_or_delete_is_a_load_error)
{
    load_fails("[repo \"**\"]\nanonymous = pull, push\n", 2, "anonymous may only pull");
    load_fails("# x\n[repo \"**\"]\n\nanonymous = delete\n", 4, "anonymous may only pull");
    load_fails("[repo \"**\"]\nanonymous = *\n", 2, "anonymous may only pull");
}

Test(access, unknown_action_is_a_load_error)
{
    load_fails("[repo \"**\"]\nalice = pull, write\n", 2, "unknown action");
    load_fails("[repo \"**\"]\nalice = pull,,push\n", 2, "empty item");
    load_fails("[repo \"**\"]\nalice =\n", 2, "empty list");
}

Test(access, undefined_group_is_a_load_error)
{
    load_fails("[groups]\ndevs = a\n[repo \"**\"]\n@devs = pull\n@qa = pull\n", 5,
               "group 'qa' is not defined");
    load_fails("[admin]\ngroups = admins\n", 2, "group 'admins' is not defined");
    load_fails("[groups]\ndevs = a\ndevs = b\n", 3, "defined twice");
    load_fails("[groups]\ndevs = a, @ops\n", 2, "users only");
}

Test(access, syntax_errors_name_file_and_line)
{
    load_fails("alice = pull\n", 1, "outside of a section");
    load_fails("[repo \"**\"]\njust words\n", 2, "expected 'name = value'");
    load_fails("\n[repo **]\n", 2, "expected [repo \"glob\"]");
    load_fails("[repo \"**\"\n", 1, "malformed section header");
    load_fails("[users]\n", 1, "unknown section");
    load_fails("[admin]\nmembers = x\n", 2, "unknown key");
    load_fails("[repo \"\"]\n", 1, "glob empty");
    load_fails("[repo \"Library/*\"]\n", 1, "can never match");
    load_fails("[repo \"**\"]\n= pull\n", 2, "missing name");
}

Test(access, unreadable_file_is_an_io_error)
{
    struct err e = {0};
    cr_assert_null(access_load("/nonexistent/access.conf", &e));
    cr_assert_eq(e.code, ERR_IO);
}

Test(access, default_policy_without_a_file)
{
    struct err e = {0};
    struct access_rules *r = access_load(NULL, &e);
    cr_assert_not_null(r, "%s", e.msg);
    cr_assert_eq(access_allowed(r, "anyone", "a/b/c"), ACCESS_ALL);
    cr_assert_eq(access_allowed(r, NULL, "a/b/c"), 0);
    cr_assert_eq(access_allowed(r, "", "a/b/c"), 0);
    cr_assert_eq(access_is_admin(r, "anyone"), 1);
    access_free(r);
}

Test(access, empty_file_allows_nothing)
{
    struct access_rules *r = load("# nothing\n");
    cr_assert_eq(access_allowed(r, "alice", "x"), 0);
    cr_assert_eq(access_allowed(r, NULL, "x"), 0);
    cr_assert_eq(access_is_admin(r, "alice"), 0);
    access_free(r);
}

Test(access, action_parse)
{
    cr_assert_eq(access_action_parse("pull", 4), ACCESS_PULL);
    cr_assert_eq(access_action_parse("push", 4), ACCESS_PUSH);
    cr_assert_eq(access_action_parse("delete", 6), ACCESS_DELETE);
    cr_assert_eq(access_action_parse("*", 1), ACCESS_ALL);
    cr_assert_eq(access_action_parse("pullx", 4), ACCESS_PULL); /* n bounds the text */
    cr_assert_eq(access_action_parse("pull", 3), 0);
    cr_assert_eq(access_action_parse("Pull", 4), 0);
    cr_assert_eq(access_action_parse("", 0), 0);
}

Test(access, crlf_and_comments_are_tolerated)
{
    struct access_rules *r = load("; header\r\n[groups]\r\ndevs = a , b # trailing\r\n"
                                  "[repo \"x/*\"]  # the x team\r\n@devs = pull\r\n");
    cr_assert_eq(access_allowed(r, "b", "x/y"), ACCESS_PULL);
    access_free(r);
}

Test(access, a_file_of_4096_sections_loads_and_answers)
{
    size_t cap = 4096 * 64 + 64, n = 0;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    for (int i = 0; i < ACCESS_MAX_RULES; i++)
        n += (size_t)snprintf(text + n, cap - n, "[repo \"team%d/*\"]\nuser%d = pull\n", i, i);
    struct access_rules *r = load(text);
    cr_assert_eq(access_allowed(r, "user0", "team0/app"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "user4095", "team4095/app"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "user4095", "team4094/app"), 0);
    cr_assert_eq(access_allowed(r, "user1", "nomatch"), 0);
    access_free(r);
    /* one more section is over the limit */
    snprintf(text + n, cap - n, "[repo \"one-more\"]\n");
    load_fails(text, 2 * ACCESS_MAX_RULES + 1, "more than 4096");
    free(text);
}

Test(access, the_example_of_docs_auth_md_loads_and_means_what_it_says)
{
    struct access_rules *r = load("# comments start with '#' or ';', also after a value\n"
                                  "[groups]\n"
                                  "devs   = alice, bob\n"
                                  "qa     = carol\n"
                                  "admins = root\n"
                                  "\n"
                                  "[admin]\n"
                                  "groups = admins          # members of these groups\n"
                                  "users  = ops-bot         # and so may these users\n"
                                  "\n"
                                  "[repo \"library/*\"]       # library/ubuntu\n"
                                  "anonymous = pull         # no credentials needed\n"
                                  "*         = pull         # every authenticated user\n"
                                  "@devs     = pull, push\n"
                                  "alice     = delete       # alice: pull, push and delete\n"
                                  "\n"
                                  "[repo \"team/**\"]         # team/app, team/a/b/c\n"
                                  "@devs = *                # pull, push and delete\n"
                                  "@qa   = pull\n"
                                  "\n"
                                  "[repo \"**\"]              # everything else\n"
                                  "* = pull\n");
    cr_assert_eq(access_allowed(r, NULL, "library/ubuntu"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "dave", "library/ubuntu"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "bob", "library/ubuntu"), ACCESS_PULL | ACCESS_PUSH);
    cr_assert_eq(access_allowed(r, "alice", "library/ubuntu"), ACCESS_ALL);
    cr_assert_eq(access_allowed(r, NULL, "library/x/y"), 0);
    cr_assert_eq(access_allowed(r, "bob", "team/a/b/c"), ACCESS_ALL);
    cr_assert_eq(access_allowed(r, "carol", "team/app"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, "dave", "team/app"), 0);
    cr_assert_eq(access_allowed(r, "dave", "other/thing"), ACCESS_PULL);
    cr_assert_eq(access_allowed(r, NULL, "other/thing"), 0);
    cr_assert_eq(access_allowed(r, "root", "team/app"), ACCESS_ALL);
    cr_assert_eq(access_allowed(r, "ops-bot", "x"), ACCESS_ALL);
    access_free(r);
}
