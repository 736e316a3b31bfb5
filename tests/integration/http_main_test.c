/* http_main_test.c - the ocireg command line (server/main.c): version, help,
 * unknown commands, config errors, serve with --ready-file and -c, SIGTERM. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    char line[128] = "";
    for (int i = 0; i < 1000 && !line[0]; i++) {
        FILE *rf = fopen(ready, "r");
        if (rf) {
            if (!fgets(line, sizeof(line), rf))
                line[0] = '\0';
            fclose(rf);
        }
        if (!line[0])
            usleep(10000);
    }
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
