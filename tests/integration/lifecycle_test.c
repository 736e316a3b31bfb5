/* lifecycle_test.c - signals and configuration of a running server
 * (docs/operations.md): SIGTERM drains (an upload in progress finishes, new
 * connections are refused, [server] drain_timeout cuts what stalls, exit 0),
 * SIGHUP reloads registry.conf all or nothing (log level, htpasswd and rules,
 * read_only; a broken file keeps the old configuration and names file:line),
 * and `ocireg check-config`. Every wait is on a condition (a log line, a
 * file's size, a refused connection, the process's exit) with a deadline. */
#include <criterion/criterion.h>
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/integ_util.h"
#include "tests/lib/testpki.h"
#include "tests/lib/testsrv.h"

static struct testsrv S;
static char dir[64];  /* mkdtemp: the config file and what it names */
static char conf[128];

static void
write_file(const char *path, const char *text)
{
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "%s: %s", tmp, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0);
}

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ocireg-life.XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(conf, sizeof(conf), "%s/registry.conf", dir);
    memset(&S, 0, sizeof(S));
    S.pid = -1;
}

static void
teardown(void)
{
    testsrv_cleanup(&S);
    integ_rm_rf(dir);
}

static void
start(const char *text)
{
    write_file(conf, text);
    cr_assert_eq(testsrv_start_conf(&S, NULL, conf, NULL), 0);
}

/* 1 when the server's log holds needle within ms (polled: a condition) */
static int
log_has(const char *needle, int ms)
{
    int64_t end = integ_now_ms() + ms;
    do {
        FILE *f = fopen(S.log, "r");
        if (f) {
            char line[4096];
            int found = 0;
            while (!found && fgets(line, sizeof(line), f))
                found = strstr(line, needle) != NULL;
            fclose(f);
            if (found)
                return 1;
        }
        integ_sleep_ms(10);
    } while (integ_now_ms() < end);
    return 0;
}

static int
count_in_log(const char *needle)
{
    FILE *f = fopen(S.log, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* reload with text and wait for the reload's outcome line number k+1 */
static void
reload(const char *text, const char *outcome)
{
    int before = count_in_log(outcome);
    write_file(conf, text);
    cr_assert_eq(kill(S.pid, SIGHUP), 0);
    int64_t end = integ_now_ms() + 10000;
    while (count_in_log(outcome) <= before && integ_now_ms() < end)
        integ_sleep_ms(10);
    cr_assert_gt(count_in_log(outcome), before, "no '%s' after SIGHUP; log %s", outcome, S.log);
}

/* the exit status within ms, or -1 (the process still runs) */
static int
exit_status(int ms)
{
    int64_t end = integ_now_ms() + ms;
    do {
        int st;
        pid_t p = waitpid(S.pid, &st, WNOHANG);
        if (p == S.pid) {
            S.pid = -1;
            return st;
        }
        integ_sleep_ms(10);
    } while (integ_now_ms() < end);
    return -1;
}

static int
connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int se = errno;
        close(fd);
        errno = se;
        return -1;
    }
    return fd;
}

/* 1 once a new connection is refused (the listening sockets are closed) */
static int
refused_within(int ms)
{
    int64_t end = integ_now_ms() + ms;
    do {
        int fd = connect_port(S.port);
        if (fd < 0 && errno == ECONNREFUSED)
            return 1;
        if (fd >= 0)
            close(fd);
        integ_sleep_ms(10);
    } while (integ_now_ms() < end);
    return 0;
}

static void
send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        cr_assert(w > 0, "send: %s", strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* send bytes [off, off+len) of stream seed */
static void
send_pattern(int fd, uint64_t seed, uint64_t off, uint64_t len)
{
    static char buf[1 << 20];
    while (len) {
        size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
        integ_pattern(seed, off, buf, n);
        send_all(fd, buf, n);
        off += n;
        len -= n;
    }
}

/* the status of the response on fd (read until the headers are in) */
static int
read_status(int fd, char *resp, size_t cap)
{
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t r = recv(fd, resp + got, cap - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        resp[got] = '\0';
        if (strstr(resp, "\r\n\r\n"))
            break;
    }
    resp[got] = '\0';
    return integ_status_of(resp);
}

/* size of the upload file of session loc ("/v2/<repo>/blobs/uploads/<uuid>") */
static long long
upload_bytes(const char *loc)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/uploads/%s", S.root, strrchr(loc, '/') + 1);
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* open an upload and start its PUT of total bytes on a raw connection: the
 * headers and the first `first` bytes, returned once the server has written
 * them to the session's file (the request is in progress) */
static int
upload_begin(const char *repo, uint64_t seed, uint64_t total, uint64_t first, char *loc,
             size_t lcap)
{
    cr_assert_eq(integ_upload_start(&S, repo, loc, lcap), 202);
    char digest[80];
    integ_pattern_digest(seed, total, digest);
    const char *path = strstr(loc, "/v2/");
    cr_assert(path);
    int fd = connect_port(S.port);
    cr_assert(fd >= 0);
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "PUT %s%cdigest=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: %llu\r\n\r\n",
                     path, strchr(path, '?') ? '&' : '?', digest, (unsigned long long)total);
    send_all(fd, head, (size_t)n);
    send_pattern(fd, seed, 0, first);
    int64_t end = integ_now_ms() + 20000;
    while (upload_bytes(path) < (long long)first && integ_now_ms() < end)
        integ_sleep_ms(10);
    cr_assert_geq(upload_bytes(path), (long long)first, "the server did not take the first bytes");
    return fd;
}

#define BASE_CONF "[log]\nlevel = info\n"

TestSuite(lifecycle, .init = setup, .fini = teardown, .timeout = 240);

Test(lifecycle, sigterm_lets_a_256mib_upload_finish_and_refuses_new_connections)
{
    start(BASE_CONF);
    const uint64_t total = 256ull << 20, first = 16ull << 20;
    char loc[512];
    int fd = upload_begin("drain/big", 7, total, first, loc, sizeof(loc));
    cr_assert_eq(kill(S.pid, SIGTERM), 0);
    cr_assert(refused_within(10000), "new connections still accepted after SIGTERM");
    cr_assert(testsrv_alive(&S), "the server exited with an upload in progress");
    send_pattern(fd, 7, first, total - first);
    char resp[4096];
    cr_assert_eq(read_status(fd, resp, sizeof(resp)), 201, "%s", resp);
    cr_assert(strcasestr(resp, "Connection: close"), "%s", resp);
    close(fd);
    int st = exit_status(20000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    cr_assert(log_has("SIGTERM: draining", 0));
    cr_assert_eq(count_in_log("still busy at shutdown"), 0);
    /* the blob is stored: a new server on the same root serves it */
    char root[256];
    snprintf(root, sizeof(root), "%s", S.root);
    struct testsrv old = S;
    cr_assert_eq(testsrv_start_conf(&S, root, conf, NULL), 0);
    S.own_root = old.own_root;
    char digest[80], path[400];
    integ_pattern_digest(7, total, digest);
    snprintf(path, sizeof(path), "/v2/drain/big/blobs/%s", digest);
    int64_t size = -1;
    cr_assert_eq(integ_head_size(&S, path, &size), 200);
    cr_assert_eq(size, (int64_t)total);
}

Test(lifecycle, drain_timeout_cuts_a_stalled_upload_and_exits_0)
{
    start(BASE_CONF "[server]\ndrain_timeout = 1s\n");
    char loc[512];
    int fd = upload_begin("drain/stall", 9, 8u << 20, 1u << 20, loc, sizeof(loc));
    cr_assert_eq(kill(S.pid, SIGTERM), 0);
    /* well under the 30 s default and the 60 s body timeout: drain_timeout cut it */
    int st = exit_status(15000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    cr_assert(log_has("still busy at shutdown", 0), "the stalled upload was not cut by the drain");
    char resp[256];
    cr_assert_eq(read_status(fd, resp, sizeof(resp)), 0, "%s", resp);
    close(fd);
}

Test(lifecycle, sighup_changes_the_log_level)
{
    start(BASE_CONF);
    reload(BASE_CONF, "reloaded:");
    cr_assert_eq(count_in_log("reload: log level debug"), 0, "a debug line at level info");
    reload("[log]\nlevel = debug\n", "reloaded:");
    cr_assert(log_has("reload: log level debug", 0), "no debug line after the reload");
    reload(BASE_CONF, "reloaded:");
    reload(BASE_CONF, "reloaded:");
    cr_assert_eq(count_in_log("reload: log level debug"), 1, "debug lines after going back to info");
}

static const char *const ro_push_refused[] = {"POST", "/v2/ro/x/blobs/uploads/", NULL};

static void
assert_read_only_refusal(struct tresp *r)
{
    cr_assert_eq(r->status, 405, "%ld %s", r->status, r->body);
    char code[64], msg[256];
    cr_assert_eq(integ_json_error(r->body, r->len, code, sizeof(code), msg, sizeof(msg)), 0, "%s",
                 r->body);
    cr_assert_str_eq(code, "UNSUPPORTED");
    cr_assert_str_eq(msg, "the registry is read-only");
}

Test(lifecycle, read_only_on_and_off_by_sighup)
{
    start(BASE_CONF);
    char digest[80];
    cr_assert_eq(tpush_blob(&S, "ro/x", "hello", 5, digest), 201);
    reload(BASE_CONF "[server]\nread_only = true\n", "read-only mode on");
    struct tresp r;
    cr_assert_eq(treq(&S, ro_push_refused[0], ro_push_refused[1], NULL, NULL, 0, &r), 0);
    assert_read_only_refusal(&r);
    tresp_free(&r);
    char path[200];
    snprintf(path, sizeof(path), "/v2/ro/x/blobs/%s", digest);
    cr_assert_eq(treq(&S, "DELETE", path, NULL, NULL, 0, &r), 0);
    assert_read_only_refusal(&r);
    tresp_free(&r);
    cr_assert_eq(treq(&S, "GET", path, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 5);
    tresp_free(&r);
    reload(BASE_CONF "[server]\nread_only = false\n", "read-only mode off");
    cr_assert_eq(tpush_blob(&S, "ro/x", "world", 5, digest), 201);
}

Test(lifecycle, read_only_at_start_refuses_before_auth)
{
    char users[128];
    snprintf(users, sizeof(users), "%s/users", dir);
    write_file(users, "");
    char text[512];
    snprintf(text, sizeof(text), BASE_CONF "[server]\nread_only = on\n[auth]\nhtpasswd = %s\n",
             users);
    start(text);
    struct tresp r;
    cr_assert_eq(treq(&S, ro_push_refused[0], ro_push_refused[1], NULL, NULL, 0, &r), 0);
    assert_read_only_refusal(&r);
    tresp_free(&r);
    /* pulls still ask for credentials */
    cr_assert_eq(treq(&S, "GET", "/v2/", NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 401);
    tresp_free(&r);
}

/* "user:$2y$04$..." (bcrypt cost 4: fast enough for tests) */
static void
user_line(char *out, size_t cap, const char *user, const char *pass)
{
    char salt[64];
    cr_assert(crypt_gensalt_rn("$2y$", 4, NULL, 0, salt, sizeof(salt)));
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *h = crypt_r(pass, salt, &cd);
    cr_assert(h && h[0] == '$');
    snprintf(out, cap, "%s:%s\n", user, h);
}

static long
status_as(const char *method, const char *path, const char *user, const char *pass)
{
    char cred[128], b64[200], hdr[256];
    snprintf(cred, sizeof(cred), "%s:%s", user, pass);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)cred, (int)strlen(cred));
    snprintf(hdr, sizeof(hdr), "Authorization: Basic %s", b64);
    const char *h[] = {hdr, NULL};
    struct tresp r;
    cr_assert_eq(treq(&S, method, path, h, NULL, 0, &r), 0);
    long st = r.status;
    tresp_free(&r);
    return st;
}

Test(lifecycle, sighup_reloads_htpasswd_and_rules_and_a_broken_file_keeps_the_old)
{
    char users[128], rules[128], line1[256], line2[256], text[1024];
    snprintf(users, sizeof(users), "%s/users", dir);
    snprintf(rules, sizeof(rules), "%s/rules", dir);
    user_line(line1, sizeof(line1), "alice", "alice-pw");
    write_file(users, line1);
    write_file(rules, "[repo \"**\"]\nalice = pull\n");
    snprintf(text, sizeof(text), BASE_CONF "[auth]\nhtpasswd = %s\nrules = %s\n", users, rules);
    start(text);
    cr_assert_eq(status_as("POST", "/v2/team/app/blobs/uploads/", "alice", "alice-pw"), 403);
    cr_assert_eq(status_as("GET", "/v2/", "bob", "bob-pw"), 401);
    /* bob and alice's push: both files change, one SIGHUP */
    user_line(line2, sizeof(line2), "bob", "bob-pw");
    char both[600];
    snprintf(both, sizeof(both), "%s%s", line1, line2);
    write_file(users, both);
    write_file(rules, "[repo \"**\"]\nalice = pull, push\nbob = pull\n");
    reload(text, "reloaded:");
    cr_assert_eq(status_as("POST", "/v2/team/app/blobs/uploads/", "alice", "alice-pw"), 202);
    cr_assert_eq(status_as("GET", "/v2/", "bob", "bob-pw"), 200);
    /* a broken registry.conf: refused with file:line, the old configuration
     * stays whole (pushes still work, auth still on) */
    char broken[1100];
    snprintf(broken, sizeof(broken), "%s[server]\nread_only = true\nbogus_key = 1\n", text);
    reload(broken, "reload refused:");
    char where[200];
    int lines = 0;
    for (const char *p = broken; *p; p++)
        lines += *p == '\n';
    snprintf(where, sizeof(where), "reload refused: %s:%d: unknown key 'bogus_key'", conf, lines);
    cr_assert(log_has(where, 0), "no '%s' in %s", where, S.log);
    cr_assert_eq(status_as("POST", "/v2/team/app/blobs/uploads/", "alice", "alice-pw"), 202);
    cr_assert_eq(status_as("GET", "/v2/", "nobody", "x"), 401);
    /* a broken rules file: refused too, with its file:line */
    write_file(rules, "[repo \"*\"\nalice = fly\n");
    reload(text, "reload refused:");
    char rwhere[200];
    snprintf(rwhere, sizeof(rwhere), "%s:1", rules);
    cr_assert(log_has(rwhere, 0), "no '%s' in %s", rwhere, S.log);
    cr_assert_eq(status_as("POST", "/v2/team/app/blobs/uploads/", "alice", "alice-pw"), 202);
}

Test(lifecycle, sighup_warns_about_keys_that_need_a_restart)
{
    start(BASE_CONF "[server]\nmax_manifest = 4MiB\n");
    reload(BASE_CONF "[server]\nmax_manifest = 8MiB\n", "reloaded:");
    cr_assert(log_has("[server] max_manifest changed: takes effect at restart", 0));
}

/* ---- check-config ---- */

/* run `ocireg check-config -c path`; its stderr into err; returns the exit code */
static int
check_config(const char *path, char *err, size_t cap)
{
    char out[160];
    snprintf(out, sizeof(out), "%s/check.out", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        const char *bin = getenv("OCIREG_BIN");
        bin = bin && *bin ? bin : "build/ocireg";
        execl(bin, bin, "check-config", "-c", path, (char *)NULL);
        _exit(127);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    FILE *f = fopen(out, "r");
    cr_assert(f);
    size_t n = fread(err, 1, cap - 1, f);
    err[n] = '\0';
    fclose(f);
    cr_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

Test(lifecycle, check_config_accepts_a_good_file)
{
    char out[4096];
    write_file(conf, "[server]\nlisten = 127.0.0.1:5000\ndrain_timeout = 10s\nread_only = true\n");
    cr_assert_eq(check_config(conf, out, sizeof(out)), 0, "%s", out);
}

Test(lifecycle, check_config_names_every_error_with_file_line_and_key)
{
    char out[8192], text[1024], expect[300];
    snprintf(text, sizeof(text),
             "[server]\n"
             "listen = 127.0.0.1:5000\n"
             "no_such_key = 1\n"         /* line 3 */
             "drain_timeout = soon\n"    /* line 4 */
             "[auth]\n"
             "htpasswd = %s/missing\n",  /* a file that is not there */
             dir);
    write_file(conf, text);
    cr_assert_eq(check_config(conf, out, sizeof(out)), 1, "%s", out);
    snprintf(expect, sizeof(expect), "%s:3: unknown key 'no_such_key' in [server]", conf);
    cr_assert(strstr(out, expect), "%s", out);
    snprintf(expect, sizeof(expect), "%s:4: server.drain_timeout: 'soon'", conf);
    cr_assert(strstr(out, expect), "%s", out);
    snprintf(expect, sizeof(expect), "[auth] htpasswd: htpasswd file '%s/missing'", dir);
    cr_assert(strstr(out, expect), "%s", out);
    cr_assert(strstr(out, "3 errors"), "%s", out);
}

Test(lifecycle, check_config_refuses_a_bad_tls_certificate)
{
    struct testpki pki;
    cr_assert_eq(testpki_make(&pki, "client"), 0);
    char bad[160], text[1024], out[4096];
    snprintf(bad, sizeof(bad), "%s/bad.crt", dir);
    write_file(bad, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    snprintf(text, sizeof(text), "[tls]\ncert = %s\nkey = %s\n", pki.server_cert, pki.server_key);
    write_file(conf, text);
    cr_assert_eq(check_config(conf, out, sizeof(out)), 0, "%s", out);
    snprintf(text, sizeof(text), "[tls]\ncert = %s\nkey = %s\n", bad, pki.server_key);
    write_file(conf, text);
    int rc = check_config(conf, out, sizeof(out));
    testpki_free(&pki);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "[tls]") && strstr(out, bad), "%s", out);
}
