/* metadb.c - the sqlite3 implementation of the metadata interface (meta.h):
 * schema, migrations, per-connection statements, transactions, the domain
 * operations. The only file with SQL in it.
 *
 * One connection per meta_conn (so per worker thread), opened NOMUTEX: a
 * handle is never shared. WAL lets readers run beside the single writer; writers
 * take BEGIN IMMEDIATE so a busy database is waited for (busy_timeout) at the
 * start of a transaction, never half-way.
 *
 * Durability: when the store fsyncs, every commit that is acknowledged to a
 * client (blob commit, manifest put, tag and manifest delete, blob unlink, mount)
 * is in a WAL that was fsync'd after its COMMIT, before meta_commit returns, so
 * a power loss cannot undo a 201. The fsync is shared by concurrent committers
 * (group commit, see "transactions" below). Transactions whose loss is harmless -
 * upload session rows (start, cancel, expiry, destroy) and start-up recovery - go
 * through meta_begin_light and do not wait; the next durable commit's WAL fsync
 * covers their frames too. Every blob file is fsync'd (file and directory) BEFORE
 * the row naming it commits, so a row that survives always has its file.
 *
 * Schema version 6 (PRAGMA user_version). Digests are stored as their text
 * "algo:hex"; names and tags as given (validated), compared bytewise (BINARY
 * collation), which is the order the spec's tag list and catalog want. Every
 * list is read with keyset paging (name > last ORDER BY name LIMIT n), never
 * OFFSET.
 *
 *   repos(name)                         the repositories that exist: those with
 *                                       at least one blob link or manifest. The
 *                                       transaction that removes a repository's
 *                                       last link and manifest removes its row
 *                                       (repo_prune), and open removes rows
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
 *   tags(repo, tag, digest, updated, pulled)   updated: when the tag was last
 *                                       set (pushed); pulled: the last manifest
 *                                       GET/HEAD by the tag as recorded (to the
 *                                       minute, only with retention rules; 0:
 *                                       never), see storage/pulls.c
 *   uploads(uuid, repo, algo, created)   the byte count is the file's length, and
 *                                        last use is kept in memory: a PATCH
 *                                        writes no row
 *   gc_queue(kind, repo, digest)   gc's review queue (kinds: enum meta_gc_kind),
 *                                  fed by triggers (see migrate_v5)
 *   gc_state(name, value)          full_needed: the next pass reviews everything */
#include "storage/metadb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* v4 -> v5: gc's review queue (gc/gc.c). The operations that can orphan
 * something queue it in the same transaction, through triggers, so no write
 * path can forget to: a link created (an upload's end, a blob put, a mount:
 * the link may never be referenced) or removed (its blob); a manifest created
 * (it may stay untagged) or deleted (its body's blob, the manifests that name
 * it as their subject, the repository when it was its last); a manifest's
 * references removed (its links and child manifests); a tag moved or deleted
 * (the manifest it named). The primary key coalesces repeats, so the queue
 * holds at most one row per thing that exists or existed since the last pass.
 * A pass removes a row only in the transaction that settled it. An older
 * store had no queue: gc_state full_needed asks the first pass to review
 * everything (set only when there is something to review). */
static const char *const migrate_v5 =
    "CREATE TABLE gc_queue(kind INTEGER NOT NULL, repo TEXT NOT NULL, digest TEXT NOT NULL,"
    "  PRIMARY KEY(kind, repo, digest)) WITHOUT ROWID;"
    "CREATE TABLE gc_state(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO gc_state(name, value) SELECT 'full_needed', EXISTS(SELECT 1 FROM blobs);"
    /* the outer statement's conflict policy (an upsert's, an INSERT OR
     * IGNORE's) would override a trigger's own OR IGNORE, so repeats are
     * skipped with NOT EXISTS instead */
    "CREATE TRIGGER gcq_link_ins AFTER INSERT ON blob_links BEGIN"
    "  INSERT INTO gc_queue SELECT 1, new.repo, new.digest WHERE NOT EXISTS"
    "   (SELECT 1 FROM gc_queue WHERE kind = 1 AND repo = new.repo AND digest = new.digest);"
    " END;"
    "CREATE TRIGGER gcq_link_del AFTER DELETE ON blob_links BEGIN"
    "  INSERT INTO gc_queue SELECT 0, '', old.digest WHERE NOT EXISTS"
    "   (SELECT 1 FROM gc_queue WHERE kind = 0 AND repo = '' AND digest = old.digest);"
    " END;"
    "CREATE TRIGGER gcq_mf_ins AFTER INSERT ON manifests BEGIN"
    "  INSERT INTO gc_queue SELECT 2, new.repo, new.digest WHERE NOT EXISTS"
    "   (SELECT 1 FROM gc_queue WHERE kind = 2 AND repo = new.repo AND digest = new.digest);"
    " END;"
    "CREATE TRIGGER gcq_mf_del AFTER DELETE ON manifests BEGIN"
    "  INSERT INTO gc_queue SELECT 0, '', old.digest WHERE NOT EXISTS"
    "   (SELECT 1 FROM gc_queue WHERE kind = 0 AND repo = '' AND digest = old.digest);"
    "  INSERT INTO gc_queue SELECT 2, m.repo, m.digest FROM manifests m"
    "   WHERE m.repo = old.repo AND m.subject = old.digest AND NOT EXISTS"
    "   (SELECT 1 FROM gc_queue q WHERE q.kind = 2 AND q.repo = m.repo AND q.digest = m.digest);"
    "  INSERT INTO gc_queue SELECT 3, old.repo, '' WHERE NOT EXISTS"
    "   (SELECT 1 FROM manifests WHERE repo = old.repo) AND NOT EXISTS"
    "   (SELECT 1 FROM gc_queue WHERE kind = 3 AND repo = old.repo AND digest = '');"
    " END;"
    "CREATE TRIGGER gcq_ref_del AFTER DELETE ON manifest_refs WHEN old.kind <> 2 BEGIN"
    "  INSERT INTO gc_queue SELECT CASE old.kind WHEN 1 THEN 2 ELSE 1 END, old.repo, old.ref"
    "   WHERE NOT EXISTS(SELECT 1 FROM gc_queue WHERE kind = CASE old.kind WHEN 1 THEN 2"
    "   ELSE 1 END AND repo = old.repo AND digest = old.ref);"
    " END;"
    "CREATE TRIGGER gcq_tag_upd AFTER UPDATE OF digest ON tags"
    "  WHEN old.digest <> new.digest BEGIN"
    "  INSERT INTO gc_queue SELECT 2, old.repo, old.digest WHERE NOT EXISTS"
    "   (SELECT 1 FROM gc_queue WHERE kind = 2 AND repo = old.repo AND digest = old.digest);"
    " END;"
    "CREATE TRIGGER gcq_tag_del AFTER DELETE ON tags BEGIN"
    "  INSERT INTO gc_queue SELECT 2, old.repo, old.digest WHERE NOT EXISTS"
    "   (SELECT 1 FROM gc_queue WHERE kind = 2 AND repo = old.repo AND digest = old.digest);"
    " END;";

/* v5 -> v6: when each tag was last pulled, for retention's keep_within
 * (gc/retention.h). Written in batches by storage_pulls_flush; 0 = never
 * (or before this version). */
static const char *const migrate_v6 =
    "ALTER TABLE tags ADD COLUMN pulled INTEGER NOT NULL DEFAULT 0;";

/* migrations[i] takes the schema from version i to i + 1 */
static const char *const migrations[] = {schema_v1,  migrate_v2, migrate_v3,
                                         migrate_v4, migrate_v5, migrate_v6};
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
    [Q_BLOB_FORGET] = "DELETE FROM blobs WHERE digest = ?1",
    [Q_LINKS_FORGET] = "DELETE FROM blob_links WHERE digest = ?1",
    [Q_UP_EXPIRED] = "SELECT uuid, repo FROM uploads WHERE created < ?1",
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
    /* a later pull wins; a tag deleted since is skipped */
    [Q_TAG_PULLED_SET] = "UPDATE tags SET pulled = ?3 WHERE repo = ?1 AND tag = ?2 AND pulled < ?3",
    [Q_TAG_TIMES] = "SELECT updated, pulled FROM tags WHERE repo = ?1 AND tag = ?2",
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
    /* ---- gc (gc/gc.c): the conditions are checked inside the deleting
     * transaction, so a writer that references a thing in its own transaction
     * either comes first (the thing is kept) or sees it gone ---- */
    [Q_GC_FULL_NEEDED] = "SELECT value FROM gc_state WHERE name = 'full_needed'",
    [Q_GC_PAGE] = "SELECT repo, digest FROM gc_queue WHERE kind = ?1 AND (repo, digest) > (?2, ?3)"
                  " ORDER BY repo, digest LIMIT ?4",
    [Q_GC_COUNT] = "SELECT count(*) FROM gc_queue",
    [Q_GC_ENQUEUE] = "INSERT OR IGNORE INTO gc_queue(kind, repo, digest) VALUES(?1, ?2, ?3)",
    [Q_GC_DEQUEUE] = "DELETE FROM gc_queue WHERE kind = ?1 AND repo = ?2 AND digest = ?3",
    [Q_GC_LINK_DELETE] = "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2 AND created < ?3"
                         " AND NOT EXISTS(SELECT 1 FROM manifest_refs r"
                         "  WHERE r.ref = ?2 AND r.repo = ?1)",
    /* untagged, no kept index of the repository references it, not a
     * referrer whose subject is kept there */
    [Q_GC_MF_COLLECTABLE] = "SELECT 1 FROM manifests m WHERE m.repo = ?1 AND m.digest = ?2"
                            " AND m.created < ?3"
                            " AND NOT EXISTS(SELECT 1 FROM tags t WHERE t.repo = ?1"
                            "  AND t.digest = ?2)"
                            " AND NOT EXISTS(SELECT 1 FROM manifest_refs r WHERE r.ref = ?2"
                            "  AND r.repo = ?1 AND r.kind = 1)"
                            " AND (m.subject IS NULL OR NOT EXISTS(SELECT 1 FROM manifests s"
                            "  WHERE s.repo = ?1 AND s.digest = m.subject))",
    /* a collected manifest body's pending file row: recovery must not write
     * back a file that no row names any more */
    [Q_GC_PENDING_DELETE] = "DELETE FROM pending_manifest_files WHERE digest = ?1",
    [Q_GC_BLOB_DELETE] = "DELETE FROM blobs WHERE digest = ?1 AND created < ?2"
                         " AND NOT EXISTS(SELECT 1 FROM blob_links WHERE digest = ?1)"
                         " AND NOT EXISTS(SELECT 1 FROM manifests WHERE digest = ?1)"
                         " RETURNING size",
    [Q_GC_LINK_CREATED] = "SELECT created FROM blob_links WHERE repo = ?1 AND digest = ?2",
    [Q_GC_MF_CREATED] = "SELECT created FROM manifests WHERE repo = ?1 AND digest = ?2",
    [Q_GC_BLOB_CREATED] = "SELECT created FROM blobs WHERE digest = ?2 AND ?1 = ''",
    [Q_GC_RETAIN_CASCADE] = "INSERT OR IGNORE INTO gc_queue(kind, repo, digest)"
                            " SELECT 4, repo, ref FROM manifest_refs"
                            "  WHERE repo = ?1 AND digest = ?2 AND kind = 1"
                            " UNION SELECT 4, repo, digest FROM manifests"
                            "  WHERE repo = ?1 AND subject = ?2",
    [Q_GC_TAG_DELETE] = "DELETE FROM tags WHERE repo = ?1 AND tag = ?2 AND digest = ?3",
    [Q_TAGS_RETENTION] = "SELECT tag, digest, updated, pulled FROM tags WHERE repo = ?1 ORDER BY tag",
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

static int
migrate(struct sqlite3 *db, struct err *e)
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


/* ---- connections ---- */

/* the WAL hook: runs after every commit of a worker connection; it replaces
 * sqlite's autocheckpoint (see ckpt.c) */
static int
wal_grew(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct meta *m = arg;
    (void)db;
    (void)name;
    ckpt_poke(m->ckpt, pages);
    return SQLITE_OK;
}

static int
prepare(struct meta_conn *c, struct err *e)
{
    for (int i = 0; i < Q__COUNT; i++) {
        if (sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->q[i], NULL) !=
            SQLITE_OK)
            return err_set(e, ERR_DB, 0, "prepare statement %d: %s", i, sqlite3_errmsg(c->db));
    }
    return 0;
}

struct meta_conn *
meta_conn_open(struct meta *m, struct err *e)
{
    struct meta_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    c->m = m;
    /* synchronous=OFF: durable commits wait for the group WAL fsync instead */
    if (metadb_connect(m->dbpath, 0, &c->db, e) < 0 || prepare(c, e) < 0) {
        meta_conn_close(c);
        return NULL;
    }
    sqlite3_wal_hook(c->db, wal_grew, m);
    return c;
}

void
meta_conn_close(struct meta_conn *c)
{
    if (!c)
        return;
    meta_rollback(c);
    meta_release(c);
    for (int i = 0; i < Q__COUNT; i++)
        sqlite3_finalize(c->q[i]);
    sqlite3_close(c->db);
    free(c);
}

struct meta *
meta_open(const struct meta_opts *o, struct err *e)
{
    sqlmem_install();
    struct meta *m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    m->fsync = o->fsync ? 1 : 0;
    m->fault = o->fault;
    m->walfd = -1;
    pthread_mutex_init(&m->wmu, NULL);
    gsync_init(&m->walsync);
    size_t rl = strlen(o->root);
    m->dbpath = malloc(rl + sizeof("/meta.db"));
    if (!m->dbpath) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        goto fail;
    }
    snprintf(m->dbpath, rl + sizeof("/meta.db"), "%s/meta.db", o->root);
    sqlite3 *db = NULL;
    if (metadb_connect(m->dbpath, m->fsync, &db, e) < 0)
        goto fail;
    int mrc = migrate(db, e);
    sqlite3_close(db);
    if (mrc < 0)
        goto fail;
    m->wh = meta_conn_open(m, e);
    if (!m->wh)
        goto fail;
    return m;
fail:
    meta_close(m);
    return NULL;
}

int
meta_start(struct meta *m, int (*sync_files)(void *arg, struct err *e), void *arg, struct err *e)
{
    m->ckpt = ckpt_start(m, sync_files, arg, e);
    return m->ckpt ? 0 : -1;
}

void
meta_files_pending(struct meta *m)
{
    if (m->fsync)
        ckpt_poke_files(m->ckpt);
}

void
meta_close(struct meta *m)
{
    if (!m)
        return;
    ckpt_stop(m->ckpt); /* its last sync_files commits through wh */
    meta_conn_close(m->wh);
    if (m->walfd >= 0)
        close(m->walfd);
    pthread_mutex_destroy(&m->wmu);
    gsync_destroy(&m->walsync);
    free(m->dbpath);
    free(m);
}

/* the connection c's statements run on: the store's write connection while c
 * is in a write transaction (see struct meta's wh), else c's own */
static struct meta_conn *
cur(struct meta_conn *c)
{
    return c->in_txn && c->m->wh ? c->m->wh : c;
}

struct sqlite3_stmt *
metadb_q(struct meta_conn *c, enum stmt_id id)
{
    sqlite3_stmt *s = cur(c)->q[id];
    sqlite3_reset(s);
    return s;
}

static int
dberr(struct meta_conn *c, const char *what, struct err *e)
{
    sqlite3 *db = cur(c)->db;
    int code = sqlite3_errcode(db);
    if (code == SQLITE_FULL)
        return err_set(e, ERR_NOSPACE, 0, "%s: %s", what, sqlite3_errmsg(db));
    return err_set(e, ERR_DB, 0, "%s: %s", what, sqlite3_errmsg(db));
}

static int
changes(struct meta_conn *c)
{
    return sqlite3_changes(cur(c)->db);
}

/* run - step a statement to completion (or its first row) and reset */
static int
run(struct meta_conn *c, sqlite3_stmt *s, struct err *e)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return dberr(c, "database write", e);
    return 0;
}

/* bind helpers (SQLITE_STATIC: the caller keeps the text alive until reset) */
static void
bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static void
bind_int64(sqlite3_stmt *s, int i, int64_t v)
{
    sqlite3_bind_int64(s, i, v);
}

static int64_t
now_sec(void)
{
    return (int64_t)time(NULL);
}

static void
copy_str(char *dst, size_t dstsz, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= dstsz)
        n = dstsz - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
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
 * acknowledges such a state calls meta_durable_point first.
 * A failed WAL fsync is final (gsync.c): later durable writes get ERR_IO. */

static int
wal_sync(void *arg, struct err *e)
{
    struct meta *m = arg;
    if (fault_hit(m->fault, FAULT_WALSYNC))
        return err_sys(e, ERR_IO, errno, "fsync database WAL");
    /* only the leader of a round runs this, one at a time: no race on walfd.
     * The file stays the same while the store is open (the write connection
     * keeps it from being deleted; restarts and truncation keep the inode). */
    if (m->walfd < 0) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s-wal", m->dbpath);
        m->walfd = open(path, O_RDONLY | O_CLOEXEC);
        if (m->walfd < 0)
            return err_sys(e, ERR_IO, errno, "open database WAL");
    }
    if (fsync(m->walfd) < 0)
        return err_sys(e, ERR_IO, errno, "fsync database WAL");
    return 0;
}

static int
begin(struct meta_conn *c, int durable, struct err *e)
{
    struct meta *m = c->m;
    if (durable && __atomic_load_n(&m->walsync.failed, __ATOMIC_RELAXED))
        return err_set(e, ERR_IO, 0,
                       "an earlier fsync of the metadata failed: writes are refused until "
                       "the server restarts");
    pthread_mutex_lock(&m->wmu);
    c->in_txn = 1;
    c->durable = durable;
    if (run(c, metadb_q(c, Q_BEGIN), e) < 0) {
        c->in_txn = 0;
        pthread_mutex_unlock(&m->wmu);
        return -1;
    }
    return 0;
}

int
meta_begin_light(struct meta_conn *c, struct err *e)
{
    return begin(c, 0, e);
}

int
meta_begin(struct meta_conn *c, struct err *e)
{
    return begin(c, 1, e);
}

void
meta_rollback(struct meta_conn *c)
{
    if (!c->in_txn)
        return;
    sqlite3_stmt *s = metadb_q(c, Q_ROLLBACK);
    sqlite3_step(s);
    sqlite3_reset(s);
    c->in_txn = 0;
    pthread_mutex_unlock(&c->m->wmu);
}

int
meta_durable_point(struct meta_conn *c, struct err *e)
{
    if (!c->m->fsync)
        return 0;
    return gsync_wait(&c->m->walsync, wal_sync, c->m, e);
}

/* COMMIT the open transaction: 0, or -1 after rolling it back. The write
 * mutex is released, unless hold (the caller releases it: meta_release). */
static int
commit_txn(struct meta_conn *c, int hold, struct err *e)
{
    if (fault_hit(c->m->fault, FAULT_DB)) {
        meta_rollback(c);
        return err_set(e, ERR_DB, 0, "commit: injected fault");
    }
    if (run(c, metadb_q(c, Q_COMMIT), e) < 0) {
        meta_rollback(c);
        return -1;
    }
    c->in_txn = 0;
    if (hold)
        c->held = 1;
    else
        pthread_mutex_unlock(&c->m->wmu);
    if (c->durable)
        __atomic_add_fetch(&c->m->durable_commits, 1, __ATOMIC_RELAXED);
    return 0;
}

int
meta_commit(struct meta_conn *c, struct err *e)
{
    if (commit_txn(c, 0, e) < 0)
        return -1;
    return c->durable ? meta_durable_point(c, e) : 0;
}

int
meta_commit_hold(struct meta_conn *c, struct err *e)
{
    if (commit_txn(c, 1, e) < 0)
        return -1;
    if (!c->durable)
        return 0;
    /* the leader of a WAL fsync round needs no lock, so waiting for one with
     * the write mutex held cannot deadlock (writers merely queue behind) */
    if (meta_durable_point(c, e) < 0) {
        meta_release(c);
        return -1;
    }
    return 0;
}

void
meta_release(struct meta_conn *c)
{
    if (!c->held)
        return;
    c->held = 0;
    pthread_mutex_unlock(&c->m->wmu);
}

/* ---- small query shapes ---- */

/* exists1 - a "SELECT 1 ..." with up to two text binds: 1 / 0 / -1 */
static int
exists1(struct meta_conn *c, enum stmt_id id, const char *a, const char *b, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, id);
    bind_text(s, 1, a);
    if (b)
        bind_text(s, 2, b);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return dberr(c, "database read", e);
}

/* run2 - a write with up to two text binds */
static int
run2(struct meta_conn *c, enum stmt_id id, const char *a, const char *b, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, id);
    bind_text(s, 1, a);
    if (b)
        bind_text(s, 2, b);
    return run(c, s, e);
}

/* repo_prune - inside a write transaction that removed a link or a manifest
 * of repo: remove repo's row when nothing of it is left */
static int
repo_prune(struct meta_conn *c, const char *repo, struct err *e)
{
    return run2(c, Q_REPO_PRUNE, repo, NULL, e);
}

/* ---- repositories and blobs ---- */

int
meta_repo_exists(struct meta_conn *c, const char *repo, struct err *e)
{
    return exists1(c, Q_REPO_EXISTS, repo, NULL, e);
}

/* one integer of the first row of statement id bound to (a, b): 1 with *out,
 * 0 without a row, -1 (what names the read in the error) */
static int
query_i64(struct meta_conn *c, enum stmt_id id, const char *a, const char *b, int64_t *out,
          const char *what, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, id);
    bind_text(s, 1, a);
    bind_text(s, 2, b);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return dberr(c, what, e);
}

int
meta_blob_size(struct meta_conn *c, const char *repo, const char *ds, uint64_t *size,
               struct err *e)
{
    int64_t v = 0;
    int rc = query_i64(c, Q_BLOB_STAT, repo, ds, &v, "read blob", e);
    if (rc == 1)
        *size = (uint64_t)v;
    return rc;
}

int
meta_link_exists(struct meta_conn *c, const char *repo, const char *ds, struct err *e)
{
    if (!repo)
        return exists1(c, Q_LINK_ANY, ds, NULL, e);
    return exists1(c, Q_LINK_EXISTS, repo, ds, e);
}

int
meta_blob_link(struct meta_conn *c, const char *repo, const char *ds, uint64_t size,
               struct err *e)
{
    int64_t now = now_sec();
    sqlite3_stmt *s = metadb_q(c, Q_BLOB_INSERT);
    bind_text(s, 1, ds);
    bind_int64(s, 2, (int64_t)size);
    bind_int64(s, 3, now);
    if (run(c, s, e) < 0 || run2(c, Q_REPO_INSERT, repo, NULL, e) < 0)
        return -1;
    s = metadb_q(c, Q_LINK_INSERT);
    bind_text(s, 1, repo);
    bind_text(s, 2, ds);
    bind_int64(s, 3, now);
    return run(c, s, e);
}

int
meta_blob_unlink(struct meta_conn *c, const char *repo, const char *ds, struct err *e)
{
    if (run2(c, Q_LINK_DELETE, repo, ds, e) < 0)
        return -1;
    if (changes(c) == 0)
        return 0;
    return repo_prune(c, repo, e) < 0 ? -1 : 1;
}

int
meta_blob_forget(struct meta_conn *c, const char *ds, struct err *e)
{
    if (run2(c, Q_REPO_PRUNE_DIGEST, ds, NULL, e) < 0 || run2(c, Q_LINKS_FORGET, ds, NULL, e) < 0)
        return -1;
    return run2(c, Q_BLOB_FORGET, ds, NULL, e);
}

/* rows of repositories emptied before repo_prune existed; one pass over repos
 * with two index probes per row */
static const char *const prune_all_sql =
    "DELETE FROM repos WHERE NOT EXISTS(SELECT 1 FROM blob_links l WHERE l.repo = repos.name)"
    " AND NOT EXISTS(SELECT 1 FROM manifests m WHERE m.repo = repos.name)";

/* exec_once - an unprepared statement (rare paths), run to completion inside
 * c's transaction */
static int
exec_once(struct meta_conn *c, const char *sql, struct err *e)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(cur(c)->db, sql, -1, &s, NULL) != SQLITE_OK)
        return dberr(c, "prepare", e);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return dberr(c, "database write", e);
    return 0;
}

int
meta_repos_prune_all(struct meta_conn *c, struct err *e)
{
    if (meta_begin_light(c, e) < 0)
        return -1;
    if (exec_once(c, prune_all_sql, e) < 0) {
        meta_rollback(c);
        return -1;
    }
    int n = changes(c);
    if (meta_commit(c, e) < 0)
        return -1;
    return n;
}

/* ---- manifests and tags ---- */

int
meta_manifest_exists(struct meta_conn *c, const char *repo, const char *ds, struct err *e)
{
    return exists1(c, Q_MF_EXISTS, repo, ds, e);
}

int
meta_manifest_get(struct meta_conn *c, const char *repo, const char *ds, const char *tag,
                  struct manifest_meta *m, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, ds ? Q_MF_GET_DIGEST : Q_MF_GET_TAG);
    bind_text(s, 1, repo);
    bind_text(s, 2, ds ? ds : tag);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            return 0;
        return dberr(c, "read manifest", e);
    }
    const char *dt = (const char *)sqlite3_column_text(s, 0);
    int dl = sqlite3_column_bytes(s, 0);
    if (!dt || digest_parse(dt, (size_t)dl, &m->digest, NULL) < 0) {
        sqlite3_reset(s);
        return err_set(e, ERR_DB, 0, "corrupt manifest row");
    }
    copy_str(m->media_type, sizeof(m->media_type), (const char *)sqlite3_column_text(s, 1));
    m->size = (uint64_t)sqlite3_column_int64(s, 2);
    sqlite3_reset(s);
    return 1;
}

int
meta_manifest_put(struct meta_conn *c, const struct meta_manifest *mf, struct err *e)
{
    int64_t now = now_sec();
    sqlite3_stmt *s = metadb_q(c, Q_BLOB_INSERT);
    bind_text(s, 1, mf->digest);
    bind_int64(s, 2, (int64_t)mf->size);
    bind_int64(s, 3, now);
    if (run(c, s, e) < 0 || run2(c, Q_REPO_INSERT, mf->repo, NULL, e) < 0)
        return -1;
    if (mf->pending_body) {
        s = metadb_q(c, Q_PENDING_ADD);
        bind_text(s, 1, mf->digest);
        sqlite3_bind_blob(s, 2, mf->pending_body, (int)mf->size, SQLITE_STATIC);
        if (run(c, s, e) < 0)
            return -1;
    }
    s = metadb_q(c, Q_MF_INSERT);
    bind_text(s, 1, mf->repo);
    bind_text(s, 2, mf->digest);
    bind_text(s, 3, mf->media_type);
    bind_int64(s, 4, (int64_t)mf->size);
    bind_text(s, 5, mf->subject);
    bind_text(s, 6, mf->artifact_type);
    bind_int64(s, 7, now);
    if (sqlite3_step(s) != SQLITE_ROW) {
        dberr(c, "record manifest", e);
        sqlite3_reset(s);
        return -1;
    }
    int64_t mid = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    /* what a referrers page shows, kept whole so that a GET never reads the
     * body: only a manifest with a subject is ever listed */
    if (meta_annotations_set(c, mid, mf->subject ? mf->annotations : NULL, e) < 0)
        return -1;
    for (size_t i = 0; i < mf->nrefs; i++) {
        char rs[DIGEST_STR_MAX];
        digest_format(&mf->refs[i].digest, rs);
        s = metadb_q(c, Q_REF_INSERT);
        bind_text(s, 1, mf->repo);
        bind_text(s, 2, mf->digest);
        bind_text(s, 3, rs);
        sqlite3_bind_int(s, 4, (int)mf->refs[i].kind);
        if (run(c, s, e) < 0)
            return -1;
    }
    for (size_t i = 0; i < mf->ntags; i++) {
        s = metadb_q(c, Q_TAG_UPSERT);
        bind_text(s, 1, mf->repo);
        bind_text(s, 2, mf->tags[i]);
        bind_text(s, 3, mf->digest);
        bind_int64(s, 4, now);
        if (run(c, s, e) < 0)
            return -1;
    }
    return 0;
}

int
meta_manifest_delete(struct meta_conn *c, const char *repo, const char *ds, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_MF_DELETE);
    bind_text(s, 1, repo);
    bind_text(s, 2, ds);
    int rc = sqlite3_step(s);
    int64_t mid = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return dberr(c, "delete manifest", e);
    s = metadb_q(c, Q_ANN_DELETE);
    bind_int64(s, 1, mid);
    if (run(c, s, e) < 0 || run2(c, Q_REF_DELETE, repo, ds, e) < 0 ||
        run2(c, Q_TAG_DELETE_DIGEST, repo, ds, e) < 0 || repo_prune(c, repo, e) < 0)
        return -1;
    return 1;
}

int
meta_tag_delete(struct meta_conn *c, const char *repo, const char *tag, struct err *e)
{
    if (run2(c, Q_TAG_DELETE, repo, tag, e) < 0)
        return -1;
    return changes(c) ? 1 : 0;
}

/* ---- last-pulled times of tags ---- */

long
meta_tags_pulled_set(struct meta_conn *c, const struct meta_pull *p, size_t n, struct err *e)
{
    long changed = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *s = metadb_q(c, Q_TAG_PULLED_SET);
        bind_text(s, 1, p[i].repo);
        bind_text(s, 2, p[i].tag);
        bind_int64(s, 3, p[i].at);
        if (run(c, s, e) < 0)
            return -1;
        changed += changes(c);
    }
    return changed;
}

int
meta_tag_times(struct meta_conn *c, const char *repo, const char *tag, int64_t *pushed,
               int64_t *pulled, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_TAG_TIMES);
    bind_text(s, 1, repo);
    bind_text(s, 2, tag);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *pushed = sqlite3_column_int64(s, 0);
        *pulled = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return dberr(c, "read tag", e);
}

/* ---- lists ---- */

/* limit_of - SQL LIMIT for a page of n: one more row tells whether more exist */
static int64_t
limit_of(long n)
{
    if (n < 0 || (int64_t)n >= INT64_MAX - 1)
        return -1;
    return (int64_t)n + 1;
}

/* page - step a keyset query whose LIMIT is n + 1, calling fn for the first n */
static int
page(struct meta_conn *c, sqlite3_stmt *s, long n, meta_name_fn fn, void *arg, int *more,
     long *count, struct err *e)
{
    long i = 0;
    int rc, m = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n >= 0 && i >= n) {
            m = 1;
            break;
        }
        i++;
        const char *name = (const char *)sqlite3_column_text(s, 0);
        if (fn && fn(arg, name ? name : "") != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return dberr(c, "list", e);
    if (more)
        *more = m;
    if (count)
        *count = i;
    return 0;
}

int
meta_tags_page(struct meta_conn *c, const char *repo, const char *last, long n, meta_name_fn fn,
               void *arg, int *more, long *count, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_TAGS_LIST);
    bind_text(s, 1, repo);
    bind_text(s, 2, last ? last : "");
    bind_int64(s, 3, limit_of(n));
    return page(c, s, n, fn, arg, more, count, e);
}

int
meta_catalog_page(struct meta_conn *c, const char *last, long n, meta_name_fn fn, void *arg,
                  int *more, long *count, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_CATALOG);
    bind_text(s, 1, last ? last : "");
    bind_int64(s, 2, limit_of(n));
    return page(c, s, n, fn, arg, more, count, e);
}

int
meta_referrers_page(struct meta_conn *c, const char *repo, const char *subject,
                    const char *artifact_type, const char *last, long n, meta_referrer_fn fn,
                    void *arg, int *more, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, artifact_type ? Q_REFERRERS_AT_PAGE : Q_REFERRERS_PAGE);
    bind_text(s, 1, repo);
    bind_text(s, 2, subject);
    bind_text(s, 3, last ? last : "");
    bind_int64(s, 4, limit_of(n));
    if (artifact_type)
        bind_text(s, 5, artifact_type);
    int rc, m = 0;
    long i = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n >= 0 && i >= n) {
            m = 1;
            break;
        }
        i++;
        struct digest d;
        const char *dt = (const char *)sqlite3_column_text(s, 0);
        if (!dt || digest_parse(dt, (size_t)sqlite3_column_bytes(s, 0), &d, NULL) < 0)
            continue;
        const char *mt = (const char *)sqlite3_column_text(s, 1);
        const char *at = (const char *)sqlite3_column_text(s, 3);
        const char *ann = (const char *)sqlite3_column_text(s, 4);
        struct referrer r = {
            .media_type = mt ? mt : "",
            .digest = &d,
            .size = (uint64_t)sqlite3_column_int64(s, 2),
            .artifact_type = at ? at : "",
            .annotations_json = ann,
        };
        if (fn(arg, &r) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return dberr(c, "list referrers", e);
    if (more)
        *more = m;
    return 0;
}

/* ---- upload session rows ---- */

int
meta_upload_insert(struct meta_conn *c, const char *uuid, const char *repo, enum digest_algo algo,
                   struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_UP_INSERT);
    bind_text(s, 1, uuid);
    bind_text(s, 2, repo);
    sqlite3_bind_int(s, 3, (int)algo);
    bind_int64(s, 4, now_sec());
    return run(c, s, e);
}

int
meta_upload_get(struct meta_conn *c, const char *uuid, char *repo, enum digest_algo *algo,
                struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_UP_GET);
    bind_text(s, 1, uuid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        copy_str(repo, NAME_MAX_LEN + 1, (const char *)sqlite3_column_text(s, 0));
        *algo = sqlite3_column_int(s, 1) == DIGEST_SHA512 ? DIGEST_SHA512 : DIGEST_SHA256;
        sqlite3_reset(s);
        return 1;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    return dberr(c, "read upload", e);
}

int
meta_upload_delete(struct meta_conn *c, const char *uuid, char *repo, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_UP_DELETE);
    bind_text(s, 1, uuid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        copy_str(repo, NAME_MAX_LEN + 1, (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return dberr(c, "delete upload", e);
}

int
meta_uploads_each(struct meta_conn *c, int64_t created_before,
                  int (*fn)(void *arg, const char *uuid, const char *repo), void *arg,
                  struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_UP_EXPIRED);
    bind_int64(s, 1, created_before > 0 ? created_before : INT64_MAX);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        const char *repo = (const char *)sqlite3_column_text(s, 1);
        if (fn(arg, id ? id : "", repo ? repo : "") != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return dberr(c, "list uploads", e);
    return 0;
}

/* ---- pending manifest files ---- */

int
meta_pending_each(struct meta_conn *c,
                  int (*fn)(void *arg, int64_t id, const char *ds, const void *body, size_t len),
                  void *arg, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_PENDING_ALL);
    int step, rc = 0;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *ds = (const char *)sqlite3_column_text(s, 1);
        const void *body = sqlite3_column_blob(s, 2);
        int len = sqlite3_column_bytes(s, 2);
        if (fn(arg, sqlite3_column_int64(s, 0), ds ? ds : "", body ? body : "", (size_t)len) != 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = dberr(c, "read pending manifests", e);
    sqlite3_reset(s);
    return rc;
}

int
meta_pending_max(struct meta_conn *c, int64_t *max, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_PENDING_MAX);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    if (v < 0)
        return dberr(c, "read pending manifests", e);
    *max = v;
    return 0;
}

int
meta_pending_drop(struct meta_conn *c, int64_t max, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_PENDING_DONE);
    bind_int64(s, 1, max);
    return run(c, s, e);
}

/* ---- annotations left by v3 ---- */

int
meta_annotations_unfilled(struct meta_conn *c,
                          int (*fn)(void *arg, int64_t id, const char *ds, uint64_t size),
                          void *arg, struct err *e)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT a.manifest_id, m.digest, m.size FROM manifest_annotations a"
                           " JOIN manifests m ON m.id = a.manifest_id WHERE a.annotations IS NULL",
                           -1, &s, NULL) != SQLITE_OK)
        return dberr(c, "migration: read annotations", e);
    int step, rc = 0;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *dt = (const char *)sqlite3_column_text(s, 1);
        if (fn(arg, sqlite3_column_int64(s, 0), dt ? dt : "",
               (uint64_t)sqlite3_column_int64(s, 2)) != 0) {
            rc = err_set(e, ERR_NOMEM, 0, "out of memory");
            break;
        }
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = dberr(c, "migration: read annotations", e);
    sqlite3_finalize(s);
    return rc;
}

int
meta_annotations_set(struct meta_conn *c, int64_t id, const char *ann, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, ann ? Q_ANN_PUT : Q_ANN_DELETE);
    bind_int64(s, 1, id);
    if (ann)
        bind_text(s, 2, ann);
    return run(c, s, e);
}

/* ---- for gc ---- */

int
meta_blobs_unreferenced(struct meta_conn *c, int64_t before,
                        int (*fn)(void *arg, const char *ds, uint64_t size), void *arg,
                        struct err *e)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(cur(c)->db,
                           "SELECT b.digest, b.size FROM blobs b WHERE b.created < ?1"
                           " AND NOT EXISTS(SELECT 1 FROM blob_links l WHERE l.digest = b.digest)"
                           " AND NOT EXISTS(SELECT 1 FROM manifests m WHERE m.digest = b.digest)"
                           " ORDER BY b.digest",
                           -1, &s, NULL) != SQLITE_OK)
        return dberr(c, "list unreferenced blobs", e);
    bind_int64(s, 1, before);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *ds = (const char *)sqlite3_column_text(s, 0);
        if (fn(arg, ds ? ds : "", (uint64_t)sqlite3_column_int64(s, 1)) != 0) {
            step = SQLITE_DONE;
            break;
        }
    }
    int rc = step == SQLITE_DONE ? 0 : dberr(c, "list unreferenced blobs", e);
    sqlite3_finalize(s);
    return rc;
}

int
meta_links_unreferenced(struct meta_conn *c, int64_t before,
                        int (*fn)(void *arg, const char *repo, const char *ds), void *arg,
                        struct err *e)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(cur(c)->db,
                           "SELECT l.repo, l.digest FROM blob_links l WHERE l.created < ?1"
                           " AND NOT EXISTS(SELECT 1 FROM manifest_refs r"
                           "  WHERE r.ref = l.digest AND r.repo = l.repo)"
                           " ORDER BY l.repo, l.digest",
                           -1, &s, NULL) != SQLITE_OK)
        return dberr(c, "list unreferenced links", e);
    bind_int64(s, 1, before);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *repo = (const char *)sqlite3_column_text(s, 0);
        const char *ds = (const char *)sqlite3_column_text(s, 1);
        if (fn(arg, repo ? repo : "", ds ? ds : "") != 0) {
            step = SQLITE_DONE;
            break;
        }
    }
    int rc = step == SQLITE_DONE ? 0 : dberr(c, "list unreferenced links", e);
    sqlite3_finalize(s);
    return rc;
}

int
meta_blob_delete(struct meta_conn *c, const char *ds, struct err *e)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(cur(c)->db,
                           "DELETE FROM blobs WHERE digest = ?1"
                           " AND NOT EXISTS(SELECT 1 FROM blob_links WHERE digest = ?1)"
                           " AND NOT EXISTS(SELECT 1 FROM manifests WHERE digest = ?1)",
                           -1, &s, NULL) != SQLITE_OK)
        return dberr(c, "delete blob", e);
    bind_text(s, 1, ds);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE)
        return dberr(c, "delete blob", e);
    return changes(c) ? 1 : 0;
}

/* ---- gc's review queue ---- */

int
meta_gc_full_needed(struct meta_conn *c, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_GC_FULL_NEEDED);
    int rc = sqlite3_step(s);
    int v = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return dberr(c, "read gc state", e);
    return v ? 1 : 0;
}

int
meta_gc_fill(struct meta_conn *c, enum meta_gc_kind kind, struct err *e)
{
    switch (kind) {
    case META_GC_LINK:
        return exec_once(c, "INSERT OR IGNORE INTO gc_queue(kind, repo, digest)"
                            " SELECT 1, repo, digest FROM blob_links", e);
    case META_GC_MANIFEST:
        return exec_once(c, "INSERT OR IGNORE INTO gc_queue(kind, repo, digest)"
                            " SELECT 2, repo, digest FROM manifests", e);
    case META_GC_BLOB:
        if (exec_once(c, "INSERT OR IGNORE INTO gc_queue(kind, repo, digest)"
                         " SELECT 0, '', digest FROM blobs", e) < 0)
            return -1;
        return exec_once(c, "UPDATE gc_state SET value = 0 WHERE name = 'full_needed'", e);
    default:
        return 0;
    }
}

int
meta_gc_queue_page(struct meta_conn *c, enum meta_gc_kind kind, const char *repo, const char *ds,
                   long n, int (*fn)(void *arg, const char *repo, const char *ds), void *arg,
                   struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_GC_PAGE);
    sqlite3_bind_int(s, 1, (int)kind);
    bind_text(s, 2, repo ? repo : "");
    bind_text(s, 3, ds ? ds : "");
    bind_int64(s, 4, n < 0 ? -1 : (int64_t)n);
    int rc;
    long i = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 0);
        const char *d = (const char *)sqlite3_column_text(s, 1);
        i++;
        if (fn(arg, r ? r : "", d ? d : "") != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return dberr(c, "read gc queue", e);
    return (int)i;
}

int
meta_gc_queue_count(struct meta_conn *c, int64_t *n, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_GC_COUNT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : dberr(c, "read gc queue", e);
}

static int
gc_key(struct meta_conn *c, enum stmt_id id, enum meta_gc_kind kind, const char *repo,
       const char *ds, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, id);
    sqlite3_bind_int(s, 1, (int)kind);
    bind_text(s, 2, repo ? repo : "");
    bind_text(s, 3, ds ? ds : "");
    return run(c, s, e);
}

int
meta_gc_enqueue(struct meta_conn *c, enum meta_gc_kind kind, const char *repo, const char *ds,
                struct err *e)
{
    return gc_key(c, Q_GC_ENQUEUE, kind, repo, ds, e);
}

int
meta_gc_dequeue(struct meta_conn *c, enum meta_gc_kind kind, const char *repo, const char *ds,
                struct err *e)
{
    return gc_key(c, Q_GC_DEQUEUE, kind, repo, ds, e);
}

int
meta_gc_repo_expand(struct meta_conn *c, const char *repo, struct err *e)
{
    sqlite3_stmt *s = NULL;
    static const char *const sql[2] = {
        "INSERT OR IGNORE INTO gc_queue(kind, repo, digest)"
        " SELECT 1, repo, digest FROM blob_links WHERE repo = ?1",
        "INSERT OR IGNORE INTO gc_queue(kind, repo, digest)"
        " SELECT 2, repo, digest FROM manifests WHERE repo = ?1",
    };
    for (int i = 0; i < 2; i++) {
        if (sqlite3_prepare_v2(cur(c)->db, sql[i], -1, &s, NULL) != SQLITE_OK)
            return dberr(c, "queue repository", e);
        bind_text(s, 1, repo);
        int rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE)
            return dberr(c, "queue repository", e);
    }
    return 0;
}

int
meta_gc_link_delete(struct meta_conn *c, const char *repo, const char *ds, int64_t before,
                    struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_GC_LINK_DELETE);
    bind_text(s, 1, repo);
    bind_text(s, 2, ds);
    bind_int64(s, 3, before);
    if (run(c, s, e) < 0)
        return -1;
    if (changes(c) == 0)
        return 0;
    return repo_prune(c, repo, e) < 0 ? -1 : 1;
}

int
meta_gc_manifest_delete(struct meta_conn *c, const char *repo, const char *ds, int64_t before,
                        int retained, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_GC_MF_COLLECTABLE);
    bind_text(s, 1, repo);
    bind_text(s, 2, ds);
    bind_int64(s, 3, before);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return dberr(c, "read manifest", e);
    if (retained && run2(c, Q_GC_RETAIN_CASCADE, repo, ds, e) < 0)
        return -1;
    return meta_manifest_delete(c, repo, ds, e);
}

int
meta_gc_created(struct meta_conn *c, enum meta_gc_kind kind, const char *repo, const char *ds,
                int64_t *created, struct err *e)
{
    enum stmt_id id = kind == META_GC_BLOB   ? Q_GC_BLOB_CREATED
                      : kind == META_GC_LINK ? Q_GC_LINK_CREATED
                                             : Q_GC_MF_CREATED;
    return query_i64(c, id, repo ? repo : "", ds, created, "read gc candidate", e);
}

int
meta_gc_blob_delete(struct meta_conn *c, const char *ds, int64_t before, uint64_t *size,
                    struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_GC_BLOB_DELETE);
    bind_text(s, 1, ds);
    bind_int64(s, 2, before);
    int rc = sqlite3_step(s);
    uint64_t sz = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(s); /* RETURNING: the delete completes at DONE */
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return dberr(c, "delete blob", e);
    if (changes(c) == 0)
        return 0;
    s = metadb_q(c, Q_GC_PENDING_DELETE);
    bind_text(s, 1, ds);
    if (run(c, s, e) < 0)
        return -1;
    *size = sz;
    return 1;
}

int
meta_gc_tag_delete(struct meta_conn *c, const char *repo, const char *tag, const char *ds,
                   struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_GC_TAG_DELETE);
    bind_text(s, 1, repo);
    bind_text(s, 2, tag);
    bind_text(s, 3, ds);
    if (run(c, s, e) < 0)
        return -1;
    if (changes(c) == 0)
        return 0;
    return meta_gc_enqueue(c, META_GC_RETAINED, repo, ds, e) < 0 ? -1 : 1;
}

/* pulled: tags.pulled (v6), written in batches by storage_pulls_flush when
 * retention rules are configured; 0 when never recorded */
int
meta_tags_for_retention(struct meta_conn *c, const char *repo,
                        int (*fn)(void *arg, const char *tag, const char *ds, int64_t pushed,
                                  int64_t pulled),
                        void *arg, struct err *e)
{
    sqlite3_stmt *s = metadb_q(c, Q_TAGS_RETENTION);
    bind_text(s, 1, repo);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        const char *d = (const char *)sqlite3_column_text(s, 1);
        if (fn(arg, t ? t : "", d ? d : "", sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return dberr(c, "list tags", e);
    return 0;
}

/* ---- for ocireg check ----
 * Rare, whole-store reads: statements are prepared per call (not kept on
 * every connection) and read on the connection's current database, like the
 * gc listings above. */

/* check_stmt - prepare sql with up to two text binds and an integer third */
static sqlite3_stmt *
check_stmt(struct meta_conn *c, const char *sql, const char *t1, const char *t2, int64_t i3,
           struct err *e)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(cur(c)->db, sql, -1, &s, NULL) != SQLITE_OK) {
        dberr(c, "check: prepare", e);
        sqlite3_finalize(s);
        return NULL;
    }
    int np = sqlite3_bind_parameter_count(s);
    if (np >= 1)
        bind_text(s, 1, t1);
    if (np >= 2)
        bind_text(s, 2, t2);
    if (np >= 3)
        bind_int64(s, 3, i3);
    return s;
}

static const char *
col_text(sqlite3_stmt *s, int i)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    return t ? t : "";
}

int
meta_check_blobs_page(struct meta_conn *c, const char *last, long n,
                      int (*fn)(void *arg, const char *ds, uint64_t size), void *arg, int *more,
                      struct err *e)
{
    sqlite3_stmt *s = check_stmt(c,
                                 "SELECT digest, size FROM blobs WHERE digest > ?1"
                                 " ORDER BY digest LIMIT ?3",
                                 last ? last : "", NULL, limit_of(n), e);
    if (!s)
        return -1;
    int rc, m = 0;
    long i = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n >= 0 && i >= n) {
            m = 1;
            break;
        }
        i++;
        if (fn(arg, col_text(s, 0), (uint64_t)sqlite3_column_int64(s, 1)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    int ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : dberr(c, "check: list blobs", e);
    sqlite3_finalize(s);
    if (ret == 0 && more)
        *more = m;
    return ret;
}

int
meta_check_blob_row(struct meta_conn *c, const char *ds, uint64_t *size, struct err *e)
{
    sqlite3_stmt *s = check_stmt(c, "SELECT size FROM blobs WHERE digest = ?1", ds, NULL, 0, e);
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *size = (uint64_t)sqlite3_column_int64(s, 0);
    int ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : dberr(c, "check: read blob", e);
    sqlite3_finalize(s);
    return ret;
}

int
meta_check_users(struct meta_conn *c, const char *ds,
                 int (*fn)(void *arg, const char *repo, const char *mds, int kind), void *arg,
                 struct err *e)
{
    sqlite3_stmt *s = check_stmt(c,
                                 "SELECT repo, digest, -1 FROM manifests WHERE digest = ?1"
                                 " UNION ALL SELECT repo, digest, kind FROM manifest_refs"
                                 " WHERE ref = ?1",
                                 ds, NULL, 0, e);
    if (!s)
        return -1;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (fn(arg, col_text(s, 0), col_text(s, 1), sqlite3_column_int(s, 2)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    int ret = rc == SQLITE_DONE ? 0 : dberr(c, "check: list users", e);
    sqlite3_finalize(s);
    return ret;
}

/* each query gives (repo, digest, ref, a, b) */
static const char *const dangling_sql[] = {
    [META_DANGLING_LINK] = "SELECT l.repo, l.digest, '', 0, 0 FROM blob_links l"
                           " WHERE NOT EXISTS(SELECT 1 FROM blobs b WHERE b.digest = l.digest)",
    [META_DANGLING_BODY] = "SELECT m.repo, m.digest, '', m.size, 0 FROM manifests m"
                           " WHERE NOT EXISTS(SELECT 1 FROM blobs b WHERE b.digest = m.digest)",
    [META_DANGLING_BODY_SIZE] = "SELECT m.repo, m.digest, '', m.size, b.size FROM manifests m"
                                " JOIN blobs b ON b.digest = m.digest WHERE b.size <> m.size",
    [META_DANGLING_REF_BLOB] =
        "SELECT r.repo, r.digest, r.ref, 0, 0 FROM manifest_refs r WHERE r.kind = 0"
        " AND NOT EXISTS(SELECT 1 FROM blob_links l WHERE l.repo = r.repo AND l.digest = r.ref)"
        " AND EXISTS(SELECT 1 FROM manifests m WHERE m.repo = r.repo AND m.digest = r.digest)",
    [META_DANGLING_REF_MANIFEST] =
        "SELECT r.repo, r.digest, r.ref, 0, 0 FROM manifest_refs r WHERE r.kind = 1"
        " AND NOT EXISTS(SELECT 1 FROM manifests c WHERE c.repo = r.repo AND c.digest = r.ref)"
        " AND EXISTS(SELECT 1 FROM manifests m WHERE m.repo = r.repo AND m.digest = r.digest)",
    [META_DANGLING_REF_ORPHAN] =
        "SELECT DISTINCT r.repo, r.digest, '', 0, 0 FROM manifest_refs r"
        " WHERE NOT EXISTS(SELECT 1 FROM manifests m WHERE m.repo = r.repo"
        "  AND m.digest = r.digest)",
    [META_DANGLING_TAG] = "SELECT t.repo, t.digest, t.tag, 0, 0 FROM tags t"
                          " WHERE NOT EXISTS(SELECT 1 FROM manifests m WHERE m.repo = t.repo"
                          "  AND m.digest = t.digest)",
};

int
meta_check_dangling(struct meta_conn *c, int (*fn)(void *arg, const struct meta_dangling *d),
                    void *arg, struct err *e)
{
    for (size_t k = 0; k < sizeof(dangling_sql) / sizeof(dangling_sql[0]); k++) {
        sqlite3_stmt *s = check_stmt(c, dangling_sql[k], NULL, NULL, 0, e);
        if (!s)
            return -1;
        int rc, stop = 0;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            struct meta_dangling d = {
                .kind = (enum meta_dangling_kind)k,
                .repo = col_text(s, 0),
                .digest = col_text(s, 1),
                .ref = col_text(s, 2),
                .a = (uint64_t)sqlite3_column_int64(s, 3),
                .b = (uint64_t)sqlite3_column_int64(s, 4),
            };
            if (fn(arg, &d) != 0) {
                stop = 1;
                rc = SQLITE_DONE;
                break;
            }
        }
        int ret = rc == SQLITE_DONE ? 0 : dberr(c, "check: list dangling rows", e);
        sqlite3_finalize(s);
        if (ret < 0)
            return -1;
        if (stop)
            return 0;
    }
    return 0;
}

int
meta_check_counts(struct meta_conn *c, struct meta_check_counts *out, struct err *e)
{
    sqlite3_stmt *s = check_stmt(
        c,
        "SELECT (SELECT count(*) FROM blobs), (SELECT count(*) FROM blob_links),"
        " (SELECT count(*) FROM manifests), (SELECT count(*) FROM tags),"
        " (SELECT count(*) FROM manifests m WHERE m.subject IS NOT NULL AND NOT EXISTS("
        "  SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject))",
        NULL, NULL, 0, e);
    if (!s)
        return -1;
    int ret = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        out->blobs = (uint64_t)sqlite3_column_int64(s, 0);
        out->links = (uint64_t)sqlite3_column_int64(s, 1);
        out->manifests = (uint64_t)sqlite3_column_int64(s, 2);
        out->tags = (uint64_t)sqlite3_column_int64(s, 3);
        out->absent_subjects = (uint64_t)sqlite3_column_int64(s, 4);
    } else {
        ret = dberr(c, "check: count rows", e);
    }
    sqlite3_finalize(s);
    return ret;
}

int
meta_check_integrity(struct meta_conn *c, int (*fn)(void *arg, const char *msg), void *arg,
                     struct err *e)
{
    sqlite3_stmt *s = check_stmt(c, "PRAGMA quick_check", NULL, NULL, 0, e);
    if (!s)
        return -1;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *msg = col_text(s, 0);
        if (strcmp(msg, "ok") != 0 && fn(arg, msg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    int ret = rc == SQLITE_DONE ? 0 : dberr(c, "check: database integrity", e);
    sqlite3_finalize(s);
    return ret;
}

int
meta_check_refs_drop(struct meta_conn *c, const char *repo, const char *ds, struct err *e)
{
    sqlite3_stmt *s = check_stmt(c,
                                 "DELETE FROM manifest_refs WHERE repo = ?1 AND digest = ?2"
                                 " AND NOT EXISTS(SELECT 1 FROM manifests"
                                 "  WHERE repo = ?1 AND digest = ?2)",
                                 repo, ds, 0, e);
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return dberr(c, "check: drop reference rows", e);
    return changes(c) ? 1 : 0;
}

/* ---- figures for metrics ---- */

int
meta_stats(struct meta_conn *c, struct meta_stats *out, struct err *e)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(cur(c)->db,
                           "SELECT (SELECT count(*) FROM repos), (SELECT count(*) FROM blobs),"
                           " (SELECT coalesce(sum(size), 0) FROM blobs),"
                           " (SELECT count(*) FROM manifests), (SELECT count(*) FROM tags)",
                           -1, &s, NULL) != SQLITE_OK)
        return dberr(c, "prepare stats", e);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = (struct meta_stats){.repos = (uint64_t)sqlite3_column_int64(s, 0),
                                   .blobs = (uint64_t)sqlite3_column_int64(s, 1),
                                   .blob_bytes = (uint64_t)sqlite3_column_int64(s, 2),
                                   .manifests = (uint64_t)sqlite3_column_int64(s, 3),
                                   .tags = (uint64_t)sqlite3_column_int64(s, 4)};
    else
        dberr(c, "read stats", e);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

void
meta_sync_stats(struct meta *m, struct meta_sync_stats *out)
{
    struct gsync *g = &m->walsync;
    pthread_mutex_lock(&g->mu);
    out->fsyncs = g->rounds;
    out->waiters = g->waiters;
    memcpy(out->group, g->group, sizeof(out->group));
    pthread_mutex_unlock(&g->mu);
    out->durable_commits = __atomic_load_n(&m->durable_commits, __ATOMIC_RELAXED);
}

int
meta_failed(struct meta *m)
{
    return __atomic_load_n(&m->walsync.failed, __ATOMIC_RELAXED) != 0;
}
