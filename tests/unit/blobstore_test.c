/* blobstore_test.c - crash-safety of storage_blob_put and storage_manifest_put:
 * a failing write, fsync, rename or db commit leaves no visible blob, no row and
 * no temp file; deduplication; fsync mode. */
#include "storage_testutil.h"

static struct tu_store T;

static void
setup(void)
{
    tu_open(&T, 1);
}

static void
teardown(void)
{
    tu_close(&T);
}

TestSuite(blobstore, .init = setup, .fini = teardown);

static void
put_with_fault(unsigned op, int err_no, enum err_code want)
{
    storage_fault_inject(T.st, op, err_no, 1);
    struct digest d, expect;
    digest_of(DIGEST_SHA256, "payload", 7, &expect);
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "r", "payload", 7, DIGEST_SHA256, &d, &e), -1);
    cr_assert_eq(e.code, want, "code %d: %s", e.code, e.msg);
    cr_assert_eq(storage_blob_open(T.h, "r", &expect, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    cr_assert_eq(tu_count_files(T.root, "uploads"), 0, "no temp file left");
    /* the fault was one-shot: the same put now works */
    cr_assert_eq(storage_blob_put(T.h, "r", "payload", 7, DIGEST_SHA256, &d, &e), 0, "%s", e.msg);
    cr_assert(digest_equal(&d, &expect));
    cr_assert_eq(storage_blob_open(T.h, "r", &expect, NULL, NULL, &e), 0);
}

Test(blobstore, write_failure_leaves_nothing)
{
    put_with_fault(FAULT_WRITE, ENOSPC, ERR_NOSPACE);
}

Test(blobstore, fsync_failure_leaves_nothing)
{
    put_with_fault(FAULT_FSYNC, EIO, ERR_IO);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 1);
}

Test(blobstore, rename_failure_leaves_nothing)
{
    put_with_fault(FAULT_RENAME, EIO, ERR_IO);
}

Test(blobstore, db_failure_leaves_no_row)
{
    put_with_fault(FAULT_DB, EIO, ERR_DB);
}

Test(blobstore, dedup_skips_second_write)
{
    struct digest d1, d2;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "a", "x", 1, DIGEST_SHA256, &d1, &e), 0);
    /* with the file in place no write happens: an armed write fault stays unused */
    storage_fault_inject(T.st, FAULT_WRITE | FAULT_RENAME, EIO, 1);
    cr_assert_eq(storage_blob_put(T.h, "b", "x", 1, DIGEST_SHA256, &d2, &e), 0, "%s", e.msg);
    cr_assert(digest_equal(&d1, &d2));
    cr_assert_eq(tu_count_files(T.root, "blobs"), 1);
    /* a fault still armed fires on the next real write */
    cr_assert_eq(storage_blob_put(T.h, "b", "y", 1, DIGEST_SHA256, &d2, &e), -1);
    storage_fault_inject(T.st, 0, 0, 0);
}

Test(blobstore, truncated_file_in_place_is_replaced)
{
    struct digest d;
    digest_of(DIGEST_SHA256, "complete", 8, &d);
    char p[512];
    snprintf(p, sizeof(p), "%s/blobs/sha256/%c%c/%s", T.root, d.hex[0], d.hex[1], d.hex);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("comp", f);
    fclose(f);
    struct err e = {0};
    struct digest got;
    cr_assert_eq(storage_blob_put(T.h, "r", "complete", 8, DIGEST_SHA256, &got, &e), 0);
    int fd;
    uint64_t size;
    cr_assert_eq(tu_blob_open_fd(T.h, "r", &d, &fd, &size, &e), 0);
    size_t n;
    char *b = tu_read_fd(fd, &n);
    close(fd);
    cr_assert_str_eq(b, "complete");
    free(b);
}

static char *
manifest_body(const struct digest *cfg, const struct digest *layer)
{
    char c[DIGEST_STR_MAX], l[DIGEST_STR_MAX], *out = NULL;
    cr_assert(asprintf(&out,
                       "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":{"
                       "\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
                       "\"%s\",\"size\":2},\"layers\":[{\"mediaType\":"
                       "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":1}]}",
                       digest_format(cfg, c), digest_format(layer, l)) > 0);
    return out;
}

/* a config and a layer pushed to "r", and the manifest body naming them */
static char *
pushed_manifest(void)
{
    struct digest dc, dl;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "r", "{}", 2, DIGEST_SHA256, &dc, &e), 0);
    cr_assert_eq(storage_blob_put(T.h, "r", "L", 1, DIGEST_SHA256, &dl, &e), 0);
    return manifest_body(&dc, &dl);
}

static void
manifest_put_with_fault(unsigned op)
{
    struct err e = {0};
    char *m = pushed_manifest();
    const char *tags[] = {"t"};
    storage_fault_inject(T.st, op, EIO, 1);
    cr_assert_eq(
        storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, tags, 1, NULL, NULL, NULL, &e),
        -1);
    struct manifest_meta meta;
    struct err e2 = {0};
    cr_assert_eq(storage_manifest_get(T.h, "r", "t", &meta, NULL, &e2), -1);
    cr_assert_eq(e2.code, ERR_MANIFEST_UNKNOWN);
    struct digest md;
    digest_of(DIGEST_SHA256, m, strlen(m), &md);
    char ds[DIGEST_STR_MAX];
    cr_assert_eq(storage_manifest_get(T.h, "r", digest_format(&md, ds), &meta, NULL, &e2), -1);
    cr_assert_eq(tu_count_files(T.root, "uploads"), 0);
    cr_assert_eq(
        storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, tags, 1, &meta, NULL, NULL, &e), 0,
        "%s", e.msg);
    cr_assert_eq(storage_manifest_get(T.h, "r", "t", &meta, NULL, &e2), 0);
    free(m);
}

Test(blobstore, manifest_put_write_fault)
{
    manifest_put_with_fault(FAULT_WRITE);
}

Test(blobstore, manifest_put_does_not_fsync_its_file)
{
    /* the body is kept in pending_manifest_files instead (storage.c "manifest
     * files"): an fsync fault armed before the PUT is not hit by it */
    struct digest dl;
    struct err e = {0};
    char *m = pushed_manifest();
    const char *tags[] = {"t"};
    storage_fault_inject(T.st, FAULT_FSYNC, EIO, 1);
    cr_assert_eq(
        storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, tags, 1, NULL, NULL, NULL, &e), 0,
        "%s", e.msg);
    /* still armed: the next data fsync (a blob put) takes it */
    cr_assert_eq(storage_blob_put(T.h, "r", "x", 1, DIGEST_SHA256, &dl, &e), -1);
    storage_fault_inject(T.st, 0, 0, 0);
    free(m);
}

Test(blobstore, manifest_put_rename_fault)
{
    manifest_put_with_fault(FAULT_RENAME);
}

Test(blobstore, manifest_put_db_fault_leaves_no_row)
{
    manifest_put_with_fault(FAULT_DB);
}

Test(blobstore, db_fault_on_delete_keeps_state)
{
    struct digest d;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "r", "keep", 4, DIGEST_SHA256, &d, &e), 0);
    storage_fault_inject(T.st, FAULT_DB, EIO, 1);
    cr_assert_eq(storage_blob_delete(T.h, "r", &d, &e), -1);
    cr_assert_eq(e.code, ERR_DB);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0, "rolled back");
}

/* white-box: the count of directory fsyncs */
#include "storage/blob.h"
#include "storage/metadb.h"

static unsigned long
dir_fsyncs(void)
{
    return blob_fs_dir_fsyncs(T.st->blobs);
}

Test(blobstore, dedup_paths_fsync_the_directory_too)
{
    if (blob_nofd_selected())
        cr_skip_test("counts the filesystem backend's directory fsyncs");
    /* another thread may have renamed the same digest into place and not yet
     * fsync'd the directory: a commit that finds the file must make its entry
     * durable before its row */
    struct digest d;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "a", "same", 4, DIGEST_SHA256, &d, &e), 0, "%s", e.msg);
    unsigned long n0 = dir_fsyncs();
    cr_assert_eq(storage_blob_put(T.h, "b", "same", 4, DIGEST_SHA256, &d, &e), 0, "%s", e.msg);
    cr_assert_eq(dir_fsyncs() - n0, 1, "blob_put of an existing file");

    char uuid[UPLOAD_ID_LEN + 1];
    cr_assert_eq(storage_upload_start(T.h, "c", DIGEST_SHA256, uuid, &e), 0, "%s", e.msg);
    struct upload *u = storage_upload_acquire(T.h, "c", uuid, &e);
    cr_assert_not_null(u, "%s", e.msg);
    cr_assert_eq(upload_write(u, "same", 4, &e), 0);
    n0 = dir_fsyncs();
    cr_assert_eq(upload_commit(u, &d, 4, &e), 0, "%s", e.msg);
    cr_assert_eq(dir_fsyncs() - n0, 1, "upload commit of an existing file");
    /* and a failing directory fsync there is reported, not ignored */
    cr_assert_eq(storage_upload_start(T.h, "d", DIGEST_SHA256, uuid, &e), 0, "%s", e.msg);
    u = storage_upload_acquire(T.h, "d", uuid, &e);
    cr_assert_not_null(u);
    cr_assert_eq(upload_write(u, "same", 4, &e), 0);
    storage_fault_inject(T.st, FAULT_FSYNC, EIO, 2); /* the file's, then the directory's */
    cr_assert_eq(upload_commit(u, &d, 4, &e), -1);
    cr_assert_eq(e.code, ERR_IO);
    storage_fault_inject(T.st, 0, 0, 0);
    cr_assert_eq(storage_blob_open(T.h, "d", &d, NULL, NULL, &e), -1);
}
