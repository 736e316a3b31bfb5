/* gc_stress_test.c - online gc beside live pushes and pulls loses nothing
 * (issue 11, docs/testing.md "gc stress").
 *
 * The server runs a gc pass every second with a zero grace period and
 * delete_untagged on, the most aggressive setting. Writer threads push images
 * into a few shared repositories: single-platform images and multi-arch
 * indexes (index + 2 child manifests pushed by digest), layers shared across
 * repositories (pushed again or mounted), referrers (an artifact manifest
 * whose subject is the image, pushed by digest), tag overwrites, manifest
 * deletes and tag deletes. Reader threads pull live images all the while.
 *
 * The model: each image slot (one tag of one writer) is EMPTY, CHANGING (its
 * writer is pushing, moving or deleting it) or LIVE; `version` grows at each
 * change. A reader pulls a LIVE slot and re-reads the slot afterwards: a
 * failed pull of a slot that stayed LIVE at the same version is a lost image,
 * the failure this test exists for; one whose slot changed meanwhile is
 * excused (counted). A manifest PUT answered 400 MANIFEST_BLOB_UNKNOWN is the
 * protocol's way to say gc took a blob or child that nothing referenced yet
 * (grace 0): the writer pushes the missing pieces again and retries (counted).
 * So does a blob or manifest push answered 500 "... file vanished during
 * commit, retry" (storage's answer when a pass deletes an older copy of the
 * same bytes while the push commits; counted apart).
 *
 * At the end (writers stopped, gc passes until one removes nothing): every
 * LIVE image pulls completely with the right digests, and the files under
 * <root>/blobs are exactly the blobs and manifests the LIVE images reference:
 * none missing (lost), none more (garbage left).
 *
 * GC_STRESS_SECONDS sets the run's length (default 60; make bench runs it
 * longer). GC_STRESS_SEED replays the writers' choices. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/integ_util.h"
#include "tests/lib/testsrv.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_EMPTY "application/vnd.oci.empty.v1+json"
#define ART_TYPE "application/vnd.example.signature"

#define NREPOS 4
#define NWRITERS 3
#define NREADERS 2
#define NSLOTS 12      /* tags per writer */
#define NBASE 6        /* shared base layers */
#define MAX_RETRIES 50 /* a PUT refused this often in a row is a failure */

enum slot_state { EMPTY = 0, CHANGING, LIVE };

struct blob {
    char digest[80];
    uint64_t seed; /* its bytes: integ_pattern(seed, 0, .., size); 0: the empty config "{}" */
    uint32_t size;
};

struct man {
    char digest[80];
    char *body; /* malloc'd */
    size_t len;
    const char *mt;
    struct blob config;
    struct blob layers[3];
    int nlayers;
};

struct image {
    int repo;
    char tag[32];
    int is_index;
    struct man top;
    struct man child[2];
    int has_ref;
    struct man ref;
};

struct slot {
    enum slot_state state;
    unsigned version;
    struct image img; /* valid while LIVE */
};

static struct {
    struct testsrv srv;
    pthread_mutex_t mu; /* guards slots */
    struct slot slots[NWRITERS][NSLOTS];
    struct blob base[NBASE];
    atomic_int stop;
    atomic_ulong seeds;
    /* counters */
    atomic_ulong pushes, put_retries, vanished_retries, deletes, tag_deletes, overwrites, referrers, mounts;
    atomic_ulong pulls, pulls_excused, transport_errors;
    pthread_mutex_t err_mu;
    int nerr;
    char errs[8][512];
    int64_t deadline_ms;
} G;

static const char *repo_names[NREPOS] = {"stress/alpha", "stress/beta", "stress/gamma/app",
                                         "stress/delta"};

static void fail_rec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
fail_rec(const char *fmt, ...)
{
    pthread_mutex_lock(&G.err_mu);
    if (G.nerr < 8) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(G.errs[G.nerr], sizeof(G.errs[0]), fmt, ap);
        va_end(ap);
    }
    G.nerr++;
    pthread_mutex_unlock(&G.err_mu);
}

static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- a client with a kept-alive connection (one per thread) ---- */

struct cl {
    CURL *c;
};

struct resp {
    long status;
    struct tbuf body, hdr;
};

static void
resp_free(struct resp *r)
{
    free(r->body.p);
    free(r->hdr.p);
    memset(r, 0, sizeof(*r));
}

/* one request; 0 with *r filled (free with resp_free), -1 on transport failure */
static int
hreq(struct cl *c, const char *method, const char *path, const char *ctype, const void *body,
     size_t len, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    if (!c->c)
        c->c = curl_easy_init();
    CURL *h = c->c;
    curl_easy_reset(h);
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", G.srv.url, path);
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    hl = curl_slist_append(hl, "Accept: " MT_MANIFEST ", " MT_INDEX);
    char ct[200];
    if (ctype) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
        hl = curl_slist_append(hl, ct);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, tbuf_body_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, tbuf_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r->hdr);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hl);
    if (rc != CURLE_OK) {
        resp_free(r);
        atomic_fetch_add(&G.transport_errors, 1);
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (!r->body.p)
        r->body.p = calloc(1, 1);
    return 0;
}

static int
body_has(const struct resp *r, const char *needle)
{
    return r->body.p && strstr(r->body.p, needle) != NULL;
}

/* ---- content ---- */

static void
blob_make(struct blob *b, uint64_t seed, uint32_t size)
{
    b->seed = seed;
    b->size = size;
    integ_pattern_digest(seed, size, b->digest);
}

static void
blob_empty(struct blob *b)
{
    b->seed = 0;
    b->size = 2;
    tdigest("{}", 2, b->digest);
}

static char *
blob_bytes(const struct blob *b)
{
    char *p = malloc(b->size ? b->size : 1);
    if (b->seed)
        integ_pattern(b->seed, 0, p, b->size);
    else
        memcpy(p, "{}", 2);
    return p;
}

static void
man_seal(struct man *m)
{
    tdigest(m->body, m->len, m->digest);
}

static char *
desc(char *out, size_t cap, const char *mt, const struct blob *b)
{
    snprintf(out, cap, "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%u}", mt, b->digest,
             b->size);
    return out;
}

/* an image manifest over config + layers; subject (may be NULL) makes it a referrer */
static void
man_image(struct man *m, const struct man *subject, const char *cfg_mt)
{
    char cfg[300], lay[3][300], subj[300] = "";
    desc(cfg, sizeof(cfg), cfg_mt, &m->config);
    for (int i = 0; i < m->nlayers; i++)
        desc(lay[i], sizeof(lay[i]), MT_LAYER, &m->layers[i]);
    if (subject)
        snprintf(subj, sizeof(subj),
                 ",\"subject\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}",
                 subject->mt, subject->digest, subject->len);
    char *b = malloc(4096);
    int n = snprintf(b, 4096,
                     "{\"schemaVersion\":2,\"mediaType\":\"%s\",%s\"config\":%s,\"layers\":[%s%s%s%s%s]%s}",
                     MT_MANIFEST, subject ? "\"artifactType\":\"" ART_TYPE "\"," : "", cfg, lay[0],
                     m->nlayers > 1 ? "," : "", m->nlayers > 1 ? lay[1] : "",
                     m->nlayers > 2 ? "," : "", m->nlayers > 2 ? lay[2] : "", subj);
    m->body = b;
    m->len = (size_t)n;
    m->mt = MT_MANIFEST;
    man_seal(m);
}

static void
man_index(struct man *m, const struct man *c0, const struct man *c1)
{
    char *b = malloc(2048);
    int n = snprintf(
        b, 2048,
        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
        "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
        "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}}]}",
        MT_INDEX, MT_MANIFEST, c0->digest, c0->len, MT_MANIFEST, c1->digest, c1->len);
    m->body = b;
    m->len = (size_t)n;
    m->mt = MT_INDEX;
    m->nlayers = 0;
    man_seal(m);
}

static void
man_free(struct man *m)
{
    free(m->body);
    m->body = NULL;
}

static void
image_free(struct image *im)
{
    man_free(&im->top);
    man_free(&im->child[0]);
    man_free(&im->child[1]);
    man_free(&im->ref);
}

/* a runnable image: config unique, one shared base layer, 1-2 unique layers */
static void
man_runnable(struct man *m, uint64_t *rs)
{
    memset(m, 0, sizeof(*m));
    blob_make(&m->config, atomic_fetch_add(&G.seeds, 1), 100 + (uint32_t)(rnd(rs) % 400));
    m->layers[0] = G.base[rnd(rs) % NBASE];
    m->nlayers = 2 + (int)(rnd(rs) % 2);
    for (int i = 1; i < m->nlayers; i++)
        blob_make(&m->layers[i], atomic_fetch_add(&G.seeds, 1), 500 + (uint32_t)(rnd(rs) % 6000));
    man_image(m, NULL, MT_CONFIG);
}

static void
man_referrer(struct man *m, const struct man *subject)
{
    memset(m, 0, sizeof(*m));
    blob_empty(&m->config);
    blob_make(&m->layers[0], atomic_fetch_add(&G.seeds, 1), 300);
    m->nlayers = 1;
    man_image(m, subject, MT_EMPTY);
}

/* ---- pushing ---- */

/* the blob linked to repo: HEAD, else a mount from another repository (base
 * layers, half the time), else a monolithic POST. 1 when linked, 0 when the
 * upload's commit found its file taken by gc (500 "blob file vanished during
 * commit, retry": storage's answer when a pass deletes the old copy of the
 * same blob between the upload's dedup and its row), -1 otherwise (recorded). */
static int
push_blob_once(struct cl *c, int repo, const struct blob *b, uint64_t *rs)
{
    char path[512];
    struct resp r;
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo_names[repo], b->digest);
    if (hreq(c, "HEAD", path, NULL, NULL, 0, &r) < 0)
        return -1;
    long st = r.status;
    resp_free(&r);
    if (st == 200)
        return 1;
    char *bytes = blob_bytes(b);
    int rc = -1;
    int from = (repo + 1 + (int)(rnd(rs) % (NREPOS - 1))) % NREPOS;
    if (b->seed && b->seed <= NBASE && rnd(rs) % 2) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?mount=%s&from=%s", repo_names[repo],
                 b->digest, repo_names[from]);
        if (hreq(c, "POST", path, NULL, NULL, 0, &r) < 0)
            goto out;
        if (r.status == 201) {
            atomic_fetch_add(&G.mounts, 1);
            resp_free(&r);
            rc = 1;
            goto out;
        }
        char loc[600];
        if (r.status != 202 || !tresp_header(&(struct tresp){.headers = r.hdr.p}, "Location", loc,
                                             sizeof(loc))) {
            fail_rec("mount %s into %s: status %ld", b->digest, repo_names[repo], r.status);
            resp_free(&r);
            goto out;
        }
        resp_free(&r);
        /* not mountable from there: finish the session the mount opened */
        char put[900];
        snprintf(put, sizeof(put), "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", b->digest);
        const char *p = strncmp(put, "http", 4) == 0 ? strstr(put + 8, "/v2/") : put;
        if (hreq(c, "PUT", p, "application/octet-stream", bytes, b->size, &r) < 0)
            goto out;
    } else {
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo_names[repo],
                 b->digest);
        if (hreq(c, "POST", path, "application/octet-stream", bytes, b->size, &r) < 0)
            goto out;
    }
    if (r.status == 201)
        rc = 1;
    else if (r.status == 500 && body_has(&r, "vanished during commit"))
        rc = 0;
    else
        fail_rec("push blob %s to %s: status %ld %.200s", b->digest, repo_names[repo], r.status,
                 r.body.p);
    resp_free(&r);
out:
    free(bytes);
    return rc;
}

static int
push_blob(struct cl *c, int repo, const struct blob *b, uint64_t *rs)
{
    for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
        int rc = push_blob_once(c, repo, b, rs);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        atomic_fetch_add(&G.vanished_retries, 1);
    }
    fail_rec("push blob %s: file vanished %d times in a row", b->digest, MAX_RETRIES);
    return -1;
}

static int
push_man_blobs(struct cl *c, int repo, const struct man *m, uint64_t *rs)
{
    if (push_blob(c, repo, &m->config, rs) < 0)
        return -1;
    for (int i = 0; i < m->nlayers; i++)
        if (push_blob(c, repo, &m->layers[i], rs) < 0)
            return -1;
    return 0;
}

/* PUT a manifest by ref: 1 when created, 0 when refused with
 * MANIFEST_BLOB_UNKNOWN or 500 "manifest file vanished during commit, retry"
 * (push the pieces again), -1 otherwise (recorded) */
static int
put_manifest(struct cl *c, int repo, const struct man *m, const char *ref)
{
    char path[512];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo_names[repo], ref);
    struct resp r;
    if (hreq(c, "PUT", path, m->mt, m->body, m->len, &r) < 0)
        return -1;
    int rc = -1;
    if (r.status == 201)
        rc = 1;
    else if (r.status == 400 && body_has(&r, "MANIFEST_BLOB_UNKNOWN"))
        rc = 0;
    else if (r.status == 500 && body_has(&r, "vanished during commit")) {
        /* the body's older copy went with a pass during the commit (as for
         * blobs, push_blob_once) */
        atomic_fetch_add(&G.vanished_retries, 1);
        rc = 0;
    } else
        fail_rec("PUT %s: status %ld %.200s", path, r.status, r.body.p);
    resp_free(&r);
    return rc;
}

/* push a whole image (children, blobs) and tag it; the referrer after. 0, or -1 */
static int
push_image(struct cl *c, struct image *im, uint64_t *rs)
{
    for (int attempt = 0;; attempt++) {
        if (attempt >= MAX_RETRIES) {
            fail_rec("push %s:%s: still MANIFEST_BLOB_UNKNOWN after %d tries",
                     repo_names[im->repo], im->tag, attempt);
            return -1;
        }
        if (attempt)
            atomic_fetch_add(&G.put_retries, 1);
        int ok = 1;
        if (im->is_index) {
            for (int k = 0; k < 2 && ok; k++) {
                if (push_man_blobs(c, im->repo, &im->child[k], rs) < 0)
                    return -1;
                int p = put_manifest(c, im->repo, &im->child[k], im->child[k].digest);
                if (p < 0)
                    return -1;
                ok = p;
            }
        } else if (push_man_blobs(c, im->repo, &im->top, rs) < 0) {
            return -1;
        }
        if (!ok)
            continue;
        int p = put_manifest(c, im->repo, &im->top, im->tag);
        if (p < 0)
            return -1;
        if (p == 1)
            break;
    }
    atomic_fetch_add(&G.pushes, 1);
    return 0;
}

static int
push_referrer(struct cl *c, struct image *im, uint64_t *rs)
{
    for (int attempt = 0;; attempt++) {
        if (attempt >= MAX_RETRIES) {
            fail_rec("referrer in %s: still MANIFEST_BLOB_UNKNOWN after %d tries",
                     repo_names[im->repo], attempt);
            return -1;
        }
        if (attempt)
            atomic_fetch_add(&G.put_retries, 1);
        if (push_man_blobs(c, im->repo, &im->ref, rs) < 0)
            return -1;
        int p = put_manifest(c, im->repo, &im->ref, im->ref.digest);
        if (p < 0)
            return -1;
        if (p == 1)
            break;
    }
    atomic_fetch_add(&G.referrers, 1);
    return 0;
}

static void
image_new(struct image *im, int w, int i, uint64_t *rs)
{
    memset(im, 0, sizeof(*im));
    im->repo = (int)(rnd(rs) % NREPOS);
    snprintf(im->tag, sizeof(im->tag), "w%d-t%d", w, i);
    im->is_index = rnd(rs) % 3 == 0;
    if (im->is_index) {
        man_runnable(&im->child[0], rs);
        man_runnable(&im->child[1], rs);
        man_index(&im->top, &im->child[0], &im->child[1]);
    } else {
        man_runnable(&im->top, rs);
    }
}

static int
delete_ref(struct cl *c, int repo, const char *ref)
{
    char path[512];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo_names[repo], ref);
    struct resp r;
    if (hreq(c, "DELETE", path, NULL, NULL, 0, &r) < 0)
        return -1;
    long st = r.status;
    resp_free(&r);
    if (st != 202) {
        fail_rec("DELETE %s: status %ld", path, st);
        return -1;
    }
    return 0;
}

/* set a slot's state (and image, when LIVE: ownership moves into the slot) */
static void
slot_set(int w, int i, enum slot_state st, struct image *im)
{
    pthread_mutex_lock(&G.mu);
    struct slot *s = &G.slots[w][i];
    if (im) { /* else the image stays owned by the slot until replaced */
        image_free(&s->img);
        s->img = *im;
    }
    s->state = st;
    s->version++;
    pthread_mutex_unlock(&G.mu);
}

struct writer {
    int w;
    uint64_t seed;
};

static void *
writer_main(void *arg)
{
    struct writer *wr = arg;
    int w = wr->w;
    uint64_t rs = wr->seed;
    struct cl c = {0};
    while (!atomic_load(&G.stop) && integ_now_ms() < G.deadline_ms) {
        int i = (int)(rnd(&rs) % NSLOTS);
        pthread_mutex_lock(&G.mu);
        enum slot_state st = G.slots[w][i].state;
        struct image cur = G.slots[w][i].img; /* shallow: read only by this writer */
        pthread_mutex_unlock(&G.mu);
        unsigned op = (unsigned)(rnd(&rs) % 100);
        if (st == EMPTY) {
            struct image im;
            image_new(&im, w, i, &rs);
            if (push_image(&c, &im, &rs) < 0) {
                image_free(&im);
                break;
            }
            slot_set(w, i, LIVE, &im);
        } else if (op < 30) { /* tag overwrite: the old image becomes garbage */
            struct image im;
            image_new(&im, w, i, &rs);
            im.repo = cur.repo;
            slot_set(w, i, CHANGING, NULL);
            if (push_image(&c, &im, &rs) < 0) {
                image_free(&im);
                break;
            }
            atomic_fetch_add(&G.overwrites, 1);
            slot_set(w, i, LIVE, &im);
        } else if (op < 55) { /* delete the manifest (and so its tag) */
            slot_set(w, i, CHANGING, NULL);
            if (delete_ref(&c, cur.repo, cur.top.digest) < 0)
                break;
            atomic_fetch_add(&G.deletes, 1);
            slot_set(w, i, EMPTY, NULL);
        } else if (op < 70) { /* delete only the tag: untagged, gc takes it */
            slot_set(w, i, CHANGING, NULL);
            if (delete_ref(&c, cur.repo, cur.tag) < 0)
                break;
            atomic_fetch_add(&G.tag_deletes, 1);
            slot_set(w, i, EMPTY, NULL);
        } else if (!cur.has_ref) { /* a referrer (signature) of the image */
            slot_set(w, i, CHANGING, NULL);
            pthread_mutex_lock(&G.mu);
            struct image *im = &G.slots[w][i].img;
            man_referrer(&im->ref, &im->top);
            pthread_mutex_unlock(&G.mu);
            if (push_referrer(&c, im, &rs) < 0)
                break;
            pthread_mutex_lock(&G.mu);
            im->has_ref = 1;
            pthread_mutex_unlock(&G.mu);
            slot_set(w, i, LIVE, NULL);
        }
    }
    curl_easy_cleanup(c.c);
    return NULL;
}

/* ---- pulling ---- */

static int
pull_blob(struct cl *c, int repo, const struct blob *b, char *why, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo_names[repo], b->digest);
    struct resp r;
    if (hreq(c, "GET", path, NULL, NULL, 0, &r) < 0) {
        snprintf(why, cap, "GET %s: transport", path);
        return -1;
    }
    char d[80];
    tdigest(r.body.p, r.body.n, d);
    int ok = r.status == 200 && strcmp(d, b->digest) == 0;
    if (!ok)
        snprintf(why, cap, "GET %s: status %ld, %zu bytes hashing to %s", path, r.status,
                 r.body.n, d);
    resp_free(&r);
    return ok ? 0 : -1;
}

static int
pull_man(struct cl *c, int repo, const struct man *m, const char *ref, char *why, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo_names[repo], ref);
    struct resp r;
    if (hreq(c, "GET", path, NULL, NULL, 0, &r) < 0) {
        snprintf(why, cap, "GET %s: transport", path);
        return -1;
    }
    char d[80];
    tdigest(r.body.p, r.body.n, d);
    int ok = r.status == 200 && strcmp(d, m->digest) == 0;
    if (!ok)
        snprintf(why, cap, "GET %s: status %ld, body hashing to %s, want %s", path, r.status, d,
                 m->digest);
    resp_free(&r);
    if (!ok)
        return -1;
    if (pull_blob(c, repo, &m->config, why, cap) < 0)
        return -1;
    for (int i = 0; i < m->nlayers; i++)
        if (pull_blob(c, repo, &m->layers[i], why, cap) < 0)
            return -1;
    return 0;
}

/* the whole image as a client would pull it, referrer included */
static int
pull_image(struct cl *c, const struct image *im, char *why, size_t cap)
{
    char path[512];
    struct resp r;
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo_names[im->repo], im->tag);
    if (hreq(c, "GET", path, NULL, NULL, 0, &r) < 0) {
        snprintf(why, cap, "GET %s: transport", path);
        return -1;
    }
    char d[80];
    tdigest(r.body.p, r.body.n, d);
    int ok = r.status == 200 && strcmp(d, im->top.digest) == 0;
    if (!ok)
        snprintf(why, cap, "GET %s: status %ld, digest %s, want %s", path, r.status, d,
                 im->top.digest);
    resp_free(&r);
    if (!ok)
        return -1;
    if (im->is_index) {
        for (int k = 0; k < 2; k++)
            if (pull_man(c, im->repo, &im->child[k], im->child[k].digest, why, cap) < 0)
                return -1;
    } else if (pull_blob(c, im->repo, &im->top.config, why, cap) < 0) {
        return -1;
    } else {
        for (int i = 0; i < im->top.nlayers; i++)
            if (pull_blob(c, im->repo, &im->top.layers[i], why, cap) < 0)
                return -1;
    }
    if (im->has_ref) {
        snprintf(path, sizeof(path), "/v2/%s/referrers/%s", repo_names[im->repo], im->top.digest);
        if (hreq(c, "GET", path, NULL, NULL, 0, &r) < 0) {
            snprintf(why, cap, "GET %s: transport", path);
            return -1;
        }
        ok = r.status == 200 && body_has(&r, im->ref.digest);
        if (!ok)
            snprintf(why, cap, "GET %s: status %ld, referrer %s %s", path, r.status,
                     im->ref.digest, r.status == 200 ? "not listed" : "");
        resp_free(&r);
        if (!ok)
            return -1;
        if (pull_man(c, im->repo, &im->ref, im->ref.digest, why, cap) < 0)
            return -1;
    }
    return 0;
}

/* a deep copy of what a reader needs: the bodies are not read */
static void
image_copy_shallow(struct image *dst, const struct image *src)
{
    *dst = *src;
    dst->top.body = dst->child[0].body = dst->child[1].body = dst->ref.body = NULL;
}

static void *
reader_main(void *arg)
{
    uint64_t rs = (uint64_t)(uintptr_t)arg * 7919 + 17;
    struct cl c = {0};
    while (!atomic_load(&G.stop) && integ_now_ms() < G.deadline_ms) {
        int w = (int)(rnd(&rs) % NWRITERS), i = (int)(rnd(&rs) % NSLOTS);
        pthread_mutex_lock(&G.mu);
        struct slot *s = &G.slots[w][i];
        int live = s->state == LIVE;
        unsigned v = s->version;
        struct image im;
        image_copy_shallow(&im, &s->img);
        pthread_mutex_unlock(&G.mu);
        if (!live) {
            usleep(1000);
            continue;
        }
        char why[512] = "";
        int rc = pull_image(&c, &im, why, sizeof(why));
        atomic_fetch_add(&G.pulls, 1);
        if (rc == 0)
            continue;
        pthread_mutex_lock(&G.mu);
        int same = s->state == LIVE && s->version == v;
        pthread_mutex_unlock(&G.mu);
        if (same)
            fail_rec("pull of live image %s:%s failed: %s", repo_names[im.repo], im.tag, why);
        else
            atomic_fetch_add(&G.pulls_excused, 1);
    }
    curl_easy_cleanup(c.c);
    return NULL;
}

/* ---- the server's gc passes, from its log ---- */

/* completed passes so far; *last_removed the things the last one removed */
static int
passes_seen(unsigned long long *last_removed)
{
    FILE *f = fopen(G.srv.log, "r");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, " gc: ");
        unsigned long long m, l, b, u;
        double mib;
        if (p && strstr(p, " removed in ") &&
            sscanf(p, " gc: %llu manifests, %llu links, %llu blobs (%lf MiB), %llu uploads", &m,
                   &l, &b, &mib, &u) == 5) {
            n++;
            if (last_removed)
                *last_removed = m + l + b + u;
        }
    }
    fclose(f);
    return n;
}

/* wait for a pass that started after now and removed nothing (a fixpoint:
 * cascades take several passes); 0, or -1 after a bounded wait. Ages are
 * whole seconds, so grace 0 may spare what the last second made: the passes
 * counted start 2 s after the last change. */
static int
wait_gc_fixpoint(void)
{
    integ_sleep_ms(2100);
    int base = passes_seen(NULL);
    int64_t until = integ_now_ms() + 120000;
    while (integ_now_ms() < until) {
        unsigned long long removed = 1;
        int n = passes_seen(&removed);
        /* base + 2: the pass running at `base` may have started before */
        if (n >= base + 2 && removed == 0)
            return 0;
        integ_sleep_ms(200);
    }
    return -1;
}

/* ---- the end state ---- */

struct dset {
    char (*d)[80];
    size_t n, cap;
};

static void
dset_add(struct dset *s, const char *d)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->d[i], d) == 0)
            return;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->d = realloc(s->d, s->cap * sizeof(*s->d));
    }
    snprintf(s->d[s->n++], 80, "%s", d);
}

static int
dset_has(const struct dset *s, const char *d)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->d[i], d) == 0)
            return 1;
    return 0;
}

static void
want_man(struct dset *s, const struct man *m)
{
    dset_add(s, m->digest);
    if (m->mt == NULL || strcmp(m->mt, MT_INDEX) != 0) {
        dset_add(s, m->config.digest);
        for (int i = 0; i < m->nlayers; i++)
            dset_add(s, m->layers[i].digest);
    }
}

static void
on_file(void *arg, const char *digest)
{
    dset_add(arg, digest);
}

static const char *const srv_env[] = {
    "OCIREG_GC_INTERVAL=1s", "OCIREG_GC_GRACE=0", "OCIREG_GC_DELETE_UNTAGGED=true",
    "OCIREG_LOG_LEVEL=debug", "OCIREG_SERVER_WORKERS=2", NULL};

static void
dump_log_tail(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "grep -v ' http \\| api ' '%s' | tail -30 >&2", G.srv.log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

/* an assertion ending the test early must not leave the server behind */
static void
teardown(void)
{
    if (G.srv.pid > 0)
        testsrv_kill9(&G.srv);
}

Test(gc_stress, pushes_pulls_and_deletes_beside_gc_every_second_lose_nothing, .timeout = 900,
     .fini = teardown)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&G, 0, sizeof(G));
    pthread_mutex_init(&G.mu, NULL);
    pthread_mutex_init(&G.err_mu, NULL);
    atomic_init(&G.seeds, 1000);
    const char *sec = getenv("GC_STRESS_SECONDS");
    int seconds = sec && atoi(sec) > 0 ? atoi(sec) : 60;
    const char *sd = getenv("GC_STRESS_SEED");
    uint64_t seed = sd && *sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL);
    if (!seed)
        seed = 1;
    cr_log_info("gc_stress: %d s, seed %llu (GC_STRESS_SEED replays the writers' choices)",
                seconds, (unsigned long long)seed);
    cr_assert_eq(testsrv_start(&G.srv, NULL, srv_env), 0, "server did not start");
    for (int i = 0; i < NBASE; i++)
        blob_make(&G.base[i], (uint64_t)i + 1, 4000 + (uint32_t)i * 1000);

    G.deadline_ms = integ_now_ms() + (int64_t)seconds * 1000;
    pthread_t wt[NWRITERS], rt[NREADERS];
    struct writer wr[NWRITERS];
    for (int w = 0; w < NWRITERS; w++) {
        wr[w] = (struct writer){.w = w, .seed = seed * 31 + (uint64_t)w * 1000003 + 1};
        cr_assert_eq(pthread_create(&wt[w], NULL, writer_main, &wr[w]), 0);
    }
    for (int r = 0; r < NREADERS; r++)
        cr_assert_eq(pthread_create(&rt[r], NULL, reader_main, (void *)(uintptr_t)(r + 1)), 0);
    for (int w = 0; w < NWRITERS; w++)
        pthread_join(wt[w], NULL);
    atomic_store(&G.stop, 1);
    for (int r = 0; r < NREADERS; r++)
        pthread_join(rt[r], NULL);
    int alive = testsrv_alive(&G.srv);
    int passes_during = passes_seen(NULL);
    cr_log_info("gc_stress: %lu pushes (%lu tag overwrites), %lu referrers, %lu manifest deletes,"
                " %lu tag deletes, %lu mounts; %lu manifest PUTs retried after"
                " MANIFEST_BLOB_UNKNOWN, %lu blob or manifest pushes retried after 500 'file vanished"
                " during commit'; %lu pulls (%lu failed on images changing meanwhile);"
                " %d gc passes; %lu transport errors",
                atomic_load(&G.pushes), atomic_load(&G.overwrites), atomic_load(&G.referrers),
                atomic_load(&G.deletes), atomic_load(&G.tag_deletes), atomic_load(&G.mounts),
                atomic_load(&G.put_retries), atomic_load(&G.vanished_retries), atomic_load(&G.pulls),
                atomic_load(&G.pulls_excused), passes_during, atomic_load(&G.transport_errors));
    if (G.nerr || !alive)
        dump_log_tail();
    cr_assert(alive, "the server died during the run (log %s)", G.srv.log);
    for (int i = 0; i < G.nerr && i < 8; i++)
        cr_log_error("%s", G.errs[i]);
    cr_assert_eq(G.nerr, 0, "%d failures during the run; first: %s", G.nerr, G.errs[0]);
    cr_assert_gt(atomic_load(&G.pushes), 0, "nothing pushed");
    cr_assert_gt(passes_during, 0, "no gc pass ran during the run");

    /* nothing changes now: gc passes until one has nothing left to remove */
    cr_assert_eq(wait_gc_fixpoint(), 0, "gc passes did not settle within 120 s");

    struct dset want = {0}, have = {0};
    struct cl c = {0};
    int live = 0;
    for (int w = 0; w < NWRITERS; w++)
        for (int i = 0; i < NSLOTS; i++) {
            struct slot *s = &G.slots[w][i];
            if (s->state != LIVE)
                continue;
            live++;
            char why[512] = "";
            cr_expect_eq(pull_image(&c, &s->img, why, sizeof(why)), 0,
                         "image %s:%s lost after gc: %s", repo_names[s->img.repo], s->img.tag,
                         why);
            want_man(&want, &s->img.top);
            if (s->img.is_index) {
                want_man(&want, &s->img.child[0]);
                want_man(&want, &s->img.child[1]);
            }
            if (s->img.has_ref)
                want_man(&want, &s->img.ref);
        }
    curl_easy_cleanup(c.c);
    char why[512] = "";
    int nup = 0;
    int bad = integ_layout_check(G.srv.root, 1, &nup, on_file, &have, why, sizeof(why));
    cr_expect_eq(bad, 0, "storage layout: %s", why);
    size_t missing = 0, extra = 0;
    for (size_t i = 0; i < want.n; i++)
        if (!dset_has(&have, want.d[i])) {
            if (missing++ < 5)
                cr_log_error("referenced blob %s has no file", want.d[i]);
        }
    for (size_t i = 0; i < have.n; i++)
        if (!dset_has(&want, have.d[i])) {
            if (extra++ < 5)
                cr_log_error("garbage left: %s", have.d[i]);
        }
    cr_log_info("gc_stress: %d live images reference %zu blobs and manifests; %zu files under"
                " blobs/, %d upload files",
                live, want.n, have.n, nup);
    cr_expect_eq(missing, 0, "%zu referenced blobs lost", missing);
    cr_expect_eq(extra, 0, "%zu unreferenced blob files left after gc settled", extra);
    free(want.d);
    free(have.d);

    int st = testsrv_stop(&G.srv);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %#x", st);
    for (int w = 0; w < NWRITERS; w++)
        for (int i = 0; i < NSLOTS; i++)
            image_free(&G.slots[w][i].img);
    testsrv_cleanup(&G.srv);
    unlink(G.srv.log);
    curl_global_cleanup();
}
