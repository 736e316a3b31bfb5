/* runtime.c - run a container ourselves, from the config.json that spec.c
 * wrote (the same document `ocirun-lite bundle` hands to runc).
 *
 * Sequence (P = ocirun, C = the cloned child that becomes the container's PID 1):
 *
 *   P  build + write config.json, parse it back, create cgroups (cgroup.c),
 *      install handlers for the forwarded signals and SIGCHLD that write the
 *      signal number into a self-pipe (process-wide: whichever thread takes
 *      the signal, it reaches the loop), and unblock them in this thread
 *   P  with a user ns: creates the overlay as a detached mount (fsmount), so
 *      that it belongs to the initial ns and honours trusted.overlay.* marks
 *   P  clone(NEWPID|NEWNS|NEWUTS|NEWIPC[|NEWNET][|NEWUSER]) - a fork-like raw
 *      clone: the child must stay away from malloc and glibc's set*id
 *      wrappers (threads of a multi-threaded caller are not copied)
 *   C  with a user ns: waits on the sync pipe (else only just before execve)
 *   P  writes uid_map/gid_map (user ns), puts C in the cgroups, releases C
 *   C  makes / rprivate; --rm without user ns: covers the container dir with a
 *      tmpfs and makes rootfs/upper/work there; mounts the rootfs (overlay of the layers, the
 *      parent's detached overlay, or a bind of the rootfs dir) at <cdir>/rootfs, mounts the spec's
 * mounts inside it (every target resolved with openat2(RESOLVE_IN_ROOT), so an image symlink cannot
 * redirect a mount to the host), fills /dev, opens the pty (-t) and passes its master to P over a
 * socketpair, sets the hostname, brings lo up, pivot_root, masks/read-only paths, drops the
 *      bounding set, setgroups/setgid/setuid, sets capabilities, chdir,
 *      no_new_privs, (no user ns: waits for P's "go"), resets signals, execve
 *   C  any failure before execve: message down the CLOEXEC error pipe, exit;
 *      a successful execve closes the pipe, so P reads EOF
 *   P  relays signals (and the pty) until C exits; exit code = status,
 *      128+signal, 137 for an OOM kill; then removes the cgroups and, with
 *      --rm (or when the start failed), the container dir. Mounts live in C's
 *      mount namespace and vanish with it.
 *
 * The caller's signal mask and dispositions are restored on return. One
 * rt_run at a time per process (the self-pipe is process-wide). */
#include "tools/ocirun-lite/runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/log.h"
#include "tools/ocirun-lite/runtime_internal.h"

#include "common/banned.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

struct rt_mnt {
    const char *dest, *type, *src;
    unsigned long flags;  /* MS_* for the mount itself */
    unsigned long pflags; /* propagation (MS_PRIVATE, ...) */
    int bind;
    char data[512];
};

/* the parsed config.json: everything the child needs, prepared by the parent
 * so the child allocates as little as possible */
struct rt_exec {
    json_t *spec;
    const char **args, **env;
    const char *cwd, *hostname, *rootfs;
    uid_t uid;
    gid_t gid;
    gid_t groups[RT_MAX_GROUPS];
    size_t ngroups;
    int terminal, nnp, root_ro;
    uint64_t caps[5]; /* bounding, effective, permitted, inheritable, ambient */
    struct rt_mnt *mounts;
    size_t nmounts;
    const char **masked, **ropaths;
    size_t nmasked, nropaths;
    int nsflags;
    int userns_root; /* user ns with a full (identity) map: setgroups allowed */
    char uidmap[256], gidmap[256];
    struct rt_limits lim;
};

enum { CAPS_BOUNDING, CAPS_EFFECTIVE, CAPS_PERMITTED, CAPS_INHERITABLE, CAPS_AMBIENT };

static const int fwd_signals[] = {SIGTERM, SIGINT,  SIGHUP,   SIGQUIT,
                                  SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD};
#define NFWD (sizeof(fwd_signals) / sizeof(fwd_signals[0]))

/* write end of the self-pipe while rt_run runs */
static volatile int sig_pipe_w = -1;

static void
on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(sig_pipe_w, &b, 1) < 0) {
        /* pipe full: the loop is already awake */
    }
    errno = saved;
}

/* ---- config.json -> struct rt_exec ------------------------------------- */

static const char **
str_list(json_t *a, size_t *n)
{
    size_t cnt = json_array_size(a), k = 0;
    const char **v = calloc(cnt + 1, sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < cnt; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s)
            v[k++] = s;
    }
    if (n)
        *n = k;
    return v;
}

static int
caps_mask(json_t *a, uint64_t *mask, struct err *e)
{
    *mask = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        cap_value_t c;
        const char *s = json_string_value(v);
        if (!s || cap_from_name(s, &c) < 0 || c < 0 || c > 63)
            return err_set(e, ERR_CONFIG, 0, "config.json: unknown capability '%s'", s ? s : "?");
        *mask |= 1ULL << c;
    }
    return 0;
}

static void
parse_mount_options(json_t *opts, struct rt_mnt *m)
{
    static const struct {
        const char *name;
        int clear;
        unsigned long flag;
    } tab[] = {
        {"ro", 0, MS_RDONLY},
        {"rw", 1, MS_RDONLY},
        {"nosuid", 0, MS_NOSUID},
        {"suid", 1, MS_NOSUID},
        {"nodev", 0, MS_NODEV},
        {"dev", 1, MS_NODEV},
        {"noexec", 0, MS_NOEXEC},
        {"exec", 1, MS_NOEXEC},
        {"sync", 0, MS_SYNCHRONOUS},
        {"async", 1, MS_SYNCHRONOUS},
        {"noatime", 0, MS_NOATIME},
        {"atime", 1, MS_NOATIME},
        {"nodiratime", 0, MS_NODIRATIME},
        {"diratime", 1, MS_NODIRATIME},
        {"relatime", 0, MS_RELATIME},
        {"norelatime", 1, MS_RELATIME},
        {"strictatime", 0, MS_STRICTATIME},
        {"nostrictatime", 1, MS_STRICTATIME},
        {"remount", 0, MS_REMOUNT},
        {"bind", 0, MS_BIND},
        {"rbind", 0, MS_BIND | MS_REC},
    };
    static const struct {
        const char *name;
        unsigned long flag;
    } prop[] = {
        {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
        {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
        {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
        {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
    };
    size_t i;
    json_t *v;
    json_array_foreach(opts, i, v)
    {
        const char *o = json_string_value(v);
        if (!o)
            continue;
        int hit = 0;
        for (size_t k = 0; k < sizeof(tab) / sizeof(tab[0]) && !hit; k++)
            if (strcmp(o, tab[k].name) == 0) {
                if (tab[k].clear)
                    m->flags &= ~tab[k].flag;
                else
                    m->flags |= tab[k].flag;
                hit = 1;
            }
        for (size_t k = 0; k < sizeof(prop) / sizeof(prop[0]) && !hit; k++)
            if (strcmp(o, prop[k].name) == 0) {
                m->pflags |= prop[k].flag;
                hit = 1;
            }
        if (!hit) {
            size_t n = strlen(m->data);
            snprintf(m->data + n, sizeof(m->data) - n, "%s%s", n ? "," : "", o);
        }
    }
    m->bind = (m->flags & MS_BIND) != 0 || (m->type && strcmp(m->type, "bind") == 0);
}

static void
map_text(json_t *maps, char *out, size_t len)
{
    size_t i, n = 0;
    json_t *v;
    out[0] = '\0';
    json_array_foreach(maps, i, v)
    {
        n += (size_t)snprintf(out + n, len > n ? len - n : 0, "%lld %lld %lld\n",
                              (long long)json_integer_value(json_object_get(v, "containerID")),
                              (long long)json_integer_value(json_object_get(v, "hostID")),
                              (long long)json_integer_value(json_object_get(v, "size")));
    }
}

static void
exec_release(struct rt_exec *x)
{
    free(x->args);
    free(x->env);
    free(x->mounts);
    free(x->masked);
    free(x->ropaths);
    json_decref(x->spec);
    memset(x, 0, sizeof(*x));
}

static int
exec_parse(const char *text, struct rt_exec *x, struct err *e)
{
    memset(x, 0, sizeof(*x));
    json_error_t je;
    x->spec = json_loads(text, 0, &je);
    if (!x->spec)
        return err_set(e, ERR_CONFIG, 0, "config.json: %s", je.text);
    json_t *proc = json_object_get(x->spec, "process");
    json_t *lx = json_object_get(x->spec, "linux");
    x->args = str_list(json_object_get(proc, "args"), NULL);
    x->env = str_list(json_object_get(proc, "env"), NULL);
    x->cwd = json_string_value(json_object_get(proc, "cwd"));
    x->hostname = json_string_value(json_object_get(x->spec, "hostname"));
    x->rootfs = json_string_value(json_object_get(json_object_get(x->spec, "root"), "path"));
    x->root_ro = json_is_true(json_object_get(json_object_get(x->spec, "root"), "readonly"));
    x->terminal = json_is_true(json_object_get(proc, "terminal"));
    x->nnp = json_is_true(json_object_get(proc, "noNewPrivileges"));
    json_t *user = json_object_get(proc, "user");
    x->uid = (uid_t)json_integer_value(json_object_get(user, "uid"));
    x->gid = (gid_t)json_integer_value(json_object_get(user, "gid"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(user, "additionalGids"), i, v)
    {
        if (x->ngroups < RT_MAX_GROUPS)
            x->groups[x->ngroups++] = (gid_t)json_integer_value(v);
    }
    if (!x->args || !x->env || !x->args[0] || !x->cwd || !x->rootfs)
        return err_set(e, ERR_CONFIG, 0, "config.json: process.args, cwd or root.path missing");
    json_t *caps = json_object_get(proc, "capabilities");
    static const char *const capsets[] = {"bounding", "effective", "permitted", "inheritable",
                                          "ambient"};
    for (int k = 0; k < 5; k++)
        if (caps_mask(json_object_get(caps, capsets[k]), &x->caps[k], e) < 0)
            return -1;

    json_t *mounts = json_object_get(x->spec, "mounts");
    x->mounts = calloc(json_array_size(mounts) + 1, sizeof(*x->mounts));
    if (!x->mounts)
        return err_set(e, ERR_NOMEM, ENOMEM, "config.json: out of memory");
    json_array_foreach(mounts, i, v)
    {
        struct rt_mnt *m = &x->mounts[x->nmounts];
        m->dest = json_string_value(json_object_get(v, "destination"));
        m->type = json_string_value(json_object_get(v, "type"));
        m->src = json_string_value(json_object_get(v, "source"));
        if (!m->dest || m->dest[0] != '/')
            return err_set(e, ERR_CONFIG, 0, "config.json: mount destination must be absolute");
        parse_mount_options(json_object_get(v, "options"), m);
        if (!m->src)
            m->src = m->bind ? "" : (m->type ? m->type : "none");
        x->nmounts++;
    }
    x->masked = str_list(json_object_get(lx, "maskedPaths"), &x->nmasked);
    x->ropaths = str_list(json_object_get(lx, "readonlyPaths"), &x->nropaths);
    if (!x->masked || !x->ropaths)
        return err_set(e, ERR_NOMEM, ENOMEM, "config.json: out of memory");

    x->nsflags = 0;
    json_array_foreach(json_object_get(lx, "namespaces"), i, v)
    {
        const char *t = json_string_value(json_object_get(v, "type"));
        if (json_object_get(v, "path"))
            return err_set(e, ERR_UNSUPPORTED, 0,
                           "config.json: joining a namespace by path is not supported");
        if (!t)
            continue;
        if (strcmp(t, "pid") == 0)
            x->nsflags |= CLONE_NEWPID;
        else if (strcmp(t, "mount") == 0)
            x->nsflags |= CLONE_NEWNS;
        else if (strcmp(t, "uts") == 0)
            x->nsflags |= CLONE_NEWUTS;
        else if (strcmp(t, "ipc") == 0)
            x->nsflags |= CLONE_NEWIPC;
        else if (strcmp(t, "network") == 0)
            x->nsflags |= CLONE_NEWNET;
        else if (strcmp(t, "user") == 0)
            x->nsflags |= CLONE_NEWUSER;
        else if (strcmp(t, "cgroup") == 0)
            x->nsflags |= CLONE_NEWCGROUP;
        else
            return err_set(e, ERR_UNSUPPORTED, 0, "config.json: namespace '%s' not supported", t);
    }
    if (!(x->nsflags & CLONE_NEWNS))
        return err_set(e, ERR_UNSUPPORTED, 0, "config.json: a mount namespace is required");
    if (x->nsflags & CLONE_NEWUSER) {
        map_text(json_object_get(lx, "uidMappings"), x->uidmap, sizeof(x->uidmap));
        map_text(json_object_get(lx, "gidMappings"), x->gidmap, sizeof(x->gidmap));
        if (!x->uidmap[0] || !x->gidmap[0])
            return err_set(e, ERR_CONFIG, 0, "config.json: user namespace without id mappings");
        x->userns_root = geteuid() == 0;
    }
    json_t *res = json_object_get(lx, "resources");
    json_t *mem = json_object_get(res, "memory");
    json_t *cpu = json_object_get(res, "cpu");
    x->lim.memory = json_integer_value(json_object_get(mem, "limit"));
    x->lim.memory_swap = json_integer_value(json_object_get(mem, "swap"));
    x->lim.cpu_quota = json_integer_value(json_object_get(cpu, "quota"));
    x->lim.cpu_period = (uint64_t)json_integer_value(json_object_get(cpu, "period"));
    x->lim.pids = json_integer_value(json_object_get(json_object_get(res, "pids"), "limit"));
    /* any device rule means "the default allow-list": we do not run arbitrary
     * rules, and docker/runc always start from deny-all */
    x->lim.devices = json_array_size(json_object_get(res, "devices")) > 0;
    return 0;
}

/* ---- the child ---------------------------------------------------------- */

struct child_ctx {
    struct rt_exec *x;
    int sync_fd;           /* read end: one byte = go */
    int err_fd;            /* write end, CLOEXEC */
    int sock_fd;           /* -t: where the pty master goes, else -1 */
    const char *lowerdata; /* overlay mount data, or NULL */
    int tree_fd;           /* overlay prepared by the parent (fsmount), or -1 */
    const char *bind_dir;  /* plain rootfs dir, or NULL */
    const char *scratch;   /* --rm: container dir to cover with a tmpfs holding
                            * rootfs, upper and work; or NULL */
};

static __attribute__((noreturn, format(printf, 3, 4))) void
child_fail(int fd, int errnum, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;
    if (errnum) {
        char eb[128];
        const char *s = strerror_r(errnum, eb, sizeof(eb));
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", s);
        if ((size_t)n >= sizeof(msg))
            n = sizeof(msg) - 1;
    }
    if (write(fd, msg, (size_t)n) < 0) {
        /* nothing left to report to */
    }
    _exit(1);
}

static int
open_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    while (*path == '/')
        path++;
    if (!*path)
        path = ".";
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

/* mkdir -p inside the rootfs (or create an empty file as the last component
 * when file != 0), every step resolved inside the root */
static int
mkpath_in_root(int rootfd, const char *path, int file)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    size_t len = strlen(buf);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        int last = i == len;
        int fd = open_in_root(rootfd, buf, O_PATH);
        if (fd >= 0) {
            close(fd);
        } else if (errno == ENOENT) {
            char *slash = strrchr(buf, '/');
            *slash = '\0';
            int pfd = open_in_root(rootfd, buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
            *slash = '/';
            if (pfd < 0)
                return -1;
            int rc;
            if (last && file) {
                int f = openat(pfd, slash + 1, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
                rc = f < 0 ? -1 : 0;
                if (f >= 0)
                    close(f);
            } else {
                rc = mkdirat(pfd, slash + 1, 0755);
            }
            int saved = errno;
            close(pfd);
            if (rc < 0 && saved != EEXIST) {
                errno = saved;
                return -1;
            }
        } else {
            return -1;
        }
        if (!last)
            buf[i] = '/';
    }
    return 0;
}

static unsigned long
locked_flags(const char *path)
{
    /* a remount inside a user ns must keep the flags the mount already has */
    struct statvfs sv;
    unsigned long f = 0;
    if (statvfs(path, &sv) < 0)
        return 0;
    if (sv.f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* mount_setattr(2) (Linux 5.12); <linux/mount.h> clashes with glibc 2.36's
 * <sys/mount.h>, so the few names needed are spelled out here */
struct rt_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define RT_MOUNT_ATTR_RDONLY 0x1
#define RT_MOUNT_ATTR_NOSUID 0x2
#define RT_MOUNT_ATTR_NODEV 0x4
#define RT_MOUNT_ATTR_NOEXEC 0x8
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

/* the mount now at dest (not the directory under it, which an fd opened
 * before the mount still names) as a /proc/self/fd path in buf; returns the fd */
static int
reopen_target(struct child_ctx *c, int rootfd, const char *dest, char *buf, size_t len)
{
    int fd = open_in_root(rootfd, dest, O_PATH);
    if (fd < 0)
        child_fail(c->err_fd, errno, "mount '%s': reopen target", dest);
    snprintf(buf, len, "/proc/self/fd/%d", fd);
    return fd;
}

static void
do_mount(struct child_ctx *c, int rootfd, const struct rt_mnt *m)
{
    int efd = c->err_fd;
    int is_file = 0;
    if (m->bind) {
        struct stat st;
        if (stat(m->src, &st) < 0)
            child_fail(efd, errno, "mount '%s': source '%s'", m->dest, m->src);
        is_file = !S_ISDIR(st.st_mode);
    }
    if (mkpath_in_root(rootfd, m->dest, is_file) < 0)
        child_fail(efd, errno, "mount '%s': create target", m->dest);
    int fd = open_in_root(rootfd, m->dest, O_PATH);
    if (fd < 0)
        child_fail(efd, errno, "mount '%s': open target", m->dest);
    char target[64], mnt[64];
    int mfd = -1;
    snprintf(target, sizeof(target), "/proc/self/fd/%d", fd);
    unsigned long fl = m->flags & ~(MS_BIND | MS_REC | MS_REMOUNT);
    if (m->bind) {
        if (mount(m->src, target, NULL, MS_BIND | (m->flags & MS_REC), NULL) < 0)
            child_fail(efd, errno, "bind mount '%s' on '%s'", m->src, m->dest);
        if (fl) {
            mfd = reopen_target(c, rootfd, m->dest, mnt, sizeof(mnt));
            if (mount(NULL, mnt, NULL, MS_BIND | MS_REMOUNT | fl | locked_flags(mnt), NULL) < 0)
                child_fail(efd, errno, "remount '%s'", m->dest);
        }
    } else if (mount(m->src, target, m->type, fl, m->data[0] ? m->data : NULL) < 0) {
        int saved = errno;
        /* sysfs of a network ns we do not own (user ns + host net): bind the
         * host's /sys instead, as runc does. It must be recursive (a user ns
         * may not bind a tree whose submounts are locked), so the whole tree
         * is then made read-only, nosuid, nodev, noexec: the host's cgroup
         * mounts below /sys must not be writable from the container. */
        if (!(m->type && strcmp(m->type, "sysfs") == 0 && (saved == EPERM || saved == EACCES)))
            child_fail(efd, saved, "mount %s on '%s'", m->type ? m->type : "?", m->dest);
        if (mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) < 0)
            child_fail(efd, errno, "bind mount /sys on '%s'", m->dest);
        mfd = reopen_target(c, rootfd, m->dest, mnt, sizeof(mnt));
        struct rt_mount_attr attr = {.attr_set = RT_MOUNT_ATTR_RDONLY | RT_MOUNT_ATTR_NOSUID |
                                                 RT_MOUNT_ATTR_NODEV | RT_MOUNT_ATTR_NOEXEC};
        if (syscall(SYS_mount_setattr, mfd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) <
            0)
            child_fail(efd, errno, "make /sys read-only");
    }
    if (m->pflags) {
        if (mfd < 0)
            mfd = reopen_target(c, rootfd, m->dest, mnt, sizeof(mnt));
        if (mount(NULL, mnt, NULL, m->pflags, NULL) < 0)
            child_fail(efd, errno, "set propagation of '%s'", m->dest);
    }
    if (mfd >= 0)
        close(mfd);
    close(fd);
}

/* the standard devices of an OCI container (runtime-spec "Default Devices") */
static void
make_devices(struct child_ctx *c, int rootfd)
{
    static const struct {
        const char *name;
        unsigned maj, min;
    } devs[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    static const struct {
        const char *name, *target;
    } links[] = {{"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"},
                 {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
                 {"ptmx", "pts/ptmx"},          {"core", "/proc/kcore"}};
    /* runc links /dev/core only when the host has /proc/kcore; do the same so
     * that a bundle under runc and our own run show the same /dev */
    size_t nlinks = sizeof(links) / sizeof(links[0]);
    if (access("/proc/kcore", F_OK) != 0)
        nlinks--;
    int dfd = open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
    if (dfd < 0)
        child_fail(c->err_fd, errno, "open /dev");
    int userns = (c->x->nsflags & CLONE_NEWUSER) != 0;
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
        if (!userns) {
            if (mknodat(dfd, devs[i].name, S_IFCHR | 0666, makedev(devs[i].maj, devs[i].min)) < 0)
                child_fail(c->err_fd, errno, "mknod /dev/%s", devs[i].name);
            /* the umask may have trimmed the mode */
            if (fchmodat(dfd, devs[i].name, 0666, 0) < 0)
                child_fail(c->err_fd, errno, "chmod /dev/%s", devs[i].name);
            continue;
        }
        /* no mknod in a user ns: bind the host's node over an empty file */
        int f = openat(dfd, devs[i].name, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (f < 0)
            child_fail(c->err_fd, errno, "create /dev/%s", devs[i].name);
        char target[64], src[64];
        snprintf(target, sizeof(target), "/proc/self/fd/%d", f);
        snprintf(src, sizeof(src), "/dev/%s", devs[i].name);
        if (mount(src, target, NULL, MS_BIND, NULL) < 0)
            child_fail(c->err_fd, errno, "bind mount %s", src);
        close(f);
    }
    for (size_t i = 0; i < nlinks; i++)
        if (symlinkat(links[i].target, dfd, links[i].name) < 0 && errno != EEXIST)
            child_fail(c->err_fd, errno, "symlink /dev/%s", links[i].name);
    close(dfd);
}

/* -t: a pty of the container's own devpts; the master goes to the parent */
static int
open_pty(struct child_ctx *c, int rootfd)
{
    int m = open_in_root(rootfd, "/dev/pts/ptmx", O_RDWR | O_NOCTTY);
    if (m < 0)
        child_fail(c->err_fd, errno, "open /dev/pts/ptmx");
    int unlock = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0)
        child_fail(c->err_fd, errno, "unlock pty");
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0)
        child_fail(c->err_fd, errno, "open pty peer");
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    char byte = 'm';
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &m, sizeof(int));
    if (sendmsg(c->sock_fd, &msg, 0) < 0)
        child_fail(c->err_fd, errno, "send pty master");
    close(m);
    close(c->sock_fd);
    return s;
}

static void
loopback_up(int efd)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        child_fail(efd, errno, "socket for lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        child_fail(efd, errno, "get lo flags");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        child_fail(efd, errno, "bring lo up");
    close(s);
}

static void
mask_paths(struct child_ctx *c)
{
    struct rt_exec *x = c->x;
    for (size_t i = 0; i < x->nmasked; i++) {
        struct stat st;
        const char *p = x->masked[i];
        if (lstat(p, &st) < 0)
            continue; /* absent on this kernel: nothing to hide */
        int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL)
                                     : mount("/dev/null", p, NULL, MS_BIND, NULL);
        if (rc < 0)
            child_fail(c->err_fd, errno, "mask '%s'", p);
    }
    for (size_t i = 0; i < x->nropaths; i++) {
        const char *p = x->ropaths[i];
        if (access(p, F_OK) < 0)
            continue;
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0 ||
            mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | locked_flags(p),
                  NULL) < 0)
            child_fail(c->err_fd, errno, "read-only '%s'", p);
    }
}

/* capset(2) directly: libcap's cap_init/cap_set_proc allocate, and the child
 * of a raw clone() in a multi-threaded caller must not touch malloc (another
 * thread may have held its lock at the moment of the clone: deadlock) */
static void
set_caps(struct child_ctx *c)
{
    const uint64_t *caps = c->x->caps;
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    for (int w = 0; w < 2; w++) {
        data[w].effective = (uint32_t)(caps[CAPS_EFFECTIVE] >> (32 * w));
        data[w].permitted = (uint32_t)(caps[CAPS_PERMITTED] >> (32 * w));
        data[w].inheritable = (uint32_t)(caps[CAPS_INHERITABLE] >> (32 * w));
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        child_fail(c->err_fd, errno, "set capabilities");
    for (int v = 0; v < 64; v++)
        if (caps[CAPS_AMBIENT] & (1ULL << v))
            if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, v, 0, 0) < 0)
                child_fail(c->err_fd, errno, "raise ambient capability %d", v);
}

static const char *
env_get(const char *const *env, const char *key)
{
    size_t kl = strlen(key);
    for (; env && *env; env++)
        if (strncmp(*env, key, kl) == 0 && (*env)[kl] == '=')
            return *env + kl + 1;
    return NULL;
}

/* execve with the container's PATH (execvp would use ours) */
static void
exec_process(struct child_ctx *c)
{
    struct rt_exec *x = c->x;
    const char *file = x->args[0];
    char *const *argv = (char *const *)x->args;
    char *const *envp = (char *const *)x->env;
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        child_fail(c->err_fd, errno, "exec '%s'", file);
    }
    const char *path = env_get(x->env, "PATH");
    if (!path)
        path = RT_DEFAULT_PATH;
    int saved = ENOENT;
    for (const char *p = path;;) {
        size_t l = strcspn(p, ":");
        char full[PATH_MAX];
        if (snprintf(full, sizeof(full), "%.*s%s%s", (int)l, p, l ? "/" : "", file) <
            (int)sizeof(full)) {
            execve(full, argv, envp);
            if (errno == EACCES)
                saved = EACCES;
            else if (errno != ENOENT && errno != ENOTDIR)
                child_fail(c->err_fd, errno, "exec '%s'", full);
        }
        if (!p[l])
            break;
        p += l + 1;
    }
    child_fail(c->err_fd, saved, "exec '%s': not found in $PATH", file);
}

static __attribute__((noreturn)) void
child_main(struct child_ctx *c)
{
    struct rt_exec *x = c->x;
    int efd = c->err_fd;
    char go;
    /* ocirun's handlers would write into its self-pipe and have our own
     * signals forwarded back to us: default dispositions at once */
    for (size_t i = 0; i < NFWD; i++)
        signal(fwd_signals[i], SIG_DFL);
    /* With a user ns the parent must write our id maps before we mount
     * anything. Without one, the parent puts us into the cgroups while we
     * build the container (joining a v1 cgroup costs ~1 ms of RCU sync here:
     * done in parallel on another core); the "go" is awaited just before
     * execve, so nothing of the container's runs outside its cgroups. */
    int late_go = !(x->nsflags & CLONE_NEWUSER);
    if (!late_go) {
        if (read(c->sync_fd, &go, 1) != 1)
            _exit(1); /* the parent gave up */
        close(c->sync_fd);
    }

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail(efd, errno, "make / private");
    if (c->scratch) {
        static const char *const sub[] = {"rootfs", "upper", "work"};
        static const mode_t mode[] = {0755, 0755, 0700};
        char p[PATH_MAX + 16];
        /* best effort: without the tmpfs the directories land in the container
         * dir on disk, which the parent removes after the run anyway */
        (void)!mount("tmpfs", c->scratch, "tmpfs", 0, "mode=0700");
        for (size_t i = 0; i < 3; i++) {
            snprintf(p, sizeof(p), "%s/%s", c->scratch, sub[i]);
            if (mkdir(p, mode[i]) < 0 && errno != EEXIST)
                child_fail(efd, errno, "mkdir '%s'", p);
        }
    }
    if (c->tree_fd >= 0) {
        if (move_mount(c->tree_fd, "", AT_FDCWD, x->rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0)
            child_fail(efd, errno, "attach overlay on '%s'", x->rootfs);
        close(c->tree_fd);
    } else if (c->lowerdata) {
        if (mount("overlay", x->rootfs, "overlay", 0, c->lowerdata) < 0) {
            /* a kernel without "volatile" (before 5.10): mount without it
             * (no allocation here: the data is < 4096 bytes, rt_run checked) */
            char plain[4096];
            size_t dl = strlen(c->lowerdata), vl = strlen(",volatile");
            int retry = errno == EINVAL && dl > vl && dl < sizeof(plain) &&
                        strcmp(c->lowerdata + dl - vl, ",volatile") == 0;
            if (retry) {
                memcpy(plain, c->lowerdata, dl - vl);
                plain[dl - vl] = '\0';
            }
            if (!retry || mount("overlay", x->rootfs, "overlay", 0, plain) < 0)
                child_fail(efd, errno, "mount overlay on '%s'", x->rootfs);
        }
    } else if (mount(c->bind_dir, x->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) {
        child_fail(efd, errno, "bind '%s' on '%s'", c->bind_dir, x->rootfs);
    }
    int rootfd = open(x->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        child_fail(efd, errno, "open rootfs");
    int dev_tmpfs = 0;
    for (size_t i = 0; i < x->nmounts; i++) {
        do_mount(c, rootfd, &x->mounts[i]);
        if (strcmp(x->mounts[i].dest, "/dev") == 0 && !x->mounts[i].bind)
            dev_tmpfs = 1;
    }
    if (dev_tmpfs)
        make_devices(c, rootfd);
    int pty = x->terminal ? open_pty(c, rootfd) : -1;
    /* the terminal belongs to the container's user, as runc does it */
    if (pty >= 0 && fchown(pty, x->uid, x->gid) < 0)
        child_fail(efd, errno, "chown pty");
    if ((x->nsflags & CLONE_NEWUTS) && x->hostname &&
        sethostname(x->hostname, strlen(x->hostname)) < 0)
        child_fail(efd, errno, "sethostname");
    if (x->nsflags & CLONE_NEWNET)
        loopback_up(efd);

    if (chdir(x->rootfs) < 0)
        child_fail(efd, errno, "chdir rootfs");
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        /* the old root is now stacked under the new one: detach it */
        if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0 || umount2(".", MNT_DETACH) < 0)
            child_fail(efd, errno, "detach old root");
    } else if (errno == EINVAL) {
        /* root on initramfs cannot be pivoted: move + chroot as runc's no-pivot */
        if (mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0)
            child_fail(efd, errno, "move rootfs");
    } else {
        child_fail(efd, errno, "pivot_root");
    }
    if (chdir("/") < 0)
        child_fail(efd, errno, "chdir /");
    close(rootfd);
    mask_paths(c);
    if (x->root_ro &&
        mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/"), NULL) < 0)
        child_fail(efd, errno, "remount / read-only");

    /* the working directory is created as root, as runc does */
    if (mkpath_in_root(AT_FDCWD, x->cwd, 0) < 0 && errno != EEXIST)
        child_fail(efd, errno, "create cwd '%s'", x->cwd);

    for (int v = 0; v <= CAP_LAST_CAP; v++)
        if (!(x->caps[CAPS_BOUNDING] & (1ULL << v)))
            if (prctl(PR_CAPBSET_DROP, v, 0, 0, 0) < 0 && errno != EINVAL)
                child_fail(efd, errno, "drop bounding capability %d", v);
    /* raw syscalls, not the libc wrappers: in a multi-threaded caller glibc's
     * set*id() broadcast the change to every thread it knows of and wait for
     * them; the clone copied that list but not the threads, so it would wait
     * forever. We are the only thread here, which is all the kernel call affects. */
    if (!(x->nsflags & CLONE_NEWUSER) || x->userns_root) {
        if (syscall(SYS_setgroups, x->ngroups, x->groups) < 0)
            child_fail(efd, errno, "setgroups");
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        child_fail(efd, errno, "keepcaps");
    if (syscall(SYS_setresgid, x->gid, x->gid, x->gid) < 0)
        child_fail(efd, errno, "setgid %u", (unsigned)x->gid);
    if (syscall(SYS_setresuid, x->uid, x->uid, x->uid) < 0)
        child_fail(efd, errno, "setuid %u", (unsigned)x->uid);
    set_caps(c);
    if (chdir(x->cwd) < 0)
        child_fail(efd, errno, "chdir '%s'", x->cwd);
    if (x->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(efd, errno, "no_new_privs");
    /* if ocirun dies, take the container with it (set after setuid, which clears it) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail(efd, errno, "pdeathsig");
    if (pty >= 0) {
        if (setsid() < 0 || ioctl(pty, TIOCSCTTY, 0) < 0)
            child_fail(efd, errno, "controlling terminal");
        for (int fd = 0; fd < 3; fd++)
            if (dup2(pty, fd) < 0)
                child_fail(efd, errno, "dup2 pty");
        if (pty > 2)
            close(pty);
    }
    if (late_go) {
        if (read(c->sync_fd, &go, 1) != 1)
            _exit(1); /* the parent gave up (or could not set the cgroups up) */
        close(c->sync_fd);
    }
    /* a clean signal state: nothing inherited from ocirun */
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* our own descriptors above 2 must not leak into the container */
    syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
    exec_process(c);
    _exit(127);
}

/* ---- the parent --------------------------------------------------------- */

static int
write_proc(pid_t pid, const char *file, const char *data, struct err *e)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/%s", (int)pid, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return err_sys(e, ERR_INTERNAL, errno, "open '%s'", p);
    ssize_t n = write(fd, data, strlen(data));
    int saved = errno;
    close(fd);
    if (n != (ssize_t)strlen(data))
        return err_sys(e, ERR_INTERNAL, n < 0 ? saved : EIO, "write '%s'", p);
    return 0;
}

static int
recv_fd(int sock)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    char byte;
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) <= 0)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (!cm || cm->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    return fd;
}

static void
write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, 1000);
            continue;
        }
        if (w <= 0)
            return;
        buf += w;
        n -= (size_t)w;
    }
}

static void
copy_winsize(int master)
{
    struct winsize ws;
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
        (void)ioctl(master, TIOCSWINSZ, &ws);
}

/* wait for pid, forwarding signals and relaying the pty; returns its status */
static int
supervise(pid_t pid, int sfd, int master)
{
    int status = 0, stdin_open = master >= 0, master_open = master >= 0;
    char buf[65536];
    for (;;) {
        /* a hung-up pty (EIO) is no longer polled, or poll would spin until
         * SIGCHLD arrives */
        struct pollfd p[3] = {{sfd, POLLIN, 0},
                              {master_open ? master : -1, POLLIN, 0},
                              {stdin_open ? STDIN_FILENO : -1, POLLIN, 0}};
        nfds_t n = master < 0 ? 1 : 3;
        if (poll(p, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents & POLLIN) {
            unsigned char sigs[64];
            ssize_t ns = read(sfd, sigs, sizeof(sigs));
            for (ssize_t k = 0; k < ns; k++) {
                int sig = sigs[k];
                if (sig == SIGCHLD) {
                    pid_t r = waitpid(pid, &status, WNOHANG);
                    if (r == pid || (r < 0 && errno == ECHILD))
                        goto done;
                } else if (sig == SIGWINCH && master >= 0) {
                    copy_winsize(master); /* the kernel signals the foreground group */
                } else {
                    kill(pid, sig);
                }
            }
        }
        if (n > 1 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(master, buf, sizeof(buf));
            if (r > 0)
                write_all(STDOUT_FILENO, buf, (size_t)r);
            else if (r == 0 || errno != EINTR)
                master_open = 0;
        }
        if (n > 2 && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
            if (r > 0) {
                write_all(master, buf, (size_t)r);
            } else {
                /* end of input: send the terminal's EOF character, once */
                struct termios t;
                char eof = tcgetattr(master, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
                write_all(master, &eof, 1);
                stdin_open = 0;
            }
        }
    }
    /* poll failing is not expected; fall back to a plain wait */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
done:
    if (master >= 0) {
        /* whatever the container wrote last is still in the pty */
        int fl = fcntl(master, F_GETFL);
        fcntl(master, F_SETFL, fl | O_NONBLOCK);
        ssize_t r;
        while ((r = read(master, buf, sizeof(buf))) > 0)
            write_all(STDOUT_FILENO, buf, (size_t)r);
    }
    return status;
}

/* a detached overlay mount from "lowerdir=...,upperdir=...,workdir=..." (no
 * ',' inside the paths: rt_run checked); returns its fd or -1 with e set */
static int
overlay_tree(const char *data, struct err *e)
{
    int fs = fsopen("overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return err_sys(e, ERR_INTERNAL, errno, "run: fsopen overlay");
    char *copy = strdup(data);
    int rc = -1;
    if (!copy) {
        err_set(e, ERR_NOMEM, ENOMEM, "run: out of memory");
        goto out;
    }
    char *save = NULL;
    for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            /* a flag ("volatile"); a kernel that lacks it can do without */
            if (fsconfig(fs, FSCONFIG_SET_FLAG, kv, NULL, 0) < 0 && strcmp(kv, "volatile") != 0) {
                err_sys(e, ERR_INTERNAL, errno, "run: overlay option '%s'", kv);
                goto out;
            }
            continue;
        }
        *eq = '\0';
        if (fsconfig(fs, FSCONFIG_SET_STRING, kv, eq + 1, 0) < 0) {
            err_sys(e, ERR_INTERNAL, errno, "run: overlay option '%s'", kv);
            goto out;
        }
    }
    if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        err_sys(e, ERR_INTERNAL, errno, "run: create overlay");
        goto out;
    }
    rc = fsmount(fs, FSMOUNT_CLOEXEC, 0);
    if (rc < 0)
        err_sys(e, ERR_INTERNAL, errno, "run: fsmount overlay");
out:
    free(copy);
    close(fs);
    return rc;
}

static int
valid_id(const char *id)
{
    if (!*id || strlen(id) > 64 || id[0] == '.')
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return 0;
    return 1;
}

static int
valid_layer_path(const char *p)
{
    return p[0] == '/' && !strpbrk(p, ":,");
}

int
rt_run(const char *state_dir, const char *config_json, const struct rt_rootfs *rootfs,
       const struct rt_opts *o, int *exit_code, struct err *e)
{
    static const struct rt_opts none;
    struct rt_exec x;
    struct rt_cgroup *cg = NULL;
    struct err lerr;
    char cdir[PATH_MAX], path[PATH_MAX], idbuf[13];
    char *spec = NULL, *ovl = NULL;
    int rc = -1, made_cdir = 0, started = 0, master = -1, sfd = -1;
    int syncp[2] = {-1, -1}, errp[2] = {-1, -1}, sock[2] = {-1, -1};
    int handlers_set = 0, tty_raw = 0, sigp_w = -1, tree_fd = -1, scratch = 0;
    sigset_t fwd, oldmask;
    struct sigaction oldact[NFWD];
    struct termios oldt;
    pid_t pid = -1;

    memset(&x, 0, sizeof(x));
    err_clear(&lerr);
    if (!o)
        o = &none;
    if (!rootfs || (!rootfs->dir && rootfs->nlower == 0)) {
        err_set(&lerr, ERR_CONFIG, 0, "run: no rootfs given");
        goto out;
    }
    const char *id = o->name;
    if (!id) {
        rt_gen_id(idbuf);
        id = idbuf;
    }
    if (!valid_id(id)) {
        err_set(&lerr, ERR_CONFIG, 0, "run: invalid container name '%s'", id);
        goto out;
    }
    if (snprintf(path, sizeof(path), "%s/containers", state_dir) >= (int)sizeof(path)) {
        err_set(&lerr, ERR_CONFIG, ENAMETOOLONG, "run: state dir path too long");
        goto out;
    }
    if (rt_mkdir_p(path, 0700, &lerr) < 0)
        goto out;
    /* absolute: overlayfs options and root.path must not depend on our cwd */
    char absdir[PATH_MAX];
    if (!realpath(path, absdir)) {
        err_sys(&lerr, ERR_IO, errno, "run: resolve '%s'", path);
        goto out;
    }
    if (snprintf(cdir, sizeof(cdir), "%s/%s", absdir, id) >= (int)sizeof(cdir) - 16) {
        err_set(&lerr, ERR_CONFIG, ENAMETOOLONG, "run: state dir path too long");
        goto out;
    }
    snprintf(path, sizeof(path), "%s", absdir);
    if (mkdir(cdir, 0700) < 0) {
        if (errno == EEXIST)
            err_set(&lerr, ERR_BUSY, EEXIST, "run: container '%s' already exists in '%s'", id,
                    path);
        else
            err_sys(&lerr, ERR_IO, errno, "run: mkdir '%s'", cdir);
        goto out;
    }
    made_cdir = 1;

    struct rt_opts oo = *o;
    oo.name = id;
    const char *const *roots = rootfs->dir ? &rootfs->dir : rootfs->lower;
    size_t nroots = rootfs->dir ? 1 : rootfs->nlower;
    spec = rt_spec_build(config_json, &oo, path, roots, nroots, &lerr);
    if (!spec)
        goto out;
    snprintf(path, sizeof(path), "%s/config.json", cdir);
    if (rt_write_file(path, spec, strlen(spec), &lerr) < 0)
        goto out;
    if (exec_parse(spec, &x, &lerr) < 0)
        goto out;
    /* --rm with the overlay mounted by the child (no user ns): rootfs, upper
     * and work are made by the child on a tmpfs it mounts over the container
     * dir in its own mount namespace, so they vanish with it: no directories
     * to create, fsync or remove on the store's disk (~3 ms of ext4 mkdir and
     * rmdir per run here). The container dir itself keeps config.json. */
    scratch = o->rm && !rootfs->dir && !(x.nsflags & CLONE_NEWUSER);
    if (!scratch) {
        snprintf(path, sizeof(path), "%s/rootfs", cdir);
        if (mkdir(path, 0755) < 0) {
            err_sys(&lerr, ERR_IO, errno, "run: mkdir '%s'", path);
            goto out;
        }
    }
    if (!rootfs->dir) {
        /* lowerdir=top:...:bottom (lower[0] is the top layer, as overlayfs wants) */
        char up[PATH_MAX + 16], wk[PATH_MAX + 16];
        snprintf(up, sizeof(up), "%s/upper", cdir);
        snprintf(wk, sizeof(wk), "%s/work", cdir);
        if (!scratch && (mkdir(up, 0755) < 0 || mkdir(wk, 0700) < 0)) {
            err_sys(&lerr, ERR_IO, errno, "run: mkdir '%s'", up);
            goto out;
        }
        size_t len = strlen(up) + strlen(wk) + 64;
        for (size_t i = 0; i < rootfs->nlower; i++) {
            if (!valid_layer_path(rootfs->lower[i]) || !valid_layer_path(cdir)) {
                err_set(&lerr, ERR_CONFIG, 0,
                        "run: layer path '%s' must be absolute, without ':' or ','",
                        rootfs->lower[i]);
                goto out;
            }
            len += strlen(rootfs->lower[i]) + 1;
        }
        /* the mount data is one page at most */
        if (len >= 4096) {
            err_set(&lerr, ERR_UNSUPPORTED, 0, "run: too many layers for one overlay mount (%zu)",
                    rootfs->nlower);
            goto out;
        }
        ovl = malloc(len);
        if (!ovl) {
            err_set(&lerr, ERR_NOMEM, ENOMEM, "run: out of memory");
            goto out;
        }
        size_t n = (size_t)snprintf(ovl, len, "lowerdir=");
        for (size_t i = 0; i < rootfs->nlower; i++)
            n += (size_t)snprintf(ovl + n, len - n, "%s%s", i ? ":" : "", rootfs->lower[i]);
        /* --rm: the upper layer dies with the container, so it need not be
         * durable. "volatile" (Linux 5.10+, as podman does for --rm) skips the
         * syncfs of the whole upper filesystem that overlayfs otherwise does
         * when the mount goes away: tens of ms on a busy disk, per run. */
        snprintf(ovl + n, len - n, ",upperdir=%s,workdir=%s%s", up, wk, o->rm ? ",volatile" : "");
    }

    cg = rt_cgroup_new(id, &x.lim, &lerr);
    if (!cg && lerr.code != ERR_NONE)
        goto out;
    /* With a user ns, an overlay mounted by the child would belong to that ns,
     * and the kernel ignores trusted.* xattrs there: opaque directories of the
     * layers would show their lower contents. So the overlay is created here,
     * by us in the initial ns, as a detached mount (fsopen/fsmount) that the
     * child moves into its own mount ns. */
    if (ovl && (x.nsflags & CLONE_NEWUSER)) {
        tree_fd = overlay_tree(ovl, &lerr);
        if (tree_fd < 0)
            goto out;
    }

    if (pipe2(syncp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        (x.terminal && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) < 0)) {
        err_sys(&lerr, ERR_INTERNAL, errno, "run: pipe");
        goto out;
    }
    int sp[2];
    if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0) {
        err_sys(&lerr, ERR_INTERNAL, errno, "run: pipe");
        goto out;
    }
    sfd = sp[0];
    sigp_w = sp[1];
    sig_pipe_w = sigp_w;
    /* handlers, not a signalfd: a signalfd only sees signals blocked in every
     * thread, and the caller may have threads we do not know of. SIGCHLD gets
     * one too, so it is never left ignored (the kernel would reap for us). */
    sigemptyset(&fwd);
    for (size_t i = 0; i < NFWD; i++)
        sigaddset(&fwd, fwd_signals[i]);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sa.sa_mask = fwd;
    for (size_t i = 0; i < NFWD; i++)
        sigaction(fwd_signals[i], &sa, &oldact[i]);
    sigprocmask(SIG_UNBLOCK, &fwd, &oldmask);
    handlers_set = 1;

    fflush(NULL); /* no duplicated stdio buffers in the child */
    pid = (pid_t)syscall(SYS_clone, (unsigned long)x.nsflags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid < 0) {
        err_sys(&lerr, ERR_INTERNAL, errno, "run: clone");
        goto out;
    }
    if (pid == 0) {
        close(syncp[1]);
        close(errp[0]);
        if (sock[0] >= 0)
            close(sock[0]);
        close(sfd);
        close(sigp_w);
        struct child_ctx c = {.x = &x,
                              .sync_fd = syncp[0],
                              .err_fd = errp[1],
                              .sock_fd = sock[1],
                              .lowerdata = ovl,
                              .tree_fd = tree_fd,
                              .bind_dir = rootfs->dir,
                              .scratch = scratch ? cdir : NULL};
        child_main(&c);
    }
    /* syncp[0] stays open here until "go" is written: a child that already
     * failed must not turn that write into a SIGPIPE */
    close(errp[1]);
    errp[1] = -1;
    if (sock[1] >= 0) {
        close(sock[1]);
        sock[1] = -1;
    }
    if (x.nsflags & CLONE_NEWUSER) {
        if ((!x.userns_root && write_proc(pid, "setgroups", "deny", &lerr) < 0) ||
            write_proc(pid, "uid_map", x.uidmap, &lerr) < 0 ||
            write_proc(pid, "gid_map", x.gidmap, &lerr) < 0)
            goto out;
    }
    if (rt_cgroup_add(cg, pid, &lerr) < 0) {
        /* the child may have failed (and exited) while we set the cgroups
         * up: its own message says more than ESRCH */
        struct pollfd pf = {.fd = errp[0], .events = POLLIN};
        char cmsg[600];
        ssize_t cn = poll(&pf, 1, 0) == 1 ? read(errp[0], cmsg, sizeof(cmsg) - 1) : -1;
        if (cn > 0) {
            cmsg[cn] = '\0';
            err_set(&lerr, ERR_INTERNAL, 0, "run: container start failed: %s", cmsg);
        }
        goto out;
    }
    if (write(syncp[1], "g", 1) != 1) {
        err_sys(&lerr, ERR_INTERNAL, errno, "run: start container");
        goto out;
    }
    close(syncp[1]);
    syncp[1] = -1;
    close(syncp[0]);
    syncp[0] = -1;
    char msg[600];
    ssize_t n;
    while ((n = read(errp[0], msg, sizeof(msg) - 1)) < 0 && errno == EINTR)
        ;
    if (n > 0) {
        msg[n] = '\0';
        err_set(&lerr, ERR_INTERNAL, 0, "run: container start failed: %s", msg);
        goto out;
    }
    started = 1;
    if (x.terminal) {
        master = recv_fd(sock[0]);
        if (master < 0) {
            err_set(&lerr, ERR_INTERNAL, 0, "run: no pty from the container");
            goto out;
        }
        if (isatty(STDIN_FILENO)) {
            copy_winsize(master);
            if (tcgetattr(STDIN_FILENO, &oldt) == 0) {
                struct termios raw = oldt;
                cfmakeraw(&raw);
                tty_raw = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
            }
        }
    }
    int status = supervise(pid, sfd, master);
    pid = -1;
    if (WIFEXITED(status)) {
        *exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        *exit_code = 128 + WTERMSIG(status);
        if (WTERMSIG(status) == SIGKILL && rt_cgroup_oom_killed(cg))
            *exit_code = 137; /* OOM kill by the memory limit */
    } else {
        *exit_code = 255;
    }
    rc = 0;
out:
    if (pid > 0) {
        /* started or not, it must not outlive us */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (tty_raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &oldt);
    for (int i = 0; i < 2; i++) {
        if (syncp[i] >= 0)
            close(syncp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
        if (sock[i] >= 0)
            close(sock[i]);
    }
    if (master >= 0)
        close(master);
    if (handlers_set) {
        sigprocmask(SIG_SETMASK, &oldmask, NULL);
        for (size_t i = 0; i < NFWD; i++)
            sigaction(fwd_signals[i], &oldact[i], NULL);
    }
    sig_pipe_w = -1;
    if (sfd >= 0)
        close(sfd);
    if (sigp_w >= 0)
        close(sigp_w);
    if (tree_fd >= 0)
        close(tree_fd);
    rt_cgroup_free(cg);
    if (made_cdir && (o->rm || !started)) {
        struct err rmerr;
        if (rt_rm_rf(cdir, &rmerr) < 0)
            log_warn("ocirun", NULL, "%s", rmerr.msg);
    }
    exec_release(&x);
    free(ovl);
    free(spec);
    if (rc < 0 && e)
        *e = lerr;
    return rc;
}
