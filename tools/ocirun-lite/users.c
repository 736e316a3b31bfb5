/* users.c - resolve a container user the way docker and runc do: through the
 * image's own /etc/passwd and /etc/group, never the host's. */
#include "tools/ocirun-lite/runtime_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/banned.h"

/* Open <root>/<rel> resolving every component inside root (an image's
 * /etc/passwd may be a symlink; it must not lead to the host's). Returns a FILE
 * or NULL; *whiteout is set when the path is an overlay whiteout (0/0 char
 * device): the file was deleted by that layer, lower layers must not be used. */
static FILE *
open_in_root(const char *root, const char *rel, int *whiteout)
{
    *whiteout = 0;
    int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return NULL;
    struct stat st;
    if (fstatat(rfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode) &&
        st.st_rdev == makedev(0, 0)) {
        *whiteout = 1;
        close(rfd);
        return NULL;
    }
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    int fd = (int)syscall(SYS_openat2, rfd, rel, &how, sizeof(how));
    close(rfd);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f)
        close(fd);
    return f;
}

static FILE *
open_first(const char *const *roots, size_t nroots, const char *rel)
{
    for (size_t i = 0; i < nroots; i++) {
        int wh = 0;
        FILE *f = open_in_root(roots[i], rel, &wh);
        if (f || wh)
            return f;
    }
    return NULL;
}

static int
parse_u32(const char *s, uint32_t *out)
{
    if (!*s)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* split a line at ':' into at most n fields (in place); returns the count */
static size_t
split_fields(char *line, char **f, size_t n)
{
    size_t k = 0;
    char *p = line;
    line[strcspn(line, "\r\n")] = '\0';
    while (k < n) {
        f[k++] = p;
        char *c = strchr(p, ':');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    return k;
}

int
rt_users_resolve(const char *spec, const char *const *roots, size_t nroots, struct rt_user *u,
                 struct err *e)
{
    struct rt_user r;
    memset(&r, 0, sizeof(r));
    snprintf(r.home, sizeof(r.home), "/");
    char user[256] = "", group[256] = "";
    int have_group = 0;
    if (spec && *spec) {
        const char *c = strchr(spec, ':');
        if (c) {
            snprintf(user, sizeof(user), "%.*s", (int)(c - spec), spec);
            snprintf(group, sizeof(group), "%s", c + 1);
            have_group = group[0] != '\0';
        } else {
            snprintf(user, sizeof(user), "%s", spec);
        }
    }
    if (!user[0])
        snprintf(user, sizeof(user), "0");

    uint32_t num;
    int user_numeric = parse_u32(user, &num) == 0;
    if (user_numeric)
        r.uid = num;
    char uname[256] = "";
    int found = 0;
    char *line = NULL;
    size_t cap = 0;
    FILE *f = open_first(roots, nroots, "etc/passwd");
    if (f) {
        while (getline(&line, &cap, f) > 0) {
            char *fl[7];
            if (split_fields(line, fl, 7) < 7)
                continue;
            uint32_t pu, pg;
            if (parse_u32(fl[2], &pu) || parse_u32(fl[3], &pg))
                continue;
            if (user_numeric ? pu != num : strcmp(fl[0], user) != 0)
                continue;
            r.uid = pu;
            r.gid = pg;
            r.have_home = 1;
            snprintf(r.home, sizeof(r.home), "%s", fl[5][0] ? fl[5] : "/");
            snprintf(uname, sizeof(uname), "%s", fl[0]);
            found = 1;
            break;
        }
        fclose(f);
    }
    if (!found && !user_numeric) {
        free(line);
        return err_set(e, ERR_CONFIG, 0,
                       "unable to find user '%s': no matching entries in passwd file", user);
    }

    int group_numeric = have_group && parse_u32(group, &num) == 0;
    if (group_numeric)
        r.gid = num;
    int gfound = !have_group || group_numeric;
    f = open_first(roots, nroots, "etc/group");
    if (f) {
        while (getline(&line, &cap, f) > 0) {
            char *fl[4];
            if (split_fields(line, fl, 4) < 3)
                continue;
            uint32_t gg;
            if (parse_u32(fl[2], &gg))
                continue;
            if (have_group && !group_numeric && !gfound && strcmp(fl[0], group) == 0) {
                r.gid = gg;
                gfound = 1;
            }
            /* supplementary groups: every group listing the user's name */
            if (uname[0] && fl[3]) {
                char *save = NULL;
                for (char *m = strtok_r(fl[3], ",", &save); m; m = strtok_r(NULL, ",", &save)) {
                    if (strcmp(m, uname) != 0)
                        continue;
                    int dup = 0;
                    for (size_t i = 0; i < r.ngroups; i++)
                        dup |= r.groups[i] == gg;
                    if (!dup && r.ngroups < RT_MAX_GROUPS)
                        r.groups[r.ngroups++] = gg;
                }
            }
        }
        fclose(f);
    }
    free(line);
    if (!gfound)
        return err_set(e, ERR_CONFIG, 0,
                       "unable to find group '%s': no matching entries in group file", group);
    *u = r;
    return 0;
}
