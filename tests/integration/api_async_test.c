/* api_async_test.c - the registry's blocking work runs on the api's pool, not
 * on the worker's event loop: upload commits, manifest PUTs, DELETEs and
 * mounts are pool jobs (api_blocking_jobs counts them), and a commit held inside its fsync (the
 * storage_fsync_hook test hook, on a gate of this test) does not delay a GET
 * on the same worker (the in-process server has one). */
#include <pthread.h>

#include "tests/integration/api_test.h"
#include "tests/lib/blob_mem.h"
#include "tests/lib/inproc.h"

#include "server/api.h"
#include "server/http.h"
#include "storage/storage.h"

#include "common/banned.h"

static struct inproc P;

static void
async_setup(void)
{
    cr_assert_eq(inproc_start(&P, "api-async", 1, 100, &S), 0, "in-process server did not start");
}

static void
async_teardown(void)
{
    storage_fsync_hook(P.st, NULL, NULL);
    inproc_stop(&P);
}

TestSuite(api_async, .init = async_setup, .fini = async_teardown, .timeout = 60);

Test(api_async, upload_commits_and_manifest_puts_run_on_the_pool)
{
    unsigned long j0 = api_blocking_jobs(P.api);
    char dg[80];
    push_blob("pool", "a blob committed by a pool thread", dg);
    unsigned long j1 = api_blocking_jobs(P.api);
    cr_assert_eq(j1, j0 + 1, "jobs %lu -> %lu", j0, j1);
    char md[80];
    push_image("pool", "v1", "pooled", md); /* two blobs and a manifest */
    cr_assert_eq(api_blocking_jobs(P.api), j1 + 3);
    cr_assert_eq(status_of("GET", "/v2/pool/manifests/v1"), 200);
}

/* every handler whose commit waits for the group WAL fsync is one pool job;
 * a mount not done (no such blob) is one job too, and the session it falls back
 * to is started on the worker (a light transaction, no job) */
Test(api_async, deletes_and_mounts_run_on_the_pool)
{
    char dg[80], path[300];
    push_blob("pool-src", "a blob mounted by a pool thread", dg);
    char md[80];
    push_image("pool-img", "v1", "to delete", md);

    unsigned long j0 = api_blocking_jobs(P.api);
    snprintf(path, sizeof(path), "/v2/pool-dst/blobs/uploads/?mount=%s&from=pool-src", dg);
    cr_assert_eq(status_of("POST", path), 201);
    cr_assert_eq(api_blocking_jobs(P.api), j0 + 1);

    snprintf(path, sizeof(path),
             "/v2/pool-dst/blobs/uploads/?mount=sha256:%064d&from=pool-src", 0);
    cr_assert_eq(status_of("POST", path), 202);
    cr_assert_eq(api_blocking_jobs(P.api), j0 + 2);

    snprintf(path, sizeof(path), "/v2/pool-dst/blobs/%s", dg);
    cr_assert_eq(status_of("DELETE", path), 202);
    cr_assert_eq(api_blocking_jobs(P.api), j0 + 3);
    cr_assert_eq(status_of("DELETE", path), 404); /* an error is the job's too */
    cr_assert_eq(api_blocking_jobs(P.api), j0 + 4);

    cr_assert_eq(status_of("DELETE", "/v2/pool-img/manifests/v1"), 202);
    cr_assert_eq(api_blocking_jobs(P.api), j0 + 5);
    snprintf(path, sizeof(path), "/v2/pool-img/manifests/%s", md);
    cr_assert_eq(status_of("DELETE", path), 202);
    cr_assert_eq(api_blocking_jobs(P.api), j0 + 6);
    cr_assert_eq(status_of("GET", path), 404);
    cr_assert_eq(api_blocking_jobs(P.api), j0 + 6, "reads stay on the worker");
}

/* the gate a commit's fsync waits on */
static pthread_mutex_t gmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gcv = PTHREAD_COND_INITIALIZER;
static int gate_open, n_held;

static void
hold_fsync(void *arg)
{
    pthread_mutex_lock(&gmu);
    n_held++;
    pthread_cond_broadcast(&gcv);
    while (!gate_open)
        pthread_cond_wait(&gcv, &gmu);
    pthread_mutex_unlock(&gmu);
}

struct post {
    char path[300];
    struct tresp r;
    int done;
};

static void *
post_main(void *arg)
{
    struct post *p = arg;
    req("POST", p->path, NULL, "slow commit", 11, &p->r);
    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(api_async, a_commit_held_in_fsync_does_not_delay_a_get)
{
    if (blob_mem_selected())
        cr_skip_test("the fsync hook is the filesystem backend's (OCIREG_TEST_BLOBS=mem)");
    char dg[80], bdg[80];
    push_blob("slow", "already here", bdg);
    push_image("slow", "v1", "img", dg);
    storage_fsync_hook(P.st, hold_fsync, NULL);
    struct post p = {0};
    char d[80];
    snprintf(p.path, sizeof(p.path), "/v2/slow/blobs/uploads/?digest=%s",
             tdigest("slow commit", 11, d));
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, post_main, &p), 0);
    pthread_mutex_lock(&gmu);
    while (n_held < 1)
        pthread_cond_wait(&gcv, &gmu);
    pthread_mutex_unlock(&gmu);
    /* the commit sits in its fsync: the one worker answers other requests */
    cr_assert_eq(status_of("GET", "/v2/slow/manifests/v1"), 200);
    char path[300];
    snprintf(path, sizeof(path), "/v2/slow/blobs/%s", bdg);
    cr_assert_eq(status_of("HEAD", path), 200);
    cr_assert_eq(status_of("GET", "/v2/"), 200);
    pthread_mutex_lock(&gmu);
    cr_assert_eq(n_held, 1);
    cr_assert_eq(__atomic_load_n(&p.done, __ATOMIC_ACQUIRE), 0, "the commit did not wait");
    gate_open = 1;
    pthread_cond_broadcast(&gcv);
    pthread_mutex_unlock(&gmu);
    pthread_join(t, NULL);
    cr_assert_eq(p.r.status, 201, "%ld %s", p.r.status, p.r.body);
    tresp_free(&p.r);
    snprintf(path, sizeof(path), "/v2/slow/blobs/%s", d);
    cr_assert_eq(status_of("HEAD", path), 200);
}
