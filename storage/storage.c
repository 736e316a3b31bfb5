/* storage.c - storage_open/close and recovery, handles, blobs, manifests, tags,
 * catalog and referrers on top of the two interfaces: the blob backend
 * (blob.h: bytes) and the metadata (meta.h: rows). Neither knows the other;
 * the invariants between them live here:
 *
 * Every write follows the same order: the bytes are made durable under their
 * digest by the backend (fs: written, fsync'd, renamed into blobs/, directory
 * fsync'd) BEFORE the transaction that adds a row naming them commits; inside
 * that transaction the blob's presence is checked again (backend stat), so gc
 * (which must remove a blob only inside its own durable write transaction,
 * after deleting the row) can never leave a row without its blob.
 *
 * Reads on the hot paths (blob HEAD/GET, manifest GET by tag or digest) are one
 * indexed metadata lookup with stack buffers only: no heap allocation per
 * call, plus one backend stat (HEAD) or open (GET, a reader in the caller's
 * memory), so HEAD and GET agree when a blob was lost.
 *
 * A row whose blob is gone (disk damage, an operator's rm) is repaired when a
 * read or a mount finds it: the blobs row and every link of that digest are
 * deleted in one transaction (after checking again under the write lock), so
 * the blob is unknown everywhere and a re-push heals it. */
#include "storage/storage_internal.h"
#include "storage/blob.h"
#include "storage/meta.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#include "common/banned.h"

/* ---- open / close / recovery -------------------------------------------------- */

static int
mkdir_p(const char *path, struct err *e)
{
    size_t n = strlen(path);
    char *p = malloc(n + 1);
    if (!p)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            err_sys(e, ERR_IO, errno, "create directory '%s'", p);
            free(p);
            return -1;
        }
        p[i] = c;
    }
    free(p);
    return 0;
}

static int restore_pending(struct storage_handle *h, struct err *e);
static int fill_annotations(struct storage_handle *h, struct err *e);

struct recovery {
    struct storage_handle *h;
    size_t n, cap;
    char (*gone)[UPLOAD_ID_LEN + 1];
    int removed_files;
};

/* a session row whose bytes are missing */
static int
recover_row(void *arg, const char *uuid, const char *repo)
{
    struct recovery *r = arg;
    struct blob_backend *b = r->h->st->blobs;
    uint64_t size;
    (void)repo;
    if (uuid_valid(uuid) && b->ops->w_stat(b, uuid, &size, NULL) == 1)
        return 0;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        void *p = realloc(r->gone, nc * sizeof(*r->gone));
        if (!p)
            return 1;
        r->gone = p;
        r->cap = nc;
    }
    snprintf(r->gone[r->n++], UPLOAD_ID_LEN + 1, "%s", uuid);
    return 0;
}

/* a session area entry without a session row */
static int
recover_entry(void *arg, const char *name)
{
    struct recovery *r = arg;
    struct blob_backend *b = r->h->st->blobs;
    if (uuid_valid(name)) {
        char repo[NAME_MAX_LEN + 1];
        enum digest_algo algo;
        if (meta_upload_get(r->h->mc, name, repo, &algo, NULL) == 1)
            return 0;
    }
    struct err e = {0};
    if (b->ops->w_remove(b, name, &e) == 0)
        r->removed_files++;
    else
        log_warn("storage", NULL, "recovery: cannot remove uploads/%s: %s", name, e.msg);
    return 0;
}

/* recover - session data without a session row goes (temp files <uuid>.tmp of
 * blob puts included), then rows whose data is missing. */
static int
recover(struct storage_handle *h, struct err *e)
{
    struct blob_backend *b = h->st->blobs;
    struct recovery r = {.h = h};
    if (b->ops->w_list(b, recover_entry, &r, e) < 0)
        return -1;
    int removed_rows = 0;
    int rc = meta_uploads_each(h->mc, 0, recover_row, &r, e);
    if (rc == 0 && r.n) {
        if (meta_begin_light(h->mc, e) < 0) {
            rc = -1;
        } else {
            char repo[NAME_MAX_LEN + 1];
            for (size_t i = 0; i < r.n && rc == 0; i++) {
                rc = meta_upload_delete(h->mc, r.gone[i], repo, e) < 0 ? -1 : 0;
                removed_rows++;
            }
            if (rc == 0)
                rc = meta_commit(h->mc, e);
            else
                meta_rollback(h->mc);
        }
    }
    free(r.gone);
    if (r.removed_files || removed_rows)
        log_info("storage", NULL, "recovery removed_files=%d removed_rows=%d", r.removed_files,
                 removed_rows);
    return rc;
}

static int
pending_sync_cb(void *arg, struct err *e)
{
    return storage_pending_sync(arg, e);
}

struct storage *
storage_open(const struct storage_opts *opts, struct err *e)
{
    if (!opts || !opts->root || !opts->root[0]) {
        err_set(e, ERR_CONFIG, 0, "storage root not set");
        return NULL;
    }
    struct storage *st = calloc(1, sizeof(*st));
    if (!st) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    st->rootfd = st->lockfd = -1;
    st->fsync = opts->fsync ? 1 : 0;
    st->max_manifest = opts->max_manifest ? opts->max_manifest : STORAGE_DEFAULT_MAX_MANIFEST;
    st->upload_expiry_sec = opts->upload_expiry_sec;
    st->max_blob_size = opts->max_blob_size;
    st->max_uploads = opts->max_uploads ? opts->max_uploads : STORAGE_DEFAULT_MAX_UPLOADS;
    st->max_uploads_per_repo =
        opts->max_uploads_per_repo ? opts->max_uploads_per_repo : STORAGE_DEFAULT_MAX_UPLOADS_PER_REPO;
    st->max_manifest_refs =
        opts->max_manifest_refs ? opts->max_manifest_refs : STORAGE_DEFAULT_MAX_MANIFEST_REFS;
    st->track_pulls = opts->track_pulls ? 1 : 0;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->fault.mu, NULL);
    pthread_mutex_init(&st->pulls_mu, NULL);
    pthread_mutex_init(&st->stats_mu, NULL);
    size_t rl = strlen(opts->root);
    st->root = malloc(rl + 1);
    if (!st->root) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        goto fail;
    }
    memcpy(st->root, opts->root, rl + 1);

    if (mkdir_p(st->root, e) < 0)
        goto fail;
    st->rootfd = open(st->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->rootfd < 0) {
        err_sys(e, ERR_IO, errno, "open storage root '%s'", st->root);
        goto fail;
    }
    /* one process per root: recovery deletes files a second process may be
     * writing */
    st->lockfd = openat(st->rootfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lockfd < 0) {
        err_sys(e, ERR_IO, errno, "open '%s/lock'", st->root);
        goto fail;
    }
    if (flock(st->lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            err_set(e, ERR_CONFIG, 0, "storage root '%s' is in use by another instance", st->root);
        else
            err_sys(e, ERR_IO, errno, "lock '%s/lock'", st->root);
        goto fail;
    }
    /* who holds it, for the message of a command that finds it taken
     * (storage_root_owner); only a hint, so a failure is not an error */
    {
        char pid[32];
        int pl = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        if (ftruncate(st->lockfd, 0) < 0 || pwrite(st->lockfd, pid, (size_t)pl, 0) != pl)
            log_debug("storage", NULL, "cannot write the pid into '%s/lock'", st->root);
    }
    st->blobs = blob_fs_open(st->rootfd, st->fsync, &st->fault, e);
    if (st->blobs && opts->test_blobs)
        st->blobs = opts->test_blobs(st->blobs, e);
    if (!st->blobs)
        goto fail;

    struct meta_opts mo = {.root = st->root, .fsync = st->fsync, .fault = &st->fault};
    st->meta = meta_open(&mo, e);
    if (!st->meta)
        goto fail;
    struct storage_handle *h = storage_handle_open(st, e);
    if (!h)
        goto fail;
    int rrc = recover(h, e);
    if (rrc == 0)
        rrc = upload_counts_load(h, e);
    if (rrc == 0)
        rrc = restore_pending(h, e);
    if (rrc == 0)
        rrc = fill_annotations(h, e);
    if (rrc == 0) {
        /* emptied repositories of a database written by an older version */
        int pruned = meta_repos_prune_all(h->mc, e);
        if (pruned > 0)
            log_info("storage", NULL, "recovery removed_empty_repos=%d", pruned);
        rrc = pruned < 0 ? -1 : 0;
    }
    storage_handle_close(h);
    if (rrc < 0)
        goto fail;
    st->synch = storage_handle_open(st, e);
    if (!st->synch || meta_start(st->meta, pending_sync_cb, st->synch, e) < 0)
        goto fail;
    return st;
fail:
    storage_close(st);
    return NULL;
}

void
storage_close(struct storage *st)
{
    if (!st)
        return;
    meta_conn_close(st->stats_mc);
    free(st->stats);
    meta_close(st->meta); /* a last storage_pending_sync through synch */
    storage_handle_close(st->synch);
    upload_table_free(st);
    free(st->inst);
    if (st->blobs)
        st->blobs->ops->close(st->blobs);
    if (st->lockfd >= 0)
        close(st->lockfd); /* releases the flock */
    if (st->rootfd >= 0)
        close(st->rootfd);
    pulls_free_all(st);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->fault.mu);
    pthread_mutex_destroy(&st->pulls_mu);
    pthread_mutex_destroy(&st->stats_mu);
    free(st->root);
    free(st);
}

struct storage_handle *
storage_handle_open(struct storage *st, struct err *e)
{
    struct storage_handle *h = calloc(1, sizeof(*h));
    if (!h) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    h->st = st;
    h->mc = meta_conn_open(st->meta, e);
    if (!h->mc) {
        free(h);
        return NULL;
    }
    return h;
}

void
storage_handle_close(struct storage_handle *h)
{
    if (!h)
        return;
    pulls_detach(h);
    meta_conn_close(h->mc);
    free(h);
}

struct meta_conn *
storage_handle_meta(struct storage_handle *h)
{
    return h->mc;
}

struct blob_backend *
storage_handle_blobs(struct storage_handle *h)
{
    return h->st->blobs;
}

/* ---- manifest files ---------------------------------------------------------------
 *
 * A manifest PUT writes the manifest's file and renames it into blobs/ without
 * an fsync of the file or its directory; its body goes into
 * pending_manifest_files in the same durable transaction as its rows. So the
 * PUT's only wait is the group WAL fsync, shared with every other commit, and
 * the rule "a row never outlives its file" holds through the body: after a
 * crash, recovery (restore_pending) rewrites, durably, the file of every
 * pending row, over whatever torn copy is there. The checkpointer thread
 * (ckpt.c) calls storage_pending_sync every PENDING_SYNC_MS while rows are
 * pending: one syncfs() makes all those files durable at once, then the rows
 * go. A blob commit that finds a manifest's file already in place fsyncs that
 * file too (the backend's dedup path), so it never counts on a pending one. */

/* pending_drop - delete the pending rows up to id max, in a durable or a light
 * transaction */
static int
pending_drop(struct storage_handle *h, int64_t max, int durable, struct err *e)
{
    if ((durable ? meta_begin(h->mc, e) : meta_begin_light(h->mc, e)) < 0)
        return -1;
    if (meta_pending_drop(h->mc, max, e) < 0) {
        meta_rollback(h->mc);
        return -1;
    }
    return meta_commit(h->mc, e);
}

struct restore {
    struct storage_handle *h;
    struct err *e;
    int n;
    int64_t max;
};

static int
restore_one(void *arg, int64_t id, const char *ds, const void *body, size_t len)
{
    struct restore *r = arg;
    struct digest d;
    if (digest_parse(ds, strlen(ds), &d, NULL) < 0) {
        log_warn("storage", NULL, "recovery: pending manifest row %lld has a bad digest",
                 (long long)id);
    } else if (r->h->st->blobs->ops->put(r->h->st->blobs, &d, body, len, BLOB_PUT_REPLACE,
                                         r->e) < 0) {
        return 1;
    } else {
        r->n++;
    }
    if (id > r->max)
        r->max = id;
    return 0;
}

/* restore_pending - at open: rewrite the files of pending rows, then drop them */
static int
restore_pending(struct storage_handle *h, struct err *e)
{
    struct restore r = {.h = h, .e = e};
    if (meta_pending_each(h->mc, restore_one, &r, e) < 0)
        return -1;
    if (r.max == 0)
        return 0;
    if (pending_drop(h, r.max, 1, e) < 0)
        return -1;
    log_info("storage", NULL, "recovery rewrote %d manifest file(s) not yet synced", r.n);
    return 0;
}

/* ---- annotations kept before schema v4 ----
 *
 * Up to v3, a manifest's annotations over 64 KiB were left out of
 * manifest_annotations (annotations NULL) and every referrers GET parsed the
 * body again to list them. From v4 a referrer's annotations are stored whole at
 * PUT; the v4 migration leaves the old NULL rows (indexed) for fill_annotations
 * to read from their bodies, once, at open. A row is settled in its own
 * transaction, so a crash half-way leaves only the rest to do. A body that is
 * gone or no longer parses (e.g. over the JSON limits) settles to "no
 * annotations", with a warning. */

struct unfilled {
    int64_t id;
    struct digest d;
    uint64_t size;
};

/* annotations_from_body - the annotations text of the stored body d; *out NULL
 * when it has none or cannot be read */
static void
annotations_from_body(struct storage_handle *h, const struct unfilled *u, char **out)
{
    struct blob_backend *b = h->st->blobs;
    char ds[DIGEST_STR_MAX];
    struct err e = {0};
    struct blob_reader rd = {0};
    char *buf = NULL;
    *out = NULL;
    digest_format(&u->d, ds);
    int ex = b->ops->open(b, &u->d, &rd, &e);
    if (ex <= 0) {
        if (ex == 0)
            err_set(&e, ERR_IO, 0, "body missing");
        goto out;
    }
    if (rd.size != u->size) {
        err_set(&e, ERR_IO, 0, "body of %llu bytes, %llu expected", (unsigned long long)rd.size,
                (unsigned long long)u->size);
        goto out;
    }
    buf = malloc(u->size ? u->size : 1);
    if (!buf) {
        err_set(&e, ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    if (blob_reader_read_all(&rd, buf, &e) == 0)
        manifest_annotations_of(buf, u->size, out, &e);
out:
    if (e.code)
        log_warn("storage", NULL, "migration: annotations of manifest %s dropped: %s", ds, e.msg);
    free(buf);
    blob_reader_close(&rd);
}

struct unfilled_list {
    struct unfilled *u;
    size_t n, cap;
};

static int
unfilled_add(void *arg, int64_t id, const char *ds, uint64_t size)
{
    struct unfilled_list *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        struct unfilled *nu = realloc(l->u, nc * sizeof(*nu));
        if (!nu)
            return 1;
        l->u = nu;
        l->cap = nc;
    }
    struct unfilled *u = &l->u[l->n++];
    u->id = id;
    u->size = size;
    /* a row with a bad digest has no body to read: settled empty */
    if (digest_parse(ds, strlen(ds), &u->d, NULL) < 0)
        u->size = UINT64_MAX;
    return 0;
}

static int
fill_annotations(struct storage_handle *h, struct err *e)
{
    struct unfilled_list l = {0};
    int rc = -1;
    if (meta_annotations_unfilled(h->mc, unfilled_add, &l, e) < 0)
        goto out;
    for (size_t i = 0; i < l.n; i++) {
        char *ann = NULL;
        /* every body was at most max_manifest when pushed: a larger size is a
         * damaged row (or a lowered limit), not worth a huge read */
        if (l.u[i].size <= h->st->max_manifest)
            annotations_from_body(h, &l.u[i], &ann);
        if (meta_begin(h->mc, e) < 0) {
            free(ann);
            goto out;
        }
        int r = meta_annotations_set(h->mc, l.u[i].id, ann, e);
        free(ann);
        if (r < 0) {
            meta_rollback(h->mc);
            goto out;
        }
        if (meta_commit(h->mc, e) < 0)
            goto out;
    }
    if (l.n)
        log_info("storage", NULL, "migration: annotations of %zu referrer(s) read from their bodies",
                 l.n);
    rc = 0;
out:
    free(l.u);
    return rc;
}

int
storage_pending_sync(struct storage_handle *h, struct err *e)
{
    struct storage *st = h->st;
    int64_t max;
    if (meta_pending_max(h->mc, &max, e) < 0)
        return -1;
    if (max == 0)
        return 0;
    /* every row up to max was committed before this read, so its file was
     * written (and renamed) before the syncfs below starts */
    if (st->blobs->ops->sync(st->blobs, e) < 0)
        return -1;
    __atomic_add_fetch(&st->pending_syncs, 1, __ATOMIC_RELAXED);
    /* losing this delete to a crash only makes recovery rewrite the files */
    return pending_drop(h, max, 0, e);
}

/* ---- helpers ------------------------------------------------------------------ */

int
storage_blob_present(struct storage *st, const struct digest *d, uint64_t size, struct err *e)
{
    uint64_t got = 0;
    int ex = st->blobs->ops->stat(st->blobs, d, &got, e);
    if (ex <= 0)
        return ex;
    return size == UINT64_MAX || got == size;
}

/* ---- readers ---- */

int
blob_reader_fd(struct blob_reader *rd, int *fd, uint64_t *off)
{
    if (!rd->ops || !rd->ops->fd)
        return -1;
    return rd->ops->fd(rd, fd, off);
}

long
blob_reader_read(struct blob_reader *rd, uint64_t off, void *buf, size_t n, struct err *e)
{
    if (!rd->ops)
        return err_set(e, ERR_INTERNAL, 0, "reader not open");
    return rd->ops->read(rd, off, buf, n, e);
}

int
blob_reader_read_all(struct blob_reader *rd, void *buf, struct err *e)
{
    uint64_t got = 0;
    while (got < rd->size) {
        long r = blob_reader_read(rd, got, (char *)buf + got, (size_t)(rd->size - got), e);
        if (r < 0)
            return -1;
        if (r == 0)
            return err_set(e, ERR_IO, 0, "blob ends after %llu of %llu bytes",
                           (unsigned long long)got, (unsigned long long)rd->size);
        got += (uint64_t)r;
    }
    return 0;
}

int
blob_reader_redirect(struct blob_reader *rd, char *url, size_t urlsz, struct err *e)
{
    if (!rd->ops || !rd->ops->redirect)
        return -1;
    return rd->ops->redirect(rd, url, urlsz, e);
}

void
blob_reader_close(struct blob_reader *rd)
{
    if (rd && rd->ops) {
        rd->ops->close(rd);
        rd->ops = NULL;
    }
}

static int
repo_ok(const char *repo, struct err *e)
{
    if (!repo)
        return err_set(e, ERR_NAME_INVALID, 0, "invalid repository name");
    return name_validate(repo, strlen(repo), e);
}

/* ---- blobs ------------------------------------------------------------------- */

/* repair_lost_blob - the file of blob d was found missing or damaged outside a
 * transaction: check again under the write lock (a concurrent commit may have
 * just installed it) and, still missing, delete its rows so that it is unknown
 * in every repository and a re-push heals it. Errors are logged only: the
 * caller answers BLOB_UNKNOWN either way. */
static void
repair_lost_blob(struct storage_handle *h, const struct digest *d, const char *ds, uint64_t size)
{
    struct err e;
    if (meta_begin(h->mc, &e) < 0)
        goto fail;
    int ex = storage_blob_present(h->st, d, size, &e);
    if (ex != 0) {
        meta_rollback(h->mc);
        if (ex < 0)
            goto fail;
        return;
    }
    if (meta_blob_forget(h->mc, ds, &e) < 0) {
        meta_rollback(h->mc);
        goto fail;
    }
    if (meta_commit(h->mc, &e) < 0)
        goto fail;
    log_error("storage", NULL, "blob file missing or damaged, rows removed digest=%s", ds);
    return;
fail:
    log_error("storage", NULL, "blob file missing, repair failed digest=%s: %s", ds, e.msg);
}

int
storage_blob_open(struct storage_handle *h, const char *repo, const struct digest *d,
                  struct blob_reader *rd, uint64_t *size, struct err *e)
{
    char ds[DIGEST_STR_MAX];
    digest_format(d, ds);
    uint64_t sz = 0;
    int found = meta_blob_size(h->mc, repo, ds, &sz, e);
    if (found < 0)
        return -1;
    if (found == 0)
        return err_set(e, ERR_BLOB_UNKNOWN, 0, "blob unknown to repository");
    /* HEAD and GET look at the stored blob the same way: missing or of the
     * wrong size means unknown (and the rows are repaired) */
    struct blob_backend *b = h->st->blobs;
    uint64_t got = 0;
    int ex;
    if (rd) {
        ex = b->ops->open(b, d, rd, e);
        if (ex == 1)
            got = rd->size;
    } else {
        ex = b->ops->stat(b, d, &got, e);
    }
    if (ex < 0)
        return -1;
    if (ex == 0) {
        repair_lost_blob(h, d, ds, UINT64_MAX);
        return err_set(e, ERR_BLOB_UNKNOWN, 0, "blob unknown to repository");
    }
    if (got != sz) {
        if (rd)
            blob_reader_close(rd);
        /* a damaged file: install replaces it when the blob is pushed again */
        repair_lost_blob(h, d, ds, sz);
        return err_set(e, ERR_BLOB_UNKNOWN, 0, "blob unknown to repository");
    }
    if (size)
        *size = sz;
    return 0;
}

int
storage_blob_delete(struct storage_handle *h, const char *repo, const struct digest *d,
                    struct err *e)
{
    char ds[DIGEST_STR_MAX];
    digest_format(d, ds);
    if (meta_begin(h->mc, e) < 0)
        return -1;
    int del = meta_blob_unlink(h->mc, repo, ds, e);
    if (del <= 0) {
        if (del == 0)
            err_set(e, ERR_BLOB_UNKNOWN, 0, "blob unknown to repository");
        meta_rollback(h->mc);
        return -1;
    }
    return meta_commit(h->mc, e);
}

int
storage_blob_mount(struct storage_handle *h, const char *repo, const char *from,
                   const struct digest *d, struct err *e)
{
    if (repo_ok(repo, e) < 0)
        return -1;
    if (from && name_validate(from, strlen(from), NULL) < 0)
        return 0;
    char ds[DIGEST_STR_MAX];
    digest_format(d, ds);
    if (meta_begin(h->mc, e) < 0)
        return -1;
    int linked = meta_link_exists(h->mc, repo, ds, e);
    if (linked < 0)
        goto fail;
    int ex = linked;
    if (!linked) {
        ex = meta_link_exists(h->mc, from, ds, e);
        if (ex < 0)
            goto fail;
        if (ex == 0) {
            meta_rollback(h->mc);
            return 0;
        }
    }
    /* the file must be there (checked under the write lock, where gc also
     * deletes); a lost one is forgotten and the client uploads it again */
    ex = storage_blob_present(h->st, d, UINT64_MAX, e);
    if (ex < 0)
        goto fail;
    if (ex == 0) {
        if (meta_blob_forget(h->mc, ds, e) < 0)
            goto fail;
        if (meta_commit(h->mc, e) < 0)
            return -1;
        log_error("storage", NULL, "blob file missing, rows removed digest=%s", ds);
        return 0;
    }
    if (linked) {
        meta_rollback(h->mc);
        /* the link we saw may be another thread's commit still before its WAL
         * fsync: acknowledge only a durable one */
        return meta_durable_point(h->mc, e) < 0 ? -1 : 1;
    }
    /* the size comes with the existing blobs row; meta_blob_link keeps it */
    if (meta_blob_link(h->mc, repo, ds, 0, e) < 0)
        goto fail;
    if (meta_commit(h->mc, e) < 0)
        return -1;
    return 1;
fail:
    meta_rollback(h->mc);
    return -1;
}

/* install_rows - the blob file d (n bytes) is installed; commit blob + link rows */
static int
commit_blob_rows(struct storage_handle *h, const char *repo, const struct digest *d, uint64_t n,
                 struct err *e)
{
    char ds[DIGEST_STR_MAX];
    digest_format(d, ds);
    if (meta_begin(h->mc, e) < 0)
        return -1;
    int ex = storage_blob_present(h->st, d, n, e);
    if (ex <= 0) {
        if (ex == 0)
            err_set(e, ERR_IO, 0, "blob file vanished during commit, retry");
        goto fail;
    }
    if (meta_blob_link(h->mc, repo, ds, n, e) < 0)
        goto fail;
    return meta_commit(h->mc, e);
fail:
    meta_rollback(h->mc);
    return -1;
}

int
storage_blob_put(struct storage_handle *h, const char *repo, const void *data, size_t n,
                 enum digest_algo algo, struct digest *out, struct err *e)
{
    if (repo_ok(repo, e) < 0)
        return -1;
    struct digest d;
    digest_of(algo, data, n, &d);
    /* gc keeps the file of a blob being installed (gcstore.c) */
    if (storage_install_mark(h->st, &d, e) < 0)
        return -1;
    int rc = h->st->blobs->ops->put(h->st->blobs, &d, data, n, BLOB_PUT_DURABLE, e);
    if (rc == 0)
        rc = commit_blob_rows(h, repo, &d, n, e);
    storage_install_unmark(h->st, &d);
    if (rc < 0)
        return -1;
    if (out)
        *out = d;
    return 0;
}

/* ---- manifests ------------------------------------------------------------------ */

static int
ref_cmp(const void *a, const void *b)
{
    const struct manifest_ref *x = a, *y = b;
    if (x->digest.algo != y->digest.algo)
        return x->digest.algo < y->digest.algo ? -1 : 1;
    int c = strcmp(x->digest.hex, y->digest.hex);
    if (c)
        return c;
    return (int)x->kind - (int)y->kind;
}

/* dedup_refs - sort the references and drop repeated (digest, kind) pairs: a
 * manifest may list the same layer thousands of times, each is checked and
 * recorded once */
static void
dedup_refs(struct manifest_info *mi)
{
    if (mi->nrefs < 2)
        return;
    qsort(mi->refs, mi->nrefs, sizeof(mi->refs[0]), ref_cmp);
    size_t k = 1;
    for (size_t i = 1; i < mi->nrefs; i++)
        if (ref_cmp(&mi->refs[i], &mi->refs[k - 1]) != 0)
            mi->refs[k++] = mi->refs[i];
    mi->nrefs = k;
}

/* check_ref_files - outside the write lock: every referenced blob's file is
 * there (a row whose file was lost must not satisfy a manifest). A missing file
 * is a lost one only when repo links the blob: then its rows are repaired. A
 * blob never pushed here (an ordinary client mistake) costs one read and no
 * write transaction. */
static int
check_ref_files(struct storage_handle *h, const char *repo, const struct manifest_info *mi,
                struct err *e)
{
    for (size_t i = 0; i < mi->nrefs; i++) {
        const struct manifest_ref *r = &mi->refs[i];
        if (r->kind != REF_BLOB)
            continue;
        int ex = storage_blob_present(h->st, &r->digest, UINT64_MAX, e);
        if (ex < 0)
            return -1;
        if (ex == 1)
            continue;
        char ds[DIGEST_STR_MAX];
        digest_format(&r->digest, ds);
        int linked = meta_link_exists(h->mc, repo, ds, e);
        if (linked < 0)
            return -1;
        if (linked)
            repair_lost_blob(h, &r->digest, ds, UINT64_MAX);
        else
            log_debug("storage", NULL, "manifest references a blob not in the repository repo=%s"
                      " digest=%s", repo, ds);
        return err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, 0, "manifest references unknown blob %s", ds);
    }
    return 0;
}

/* check_refs - inside the write transaction, once per distinct reference: blob
 * links and child manifests of repo exist */
static int
check_refs(struct storage_handle *h, const char *repo, const struct manifest_info *mi,
           struct err *e)
{
    for (size_t i = 0; i < mi->nrefs; i++) {
        const struct manifest_ref *r = &mi->refs[i];
        if (r->kind == REF_FOREIGN)
            continue;
        char ds[DIGEST_STR_MAX];
        digest_format(&r->digest, ds);
        int ex = r->kind == REF_MANIFEST ? meta_manifest_exists(h->mc, repo, ds, e)
                                         : meta_link_exists(h->mc, repo, ds, e);
        if (ex < 0)
            return -1;
        if (ex == 0)
            return err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, 0, "manifest references unknown %s %s",
                           r->kind == REF_MANIFEST ? "manifest" : "blob", ds);
    }
    return 0;
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

int
storage_manifest_put(struct storage_handle *h, const char *repo, const char *body, size_t len,
                     const char *content_type, const struct digest *ref_digest,
                     const char *const *tags, size_t ntags, struct manifest_meta *meta,
                     int *has_subject, struct digest *subject, struct err *e)
{
    struct storage *st = h->st;
    struct manifest_info mi;
    memset(&mi, 0, sizeof(mi));
    int rc = -1, marked = 0;
    struct digest d;
    if (repo_ok(repo, e) < 0)
        return -1;
    if (len > st->max_manifest)
        return err_set(e, ERR_TOO_LARGE, 0, "manifest larger than %llu bytes",
                       (unsigned long long)st->max_manifest);
    if (ntags > PUT_MAX_TAGS)
        return err_set(e, ERR_MANIFEST_INVALID, 0, "too many tags (max %d)", PUT_MAX_TAGS);
    for (size_t i = 0; i < ntags; i++)
        if (!tags[i] || tag_validate(tags[i], strlen(tags[i]), e) < 0)
            return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid tag");
    if (manifest_parse(body, len, content_type, &mi, e) < 0)
        return -1;
    if (mi.nrefs + (mi.has_subject ? 1 : 0) > st->max_manifest_refs) {
        err_set(e, ERR_MANIFEST_INVALID, 0, "too many descriptors (max %u)", st->max_manifest_refs);
        goto out;
    }
    dedup_refs(&mi);

    digest_of(ref_digest ? ref_digest->algo : DIGEST_SHA256, body, len, &d);
    if (ref_digest && !digest_equal(&d, ref_digest)) {
        err_set(e, ERR_DIGEST_INVALID, 0, "manifest digest does not match the reference");
        goto out;
    }
    /* files are checked before anything is written and outside the write lock;
     * the rows once, under it */
    if (check_ref_files(h, repo, &mi, e) < 0)
        goto out;
    /* gc keeps the file of a blob being installed (gcstore.c) */
    if (storage_install_mark(st, &d, e) < 0)
        goto out;
    marked = 1;
    /* the file without an fsync of it or its directory: the body goes into
     * pending_manifest_files in the transaction below (see "manifest files") */
    if (st->blobs->ops->put(st->blobs, &d, body, len,
                            st->fsync ? BLOB_PUT_LAZY : BLOB_PUT_DURABLE, e) < 0)
        goto out;

    char ds[DIGEST_STR_MAX], ss[DIGEST_STR_MAX];
    digest_format(&d, ds);
    if (mi.has_subject)
        digest_format(&mi.subject, ss);
    if (meta_begin(h->mc, e) < 0)
        goto out;
    int ex = storage_blob_present(st, &d, len, e);
    if (ex <= 0) {
        if (ex == 0)
            err_set(e, ERR_IO, 0, "manifest file vanished during commit, retry");
        goto fail_txn;
    }
    if (check_refs(h, repo, &mi, e) < 0)
        goto fail_txn;
    /* the annotations a referrers page shows are kept whole so that a GET
     * never reads the body: only a manifest with a subject is ever listed.
     * Their size is bounded by the body's (max_manifest): the compact dump is
     * never longer than the text it came from. */
    struct meta_manifest mf = {
        .repo = repo,
        .digest = ds,
        .media_type = mi.media_type,
        .size = len,
        .subject = mi.has_subject ? ss : NULL,
        .artifact_type = mi.artifact_type,
        .annotations = mi.annotations_json,
        .refs = mi.refs,
        .nrefs = mi.nrefs,
        .tags = tags,
        .ntags = ntags,
        .pending_body = st->fsync ? body : NULL,
    };
    if (meta_manifest_put(h->mc, &mf, e) < 0)
        goto fail_txn;
    if (meta_commit(h->mc, e) < 0)
        goto out;
    if (st->fsync)
        meta_files_pending(st->meta);
    if (meta) {
        meta->digest = d;
        copy_str(meta->media_type, sizeof(meta->media_type), mi.media_type);
        meta->size = len;
    }
    if (has_subject)
        *has_subject = mi.has_subject;
    if (subject && mi.has_subject)
        *subject = mi.subject;
    rc = 0;
    goto out;
fail_txn:
    meta_rollback(h->mc);
out:
    if (marked)
        storage_install_unmark(st, &d);
    manifest_info_release(&mi);
    return rc;
}

int
storage_manifest_get(struct storage_handle *h, const char *repo, const char *ref,
                     struct manifest_meta *meta, struct blob_reader *rd, struct err *e)
{
    if (!ref)
        return err_set(e, ERR_MANIFEST_UNKNOWN, 0, "manifest unknown");
    size_t rl = strlen(ref);
    char ds[DIGEST_STR_MAX];
    int is_digest = memchr(ref, ':', rl) != NULL;
    if (is_digest) {
        struct digest pd;
        if (digest_parse(ref, rl, &pd, e) < 0)
            return -1;
        digest_format(&pd, ds);
    } else if (tag_validate(ref, rl, NULL) < 0) {
        return err_set(e, ERR_MANIFEST_UNKNOWN, 0, "manifest unknown");
    }
    struct manifest_meta m;
    int found = meta_manifest_get(h->mc, repo, is_digest ? ds : NULL, ref, &m, e);
    if (found < 0)
        return -1;
    if (found == 0)
        return err_set(e, ERR_MANIFEST_UNKNOWN, 0, "manifest unknown");
    /* HEAD checks the body too, so it agrees with GET; a re-push of the
     * manifest writes it again and heals it */
    struct blob_backend *b = h->st->blobs;
    uint64_t got;
    int ex = rd ? b->ops->open(b, &m.digest, rd, e) : b->ops->stat(b, &m.digest, &got, e);
    if (ex < 0)
        return -1;
    if (ex == 0) {
        log_error("storage", NULL, "manifest row without file digest=%s",
                  digest_format(&m.digest, ds));
        return err_set(e, ERR_MANIFEST_UNKNOWN, 0, "manifest unknown");
    }
    if (meta)
        *meta = m;
    /* retention's keep_within (pulls.c): no allocation, no I/O */
    if (h->st->track_pulls && !is_digest)
        pulls_note(h, repo, ref);
    return 0;
}

int
storage_manifest_delete(struct storage_handle *h, const char *repo, const char *ref, struct err *e)
{
    if (!ref)
        return err_set(e, ERR_MANIFEST_UNKNOWN, 0, "manifest unknown");
    size_t rl = strlen(ref);
    int is_digest = memchr(ref, ':', rl) != NULL;
    char ds[DIGEST_STR_MAX];
    if (is_digest) {
        struct digest rd;
        if (digest_parse(ref, rl, &rd, e) < 0)
            return -1;
        digest_format(&rd, ds);
    } else if (tag_validate(ref, rl, NULL) < 0) {
        return err_set(e, ERR_MANIFEST_UNKNOWN, 0, "manifest unknown");
    }
    if (meta_begin(h->mc, e) < 0)
        return -1;
    int del = is_digest ? meta_manifest_delete(h->mc, repo, ds, e)
                        : meta_tag_delete(h->mc, repo, ref, e);
    if (del <= 0) {
        if (del == 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, 0, "manifest unknown");
        meta_rollback(h->mc);
        return -1;
    }
    return meta_commit(h->mc, e);
}

/* ---- lists ------------------------------------------------------------------------ */

int
storage_tags_list(struct storage_handle *h, const char *repo, const char *last, long n,
                  storage_name_fn fn, void *arg, int *more, struct err *e)
{
    long count = 0;
    int m = 0;
    if (meta_tags_page(h->mc, repo, last, n, fn, arg, &m, &count, e) < 0)
        return -1;
    if (count == 0 && !m) {
        /* the catalog's definition: a repository with a blob link or a
         * manifest, tagged or not (an empty list, as distribution answers) */
        int ex = meta_repo_exists(h->mc, repo, e);
        if (ex < 0)
            return -1;
        if (ex == 0)
            return err_set(e, ERR_NAME_UNKNOWN, 0, "repository name not known to registry");
    }
    if (more)
        *more = m;
    return 0;
}

int
storage_catalog(struct storage_handle *h, const char *last, long n, storage_name_fn fn, void *arg,
                int *more, struct err *e)
{
    long count;
    return meta_catalog_page(h->mc, last, n, fn, arg, more, &count, e);
}

int
storage_referrers(struct storage_handle *h, const char *repo, const struct digest *subject,
                  const char *artifact_type, storage_referrer_fn fn, void *arg, struct err *e)
{
    return storage_referrers_page(h, repo, subject, artifact_type, NULL, -1, fn, arg, NULL, e);
}

int
storage_referrers_page(struct storage_handle *h, const char *repo, const struct digest *subject,
                       const char *artifact_type, const struct digest *last, long n,
                       storage_referrer_fn fn, void *arg, int *more, struct err *e)
{
    char ss[DIGEST_STR_MAX], ls[DIGEST_STR_MAX];
    digest_format(subject, ss);
    if (last)
        digest_format(last, ls);
    else
        ls[0] = '\0'; /* every digest sorts after "" */
    return meta_referrers_page(h->mc, repo, ss, artifact_type, ls, n, fn, arg, more, e);
}

/* ---- health and figures ---- */

int
storage_healthy(struct storage_handle *h, struct err *e)
{
    struct storage *st = h->st;
    if (meta_failed(st->meta)) {
        err_set(e, ERR_IO, 0,
                "an fsync of the metadata failed: writes are refused until the server restarts");
        return 0;
    }
    /* W_OK answers EROFS for a read-only mount, EACCES for lost permission */
    if (faccessat(st->rootfd, ".", W_OK, AT_EACCESS) < 0) {
        err_sys(e, ERR_IO, errno, "storage root '%s' not writable", st->root);
        return 0;
    }
    if (meta_repo_exists(h->mc, "", e) < 0)
        return 0;
    return 1;
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
storage_stats(struct storage *st, struct storage_stats *out, struct err *e)
{
    int rc = 0;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->stats_mu);
    int64_t now = mono_ms();
    if (!st->stats || now - st->stats_at_ms >= STORAGE_STATS_TTL_MS) {
        struct meta_stats ms;
        if (!st->stats_mc)
            st->stats_mc = meta_conn_open(st->meta, e);
        if (!st->stats && !(st->stats = calloc(1, sizeof(*st->stats))))
            rc = err_set(e, ERR_NOMEM, 0, "storage stats: out of memory");
        else if (!st->stats_mc || meta_stats(st->stats_mc, &ms, e) < 0)
            rc = -1;
        else {
            *st->stats = ms;
            st->stats_at_ms = now;
        }
    }
    if (st->stats) {
        out->repos = st->stats->repos;
        out->blobs = st->stats->blobs;
        out->blob_bytes = st->stats->blob_bytes;
        out->manifests = st->stats->manifests;
        out->tags = st->stats->tags;
    }
    pthread_mutex_unlock(&st->stats_mu);

    pthread_mutex_lock(&st->mu);
    out->uploads_open = st->nsessions;
    pthread_mutex_unlock(&st->mu);

    struct meta_sync_stats ss;
    meta_sync_stats(st->meta, &ss);
    out->fsyncs = ss.fsyncs;
    out->durable_commits = ss.durable_commits;
    out->waiters = ss.waiters;
    _Static_assert(STORAGE_GROUP_BUCKETS == META_GROUP_BUCKETS, "one histogram");
    memcpy(out->group, ss.group, sizeof(out->group));
    out->failed = meta_failed(st->meta);
    return rc;
}
