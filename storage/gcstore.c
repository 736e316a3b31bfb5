/* gcstore.c - the storage side of garbage collection (storage.h "garbage
 * collection steps"): what a pass may remove, removed so that the store's
 * invariants hold at every instant and after any crash.
 *
 * Candidates: the review queue (meta.h), fed by triggers inside the writes
 * that can orphan something. A candidate's queue row goes in the transaction
 * that settled it (removed, or found needed), so a crash leaves it queued.
 *
 * Steps and why they are safe:
 *   - links, manifests, tags: a conditional DELETE inside a short write
 *     transaction ("still unreferenced, untagged, old enough?"). A manifest
 *     PUT checks its references (links, child manifests) inside its own write
 *     transaction; sqlite has one writer (and this process queues writers on
 *     one mutex), so either the PUT commits first and the candidate is kept,
 *     or the candidate is gone and the PUT answers MANIFEST_BLOB_UNKNOWN.
 *     Light transactions: losing one to a power cut only brings a removed
 *     thing back, and its queue row with it.
 *   - blobs: a row is deleted only when nothing links it and no manifest is
 *     stored as it; the deletion is committed durably (meta_commit_hold)
 *     BEFORE the files are removed, and the write lock is kept until they
 *     are, so no writer can add a row in between. A crash before the files
 *     go leaves files without rows (harmless), whose queue rows are removed
 *     only after the files (next pass: "no row" -> remove the file). Never a
 *     row without its file.
 *   - a blob a commit is installing right now (upload commit, blob put,
 *     manifest PUT: the bytes may have found the very file gc is removing and
 *     kept it) keeps its file: the committer's transaction then finds the
 *     file and adds the row back. The check and the removal happen under
 *     st->mu, where the committer marks the blob before touching the bytes.
 *   - readers: a GET has the file open; removing the name does not end it.
 *
 * Memory: one batch of candidates at a time (the caller's items). */
#include "storage/storage_internal.h"
#include "storage/blob.h"
#include "storage/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/log.h"

#include "common/banned.h"

_Static_assert((int)STORAGE_GC_BLOB == (int)META_GC_BLOB &&
                   (int)STORAGE_GC_LINK == (int)META_GC_LINK &&
                   (int)STORAGE_GC_MANIFEST == (int)META_GC_MANIFEST &&
                   (int)STORAGE_GC_REPO == (int)META_GC_REPO &&
                   (int)STORAGE_GC_RETAINED == (int)META_GC_RETAINED,
               "storage and meta name the queue's kinds alike");

/* ---- blobs being installed ---- */

static struct installing *
inst_find(struct storage *st, const struct digest *d)
{
    for (size_t i = 0; i < st->ninst; i++)
        if (digest_equal(&st->inst[i].d, d))
            return &st->inst[i];
    return NULL;
}

int
storage_install_mark(struct storage *st, const struct digest *d, struct err *e)
{
    pthread_mutex_lock(&st->mu);
    struct installing *in = inst_find(st, d);
    if (!in) {
        if (st->ninst == st->capinst) {
            size_t nc = st->capinst ? 2 * st->capinst : 16;
            struct installing *p = realloc(st->inst, nc * sizeof(*p));
            if (!p) {
                pthread_mutex_unlock(&st->mu);
                return err_set(e, ERR_NOMEM, 0, "out of memory");
            }
            st->inst = p;
            st->capinst = nc;
        }
        in = &st->inst[st->ninst++];
        in->d = *d;
        in->n = 0;
    }
    in->n++;
    pthread_mutex_unlock(&st->mu);
    return 0;
}

void
storage_install_unmark(struct storage *st, const struct digest *d)
{
    pthread_mutex_lock(&st->mu);
    struct installing *in = inst_find(st, d);
    if (in && --in->n == 0)
        *in = st->inst[--st->ninst];
    pthread_mutex_unlock(&st->mu);
}

/* remove_file - gc removes blob d's file unless a commit is installing it
 * (then the committer adds the row back). 1 removed, 0 kept, -1. */
static int
remove_file(struct storage *st, const struct digest *d, struct err *e)
{
    pthread_mutex_lock(&st->mu);
    int rc = 0;
    if (!inst_find(st, d))
        rc = st->blobs->ops->remove(st->blobs, d, e) < 0 ? -1 : 1;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

void
storage_gc_hook(struct storage *st, void (*fn)(void *arg, enum storage_gc_point pt), void *arg)
{
    st->gc_hook_arg = arg;
    st->gc_hook = fn;
}

static void
at(struct storage *st, enum storage_gc_point pt)
{
    if (st->gc_hook)
        st->gc_hook(st->gc_hook_arg, pt);
}

/* ---- the pass ---- */

int
storage_gc_begin(struct storage_handle *h, int dry_run, int *full_needed, struct err *e)
{
    int f = meta_gc_full_needed(h->mc, e);
    if (f < 0)
        return -1;
    if (dry_run) {
        if (meta_begin_light(h->mc, e) < 0)
            return -1;
        h->gc_dry = 1;
    }
    *full_needed = f;
    return 0;
}

void
storage_gc_end(struct storage_handle *h)
{
    if (h->gc_dry) {
        meta_rollback(h->mc);
        h->gc_dry = 0;
    }
}

/* step_begin / step_end - a step's own transaction, or nothing in a dry run
 * (the pass's transaction holds everything) */
static int
step_begin(struct storage_handle *h, int durable, struct err *e)
{
    if (h->gc_dry)
        return 0;
    return durable ? meta_begin(h->mc, e) : meta_begin_light(h->mc, e);
}

static int
step_end(struct storage_handle *h, int rc, struct err *e)
{
    if (h->gc_dry)
        return rc;
    if (rc < 0) {
        meta_rollback(h->mc);
        return -1;
    }
    return meta_commit(h->mc, e);
}

int
storage_gc_fill(struct storage_handle *h, enum storage_gc_kind kind, struct err *e)
{
    if (step_begin(h, 0, e) < 0)
        return -1;
    return step_end(h, meta_gc_fill(h->mc, (enum meta_gc_kind)kind, e), e);
}

struct page_fill {
    struct storage_gc_item *items;
    enum storage_gc_kind kind;
    int n, max;
};

static int
page_add(void *arg, const char *repo, const char *ds)
{
    struct page_fill *p = arg;
    if (p->n >= p->max)
        return 1;
    struct storage_gc_item *it = &p->items[p->n++];
    memset(it, 0, sizeof(*it));
    it->kind = p->kind;
    snprintf(it->repo, sizeof(it->repo), "%s", repo);
    snprintf(it->digest, sizeof(it->digest), "%s", ds);
    return 0;
}

int
storage_gc_queue_page(struct storage_handle *h, enum storage_gc_kind kind,
                      const struct storage_gc_item *after, struct storage_gc_item *items, int n,
                      struct err *e)
{
    /* the last key is copied: items may be the array after points into */
    char repo[NAME_MAX_LEN + 1] = "", ds[DIGEST_STR_MAX] = "";
    if (after) {
        snprintf(repo, sizeof(repo), "%s", after->repo);
        snprintf(ds, sizeof(ds), "%s", after->digest);
    }
    struct page_fill p = {.items = items, .kind = kind, .max = n};
    if (meta_gc_queue_page(h->mc, (enum meta_gc_kind)kind, repo, ds, n, page_add, &p, e) < 0)
        return -1;
    return p.n;
}

/* settle_rows - links, manifests, repositories: one transaction */
static int
settle_rows(struct storage_handle *h, struct storage_gc_item *items, int n, int64_t before,
            struct err *e)
{
    struct meta_conn *c = h->mc;
    int removed = 0;
    if (step_begin(h, 0, e) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        struct storage_gc_item *it = &items[i];
        enum meta_gc_kind k = (enum meta_gc_kind)it->kind;
        it->removed = 0;
        if (k == META_GC_REPO) {
            if (meta_gc_repo_expand(c, it->repo, e) < 0)
                goto fail;
        } else {
            int64_t created = 0;
            int ex = meta_gc_created(c, k, it->repo, it->digest, &created, e);
            if (ex < 0)
                goto fail;
            /* younger than the grace period: its queue row stays for a later
             * pass */
            if (ex && !it->keep && created >= before)
                continue;
            int r = 0;
            if (ex && !it->keep && k == META_GC_LINK)
                r = meta_gc_link_delete(c, it->repo, it->digest, before, e);
            else if (ex && !it->keep)
                r = meta_gc_manifest_delete(c, it->repo, it->digest, before, k == META_GC_RETAINED,
                                            e);
            if (r < 0)
                goto fail;
            it->removed = r;
            removed += r;
        }
        if (meta_gc_dequeue(c, k, it->repo, it->digest, e) < 0)
            goto fail;
    }
    if (step_end(h, 0, e) < 0)
        return -1;
    at(h->st, STORAGE_GC_AT_ROWS_SETTLED);
    return removed;
fail:
    step_end(h, -1, e);
    return -1;
}

/* settle_blobs - rows deleted in one durable transaction, then (write lock
 * still held) the files, then the queue rows of the removed ones */
static int
settle_blobs(struct storage_handle *h, struct storage_gc_item *items, int n, int64_t before,
             struct err *e)
{
    struct storage *st = h->st;
    struct meta_conn *c = h->mc;
    int removed = 0, files = 0;
    /* gone[i]: 1 = row deleted (or none) and the file is to be removed */
    char *gone = calloc((size_t)n ? (size_t)n : 1, 1);
    struct digest *d = calloc((size_t)n ? (size_t)n : 1, sizeof(*d));
    if (!gone || !d) {
        free(gone);
        free(d);
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    if (step_begin(h, 1, e) < 0)
        goto out_err;
    for (int i = 0; i < n; i++) {
        struct storage_gc_item *it = &items[i];
        it->removed = 0;
        it->size = 0;
        int valid = digest_parse(it->digest, strlen(it->digest), &d[i], NULL) == 0;
        int64_t created = 0;
        int ex = meta_gc_created(c, META_GC_BLOB, "", it->digest, &created, e);
        if (ex < 0)
            goto fail;
        if (ex && created >= before)
            continue; /* young: stays queued */
        if (ex) {
            uint64_t size = 0;
            int r = meta_gc_blob_delete(c, it->digest, before, &size, e);
            if (r < 0)
                goto fail;
            if (r == 1) {
                it->removed = 1;
                it->size = size;
                removed++;
                gone[i] = (char)valid;
            }
        } else if (valid) {
            /* no row: a file left by a crash after its row's deletion, or
             * nothing (a lost file's rows were forgotten) */
            uint64_t size = 0;
            int f = st->blobs->ops->stat(st->blobs, &d[i], &size, e);
            if (f < 0)
                goto fail;
            if (f == 1) {
                gone[i] = 1;
                it->size = size;
            }
        }
        /* a removed blob's queue row goes once its file is gone (below) */
        if (!gone[i] && meta_gc_dequeue(c, META_GC_BLOB, "", it->digest, e) < 0)
            goto fail;
    }
    if (h->gc_dry) {
        for (int i = 0; i < n; i++)
            if (gone[i] && !items[i].removed) {
                items[i].removed = 1;
                removed++;
            }
        goto out;
    }
    if (meta_commit_hold(c, e) < 0)
        goto out_err;
    at(st, STORAGE_GC_AT_BLOB_ROWS_GONE);
    for (int i = 0; i < n; i++) {
        if (!gone[i])
            continue;
        struct err fe = {0};
        int r = remove_file(st, &d[i], &fe);
        if (r < 0) {
            /* the row is gone (durably): the file stays as garbage and the
             * queue row with it, for the next pass */
            log_warn("gc", NULL, "remove blob %s: %s", items[i].digest, fe.msg);
            gone[i] = 0;
            continue;
        }
        if (r == 1 && !items[i].removed) {
            items[i].removed = 1;
            removed++;
        }
        if (r == 1)
            at(st, STORAGE_GC_AT_BLOB_FILE_GONE);
        files++;
    }
    meta_release(c);
    if (files) {
        /* the queue rows of what is settled; losing this transaction only
         * makes the next pass look at them again */
        if (meta_begin_light(c, e) < 0)
            goto out_err;
        for (int i = 0; i < n; i++)
            if (gone[i] && meta_gc_dequeue(c, META_GC_BLOB, "", items[i].digest, e) < 0) {
                meta_rollback(c);
                goto out_err;
            }
        if (meta_commit(c, e) < 0)
            goto out_err;
        at(st, STORAGE_GC_AT_BLOBS_SETTLED);
    }
out:
    free(gone);
    free(d);
    return removed;
fail:
    step_end(h, -1, e);
out_err:
    free(gone);
    free(d);
    return -1;
}

int
storage_gc_collect(struct storage_handle *h, struct storage_gc_item *items, int n, int64_t before,
                   struct err *e)
{
    if (n <= 0)
        return 0;
    if (items[0].kind == STORAGE_GC_BLOB)
        return settle_blobs(h, items, n, before, e);
    return settle_rows(h, items, n, before, e);
}

struct tags_fn {
    int (*fn)(void *arg, const char *tag, const struct digest *d, int64_t pushed, int64_t pulled);
    void *arg;
};

static int
tag_row(void *arg, const char *tag, const char *ds, int64_t pushed, int64_t pulled)
{
    struct tags_fn *t = arg;
    struct digest d;
    if (digest_parse(ds, strlen(ds), &d, NULL) < 0)
        return 0;
    return t->fn(t->arg, tag, &d, pushed, pulled);
}

int
storage_gc_tags(struct storage_handle *h, const char *repo,
                int (*fn)(void *arg, const char *tag, const struct digest *d, int64_t pushed,
                          int64_t pulled),
                void *arg, struct err *e)
{
    struct tags_fn t = {.fn = fn, .arg = arg};
    return meta_tags_for_retention(h->mc, repo, tag_row, &t, e);
}

int
storage_gc_untag(struct storage_handle *h, const char *repo, const char *const *tags,
                 const struct digest *digests, int *removed, size_t n, struct err *e)
{
    int count = 0;
    if (n == 0)
        return 0;
    if (step_begin(h, 0, e) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ds[DIGEST_STR_MAX];
        digest_format(&digests[i], ds);
        int r = meta_gc_tag_delete(h->mc, repo, tags[i], ds, e);
        if (r < 0) {
            step_end(h, -1, e);
            return -1;
        }
        removed[i] = r;
        count += r;
    }
    if (step_end(h, 0, e) < 0)
        return -1;
    return count;
}

int
storage_gc_queued(struct storage_handle *h, int64_t *n, struct err *e)
{
    return meta_gc_queue_count(h->mc, n, e);
}

int
storage_root_owner(const char *root, long *pid, struct err *e)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/lock", root);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return err_sys(e, ERR_IO, errno, "open '%s'", path);
    }
    int rc = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK) {
            rc = err_sys(e, ERR_IO, errno, "lock '%s'", path);
            goto out;
        }
        char buf[32];
        ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[r > 0 ? r : 0] = '\0';
        *pid = strtol(buf, NULL, 10);
        rc = 1;
    }
out:
    close(fd);
    return rc;
}
