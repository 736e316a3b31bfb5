/* ocirun_rt_test.c - the run side of ocirun-lite: spec building, user
 * resolution, running containers (rt_run) and bundles under runc.
 *
 * The root filesystem is built here from /bin/busybox (busybox-static) with one
 * symlink per applet and an /etc/passwd + /etc/group like the fixture image's,
 * so these tests need neither a registry nor the pull side. Container tests
 * need root (namespaces, mounts, cgroups); they skip when not run as root. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "tools/ocirun-lite/runtime.h"
#include "tools/ocirun-lite/runtime_internal.h"

#include "common/banned.h"

/* the fixture image "cfgtest" has this config */
static const char *cfgtest_json =
    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
    "\"Entrypoint\":[\"/bin/sh\",\"-c\"],"
    "\"Cmd\":[\"echo hello $GREETING; id -u; id -g; pwd; exit 7\"],"
    "\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\","
    "\"GREETING=ocirun\"],"
    "\"WorkingDir\":\"/home/app\",\"User\":\"1000:1000\"},"
    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";

static const char *busybox_json = "{\"config\":{\"Cmd\":[\"sh\"]}}";

static char tmp[256];

static void
setup_tmp(void)
{
    /* a hung container must fail the test, not hang the suite; Criterion's own
     * .timeout leaks in its runner under LSan with --jobs, so an alarm it is */
    alarm(120);
    snprintf(tmp, sizeof(tmp), "/tmp/ocirun-rt-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp), "mkdtemp: %s", strerror(errno));
}

static void
teardown_tmp(void)
{
    if (tmp[0])
        rt_rm_rf(tmp, NULL);
}

static void
need_root(void)
{
    if (geteuid() != 0)
        cr_skip_test("container tests need root (namespaces, mounts, cgroups)");
    if (access("/bin/busybox", X_OK) != 0)
        cr_skip_test("/bin/busybox (busybox-static) is not installed");
}

static void
put_file(const char *path, const char *text, mode_t mode)
{
    cr_assert_eq(rt_write_file(path, text, strlen(text), NULL), 0, "write %s", path);
    chmod(path, mode);
}

static char *
path_join(const char *a, const char *b)
{
    static char bufs[8][512];
    static int k;
    char *p = bufs[k++ & 7];
    char tmpbuf[512];
    /* a or b may be an earlier result of ours */
    int n = snprintf(tmpbuf, sizeof(tmpbuf), "%s/", a);
    snprintf(tmpbuf + n, sizeof(tmpbuf) - (size_t)n, "%s", b);
    memcpy(p, tmpbuf, sizeof(tmpbuf));
    return p;
}

/* a busybox rootfs: /bin/busybox + applet links, /etc/passwd, /etc/group */
static void
make_rootfs(const char *dir_arg)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", dir_arg); /* path_join buffers rotate */
    static const char *const dirs[] = {"bin", "etc", "tmp", "proc", "sys", "dev", "root", "home"};
    cr_assert_eq(rt_mkdir_p(dir, 0755, NULL), 0);
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        mkdir(path_join(dir, dirs[i]), 0755);
    chmod(path_join(dir, "tmp"), 01777);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cp /bin/busybox '%s/bin/busybox'", dir);
    cr_assert_eq(system(cmd), 0);
    FILE *f = popen("/bin/busybox --list", "r");
    cr_assert_not_null(f);
    char name[128];
    while (fgets(name, sizeof(name), f)) {
        name[strcspn(name, "\n")] = '\0';
        if (!name[0] || strcmp(name, "busybox") == 0)
            continue;
        cr_assert_eq(symlink("busybox", path_join(path_join(dir, "bin"), name)), 0, "%s", name);
    }
    pclose(f);
    put_file(path_join(dir, "etc/passwd"),
             "root:x:0:0:root:/root:/bin/sh\n"
             "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
             "app:x:1000:1000:app user:/home/app:/bin/sh\n"
             "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
             0644);
    put_file(path_join(dir, "etc/group"),
             "root:x:0:\n"
             "wheel:x:10:app,root\n"
             "app:x:1000:\n"
             "staff:x:50:daemon,app\n"
             "nogroup:x:65534:\n",
             0644);
}

/* ---- running a container in a forked helper, output captured -------- */

/* 1: the helper starts an idle thread before rt_run, as a caller with
 * threads of its own would have (signals may then land on that thread) */
static int helper_thread;

static void *
idle_thread(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

struct run_result {
    int rc;
    int exit_code;
    char err[256];
    char out[16384];
};

/* fork; the child redirects stdout/stderr to <tmp>/out-<tag> and calls
 * rt_run; returns the helper's pid (the "ocirun process") */
static pid_t
start_run(const char *tag, const char *config, const struct rt_rootfs *rfs, const struct rt_opts *o,
          int *resfd)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(p[0]);
        char outp[512];
        snprintf(outp, sizeof(outp), "%s/out-%s", tmp, tag);
        int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (fd < 0 || nul < 0)
            _exit(99);
        dup2(nul, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        pthread_t th;
        if (helper_thread && pthread_create(&th, NULL, idle_thread, NULL) != 0)
            _exit(97);
        struct err e = {0};
        int code = -1;
        int rc = rt_run(path_join(tmp, "state"), config, rfs, o, &code, &e);
        char buf[300];
        int n = snprintf(buf, sizeof(buf), "%d %d %s", rc, code, rc < 0 ? e.msg : "");
        if (write(p[1], buf, (size_t)n) < 0)
            _exit(98);
        _exit(0);
    }
    close(p[1]);
    *resfd = p[0];
    return pid;
}

static void
finish_run(const char *tag, pid_t pid, int resfd, struct run_result *r)
{
    memset(r, 0, sizeof(*r));
    char buf[300] = "";
    ssize_t n = read(resfd, buf, sizeof(buf) - 1);
    close(resfd);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "helper died (status %d)", st);
    cr_assert_gt(n, 0, "no result from rt_run");
    buf[n] = '\0';
    int off = 0;
    cr_assert_eq(sscanf(buf, "%d %d %n", &r->rc, &r->exit_code, &off), 2);
    snprintf(r->err, sizeof(r->err), "%s", buf + off);
    char outp[512];
    snprintf(outp, sizeof(outp), "%s/out-%s", tmp, tag);
    FILE *f = fopen(outp, "r");
    cr_assert_not_null(f);
    size_t got = fread(r->out, 1, sizeof(r->out) - 1, f);
    r->out[got] = '\0';
    fclose(f);
}

static void
run(const char *tag, const char *config, const struct rt_rootfs *rfs, const struct rt_opts *o,
    struct run_result *r)
{
    int resfd;
    pid_t pid = start_run(tag, config, rfs, o, &resfd);
    finish_run(tag, pid, resfd, r);
}

static const char *const *
argv_sh(const char *script)
{
    static const char *v[4];
    v[0] = "/bin/sh";
    v[1] = "-c";
    v[2] = script;
    v[3] = NULL;
    return v;
}

/* ---- spec ----------------------------------------------------------- */

static json_t *
build_spec(const char *config, const struct rt_opts *o, const char *root)
{
    struct err e = {0};
    const char *roots[1] = {root};
    char *s = rt_spec_build(config, o, "rootfs", root ? roots : NULL, root ? 1 : 0, &e);
    cr_assert_not_null(s, "rt_spec_build: %s", e.msg);
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    free(s);
    cr_assert_not_null(j, "spec is not json: %s", je.text);
    return j;
}

static int
has_str(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return 1;
    }
    return 0;
}

static int
has_ns(json_t *spec, const char *type)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(json_object_get(spec, "linux"), "namespaces"), i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "type")), type) == 0)
            return 1;
    }
    return 0;
}

Test(ocirun_rt, spec_from_image_config, .init = setup_tmp, .fini = teardown_tmp)
{
    make_rootfs(path_join(tmp, "r"));
    struct rt_opts o = {.name = "abcdef0123456789"};
    json_t *s = build_spec(cfgtest_json, &o, path_join(tmp, "r"));
    json_t *p = json_object_get(s, "process");
    json_t *args = json_object_get(p, "args");
    cr_assert_eq(json_array_size(args), 3);
    cr_assert_str_eq(json_string_value(json_array_get(args, 0)), "/bin/sh");
    cr_assert_str_eq(json_string_value(json_array_get(args, 1)), "-c");
    cr_assert_str_eq(json_string_value(json_array_get(args, 2)),
                     "echo hello $GREETING; id -u; id -g; pwd; exit 7");
    json_t *env = json_object_get(p, "env");
    cr_assert(has_str(env, "GREETING=ocirun"));
    cr_assert(has_str(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    cr_assert(has_str(env, "HOME=/home/app"), "HOME from passwd");
    cr_assert(has_str(env, "HOSTNAME=abcdef012345"));
    cr_assert_str_eq(json_string_value(json_object_get(p, "cwd")), "/home/app");
    json_t *u = json_object_get(p, "user");
    cr_assert_eq(json_integer_value(json_object_get(u, "uid")), 1000);
    cr_assert_eq(json_integer_value(json_object_get(u, "gid")), 1000);
    json_t *ag = json_object_get(u, "additionalGids");
    cr_assert_eq(json_array_size(ag), 2, "app is in wheel and staff");
    cr_assert(json_is_true(json_object_get(p, "noNewPrivileges")));
    cr_assert(json_is_false(json_object_get(p, "terminal")));
    json_t *caps = json_object_get(p, "capabilities");
    cr_assert_eq(json_array_size(json_object_get(caps, "bounding")), 14);
    cr_assert(has_str(json_object_get(caps, "bounding"), "CAP_NET_BIND_SERVICE"));
    cr_assert_not(has_str(json_object_get(caps, "bounding"), "CAP_SYS_ADMIN"));
    cr_assert_str_eq(json_string_value(json_object_get(s, "hostname")), "abcdef012345");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(s, "root"), "path")),
                     "rootfs");
    json_t *lx = json_object_get(s, "linux");
    cr_assert(has_ns(s, "pid") && has_ns(s, "mount") && has_ns(s, "uts") && has_ns(s, "ipc") &&
              has_ns(s, "network"));
    cr_assert_not(has_ns(s, "user"));
    cr_assert(has_str(json_object_get(lx, "maskedPaths"), "/proc/kcore"));
    cr_assert(has_str(json_object_get(lx, "readonlyPaths"), "/proc/sys"));
    cr_assert_null(json_object_get(json_object_get(lx, "resources"), "memory"));
    json_t *mounts = json_object_get(s, "mounts");
    int seen = 0;
    size_t i;
    json_t *m;
    json_array_foreach(mounts, i, m)
    {
        const char *d = json_string_value(json_object_get(m, "destination"));
        if (strcmp(d, "/proc") == 0 || strcmp(d, "/dev") == 0 || strcmp(d, "/dev/pts") == 0 ||
            strcmp(d, "/dev/shm") == 0 || strcmp(d, "/sys") == 0)
            seen++;
        if (strcmp(d, "/sys") == 0)
            cr_assert(has_str(json_object_get(m, "options"), "ro"));
        if (strcmp(d, "/dev/pts") == 0)
            cr_assert(has_str(json_object_get(m, "options"), "newinstance"));
    }
    cr_assert_eq(seen, 5);
    json_decref(s);
}

Test(ocirun_rt, spec_options_override_image, .init = setup_tmp, .fini = teardown_tmp)
{
    make_rootfs(path_join(tmp, "r"));
    const char *env[] = {"GREETING=override", "EXTRA=1", NULL};
    const char *argv[] = {"echo", "x", NULL};
    struct rt_opts o = {.name = "c1",
                        .env = env,
                        .argv = argv,
                        .workdir = "/tmp",
                        .user = "app:wheel",
                        .hostname = "box",
                        .memory = 64 << 20,
                        .cpus = 1.5,
                        .pids = 33,
                        .net = RT_NET_HOST,
                        .userns = 1,
                        .tty = 1};
    json_t *s = build_spec(cfgtest_json, &o, path_join(tmp, "r"));
    json_t *p = json_object_get(s, "process");
    json_t *args = json_object_get(p, "args");
    /* CMD ARGS replace Cmd, the Entrypoint stays */
    cr_assert_eq(json_array_size(args), 4);
    cr_assert_str_eq(json_string_value(json_array_get(args, 0)), "/bin/sh");
    cr_assert_str_eq(json_string_value(json_array_get(args, 2)), "echo");
    json_t *e = json_object_get(p, "env");
    cr_assert(has_str(e, "GREETING=override"));
    cr_assert_not(has_str(e, "GREETING=ocirun"));
    cr_assert(has_str(e, "EXTRA=1"));
    cr_assert(has_str(e, "TERM=xterm"));
    cr_assert(json_is_true(json_object_get(p, "terminal")));
    cr_assert_str_eq(json_string_value(json_object_get(p, "cwd")), "/tmp");
    json_t *u = json_object_get(p, "user");
    cr_assert_eq(json_integer_value(json_object_get(u, "uid")), 1000);
    cr_assert_eq(json_integer_value(json_object_get(u, "gid")), 10);
    cr_assert_str_eq(json_string_value(json_object_get(s, "hostname")), "box");
    cr_assert_not(has_ns(s, "network"), "--net host keeps the host network");
    cr_assert(has_ns(s, "user"));
    json_t *lx = json_object_get(s, "linux");
    cr_assert_eq(json_array_size(json_object_get(lx, "uidMappings")), 1);
    json_t *res = json_object_get(lx, "resources");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(res, "memory"), "limit")),
                 64 << 20);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(res, "cpu"), "quota")), 150000);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(res, "cpu"), "period")),
                 100000);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(res, "pids"), "limit")), 33);
    json_decref(s);

    /* --entrypoint replaces Entrypoint and drops the image Cmd (docker) */
    struct rt_opts o2 = {.name = "c2", .entrypoint = "/bin/true"};
    s = build_spec(cfgtest_json, &o2, path_join(tmp, "r"));
    args = json_object_get(json_object_get(s, "process"), "args");
    cr_assert_eq(json_array_size(args), 1);
    cr_assert_str_eq(json_string_value(json_array_get(args, 0)), "/bin/true");
    json_decref(s);

    /* no Env in the image: the default PATH; no User: root with HOME=/root */
    s = build_spec(busybox_json, &o2, path_join(tmp, "r"));
    e = json_object_get(json_object_get(s, "process"), "env");
    cr_assert(has_str(e, "PATH=" RT_DEFAULT_PATH));
    cr_assert(has_str(e, "HOME=/root"));
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(s, "process"), "user"), "uid")),
                 0);
    json_decref(s);
}

Test(ocirun_rt, spec_rejects_empty_command_and_unknown_user, .init = setup_tmp,
     .fini = teardown_tmp)
{
    make_rootfs(path_join(tmp, "r"));
    struct err e = {0};
    const char *roots[1] = {path_join(tmp, "r")};
    char *s = rt_spec_build("{\"config\":{}}", NULL, "rootfs", roots, 1, &e);
    cr_assert_null(s);
    cr_assert(strstr(e.msg, "no command"), "%s", e.msg);
    struct rt_opts o = {.user = "nosuchuser"};
    s = rt_spec_build(busybox_json, &o, "rootfs", roots, 1, &e);
    cr_assert_null(s);
    cr_assert_eq(e.code, ERR_CONFIG);
    cr_assert(strstr(e.msg, "nosuchuser"), "%s", e.msg);
    s = rt_spec_build("{not json", NULL, "rootfs", roots, 1, &e);
    cr_assert_null(s);
}

Test(ocirun_rt, users_resolve_forms, .init = setup_tmp, .fini = teardown_tmp)
{
    make_rootfs(path_join(tmp, "r"));
    const char *roots[1] = {path_join(tmp, "r")};
    struct rt_user u;
    struct err e = {0};
    cr_assert_eq(rt_users_resolve("app", roots, 1, &u, &e), 0, "%s", e.msg);
    cr_assert_eq(u.uid, 1000);
    cr_assert_eq(u.gid, 1000);
    cr_assert_str_eq(u.home, "/home/app");
    cr_assert_eq(u.ngroups, 2);
    cr_assert_eq(u.groups[0], 10);
    cr_assert_eq(u.groups[1], 50);
    cr_assert_eq(rt_users_resolve("1000", roots, 1, &u, &e), 0);
    cr_assert_eq(u.gid, 1000, "primary group from passwd");
    cr_assert_eq(rt_users_resolve("app:staff", roots, 1, &u, &e), 0);
    cr_assert_eq(u.gid, 50);
    cr_assert_eq(rt_users_resolve("1000:77", roots, 1, &u, &e), 0);
    cr_assert_eq(u.uid, 1000);
    cr_assert_eq(u.gid, 77);
    cr_assert_eq(rt_users_resolve("4242", roots, 1, &u, &e), 0, "numeric ids need no entry");
    cr_assert_eq(u.uid, 4242);
    cr_assert_eq(u.gid, 0);
    cr_assert_str_eq(u.home, "/");
    cr_assert_eq(rt_users_resolve("", roots, 1, &u, &e), 0);
    cr_assert_eq(u.uid, 0);
    cr_assert_str_eq(u.home, "/root");
    cr_assert_eq(rt_users_resolve("ghost", roots, 1, &u, &e), -1);
    cr_assert_eq(rt_users_resolve("app:ghosts", roots, 1, &u, &e), -1);
    cr_assert(strstr(e.msg, "ghosts"));
    cr_assert_eq(rt_users_resolve("app", NULL, 0, &u, &e), -1, "no passwd: names are unknown");

    /* a symlinked /etc/passwd is resolved inside the root, not on the host */
    char *r2 = path_join(tmp, "r2");
    rt_mkdir_p(path_join(r2, "etc"), 0755, NULL);
    rt_mkdir_p(path_join(r2, "data"), 0755, NULL);
    put_file(path_join(r2, "data/pw"), "svc:x:321:322::/srv:/bin/sh\n", 0644);
    cr_assert_eq(symlink("/data/pw", path_join(r2, "etc/passwd")), 0);
    const char *roots2[1] = {r2};
    cr_assert_eq(rt_users_resolve("svc", roots2, 1, &u, &e), 0, "%s", e.msg);
    cr_assert_eq(u.uid, 321);
    cr_assert_eq(rt_users_resolve("root", roots2, 1, &u, &e), -1, "host passwd must not leak in");

    /* a whiteout in the top layer hides the lower layer's passwd */
    if (geteuid() == 0) {
        char *top = path_join(tmp, "top");
        rt_mkdir_p(path_join(top, "etc"), 0755, NULL);
        cr_assert_eq(mknod(path_join(top, "etc/passwd"), S_IFCHR | 0600, makedev(0, 0)), 0);
        const char *layers[2] = {top, path_join(tmp, "r")};
        cr_assert_eq(rt_users_resolve("app", layers, 2, &u, &e), -1);
    }
}

/* ---- containers --------------------------------------------------------- */

Test(ocirun_rt, run_echo_hi, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    const char *argv[] = {"echo", "hi", NULL};
    struct rt_opts o = {.name = "echohi", .argv = argv, .rm = 1};
    struct run_result r;
    run("echo", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_str_eq(r.out, "hi\n");
    cr_assert_eq(r.exit_code, 0);
    cr_assert_neq(access(path_join(tmp, "state/containers/echohi"), F_OK), 0,
                  "--rm removes the dir");
}

Test(ocirun_rt, run_cfgtest_semantics, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "layer"));
    const char *lower[1] = {path_join(tmp, "layer")};
    struct rt_rootfs rfs = {.lower = lower, .nlower = 1};
    struct rt_opts o = {.name = "cfgtest", .rm = 1};
    struct run_result r;
    run("cfg", cfgtest_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_str_eq(r.out, "hello ocirun\n1000\n1000\n/home/app\n");
    cr_assert_eq(r.exit_code, 7);
}

Test(ocirun_rt, run_security_defaults, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    /* the host's root disk: a container may create the node, not open it */
    struct stat rst;
    cr_assert_eq(stat("/", &rst), 0);
    char script[2048];
    snprintf(
        script, sizeof(script),
        "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; "
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-rw; "
        "echo keys=$(wc -c < /proc/keys); "
        "ls /dev | tr '\\n' ' '; echo; "
        "echo pid=$$; echo ok > /dev/null && echo devnull; "
        "grep -c ' /sys sysfs ro' /proc/mounts; "
        "mknod /tmp/disk b %u %u && { head -c 1 /tmp/disk >/dev/null 2>&1 && echo disk-readable "
        "|| echo disk-denied; }",
        major(rst.st_dev), minor(rst.st_dev));
    struct rt_opts o = {.name = "secdef", .rm = 1, .argv = argv_sh(script)};
    struct run_result r;
    run("sec", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    /* docker's default set: 0x00000000a80425fb */
    cr_assert(strstr(r.out, "CapBnd:\t00000000a80425fb"), "%s", r.out);
    cr_assert(strstr(r.out, "CapEff:\t00000000a80425fb"), "%s", r.out);
    cr_assert(strstr(r.out, "NoNewPrivs:\t1"), "%s", r.out);
    cr_assert_null(strstr(r.out, "sys-rw"), "/proc/sys must be read-only: %s", r.out);
    /* /proc/keys lists the keyrings on the host; masked it reads empty */
    if (access("/proc/keys", F_OK) == 0)
        cr_assert(strstr(r.out, "keys=0"), "/proc/keys must be masked: %s", r.out);
    static const char *const devs[] = {"null", "zero", "full", "random", "urandom",
                                       "tty",  "pts",  "shm",  "ptmx",   "mqueue"};
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
        char w[32];
        snprintf(w, sizeof(w), " %s ", devs[i]);
        char line[512];
        snprintf(line, sizeof(line), " %s", r.out);
        cr_assert(strstr(line, w), "/dev/%s missing: %s", devs[i], r.out);
    }
    cr_assert(strstr(r.out, "pid=1\n"), "PID 1 in its own pid ns: %s", r.out);
    cr_assert(strstr(r.out, "devnull\n"), "%s", r.out);
    cr_assert(strstr(r.out, "\n1\n"), "/sys mounted read-only: %s", r.out);
    if (access("/sys/fs/cgroup/devices/devices.allow", F_OK) == 0 && major(rst.st_dev) != 0)
        cr_assert(strstr(r.out, "disk-denied"), "device cgroup must deny the disk: %s", r.out);
}

Test(ocirun_rt, run_memory_limit_oom_kills_137, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    /* the shell doubles a string until it is far past the 32 MiB limit */
    struct rt_opts o = {.name = "oomtest",
                        .rm = 1,
                        .memory = 32 << 20,
                        .argv = argv_sh("x=0123456789abcdef; i=0; while [ $i -lt 30 ]; do "
                                        "x=$x$x; i=$((i+1)); done; echo survived")};
    struct run_result r;
    run("oom", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_eq(r.exit_code, 137, "exit %d, out %s", r.exit_code, r.out);
    cr_assert_null(strstr(r.out, "survived"));
}

/* read <hierarchy><path>/<file> for the container whose /proc/self/cgroup
 * text is `cg` (no cgroup ns: the paths are the host's) */
static int
read_cg_file(const char *cg, const char *ctl, const char *file, char *out, size_t len)
{
    char want[32];
    snprintf(want, sizeof(want), ":%s:", ctl);
    const char *l = strstr(cg, want);
    char p[1024];
    if (l) {
        const char *path = l + strlen(want);
        snprintf(p, sizeof(p), "/sys/fs/cgroup/%s%.*s/%s", ctl, (int)strcspn(path, "\n"), path,
                 file);
    } else if ((l = strstr(cg, "0::"))) {
        const char *path = l + 3;
        snprintf(p, sizeof(p), "/sys/fs/cgroup%.*s/%s", (int)strcspn(path, "\n"), path, file);
    } else {
        return -1;
    }
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, len - 1, f);
    out[n] = '\0';
    fclose(f);
    return 0;
}

Test(ocirun_rt, run_limits_written_to_cgroups, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    struct rt_opts o = {.name = "limits",
                        .rm = 1,
                        .memory = 48 << 20,
                        .cpus = 0.5,
                        .pids = 17,
                        .argv = argv_sh("cat /proc/self/cgroup; echo ready; "
                                        "while [ ! -e /tmp/go ]; do sleep 0.05; done")};
    int resfd;
    pid_t pid = start_run("lim", busybox_json, &rfs, &o, &resfd);
    char outp[512], cg[4096] = "";
    snprintf(outp, sizeof(outp), "%s/out-lim", tmp);
    for (int i = 0; i < 600 && !strstr(cg, "ready"); i++) {
        FILE *f = fopen(outp, "r");
        if (f) {
            size_t n = fread(cg, 1, sizeof(cg) - 1, f);
            cg[n] = '\0';
            fclose(f);
        }
        if (!strstr(cg, "ready"))
            usleep(50 * 1000);
    }
    cr_assert(strstr(cg, "ready"), "container did not start: %s", cg);
    char v[256], v2[256];
    int v1 = access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) == 0;
    if (v1 || read_cg_file(cg, "memory", "memory.limit_in_bytes", v, sizeof(v)) == 0) {
        cr_assert_eq(read_cg_file(cg, "memory", "memory.limit_in_bytes", v, sizeof(v)), 0, "%s",
                     cg);
        cr_assert_eq(atoll(v), 48 << 20);
        cr_assert_eq(read_cg_file(cg, "cpu", "cpu.cfs_quota_us", v, sizeof(v)), 0, "%s", cg);
        cr_assert_eq(read_cg_file(cg, "cpu", "cpu.cfs_period_us", v2, sizeof(v2)), 0);
        cr_assert_eq(atoll(v), 50000);
        cr_assert_eq(atoll(v2), 100000);
        cr_assert_eq(read_cg_file(cg, "pids", "pids.max", v, sizeof(v)), 0, "%s", cg);
        cr_assert_eq(atoll(v), 17);
        cr_assert_eq(read_cg_file(cg, "devices", "devices.list", v, sizeof(v)), 0, "%s", cg);
        cr_assert(strstr(v, "c 1:3 rwm") && !strstr(v, "a *:* rwm"), "%s", v);
    } else {
        cr_assert_eq(read_cg_file(cg, "", "memory.max", v, sizeof(v)), 0, "%s", cg);
        cr_assert_eq(atoll(v), 48 << 20);
        cr_assert_eq(read_cg_file(cg, "", "cpu.max", v, sizeof(v)), 0);
        cr_assert_str_eq(v, "50000 100000\n");
        cr_assert_eq(read_cg_file(cg, "", "pids.max", v, sizeof(v)), 0);
        cr_assert_eq(atoll(v), 17);
    }
    put_file(path_join(tmp, "r/tmp/go"), "", 0644);
    struct run_result r;
    finish_run("lim", pid, resfd, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_eq(r.exit_code, 0);
    /* and they are gone */
    cr_assert_neq(read_cg_file(cg, "pids", "pids.max", v, sizeof(v)), 0, "cgroup left behind");
}

Test(ocirun_rt, run_pids_limit_bounds_forks, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    const char *const *argv =
        argv_sh("i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); done; echo all-started");
    /* control: without a limit the 50 sleeps start */
    struct rt_opts o = {.name = "pidsctl", .rm = 1, .argv = argv};
    struct run_result r;
    run("pids0", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert(strstr(r.out, "all-started"), "%s", r.out);
    cr_assert_eq(r.exit_code, 0);

    struct rt_opts o2 = {.name = "pidslim", .rm = 1, .argv = argv, .pids = 20};
    run("pids1", busybox_json, &rfs, &o2, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_null(strstr(r.out, "all-started"), "the 21st process must fail: %s", r.out);
    cr_assert(strstr(r.out, "fork"), "%s", r.out);
    cr_assert_neq(r.exit_code, 0);
}

static void
sigterm_case(const char *name)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    struct rt_opts o = {.name = name,
                        .rm = 1,
                        .argv = argv_sh("trap 'echo got-term; exit 3' TERM; echo ready; "
                                        "while :; do sleep 0.1; done")};
    int resfd;
    pid_t pid = start_run("sig", busybox_json, &rfs, &o, &resfd);
    char outp[512];
    snprintf(outp, sizeof(outp), "%s/out-sig", tmp);
    int ready = 0;
    for (int i = 0; i < 600 && !ready; i++) {
        char buf[256] = "";
        FILE *f = fopen(outp, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof(buf) - 1, f);
            buf[n] = '\0';
            fclose(f);
        }
        ready = strstr(buf, "ready") != NULL;
        if (!ready)
            usleep(50 * 1000);
    }
    if (!ready) {
        int st = 0;
        pid_t w = waitpid(pid, &st, WNOHANG);
        char buf[300] = "";
        fcntl(resfd, F_SETFL, O_NONBLOCK);
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "ps -o pid,ppid,stat,wchan:32,args -g %d >&2; cat /proc/%d/stack >&2",
                 (int)getpgrp(), (int)pid);
        if (system(cmd)) {
        }
        ssize_t n = read(resfd, buf, sizeof(buf) - 1);
        if (n > 0)
            buf[n] = '\0';
        cr_assert(ready, "container did not start (helper %s, status 0x%x, result '%s')",
                  w == pid ? "gone" : "running", st, buf);
    }
    cr_assert_eq(kill(pid, SIGTERM), 0);
    struct run_result r;
    finish_run("sig", pid, resfd, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert(strstr(r.out, "got-term"), "%s", r.out);
    cr_assert_eq(r.exit_code, 3);
}

Test(ocirun_rt, run_sigterm_reaches_pid1, .init = setup_tmp, .fini = teardown_tmp)
{
    sigterm_case("sigterm");
}

Test(ocirun_rt, run_sigterm_reaches_pid1_with_caller_threads, .init = setup_tmp,
     .fini = teardown_tmp)
{
    helper_thread = 1;
    sigterm_case("sigterm-threads");
}

Test(ocirun_rt, run_signal_exit_code_is_128_plus_sig, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    struct rt_opts o = {.name = "selfkill", .rm = 1, .argv = argv_sh("kill -USR1 $$; sleep 5")};
    struct run_result r;
    /* PID 1 ignores signals it has no handler for, except from an ancestor ns:
     * USR1 sent by itself is ignored, so the shell then exits normally */
    run("usr1", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_eq(r.exit_code, 0);
    /* a child of PID 1 killed by a signal: sh reports 128+sig */
    struct rt_opts o2 = {
        .name = "childkill", .rm = 1, .argv = argv_sh("sh -c 'kill -TERM $$'; exit $?")};
    run("term", busybox_json, &rfs, &o2, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_eq(r.exit_code, 143);
}

static int
count_ifaces(const char *procnetdev)
{
    int n = 0;
    for (const char *p = procnetdev; (p = strchr(p, ':')); p++)
        n++;
    return n;
}

Test(ocirun_rt, run_net_none_has_only_lo_up, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    struct rt_opts o = {.name = "netnone",
                        .rm = 1,
                        .argv = argv_sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
                                        "ip link show lo")};
    struct run_result r;
    run("net", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert(strncmp(r.out, "lo\n", 3) == 0, "%s", r.out);
    cr_assert(strstr(r.out, "LOOPBACK,UP"), "lo must be up: %s", r.out);
    cr_assert_null(strstr(r.out, "eth"), "%s", r.out);

    /* --net host sees the host's interfaces */
    FILE *f = fopen("/proc/net/dev", "r");
    char host[4096];
    size_t n = fread(host, 1, sizeof(host) - 1, f);
    host[n] = '\0';
    fclose(f);
    struct rt_opts o2 = {
        .name = "nethost", .rm = 1, .net = RT_NET_HOST, .argv = argv_sh("cat /proc/net/dev")};
    run("nethost", busybox_json, &rfs, &o2, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_eq(count_ifaces(r.out), count_ifaces(host), "%s", r.out);
}

Test(ocirun_rt, run_hostname_set, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    struct rt_opts o = {
        .name = "hn", .rm = 1, .hostname = "box-one", .argv = argv_sh("hostname; echo $HOSTNAME")};
    struct run_result r;
    run("hn", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_str_eq(r.out, "box-one\nbox-one\n");
    struct rt_opts o2 = {.name = "longcontainername", .rm = 1, .argv = argv_sh("hostname")};
    run("hn2", busybox_json, &rfs, &o2, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_str_eq(r.out, "longcontaine\n", "default: the id's first 12 chars");
}

/* bottom: the busybox rootfs + /etc/hideme, /etc/keep, /opt/old/f;
 * top: overlay whiteout for /etc/hideme, /etc/newfile, opaque-free */
static void
make_layers(const char **lower)
{
    char bot[512], top[512];
    snprintf(bot, sizeof(bot), "%s/bottom", tmp);
    snprintf(top, sizeof(top), "%s/top", tmp);
    make_rootfs(bot);
    put_file(path_join(bot, "etc/hideme"), "secret\n", 0644);
    put_file(path_join(bot, "etc/keep"), "keep\n", 0644);
    rt_mkdir_p(path_join(top, "etc"), 0755, NULL);
    cr_assert_eq(mknod(path_join(top, "etc/hideme"), S_IFCHR | 0600, makedev(0, 0)), 0);
    put_file(path_join(top, "etc/newfile"), "new\n", 0640);
    lower[0] = strdup(top);
    lower[1] = strdup(bot);
}

static const char *layers_script =
    "ls /etc | tr '\\n' ' '; echo; cat /etc/keep; cat /etc/newfile 2>/dev/null || echo denied; "
    "cat /etc/hideme 2>/dev/null || echo hidden; hostname; id; "
    "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; echo $PATH";

Test(ocirun_rt, run_overlay_two_layers_whiteout, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    const char *lower[2];
    make_layers(lower);
    struct rt_rootfs rfs = {.lower = lower, .nlower = 2};
    struct rt_opts o = {.name = "ovl",
                        .rm = 0,
                        .argv = argv_sh("cat /etc/keep /etc/newfile; "
                                        "cat /etc/hideme 2>/dev/null || echo hidden; "
                                        "echo written > /etc/added; rm /etc/keep")};
    struct run_result r;
    run("ovl", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_str_eq(r.out, "keep\nnew\nhidden\n");
    cr_assert_eq(r.exit_code, 0);
    /* writes went to the container's upper dir, the layers are untouched */
    cr_assert_eq(access(path_join(tmp, "state/containers/ovl/upper/etc/added"), F_OK), 0);
    cr_assert_eq(access(path_join(tmp, "bottom/etc/keep"), F_OK), 0);
    cr_assert_neq(access(path_join(tmp, "bottom/etc/added"), F_OK), 0);
    cr_assert_neq(access(path_join(tmp, "top/etc/added"), F_OK), 0);
    cr_assert_eq(access(path_join(tmp, "state/containers/ovl/config.json"), F_OK), 0);
    /* the same name again: refused while its dir exists */
    run("ovl2", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.err, "already exists"), "%s", r.err);
    free((void *)lower[0]);
    free((void *)lower[1]);
}

Test(ocirun_rt, run_overlay_opaque_dir_with_and_without_userns, .init = setup_tmp,
     .fini = teardown_tmp)
{
    need_root();
    char bot[512], top[512];
    snprintf(bot, sizeof(bot), "%s/bottom", tmp);
    snprintf(top, sizeof(top), "%s/top", tmp);
    make_rootfs(bot);
    rt_mkdir_p(path_join(bot, "opq"), 0755, NULL);
    put_file(path_join(bot, "opq/old"), "old\n", 0644);
    rt_mkdir_p(path_join(top, "opq"), 0755, NULL);
    put_file(path_join(top, "opq/new"), "new\n", 0644);
    /* the pull side marks opaque directories the overlayfs way */
    cr_assert_eq(setxattr(path_join(top, "opq"), "trusted.overlay.opaque", "y", 1, 0), 0,
                 "setxattr: %s", strerror(errno));
    const char *lower[2] = {top, bot};
    struct rt_rootfs rfs = {.lower = lower, .nlower = 2};
    struct rt_opts o = {.name = "opq", .rm = 1, .argv = argv_sh("ls /opq")};
    struct run_result r;
    run("opq", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_str_eq(r.out, "new\n");
    /* in a user ns the overlay is still made in the initial ns (trusted.*
     * xattrs are only honoured there) */
    struct rt_opts o2 = {.name = "opq-userns",
                         .rm = 1,
                         .userns = 1,
                         .argv = argv_sh("ls /opq; echo x > /opq/w && echo wrote")};
    run("opq2", busybox_json, &rfs, &o2, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert_str_eq(r.out, "new\nwrote\n");
    cr_assert_neq(access(path_join(top, "opq/w"), F_OK), 0, "layers stay untouched");
}

Test(ocirun_rt, run_start_failure_cleans_up, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    const char *argv[] = {"no-such-binary", NULL};
    struct rt_opts o = {.name = "nobin", .argv = argv, .memory = 64 << 20};
    struct run_result r;
    run("nobin", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, -1);
    cr_assert(strstr(r.err, "no-such-binary"), "%s", r.err);
    cr_assert_neq(access(path_join(tmp, "state/containers/nobin"), F_OK), 0);
    /* no cgroup left behind: look where rt_run puts it (v1: under our own
     * group of each hierarchy; v2: <root>/ocirun-lite) */
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1024], p[1200];
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        if (strcmp(c1 + 1, "memory") == 0)
            snprintf(p, sizeof(p), "/sys/fs/cgroup/memory%s/ocirun-lite/nobin",
                     strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1);
        else if (!c1[1])
            snprintf(p, sizeof(p), "/sys/fs/cgroup/ocirun-lite/nobin");
        else
            continue;
        cr_assert_neq(access(p, F_OK), 0, "%s left behind", p);
    }
    if (f)
        fclose(f);
}

Test(ocirun_rt, run_tty_relays_output, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    struct rt_opts o = {.name = "tty",
                        .rm = 1,
                        .tty = 1,
                        .user = "app",
                        .argv = argv_sh("tty; [ -t 0 ] && echo stdin-is-tty; echo $TERM; "
                                        "echo owner=$(stat -c %u $(tty)); exit 4")};
    struct run_result r;
    run("tty", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert(strstr(r.out, "/dev/pts/0"), "%s", r.out);
    cr_assert(strstr(r.out, "stdin-is-tty"), "%s", r.out);
    cr_assert(strstr(r.out, "xterm"), "%s", r.out);
    cr_assert(strstr(r.out, "owner=1000"), "the pty belongs to the user: %s", r.out);
    cr_assert_eq(r.exit_code, 4);
}

Test(ocirun_rt, run_userns_maps_root, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    if (access("/proc/self/ns/user", F_OK) != 0)
        cr_skip_test("kernel without user namespaces");
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    struct rt_opts o = {.name = "userns",
                        .rm = 1,
                        .userns = 1,
                        .user = "app",
                        .argv = argv_sh("cat /proc/self/uid_map | tr -s ' '; id -u; "
                                        "cat /dev/null && echo devok; ls /dev/pts")};
    struct run_result r;
    run("userns", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert(strstr(r.out, " 0 0 65536\n1000\ndevok\n"), "%s", r.out);
}

Test(ocirun_rt, run_userns_host_net_keeps_sys_read_only, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    if (access("/proc/self/ns/user", F_OK) != 0)
        cr_skip_test("kernel without user namespaces");
    make_rootfs(path_join(tmp, "r"));
    struct rt_rootfs rfs = {.dir = path_join(tmp, "r")};
    /* sysfs cannot be mounted for the host's network ns from a user ns: the
     * host's /sys is bound instead, and every mount under it must be read-only */
    struct rt_opts o = {.name = "usernshost",
                        .rm = 1,
                        .userns = 1,
                        .net = RT_NET_HOST,
                        .argv = argv_sh("grep -c ' /sys[^ ]* [^ ]* rw' /proc/mounts; "
                                        "grep -c ' /sys' /proc/mounts; "
                                        "ls /sys/class/net | grep -qx lo && echo has-lo")};
    struct run_result r;
    run("usernshost", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert(strncmp(r.out, "0\n", 2) == 0, "a writable mount under /sys: %s", r.out);
    cr_assert(strstr(r.out, "has-lo"), "%s", r.out);
}

/* ---- bundle --------------------------------------------------------------- */

Test(ocirun_rt, bundle_copy_applies_whiteouts, .init = setup_tmp, .fini = teardown_tmp)
{
    if (geteuid() != 0)
        cr_skip_test("making whiteout devices needs root");
    const char *lower[2];
    make_layers(lower);
    struct rt_rootfs rfs = {.lower = lower, .nlower = 2};
    struct rt_opts o = {.name = "b1", .user = "app"};
    struct err e = {0};
    char *b = path_join(tmp, "bundle");
    cr_assert_eq(rt_bundle_write(b, busybox_json, &rfs, &o, &e), 0, "%s", e.msg);
    cr_assert_eq(access(path_join(b, "rootfs/etc/keep"), F_OK), 0);
    cr_assert_eq(access(path_join(b, "rootfs/etc/newfile"), F_OK), 0);
    cr_assert_neq(access(path_join(b, "rootfs/etc/hideme"), F_OK), 0, "whiteout applied");
    struct stat st;
    cr_assert_eq(stat(path_join(b, "rootfs/etc/newfile"), &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0640);
    cr_assert_eq(lstat(path_join(b, "rootfs/bin/sh"), &st), 0);
    cr_assert(S_ISLNK(st.st_mode));
    cr_assert_eq(stat(path_join(b, "rootfs/tmp"), &st), 0);
    cr_assert_eq(st.st_mode & 07777, 01777);
    json_t *s = json_load_file(path_join(b, "config.json"), 0, NULL);
    cr_assert_not_null(s);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(s, "process"), "user"), "uid")),
                 1000, "user resolved through the copied rootfs");
    json_decref(s);
    free((void *)lower[0]);
    free((void *)lower[1]);
}

Test(ocirun_rt, bundle_runs_under_runc_like_rt_run, .init = setup_tmp, .fini = teardown_tmp)
{
    need_root();
    if (system("runc --version >/dev/null 2>&1") != 0)
        cr_skip_test("runc is not installed");
    const char *lower[2];
    make_layers(lower);
    struct rt_rootfs rfs = {.lower = lower, .nlower = 2};
    struct rt_opts o = {.name = "same",
                        .rm = 1,
                        .hostname = "samebox",
                        .user = "app",
                        .argv = argv_sh(layers_script)};
    struct run_result r;
    run("rt", busybox_json, &rfs, &o, &r);
    cr_assert_eq(r.rc, 0, "rt_run: %s", r.err);
    cr_assert(strstr(r.out, "hidden"), "%s", r.out);

    struct err e = {0};
    char *b = path_join(tmp, "bundle");
    cr_assert_eq(rt_bundle_write(b, busybox_json, &rfs, &o, &e), 0, "%s", e.msg);
    char cmd[1024];
    char id[64];
    snprintf(id, sizeof(id), "ocirun-rt-test-%d", (int)getpid());
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && runc --root '%s/runc-state' run --bundle '%s' %s </dev/null "
             ">'%s/runc-out' 2>&1",
             tmp, tmp, b, id, tmp);
    int st = system(cmd);
    char out[16384] = "";
    FILE *f = fopen(path_join(tmp, "runc-out"), "r");
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "runc failed (%d): %s", st, out);
    cr_assert_str_eq(out, r.out, "runc output:\n%s\nrt_run output:\n%s", out, r.out);
    free((void *)lower[0]);
    free((void *)lower[1]);
}
