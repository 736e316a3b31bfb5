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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage.h"

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

struct tu_store {
    char root[64];
    struct storage *st;
    struct storage_handle *h;
};

static inline void
tu_open_at(struct tu_store *t, int fsync)
{
    struct storage_opts o = {
        .root = t->root, .fsync = fsync, .max_manifest = 0, .upload_expiry_sec = 0};
    struct err e = {0};
    t->st = storage_open(&o, &e);
    cr_assert_not_null(t->st, "storage_open: %s", e.msg);
    t->h = storage_handle_open(t->st, &e);
    cr_assert_not_null(t->h, "storage_handle_open: %s", e.msg);
}

static inline void
tu_open(struct tu_store *t, int fsync)
{
    snprintf(t->root, sizeof(t->root), "/tmp/ocireg-st-XXXXXX");
    cr_assert_not_null(mkdtemp(t->root));
    tu_open_at(t, fsync);
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
