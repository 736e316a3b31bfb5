/* layerfs.c - safe layer unpacking (libarchive + openat2), whiteouts, flattening.
 *
 * Unpack pipeline: the blob is read by a first libarchive reader in "raw"
 * format (it only decompresses); a second reader parses the tar from those
 * bytes through a callback that also feeds SHA-256, so the diff_id is checked
 * on exactly the stream that was applied. Every entry is created relative to an
 * O_PATH descriptor of its parent, which was resolved inside the layer root
 * (RESOLVE_IN_ROOT), and the final component is created with *at() calls that
 * never follow it. Directory metadata is applied at the end (deepest first), so
 * a read-only directory in the tar does not block its own children. */
#include "tools/ocirun-lite/layerfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tools/ocirun-lite/dynlib.h"
#include "tools/ocirun-lite/fsutil.h"

#include "common/banned.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"
#define OVL_OPAQUE_XATTR "trusted.overlay.opaque"

/* ---- path resolution inside a root --------------------------------------- */

static int openat2_missing; /* kernel without openat2: fall back to a strict walk */

static int
sys_openat2(int dirfd, const char *path, int flags, unsigned long long resolve)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned long long)flags;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* open directory `rel` (already normalised, relative, may be "") below rootfd,
 * never leaving the root. With openat2: symlinks are followed as if rootfd were
 * "/". Without it: no symlink may appear in rel at all. */
static int
open_in_root(int rootfd, const char *rel, int flags)
{
    if (!*rel)
        rel = ".";
    if (!openat2_missing) {
        int fd = sys_openat2(rootfd, rel, flags | O_CLOEXEC,
                             RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
        if (fd >= 0 || errno != ENOSYS)
            return fd;
        openat2_missing = 1;
    }
    /* strict fallback: component by component, O_NOFOLLOW */
    char buf[PATH_MAX];
    char *save = NULL, *tok;
    int cur = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0)
        return -1;
    snprintf(buf, sizeof(buf), "%s", rel);
    for (tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        int next = openat(cur, tok, O_PATH | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
        int saved = errno;
        close(cur);
        if (next < 0) {
            errno = saved;
            return -1;
        }
        cur = next;
    }
    if (flags & O_PATH)
        return cur;
    int fd = openat(cur, ".", flags | O_CLOEXEC);
    int saved = errno;
    close(cur);
    errno = saved;
    return fd;
}

/* Normalise a tar member name: drop leading '/', "./" and empty / "."
 * components; refuse "..". Returns 0 and the cleaned name in out ("" for the
 * root itself), -1 if the name is unusable. */
static int
clean_name(const char *in, char *out, size_t len)
{
    size_t n = 0;
    const char *p = in;

    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t cl = strcspn(p, "/");
        if (cl == 1 && p[0] == '.') {
            p += cl;
            continue;
        }
        if (cl == 2 && p[0] == '.' && p[1] == '.')
            return -1;
        if (n + cl + 2 > len)
            return -1;
        if (n)
            out[n++] = '/';
        memcpy(out + n, p, cl);
        n += cl;
        p += cl;
    }
    out[n] = '\0';
    return 0;
}

/* split "a/b/c" into parent "a/b" and base "c" (in place: returns base) */
static char *
split_parent(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash) {
        memmove(path + 1, path, strlen(path) + 1);
        path[0] = '\0';
        return path + 1;
    }
    *slash = '\0';
    return slash + 1;
}

/* open (O_PATH) the parent directory rel inside root, creating missing
 * directories (0755, owned by the caller) on the way. */
static int
open_parent(int rootfd, const char *rel)
{
    int fd = open_in_root(rootfd, rel, O_PATH | O_DIRECTORY);
    if (fd >= 0 || errno != ENOENT)
        return fd;

    char buf[PATH_MAX];
    size_t n = strlen(rel);
    if (n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, rel, n + 1);
    /* find the deepest existing prefix, then mkdir downwards */
    for (size_t i = 0; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        if (fd < 0) {
            if (errno != ENOENT)
                return -1;
            char *slash = strrchr(buf, '/');
            const char *base = slash ? slash + 1 : buf;
            int pfd;
            if (slash) {
                *slash = '\0';
                pfd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
                *slash = '/';
            } else {
                pfd = open_in_root(rootfd, "", O_PATH | O_DIRECTORY);
            }
            if (pfd < 0)
                return -1;
            if (mkdirat(pfd, base, 0755) < 0 && errno != EEXIST) {
                int saved = errno;
                close(pfd);
                errno = saved;
                return -1;
            }
            close(pfd);
        } else {
            close(fd);
        }
        buf[i] = c;
    }
    return open_in_root(rootfd, rel, O_PATH | O_DIRECTORY);
}

/* ---- unpack ------------------------------------------------------------------ */

struct dirmeta {
    char *path; /* relative to root */
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
};

struct unpacker {
    int rootfd;
    enum layerfs_mode mode;
    int is_root;
    struct dirmeta *dirs;
    size_t ndirs, capdirs;
    struct layerfs_stats st;
    mode_t umask_bits; /* the process umask, to know when fchmod is needed */
    /* parent directory of the previous entry: consecutive entries of one
     * directory skip the openat2 walk. Dropped whenever an entry removes
     * or replaces anything (which could replace that directory). */
    int pcache_fd;
    char pcache_path[PATH_MAX];
    /* the decompressing reader and the diff_id hash */
    struct archive *raw;
    EVP_MD_CTX *md;
    char buf[256 * 1024];
    int raw_eof;
};

static la_ssize_t
tar_read_cb(struct archive *a, void *ctx, const void **out)
{
    struct unpacker *u = ctx;
    (void)a;
    if (u->raw_eof)
        return 0;
    la_ssize_t n = archive_read_data(u->raw, u->buf, sizeof(u->buf));
    if (n < 0) {
        archive_set_error(a, EIO, "%s", archive_error_string(u->raw));
        return -1;
    }
    if (n == 0)
        u->raw_eof = 1;
    EVP_DigestUpdate(u->md, u->buf, (size_t)n);
    *out = u->buf;
    return n;
}

static int
remember_dir(struct unpacker *u, const char *path, struct archive_entry *ae)
{
    if (u->ndirs == u->capdirs) {
        size_t cap = u->capdirs ? u->capdirs * 2 : 64;
        struct dirmeta *nd = realloc(u->dirs, cap * sizeof(*nd));
        if (!nd)
            return -1;
        u->dirs = nd;
        u->capdirs = cap;
    }
    struct dirmeta *d = &u->dirs[u->ndirs];
    d->path = strdup(path);
    if (!d->path)
        return -1;
    d->mode = archive_entry_perm(ae) & 07777;
    d->uid = (uid_t)archive_entry_uid(ae);
    d->gid = (gid_t)archive_entry_gid(ae);
    d->mtime.tv_sec = archive_entry_mtime(ae);
    d->mtime.tv_nsec = archive_entry_mtime_nsec(ae);
    u->ndirs++;
    return 0;
}

static int
xattr_allowed(const char *name)
{
    /* trusted.overlay.* would let a layer forge whiteouts/redirects */
    return strncmp(name, "trusted.overlay.", 16) != 0;
}

/* apply owner, mode, xattrs and times to an open fd (regular file / dir) */
static void
apply_meta_fd(struct unpacker *u, int fd, struct archive_entry *ae)
{
    const char *name;
    const void *val;
    size_t sz;

    mode_t perm = archive_entry_perm(ae) & 07777;
    /* always as root: a setgid parent directory may have given the file
     * another group than the tar says */
    if (u->is_root)
        (void)!fchown(fd, (uid_t)archive_entry_uid(ae), (gid_t)archive_entry_gid(ae));
    if (archive_entry_xattr_count(ae) > 0) {
        archive_entry_xattr_reset(ae);
        while (archive_entry_xattr_next(ae, &name, &val, &sz) == ARCHIVE_OK) {
            if (xattr_allowed(name))
                (void)!fsetxattr(fd, name, val, sz, 0);
        }
    }
    /* after chown (it clears set-id bits); not needed when the file was
     * created with exactly these bits */
    if ((perm & 07000) || (perm & u->umask_bits))
        (void)!fchmod(fd, perm);
    struct timespec ts[2] = {{archive_entry_atime(ae), archive_entry_atime_nsec(ae)},
                             {archive_entry_mtime(ae), archive_entry_mtime_nsec(ae)}};
    if (!archive_entry_atime_is_set(ae))
        ts[0] = ts[1];
    (void)!futimens(fd, ts);
}

/* remove whatever exists at pfd/base (a dir recursively); ENOENT is fine */
static int
clear_entry(int pfd, const char *base, struct err *e)
{
    return fsutil_rm_rf_at(pfd, base, e);
}

static int
write_file_data(struct unpacker *u, struct archive *a, int fd, struct err *e, const char *name,
                int64_t *end)
{
    const void *buf;
    size_t len;
    la_int64_t off;
    int r;

    for (;;) {
        r = archive_read_data_block(a, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return err_set(e, ERR_MANIFEST_INVALID, 0, "layer entry \"%s\": %s", name,
                           archive_error_string(a));
        const char *p = buf;
        while (len > 0) {
            ssize_t w = pwrite(fd, p, len, off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return err_sys(e, ERR_IO, errno, "cannot write \"%s\"", name);
            }
            p += w;
            off += w;
            len -= (size_t)w;
            u->st.bytes += (uint64_t)w;
        }
        if (off > *end)
            *end = off;
    }
    return 0;
}

static void
pcache_drop(struct unpacker *u)
{
    if (u->pcache_fd >= 0)
        close(u->pcache_fd);
    u->pcache_fd = -1;
    u->pcache_path[0] = '\0';
}

/* the O_PATH fd of directory `parent` in the layer (borrowed: owned by the cache) */
static int
get_parent(struct unpacker *u, const char *parent)
{
    if (u->pcache_fd >= 0 && strcmp(u->pcache_path, parent) == 0)
        return u->pcache_fd;
    pcache_drop(u);
    int fd = open_parent(u->rootfd, parent);
    if (fd >= 0) {
        u->pcache_fd = fd;
        snprintf(u->pcache_path, sizeof(u->pcache_path), "%s", parent);
    }
    return fd;
}

static int
unpack_entry(struct unpacker *u, struct archive *a, struct archive_entry *ae, struct err *e)
{
    char path[PATH_MAX], parent[PATH_MAX];
    const char *raw = archive_entry_pathname(ae);
    const char *hl = archive_entry_hardlink(ae);
    mode_t type = archive_entry_filetype(ae);
    char *base;
    int pfd = -1, fd = -1, rc = -1, own_pfd = 0;
    struct stat st;

    if (!raw || clean_name(raw, path, sizeof(path)) < 0)
        return err_set(e, ERR_MANIFEST_INVALID, 0,
                       "layer entry \"%s\" escapes the layer root; refusing the layer",
                       raw ? raw : "(null)");
    if (!path[0]) {
        /* the root itself ("./"): only its metadata */
        if (type == AE_IFDIR && remember_dir(u, "", ae) < 0)
            return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        return 0;
    }
    memcpy(parent, path, strlen(path) + 1);
    base = split_parent(parent);
    /* base lives in parent's buffer after split; keep a stable copy */
    char basebuf[NAME_MAX + 1];
    if (strlen(base) > NAME_MAX)
        return err_set(e, ERR_MANIFEST_INVALID, 0, "layer entry \"%s\": name too long", raw);
    snprintf(basebuf, sizeof(basebuf), "%s", base);
    base = basebuf;

    pfd = get_parent(u, parent);
    if (pfd < 0) {
        err_sys(e, ERR_MANIFEST_INVALID, errno, "layer entry \"%s\": cannot open its parent", raw);
        goto out;
    }

    /* whiteouts */
    if (strncmp(base, WH_PREFIX, 4) == 0 && type == AE_IFREG && !hl) {
        if (strcmp(base, WH_OPAQUE) == 0) {
            if (u->mode == LAYERFS_OVERLAY) {
                fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0 || fsetxattr(fd, OVL_OPAQUE_XATTR, "y", 1, 0) < 0) {
                    err_sys(e, ERR_IO, errno, "cannot mark \"%s\" opaque", parent);
                    goto out;
                }
                rc = 0;
                u->st.entries++;
                goto out;
            }
        } else if (strncmp(base, ".wh..wh.", 8) == 0) {
            rc = 0; /* other aufs metadata (.wh..wh.plnk, ...): not part of the image */
            goto out;
        } else if (!base[4] || strcmp(base + 4, ".") == 0 || strcmp(base + 4, "..") == 0) {
            err_set(e, ERR_MANIFEST_INVALID, 0, "layer entry \"%s\": bad whiteout", raw);
            goto out;
        } else if (u->mode == LAYERFS_OVERLAY) {
            const char *victim = base + 4;
            pcache_drop(u); /* pfd stays valid: we still hold it below */
            pfd = open_parent(u->rootfd, parent);
            if (pfd < 0) {
                err_sys(e, ERR_IO, errno, "layer entry \"%s\": cannot open its parent", raw);
                goto out;
            }
            own_pfd = 1;
            if (clear_entry(pfd, victim, e) < 0)
                goto out;
            if (mknodat(pfd, victim, S_IFCHR | 0, makedev(0, 0)) < 0) {
                err_sys(e, ERR_IO, errno, "cannot create the whiteout for \"%s/%s\"", parent,
                        victim);
                goto out;
            }
            rc = 0;
            u->st.entries++;
            goto out;
        }
        /* LAYERFS_OCI: stored as the plain empty file below */
    }

    /* an existing entry is replaced unless both are directories */
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        !(type == AE_IFDIR && !hl && S_ISDIR(st.st_mode))) {
        /* the removed entry may be the cached directory or one of its parents */
        if (pfd == u->pcache_fd) {
            u->pcache_fd = -1;
            u->pcache_path[0] = '\0';
            own_pfd = 1;
        }
        if (clear_entry(pfd, base, e) < 0)
            goto out;
    }

    if (hl) {
        char tpath[PATH_MAX], tparent[PATH_MAX];
        if (clean_name(hl, tpath, sizeof(tpath)) < 0 || !tpath[0]) {
            err_set(e, ERR_MANIFEST_INVALID, 0,
                    "layer entry \"%s\": hard link target \"%s\" escapes the layer root; "
                    "refusing the layer",
                    raw, hl);
            goto out;
        }
        memcpy(tparent, tpath, strlen(tpath) + 1);
        char *tbase = split_parent(tparent);
        int tfd = open_in_root(u->rootfd, tparent, O_PATH | O_DIRECTORY);
        if (tfd < 0) {
            err_sys(e, ERR_MANIFEST_INVALID, errno,
                    "layer entry \"%s\": hard link target \"%s\" not found", raw, hl);
            goto out;
        }
        /* flags 0: a symlink target is linked itself, never followed */
        int lr = linkat(tfd, tbase, pfd, base, 0);
        int saved = errno;
        close(tfd);
        if (lr < 0) {
            err_sys(e, ERR_MANIFEST_INVALID, saved, "layer entry \"%s\": cannot link to \"%s\"",
                    raw, hl);
            goto out;
        }
        u->st.entries++;
        rc = 0;
        goto out;
    }

    switch (type) {
    case AE_IFDIR:
        if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST) {
            err_sys(e, ERR_IO, errno, "cannot create directory \"%s\"", path);
            goto out;
        }
        if (remember_dir(u, path, ae) < 0) {
            err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
            goto out;
        }
        break;
    case AE_IFREG: {
        int64_t end = 0;
        fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    archive_entry_perm(ae) & 0777);
        if (fd < 0) {
            err_sys(e, ERR_IO, errno, "cannot create \"%s\"", path);
            goto out;
        }
        if (write_file_data(u, a, fd, e, path, &end) < 0)
            goto out;
        /* a sparse file may end in a hole */
        if (archive_entry_size_is_set(ae) && archive_entry_size(ae) > end &&
            ftruncate(fd, archive_entry_size(ae)) < 0) {
            err_sys(e, ERR_IO, errno, "cannot size \"%s\"", path);
            goto out;
        }
        apply_meta_fd(u, fd, ae);
        break;
    }
    case AE_IFLNK: {
        const char *target = archive_entry_symlink(ae);
        if (!target || symlinkat(target, pfd, base) < 0) {
            err_sys(e, ERR_IO, target ? errno : EINVAL, "cannot create symlink \"%s\"", path);
            goto out;
        }
        if (u->is_root)
            (void)!fchownat(pfd, base, (uid_t)archive_entry_uid(ae), (gid_t)archive_entry_gid(ae),
                            AT_SYMLINK_NOFOLLOW);
        struct timespec ts[2] = {{archive_entry_mtime(ae), archive_entry_mtime_nsec(ae)},
                                 {archive_entry_mtime(ae), archive_entry_mtime_nsec(ae)}};
        (void)!utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
        break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
        dev_t dev = type == AE_IFIFO
                        ? 0
                        : makedev(archive_entry_rdevmajor(ae), archive_entry_rdevminor(ae));
        if (mknodat(pfd, base, type | 0600, dev) < 0) {
            if (errno == EPERM && !u->is_root) {
                u->st.skipped++;
                rc = 0;
                goto out;
            }
            err_sys(e, ERR_IO, errno, "cannot create device \"%s\"", path);
            goto out;
        }
        fd = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            char proc[64];
            /* an O_PATH fd cannot be fchmod'ed: go through /proc (no opening of
             * the device itself) */
            snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
            if (u->is_root)
                (void)!fchownat(pfd, base, (uid_t)archive_entry_uid(ae),
                                (gid_t)archive_entry_gid(ae), AT_SYMLINK_NOFOLLOW);
            (void)!chmod(proc, archive_entry_perm(ae) & 07777);
        }
        break;
    }
    default:
        u->st.skipped++; /* sockets and unknown types are not part of a rootfs */
        rc = 0;
        goto out;
    }
    u->st.entries++;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (own_pfd && pfd >= 0)
        close(pfd);
    return rc;
}

/* the umask without changing it (umask(2) would race with other threads) */
static mode_t
current_umask(void)
{
    char line[128];
    unsigned int m = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0777; /* unknown: always fchmod */
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Umask: %o", &m) == 1)
            break;
    fclose(f);
    return (mode_t)m;
}

static int
dirmeta_depth_cmp(const void *a, const void *b)
{
    const struct dirmeta *x = a, *y = b;
    size_t dx = 0, dy = 0;
    for (const char *p = x->path; *p; p++)
        dx += *p == '/';
    for (const char *p = y->path; *p; p++)
        dy += *p == '/';
    dx += x->path[0] != '\0';
    dy += y->path[0] != '\0';
    return dx < dy ? 1 : dx > dy ? -1 : 0; /* deepest first */
}

static void
apply_dir_meta(struct unpacker *u)
{
    if (u->ndirs > 1)
        qsort(u->dirs, u->ndirs, sizeof(*u->dirs), dirmeta_depth_cmp);
    for (size_t i = 0; i < u->ndirs; i++) {
        struct dirmeta *d = &u->dirs[i];
        int fd = open_in_root(u->rootfd, d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd < 0)
            continue; /* replaced by a later entry */
        if (u->is_root)
            (void)!fchown(fd, d->uid, d->gid);
        (void)!fchmod(fd, d->mode);
        struct timespec ts[2] = {d->mtime, d->mtime};
        (void)!futimens(fd, ts);
        close(fd);
    }
}

int
layerfs_unpack(const char *blob_path, const char *diff_id, const char *dest, enum layerfs_mode mode,
               struct layerfs_stats *stats, struct err *e)
{
    struct unpacker *u;
    struct archive *tar = NULL;
    struct archive_entry *ae;
    int rc = -1, r;

    if (dynlib_archive(e) < 0)
        return -1;
    u = calloc(1, sizeof(*u));
    if (!u)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    u->rootfd = -1;
    u->mode = mode;
    u->is_root = geteuid() == 0;
    u->pcache_fd = -1;
    u->umask_bits = current_umask();
    if (mkdir(dest, 0755) < 0) {
        err_sys(e, ERR_IO, errno, "cannot create \"%s\"", dest);
        goto out;
    }
    u->rootfd = open(dest, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (u->rootfd < 0) {
        err_sys(e, ERR_IO, errno, "cannot open \"%s\"", dest);
        goto out;
    }
    if (dynlib_crypto(e) < 0)
        goto out;
    u->md = EVP_MD_CTX_new();
    if (!u->md || EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
        err_set(e, ERR_INTERNAL, 0, "cannot initialise sha256");
        goto out;
    }
    u->raw = archive_read_new();
    tar = archive_read_new();
    if (!u->raw || !tar) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    archive_read_support_filter_all(u->raw);
    archive_read_support_format_raw(u->raw);
    archive_read_support_format_tar(tar);
    if (archive_read_open_filename(u->raw, blob_path, 1 << 20) != ARCHIVE_OK ||
        archive_read_next_header(u->raw, &ae) != ARCHIVE_OK) {
        err_set(e, ERR_MANIFEST_INVALID, 0, "layer %s: %s", blob_path,
                archive_error_string(u->raw));
        goto out;
    }
    if (archive_read_open(tar, u, NULL, tar_read_cb, NULL) != ARCHIVE_OK) {
        err_set(e, ERR_MANIFEST_INVALID, 0, "layer %s: %s", blob_path, archive_error_string(tar));
        goto out;
    }
    while ((r = archive_read_next_header(tar, &ae)) != ARCHIVE_EOF) {
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            err_set(e, ERR_MANIFEST_INVALID, 0, "layer %s is not a valid tar: %s", blob_path,
                    archive_error_string(tar));
            goto out;
        }
        if (unpack_entry(u, tar, ae, e) < 0)
            goto out;
    }
    /* hash the rest of the stream too (tar end blocks / record padding) */
    while (!u->raw_eof) {
        const void *dummy;
        if (tar_read_cb(tar, u, &dummy) < 0) {
            err_set(e, ERR_MANIFEST_INVALID, 0, "layer %s: %s", blob_path,
                    archive_error_string(u->raw));
            goto out;
        }
    }
    if (diff_id) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        char got[80] = "sha256:";
        static const char hx[] = "0123456789abcdef";
        EVP_DigestFinal_ex(u->md, md, &mdlen);
        for (unsigned int i = 0; i < mdlen; i++) {
            got[7 + 2 * i] = hx[md[i] >> 4];
            got[8 + 2 * i] = hx[md[i] & 15];
        }
        got[7 + 2 * mdlen] = '\0';
        if (strcmp(got, diff_id) != 0) {
            err_set(e, ERR_DIGEST_INVALID, 0,
                    "layer %s: uncompressed content hashes to %s, the image config says %s",
                    blob_path, got, diff_id);
            goto out;
        }
    }
    apply_dir_meta(u);
    if (stats)
        *stats = u->st;
    rc = 0;
out:
    if (tar)
        archive_read_free(tar);
    if (u->raw)
        archive_read_free(u->raw);
    if (u->md) /* set only once libcrypto is loaded */
        EVP_MD_CTX_free(u->md);
    pcache_drop(u);
    for (size_t i = 0; i < u->ndirs; i++)
        free(u->dirs[i].path);
    free(u->dirs);
    if (u->rootfd >= 0)
        close(u->rootfd);
    free(u);
    return rc;
}

/* ---- flatten ----------------------------------------------------------------- */

struct linkmap {
    dev_t dev;
    ino_t ino;
    char *dst; /* path relative to dest root */
};

struct flattener {
    int dstroot;
    int is_root;
    struct linkmap *links;
    size_t nlinks, caplinks;
    char buf[1 << 16];
};

static int
is_whiteout_dev(const struct stat *st)
{
    return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

static int
is_opaque_dir(int fd)
{
    char v[4];
    ssize_t n = fgetxattr(fd, OVL_OPAQUE_XATTR, v, sizeof(v));
    return n == 1 && v[0] == 'y';
}

static void
copy_xattrs(int sfd, int dfd)
{
    char names[4096], val[4096];
    ssize_t n = flistxattr(sfd, names, sizeof(names));
    for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(names + off) + 1) {
        const char *nm = names + off;
        if (!xattr_allowed(nm))
            continue;
        ssize_t vl = fgetxattr(sfd, nm, val, sizeof(val));
        if (vl >= 0)
            (void)!fsetxattr(dfd, nm, val, (size_t)vl, 0);
    }
}

static void
copy_meta_fd(struct flattener *f, int sfd, int dfd, const struct stat *st)
{
    if (f->is_root)
        (void)!fchown(dfd, st->st_uid, st->st_gid);
    copy_xattrs(sfd, dfd);
    (void)!fchmod(dfd, st->st_mode & 07777);
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    (void)!futimens(dfd, ts);
}

static int
copy_data(struct flattener *f, int sfd, int dfd, off_t size, struct err *e)
{
    off_t left = size;
    while (left > 0) {
        ssize_t n = copy_file_range(sfd, NULL, dfd, NULL, (size_t)left, 0);
        if (n > 0) {
            left -= n;
            continue;
        }
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
            return err_sys(e, ERR_IO, errno, "cannot copy file data");
        /* different file systems on old kernels: plain read/write */
        for (;;) {
            ssize_t r = read(sfd, f->buf, sizeof(f->buf));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return err_sys(e, ERR_IO, errno, "cannot read file data");
            if (r == 0)
                return 0;
            if (fsutil_write_all(dfd, f->buf, (size_t)r) < 0)
                return err_sys(e, ERR_IO, errno, "cannot write file data");
        }
    }
    return 0;
}

static int flatten_dir(struct flattener *f, int sdir, int ddir, const char *rel, struct err *e);

static int
clear_dir_children(int dfd, struct err *e)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *de;
    int rc = 0;
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "cannot open directory");
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return err_sys(e, ERR_IO, errno, "cannot list directory");
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fsutil_rm_rf_at(dirfd(d), de->d_name, e) < 0) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    return rc;
}

static int
flatten_entry(struct flattener *f, int sdir, int ddir, const char *name, const char *rel,
              struct err *e)
{
    struct stat st, dst;
    char path[PATH_MAX];
    int sfd = -1, dfd = -1, rc = -1;

    snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "", name);
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return err_sys(e, ERR_IO, errno, "cannot stat layer entry \"%s\"", path);

    /* whiteouts: OCI file form and overlay device form. A whiteout names an
     * entry of this very directory: ".wh..", ".wh..." would name the
     * directory itself or its parent and are ignored */
    if (strncmp(name, WH_PREFIX, 4) == 0) {
        const char *victim = name + 4;
        if (strncmp(name, ".wh..wh.", 8) == 0 || !*victim || strcmp(victim, ".") == 0 ||
            strcmp(victim, "..") == 0)
            return 0;
        return fsutil_rm_rf_at(ddir, victim, e);
    }
    if (is_whiteout_dev(&st))
        return fsutil_rm_rf_at(ddir, name, e);

    int have = fstatat(ddir, name, &dst, AT_SYMLINK_NOFOLLOW) == 0;
    if (have && !(S_ISDIR(st.st_mode) && S_ISDIR(dst.st_mode))) {
        if (fsutil_rm_rf_at(ddir, name, e) < 0)
            return -1;
        have = 0;
    }

    if (S_ISDIR(st.st_mode)) {
        if (!have && mkdirat(ddir, name, 0700) < 0)
            return err_sys(e, ERR_IO, errno, "cannot create \"%s\"", path);
        sfd = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        dfd = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0 || dfd < 0) {
            err_sys(e, ERR_IO, errno, "cannot open \"%s\"", path);
            goto out;
        }
        if (flatten_dir(f, sfd, dfd, path, e) < 0)
            goto out;
        copy_meta_fd(f, sfd, dfd, &st);
        rc = 0;
        goto out;
    }

    if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        for (size_t i = 0; i < f->nlinks; i++) {
            if (f->links[i].dev == st.st_dev && f->links[i].ino == st.st_ino) {
                if (linkat(f->dstroot, f->links[i].dst, ddir, name, 0) == 0)
                    return 0;
                break; /* the first copy was replaced meanwhile: copy again */
            }
        }
    }

    switch (st.st_mode & S_IFMT) {
    case S_IFREG:
        sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        dfd = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (sfd < 0 || dfd < 0) {
            err_sys(e, ERR_IO, errno, "cannot copy \"%s\"", path);
            goto out;
        }
        if (copy_data(f, sfd, dfd, st.st_size, e) < 0)
            goto out;
        copy_meta_fd(f, sfd, dfd, &st);
        if (st.st_nlink > 1) {
            if (f->nlinks == f->caplinks) {
                size_t cap = f->caplinks ? f->caplinks * 2 : 32;
                struct linkmap *nl = realloc(f->links, cap * sizeof(*nl));
                if (!nl) {
                    err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
                    goto out;
                }
                f->links = nl;
                f->caplinks = cap;
            }
            f->links[f->nlinks].dev = st.st_dev;
            f->links[f->nlinks].ino = st.st_ino;
            f->links[f->nlinks].dst = strdup(path);
            if (!f->links[f->nlinks].dst) {
                err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
                goto out;
            }
            f->nlinks++;
        }
        break;
    case S_IFLNK: {
        char target[PATH_MAX];
        ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);
        if (n < 0) {
            err_sys(e, ERR_IO, errno, "cannot read symlink \"%s\"", path);
            goto out;
        }
        target[n] = '\0';
        if (symlinkat(target, ddir, name) < 0) {
            err_sys(e, ERR_IO, errno, "cannot create symlink \"%s\"", path);
            goto out;
        }
        if (f->is_root)
            (void)!fchownat(ddir, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        (void)!utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW);
        break;
    }
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
        if (mknodat(ddir, name, st.st_mode & (S_IFMT | 07777), st.st_rdev) < 0) {
            if (errno == EPERM && !f->is_root)
                break;
            err_sys(e, ERR_IO, errno, "cannot create \"%s\"", path);
            goto out;
        }
        if (f->is_root)
            (void)!fchownat(ddir, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
        break;
    default:
        break;
    }
    rc = 0;
out:
    if (sfd >= 0)
        close(sfd);
    if (dfd >= 0)
        close(dfd);
    return rc;
}

static int
flatten_dir(struct flattener *f, int sdir, int ddir, const char *rel, struct err *e)
{
    int lfd = openat(sdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *de;
    int rc = 0, opaque;

    if (lfd < 0)
        return err_sys(e, ERR_IO, errno, "cannot open layer directory \"%s\"", rel);
    /* opaque: drop what the lower layers put here, before this layer's own
     * entries are copied (so they survive whatever their order) */
    opaque = is_opaque_dir(lfd) || faccessat(sdir, WH_OPAQUE, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    if (opaque && clear_dir_children(ddir, e) < 0) {
        close(lfd);
        return -1;
    }
    d = fdopendir(lfd);
    if (!d) {
        close(lfd);
        return err_sys(e, ERR_IO, errno, "cannot list layer directory \"%s\"", rel);
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (flatten_entry(f, sdir, ddir, de->d_name, rel, e) < 0) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    return rc;
}

int
layerfs_flatten(const char *const *layers, size_t n, const char *dest, struct err *e)
{
    struct flattener *f = calloc(1, sizeof(*f));
    int rc = -1;

    if (!f)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    f->is_root = geteuid() == 0;
    f->dstroot = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->dstroot < 0) {
        err_sys(e, ERR_IO, errno, "cannot open \"%s\"", dest);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        int sfd = open(layers[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (sfd < 0) {
            err_sys(e, ERR_IO, errno, "cannot open layer \"%s\"", layers[i]);
            goto out;
        }
        int r = flatten_dir(f, sfd, f->dstroot, "", e);
        if (r == 0 && fstat(sfd, &st) == 0)
            copy_meta_fd(f, sfd, f->dstroot, &st);
        close(sfd);
        /* hard links never span layers */
        for (size_t j = 0; j < f->nlinks; j++)
            free(f->links[j].dst);
        f->nlinks = 0;
        if (r < 0) {
            char msg[sizeof(e->msg)];
            if (e) {
                snprintf(msg, sizeof(msg), "%s", e->msg);
                err_set(e, e->code, e->sys_errno, "flattening layer %s: %s", layers[i], msg);
            }
            goto out;
        }
    }
    rc = 0;
out:
    for (size_t j = 0; j < f->nlinks; j++)
        free(f->links[j].dst);
    free(f->links);
    if (f->dstroot >= 0)
        close(f->dstroot);
    free(f);
    return rc;
}

/* ---- capability probes ------------------------------------------------------ */

enum layerfs_mode
layerfs_default_mode(const char *dir)
{
    static int cached; /* 0 unknown, else the mode */
    char path[PATH_MAX];
    int ok = 0;

    if (cached)
        return (enum layerfs_mode)cached;
    if (geteuid() == 0) {
        snprintf(path, sizeof(path), "%s/.wh-probe-%d", dir, (int)getpid());
        rmdir(path);
        if (mkdir(path, 0700) == 0) {
            char dev[PATH_MAX + 8];
            snprintf(dev, sizeof(dev), "%s/w", path);
            ok = mknod(dev, S_IFCHR, makedev(0, 0)) == 0 &&
                 setxattr(path, OVL_OPAQUE_XATTR, "y", 1, 0) == 0;
            unlink(dev);
            rmdir(path);
        }
    }
    cached = ok ? LAYERFS_OVERLAY : LAYERFS_OCI;
    return (enum layerfs_mode)cached;
}

/* child of layerfs_overlay_works: runs in its own mount namespace */
static int
overlay_probe_child(const char *base)
{
    char l1[PATH_MAX], l2[PATH_MAX], up[PATH_MAX], wk[PATH_MAX], mnt[PATH_MAX];
    char p[PATH_MAX + 32], opts[PATH_MAX * 4 + 64];
    struct stat st;
    int fd;

    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return 1;
    snprintf(l1, sizeof(l1), "%s/l1", base);
    snprintf(l2, sizeof(l2), "%s/l2", base);
    snprintf(up, sizeof(up), "%s/up", base);
    snprintf(wk, sizeof(wk), "%s/wk", base);
    snprintf(mnt, sizeof(mnt), "%s/mnt", base);
    /* lower (bottom) l1: gone, dir/old; upper layer l2: whiteout for gone,
     * dir opaque with dir/new */
    if (mkdir(l1, 0755) || mkdir(l2, 0755) || mkdir(up, 0755) || mkdir(wk, 0755) ||
        mkdir(mnt, 0755))
        return 1;
    snprintf(p, sizeof(p), "%s/gone", l1);
    if ((fd = open(p, O_CREAT | O_WRONLY, 0644)) < 0)
        return 1;
    close(fd);
    snprintf(p, sizeof(p), "%s/dir", l1);
    if (mkdir(p, 0755))
        return 1;
    snprintf(p, sizeof(p), "%s/dir/old", l1);
    if ((fd = open(p, O_CREAT | O_WRONLY, 0644)) < 0)
        return 1;
    close(fd);
    snprintf(p, sizeof(p), "%s/gone", l2);
    if (mknod(p, S_IFCHR, makedev(0, 0)))
        return 1;
    snprintf(p, sizeof(p), "%s/dir", l2);
    if (mkdir(p, 0755) || setxattr(p, OVL_OPAQUE_XATTR, "y", 1, 0))
        return 1;
    snprintf(p, sizeof(p), "%s/dir/new", l2);
    if ((fd = open(p, O_CREAT | O_WRONLY, 0644)) < 0)
        return 1;
    close(fd);
    /* volatile: no syncfs of the store's filesystem when the probe mount goes
     * away (that sync took ~100 ms on a busy disk); older kernels lack it */
    snprintf(opts, sizeof(opts), "lowerdir=%s:%s,upperdir=%s,workdir=%s,volatile", l2, l1, up, wk);
    if (mount("overlay", mnt, "overlay", 0, opts) < 0) {
        opts[strlen(opts) - strlen(",volatile")] = '\0';
        if (errno != EINVAL || mount("overlay", mnt, "overlay", 0, opts) < 0)
            return 1;
    }
    int ok = 1;
    snprintf(p, sizeof(p), "%s/gone", mnt);
    ok &= stat(p, &st) < 0 && errno == ENOENT;
    snprintf(p, sizeof(p), "%s/dir/old", mnt);
    ok &= stat(p, &st) < 0 && errno == ENOENT;
    snprintf(p, sizeof(p), "%s/dir/new", mnt);
    ok &= stat(p, &st) == 0;
    snprintf(p, sizeof(p), "%s/dir/written", mnt);
    if ((fd = open(p, O_CREAT | O_WRONLY, 0644)) < 0)
        ok = 0;
    else
        close(fd);
    umount2(mnt, MNT_DETACH);
    return ok ? 0 : 1;
}

int
layerfs_overlay_works(const char *dir)
{
    static int cached = -1;
    char base[PATH_MAX];
    pid_t pid;
    int status = 0;

    if (cached >= 0)
        return cached;
    cached = 0;
    if (geteuid() != 0 || layerfs_default_mode(dir) != LAYERFS_OVERLAY)
        return cached;
    snprintf(base, sizeof(base), "%s/ovl-probe-XXXXXX", dir);
    if (!mkdtemp(base))
        return cached;
    pid = fork();
    if (pid == 0)
        _exit(overlay_probe_child(base));
    if (pid > 0) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        cached = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    fsutil_rm_rf_at(AT_FDCWD, base, NULL);
    return cached;
}

/* The cache line: "ocirun-probe v1 RELEASE DEV mode=M overlay=O". The probes
 * cost a fork, a mount and ~20 file operations (tens of ms on a slow disk),
 * and their answer only changes with the kernel or the filesystem under the
 * store, so both are part of the key. */
static int
probe_key(const char *tmpdir, char *key, size_t len)
{
    struct utsname u;
    struct stat st;

    if (uname(&u) < 0 || stat(tmpdir, &st) < 0)
        return -1;
    snprintf(key, len, "ocirun-probe v1 %s %llu", u.release, (unsigned long long)st.st_dev);
    return 0;
}

static int
probe_read(const char *file, const char *key, enum layerfs_mode *mode, int *overlay)
{
    char line[512];
    int m, o, ok = 0;
    size_t kl = strlen(key);
    FILE *f = fopen(file, "re");

    if (!f)
        return 0;
    if (fgets(line, sizeof(line), f) && strncmp(line, key, kl) == 0 && line[kl] == ' ' &&
        sscanf(line + kl, " mode=%d overlay=%d", &m, &o) == 2 &&
        (m == LAYERFS_OVERLAY || m == LAYERFS_OCI) && (o == 0 || o == 1)) {
        *mode = (enum layerfs_mode)m;
        *overlay = o;
        ok = 1;
    }
    fclose(f);
    return ok;
}

static void
probe_write(const char *file, const char *key, enum layerfs_mode mode, int overlay)
{
    char tmp[PATH_MAX + 32];
    FILE *f;

    /* write + rename: a concurrent reader sees the old file or the new one */
    snprintf(tmp, sizeof(tmp), "%s.%d", file, (int)getpid());
    f = fopen(tmp, "we");
    if (!f)
        return;
    fprintf(f, "%s mode=%d overlay=%d\n", key, (int)mode, overlay);
    if (fclose(f) != 0 || rename(tmp, file) < 0)
        unlink(tmp);
}

/* one prober at a time: the pull's unpack threads call this concurrently, and
 * layerfs_overlay_works' once-per-process answer is not thread-safe */
static pthread_mutex_t probe_mu = PTHREAD_MUTEX_INITIALIZER;

void
layerfs_probe_cached(const char *root, enum layerfs_mode *mode, int *overlay)
{
    char tmpdir[PATH_MAX], file[PATH_MAX], key[400];
    const char *re = getenv("OCIRUN_REPROBE");
    int have_key;

    snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", root);
    snprintf(file, sizeof(file), "%s/probe", root);
    /* only root's answers are cached: the probes are no-ops for other users */
    pthread_mutex_lock(&probe_mu);
    have_key = geteuid() == 0 && probe_key(tmpdir, key, sizeof(key)) == 0;
    if (!have_key || (re && *re && strcmp(re, "0") != 0) ||
        !probe_read(file, key, mode, overlay)) {
        *mode = layerfs_default_mode(tmpdir);
        *overlay = layerfs_overlay_works(tmpdir);
        if (have_key)
            probe_write(file, key, *mode, *overlay);
    }
    pthread_mutex_unlock(&probe_mu);
}
