/* blob_backend_test.c - what storage.c relies on from a blob backend
 * (storage/blob.h), run against every backend built into the tests: put /
 * stat / open / read / remove / list, upload session writers (append, hash,
 * commit, the session data gone after commit), the zero-copy offers. */
#include "storage/blob.h"
#include "storage/storage_internal.h"

#include "storage_testutil.h"
#include "tests/lib/blob_mem.h"
#include "tests/lib/blob_nofd.h"

struct be_case {
    char root[64];
    int rootfd;
    struct blob_backend *b;
};

static struct be_case C;

static void
setup(void)
{
    snprintf(C.root, sizeof(C.root), "/tmp/ocireg-be-XXXXXX");
    cr_assert_not_null(mkdtemp(C.root));
    C.rootfd = open(C.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(C.rootfd, 0);
    struct err e = {0};
    C.b = blob_fs_open(C.rootfd, 0, NULL, &e);
    cr_assert_not_null(C.b, "%s", e.msg);
    /* OCIREG_TEST_BLOBS=nofd|mem: the same conformance on the test backend */
    if (blob_nofd_selected())
        C.b = blob_nofd_selected()(C.b, &e);
    cr_assert_not_null(C.b, "%s", e.msg);
}

static void
teardown(void)
{
    C.b->ops->close(C.b);
    close(C.rootfd);
    tu_rm_rf(C.root);
}

TestSuite(blob_backend, .init = setup, .fini = teardown);

static int
count_blob(void *arg, const struct digest *d, uint64_t size)
{
    (void)d;
    (void)size;
    ++*(int *)arg;
    return 0;
}

Test(blob_backend, put_stat_open_read_remove_list)
{
    const struct blob_backend_ops *o = C.b->ops;
    struct err e = {0};
    struct digest d;
    uint64_t size = 0;
    digest_of(DIGEST_SHA256, "hello", 5, &d);
    cr_assert_eq(o->stat(C.b, &d, &size, &e), 0);
    struct blob_reader rd = {0};
    cr_assert_eq(o->open(C.b, &d, &rd, &e), 0);
    cr_assert_eq(o->put(C.b, &d, "hello", 5, BLOB_PUT_DURABLE, &e), 0, "%s", e.msg);
    /* a second put of the same blob keeps the first */
    cr_assert_eq(o->put(C.b, &d, "hello", 5, BLOB_PUT_DURABLE, &e), 0, "%s", e.msg);
    cr_assert_eq(o->stat(C.b, &d, &size, &e), 1);
    cr_assert_eq(size, 5);
    cr_assert_eq(o->open(C.b, &d, &rd, &e), 1, "%s", e.msg);
    cr_assert_eq(rd.size, 5);
    char buf[8] = {0};
    cr_assert_eq(blob_reader_read(&rd, 1, buf, sizeof(buf), &e), 4);
    cr_assert_str_eq(buf, "ello");
    cr_assert_eq(blob_reader_read_all(&rd, buf, &e), 0);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cr_assert_eq(blob_reader_redirect(&rd, buf, sizeof(buf), &e), -1, "no URL on this backend");
    blob_reader_close(&rd);
    blob_reader_close(&rd); /* closing twice is fine */

    int n = 0;
    cr_assert_eq(o->list(C.b, count_blob, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(o->remove(C.b, &d, &e), 0);
    cr_assert_eq(o->remove(C.b, &d, &e), 0, "removing what is gone is no error");
    cr_assert_eq(o->stat(C.b, &d, &size, &e), 0);
    n = 0;
    cr_assert_eq(o->list(C.b, count_blob, &n, &e), 0);
    cr_assert_eq(n, 0);
}

Test(blob_backend, fs_reader_hands_its_descriptor_over)
{
    if (blob_nofd_selected())
        cr_skip_test("the test backend offers no descriptor");
    const struct blob_backend_ops *o = C.b->ops;
    struct err e = {0};
    struct digest d;
    digest_of(DIGEST_SHA256, "zero-copy", 9, &d);
    cr_assert_eq(o->put(C.b, &d, "zero-copy", 9, BLOB_PUT_DURABLE, &e), 0);
    struct blob_reader rd = {0};
    cr_assert_eq(o->open(C.b, &d, &rd, &e), 1);
    cr_assert_eq(blob_reader_fd(&rd, NULL, NULL), 0, "asking hands nothing over");
    int fd = -1;
    uint64_t off = 1;
    cr_assert_eq(blob_reader_fd(&rd, &fd, &off), 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(off, 0);
    cr_assert_eq(blob_reader_fd(&rd, &fd, &off), -1, "handed over once");
    blob_reader_close(&rd); /* must not close the caller's fd */
    char buf[9];
    cr_assert_eq(pread(fd, buf, 9, 0), 9);
    cr_assert_eq(memcmp(buf, "zero-copy", 9), 0);
    close(fd);
}

Test(blob_backend, session_writer_appends_hashes_and_commits)
{
    const struct blob_backend_ops *o = C.b->ops;
    struct err e = {0};
    const char *id = "0b0c9d4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";
    struct blob_writer *w = NULL;
    uint64_t size = 0;
    cr_assert_eq(o->w_open(C.b, id, &w, &e), 0, "no such session yet");
    cr_assert_eq(o->w_create(C.b, id, &e), 0, "%s", e.msg);
    cr_assert_eq(o->w_create(C.b, id, &e), -1, "exists already");
    cr_assert_eq(o->w_stat(C.b, id, &size, &e), 1);
    cr_assert_eq(size, 0);
    cr_assert_eq(o->w_open(C.b, id, &w, &e), 1, "%s", e.msg);
    cr_assert_eq(o->w_append(w, "abc", 3, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(o->w_append(w, "def", 3, 3, &e), 0);
    o->w_written(w, 6);
    cr_assert_eq(o->w_stat(C.b, id, &size, &e), 1);
    cr_assert_eq(size, 6);
    struct digest got, want;
    digest_of(DIGEST_SHA256, "abcdef", 6, &want);
    cr_assert_eq(o->w_hash(w, DIGEST_SHA256, &got, &size, NULL, &e), 0);
    cr_assert(digest_equal(&got, &want));
    cr_assert_eq(o->w_commit(w, &want, 6, &e), 0, "%s", e.msg);
    o->w_close(w);
    cr_assert_eq(o->w_stat(C.b, id, &size, &e), 0, "the session data became the blob");
    cr_assert_eq(o->stat(C.b, &want, &size, &e), 1);
    cr_assert_eq(size, 6);
}

static int
count_entry(void *arg, const char *name)
{
    (void)name;
    ++*(int *)arg;
    return 0;
}

Test(blob_backend, session_area_lists_and_removes)
{
    const struct blob_backend_ops *o = C.b->ops;
    struct err e = {0};
    const char *id = "1b0c9d4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";
    cr_assert_eq(o->w_create(C.b, id, &e), 0);
    int n = 0;
    cr_assert_eq(o->w_list(C.b, count_entry, &n, &e), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(o->w_remove(C.b, id, &e), 0);
    cr_assert_eq(o->w_remove(C.b, id, &e), 0, "removing what is gone is no error");
    n = 0;
    cr_assert_eq(o->w_list(C.b, count_entry, &n, &e), 0);
    cr_assert_eq(n, 0);
}

Test(blob_backend, nofd_backend_offers_no_descriptor_but_reads_and_writes)
{
    struct err e = {0};
    struct blob_backend *b = blob_nofd_selected() ? C.b : blob_nofd_wrap(C.b, &e);
    C.b = b;
    const struct blob_backend_ops *o = b->ops;
    struct digest d;
    digest_of(DIGEST_SHA256, "no-fd", 5, &d);
    cr_assert_eq(o->put(b, &d, "no-fd", 5, BLOB_PUT_DURABLE, &e), 0, "%s", e.msg);
    struct blob_reader rd = {0};
    cr_assert_eq(o->open(b, &d, &rd, &e), 1);
    int fd = -1;
    uint64_t off = 0;
    cr_assert_eq(blob_reader_fd(&rd, &fd, &off), -1);
    char buf[5];
    cr_assert_eq(blob_reader_read_all(&rd, buf, &e), 0);
    cr_assert_eq(memcmp(buf, "no-fd", 5), 0);
    blob_reader_close(&rd);
    const char *id = "2b0c9d4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";
    struct blob_writer *w = NULL;
    cr_assert_eq(o->w_create(b, id, &e), 0);
    cr_assert_eq(o->w_open(b, id, &w, &e), 1);
    cr_assert_eq(o->w_fd(w, &fd, &off), -1, "no descriptor for asynchronous writes");
    cr_assert_eq(o->w_append(w, "x", 1, 0, &e), 0);
    o->w_close(w);
}

static int
count_files(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "find %s -type f | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

Test(blob_backend, mem_backend_keeps_bytes_without_descriptors_or_files)
{
    struct err e = {0};
    if (strcmp(C.b->ops->name, "mem") != 0)
        C.b = blob_mem_replace(C.b, &e);
    cr_assert_not_null(C.b, "%s", e.msg);
    struct blob_backend *b = C.b;
    const struct blob_backend_ops *o = b->ops;
    const char *id = "3b0c9d4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";
    struct blob_writer *w = NULL;
    cr_assert_eq(o->w_create(b, id, &e), 0);
    cr_assert_eq(o->w_open(b, id, &w, &e), 1);
    int fd = -1;
    uint64_t off = 0, size = 0;
    cr_assert_eq(o->w_fd(w, &fd, &off), -1, "no descriptor for asynchronous writes");
    cr_assert_eq(o->w_append(w, "in-", 3, 0, &e), 0);
    cr_assert_eq(o->w_append(w, "memory", 6, 3, &e), 0);
    struct digest d, got;
    digest_of(DIGEST_SHA256, "in-memory", 9, &d);
    cr_assert_eq(o->w_hash(w, DIGEST_SHA256, &got, &size, NULL, &e), 0);
    cr_assert(digest_equal(&got, &d));
    cr_assert_eq(o->w_commit(w, &d, 9, &e), 0, "%s", e.msg);
    o->w_close(w);
    cr_assert_eq(count_files(C.root), 0, "no file under the root");
    struct blob_reader rd = {0};
    cr_assert_eq(o->open(b, &d, &rd, &e), 1);
    cr_assert_eq(blob_reader_fd(&rd, &fd, &off), -1);
    /* gc removing the blob while it is read: the reader keeps its bytes */
    cr_assert_eq(o->remove(b, &d, &e), 0);
    cr_assert_eq(o->stat(b, &d, &size, &e), 0);
    char buf[9];
    cr_assert_eq(blob_reader_read_all(&rd, buf, &e), 0);
    cr_assert_eq(memcmp(buf, "in-memory", 9), 0);
    blob_reader_close(&rd);
}
