/* bundle.c - `ocirun-lite bundle`: an OCI bundle (config.json + rootfs/) that
 * `runc run` runs unchanged, plus the small file helpers of the run side.
 *
 * The rootfs is a plain copy of the stacked layers, bottom layer first, each
 * layer applied the way overlayfs would show it: a 0/0 character device (the
 * overlay form of an OCI whiteout) deletes the path below it, a directory marked
 * opaque (trusted.overlay.opaque or user.overlay.opaque = "y") hides the
 * lower directory's entries. Owners, modes, times, xattrs (bar the overlay
 * ones) and hard links within a layer are kept. No mount is needed, so it works
 * without privileges for images the caller can read. */
#include "tools/ocirun-lite/runtime_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/banned.h"

/* ---- small file helpers ---------------------------------------------- */

int
rt_mkdir_p(const char *path, mode_t mode, struct err *e)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return err_set(e, ERR_IO, ENAMETOOLONG, "mkdir '%s': path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return err_sys(e, ERR_IO, errno, "mkdir '%s'", buf);
            *p = c;
            if (!c)
                break;
        }
    }
    return 0;
}

int
rt_write_file(const char *path, const char *data, size_t len, struct err *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "create '%s'", path);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int saved = w < 0 ? errno : EIO;
            close(fd);
            return err_sys(e, ERR_IO, saved, "write '%s'", path);
        }
        off += (size_t)w;
    }
    if (close(fd) < 0)
        return err_sys(e, ERR_IO, errno, "close '%s'", path);
    return 0;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int
rt_rm_rf(const char *path, struct err *e)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : err_sys(e, ERR_IO, errno, "stat '%s'", path);
    /* FTW_MOUNT: never descend into something still mounted there */
    if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
        return err_sys(e, ERR_IO, errno, "remove '%s'", path);
    return 0;
}

/* ---- layer copy -------------------------------------------------------- */

struct hardlink {
    dev_t dev;
    ino_t ino;
    char *path; /* relative to the destination root */
};

struct copier {
    int dst_root;
    struct hardlink *links;
    size_t nlinks, caplinks;
    struct err *e;
};

static int
is_overlay_xattr(const char *name)
{
    return strncmp(name, "trusted.overlay.", 16) == 0 || strncmp(name, "user.overlay.", 13) == 0;
}

static void
copy_xattrs(int sfd, int dfd)
{
    char names[4096];
    ssize_t n = flistxattr(sfd, names, sizeof(names));
    for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(names + off) + 1) {
        const char *nm = names + off;
        if (is_overlay_xattr(nm))
            continue;
        char val[4096];
        ssize_t vl = fgetxattr(sfd, nm, val, sizeof(val));
        if (vl >= 0)
            (void)fsetxattr(dfd, nm, val, (size_t)vl, 0);
    }
}

static int
is_opaque(int fd)
{
    char v[4];
    ssize_t n = fgetxattr(fd, "trusted.overlay.opaque", v, sizeof(v));
    if (n < 0)
        n = fgetxattr(fd, "user.overlay.opaque", v, sizeof(v));
    return n == 1 && v[0] == 'y';
}

/* remove name in dir dfd, whatever it is */
static int
remove_at(int dfd, const char *name, const char *rel, struct err *e)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : err_sys(e, ERR_IO, errno, "stat '%s'", rel);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dfd, name, 0) < 0)
            return err_sys(e, ERR_IO, errno, "unlink '%s'", rel);
        return 0;
    }
    char p[64];
    int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return err_sys(e, ERR_IO, errno, "open '%s'", rel);
    snprintf(p, sizeof(p), "/proc/self/fd/%d", sub);
    char real[PATH_MAX];
    ssize_t l = readlink(p, real, sizeof(real) - 1);
    close(sub);
    if (l < 0)
        return err_sys(e, ERR_IO, errno, "readlink '%s'", p);
    real[l] = '\0';
    return rt_rm_rf(real, e);
}

static int
clear_dir(int dfd, const char *rel, struct err *e)
{
    int d2 = dup(dfd);
    DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
    if (!d) {
        if (d2 >= 0)
            close(d2);
        return err_sys(e, ERR_IO, errno, "opendir '%s'", rel);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = remove_at(dfd, de->d_name, rel, e);
    }
    closedir(d);
    return rc;
}

/* Owner, mode and times are copied as far as the caller may set them: without
 * CAP_CHOWN the chown fails (EPERM) and the copy keeps the caller's owner, which
 * is what a rootless bundle needs. A function, not a (void) cast, because glibc
 * marks chown and friends warn_unused_result under _FORTIFY_SOURCE and gcc
 * ignores the cast. */
static void
best_effort(int rc)
{
    (void)rc;
}

static void
set_meta(int dfd, const char *name, const struct stat *st, int is_link)
{
    int fl = is_link ? AT_SYMLINK_NOFOLLOW : 0;
    best_effort(fchownat(dfd, name, st->st_uid, st->st_gid, fl));
    if (!is_link)
        best_effort(fchmodat(dfd, name, st->st_mode & 07777, 0));
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    (void)utimensat(dfd, name, ts, fl);
}

static int
copy_reg(int sdir, int ddir, const char *name, const struct stat *st, const char *rel,
         struct err *e)
{
    int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return err_sys(e, ERR_IO, errno, "open '%s'", rel);
    int out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        int saved = errno;
        close(in);
        return err_sys(e, ERR_IO, saved, "create '%s'", rel);
    }
    int rc = 0;
    off_t left = st->st_size;
    while (left > 0) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
            char buf[65536];
            n = read(in, buf, sizeof(buf));
            if (n > 0 && write(out, buf, (size_t)n) != n)
                n = -1;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = err_sys(e, ERR_IO, n < 0 ? errno : EIO, "copy '%s'", rel);
            break;
        }
        left -= n;
    }
    if (rc == 0) {
        copy_xattrs(in, out);
        /* chown before chmod: chown clears set-id bits */
        best_effort(fchown(out, st->st_uid, st->st_gid));
        (void)fchmod(out, st->st_mode & 07777);
        struct timespec ts[2] = {st->st_atim, st->st_mtim};
        (void)futimens(out, ts);
    }
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = err_sys(e, ERR_IO, errno, "close '%s'", rel);
    return rc;
}

static int copy_tree(struct copier *c, int sdir, int ddir, const char *rel);

static int
copy_entry(struct copier *c, int sdir, int ddir, const char *name, const char *rel)
{
    struct err *e = c->e;
    struct stat st, dst;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return err_sys(e, ERR_IO, errno, "stat '%s'", rel);
    int have = fstatat(ddir, name, &dst, AT_SYMLINK_NOFOLLOW) == 0;

    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0))
        return have ? remove_at(ddir, name, rel, e) : 0; /* whiteout */

    if (S_ISDIR(st.st_mode)) {
        int sfd = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0)
            return err_sys(e, ERR_IO, errno, "open '%s'", rel);
        int rc = -1, dfd = -1;
        if (have && !S_ISDIR(dst.st_mode)) {
            if (unlinkat(ddir, name, 0) < 0) {
                err_sys(e, ERR_IO, errno, "unlink '%s'", rel);
                goto dir_out;
            }
            have = 0;
        }
        if (!have && mkdirat(ddir, name, 0700) < 0) {
            err_sys(e, ERR_IO, errno, "mkdir '%s'", rel);
            goto dir_out;
        }
        dfd = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
            err_sys(e, ERR_IO, errno, "open '%s'", rel);
            goto dir_out;
        }
        if (have && is_opaque(sfd) && clear_dir(dfd, rel, e) < 0)
            goto dir_out;
        copy_xattrs(sfd, dfd);
        if (copy_tree(c, sfd, dfd, rel) < 0)
            goto dir_out;
        set_meta(ddir, name, &st, 0);
        rc = 0;
    dir_out:
        if (dfd >= 0)
            close(dfd);
        close(sfd);
        return rc;
    }

    if (have && remove_at(ddir, name, rel, e) < 0)
        return -1;
    if (st.st_nlink > 1 && !S_ISDIR(st.st_mode)) {
        for (size_t i = 0; i < c->nlinks; i++)
            if (c->links[i].dev == st.st_dev && c->links[i].ino == st.st_ino) {
                if (linkat(c->dst_root, c->links[i].path, ddir, name, 0) == 0)
                    return 0;
                break; /* the first copy was replaced since: copy again */
            }
    }
    int rc = 0;
    if (S_ISREG(st.st_mode)) {
        rc = copy_reg(sdir, ddir, name, &st, rel, e);
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t l = readlinkat(sdir, name, target, sizeof(target) - 1);
        if (l < 0)
            return err_sys(e, ERR_IO, errno, "readlink '%s'", rel);
        target[l] = '\0';
        if (symlinkat(target, ddir, name) < 0)
            return err_sys(e, ERR_IO, errno, "symlink '%s'", rel);
        set_meta(ddir, name, &st, 1);
    } else {
        if (mknodat(ddir, name, st.st_mode, st.st_rdev) < 0)
            return err_sys(e, ERR_IO, errno, "mknod '%s'", rel);
        set_meta(ddir, name, &st, 0);
    }
    if (rc == 0 && st.st_nlink > 1) {
        if (c->nlinks == c->caplinks) {
            size_t nc = c->caplinks ? 2 * c->caplinks : 64;
            struct hardlink *n = realloc(c->links, nc * sizeof(*n));
            if (!n)
                return err_set(e, ERR_NOMEM, ENOMEM, "copy: out of memory");
            c->links = n;
            c->caplinks = nc;
        }
        char *p = strdup(rel + 1); /* rel starts with '/' */
        if (!p)
            return err_set(e, ERR_NOMEM, ENOMEM, "copy: out of memory");
        c->links[c->nlinks++] = (struct hardlink){st.st_dev, st.st_ino, p};
    }
    return rc;
}

static int
copy_tree(struct copier *c, int sdir, int ddir, const char *rel)
{
    int d2 = dup(sdir);
    DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
    if (!d) {
        if (d2 >= 0)
            close(d2);
        return err_sys(c->e, ERR_IO, errno, "opendir '%s'", rel[0] ? rel : "/");
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name) >= (int)sizeof(sub)) {
            rc = err_set(c->e, ERR_IO, ENAMETOOLONG, "copy '%s': path too long", rel);
            break;
        }
        rc = copy_entry(c, sdir, ddir, de->d_name, sub);
    }
    closedir(d);
    return rc;
}

/* copy one layer (or a plain rootfs dir) over dst */
static int
apply_layer(const char *src, int dst_root, struct err *e)
{
    int sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0)
        return err_sys(e, ERR_IO, errno, "open layer '%s'", src);
    struct copier c = {.dst_root = dst_root, .e = e};
    int rc = copy_tree(&c, sfd, dst_root, "");
    struct stat st;
    if (rc == 0 && fstat(sfd, &st) == 0) {
        best_effort(fchown(dst_root, st.st_uid, st.st_gid));
        (void)fchmod(dst_root, st.st_mode & 07777);
    }
    for (size_t i = 0; i < c.nlinks; i++)
        free(c.links[i].path);
    free(c.links);
    close(sfd);
    return rc;
}

int
rt_bundle_write(const char *bundle_dir, const char *config_json, const struct rt_rootfs *rootfs,
                const struct rt_opts *o, struct err *e)
{
    char rpath[PATH_MAX], cpath[PATH_MAX];
    char *spec = NULL;
    int rc = -1, rfd = -1;
    if (!rootfs || (!rootfs->dir && rootfs->nlower == 0))
        return err_set(e, ERR_CONFIG, 0, "bundle: no rootfs given");
    if (snprintf(rpath, sizeof(rpath), "%s/rootfs", bundle_dir) >= (int)sizeof(rpath) ||
        snprintf(cpath, sizeof(cpath), "%s/config.json", bundle_dir) >= (int)sizeof(cpath))
        return err_set(e, ERR_CONFIG, ENAMETOOLONG, "bundle: path too long");
    if (rt_mkdir_p(bundle_dir, 0755, e) < 0)
        return -1;
    if (mkdir(rpath, 0755) < 0)
        return err_sys(e, ERR_IO, errno, "bundle: mkdir '%s'", rpath);
    rfd = open(rpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0) {
        err_sys(e, ERR_IO, errno, "bundle: open '%s'", rpath);
        goto out;
    }
    if (rootfs->dir) {
        if (apply_layer(rootfs->dir, rfd, e) < 0)
            goto out;
    } else {
        for (size_t i = rootfs->nlower; i-- > 0;)
            if (apply_layer(rootfs->lower[i], rfd, e) < 0)
                goto out;
    }
    const char *roots[1] = {rpath};
    spec = rt_spec_build(config_json, o, "rootfs", roots, 1, e);
    if (!spec)
        goto out;
    if (rt_write_file(cpath, spec, strlen(spec), e) < 0)
        goto out;
    rc = 0;
out:
    if (rfd >= 0)
        close(rfd);
    free(spec);
    return rc;
}
