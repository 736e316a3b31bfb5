/* gc.c - one garbage collection pass (gc/gc.h, docs/gc.md).
 *
 * A pass walks the review queue (storage.h "garbage collection steps") in
 * this order, so that what one step frees is collected by the next in the
 * same pass:
 *
 *   full?      a store never reviewed whole, or o->full: every link, blob
 *              (and, with delete_untagged, manifest) is queued first
 *   REPO       emptied repositories: their links and manifests are queued
 *   retention  each repository's tags through retention_plan; the tags it
 *              marks are removed (their manifests queued as RETAINED)
 *   manifests  RETAINED ones always, untagged ones with delete_untagged
 *              (otherwise their queue rows are dropped); repeated while a
 *              sweep removes something, since a removed index queues its
 *              children and a removed subject its referrers
 *   links      per repository: those no kept manifest references
 *   blobs      nothing links them and no manifest is stored as them
 *   uploads    sessions idle past [storage] upload_expiry
 *
 * Every step settles one batch (GC_BATCH candidates) in one short write
 * transaction and o->stop is asked between batches. Candidates younger than
 * the grace period keep their queue rows for a later pass. A crash anywhere
 * leaves the queue holding what was not settled; the next pass goes on.
 * Memory: one batch, plus one repository's tags for retention. */
#include "gc/gc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gc/retention.h"
#include "storage/storage.h"

#include "common/banned.h"

#define GC_BATCH 256

struct pass {
    struct storage_handle *h;
    const struct gc_opts *o;
    struct gc_stats *st;
    int64_t now, before;
    int stopped;
    struct storage_gc_item items[GC_BATCH];
};

static void say(struct pass *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(struct pass *p, const char *fmt, ...)
{
    if (!p->o->report)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    p->o->report(p->o->report_arg, line);
}

static int
stop_now(struct pass *p)
{
    if (!p->stopped && p->o->stop && p->o->stop(p->o->stop_arg))
        p->stopped = 1;
    return p->stopped;
}

static void
account(struct pass *p, const struct storage_gc_item *it)
{
    switch (it->kind) {
    case STORAGE_GC_BLOB:
        p->st->blobs++;
        p->st->bytes += it->size;
        say(p, "blob %s %llu", it->digest, (unsigned long long)it->size);
        break;
    case STORAGE_GC_LINK:
        p->st->links++;
        say(p, "link %s %s", it->repo, it->digest);
        break;
    case STORAGE_GC_MANIFEST:
    case STORAGE_GC_RETAINED:
        p->st->manifests++;
        say(p, "manifest %s@%s (rule %s)", it->repo, it->digest,
            it->kind == STORAGE_GC_RETAINED ? "retention" : "untagged");
        break;
    default:
        break;
    }
}

/* sweep - settle every queued candidate of kind, batch by batch. Returns how
 * many were removed, or -1. keep: settle them as needed without looking. */
static long
sweep(struct pass *p, enum storage_gc_kind kind, int keep, struct err *e)
{
    struct storage_gc_item last;
    int have_last = 0;
    long removed = 0;
    for (;;) {
        if (stop_now(p))
            return removed;
        int n = storage_gc_queue_page(p->h, kind, have_last ? &last : NULL, p->items, GC_BATCH, e);
        if (n < 0)
            return -1;
        if (n == 0)
            return removed;
        last = p->items[n - 1];
        have_last = 1;
        for (int i = 0; i < n; i++)
            p->items[i].keep = keep;
        p->st->reviewed += (uint64_t)n;
        int r = storage_gc_collect(p->h, p->items, n, p->before, e);
        if (r < 0)
            return -1;
        for (int i = 0; i < n && r > 0; i++)
            if (p->items[i].removed)
                account(p, &p->items[i]);
        removed += r;
    }
}

/* ---- retention ---- */

struct tag_list {
    struct retention_tag *t;
    size_t n, cap;
    int oom;
};

static int
tag_add(void *arg, const char *tag, const struct digest *d, int64_t pushed, int64_t pulled)
{
    struct tag_list *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        struct retention_tag *nt = realloc(l->t, nc * sizeof(*nt));
        if (!nt) {
            l->oom = 1;
            return 1;
        }
        l->t = nt;
        l->cap = nc;
    }
    char ds[DIGEST_STR_MAX];
    struct retention_tag *t = &l->t[l->n];
    memset(t, 0, sizeof(*t));
    t->tag = strdup(tag);
    t->digest = strdup(digest_format(d, ds));
    if (!t->tag || !t->digest) {
        free((char *)t->tag);
        free((char *)t->digest);
        l->oom = 1;
        return 1;
    }
    t->pushed = pushed;
    t->pulled = pulled;
    l->n++;
    return 0;
}

static void
tag_list_release(struct tag_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->t[i].tag);
        free((char *)l->t[i].digest);
    }
    free(l->t);
    memset(l, 0, sizeof(*l));
}

/* retain_repo - apply the rules to one repository */
static int
retain_repo(struct pass *p, const char *repo, struct err *e)
{
    struct tag_list l = {0};
    const char **tags = NULL;
    struct digest *ds = NULL;
    int *removed = NULL;
    int rc = -1;
    if (storage_gc_tags(p->h, repo, tag_add, &l, e) < 0)
        goto out;
    if (l.oom) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    size_t marked = l.n ? retention_plan(p->o->retention, repo, l.t, l.n, p->now) : 0;
    if (marked == 0) {
        rc = 0;
        goto out;
    }
    tags = calloc(marked, sizeof(*tags));
    ds = calloc(marked, sizeof(*ds));
    removed = calloc(marked, sizeof(*removed));
    if (!tags || !ds || !removed) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < l.n && k < marked; i++) {
        if (!l.t[i].remove)
            continue;
        if (digest_parse(l.t[i].digest, strlen(l.t[i].digest), &ds[k], NULL) < 0)
            continue;
        tags[k++] = l.t[i].tag;
    }
    if (storage_gc_untag(p->h, repo, tags, ds, removed, k, e) < 0)
        goto out;
    size_t j = 0;
    for (size_t i = 0; i < l.n && j < k; i++) {
        if (!l.t[i].remove || l.t[i].tag != tags[j])
            continue;
        if (removed[j]) {
            p->st->tags++;
            say(p, "tag %s:%s (rule %s)", repo, l.t[i].tag, l.t[i].why ? l.t[i].why : "retention");
        }
        j++;
    }
    rc = 0;
out:
    free(tags);
    free(ds);
    free(removed);
    tag_list_release(&l);
    return rc;
}

struct names {
    char (*v)[NAME_MAX_LEN + 1];
    int n, max;
};

static int
name_add(void *arg, const char *name)
{
    struct names *l = arg;
    if (l->n >= l->max)
        return 1;
    snprintf(l->v[l->n++], sizeof(l->v[0]), "%s", name);
    return 0;
}

/* retention - every repository, a page of names at a time (a catalog
 * callback must not use the handle) */
static int
retention(struct pass *p, struct err *e)
{
    enum { PAGE = 64 };
    struct names l = {.max = PAGE};
    l.v = calloc(PAGE, sizeof(*l.v));
    if (!l.v)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    char last[NAME_MAX_LEN + 1] = "";
    int rc = 0, more = 1;
    while (rc == 0 && more && !stop_now(p)) {
        l.n = 0;
        if (storage_catalog(p->h, last[0] ? last : NULL, PAGE, name_add, &l, &more, e) < 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < l.n && rc == 0; i++)
            rc = retain_repo(p, l.v[i], e);
        if (l.n)
            snprintf(last, sizeof(last), "%s", l.v[l.n - 1]);
        else
            more = 0;
    }
    free(l.v);
    return rc;
}

static void
upload_line(void *arg, const char *uuid)
{
    struct pass *p = arg;
    p->st->uploads++;
    say(p, "upload %s", uuid);
}

static double
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
run(struct pass *p, struct err *e)
{
    const struct gc_opts *o = p->o;
    int full_needed = 0;
    if (storage_gc_begin(p->h, o->dry_run, &full_needed, e) < 0)
        return -1;
    int rc = -1;
    if (o->full || full_needed) {
        if (storage_gc_fill(p->h, STORAGE_GC_LINK, e) < 0 ||
            (o->delete_untagged && storage_gc_fill(p->h, STORAGE_GC_MANIFEST, e) < 0) ||
            storage_gc_fill(p->h, STORAGE_GC_BLOB, e) < 0)
            goto out;
    }
    if (sweep(p, STORAGE_GC_REPO, 0, e) < 0)
        goto out;
    if (o->retention && !stop_now(p) && retention(p, e) < 0)
        goto out;
    for (;;) {
        long r1 = sweep(p, STORAGE_GC_RETAINED, 0, e);
        if (r1 < 0)
            goto out;
        long r2 = sweep(p, STORAGE_GC_MANIFEST, !o->delete_untagged, e);
        if (r2 < 0)
            goto out;
        if (r1 + r2 == 0 || p->stopped)
            break;
    }
    if (sweep(p, STORAGE_GC_LINK, 0, e) < 0 || sweep(p, STORAGE_GC_BLOB, 0, e) < 0)
        goto out;
    if (!stop_now(p) && storage_expire_uploads_each(p->h, o->dry_run, upload_line, p, e) < 0)
        goto out;
    rc = 0;
out:
    storage_gc_end(p->h);
    return rc;
}

int
gc_pass(struct storage_handle *h, const struct gc_opts *o, struct gc_stats *st, struct err *e)
{
    struct pass *p = calloc(1, sizeof(*p));
    memset(st, 0, sizeof(*st));
    if (!p)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    double t0 = mono();
    p->h = h;
    p->o = o;
    p->st = st;
    p->now = (int64_t)time(NULL);
    p->before = p->now - (o->grace_sec > 0 ? o->grace_sec : 0);
    /* grace 0: everything that exists now is old enough (created <= now),
     * not what appears during the same second */
    if (o->grace_sec <= 0)
        p->before = p->now + 1;
    int rc = run(p, e);
    st->seconds = mono() - t0;
    free(p);
    return rc;
}
