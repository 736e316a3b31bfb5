/* check.c - ocireg check (see check.h for what it verifies and repairs).
 *
 * Memory stays bounded whatever the store holds: blob rows are read in keyset
 * pages of CHECK_PAGE rows, each blob is hashed through one CHECK_BUF buffer,
 * the dangling-row listing feeds a callback (and, when repairing, a batch of
 * at most CHECK_BATCH rows that are repaired before the listing runs again:
 * a callback must not use the connection its listing runs on), and the blob
 * and upload areas are walked by the backend's own iteration.
 *
 * Repairs, each its own durable transaction:
 *   damaged or wrong-size blob  BEGIN; meta_blob_forget; backend quarantine
 *                               (a rename); COMMIT. A failed rename rolls the
 *                               rows back; a failed commit after it leaves rows
 *                               without a file, which the next check (or the
 *                               first read) removes. Never a row without a file
 *                               the other way round.
 *   blob row, file missing      BEGIN; meta_blob_forget; COMMIT
 *   link without a blob row     meta_blob_forget of its digest
 *   broken manifest             meta_manifest_delete (tags, references go too)
 *   tag naming no manifest      meta_tag_delete
 *   orphan reference rows       meta_check_refs_drop
 * Deleting a manifest may break an index that references it: the listing runs
 * again until it finds nothing, and a round that changes nothing ends the run
 * with an error instead of looping. */
#include "gc/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/blob.h"
#include "storage/meta.h"
#include "storage/storage.h"

#include "common/banned.h"

#define CHECK_PAGE 256
#define CHECK_BUF (1u << 20)
#define CHECK_BATCH 256

struct ck {
    struct meta_conn *mc;
    struct blob_backend *b;
    const struct check_opts *o;
    struct check_stats *st;
    unsigned char *buf;
    char tag[24]; /* the quarantine name suffix: the run's start time */
};

static void say(struct ck *k, enum check_line kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
say(struct ck *k, enum check_line kind, const char *fmt, ...)
{
    if (kind == CHECK_PROBLEM)
        k->st->problems++;
    else if (kind == CHECK_REPAIRED)
        k->st->repaired++;
    if (!k->o->report)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    k->o->report(k->o->report_arg, kind, line);
}

/* ---- 1. the database ---- */

static int
integrity_line(void *arg, const char *msg)
{
    say(arg, CHECK_PROBLEM, "database: %s", msg);
    return 0;
}

/* ---- 2. blob rows ---- */

/* users_line - without repair: what a bad blob breaks (with repair, the
 * dangling listing finds the same manifests once the blob's rows are gone) */
struct users {
    struct ck *k;
    const char *ds;
};

static int
users_line(void *arg, const char *repo, const char *mds, int kind)
{
    struct users *u = arg;
    if (kind < 0)
        say(u->k, CHECK_PROBLEM, "manifest %s@%s: its body is missing or damaged", repo, mds);
    else if (kind == REF_BLOB)
        say(u->k, CHECK_PROBLEM, "manifest %s@%s references blob %s that is missing or damaged",
            repo, mds, u->ds);
    else if (kind == REF_MANIFEST)
        say(u->k, CHECK_PROBLEM,
            "manifest %s@%s references manifest %s whose body is missing or damaged", repo, mds,
            u->ds);
    return 0;
}

static int
report_users(struct ck *k, const char *ds, struct err *e)
{
    if (k->o->repair)
        return 0;
    struct users u = {.k = k, .ds = ds};
    return meta_check_users(k->mc, ds, users_line, &u, e);
}

/* repair_blob - the rows of ds go; with move, its bytes go to quarantine in
 * the same transaction (before the commit) */
static int
repair_blob(struct ck *k, const struct digest *d, const char *ds, int move, struct err *e)
{
    if (!k->o->repair)
        return 0;
    if (move && !k->b->ops->quarantine) {
        say(k, CHECK_NOTE, "blob %s: left as it is (the %s blob backend has no quarantine)", ds,
            k->b->ops->name);
        return 0;
    }
    char where[256] = "";
    int moved = 0;
    if (meta_begin(k->mc, e) < 0)
        return -1;
    if (meta_blob_forget(k->mc, ds, e) < 0)
        goto fail;
    if (move) {
        moved = k->b->ops->quarantine(k->b, d, k->tag, where, sizeof(where), e);
        if (moved < 0)
            goto fail;
    }
    if (meta_commit(k->mc, e) < 0)
        return -1;
    if (moved) {
        k->st->quarantined++;
        say(k, CHECK_REPAIRED, "blob %s: moved to %s, its rows removed", ds, where);
    } else {
        say(k, CHECK_REPAIRED, "blob %s: its rows removed", ds);
    }
    return 0;
fail:
    meta_rollback(k->mc);
    return -1;
}

/* check_blob - one blob row: its bytes stored, of its size, hashing to it */
static int
check_blob(struct ck *k, const char *ds, uint64_t size, struct err *e)
{
    k->st->blobs++;
    struct digest d;
    if (digest_parse(ds, strlen(ds), &d, NULL) < 0) {
        say(k, CHECK_PROBLEM, "blob row '%s': not a digest", ds);
        return repair_blob(k, NULL, ds, 0, e);
    }
    struct blob_reader rd = {0};
    struct err re = {0};
    int ex = k->b->ops->open(k->b, &d, &rd, &re);
    if (ex < 0) {
        say(k, CHECK_PROBLEM, "blob %s: cannot be opened: %s (left as it is)", ds, re.msg);
        return 0;
    }
    if (ex == 0) {
        say(k, CHECK_PROBLEM, "blob %s: file missing", ds);
        if (report_users(k, ds, e) < 0)
            return -1;
        return repair_blob(k, &d, ds, 0, e);
    }
    uint64_t on_disk = rd.size, off = 0;
    struct hasher *hs = on_disk == size ? hasher_new(d.algo) : NULL;
    if (on_disk == size && !hs) {
        blob_reader_close(&rd);
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    while (hs && off < size) {
        size_t want = size - off < CHECK_BUF ? (size_t)(size - off) : CHECK_BUF;
        long n = blob_reader_read(&rd, off, k->buf, want, &re);
        if (n < 0) {
            hasher_free(hs);
            blob_reader_close(&rd);
            say(k, CHECK_PROBLEM, "blob %s: cannot be read: %s (left as it is)", ds, re.msg);
            return 0;
        }
        if (n == 0) { /* shorter than it said when opened */
            on_disk = off;
            break;
        }
        hasher_update(hs, k->buf, (size_t)n);
        off += (uint64_t)n;
        k->st->bytes_read += (uint64_t)n;
    }
    blob_reader_close(&rd);
    if (on_disk != size) {
        hasher_free(hs);
        say(k, CHECK_PROBLEM, "blob %s: size %llu on disk, %llu in the database", ds,
            (unsigned long long)on_disk, (unsigned long long)size);
    } else {
        struct digest got;
        hasher_final(hs, &got);
        hasher_free(hs);
        if (digest_equal(&got, &d))
            return 0;
        char gs[DIGEST_STR_MAX];
        say(k, CHECK_PROBLEM, "blob %s: content hashes to %s", ds, digest_format(&got, gs));
    }
    if (report_users(k, ds, e) < 0)
        return -1;
    return repair_blob(k, &d, ds, 1, e);
}

struct blob_page {
    size_t n;
    char *ds[CHECK_PAGE];
    uint64_t size[CHECK_PAGE];
    int nomem;
};

static int
page_row(void *arg, const char *ds, uint64_t size)
{
    struct blob_page *p = arg;
    p->ds[p->n] = strdup(ds);
    if (!p->ds[p->n]) {
        p->nomem = 1;
        return 1;
    }
    p->size[p->n++] = size;
    return 0;
}

static void
page_clear(struct blob_page *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->ds[i]);
    p->n = 0;
}

static int
check_blobs(struct ck *k, struct err *e)
{
    struct blob_page p = {0};
    char *last = strdup("");
    int rc = 0, more = 1;
    if (!last)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    while (rc == 0 && more) {
        rc = meta_check_blobs_page(k->mc, last, CHECK_PAGE, page_row, &p, &more, e);
        if (rc == 0 && p.nomem)
            rc = err_set(e, ERR_NOMEM, 0, "out of memory");
        for (size_t i = 0; rc == 0 && i < p.n; i++)
            rc = check_blob(k, p.ds[i], p.size[i], e);
        if (rc == 0 && p.n) {
            /* the next page starts after this one's last row (repairs may have
             * removed it: keyset paging does not mind) */
            free(last);
            last = p.ds[p.n - 1];
            p.ds[p.n - 1] = NULL;
        }
        page_clear(&p);
    }
    page_clear(&p);
    free(last);
    return rc;
}

/* ---- 3. rows naming rows ---- */

static void
say_dangling(struct ck *k, const struct meta_dangling *d)
{
    switch (d->kind) {
    case META_DANGLING_LINK:
        say(k, CHECK_PROBLEM, "blob %s linked in %s has no blob row", d->digest, d->repo);
        break;
    case META_DANGLING_BODY:
        say(k, CHECK_PROBLEM, "manifest %s@%s: its body has no blob row", d->repo, d->digest);
        break;
    case META_DANGLING_BODY_SIZE:
        say(k, CHECK_PROBLEM, "manifest %s@%s: size %llu in its row, %llu in its body's blob row",
            d->repo, d->digest, (unsigned long long)d->a, (unsigned long long)d->b);
        break;
    case META_DANGLING_REF_BLOB:
        say(k, CHECK_PROBLEM, "manifest %s@%s references blob %s that is not linked", d->repo,
            d->digest, d->ref);
        break;
    case META_DANGLING_REF_MANIFEST:
        say(k, CHECK_PROBLEM,
            "manifest %s@%s references manifest %s that is not in the repository", d->repo,
            d->digest, d->ref);
        break;
    case META_DANGLING_REF_ORPHAN:
        say(k, CHECK_PROBLEM, "manifest %s@%s: reference rows without the manifest row", d->repo,
            d->digest);
        break;
    case META_DANGLING_TAG:
        say(k, CHECK_PROBLEM, "tag %s:%s names manifest %s that is not in the repository",
            d->repo, d->ref, d->digest);
        break;
    }
}

struct dangling_batch {
    struct ck *k;
    size_t n;
    struct meta_dangling it[CHECK_BATCH]; /* strings strdup'd */
    int nomem;
};

static int
dangling_row(void *arg, const struct meta_dangling *d)
{
    struct dangling_batch *bt = arg;
    if (!bt->k->o->repair) {
        say_dangling(bt->k, d);
        return 0;
    }
    struct meta_dangling *c = &bt->it[bt->n];
    *c = *d;
    c->repo = strdup(d->repo);
    c->digest = strdup(d->digest);
    c->ref = strdup(d->ref);
    if (!c->repo || !c->digest || !c->ref) {
        free((char *)c->repo);
        free((char *)c->digest);
        free((char *)c->ref);
        bt->nomem = 1;
        return 1;
    }
    return ++bt->n == CHECK_BATCH;
}

static void
batch_clear(struct dangling_batch *bt)
{
    for (size_t i = 0; i < bt->n; i++) {
        free((char *)bt->it[i].repo);
        free((char *)bt->it[i].digest);
        free((char *)bt->it[i].ref);
    }
    bt->n = 0;
}

/* repair_dangling - 1 when a row changed, 0 when an earlier repair of the
 * batch already took it away, -1 */
static int
repair_dangling(struct ck *k, const struct meta_dangling *d, struct err *e)
{
    if (meta_begin(k->mc, e) < 0)
        return -1;
    int rc;
    switch (d->kind) {
    case META_DANGLING_LINK:
        rc = meta_blob_forget(k->mc, d->digest, e) < 0 ? -1 : 1;
        break;
    case META_DANGLING_REF_ORPHAN:
        rc = meta_check_refs_drop(k->mc, d->repo, d->digest, e);
        break;
    case META_DANGLING_TAG:
        rc = meta_tag_delete(k->mc, d->repo, d->ref, e);
        break;
    default:
        rc = meta_manifest_delete(k->mc, d->repo, d->digest, e);
        break;
    }
    if (rc <= 0) {
        meta_rollback(k->mc);
        return rc;
    }
    if (meta_commit(k->mc, e) < 0)
        return -1;
    switch (d->kind) {
    case META_DANGLING_LINK:
        say(k, CHECK_REPAIRED, "blob %s: its links removed", d->digest);
        break;
    case META_DANGLING_REF_ORPHAN:
        say(k, CHECK_REPAIRED, "manifest %s@%s: reference rows removed", d->repo, d->digest);
        break;
    case META_DANGLING_TAG:
        say(k, CHECK_REPAIRED, "tag %s:%s removed", d->repo, d->ref);
        break;
    default:
        say(k, CHECK_REPAIRED, "manifest %s@%s deleted with its tags and references", d->repo,
            d->digest);
        break;
    }
    return 1;
}

static int
check_dangling(struct ck *k, struct err *e)
{
    struct dangling_batch *bt = calloc(1, sizeof(*bt));
    if (!bt)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    bt->k = k;
    int rc = 0;
    for (;;) {
        rc = meta_check_dangling(k->mc, dangling_row, bt, e);
        if (rc == 0 && bt->nomem)
            rc = err_set(e, ERR_NOMEM, 0, "out of memory");
        if (rc < 0 || bt->n == 0)
            break;
        int changed = 0;
        for (size_t i = 0; rc == 0 && i < bt->n; i++) {
            say_dangling(k, &bt->it[i]);
            int r = repair_dangling(k, &bt->it[i], e);
            if (r < 0)
                rc = -1;
            changed += r > 0;
        }
        batch_clear(bt);
        if (rc == 0 && !changed)
            rc = err_set(e, ERR_INTERNAL, 0, "repair made no progress");
        if (rc < 0)
            break;
    }
    batch_clear(bt);
    free(bt);
    return rc;
}

/* ---- 4. files without rows ---- */

struct walk {
    struct ck *k;
    struct err *e;
    int failed;
};

static int
garbage_file(void *arg, const struct digest *d, uint64_t size)
{
    struct walk *w = arg;
    char ds[DIGEST_STR_MAX];
    uint64_t rs;
    int r = meta_check_blob_row(w->k->mc, digest_format(d, ds), &rs, w->e);
    if (r < 0) {
        w->failed = 1;
        return 1;
    }
    if (r == 0) {
        w->k->st->garbage_files++;
        w->k->st->garbage_bytes += size;
    }
    return 0;
}

static int
stray_upload(void *arg, const char *name)
{
    struct walk *w = arg;
    char repo[NAME_MAX_LEN + 1];
    enum digest_algo algo;
    int r = meta_upload_get(w->k->mc, name, repo, &algo, w->e);
    if (r < 0) {
        w->failed = 1;
        return 1;
    }
    if (r == 0) {
        w->k->st->stray_uploads++;
        say(w->k, CHECK_NOTE, "upload area entry '%s' has no session row", name);
    }
    return 0;
}

static int
check_files(struct ck *k, struct err *e)
{
    struct walk w = {.k = k, .e = e};
    if (k->b->ops->list(k->b, garbage_file, &w, e) < 0 || w.failed)
        return -1;
    if (k->b->ops->w_list(k->b, stray_upload, &w, e) < 0 || w.failed)
        return -1;
    return 0;
}

/* ---- the run ---- */

static double
now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
check_run(struct storage_handle *h, const struct check_opts *o, struct check_stats *st,
          struct err *e)
{
    memset(st, 0, sizeof(*st));
    double t0 = now_sec();
    struct ck k = {
        .mc = storage_handle_meta(h),
        .b = storage_handle_blobs(h),
        .o = o,
        .st = st,
        .buf = malloc(CHECK_BUF),
    };
    if (!k.buf)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    snprintf(k.tag, sizeof(k.tag), "%lld", (long long)time(NULL));
    int rc = meta_check_integrity(k.mc, integrity_line, &k, e);
    if (rc == 0)
        rc = check_blobs(&k, e);
    if (rc == 0)
        rc = check_dangling(&k, e);
    if (rc == 0)
        rc = check_files(&k, e);
    struct meta_check_counts c = {0};
    if (rc == 0)
        rc = meta_check_counts(k.mc, &c, e);
    st->links = c.links;
    st->manifests = c.manifests;
    st->tags = c.tags;
    st->absent_subjects = c.absent_subjects;
    free(k.buf);
    st->seconds = now_sec() - t0;
    return rc;
}
