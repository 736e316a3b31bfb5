/* maint_test.c - the maintenance thread's gc schedule (server/maint.h): a
 * pass on request, periodic passes, none without an interval, a pass that
 * removes garbage, a prompt stop. The gc pass is the real one (gc/gc.h);
 * tests wait on the pass counter, never on a fixed sleep (60 s guards). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gc/gc.h"
#include "server/maint.h"
#include "tests/unit/storage_testutil.h"

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait until f(m) >= want; 1, or 0 after 60 s */
static int
wait_count(struct maint *m, unsigned long (*f)(struct maint *), unsigned long want)
{
    int64_t until = now_ms() + 60000;
    while (f(m) < want) {
        if (now_ms() > until)
            return 0;
        usleep(2000);
    }
    return 1;
}

static void
done(struct tu_store *t, struct maint *m)
{
    maint_stop(m);
    storage_handle_close(t->h);
    storage_close(t->st);
    tu_rm_rf(t->root);
}

Test(maint, gc_now_runs_one_pass_on_the_thread)
{
    struct tu_store t;
    tu_open(&t, 0);
    struct maint_opts o = {.gc_interval_ms = 0};
    struct err e = {0};
    struct maint *m = maint_start(t.st, &o, &e);
    cr_assert_not_null(m, "%s", e.msg);
    struct gc_stats st;
    cr_assert_eq(maint_gc_last(m, &st), -1, "no pass has ended yet");
    cr_assert_eq(maint_gc_passes(m), 0);
    maint_gc_now(m);
    cr_assert(wait_count(m, maint_gc_passes, 1), "the asked pass did not run");
    cr_assert_eq(maint_gc_last(m, &st), 0, "the pass failed");
    done(&t, m);
}

Test(maint, no_interval_means_no_periodic_pass)
{
    struct tu_store t;
    tu_open(&t, 0);
    /* upload rounds every 100 ms give the thread reasons to wake: none of
     * them may run a pass */
    struct maint_opts o = {.upload_expiry_sec = 1, .gc_interval_ms = 0};
    struct err e = {0};
    struct maint *m = maint_start(t.st, &o, &e);
    cr_assert_not_null(m, "%s", e.msg);
    cr_assert(wait_count(m, maint_runs, 5), "upload rounds did not run");
    cr_assert_eq(maint_gc_passes(m), 0, "a pass ran without an interval or a request");
    maint_gc_now(m);
    cr_assert(wait_count(m, maint_gc_passes, 1));
    done(&t, m);
}

Test(maint, passes_repeat_every_interval)
{
    struct tu_store t;
    tu_open(&t, 0);
    struct maint_opts o = {.gc_interval_ms = 20};
    struct err e = {0};
    struct maint *m = maint_start(t.st, &o, &e);
    cr_assert_not_null(m, "%s", e.msg);
    cr_assert(wait_count(m, maint_gc_passes, 3), "periodic passes did not run");
    cr_assert_eq(maint_runs(m), 0, "no upload expiry configured, yet rounds ran");
    done(&t, m);
}

Test(maint, a_pass_removes_an_unreferenced_blob)
{
    struct tu_store t;
    tu_open(&t, 0);
    struct err e = {0};
    /* pushed as a client does (an upload session: its end is what queues the
     * blob for review) and never referenced */
    struct digest d;
    digest_of(DIGEST_SHA256, "garbage", 7, &d);
    char uuid[UPLOAD_ID_LEN + 1];
    cr_assert_eq(storage_upload_start(t.h, "m/repo", DIGEST_SHA256, uuid, &e), 0, "%s", e.msg);
    struct upload *u = storage_upload_acquire(t.h, "m/repo", uuid, &e);
    cr_assert_not_null(u, "%s", e.msg);
    cr_assert_eq(upload_write(u, "garbage", 7, &e), 0, "%s", e.msg);
    cr_assert_eq(upload_commit(u, &d, 7, &e), 0, "%s", e.msg);
    char p[300];
    snprintf(p, sizeof(p), "%s/blobs/sha256/%.2s/%s", t.root, d.hex, d.hex);
    cr_assert_eq(access(p, F_OK), 0, "the blob's file");
    struct maint_opts o = {.gc_interval_ms = 0, .gc_grace_sec = 0};
    struct maint *m = maint_start(t.st, &o, &e);
    cr_assert_not_null(m, "%s", e.msg);
    /* linked, not referenced, grace 0: the link and then the file go. Ages
     * are in whole seconds, so a pass within the blob's own second may leave
     * it (grace 0 means "older than 0 s"); passes are asked until it is gone,
     * for at most 60 s */
    int64_t until = now_ms() + 60000;
    for (unsigned long n = 1; access(p, F_OK) == 0 && now_ms() < until; n++) {
        maint_gc_now(m);
        cr_assert(wait_count(m, maint_gc_passes, n));
        if (access(p, F_OK) == 0)
            usleep(50000);
    }
    cr_assert_neq(access(p, F_OK), 0, "the unreferenced blob's file is still there");
    struct gc_stats st;
    cr_assert_eq(maint_gc_last(m, &st), 0);
    cr_assert_eq(storage_blob_open(t.h, "m/repo", &d, NULL, NULL, &e), -1);
    done(&t, m);
}

Test(maint, stop_right_after_a_request_returns)
{
    struct tu_store t;
    tu_open(&t, 0);
    struct maint_opts o = {.gc_interval_ms = 3600000};
    struct err e = {0};
    struct maint *m = maint_start(t.st, &o, &e);
    cr_assert_not_null(m, "%s", e.msg);
    maint_gc_now(m);
    maint_stop(m); /* joins: a hang here is the failure (Criterion's timeout) */
    storage_handle_close(t.h);
    storage_close(t.st);
    tu_rm_rf(t.root);
}
