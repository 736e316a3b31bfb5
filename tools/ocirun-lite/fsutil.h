/* fsutil.h - small file-system helpers for the pull side of ocirun-lite. */
#ifndef OCIRUN_FSUTIL_H
#define OCIRUN_FSUTIL_H

#include <stddef.h>

#include "common/err.h"

/* fsutil_rm_rf_at - remove name (relative to dirfd, or absolute) and, for a
 * directory, everything below it; never follows symlinks. A missing name is
 * not an error; "", "." and ".." are refused. Returns 0 or -1 with ERR_IO. */
int fsutil_rm_rf_at(int dirfd, const char *name, struct err *e);

/* fsutil_mkdir_p - create path and its parents (mode 0755 for new ones).
 * Returns 0 or -1 with ERR_IO. */
int fsutil_mkdir_p(const char *path, struct err *e);

/* fsutil_write_all - write n bytes to fd, retrying short writes and EINTR.
 * Returns 0 or -1 with errno set. */
int fsutil_write_all(int fd, const void *buf, size_t n);

/* fsutil_fsync_dir - fsync the directory at path. Returns 0 or -1 (errno). */
int fsutil_fsync_dir(const char *path);

#endif
