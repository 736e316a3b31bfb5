/* rb_hist.h - a log-linear latency histogram (HdrHistogram's idea, ~1.6% precision).
 *
 * Values (nanoseconds in regbench) below 128 get one bucket each; above, every
 * power of two is split into 64 equal buckets. Recording is one index
 * computation and an increment; percentiles walk the ~3,800 buckets once, so
 * millions of samples never need sorting. Each worker thread owns one histogram
 * and they are merged at the end (no locking). */
#ifndef REGBENCH_RB_HIST_H
#define REGBENCH_RB_HIST_H

#include <stdint.h>

#define RB_HIST_BUCKETS (128 + 57 * 64)

struct rb_hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    uint64_t b[RB_HIST_BUCKETS];
};

/* rb_hist_init - empty histogram. */
void rb_hist_init(struct rb_hist *h);

/* rb_hist_add - record one value. */
void rb_hist_add(struct rb_hist *h, uint64_t v);

/* rb_hist_merge - add every sample of src into dst. */
void rb_hist_merge(struct rb_hist *dst, const struct rb_hist *src);

/* rb_hist_percentile - the value at percentile p (0 < p <= 100): the middle of
 * the bucket holding the sample of rank ceil(p/100 * count), clamped to the
 * recorded min/max. Returns 0 for an empty histogram. */
uint64_t rb_hist_percentile(const struct rb_hist *h, double p);

#endif
