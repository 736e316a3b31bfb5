/* testsrv.h - helpers for integration tests: start the real ocireg binary on
 * 127.0.0.1:0 with a fresh mkdtemp root, read its port back from --ready-file,
 * stop it by its own PID; and a minimal HTTP client (libcurl) plus a raw-socket
 * sender for hostile requests. Every server started is stopped by PID. */
#ifndef OCIREG_TESTSRV_H
#define OCIREG_TESTSRV_H

#include <stddef.h>
#include <sys/types.h>

struct testsrv {
    pid_t pid;
    int port;
    char root[256];      /* storage root (a mkdtemp folder unless given) */
    char url[64];        /* "http://127.0.0.1:PORT" */
    char log[300];       /* server's stderr goes here */
    int own_root;        /* root was made by testsrv_start: removed by testsrv_cleanup */
    /* TLS: testsrv_start makes url "https://127.0.0.1:PORT" when extra_env sets
     * OCIREG_TLS_CERT; then set cafile (the CA treq and the integ_* clients
     * trust) and, for mTLS, client_cert and client_key (both PEM files; ""
     * for none) with testsrv_tls */
    char cafile[256];
    char client_cert[256], client_key[256];
};

/* testsrv_start - run $OCIREG_BIN (default build/ocireg) `serve --ready-file F`
 * with OCIREG_SERVER_LISTEN=127.0.0.1:0 and OCIREG_STORAGE_ROOT=root (NULL: a new
 * mkdtemp folder). extra_env: NULL-terminated "K=V" list or NULL. Waits up to 10 s
 * for the ready file. Returns 0, or -1 (the log is printed to stderr). */
int testsrv_start(struct testsrv *s, const char *root, const char *const *extra_env);

/* testsrv_start_conf - testsrv_start with `serve -c conf` (NULL: none); the
 * environment above still wins over the file's listen and root */
int testsrv_start_conf(struct testsrv *s, const char *root, const char *conf,
                       const char *const *extra_env);

/* testsrv_stop - SIGTERM, wait up to 5 s, then SIGKILL; returns the exit status
 * as waitpid gives it (or -1). Keeps the root. */
int testsrv_stop(struct testsrv *s);

/* testsrv_kill9 - SIGKILL and reap. */
void testsrv_kill9(struct testsrv *s);

/* testsrv_alive - 1 if the server process still runs */
int testsrv_alive(struct testsrv *s);

/* testsrv_cleanup - stop if running, remove the root if testsrv_start made it */
void testsrv_cleanup(struct testsrv *s);

/* testsrv_tls - the CA file the clients trust and the client certificate
 * they present (cert and key may be NULL: none); copies the paths */
void testsrv_tls(struct testsrv *s, const char *cafile, const char *cert, const char *key);

/* testsrv_curl_setup - apply s's TLS settings (cafile, client certificate) to a
 * libcurl easy handle (a CURL *); nothing for a plain server. Every libcurl
 * client of tests/lib calls it. */
void testsrv_curl_setup(const struct testsrv *s, void *curl);

/* ---- HTTP client ---- */
struct tresp {
    long status;
    char *body;          /* malloc'd, NUL-terminated */
    size_t len;
    char *headers;       /* malloc'd raw header block of the final response */
};

/* treq - one request. method "GET"/"PUT"/...; url absolute or a path (then
 * s->url is prefixed); headers NULL-terminated "Name: value" list or NULL; body
 * may be NULL. Returns 0 when a response came (whatever its status), -1 on
 * transport failure. Free with tresp_free. */
int treq(const struct testsrv *s, const char *method, const char *url_or_path,
         const char *const *headers, const void *body, size_t len, struct tresp *out);
void tresp_free(struct tresp *r);

/* growing NUL-terminated buffer for libcurl callbacks; free(p) when done */
struct tbuf {
    char *p;
    size_t n;
};
/* CURLOPT_WRITEFUNCTION: append to the struct tbuf given as WRITEDATA */
size_t tbuf_body_cb(char *data, size_t size, size_t nmemb, void *arg);
/* CURLOPT_HEADERFUNCTION: like tbuf_body_cb, but keeps only the last response's
 * header block (drops 100 Continue and redirect headers) */
size_t tbuf_header_cb(char *data, size_t size, size_t nmemb, void *arg);

/* tresp_header - value of header `name` (case-insensitive) copied into buf;
 * returns buf or NULL when absent. */
char *tresp_header(const struct tresp *r, const char *name, char *buf, size_t cap);

/* traw - send raw bytes to the server on a new TCP connection, read until the
 * server closes or timeout_ms passes; returns bytes read into buf (NUL-terminated),
 * or -1. */
long traw(const struct testsrv *s, const void *req, size_t len, char *buf, size_t cap,
          int timeout_ms);

/* sha256 digest string "sha256:<hex>" of a buffer into out (72 bytes) */
char *tdigest(const void *data, size_t n, char *out);

/* push_blob - monolithic POST ?digest= upload; returns HTTP status */
long tpush_blob(const struct testsrv *s, const char *repo, const void *data, size_t n,
                char *digest_out);

#endif
