/* retention_pulls_test.c - the last-pulled times of tags (retention's
 * keep_within): a manifest GET or HEAD by tag reaches tags.pulled through the
 * maintenance thread's flush, within a bounded wait, when pull tracking is on;
 * never when it is off; a pull table filling up asks for a flush at once; and
 * the real binary records them when [retention] rules is set (its last flush
 * at shutdown), refusing to start on a broken rules file. */
#include <sys/stat.h>
#include <time.h>

#include "tests/integration/api_test.h"
#include "tests/lib/inproc.h"
#include "tests/lib/integ_util.h"

#include "storage/storage.h"

#include "common/banned.h"

static struct inproc P;

static void
teardown(void)
{
    inproc_stop(&P);
}

TestSuite(retention_pulls, .fini = teardown, .timeout = 120);

static void
start(int track, long flush_ms)
{
    struct inproc_opts o = {.prefix = "retention-pulls",
                            .max_page = 10000,
                            .io = -1,
                            .track_pulls = track,
                            .pull_flush_ms = flush_ms};
    cr_assert_eq(inproc_start_with(&P, &o, &S), 0, "in-process server did not start");
}

static int64_t
pulled_of(struct storage_handle *h, const char *repo, const char *tag)
{
    struct err e = {0};
    int64_t pushed = 0, pulled = -1;
    cr_assert_eq(storage_tag_times(h, repo, tag, &pushed, &pulled, &e), 1, "%s:%s: %s", repo, tag,
                 e.msg);
    return pulled;
}

/* wait (10 s at most) until repo:tag has a pull time; returns it, 0 on timeout */
static int64_t
wait_pulled(struct storage_handle *h, const char *repo, const char *tag)
{
    for (int i = 0; i < 1000; i++) {
        int64_t t = pulled_of(h, repo, tag);
        if (t > 0)
            return t;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static struct storage_handle *
handle(void)
{
    struct err e = {0};
    struct storage_handle *h = storage_handle_open(P.st, &e);
    cr_assert_not_null(h, "%s", e.msg);
    return h;
}

Test(retention_pulls, get_and_head_by_tag_record_the_pull_time)
{
    start(1, 100);
    char d1[80], d2[80], d3[80], path[256];
    push_image("team/app", "v1", "one", d1);
    push_image("team/app", "byhead", "two", d2);
    push_image("team/app", "bydigest", "three", d3);
    struct storage_handle *h = handle();
    cr_assert_eq(pulled_of(h, "team/app", "v1"), 0, "never pulled yet");
    int64_t before = (int64_t)time(NULL);
    /* by digest first: it names no tag, so nothing is recorded for it */
    snprintf(path, sizeof(path), "/v2/team/app/manifests/%s", d3);
    cr_assert_eq(status_of("GET", path), 200);
    cr_assert_eq(status_of("GET", "/v2/team/app/manifests/v1"), 200);
    cr_assert_eq(status_of("HEAD", "/v2/team/app/manifests/byhead"), 200);
    cr_assert_eq(status_of("GET", "/v2/team/app/manifests/missing"), 404);
    int64_t t1 = wait_pulled(h, "team/app", "v1");
    int64_t t2 = wait_pulled(h, "team/app", "byhead");
    int64_t after = (int64_t)time(NULL);
    cr_assert(t1 >= before && t1 <= after, "v1 pulled at %lld, GET between %lld and %lld",
              (long long)t1, (long long)before, (long long)after);
    cr_assert(t2 >= before && t2 <= after, "byhead pulled at %lld", (long long)t2);
    /* the flushes that wrote those came after the GET by digest */
    cr_assert_eq(pulled_of(h, "team/app", "bydigest"), 0);
    storage_handle_close(h);
}

Test(retention_pulls, nothing_is_recorded_without_retention)
{
    start(0, 0);
    push_image("team/app", "v1", "one", NULL);
    cr_assert_eq(status_of("GET", "/v2/team/app/manifests/v1"), 200);
    cr_assert_eq(status_of("HEAD", "/v2/team/app/manifests/v1"), 200);
    struct storage_handle *h = handle();
    struct err e = {0};
    /* what the maintenance thread would do, done here: nothing to write */
    cr_assert_eq(storage_pulls_flush(h, &e), 0, "%s", e.msg);
    cr_assert_eq(pulled_of(h, "team/app", "v1"), 0);
    storage_handle_close(h);
}

/* a worker's table asks for a flush when it fills up: with a periodic flush
 * an hour away, the times still arrive */
Test(retention_pulls, a_filling_table_asks_for_a_flush)
{
    start(1, 3600 * 1000L);
    enum { TAGS = 640, PER_PUT = 32 };
    char body[1024];
    make_image("many", 0, "many", body, sizeof(body));
    for (int i = 0; i < TAGS; i += PER_PUT) {
        char path[4096];
        int n = snprintf(path, sizeof(path), "t%04d?", i);
        for (int k = 1; k < PER_PUT; k++)
            n += snprintf(path + n, sizeof(path) - (size_t)n, "%stag=t%04d", k > 1 ? "&" : "",
                          i + k);
        cr_assert_eq(put_manifest("many", path, MT_OCI_MANIFEST, body, NULL), 201);
    }
    struct storage_handle *h = handle();
    for (int i = 0; i < TAGS; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v2/many/manifests/t%04d", i);
        cr_assert_eq(status_of("HEAD", path), 200, "%s", path);
    }
    cr_assert(wait_pulled(h, "many", "t0000") > 0, "no flush although the table filled up");
    storage_handle_close(h);
}

/* the real binary: [retention] rules turns recording on (written at the
 * latest by the last flush at shutdown), a broken file stops the start */
Test(retention_pulls, server_records_pulls_with_rules_and_refuses_broken_rules)
{
    char dir[] = "/tmp/retention-srv.XXXXXX", rules[128], env[200];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(rules, sizeof(rules), "%s/retention.rules", dir);
    FILE *f = fopen(rules, "w");
    cr_assert_not_null(f);
    fputs("[repo \"**\"]\nkeep_newest = 5\n", f);
    fclose(f);
    snprintf(env, sizeof(env), "OCIREG_RETENTION_RULES=%s", rules);
    const char *envs[] = {env, NULL};
    cr_assert_eq(testsrv_start(&S, NULL, envs), 0, "server did not start");
    push_image("app", "v1", "srv", NULL);
    push_image("app", "v2", "srv2", NULL);
    cr_assert_eq(status_of("GET", "/v2/app/manifests/v1"), 200);
    int st = testsrv_stop(&S);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %#x", st);

    struct storage_opts so = {.root = S.root, .fsync = 0};
    struct err e = {0};
    struct storage *stg = storage_open(&so, &e);
    cr_assert_not_null(stg, "%s", e.msg);
    struct storage_handle *h = storage_handle_open(stg, &e);
    cr_assert_not_null(h, "%s", e.msg);
    cr_assert(pulled_of(h, "app", "v1") > 0, "the pull of v1 was not recorded");
    cr_assert_eq(pulled_of(h, "app", "v2"), 0);
    storage_handle_close(h);
    storage_close(stg);
    testsrv_cleanup(&S);

    f = fopen(rules, "w");
    cr_assert_not_null(f);
    fputs("[repo \"**\"]\nprotect = latest\n", f);
    fclose(f);
    /* a root of ours: testsrv keeps the log of a failed start beside it */
    char root[160];
    snprintf(root, sizeof(root), "%s/root", dir);
    cr_assert_eq(mkdir(root, 0755), 0);
    struct testsrv bad;
    cr_assert_eq(testsrv_start(&bad, root, envs), -1, "started with a broken rules file");
    char line[1024], want[300];
    snprintf(want, sizeof(want), "%s:1: ", rules);
    int seen = 0;
    FILE *log = fopen(bad.log, "r");
    while (log && fgets(line, sizeof(line), log))
        seen |= strstr(line, want) != NULL && strstr(line, "needs keep_newest") != NULL;
    if (log)
        fclose(log);
    cr_assert(seen, "the log names %s", want);
    unlink(bad.log);
    integ_rm_rf(root);
    unlink(rules);
    rmdir(dir);
}
