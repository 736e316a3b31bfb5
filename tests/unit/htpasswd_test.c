/* htpasswd_test.c - bcrypt users: verify, refused schemes, errors without
 * secrets, the success cache and its invalidation, reload, threads. Hashes
 * are made at test time with bcrypt cost 4 (fast). */
#include <criterion/criterion.h>

#include <crypt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/htpasswd.h"

#include "common/banned.h"

static char dir[64], path[128];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/htpasswd_test.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/htpasswd", dir);
}

static void
teardown(void)
{
    unlink(path);
    rmdir(dir);
}

TestSuite(htpasswd, .init = setup, .fini = teardown);

/* a bcrypt hash of pass with the given prefix ("$2y$", "$2b$", "$2a$") */
static void
make_hash(const char *prefix, const char *pass, char out[128])
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    cr_assert_not_null(crypt_gensalt_rn(prefix, 4, NULL, 0, setting, sizeof(setting)));
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    cr_assert_not_null(cd);
    const char *h = crypt_rn(pass, setting, cd, (int)sizeof(*cd));
    cr_assert_not_null(h);
    cr_assert_eq(strncmp(h, prefix, 4), 0);
    snprintf(out, 128, "%s", h);
    free(cd);
}

/* replace the file atomically (a new inode, as editors and htpasswd do) */
static void
write_file(const char *text)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0);
}

static struct htpasswd *
open_text(const char *text)
{
    write_file(text);
    struct err e = {0};
    struct htpasswd *h = htpasswd_open(path, &e);
    cr_assert_not_null(h, "%s", e.msg);
    return h;
}

static char h_alice[128], h_bob[128], h_carol[128];

static void
make_users(void)
{
    make_hash("$2y$", "alice-pw", h_alice);
    make_hash("$2b$", "bob-pw", h_bob);
    make_hash("$2a$", "carol-pw", h_carol);
}

#define V(h, u, p, now) htpasswd_verify(h, u, p, strlen(p), now)
#define C(h, u, p, now) htpasswd_cached(h, u, p, strlen(p), now)

Test(htpasswd, verify_good_bad_and_unknown)
{
    make_users();
    char text[1024];
    snprintf(text, sizeof(text), "# users\n\nalice:%s\r\nbob:%s\ncarol:%s", h_alice, h_bob,
             h_carol);
    struct htpasswd *h = open_text(text);
    cr_assert_eq(V(h, "alice", "alice-pw", 100), 1);
    cr_assert_eq(V(h, "bob", "bob-pw", 100), 1);     /* $2b$ */
    cr_assert_eq(V(h, "carol", "carol-pw", 100), 1); /* $2a$, no final newline */
    cr_assert_eq(V(h, "alice", "bob-pw", 100), 0);
    cr_assert_eq(V(h, "alice", "alice-p", 100), 0);
    cr_assert_eq(V(h, "alice", "", 100), 0);
    cr_assert_eq(V(h, "dave", "alice-pw", 100), 0);
    cr_assert_eq(V(h, "", "", 100), 0);
    /* a NUL in the password never matches the part before it */
    cr_assert_eq(htpasswd_verify(h, "alice", "alice-pw\0x", 10, 100), 0);
    cr_assert_eq(htpasswd_has_user(h, "alice"), 1);
    cr_assert_eq(htpasswd_has_user(h, "carol"), 1);
    cr_assert_eq(htpasswd_has_user(h, "dave"), 0);
    htpasswd_free(h);
}

/* loading text fails with ERR_CONFIG naming path:line and what, never the
 * secret */
static void
open_fails(const char *text, int line, const char *what, const char *secret)
{
    write_file(text);
    struct err e = {0};
    struct htpasswd *h = htpasswd_open(path, &e);
    cr_assert_null(h, "loaded: %s", text);
    cr_assert_eq(e.code, ERR_CONFIG, "%s", e.msg);
    char where[200];
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    cr_assert_not_null(strstr(e.msg, where), "'%s' lacks '%s'", e.msg, where);
    cr_assert_not_null(strstr(e.msg, what), "'%s' lacks '%s'", e.msg, what);
    if (secret)
        cr_assert_null(strstr(e.msg, secret), "'%s' shows the hash", e.msg);
}

Test(htpasswd, other_schemes_are_refused_naming_the_line_not_the_hash)
{
    make_users();
    char text[1024];
    const char *md5 = "$apr1$fV4ks2YJ$YLCR3g3ufJ6cc0p7yjx.N/";
    snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", h_alice, md5);
    open_fails(text, 2, "user 'bob': MD5 ($apr1$) hash refused", "YLCR3g3ufJ6cc0p7yjx");
    const char *sha = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";
    snprintf(text, sizeof(text), "#\nalice:%s\n\nbob:%s\n", h_alice, sha);
    open_fails(text, 4, "user 'bob': SHA-1 ({SHA}) hash refused", "W6ph5Mm5Pz8Ggi");
    open_fails("plain:secretpassword\n", 1, "user 'plain': plain text", "secretpassword");
    open_fails("des:rOZ0AqcW3IPh.\n", 1, "user 'des': crypt(3) DES", "rOZ0AqcW3IPh");
    open_fails("sha512:$6$abc$def\n", 1, "SHA-crypt", "$6$abc$def");
    /* a bcrypt hash cut short */
    char cut[64], part[24];
    snprintf(cut, sizeof(cut), "x:%.40s\n", h_alice);
    snprintf(part, sizeof(part), "%.20s", h_alice + 8);
    open_fails(cut, 1, "malformed bcrypt", part);
}

Test(htpasswd, malformed_lines_and_duplicates)
{
    make_users();
    char text[1024];
    open_fails("no colon here\n", 1, "malformed line", "no colon");
    snprintf(text, sizeof(text), ":%s\n", h_alice);
    open_fails(text, 1, "invalid user name", NULL);
    snprintf(text, sizeof(text), "al\x01ice:%s\n", h_alice);
    open_fails(text, 1, "invalid user name", NULL);
    snprintf(text, sizeof(text), "alice:%s\nbob:%s\nalice:%s\n", h_alice, h_bob, h_carol);
    open_fails(text, 3, "user 'alice': duplicate (first on line 1)", h_carol);
}

Test(htpasswd, missing_file_is_an_io_error)
{
    struct err e = {0};
    cr_assert_null(htpasswd_open("/nonexistent/htpasswd", &e));
    cr_assert_eq(e.code, ERR_IO);
}

Test(htpasswd, cache_answers_after_a_successful_verify_only)
{
    make_users();
    char text[1024];
    snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", h_alice, h_bob);
    struct htpasswd *h = open_text(text);
    cr_assert_eq(C(h, "alice", "alice-pw", 100), 0);
    cr_assert_eq(V(h, "alice", "wrong", 100), 0);
    cr_assert_eq(C(h, "alice", "wrong", 100), 0);
    cr_assert_eq(V(h, "alice", "alice-pw", 100), 1);
    cr_assert_eq(C(h, "alice", "alice-pw", 101), 1);
    cr_assert_eq(C(h, "alice", "wrong", 101), 0);
    cr_assert_eq(C(h, "alice", "alice-p", 101), 0);
    cr_assert_eq(C(h, "bob", "alice-pw", 101), 0);
    cr_assert_eq(C(h, "dave", "alice-pw", 101), 0);
    /* a wrong password for a known user stays uncached after verifies */
    cr_assert_eq(V(h, "bob", "alice-pw", 101), 0);
    cr_assert_eq(C(h, "bob", "alice-pw", 101), 0);
    /* the entry expires */
    cr_assert_eq(C(h, "alice", "alice-pw", 100 + HTPASSWD_CACHE_SEC - 1), 1);
    cr_assert_eq(C(h, "alice", "alice-pw", 100 + HTPASSWD_CACHE_SEC), 0);
    htpasswd_free(h);
}

Test(htpasswd, changed_or_removed_line_invalidates_the_cache_at_once)
{
    make_users();
    char text[1024], h_new[128];
    snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", h_alice, h_bob);
    struct htpasswd *h = open_text(text);
    struct err e = {0};
    cr_assert_eq(V(h, "alice", "alice-pw", 100), 1);
    cr_assert_eq(V(h, "bob", "bob-pw", 100), 1);
    /* a new hash of the same password: the old success is not trusted */
    make_hash("$2y$", "alice-pw", h_new);
    snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", h_new, h_bob);
    write_file(text);
    cr_assert_eq(htpasswd_refresh(h, 102, &e), 1, "%s", e.msg);
    cr_assert_eq(C(h, "alice", "alice-pw", 102), 0);
    /* bob's line did not change: his entry survives the reload */
    cr_assert_eq(C(h, "bob", "bob-pw", 102), 1);
    cr_assert_eq(V(h, "alice", "alice-pw", 102), 1);
    cr_assert_eq(C(h, "alice", "alice-pw", 102), 1);
    /* bob removed, then re-added with the same hash: no hit from before */
    snprintf(text, sizeof(text), "alice:%s\n", h_new);
    write_file(text);
    cr_assert_eq(htpasswd_refresh(h, 104, &e), 1, "%s", e.msg);
    cr_assert_eq(C(h, "bob", "bob-pw", 104), 0);
    cr_assert_eq(V(h, "bob", "bob-pw", 104), 0);
    cr_assert_eq(htpasswd_has_user(h, "bob"), 0);
    snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", h_new, h_bob);
    write_file(text);
    cr_assert_eq(htpasswd_refresh(h, 106, &e), 1, "%s", e.msg);
    cr_assert_eq(C(h, "bob", "bob-pw", 106), 0);
    cr_assert_eq(V(h, "bob", "bob-pw", 106), 1);
    htpasswd_free(h);
}

Test(htpasswd, refresh_picks_up_changes_and_keeps_old_content_on_a_broken_file)
{
    make_users();
    char text[1024];
    snprintf(text, sizeof(text), "alice:%s\n", h_alice);
    struct htpasswd *h = open_text(text);
    struct err e = {0};
    /* unchanged file: nothing to load */
    cr_assert_eq(htpasswd_refresh(h, 10, &e), 0);
    cr_assert_eq(V(h, "bob", "bob-pw", 10), 0);
    snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", h_alice, h_bob);
    write_file(text);
    cr_assert_eq(htpasswd_refresh(h, 10, &e), 0); /* stat at most once a second */
    cr_assert_eq(htpasswd_refresh(h, 11, &e), 1, "%s", e.msg);
    cr_assert_eq(V(h, "bob", "bob-pw", 11), 1);
    /* broken: the error names the line, the old users stay */
    snprintf(text, sizeof(text), "alice:%s\nbob:%s\ncarol:$apr1$x$y\n", h_alice, h_bob);
    write_file(text);
    cr_assert_eq(htpasswd_refresh(h, 12, &e), -1);
    cr_assert_eq(e.code, ERR_CONFIG);
    char where[200];
    snprintf(where, sizeof(where), "%s:3: ", path);
    cr_assert_not_null(strstr(e.msg, where), "%s", e.msg);
    cr_assert_eq(V(h, "alice", "alice-pw", 12), 1);
    cr_assert_eq(V(h, "bob", "bob-pw", 12), 1);
    cr_assert_eq(htpasswd_has_user(h, "carol"), 0);
    /* reported once, not at every stat */
    cr_assert_eq(htpasswd_refresh(h, 13, &e), 0);
    /* the file removed: an I/O error, the old users stay */
    unlink(path);
    cr_assert_eq(htpasswd_refresh(h, 14, &e), -1);
    cr_assert_eq(e.code, ERR_IO);
    cr_assert_eq(V(h, "alice", "alice-pw", 14), 1);
    /* fixed again */
    snprintf(text, sizeof(text), "carol:%s\n", h_carol);
    write_file(text);
    cr_assert_eq(htpasswd_refresh(h, 15, &e), 1, "%s", e.msg);
    cr_assert_eq(V(h, "carol", "carol-pw", 15), 1);
    cr_assert_eq(V(h, "alice", "alice-pw", 15), 0);
    htpasswd_free(h);
}

Test(htpasswd, refresh_sees_an_in_place_rewrite)
{
    make_users();
    char text[1024];
    snprintf(text, sizeof(text), "alice:%s\n", h_alice);
    struct htpasswd *h = open_text(text);
    struct err e = {0};
    FILE *f = fopen(path, "a");
    cr_assert_not_null(f);
    fprintf(f, "bob:%s\n", h_bob);
    fclose(f);
    cr_assert_eq(htpasswd_refresh(h, 1, &e), 1, "%s", e.msg);
    cr_assert_eq(htpasswd_has_user(h, "bob"), 1);
    htpasswd_free(h);
}

/* ---- threads ---- */

static struct htpasswd *shared;
static volatile int stop;
static char text_a[1024], text_b[1024];

static void *
verifier(void *arg)
{
    (void)arg;
    for (int i = 0; i < 40; i++) {
        if (V(shared, "alice", "alice-pw", 1000 + i) != 1)
            return (void *)1;
        if (V(shared, "alice", "nope", 1000 + i) != 0)
            return (void *)1;
    }
    return NULL;
}

static void *
cacher(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        /* alice's line never changes: once cached, always cached */
        C(shared, "alice", "alice-pw", 1000);
        if (C(shared, "alice", "nope", 1000) != 0)
            return (void *)1;
        htpasswd_has_user(shared, "bob");
    }
    return NULL;
}

static void *
refresher(void *arg)
{
    (void)arg;
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    for (long long now = 2000; !__atomic_load_n(&stop, __ATOMIC_ACQUIRE); now++) {
        FILE *f = fopen(tmp, "w");
        if (!f)
            return (void *)1;
        fputs(now % 2 ? text_a : text_b, f);
        fclose(f);
        if (rename(tmp, path) != 0)
            return (void *)1;
        struct err e;
        if (htpasswd_refresh(shared, now, &e) != 1)
            return (void *)1;
    }
    return NULL;
}

Test(htpasswd, concurrent_verify_cached_and_refresh)
{
    make_users();
    snprintf(text_a, sizeof(text_a), "alice:%s\n", h_alice);
    snprintf(text_b, sizeof(text_b), "alice:%s\nbob:%s\n", h_alice, h_bob);
    shared = open_text(text_a);
    cr_assert_eq(V(shared, "alice", "alice-pw", 1000), 1);
    pthread_t v[2], c, r;
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&v[i], NULL, verifier, NULL), 0);
    cr_assert_eq(pthread_create(&c, NULL, cacher, NULL), 0);
    cr_assert_eq(pthread_create(&r, NULL, refresher, NULL), 0);
    int bad = 0;
    void *res;
    for (int i = 0; i < 2; i++) {
        pthread_join(v[i], &res);
        bad |= res != NULL;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    pthread_join(c, &res);
    bad |= res != NULL;
    pthread_join(r, &res);
    bad |= (res != NULL) << 1;
    cr_assert_eq(bad, 0, "a thread saw a wrong answer (%d)", bad);
    cr_assert_eq(C(shared, "alice", "alice-pw", 1000), 1);
    htpasswd_free(shared);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
}
