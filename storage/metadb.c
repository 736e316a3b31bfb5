/* metadb.c - the sqlite3 metadata: schema, migrations, per-handle statements.
 *
 * One connection per storage_handle (so per worker thread), opened NOMUTEX: a
 * handle is never shared. WAL lets readers run beside the single writer; writers
 * take BEGIN IMMEDIATE so a busy database is waited for (busy_timeout) at the
 * start of a transaction, never half-way.
 *
 * Durability: when the store fsyncs, every commit that is acknowledged to a
 * client (blob commit, manifest put, tag and manifest delete, blob unlink, mount)
 * is in a WAL that was fsync'd after its COMMIT, before metadb_commit returns, so
 * a power loss cannot undo a 201. The fsync is shared by concurrent committers
 * (group commit, see "transactions" below). Transactions whose loss is harmless -
 * upload session rows (start, cancel, expiry, destroy) and start-up recovery - go
 * through metadb_begin_light and do not wait; the next durable commit's WAL fsync
 * covers their frames too. Every blob file is fsync'd (file and directory) BEFORE
 * the row naming it commits, so a row that survives always has its file.
 *
 * Schema version 4 (PRAGMA user_version). Digests are stored as their text
 * "algo:hex"; names and tags as given (validated), compared bytewise (BINARY
 * collation), which is the order the spec's tag list and catalog want. Every
 * list is read with keyset paging (name > last ORDER BY name LIMIT n), never
 * OFFSET.
 *
 *   repos(name)                         the repositories that exist: those with
 *                                       at least one blob link or manifest. The
 *                                       transaction that removes a repository's
 *                                       last link and manifest removes its row
 *                                       (metadb_repo_prune), and open removes rows
 *                                       left empty by older versions, so the
 *                                       catalog and tags/list read this one
 *                                       definition and a catalog page never
 *                                       skips dead rows
 *   blobs(digest, size, created)        a blob file that is installed under blobs/
 *   blob_links(repo, digest, created)   blob visible in repo
 *   manifests(id, repo, digest, media_type, size, subject, artifact_type,
 *             created)            an ordinary rowid table, UNIQUE(repo, digest):
 *                                 rows stay small whatever the manifest holds
 *   manifest_annotations(manifest_id, annotations)   the annotations (compact
 *                                 JSON, whole) of a manifest with a subject, when
 *                                 it has any: what a referrers page lists, so a
 *                                 GET never reads a body. NULL only in rows left
 *                                 by v3 until storage_open fills them
 *   manifest_refs(repo, digest, ref, kind)   what a manifest references (gc marks)
 *   tags(repo, tag, digest, updated)
 *   uploads(uuid, repo, algo, created)   the byte count is the file's length, and
 *                                        last use is kept in memory: a PATCH
 *                                        writes no row */
#include "storage/storage_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/banned.h"

static const char *const schema_v1 =
    "CREATE TABLE repos(name TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE blobs(digest TEXT PRIMARY KEY, size INTEGER NOT NULL,"
    "  created INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE blob_links(repo TEXT NOT NULL, digest TEXT NOT NULL,"
    "  created INTEGER NOT NULL, PRIMARY KEY(repo, digest)) WITHOUT ROWID;"
    "CREATE INDEX blob_links_digest ON blob_links(digest);"
    "CREATE TABLE manifests(repo TEXT NOT NULL, digest TEXT NOT NULL,"
    "  media_type TEXT NOT NULL, size INTEGER NOT NULL, subject TEXT,"
    "  artifact_type TEXT NOT NULL DEFAULT '', annotations TEXT,"
    "  created INTEGER NOT NULL, PRIMARY KEY(repo, digest)) WITHOUT ROWID;"
    "CREATE INDEX manifests_subject ON manifests(repo, subject, digest);"
    "CREATE INDEX manifests_digest ON manifests(digest);"
    "CREATE TABLE manifest_refs(repo TEXT NOT NULL, digest TEXT NOT NULL,"
    "  ref TEXT NOT NULL, kind INTEGER NOT NULL,"
    "  PRIMARY KEY(repo, digest, ref)) WITHOUT ROWID;"
    "CREATE INDEX manifest_refs_ref ON manifest_refs(ref);"
    "CREATE TABLE tags(repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,"
    "  updated INTEGER NOT NULL, PRIMARY KEY(repo, tag)) WITHOUT ROWID;"
    "CREATE INDEX tags_digest ON tags(repo, digest);"
    "CREATE TABLE uploads(uuid TEXT PRIMARY KEY, repo TEXT NOT NULL,"
    "  algo INTEGER NOT NULL, created INTEGER NOT NULL) WITHOUT ROWID;";

/* v1 -> v2: manifests was a WITHOUT ROWID table holding the whole annotations
 * text, so one manifest with MB-sized annotations spread its b-tree over
 * overflow-laden pages and slowed every manifest lookup of every repository.
 * Now an ordinary rowid table with UNIQUE(repo, digest), annotations in their
 * own table, at most 64 KiB each (larger: NULL; v4 fills those). A new
 * database also goes v0 -> v1 -> v2 -> ..., so this path runs on every fresh
 * root. */
static const char *const migrate_v2 =
    "CREATE TABLE manifests2(id INTEGER PRIMARY KEY, repo TEXT NOT NULL,"
    "  digest TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL,"
    "  subject TEXT, artifact_type TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL,"
    "  UNIQUE(repo, digest));"
    "CREATE TABLE manifest_annotations(manifest_id INTEGER PRIMARY KEY, annotations TEXT);"
    "INSERT INTO manifests2(repo, digest, media_type, size, subject, artifact_type, created)"
    "  SELECT repo, digest, media_type, size, subject, artifact_type, created FROM manifests"
    "  ORDER BY repo, digest;"
    "INSERT INTO manifest_annotations(manifest_id, annotations)"
    "  SELECT n.id, CASE WHEN length(CAST(m.annotations AS BLOB)) <= 65536"
    "    THEN m.annotations END"
    "  FROM manifests m JOIN manifests2 n ON n.repo = m.repo AND n.digest = m.digest"
    "  WHERE m.annotations IS NOT NULL AND m.annotations <> '';"
    "DROP TABLE manifests;"
    "ALTER TABLE manifests2 RENAME TO manifests;"
    "CREATE INDEX manifests_subject ON manifests(repo, subject, digest);"
    "CREATE INDEX manifests_digest ON manifests(digest);";

/* v2 -> v3: manifest bodies whose file is not yet known to be on disk (see
 * "manifest files" in storage.c): a manifest PUT stores its body here in its
 * durable transaction instead of fsyncing the file and its directory; the
 * checkpointer thread syncs the file system and deletes the rows; recovery
 * rewrites the files of the rows left by a crash. */
static const char *const migrate_v3 =
    "CREATE TABLE pending_manifest_files(id INTEGER PRIMARY KEY,"
    "  digest TEXT NOT NULL UNIQUE, body BLOB NOT NULL);";

/* v3 -> v4: a referrers GET parsed the whole stored body of every referrer
 * whose annotations were over 64 KiB (NULL here); now annotations are kept
 * whole, and only for manifests with a subject (no other manifest is ever
 * listed). The rows of others go; the NULL rows are indexed for
 * storage_open, which reads their bodies once (fill_annotations). */
static const char *const migrate_v4 =
    "DELETE FROM manifest_annotations WHERE manifest_id NOT IN"
    "  (SELECT id FROM manifests WHERE subject IS NOT NULL);"
    "CREATE INDEX manifest_annotations_unfilled ON manifest_annotations(manifest_id)"
    "  WHERE annotations IS NULL;";

/* migrations[i] takes the schema from version i to i + 1 */
static const char *const migrations[] = {schema_v1, migrate_v2, migrate_v3, migrate_v4};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == METADB_SCHEMA_VERSION,
               "one migration per schema version");

static const char *const stmt_sql[Q__COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_BLOB_STAT] = "SELECT b.size FROM blob_links l JOIN blobs b ON b.digest = l.digest"
                    " WHERE l.repo = ?1 AND l.digest = ?2",
    [Q_BLOB_INSERT] = "INSERT OR IGNORE INTO blobs(digest, size, created) VALUES(?1, ?2, ?3)",
    [Q_REPO_INSERT] = "INSERT OR IGNORE INTO repos(name) VALUES(?1)",
    [Q_LINK_INSERT] = "INSERT OR IGNORE INTO blob_links(repo, digest, created) VALUES(?1, ?2, ?3)",
    [Q_LINK_DELETE] = "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2",
    [Q_LINK_EXISTS] = "SELECT 1 FROM blob_links WHERE repo = ?1 AND digest = ?2",
    [Q_LINK_ANY] = "SELECT 1 FROM blob_links WHERE digest = ?1 LIMIT 1",
    [Q_UP_INSERT] = "INSERT INTO uploads(uuid, repo, algo, created) VALUES(?1, ?2, ?3, ?4)",
    [Q_UP_GET] = "SELECT repo, algo FROM uploads WHERE uuid = ?1",
    [Q_UP_DELETE] = "DELETE FROM uploads WHERE uuid = ?1 RETURNING repo",
    [Q_UP_COUNTS] = "SELECT repo, count(*) FROM uploads GROUP BY repo",
    [Q_BLOB_FORGET] = "DELETE FROM blobs WHERE digest = ?1",
    [Q_LINKS_FORGET] = "DELETE FROM blob_links WHERE digest = ?1",
    [Q_UP_EXPIRED] = "SELECT uuid FROM uploads WHERE created < ?1",
    [Q_MF_EXISTS] = "SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2",
    [Q_MF_GET_DIGEST] =
        "SELECT digest, media_type, size FROM manifests WHERE repo = ?1 AND digest = ?2",
    [Q_MF_GET_TAG] = "SELECT m.digest, m.media_type, m.size FROM tags t JOIN manifests m"
                     " ON m.repo = t.repo AND m.digest = t.digest"
                     " WHERE t.repo = ?1 AND t.tag = ?2",
    /* an upsert keeps the row id, which manifest_annotations refers to */
    [Q_MF_INSERT] = "INSERT INTO manifests(repo, digest, media_type, size, subject,"
                    " artifact_type, created) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    " ON CONFLICT(repo, digest) DO UPDATE SET media_type = excluded.media_type,"
                    " size = excluded.size, subject = excluded.subject,"
                    " artifact_type = excluded.artifact_type RETURNING id",
    [Q_MF_DELETE] = "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2 RETURNING id",
    [Q_ANN_PUT] = "INSERT OR REPLACE INTO manifest_annotations(manifest_id, annotations)"
                  " VALUES(?1, ?2)",
    [Q_ANN_DELETE] = "DELETE FROM manifest_annotations WHERE manifest_id = ?1",
    [Q_REF_INSERT] =
        "INSERT OR IGNORE INTO manifest_refs(repo, digest, ref, kind) VALUES(?1, ?2, ?3, ?4)",
    [Q_REF_DELETE] = "DELETE FROM manifest_refs WHERE repo = ?1 AND digest = ?2",
    [Q_TAG_UPSERT] = "INSERT INTO tags(repo, tag, digest, updated) VALUES(?1, ?2, ?3, ?4)"
                     " ON CONFLICT(repo, tag) DO UPDATE SET digest = excluded.digest,"
                     " updated = excluded.updated",
    [Q_TAG_DELETE] = "DELETE FROM tags WHERE repo = ?1 AND tag = ?2",
    [Q_TAG_DELETE_DIGEST] = "DELETE FROM tags WHERE repo = ?1 AND digest = ?2",
    [Q_TAGS_LIST] = "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3",
    [Q_REPO_EXISTS] = "SELECT 1 FROM repos WHERE name = ?1",
    [Q_CATALOG] = "SELECT name FROM repos WHERE name > ?1 ORDER BY name LIMIT ?2",
    /* a repository with no link and no manifest left stops existing */
    [Q_REPO_PRUNE] = "DELETE FROM repos WHERE name = ?1"
                     " AND NOT EXISTS(SELECT 1 FROM blob_links WHERE repo = ?1)"
                     " AND NOT EXISTS(SELECT 1 FROM manifests WHERE repo = ?1)",
    /* the same for every repository linking blob ?1, run before its links go:
     * those left with no other link and no manifest */
    [Q_REPO_PRUNE_DIGEST] = "DELETE FROM repos WHERE name IN"
                            " (SELECT repo FROM blob_links WHERE digest = ?1)"
                            " AND NOT EXISTS(SELECT 1 FROM blob_links l"
                            "  WHERE l.repo = repos.name AND l.digest <> ?1)"
                            " AND NOT EXISTS(SELECT 1 FROM manifests m WHERE m.repo = repos.name)",
    /* referrers, column 4 the annotations or NULL. Keyset pages
     * (storage_referrers_page): a range on the manifests_subject
     * index (repo, subject, digest) from ?3, so a page never rescans the rows
     * of the pages before it; ?4 = n + 1 tells whether more exist */
    [Q_REFERRERS_PAGE] = "SELECT m.digest, m.media_type, m.size, m.artifact_type, a.annotations"
                         " FROM manifests m"
                         " LEFT JOIN manifest_annotations a ON a.manifest_id = m.id"
                         " WHERE m.repo = ?1 AND m.subject = ?2 AND m.digest > ?3"
                         " ORDER BY m.digest LIMIT ?4",
    [Q_PENDING_ADD] = "INSERT OR IGNORE INTO pending_manifest_files(digest, body) VALUES(?1, ?2)",
    [Q_PENDING_MAX] = "SELECT coalesce(max(id), 0) FROM pending_manifest_files",
    [Q_PENDING_DONE] = "DELETE FROM pending_manifest_files WHERE id <= ?1",
    [Q_PENDING_ALL] = "SELECT id, digest, body FROM pending_manifest_files ORDER BY id",
    [Q_REFERRERS_AT_PAGE] = "SELECT m.digest, m.media_type, m.size, m.artifact_type,"
                            " a.annotations FROM manifests m"
                            " LEFT JOIN manifest_annotations a ON a.manifest_id = m.id"
                            " WHERE m.repo = ?1 AND m.subject = ?2 AND m.digest > ?3"
                            " AND m.artifact_type = ?5 ORDER BY m.digest LIMIT ?4",
};

int
metadb_connect(const char *path, int full, struct sqlite3 **out, struct err *e)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(
        path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, METADB_VFS);
    if (rc != SQLITE_OK) {
        err_set(e, ERR_DB, 0, "open database: %s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 10000);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF;"
             " PRAGMA temp_store=MEMORY; PRAGMA journal_size_limit=67108864;",
             full ? "FULL" : "OFF");
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(e, ERR_DB, 0, "configure database: %s", msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

static int
exec(sqlite3 *db, const char *sql, struct err *e)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(e, ERR_DB, 0, "database: %s", msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int
metadb_migrate(struct sqlite3 *db, struct err *e)
{
    if (exec(db, "BEGIN IMMEDIATE", e) < 0)
        return -1;
    sqlite3_stmt *s = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (version < 0) {
        err_set(e, ERR_DB, 0, "read schema version: %s", sqlite3_errmsg(db));
        goto fail;
    }
    if (version > METADB_SCHEMA_VERSION) {
        err_set(e, ERR_CONFIG, 0, "database schema version %d is newer than this program (%d)",
                version, METADB_SCHEMA_VERSION);
        goto fail;
    }
    for (int v = version; v < METADB_SCHEMA_VERSION; v++) {
        if (exec(db, migrations[v], e) < 0)
            goto fail;
    }
    if (version != METADB_SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", METADB_SCHEMA_VERSION);
        if (exec(db, sql, e) < 0)
            goto fail;
    }
    return exec(db, "COMMIT", e);
fail:
    exec(db, "ROLLBACK", NULL);
    return -1;
}

int
metadb_prepare(struct storage_handle *h, struct err *e)
{
    for (int i = 0; i < Q__COUNT; i++) {
        if (sqlite3_prepare_v3(h->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &h->q[i], NULL) !=
            SQLITE_OK)
            return err_set(e, ERR_DB, 0, "prepare statement %d: %s", i, sqlite3_errmsg(h->db));
    }
    return 0;
}

void
metadb_finalize(struct storage_handle *h)
{
    for (int i = 0; i < Q__COUNT; i++) {
        sqlite3_finalize(h->q[i]);
        h->q[i] = NULL;
    }
}

/* the connection h's statements run on: the store's write connection while h
 * is in a write transaction (see struct storage's wh), else h's own */
static struct storage_handle *
cur(struct storage_handle *h)
{
    return h->in_txn && h->st->wh ? h->st->wh : h;
}

struct sqlite3_stmt *
metadb_q(struct storage_handle *h, enum stmt_id id)
{
    sqlite3_stmt *s = cur(h)->q[id];
    sqlite3_reset(s);
    return s;
}

int
metadb_err(struct storage_handle *h, const char *what, struct err *e)
{
    sqlite3 *db = cur(h)->db;
    int code = sqlite3_errcode(db);
    if (code == SQLITE_FULL)
        return err_set(e, ERR_NOSPACE, 0, "%s: %s", what, sqlite3_errmsg(db));
    return err_set(e, ERR_DB, 0, "%s: %s", what, sqlite3_errmsg(db));
}

int
metadb_changes(struct storage_handle *h)
{
    return sqlite3_changes(cur(h)->db);
}

int
metadb_run(struct storage_handle *h, struct sqlite3_stmt *s, struct err *e)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return metadb_err(h, "database write", e);
    return 0;
}

/* ---- transactions and group commit ----
 *
 * One write transaction at a time: st->wmu is held from BEGIN to COMMIT or
 * ROLLBACK, so writers queue on a mutex (woken the moment it is free) instead of
 * sqlite's busy handler, which sleeps 1, 2, 5, 10 ... ms between tries and under
 * 16 concurrent writers made p99 hundreds of ms. Worker connections run
 * synchronous=OFF: COMMIT only write()s the frames to the WAL and the lock is
 * given back at once. A durable commit then waits in gsync_wait for a WAL fsync
 * that began after its COMMIT returned; concurrent committers share one fsync
 * (group commit), so N manifests cost one WAL fsync instead of N.
 *
 * Why this is as safe as synchronous=FULL for what is acknowledged:
 *   - the WAL is append-only between checkpoints, so an fsync covers every frame
 *     written before it, including light transactions' and the header;
 *   - a commit is reported to its caller only after that fsync returned;
 *   - checkpoints (which copy WAL pages into meta.db and let the WAL restart)
 *     run only on the checkpointer's own synchronous=FULL connection (ckpt.c):
 *     it fsyncs the WAL before and meta.db after copying, and autocheckpoint is
 *     off on worker connections (the WAL hook replaces it).
 * The one difference: a reader may see a commit a moment before it is durable
 * (between its COMMIT and the shared fsync). A crash then loses it, as it would
 * have lost it under FULL; its writer was never told it succeeded. A read that
 * acknowledges such a state calls metadb_durable_point first.
 * A failed WAL fsync is final (gsync.c): later durable writes get ERR_IO. */

static int
wal_sync(void *arg, struct err *e)
{
    struct storage_handle *h = arg;
    struct storage *st = h->st;
    if (fault_hit(st, FAULT_WALSYNC))
        return err_sys(e, ERR_IO, errno, "fsync database WAL");
    /* only the leader of a round runs this, one at a time: no race on walfd.
     * The file stays the same while the store is open (the write connection
     * keeps it from being deleted; restarts and truncation keep the inode). */
    if (st->walfd < 0) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s-wal", st->dbpath);
        st->walfd = open(path, O_RDONLY | O_CLOEXEC);
        if (st->walfd < 0)
            return err_sys(e, ERR_IO, errno, "open database WAL");
    }
    if (fsync(st->walfd) < 0)
        return err_sys(e, ERR_IO, errno, "fsync database WAL");
    return 0;
}

static int
begin(struct storage_handle *h, int durable, struct err *e)
{
    struct storage *st = h->st;
    if (durable && __atomic_load_n(&st->walsync.failed, __ATOMIC_RELAXED))
        return err_set(e, ERR_IO, 0,
                       "an earlier fsync of the metadata failed: writes are refused until "
                       "the server restarts");
    pthread_mutex_lock(&st->wmu);
    h->in_txn = 1;
    h->durable = durable;
    if (metadb_run(h, metadb_q(h, Q_BEGIN), e) < 0) {
        h->in_txn = 0;
        pthread_mutex_unlock(&st->wmu);
        return -1;
    }
    return 0;
}

int
metadb_begin_light(struct storage_handle *h, struct err *e)
{
    return begin(h, 0, e);
}

int
metadb_begin(struct storage_handle *h, struct err *e)
{
    return begin(h, 1, e);
}

void
metadb_rollback(struct storage_handle *h)
{
    if (!h->in_txn)
        return;
    sqlite3_stmt *s = metadb_q(h, Q_ROLLBACK);
    sqlite3_step(s);
    sqlite3_reset(s);
    h->in_txn = 0;
    pthread_mutex_unlock(&h->st->wmu);
}

int
metadb_durable_point(struct storage_handle *h, struct err *e)
{
    if (!h->st->fsync)
        return 0;
    return gsync_wait(&h->st->walsync, wal_sync, h, e);
}

int
metadb_commit(struct storage_handle *h, struct err *e)
{
    if (fault_hit(h->st, FAULT_DB)) {
        metadb_rollback(h);
        return err_set(e, ERR_DB, 0, "commit: injected fault");
    }
    if (metadb_run(h, metadb_q(h, Q_COMMIT), e) < 0) {
        metadb_rollback(h);
        return -1;
    }
    h->in_txn = 0;
    pthread_mutex_unlock(&h->st->wmu);
    if (!h->durable)
        return 0;
    __atomic_add_fetch(&h->st->durable_commits, 1, __ATOMIC_RELAXED);
    return metadb_durable_point(h, e);
}

void
metadb_bind_text(struct sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

void
metadb_bind_int64(struct sqlite3_stmt *s, int i, int64_t v)
{
    sqlite3_bind_int64(s, i, v);
}

int
metadb_repo_prune(struct storage_handle *h, const char *repo, struct err *e)
{
    sqlite3_stmt *s = metadb_q(h, Q_REPO_PRUNE);
    metadb_bind_text(s, 1, repo);
    return metadb_run(h, s, e);
}

/* rows of repositories emptied before metadb_repo_prune existed; one pass over
 * repos with two index probes per row */
static const char *const prune_all_sql =
    "DELETE FROM repos WHERE NOT EXISTS(SELECT 1 FROM blob_links l WHERE l.repo = repos.name)"
    " AND NOT EXISTS(SELECT 1 FROM manifests m WHERE m.repo = repos.name)";

int
metadb_repos_prune_all(struct storage_handle *h, struct err *e)
{
    if (metadb_begin_light(h, e) < 0)
        return -1;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(cur(h)->db, prune_all_sql, -1, &s, NULL) != SQLITE_OK) {
        metadb_err(h, "prune repositories", e);
        metadb_rollback(h);
        return -1;
    }
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        metadb_err(h, "prune repositories", e);
        metadb_rollback(h);
        return -1;
    }
    int n = metadb_changes(h);
    if (metadb_commit(h, e) < 0)
        return -1;
    return n;
}
