/* upload.c - blob upload sessions.
 *
 * States of a session (spec end-4a .. end-6):
 *
 *   (none) --start--> OPEN --acquire--> LEASED --write*--> LEASED --release--> OPEN
 *                      |                  |--commit ok--> (blob installed, row gone)
 *                      |                  |--commit fails / write fails--> (destroyed)
 *                      |                  '--commit: database error after the file
 *                      |                     was installed--> INSTALLED (released)
 *                      '--cancel / expire--> (destroyed)
 *   INSTALLED --acquire--> LEASED(installed) --commit (same digest)--> (rows, done)
 *                                              --write of bytes--> (destroyed)
 *
 * INSTALLED is in memory only (u->installed): the data was verified and renamed
 * into blobs/, the session row is still there, uploads/<uuid> is gone. A restart
 * forgets it; acquire then finds the row without its file and reports the
 * session unknown (the client uploads again; the blob file is garbage for gc
 * or reused by the next upload of that digest).
 *
 * Where a session lives:
 *   uploads/<uuid>        the bytes received so far (created before the row)
 *   uploads row           uuid, repo, algorithm, creation time (written once: a
 *                         PATCH costs no database write)
 *   struct upload         in st->uploads (hash table under st->mu): running hash,
 *                         offset, lease flag, last use. Absent after a restart: acquire then
 *                         rebuilds it by hashing the whole file (storage_upload_lease
 *                         leaves that to upload_rehash, which the server runs on a
 *                         blocking-work thread), and the file's length is the offset (after kill -9 the file is the truth:
 *                         every byte in it was written by a request that got no
 *                         error, and a client that got an error resumes from the
 *                         offset GET reports).
 *
 * Expiry: a session whose row is older than the expiry and whose in-memory last
 * use (if any) is too, and which is not leased, is removed. storage_expire_uploads
 * may run on any thread with its own handle (a timer): it claims each candidate
 * like acquire does, so a leased session (a request writing or committing it, or
 * an entry being rebuilt) is skipped, and a session being started is in the
 * table, leased, before its row exists.
 *
 * Limits: st->nsessions and the per-repository counts (st->counts) count the
 * session rows. storage_upload_start takes one of each under st->mu before it
 * creates anything (ERR_TOOMANYREQUESTS over max_uploads / max_uploads_per_repo);
 * the one place that deletes a session row (Q_UP_DELETE ... RETURNING repo, in
 * row_delete and in upload_commit's transaction) gives it back after its commit.
 * storage_open counts the rows after recovery. A row whose delete failed keeps
 * its count until expiry or the next start removes it.
 *
 * Size: upload_write refuses to go past max_blob_size (ERR_TOO_LARGE) and
 * destroys the session, so the space is freed at once.
 *
 * Invariants:
 *   - only the lease holder touches hash, fd and the file; offset is also read by
 *     storage_upload_status without the lease, hence atomic;
 *   - "claiming" a uuid (acquire, cancel, expire) puts a leased entry in the table
 *     under st->mu first, so two requests never rebuild or remove the same session;
 *   - a session's file is created before its row and removed before its row, so a
 *     crash leaves at most a file without a row (removed by storage_open) or a
 *     row without a file (dropped by storage_open / treated as unknown);
 *   - commit installs the file (fsync, rename, dir fsync) before the blob row. */
#include "storage/storage_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/log.h"

#include "common/banned.h"

static unsigned
bucket_of(const char *uuid)
{
    unsigned h = 2166136261u;
    for (const char *p = uuid; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % UPLOAD_BUCKETS;
}

/* under st->mu */
static struct upload *
table_find(struct storage *st, const char *uuid)
{
    for (struct upload *u = st->uploads[bucket_of(uuid)]; u; u = u->next)
        if (strcmp(u->uuid, uuid) == 0)
            return u;
    return NULL;
}

static void
table_insert(struct storage *st, struct upload *u)
{
    unsigned b = bucket_of(u->uuid);
    u->next = st->uploads[b];
    st->uploads[b] = u;
}

static void
table_remove(struct storage *st, struct upload *u)
{
    struct upload **pp = &st->uploads[bucket_of(u->uuid)];
    while (*pp && *pp != u)
        pp = &(*pp)->next;
    if (*pp)
        *pp = u->next;
}

/* ---- session counts (under st->mu) ---- */

static struct upload_count *
count_find(struct storage *st, const char *repo, struct upload_count ***pp_out)
{
    struct upload_count **pp = &st->counts[bucket_of(repo)];
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->repo, repo) == 0)
            break;
    if (pp_out)
        *pp_out = pp;
    return *pp;
}

static int
count_add(struct storage *st, const char *repo, unsigned n)
{
    struct upload_count *c = count_find(st, repo, NULL);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return -1;
        size_t l = strlen(repo);
        if (l > NAME_MAX_LEN)
            l = NAME_MAX_LEN;
        memcpy(c->repo, repo, l);
        unsigned b = bucket_of(c->repo);
        c->next = st->counts[b];
        st->counts[b] = c;
    }
    c->n += n;
    st->nsessions += n;
    return 0;
}

/* quota_take - reserve one session of repo, or ERR_TOOMANYREQUESTS */
static int
quota_take(struct storage *st, const char *repo, struct err *e)
{
    pthread_mutex_lock(&st->mu);
    int rc = 0;
    struct upload_count *c = count_find(st, repo, NULL);
    if (st->nsessions >= st->max_uploads)
        rc = err_set(e, ERR_TOOMANYREQUESTS, 0, "too many upload sessions (max %u)",
                     st->max_uploads);
    else if (c && c->n >= st->max_uploads_per_repo)
        rc = err_set(e, ERR_TOOMANYREQUESTS, 0,
                     "too many upload sessions in this repository (max %u)",
                     st->max_uploads_per_repo);
    else if (count_add(st, repo, 1) < 0)
        rc = err_set(e, ERR_NOMEM, 0, "out of memory");
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* quota_give - a session row of repo is gone */
static void
quota_give(struct storage *st, const char *repo)
{
    pthread_mutex_lock(&st->mu);
    struct upload_count **pp;
    struct upload_count *c = count_find(st, repo, &pp);
    if (c) {
        if (st->nsessions > 0)
            st->nsessions--;
        if (--c->n == 0) {
            *pp = c->next;
            free(c);
        }
    }
    pthread_mutex_unlock(&st->mu);
}

int
upload_counts_load(struct storage_handle *h, struct err *e)
{
    struct storage *st = h->st;
    sqlite3_stmt *s = metadb_q(h, Q_UP_COUNTS);
    int rc;
    pthread_mutex_lock(&st->mu);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *repo = (const char *)sqlite3_column_text(s, 0);
        int64_t n = sqlite3_column_int64(s, 1);
        if (repo && n > 0 && count_add(st, repo, (unsigned)n) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    pthread_mutex_unlock(&st->mu);
    sqlite3_reset(s);
    if (rc == SQLITE_NOMEM)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    if (rc != SQLITE_DONE)
        return metadb_err(h, "count upload sessions", e);
    return 0;
}

static void
upload_free(struct upload *u)
{
    if (!u)
        return;
    if (u->fd >= 0)
        close(u->fd);
    hasher_free(u->hash);
    free(u);
}

void
upload_table_free(struct storage *st)
{
    for (int b = 0; b < UPLOAD_BUCKETS; b++) {
        struct upload *u = st->uploads[b];
        while (u) {
            struct upload *next = u->next;
            upload_free(u);
            u = next;
        }
        st->uploads[b] = NULL;
        struct upload_count *c = st->counts[b];
        while (c) {
            struct upload_count *next = c->next;
            free(c);
            c = next;
        }
        st->counts[b] = NULL;
    }
    st->nsessions = 0;
}

static void
copy_name(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* claim - lease the in-memory entry of uuid, or put a leased placeholder (hash
 * NULL) there when there is none. repo NULL matches any. *fresh = 1 for a
 * placeholder. */
static struct upload *
claim(struct storage *st, const char *repo, const char *uuid, int *fresh, struct err *e)
{
    pthread_mutex_lock(&st->mu);
    struct upload *u = table_find(st, uuid);
    if (u) {
        if (repo && strcmp(u->repo, repo) != 0) {
            pthread_mutex_unlock(&st->mu);
            err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
            return NULL;
        }
        if (u->leased) {
            pthread_mutex_unlock(&st->mu);
            err_set(e, ERR_BUSY, 0, "upload is in use by another request");
            return NULL;
        }
        u->leased = 1;
        pthread_mutex_unlock(&st->mu);
        *fresh = 0;
        return u;
    }
    u = calloc(1, sizeof(*u));
    if (!u) {
        pthread_mutex_unlock(&st->mu);
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    u->st = st;
    u->fd = -1;
    u->leased = 1;
    copy_name(u->uuid, sizeof(u->uuid), uuid);
    copy_name(u->repo, sizeof(u->repo), repo ? repo : "");
    table_insert(st, u);
    pthread_mutex_unlock(&st->mu);
    *fresh = 1;
    return u;
}

/* drop - remove a leased entry from the table and free it */
static void
drop(struct upload *u)
{
    struct storage *st = u->st;
    pthread_mutex_lock(&st->mu);
    table_remove(st, u);
    pthread_mutex_unlock(&st->mu);
    upload_free(u);
}

static void
unlease(struct upload *u)
{
    struct storage *st = u->st;
    pthread_mutex_lock(&st->mu);
    u->leased = 0;
    u->h = NULL;
    pthread_mutex_unlock(&st->mu);
}

/* row_get - the session row: 1 found (repo copied, algo), 0 none, -1 error */
static int
row_get(struct storage_handle *h, const char *uuid, char *repo, size_t repo_sz,
        enum digest_algo *algo, struct err *e)
{
    sqlite3_stmt *s = metadb_q(h, Q_UP_GET);
    metadb_bind_text(s, 1, uuid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 0);
        copy_name(repo, repo_sz, r ? r : "");
        *algo = sqlite3_column_int(s, 1) == DIGEST_SHA512 ? DIGEST_SHA512 : DIGEST_SHA256;
        sqlite3_reset(s);
        return 1;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    return metadb_err(h, "read upload", e);
}

/* up_delete - inside a transaction: delete the session row. 1 with its repo
 * copied (NAME_MAX_LEN + 1 bytes), 0 when there was none, -1 */
static int
up_delete(struct storage_handle *h, const char *uuid, char *repo, struct err *e)
{
    sqlite3_stmt *s = metadb_q(h, Q_UP_DELETE);
    metadb_bind_text(s, 1, uuid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 0);
        copy_name(repo, NAME_MAX_LEN + 1, r ? r : "");
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return metadb_err(h, "delete upload", e);
}

/* row_delete - delete the session row in its own (light: losing it to a power
 * failure only brings back a session that expiry removes) transaction and give
 * its count back */
static int
row_delete(struct storage_handle *h, const char *uuid, struct err *e)
{
    char repo[NAME_MAX_LEN + 1];
    if (metadb_begin_light(h, e) < 0)
        return -1;
    int del = up_delete(h, uuid, repo, e);
    if (del < 0) {
        metadb_rollback(h);
        return -1;
    }
    if (metadb_commit(h, e) < 0)
        return -1;
    if (del)
        quota_give(h->st, repo);
    return 0;
}

/* destroy - file first, then the row (a crash in between leaves a row without a
 * file, which storage_open drops); then the in-memory entry. */
static void
destroy(struct storage_handle *h, struct upload *u)
{
    struct storage *st = u->st;
    if (u->fd >= 0) {
        close(u->fd);
        u->fd = -1;
    }
    if (unlinkat(st->uploadsfd, u->uuid, 0) < 0 && errno != ENOENT)
        log_warn("storage", NULL, "remove upload file failed uuid=%s errno=%d", u->uuid, errno);
    struct err de;
    if (h && row_delete(h, u->uuid, &de) < 0)
        log_warn("storage", NULL, "remove upload row failed uuid=%s: %s", u->uuid, de.msg);
    drop(u);
}

static int64_t
now_sec(void)
{
    return (int64_t)time(NULL);
}

int
storage_upload_start(struct storage_handle *h, const char *repo, enum digest_algo algo,
                     char *uuid_out, struct err *e)
{
    struct storage *st = h->st;
    if (!repo || name_validate(repo, strlen(repo), e) < 0)
        return -1;
    if (algo != DIGEST_SHA256 && algo != DIGEST_SHA512)
        return err_set(e, ERR_UNSUPPORTED, 0, "unsupported digest algorithm");
    char uuid[UPLOAD_ID_LEN + 1];
    if (uuid_generate(uuid, e) < 0)
        return -1;
    if (quota_take(st, repo, e) < 0)
        return -1;
    struct upload *u = calloc(1, sizeof(*u));
    if (!u || !(u->hash = hasher_new(algo))) {
        free(u);
        quota_give(st, repo);
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    u->st = st;
    u->fd = -1;
    u->algo = algo;
    u->last_used = now_sec();
    memcpy(u->uuid, uuid, sizeof(uuid));
    copy_name(u->repo, sizeof(u->repo), repo);
    /* in the table, leased, before the row exists: an expiry running now skips it */
    u->leased = 1;
    pthread_mutex_lock(&st->mu);
    table_insert(st, u);
    pthread_mutex_unlock(&st->mu);

    int fd = openat(st->uploadsfd, uuid, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_sys(e, ERR_IO, errno, "create upload file");
        drop(u);
        quota_give(st, repo);
        return -1;
    }
    close(fd);
    /* light: a session row lost to a power failure is a session the client
     * restarts, and a row must not cost a WAL fsync (no file is durable either) */
    if (metadb_begin_light(h, e) < 0)
        goto fail;
    sqlite3_stmt *s = metadb_q(h, Q_UP_INSERT);
    metadb_bind_text(s, 1, uuid);
    metadb_bind_text(s, 2, repo);
    sqlite3_bind_int(s, 3, (int)algo);
    metadb_bind_int64(s, 4, now_sec());
    if (metadb_run(h, s, e) < 0) {
        metadb_rollback(h);
        goto fail;
    }
    if (metadb_commit(h, e) < 0)
        goto fail;
    unlease(u);
    memcpy(uuid_out, uuid, sizeof(uuid));
    return 0;
fail:
    unlinkat(st->uploadsfd, uuid, 0);
    drop(u);
    quota_give(st, repo);
    return -1;
}

struct upload *
storage_upload_lease(struct storage_handle *h, const char *repo, const char *uuid, struct err *e)
{
    struct storage *st = h->st;
    if (!repo || !uuid_valid(uuid)) {
        err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
        return NULL;
    }
    int fresh;
    struct upload *u = claim(st, repo, uuid, &fresh, e);
    if (!u)
        return NULL;
    u->h = h;
    __atomic_store_n(&u->last_used, now_sec(), __ATOMIC_RELEASE);
    if (!fresh && u->installed)
        return u; /* its data is in blobs/ already, only the commit is left */
    int fd = openat(st->uploadsfd, uuid, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            /* row without file: what storage_open would drop */
            err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
            row_delete(h, uuid, NULL);
            drop(u);
            return NULL;
        }
        err_sys(e, ERR_IO, errno, "open upload file");
        if (fresh)
            drop(u);
        else
            unlease(u);
        return NULL;
    }
    u->fd = fd;
    if (!fresh)
        return u;

    /* no in-memory state (restart): the row says which repo and algorithm, the
     * file holds the bytes */
    char rrepo[NAME_MAX_LEN + 1];
    enum digest_algo algo;
    int found = row_get(h, uuid, rrepo, sizeof(rrepo), &algo, e);
    if (found <= 0 || strcmp(rrepo, repo) != 0) {
        if (found >= 0)
            err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
        drop(u);
        return NULL;
    }
    /* the hash is rebuilt by upload_rehash (hash still NULL: a placeholder) */
    u->algo = algo;
    return u;
}

int
upload_needs_rehash(const struct upload *u)
{
    return u->hash == NULL;
}

int
upload_rehash(struct upload *u, struct err *e)
{
    struct storage *st = u->st;
    if (u->hash)
        return 0;
    uint64_t size;
    struct hasher *hh = NULL;
    if (blobstore_hash_fd(u->fd, u->algo, NULL, &size, &hh, e) < 0) {
        drop(u);
        return -1;
    }
    /* status reads hash != NULL under the lock to tell a rebuilt entry */
    pthread_mutex_lock(&st->mu);
    u->hash = hh;
    __atomic_store_n(&u->offset, size, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&st->mu);
    return 0;
}

struct upload *
storage_upload_acquire(struct storage_handle *h, const char *repo, const char *uuid, struct err *e)
{
    struct upload *u = storage_upload_lease(h, repo, uuid, e);
    if (u && upload_rehash(u, e) < 0)
        return NULL;
    return u;
}

void
upload_handle_set(struct upload *u, struct storage_handle *h)
{
    u->h = h;
}

uint64_t
upload_offset(const struct upload *u)
{
    return __atomic_load_n(&u->offset, __ATOMIC_ACQUIRE);
}

/* Early writeback: with fsync on, the commit's fsync would otherwise find the
 * whole blob dirty (a 256 MiB push spent 230-250 ms of its ~650 ms there when
 * the disk was busy). Every UPLOAD_WB_STEP bytes the pages written so far are
 * handed to the disk (SYNC_FILE_RANGE_WRITE starts the I/O and does not wait
 * for it), so the disk works while the rest arrives. Measured, 256 MiB pushes
 * (posix path, interleaved): 2 MiB steps 672-703 MB/s, 8 MiB 588-668, 32 MiB
 * 619-655, none 628-653, server CPU per GB the same. */
#define UPLOAD_WB_STEP (2u << 20)

static void
writeback_maybe(struct upload *u)
{
    uint64_t off = u->offset;
    if (!u->st->fsync || off < u->wb_start || off - u->wb_start < UPLOAD_WB_STEP)
        return;
    if (sync_file_range(u->fd, (off_t)u->wb_start, (off_t)(off - u->wb_start),
                        SYNC_FILE_RANGE_WRITE) == 0)
        u->wb_start = off;
}

int
upload_write(struct upload *u, const void *data, size_t n, struct err *e)
{
    if (n == 0)
        return 0;
    if (u->installed) {
        err_set(e, ERR_BLOB_UPLOAD_INVALID, 0, "upload already finished, only a retry of the PUT is possible");
        destroy(u->h, u);
        return -1;
    }
    uint64_t off = u->offset;
    uint64_t max = u->st->max_blob_size;
    if (max && (n > max || off > max - n)) {
        err_set(e, ERR_TOO_LARGE, 0, "blob larger than the limit of %llu bytes",
                (unsigned long long)max);
        destroy(u->h, u);
        return -1;
    }
    if (blobstore_write_all(u->st, u->fd, data, n, off, e) < 0) {
        /* ENOSPC/EIO: free the space now, the client has to start over anyway */
        destroy(u->h, u);
        return -1;
    }
    hasher_update(u->hash, data, n);
    __atomic_store_n(&u->offset, off + n, __ATOMIC_RELEASE);
    writeback_maybe(u);
    return 0;
}

/* a failure of the asynchronous path: the session is destroyed as soon as no
 * write names its descriptor any more */
static int
write_doom(struct upload *u, struct err *e)
{
    if (u->wr_inflight == 0) {
        destroy(u->h, u);
        return -1;
    }
    if (!u->wr_failed) {
        u->wr_failed = 1;
        if (e)
            u->wr_err = *e;
        else
            err_set(&u->wr_err, ERR_IO, 0, "upload write failed");
    }
    return -1;
}

int
upload_write_begin(struct upload *u, const void *data, size_t n, int *fd, uint64_t *off,
                   struct err *e)
{
    if (u->wr_failed) {
        if (e)
            *e = u->wr_err;
        return -1;
    }
    if (u->wr_inflight == 0)
        u->wr_next = u->offset;
    if (u->installed) {
        err_set(e, ERR_BLOB_UPLOAD_INVALID, 0, "upload already finished, only a retry of the PUT is possible");
        return write_doom(u, e);
    }
    uint64_t at = u->wr_next;
    uint64_t max = u->st->max_blob_size;
    if (max && (n > max || at > max - n)) {
        err_set(e, ERR_TOO_LARGE, 0, "blob larger than the limit of %llu bytes",
                (unsigned long long)max);
        return write_doom(u, e);
    }
    hasher_update(u->hash, data, n);
    u->wr_next = at + n;
    u->wr_inflight++;
    *fd = u->fd;
    *off = at;
    return 0;
}

int
upload_write_end(struct upload *u, uint64_t off, size_t n, long res, struct err *e)
{
    if (u->wr_inflight == 0) {
        err_set(e, ERR_INTERNAL, 0, "upload_write_end without a write in flight");
        return -1;
    }
    u->wr_inflight--;
    /* the fault hook of the posix path (blobstore_write_all) counts here: the
     * bytes may be on disk, but the session fails as if the write had */
    if (res >= 0 && fault_hit(u->st, FAULT_WRITE))
        res = -(long)errno;
    if (res >= 0 && (uint64_t)res != n)
        res = -EIO; /* the caller continues short writes: this is no progress */
    if (res < 0 && !u->wr_failed) {
        u->wr_failed = 1;
        err_sys(&u->wr_err, ERR_IO, (int)-res, "write blob data");
    }
    if (u->wr_failed) {
        if (e)
            *e = u->wr_err;
        if (u->wr_inflight == 0) {
            /* ENOSPC/EIO: free the space now, the client has to start over */
            destroy(u->h, u);
        }
        return -1;
    }
    /* completions normally come in order (io_uring runs buffered writes to one
     * file one after another); the offset never claims bytes not yet written */
    if (off == u->offset)
        __atomic_store_n(&u->offset, off + n, __ATOMIC_RELEASE);
    if (u->wr_inflight == 0)
        __atomic_store_n(&u->offset, u->wr_next, __ATOMIC_RELEASE);
    writeback_maybe(u);
    return 0;
}

uint64_t
upload_size_limit(const struct upload *u)
{
    return u->st->max_blob_size;
}

void
upload_release(struct upload *u)
{
    if (!u)
        return;
    if (!u->hash) {
        /* leased and never re-hashed: forget the placeholder (the session stays
         * in its row and file; the next acquire rebuilds it) */
        drop(u);
        return;
    }
    if (u->fd >= 0) {
        close(u->fd);
        u->fd = -1;
    }
    __atomic_store_n(&u->last_used, now_sec(), __ATOMIC_RELEASE);
    unlease(u);
}

int
upload_commit(struct upload *u, const struct digest *expected, int64_t expected_size, struct err *e)
{
    struct storage *st = u->st;
    struct storage_handle *h = u->h;
    uint64_t size = u->offset;
    struct digest got;
    char ds[DIGEST_STR_MAX];

    if (!expected) {
        err_set(e, ERR_DIGEST_INVALID, 0, "digest missing");
        goto fail;
    }
    if (u->installed) {
        /* a retry after a database error: the data is already in blobs/ */
        if (!digest_equal(&u->installed_digest, expected)) {
            err_set(e, ERR_DIGEST_INVALID, 0, "digest does not match the uploaded content");
            goto fail;
        }
        if (expected_size >= 0 && (uint64_t)expected_size != size) {
            err_set(e, ERR_SIZE_INVALID, 0, "upload size %llu does not match %lld",
                    (unsigned long long)size, (long long)expected_size);
            goto fail;
        }
        got = u->installed_digest;
        goto rows;
    }
    if (expected_size >= 0 && (uint64_t)expected_size != size) {
        err_set(e, ERR_SIZE_INVALID, 0, "upload size %llu does not match %lld",
                (unsigned long long)size, (long long)expected_size);
        goto fail;
    }
    if (expected->algo == u->algo) {
        hasher_final(u->hash, &got);
    } else {
        /* the client finished with another algorithm than the session hashed
         * with: hash the file again */
        uint64_t sz2;
        if (blobstore_hash_fd(u->fd, expected->algo, &got, &sz2, NULL, e) < 0)
            goto fail;
    }
    if (!digest_equal(&got, expected)) {
        err_set(e, ERR_DIGEST_INVALID, 0, "digest does not match the uploaded content");
        goto fail;
    }
    if (blobstore_fsync(st, u->fd, e) < 0)
        goto fail;
    close(u->fd);
    u->fd = -1;
    if (blobstore_install(st, st->uploadsfd, u->uuid, &got, size, e) < 0)
        goto fail;
    u->installed = 1;
    u->installed_digest = got;

rows:
    digest_format(&got, ds);
    /* from here a database error (busy after the timeout, disk full, ...) keeps
     * the session: the verified data is in blobs/, a retried PUT only has to
     * commit the rows */
    if (metadb_begin(h, e) < 0)
        goto keep;
    /* inside the write lock, so gc (which unlinks under the same lock) cannot
     * remove the file between this check and our row */
    int ex = blobstore_exists(st, &got, size, e);
    if (ex <= 0) {
        if (ex == 0)
            err_set(e, ERR_IO, 0, "blob file vanished during commit, retry");
        metadb_rollback(h);
        goto fail;
    }
    /* (any failure below is a database one) */
    int64_t now = now_sec();
    sqlite3_stmt *s = metadb_q(h, Q_BLOB_INSERT);
    metadb_bind_text(s, 1, ds);
    metadb_bind_int64(s, 2, (int64_t)size);
    metadb_bind_int64(s, 3, now);
    if (metadb_run(h, s, e) < 0)
        goto keep_txn;
    s = metadb_q(h, Q_REPO_INSERT);
    metadb_bind_text(s, 1, u->repo);
    if (metadb_run(h, s, e) < 0)
        goto keep_txn;
    s = metadb_q(h, Q_LINK_INSERT);
    metadb_bind_text(s, 1, u->repo);
    metadb_bind_text(s, 2, ds);
    metadb_bind_int64(s, 3, now);
    if (metadb_run(h, s, e) < 0)
        goto keep_txn;
    char rrepo[NAME_MAX_LEN + 1];
    int del = up_delete(h, u->uuid, rrepo, e);
    if (del < 0)
        goto keep_txn;
    if (metadb_commit(h, e) < 0)
        goto keep;
    if (del)
        quota_give(st, rrepo);
    drop(u);
    return 0;
keep_txn:
    metadb_rollback(h);
keep:
    log_warn("storage", NULL, "upload commit kept for a retry uuid=%s digest=%s: %s", u->uuid, ds,
             e ? e->msg : "?");
    upload_release(u);
    return -1;
fail:
    destroy(h, u);
    return -1;
}

int
storage_upload_status(struct storage_handle *h, const char *repo, const char *uuid,
                      uint64_t *offset, struct err *e)
{
    struct storage *st = h->st;
    if (!repo || !uuid_valid(uuid))
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
    pthread_mutex_lock(&st->mu);
    struct upload *u = table_find(st, uuid);
    if (u && u->hash) {
        int same = strcmp(u->repo, repo) == 0;
        uint64_t off = upload_offset(u);
        pthread_mutex_unlock(&st->mu);
        if (!same)
            return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
        *offset = off;
        return 0;
    }
    pthread_mutex_unlock(&st->mu);
    /* not in memory (restart) or being rebuilt: the file's length is the offset */
    char rrepo[NAME_MAX_LEN + 1];
    enum digest_algo algo;
    int found = row_get(h, uuid, rrepo, sizeof(rrepo), &algo, e);
    if (found < 0)
        return -1;
    if (!found || strcmp(rrepo, repo) != 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
    struct stat sb;
    if (fstatat(st->uploadsfd, uuid, &sb, 0) < 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
        return err_sys(e, ERR_IO, errno, "stat upload");
    }
    *offset = (uint64_t)sb.st_size;
    return 0;
}

/* remove_claimed - a claimed session: row and file go. For a placeholder the row
 * must exist (and match repo when given). */
static int
remove_claimed(struct storage_handle *h, struct upload *u, int fresh, const char *repo,
               struct err *e)
{
    if (fresh) {
        char rrepo[NAME_MAX_LEN + 1];
        enum digest_algo algo;
        int found = row_get(h, u->uuid, rrepo, sizeof(rrepo), &algo, e);
        if (found <= 0 || (repo && strcmp(rrepo, repo) != 0)) {
            if (found >= 0)
                err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
            drop(u);
            return -1;
        }
    }
    destroy(h, u);
    return 0;
}

int
storage_upload_cancel(struct storage_handle *h, const char *repo, const char *uuid, struct err *e)
{
    if (!repo || !uuid_valid(uuid))
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
    int fresh;
    struct upload *u = claim(h->st, repo, uuid, &fresh, e);
    if (!u)
        return -1;
    return remove_claimed(h, u, fresh, repo, e);
}

int
storage_expire_uploads(struct storage_handle *h, struct err *e)
{
    struct storage *st = h->st;
    if (st->upload_expiry_sec <= 0)
        return 0;
    size_t n = 0, cap = 0;
    char(*ids)[UPLOAD_ID_LEN + 1] = NULL;
    sqlite3_stmt *s = metadb_q(h, Q_UP_EXPIRED);
    metadb_bind_int64(s, 1, now_sec() - st->upload_expiry_sec);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        if (!id || !uuid_valid(id))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            void *p = realloc(ids, nc * sizeof(*ids));
            if (!p) {
                sqlite3_reset(s);
                free(ids);
                return err_set(e, ERR_NOMEM, 0, "out of memory");
            }
            ids = p;
            cap = nc;
        }
        memcpy(ids[n++], id, UPLOAD_ID_LEN + 1);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(ids);
        return metadb_err(h, "list expired uploads", e);
    }
    int removed = 0;
    int64_t cutoff = now_sec() - st->upload_expiry_sec;
    for (size_t i = 0; i < n; i++) {
        int fresh;
        struct upload *u = claim(st, NULL, ids[i], &fresh, NULL);
        if (!u)
            continue; /* leased: in use right now, not idle */
        if (!fresh && __atomic_load_n(&u->last_used, __ATOMIC_ACQUIRE) >= cutoff) {
            unlease(u);
            continue;
        }
        if (remove_claimed(h, u, fresh, NULL, NULL) == 0)
            removed++;
    }
    free(ids);
    return removed;
}
