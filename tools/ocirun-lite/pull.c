/* pull.c - pull an image: resolve, fetch (verified), unpack once, record.
 *
 * Order of a pull, each step only after the previous one succeeded:
 *   1. GET the manifest for the tag/digest (index or image manifest);
 *      an index is stored and the host platform's manifest fetched by digest
 *   2. config and layers fetched in parallel into blobs/ (size + digest checked)
 *   3. config parsed: one diff_id per layer
 *   4. layers unpacked in parallel threads into layers/<diff_id>/ (via tmp/
 *      and rename; the uncompressed stream must hash to the diff_id)
 *   5. the image record written (atomically); from now on `images` lists it.
 * A failure at any step leaves the previous images untouched and no partial
 * blob or layer visible. */
#include "tools/ocirun-lite/pull.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "tools/ocirun-lite/dynlib.h"
#include "tools/ocirun-lite/fsutil.h"
#include "tools/ocirun-lite/layerfs.h"

#include "common/banned.h"

#define MANIFEST_MAX (4 << 20)
#define CONFIG_MAX (8 << 20)
#define MAX_LAYERS 256

/* ---- platforms --------------------------------------------------------------- */

void
pull_platform_host(struct platform *p)
{
    struct utsname u;
    const char *arch = "amd64", *variant = "";
    memset(p, 0, sizeof(*p));
    snprintf(p->os, sizeof(p->os), "linux");
    if (uname(&u) == 0) {
        const char *m = u.machine;
        if (strcmp(m, "x86_64") == 0)
            arch = "amd64";
        else if (strcmp(m, "aarch64") == 0 || strcmp(m, "arm64") == 0)
            arch = "arm64", variant = "v8";
        else if (strncmp(m, "armv7", 5) == 0)
            arch = "arm", variant = "v7";
        else if (strncmp(m, "armv6", 5) == 0)
            arch = "arm", variant = "v6";
        else if (m[0] == 'i' && strcmp(m + 2, "86") == 0)
            arch = "386";
        else if (strcmp(m, "ppc64le") == 0)
            arch = "ppc64le";
        else if (strcmp(m, "s390x") == 0)
            arch = "s390x";
        else if (strcmp(m, "riscv64") == 0)
            arch = "riscv64";
        else
            arch = m;
    }
    snprintf(p->arch, sizeof(p->arch), "%s", arch);
    snprintf(p->variant, sizeof(p->variant), "%s", variant);
}

int
pull_platform_parse(const char *s, struct platform *p, struct err *e)
{
    struct platform r;
    const char *a = strchr(s, '/');
    memset(&r, 0, sizeof(r));
    if (!a || a == s || !a[1])
        return err_set(e, ERR_CONFIG, 0, "invalid platform \"%s\": want os/arch[/variant]", s);
    const char *v = strchr(a + 1, '/');
    size_t ol = (size_t)(a - s), al = v ? (size_t)(v - a - 1) : strlen(a + 1);
    if (ol >= sizeof(r.os) || al >= sizeof(r.arch) || al == 0 ||
        (v && (strlen(v + 1) >= sizeof(r.variant) || !v[1] || strchr(v + 1, '/'))))
        return err_set(e, ERR_CONFIG, 0, "invalid platform \"%s\": want os/arch[/variant]", s);
    memcpy(r.os, s, ol);
    memcpy(r.arch, a + 1, al);
    if (v)
        snprintf(r.variant, sizeof(r.variant), "%s", v + 1);
    *p = r;
    return 0;
}

char *
pull_platform_format(const struct platform *p, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s%s%s", p->os, p->arch, p->variant[0] ? "/" : "", p->variant);
    return buf;
}

/* arm64 images usually omit "v8" */
static const char *
norm_variant(const char *arch, const char *v)
{
    if (!v)
        v = "";
    if (strcmp(arch, "arm64") == 0 && strcmp(v, "v8") == 0)
        return "";
    return v;
}

int
pull_select_platform(const char *index_json, const struct platform *want,
                     char digest[CSTORE_DIGEST_LEN], int64_t *size, char *mediatype, size_t mtlen,
                     struct err *e)
{
    json_t *o = json_loads(index_json, 0, NULL), *mans, *d, *best = NULL;
    int best_score = -1;
    char offered[512] = "";
    size_t off = 0, i;
    const char *wv = norm_variant(want->arch, want->variant);

    mans = json_object_get(o, "manifests");
    if (!json_is_array(mans)) {
        json_decref(o);
        return err_set(e, ERR_MANIFEST_INVALID, 0, "image index has no \"manifests\" array");
    }
    json_array_foreach(mans, i, d)
    {
        json_t *pf = json_object_get(d, "platform");
        const char *os = json_string_value(json_object_get(pf, "os"));
        const char *arch = json_string_value(json_object_get(pf, "architecture"));
        const char *var = json_string_value(json_object_get(pf, "variant"));
        if (!os || !arch)
            continue; /* attestations and other non-image entries have no platform */
        if (off < sizeof(offered) - 1)
            off += (size_t)snprintf(offered + off, sizeof(offered) - off, "%s%s/%s%s%s",
                                    off ? ", " : "", os, arch, var ? "/" : "", var ? var : "");
        if (strcmp(os, want->os) != 0 || strcmp(arch, want->arch) != 0)
            continue;
        const char *dv = norm_variant(arch, var);
        int score;
        if (strcmp(dv, wv) == 0)
            score = 2; /* exact */
        else if (!*dv || !*wv)
            score = 1; /* one side does not say */
        else
            continue;
        if (score > best_score) {
            best_score = score;
            best = d;
        }
    }
    if (!best) {
        char w[128];
        err_set(e, ERR_MANIFEST_UNKNOWN, 0, "no image for platform %s in the index (offered: %s)",
                pull_platform_format(want, w, sizeof(w)), offered[0] ? offered : "none");
        json_decref(o);
        return -1;
    }
    const char *dg = json_string_value(json_object_get(best, "digest"));
    const char *mt = json_string_value(json_object_get(best, "mediaType"));
    json_t *sz = json_object_get(best, "size");
    if (!dg || !cstore_digest_hex(dg) || !json_is_integer(sz)) {
        json_decref(o);
        return err_set(e, ERR_MANIFEST_INVALID, 0, "index entry has a bad digest or size");
    }
    snprintf(digest, CSTORE_DIGEST_LEN, "%s", dg);
    *size = json_integer_value(sz);
    snprintf(mediatype, mtlen, "%s", mt ? mt : "");
    json_decref(o);
    return 0;
}

/* ---- manifests --------------------------------------------------------------- */

static int
is_index_type(const char *mt)
{
    return strcmp(mt, REGCLIENT_MT_OCI_INDEX) == 0 || strcmp(mt, REGCLIENT_MT_DOCKER_LIST) == 0;
}

static int
is_manifest_type(const char *mt)
{
    return strcmp(mt, REGCLIENT_MT_OCI_MANIFEST) == 0 ||
           strcmp(mt, REGCLIENT_MT_DOCKER_MANIFEST) == 0;
}

/* When neither Content-Type nor the body names a known type (the OCI
 * mediaType field is optional), decide by shape, as the image-spec suggests:
 * "manifests" -> index, "config" + "layers" -> image manifest. */
static void
sniff_media_type(const char *body, char *mt, size_t mtlen)
{
    if (is_index_type(mt) || is_manifest_type(mt))
        return;
    json_t *o = json_loads(body, 0, NULL);
    if (json_integer_value(json_object_get(o, "schemaVersion")) == 2 &&
        !json_object_get(o, "mediaType")) {
        if (json_is_array(json_object_get(o, "manifests")))
            snprintf(mt, mtlen, "%s", REGCLIENT_MT_OCI_INDEX);
        else if (json_is_object(json_object_get(o, "config")) &&
                 json_is_array(json_object_get(o, "layers")))
            snprintf(mt, mtlen, "%s", REGCLIENT_MT_OCI_MANIFEST);
    }
    json_decref(o);
}

static int
layer_type_ok(const char *mt)
{
    static const char *const ok[] = {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(mt, ok[i]) == 0)
            return 1;
    return 0;
}

struct parsed_manifest {
    char config[CSTORE_DIGEST_LEN];
    int64_t config_size;
    size_t nlayers;
    char layer[MAX_LAYERS][CSTORE_DIGEST_LEN];
    int64_t layer_size[MAX_LAYERS];
};

static int
parse_manifest(const char *body, struct parsed_manifest *pm, struct err *e)
{
    json_error_t jerr;
    json_t *o = json_loads(body, 0, &jerr), *cfg, *layers, *d;
    size_t i;
    int rc = -1;

    if (!o)
        return err_set(e, ERR_MANIFEST_INVALID, 0, "manifest is not JSON: %s", jerr.text);
    if (json_integer_value(json_object_get(o, "schemaVersion")) != 2) {
        err_set(e, ERR_UNSUPPORTED, 0, "manifest schemaVersion %lld is not supported",
                (long long)json_integer_value(json_object_get(o, "schemaVersion")));
        goto out;
    }
    cfg = json_object_get(o, "config");
    const char *cd = json_string_value(json_object_get(cfg, "digest"));
    const char *cmt = json_string_value(json_object_get(cfg, "mediaType"));
    if (!cd || !cstore_digest_hex(cd) || !json_is_integer(json_object_get(cfg, "size")) ||
        json_integer_value(json_object_get(cfg, "size")) < 0) {
        err_set(e, ERR_MANIFEST_INVALID, 0, "manifest has no valid config descriptor");
        goto out;
    }
    if (cmt && strcmp(cmt, "application/vnd.oci.image.config.v1+json") != 0 &&
        strcmp(cmt, "application/vnd.docker.container.image.v1+json") != 0) {
        err_set(e, ERR_UNSUPPORTED, 0, "not a container image: config media type \"%s\"", cmt);
        goto out;
    }
    snprintf(pm->config, sizeof(pm->config), "%s", cd);
    pm->config_size = json_integer_value(json_object_get(cfg, "size"));
    layers = json_object_get(o, "layers");
    if (!json_is_array(layers)) {
        err_set(e, ERR_MANIFEST_INVALID, 0, "manifest has no \"layers\" array");
        goto out;
    }
    if (json_array_size(layers) > MAX_LAYERS) {
        err_set(e, ERR_UNSUPPORTED, 0, "image has %zu layers (at most %d supported)",
                json_array_size(layers), MAX_LAYERS);
        goto out;
    }
    pm->nlayers = 0;
    json_array_foreach(layers, i, d)
    {
        const char *dg = json_string_value(json_object_get(d, "digest"));
        const char *mt = json_string_value(json_object_get(d, "mediaType"));
        json_t *sz = json_object_get(d, "size");
        if (!dg || !cstore_digest_hex(dg) || !json_is_integer(sz) || json_integer_value(sz) < 0) {
            err_set(e, ERR_MANIFEST_INVALID, 0, "layer %zu has a bad digest or size", i + 1);
            goto out;
        }
        if (!mt || !layer_type_ok(mt)) {
            err_set(e, ERR_UNSUPPORTED, 0, "layer %zu: unsupported media type \"%s\"", i + 1,
                    mt ? mt : "");
            goto out;
        }
        snprintf(pm->layer[i], CSTORE_DIGEST_LEN, "%s", dg);
        pm->layer_size[i] = json_integer_value(sz);
        pm->nlayers++;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* diff_ids from the config, checked against the layer count */
static int
parse_config_diffids(const char *cfg, size_t nlayers, char (*diff)[CSTORE_DIGEST_LEN],
                     char *platform, size_t plen, struct err *e)
{
    json_t *o = json_loads(cfg, 0, NULL), *ids, *d;
    size_t i;
    int rc = -1;

    if (!o)
        return err_set(e, ERR_MANIFEST_INVALID, 0, "image config is not JSON");
    ids = json_object_get(json_object_get(o, "rootfs"), "diff_ids");
    if (!json_is_array(ids) || json_array_size(ids) != nlayers) {
        err_set(e, ERR_MANIFEST_INVALID, 0, "image config lists %zu diff_ids for %zu layers",
                json_array_size(ids), nlayers);
        goto out;
    }
    json_array_foreach(ids, i, d)
    {
        const char *s = json_string_value(d);
        if (!s || !cstore_digest_hex(s)) {
            err_set(e, ERR_MANIFEST_INVALID, 0, "image config: diff_id %zu is not a sha256 digest",
                    i + 1);
            goto out;
        }
        snprintf(diff[i], CSTORE_DIGEST_LEN, "%s", s);
    }
    const char *os = json_string_value(json_object_get(o, "os"));
    const char *arch = json_string_value(json_object_get(o, "architecture"));
    const char *var = json_string_value(json_object_get(o, "variant"));
    snprintf(platform, plen, "%s/%s%s%s", os ? os : "?", arch ? arch : "?", var ? "/" : "",
             var ? var : "");
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* ---- layer cache --------------------------------------------------------------- */

void
pull_layer_dir(const struct cstore *cs, const char *diff_id, char *buf, size_t len)
{
    const char *hex = cstore_digest_hex(diff_id);
    snprintf(buf, len, "%s/layers/%s/fs", cstore_root(cs), hex ? hex : "invalid");
}

static int
layer_mode_of(const struct cstore *cs, const char *diff_id)
{
    char path[PATH_MAX], buf[64] = "";
    const char *hex = cstore_digest_hex(diff_id);
    FILE *f;
    snprintf(path, sizeof(path), "%s/layers/%s/info", cstore_root(cs), hex ? hex : "invalid");
    f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    if (strncmp(buf, "whiteouts=overlay", 17) == 0)
        return LAYERFS_OVERLAY;
    if (strncmp(buf, "whiteouts=oci", 13) == 0)
        return LAYERFS_OCI;
    return 0;
}

int
pull_layers_overlay_form(const struct cstore *cs, const struct cstore_image *img)
{
    for (size_t i = 0; img->layers[i]; i++)
        if (layer_mode_of(cs, img->layers[i]) != LAYERFS_OVERLAY)
            return 0;
    return 1;
}

/* unpack one layer into the cache unless it is there */
static int
ensure_layer(struct cstore *cs, const char *digest, const char *diff_id, struct err *e)
{
    char final[PATH_MAX], tmp[PATH_MAX], fs[PATH_MAX + 8], blob[PATH_MAX], info[PATH_MAX + 8];
    const char *hex = cstore_digest_hex(diff_id);
    struct stat st;
    enum layerfs_mode mode;
    FILE *f;

    if (!hex)
        return err_set(e, ERR_MANIFEST_INVALID, 0, "bad diff_id \"%s\"", diff_id);
    snprintf(final, sizeof(final), "%s/layers/%s", cstore_root(cs), hex);
    if (layer_mode_of(cs, diff_id) && stat(final, &st) == 0)
        return 0;
    if (cstore_blob_path(cs, digest, blob, sizeof(blob), e) < 0)
        return -1;
    int overlay_ok;
    layerfs_probe_cached(cstore_root(cs), &mode, &overlay_ok);
    if (cstore_tmpdir(cs, "layer", tmp, sizeof(tmp), e) < 0)
        return -1;
    snprintf(fs, sizeof(fs), "%s/fs", tmp);
    if (layerfs_unpack(blob, diff_id, fs, mode, NULL, e) < 0) {
        char msg[sizeof(e->msg)];
        snprintf(msg, sizeof(msg), "%s", e->msg);
        err_set(e, e->code, e->sys_errno, "unpacking layer %s: %s", digest, msg);
        goto fail;
    }
    snprintf(info, sizeof(info), "%s/info", tmp);
    f = fopen(info, "w");
    if (!f ||
        fprintf(f, "whiteouts=%s\ndigest=%s\n", mode == LAYERFS_OVERLAY ? "overlay" : "oci",
                digest) < 0 ||
        fflush(f) != 0 || fsync(fileno(f)) < 0) {
        err_sys(e, ERR_IO, errno, "cannot write %s", info);
        if (f)
            fclose(f);
        goto fail;
    }
    fclose(f);
    /* the files were written without fsync each (10k fsyncs would dominate the
     * unpack time): one syncfs makes the whole tree durable before it becomes
     * visible under its final name */
    int sfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0 || syncfs(sfd) < 0) {
        err_sys(e, ERR_IO, errno, "cannot sync %s", tmp);
        if (sfd >= 0)
            close(sfd);
        goto fail;
    }
    close(sfd);
    /* a leftover without info (crash) is replaced */
    if (stat(final, &st) == 0 && !layer_mode_of(cs, diff_id))
        fsutil_rm_rf_at(AT_FDCWD, final, NULL);
    if (rename(tmp, final) < 0) {
        if (errno == EEXIST || errno == ENOTEMPTY) {
            /* another process unpacked it meanwhile */
            fsutil_rm_rf_at(AT_FDCWD, tmp, NULL);
            return 0;
        }
        err_sys(e, ERR_IO, errno, "cannot rename %s to %s", tmp, final);
        goto fail;
    }
    return 0;
fail:
    fsutil_rm_rf_at(AT_FDCWD, tmp, NULL);
    return -1;
}

/* A pool of unpack threads fed with layer indexes as their blobs become
 * available (already stored, or just downloaded and verified), so unpacking
 * overlaps the downloads of the other layers. */
struct unpack_job {
    struct cstore *cs;
    char (*digest)[CSTORE_DIGEST_LEN];
    char (*diff)[CSTORE_DIGEST_LEN];
    size_t n;
    size_t *queue; /* capacity n: every index is pushed at most once */
    size_t head, tail;
    int closed; /* no more pushes */
    int cancel; /* stop early (the download failed) */
    int failed; /* an unpack failed: err holds why */
    int warmed; /* one worker did the warm-up */
    struct err err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th[4];
    size_t nthreads;
};

static void *
unpack_worker(void *arg)
{
    struct unpack_job *j = arg;
    int warm;

    /* while the layers download, one worker loads libarchive and runs (or
     * reads) the overlay probe, so the first unpack does not wait for them */
    pthread_mutex_lock(&j->mu);
    warm = !j->warmed;
    j->warmed = 1;
    pthread_mutex_unlock(&j->mu);
    if (warm) {
        enum layerfs_mode mode;
        int overlay;
        dynlib_archive(NULL); /* a failure shows again, with its error, at the unpack */
        layerfs_probe_cached(cstore_root(j->cs), &mode, &overlay);
    }
    for (;;) {
        struct err le;
        size_t i;
        err_clear(&le);
        pthread_mutex_lock(&j->mu);
        while (j->head == j->tail && !j->closed && !j->cancel && !j->failed)
            pthread_cond_wait(&j->cv, &j->mu);
        if (j->cancel || j->failed || j->head == j->tail) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        i = j->queue[j->head++];
        pthread_mutex_unlock(&j->mu);
        if (ensure_layer(j->cs, j->digest[i], j->diff[i], &le) < 0) {
            pthread_mutex_lock(&j->mu);
            if (!j->failed) {
                j->failed = 1;
                j->err = le;
            }
            pthread_cond_broadcast(&j->cv);
            pthread_mutex_unlock(&j->mu);
        }
    }
    return NULL;
}

static int
job_start(struct unpack_job *j, struct cstore *cs, char (*digest)[CSTORE_DIGEST_LEN],
          char (*diff)[CSTORE_DIGEST_LEN], size_t n, struct err *e)
{
    memset(j, 0, sizeof(*j));
    j->cs = cs;
    j->digest = digest;
    j->diff = diff;
    j->n = n;
    j->queue = calloc(n ? n : 1, sizeof(*j->queue));
    if (!j->queue)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    size_t want = n < 4 ? n : 4;
    for (size_t i = 0; i < want; i++) {
        if (pthread_create(&j->th[j->nthreads], NULL, unpack_worker, j) != 0)
            break;
        j->nthreads++;
    }
    if (n && !j->nthreads) {
        free(j->queue);
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
        return err_set(e, ERR_INTERNAL, 0, "cannot start unpack threads");
    }
    return 0;
}

static void
job_push(struct unpack_job *j, size_t i)
{
    pthread_mutex_lock(&j->mu);
    if (j->tail < j->n)
        j->queue[j->tail++] = i;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* close (cancel = 0: finish the queue; 1: stop now), join, and report */
static int
job_finish(struct unpack_job *j, int cancel, struct err *e)
{
    int rc = 0;
    pthread_mutex_lock(&j->mu);
    j->closed = 1;
    j->cancel |= cancel;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    for (size_t i = 0; i < j->nthreads; i++)
        pthread_join(j->th[i], NULL);
    if (!cancel && j->failed) {
        *e = j->err;
        rc = -1;
    } else if (!cancel && j->head != j->n) {
        rc = err_set(e, ERR_INTERNAL, 0, "not every layer was unpacked");
    }
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->queue);
    return rc;
}

static int
unpack_all(struct cstore *cs, char (*digest)[CSTORE_DIGEST_LEN], char (*diff)[CSTORE_DIGEST_LEN],
           size_t n, struct err *e)
{
    struct unpack_job j;
    if (job_start(&j, cs, digest, diff, n, e) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        job_push(&j, i);
    return job_finish(&j, 0, e);
}

/* regclient callback: blob `index` of the layer list is stored */
static void
layer_ready(void *ctx, size_t index)
{
    job_push(ctx, index);
}

static char **
strv_new(size_t n)
{
    return calloc(n + 1, sizeof(char *));
}

int
pull_ensure_layers(struct cstore *cs, const struct cstore_image *img, int quiet, struct err *e)
{
    char manifest_digest[CSTORE_DIGEST_LEN];
    struct parsed_manifest *pm = NULL;
    char *body = NULL;
    size_t len, n = 0;
    int rc = -1;
    char(*diff)[CSTORE_DIGEST_LEN] = NULL;

    for (n = 0; img->layers[n]; n++)
        if (!layer_mode_of(cs, img->layers[n]))
            break;
    if (!img->layers[n])
        return 0; /* all there */
    snprintf(manifest_digest, sizeof(manifest_digest), "%s", img->manifest);
    pm = calloc(1, sizeof(*pm));
    if (!pm)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    if (cstore_blob_read(cs, manifest_digest, MANIFEST_MAX, &body, &len, e) < 0 ||
        parse_manifest(body, pm, e) < 0)
        goto out;
    for (n = 0; img->layers[n]; n++)
        ;
    if (n != pm->nlayers) {
        err_set(e, ERR_MANIFEST_INVALID, 0, "image record and manifest disagree on layers");
        goto out;
    }
    diff = calloc(n ? n : 1, sizeof(*diff));
    if (!diff) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(diff[i], CSTORE_DIGEST_LEN, "%s", img->layers[i]);
    if (!quiet)
        fprintf(stderr, "Unpacking %zu layer(s)\n", n);
    rc = unpack_all(cs, pm->layer, diff, n, e);
out:
    free(diff);
    free(body);
    free(pm);
    return rc;
}

/* ---- pull ---------------------------------------------------------------------- */

int
pull_image(struct cstore *cs, const struct imgref *ref, const struct pull_opts *o,
           struct cstore_image *img, struct err *e)
{
    struct regclient *rc = NULL;
    struct parsed_manifest *pm = NULL;
    struct regclient_blob *blobs = NULL;
    struct regclient_stats st;
    struct cstore_image rec;
    char *body = NULL, *cfg = NULL;
    size_t len, cfglen;
    char mt[256], digest[CSTORE_DIGEST_LEN], top[CSTORE_DIGEST_LEN], idx[CSTORE_DIGEST_LEN] = "";
    char refs[600], labels[MAX_LAYERS][32];
    char(*diff)[CSTORE_DIGEST_LEN] = NULL;
    int ret = -1;

    memset(&rec, 0, sizeof(rec));
    imgref_format(ref, refs, sizeof(refs));
    rc = regclient_new(ref, &o->client, e);
    pm = calloc(1, sizeof(*pm));
    diff = calloc(MAX_LAYERS, sizeof(*diff));
    if (!rc || !pm || !diff) {
        if (rc)
            err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    if (!o->quiet)
        fprintf(stderr, "Resolving %s\n", refs);
    if (regclient_get_manifest(rc, imgref_reference(ref), &body, &len, mt, sizeof(mt), top, e) < 0)
        goto out;
    snprintf(digest, sizeof(digest), "%s", top);
    /* index -> manifest for our platform (an index may nest another index) */
    sniff_media_type(body, mt, sizeof(mt));
    for (int depth = 0; is_index_type(mt); depth++) {
        int64_t sz;
        char want_mt[256];
        if (depth >= 2) {
            err_set(e, ERR_MANIFEST_INVALID, 0, "image indexes nested too deeply");
            goto out;
        }
        if (cstore_blob_put(cs, digest, body, len, NULL, e) < 0)
            goto out;
        if (!idx[0])
            snprintf(idx, sizeof(idx), "%s", digest);
        if (pull_select_platform(body, &o->platform, digest, &sz, want_mt, sizeof(want_mt), e) < 0)
            goto out;
        free(body);
        body = NULL;
        if (regclient_get_manifest(rc, digest, &body, &len, mt, sizeof(mt), digest, e) < 0)
            goto out;
        if ((int64_t)len != sz) {
            err_set(e, ERR_SIZE_INVALID, 0, "manifest %s is %zu bytes, the index says %lld", digest,
                    len, (long long)sz);
            goto out;
        }
    }
    sniff_media_type(body, mt, sizeof(mt));
    if (!is_manifest_type(mt)) {
        if (strstr(mt, "prettyjws") || strstr(mt, "manifest.v1"))
            err_set(e, ERR_UNSUPPORTED, 0, "%s: schema 1 manifests are not supported", refs);
        else
            err_set(e, ERR_UNSUPPORTED, 0, "%s: unsupported manifest media type \"%s\"", refs, mt);
        goto out;
    }
    if (parse_manifest(body, pm, e) < 0)
        goto out;
    if (cstore_blob_put(cs, digest, body, len, NULL, e) < 0)
        goto out;

    /* the config first (small): its diff_ids name the layer directories;
     * then the layers in parallel, each unpacked as soon as it is verified */
    struct regclient_blob cfgblob = {pm->config, pm->config_size, "config"};
    struct regclient_stats st2;
    if (regclient_fetch_blobs(rc, cs, &cfgblob, 1, NULL, NULL, &st, e) < 0)
        goto out;
    if (cstore_blob_read(cs, pm->config, CONFIG_MAX, &cfg, &cfglen, e) < 0)
        goto out;
    if (parse_config_diffids(cfg, pm->nlayers, diff, rec.platform, sizeof(rec.platform), e) < 0)
        goto out;
    {
        char want[128];
        size_t wl = (size_t)snprintf(want, sizeof(want), "%s/%s", o->platform.os, o->platform.arch);
        if (!o->quiet && (strncmp(rec.platform, want, wl) != 0 ||
                          (rec.platform[wl] != '\0' && rec.platform[wl] != '/')))
            fprintf(stderr, "warning: image platform %s does not match the requested %s\n",
                    rec.platform, want);
    }
    blobs = calloc(pm->nlayers + 1, sizeof(*blobs));
    if (!blobs) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < pm->nlayers; i++) {
        snprintf(labels[i], sizeof(labels[i]), "layer %zu/%zu", i + 1, pm->nlayers);
        blobs[i].digest = pm->layer[i];
        blobs[i].size = pm->layer_size[i];
        blobs[i].label = labels[i];
    }
    struct unpack_job job;
    if (job_start(&job, cs, pm->layer, diff, pm->nlayers, e) < 0)
        goto out;
    if (regclient_fetch_blobs(rc, cs, blobs, pm->nlayers, layer_ready, &job, &st2, e) < 0) {
        job_finish(&job, 1, NULL);
        goto out;
    }
    if (job_finish(&job, 0, e) < 0)
        goto out;
    if (!o->quiet)
        fprintf(stderr,
                "Fetched %llu blob(s), %llu bytes; %llu already present; %zu layer(s) "
                "unpacked\n",
                (unsigned long long)(st.fetched + st2.fetched),
                (unsigned long long)(st.bytes + st2.bytes),
                (unsigned long long)(st.skipped + st2.skipped), pm->nlayers);

    /* the record */
    snprintf(rec.ref, sizeof(rec.ref), "%s", refs);
    snprintf(rec.digest, sizeof(rec.digest), "%s", top);
    snprintf(rec.manifest, sizeof(rec.manifest), "%s", digest);
    snprintf(rec.config, sizeof(rec.config), "%s", pm->config);
    rec.created = (int64_t)time(NULL);
    rec.size = pm->config_size;
    rec.blobs = strv_new(pm->nlayers + 3);
    rec.layers = strv_new(pm->nlayers);
    if (!rec.blobs || !rec.layers) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    size_t nb = 0;
    if (idx[0])
        rec.blobs[nb++] = strdup(idx);
    rec.blobs[nb++] = strdup(digest);
    rec.blobs[nb++] = strdup(pm->config);
    for (size_t i = 0; i < pm->nlayers; i++) {
        rec.blobs[nb++] = strdup(pm->layer[i]);
        rec.layers[i] = strdup(diff[i]);
        rec.size += pm->layer_size[i];
    }
    for (size_t i = 0; i < nb; i++)
        if (!rec.blobs[i]) {
            err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
    for (size_t i = 0; i < pm->nlayers; i++)
        if (!rec.layers[i]) {
            err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
    if (cstore_image_put(cs, &rec, e) < 0)
        goto out;
    if (!o->quiet)
        fprintf(stderr, "Pulled %s (%s)\n", refs, top);
    *img = rec;
    memset(&rec, 0, sizeof(rec));
    ret = 0;
out:
    cstore_image_release(&rec);
    regclient_free(rc);
    free(blobs);
    free(body);
    free(cfg);
    free(pm);
    free(diff);
    return ret;
}
