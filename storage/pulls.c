/* pulls.c - when each tag was last pulled (retention's keep_within, see
 * gc/retention.h), recorded without costing the manifest GET by tag, the
 * registry's hottest request.
 *
 * Only with storage_opts.track_pulls (the server sets it when retention rules
 * are configured); off, storage_manifest_get pays one predictable branch.
 *
 * Each handle that records a pull (in practice: each worker thread) gets a
 * table of its own, allocated at its first pull and kept by the store: a
 * fixed open-addressing hash of (repo, tag) -> last time seen, the names in a
 * fixed arena. A GET by tag takes the table's mutex (uncontended but for a
 * flush), finds its entry and stores the time, or adds one: no allocation,
 * no I/O, no other thread's lock. The same tag pulled a thousand times in a
 * minute is one entry, so the database sees at most one write per tag per
 * flush.
 *
 * storage_pulls_flush (the maintenance thread, every minute) swaps every
 * table's entries out under its mutex and writes them all in one light
 * transaction (meta_tags_pulled_set: a later time wins). When a table grows to
 * PULL_WAKE entries (or its arena three quarters full) the callback set by
 * storage_pulls_notify asks for a flush at once; a table that is full drops new
 * tags (counted) until then, which costs only precision: the tag is recorded
 * at its next pull.
 *
 * What a crash loses: the pulls since the last flush (up to a minute), and a
 * light transaction's commit until the next durable commit's WAL fsync. A
 * pull time is a hint for retention, kept to the minute: losing one makes a tag
 * look pulled a minute earlier (or, pulled once only, not at all), never
 * loses data by itself.
 *
 * Locks: st->pulls_mu guards the list of tables, their ownership and the
 * callback; a table's mu guards its entries. Order: pulls_mu before a table's
 * mu (flush); a note takes its table's mu alone and releases it before taking
 * pulls_mu to call the callback. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/meta.h"
#include "storage/storage_internal.h"

#include "common/banned.h"

#define PULL_SLOTS 1024u        /* a power of two */
#define PULL_MAX 768u           /* entries: three quarters of the slots */
#define PULL_WAKE 576u          /* entries at which a flush is asked for */
#define PULL_ARENA (64u * 1024) /* bytes of names: "repo\0tag\0" per entry */

struct pull_slot {
    uint64_t hash;
    int64_t at; /* 0: empty */
    uint32_t off, len;
};

struct pull_table {
    struct pull_table *next; /* st->pulls, under st->pulls_mu */
    int owned;               /* a handle records into it (under st->pulls_mu) */
    pthread_mutex_t mu;
    size_t n, used;
    int asked;             /* a flush was asked for since the last one */
    unsigned long dropped; /* tags not recorded: table full */
    struct pull_slot slot[PULL_SLOTS];
    char arena[PULL_ARENA];
};

static uint64_t
name_hash(const char *repo, size_t rl, const char *tag, size_t tl)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i <= rl; i++) {  /* the NUL separates repo from tag */
        h ^= (unsigned char)(i < rl ? repo[i] : 0);
        h *= 0x100000001b3ull;
    }
    for (size_t i = 0; i < tl; i++) {
        h ^= (unsigned char)tag[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* the table h records into from now on: a free one of the store's, or a new
 * one (once per handle, at its first pull). NULL when out of memory: the
 * pull is not recorded. */
static struct pull_table *
attach(struct storage_handle *h)
{
    struct storage *st = h->st;
    pthread_mutex_lock(&st->pulls_mu);
    struct pull_table *t = st->pulls;
    while (t && t->owned)
        t = t->next;
    if (!t && (t = calloc(1, sizeof(*t)))) {
        pthread_mutex_init(&t->mu, NULL);
        t->next = st->pulls;
        st->pulls = t;
    }
    if (t)
        t->owned = 1;
    pthread_mutex_unlock(&st->pulls_mu);
    h->pulls = t;
    return t;
}

static void
ask_flush(struct storage *st)
{
    pthread_mutex_lock(&st->pulls_mu);
    if (st->pulls_full)
        st->pulls_full(st->pulls_full_arg);
    pthread_mutex_unlock(&st->pulls_mu);
}

void
pulls_note(struct storage_handle *h, const char *repo, const char *tag)
{
    struct pull_table *t = h->pulls ? h->pulls : attach(h);
    if (!t)
        return;
    size_t rl = strlen(repo), tl = strlen(tag), len = rl + tl + 2;
    uint64_t hv = name_hash(repo, rl, tag, tl);
    int64_t now = (int64_t)time(NULL);
    int wake = 0;
    pthread_mutex_lock(&t->mu);
    /* n < PULL_SLOTS always: the probe ends at an empty slot */
    uint32_t i = (uint32_t)hv & (PULL_SLOTS - 1);
    for (; t->slot[i].at; i = (i + 1) & (PULL_SLOTS - 1)) {
        struct pull_slot *s = &t->slot[i];
        if (s->hash == hv && s->len == len && memcmp(t->arena + s->off, repo, rl + 1) == 0 &&
            memcmp(t->arena + s->off + rl + 1, tag, tl + 1) == 0) {
            s->at = now;
            pthread_mutex_unlock(&t->mu);
            return;
        }
    }
    if (t->n >= PULL_MAX || t->used + len > PULL_ARENA) {
        t->dropped++;
    } else {
        struct pull_slot *s = &t->slot[i];
        memcpy(t->arena + t->used, repo, rl + 1);
        memcpy(t->arena + t->used + rl + 1, tag, tl + 1);
        *s = (struct pull_slot){.hash = hv, .at = now, .off = (uint32_t)t->used, .len = (uint32_t)len};
        t->used += len;
        t->n++;
    }
    if (!t->asked && (t->n >= PULL_WAKE || t->used >= PULL_ARENA / 4 * 3 || t->dropped)) {
        t->asked = 1;
        wake = 1;
    }
    pthread_mutex_unlock(&t->mu);
    if (wake)
        ask_flush(h->st);
}

void
pulls_detach(struct storage_handle *h)
{
    if (!h->pulls)
        return;
    pthread_mutex_lock(&h->st->pulls_mu);
    h->pulls->owned = 0; /* its entries wait for the next flush */
    pthread_mutex_unlock(&h->st->pulls_mu);
    h->pulls = NULL;
}

void
pulls_free_all(struct storage *st)
{
    for (struct pull_table *t = st->pulls, *next; t; t = next) {
        next = t->next;
        pthread_mutex_destroy(&t->mu);
        free(t);
    }
    st->pulls = NULL;
}

void
storage_pulls_notify(struct storage *st, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&st->pulls_mu);
    st->pulls_full = fn;
    st->pulls_full_arg = fn ? arg : NULL;
    pthread_mutex_unlock(&st->pulls_mu);
}

/* a table's entries taken out by a flush */
struct snap {
    struct snap *next;
    size_t n;
    struct pull_slot slot[PULL_MAX];
    char arena[PULL_ARENA];
};

long
storage_pulls_flush(struct storage_handle *h, struct err *e)
{
    struct storage *st = h->st;
    if (!st->track_pulls)
        return 0;
    struct snap *snaps = NULL;
    size_t total = 0;
    int oom = 0;
    pthread_mutex_lock(&st->pulls_mu);
    for (struct pull_table *t = st->pulls; t; t = t->next) {
        /* allocated outside the table's lock: its owner never waits on malloc */
        struct snap *sn = malloc(sizeof(*sn));
        if (!sn) {
            oom = 1;
            break;
        }
        pthread_mutex_lock(&t->mu);
        sn->n = 0;
        for (size_t i = 0; i < PULL_SLOTS && t->n; i++)
            if (t->slot[i].at)
                sn->slot[sn->n++] = t->slot[i];
        memcpy(sn->arena, t->arena, t->used);
        if (t->n) {
            memset(t->slot, 0, sizeof(t->slot));
            t->n = t->used = 0;
        }
        t->asked = 0;
        t->dropped = 0;
        pthread_mutex_unlock(&t->mu);
        if (!sn->n) {
            free(sn);
            continue;
        }
        sn->next = snaps;
        snaps = sn;
        total += sn->n;
    }
    pthread_mutex_unlock(&st->pulls_mu);
    long rc = 0;
    struct meta_pull *p = NULL;
    if (oom || (total && !(p = malloc(total * sizeof(*p))))) {
        rc = err_set(e, ERR_NOMEM, 0, "recording pull times: out of memory");
        goto out;
    }
    if (!total)
        goto out;
    size_t k = 0;
    for (struct snap *sn = snaps; sn; sn = sn->next)
        for (size_t i = 0; i < sn->n; i++) {
            const char *repo = sn->arena + sn->slot[i].off;
            p[k++] = (struct meta_pull){
                .repo = repo, .tag = repo + strlen(repo) + 1, .at = sn->slot[i].at};
        }
    if (meta_begin_light(h->mc, e) < 0) {
        rc = -1;
        goto out;
    }
    rc = meta_tags_pulled_set(h->mc, p, total, e);
    if (rc < 0) {
        meta_rollback(h->mc);
        goto out;
    }
    if (meta_commit(h->mc, e) < 0)
        rc = -1;
out:
    free(p);
    while (snaps) {
        struct snap *next = snaps->next;
        free(snaps);
        snaps = next;
    }
    return rc;
}

int
storage_tag_times(struct storage_handle *h, const char *repo, const char *tag, int64_t *pushed,
                  int64_t *pulled, struct err *e)
{
    return meta_tag_times(h->mc, repo, tag, pushed, pulled, e);
}
