/* rb_auth.c - the login of a run, see rb_auth.h. */
#include "tools/regbench/rb_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/err.h"
#include "tools/ocirun-lite/regauth.h"
#include "tools/regbench/rb_tls.h"
#include "tools/regbench/rb_util.h"
#include "common/banned.h"

#define BODY_MAX (1u << 20) /* a token answer is a few KiB */

int
rb_auth_token_url(const char *www, const char *const *scopes, size_t nscopes,
                  enum rb_auth_scheme *scheme, char *url, size_t cap, struct err *e)
{
    struct regauth_challenge *ch = malloc(sizeof(*ch));
    int rc = -1;
    if (!ch)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    if (regauth_parse_challenge(www, ch, e) != 0)
        goto out;
    if (ch->scheme == REGAUTH_BASIC) {
        *scheme = RB_AUTH_BASIC;
        if (cap)
            url[0] = '\0';
        rc = 0;
        goto out;
    }
    if (strncmp(ch->realm, "https://", 8) != 0 && strncmp(ch->realm, "http://", 7) != 0) {
        err_set(e, ERR_CONFIG, 0, "token realm '%.200s' is not an http(s) URL", ch->realm);
        goto out;
    }
    const char *own = ch->scope; /* the challenge's scope when we name none */
    size_t n = (size_t)snprintf(url, cap, "%s", ch->realm);
    char sep = strchr(ch->realm, '?') ? '&' : '?';
    for (size_t i = 0; n < cap && i < nscopes + 1 + (nscopes == 0 && own[0]); i++) {
        const char *key = i == 0 ? "service" : "scope";
        const char *v = i == 0 ? ch->service : nscopes ? scopes[i - 1] : own;
        if (!v[0])
            continue;
        char *esc = curl_easy_escape(NULL, v, 0);
        if (!esc) {
            err_set(e, ERR_NOMEM, 0, "out of memory");
            goto out;
        }
        n += (size_t)snprintf(url + n, n < cap ? cap - n : 0, "%c%s=%s", sep, key, esc);
        curl_free(esc);
        sep = '&';
    }
    if (n >= cap) {
        err_set(e, ERR_CONFIG, 0,
                "token request URL longer than %zu bytes (%zu scopes): fewer repositories "
                "(--repos, -r, scenarios) per run",
                cap, nscopes);
        goto out;
    }
    *scheme = RB_AUTH_BEARER;
    rc = 0;
out:
    free(ch);
    return rc;
}

int
rb_auth_token_parse(const char *body, size_t len, char **token, long *expires_in, struct err *e)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok || !tok[0])
        tok = json_string_value(json_object_get(j, "access_token"));
    int rc = -1;
    if (!j || !json_is_object(j)) {
        err_set(e, ERR_UNAUTHORIZED, 0, "token answer is not a JSON object");
        goto out;
    }
    if (!tok || !tok[0]) {
        err_set(e, ERR_UNAUTHORIZED, 0, "token answer has no \"token\" nor \"access_token\"");
        goto out;
    }
    /* the token goes into a header line as is */
    for (const char *p = tok; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            err_set(e, ERR_UNAUTHORIZED, 0, "token has a character not allowed in a header");
            goto out;
        }
    *token = strdup(tok);
    if (!*token) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    json_t *ex = json_object_get(j, "expires_in");
    *expires_in = json_is_integer(ex) ? (long)json_integer_value(ex) : 0;
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* ---- HTTP ---------------------------------------------------------------- */

struct answer {
    char *body;
    size_t len;
    int over;
    char www[2048]; /* WWW-Authenticate fields of the last response, joined by ", " */
};

static size_t
on_hdr(char *p, size_t sz, size_t nm, void *ud)
{
    struct answer *a = ud;
    size_t n = sz * nm;
    if (n > 5 && memcmp(p, "HTTP/", 5) == 0) {
        a->www[0] = '\0';
    } else if (n > 17 && strncasecmp(p, "www-authenticate:", 17) == 0) {
        size_t s = 17, t = n;
        while (s < t && (p[s] == ' ' || p[s] == '\t'))
            s++;
        while (t > s && (p[t - 1] == '\r' || p[t - 1] == '\n' || p[t - 1] == ' '))
            t--;
        size_t have = strlen(a->www);
        snprintf(a->www + have, sizeof(a->www) - have, "%s%.*s", have ? ", " : "", (int)(t - s),
                 p + s);
    }
    return n;
}

static size_t
on_data(char *p, size_t sz, size_t nm, void *ud)
{
    struct answer *a = ud;
    size_t n = sz * nm;
    if (a->len + n > BODY_MAX) {
        a->over = 1;
        return 0;
    }
    char *nb = realloc(a->body, a->len + n + 1);
    if (!nb)
        return 0;
    a->body = nb;
    memcpy(a->body + a->len, p, n);
    a->len += n;
    a->body[a->len] = '\0';
    return n;
}

static void
answer_release(struct answer *a)
{
    if (a->body)
        OPENSSL_cleanse(a->body, a->len); /* it may hold a token */
    free(a->body);
    memset(a, 0, sizeof(*a));
}

/* GET url with the header line hdr (may be NULL) or Basic creds (may be NULL):
 * the status, or -1 with ERR_IO */
static long
get(const struct rb_auth_opts *o, const char *url, const char *hdr,
    const struct regauth_creds *creds, struct answer *a, struct err *e)
{
    struct curl_slist *hl = NULL;
    long code = -1;
    char eb[CURL_ERROR_SIZE] = "";
    CURL *h = curl_easy_init();
    if (!h)
        return err_set(e, ERR_INTERNAL, 0, "curl_easy_init failed");
    if (hdr && !(hl = curl_slist_append(NULL, hdr))) {
        curl_easy_cleanup(h);
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "regbench");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(o->timeout * 1000));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, eb);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_hdr);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    if (creds) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, creds->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, creds->pass);
    }
    if (o->tls)
        rb_tls_curl(o->tls, h);
    CURLcode res = curl_easy_perform(h);
    if (res == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    else if (a->over)
        err_set(e, ERR_IO, 0, "GET %.200s: answer larger than %u bytes", url, BODY_MAX);
    else
        err_set(e, ERR_IO, 0, "GET %.200s: %s", url, eb[0] ? eb : curl_easy_strerror(res));
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return code;
}

/* 0 when the realm's host is loopback (or any host is allowed) */
static int
realm_allowed(const struct rb_auth_opts *o, const char *url, struct err *e)
{
    if (o->any_host)
        return 0;
    char *host = NULL;
    CURLU *u = curl_url();
    int ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
    if (ok) {
        size_t n = strlen(host);
        if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
            memmove(host, host + 1, n - 2);
            host[n - 2] = '\0';
        }
        ok = rb_host_is_loopback(host);
    }
    curl_free(host);
    curl_url_cleanup(u);
    return ok ? 0 : err_set(e, ERR_CONFIG, 0, "token realm is not on a loopback host "
                                              "(pass --any-host to allow)");
}

int
rb_auth_login(const struct rb_auth_opts *o, char **hdr, enum rb_auth_scheme *scheme,
              long *expires_in, struct err *e)
{
    struct regauth_creds *cr = calloc(1, sizeof(*cr));
    struct answer a = {0};
    char v2[600], *url = NULL, *line = NULL, *token = NULL;
    enum rb_auth_scheme sch = RB_AUTH_NONE;
    long exp = 0, code;
    int rc = -1;
    if (!cr)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    if (regauth_parse_creds(o->userpass, cr, e) != 0)
        goto out;
    snprintf(v2, sizeof(v2), "%s/v2/", o->base);
    if ((code = get(o, v2, NULL, NULL, &a, e)) < 0)
        goto out;
    if (code == 200) {
        *hdr = NULL;
        *scheme = RB_AUTH_NONE;
        *expires_in = 0;
        rc = 0;
        goto out;
    }
    if (code != 401) {
        err_set(e, ERR_UNAUTHORIZED, 0, "GET /v2/ answered %ld, want 200 or 401", code);
        goto out;
    }
    size_t cap = 12288; /* ocireg reads request heads of up to 16 KiB */
    if (!(url = malloc(cap))) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    if (rb_auth_token_url(a.www[0] ? a.www : NULL, o->scopes, o->nscopes, &sch, url, cap, e) != 0)
        goto out;
    if (sch == RB_AUTH_BASIC) {
        unsigned char raw[1400];
        int n = snprintf((char *)raw, sizeof(raw), "%s:%s", cr->user, cr->pass);
        size_t lcap = 32 + 4 * ((size_t)n + 2) / 3;
        line = malloc(lcap);
        if (!line) {
            err_set(e, ERR_NOMEM, 0, "out of memory");
            goto out;
        }
        memcpy(line, "Authorization: Basic ", 21);
        EVP_EncodeBlock((unsigned char *)line + 21, raw, n);
        OPENSSL_cleanse(raw, sizeof(raw));
    } else {
        if (realm_allowed(o, url, e) != 0)
            goto out;
        answer_release(&a);
        if ((code = get(o, url, NULL, cr, &a, e)) < 0)
            goto out;
        if (code != 200) {
            err_set(e, ERR_UNAUTHORIZED, 0, "token request answered %ld%s", code,
                    code == 401 ? ": credentials refused" : "");
            goto out;
        }
        if (rb_auth_token_parse(a.body ? a.body : "", a.len, &token, &exp, e) != 0)
            goto out;
        size_t lcap = strlen(token) + 32;
        if (!(line = malloc(lcap))) {
            err_set(e, ERR_NOMEM, 0, "out of memory");
            goto out;
        }
        snprintf(line, lcap, "Authorization: Bearer %s", token);
    }
    /* the header must open /v2/ now, or every measured request would be a 401 */
    answer_release(&a);
    if ((code = get(o, v2, line, NULL, &a, e)) < 0)
        goto out;
    if (code != 200) {
        err_set(e, ERR_UNAUTHORIZED, 0, "GET /v2/ with the %s answered %ld",
                sch == RB_AUTH_BASIC ? "Basic credentials" : "token", code);
        goto out;
    }
    *hdr = line;
    line = NULL;
    *scheme = sch;
    *expires_in = exp;
    rc = 0;
out:
    if (token) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    if (line) {
        OPENSSL_cleanse(line, strlen(line));
        free(line);
    }
    OPENSSL_cleanse(cr, sizeof(*cr));
    free(cr);
    free(url);
    answer_release(&a);
    return rc;
}
