/* regauth.c - credentials files and WWW-Authenticate parsing.
 *
 * RFC 7235: challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ], and a
 * header may carry several challenges separated by commas, so a new challenge
 * starts at a token that is not followed by '='. */
#include "tools/ocirun-lite/regauth.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

static const char *
skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static int
is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* read a token into buf; returns the position after it */
static const char *
read_token(const char *p, char *buf, size_t len)
{
    size_t n = 0;
    while (is_tchar((unsigned char)*p)) {
        if (n + 1 < len)
            buf[n++] = *p;
        p++;
    }
    buf[n] = '\0';
    return p;
}

/* read a quoted-string or a token value; NULL on an unterminated quote */
static const char *
read_value(const char *p, char *buf, size_t len)
{
    size_t n = 0;
    if (*p != '"') {
        /* token68 / token: up to the next comma or space */
        while (*p && *p != ',' && *p != ' ' && *p != '\t') {
            if (n + 1 < len)
                buf[n++] = *p;
            p++;
        }
        buf[n] = '\0';
        return p;
    }
    for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1])
            p++;
        if (n + 1 < len)
            buf[n++] = *p;
    }
    buf[n] = '\0';
    return *p == '"' ? p + 1 : NULL;
}

int
regauth_parse_challenge(const char *hdr, struct regauth_challenge *out, struct err *e)
{
    struct regauth_challenge best, cur;
    const char *p = hdr;
    char tok[64], val[1024];
    int have_cur = 0;

    memset(&best, 0, sizeof(best));
    memset(&cur, 0, sizeof(cur));
    if (!hdr)
        return err_set(e, ERR_UNAUTHORIZED, 0, "registry sent no WWW-Authenticate challenge");

#define FINISH_CUR()                                                                               \
    do {                                                                                           \
        if (have_cur && cur.scheme == REGAUTH_BEARER && best.scheme != REGAUTH_BEARER)             \
            best = cur;                                                                            \
        else if (have_cur && cur.scheme == REGAUTH_BASIC && best.scheme == REGAUTH_NONE)           \
            best = cur;                                                                            \
        memset(&cur, 0, sizeof(cur));                                                              \
        have_cur = 0;                                                                              \
    } while (0)

    for (;;) {
        p = skip_ws(p);
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *after = read_token(p, tok, sizeof(tok));
        if (after == p)
            return err_set(e, ERR_UNAUTHORIZED, 0, "malformed WWW-Authenticate header");
        const char *q = skip_ws(after);
        if (*q == '=' && have_cur) {
            /* auth-param of the current challenge */
            q = skip_ws(q + 1);
            q = read_value(q, val, sizeof(val));
            if (!q)
                return err_set(e, ERR_UNAUTHORIZED, 0,
                               "malformed WWW-Authenticate header: unterminated quote");
            if (strcasecmp(tok, "realm") == 0)
                snprintf(cur.realm, sizeof(cur.realm), "%s", val);
            else if (strcasecmp(tok, "service") == 0)
                snprintf(cur.service, sizeof(cur.service), "%s", val);
            else if (strcasecmp(tok, "scope") == 0)
                snprintf(cur.scope, sizeof(cur.scope), "%s", val);
            p = q;
            continue;
        }
        /* a new challenge */
        FINISH_CUR();
        have_cur = 1;
        if (strcasecmp(tok, "Bearer") == 0)
            cur.scheme = REGAUTH_BEARER;
        else if (strcasecmp(tok, "Basic") == 0)
            cur.scheme = REGAUTH_BASIC;
        else
            cur.scheme = REGAUTH_NONE; /* unknown scheme: parsed and ignored */
        p = after;
        /* a token68 right after the scheme (not an auth-param) */
        q = skip_ws(p);
        if (*q && *q != ',') {
            const char *t2 = read_token(q, tok, sizeof(tok));
            if (*skip_ws(t2) != '=') {
                q = read_value(q, val, sizeof(val));
                if (!q)
                    return err_set(e, ERR_UNAUTHORIZED, 0, "malformed WWW-Authenticate header");
                p = q;
            }
        }
    }
    FINISH_CUR();
#undef FINISH_CUR
    if (best.scheme == REGAUTH_NONE)
        return err_set(e, ERR_UNAUTHORIZED, 0,
                       "registry asks for an unsupported authentication scheme");
    if (best.scheme == REGAUTH_BEARER && !best.realm[0])
        return err_set(e, ERR_UNAUTHORIZED, 0, "bearer challenge without a realm");
    *out = best;
    return 0;
}

long
regauth_base64_decode(const char *in, char *out, size_t outlen)
{
    unsigned int acc = 0;
    int bits = 0, pad = 0;
    size_t n = 0;

    for (const char *p = in; *p; p++) {
        int v;
        char c = *p;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else if (c == '=') {
            pad++;
            continue;
        } else if (c == '\n' || c == '\r')
            continue;
        else
            return -1;
        if (pad)
            return -1; /* data after padding */
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= outlen)
                return -1;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2)
        return -1;
    out[n] = '\0';
    return (long)n;
}

int
regauth_parse_creds(const char *s, struct regauth_creds *c, struct err *e)
{
    const char *colon = strchr(s, ':');
    struct regauth_creds r;
    if (!colon || colon == s)
        return err_set(e, ERR_CONFIG, 0, "credentials must be given as user:password");
    if ((size_t)(colon - s) >= sizeof(r.user) || strlen(colon + 1) >= sizeof(r.pass))
        return err_set(e, ERR_CONFIG, 0, "credentials too long");
    memset(&r, 0, sizeof(r));
    memcpy(r.user, s, (size_t)(colon - s));
    snprintf(r.pass, sizeof(r.pass), "%s", colon + 1);
    *c = r;
    return 0;
}

/* "https://host:port/v1/" -> "host:port" */
static void
key_host(const char *key, char *buf, size_t len)
{
    const char *p = strstr(key, "://");
    p = p ? p + 3 : key;
    size_t n = strcspn(p, "/");
    if (n >= len)
        n = len - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
}

static int
is_docker_hub(const char *h)
{
    return strcmp(h, "docker.io") == 0 || strcmp(h, "index.docker.io") == 0 ||
           strcmp(h, "registry-1.docker.io") == 0;
}

int
regauth_lookup_file(const char *path, const char *host, struct regauth_creds *c, struct err *e)
{
    json_error_t jerr;
    json_t *root = NULL, *auths;
    const char *key;
    json_t *val;
    int rc = 0;
    FILE *f = fopen(path, "r");

    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return err_sys(e, ERR_CONFIG, errno, "cannot read auth file \"%s\"", path);
    }
    root = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!root)
        return err_set(e, ERR_CONFIG, 0, "auth file \"%s\": line %d: %s", path, jerr.line,
                       jerr.text);
    auths = json_object_get(root, "auths");
    if (!json_is_object(auths))
        goto out;
    json_object_foreach(auths, key, val)
    {
        char kh[512];
        key_host(key, kh, sizeof(kh));
        if (!(strcmp(kh, host) == 0 || (is_docker_hub(kh) && is_docker_hub(host))))
            continue;
        struct regauth_creds r;
        memset(&r, 0, sizeof(r));
        const char *auth = json_string_value(json_object_get(val, "auth"));
        const char *u = json_string_value(json_object_get(val, "username"));
        const char *pw = json_string_value(json_object_get(val, "password"));
        if (auth && *auth) {
            char dec[1400];
            if (regauth_base64_decode(auth, dec, sizeof(dec)) < 0 ||
                regauth_parse_creds(dec, &r, NULL) < 0) {
                rc = err_set(e, ERR_CONFIG, 0, "auth file \"%s\": bad \"auth\" value for \"%s\"",
                             path, key);
                goto out;
            }
        } else if (u && pw) {
            if (strlen(u) >= sizeof(r.user) || strlen(pw) >= sizeof(r.pass)) {
                rc = err_set(e, ERR_CONFIG, 0, "auth file \"%s\": credentials too long", path);
                goto out;
            }
            snprintf(r.user, sizeof(r.user), "%s", u);
            snprintf(r.pass, sizeof(r.pass), "%s", pw);
        } else {
            continue;
        }
        *c = r;
        rc = 1;
        goto out;
    }
out:
    json_decref(root);
    return rc;
}

int
regauth_lookup(const char *host, struct regauth_creds *c, struct err *e)
{
    char path[4096];
    const char *v;
    int rc;

    v = getenv("REGISTRY_AUTH_FILE");
    if (v && *v)
        return regauth_lookup_file(v, host, c, e);
    v = getenv("XDG_RUNTIME_DIR");
    if (v && *v) {
        snprintf(path, sizeof(path), "%s/containers/auth.json", v);
        if ((rc = regauth_lookup_file(path, host, c, e)) != 0)
            return rc;
    }
    v = getenv("DOCKER_CONFIG");
    if (v && *v) {
        snprintf(path, sizeof(path), "%s/config.json", v);
    } else {
        v = getenv("HOME");
        if (!v || !*v)
            return 0;
        snprintf(path, sizeof(path), "%s/.docker/config.json", v);
    }
    return regauth_lookup_file(path, host, c, e);
}
