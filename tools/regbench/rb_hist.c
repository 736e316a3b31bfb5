/* rb_hist.c - log-linear histogram, see rb_hist.h. */
#include "tools/regbench/rb_hist.h"

#include <math.h>
#include <string.h>

#include "common/banned.h"

static unsigned
bucket_of(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    unsigned b = 63u - (unsigned)__builtin_clzll(v); /* 7..63 */
    unsigned shift = b - 6;
    return 128u + (b - 7u) * 64u + (unsigned)((v >> shift) - 64u);
}

/* the middle value of bucket i */
static uint64_t
bucket_mid(unsigned i)
{
    if (i < 128)
        return i;
    unsigned b = (i - 128u) / 64u + 7u;
    uint64_t sub = (i - 128u) % 64u + 64u;
    unsigned shift = b - 6;
    uint64_t lo = sub << shift;
    return lo + ((UINT64_C(1) << shift) >> 1);
}

void
rb_hist_init(struct rb_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void
rb_hist_add(struct rb_hist *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->count++;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void
rb_hist_merge(struct rb_hist *dst, const struct rb_hist *src)
{
    for (unsigned i = 0; i < RB_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t
rb_hist_percentile(const struct rb_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return h->min;
    if (p >= 100)
        return h->max;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < RB_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = bucket_mid(i);
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}
