/* metadb_test.c - the sqlite metadata: schema version, WAL, refusal of a newer
 * schema, and that the hot queries are index lookups. */
#include <sqlite3.h>

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
    if (T.st)
        tu_close(&T);
    else
        tu_rm_rf(T.root);
}

TestSuite(metadb, .init = setup, .fini = teardown);

static sqlite3 *
raw_db(void)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/meta.db", T.root);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    return db;
}

static int
int_query(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    int v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

Test(metadb, schema_version_and_wal)
{
    sqlite3 *db = raw_db();
    cr_assert_eq(int_query(db, "PRAGMA user_version"), 1);
    sqlite3_stmt *s = NULL;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM sqlite_master WHERE type='table'"), 7);
    sqlite3_close(db);
}

Test(metadb, newer_schema_is_refused)
{
    tu_close_only(&T);
    sqlite3 *db = raw_db();
    cr_assert_eq(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct storage_opts o = {.root = T.root};
    struct err e = {0};
    struct storage *st = storage_open(&o, &e);
    cr_assert_null(st);
    cr_assert_eq(e.code, ERR_CONFIG);
    cr_assert(strstr(e.msg, "newer") != NULL, "%s", e.msg);
}

Test(metadb, reopen_keeps_schema)
{
    tu_close_only(&T);
    tu_open_at(&T, 0);
    sqlite3 *db = raw_db();
    cr_assert_eq(int_query(db, "PRAGMA user_version"), 1);
    sqlite3_close(db);
}

static void
assert_uses_index(sqlite3 *db, const char *sql)
{
    char q[1024];
    snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, q, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    int rows = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(s, 3);
        rows++;
        cr_assert(strstr(detail, "SCAN") == NULL, "full scan in '%s': %s", sql, detail);
        cr_assert(strstr(detail, "TEMP B-TREE") == NULL, "sort in '%s': %s", sql, detail);
    }
    cr_assert(rows > 0);
    sqlite3_finalize(s);
}

Test(metadb, hot_queries_are_index_lookups)
{
    sqlite3 *db = raw_db();
    /* the statements of metadb.c for blob HEAD, manifest GET, tag list, referrers */
    assert_uses_index(db, "SELECT b.size FROM blob_links l JOIN blobs b ON b.digest = l.digest"
                          " WHERE l.repo = ?1 AND l.digest = ?2");
    assert_uses_index(db, "SELECT m.digest, m.media_type, m.size FROM tags t JOIN manifests m"
                          " ON m.repo = t.repo AND m.digest = t.digest"
                          " WHERE t.repo = ?1 AND t.tag = ?2");
    assert_uses_index(db, "SELECT digest, media_type, size FROM manifests"
                          " WHERE repo = ?1 AND digest = ?2");
    assert_uses_index(db,
                      "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3");
    assert_uses_index(db, "SELECT digest, media_type, size, artifact_type, annotations"
                          " FROM manifests WHERE repo = ?1 AND subject = ?2 ORDER BY digest");
    sqlite3_close(db);
}

Test(metadb, rows_match_files_after_pushes)
{
    struct err e = {0};
    struct digest d;
    for (int i = 0; i < 10; i++) {
        char buf[16];
        snprintf(buf, sizeof(buf), "blob%d", i);
        cr_assert_eq(storage_blob_put(T.h, "r", buf, strlen(buf), DIGEST_SHA256, &d, &e), 0);
    }
    sqlite3 *db = raw_db();
    cr_assert_eq(int_query(db, "SELECT count(*) FROM blobs"), 10);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM blob_links WHERE repo = 'r'"), 10);
    sqlite3_close(db);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 10);
}

/* ---- kill -9 in the middle of writes: every row names a complete file ---- */

#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static void
child_writer(const char *root, int round)
{
    struct storage_opts o = {.root = root, .fsync = 1};
    struct err e = {0};
    struct storage *st = storage_open(&o, &e);
    if (!st)
        _exit(3);
    struct storage_handle *h = storage_handle_open(st, &e);
    if (!h)
        _exit(4);
    char big[65536];
    for (int i = 0;; i++) {
        memset(big, 'a' + (i % 26), sizeof(big));
        snprintf(big, 32, "round %d item %d", round, i);
        char uuid[UPLOAD_ID_LEN + 1];
        struct digest d;
        if (storage_upload_start(h, "crash", DIGEST_SHA256, uuid, &e) < 0)
            _exit(5);
        struct upload *u = storage_upload_acquire(h, "crash", uuid, &e);
        if (!u)
            _exit(6);
        for (int k = 0; k < 4; k++)
            if (upload_write(u, big, sizeof(big), &e) < 0)
                _exit(7);
        if (i % 3 == 0) {
            upload_release(u); /* leave some sessions open */
        } else {
            struct hasher *hs = hasher_new(DIGEST_SHA256);
            for (int k = 0; k < 4; k++)
                hasher_update(hs, big, sizeof(big));
            hasher_final(hs, &d);
            hasher_free(hs);
            if (upload_commit(u, &d, -1, &e) < 0)
                _exit(8);
        }
        if (storage_blob_put(h, "crash", big, 100 + (size_t)i, DIGEST_SHA256, &d, &e) < 0)
            _exit(9);
    }
}

static int
str_query_each(sqlite3 *db, const char *sql, int (*fn)(const char *, sqlite3_int64, void *),
               void *arg)
{
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        fn((const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1), arg);
        n++;
    }
    sqlite3_finalize(s);
    return n;
}

static int
check_blob_row(const char *ds, sqlite3_int64 size, void *arg)
{
    const char *root = arg;
    struct digest d = tu_digest(ds);
    char p[512];
    snprintf(p, sizeof(p), "%s/blobs/sha256/%c%c/%s", root, d.hex[0], d.hex[1], d.hex);
    int fd = open(p, O_RDONLY);
    cr_assert(fd >= 0, "row %s without file", ds);
    size_t n;
    char *buf = tu_read_fd(fd, &n);
    close(fd);
    cr_assert_eq((sqlite3_int64)n, size, "size of %s", ds);
    struct digest got;
    digest_of(DIGEST_SHA256, buf, n, &got);
    free(buf);
    cr_assert(digest_equal(&got, &d), "content of %s", ds);
    return 0;
}

static int
check_upload_row(const char *uuid, sqlite3_int64 unused, void *arg)
{
    (void)unused;
    const char *root = arg;
    char p[512];
    snprintf(p, sizeof(p), "%s/uploads/%s", root, uuid);
    cr_assert_eq(access(p, F_OK), 0, "session row %s without file", uuid);
    return 0;
}

static struct storage_handle *resume_h;

static int
resume_session(const char *uuid, sqlite3_int64 unused, void *arg)
{
    (void)unused;
    const char *root = arg;
    char p[512];
    snprintf(p, sizeof(p), "%s/uploads/%s", root, uuid);
    int fd = open(p, O_RDONLY);
    cr_assert(fd >= 0);
    size_t n;
    char *buf = tu_read_fd(fd, &n);
    close(fd);
    struct err e = {0};
    struct upload *u = storage_upload_acquire(resume_h, "crash", uuid, &e);
    cr_assert_not_null(u, "%s", e.msg);
    cr_assert_eq(upload_offset(u), n);
    struct digest d;
    digest_of(DIGEST_SHA256, buf, n, &d);
    free(buf);
    cr_assert_eq(upload_commit(u, &d, (int64_t)n, &e), 0, "%s", e.msg);
    return 0;
}

Test(metadb, rows_name_complete_files_after_kill9)
{
    int total_blobs = 0;
    tu_close_only(&T);
    srand((unsigned)time(NULL));
    for (int round = 0; round < 4; round++) {
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0)
            child_writer(T.root, round);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (100 + rand() % 200) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "child exited early: %d", WEXITSTATUS(status));
        /* reopen: recovery runs; then check every row against the files */
        tu_open_at(&T, 1);
        sqlite3 *db = raw_db();
        int blobs = str_query_each(db, "SELECT digest, size FROM blobs", check_blob_row, T.root);
        str_query_each(db, "SELECT uuid, 0 FROM uploads", check_upload_row, T.root);
        cr_assert_eq(int_query(db, "SELECT count(*) FROM blob_links l WHERE NOT EXISTS"
                                   " (SELECT 1 FROM blobs b WHERE b.digest = l.digest)"),
                     0);
        int rows = int_query(db, "SELECT count(*) FROM uploads");
        cr_assert_eq(tu_count_files(T.root, "uploads"), rows, "no orphan upload files");
        sqlite3_close(db);
        cr_assert(tu_count_files(T.root, "blobs") >= blobs);
        total_blobs = blobs;
        /* surviving sessions can be resumed: offset = file length, and finished */
        db = raw_db();
        resume_h = T.h;
        str_query_each(db, "SELECT uuid, 0 FROM uploads", resume_session, T.root);
        sqlite3_close(db);
        tu_close_only(&T);
    }
    cr_assert(total_blobs > 0, "the writer got some blobs in before being killed");
    tu_open_at(&T, 0);
}
