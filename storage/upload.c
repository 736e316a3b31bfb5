/* upload.c - blob upload sessions.
 *
 * States of a session (spec end-4a .. end-6):
 *
 *   (none) --start--> OPEN --acquire--> LEASED --write*--> LEASED --release--> OPEN
 *                      |                  |--commit ok--> (blob installed, row gone)
 *                      |                  |--commit fails / write fails--> (destroyed)
 *                      '--cancel / expire--> (destroyed)
 *
 * Where a session lives:
 *   uploads/<uuid>        the bytes received so far (created before the row)
 *   uploads row           uuid, repo, algorithm, creation time (written once: a
 *                         PATCH costs no database write)
 *   struct upload         in st->uploads (hash table under st->mu): running hash,
 *                         offset, lease flag, last use. Absent after a restart: acquire then
 *                         rebuilds it by hashing the whole file, and the file's
 *                         length is the offset (after kill -9 the file is the truth:
 *                         every byte in it was written by a request that got no
 *                         error, and a client that got an error resumes from the
 *                         offset GET reports).
 *
 * Expiry: a session whose row is older than the expiry and whose in-memory last
 * use (if any) is too, and which is not leased, is removed.
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
    }
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

static int
row_delete(struct storage_handle *h, const char *uuid, struct err *e)
{
    if (metadb_begin(h, e) < 0)
        return -1;
    sqlite3_stmt *s = metadb_q(h, Q_UP_DELETE);
    metadb_bind_text(s, 1, uuid);
    if (metadb_run(h, s, e) < 0) {
        metadb_rollback(h);
        return -1;
    }
    return metadb_commit(h, e);
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
    struct upload *u = calloc(1, sizeof(*u));
    if (!u || !(u->hash = hasher_new(algo))) {
        free(u);
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    u->st = st;
    u->fd = -1;
    u->algo = algo;
    u->last_used = now_sec();
    memcpy(u->uuid, uuid, sizeof(uuid));
    copy_name(u->repo, sizeof(u->repo), repo);

    int fd = openat(st->uploadsfd, uuid, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        upload_free(u);
        return err_sys(e, ERR_IO, errno, "create upload file");
    }
    close(fd);
    if (metadb_begin(h, e) < 0)
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
    pthread_mutex_lock(&st->mu);
    table_insert(st, u);
    pthread_mutex_unlock(&st->mu);
    memcpy(uuid_out, uuid, sizeof(uuid));
    return 0;
fail:
    unlinkat(st->uploadsfd, uuid, 0);
    upload_free(u);
    return -1;
}

struct upload *
storage_upload_acquire(struct storage_handle *h, const char *repo, const char *uuid, struct err *e)
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
    uint64_t size;
    struct hasher *hh = NULL;
    if (blobstore_hash_fd(fd, algo, NULL, &size, &hh, e) < 0) {
        drop(u);
        return NULL;
    }
    /* status reads hash != NULL under the lock to tell a rebuilt entry */
    pthread_mutex_lock(&st->mu);
    u->algo = algo;
    u->hash = hh;
    __atomic_store_n(&u->offset, size, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&st->mu);
    return u;
}

uint64_t
upload_offset(const struct upload *u)
{
    return __atomic_load_n(&u->offset, __ATOMIC_ACQUIRE);
}

int
upload_write(struct upload *u, const void *data, size_t n, struct err *e)
{
    if (n == 0)
        return 0;
    uint64_t off = u->offset;
    if (blobstore_write_all(u->st, u->fd, data, n, off, e) < 0) {
        /* ENOSPC/EIO: free the space now, the client has to start over anyway */
        destroy(u->h, u);
        return -1;
    }
    hasher_update(u->hash, data, n);
    __atomic_store_n(&u->offset, off + n, __ATOMIC_RELEASE);
    return 0;
}

void
upload_release(struct upload *u)
{
    if (!u)
        return;
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

    digest_format(&got, ds);
    if (metadb_begin(h, e) < 0)
        goto fail;
    /* inside the write lock, so gc (which unlinks under the same lock) cannot
     * remove the file between this check and our row */
    int ex = blobstore_exists(st, &got, size, e);
    if (ex <= 0) {
        if (ex == 0)
            err_set(e, ERR_IO, 0, "blob file vanished during commit, retry");
        metadb_rollback(h);
        goto fail;
    }
    int64_t now = now_sec();
    sqlite3_stmt *s = metadb_q(h, Q_BLOB_INSERT);
    metadb_bind_text(s, 1, ds);
    metadb_bind_int64(s, 2, (int64_t)size);
    metadb_bind_int64(s, 3, now);
    if (metadb_run(h, s, e) < 0)
        goto fail_txn;
    s = metadb_q(h, Q_REPO_INSERT);
    metadb_bind_text(s, 1, u->repo);
    if (metadb_run(h, s, e) < 0)
        goto fail_txn;
    s = metadb_q(h, Q_LINK_INSERT);
    metadb_bind_text(s, 1, u->repo);
    metadb_bind_text(s, 2, ds);
    metadb_bind_int64(s, 3, now);
    if (metadb_run(h, s, e) < 0)
        goto fail_txn;
    s = metadb_q(h, Q_UP_DELETE);
    metadb_bind_text(s, 1, u->uuid);
    if (metadb_run(h, s, e) < 0)
        goto fail_txn;
    if (metadb_commit(h, e) < 0)
        goto fail;
    drop(u);
    return 0;
fail_txn:
    metadb_rollback(h);
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
