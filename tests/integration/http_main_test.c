/* http_main_test.c - the ocireg command line (server/main.c): version, help,
 * unknown commands, config errors, serve with --ready-file and -c, SIGTERM. */
#include <criterion/criterion.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/testsrv.h"

#include "common/banned.h"

static const char *
bin(void)
{
    const char *b = getenv("OCIREG_BIN");
    return b && *b ? b : "build/ocireg";
}

/* run bin with args (NULL-terminated), stdout/stderr into out/err files; returns
 * the exit code (or -1) */
static int
run(const char *const *args, char *out, size_t ocap, char *errb, size_t ecap)
{
    char of[] = "/tmp/http_main_out.XXXXXX", ef[] = "/tmp/http_main_err.XXXXXX";
    int ofd = mkstemp(of), efd = mkstemp(ef);
    cr_assert(ofd >= 0 && efd >= 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        const char *argv[16];
        size_t n = 0;
        argv[n++] = bin();
        for (size_t i = 0; args[i] && n < 15; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(bin(), (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ssize_t r = pread(ofd, out, ocap - 1, 0);
    out[r > 0 ? r : 0] = '\0';
    r = pread(efd, errb, ecap - 1, 0);
    errb[r > 0 ? r : 0] = '\0';
    close(ofd);
    close(efd);
    unlink(of);
    unlink(ef);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(http_main, version_and_help)
{
    char out[4096], err[4096];
    const char *v[] = {"version", NULL};
    cr_assert_eq(run(v, out, sizeof(out), err, sizeof(err)), 0);
    cr_assert_eq(strncmp(out, "ocireg ", 7), 0, "%s", out);
    const char *h[] = {"--help", NULL};
    cr_assert_eq(run(h, out, sizeof(out), err, sizeof(err)), 0);
    cr_assert_not_null(strstr(out, "serve [-c FILE] [--ready-file PATH]"), "%s", out);
    const char *h2[] = {"help", NULL};
    cr_assert_eq(run(h2, out, sizeof(out), err, sizeof(err)), 0);
    cr_assert_not_null(strstr(out, "usage: ocireg"));
}

Test(http_main, unknown_command_prints_usage_and_exits_2)
{
    char out[4096], err[4096];
    const char *a[] = {"frobnicate", NULL};
    cr_assert_eq(run(a, out, sizeof(out), err, sizeof(err)), 2);
    cr_assert_not_null(strstr(err, "usage: ocireg"), "%s", err);
    cr_assert_str_eq(out, "");
    const char *none[] = {NULL};
    cr_assert_eq(run(none, out, sizeof(out), err, sizeof(err)), 2);
    const char *badopt[] = {"serve", "--nope", NULL};
    cr_assert_eq(run(badopt, out, sizeof(out), err, sizeof(err)), 2);
}

Test(http_main, bad_config_exits_1_with_file_and_line)
{
    char conf[] = "/tmp/http_main_conf.XXXXXX";
    int fd = mkstemp(conf);
    const char *text = "[server]\nlisten = 127.0.0.1:0\nbogus = 1\n";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char out[4096], err[4096];
    const char *a[] = {"serve", "-c", conf, NULL};
    cr_assert_eq(run(a, out, sizeof(out), err, sizeof(err)), 1);
    char want[128];
    snprintf(want, sizeof(want), "%s:3: unknown key 'bogus' in [server]", conf);
    cr_assert_not_null(strstr(err, want), "%s", err);
    unlink(conf);
}

static int
exited_zero(int st)
{
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

Test(http_main, serve_ready_file_requests_and_sigterm_exit_0)
{
    struct testsrv s;
    cr_assert_eq(testsrv_start(&s, NULL, NULL), 0);
    struct tresp r;
    cr_assert_eq(treq(&s, "GET", "/v2/", NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    char v[64];
    cr_assert_not_null(tresp_header(&r, "Docker-Distribution-API-Version", v, sizeof(v)));
    cr_assert_str_eq(v, "registry/2.0");
    tresp_free(&r);
    int st = testsrv_stop(&s);
    cr_assert(exited_zero(st), "exit status %d", st);
    /* the log names the address it listened on */
    FILE *f = fopen(s.log, "r");
    char line[512], want[64];
    int found = 0;
    snprintf(want, sizeof(want), "listening on 127.0.0.1:%d", s.port);
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, want))
            found = 1;
    if (f)
        fclose(f);
    cr_assert(found, "no '%s' in %s", want, s.log);
    testsrv_cleanup(&s);
    unlink(s.log);
}

/* wait up to 10 s for the server's ready file; line gets its first line ("" if
 * it never came) */
static void
wait_ready_line(const char *ready, char *line, size_t cap)
{
    line[0] = '\0';
    for (int i = 0; i < 1000 && !line[0]; i++) {
        FILE *rf = fopen(ready, "r");
        if (rf) {
            if (!fgets(line, (int)cap, rf))
                line[0] = '\0';
            fclose(rf);
        }
        if (!line[0])
            usleep(10000);
    }
}

Test(http_main, config_file_is_read_and_env_wins)
{
    char root[] = "/tmp/http_main_root.XXXXXX";
    cr_assert_not_null(mkdtemp(root));
    char conf[512], ready[512];
    snprintf(conf, sizeof(conf), "%s.conf", root);
    snprintf(ready, sizeof(ready), "%s.ready", root);
    FILE *f = fopen(conf, "w");
    /* the file asks for a fixed port; the environment overrides it with 0 */
    fprintf(f,
            "[server]\nlisten = 127.0.0.1:1\nworkers = 1\n[storage]\nroot = %s\n"
            "[log]\nformat = json\n",
            root);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        setenv("OCIREG_SERVER_LISTEN", "127.0.0.1:0", 1);
        unsetenv("OCIREG_STORAGE_ROOT");
        execl(bin(), bin(), "serve", "-c", conf, "--ready-file", ready, (char *)NULL);
        _exit(127);
    }
    char line[128];
    wait_ready_line(ready, line, sizeof(line));
    cr_assert_eq(strncmp(line, "127.0.0.1:", 10), 0, "ready file: '%s'", line);
    cr_assert_gt(atoi(line + 10), 1);
    cr_assert_eq(line[strlen(line) - 1], '\n');
    /* the storage root from the file was used */
    struct stat sb;
    char db[600];
    snprintf(db, sizeof(db), "%s/meta.db", root);
    for (int i = 0; i < 100 && stat(db, &sb) != 0; i++)
        usleep(10000);
    cr_assert_eq(stat(db, &sb), 0, "no %s", db);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(exited_zero(st), "exit status %d", st);
    unlink(conf);
    unlink(ready);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

/* ---- resource limits ---- */

/* start the binary with RLIMIT_NOFILE lowered to nofile (soft and hard, so its
 * raise to the hard limit changes nothing); stderr into log. Returns the pid and
 * the port in *port. */
static pid_t
spawn_limited(rlim_t nofile, const char *root, const char *log, int *port)
{
    char ready[600];
    snprintf(ready, sizeof(ready), "%s.ready", root);
    unlink(ready);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        close(fd);
        struct rlimit rl = {nofile, nofile};
        setrlimit(RLIMIT_NOFILE, &rl);
        setenv("OCIREG_SERVER_LISTEN", "127.0.0.1:0", 1);
        setenv("OCIREG_SERVER_WORKERS", "2", 1);
        setenv("OCIREG_STORAGE_ROOT", root, 1);
        setenv("OCIREG_STORAGE_FSYNC", "false", 1);
        setenv("OCIREG_LOG_LEVEL", "debug", 1); /* "worker N: accepting" */
        execl(bin(), bin(), "serve", "--ready-file", ready, (char *)NULL);
        _exit(127);
    }
    char line[128];
    wait_ready_line(ready, line, sizeof(line));
    cr_assert_eq(strncmp(line, "127.0.0.1:", 10), 0, "ready file: '%s'", line);
    *port = atoi(line + 10);
    unlink(ready);
    return pid;
}

static int
count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/* poll the log until it holds `want` lines with needle; the count (60 s: a
 * guard against a hang only) */
static int
wait_lines(const char *path, const char *needle, int want)
{
    int n = 0;
    for (int i = 0; i < 6000 && (n = count_lines(path, needle)) < want; i++)
        usleep(10000);
    return n;
}

static int
connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

Test(http_main, out_of_descriptors_pauses_accept_instead_of_spinning)
{
    char root[] = "/tmp/http_main_fd.XXXXXX";
    cr_assert_not_null(mkdtemp(root));
    char log[600];
    snprintf(log, sizeof(log), "%s.log", root);
    int port = 0;
    pid_t pid = spawn_limited(40, root, log, &port);
    /* the clamp is logged at start */
    int clamp_lines = count_lines(log, "max_connections lowered from 10000 to 8");
    /* the ready file is written before the workers run: wait until both have
     * opened their event loop and storage handle before the descriptors run out */
    int started = wait_lines(log, ": accepting", 2);

    enum { NC = 100 };
    int fds[NC], nfd = 0;
    for (int i = 0; i < NC; i++) {
        fds[i] = connect_port(port); /* the backlog takes them all */
        if (fds[i] >= 0)
            nfd++;
    }
    int lines = wait_lines(log, "out of file descriptors", 1);
    int paused = count_lines(log, "accepting paused for");

    /* once the descriptors are back the server accepts again */
    for (int i = 0; i < NC; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    int ok = 0;
    for (int i = 0; i < 300 && !ok; i++) {
        int fd = connect_port(port);
        if (fd >= 0) {
            const char req[] = "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            char buf[512] = "";
            if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) > 0) {
                struct timeval tv = {2, 0};
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
                ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
                if (n > 12 && strncmp(buf, "HTTP/1.1 200", 12) == 0)
                    ok = 1;
            }
            close(fd);
        }
        if (!ok)
            usleep(100000);
    }
    /* the server is stopped (by its pid) before anything is asserted */
    kill(pid, SIGTERM);
    int st = -1;
    for (int i = 0; i < 500 && waitpid(pid, &st, WNOHANG) != pid; i++)
        usleep(10000);
    if (!WIFEXITED(st) && !WIFSIGNALED(st)) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root, log);

    cr_assert_eq(started, 2, "%d of 2 workers started; log %s", started, log);
    cr_assert_eq(nfd, NC, "only %d of %d connections", nfd, NC);
    cr_assert_eq(clamp_lines, 1, "no clamp line in %s", log);
    cr_assert_geq(lines, 1, "EMFILE never hit; log %s", log);
    /* before: a busy loop on the listening socket, one line per failed accept.
     * How little CPU the pause costs is a figure, not asserted here. */
    cr_assert_eq(paused, lines, "EMFILE without a pause of accepting; log %s", log);
    cr_assert(ok, "server did not serve /v2/ after descriptors were freed");
    cr_assert(exited_zero(st), "exit status %d", st);
    cr_assert_eq(system(cmd), 0);
}

/* ---- the maintenance thread ---- */

Test(http_main, idle_upload_sessions_expire)
{
    struct testsrv s;
    const char *env[] = {"OCIREG_STORAGE_UPLOAD_EXPIRY=1s", NULL};
    cr_assert_eq(testsrv_start(&s, NULL, env), 0);
    struct tresp r;
    cr_assert_eq(treq(&s, "POST", "/v2/maint/test/blobs/uploads/", NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 202);
    char loc[512];
    cr_assert_not_null(tresp_header(&r, "Location", loc, sizeof(loc)));
    tresp_free(&r);
    /* a fresh session is there */
    cr_assert_eq(treq(&s, "GET", loc, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 204, "status %ld", r.status);
    tresp_free(&r);
    /* idle for more than 1 s, checked every 100 ms: gone within a few seconds
     * (60 s: a guard against a hang only) */
    long status = 0;
    for (int i = 0; i < 600; i++) {
        usleep(100000);
        cr_assert_eq(treq(&s, "GET", loc, NULL, NULL, 0, &r), 0);
        status = r.status;
        tresp_free(&r);
        if (status == 404)
            break;
    }
    cr_assert_eq(status, 404, "upload session still there after 60 s");
    cr_assert_geq(count_lines(s.log, "expired 1 upload session"), 1);
    int st = testsrv_stop(&s);
    cr_assert(exited_zero(st), "exit status %d", st);
    testsrv_cleanup(&s);
    unlink(s.log);
}

Test(http_main, maintenance_thread_stops_promptly_on_sigterm)
{
    /* default expiry: the thread sleeps 60 s between rounds; SIGTERM must not
     * wait for that */
    struct testsrv s;
    cr_assert_eq(testsrv_start(&s, NULL, NULL), 0);
    /* logged once the thread runs */
    cr_assert_eq(wait_lines(s.log, "checked every 60000 ms", 1), 1, "log %s", s.log);
    /* testsrv_stop sends SIGKILL after 5 s, far less than the thread's 60 s
     * sleep: a zero exit status is the server stopping without waiting it out */
    int st = testsrv_stop(&s);
    cr_assert(exited_zero(st), "exit status %d", st);
    testsrv_cleanup(&s);
    unlink(s.log);
}

/* ---- [storage] limits reach the storage layer ---- */

Test(http_main, storage_limits_from_the_environment_are_applied)
{
    struct testsrv s;
    const char *env[] = {"OCIREG_STORAGE_MAX_UPLOADS_PER_REPO=2", NULL};
    cr_assert_eq(testsrv_start(&s, NULL, env), 0);
    long st3 = 0, other = 0;
    struct tresp r;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(treq(&s, "POST", "/v2/lim/one/blobs/uploads/", NULL, NULL, 0, &r), 0);
        if (i < 2)
            cr_assert_eq(r.status, 202, "upload %d: %ld", i, r.status);
        else
            st3 = r.status;
        tresp_free(&r);
    }
    cr_assert_eq(treq(&s, "POST", "/v2/lim/two/blobs/uploads/", NULL, NULL, 0, &r), 0);
    other = r.status;
    tresp_free(&r);
    int st = testsrv_stop(&s);
    testsrv_cleanup(&s);
    unlink(s.log);
    cr_assert_eq(st3, 429, "third upload in one repository: %ld", st3);
    cr_assert_eq(other, 202, "another repository: %ld", other);
    cr_assert(exited_zero(st), "exit status %d", st);
}

/* ---- [storage] io reaches the connection layer ---- */

static void
blob_roundtrip_with_io2(const char *io_env, const char *want_log, const char *want_log2)
{
    struct testsrv s;
    const char *env[] = {io_env, NULL};
    cr_assert_eq(testsrv_start(&s, NULL, env), 0);
    size_t n = 5 * 1024 * 1024 + 3;
    char *blob = malloc(n);
    for (size_t i = 0; i < n; i++)
        blob[i] = (char)(i * 13 + i / 1000);
    char dg[80], path[200];
    long ps = tpush_blob(&s, "io/test", blob, n, dg);
    snprintf(path, sizeof(path), "/v2/io/test/blobs/%s", dg);
    struct tresp r = {0}, rr = {0};
    int rc1 = treq(&s, "GET", path, NULL, NULL, 0, &r);
    const char *range[] = {"Range: bytes=1000-2999999", NULL};
    int rc2 = treq(&s, "GET", path, range, NULL, 0, &rr);
    int st = testsrv_stop(&s);
    int lines = count_lines(s.log, want_log);
    int lines2 = want_log2 ? count_lines(s.log, want_log2) : 1;
    testsrv_cleanup(&s);
    unlink(s.log);
    cr_assert_eq(ps, 201);
    cr_assert_eq(rc1, 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, n);
    cr_assert_eq(memcmp(r.body, blob, n), 0);
    cr_assert_eq(rc2, 0);
    cr_assert_eq(rr.status, 206);
    cr_assert_eq(rr.len, 2999000);
    cr_assert_eq(memcmp(rr.body, blob + 1000, rr.len), 0);
    cr_assert_eq(lines, 1, "no '%s' line", want_log);
    cr_assert_eq(lines2, 1, "no '%s' line", want_log2);
    cr_assert(exited_zero(st), "exit status %d", st);
    tresp_free(&r);
    tresp_free(&rr);
    free(blob);
}

static void
blob_roundtrip_with_io(const char *io_env, const char *want_log)
{
    blob_roundtrip_with_io2(io_env, want_log, NULL);
}

Test(http_main, blob_get_with_io_uring)
{
    blob_roundtrip_with_io("OCIREG_STORAGE_IO=uring", "file replies: io_uring splice (io = uring)");
}

Test(http_main, blob_get_with_io_posix)
{
    blob_roundtrip_with_io("OCIREG_STORAGE_IO=posix", "file replies: sendfile (io = posix)");
}

/* io = uring where io_uring is forbidden (a seccomp policy, as in many container
 * runtimes): the server starts, says so once per path, and serves through
 * sendfile and pwrite. Criterion runs each test in its own process, so the
 * filter (inherited by the server it starts) stays within this test. */
Test(http_main, io_uring_forbidden_by_seccomp_falls_back_to_posix)
{
#if defined(__x86_64__)
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "seccomp: %s",
                 strerror(errno));
    cr_assert_eq(syscall(__NR_io_uring_setup, 4, NULL), -1);
    cr_assert_eq(errno, EPERM, "the filter denies io_uring_setup");
    blob_roundtrip_with_io2("OCIREG_STORAGE_IO=uring",
                            "file replies: sendfile (io = uring, but io_uring is unavailable",
                            "upload writes: pwrite (io = uring, but io_uring is unavailable");
#else
    cr_skip_test("the seccomp filter here is written for x86_64");
#endif
}
