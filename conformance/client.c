/* client.c - libcurl wrapper for the conformance program. */
#include "conformance/client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

struct client {
    CURL *curl;
    char base[512];
    /* OCI_USERNAME / OCI_PASSWORD (the names of the OCI conformance suite):
     * sent as Basic on every request, for a registry with auth on */
    char userpwd[512];
    client_observe_fn *observe;
    void *observe_arg;
};

void
client_observe(struct client *c, client_observe_fn *fn, void *arg)
{
    c->observe = fn;
    c->observe_arg = arg;
}

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

static int
buf_append(struct buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    if (buf_append(arg, p, size * n) < 0)
        return 0;
    return size * n;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;

    /* a new status line starts the final (or another interim) response */
    if (size * n >= 5 && strncmp(p, "HTTP/", 5) == 0)
        b->len = 0;
    if (buf_append(b, p, size * n) < 0)
        return 0;
    return size * n;
}

struct client *
client_new(const char *base_url)
{
    static int global_done;
    struct client *c;

    if (!global_done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = 1;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        free(c);
        return NULL;
    }
    snprintf(c->base, sizeof(c->base), "%s", base_url);
    const char *user = getenv("OCI_USERNAME"), *pass = getenv("OCI_PASSWORD");
    if (user && *user)
        snprintf(c->userpwd, sizeof(c->userpwd), "%s:%s", user, pass ? pass : "");
    size_t l = strlen(c->base);
    while (l > 0 && c->base[l - 1] == '/')
        c->base[--l] = '\0';
    return c;
}

void
client_free(struct client *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

char *
client_url(const struct client *c, const char *target, char *out, size_t out_size)
{
    if (strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0) {
        snprintf(out, out_size, "%s", target);
    } else {
        /* a base URL with a path prefix keeps it only for paths not already
         * absolute: registries answer Locations as absolute paths */
        const char *scheme_end = strstr(c->base, "://");
        const char *path = scheme_end ? strchr(scheme_end + 3, '/') : NULL;
        int origin_len = path ? (int)(path - c->base) : (int)strlen(c->base);
        snprintf(out, out_size, "%.*s%s%s", origin_len, c->base, target[0] == '/' ? "" : "/",
                 target);
    }
    return out;
}

void
resp_release(struct resp *r)
{
    if (r == NULL)
        return;
    free(r->headers);
    free(r->body);
    r->headers = NULL;
    r->body = NULL;
    r->headers_len = 0;
    r->body_len = 0;
}

int
client_do(struct client *c, const char *method, const char *target, const char *const *headers,
          const void *body, size_t body_len, struct resp *r)
{
    struct buf hb = {0}, bb = {0};
    struct curl_slist *hl = NULL;
    char url[4096];
    CURLcode rc;
    int ret = -1;
    int sends_body = body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                     strcmp(method, "PATCH") == 0;

    memset(r, 0, sizeof(*r));
    client_url(c, target, url, sizeof(url));

    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &hb);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &bb);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "ocireg-conformance/1");
    if (c->userpwd[0]) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c->curl, CURLOPT_USERPWD, c->userpwd);
    }

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    } else if (sends_body) {
        curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? (const char *)body : "");
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    }

    /* curl adds its own Content-Type for POST bodies and Expect: 100-continue
     * for large ones; the caller's headers decide, so drop both defaults */
    hl = curl_slist_append(hl, "Expect:");
    int has_ct = 0;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
            has_ct = 1;
        hl = curl_slist_append(hl, headers[i]);
    }
    if (!has_ct && sends_body)
        hl = curl_slist_append(hl, "Content-Type:");
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hl);

    rc = curl_easy_perform(c->curl);
    if (rc == CURLE_PARTIAL_FILE) {
        /* a response whose body is shorter than its Content-Length: keep the
         * status so the check can say exactly what was wrong */
        r->truncated = 1;
        snprintf(r->error, sizeof(r->error), "%s %s: %s", method, url, curl_easy_strerror(rc));
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
        ret = 0;
        goto out;
    }
    if (rc != CURLE_OK) {
        snprintf(r->error, sizeof(r->error), "%s %s: %s", method, url, curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
    ret = 0;
out:
    if (hb.data == NULL)
        buf_append(&hb, "", 0);
    if (bb.data == NULL)
        buf_append(&bb, "", 0);
    r->headers = hb.data;
    r->headers_len = hb.len;
    r->body = bb.data;
    r->body_len = bb.len;
    curl_slist_free_all(hl);
    if (ret == 0 && c->observe != NULL)
        c->observe(c->observe_arg, method, url, r);
    return ret;
}

/* find the n-th (0-based) occurrence of header `name`; returns a pointer to its
 * value start and sets *len, or NULL */
static const char *
header_find(const struct resp *r, const char *name, int nth, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = r->headers;

    if (p == NULL)
        return NULL;
    while (*p) {
        const char *eol = strchr(p, '\n');
        const char *end = eol ? eol : p + strlen(p);
        if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            if (nth-- == 0) {
                const char *v = p + nl + 1;
                while (v < end && (*v == ' ' || *v == '\t'))
                    v++;
                const char *e = end;
                while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                    e--;
                *len = (size_t)(e - v);
                return v;
            }
        }
        if (eol == NULL)
            break;
        p = eol + 1;
    }
    return NULL;
}

int
resp_header(const struct resp *r, const char *name, char *out, size_t out_size)
{
    size_t len;
    const char *v = header_find(r, name, 0, &len);

    if (v == NULL) {
        if (out_size > 0)
            out[0] = '\0';
        return 0;
    }
    if (out_size > 0)
        snprintf(out, out_size, "%.*s", (int)len, v);
    return 1;
}

int
resp_header_count(const struct resp *r, const char *name)
{
    size_t len;
    int n = 0;

    while (header_find(r, name, n, &len) != NULL)
        n++;
    return n;
}
