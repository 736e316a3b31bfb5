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
 * the one place that deletes a session row (meta_upload_delete, in
 * row_delete and in upload_commit's transaction) gives it back after its commit.
 * storage_open counts the rows after recovery. A row whose delete failed keeps
 * its count until expiry or the next start removes it.
 *
 * Size: upload_write refuses to go past max_blob_size (ERR_TOO_LARGE) and
 * destroys the session, so the space is freed at once.
 *
 * Invariants:
 *   - only the lease holder touches hash, the writer and the bytes; offset is also read by
 *     storage_upload_status without the lease, hence atomic;
 *   - "claiming" a uuid (acquire, cancel, expire) puts a leased entry in the table
 *     under st->mu first, so two requests never rebuild or remove the same session;
 *   - a session's file is created before its row and removed before its row, so a
 *     crash leaves at most a file without a row (removed by storage_open) or a
 *     row without a file (dropped by storage_open / treated as unknown);
 *   - commit installs the file (fsync, rename, dir fsync) before the blob row. */
#include "storage/storage_internal.h"
#include "storage/blob.h"
#include "storage/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static int
count_row(void *arg, const char *uuid, const char *repo)
{
    (void)uuid;
    return count_add(arg, repo, 1) < 0;
}

int
upload_counts_load(struct storage_handle *h, struct err *e)
{
    struct storage *st = h->st;
    pthread_mutex_lock(&st->mu);
    int rc = meta_uploads_each(h->mc, 0, count_row, st, e);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static void
upload_free(struct upload *u)
{
    if (!u)
        return;
    if (u->w)
        u->st->blobs->ops->w_close(u->w);
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
row_get(struct storage_handle *h, const char *uuid, char *repo, enum digest_algo *algo,
        struct err *e)
{
    return meta_upload_get(h->mc, uuid, repo, algo, e);
}

/* row_delete - delete the session row in its own (light: losing it to a power
 * failure only brings back a session that expiry removes) transaction and give
 * its count back */
static int
row_delete(struct storage_handle *h, const char *uuid, struct err *e)
{
    char repo[NAME_MAX_LEN + 1];
    if (meta_begin_light(h->mc, e) < 0)
        return -1;
    int del = meta_upload_delete(h->mc, uuid, repo, e);
    if (del < 0) {
        meta_rollback(h->mc);
        return -1;
    }
    if (meta_commit(h->mc, e) < 0)
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
    struct blob_backend *b = st->blobs;
    struct err de;
    if (u->w) {
        b->ops->w_close(u->w);
        u->w = NULL;
    }
    if (b->ops->w_remove(b, u->uuid, &de) < 0)
        log_warn("storage", NULL, "remove upload data failed uuid=%s: %s", u->uuid, de.msg);
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
    u->algo = algo;
    u->last_used = now_sec();
    memcpy(u->uuid, uuid, sizeof(uuid));
    copy_name(u->repo, sizeof(u->repo), repo);
    /* in the table, leased, before the row exists: an expiry running now skips it */
    u->leased = 1;
    pthread_mutex_lock(&st->mu);
    table_insert(st, u);
    pthread_mutex_unlock(&st->mu);

    if (st->blobs->ops->w_create(st->blobs, uuid, e) < 0) {
        drop(u);
        quota_give(st, repo);
        return -1;
    }
    /* light: a session row lost to a power failure is a session the client
     * restarts, and a row must not cost a WAL fsync (no file is durable either) */
    if (meta_begin_light(h->mc, e) < 0)
        goto fail;
    if (meta_upload_insert(h->mc, uuid, repo, algo, e) < 0) {
        meta_rollback(h->mc);
        goto fail;
    }
    if (meta_commit(h->mc, e) < 0)
        goto fail;
    unlease(u);
    memcpy(uuid_out, uuid, sizeof(uuid));
    return 0;
fail:
    st->blobs->ops->w_remove(st->blobs, uuid, NULL);
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
    struct blob_writer *w = NULL;
    int opened = st->blobs->ops->w_open(st->blobs, uuid, &w, e);
    if (opened <= 0) {
        if (opened == 0) {
            /* row without file: what storage_open would drop */
            err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
            row_delete(h, uuid, NULL);
            drop(u);
            return NULL;
        }
        if (fresh)
            drop(u);
        else
            unlease(u);
        return NULL;
    }
    u->w = w;
    if (!fresh)
        return u;

    /* no in-memory state (restart): the row says which repo and algorithm, the
     * file holds the bytes */
    char rrepo[NAME_MAX_LEN + 1];
    enum digest_algo algo;
    int found = row_get(h, uuid, rrepo, &algo, e);
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
    if (st->blobs->ops->w_hash(u->w, u->algo, NULL, &size, &hh, e) < 0) {
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

/* the bytes up to the offset are written: the backend may start their
 * writeback (the fs backend does every 2 MiB, see blob_fs.c) */
static void
writeback_maybe(struct upload *u)
{
    u->st->blobs->ops->w_written(u->w, u->offset);
}

/* the error of a write to a session whose blob is installed: -1 */
static int
finished_err(struct err *e)
{
    return err_set(e, ERR_BLOB_UPLOAD_INVALID, 0,
                   "upload already finished, only a retry of the PUT is possible");
}

/* -1 with ERR_TOO_LARGE when n bytes at offset at would pass max_blob_size */
static int
past_limit(const struct upload *u, uint64_t at, size_t n, struct err *e)
{
    uint64_t max = u->st->max_blob_size;
    if (max && (n > max || at > max - n))
        return err_set(e, ERR_TOO_LARGE, 0, "blob larger than the limit of %llu bytes",
                       (unsigned long long)max);
    return 0;
}

/* append n bytes at the offset through the backend's writer and hash them
 * (any one thread at a time; no database): 0, or -1 with ERR_TOO_LARGE (nothing
 * written) or the writer's error */
static int
append_hashed(struct upload *u, const void *data, size_t n, struct err *e)
{
    uint64_t off = u->offset;
    if (past_limit(u, off, n, e) < 0 || u->st->blobs->ops->w_append(u->w, data, n, off, e) < 0)
        return -1;
    hasher_update(u->hash, data, n);
    __atomic_store_n(&u->offset, off + n, __ATOMIC_RELEASE);
    writeback_maybe(u);
    return 0;
}

int
upload_write(struct upload *u, const void *data, size_t n, struct err *e)
{
    if (n == 0)
        return 0;
    if ((u->installed && finished_err(e) < 0) || append_hashed(u, data, n, e) < 0) {
        /* ENOSPC/EIO/413: free the space now, the client has to start over anyway */
        destroy(u->h, u);
        return -1;
    }
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
upload_write_async(const struct upload *u)
{
    int fd;
    uint64_t base;
    return u->w && u->st->blobs->ops->w_fd(u->w, &fd, &base) == 0;
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
    uint64_t at = u->wr_next;
    if ((u->installed && finished_err(e) < 0) || past_limit(u, at, n, e) < 0)
        return write_doom(u, e);
    int wfd;
    uint64_t base;
    if (u->st->blobs->ops->w_fd(u->w, &wfd, &base) < 0) {
        err_set(e, ERR_INTERNAL, 0, "upload_write_begin on a session without asynchronous writes");
        return write_doom(u, e);
    }
    hasher_update(u->hash, data, n);
    u->wr_next = at + n;
    u->wr_inflight++;
    *fd = wfd;
    *off = base + at;
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
    /* the fault hook of the synchronous path (the backend's append) counts here: the
     * bytes may be on disk, but the session fails as if the write had */
    if (res >= 0 && fault_hit(&u->st->fault, FAULT_WRITE))
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

int
upload_piece_begin(struct upload *u, struct err *e)
{
    if (u->wr_failed) {
        if (e)
            *e = u->wr_err;
        return -1;
    }
    if (u->installed) {
        finished_err(e);
        return write_doom(u, e);
    }
    if (u->wr_inflight == 0)
        u->pc_failed = 0; /* no piece is being written: ours to reset */
    u->wr_inflight++;
    return 0;
}

int
upload_piece_write(struct upload *u, const void *data, size_t n)
{
    if (u->pc_failed)
        return -1;
    if (n && append_hashed(u, data, n, &u->pc_err) < 0) {
        u->pc_failed = 1;
        return -1;
    }
    return 0;
}

int
upload_piece_end(struct upload *u, struct err *e)
{
    if (u->wr_inflight == 0) {
        err_set(e, ERR_INTERNAL, 0, "upload_piece_end without a piece in flight");
        return -1;
    }
    u->wr_inflight--;
    if (u->pc_failed && !u->wr_failed) {
        u->wr_failed = 1;
        u->wr_err = u->pc_err;
    }
    if (u->wr_failed) {
        if (e)
            *e = u->wr_err;
        if (u->wr_inflight == 0)
            destroy(u->h, u); /* ENOSPC/EIO/413: free the space now */
        return -1;
    }
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
         * in its row and its backend data; the next acquire rebuilds it) */
        drop(u);
        return;
    }
    if (u->w) {
        u->st->blobs->ops->w_close(u->w);
        u->w = NULL;
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
    int marked = 0;

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
        if (st->blobs->ops->w_hash(u->w, expected->algo, &got, &sz2, NULL, e) < 0)
            goto fail;
    }
    if (!digest_equal(&got, expected)) {
        err_set(e, ERR_DIGEST_INVALID, 0, "digest does not match the uploaded content");
        goto fail;
    }
    /* gc keeps the file of a blob being installed (gcstore.c): from before
     * the bytes reach blobs/ until the rows' transaction ended */
    if (storage_install_mark(st, &got, e) < 0)
        goto fail;
    marked = 1;
    /* durable under its digest before any row names it */
    if (st->blobs->ops->w_commit(u->w, &got, size, e) < 0)
        goto fail;
    st->blobs->ops->w_close(u->w);
    u->w = NULL;
    u->installed = 1;
    u->installed_digest = got;

rows:
    if (!marked) {
        if (storage_install_mark(st, &got, e) < 0)
            goto keep;
        marked = 1;
    }
    digest_format(&got, ds);
    /* from here a database error (busy after the timeout, disk full, ...) keeps
     * the session: the verified data is in blobs/, a retried PUT only has to
     * commit the rows */
    if (meta_begin(h->mc, e) < 0)
        goto keep;
    /* inside the write lock, so gc (which unlinks under the same lock) cannot
     * remove the file between this check and our row */
    int ex = storage_blob_present(st, &got, size, e);
    if (ex <= 0) {
        if (ex == 0)
            err_set(e, ERR_IO, 0, "blob file vanished during commit, retry");
        meta_rollback(h->mc);
        goto fail;
    }
    /* (any failure below is a database one) */
    if (meta_blob_link(h->mc, u->repo, ds, size, e) < 0)
        goto keep_txn;
    char rrepo[NAME_MAX_LEN + 1];
    int del = meta_upload_delete(h->mc, u->uuid, rrepo, e);
    if (del < 0)
        goto keep_txn;
    if (meta_commit(h->mc, e) < 0)
        goto keep;
    storage_install_unmark(st, &got);
    if (del)
        quota_give(st, rrepo);
    drop(u);
    return 0;
keep_txn:
    meta_rollback(h->mc);
keep:
    if (marked)
        storage_install_unmark(st, &got);
    log_warn("storage", NULL, "upload commit kept for a retry uuid=%s digest=%s: %s", u->uuid, ds,
             e ? e->msg : "?");
    upload_release(u);
    return -1;
fail:
    if (marked)
        storage_install_unmark(st, &got);
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
    int found = row_get(h, uuid, rrepo, &algo, e);
    if (found < 0)
        return -1;
    if (!found || strcmp(rrepo, repo) != 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
    uint64_t size;
    int ex = st->blobs->ops->w_stat(st->blobs, uuid, &size, e);
    if (ex < 0)
        return -1;
    if (ex == 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, 0, "upload unknown");
    *offset = size;
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
        int found = row_get(h, u->uuid, rrepo, &algo, e);
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

struct idlist {
    size_t n, cap;
    char (*ids)[UPLOAD_ID_LEN + 1];
    int oom;
};

static int
id_add(void *arg, const char *uuid, const char *repo)
{
    struct idlist *l = arg;
    (void)repo;
    if (!uuid_valid(uuid))
        return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->ids, nc * sizeof(*l->ids));
        if (!p) {
            l->oom = 1;
            return 1;
        }
        l->ids = p;
        l->cap = nc;
    }
    memcpy(l->ids[l->n++], uuid, UPLOAD_ID_LEN + 1);
    return 0;
}

int
storage_expire_uploads(struct storage_handle *h, struct err *e)
{
    return storage_expire_uploads_each(h, 0, NULL, NULL, e);
}

int
storage_expire_uploads_each(struct storage_handle *h, int dry_run,
                            void (*fn)(void *arg, const char *uuid), void *arg, struct err *e)
{
    struct storage *st = h->st;
    if (st->upload_expiry_sec <= 0)
        return 0;
    struct idlist l = {0};
    if (meta_uploads_each(h->mc, now_sec() - st->upload_expiry_sec, id_add, &l, e) < 0) {
        free(l.ids);
        return -1;
    }
    if (l.oom) {
        free(l.ids);
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    size_t n = l.n;
    char(*ids)[UPLOAD_ID_LEN + 1] = l.ids;
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
        if (dry_run) {
            if (fresh)
                drop(u);
            else
                unlease(u);
            removed++;
        } else if (remove_claimed(h, u, fresh, NULL, NULL) == 0) {
            removed++;
        } else {
            continue;
        }
        if (fn)
            fn(arg, ids[i]);
    }
    free(ids);
    return removed;
}
