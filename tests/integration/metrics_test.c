/* metrics_test.c - /metrics, the health probes and request ids end to end
 * (docs/operations.md): the exposition passes `promtool check metrics`
 * (Debian's prometheus package; skipped with a message when it is missing),
 * counters move with requests, auth and gc passes; /metrics is an admin's on
 * the main listener with auth on and open on [server] debug_listen; /readyz
 * turns 503 while draining and after a failed fsync (in-process, where the
 * fault can be injected); X-Request-Id is echoed and logged. */
#include <crypt.h>
#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <unistd.h>

#include "server/api.h"
#include "storage/storage.h"
#include "tests/integration/api_test.h"
#include "tests/lib/inproc.h"
#include "tests/lib/integ_util.h"

static char dir[256];

/* ---- helpers ---- */

/* the value of one series ("name" or `name{labels}`, exactly as rendered),
 * or -1 when the exposition has no such line */
static double
metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

/* GET url_or_path on s with optional headers: the body (malloc'd) when the
 * status is want, else a failed assertion */
static char *
scrape_from(const struct testsrv *s, const char *url_or_path, const char *const *hdrs, long want)
{
    struct tresp r;
    cr_assert_eq(treq(s, "GET", url_or_path, hdrs, NULL, 0, &r), 0, "GET %s: no response",
                 url_or_path);
    cr_assert_eq(r.status, want, "GET %s: status %ld, body %s", url_or_path, r.status, r.body);
    char *body = r.body;
    r.body = NULL;
    tresp_free(&r);
    return body;
}

static char *
scrape(void)
{
    char *b = scrape_from(&S, "/metrics", NULL, 200);
    return b;
}

/* A request is counted when it ends on its worker, right after its reply went
 * out: the client may scrape (on another connection, another worker) a
 * moment before. Scrape (path with hdrs) until series has the value want,
 * at most 10 s; returns the last exposition (malloc'd), which the caller
 * asserts on. */
static char *
scrape_until(const char *path, const char *const *hdrs, const char *series, double want)
{
    int64_t deadline = integ_now_ms() + 10000;
    for (;;) {
        char *m = scrape_from(&S, path, hdrs, 200);
        if (metric(m, series) == want || integ_now_ms() > deadline)
            return m;
        free(m);
        integ_sleep_ms(5);
    }
}

/* 1 when promtool is installed */
static int
have_promtool(void)
{
    return system("command -v promtool >/dev/null 2>&1") == 0;
}

/* promtool check metrics on text: its exit status (0 = valid), its output in
 * out */
static int
promtool_check(const char *text, char *out, size_t cap)
{
    char path[300], cmd[700];
    snprintf(path, sizeof(path), "%s/metrics.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' 2>&1", path);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
mkdir_test(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ocireg-metrics.XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void
rm_test(void)
{
    if (dir[0])
        integ_rm_rf(dir);
    dir[0] = '\0';
}

static void
setup_plain(void)
{
    mkdir_test();
    const char *env[] = {"OCIREG_GC_GRACE=0", NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0, "server did not start");
}

static void
teardown_plain(void)
{
    api_teardown();
    rm_test();
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* "user:$2y$04$...\n" */
static void
hash_line(const char *user, const char *pass, char *out, size_t cap)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    cr_assert(crypt_gensalt_rn("$2y$", 4, NULL, 0, salt, sizeof(salt)));
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *h = crypt_r(pass, salt, &cd);
    cr_assert(h && h[0] == '$');
    snprintf(out, cap, "%s:%s\n", user, h);
}

/* "Authorization: Basic ..." for user:pass (static: one of four buffers) */
static const char *
basic(const char *user, const char *pass)
{
    static char out[4][600];
    static int k;
    char *o = out[k++ & 3];
    char up[300];
    int n = snprintf(up, sizeof(up), "%s:%s", user, pass);
    int off = snprintf(o, 600, "Authorization: Basic ");
    EVP_EncodeBlock((unsigned char *)o + off, (const unsigned char *)up, n);
    return o;
}

/* the auth server: root is an admin, alice a developer; debug_listen on a
 * free port */
static void
setup_auth(void)
{
    mkdir_test();
    char htpw[300], rules[300], a[256], r[256], all[600];
    snprintf(htpw, sizeof(htpw), "%s/htpasswd", dir);
    snprintf(rules, sizeof(rules), "%s/access.conf", dir);
    hash_line("alice", "alice-pw", a, sizeof(a));
    hash_line("root", "root-pw", r, sizeof(r));
    snprintf(all, sizeof(all), "%s%s", a, r);
    write_file(htpw, all);
    write_file(rules, "[groups]\nadmins = root\n[admin]\ngroups = admins\n"
                      "[repo \"team/**\"]\nalice = pull, push\n");
    char e1[400], e2[400];
    snprintf(e1, sizeof(e1), "OCIREG_AUTH_HTPASSWD=%s", htpw);
    snprintf(e2, sizeof(e2), "OCIREG_AUTH_RULES=%s", rules);
    const char *env[] = {e1, e2, "OCIREG_AUTH_MAX_FAILURES=2",
                         "OCIREG_SERVER_DEBUG_LISTEN=127.0.0.1:0", NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0, "server did not start");
}

/* the debug listener's port, from its log line (written before the ready
 * file that testsrv_start waited for) */
static int
debug_port(void)
{
    FILE *f = fopen(S.log, "r");
    cr_assert(f);
    char line[1024];
    int port = 0;
    while (fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "debug listener (metrics, health) on ");
        if (p) {
            const char *c = strrchr(p, ':');
            port = c ? atoi(c + 1) : 0;
        }
    }
    fclose(f);
    cr_assert(port > 0, "no debug listener line in %s", S.log);
    return port;
}

/* ---- the exposition ---- */

Test(metrics, exposition_passes_promtool, .init = setup_plain, .fini = teardown_plain)
{
    char digest[80];
    push_image("lib/app", "v1", "promtool", digest);
    cr_assert_eq(status_of("GET", "/v2/lib/app/manifests/v1"), 200);
    cr_assert_eq(status_of("GET", "/v2/lib/app/manifests/nope"), 404);
    struct tresp r;
    req("GET", "/metrics", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(H(&r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    /* every family the docs name is there */
    const char *names[] = {"ocireg_http_requests_total", "ocireg_http_request_duration_seconds",
                           "ocireg_http_sent_bytes_total", "ocireg_http_received_bytes_total",
                           "ocireg_http_open_connections",
                           "ocireg_http_event_loop_lag_seconds",
                           "ocireg_http_event_loop_lag_max_seconds",
                           "ocireg_http_refused_connections_total",
                           "ocireg_storage_repositories", "ocireg_storage_blobs",
                           "ocireg_storage_blob_bytes", "ocireg_storage_manifests",
                           "ocireg_storage_tags", "ocireg_storage_upload_sessions",
                           "ocireg_storage_wal_fsyncs_total",
                           "ocireg_storage_durable_commits_total",
                           "ocireg_storage_wal_fsync_group_size", "ocireg_storage_write_failed",
                           "ocireg_gc_passes_total", "ocireg_gc_removed_total",
                           "ocireg_gc_freed_bytes_total", "ocireg_auth_successes_total",
                           "ocireg_auth_failures_total", "ocireg_auth_rate_limited_total",
                           "ocireg_blocking_jobs_total", "ocireg_blocking_queue_length",
                           "ocireg_upload_jobs_total", "ocireg_upload_queue_length",
                           "ocireg_draining"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char t[200];
        snprintf(t, sizeof(t), "# TYPE %s ", names[i]);
        cr_assert(strstr(r.body, t), "no family %s in:\n%s", names[i], r.body);
    }
    /* the push is counted: one repository, one manifest, config + layer + the
     * manifest body as blobs; the commits waited for WAL fsyncs */
    cr_assert_eq(metric(r.body, "ocireg_storage_repositories"), 1);
    cr_assert_eq(metric(r.body, "ocireg_storage_manifests"), 1);
    cr_assert_eq(metric(r.body, "ocireg_storage_tags"), 1);
    cr_assert_geq(metric(r.body, "ocireg_storage_blobs"), 3);
    cr_assert_gt(metric(r.body, "ocireg_storage_wal_fsyncs_total"), 0);
    cr_assert_gt(metric(r.body, "ocireg_storage_durable_commits_total"), 0);
    cr_assert_geq(metric(r.body, "ocireg_http_open_connections"), 1, "this scrape's connection");
    if (!have_promtool()) {
        tresp_free(&r);
        cr_skip_test("promtool not installed (Debian package prometheus, "
                     "scripts/install-deps.sh): the exposition was not validated");
    }
    char out[4096];
    int rc = promtool_check(r.body, out, sizeof(out));
    cr_assert_eq(rc, 0, "promtool check metrics failed:\n%s\non:\n%s", out, r.body);
    /* the check itself finds a broken exposition */
    char *bad = malloc(r.len + 64);
    snprintf(bad, r.len + 64, "%socireg_http_requests_total{route=\"x\" 1\n", r.body);
    cr_assert_neq(promtool_check(bad, out, sizeof(out)), 0, "promtool accepted a broken line");
    free(bad);
    tresp_free(&r);
}

Test(metrics, manifest_get_moves_its_counters, .init = setup_plain, .fini = teardown_plain)
{
    char digest[80];
    push_image("lib/app", "v1", "moves", digest);
    const char *req_series =
        "ocireg_http_requests_total{route=\"manifest\",method=\"GET\",status=\"200\"}";
    const char *count_series = "ocireg_http_request_duration_seconds_count{route=\"manifest\"}";
    const char *inf_series =
        "ocireg_http_request_duration_seconds_bucket{route=\"manifest\",le=\"+Inf\"}";
    const char *sent_series = "ocireg_http_sent_bytes_total{route=\"manifest\"}";
    /* the push made one manifest request, its PUT */
    char *m0 = scrape_until("/metrics", NULL, count_series, 1);
    double r0 = metric(m0, req_series), c0 = metric(m0, count_series);
    double i0 = metric(m0, inf_series), b0 = metric(m0, sent_series);
    cr_assert_eq(r0, -1, "no manifest GET yet:\n%s", m0);
    cr_assert_eq(c0, 1, "the manifest PUT is in the histogram:\n%s", m0);
    free(m0);

    struct tresp r;
    req("GET", "/v2/lib/app/manifests/v1", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    size_t mlen = r.len;
    tresp_free(&r);

    char *m1 = scrape_until("/metrics", NULL, count_series, c0 + 1);
    cr_assert_eq(metric(m1, req_series), 1, "%s", m1);
    cr_assert_eq(metric(m1, count_series), c0 + 1);
    cr_assert_eq(metric(m1, inf_series), i0 + 1);
    cr_assert_eq(metric(m1, sent_series), (b0 < 0 ? 0 : b0) + (double)mlen);
    /* the scrapes count under their own route */
    cr_assert_geq(metric(m1, "ocireg_http_requests_total{route=\"metrics\",method=\"GET\","
                             "status=\"200\"}"),
                  1);
    free(m1);
}

/* ---- probes ---- */

Test(metrics, probes_answer, .init = setup_plain, .fini = teardown_plain)
{
    const char *paths[] = {"/livez", "/readyz", "/startupz"};
    for (int i = 0; i < 3; i++) {
        struct tresp r;
        req("GET", paths[i], NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 200, "%s: %ld %s", paths[i], r.status, r.body);
        cr_assert_str_eq(r.body, "ok\n");
        tresp_free(&r);
        cr_assert_eq(status_of("HEAD", paths[i]), 200);
        cr_assert_eq(status_of("POST", paths[i]), 405);
    }
    const char *health =
        "ocireg_http_requests_total{route=\"health\",method=\"GET\",status=\"200\"}";
    char *m = scrape_until("/metrics", NULL, health, 3);
    cr_assert_eq(metric(m, health), 3, "%s", m);
    cr_assert_eq(metric(m, "ocireg_draining"), 0);
    free(m);
}

static struct inproc P;

static void
setup_inproc(void)
{
    mkdir_test();
    cr_assert_eq(inproc_start(&P, "metrics-inproc", 1, 100, &S), 0, "in-process server");
}

static void
teardown_inproc(void)
{
    inproc_stop(&P);
    rm_test();
}

Test(metrics, readyz_503_when_draining_and_after_a_failed_fsync, .init = setup_inproc,
     .fini = teardown_inproc)
{
    cr_assert_eq(status_of("GET", "/readyz"), 200);
    api_set_draining(P.api, 1);
    struct tresp r;
    req("GET", "/readyz", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "draining\n");
    tresp_free(&r);
    cr_assert_eq(status_of("GET", "/livez"), 200, "alive while draining");
    char *m = scrape();
    cr_assert_eq(metric(m, "ocireg_draining"), 1);
    free(m);
    api_set_draining(P.api, 0);
    cr_assert_eq(status_of("GET", "/readyz"), 200);

    /* a failed WAL fsync: durable writes are refused until a restart */
    char dg[80];
    storage_fault_inject(P.st, FAULT_WALSYNC, EIO, 1);
    long st = tpush_blob(&S, "lib/a", "fsync fails", 11, dg);
    cr_assert_eq(st, 500, "the commit's fsync failed: %ld", st);
    req("GET", "/readyz", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_assert(strstr(r.body, "fsync"), "%s", r.body);
    tresp_free(&r);
    m = scrape();
    cr_assert_eq(metric(m, "ocireg_storage_write_failed"), 1);
    free(m);
}

/* ---- auth ---- */

Test(metrics, auth_counters_and_admin_only_metrics, .init = setup_auth, .fini = teardown_plain)
{
    const char *root[] = {basic("root", "root-pw"), NULL};
    const char *alice[] = {basic("alice", "alice-pw"), NULL};
    const char *wrong[] = {basic("alice", "nope"), NULL};
    struct tresp r;

    /* /metrics on the main listener: admins only */
    req("GET", "/metrics", NULL, NULL, 0, &r);
    assert_err(&r, 401, "UNAUTHORIZED");
    cr_assert(strstr(H(&r, "WWW-Authenticate"), "Bearer realm="));
    tresp_free(&r);
    req("GET", "/metrics", alice, NULL, 0, &r);
    assert_err(&r, 403, "DENIED");
    tresp_free(&r);
    char *m0 = scrape_from(&S, "/metrics", root, 200);
    double ok0 = metric(m0, "ocireg_auth_successes_total{scheme=\"basic\"}");
    double f0 = metric(m0, "ocireg_auth_failures_total{scheme=\"basic\"}");
    cr_assert_geq(ok0, 2, "alice's and root's logins:\n%s", m0);
    free(m0);

    /* a bad password is a failure; past max_failures (2) the login is 429 */
    req("GET", "/v2/team/x/tags/list", wrong, NULL, 0, &r);
    assert_err(&r, 401, "UNAUTHORIZED");
    tresp_free(&r);
    req("GET", "/v2/team/x/tags/list", wrong, NULL, 0, &r);
    assert_err(&r, 401, "UNAUTHORIZED");
    tresp_free(&r);
    req("GET", "/v2/team/x/tags/list", wrong, NULL, 0, &r);
    assert_err(&r, 429, "TOOMANYREQUESTS");
    tresp_free(&r);

    const char *limited =
        "ocireg_http_requests_total{route=\"tags\",method=\"GET\",status=\"429\"}";
    char *m1 = scrape_until("/metrics", root, limited, 1);
    cr_assert_eq(metric(m1, "ocireg_auth_failures_total{scheme=\"basic\"}"), f0 + 2, "%s", m1);
    cr_assert_eq(metric(m1, "ocireg_auth_rate_limited_total"), 1);
    cr_assert_geq(metric(m1, "ocireg_auth_successes_total{scheme=\"basic\"}"), ok0 + 1,
                  "this scrape's login");
    cr_assert_eq(metric(m1, limited), 1);
    free(m1);
}

Test(metrics, debug_listen_is_open_while_main_wants_an_admin, .init = setup_auth,
     .fini = teardown_plain)
{
    char url[128];
    int port = debug_port();
    cr_assert_neq(port, S.port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    char *m = scrape_from(&S, url, NULL, 200);
    cr_assert(strstr(m, "# TYPE ocireg_http_requests_total counter"), "%s", m);
    if (have_promtool()) {
        char out[4096];
        cr_assert_eq(promtool_check(m, out, sizeof(out)), 0, "%s", out);
    }
    free(m);
    struct tresp r;
    req("GET", "/metrics", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 401, "the main listener still wants credentials");
    tresp_free(&r);
    /* the probes are open on both, the registry API only on the main one */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", port);
    free(scrape_from(&S, url, NULL, 200));
    free(scrape_from(&S, "/readyz", NULL, 200));
    free(scrape_from(&S, "/livez", NULL, 200));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2/", port);
    free(scrape_from(&S, url, NULL, 404));
}

/* ---- gc ---- */

Test(metrics, gc_counters_after_a_sigusr1_pass, .init = setup_plain, .fini = teardown_plain)
{
    /* a blob no manifest references: its link and the blob go (grace 0) */
    char dg[80];
    const char *data = "collect me, I am referenced by nothing";
    cr_assert_eq(tpush_blob(&S, "lib/orphan", data, strlen(data), dg), 201);
    char *m0 = scrape();
    cr_assert_eq(metric(m0, "ocireg_gc_passes_total"), 0);
    cr_assert_eq(metric(m0, "ocireg_gc_last_pass_duration_seconds"), -1, "no pass yet");
    free(m0);
    cr_assert_eq(kill(S.pid, SIGUSR1), 0);
    char *m = NULL;
    int64_t deadline = integ_now_ms() + 20000;
    for (;;) {
        m = scrape();
        if (metric(m, "ocireg_gc_passes_total") >= 1 || integ_now_ms() > deadline)
            break;
        free(m);
        integ_sleep_ms(20);
    }
    cr_assert_eq(metric(m, "ocireg_gc_passes_total"), 1, "no gc pass ended:\n%s", m);
    cr_assert_eq(metric(m, "ocireg_gc_failed_passes_total"), 0);
    cr_assert_eq(metric(m, "ocireg_gc_removed_total{kind=\"blobs\"}"), 1, "%s", m);
    cr_assert_eq(metric(m, "ocireg_gc_removed_total{kind=\"links\"}"), 1);
    cr_assert_eq(metric(m, "ocireg_gc_freed_bytes_total"), (double)strlen(data));
    cr_assert_geq(metric(m, "ocireg_gc_last_pass_duration_seconds"), 0);
    cr_assert_gt(metric(m, "ocireg_gc_last_pass_end_timestamp_seconds"), 1.7e9);
    free(m);
}

/* ---- request ids ---- */

/* 1 when the server's log has a line holding both a and b */
static int
log_has(const char *a, const char *b)
{
    FILE *f = fopen(S.log, "r");
    if (!f)
        return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, a) && strstr(line, b);
    fclose(f);
    return found;
}

Test(metrics, request_id_echoed_and_logged, .init = setup_plain, .fini = teardown_plain)
{
    const char *mine[] = {"X-Request-Id: trace-4f2a.b_9:1", NULL};
    struct tresp r;
    req("GET", "/v2/lib/none/tags/list", mine, NULL, 0, &r);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(H(&r, "X-Request-Id"), "trace-4f2a.b_9:1");
    tresp_free(&r);
    /* the access line names it (written once the reply went out) */
    int64_t deadline = integ_now_ms() + 10000;
    while (!log_has("req=trace-4f2a.b_9:1", "GET /v2/lib/none/tags/list status=404") &&
           integ_now_ms() < deadline)
        integ_sleep_ms(10);
    cr_assert(log_has("req=trace-4f2a.b_9:1", "GET /v2/lib/none/tags/list status=404"),
              "no access line with the request id in %s", S.log);

    /* none given: one is made, different for each request */
    char a[128], b[128];
    req("GET", "/v2/", NULL, NULL, 0, &r);
    snprintf(a, sizeof(a), "%s", H(&r, "X-Request-Id"));
    tresp_free(&r);
    req("GET", "/v2/", NULL, NULL, 0, &r);
    snprintf(b, sizeof(b), "%s", H(&r, "X-Request-Id"));
    tresp_free(&r);
    cr_assert(a[0] && b[0] && strcmp(a, b) != 0, "made ids '%s' '%s'", a, b);

    /* an insane one (too long, a quote, a control character) is replaced */
    char longid[128];
    memset(longid, 'x', 65);
    longid[65] = '\0';
    char h1[200], h2[] = "X-Request-Id: a\"b", h3[] = "X-Request-Id: a\tb";
    snprintf(h1, sizeof(h1), "X-Request-Id: %s", longid);
    const char *bad[] = {h1, h2, h3};
    for (int i = 0; i < 3; i++) {
        const char *hd[] = {bad[i], NULL};
        req("GET", "/v2/", hd, NULL, 0, &r);
        const char *got = H(&r, "X-Request-Id");
        cr_assert(got[0] && strcmp(got, bad[i] + 14) != 0 && !strchr(got, '"') &&
                      strlen(got) <= 64,
                  "'%s' for '%s'", got, bad[i]);
        tresp_free(&r);
    }
    /* 64 characters are fine */
    longid[64] = '\0';
    snprintf(h1, sizeof(h1), "X-Request-Id: %s", longid);
    const char *ok64[] = {h1, NULL};
    req("GET", "/v2/", ok64, NULL, 0, &r);
    cr_assert_str_eq(H(&r, "X-Request-Id"), longid);
    tresp_free(&r);
    /* the layer's own error replies carry it too */
    char raw[4096];
    const char bad_req[] = "GET /v2/%zz HTTP/1.1\r\nHost: x\r\nX-Request-Id: raw-1\r\n\r\n";
    cr_assert_gt(traw(&S, bad_req, sizeof(bad_req) - 1, raw, sizeof(raw), 5000), 0);
    cr_assert(strstr(raw, " 400 "), "%s", raw);
    cr_assert(strstr(raw, "X-Request-Id: raw-1\r\n"), "%s", raw);
}
