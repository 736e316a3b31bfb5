/* retention_test.c - the retention rules file and retention_plan: each rule
 * kind, their combination, protect patterns, ties in push time, the first
 * matching section deciding, no section keeping all, keep_all, a large
 * repository against a brute-force ranking, load errors with file:line. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gc/retention.h"

#include "common/banned.h"

static char dir[64], path[128];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/retention_test.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/retention.rules", dir);
}

static void
teardown(void)
{
    unlink(path);
    rmdir(dir);
}

TestSuite(retention, .init = setup, .fini = teardown);

static void
write_rules(const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static struct retention_rules *
load(const char *text)
{
    write_rules(text);
    struct err e = {0};
    struct retention_rules *r = retention_load(path, &e);
    cr_assert_not_null(r, "%s", e.msg);
    return r;
}

/* the load fails with ERR_CONFIG naming path:line and containing what */
static void
load_fails(const char *text, int line, const char *what)
{
    write_rules(text);
    struct err e = {0};
    struct retention_rules *r = retention_load(path, &e);
    cr_assert_null(r, "loaded: %s", text);
    cr_assert_eq(e.code, ERR_CONFIG, "%s", e.msg);
    char where[200];
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    cr_assert_not_null(strstr(e.msg, where), "'%s' lacks '%s'", e.msg, where);
    cr_assert_not_null(strstr(e.msg, what), "'%s' lacks '%s'", e.msg, what);
}

#define DAY 86400
#define NOW ((int64_t)1800000000)

/* tags named by the caller, pushed `age` seconds before NOW (pulled never) */
struct fixture {
    struct retention_tag t[64];
    char names[64][32];
    size_t n;
};

static void
add(struct fixture *f, const char *name, int64_t pushed_ago, int64_t pulled_ago)
{
    cr_assert(f->n < 64);
    snprintf(f->names[f->n], sizeof(f->names[f->n]), "%s", name);
    f->t[f->n] = (struct retention_tag){.tag = f->names[f->n],
                                        .digest = "sha256:00",
                                        .pushed = NOW - pushed_ago,
                                        .pulled = pulled_ago < 0 ? 0 : NOW - pulled_ago,
                                        .remove = -1,
                                        .why = "stale"};
    f->n++;
}

static const struct retention_tag *
find(const struct fixture *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->t[i].tag, name) == 0)
            return &f->t[i];
    cr_assert_fail("no tag %s", name);
    return NULL;
}

static int
removed(const struct fixture *f, const char *name)
{
    return find(f, name)->remove;
}

static const char *
why(const struct fixture *f, const char *name)
{
    const char *w = find(f, name)->why;
    return w ? w : "(null)";
}

Test(retention, keep_newest_keeps_the_n_most_recently_pushed)
{
    struct retention_rules *r = load("[repo \"app\"]\nkeep_newest = 3\n");
    struct fixture f = {0};
    /* listed out of push order */
    add(&f, "d", 4 * DAY, -1);
    add(&f, "a", 1 * DAY, -1);
    add(&f, "e", 5 * DAY, -1);
    add(&f, "c", 3 * DAY, -1);
    add(&f, "b", 2 * DAY, -1);
    cr_assert_eq(retention_plan(r, "app", f.t, f.n, NOW), 2);
    cr_assert_eq(removed(&f, "a"), 0);
    cr_assert_eq(removed(&f, "b"), 0);
    cr_assert_eq(removed(&f, "c"), 0);
    cr_assert_eq(removed(&f, "d"), 1);
    cr_assert_eq(removed(&f, "e"), 1);
    cr_assert_str_eq(why(&f, "a"), "keep_newest = 3");
    cr_assert_str_eq(why(&f, "d"), "repo \"app\": keep_newest = 3");
    /* a pull does not count for keep_newest: push time only */
    f.t[4].pulled = NOW;
    cr_assert_eq(retention_plan(r, "app", f.t, f.n, NOW), 2);
    cr_assert_eq(removed(&f, "b"), 0);
    cr_assert_eq(removed(&f, "e"), 1);
    /* fewer tags than N: all kept */
    cr_assert_eq(retention_plan(r, "app", f.t, 3, NOW), 0);
    retention_free(r);
}

Test(retention, ties_in_push_time_are_broken_by_tag_name)
{
    struct retention_rules *r = load("[repo \"app\"]\nkeep_newest = 2\n");
    struct fixture f = {0};
    add(&f, "v1.2", DAY, -1);
    add(&f, "v1.4", DAY, -1);
    add(&f, "v1.1", DAY, -1);
    add(&f, "v1.3", DAY, -1);
    add(&f, "old", 2 * DAY, -1);
    cr_assert_eq(retention_plan(r, "app", f.t, f.n, NOW), 3);
    /* same second: the name sorting last counts as the newer */
    cr_assert_eq(removed(&f, "v1.4"), 0);
    cr_assert_eq(removed(&f, "v1.3"), 0);
    cr_assert_eq(removed(&f, "v1.2"), 1);
    cr_assert_eq(removed(&f, "v1.1"), 1);
    cr_assert_eq(removed(&f, "old"), 1);
    /* the order of the list does not matter */
    struct retention_tag t0 = f.t[0];
    f.t[0] = f.t[3];
    f.t[3] = t0;
    cr_assert_eq(retention_plan(r, "app", f.t, f.n, NOW), 3);
    cr_assert_eq(removed(&f, "v1.4"), 0);
    cr_assert_eq(removed(&f, "v1.3"), 0);
    cr_assert_eq(removed(&f, "v1.2"), 1);
    retention_free(r);
}

Test(retention, keep_within_counts_pushes_and_pulls)
{
    struct retention_rules *r = load("[repo \"app\"]\nkeep_within = 30d\n");
    struct fixture f = {0};
    add(&f, "fresh", DAY, -1);
    add(&f, "edge", 30 * DAY, -1);       /* exactly 30 days: within */
    add(&f, "stale", 30 * DAY + 1, -1);  /* one second more: not */
    add(&f, "pulled", 90 * DAY, 2 * DAY); /* old push, recent pull */
    add(&f, "pulled-long-ago", 90 * DAY, 31 * DAY);
    cr_assert_eq(retention_plan(r, "app", f.t, f.n, NOW), 2);
    cr_assert_eq(removed(&f, "fresh"), 0);
    cr_assert_eq(removed(&f, "edge"), 0);
    cr_assert_eq(removed(&f, "stale"), 1);
    cr_assert_eq(removed(&f, "pulled"), 0);
    cr_assert_eq(removed(&f, "pulled-long-ago"), 1);
    cr_assert_str_eq(why(&f, "pulled"), "keep_within = 30d");
    cr_assert_str_eq(why(&f, "stale"), "repo \"app\": keep_within = 30d");
    retention_free(r);
}

Test(retention, ages_take_seconds_minutes_hours_and_days)
{
    static const struct {
        const char *age;
        int64_t sec;
    } cases[] = {{"45", 45}, {"45s", 45}, {"10m", 600}, {"12h", 43200}, {"2d", 172800}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[repo \"app\"]\nkeep_within = %s\n", cases[i].age);
        struct retention_rules *r = load(text);
        struct fixture f = {0};
        add(&f, "in", cases[i].sec, -1);
        add(&f, "out", cases[i].sec + 1, -1);
        cr_assert_eq(retention_plan(r, "app", f.t, f.n, NOW), 1, "%s", cases[i].age);
        cr_assert_eq(removed(&f, "in"), 0, "%s", cases[i].age);
        cr_assert_eq(removed(&f, "out"), 1, "%s", cases[i].age);
        retention_free(r);
    }
}

Test(retention, either_keep_rule_keeps_a_tag)
{
    struct retention_rules *r = load("[repo \"app\"]\nkeep_newest = 1\nkeep_within = 7d\n");
    struct fixture f = {0};
    add(&f, "newest", 1 * DAY, -1);
    add(&f, "recent", 3 * DAY, -1);
    add(&f, "pulled", 20 * DAY, 1 * DAY);
    add(&f, "old", 20 * DAY, -1);
    cr_assert_eq(retention_plan(r, "app", f.t, f.n, NOW), 1);
    cr_assert_eq(removed(&f, "old"), 1);
    cr_assert_str_eq(why(&f, "newest"), "keep_newest = 1");
    cr_assert_str_eq(why(&f, "recent"), "keep_within = 7d");
    cr_assert_str_eq(why(&f, "pulled"), "keep_within = 7d");
    cr_assert_str_eq(why(&f, "old"), "repo \"app\": keep_newest = 1, keep_within = 7d");
    /* with nothing recent, keep_newest alone still keeps one: a repository
     * never loses its newest tags to keep_within */
    struct fixture g = {0};
    add(&g, "x", 100 * DAY, -1);
    add(&g, "y", 200 * DAY, -1);
    cr_assert_eq(retention_plan(r, "app", g.t, g.n, NOW), 1);
    cr_assert_eq(removed(&g, "x"), 0);
    cr_assert_eq(removed(&g, "y"), 1);
    retention_free(r);
}

Test(retention, protect_beats_everything_and_takes_no_newest_place)
{
    struct retention_rules *r =
        load("[repo \"app\"]\nkeep_newest = 2\nprotect = v*, latest\nprotect = rc-?\n");
    struct fixture f = {0};
    add(&f, "v1", 400 * DAY, -1);
    add(&f, "v2", 1, -1); /* the newest of all, protected */
    add(&f, "latest", 500 * DAY, -1);
    add(&f, "rc-1", 600 * DAY, -1);
    add(&f, "rc-10", 600 * DAY, -1); /* '?' is one character */
    add(&f, "dev-a", 1 * DAY, -1);
    add(&f, "dev-b", 2 * DAY, -1);
    add(&f, "dev-c", 3 * DAY, -1);
    add(&f, "Version", 1, -1); /* names are case-sensitive: not v* */
    cr_assert_eq(retention_plan(r, "app", f.t, f.n, NOW), 3);
    cr_assert_eq(removed(&f, "v1"), 0);
    cr_assert_eq(removed(&f, "v2"), 0);
    cr_assert_eq(removed(&f, "latest"), 0);
    cr_assert_eq(removed(&f, "rc-1"), 0);
    cr_assert_eq(removed(&f, "rc-10"), 1);
    cr_assert_str_eq(why(&f, "v1"), "protect = v*");
    cr_assert_str_eq(why(&f, "v2"), "protect = v*");
    cr_assert_str_eq(why(&f, "latest"), "protect = latest");
    cr_assert_str_eq(why(&f, "rc-1"), "protect = rc-?");
    /* the two newest unprotected ones: Version and dev-a */
    cr_assert_eq(removed(&f, "Version"), 0);
    cr_assert_eq(removed(&f, "dev-a"), 0);
    cr_assert_eq(removed(&f, "dev-b"), 1);
    cr_assert_eq(removed(&f, "dev-c"), 1);
    retention_free(r);
}

Test(retention, first_matching_section_decides_and_no_match_keeps_all)
{
    struct retention_rules *r = load("# comment\n"
                                     "[repo \"team/*\"]\n"
                                     "keep_newest = 1   ; trailing comment\n"
                                     "[repo \"team/**\"]\n"
                                     "keep_newest = 2\n"
                                     "[repo \"prod**\"]\n"
                                     "keep_all = true\n"
                                     "[repo \"**\"]\n"
                                     "keep_newest = 3\n");
    struct fixture f = {0};
    add(&f, "a", 1, -1);
    add(&f, "b", 2, -1);
    add(&f, "c", 3, -1);
    add(&f, "d", 4, -1);
    cr_assert_eq(retention_plan(r, "team/app", f.t, f.n, NOW), 3);
    cr_assert_eq(retention_plan(r, "team/sub/app", f.t, f.n, NOW), 2);
    cr_assert_eq(retention_plan(r, "other", f.t, f.n, NOW), 1);
    cr_assert_eq(retention_plan(r, "prod/app", f.t, f.n, NOW), 0);
    cr_assert_str_eq(why(&f, "d"), "keep_all (repo \"prod**\")");
    retention_free(r);

    r = load("[repo \"team/*\"]\nkeep_newest = 1\n");
    cr_assert_eq(retention_plan(r, "elsewhere", f.t, f.n, NOW), 0);
    for (size_t i = 0; i < f.n; i++) {
        cr_assert_eq(f.t[i].remove, 0);
        cr_assert_null(f.t[i].why, "no rule names the repository");
    }
    retention_free(r);
    /* an empty file names no repository */
    r = load("# nothing yet\n");
    cr_assert_eq(retention_plan(r, "team/app", f.t, f.n, NOW), 0);
    retention_free(r);
    /* no rules at all */
    cr_assert_eq(retention_plan(NULL, "team/app", f.t, f.n, NOW), 0);
}

/* the newest N of many tags with many equal push times, against counting */
Test(retention, large_repository_matches_brute_force_ranking)
{
    enum { N = 3000 };
    static struct retention_tag t[N];
    static char names[N][16];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        snprintf(names[i], sizeof(names[i]), "t%05u", (unsigned)(x % 100000));
        /* unique names: the index breaks collisions */
        snprintf(names[i] + 6, sizeof(names[i]) - 6, "-%zu", i);
        t[i] = (struct retention_tag){.tag = names[i], .pushed = NOW - (int64_t)(x % 50)};
    }
    static const size_t keeps[] = {1, 2, 17, 1000, 2999, 3000, 5000};
    for (size_t k = 0; k < sizeof(keeps) / sizeof(keeps[0]); k++) {
        char text[64];
        snprintf(text, sizeof(text), "[repo \"r\"]\nkeep_newest = %zu\n", keeps[k]);
        struct retention_rules *r = load(text);
        size_t want_removed = keeps[k] >= N ? 0 : N - keeps[k];
        cr_assert_eq(retention_plan(r, "r", t, N, NOW), want_removed, "keep %zu", keeps[k]);
        for (size_t i = 0; i < N; i++) {
            size_t above = 0;
            for (size_t j = 0; j < N; j++)
                above += t[j].pushed > t[i].pushed ||
                         (t[j].pushed == t[i].pushed && strcmp(t[j].tag, t[i].tag) > 0);
            cr_assert_eq(t[i].remove, above >= keeps[k], "keep %zu: %s ranked %zu", keeps[k],
                         t[i].tag, above);
        }
        retention_free(r);
    }
}

Test(retention, load_errors_name_file_and_line)
{
    load_fails("keep_newest = 1\n", 1, "outside of a [repo");
    load_fails("[tags]\n", 1, "unknown section");
    load_fails("\n[repo app]\n", 2, "expected [repo \"glob\"]");
    load_fails("[repo \"\"]\nkeep_newest = 1\n", 1, "glob empty");
    load_fails("[repo \"App\"]\nkeep_newest = 1\n", 1, "can never match a repository");
    load_fails("[repo \"a\"]\nkeep_newest = 1\nkeep = 3\n", 3, "unknown key");
    load_fails("[repo \"a\"]\nkeep_newest = 0\n", 2, "not a number in [1, 1000000]");
    load_fails("[repo \"a\"]\nkeep_newest = 1000001\n", 2, "keep_newest");
    load_fails("[repo \"a\"]\nkeep_newest = ten\n", 2, "keep_newest");
    load_fails("[repo \"a\"]\nkeep_newest = 1\nkeep_newest = 2\n", 3, "given twice");
    load_fails("[repo \"a\"]\nkeep_within = 1w\n", 2, "not an age");
    load_fails("[repo \"a\"]\nkeep_within = 0d\n", 2, "not an age");
    load_fails("[repo \"a\"]\nkeep_within = -1d\n", 2, "not an age");
    load_fails("[repo \"a\"]\nkeep_within = 500ms\n", 2, "not an age");
    load_fails("[repo \"a\"]\nkeep_within =\n", 2, "empty value");
    load_fails("[repo \"a\"]\nkeep_newest = 1\nprotect = v*, , x\n", 3, "empty item");
    load_fails("[repo \"a\"]\nkeep_newest = 1\nprotect = v/*\n", 3, "can never match a tag");
    load_fails("[repo \"a\"]\nkeep_newest = 1\nnot a key value\n", 3, "expected 'name = value'");
    load_fails("[repo \"a\"]\nkeep_all = maybe\n", 2, "not a boolean");
    /* a section's own errors name its header line */
    load_fails("[repo \"a\"]\nkeep_newest = 1\n\n[repo \"b\"]\nprotect = latest\n", 4,
               "needs keep_newest and/or keep_within");
    load_fails("[repo \"a\"]\nkeep_newest = 1\n[repo \"b\"]\n", 3, "needs keep_newest");
    load_fails("[repo \"a\"]\nkeep_all = true\nkeep_newest = 3\n", 1, "takes no other rule");
    /* keep_all = false is no rule at all */
    load_fails("[repo \"a\"]\nkeep_all = false\n", 1, "needs keep_newest");
}

Test(retention, load_limits)
{
    size_t cap = 300 * 16 + 64;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    size_t len = (size_t)snprintf(text, cap, "[repo \"a\"]\nkeep_newest = 1\nprotect = p0");
    for (int i = 1; i <= RETENTION_MAX_PROTECT; i++)
        len += (size_t)snprintf(text + len, cap - len, ",p%d", i);
    snprintf(text + len, cap - len, "\n");
    load_fails(text, 3, "more than 256 protect patterns");
    free(text);

    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i <= RETENTION_MAX_SECTIONS; i++)
        fprintf(f, "[repo \"r%d\"]\nkeep_newest = 1\n", i);
    fclose(f);
    struct err e = {0};
    cr_assert_null(retention_load(path, &e));
    char where[200];
    snprintf(where, sizeof(where), "%s:%d: more than 4096 [repo] sections", path,
             2 * RETENTION_MAX_SECTIONS + 1);
    cr_assert_not_null(strstr(e.msg, where), "%s", e.msg);
}

Test(retention, missing_file_is_an_io_error)
{
    struct err e = {0};
    cr_assert_null(retention_load(path, &e));
    cr_assert_eq(e.code, ERR_IO);
    cr_assert_not_null(strstr(e.msg, path), "%s", e.msg);
}
