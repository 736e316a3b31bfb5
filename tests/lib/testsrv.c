#include "tests/lib/testsrv.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/integ_util.h"

#include "common/banned.h"

static const char *
server_bin(void)
{
    const char *b = getenv("OCIREG_BIN");
    return b && *b ? b : "build/ocireg";
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int
testsrv_start(struct testsrv *s, const char *root, const char *const *extra_env)
{
    return testsrv_start_conf(s, root, NULL, extra_env);
}

int
testsrv_start_conf(struct testsrv *s, const char *root, const char *conf,
                   const char *const *extra_env)
{
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    if (root) {
        snprintf(s->root, sizeof(s->root), "%s", root);
    } else {
        snprintf(s->root, sizeof(s->root), "/tmp/ocireg-test.XXXXXX");
        if (!mkdtemp(s->root))
            return -1;
        s->own_root = 1;
    }
    char ready[300];
    snprintf(ready, sizeof(ready), "%s.ready", s->root);
    snprintf(s->log, sizeof(s->log), "%s.log", s->root);
    unlink(ready);

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        setenv("OCIREG_SERVER_LISTEN", "127.0.0.1:0", 1);
        setenv("OCIREG_STORAGE_ROOT", s->root, 1);
        if (!getenv("OCIREG_SERVER_WORKERS"))
            setenv("OCIREG_SERVER_WORKERS", "2", 1);
        for (size_t i = 0; extra_env && extra_env[i]; i++)
            putenv((char *)extra_env[i]);
        if (conf)
            execl(server_bin(), server_bin(), "serve", "-c", conf, "--ready-file", ready,
                  (char *)NULL);
        else
            execl(server_bin(), server_bin(), "serve", "--ready-file", ready, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(ready, "r");
        if (f) {
            char line[128] = "";
            char *ok = fgets(line, sizeof(line), f);
            fclose(f);
            char *colon = ok ? strrchr(line, ':') : NULL;
            if (colon && atoi(colon + 1) > 0) {
                s->port = atoi(colon + 1);
                int tls = 0;
                for (size_t k = 0; extra_env && extra_env[k]; k++)
                    if (strncmp(extra_env[k], "OCIREG_TLS_CERT=", 16) == 0)
                        tls = 1;
                snprintf(s->url, sizeof(s->url), "%s://127.0.0.1:%d", tls ? "https" : "http",
                         s->port);
                unlink(ready);
                return 0;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = -1;
            break;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "testsrv: server did not become ready; log %s:\n", s->log);
    FILE *f = fopen(s->log, "r");
    if (f) {
        char buf[512];
        while (fgets(buf, sizeof(buf), f))
            fputs(buf, stderr);
        fclose(f);
    }
    if (s->pid > 0)
        testsrv_kill9(s);
    testsrv_cleanup(s);   /* a failed start leaves no temp folder behind */
    return -1;
}

int
testsrv_stop(struct testsrv *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int st = -1;
    for (int i = 0; i < 500; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = -1;
            return st;
        }
        sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = -1;
    return st;
}

void
testsrv_kill9(struct testsrv *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = -1;
}

int
testsrv_alive(struct testsrv *s)
{
    if (s->pid <= 0)
        return 0;
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
        s->pid = -1;
        return 0;
    }
    return 1;
}

void
testsrv_cleanup(struct testsrv *s)
{
    if (s->pid > 0)
        testsrv_stop(s);
    if (s->own_root && s->root[0]) {
        integ_rm_rf(s->root);
        unlink(s->log);
        s->own_root = 0;
    }
}

void
testsrv_tls(struct testsrv *s, const char *cafile, const char *cert, const char *key)
{
    snprintf(s->cafile, sizeof(s->cafile), "%s", cafile ? cafile : "");
    snprintf(s->client_cert, sizeof(s->client_cert), "%s", cert ? cert : "");
    snprintf(s->client_key, sizeof(s->client_key), "%s", key ? key : "");
}

void
testsrv_curl_setup(const struct testsrv *s, void *curl)
{
    CURL *c = curl;
    if (s->cafile[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, s->cafile);
    if (s->client_cert[0]) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, s->client_cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, s->client_key);
    }
}

size_t
tbuf_body_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct tbuf *m = arg;
    size_t add = size * nmemb;
    char *np = realloc(m->p, m->n + add + 1);
    if (!np)
        return 0;
    memcpy(np + m->n, data, add);
    m->p = np;
    m->n += add;
    m->p[m->n] = '\0';
    return add;
}

size_t
tbuf_header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct tbuf *m = arg;
    size_t add = size * nmemb;
    /* keep only the last response's headers (after 100 Continue, redirects) */
    if (add > 5 && strncmp(data, "HTTP/", 5) == 0) {
        free(m->p);
        m->p = NULL;
        m->n = 0;
    }
    return tbuf_body_cb(data, size, nmemb, arg);
}

int
treq(const struct testsrv *s, const char *method, const char *url_or_path,
     const char *const *headers, const void *body, size_t len, struct tresp *out)
{
    memset(out, 0, sizeof(*out));
    char url[2048];
    if (strncmp(url_or_path, "http", 4) == 0)
        snprintf(url, sizeof(url), "%s", url_or_path);
    else
        snprintf(url, sizeof(url), "%s%s", s->url, url_or_path);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct tbuf b = {0}, h = {0};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0 ||
        strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tbuf_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, tbuf_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    testsrv_curl_setup(s, c);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        free(b.p);
        free(h.p);
        return -1;
    }
    out->body = b.p ? b.p : calloc(1, 1);
    out->len = b.n;
    out->headers = h.p ? h.p : calloc(1, 1);
    return 0;
}

void
tresp_free(struct tresp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

char *
tresp_header(const struct tresp *r, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            eol = p + strlen(p);
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(buf, cap, "%.*s", (int)(eol - v), v);
            return buf;
        }
        p = *eol ? eol + 2 : eol;
    }
    return NULL;
}

long
traw(const struct testsrv *s, const void *req, size_t len, char *buf, size_t cap, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    const char *p = req;
    size_t left = len;
    while (left) {
        ssize_t w = send(fd, p, left, MSG_NOSIGNAL);
        if (w <= 0)
            break;   /* the server may close early on garbage: read what it said */
        p += w;
        left -= (size_t)w;
    }
    size_t got = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (got + 1 < cap) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(timeout_ms - el)) <= 0)
            break;
        ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(fd);
    return (long)got;
}

char *
tdigest(const void *data, size_t n, char *out)
{
    unsigned char md[32];
    unsigned int mdl = 0;
    EVP_Digest(data, n, md, &mdl, EVP_sha256(), NULL);
    int o = snprintf(out, 72, "sha256:");
    for (unsigned i = 0; i < mdl; i++)
        o += snprintf(out + o, (size_t)(72 - o), "%02x", md[i]);
    return out;
}

long
tpush_blob(const struct testsrv *s, const char *repo, const void *data, size_t n,
           char *digest_out)
{
    char dg[72], path[512];
    tdigest(data, n, dg);
    if (digest_out)
        memcpy(digest_out, dg, sizeof(dg));
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, dg);
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    struct tresp r;
    if (treq(s, "POST", path, h, data, n, &r) < 0)
        return -1;
    long st = r.status;
    tresp_free(&r);
    return st;
}
