/* referrers_fuzz.c - libFuzzer target: the referrers filter. The input is the
 * query string of GET /v2/fz/referrers/<subject>?<input>, sent through the
 * connection layer (percent-decoding, query split) to the real API handler
 * (server/api_referrers.c: artifactType, the `last` marker, paging, the Link
 * header's re-encoding) over a real storage holding a subject and three
 * referrers with two artifact types, pages of two (so Link appears).
 *
 * The storage lives under $TMPDIR (scripts/fuzz.sh points it at its scratch
 * folder) and is removed at exit. Check: no answer is a 5xx. */
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/api.h"
#include "server/http.h"
#include "storage/storage.h"
#include "tests/fuzz/fuzz_http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[256];
static char prefix[512]; /* "GET /v2/fz/referrers/<subject>?" */
static size_t prefix_len;

#define EMPTY_DESC                                                                                 \
    "{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"sha256:"                    \
    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":2}"

static void
die(const char *what, const struct err *e)
{
    fprintf(stderr, "referrers_fuzz: %s: %s\n", what, e ? e->msg : "");
    abort();
}

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    remove(p);
    return 0;
}

static void
rm_root(void)
{
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
put_manifest(struct storage_handle *h, const char *body, struct digest *out)
{
    struct manifest_meta meta;
    struct err e;
    if (storage_manifest_put(h, "fz", body, strlen(body), MT_OCI_MANIFEST, NULL, NULL, 0, &meta,
                             NULL, NULL, &e) < 0)
        die("manifest put", &e);
    if (out)
        *out = meta.digest;
}

static void
seed_store(struct storage_handle *h, struct digest *subject)
{
    struct err e;
    struct digest d;
    if (storage_blob_put(h, "fz", "{}", 2, DIGEST_SHA256, &d, &e) < 0)
        die("blob put", &e);
    put_manifest(h,
                 "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":" EMPTY_DESC
                 ",\"layers\":[]}",
                 subject);
    char ds[DIGEST_STR_MAX];
    digest_format(subject, ds);
    static const char *const types[] = {"application/vnd.example.sbom+json",
                                        "application/vnd.example.sig",
                                        "application/vnd.example.sbom+json"};
    for (size_t i = 0; i < 3; i++) {
        char body[2048];
        snprintf(body, sizeof(body),
                 "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
                 "\",\"artifactType\":\"%s\",\"config\":" EMPTY_DESC ",\"layers\":[],"
                 "\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":1},"
                 "\"annotations\":{\"n\":\"%zu\",\"org.example.note\":\"a \\\"quoted\\\" %%20\"}}",
                 types[i], ds, i);
        put_manifest(h, body, NULL);
    }
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/ocireg-referrers-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root))
        die("mkdtemp", NULL);
    atexit(rm_root);
    struct err e;
    struct storage_opts so = {.root = root, .fsync = 0, .max_manifest = 4u << 20};
    struct storage *st = storage_open(&so, &e);
    if (!st)
        die("storage_open", &e);
    struct storage_handle *h = storage_handle_open(st, &e);
    if (!h)
        die("storage_handle_open", &e);
    struct digest subject;
    seed_store(h, &subject);
    storage_handle_close(h);

    struct api_opts ao = {.max_manifest = 4u << 20, .max_page = 2};
    struct api *a = api_new(st, &ao, &e);
    if (!a)
        die("api_new", &e);
    struct http_app app;
    api_http_app(a, &app);
    void *wctx = app.worker_init(app.arg, 0, &e);
    if (!wctx)
        die("worker_init", &e);
    struct http_server_opts o = {
        .listen = "127.0.0.1:0",
        .workers = 1,
        .header_max = 16384,
        .body_buffer = 65536,
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .max_connections = 16,
    };
    fuzz_http_init(&o, &app, wctx);
    char ds[DIGEST_STR_MAX];
    prefix_len = (size_t)snprintf(prefix, sizeof(prefix), "GET /v2/fz/referrers/%s?",
                                  digest_format(&subject, ds));
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char tail[] = " HTTP/1.1\r\nHost: fuzz\r\n\r\n";
    if (size > 8192)
        return 0;
    char req[sizeof(prefix) + 8192 + sizeof(tail)];
    memcpy(req, prefix, prefix_len);
    memcpy(req + prefix_len, data, size);
    memcpy(req + prefix_len + size, tail, sizeof(tail) - 1);
    size_t n = prefix_len + size + sizeof(tail) - 1;
    char out[16];
    size_t got = fuzz_http_run((const uint8_t *)req, n, 0, out, sizeof(out));
    /* "HTTP/1.1 NNN": a server error means the handler met a case it missed */
    if (got >= 12 && out[9] == '5')
        abort();
    return 0;
}
