/* regclient.c - registry client: manifests, the token flow, parallel blob fetch.
 *
 * Authentication state: rc->authz holds the Authorization header value in use
 * ("Bearer …" or "Basic …"), empty for anonymous. A 401 on any request runs
 * authenticate() once with its WWW-Authenticate challenge and the request is
 * retried once. Custom Authorization headers are not forwarded by libcurl
 * (>= 7.58) when a blob GET is redirected to another host (e.g. a CDN). */
#include "tools/ocirun-lite/regclient.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "tools/ocirun-lite/cstore.h"
#include "tools/ocirun-lite/dynlib.h"

#include "common/banned.h"

#define MANIFEST_MAX (4 << 20)
#define SMALL_MAX (1 << 20)
#define BLOB_RETRIES 3

struct regclient {
    struct imgref ref;
    struct regclient_opts o;
    struct regauth_creds creds;
    int have_creds;
    char base[600];   /* scheme://host */
    char authz[8192]; /* Authorization header value, "" = anonymous */
    char useragent[64];
};

struct regclient *
regclient_new(const struct imgref *ref, const struct regclient_opts *o, struct err *e)
{
    struct regclient *rc;
    if (dynlib_curl(e) < 0) /* the registry is contacted: only now load libcurl */
        return NULL;
    rc = calloc(1, sizeof(*rc));
    if (!rc) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    rc->ref = *ref;
    rc->o = *o;
    if (rc->o.parallel <= 0)
        rc->o.parallel = 4;
    if (o->creds) {
        rc->creds = *o->creds;
        rc->have_creds = 1;
    }
    rc->o.creds = NULL;
    snprintf(rc->base, sizeof(rc->base), "%s://%s", o->plain_http ? "http" : "https",
             imgref_api_host(ref));
    snprintf(rc->useragent, sizeof(rc->useragent), "ocirun-lite/0.1");
    return rc;
}

void
regclient_free(struct regclient *rc)
{
    if (!rc)
        return;
    /* do not leave secrets in freed memory */
    memset(&rc->creds, 0, sizeof(rc->creds));
    memset(rc->authz, 0, sizeof(rc->authz));
    free(rc);
}

/* ---- one buffered request ------------------------------------------------- */

struct resp {
    char *body;
    size_t len, cap, max;
    int too_large;
    char www_auth[2048];
    char ctype[256];
    char dcd[128]; /* Docker-Content-Digest */
};

static size_t
resp_body_cb(char *p, size_t sz, size_t nm, void *ud)
{
    struct resp *r = ud;
    size_t n = sz * nm;
    if (r->len + n > r->max) {
        r->too_large = 1;
        return 0;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb)
            return 0;
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* copy header value (trimmed) when the line is "name: value" */
static int
header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vl = (size_t)(end - v);
    if (vl >= outlen)
        vl = outlen - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 1;
}

static size_t
resp_header_cb(char *p, size_t sz, size_t nm, void *ud)
{
    struct resp *r = ud;
    size_t n = sz * nm;
    /* a new response (redirect, 100-continue): forget the previous headers */
    if (n > 5 && strncmp(p, "HTTP/", 5) == 0) {
        r->www_auth[0] = r->ctype[0] = r->dcd[0] = '\0';
        return n;
    }
    if (!header_value(p, n, "WWW-Authenticate", r->www_auth, sizeof(r->www_auth)) &&
        !header_value(p, n, "Content-Type", r->ctype, sizeof(r->ctype)))
        header_value(p, n, "Docker-Content-Digest", r->dcd, sizeof(r->dcd));
    return n;
}

static void
setup_common(struct regclient *rc, CURL *c)
{
    curl_easy_setopt(c, CURLOPT_USERAGENT, rc->useragent);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* abort when a transfer stalls: < 1 byte/s for 60 s */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, rc->o.plain_http ? "http,https" : "https");
    if (!rc->o.tls_verify) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

static struct curl_slist *
auth_headers(struct regclient *rc, struct curl_slist *h)
{
    if (rc->authz[0]) {
        char line[sizeof(rc->authz) + 32];
        snprintf(line, sizeof(line), "Authorization: %s", rc->authz);
        h = curl_slist_append(h, line);
    }
    return h;
}

/* the registry's error JSON {"errors":[{"code","message"}]} as text */
static void
registry_error_text(const struct resp *r, char *out, size_t len)
{
    json_t *o, *er;
    out[0] = '\0';
    if (!r->body)
        return;
    o = json_loads(r->body, 0, NULL);
    er = json_array_get(json_object_get(o, "errors"), 0);
    if (er) {
        const char *code = json_string_value(json_object_get(er, "code"));
        const char *msg = json_string_value(json_object_get(er, "message"));
        snprintf(out, len, ": %s%s%s", code ? code : "", code && msg ? " " : "", msg ? msg : "");
    }
    json_decref(o);
}

/* 1 when origin ("http://host:port") answers a plain HTTP request */
static int
answers_plain_http(const char *origin)
{
    char url[700];
    long code = 0;
    CURL *c = curl_easy_init();
    if (!c)
        return 0;
    snprintf(url, sizeof(url), "%s/v2/", origin);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    return code > 0;
}

/* The error of handle c's failed transfer. A registry that speaks plain HTTP
 * answers the TLS ClientHello with an HTTP 400, which OpenSSL reports as
 * "wrong version number" (it reads "HTTP/" as a record header); when a plain
 * request to the same host and port gets an answer, say what podman says, and
 * what to do about it. The probe sends no credentials. */
static void
transfer_error(CURL *c, CURLcode cc, const char *errbuf, const char *what, struct err *e)
{
    char origin[600];
    char *url = NULL; /* the last one asked for, after redirects */
    curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &url);
    if (cc == CURLE_SSL_CONNECT_ERROR && url && strncmp(url, "https://", 8) == 0) {
        size_t n = strcspn(url + 8, "/?#");
        snprintf(origin, sizeof(origin), "http://%.*s", (int)n, url + 8);
        if (answers_plain_http(origin)) {
            err_set(e, ERR_IO, 0,
                    "%s: the server gave an HTTP response to an HTTPS client; for a "
                    "plain-HTTP registry use --insecure (or $OCIRUN_INSECURE_REGISTRIES)",
                    origin + 7);
            return;
        }
    }
    err_set(e, ERR_IO, 0, "%s failed: %s", what, errbuf[0] ? errbuf : curl_easy_strerror(cc));
}

/* GET url, buffered. with_auth: send rc->authz. Returns the HTTP status, or -1
 * with ERR_IO on a transport failure. */
static long
do_get(struct regclient *rc, const char *url, const char *accept, int with_auth, size_t max,
       const struct regauth_creds *basic, struct resp *r, struct err *e)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    long code = -1;
    CURLcode cc;
    char errbuf[CURL_ERROR_SIZE] = "";

    memset(r, 0, sizeof(*r));
    r->max = max;
    if (!c) {
        err_set(e, ERR_INTERNAL, 0, "curl_easy_init failed");
        return -1;
    }
    setup_common(rc, c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, resp_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, resp_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    if (accept) {
        char line[1024];
        snprintf(line, sizeof(line), "Accept: %s", accept);
        h = curl_slist_append(h, line);
    }
    if (with_auth)
        h = auth_headers(rc, h);
    if (basic) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, basic->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, basic->pass);
    }
    if (h)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        if (r->too_large)
            err_set(e, ERR_TOO_LARGE, 0, "response from %s exceeds %zu bytes", url, max);
        else {
            char what[700];
            snprintf(what, sizeof(what), "request to %s", url);
            transfer_error(c, cc, errbuf, what, e);
        }
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return code;
}

static void
resp_release(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* run the challenge of a 401: fills rc->authz. Returns 0 or -1. */
static int
authenticate(struct regclient *rc, const char *www_auth, struct err *e)
{
    struct regauth_challenge ch;
    const char *host = imgref_api_host(&rc->ref);

    if (regauth_parse_challenge(www_auth[0] ? www_auth : NULL, &ch, e) < 0)
        return -1;
    if (ch.scheme == REGAUTH_BASIC) {
        if (!rc->have_creds)
            return err_set(e, ERR_UNAUTHORIZED, 0,
                           "%s requires authentication: give --creds USER:PASS or log in "
                           "(~/.docker/config.json, $REGISTRY_AUTH_FILE)",
                           host);
        /* curl builds the header; we keep it to resend on every request */
        char raw[sizeof(rc->creds.user) + sizeof(rc->creds.pass) + 2];
        int n = snprintf(raw, sizeof(raw), "%s:%s", rc->creds.user, rc->creds.pass);
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t o = (size_t)snprintf(rc->authz, sizeof(rc->authz), "Basic ");
        for (int i = 0; i < n && o + 5 < sizeof(rc->authz); i += 3) {
            unsigned v = (unsigned char)raw[i] << 16;
            if (i + 1 < n)
                v |= (unsigned char)raw[i + 1] << 8;
            if (i + 2 < n)
                v |= (unsigned char)raw[i + 2];
            rc->authz[o++] = b64[(v >> 18) & 63];
            rc->authz[o++] = b64[(v >> 12) & 63];
            rc->authz[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
            rc->authz[o++] = i + 2 < n ? b64[v & 63] : '=';
        }
        rc->authz[o] = '\0';
        memset(raw, 0, sizeof(raw));
        return 0;
    }

    /* Bearer: GET realm?service=…&scope=… (with Basic credentials if any) */
    CURL *c = curl_easy_init();
    char url[4096], scope[1200];
    struct resp r;
    json_t *o = NULL;
    int rc2 = -1;
    long code;

    if (!c)
        return err_set(e, ERR_INTERNAL, 0, "curl_easy_init failed");
    if (ch.scope[0])
        snprintf(scope, sizeof(scope), "%s", ch.scope);
    else
        snprintf(scope, sizeof(scope), "repository:%s:pull", rc->ref.path);
    char *es = curl_easy_escape(c, ch.service, 0);
    char *esc = curl_easy_escape(c, scope, 0);
    snprintf(url, sizeof(url), "%s%s%s%s%s%s", ch.realm, strchr(ch.realm, '?') ? "&" : "?",
             ch.service[0] ? "service=" : "", ch.service[0] ? es : "",
             ch.service[0] ? "&scope=" : "scope=", esc);
    curl_free(es);
    curl_free(esc);
    curl_easy_cleanup(c);
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return err_set(e, ERR_UNAUTHORIZED, 0, "token realm \"%s\" is not an http(s) URL",
                       ch.realm);
    code = do_get(rc, url, NULL, 0, SMALL_MAX, rc->have_creds ? &rc->creds : NULL, &r, e);
    if (code < 0)
        goto out;
    if (code == 401 || code == 403) {
        err_set(e, code == 401 ? ERR_UNAUTHORIZED : ERR_DENIED, 0,
                "token request to %s refused (HTTP %ld)%s", ch.realm, code,
                rc->have_creds ? ": wrong credentials?" : ": credentials needed (--creds)");
        goto out;
    }
    if (code != 200 || !r.body) {
        err_set(e, ERR_UNAUTHORIZED, 0, "token request to %s failed: HTTP %ld", ch.realm, code);
        goto out;
    }
    o = json_loads(r.body, 0, NULL);
    const char *tok = json_string_value(json_object_get(o, "token"));
    if (!tok || !*tok)
        tok = json_string_value(json_object_get(o, "access_token"));
    if (!tok || !*tok || strlen(tok) + 8 >= sizeof(rc->authz)) {
        err_set(e, ERR_UNAUTHORIZED, 0, "token response from %s has no usable token", ch.realm);
        goto out;
    }
    snprintf(rc->authz, sizeof(rc->authz), "Bearer %s", tok);
    rc2 = 0;
out:
    json_decref(o);
    if (r.body)
        memset(r.body, 0, r.len);
    resp_release(&r);
    return rc2;
}

static int
status_error(long code, const char *what, const struct resp *r, struct err *e)
{
    char detail[512];
    registry_error_text(r, detail, sizeof(detail));
    switch (code) {
    case 401:
        return err_set(e, ERR_UNAUTHORIZED, 0, "%s: unauthorized%s", what, detail);
    case 403:
        return err_set(e, ERR_DENIED, 0, "%s: access denied%s", what, detail);
    case 404:
        return err_set(e, ERR_MANIFEST_UNKNOWN, 0, "%s: not found%s", what, detail);
    case 429:
        return err_set(e, ERR_TOOMANYREQUESTS, 0, "%s: too many requests%s", what, detail);
    default:
        return err_set(e, ERR_IO, 0, "%s: HTTP %ld%s", what, code, detail);
    }
}

int
regclient_get_manifest(struct regclient *rc, const char *reference, char **body, size_t *len,
                       char *mediatype, size_t mtlen, char digest[72], struct err *e)
{
    static const char accept[] =
        REGCLIENT_MT_OCI_INDEX ", " REGCLIENT_MT_OCI_MANIFEST ", " REGCLIENT_MT_DOCKER_LIST
                               ", " REGCLIENT_MT_DOCKER_MANIFEST;
    char url[1200], what[800], got[CSTORE_DIGEST_LEN];
    struct resp r;
    long code;

    snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", rc->base, rc->ref.path, reference);
    snprintf(what, sizeof(what), "manifest %s/%s %s", rc->ref.domain, rc->ref.path, reference);
    code = do_get(rc, url, accept, 1, MANIFEST_MAX, NULL, &r, e);
    if (code == 401) {
        char challenge[sizeof(r.www_auth)];
        snprintf(challenge, sizeof(challenge), "%s", r.www_auth);
        resp_release(&r);
        if (authenticate(rc, challenge, e) < 0)
            return -1;
        code = do_get(rc, url, accept, 1, MANIFEST_MAX, NULL, &r, e);
    }
    if (code < 0) {
        resp_release(&r);
        return -1;
    }
    if (code != 200) {
        status_error(code, what, &r, e);
        resp_release(&r);
        return -1;
    }
    if (!r.body) {
        resp_release(&r);
        return err_set(e, ERR_MANIFEST_INVALID, 0, "%s: empty body", what);
    }
    cstore_sha256(r.body, r.len, got);
    if (strncmp(reference, "sha256:", 7) == 0 && strcmp(reference, got) != 0) {
        err_set(e, ERR_DIGEST_INVALID, 0, "%s: body hashes to %s; refusing it", what, got);
        resp_release(&r);
        return -1;
    }
    if (strncmp(r.dcd, "sha256:", 7) == 0 && strcmp(r.dcd, got) != 0) {
        err_set(e, ERR_DIGEST_INVALID, 0,
                "%s: registry says Docker-Content-Digest %s but the body hashes to %s", what, r.dcd,
                got);
        resp_release(&r);
        return -1;
    }
    /* media type: Content-Type without parameters, else the body's mediaType */
    size_t ml = strcspn(r.ctype, "; ");
    if (ml >= mtlen)
        ml = mtlen - 1;
    memcpy(mediatype, r.ctype, ml);
    mediatype[ml] = '\0';
    if (!strstr(mediatype, "manifest") && !strstr(mediatype, "index")) {
        json_t *o = json_loads(r.body, 0, NULL);
        const char *mt = json_string_value(json_object_get(o, "mediaType"));
        snprintf(mediatype, mtlen, "%s", mt ? mt : "");
        json_decref(o);
    }
    memcpy(digest, got, sizeof(got));
    *body = r.body;
    *len = r.len;
    return 0;
}

/* ---- parallel blob fetch ---------------------------------------------------- */

struct xfer {
    const struct regclient_blob *blob;
    CURL *c;
    struct curl_slist *h;
    struct cstore_writer *w;
    struct err err;    /* a write-side failure (size / io) */
    int failed;        /* err is set */
    long status;       /* HTTP status of the final response */
    struct resp ebody; /* body of a non-200 answer */
    int attempts;
    int done;
    int active;
    char errbuf[CURL_ERROR_SIZE];
};

static size_t
xfer_write_cb(char *p, size_t sz, size_t nm, void *ud)
{
    struct xfer *x = ud;
    size_t n = sz * nm;
    long code = 0;
    curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        /* keep a little of an error body for the message */
        if (x->ebody.len < 4096)
            resp_body_cb(p, 1, n, &x->ebody);
        return n;
    }
    if (cstore_writer_write(x->w, p, n, &x->err) < 0) {
        x->failed = 1;
        return 0; /* aborts the transfer */
    }
    return n;
}

static int
xfer_start(struct regclient *rc, CURLM *m, struct xfer *x, struct err *e)
{
    char url[1200];
    snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", rc->base, rc->ref.path, x->blob->digest);
    if (x->c) {
        curl_multi_remove_handle(m, x->c);
        curl_easy_cleanup(x->c);
        curl_slist_free_all(x->h);
        x->h = NULL;
    }
    resp_release(&x->ebody);
    memset(&x->ebody, 0, sizeof(x->ebody));
    x->ebody.max = 4096;
    x->c = curl_easy_init();
    if (!x->c)
        return err_set(e, ERR_INTERNAL, 0, "curl_easy_init failed");
    setup_common(rc, x->c);
    curl_easy_setopt(x->c, CURLOPT_URL, url);
    curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, xfer_write_cb);
    curl_easy_setopt(x->c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->c, CURLOPT_HEADERFUNCTION, resp_header_cb);
    curl_easy_setopt(x->c, CURLOPT_HEADERDATA, &x->ebody);
    curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->c, CURLOPT_PRIVATE, x);
    x->h = auth_headers(rc, NULL);
    if (x->h)
        curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, x->h);
    if (cstore_writer_written(x->w) > 0 && cstore_writer_reset(x->w, e) < 0)
        return -1;
    x->attempts++;
    x->active = 1;
    curl_multi_add_handle(m, x->c);
    return 0;
}

static void
human(double v, char *buf, size_t len)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* redraw one line per blob; `drawn` is how many lines the last draw printed */
static void
draw_progress(struct xfer *xs, size_t n, int *drawn)
{
    char out[16384];
    size_t o = 0;
    if (*drawn)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "\033[%dA", *drawn);
    for (size_t i = 0; i < n && o < sizeof(out) - 200; i++) {
        struct xfer *x = &xs[i];
        int64_t got = x->w ? cstore_writer_written(x->w) : x->blob->size;
        int64_t tot = x->blob->size;
        char a[32], b[32], bar[31];
        int fill = tot > 0 ? (int)(30.0 * (double)got / (double)tot) : 0;
        if (fill > 30)
            fill = 30;
        for (int k = 0; k < 30; k++)
            bar[k] = k < fill ? '=' : (k == fill ? '>' : ' ');
        bar[30] = '\0';
        human((double)got, a, sizeof(a));
        human((double)(tot > 0 ? tot : 0), b, sizeof(b));
        o += (size_t)snprintf(out + o, sizeof(out) - o, "\r\033[K%.19s %-12.12s [%s] %s / %s%s\n",
                              x->blob->digest, x->blob->label ? x->blob->label : "", bar, a, b,
                              x->done ? "  done" : "");
    }
    (void)!write(2, out, o);
    *drawn = (int)n;
}

int
regclient_fetch_blobs(struct regclient *rc, struct cstore *cs, const struct regclient_blob *blobs,
                      size_t n, regclient_done_fn *done, void *done_ctx,
                      struct regclient_stats *stats, struct err *e)
{
    struct regclient_stats st = {0};
    struct xfer *xs = NULL;
    size_t nx = 0, next = 0, running = 0;
    CURLM *m = NULL;
    int rc2 = -1, drawn = 0, reauthed = 0;
    struct timespec last = {0, 0};

    xs = calloc(n ? n : 1, sizeof(*xs));
    if (!xs)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t j = 0; j < nx; j++)
            dup |= strcmp(xs[j].blob->digest, blobs[i].digest) == 0;
        if (dup)
            continue; /* reported with its first occurrence */
        if (cstore_blob_has(cs, blobs[i].digest, blobs[i].size)) {
            st.skipped++;
            if (done)
                done(done_ctx, i);
            continue;
        }
        xs[nx].blob = &blobs[i];
        nx++;
    }
    if (nx == 0) {
        rc2 = 0;
        goto out;
    }
    m = curl_multi_init();
    if (!m) {
        err_set(e, ERR_INTERNAL, 0, "curl_multi_init failed");
        goto out;
    }
    for (size_t i = 0; i < nx; i++) {
        xs[i].w = cstore_writer_new(cs, xs[i].blob->digest, xs[i].blob->size, e);
        if (!xs[i].w)
            goto out;
    }

    for (;;) {
        while (running < (size_t)rc->o.parallel && next < nx) {
            if (xfer_start(rc, m, &xs[next], e) < 0)
                goto out;
            next++;
            running++;
        }
        if (running == 0)
            break;
        int still = 0, numfds = 0;
        if (curl_multi_perform(m, &still) != CURLM_OK) {
            err_set(e, ERR_IO, 0, "curl multi failed");
            goto out;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct xfer *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            CURLcode res = msg->data.result;
            long code = 0;
            curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
            x->active = 0;
            running--;
            if (x->failed) {
                /* the store refused the bytes (too many, disk): final */
                *e = x->err;
                goto out;
            }
            if (res == CURLE_OK && code == 200) {
                int64_t got = cstore_writer_written(x->w);
                if (cstore_writer_commit(x->w, e) < 0) {
                    x->w = NULL;
                    goto out; /* digest / size mismatch: nothing stored */
                }
                x->w = NULL;
                x->done = 1;
                st.fetched++;
                st.bytes += (uint64_t)got;
                /* every index carrying this digest (a manifest may repeat one) */
                for (size_t k = 0; done && k < n; k++)
                    if (strcmp(blobs[k].digest, x->blob->digest) == 0)
                        done(done_ctx, k);
                continue;
            }
            if (res == CURLE_OK && code == 401 && !reauthed) {
                /* token expired mid-pull: renew once, restart this blob */
                reauthed = 1;
                char challenge[sizeof(x->ebody.www_auth)];
                snprintf(challenge, sizeof(challenge), "%s", x->ebody.www_auth);
                if (authenticate(rc, challenge, e) < 0 || xfer_start(rc, m, x, e) < 0)
                    goto out;
                running++;
                continue;
            }
            int transient = res != CURLE_OK || code >= 500 || code == 429;
            if (transient && x->attempts < BLOB_RETRIES) {
                usleep(200000U * (unsigned)x->attempts);
                if (xfer_start(rc, m, x, e) < 0)
                    goto out;
                running++;
                continue;
            }
            if (res != CURLE_OK) {
                char what[160];
                snprintf(what, sizeof(what), "blob %s: download", x->blob->digest);
                transfer_error(x->c, res, x->errbuf, what, e);
            } else {
                char what[160];
                snprintf(what, sizeof(what), "blob %s", x->blob->digest);
                status_error(code, what, &x->ebody, e);
                if (code == 404)
                    e->code = ERR_BLOB_UNKNOWN;
            }
            goto out;
        }
        if (rc->o.progress) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 > 150) {
                draw_progress(xs, nx, &drawn);
                last = now;
            }
        }
        if (still > 0 || running > 0)
            curl_multi_poll(m, NULL, 0, 100, &numfds);
    }
    if (rc->o.progress)
        draw_progress(xs, nx, &drawn);
    rc2 = 0;
out:
    for (size_t i = 0; i < nx; i++) {
        if (xs[i].c) {
            curl_multi_remove_handle(m, xs[i].c);
            curl_easy_cleanup(xs[i].c);
        }
        curl_slist_free_all(xs[i].h);
        resp_release(&xs[i].ebody);
        cstore_writer_abort(xs[i].w); /* removes the temp file of any unfinished blob */
    }
    if (m)
        curl_multi_cleanup(m);
    free(xs);
    if (stats)
        *stats = st;
    return rc2;
}
