/* runtime.h - the run side of ocirun-lite: turn an image config + a rootfs into an
 * OCI runtime-spec config.json, and run it (namespaces, pivot_root, mounts,
 * cgroups, capabilities, signals, exit code). The pull side (registry client,
 * content store, layer cache) hands it a `struct rt_rootfs` and the image
 * config JSON; it never sees the registry. */
#ifndef OCIRUN_RUNTIME_H
#define OCIRUN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum rt_net { RT_NET_NONE = 0, RT_NET_HOST = 1 };

/* what the user asked for on the command line (all optional) */
struct rt_opts {
    const char *name;          /* container id; NULL: generated */
    const char *const *env;    /* "K=V" overrides/additions, NULL-terminated or NULL */
    const char *workdir;       /* -w */
    const char *user;          /* -u: "name", "uid", "uid:gid", "name:group" */
    const char *hostname;      /* --hostname; default: the container id (12 chars) */
    const char *const *argv;   /* CMD ARGS: replace the image Cmd; NULL = image's */
    const char *entrypoint;    /* --entrypoint override, NULL = image's */
    int64_t memory;            /* bytes, 0 = no limit */
    double cpus;               /* 0 = no limit */
    int64_t pids;              /* 0 = no limit */
    enum rt_net net;           /* default RT_NET_NONE: new net ns with lo up */
    int tty;                   /* -t */
    int rm;                    /* --rm: remove the container dir at exit */
    int userns;                /* 1: also a new user namespace (root maps to caller) */
};

/* The root filesystem: either layer directories stacked with overlayfs (lower[0]
 * is the TOP layer) or a plain directory used as is (dir != NULL). */
struct rt_rootfs {
    const char *dir;
    const char *const *lower;
    size_t nlower;
};

/* rt_spec_build - the runtime-spec config.json text for image config `config_json`
 * (the image's config blob) and opts; rootfs_path is written as root.path.
 * Resolves User through <passwd_root>/etc/passwd and /etc/group (a directory in
 * which those files can be read: the rootfs or the top layer that has them;
 * NULL: numeric ids only). Returns a malloc'd string owned by the caller, or NULL
 * with the error set. */
char *rt_spec_build(const char *config_json, const struct rt_opts *o, const char *rootfs_path,
                    const char *const *passwd_roots, size_t npasswd_roots, struct err *e);

/* rt_run - create the container under state_dir/containers/<id>/ (config.json,
 * overlay upper/work), run it in the foreground and wait for it. *exit_code is the
 * container's exit status (128+signal when killed by a signal, 137 on OOM kill).
 * Cleans up cgroup, mounts and (with rm) the container dir on every path.
 * Returns 0 when the container ran (whatever its exit code), -1 with e set if it
 * could not be started. */
int rt_run(const char *state_dir, const char *config_json, const struct rt_rootfs *rootfs,
           const struct rt_opts *o, int *exit_code, struct err *e);

/* rt_bundle_write - write an OCI bundle at bundle_dir: config.json (runnable by
 * `runc run` unchanged; process.terminal false unless o->tty) and rootfs/ (a
 * copy of the stacked layers, ownership and modes kept). */
int rt_bundle_write(const char *bundle_dir, const char *config_json,
                    const struct rt_rootfs *rootfs, const struct rt_opts *o, struct err *e);

#endif
