/* rb_report.c - table and JSON output, see rb_report.h. */
#include "tools/regbench/rb_report.h"

#include <inttypes.h>
#include <string.h>

#include <jansson.h>

#include "common/banned.h"

static double
ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static double
per_s(double x, double secs)
{
    return secs > 0 ? x / secs : 0;
}

/* push, push-chunked, pull, pull-range: CPU per GB means something there */
static int
blob_scenario(const struct rb_entry *x)
{
    return strncmp(x->scenario, "pu", 2) == 0;
}

static void
fmt_size(char *buf, size_t cap, uint64_t v)
{
    if (v >= (1u << 30) && v % (1u << 30) == 0)
        snprintf(buf, cap, "%" PRIu64 "G", v >> 30);
    else if (v >= (1u << 20) && v % (1u << 20) == 0)
        snprintf(buf, cap, "%" PRIu64 "M", v >> 20);
    else if (v >= 1024 && v % 1024 == 0)
        snprintf(buf, cap, "%" PRIu64 "K", v >> 10);
    else
        snprintf(buf, cap, "%" PRIu64, v);
}

void
rb_report_table(FILE *f, const char *url, const struct rb_entry *ents, int n)
{
    fprintf(f, "regbench %s\n", url);
    fprintf(f, "%-13s %3s %5s %6s %9s %10s %10s %9s %9s %9s\n", "scenario", "rep", "conns", "size",
            "ops", "req/s", "MB/s", "p50 ms", "p90 ms", "p99 ms");
    for (int i = 0; i < n; i++) {
        const struct rb_entry *x = &ents[i];
        char sz[32];
        fmt_size(sz, sizeof(sz), x->size);
        if (!x->ok) {
            fprintf(f, "%-13s %3d %5d %6s  ERROR\n", x->scenario, x->rep, x->conns, sz);
            if (x->setup_err[0])
                fprintf(f, "    error: %s\n", x->setup_err);
            for (int k = 0; k < x->r.nerr; k++)
                fprintf(f, "    error (x%" PRIu64 "): %s\n", x->r.err_count[k], x->r.err_msg[k]);
            continue;
        }
        const struct rb_result *r = &x->r;
        fprintf(f, "%-13s %3d %5d %6s %9" PRIu64 " %10.1f %10.2f %9.3f %9.3f %9.3f\n", x->scenario,
                x->rep, x->conns, sz, r->ops, per_s((double)r->ops, r->seconds),
                per_s((double)r->bytes / 1e6, r->seconds), ms(rb_hist_percentile(&r->hist, 50)),
                ms(rb_hist_percentile(&r->hist, 90)), ms(rb_hist_percentile(&r->hist, 99)));
        if (x->before.ok && x->after.ok) {
            double cpu = x->after.cpu_s - x->before.cpu_s;
            fprintf(f, "    server: cpu %.2f s", cpu);
            if (blob_scenario(x) && r->bytes >= 1000000)
                fprintf(f, " (%.2f s/GB)", cpu / ((double)r->bytes / 1e9));
            fprintf(f, ", %.1f us/op, rss %ld KiB, peak %ld KiB\n", cpu * 1e6 / (double)r->ops,
                    x->after.rss_kib, x->after.hwm_kib);
        }
        if (x->idle_want)
            fprintf(f, "    idle: %d connections held, %d closed by the server, rss +%ld KiB\n",
                    x->idle_open, x->idle_closed, x->idle_rss_delta_kib);
    }
}

static int
set(json_t *o, const char *k, json_t *v)
{
    return json_object_set_new(o, k, v);
}

int
rb_report_json(FILE *f, const char *url, const struct rb_entry *ents, int n)
{
    json_t *root = json_object(), *arr = json_array();
    set(root, "url", json_string(url));
    set(root, "results", arr);
    for (int i = 0; i < n; i++) {
        const struct rb_entry *x = &ents[i];
        const struct rb_result *r = &x->r;
        json_t *o = json_object();
        set(o, "scenario", json_string(x->scenario));
        set(o, "rep", json_integer(x->rep));
        set(o, "connections", json_integer(x->conns));
        set(o, "size", json_integer((json_int_t)x->size));
        set(o, "ok", json_boolean(x->ok));
        if (!x->ok) {
            json_t *errs = json_array();
            if (x->setup_err[0]) {
                json_t *eo = json_object();
                set(eo, "message", json_string(x->setup_err));
                set(eo, "count", json_integer(1));
                json_array_append_new(errs, eo);
            }
            for (int k = 0; k < r->nerr; k++) {
                json_t *eo = json_object();
                set(eo, "message", json_string(r->err_msg[k]));
                set(eo, "count", json_integer((json_int_t)r->err_count[k]));
                json_array_append_new(errs, eo);
            }
            set(o, "errors", errs);
            json_array_append_new(arr, o);
            continue;
        }
        set(o, "ops", json_integer((json_int_t)r->ops));
        set(o, "http_requests", json_integer((json_int_t)r->http_reqs));
        set(o, "bytes", json_integer((json_int_t)r->bytes));
        set(o, "seconds", json_real(r->seconds));
        set(o, "req_per_s", json_real(per_s((double)r->ops, r->seconds)));
        set(o, "mb_per_s", json_real(per_s((double)r->bytes / 1e6, r->seconds)));
        json_t *lat = json_object();
        set(lat, "p50", json_real(ms(rb_hist_percentile(&r->hist, 50))));
        set(lat, "p90", json_real(ms(rb_hist_percentile(&r->hist, 90))));
        set(lat, "p99", json_real(ms(rb_hist_percentile(&r->hist, 99))));
        set(lat, "max", json_real(ms(r->hist.max)));
        set(o, "latency_ms", lat);
        if (x->before.ok && x->after.ok) {
            double cpu = x->after.cpu_s - x->before.cpu_s;
            json_t *s = json_object();
            set(s, "cpu_s", json_real(cpu));
            if (blob_scenario(x) && r->bytes >= 1000000)
                set(s, "cpu_s_per_gb", json_real(cpu / ((double)r->bytes / 1e9)));
            set(s, "cpu_us_per_op", json_real(cpu * 1e6 / (double)r->ops));
            set(s, "rss_kib", json_integer(x->after.rss_kib));
            set(s, "hwm_kib", json_integer(x->after.hwm_kib));
            set(o, "server", s);
        }
        if (x->idle_want) {
            json_t *s = json_object();
            set(s, "connections", json_integer(x->idle_open));
            set(s, "closed_by_server", json_integer(x->idle_closed));
            if (x->before.ok) {
                set(s, "rss_delta_kib", json_integer(x->idle_rss_delta_kib));
                set(s, "rss_bytes_per_conn",
                    json_real(x->idle_open
                                  ? (double)x->idle_rss_delta_kib * 1024.0 / (double)x->idle_open
                                  : 0));
            }
            set(o, "idle", s);
        }
        json_array_append_new(arr, o);
    }
    int rc = json_dumpf(root, f, JSON_INDENT(1) | JSON_REAL_PRECISION(6)) == 0 ? 0 : -1;
    fputc('\n', f);
    json_decref(root);
    return rc;
}
