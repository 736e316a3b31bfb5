/* api_faults_test.c - storage errors reach the client as the right 5xx with the
 * spec JSON body, and leave no session or lease behind. The server runs in this
 * process (storage + api + http layer on 127.0.0.1:0, one worker) so that
 * storage_fault_inject can make the next write/fsync/db step fail. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
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
faults_setup(void)
{
    cr_assert_eq(inproc_start(&P, "api-faults", 1, 100, &S), 0, "in-process server did not start");
}

static void
faults_teardown(void)
{
    inproc_stop(&P);
}

TestSuite(api_faults, .init = faults_setup, .fini = faults_teardown, .timeout = 60);

#define uploads_left() uploads_left_in(P.root)
#define start upload_start_at

Test(api_faults, enospc_on_patch_is_507_and_frees_the_session)
{
    if (blob_mem_selected())
        cr_skip_test("fault injection is the filesystem backend's (OCIREG_TEST_BLOBS=mem)");
    char loc[300];
    struct tresp r;
    start("full", loc, sizeof(loc));
    storage_fault_inject(P.st, FAULT_WRITE, ENOSPC, 1000);
    req("PATCH", loc, NULL, "some bytes", 10, &r);
    storage_fault_inject(P.st, 0, 0, 0);
    cr_assert_eq(r.status, 507, "%ld %s", r.status, r.body);
    cr_assert(ecode(&r)[0], "no JSON error body: %s", r.body);
    tresp_free(&r);
    req("GET", loc, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
    cr_assert_eq(uploads_left(), 0);

    /* and the registry goes on */
    char dg[80];
    push_blob("full", "after the storm", dg);
}

Test(api_faults, enospc_on_monolithic_post_leaves_nothing)
{
    if (blob_mem_selected())
        cr_skip_test("fault injection is the filesystem backend's (OCIREG_TEST_BLOBS=mem)");
    char dg[80], path[300];
    struct tresp r;
    snprintf(path, sizeof(path), "/v2/full/blobs/uploads/?digest=%s", tdigest("abc", 3, dg));
    storage_fault_inject(P.st, FAULT_WRITE, ENOSPC, 1000);
    req("POST", path, NULL, "abc", 3, &r);
    storage_fault_inject(P.st, 0, 0, 0);
    cr_assert_eq(r.status, 507, "%ld %s", r.status, r.body);
    tresp_free(&r);
    cr_assert_eq(uploads_left(), 0);
    snprintf(path, sizeof(path), "/v2/full/blobs/%s", dg);
    cr_assert_eq(status_of("HEAD", path), 404);
}

Test(api_faults, eio_on_commit_is_500)
{
    if (blob_mem_selected())
        cr_skip_test("fault injection is the filesystem backend's (OCIREG_TEST_BLOBS=mem)");
    char loc[300], path[400], dg[80];
    struct tresp r;
    start("eio", loc, sizeof(loc));
    req("PATCH", loc, NULL, "payload", 7, &r);
    cr_assert_eq(r.status, 202);
    tresp_free(&r);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, tdigest("payload", 7, dg));
    storage_fault_inject(P.st, FAULT_FSYNC, EIO, 1000);
    req("PUT", path, NULL, NULL, 0, &r);
    storage_fault_inject(P.st, 0, 0, 0);
    cr_assert_eq(r.status, 500, "%ld %s", r.status, r.body);
    cr_assert(ecode(&r)[0], "no JSON error body: %s", r.body);
    tresp_free(&r);
    snprintf(path, sizeof(path), "/v2/eio/blobs/%s", dg);
    cr_assert_eq(status_of("GET", path), 404);
    cr_assert_eq(uploads_left(), 0);
}

Test(api_faults, db_error_on_manifest_put_is_5xx)
{
    char body[1024];
    make_image("dbf", 0, "d", body, sizeof(body));
    storage_fault_inject(P.st, FAULT_DB, EIO, 1000);
    long code = put_manifest("dbf", "t", MT_OCI_MANIFEST, body, NULL);
    storage_fault_inject(P.st, 0, 0, 0);
    cr_assert(code >= 500 && code < 600, "status %ld", code);
    cr_assert_eq(status_of("GET", "/v2/dbf/manifests/t"), 404);
    cr_assert_eq(put_manifest("dbf", "t", MT_OCI_MANIFEST, body, NULL), 201);
}
