/* fsutil.c - recursive removal, mkdir -p, full writes. */
#include "tools/ocirun-lite/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/banned.h"

static int
rm_children(int fd, struct err *e)
{
    DIR *d = fdopendir(fd);
    struct dirent *de;
    int rc = 0;

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

int
fsutil_rm_rf_at(int dfd, const char *name, struct err *e)
{
    /* "." / ".." / "" would remove the directory itself or its parent */
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return err_set(e, ERR_IO, EINVAL, "refusing to remove \"%s\"", name);
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return err_sys(e, ERR_IO, errno, "cannot remove \"%s\"", name);
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return err_sys(e, ERR_IO, errno, "cannot open \"%s\"", name);
    }
    if (rm_children(fd, e) < 0)
        return -1;
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return err_sys(e, ERR_IO, errno, "cannot remove directory \"%s\"", name);
    return 0;
}

int
fsutil_mkdir_p(const char *path, struct err *e)
{
    char buf[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return err_set(e, ERR_IO, ENAMETOOLONG, "bad path \"%s\"", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return err_sys(e, ERR_IO, errno, "cannot create directory \"%s\"", buf);
        buf[i] = c;
    }
    return 0;
}

int
fsutil_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int
fsutil_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}
