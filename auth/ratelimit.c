/* ratelimit.c - failed-login counters per (client address, user name).
 *
 * A fixed table of max_entries slots, chained from a bucket array, under one
 * mutex (each call holds it for a hash and a short chain walk). A pair is
 * kept as a 64-bit SipHash-2-4 of "addr NUL user" under a per-object random
 * key: the table holds no names (and never a password), and nobody can choose
 * pairs that collide on purpose (a collision would share a counter, i.e. let
 * one client lock out another).
 *
 * An entry: the time of the first counted failure and the count. A failure
 * after the window has passed since the first starts a new window. When every
 * slot is in use, the slot whose last failure is the oldest is reused (a
 * linear scan: only when the table is full, i.e. under an attack where the
 * scan is cheaper than the bcrypt it saves). */
#include "auth/ratelimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/banned.h"

#define NIL UINT32_MAX

struct slot {
    uint64_t key;
    long long first, last;
    unsigned fails;
    uint32_t next; /* chain of the bucket, or of the free list */
};

struct ratelimit {
    pthread_mutex_t lock;
    unsigned max_failures;
    int window;
    size_t nslots, nbuckets; /* nbuckets: a power of two */
    struct slot *slots;
    uint32_t *buckets;
    uint32_t free_head;
    uint64_t k0, k1;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

/* SipHash-2-4 of the two strings with their NULs ("addr\0user\0") */
static uint64_t
pair_hash(const struct ratelimit *rl, const char *addr, const char *user)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ rl->k0, v1 = 0x646f72616e646f6dull ^ rl->k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ rl->k0, v3 = 0x7465646279746573ull ^ rl->k1;
    const char *parts[2] = {addr, user};
    uint64_t m = 0, total = 0;
    int fill = 0;
    for (int p = 0; p < 2; p++) {
        const char *s = parts[p];
        for (size_t i = 0;; i++) {
            m |= (uint64_t)(unsigned char)s[i] << (8 * fill);
            total++;
            if (++fill == 8) {
                v3 ^= m;
                SIPROUND;
                SIPROUND;
                v0 ^= m;
                m = 0;
                fill = 0;
            }
            if (!s[i])
                break;
        }
    }
    m |= total << 56;
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

struct ratelimit *
ratelimit_new(unsigned max_failures, int window_sec, size_t max_entries, struct err *e)
{
    struct ratelimit *rl = calloc(1, sizeof(*rl));
    if (!rl)
        goto nomem;
    rl->max_failures = max_failures;
    rl->window = window_sec > 0 ? window_sec : 1;
    if (max_entries == 0)
        max_entries = 1;
    if (max_entries > UINT32_MAX - 1)
        max_entries = UINT32_MAX - 1;
    rl->nslots = max_entries;
    rl->nbuckets = 1;
    while (rl->nbuckets < max_entries)
        rl->nbuckets <<= 1;
    rl->slots = calloc(rl->nslots, sizeof(*rl->slots));
    rl->buckets = malloc(rl->nbuckets * sizeof(*rl->buckets));
    if (!rl->slots || !rl->buckets)
        goto nomem;
    for (size_t i = 0; i < rl->nbuckets; i++)
        rl->buckets[i] = NIL;
    for (size_t i = 0; i < rl->nslots; i++)
        rl->slots[i].next = i + 1 < rl->nslots ? (uint32_t)(i + 1) : NIL;
    rl->free_head = 0;
    pthread_mutex_init(&rl->lock, NULL);
    uint64_t k[2];
    if (RAND_bytes((unsigned char *)k, sizeof(k)) != 1) {
        ratelimit_free(rl);
        err_set(e, ERR_INTERNAL, 0, "ratelimit: no random bytes for the hash key");
        return NULL;
    }
    rl->k0 = k[0];
    rl->k1 = k[1];
    return rl;
nomem:
    if (rl) {
        free(rl->slots);
        free(rl->buckets);
        free(rl);
    }
    err_set(e, ERR_NOMEM, ENOMEM, "ratelimit: out of memory");
    return NULL;
}

void
ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl->slots);
    free(rl->buckets);
    free(rl);
}

static uint32_t *
bucket_of(struct ratelimit *rl, uint64_t key)
{
    return &rl->buckets[key & (rl->nbuckets - 1)];
}

/* the slot of key, or NIL; *link: the pointer to it in its chain */
static uint32_t
find(struct ratelimit *rl, uint64_t key, uint32_t **link)
{
    uint32_t *l = bucket_of(rl, key);
    while (*l != NIL && rl->slots[*l].key != key)
        l = &rl->slots[*l].next;
    if (link)
        *link = l;
    return *l;
}

static void
unlink_slot(struct ratelimit *rl, uint32_t i)
{
    uint32_t *l;
    if (find(rl, rl->slots[i].key, &l) != i)
        return;
    *l = rl->slots[i].next;
    memset(&rl->slots[i], 0, sizeof(rl->slots[i]));
    rl->slots[i].next = rl->free_head;
    rl->free_head = i;
}

/* a free slot, evicting the least recently failed entry when none is free */
static uint32_t
take_slot(struct ratelimit *rl)
{
    if (rl->free_head == NIL) {
        uint32_t oldest = 0;
        for (uint32_t i = 1; i < rl->nslots; i++)
            if (rl->slots[i].last < rl->slots[oldest].last)
                oldest = i;
        unlink_slot(rl, oldest);
    }
    uint32_t i = rl->free_head;
    rl->free_head = rl->slots[i].next;
    return i;
}

int
ratelimit_check(struct ratelimit *rl, const char *addr, const char *user, long long now)
{
    if (!rl || rl->max_failures == 0)
        return 0;
    uint64_t key = pair_hash(rl, addr ? addr : "", user ? user : "");
    int wait = 0;
    pthread_mutex_lock(&rl->lock);
    uint32_t i = find(rl, key, NULL);
    if (i != NIL) {
        const struct slot *s = &rl->slots[i];
        long long left = s->first + rl->window - now;
        if (left <= 0)
            unlink_slot(rl, i); /* the window has passed: forget the pair */
        else if (s->fails >= rl->max_failures)
            wait = left > rl->window ? rl->window : (int)left;
    }
    pthread_mutex_unlock(&rl->lock);
    return wait;
}

void
ratelimit_fail(struct ratelimit *rl, const char *addr, const char *user, long long now)
{
    if (!rl || rl->max_failures == 0)
        return;
    uint64_t key = pair_hash(rl, addr ? addr : "", user ? user : "");
    pthread_mutex_lock(&rl->lock);
    uint32_t i = find(rl, key, NULL);
    if (i == NIL) {
        i = take_slot(rl);
        struct slot *s = &rl->slots[i];
        uint32_t *b = bucket_of(rl, key);
        s->key = key;
        s->fails = 0;
        s->first = now;
        s->next = *b;
        *b = i;
    }
    struct slot *s = &rl->slots[i];
    if (now - s->first >= rl->window) {
        s->first = now;
        s->fails = 0;
    }
    if (s->fails < UINT32_MAX)
        s->fails++;
    s->last = now;
    pthread_mutex_unlock(&rl->lock);
}

void
ratelimit_success(struct ratelimit *rl, const char *addr, const char *user)
{
    if (!rl || rl->max_failures == 0)
        return;
    uint64_t key = pair_hash(rl, addr ? addr : "", user ? user : "");
    pthread_mutex_lock(&rl->lock);
    uint32_t i = find(rl, key, NULL);
    if (i != NIL)
        unlink_slot(rl, i);
    pthread_mutex_unlock(&rl->lock);
}
