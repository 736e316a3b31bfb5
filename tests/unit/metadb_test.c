/* metadb_test.c - the sqlite metadata: schema version, WAL, refusal of a newer
 * schema, migration of version-1, version-3 and version-4 databases, that the hot queries are index
 * lookups, and that acknowledged commits fsync the WAL (a counting VFS shim). */
#include <sqlite3.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "storage_testutil.h"
#include "storage/metadb.h"

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

/* what the v6 migration added (tags' pull times), dropped to make an older
 * database (before UNDO_V5) */
#define UNDO_V6 "ALTER TABLE tags DROP COLUMN pulled; PRAGMA user_version = 5;"
/* what the v5 migration added (gc's review queue), dropped to make an older
 * database */
#define UNDO_V5                                                                                    \
    "DROP TRIGGER gcq_link_ins; DROP TRIGGER gcq_link_del; DROP TRIGGER gcq_mf_ins;"               \
    "DROP TRIGGER gcq_mf_del; DROP TRIGGER gcq_ref_del; DROP TRIGGER gcq_tag_upd;"                 \
    "DROP TRIGGER gcq_tag_del; DROP TABLE gc_queue; DROP TABLE gc_state; PRAGMA user_version = 4;"

Test(metadb, schema_version_and_wal)
{
    sqlite3 *db = raw_db();
    cr_assert_eq(int_query(db, "PRAGMA user_version"), METADB_SCHEMA_VERSION);
    sqlite3_stmt *s = NULL;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM sqlite_master WHERE type='table'"), 11);
    /* manifests is an ordinary rowid table without the annotations text */
    cr_assert_eq(int_query(db, "SELECT count(*) FROM sqlite_master WHERE name='manifests'"
                               " AND sql LIKE '%WITHOUT ROWID%'"),
                 0);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM pragma_table_info('manifests')"
                               " WHERE name='annotations'"),
                 0);
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
    cr_assert_eq(int_query(db, "PRAGMA user_version"), METADB_SCHEMA_VERSION);
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
    assert_uses_index(db, "SELECT m.digest, m.media_type, m.size, m.artifact_type, a.annotations"
                          " FROM manifests m"
                          " LEFT JOIN manifest_annotations a ON a.manifest_id = m.id"
                          " WHERE m.repo = ?1 AND m.subject = ?2 ORDER BY m.digest");
    assert_uses_index(db, "SELECT 1 FROM blob_links WHERE digest = ?1");
    /* catalog page and repository existence */
    assert_uses_index(db, "SELECT name FROM repos WHERE name > ?1 ORDER BY name LIMIT ?2");
    assert_uses_index(db, "SELECT 1 FROM repos WHERE name = ?1");
    sqlite3_close(db);
}

/* gc's per-candidate statements (metadb.c Q_GC_*) and what the queue's
 * triggers look up: index probes, so a pass costs per candidate, not per row
 * of the store, and the writes that fire the triggers stay cheap */
Test(metadb, gc_queries_are_index_lookups)
{
    sqlite3 *db = raw_db();
    assert_uses_index(db, "SELECT repo, digest FROM gc_queue WHERE kind = ?1"
                          " AND (repo, digest) > (?2, ?3) ORDER BY repo, digest LIMIT ?4");
    assert_uses_index(db, "SELECT 1 FROM blob_links WHERE repo = ?1 AND digest = ?2"
                          " AND created < ?3 AND NOT EXISTS(SELECT 1 FROM manifest_refs r"
                          "  WHERE r.ref = ?2 AND r.repo = ?1)");
    assert_uses_index(db, "SELECT 1 FROM manifests m WHERE m.repo = ?1 AND m.digest = ?2"
                          " AND m.created < ?3"
                          " AND NOT EXISTS(SELECT 1 FROM tags t WHERE t.repo = ?1"
                          "  AND t.digest = ?2)"
                          " AND NOT EXISTS(SELECT 1 FROM manifest_refs r WHERE r.ref = ?2"
                          "  AND r.repo = ?1 AND r.kind = 1)"
                          " AND (m.subject IS NULL OR NOT EXISTS(SELECT 1 FROM manifests s"
                          "  WHERE s.repo = ?1 AND s.digest = m.subject))");
    assert_uses_index(db, "SELECT size FROM blobs WHERE digest = ?1 AND created < ?2"
                          " AND NOT EXISTS(SELECT 1 FROM blob_links WHERE digest = ?1)"
                          " AND NOT EXISTS(SELECT 1 FROM manifests WHERE digest = ?1)");
    assert_uses_index(db, "SELECT 1 FROM gc_queue WHERE kind = 2 AND repo = ?1 AND digest = ?2");
    assert_uses_index(db, "SELECT repo, digest FROM manifests WHERE repo = ?1 AND subject = ?2");
    assert_uses_index(db, "SELECT tag, digest, updated FROM tags WHERE repo = ?1 ORDER BY tag");
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

/* exec_ok - run SQL on the raw connection */
static void
exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
}

/* a repository emptied by deletes leaves no row behind, so a catalog page
 * never walks over dead repositories (20,000 of them made a one-entry page 30
 * times slower) */
Test(metadb, emptied_repositories_leave_no_rows)
{
    struct err e = {0};
    char repo[32];
    for (int i = 0; i < 20; i++) {
        snprintf(repo, sizeof(repo), "r%02d", i);
        struct digest md = tu_manifest_put(T.h, repo, "t", repo, NULL);
        if (i % 2 == 0) {
            /* the manifest, then each blob link */
            char ds[DIGEST_STR_MAX];
            cr_assert_eq(storage_manifest_delete(T.h, repo, digest_format(&md, ds), &e), 0, "%s",
                         e.msg);
            char cfg[64], layer[64];
            snprintf(cfg, sizeof(cfg), "{\"cfg\":\"%s\"}", repo);
            snprintf(layer, sizeof(layer), "layer-%s", repo);
            struct digest dc, dl;
            digest_of(DIGEST_SHA256, cfg, strlen(cfg), &dc);
            digest_of(DIGEST_SHA256, layer, strlen(layer), &dl);
            cr_assert_eq(storage_blob_delete(T.h, repo, &dc, &e), 0, "%s", e.msg);
            cr_assert_eq(storage_blob_delete(T.h, repo, &dl, &e), 0, "%s", e.msg);
        }
    }
    tu_close_only(&T);
    sqlite3 *db = raw_db();
    cr_assert_eq(int_query(db, "SELECT count(*) FROM repos"), 10);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM repos WHERE name IN ('r00', 'r18')"), 0);
    sqlite3_close(db);
    tu_open_at(&T, 0);
}

/* rows of emptied repositories left by an older version go at open */
Test(metadb, dead_repository_rows_are_removed_at_open)
{
    tu_manifest_put(T.h, "live", "t", "live", NULL);
    struct digest d = tu_put(T.h, "blobs-only", "x");
    (void)d;
    tu_close_only(&T);
    sqlite3 *db = raw_db();
    exec_ok(db, "INSERT INTO repos(name) VALUES('dead1'), ('dead2'), ('zz/dead')");
    cr_assert_eq(int_query(db, "SELECT count(*) FROM repos"), 5);
    sqlite3_close(db);
    tu_open_at(&T, 0);
    tu_close_only(&T);
    db = raw_db();
    cr_assert_eq(int_query(db, "SELECT count(*) FROM repos"), 2);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM repos WHERE name IN ('live', 'blobs-only')"),
                 2);
    sqlite3_close(db);
    tu_open_at(&T, 0);
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

/* ---- schema migration v1 -> v2 ---- */

struct ann_list {
    int n;
    char *ann[4];
};

static int
collect_ann(void *arg, const struct referrer *r)
{
    struct ann_list *l = arg;
    if (l->n < 4)
        l->ann[l->n] = r->annotations_json ? strdup(r->annotations_json) : NULL;
    l->n++;
    return 0;
}

static void
ann_list_free(struct ann_list *l)
{
    for (int i = 0; i < l->n && i < 4; i++)
        free(l->ann[i]);
}


Test(metadb, version1_database_is_migrated)
{
    /* build content with this program, then turn the database back into the
     * version-1 layout (manifests WITHOUT ROWID holding the annotations text) */
    struct digest subj = tu_manifest_put(T.h, "r", "base", "base", NULL);
    char *big_ann = NULL;
    char *big = tu_big_annotations(&subj, 100000, &big_ann);
    struct digest dbig = tu_manifest_put(T.h, "r", NULL, "big", big);
    char *small_ann = NULL;
    char *small = tu_big_annotations(&subj, 10, &small_ann);
    struct digest dsmall = tu_manifest_put(T.h, "r", "small", "small", small);
    tu_close_only(&T);

    sqlite3 *db = raw_db();
    exec_ok(db, UNDO_V6);
    exec_ok(db, UNDO_V5);
    exec_ok(db, "BEGIN;"
                "CREATE TABLE m1(repo TEXT NOT NULL, digest TEXT NOT NULL,"
                "  media_type TEXT NOT NULL, size INTEGER NOT NULL, subject TEXT,"
                "  artifact_type TEXT NOT NULL DEFAULT '', annotations TEXT,"
                "  created INTEGER NOT NULL, PRIMARY KEY(repo, digest)) WITHOUT ROWID;"
                "INSERT INTO m1 SELECT repo, digest, media_type, size, subject, artifact_type,"
                "  NULL, created FROM manifests;"
                "DROP TABLE manifests; DROP TABLE manifest_annotations;"
                "DROP TABLE pending_manifest_files;"
                "ALTER TABLE m1 RENAME TO manifests;"
                "CREATE INDEX manifests_subject ON manifests(repo, subject, digest);"
                "CREATE INDEX manifests_digest ON manifests(digest);"
                "PRAGMA user_version = 1; COMMIT;");
    char ds[DIGEST_STR_MAX];
    const char *anns[2] = {big_ann, small_ann};
    const struct digest *ids[2] = {&dbig, &dsmall};
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *s = NULL;
        cr_assert_eq(sqlite3_prepare_v2(db, "UPDATE manifests SET annotations = ?1 WHERE digest = ?2",
                                        -1, &s, NULL),
                     SQLITE_OK);
        sqlite3_bind_text(s, 1, anns[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, digest_format(ids[i], ds), -1, SQLITE_STATIC);
        cr_assert_eq(sqlite3_step(s), SQLITE_DONE);
        sqlite3_finalize(s);
    }
    cr_assert_eq(int_query(db, "SELECT count(*) FROM manifests WHERE annotations IS NOT NULL"), 2);
    sqlite3_close(db);

    tu_open_at(&T, 0);
    db = raw_db();
    cr_assert_eq(int_query(db, "PRAGMA user_version"), METADB_SCHEMA_VERSION);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM manifests"), 3);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM sqlite_master WHERE name='manifests'"
                               " AND sql LIKE '%WITHOUT ROWID%'"),
                 0);
    /* small annotations copied by v2, the large one (NULL in v2) filled from
     * its body by v4 */
    cr_assert_eq(int_query(db, "SELECT count(*) FROM manifest_annotations"), 2);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM manifest_annotations WHERE annotations IS NULL"),
                 0);
    sqlite3_close(db);

    struct err e = {0};
    struct manifest_meta meta;
    cr_assert_eq(storage_manifest_get(T.h, "r", "small", &meta, NULL, &e), 0, "%s", e.msg);
    cr_assert(digest_equal(&meta.digest, &dsmall));
    cr_assert_eq(storage_manifest_get(T.h, "r", digest_format(&dbig, ds), &meta, NULL, &e), 0);
    struct ann_list l = {0};
    cr_assert_eq(storage_referrers(T.h, "r", &subj, NULL, collect_ann, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 2);
    int seen_big = 0, seen_small = 0;
    for (int i = 0; i < 2; i++) {
        cr_assert_not_null(l.ann[i]);
        seen_big += strcmp(l.ann[i], big_ann) == 0;
        seen_small += strcmp(l.ann[i], small_ann) == 0;
    }
    cr_assert(seen_big == 1 && seen_small == 1, "annotations survive the migration");
    /* the migrated database takes new manifests and deletes */
    tu_manifest_put(T.h, "r", "again", "again", small);
    cr_assert_eq(storage_manifest_delete(T.h, "r", digest_format(&dbig, ds), &e), 0, "%s", e.msg);
    db = raw_db();
    cr_assert_eq(int_query(db, "SELECT count(*) FROM manifest_annotations a WHERE NOT EXISTS"
                               " (SELECT 1 FROM manifests m WHERE m.id = a.manifest_id)"),
                 0, "annotations go with their manifest");
    sqlite3_close(db);
    ann_list_free(&l);
    free(big);
    free(big_ann);
    free(small);
    free(small_ann);
}

/* ---- durability: fsyncs of the WAL file, counted ----
 * fsync and fdatasync are interposed for the whole test process (the storage
 * library is linked statically, sqlite's unix VFS calls them through libc): a
 * call on a descriptor whose path ends in "meta.db-wal" is counted, whoever
 * makes it (the group commit in storage/metadb.c, sqlite's checkpoints). */

static int shim_wal_syncs;

static void
count_if_wal(int fd)
{
    char link[64], path[512];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return;
    path[n] = '\0';
    size_t suffix = strlen("meta.db-wal");
    if ((size_t)n >= suffix && strcmp(path + n - suffix, "meta.db-wal") == 0)
        __atomic_add_fetch(&shim_wal_syncs, 1, __ATOMIC_RELAXED);
}

int
fsync(int fd)
{
    count_if_wal(fd);
    return (int)syscall(SYS_fsync, fd);
}

int
fdatasync(int fd)
{
    count_if_wal(fd);
    return (int)syscall(SYS_fdatasync, fd);
}

static int
wal_syncs(void)
{
    return __atomic_load_n(&shim_wal_syncs, __ATOMIC_RELAXED);
}

Test(durability, acknowledged_commits_fsync_the_wal)
{
    struct tu_store S;
    tu_open_with(&S, (struct storage_opts){.fsync = 1});
    struct err e = {0};
    char uuid[UPLOAD_ID_LEN + 1], uuid2[UPLOAD_ID_LEN + 1];
    cr_assert_eq(storage_upload_start(S.h, "r", DIGEST_SHA256, uuid2, &e), 0, "%s", e.msg);
    int before = wal_syncs();
    cr_assert_eq(storage_upload_start(S.h, "r", DIGEST_SHA256, uuid, &e), 0, "%s", e.msg);
    cr_assert_eq(wal_syncs() - before, 0, "an upload session row costs no WAL fsync");

    before = wal_syncs();
    struct digest d = tu_put(S.h, "r", "durable blob");
    cr_assert(wal_syncs() - before >= 1, "blob commit fsyncs the WAL");

    before = wal_syncs();
    tu_manifest_put(S.h, "r", "t", "seed", NULL);
    cr_assert(wal_syncs() - before >= 1, "manifest put fsyncs the WAL");

    before = wal_syncs();
    cr_assert_eq(storage_manifest_delete(S.h, "r", "t", &e), 0, "%s", e.msg);
    cr_assert(wal_syncs() - before >= 1, "tag delete fsyncs the WAL");

    before = wal_syncs();
    struct upload *u = storage_upload_acquire(S.h, "r", uuid, &e);
    cr_assert_not_null(u, "%s", e.msg);
    cr_assert_eq(upload_write(u, "abc", 3, &e), 0);
    struct digest want;
    digest_of(DIGEST_SHA256, "abc", 3, &want);
    cr_assert_eq(upload_commit(u, &want, 3, &e), 0, "%s", e.msg);
    cr_assert(wal_syncs() - before >= 1, "upload commit fsyncs the WAL");

    before = wal_syncs();
    cr_assert_eq(storage_blob_delete(S.h, "r", &d, &e), 0, "%s", e.msg);
    cr_assert(wal_syncs() - before >= 1, "blob delete fsyncs the WAL");

    tu_close(&S);
}

/* v3 kept annotations over 64 KiB as NULL (a referrers GET parsed the body
 * for them) and annotations of every manifest: v4 reads the NULL ones from
 * their bodies once at open, drops those whose body is gone, and drops the
 * rows of manifests without a subject (never listed) */
Test(metadb, version3_database_gets_annotations_from_bodies)
{
    struct digest subj = tu_manifest_put(T.h, "r", "base", "base", NULL);
    char *big_ann = NULL, *lost_ann = NULL, *plain_ann = NULL;
    char *big = tu_big_annotations(&subj, 100000, &big_ann);
    char *lost = tu_big_annotations(&subj, 70000, &lost_ann);
    char *plain = tu_big_annotations(NULL, 10, &plain_ann);
    struct digest dbig = tu_manifest_put(T.h, "r", NULL, "big", big);
    struct digest dlost = tu_manifest_put(T.h, "r", NULL, "lost", lost);
    struct digest dplain = tu_manifest_put(T.h, "r", "plain", "plain", plain);
    tu_close_only(&T);

    char ds[DIGEST_STR_MAX], sql[512];
    sqlite3 *db = raw_db();
    exec_ok(db, UNDO_V5);
    exec_ok(db, "BEGIN; DROP INDEX manifest_annotations_unfilled;"
                "ALTER TABLE tags DROP COLUMN pulled;"
                "UPDATE manifest_annotations SET annotations = NULL;");
    snprintf(sql, sizeof(sql),
             "INSERT INTO manifest_annotations SELECT id, 'x' FROM manifests WHERE digest = '%s';"
             "PRAGMA user_version = 3; COMMIT;",
             digest_format(&dplain, ds));
    exec_ok(db, sql);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM manifest_annotations WHERE annotations IS NULL"),
                 2);
    sqlite3_close(db);
    char path[600];
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", T.root, dlost.hex, dlost.hex);
    cr_assert_eq(unlink(path), 0, "%s", path);

    tu_open_at(&T, 0);
    db = raw_db();
    cr_assert_eq(int_query(db, "PRAGMA user_version"), METADB_SCHEMA_VERSION);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM manifest_annotations"), 1,
                 "the lost body's row and the plain manifest's row are gone");
    sqlite3_close(db);
    struct err e = {0};
    struct ann_list l = {0};
    cr_assert_eq(storage_referrers(T.h, "r", &subj, NULL, collect_ann, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 2);
    int seen_big = 0, seen_none = 0;
    for (int i = 0; i < 2; i++) {
        seen_big += l.ann[i] && strcmp(l.ann[i], big_ann) == 0;
        seen_none += l.ann[i] == NULL;
    }
    cr_assert(seen_big == 1 && seen_none == 1);
    (void)dbig;
    ann_list_free(&l);
    free(big);
    free(lost);
    free(plain);
    free(big_ann);
    free(lost_ann);
    free(plain_ann);
}

/* v4 -> v6: tags gain their last-pulled time, 0 (never) for the tags there */
Test(metadb, migration_from_v4_adds_pulled_times)
{
    struct digest d = tu_manifest_put(T.h, "r", "v1", "pulled", NULL);
    (void)d;
    tu_close_only(&T);
    sqlite3 *db = raw_db();
    exec_ok(db, UNDO_V6);
    exec_ok(db, UNDO_V5);
    sqlite3_close(db);
    tu_open_at(&T, 0);
    db = raw_db();
    cr_assert_eq(int_query(db, "PRAGMA user_version"), METADB_SCHEMA_VERSION);
    sqlite3_close(db);
    struct err e = {0};
    int64_t pushed = 0, pulled = -1;
    cr_assert_eq(storage_tag_times(T.h, "r", "v1", &pushed, &pulled, &e), 1, "%s", e.msg);
    cr_assert(pushed > 0);
    cr_assert_eq(pulled, 0);
    cr_assert_eq(storage_tag_times(T.h, "r", "nope", &pushed, &pulled, &e), 0);
}
