/* metrics.h - the process's Prometheus metrics (text exposition format 0.0.4).
 *
 * Modules register a collector at start-up; a scrape of /metrics renders every
 * collector in registration order. A collector reads its module's own
 * counters (per-worker or atomic: the hot paths never take a lock for a
 * metric) and writes families and samples through the writers below.
 * Names follow Prometheus conventions: ocireg_<area>_<what>_<unit>, counters
 * end in _total, times in _seconds, sizes in _bytes. */
#ifndef OCIREG_METRICS_H
#define OCIREG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct metrics_out;

/* write the module's families; called on the scraping thread */
typedef void (*metrics_collect_fn)(void *arg, struct metrics_out *out);

/* metrics_register - add a collector (thread-safe; at start-up in practice).
 * Returns 0, or -1 with ERR_NOMEM. The same (fn, arg) twice is one entry. */
int metrics_register(metrics_collect_fn fn, void *arg, struct err *e);
/* metrics_unregister - remove it (before arg goes away); a scrape in progress
 * finishes first */
void metrics_unregister(metrics_collect_fn fn, void *arg);

/* ---- writers, inside a collector ---- */

/* metrics_family - "# HELP name help" and "# TYPE name type"; type is
 * "counter", "gauge" or "histogram" */
void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help);
/* metrics_sample - "name{labels} value"; labels is the text between the
 * braces (`route="manifest",method="GET"`, values escaped by the caller with
 * metrics_label_escape) or NULL for none */
void metrics_sample(struct metrics_out *o, const char *name, const char *labels, double value);
void metrics_sample_u64(struct metrics_out *o, const char *name, const char *labels, uint64_t value);

/* metrics_histogram - the _bucket, _sum and _count samples of one histogram
 * series (its family written before with type "histogram"): n upper bounds in
 * increasing order (le labels; +Inf is added), counts[i] the observations in
 * bucket i alone (not cumulative: the writer sums them; counts[n] is the
 * +Inf bucket's, so counts has n + 1 entries), sum their total. labels as
 * metrics_sample's (NULL: none); le is appended to them. */
void metrics_histogram(struct metrics_out *o, const char *name, const char *labels,
                       const double *bounds, size_t n, const uint64_t *counts, double sum);

/* metrics_label_escape - a label value with \, " and newline escaped, into
 * buf (NUL-terminated, truncated safely); returns buf */
char *metrics_label_escape(const char *value, char *buf, size_t cap);

/* ---- rendering (the /metrics handler) ---- */

/* metrics_render - every collector's output: a new NUL-terminated text owned
 * by the caller (free), its length in *len; NULL with ERR_NOMEM */
char *metrics_render(size_t *len, struct err *e);

#endif
