/* meta_test.c - the metadata interface (storage/meta.h) through its sqlite
 * implementation: transactions and the domain operations gc will use. */
#include "storage/meta.h"
#include "storage/metadb.h"

#include "storage_testutil.h"

static struct tu_store T;

static void
setup(void)
{
    tu_open(&T, 0);
}

static void
teardown(void)
{
    storage_handle_close(T.h);
    storage_close(T.st);
    tu_rm_rf(T.root);
}

TestSuite(meta, .init = setup, .fini = teardown);

struct names {
    int n;
    char v[8][160];
};

static int
add_ds(void *arg, const char *ds, uint64_t size)
{
    struct names *l = arg;
    (void)size;
    if (l->n < 8)
        snprintf(l->v[l->n++], sizeof(l->v[0]), "%s", ds);
    return 0;
}

static int
add_link(void *arg, const char *repo, const char *ds)
{
    struct names *l = arg;
    if (l->n < 8)
        snprintf(l->v[l->n++], sizeof(l->v[0]), "%s@%s", repo, ds);
    return 0;
}

static const char *const D1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
static const char *const D2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

Test(meta, rollback_leaves_nothing_and_commit_links)
{
    struct err e = {0};
    struct meta_conn *c = T.h->mc;
    uint64_t size = 0;
    cr_assert_eq(meta_begin(c, &e), 0, "%s", e.msg);
    cr_assert_eq(meta_blob_link(c, "r", D1, 5, &e), 0, "%s", e.msg);
    meta_rollback(c);
    cr_assert_eq(meta_blob_size(c, "r", D1, &size, &e), 0);
    cr_assert_eq(meta_repo_exists(c, "r", &e), 0);

    cr_assert_eq(meta_begin(c, &e), 0);
    cr_assert_eq(meta_blob_link(c, "r", D1, 5, &e), 0);
    cr_assert_eq(meta_commit(c, &e), 0, "%s", e.msg);
    cr_assert_eq(meta_blob_size(c, "r", D1, &size, &e), 1);
    cr_assert_eq(size, 5);
    cr_assert_eq(meta_link_exists(c, NULL, D1, &e), 1);
    cr_assert_eq(meta_link_exists(c, "other", D1, &e), 0);
    cr_assert_eq(meta_repo_exists(c, "r", &e), 1);
}

Test(meta, gc_lists_unreferenced_blobs_and_links_and_deletes_only_those)
{
    struct err e = {0};
    struct meta_conn *c = T.h->mc;
    cr_assert_eq(meta_begin(c, &e), 0);
    cr_assert_eq(meta_blob_link(c, "r", D1, 5, &e), 0);
    cr_assert_eq(meta_blob_link(c, "r", D2, 7, &e), 0);
    cr_assert_eq(meta_commit(c, &e), 0, "%s", e.msg);

    /* nothing is older than the epoch */
    struct names l = {0};
    cr_assert_eq(meta_links_unreferenced(c, 0, add_link, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 0);
    /* no manifest references either link */
    cr_assert_eq(meta_links_unreferenced(c, INT64_MAX, add_link, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 2);
    /* both are linked: no blob is unreferenced */
    l.n = 0;
    cr_assert_eq(meta_blobs_unreferenced(c, INT64_MAX, add_ds, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 0);

    cr_assert_eq(meta_begin(c, &e), 0);
    cr_assert_eq(meta_blob_unlink(c, "r", D2, &e), 1);
    cr_assert_eq(meta_blob_unlink(c, "r", D2, &e), 0, "already gone");
    cr_assert_eq(meta_commit(c, &e), 0);
    cr_assert_eq(meta_blobs_unreferenced(c, INT64_MAX, add_ds, &l, &e), 0);
    cr_assert_eq(l.n, 1);
    cr_assert_str_eq(l.v[0], D2);

    /* under the write lock: a linked blob is kept, an unreferenced one goes */
    cr_assert_eq(meta_begin(c, &e), 0);
    cr_assert_eq(meta_blob_delete(c, D1, &e), 0, "D1 is still linked");
    cr_assert_eq(meta_blob_delete(c, D2, &e), 1);
    cr_assert_eq(meta_commit(c, &e), 0);
    l.n = 0;
    cr_assert_eq(meta_blobs_unreferenced(c, INT64_MAX, add_ds, &l, &e), 0);
    cr_assert_eq(l.n, 0);
}
