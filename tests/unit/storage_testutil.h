/* storage_testutil.h - helpers shared by the storage module's unit tests
 * (grammar, digest, range, manifest, blobstore, upload, metadb, storage): a fresh
 * mkdtemp root per test, removed afterwards, and small builders. */
#ifndef OCIREG_STORAGE_TESTUTIL_H
#define OCIREG_STORAGE_TESTUTIL_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/lib/blob_nofd.h"

static inline int
tu_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void
tu_rm_rf(const char *path)
{
    nftw(path, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* tu_reader_fd - a descriptor of what rd reads, positioned nowhere (tests
 * pread from 0): the reader's zero-copy offer, or, from a backend without
 * one, a memfd holding a copy. The reader is closed. -1 on failure. */
static inline int
tu_reader_fd(struct blob_reader *rd)
{
    int fd = -1;
    uint64_t off = 0;
    if (blob_reader_fd(rd, &fd, &off) == 0 && off == 0) {
        blob_reader_close(rd);
        return fd;
    }
    if (fd >= 0)
        close(fd);
    struct err e = {0};
    char *buf = malloc(rd->size ? rd->size : 1);
    fd = memfd_create("tu-reader", MFD_CLOEXEC);
    if (!buf || fd < 0 || blob_reader_read_all(rd, buf, &e) < 0 ||
        pwrite(fd, buf, rd->size, 0) != (ssize_t)rd->size) {
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    free(buf);
    blob_reader_close(rd);
    return fd;
}

/* the storage_blob_open / storage_manifest_get forms that give a descriptor */
static inline int
tu_blob_open_fd(struct storage_handle *h, const char *repo, const struct digest *d, int *fd,
                uint64_t *size, struct err *e)
{
    struct blob_reader rd = {0};
    if (storage_blob_open(h, repo, d, fd ? &rd : NULL, size, e) < 0)
        return -1;
    if (fd)
        *fd = tu_reader_fd(&rd);
    return 0;
}

static inline int
tu_manifest_get_fd(struct storage_handle *h, const char *repo, const char *ref,
                   struct manifest_meta *meta, int *fd, struct err *e)
{
    struct blob_reader rd = {0};
    if (storage_manifest_get(h, repo, ref, meta, fd ? &rd : NULL, e) < 0)
        return -1;
    if (fd)
        *fd = tu_reader_fd(&rd);
    return 0;
}

struct tu_store {
    char root[64];
    struct storage *st;
    struct storage_handle *h;
};

/* tu_open_opts_at - open t->root (which exists or is created) with the options o */
static inline void
tu_open_opts_at(struct tu_store *t, struct storage_opts o)
{
    o.root = t->root;
    /* OCIREG_TEST_BLOBS=nofd: the same tests on a backend without descriptors */
    if (!o.test_blobs)
        o.test_blobs = blob_nofd_selected();
    struct err e = {0};
    t->st = storage_open(&o, &e);
    cr_assert_not_null(t->st, "storage_open: %s", e.msg);
    t->h = storage_handle_open(t->st, &e);
    cr_assert_not_null(t->h, "storage_handle_open: %s", e.msg);
}

static inline void
tu_open_at(struct tu_store *t, int fsync)
{
    tu_open_opts_at(t, (struct storage_opts){.fsync = fsync});
}

static inline void
tu_mkroot(struct tu_store *t)
{
    snprintf(t->root, sizeof(t->root), "/tmp/ocireg-st-XXXXXX");
    cr_assert_not_null(mkdtemp(t->root));
}

static inline void
tu_open(struct tu_store *t, int fsync)
{
    tu_mkroot(t);
    tu_open_at(t, fsync);
}

/* tu_open_with - a fresh root opened with the given options (root is filled in) */
static inline void
tu_open_with(struct tu_store *t, struct storage_opts o)
{
    tu_mkroot(t);
    tu_open_opts_at(t, o);
}

/* tu_put - a blob of text in repo */
static inline struct digest
tu_put(struct storage_handle *h, const char *repo, const char *data)
{
    struct digest d;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(h, repo, data, strlen(data), DIGEST_SHA256, &d, &e), 0,
                 "blob_put: %s", e.msg);
    return d;
}

/* tu_manifest - an OCI image manifest text (malloc'd) with a config and one
 * layer pushed into repo first; `extra` is appended inside the top object */
static inline char *
tu_manifest(struct storage_handle *h, const char *repo, const char *seed, const char *extra)
{
    char cfg[64], layer[64], c[DIGEST_STR_MAX], l[DIGEST_STR_MAX];
    snprintf(cfg, sizeof(cfg), "{\"cfg\":\"%s\"}", seed);
    snprintf(layer, sizeof(layer), "layer-%s", seed);
    struct digest dc = tu_put(h, repo, cfg), dl = tu_put(h, repo, layer);
    char *out = NULL;
    cr_assert(asprintf(&out,
                       "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
                       "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                       "\"digest\":\"%s\",\"size\":%zu},"
                       "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                       "\"digest\":\"%s\",\"size\":%zu}]%s}",
                       digest_format(&dc, c), strlen(cfg), digest_format(&dl, l), strlen(layer),
                       extra ? extra : "") > 0);
    return out;
}

/* tu_manifest_put - push tu_manifest(...) under tag (may be NULL) */
static inline struct digest
tu_manifest_put(struct storage_handle *h, const char *repo, const char *tag, const char *seed,
                const char *extra)
{
    char *m = tu_manifest(h, repo, seed, extra);
    struct manifest_meta meta;
    struct err e = {0};
    const char *tags[1] = {tag};
    cr_assert_eq(storage_manifest_put(h, repo, m, strlen(m), MT_OCI_MANIFEST, NULL, tags,
                                      tag ? 1 : 0, &meta, NULL, NULL, &e),
                 0, "manifest_put: %s", e.msg);
    free(m);
    return meta.digest;
}

/* tu_big_annotations - ",\"subject\":{...subj...},\"annotations\":{\"big\":\"xxx...\"}"
 * with n x's (malloc'd); *ann gets the compact annotations text (malloc'd) */
static inline char *
tu_big_annotations(const struct digest *subj, size_t n, char **ann)
{
    char sd[DIGEST_STR_MAX];
    char *x = malloc(n + 1);
    cr_assert_not_null(x);
    memset(x, 'x', n);
    x[n] = '\0';
    char *out = NULL;
    if (subj)
        cr_assert(asprintf(&out,
                           ",\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST
                           "\",\"digest\":\"%s\",\"size\":1},\"annotations\":{\"big\":\"%s\"}",
                           digest_format(subj, sd), x) > 0);
    else
        cr_assert(asprintf(&out, ",\"annotations\":{\"big\":\"%s\"}", x) > 0);
    if (ann)
        cr_assert(asprintf(ann, "{\"big\":\"%s\"}", x) > 0);
    free(x);
    return out;
}

static inline void
tu_close_only(struct tu_store *t)
{
    storage_handle_close(t->h);
    storage_close(t->st);
    t->h = NULL;
    t->st = NULL;
}

static inline void
tu_close(struct tu_store *t)
{
    tu_close_only(t);
    tu_rm_rf(t->root);
}

/* tu_reopen_with - close t and open its root again with the options o (a restart) */
static inline void
tu_reopen_with(struct tu_store *t, struct storage_opts o)
{
    tu_close_only(t);
    tu_open_opts_at(t, o);
}

/* TU_STORE_SUITE(name, fsync) - the usual fixture: a file-scope `struct tu_store T`
 * opened on a fresh mkdtemp root before each test of suite `name`, removed after */
#define TU_STORE_SUITE(name, fsync_)                                                               \
    static struct tu_store T;                                                                      \
    static void name##_setup(void)                                                                 \
    {                                                                                              \
        tu_open(&T, (fsync_));                                                                     \
    }                                                                                              \
    static void name##_teardown(void)                                                              \
    {                                                                                              \
        tu_close(&T);                                                                              \
    }                                                                                              \
    TestSuite(name, .init = name##_setup, .fini = name##_teardown)

/* tu_digest_of - the digest of the text s */
static inline struct digest
tu_digest_of(enum digest_algo algo, const char *s)
{
    struct digest d;
    digest_of(algo, s, strlen(s), &d);
    return d;
}

/* ---- threads, each with its own storage handle ---- */

/* one round of a worker: 0 when it completed, -1 stops that worker */
typedef int tu_round_fn(struct storage_handle *h, int worker, int round);

struct tu_worker {
    struct storage *st;
    tu_round_fn *round;
    int id;
    int rounds;
    int ok; /* rounds completed */
};

static inline void *
tu_worker_main(void *arg)
{
    struct tu_worker *w = arg;
    struct err e = {0};
    struct storage_handle *h = storage_handle_open(w->st, &e);
    if (!h)
        return NULL;
    while (w->ok < w->rounds && w->round(h, w->id, w->ok) == 0)
        w->ok++;
    storage_handle_close(h);
    return NULL;
}

enum { TU_MAX_WORKERS = 16 };

/* tu_run_workers - n threads on st at once, each with its own handle, each running
 * fn for rounds 0..rounds-1 until one fails; asserts that every round of every
 * thread completed */
static inline void
tu_run_workers(struct storage *st, int n, tu_round_fn *fn, int rounds)
{
    pthread_t th[TU_MAX_WORKERS];
    struct tu_worker w[TU_MAX_WORKERS];
    cr_assert(n > 0 && n <= TU_MAX_WORKERS);
    for (int i = 0; i < n; i++) {
        w[i] = (struct tu_worker){.st = st, .round = fn, .id = i, .rounds = rounds};
        cr_assert_eq(pthread_create(&th[i], NULL, tu_worker_main, &w[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(w[i].ok, rounds, "worker %d completed %d", i, w[i].ok);
    }
}

/* number of regular files below root/sub */
static int tu_count_cb_n __attribute__((unused));
static inline int
tu_count_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path;
    (void)sb;
    (void)ftw;
    if (flag == FTW_F)
        tu_count_cb_n++;
    return 0;
}
static inline int
tu_count_files(const char *root, const char *sub)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", root, sub);
    tu_count_cb_n = 0;
    nftw(p, tu_count_cb, 16, FTW_PHYS);
    return tu_count_cb_n;
}

static inline int
tu_blob_file_exists(const char *root, const struct digest *d)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/blobs/%s/%c%c/%s", root,
             d->algo == DIGEST_SHA512 ? "sha512" : "sha256", d->hex[0], d->hex[1], d->hex);
    return access(p, F_OK) == 0;
}

static inline struct digest
tu_digest(const char *s)
{
    struct digest d;
    struct err e = {0};
    cr_assert_eq(digest_parse(s, strlen(s), &d, &e), 0, "digest_parse(%s): %s", s, e.msg);
    return d;
}

static inline char *
tu_read_fd(int fd, size_t *n)
{
    struct stat sb;
    cr_assert_eq(fstat(fd, &sb), 0);
    char *buf = malloc((size_t)sb.st_size + 1);
    cr_assert_not_null(buf);
    ssize_t r = pread(fd, buf, (size_t)sb.st_size, 0);
    cr_assert_eq(r, sb.st_size);
    buf[r] = '\0';
    *n = (size_t)r;
    return buf;
}

#endif
