/* api_json_limits_test.c - the JSON shape limits of a manifest PUT (storage.h
 * MANIFEST_MAX_JSON_VALUES / _DEPTH) over HTTP, against the real server binary
 * so that its own /proc status shows what the requests cost: 16 concurrent PUTs
 * of the largest allowed count of tiny values keep the server's peak RSS
 * (VmHWM) within 64 MiB of its idle size and the heap goes back afterwards;
 * one value or one level more is 400 MANIFEST_INVALID. */
#include <pthread.h>

#include "tests/integration/api_test.h"
#include "tests/lib/integ_util.h"

#include "storage/storage.h"

#include "common/banned.h"

static void
json_setup(void)
{
    /* one worker per concurrent PUT: each parses at the same moment */
    const char *env[] = {"OCIREG_SERVER_WORKERS=16", NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0, "server did not start");
}

TestSuite(api_json_limits, .init = json_setup, .fini = api_teardown, .timeout = 120);

/* a /proc/<server>/status field in KiB */
static long
status_kib(const char *field)
{
    char p[64], line[256];
    snprintf(p, sizeof(p), "/proc/%d/status", (int)S.pid);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f);
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            v = strtol(line + fl + 1, NULL, 10);
    fclose(f);
    cr_assert_gt(v, 0, "%s", field);
    return v;
}


/* values of make_image's manifest: root, schemaVersion, mediaType, config (4),
 * layers (1 + 4) */
#define IMAGE_VALUES 12u

struct put {
    const char *body;
    pthread_barrier_t *go;
    long status;
};

static void *
put_thread(void *arg)
{
    struct put *p = arg;
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
    struct tresp r;
    pthread_barrier_wait(p->go);
    p->status = treq(&S, "PUT", "/v2/big/manifests/latest", h, p->body, strlen(p->body), &r) == 0
                    ? r.status
                    : -1;
    if (p->status >= 0)
        tresp_free(&r);
    return NULL;
}

Test(api_json_limits, sixteen_hostile_puts_keep_peak_rss_bounded)
{
    char base[1024];
    make_image("big", 0, "hostile", base, sizeof(base));
    /* x itself plus empty objects up to the limit: the costliest tiny value
     * (~235 bytes of jansson heap each, ~34 MiB for the tree) */
    char *body = integ_json_padded(base, MANIFEST_MAX_JSON_VALUES - IMAGE_VALUES - 1, "{}");
    /* warm up: the first PUT's one-time allocations (statements, buffers) are
     * part of idle */
    cr_assert_eq(put_manifest("big", "warm", MT_OCI_MANIFEST, base, NULL), 201);
    long idle = status_kib("VmRSS");

    enum { N = 16 };
    pthread_t t[N];
    struct put p[N];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        p[i] = (struct put){.body = body, .go = &go, .status = 0};
        cr_assert_eq(pthread_create(&t[i], NULL, put_thread, &p[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < N; i++)
        cr_assert_eq(p[i].status, 201, "PUT %d: %ld", i, p[i].status);

    long peak = status_kib("VmHWM"), after = status_kib("VmRSS");
    cr_log_info("idle %ld KiB, peak %ld KiB (+%ld), after %ld KiB (+%ld)", idle, peak,
                peak - idle, after, after - idle);
    /* ASan's allocator adds redzones and shadow to every small block, keeps
     * freed ones in quarantine and ignores malloc_trim: the figures hold for
     * the server's own allocator only; under ASan the PUTs must still all
     * complete, leak-free */
    if (integ_server_is_asan()) {
        free(body);
        return;
    }
    cr_assert_lt(peak - idle, 64 * 1024, "peak RSS grew by %ld KiB", peak - idle);
    /* freed trees go back to the system, not into 16 arenas */
    cr_assert_lt(after - idle, 16 * 1024, "RSS after the PUTs grew by %ld KiB", after - idle);
    free(body);
}

Test(api_json_limits, over_the_value_or_depth_limit_is_400_manifest_invalid)
{
    char base[1024];
    make_image("big", 0, "limits", base, sizeof(base));
    const char *h[] = {"Content-Type: " MT_OCI_MANIFEST, NULL};
    struct tresp r;

    char *body = integ_json_padded(base, MANIFEST_MAX_JSON_VALUES - IMAGE_VALUES - 1, "[]");
    req("PUT", "/v2/big/manifests/at-limit", h, body, strlen(body), &r);
    cr_assert_eq(r.status, 201, "at the limit: %ld %s", r.status, r.body);
    tresp_free(&r);
    free(body);

    body = integ_json_padded(base, MANIFEST_MAX_JSON_VALUES - IMAGE_VALUES, "[]");
    req("PUT", "/v2/big/manifests/over", h, body, strlen(body), &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    cr_assert(strstr(r.body, "150000 values"), "%s", r.body);
    tresp_free(&r);
    free(body);

    body = integ_json_padded(base, MANIFEST_MAX_JSON_DEPTH, NULL);
    req("PUT", "/v2/big/manifests/deep", h, body, strlen(body), &r);
    assert_err(&r, 400, "MANIFEST_INVALID");
    cr_assert(strstr(r.body, "64 levels"), "%s", r.body);
    tresp_free(&r);
    free(body);
    cr_assert_eq(status_of("GET", "/v2/big/manifests/over"), 404);
}
