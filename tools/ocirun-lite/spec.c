/* spec.c - image config + command-line options -> OCI runtime-spec config.json.
 *
 * The defaults follow what docker hands runc (moby's oci/defaults.go and runc's
 * `runc spec`): the same 14 capabilities, masked and read-only paths, /dev
 * layout and mount options, so that `runc run` of our bundle and our own
 * runtime (runtime.c, which executes this very document) behave the same. */
#include "tools/ocirun-lite/runtime_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

/* docker's default capability set (moby oci/caps/defaults.go) */
static const char *const default_caps[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE",
};

/* runc's defaults (libcontainer/specconv Example()) */
static const char *const masked_paths[] = {
    "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/sys/firmware",       "/proc/scsi",
};
static const char *const readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

void
rt_gen_id(char buf[13])
{
    unsigned char raw[6];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        /* getrandom cannot fail for 6 bytes after boot; keep a fallback anyway */
        uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
        memcpy(raw, &t, sizeof(raw));
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(raw); i++) {
        buf[2 * i] = hex[raw[i] >> 4];
        buf[2 * i + 1] = hex[raw[i] & 15];
    }
    buf[12] = '\0';
}

static json_t *
str_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *
mount_obj(const char *dest, const char *type, const char *src, const char *const *opts, size_t n)
{
    json_t *m = json_object();
    json_object_set_new(m, "destination", json_string(dest));
    json_object_set_new(m, "type", json_string(type));
    json_object_set_new(m, "source", json_string(src));
    json_object_set_new(m, "options", str_array(opts, n));
    return m;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static json_t *
default_mounts(void)
{
    static const char *const proc_o[] = {"nosuid", "noexec", "nodev"};
    static const char *const dev_o[] = {"nosuid", "strictatime", "mode=755", "size=65536k"};
    static const char *const pts_o[] = {"nosuid",        "noexec",    "newinstance",
                                        "ptmxmode=0666", "mode=0620", "gid=5"};
    static const char *const shm_o[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"};
    static const char *const mq_o[] = {"nosuid", "noexec", "nodev"};
    static const char *const sys_o[] = {"nosuid", "noexec", "nodev", "ro"};
    json_t *a = json_array();
    json_array_append_new(a, mount_obj("/proc", "proc", "proc", proc_o, N(proc_o)));
    json_array_append_new(a, mount_obj("/dev", "tmpfs", "tmpfs", dev_o, N(dev_o)));
    json_array_append_new(a, mount_obj("/dev/pts", "devpts", "devpts", pts_o, N(pts_o)));
    json_array_append_new(a, mount_obj("/dev/shm", "tmpfs", "shm", shm_o, N(shm_o)));
    json_array_append_new(a, mount_obj("/dev/mqueue", "mqueue", "mqueue", mq_o, N(mq_o)));
    json_array_append_new(a, mount_obj("/sys", "sysfs", "sysfs", sys_o, N(sys_o)));
    return a;
}

/* env: image Env, then -e overrides by key ("K" alone takes the caller's value,
 * as docker does), then PATH/HOSTNAME/HOME/TERM defaults where missing */
static json_t *
build_env(json_t *img_env, const struct rt_opts *o, const char *hostname, const char *home)
{
    json_t *a = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(img_env, i, v)
    {
        if (json_is_string(v))
            json_array_append(a, v);
    }
    for (const char *const *p = o->env; p && *p; p++) {
        const char *kv = *p;
        const char *eq = strchr(kv, '=');
        size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
        char *own = NULL;
        if (!eq) {
            char key[256];
            snprintf(key, sizeof(key), "%.*s", (int)klen, kv);
            const char *hv = getenv(key);
            if (!hv)
                continue;
            if (asprintf(&own, "%s=%s", key, hv) < 0)
                continue;
            kv = own;
        }
        int replaced = 0;
        json_array_foreach(a, i, v)
        {
            const char *s = json_string_value(v);
            if (strncmp(s, kv, klen) == 0 && s[klen] == '=') {
                json_array_set_new(a, i, json_string(kv));
                replaced = 1;
                break;
            }
        }
        if (!replaced)
            json_array_append_new(a, json_string(kv));
        free(own);
    }
    int have_path = 0, have_home = 0, have_host = 0, have_term = 0;
    json_array_foreach(a, i, v)
    {
        const char *s = json_string_value(v);
        have_path |= strncmp(s, "PATH=", 5) == 0;
        have_home |= strncmp(s, "HOME=", 5) == 0;
        have_host |= strncmp(s, "HOSTNAME=", 9) == 0;
        have_term |= strncmp(s, "TERM=", 5) == 0;
    }
    char buf[600];
    if (!have_path)
        json_array_insert_new(a, 0, json_string("PATH=" RT_DEFAULT_PATH));
    if (!have_host) {
        snprintf(buf, sizeof(buf), "HOSTNAME=%s", hostname);
        json_array_append_new(a, json_string(buf));
    }
    if (!have_home) {
        snprintf(buf, sizeof(buf), "HOME=%s", home);
        json_array_append_new(a, json_string(buf));
    }
    if (o->tty && !have_term)
        json_array_append_new(a, json_string("TERM=xterm"));
    return a;
}

static json_t *
id_map(void)
{
    /* as root: an identity map of the first 65536 ids, so image files keep
     * their owners and root maps to the caller (root); otherwise only the
     * caller's id can be mapped without newuidmap. */
    json_t *a = json_array();
    json_t *m = json_object();
    uid_t uid = geteuid();
    json_object_set_new(m, "containerID", json_integer(0));
    json_object_set_new(m, "hostID", json_integer(uid));
    json_object_set_new(m, "size", json_integer(uid == 0 ? 65536 : 1));
    json_array_append_new(a, m);
    return a;
}

char *
rt_spec_build(const char *config_json, const struct rt_opts *o, const char *rootfs_path,
              const char *const *passwd_roots, size_t npasswd_roots, struct err *e)
{
    static const struct rt_opts none;
    json_t *img = NULL, *spec = NULL;
    char *out = NULL;
    if (!o)
        o = &none;

    if (config_json && *config_json) {
        json_error_t je;
        img = json_loads(config_json, 0, &je);
        if (!img || !json_is_object(img)) {
            err_set(e, ERR_CONFIG, 0, "image config: invalid json: %s",
                    img ? "not an object" : je.text);
            goto out;
        }
    } else {
        img = json_object();
    }
    /* the image config blob holds the run config under "config"; accept the
     * bare run config too */
    json_t *cfg = json_object_get(img, "config");
    if (!json_is_object(cfg))
        cfg = img;

    char idbuf[13];
    const char *id = o->name;
    if (!id) {
        rt_gen_id(idbuf);
        id = idbuf;
    }
    char hostname[64];
    snprintf(hostname, sizeof(hostname), "%.12s", o->hostname ? o->hostname : id);
    if (o->hostname)
        snprintf(hostname, sizeof(hostname), "%s", o->hostname);

    /* args: --entrypoint replaces Entrypoint and drops the image Cmd (docker) */
    json_t *args = json_array();
    json_t *ep = json_object_get(cfg, "Entrypoint");
    json_t *cmd = json_object_get(cfg, "Cmd");
    size_t i;
    json_t *v;
    if (o->entrypoint) {
        if (*o->entrypoint)
            json_array_append_new(args, json_string(o->entrypoint));
        cmd = NULL;
    } else {
        json_array_foreach(ep, i, v)
        {
            if (json_is_string(v))
                json_array_append(args, v);
        }
    }
    if (o->argv && o->argv[0]) {
        for (const char *const *p = o->argv; *p; p++)
            json_array_append_new(args, json_string(*p));
    } else {
        json_array_foreach(cmd, i, v)
        {
            if (json_is_string(v))
                json_array_append(args, v);
        }
    }
    spec = json_object();
    json_t *proc = json_object();
    json_object_set_new(spec, "ociVersion", json_string("1.0.2"));
    json_object_set_new(spec, "process", proc);
    json_object_set_new(proc, "args", args);
    if (json_array_size(args) == 0) {
        err_set(e, ERR_CONFIG, 0, "no command specified: the image has no Entrypoint or Cmd");
        goto out;
    }

    const char *ustr = o->user ? o->user : json_string_value(json_object_get(cfg, "User"));
    struct rt_user u;
    if (rt_users_resolve(ustr, passwd_roots, npasswd_roots, &u, e) < 0)
        goto out;
    json_t *user = json_object();
    json_object_set_new(user, "uid", json_integer(u.uid));
    json_object_set_new(user, "gid", json_integer(u.gid));
    if (u.ngroups) {
        json_t *g = json_array();
        for (size_t k = 0; k < u.ngroups; k++)
            json_array_append_new(g, json_integer(u.groups[k]));
        json_object_set_new(user, "additionalGids", g);
    }
    json_object_set_new(proc, "user", user);
    json_object_set_new(proc, "terminal", json_boolean(o->tty));
    json_object_set_new(proc, "env", build_env(json_object_get(cfg, "Env"), o, hostname, u.home));

    const char *wd =
        o->workdir ? o->workdir : json_string_value(json_object_get(cfg, "WorkingDir"));
    char cwd[1024];
    if (!wd || !*wd)
        wd = "/";
    snprintf(cwd, sizeof(cwd), "%s%s", wd[0] == '/' ? "" : "/", wd);
    json_object_set_new(proc, "cwd", json_string(cwd));

    json_t *caps = json_object();
    json_object_set_new(caps, "bounding", str_array(default_caps, N(default_caps)));
    json_object_set_new(caps, "effective", str_array(default_caps, N(default_caps)));
    json_object_set_new(caps, "permitted", str_array(default_caps, N(default_caps)));
    json_object_set_new(proc, "capabilities", caps);
    json_object_set_new(proc, "noNewPrivileges", json_true());

    json_t *root = json_object();
    json_object_set_new(root, "path", json_string(rootfs_path ? rootfs_path : "rootfs"));
    json_object_set_new(root, "readonly", json_false());
    json_object_set_new(spec, "root", root);
    json_object_set_new(spec, "hostname", json_string(hostname));
    json_object_set_new(spec, "mounts", default_mounts());

    json_t *lx = json_object();
    json_object_set_new(spec, "linux", lx);
    json_t *ns = json_array();
    static const char *const nstypes[] = {"pid", "ipc", "uts", "mount"};
    for (i = 0; i < N(nstypes); i++) {
        json_t *n = json_object();
        json_object_set_new(n, "type", json_string(nstypes[i]));
        json_array_append_new(ns, n);
    }
    if (o->net != RT_NET_HOST) {
        json_t *n = json_object();
        json_object_set_new(n, "type", json_string("network"));
        json_array_append_new(ns, n);
    }
    if (o->userns) {
        json_t *n = json_object();
        json_object_set_new(n, "type", json_string("user"));
        json_array_append_new(ns, n);
        json_object_set_new(lx, "uidMappings", id_map());
        json_object_set_new(lx, "gidMappings", id_map());
    }
    json_object_set_new(lx, "namespaces", ns);

    json_t *res = json_object();
    json_t *devs = json_array();
    json_t *deny = json_object();
    json_object_set_new(deny, "allow", json_false());
    json_object_set_new(deny, "access", json_string("rwm"));
    json_array_append_new(devs, deny);
    json_object_set_new(res, "devices", devs);
    if (o->memory > 0) {
        json_t *m = json_object();
        json_object_set_new(m, "limit", json_integer(o->memory));
        /* memory+swap = memory: a limit that swap cannot stretch */
        json_object_set_new(m, "swap", json_integer(o->memory));
        json_object_set_new(res, "memory", m);
    }
    if (o->cpus > 0) {
        json_t *c = json_object();
        /* the kernel's smallest quota is 1 ms per period */
        json_int_t quota = (json_int_t)(o->cpus * 100000.0 + 0.5);
        json_object_set_new(c, "quota", json_integer(quota < 1000 ? 1000 : quota));
        json_object_set_new(c, "period", json_integer(100000));
        json_object_set_new(res, "cpu", c);
    }
    if (o->pids > 0) {
        json_t *p = json_object();
        json_object_set_new(p, "limit", json_integer(o->pids));
        json_object_set_new(res, "pids", p);
    }
    json_object_set_new(lx, "resources", res);
    json_object_set_new(lx, "maskedPaths", str_array(masked_paths, N(masked_paths)));
    json_object_set_new(lx, "readonlyPaths", str_array(readonly_paths, N(readonly_paths)));

    out = json_dumps(spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!out)
        err_set(e, ERR_NOMEM, ENOMEM, "config.json: out of memory");
out:
    json_decref(spec);
    json_decref(img);
    return out;
}
