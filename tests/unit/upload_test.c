/* upload_test.c - upload sessions: chunks, offsets, commit with right/wrong digest
 * and size, sha512, cancel, busy lease, status, resume after a restart, expiry,
 * and the fault-injected error paths of write/fsync/rename/db. */
#include <pthread.h>
#include <time.h>

#include "storage_testutil.h"

TU_STORE_SUITE(upload, 0);

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

/* a new session in repo, leased, with data (unless NULL) written; uuid gets its id */
static struct upload *
session(const char *repo, enum digest_algo algo, char *uuid, const char *data)
{
    start(repo, algo, uuid);
    struct upload *u = acquire(repo, uuid);
    if (data)
        write_ok(u, data);
    return u;
}

static int
upload_files(void)
{
    return tu_count_files(T.root, "uploads");
}

/* data uploaded into "r" in one chunk of a session of algo, committed as its
 * commit_algo digest with the declared size (-1: none); the blob is then there */
static struct digest
upload_whole(enum digest_algo algo, enum digest_algo commit_algo, const char *data, int64_t size)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", algo, uuid, data);
    struct digest d = tu_digest_of(commit_algo, data);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, size, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0, "%s", e.msg);
    return d;
}

/* the released sha256 session uuid of "r" stands at offset `at` (by status and
 * on a new lease); rest is appended and the whole text committed */
static struct digest
resume_and_commit(const char *uuid, uint64_t at, const char *rest, const char *whole)
{
    uint64_t off = 0;
    struct err e = {0};
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), 0, "%s", e.msg);
    cr_assert_eq(off, at);
    struct upload *u = acquire("r", uuid);
    cr_assert_eq(upload_offset(u), at);
    write_ok(u, rest);
    struct digest d = tu_digest_of(DIGEST_SHA256, whole);
    cr_assert_eq(upload_commit(u, &d, (int64_t)strlen(whole), &e), 0, "commit: %s", e.msg);
    return d;
}

/* more than the one second of upload_expiry_sec = 1 */
static void
sleep_past_expiry(void)
{
    struct timespec ts = {.tv_sec = 2, .tv_nsec = 100000000};
    nanosleep(&ts, NULL);
}

Test(upload, chunks_offset_and_commit)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, NULL);
    cr_assert_eq(upload_offset(u), 0);
    write_ok(u, "hello ");
    cr_assert_eq(upload_offset(u), 6);
    upload_release(u);
    struct digest want = resume_and_commit(uuid, 6, "world", "hello world");
    uint64_t off = 0;
    struct err e = {0};
    uint64_t size;
    int fd;
    cr_assert_eq(tu_blob_open_fd(T.h, "r", &want, &fd, &size, &e), 0, "%s", e.msg);
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
    struct upload *u = session("r", DIGEST_SHA256, uuid, NULL);
    struct digest want = tu_digest_of(DIGEST_SHA256, "");
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &want, -1, &e), 0, "%s", e.msg);
    uint64_t size = 99;
    cr_assert_eq(storage_blob_open(T.h, "r", &want, NULL, &size, &e), 0);
    cr_assert_eq(size, 0);
}

Test(upload, wrong_digest_destroys_session_and_links_nothing)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, "data");
    struct digest wrong = tu_digest_of(DIGEST_SHA256, "other");
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &wrong, -1, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    cr_assert_eq(storage_blob_open(T.h, "r", &wrong, NULL, NULL, &e), -1);
    struct digest right = tu_digest_of(DIGEST_SHA256, "data");
    cr_assert_eq(storage_blob_open(T.h, "r", &right, NULL, NULL, &e), -1);
    cr_assert_eq(upload_files(), 0);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 0);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

Test(upload, wrong_size_is_size_invalid)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, "data");
    struct digest d = tu_digest_of(DIGEST_SHA256, "data");
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 5, &e), -1);
    cr_assert_eq(e.code, ERR_SIZE_INVALID);
    cr_assert_eq(upload_files(), 0);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), -1);
}

Test(upload, sha512_session)
{
    struct digest d = upload_whole(DIGEST_SHA512, DIGEST_SHA512, "abc", 3);
    cr_assert(tu_blob_file_exists(T.root, &d));
}

Test(upload, finish_with_other_algorithm_rehashes)
{
    upload_whole(DIGEST_SHA256, DIGEST_SHA512, "abc", -1);
}

Test(upload, commit_of_existing_blob_deduplicates)
{
    struct digest d;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "a", "same", 4, DIGEST_SHA256, &d, &e), 0);
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("b", DIGEST_SHA256, uuid, "same");
    cr_assert_eq(upload_commit(u, &d, 4, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_open(T.h, "b", &d, NULL, NULL, &e), 0);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 1);
    cr_assert_eq(upload_files(), 0);
}

Test(upload, cancel_removes_session)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, "x");
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
    struct upload *u = session("r", DIGEST_SHA256, uuid, NULL);
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
    struct upload *u = session("r", DIGEST_SHA256, uuid, "first-");
    upload_release(u);
    tu_close_only(&T);
    tu_open_at(&T, 0);
    struct digest d = resume_and_commit(uuid, 6, "second", "first-second");
    struct err e = {0};
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0);
}

Test(upload, resume_after_kill_uses_file_length)
{
    /* kill -9 after a write but before release: the row lags, the file is truth */
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA512, uuid, "abc");
    /* simulate the crash: close everything without releasing */
    storage_handle_close(T.h);
    storage_close(T.st); /* frees u */
    tu_open_at(&T, 0);
    u = acquire("r", uuid);
    cr_assert_eq(upload_offset(u), 3);
    write_ok(u, "def");
    struct digest d = tu_digest_of(DIGEST_SHA512, "abcdef");
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, -1, &e), 0, "%s", e.msg);
}

Test(upload, expiry_removes_idle_sessions_only)
{
    tu_reopen_with(&T, (struct storage_opts){.upload_expiry_sec = 1});
    struct err e = {0};
    char idle[UPLOAD_ID_LEN + 1], busy[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, idle);
    start("r", DIGEST_SHA256, busy);
    cr_assert_eq(storage_expire_uploads(T.h, &e), 0, "nothing idle yet");
    sleep_past_expiry();
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
    upload_whole(DIGEST_SHA256, DIGEST_SHA256, "after the fault", -1);
}

Test(upload, enospc_on_write_frees_space_at_once)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, "some bytes");
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
    struct upload *u = session("r", DIGEST_SHA256, uuid, NULL);
    storage_fault_inject(T.st, FAULT_WRITE, EIO, 1);
    struct err e = {0};
    cr_assert_eq(upload_write(u, "x", 1, &e), -1);
    cr_assert_eq(e.code, ERR_IO);
    cr_assert_eq(upload_files(), 0);
    next_upload_succeeds();
}

/* a new session holding "payload" whose commit with the right digest meets the
 * fault op and fails with want, leaving no blob visible */
static void
commit_payload_faulted(char *uuid, unsigned op, int err_no, enum err_code want)
{
    struct upload *u = session("r", DIGEST_SHA256, uuid, "payload");
    struct digest d = tu_digest_of(DIGEST_SHA256, "payload");
    storage_fault_inject(T.st, op, err_no, 1);
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 7, &e), -1);
    cr_assert_eq(e.code, want, "code %d: %s", e.code, e.msg);
    assert_nothing_visible(&d);
}

static void
commit_with_fault(unsigned op, int err_no, enum err_code want)
{
    char uuid[UPLOAD_ID_LEN + 1];
    commit_payload_faulted(uuid, op, err_no, want);
    struct err e = {0};
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
    struct digest d = tu_digest_of(DIGEST_SHA256, "payload");
    commit_payload_faulted(uuid, FAULT_DB, EIO, ERR_DB);
    struct err e = {0};
    /* the session is still there, released, with its length */
    uint64_t off = 0;
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), 0, "%s", e.msg);
    cr_assert_eq(off, 7);
    /* a retry with another digest fails as usual (and ends the session) ... */
    struct upload *u = acquire("r", uuid);
    struct digest other = tu_digest_of(DIGEST_SHA256, "other");
    cr_assert_eq(upload_commit(u, &other, 7, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    assert_nothing_visible(&d);

    /* ... and with the right one it commits */
    commit_payload_faulted(uuid, FAULT_DB, EIO, ERR_DB);
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
    commit_payload_faulted(uuid, FAULT_DB, EIO, ERR_DB);
    struct err e = {0};
    struct upload *u = acquire("r", uuid);
    cr_assert_eq(upload_write(u, "more", 4, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_INVALID);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    /* a restart forgets a kept session: its row has no file any more */
    char uuid2[UPLOAD_ID_LEN + 1];
    commit_payload_faulted(uuid2, FAULT_DB, EIO, ERR_DB);
    tu_close_only(&T);
    tu_open_at(&T, 0);
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid2, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

Test(upload, fault_count_and_disable)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, NULL);
    storage_fault_inject(T.st, FAULT_FSYNC, EIO, 5);
    write_ok(u, "not affected by an fsync fault");
    storage_fault_inject(T.st, FAULT_WRITE, EIO, 0); /* disables */
    write_ok(u, "still fine");
    upload_release(u);
}

/* ---- concurrency ---- */

/* one push in two chunks, then a small blob_put and a manifest-free read */
static int
push_round(struct storage_handle *h, int id, int i)
{
    struct err e = {0};
    char repo[32], data[64];
    snprintf(repo, sizeof(repo), "repo%d", id % 3);
    snprintf(data, sizeof(data), "worker %d blob %d", id, i % 7);
    char uuid[UPLOAD_ID_LEN + 1];
    if (storage_upload_start(h, repo, DIGEST_SHA256, uuid, &e) < 0)
        return -1;
    struct upload *u = storage_upload_acquire(h, repo, uuid, &e);
    if (!u)
        return -1;
    size_t n = strlen(data);
    if (upload_write(u, data, n / 2, &e) < 0)
        return -1;
    upload_release(u);
    u = storage_upload_acquire(h, repo, uuid, &e);
    if (!u || upload_write(u, data + n / 2, n - n / 2, &e) < 0)
        return -1;
    struct digest d, got;
    digest_of(DIGEST_SHA256, data, n, &d);
    if (upload_commit(u, &d, (int64_t)n, &e) < 0)
        return -1;
    if (storage_blob_put(h, repo, data, n, DIGEST_SHA512, &got, &e) < 0)
        return -1;
    uint64_t size;
    if (storage_blob_open(h, repo, &d, NULL, &size, &e) < 0 || size != n)
        return -1;
    return 0;
}

Test(upload, concurrent_pushes_with_own_handles)
{
    enum { N = 6 };
    tu_run_workers(T.st, N, push_round, 20);
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
    struct storage_opts o = {.upload_expiry_sec = 1};
    tu_reopen_with(&T, o);
    char uuid[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, uuid);
    /* restart: the session is only a row and a file now */
    tu_close_only(&T);
    sleep_past_expiry();
    tu_open_opts_at(&T, o);
    struct err e = {0};
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
start_refused(const char *repo)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct err e = {0};
    cr_assert_eq(storage_upload_start(T.h, repo, DIGEST_SHA256, uuid, &e), -1);
    cr_assert_eq(e.code, ERR_TOOMANYREQUESTS, "%d %s", e.code, e.msg);
}

Test(upload, global_session_limit)
{
    tu_reopen_with(&T, (struct storage_opts){.max_uploads = 3});
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
    struct digest d = tu_digest_of(DIGEST_SHA256, "x");
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
    tu_reopen_with(&T, (struct storage_opts){.max_uploads_per_repo = 2});
    char a[UPLOAD_ID_LEN + 1], b[UPLOAD_ID_LEN + 1], c[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, a);
    start("r", DIGEST_SHA256, b);
    start_refused("r");
    start("other", DIGEST_SHA256, c);
    /* counted again after a restart (from the rows) */
    tu_reopen_with(&T, (struct storage_opts){.max_uploads_per_repo = 2});
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
    tu_reopen_with(&T, (struct storage_opts){.max_blob_size = 10, .max_uploads = 1});
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, "123456");
    struct err e = {0};
    cr_assert_eq(upload_write(u, "7890a", 5, &e), -1);
    cr_assert_eq(e.code, ERR_TOO_LARGE, "%d %s", e.code, e.msg);
    cr_assert_eq(upload_files(), 0, "the space is freed at once");
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    /* exactly the limit is fine; and the session's place was given back */
    u = session("r", DIGEST_SHA256, uuid, "1234567890");
    struct digest d = tu_digest_of(DIGEST_SHA256, "1234567890");
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
    tu_reopen_with(&T, (struct storage_opts){.upload_expiry_sec = 1, .max_uploads = 2});
    char busy[UPLOAD_ID_LEN + 1], idle[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, busy);
    start("r", DIGEST_SHA256, idle);
    struct upload *u = acquire("r", busy);
    write_ok(u, "partial ");
    sleep_past_expiry();
    /* the leased session is mid-request: only the idle one goes */
    cr_assert_eq(expire_on_other_thread(), 1);
    write_ok(u, "content");
    struct digest d = tu_digest_of(DIGEST_SHA256, "partial content");
    struct err e = {0};
    cr_assert_eq(upload_commit(u, &d, 15, &e), 0, "%s", e.msg);
    /* both places are free again */
    char a[UPLOAD_ID_LEN + 1], b[UPLOAD_ID_LEN + 1];
    start("r", DIGEST_SHA256, a);
    start("r", DIGEST_SHA256, b);
    cr_assert_eq(upload_files(), 2);
}

/* ---- asynchronous writes: upload_write_begin / upload_write_end ---- */

/* begin a write of s; the caller writes it itself at *off */
static uint64_t
begin_ok(struct upload *u, const char *s, int *fd)
{
    struct err e = {0};
    uint64_t off = 0;
    cr_assert_eq(upload_write_begin(u, s, strlen(s), fd, &off, &e), 0, "begin: %s", e.msg);
    return off;
}

static void
pwrite_ok(int fd, const char *s, uint64_t off)
{
    cr_assert_eq(pwrite(fd, s, strlen(s), (off_t)off), (ssize_t)strlen(s));
}

Test(upload, async_writes_in_flight_reserve_in_order_and_commit)
{
    if (blob_nofd_selected())
        cr_skip_test("the test blob backend offers no descriptor for asynchronous writes");
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, "ab");
    struct err e = {0};
    int fd1, fd2, fd3;
    uint64_t o1 = begin_ok(u, "cde", &fd1);
    uint64_t o2 = begin_ok(u, "fghi", &fd2);
    uint64_t o3 = begin_ok(u, "j", &fd3);
    cr_assert_eq(o1, 2);
    cr_assert_eq(o2, 5);
    cr_assert_eq(o3, 9);
    cr_assert_eq(upload_offset(u), 2, "nothing is counted before it is written");
    /* completions out of order: the offset never claims unwritten bytes */
    pwrite_ok(fd2, "fghi", o2);
    cr_assert_eq(upload_write_end(u, o2, 4, 4, &e), 0, "%s", e.msg);
    cr_assert_eq(upload_offset(u), 2);
    pwrite_ok(fd1, "cde", o1);
    cr_assert_eq(upload_write_end(u, o1, 3, 3, &e), 0, "%s", e.msg);
    cr_assert_eq(upload_offset(u), 5);
    pwrite_ok(fd3, "j", o3);
    cr_assert_eq(upload_write_end(u, o3, 1, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(upload_offset(u), 10);
    /* a synchronous write continues where they ended */
    write_ok(u, "k");
    struct digest d = tu_digest_of(DIGEST_SHA256, "abcdefghijk");
    cr_assert_eq(upload_commit(u, &d, 11, &e), 0, "%s", e.msg);
}

Test(upload, async_write_failure_destroys_after_the_last_write_in_flight)
{
    if (blob_nofd_selected())
        cr_skip_test("the test blob backend offers no descriptor for asynchronous writes");
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, NULL);
    struct err e = {0};
    int fd;
    uint64_t o1 = begin_ok(u, "0123", &fd);
    uint64_t o2 = begin_ok(u, "4567", &fd);
    /* the first fails: the session is doomed, but a write still names its fd */
    cr_assert_eq(upload_write_end(u, o1, 4, -ENOSPC, &e), -1);
    cr_assert_eq(e.code, ERR_NOSPACE, "%d %s", e.code, e.msg);
    cr_assert_eq(upload_files(), 1, "the file stays while a write is in flight");
    uint64_t o3;
    cr_assert_eq(upload_write_begin(u, "89", 2, &fd, &o3, &e), -1, "no more begins");
    cr_assert_eq(e.code, ERR_NOSPACE);
    pwrite_ok(fd, "4567", o2);
    /* the last one ends (even successfully): the session goes */
    cr_assert_eq(upload_write_end(u, o2, 4, 4, &e), -1);
    cr_assert_eq(e.code, ERR_NOSPACE);
    cr_assert_eq(upload_files(), 0, "the space is freed when the last write ended");
    cr_assert_null(storage_upload_acquire(T.h, "r", uuid, &e));
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

Test(upload, async_begin_past_max_blob_size_with_writes_in_flight)
{
    if (blob_nofd_selected())
        cr_skip_test("the test blob backend offers no descriptor for asynchronous writes");
    tu_reopen_with(&T, (struct storage_opts){.max_blob_size = 10});
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, NULL);
    struct err e = {0};
    int fd;
    uint64_t o1 = begin_ok(u, "12345678", &fd);
    uint64_t o2;
    cr_assert_eq(upload_write_begin(u, "9ab", 3, &fd, &o2, &e), -1);
    cr_assert_eq(e.code, ERR_TOO_LARGE, "%d %s", e.code, e.msg);
    cr_assert_eq(upload_files(), 1);
    pwrite_ok(fd, "12345678", o1);
    cr_assert_eq(upload_write_end(u, o1, 8, 8, &e), -1);
    cr_assert_eq(e.code, ERR_TOO_LARGE);
    cr_assert_eq(upload_files(), 0);
    /* with nothing in flight a failed begin destroys at once */
    u = session("r", DIGEST_SHA256, uuid, "1234567890");
    cr_assert_eq(upload_write_begin(u, "x", 1, &fd, &o2, &e), -1);
    cr_assert_eq(e.code, ERR_TOO_LARGE);
    cr_assert_eq(upload_files(), 0);
    u = session("r", DIGEST_SHA256, uuid, NULL);
    cr_assert_eq(upload_size_limit(u), 10);
    upload_release(u);
}

Test(upload, async_write_end_is_subject_to_fault_injection)
{
    if (blob_nofd_selected())
        cr_skip_test("the test blob backend offers no descriptor for asynchronous writes");
    char uuid[UPLOAD_ID_LEN + 1];
    struct upload *u = session("r", DIGEST_SHA256, uuid, NULL);
    struct err e = {0};
    int fd;
    uint64_t o = begin_ok(u, "data", &fd);
    pwrite_ok(fd, "data", o);
    storage_fault_inject(T.st, FAULT_WRITE, EIO, 1);
    cr_assert_eq(upload_write_end(u, o, 4, 4, &e), -1);
    cr_assert_eq(e.code, ERR_IO, "%d %s", e.code, e.msg);
    cr_assert_eq(upload_files(), 0);
    /* a short count is no success either */
    u = session("r", DIGEST_SHA256, uuid, NULL);
    o = begin_ok(u, "data", &fd);
    cr_assert_eq(upload_write_end(u, o, 4, 2, &e), -1);
    cr_assert_eq(e.code, ERR_IO);
    cr_assert_eq(upload_files(), 0);
}
