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
    assert_uses_index(db, "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3");
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
