/* upload_test.c - upload sessions: chunks, offsets, commit with right/wrong digest
 * and size, sha512, cancel, busy lease, status, resume after a restart, expiry,
 * and the fault-injected error paths of write/fsync/rename/db. */
#include <pthread.h>
#include <time.h>

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
    tu_close(&T);
}

TestSuite(upload, .init = setup, .fini = teardown);

static void
start(const char *repo, enum digest_algo algo, char *uuid)
{
    struct err e = {0};
    cr_assert_eq(storage_upload_start(T.h, repo, algo, uuid, &e), 0, "start: %s", e.msg);
    cr_assert_eq(strlen(uuid), UPLOAD_ID_LEN);
}

static struct upload *
acquire(const char *repo, const char *uuid)
{
    struct err e = {0};
    struct upload *u = storage_upload_acquire(T.h, repo, uuid, &e);
    cr_assert_not_null(u, "acquire: %s", e.msg);
    return u;
}

static void
write_ok(struct upload *u, const char *s)
{
    struct err e = {0};
    cr_assert_eq(upload_write(u, s, strlen(s), &e), 0, "write: %s", e.msg);
}

static int
upload_files(void)
{
    return tu_count_files(T.root, "uploads");
}

Test(upload, chunks_offset_and_commit)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    cr_assert_eq(upload_offset(u), 0);
    write_ok(u, "hello ");
    cr_assert_eq(upload_offset(u), 6);
    upload_release(u);
    uint64_t off = 0;
    struct err e = {0};
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), 0);
    cr_assert_eq(off, 6);
    u = acquire("r", uuid);
    cr_assert_eq(upload_offset(u), 6);
    write_ok(u, "world");
    struct digest want;
    digest_of(DIGEST_SHA256, "hello world", 11, &want);
    cr_assert_eq(upload_commit(u, &want, 11, &e), 0, "commit: %s", e.msg);
    uint64_t size;
    int fd;
    cr_assert_eq(storage_blob_open(T.h, "r", &want, &fd, &size, &e), 0, "%s", e.msg);
    cr_assert_eq(size, 11);
    size_t n;
    char *body = tu_read_fd(fd, &n);
    close(fd);
    cr_assert_str_eq(body, "hello world");
    free(body);
    cr_assert_eq(upload_files(), 0, "session file gone after commit");
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

Test(upload, empty_blob_commit)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    struct digest want;
    digest_of(DIGEST_SHA256, "", 0, &want);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &want, -1, &e), 0, "%s", e.msg);
    uint64_t size = 99;
    cr_assert_eq(storage_blob_open(T.h, "r", &want, NULL, &size, &e), 0);
    cr_assert_eq(size, 0);
}

Test(upload, wrong_digest_destroys_session_and_links_nothing)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "data");
    struct digest wrong;
    digest_of(DIGEST_SHA256, "other", 5, &wrong);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &wrong, -1, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    cr_assert_eq(storage_blob_open(T.h, "r", &wrong, NULL, NULL, &e), -1);
    struct digest right;
    digest_of(DIGEST_SHA256, "data", 4, &right);
    cr_assert_eq(storage_blob_open(T.h, "r", &right, NULL, NULL, &e), -1);
    cr_assert_eq(upload_files(), 0);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 0);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

Test(upload, wrong_size_is_size_invalid)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "data");
    struct digest d;
    digest_of(DIGEST_SHA256, "data", 4, &d);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 5, &e), -1);
    cr_assert_eq(e.code, ERR_SIZE_INVALID);
    cr_assert_eq(upload_files(), 0);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), -1);
}

Test(upload, sha512_session)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA512, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "abc");
    struct digest d;
    digest_of(DIGEST_SHA512, "abc", 3, &d);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 3, &e), 0, "%s", e.msg);
    cr_assert(tu_blob_file_exists(T.root, &d));
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0);
}

Test(upload, finish_with_other_algorithm_rehashes)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "abc");
    struct digest d;
    digest_of(DIGEST_SHA512, "abc", 3, &d);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, -1, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0);
}

Test(upload, commit_of_existing_blob_deduplicates)
{
    struct digest d;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "a", "same", 4, DIGEST_SHA256, &d, &e), 0);
    char uuid[UPLOAD_ID_LEN + 1];
    start("b", DIGEST_SHA256, uuid);
    struct upload *u = acquire("b", uuid);
    write_ok(u, "same");
    cr_assert_eq(upload_commit(u, &d, 4, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_open(T.h, "b", &d, NULL, NULL, &e), 0);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 1);
    cr_assert_eq(upload_files(), 0);
}

Test(upload, cancel_removes_session)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "x");
    upload_release(u);
    struct err e = {0};
    cr_assert_eq(storage_upload_cancel(T.h, "other", uuid, &e), -1, "repo must match");
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    cr_assert_eq(storage_upload_cancel(T.h, "r", uuid, &e), 0, "%s", e.msg);
    cr_assert_eq(upload_files(), 0);
    cr_assert_eq(storage_upload_cancel(T.h, "r", uuid, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
}

Test(upload, lease_is_exclusive)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    struct err e = {0};
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BUSY);
    cr_assert_eq(storage_upload_cancel(T.h, "r", uuid, &e), -1);
    cr_assert_eq(e.code, ERR_BUSY);
    uint64_t off;
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), 0, "status needs no lease");
    upload_release(u);
    u = acquire("r", uuid);
    upload_release(u);
}

Test(upload, unknown_and_malformed_ids)
{
    struct err e = {0};
    const char *bad[] = {"",
                         "../../meta.db",
                         "0b5c2a4e-1111-4222-8333-44445555666",
                         "0B5C2A4E-1111-4222-8333-444455556666",
                         "0b5c2a4e-1111-4222-8333-4444555566667",
                         "0b5c2a4e11114222833344445555666677",
                         "0b5c2a4e-1111-4222-8333-444455556666/../x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        cr_assert_null(storage_upload_acquire(T.h, "r", bad[i], &e), "%s", bad[i]);
        cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
        uint64_t off;
        cr_assert_eq(storage_upload_status(T.h, "r", bad[i], &off, &e), -1);
        cr_assert_eq(storage_upload_cancel(T.h, "r", bad[i], &e), -1);
        cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    }
    /* well-formed but unknown */
    cr_assert_null(storage_upload_acquire(T.h, "r", "0b5c2a4e-1111-4222-8333-444455556666", &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    /* the right id in the wrong repository */
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    cr_assert_null(storage_upload_acquire(T.h, "r2", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    cr_assert_eq(storage_upload_start(T.h, "Bad", DIGEST_SHA256, uuid, &e), -1);
    cr_assert_eq(e.code, ERR_NAME_INVALID);
}

Test(upload, ids_are_unique_v4)
{
    char a[UPLOAD_ID_LEN + 1], b[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, a);
    start("r", DIGEST_SHA256, b);
    cr_assert_str_neq(a, b);
    cr_assert_eq(a[14], '4');
    cr_assert(strchr("89ab", a[19]) != NULL);
}

Test(upload, resume_after_restart_rebuilds_hash)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "first-");
    upload_release(u);
    tu_close_only(&T);
    tu_open_at(&T, 0);
    uint64_t off = 0;
    struct err e = {0};
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), 0, "%s", e.msg);
    cr_assert_eq(off, 6);
    u = acquire("r", uuid);
    cr_assert_eq(upload_offset(u), 6);
    write_ok(u, "second");
    struct digest d;
    digest_of(DIGEST_SHA256, "first-second", 12, &d);
    cr_assert_eq(upload_commit(u, &d, 12, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0);
}

Test(upload, resume_after_kill_uses_file_length)
{
    /* kill -9 after a write but before release: the row lags, the file is truth */
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA512, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "abc");
    /* simulate the crash: close everything without releasing */
    storage_handle_close(T.h);
    storage_close(T.st); /* frees u */
    tu_open_at(&T, 0);
    u = acquire("r", uuid);
    cr_assert_eq(upload_offset(u), 3);
    write_ok(u, "def");
    struct digest d;
    digest_of(DIGEST_SHA512, "abcdef", 6, &d);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, -1, &e), 0, "%s", e.msg);
}

Test(upload, expiry_removes_idle_sessions_only)
{
    tu_close_only(&T);
    struct storage_opts o = {.root = T.root, .fsync = 0, .upload_expiry_sec = 1};
    struct err e = {0};
    T.st = storage_open(&o, &e);
    cr_assert_not_null(T.st);
    T.h = storage_handle_open(T.st, &e);
    char idle[UPLOAD_ID_LEN + 1], busy[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, idle);
    start("r", DIGEST_SHA256, busy);
    cr_assert_eq(storage_expire_uploads(T.h, &e), 0, "nothing idle yet");
    struct timespec ts = {.tv_sec = 2, .tv_nsec = 100000000};
    nanosleep(&ts, NULL);
    struct upload *u = acquire("r", busy);
    cr_assert_eq(storage_expire_uploads(T.h, &e), 1, "%s", e.msg);
    upload_release(u);
    cr_assert_null(storage_upload_acquire(T.h, "r", idle, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    cr_assert_eq(upload_files(), 1);
    /* release touched the busy one: not idle any more */
    cr_assert_eq(storage_expire_uploads(T.h, &e), 0);
}

/* ---- fault injection ---- */

static void
assert_nothing_visible(const struct digest *d)
{
    struct err e = {0};
    cr_assert_eq(storage_blob_open(T.h, "r", d, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
}

static void
next_upload_succeeds(void)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "after the fault");
    struct digest d;
    digest_of(DIGEST_SHA256, "after the fault", 15, &d);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, -1, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0);
}

Test(upload, enospc_on_write_frees_space_at_once)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "some bytes");
    storage_fault_inject(T.st, FAULT_WRITE, ENOSPC, 1);
    struct err e = {0};
    cr_assert_eq(upload_write(u, "more", 4, &e), -1);
    cr_assert_eq(e.code, ERR_NOSPACE);
    cr_assert_eq(e.sys_errno, ENOSPC);
    cr_assert_eq(upload_files(), 0, "upload file removed at once");
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    uint64_t off;
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), -1, "row deleted");
    next_upload_succeeds();
}

Test(upload, eio_on_write)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    storage_fault_inject(T.st, FAULT_WRITE, EIO, 1);
    struct err e = {0};
    cr_assert_eq(upload_write(u, "x", 1, &e), -1);
    cr_assert_eq(e.code, ERR_IO);
    cr_assert_eq(upload_files(), 0);
    next_upload_succeeds();
}

static void
commit_with_fault(unsigned op, int err_no, enum err_code want)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "payload");
    struct digest d;
    digest_of(DIGEST_SHA256, "payload", 7, &d);
    storage_fault_inject(T.st, op, err_no, 1);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 7, &e), -1);
    cr_assert_eq(e.code, want, "code %d: %s", e.code, e.msg);
    assert_nothing_visible(&d);
    cr_assert_eq(upload_files(), 0, "session gone");
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    next_upload_succeeds();
}

Test(upload, fsync_failure_on_commit_leaves_nothing)
{
    commit_with_fault(FAULT_FSYNC, EIO, ERR_IO);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 1, "only the later upload's blob");
}

Test(upload, enospc_fsync_on_commit)
{
    commit_with_fault(FAULT_FSYNC, ENOSPC, ERR_NOSPACE);
}

Test(upload, rename_failure_on_commit_leaves_nothing)
{
    commit_with_fault(FAULT_RENAME, EIO, ERR_IO);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 1);
}

Test(upload, db_failure_on_commit_keeps_the_session_for_a_retry)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "payload");
    struct digest d;
    digest_of(DIGEST_SHA256, "payload", 7, &d);
    storage_fault_inject(T.st, FAULT_DB, EIO, 1);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 7, &e), -1);
    cr_assert_eq(e.code, ERR_DB, "code %d: %s", e.code, e.msg);
    assert_nothing_visible(&d);
    /* the session is still there, released, with its length */
    uint64_t off = 0;
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), 0, "%s", e.msg);
    cr_assert_eq(off, 7);
    /* a retry with another digest fails as usual (and ends the session) ... */
    u = acquire("r", uuid);
    struct digest other;
    digest_of(DIGEST_SHA256, "other", 5, &other);
    cr_assert_eq(upload_commit(u, &other, 7, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    assert_nothing_visible(&d);

    /* ... and with the right one it commits */
    start("r", DIGEST_SHA256, uuid);
    u = acquire("r", uuid);
    write_ok(u, "payload");
    storage_fault_inject(T.st, FAULT_DB, EIO, 1);
    cr_assert_eq(upload_commit(u, &d, 7, &e), -1);
    u = acquire("r", uuid);
    cr_assert_eq(upload_commit(u, &d, 7, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(upload_files(), 0);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

Test(upload, kept_session_refuses_more_bytes)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "payload");
    struct digest d;
    digest_of(DIGEST_SHA256, "payload", 7, &d);
    storage_fault_inject(T.st, FAULT_DB, EIO, 1);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 7, &e), -1);
    u = acquire("r", uuid);
    cr_assert_eq(upload_write(u, "more", 4, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_INVALID);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    /* a restart forgets a kept session: its row has no file any more */
    char uuid2[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid2);
    u = acquire("r", uuid2);
    write_ok(u, "payload");
    storage_fault_inject(T.st, FAULT_DB, EIO, 1);
    cr_assert_eq(upload_commit(u, &d, 7, &e), -1);
    tu_close_only(&T);
    tu_open_at(&T, 0);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid2, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

Test(upload, fault_count_and_disable)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    storage_fault_inject(T.st, FAULT_FSYNC, EIO, 5);
    write_ok(u, "not affected by an fsync fault");
    storage_fault_inject(T.st, FAULT_WRITE, EIO, 0); /* disables */
    write_ok(u, "still fine");
    upload_release(u);
}

/* ---- concurrency ---- */

struct worker {
    struct storage *st;
    int id;
    int ok;
};

static void *
push_worker(void *arg)
{
    struct worker *w = arg;
    struct err e = {0};
    struct storage_handle *h = storage_handle_open(w->st, &e);
    if (!h)
        return NULL;
    char repo[32];
    snprintf(repo, sizeof(repo), "repo%d", w->id % 3);
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        char data[64];
        snprintf(data, sizeof(data), "worker %d blob %d", w->id, i % 7);
        char uuid[UPLOAD_ID_LEN + 1];
        if (storage_upload_start(h, repo, DIGEST_SHA256, uuid, &e) < 0)
            break;
        struct upload *u = storage_upload_acquire(h, repo, uuid, &e);
        if (!u)
            break;
        size_t n = strlen(data);
        if (upload_write(u, data, n / 2, &e) < 0)
            break;
        upload_release(u);
        u = storage_upload_acquire(h, repo, uuid, &e);
        if (!u || upload_write(u, data + n / 2, n - n / 2, &e) < 0)
            break;
        struct digest d, got;
        digest_of(DIGEST_SHA256, data, n, &d);
        if (upload_commit(u, &d, (int64_t)n, &e) < 0)
            break;
        /* and a small blob_put + a manifest-free read */
        if (storage_blob_put(h, repo, data, n, DIGEST_SHA512, &got, &e) < 0)
            break;
        uint64_t size;
        if (storage_blob_open(h, repo, &d, NULL, &size, &e) < 0 || size != n)
            break;
        ok++;
    }
    storage_handle_close(h);
    w->ok = ok;
    return NULL;
}

Test(upload, concurrent_pushes_with_own_handles)
{
    enum { N = 6 };
    pthread_t th[N];
    struct worker w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){.st = T.st, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, push_worker, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(w[i].ok, 20, "worker %d completed %d", i, w[i].ok);
    }
    cr_assert_eq(upload_files(), 0);
    /* 6 workers x 7 distinct payloads x 2 algorithms */
    cr_assert_eq(tu_count_files(T.root, "blobs"), N * 7 * 2);
}

Test(upload, db_fault_on_start_leaves_no_file_and_no_row)
{
    storage_fault_inject(T.st, FAULT_DB, EIO, 1);
    char uuid[UPLOAD_ID_LEN + 1] = "";
    struct err e = {0};
    cr_assert_eq(storage_upload_start(T.h, "r", DIGEST_SHA256, uuid, &e), -1);
    cr_assert_eq(e.code, ERR_DB);
    cr_assert_eq(upload_files(), 0);
    cr_assert_eq(uuid[0], '\0', "no id handed out");
    start("r", DIGEST_SHA256, uuid);
}

Test(upload, expiry_disabled_by_zero)
{
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct err e = {0};
    cr_assert_eq(storage_expire_uploads(T.h, &e), 0);
    cr_assert_eq(upload_files(), 1);
}

Test(upload, expiry_after_restart_removes_old_rows)
{
    tu_close_only(&T);
    struct storage_opts o = {.root = T.root, .fsync = 0, .upload_expiry_sec = 1};
    struct err e = {0};
    T.st = storage_open(&o, &e);
    T.h = storage_handle_open(T.st, &e);
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    /* restart: the session is only a row and a file now */
    tu_close_only(&T);
    struct timespec ts = {.tv_sec = 2, .tv_nsec = 100000000};
    nanosleep(&ts, NULL);
    T.st = storage_open(&o, &e);
    T.h = storage_handle_open(T.st, &e);
    cr_assert_eq(storage_expire_uploads(T.h, &e), 1, "%s", e.msg);
    cr_assert_eq(upload_files(), 0);
    uint64_t off;
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), -1);
}

Test(upload, unsupported_algorithm_on_start)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct err e = {0};
    cr_assert_eq(storage_upload_start(T.h, "r", (enum digest_algo)7, uuid, &e), -1);
    cr_assert_eq(e.code, ERR_UNSUPPORTED);
    cr_assert_eq(upload_files(), 0);
}

/* ---- limits ---- */

static void
reopen_with(struct storage_opts o)
{
    tu_close_only(&T);
    o.root = T.root;
    struct err e = {0};
    T.st = storage_open(&o, &e);
    cr_assert_not_null(T.st, "%s", e.msg);
    T.h = storage_handle_open(T.st, &e);
    cr_assert_not_null(T.h, "%s", e.msg);
}

static void
start_refused(const char *repo)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct err e = {0};
    cr_assert_eq(storage_upload_start(T.h, repo, DIGEST_SHA256, uuid, &e), -1);
    cr_assert_eq(e.code, ERR_TOOMANYREQUESTS, "%d %s", e.code, e.msg);
}

Test(upload, global_session_limit)
{
    reopen_with((struct storage_opts){.max_uploads = 3});
    char a[UPLOAD_ID_LEN + 1], b[UPLOAD_ID_LEN + 1], c[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, a);
    start("s", DIGEST_SHA256, b);
    start("t", DIGEST_SHA256, c);
    start_refused("u");
    cr_assert_eq(upload_files(), 3, "a refused start creates nothing");
    struct err e = {0};
    /* each way a session ends gives its place back: cancel, commit, failed commit */
    cr_assert_eq(storage_upload_cancel(T.h, "r", a, &e), 0);
    start("u", DIGEST_SHA256, a);
    start_refused("u");
    struct upload *u = acquire("s", b);
    write_ok(u, "x");
    struct digest d;
    digest_of(DIGEST_SHA256, "x", 1, &d);
    cr_assert_eq(upload_commit(u, &d, 1, &e), 0, "%s", e.msg);
    start("v", DIGEST_SHA256, b);
    start_refused("v");
    u = acquire("t", c);
    cr_assert_eq(upload_commit(u, &d, 5, &e), -1);
    start("w", DIGEST_SHA256, c);
    start_refused("w");
}

Test(upload, per_repository_session_limit)
{
    reopen_with((struct storage_opts){.max_uploads_per_repo = 2});
    char a[UPLOAD_ID_LEN + 1], b[UPLOAD_ID_LEN + 1], c[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, a);
    start("r", DIGEST_SHA256, b);
    start_refused("r");
    start("other", DIGEST_SHA256, c);
    /* counted again after a restart (from the rows) */
    reopen_with((struct storage_opts){.max_uploads_per_repo = 2});
    start_refused("r");
    struct err e = {0};
    cr_assert_eq(storage_upload_cancel(T.h, "r", a, &e), 0, "%s", e.msg);
    start("r", DIGEST_SHA256, a);
}

Test(upload, default_limit_is_1000_per_repository, .timeout = 60)
{
    char uuid[UPLOAD_ID_LEN + 1];
    for (int i = 0; i < 1000; i++)
        start("r", DIGEST_SHA256, uuid);
    start_refused("r");
    start("s", DIGEST_SHA256, uuid);
}

Test(upload, max_blob_size_refuses_and_frees_the_session)
{
    reopen_with((struct storage_opts){.max_blob_size = 10, .max_uploads = 1});
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    struct upload *u = acquire("r", uuid);
    write_ok(u, "123456");
    struct err e = {0};
    cr_assert_eq(upload_write(u, "7890a", 5, &e), -1);
    cr_assert_eq(e.code, ERR_TOO_LARGE, "%d %s", e.code, e.msg);
    cr_assert_eq(upload_files(), 0, "the space is freed at once");
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    /* exactly the limit is fine; and the session's place was given back */
    start("r", DIGEST_SHA256, uuid);
    u = acquire("r", uuid);
    write_ok(u, "1234567890");
    struct digest d;
    digest_of(DIGEST_SHA256, "1234567890", 10, &d);
    cr_assert_eq(upload_commit(u, &d, 10, &e), 0, "%s", e.msg);
}

struct expirer {
    struct storage *st;
    int removed;
    char msg[256];
};

static void *
expire_thread(void *arg)
{
    struct expirer *x = arg;
    struct err e = {0};
    struct storage_handle *h = storage_handle_open(x->st, &e);
    if (!h) {
        snprintf(x->msg, sizeof(x->msg), "%s", e.msg);
        x->removed = -2;
        return NULL;
    }
    x->removed = storage_expire_uploads(h, &e);
    if (x->removed < 0)
        snprintf(x->msg, sizeof(x->msg), "%s", e.msg);
    storage_handle_close(h);
    return NULL;
}

static int
expire_on_other_thread(void)
{
    struct expirer x = {.st = T.st};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, expire_thread, &x), 0);
    pthread_join(t, NULL);
    cr_assert(x.removed >= 0, "expire: %s", x.msg);
    return x.removed;
}

Test(upload, expiry_on_a_timer_thread_spares_leased_sessions)
{
    reopen_with((struct storage_opts){.upload_expiry_sec = 1, .max_uploads = 2});
    char busy[UPLOAD_ID_LEN + 1], idle[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, busy);
    start("r", DIGEST_SHA256, idle);
    struct upload *u = acquire("r", busy);
    write_ok(u, "partial ");
    struct timespec ts = {.tv_sec = 2, .tv_nsec = 100000000};
    nanosleep(&ts, NULL);
    /* the leased session is mid-request: only the idle one goes */
    cr_assert_eq(expire_on_other_thread(), 1);
    write_ok(u, "content");
    struct digest d;
    digest_of(DIGEST_SHA256, "partial content", 15, &d);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 15, &e), 0, "%s", e.msg);
    /* both places are free again */
    char a[UPLOAD_ID_LEN + 1], b[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, a);
    start("r", DIGEST_SHA256, b);
    cr_assert_eq(upload_files(), 2);
}
