/* runtime_internal.h - what the files of the run side (runtime.c, spec.c,
 * users.c, cgroup.c, bundle.c) share. Not for the pull side: it codes against
 * runtime.h only. */
#ifndef OCIRUN_RUNTIME_INTERNAL_H
#define OCIRUN_RUNTIME_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "tools/ocirun-lite/runtime.h"

#define RT_MAX_GROUPS 64
#define RT_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* ---- users.c ---------------------------------------------------------- */

struct rt_user {
    uint32_t uid;
    uint32_t gid;
    int have_home; /* a passwd entry matched: home is its home dir */
    char home[512];
    size_t ngroups; /* supplementary groups from /etc/group membership */
    uint32_t groups[RT_MAX_GROUPS];
};

/* rt_users_resolve - resolve a docker-style user string ("", "name", "uid",
 * "uid:gid", "name:group", ...) through the first <root>/etc/passwd and
 * <root>/etc/group found in roots (in order; a whiteout stops the search).
 * Files are opened with RESOLVE_IN_ROOT so an image symlink cannot reach host
 * files. Returns 0 and fills *u, or -1 with ERR_CONFIG for an unknown name. */
int rt_users_resolve(const char *spec, const char *const *roots, size_t nroots, struct rt_user *u,
                     struct err *e);

/* ---- spec.c ----------------------------------------------------------- */

/* rt_gen_id - 12 random lowercase hex characters + NUL into buf[13]. */
void rt_gen_id(char buf[13]);

/* ---- cgroup.c --------------------------------------------------------- */

struct rt_limits {
    int64_t memory;      /* bytes, 0 = none */
    int64_t memory_swap; /* memory+swap bytes, 0 = leave alone */
    int64_t cpu_quota;   /* us per period, 0 = none */
    uint64_t cpu_period; /* us */
    int64_t pids;        /* 0 = none */
    int devices;         /* 1: the default device allow-list (v1 hosts) */
};

struct rt_cgroup;

/* rt_cgroup_new - create the container's cgroup(s) for the controllers that
 * `l` needs, on a v2, v1 or hybrid host (each controller is looked up where it
 * is actually mounted: a v1 hierarchy, else the v2 tree if it lists it), and
 * write the limits. Returns NULL with no error set when no limit is asked
 * for (e->code stays ERR_NONE), NULL with e set on failure. Owned by the
 * caller: rt_cgroup_free removes the directories. */
struct rt_cgroup *rt_cgroup_new(const char *id, const struct rt_limits *l, struct err *e);

/* rt_cgroup_add - move pid into every cgroup of cg. */
int rt_cgroup_add(struct rt_cgroup *cg, pid_t pid, struct err *e);

/* rt_cgroup_oom_killed - 1 if the memory controller recorded an OOM kill. */
int rt_cgroup_oom_killed(struct rt_cgroup *cg);

/* rt_cgroup_free - kill what is left, rmdir the directories, free. NULL ok. */
void rt_cgroup_free(struct rt_cgroup *cg);

/* ---- bundle.c / runtime.c helpers ------------------------------------- */

/* rt_rm_rf - remove path recursively (no symlink following). 0 / -1. */
int rt_rm_rf(const char *path, struct err *e);

/* rt_mkdir_p - mkdir -p with mode for the created components. */
int rt_mkdir_p(const char *path, mode_t mode, struct err *e);

/* rt_write_file - create/truncate path with data. */
int rt_write_file(const char *path, const char *data, size_t len, struct err *e);

#endif
