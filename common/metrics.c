/* metrics.c - the process's collector registry and the text exposition writers
 * (Prometheus text format 0.0.4).
 *
 * The registry is a small array under one mutex. metrics_render holds that
 * mutex while the collectors run, so metrics_unregister (which takes it) waits
 * for a scrape in progress, and a collector's arg is never used after its
 * unregistration returned. Collectors must not call metrics_register or
 * metrics_unregister (it would deadlock). Nothing here is on a request's hot
 * path: a scrape allocates its text, the counters it reads are the modules'. */
#include "common/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

struct collector {
    metrics_collect_fn fn;
    void *arg;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct collector *reg;
static size_t reg_n, reg_cap;

struct metrics_out {
    char *buf;
    size_t len, cap;
    int oom; /* a growth failed: the render answers ERR_NOMEM */
};

int
metrics_register(metrics_collect_fn fn, void *arg, struct err *e)
{
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_n; i++) {
        if (reg[i].fn == fn && reg[i].arg == arg) {
            pthread_mutex_unlock(&reg_mu);
            return 0;
        }
    }
    if (reg_n == reg_cap) {
        size_t cap = reg_cap ? reg_cap * 2 : 8;
        struct collector *p = realloc(reg, cap * sizeof(*p));
        if (!p) {
            pthread_mutex_unlock(&reg_mu);
            return err_set(e, ERR_NOMEM, 0, "metrics: out of memory");
        }
        reg = p;
        reg_cap = cap;
    }
    reg[reg_n++] = (struct collector){fn, arg};
    pthread_mutex_unlock(&reg_mu);
    return 0;
}

void
metrics_unregister(metrics_collect_fn fn, void *arg)
{
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_n; i++) {
        if (reg[i].fn == fn && reg[i].arg == arg) {
            memmove(&reg[i], &reg[i + 1], (reg_n - i - 1) * sizeof(*reg));
            reg_n--;
            break;
        }
    }
    if (reg_n == 0) {
        /* the last one gone (the server stopping): nothing stays allocated */
        free(reg);
        reg = NULL;
        reg_cap = 0;
    }
    pthread_mutex_unlock(&reg_mu);
}

/* ---- the growing buffer ---- */

static int
out_reserve(struct metrics_out *o, size_t n)
{
    if (o->oom)
        return -1;
    if (o->len + n + 1 <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n + 1)
        cap *= 2;
    char *p = realloc(o->buf, cap);
    if (!p) {
        o->oom = 1;
        return -1;
    }
    o->buf = p;
    o->cap = cap;
    return 0;
}

static void
out_put(struct metrics_out *o, const char *s, size_t n)
{
    if (out_reserve(o, n) < 0)
        return;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void __attribute__((format(printf, 2, 3)))
out_printf(struct metrics_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        out_put(o, tmp, (size_t)n);
        return;
    }
    if (out_reserve(o, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(o->buf + o->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

/* ---- writers ---- */

void
metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help)
{
    /* HELP text escapes only backslash and newline (exposition format) */
    out_printf(o, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            out_put(o, "\\\\", 2);
        else if (*p == '\n')
            out_put(o, "\\n", 2);
        else
            out_put(o, p, 1);
    }
    out_printf(o, "\n# TYPE %s %s\n", name, type);
}

/* a sample value as the format wants it: Go's float syntax, +Inf, -Inf, NaN */
static void
fmt_value(double v, char *buf, size_t cap)
{
    if (isnan(v))
        snprintf(buf, cap, "NaN");
    else if (isinf(v))
        snprintf(buf, cap, "%sInf", v > 0 ? "+" : "-");
    else {
        /* the shortest of the two that reads back exactly: 0.0005, not
         * 0.00050000000000000001 */
        snprintf(buf, cap, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, cap, "%.17g", v);
    }
}

static void
sample_text(struct metrics_out *o, const char *name, const char *labels, const char *value)
{
    if (labels && *labels)
        out_printf(o, "%s{%s} %s\n", name, labels, value);
    else
        out_printf(o, "%s %s\n", name, value);
}

void
metrics_sample(struct metrics_out *o, const char *name, const char *labels, double value)
{
    char v[40];
    fmt_value(value, v, sizeof(v));
    sample_text(o, name, labels, v);
}

void
metrics_sample_u64(struct metrics_out *o, const char *name, const char *labels, uint64_t value)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRIu64, value);
    sample_text(o, name, labels, v);
}

void
metrics_histogram(struct metrics_out *o, const char *name, const char *labels,
                  const double *bounds, size_t n, const uint64_t *counts, double sum)
{
    char lbl[1024], sname[256], le[40];
    const char *sep = labels && *labels ? "," : "";
    const char *base = labels ? labels : "";
    uint64_t cum = 0;
    snprintf(sname, sizeof(sname), "%s_bucket", name);
    for (size_t i = 0; i <= n; i++) {
        cum += counts[i];
        if (i < n)
            fmt_value(bounds[i], le, sizeof(le));
        else
            snprintf(le, sizeof(le), "+Inf");
        snprintf(lbl, sizeof(lbl), "%s%sle=\"%s\"", base, sep, le);
        metrics_sample_u64(o, sname, lbl, cum);
    }
    snprintf(sname, sizeof(sname), "%s_sum", name);
    metrics_sample(o, sname, labels, sum);
    snprintf(sname, sizeof(sname), "%s_count", name);
    metrics_sample_u64(o, sname, labels, cum);
}

char *
metrics_label_escape(const char *value, char *buf, size_t cap)
{
    size_t j = 0;
    if (!cap)
        return buf;
    for (const char *p = value ? value : ""; *p; p++) {
        const char *rep = NULL;
        char one[2] = {*p, '\0'};
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '"')
            rep = "\\\"";
        else if (*p == '\n')
            rep = "\\n";
        else
            rep = one;
        size_t k = strlen(rep);
        if (j + k >= cap)
            break; /* never half an escape */
        memcpy(buf + j, rep, k);
        j += k;
    }
    buf[j] = '\0';
    return buf;
}

char *
metrics_render(size_t *len, struct err *e)
{
    struct metrics_out o = {0};
    out_reserve(&o, 0);
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_n && !o.oom; i++)
        reg[i].fn(reg[i].arg, &o);
    pthread_mutex_unlock(&reg_mu);
    if (o.oom || !o.buf) {
        free(o.buf);
        err_set(e, ERR_NOMEM, 0, "metrics: out of memory rendering the exposition");
        return NULL;
    }
    *len = o.len;
    return o.buf;
}
