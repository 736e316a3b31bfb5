/* cgroup.c - the container's memory, cpu and pids limits on cgroup v2, v1 and
 * hybrid hosts.
 *
 * Detection is per controller, from /proc/self/mountinfo: a controller that a
 * v1 hierarchy carries (its super options name it) is used there, whatever the
 * v2 tree says; otherwise the v2 tree is used if its cgroup.controllers lists
 * it. A hybrid host (systemd's "unified" at /sys/fs/cgroup/unified with no
 * controllers) thus gets v1 for all three; a pure v2 host gets v2.
 *
 * Placement: v1 groups nest under our own cgroup of that hierarchy
 * (/proc/self/cgroup), so limits set on us still cover the container; v2 groups
 * go to <v2>/ocirun-lite/<id> because v2's no-internal-process rule forbids
 * enabling controllers below a cgroup that holds processes (ours). */
#include "tools/ocirun-lite/runtime_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

enum { CG_MEMORY, CG_CPU, CG_PIDS, CG_DEVICES, CG__N };
static const char *const cg_names[CG__N] = {"memory", "cpu", "pids", "devices"};

/* the devices a container may use (runc's AllowedDevices): creating any node
 * is fine (CAP_MKNOD is in the default set), opening only these */
static const char *const allowed_devices[] = {
    "c *:* m",   "b *:* m",   "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",   "c 1:8 rwm",
    "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
};

struct rt_cgroup {
    /* dirs[] holds distinct directories (v1: one per hierarchy; v2: one) */
    char *dirs[CG__N + 1];
    size_t ndirs;
    char *mem_dir; /* directory holding the memory controller, or NULL */
    int mem_v2;
};

static int
write_str(const char *dir, const char *file, const char *val, struct err *e)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return err_sys(e, ERR_IO, errno, "cgroup: open '%s'", p);
    size_t n = strlen(val);
    ssize_t w = write(fd, val, n);
    int saved = errno;
    close(fd);
    if (w != (ssize_t)n)
        return err_sys(e, ERR_IO, w < 0 ? saved : EIO, "cgroup: write '%s' to '%s'", val, p);
    return 0;
}

static int
read_str(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* does the space/comma separated list contain word? */
static int
has_word(const char *list, const char *word, const char *seps)
{
    size_t wl = strlen(word);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, seps);
        if (l == wl && strncmp(p, word, wl) == 0)
            return 1;
        p += l;
        p += strspn(p, seps);
    }
    return 0;
}

struct cg_mounts {
    char v1[CG__N][PATH_MAX]; /* mount point per controller, "" if not on v1 */
    char v2[PATH_MAX];        /* the cgroup2 mount, "" if none */
};

static void
scan_mounts(struct cg_mounts *m)
{
    memset(m, 0, sizeof(*m));
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char *dash = strstr(line, " - ");
        if (!dash)
            continue;
        char mp[PATH_MAX], fstype[64], src[256], super[1024];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
            continue;
        if (sscanf(dash + 3, "%63s %255s %1023s", fstype, src, super) != 3)
            continue;
        if (strcmp(fstype, "cgroup2") == 0 && !m->v2[0]) {
            snprintf(m->v2, sizeof(m->v2), "%s", mp);
        } else if (strcmp(fstype, "cgroup") == 0) {
            for (int c = 0; c < CG__N; c++)
                if (!m->v1[c][0] && has_word(super, cg_names[c], ","))
                    snprintf(m->v1[c], sizeof(m->v1[c]), "%s", mp);
        }
    }
    free(line);
    fclose(f);
}

/* our own path in the v1 hierarchy that carries controller `name` */
static void
own_v1_path(const char *name, char *out, size_t len)
{
    snprintf(out, len, "/");
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        if (has_word(c1 + 1, name, ",")) {
            snprintf(out, len, "%s", c2 + 1);
            break;
        }
    }
    free(line);
    fclose(f);
}

static int
mkdirs(const char *path, struct err *e)
{
    return rt_mkdir_p(path, 0755, e);
}

/* mkdir -p of the parents, then the leaf itself, which must be new: a group
 * is never shared with another container */
static int
mkleaf(const char *dir, struct err *e)
{
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = '\0';
        if (mkdirs(parent, e) < 0)
            return -1;
    }
    if (mkdir(dir, 0755) < 0)
        return err_sys(e, errno == EEXIST ? ERR_BUSY : ERR_IO, errno, "cgroup: mkdir '%s'", dir);
    return 0;
}

/* does any hierarchy we are about to use already have ocirun-lite/<leaf>? */
static int
leaf_taken(const struct cg_mounts *m, const int *want, const char *leaf)
{
    char p[PATH_MAX], own[PATH_MAX];
    for (int c = 0; c < CG__N; c++) {
        if (!want[c])
            continue;
        if (m->v1[c][0]) {
            own_v1_path(cg_names[c], own, sizeof(own));
            snprintf(p, sizeof(p), "%s%s/ocirun-lite/%s", m->v1[c],
                     strcmp(own, "/") == 0 ? "" : own, leaf);
        } else {
            snprintf(p, sizeof(p), "%s/ocirun-lite/%s", m->v2, leaf);
        }
        if (access(p, F_OK) == 0)
            return 1;
    }
    return 0;
}

static int
add_dir(struct rt_cgroup *cg, const char *dir)
{
    for (size_t i = 0; i < cg->ndirs; i++)
        if (strcmp(cg->dirs[i], dir) == 0)
            return (int)i;
    cg->dirs[cg->ndirs] = strdup(dir);
    if (!cg->dirs[cg->ndirs])
        return -1;
    return (int)cg->ndirs++;
}

struct rt_cgroup *
rt_cgroup_new(const char *id, const struct rt_limits *l, struct err *e)
{
    struct cg_mounts m;
    scan_mounts(&m);
    /* the device allow-list needs the v1 controller; v2 would need an eBPF
     * program (not done: see docs) */
    int want[CG__N] = {l->memory > 0, l->cpu_quota > 0, l->pids > 0,
                       l->devices && m.v1[CG_DEVICES][0]};
    if (!want[CG_MEMORY] && !want[CG_CPU] && !want[CG_PIDS] && !want[CG_DEVICES])
        return NULL;
    char v2ctl[1024] = "";
    if (m.v2[0]) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/cgroup.controllers", m.v2);
        if (read_str(p, v2ctl, sizeof(v2ctl)) < 0)
            v2ctl[0] = '\0';
    }
    struct rt_cgroup *cg = calloc(1, sizeof(*cg));
    if (!cg) {
        err_set(e, ERR_NOMEM, ENOMEM, "cgroup: out of memory");
        return NULL;
    }
    char dir[PATH_MAX];
    int dir_of[CG__N] = {-1, -1, -1};
    int v2_needed = 0;
    /* cgroups are host-wide while ids are unique per store only: another
     * store (or a test suite running twice) may use the same id right now.
     * Sharing a group would let one container's cleanup kill the other, so a
     * taken name gets a random suffix. */
    char leaf[96];
    snprintf(leaf, sizeof(leaf), "%s", id);
    if (leaf_taken(&m, want, leaf)) {
        char sfx[13];
        rt_gen_id(sfx);
        snprintf(leaf, sizeof(leaf), "%s-%.6s", id, sfx);
    }
    char v2dir[PATH_MAX];
    snprintf(v2dir, sizeof(v2dir), "%s/ocirun-lite/%s", m.v2, leaf);
    for (int c = 0; c < CG__N; c++) {
        if (!want[c])
            continue;
        if (m.v1[c][0]) {
            char own[PATH_MAX];
            own_v1_path(cg_names[c], own, sizeof(own));
            snprintf(dir, sizeof(dir), "%s%s/ocirun-lite/%s", m.v1[c],
                     strcmp(own, "/") == 0 ? "" : own, leaf);
            if (mkleaf(dir, e) < 0)
                goto fail;
            dir_of[c] = add_dir(cg, dir);
            if (dir_of[c] < 0) {
                err_set(e, ERR_NOMEM, ENOMEM, "cgroup: out of memory");
                goto fail;
            }
        } else if (c != CG_DEVICES && m.v2[0] && has_word(v2ctl, cg_names[c], " \n")) {
            v2_needed = 1;
        } else {
            err_set(e, ERR_CONFIG, 0,
                    "cgroup: the '%s' controller is not available on this host (neither v1 nor "
                    "v2 has it)",
                    cg_names[c]);
            goto fail;
        }
    }
    if (v2_needed) {
        /* enable the controllers on the way down: root and ocirun-lite/ */
        char ctl[64] = "";
        for (int c = 0; c < CG__N; c++)
            if (want[c] && !m.v1[c][0]) {
                size_t n = strlen(ctl);
                snprintf(ctl + n, sizeof(ctl) - n, "%s+%s", n ? " " : "", cg_names[c]);
            }
        char mid[PATH_MAX];
        snprintf(mid, sizeof(mid), "%s/ocirun-lite", m.v2);
        if (mkdirs(mid, e) < 0)
            goto fail;
        if (write_str(m.v2, "cgroup.subtree_control", ctl, e) < 0 ||
            write_str(mid, "cgroup.subtree_control", ctl, e) < 0)
            goto fail;
        if (mkleaf(v2dir, e) < 0)
            goto fail;
        int d = add_dir(cg, v2dir);
        if (d < 0) {
            err_set(e, ERR_NOMEM, ENOMEM, "cgroup: out of memory");
            goto fail;
        }
        for (int c = 0; c < CG__N; c++)
            if (want[c] && !m.v1[c][0])
                dir_of[c] = d;
    }

    char val[64];
    if (want[CG_MEMORY]) {
        const char *d = cg->dirs[dir_of[CG_MEMORY]];
        cg->mem_dir = cg->dirs[dir_of[CG_MEMORY]];
        cg->mem_v2 = !m.v1[CG_MEMORY][0];
        snprintf(val, sizeof(val), "%lld", (long long)l->memory);
        if (cg->mem_v2) {
            if (write_str(d, "memory.max", val, e) < 0)
                goto fail;
            if (l->memory_swap >= l->memory) {
                char sw[PATH_MAX];
                snprintf(sw, sizeof(sw), "%s/memory.swap.max", d);
                snprintf(val, sizeof(val), "%lld", (long long)(l->memory_swap - l->memory));
                if (access(sw, F_OK) == 0 && write_str(d, "memory.swap.max", val, e) < 0)
                    goto fail;
            }
        } else {
            if (write_str(d, "memory.limit_in_bytes", val, e) < 0)
                goto fail;
            /* memsw exists only with swap accounting; no file = no swap limit */
            char sw[PATH_MAX];
            snprintf(sw, sizeof(sw), "%s/memory.memsw.limit_in_bytes", d);
            if (l->memory_swap > 0 && access(sw, F_OK) == 0) {
                snprintf(val, sizeof(val), "%lld", (long long)l->memory_swap);
                if (write_str(d, "memory.memsw.limit_in_bytes", val, e) < 0)
                    goto fail;
            }
        }
    }
    if (want[CG_CPU]) {
        const char *d = cg->dirs[dir_of[CG_CPU]];
        uint64_t period = l->cpu_period ? l->cpu_period : 100000;
        if (!m.v1[CG_CPU][0]) {
            snprintf(val, sizeof(val), "%lld %llu", (long long)l->cpu_quota,
                     (unsigned long long)period);
            if (write_str(d, "cpu.max", val, e) < 0)
                goto fail;
        } else {
            snprintf(val, sizeof(val), "%llu", (unsigned long long)period);
            if (write_str(d, "cpu.cfs_period_us", val, e) < 0)
                goto fail;
            snprintf(val, sizeof(val), "%lld", (long long)l->cpu_quota);
            if (write_str(d, "cpu.cfs_quota_us", val, e) < 0)
                goto fail;
        }
    }
    if (want[CG_PIDS]) {
        snprintf(val, sizeof(val), "%lld", (long long)l->pids);
        if (write_str(cg->dirs[dir_of[CG_PIDS]], "pids.max", val, e) < 0)
            goto fail;
    }
    if (want[CG_DEVICES]) {
        const char *d = cg->dirs[dir_of[CG_DEVICES]];
        if (write_str(d, "devices.deny", "a", e) < 0)
            goto fail;
        for (size_t i = 0; i < sizeof(allowed_devices) / sizeof(allowed_devices[0]); i++)
            if (write_str(d, "devices.allow", allowed_devices[i], e) < 0)
                goto fail;
    }
    return cg;
fail:
    rt_cgroup_free(cg);
    return NULL;
}

int
rt_cgroup_add(struct rt_cgroup *cg, pid_t pid, struct err *e)
{
    char val[32];
    snprintf(val, sizeof(val), "%d", (int)pid);
    for (size_t i = 0; cg && i < cg->ndirs; i++)
        if (write_str(cg->dirs[i], "cgroup.procs", val, e) < 0)
            return -1;
    return 0;
}

int
rt_cgroup_oom_killed(struct rt_cgroup *cg)
{
    if (!cg || !cg->mem_dir)
        return 0;
    char p[PATH_MAX], buf[1024];
    snprintf(p, sizeof(p), "%s/%s", cg->mem_dir,
             cg->mem_v2 ? "memory.events" : "memory.oom_control");
    if (read_str(p, buf, sizeof(buf)) < 0)
        return 0;
    const char *k = strstr(buf, "oom_kill ");
    return k && atoll(k + 9) > 0;
}

/* kill everything still in dir (cgroup.procs), then rmdir, retrying while the
 * kernel finishes tearing the last tasks down */
static void
remove_dir(const char *dir)
{
    for (int attempt = 0; attempt < 200; attempt++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return;
        if (errno != EBUSY)
            return;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
        FILE *f = fopen(p, "re");
        if (f) {
            int pid;
            while (fscanf(f, "%d", &pid) == 1)
                kill(pid, SIGKILL);
            fclose(f);
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void
rt_cgroup_free(struct rt_cgroup *cg)
{
    if (!cg)
        return;
    for (size_t i = 0; i < cg->ndirs; i++) {
        /* the shared ocirun-lite/ parent stays: removing it would race with
         * another container creating its directory there */
        remove_dir(cg->dirs[i]);
        free(cg->dirs[i]);
    }
    free(cg);
}
