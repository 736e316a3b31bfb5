/* blobstore.c - data files under the root: paths, the one write path, fsync,
 * rename into blobs/, fault injection, upload ids.
 *
 * Only two kinds of names are ever built here: a blob path from a parsed struct
 * digest (lower-case hex of the exact length) and an upload file name from a uuid
 * we generated or checked with uuid_valid. Nothing else from a request reaches a
 * path. All paths are relative to directory descriptors opened once in
 * storage_open (openat & co), so no path is longer than ~150 bytes. */
#include "storage/storage_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/banned.h"

void
storage_fault_inject(struct storage *st, unsigned ops, int err_no, int count)
{
    pthread_mutex_lock(&st->fault.mu);
    st->fault.ops = ops;
    st->fault.err_no = err_no;
    st->fault.count = count > 0 ? count : 0;
    __atomic_store_n(&st->fault.armed, st->fault.count > 0 && ops != 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&st->fault.mu);
}

int
fault_hit(struct storage *st, unsigned op)
{
    if (!__atomic_load_n(&st->fault.armed, __ATOMIC_ACQUIRE))
        return 0;
    int hit = 0;
    pthread_mutex_lock(&st->fault.mu);
    if (st->fault.count > 0 && (st->fault.ops & op)) {
        st->fault.count--;
        hit = 1;
        errno = st->fault.err_no ? st->fault.err_no : EIO;
        if (st->fault.count == 0)
            __atomic_store_n(&st->fault.armed, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&st->fault.mu);
    return hit;
}

static const char *
algo_dir(enum digest_algo a)
{
    return a == DIGEST_SHA512 ? "sha512" : "sha256";
}

void
blob_relpath(const struct digest *d, char *buf)
{
    snprintf(buf, BLOB_RELPATH_MAX, "%s/%c%c/%s", algo_dir(d->algo), d->hex[0], d->hex[1], d->hex);
}

void
blob_dirpath(const struct digest *d, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s/%c%c", algo_dir(d->algo), d->hex[0], d->hex[1]);
}

int
blobstore_write_all(struct storage *st, int fd, const void *data, size_t n, uint64_t off,
                    struct err *e)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w;
        if (fault_hit(st, FAULT_WRITE))
            w = -1;
        else
            w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return err_sys(e, ERR_IO, errno, "write blob data");
        }
        if (w == 0)
            return err_set(e, ERR_IO, 0, "write blob data: no progress");
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int
blobstore_fsync(struct storage *st, int fd, struct err *e)
{
    void (*hook)(void *) = __atomic_load_n(&st->fsync_hook, __ATOMIC_ACQUIRE);
    if (hook)
        hook(__atomic_load_n(&st->fsync_hook_arg, __ATOMIC_ACQUIRE));
    if (fault_hit(st, FAULT_FSYNC))
        return err_sys(e, ERR_IO, errno, "fsync blob data");
    if (!st->fsync)
        return 0;
    if (fsync(fd) < 0)
        return err_sys(e, ERR_IO, errno, "fsync blob data");
    return 0;
}

void
storage_fsync_hook(struct storage *st, void (*fn)(void *arg), void *arg)
{
    __atomic_store_n(&st->fsync_hook_arg, arg, __ATOMIC_RELEASE);
    __atomic_store_n(&st->fsync_hook, fn, __ATOMIC_RELEASE);
}

/* (A shared syncfs() for the file and directory barriers, like the WAL's group
 * fsync, was measured: no better than per-file fsyncs, which threads run
 * concurrently and the block layer merges, and it would write other files'
 * dirty data too. So each file and directory is fsync'd on its own.) */
int
blobstore_fsync_dir(struct storage *st, int dirfd, const char *rel, struct err *e)
{
    if (fault_hit(st, FAULT_FSYNC))
        return err_sys(e, ERR_IO, errno, "fsync directory '%s'", rel);
    __atomic_add_fetch(&st->dir_fsyncs, 1, __ATOMIC_RELAXED); /* also when fsync is off */
    if (!st->fsync)
        return 0;
    int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "open directory '%s'", rel);
    int rc = 0;
    if (fsync(fd) < 0)
        rc = err_sys(e, ERR_IO, errno, "fsync directory '%s'", rel);
    close(fd);
    return rc;
}

int
blobstore_exists(struct storage *st, const struct digest *d, uint64_t size, struct err *e)
{
    char rel[BLOB_RELPATH_MAX];
    blob_relpath(d, rel);
    struct stat sb;
    if (fstatat(st->blobsfd, rel, &sb, 0) < 0) {
        if (errno == ENOENT)
            return 0;
        return err_sys(e, ERR_IO, errno, "stat blob");
    }
    if (!S_ISREG(sb.st_mode))
        return err_set(e, ERR_IO, 0, "blob '%s' is not a regular file", rel);
    if (size != UINT64_MAX && (uint64_t)sb.st_size != size)
        return 0;
    return 1;
}

int
blobstore_install(struct storage *st, int fromdir, const char *from, const struct digest *d,
                  uint64_t size, struct err *e)
{
    char rel[BLOB_RELPATH_MAX], dir[16];
    blob_relpath(d, rel);
    blob_dirpath(d, dir, sizeof(dir));
    int ex = blobstore_exists(st, d, size, e);
    if (ex < 0)
        return -1;
    if (ex == 1) {
        /* deduplicated: the installed file is immutable and was verified when it
         * was installed; ours is identical and goes. Another thread may have
         * renamed it a moment ago and still be before its directory fsync, or
         * it may be a manifest file whose durability rests on a pending body
         * (storage.c "manifest files"): make file and entry durable before our
         * caller commits a row naming it. */
        unlinkat(fromdir, from, 0);
        if (st->fsync) {
            int fd = openat(st->blobsfd, rel, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return err_sys(e, ERR_IO, errno, "open blob '%s'", rel);
            int rc = blobstore_fsync(st, fd, e);
            close(fd);
            if (rc < 0)
                return -1;
        }
        return blobstore_fsync_dir(st, st->blobsfd, dir, e);
    }
    if (fault_hit(st, FAULT_RENAME) || renameat(fromdir, from, st->blobsfd, rel) < 0)
        return err_sys(e, ERR_IO, errno, "rename into blobs");
    return blobstore_fsync_dir(st, st->blobsfd, dir, e);
}

int
blobstore_put_buffer_mode(struct storage *st, const struct digest *d, const void *data, size_t n,
                          enum blob_put_mode mode, struct err *e)
{
    int sync = mode != BLOB_PUT_LAZY;
    if (mode != BLOB_PUT_REPLACE) {
        int ex = blobstore_exists(st, d, n, e);
        if (ex < 0)
            return -1;
        if (ex == 1) {
            /* already installed, maybe by a thread still before its directory
             * fsync (see blobstore_install) */
            if (!sync)
                return 0;
            char dir[16];
            blob_dirpath(d, dir, sizeof(dir));
            return blobstore_fsync_dir(st, st->blobsfd, dir, e);
        }
    }
    char tmp[UPLOAD_ID_LEN + 8];
    char id[UPLOAD_ID_LEN + 1];
    if (uuid_generate(id, e) < 0)
        return -1;
    /* temp files live in uploads/ as <uuid>.tmp: recovery removes whatever there
     * has no session row, so a crash leaves nothing behind for long */
    snprintf(tmp, sizeof(tmp), "%s.tmp", id);
    int fd = openat(st->uploadsfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "create temp file");
    int rc = -1;
    if (blobstore_write_all(st, fd, data, n, 0, e) < 0 || (sync && blobstore_fsync(st, fd, e) < 0))
        goto out;
    close(fd);
    fd = -1;
    if (mode == BLOB_PUT_DURABLE) {
        if (blobstore_install(st, st->uploadsfd, tmp, d, n, e) < 0)
            goto out;
    } else {
        /* LAZY: the caller keeps the body until the file is known durable;
         * REPLACE: what is there may be a crash's torn copy */
        char rel[BLOB_RELPATH_MAX], dir[16];
        blob_relpath(d, rel);
        blob_dirpath(d, dir, sizeof(dir));
        if (fault_hit(st, FAULT_RENAME) || renameat(st->uploadsfd, tmp, st->blobsfd, rel) < 0) {
            err_sys(e, ERR_IO, errno, "rename into blobs");
            goto out;
        }
        if (sync && blobstore_fsync_dir(st, st->blobsfd, dir, e) < 0)
            goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlinkat(st->uploadsfd, tmp, 0);
    return rc;
}

int
blobstore_put_buffer(struct storage *st, const struct digest *d, const void *data, size_t n,
                     struct err *e)
{
    return blobstore_put_buffer_mode(st, d, data, n, BLOB_PUT_DURABLE, e);
}

int
blobstore_hash_fd(int fd, enum digest_algo algo, struct digest *out, uint64_t *size,
                  struct hasher **keep, struct err *e)
{
    enum { CHUNK = 256 * 1024 };
    struct hasher *h = hasher_new(algo);
    char *buf = malloc(CHUNK);
    uint64_t off = 0;
    int rc = -1;
    if (!h || !buf) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t r = pread(fd, buf, CHUNK, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err_sys(e, ERR_IO, errno, "read upload");
            goto out;
        }
        if (r == 0)
            break;
        hasher_update(h, buf, (size_t)r);
        off += (uint64_t)r;
    }
    if (out)
        hasher_final(h, out);
    *size = off;
    if (keep) {
        *keep = h;
        h = NULL;
    }
    rc = 0;
out:
    free(buf);
    hasher_free(h);
    return rc;
}

int
uuid_generate(char out[UPLOAD_ID_LEN + 1], struct err *e)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return err_sys(e, ERR_IO, errno, "getrandom");
        }
        got += (size_t)r;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hexd[] = "0123456789abcdef";
    size_t j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hexd[b[i] >> 4];
        out[j++] = hexd[b[i] & 15];
    }
    out[j] = '\0';
    return 0;
}

int
uuid_valid(const char *s)
{
    if (!s)
        return 0;
    for (int i = 0; i < UPLOAD_ID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return s[UPLOAD_ID_LEN] == '\0';
}
