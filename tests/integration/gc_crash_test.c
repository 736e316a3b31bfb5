/* gc_crash_test.c - a gc pass killed with SIGKILL at any point leaves a
 * consistent store, and the next pass finishes the job (issue 11,
 * docs/testing.md "gc crash").
 *
 * The server runs with grace 0, delete_untagged on and no periodic pass; the
 * test asks for passes with SIGUSR1. The store holds an image that must stay
 * ("keep", sharing a layer with the garbage) and, each round, fresh garbage:
 * images whose manifests were deleted, untagged images, blobs nothing
 * references.
 *
 *   kill9_at_successive_steps_of_passes: OCIREG_TEST_GC_KILL_STEP=K makes the
 *     server SIGKILL itself the K-th time a pass asks whether to stop (between
 *     its steps, struct maint_opts); K = 1, 2, 3, 5, 8, ... until a pass ends
 *     before step K. After each kill: the store checks clean (below) and
 *     "keep" pulls intact.
 *   kill9_from_outside_while_a_pass_runs: much garbage, SIGUSR1, SIGKILL as
 *     soon as the log says the pass started.
 * Both end with passes until one removes nothing, then: the store checks
 * clean and the files under blobs/ are exactly those of "keep".
 *
 * "Checks clean": `ocireg check` exits 0 when the binary has that command;
 * and, always, the rows are checked directly after storage_open's recovery:
 * every blob row has its file, every link and manifest its blob row, every
 * kept manifest's references resolve in its repository. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/lib/integ_util.h"
#include "tests/lib/testsrv.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"
#define REPO "crash/gc"
#define SHARED_SEED 7

struct img {
    char digest[80];
    char cfg[80], lay[4][80];
    int nlay;
};

static uint64_t next_seed = 100;

/* the server of the running test, stopped by teardown when an assertion ends
 * the test early (a failed test must not leave a server behind) */
static struct testsrv *running;

static void
teardown(void)
{
    if (running && running->pid > 0)
        testsrv_kill9(running);
}

/* push blob `seed` (size from the seed) into repo; its digest into out */
static void
push_seed(struct testsrv *s, const char *repo, uint64_t seed, char *out)
{
    size_t n = 200 + (size_t)(seed * 37 % 3000);
    char *buf = malloc(n);
    integ_pattern(seed, 0, buf, n);
    long st = tpush_blob(s, repo, buf, n, out);
    free(buf);
    cr_assert_eq(st, 201, "blob push: %ld", st);
}

/* an image of nlay layers (layer 0 the shared one when shared), tagged tag or
 * pushed by digest (tag NULL) */
static void
push_image(struct testsrv *s, const char *repo, const char *tag, int nlay, int shared,
           struct img *im)
{
    memset(im, 0, sizeof(*im));
    push_seed(s, repo, next_seed++, im->cfg);
    im->nlay = nlay;
    char body[4096];
    int off = snprintf(body, sizeof(body),
                       "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{"
                       "\"mediaType\":\"" MT_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
                       "\"layers\":[",
                       im->cfg, 200 + (size_t)((next_seed - 1) * 37 % 3000));
    for (int i = 0; i < nlay; i++) {
        uint64_t sd = i == 0 && shared ? SHARED_SEED : next_seed++;
        push_seed(s, repo, sd, im->lay[i]);
        off += snprintf(body + off, sizeof(body) - (size_t)off,
                        "%s{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"%s\",\"size\":%zu}",
                        i ? "," : "", im->lay[i], 200 + (size_t)(sd * 37 % 3000));
    }
    off += snprintf(body + off, sizeof(body) - (size_t)off, "]}");
    tdigest(body, (size_t)off, im->digest);
    char path[300];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, tag ? tag : im->digest);
    const char *h[] = {"Content-Type: " MT_MANIFEST, NULL};
    struct tresp r;
    cr_assert_eq(treq(s, "PUT", path, h, body, (size_t)off, &r), 0);
    cr_assert_eq(r.status, 201, "PUT %s: %ld %s", path, r.status, r.body);
    tresp_free(&r);
}

static void
delete_ref(struct testsrv *s, const char *repo, const char *ref)
{
    char path[300];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    struct tresp r;
    cr_assert_eq(treq(s, "DELETE", path, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 202, "DELETE %s: %ld", path, r.status);
    tresp_free(&r);
}

/* a batch of garbage: deleted images, an untagged one, an unreferenced blob,
 * an image whose tag is deleted */
static void
make_garbage(struct testsrv *s, int images, int layers)
{
    struct img im;
    for (int i = 0; i < images; i++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "g%llu", (unsigned long long)next_seed);
        push_image(s, REPO, tag, layers, i % 2 == 0, &im);
        if (i % 3 == 2)
            delete_ref(s, REPO, tag); /* untagged: delete_untagged takes it */
        else
            delete_ref(s, REPO, im.digest);
    }
    push_image(s, "crash/other", NULL, 2, 1, &im); /* never tagged */
    char d[80];
    push_seed(s, "crash/other", next_seed++, d); /* never referenced */
}

/* the pulls of "keep": manifest by tag and every blob, intact */
static void
check_keep(struct testsrv *s, const struct img *keep)
{
    char path[300], got[80];
    snprintf(path, sizeof(path), "/v2/%s/manifests/keep", REPO);
    const char *h[] = {"Accept: " MT_MANIFEST, NULL};
    cr_assert_eq(integ_get_hash(s, path, h, got, NULL), 200, "GET %s", path);
    cr_assert_str_eq(got, keep->digest);
    const char *all[5] = {keep->cfg};
    for (int i = 0; i < keep->nlay; i++)
        all[i + 1] = keep->lay[i];
    for (int i = 0; i < keep->nlay + 1; i++) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", REPO, all[i]);
        cr_assert_eq(integ_get_hash(s, path, NULL, got, NULL), 200, "GET %s", path);
        cr_assert_str_eq(got, all[i]);
    }
}

/* ---- the store, checked with the server stopped ---- */

static int
has_check_command(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "'%s' help 2>&1 | grep -q '^  check'",
             getenv("OCIREG_BIN") ? getenv("OCIREG_BIN") : "build/ocireg");
    return system(cmd) == 0;
}

static int
file_of(const char *root, const char *ds)
{
    struct digest d;
    if (digest_parse(ds, strlen(ds), &d, NULL) < 0)
        return 0;
    char p[600];
    snprintf(p, sizeof(p), "%s/blobs/%s/%.2s/%s", root, d.algo == DIGEST_SHA256 ? "sha256" : "sha512",
             d.hex, d.hex);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* rows of one query whose first column names a problem; returns their count */
static int
bad_rows(sqlite3 *db, const char *what, const char *sql, const char *root, int need_file)
{
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    int bad = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (need_file && file_of(root, v))
            continue;
        if (bad++ < 3)
            cr_log_error("%s: %s", what, v);
    }
    sqlite3_finalize(st);
    return bad;
}

static void
check_store(const char *root)
{
    if (has_check_command()) {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "OCIREG_STORAGE_ROOT='%s' '%s' check >&2", root,
                 getenv("OCIREG_BIN") ? getenv("OCIREG_BIN") : "build/ocireg");
        cr_assert_eq(system(cmd), 0, "ocireg check found problems in %s", root);
    }
    /* recovery first, as a restart does (pending manifest files rewritten) */
    struct err e = {0};
    struct storage_opts so = {.root = root, .fsync = 0};
    struct storage *st = storage_open(&so, &e);
    cr_assert_not_null(st, "storage_open after the crash: %s", e.msg);
    storage_close(st);
    char p[600];
    snprintf(p, sizeof(p), "%s/meta.db", root);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    int bad = 0;
    bad += bad_rows(db, "blob row without its file", "SELECT digest FROM blobs", root, 1);
    bad += bad_rows(db, "link without a blob row",
                    "SELECT repo || ' ' || digest FROM blob_links l WHERE NOT EXISTS"
                    " (SELECT 1 FROM blobs b WHERE b.digest = l.digest)",
                    root, 0);
    bad += bad_rows(db, "manifest without a blob row",
                    "SELECT repo || '@' || digest FROM manifests m WHERE NOT EXISTS"
                    " (SELECT 1 FROM blobs b WHERE b.digest = m.digest)",
                    root, 0);
    bad += bad_rows(db, "manifest reference to a blob not linked",
                    "SELECT r.repo || '@' || r.digest || ' -> ' || r.ref FROM manifest_refs r"
                    " WHERE r.kind = 0 AND NOT EXISTS (SELECT 1 FROM blob_links l"
                    " WHERE l.repo = r.repo AND l.digest = r.ref)",
                    root, 0);
    bad += bad_rows(db, "index reference to a missing manifest",
                    "SELECT r.repo || '@' || r.digest || ' -> ' || r.ref FROM manifest_refs r"
                    " WHERE r.kind = 1 AND NOT EXISTS (SELECT 1 FROM manifests m"
                    " WHERE m.repo = r.repo AND m.digest = r.ref)",
                    root, 0);
    bad += bad_rows(db, "tag naming a missing manifest",
                    "SELECT t.repo || ':' || t.tag FROM tags t WHERE NOT EXISTS"
                    " (SELECT 1 FROM manifests m WHERE m.repo = t.repo AND m.digest = t.digest)",
                    root, 0);
    sqlite3_close(db);
    cr_assert_eq(bad, 0, "%d inconsistencies in %s", bad, root);
}

/* ---- passes ---- */

static const char *const base_env[] = {"OCIREG_GC_INTERVAL=0", "OCIREG_GC_GRACE=0",
                                       "OCIREG_GC_DELETE_UNTAGGED=true", "OCIREG_LOG_LEVEL=debug",
                                       NULL};

/* lines of the log holding needle, from byte *off on (advanced; NULL: from the start) */
static int
count_in_log(const char *log, const char *needle, long *off)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return 0;
    if (off)
        fseek(f, *off, SEEK_SET);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    if (off)
        *off = ftell(f);
    fclose(f);
    return n;
}

static int
passes_done(const struct testsrv *s, unsigned long long *last_removed)
{
    /* the completion line: "gc: N manifests, ... removed in T s" */
    FILE *f = fopen(s->log, "r");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, " gc: ");
        unsigned long long m, l, b, u;
        double mib;
        if (p && strstr(p, " removed in ") &&
            sscanf(p, " gc: %llu manifests, %llu links, %llu blobs (%lf MiB), %llu uploads", &m,
                   &l, &b, &mib, &u) == 5) {
            n++;
            if (last_removed)
                *last_removed = m + l + b + u;
        }
    }
    fclose(f);
    return n;
}

/* SIGUSR1 until a pass removes nothing; the server keeps running. Ages are
 * whole seconds, so grace 0 may spare what the current second made: only a
 * pass asked 2 s or more after the last change counts as the clean one. */
static void
gc_until_clean(struct testsrv *s)
{
    int64_t settled = integ_now_ms() + 2000;
    for (int round = 0; round < 40; round++) {
        int64_t asked = integ_now_ms();
        int before = passes_done(s, NULL);
        cr_assert_eq(kill(s->pid, SIGUSR1), 0);
        unsigned long long removed = 1;
        int64_t until = integ_now_ms() + 120000;
        while (passes_done(s, &removed) <= before) {
            cr_assert(integ_now_ms() < until, "no gc pass ended within 120 s (log %s)", s->log);
            cr_assert(testsrv_alive(s), "the server died (log %s)", s->log);
            integ_sleep_ms(50);
        }
        if (removed == 0 && asked >= settled)
            return;
        if (removed == 0)
            integ_sleep_ms(100);
    }
    cr_assert_fail("gc passes still removing after 40 rounds");
}

static void
on_file(void *arg, const char *digest)
{
    (void)digest;
    (*(int *)arg)++;
}

/* the end: consistent, and blobs/ holds exactly keep's config, layers and manifest */
static void
final_checks(struct testsrv *s, const struct img *keep)
{
    gc_until_clean(s);
    check_keep(s, keep);
    char why[300] = "";
    int files = 0, nup = 0;
    int bad = integ_layout_check(s->root, 1, &nup, on_file, &files, why, sizeof(why));
    cr_assert_eq(bad, 0, "layout: %s", why);
    cr_assert_eq(files, keep->nlay + 2, "%d files under blobs/, want %d (keep's manifest, config"
                 " and %d layers): garbage left", files, keep->nlay + 2, keep->nlay);
    int st = testsrv_stop(s);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %#x", st);
    check_store(s->root);
}

static void
start(struct testsrv *s, const char *root, const char *kill_step)
{
    const char *env[8];
    int n = 0;
    for (; base_env[n]; n++)
        env[n] = base_env[n];
    env[n++] = kill_step;
    env[n] = NULL;
    cr_assert_eq(testsrv_start(s, root, env), 0, "server did not start");
    running = s;
}

Test(gc_crash, kill9_at_successive_steps_of_passes, .timeout = 600, .fini = teardown)
{
    struct testsrv s;
    start(&s, NULL, NULL);
    char root[256];
    snprintf(root, sizeof(root), "%s", s.root);
    struct img keep;
    push_image(&s, REPO, "keep", 3, 1, &keep);
    cr_assert_eq(testsrv_stop(&s) & 0x7f, 0);

    static const int steps[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128};
    int kills = 0, completed = 0;
    char env[64];
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]) && !completed; k++) {
        snprintf(env, sizeof(env), "OCIREG_TEST_GC_KILL_STEP=%d", steps[k]);
        start(&s, root, env);
        check_keep(&s, &keep); /* after the previous crash and recovery */
        make_garbage(&s, 6, 3);
        int before = passes_done(&s, NULL);
        cr_assert_eq(kill(s.pid, SIGUSR1), 0);
        int64_t until = integ_now_ms() + 120000;
        for (;;) {
            int wst;
            pid_t w = waitpid(s.pid, &wst, WNOHANG);
            if (w == s.pid) {
                cr_assert(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL,
                          "the server ended otherwise than by the test kill: %#x", wst);
                cr_assert_geq(count_in_log(s.log, "gc: test kill at step", NULL), 1);
                s.pid = -1;
                kills++;
                break;
            }
            if (passes_done(&s, NULL) > before) { /* the pass had fewer steps */
                completed = 1;
                cr_log_info("gc_crash: a pass ended before step %d", steps[k]);
                break;
            }
            cr_assert(integ_now_ms() < until, "neither a kill nor a pass end in 120 s");
            integ_sleep_ms(20);
        }
        if (completed) {
            cr_assert_eq(testsrv_stop(&s) & 0x7f, 0);
        }
        unlink(s.log);
        check_store(root);
    }
    cr_log_info("gc_crash: %d passes killed at successive steps", kills);
    cr_assert_geq(kills, 1, "no pass asked whether to stop: the test kill never fired");
    start(&s, root, NULL);
    final_checks(&s, &keep);
    s.own_root = 1;
    testsrv_cleanup(&s);
    unlink(s.log);
}

Test(gc_crash, kill9_from_outside_while_a_pass_runs, .timeout = 600, .fini = teardown)
{
    struct testsrv s;
    start(&s, NULL, NULL);
    struct img keep;
    push_image(&s, REPO, "keep", 3, 1, &keep);
    make_garbage(&s, 60, 4); /* ~300 blobs and 60 manifests to collect */
    long off = 0;
    count_in_log(s.log, "gc: pass starting", &off);
    cr_assert_eq(kill(s.pid, SIGUSR1), 0);
    int64_t until = integ_now_ms() + 60000;
    while (count_in_log(s.log, "gc: pass starting", &off) == 0) {
        cr_assert(integ_now_ms() < until, "the pass did not start");
        integ_sleep_ms(1);
    }
    testsrv_kill9(&s);
    int ended = passes_done(&s, NULL);
    cr_log_info("gc_crash: killed %s the pass ended", ended ? "after" : "before");
    check_store(s.root);
    char root[256];
    snprintf(root, sizeof(root), "%s", s.root);
    unlink(s.log);
    start(&s, root, NULL);
    check_keep(&s, &keep);
    final_checks(&s, &keep);
    s.own_root = 1;
    testsrv_cleanup(&s);
    unlink(s.log);
}
