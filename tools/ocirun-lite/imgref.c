/* imgref.c - parse and normalise image references (docker's reference grammar:
 * distribution/reference regexp.go and normalize.go describe the same rules). */
#include "tools/ocirun-lite/imgref.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/banned.h"

static int
is_alnum_lower(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* one path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static int
component_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_alnum_lower((unsigned char)s[0]))
        return 0;
    while (i < n) {
        while (i < n && is_alnum_lower((unsigned char)s[i]))
            i++;
        if (i == n)
            return 1;
        /* separator */
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < n && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return 0;
        }
        if (i == n || !is_alnum_lower((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* host: DNS-ish labels or an [IPv6] literal, then an optional :port */
static int
domain_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return 0;
    if (s[0] == '[') {
        while (i < n && s[i] != ']') {
            if (!(isxdigit((unsigned char)s[i]) || s[i] == ':' || s[i] == '[' || s[i] == '.'))
                return 0;
            i++;
        }
        if (i == n)
            return 0;
        i++;
    } else {
        size_t start = i;
        while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-'))
            i++;
        if (i == start || s[start] == '.' || s[start] == '-' || s[i - 1] == '.' || s[i - 1] == '-')
            return 0;
    }
    if (i == n)
        return 1;
    if (s[i] != ':' || i + 1 == n)
        return 0;
    for (i++; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static int
tag_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    if (!(isalnum((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

static int
digest_ok(const char *s, struct err *e)
{
    const char *colon = strchr(s, ':');
    if (!colon)
        return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest \"%s\": no algorithm", s);
    if ((size_t)(colon - s) != 6 || strncmp(s, "sha256", 6) != 0)
        return err_set(e, ERR_DIGEST_INVALID, 0, "unsupported digest algorithm in \"%s\"", s);
    if (strlen(colon + 1) != 64)
        return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest \"%s\": need 64 hex digits", s);
    for (const char *p = colon + 1; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest \"%s\": not lower-case hex",
                           s);
    return 0;
}

int
imgref_parse(const char *s, struct imgref *out, struct err *e)
{
    struct imgref r;
    char name[512];
    const char *at, *slash, *first_end;
    char *colon, *lastslash;
    size_t n;

    memset(&r, 0, sizeof(r));
    if (!s || !*s)
        return err_set(e, ERR_NAME_INVALID, 0, "empty image reference");
    if (strlen(s) >= sizeof(name))
        return err_set(e, ERR_NAME_INVALID, 0, "image reference too long");

    at = strchr(s, '@');
    if (at) {
        if (strlen(at + 1) >= sizeof(r.digest))
            return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest in \"%s\"", s);
        snprintf(r.digest, sizeof(r.digest), "%s", at + 1);
        if (digest_ok(r.digest, e) < 0)
            return -1;
        n = (size_t)(at - s);
    } else {
        n = strlen(s);
    }
    memcpy(name, s, n);
    name[n] = '\0';

    /* a ':' after the last '/' starts the tag */
    lastslash = strrchr(name, '/');
    colon = strrchr(lastslash ? lastslash : name, ':');
    if (colon) {
        *colon = '\0';
        if (!tag_ok(colon + 1))
            return err_set(e, ERR_NAME_INVALID, 0, "invalid tag \"%s\" in \"%s\"", colon + 1, s);
        snprintf(r.tag, sizeof(r.tag), "%s", colon + 1);
    }
    if (!name[0])
        return err_set(e, ERR_NAME_INVALID, 0, "invalid reference \"%s\": no name", s);

    slash = strchr(name, '/');
    first_end = slash ? slash : name + strlen(name);
    const char *path = name;
    if (slash) {
        size_t fl = (size_t)(first_end - name);
        int is_domain = memchr(name, '.', fl) || memchr(name, ':', fl) ||
                        (fl == 9 && strncmp(name, "localhost", 9) == 0);
        for (size_t i = 0; i < fl && !is_domain; i++)
            if (isupper((unsigned char)name[i]))
                is_domain = 1;
        if (is_domain) {
            if (!domain_ok(name, fl) || fl >= sizeof(r.domain))
                return err_set(e, ERR_NAME_INVALID, 0, "invalid registry host in \"%s\"", s);
            memcpy(r.domain, name, fl);
            r.domain[fl] = '\0';
            path = slash + 1;
        }
    }
    if (!r.domain[0] || strcmp(r.domain, "index.docker.io") == 0)
        snprintf(r.domain, sizeof(r.domain), "%s", IMGREF_DOCKER_DOMAIN);

    /* validate every path component */
    for (const char *p = path;;) {
        const char *end = strchr(p, '/');
        size_t cl = end ? (size_t)(end - p) : strlen(p);
        if (!component_ok(p, cl)) {
            for (size_t i = 0; i < cl; i++)
                if (isupper((unsigned char)p[i]))
                    return err_set(e, ERR_NAME_INVALID, 0,
                                   "invalid reference \"%s\": repository name must be lowercase",
                                   s);
            return err_set(e, ERR_NAME_INVALID, 0, "invalid repository name in \"%s\"", s);
        }
        if (!end)
            break;
        p = end + 1;
    }
    if (strcmp(r.domain, IMGREF_DOCKER_DOMAIN) == 0 && !strchr(path, '/')) {
        if (snprintf(r.path, sizeof(r.path), "library/%s", path) >= (int)sizeof(r.path))
            return err_set(e, ERR_NAME_INVALID, 0, "repository name too long in \"%s\"", s);
    } else if (snprintf(r.path, sizeof(r.path), "%s", path) >= (int)sizeof(r.path)) {
        return err_set(e, ERR_NAME_INVALID, 0, "repository name too long in \"%s\"", s);
    }
    if (strlen(r.domain) + 1 + strlen(r.path) > 255)
        return err_set(e, ERR_NAME_INVALID, 0, "repository name too long in \"%s\"", s);
    if (!r.tag[0] && !r.digest[0])
        snprintf(r.tag, sizeof(r.tag), "latest");
    *out = r;
    return 0;
}

char *
imgref_format(const struct imgref *r, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s%s%s%s%s", r->domain, r->path, r->tag[0] ? ":" : "", r->tag,
             r->digest[0] ? "@" : "", r->digest);
    return buf;
}

const char *
imgref_reference(const struct imgref *r)
{
    return r->digest[0] ? r->digest : r->tag;
}

const char *
imgref_api_host(const struct imgref *r)
{
    if (strcmp(r->domain, IMGREF_DOCKER_DOMAIN) == 0)
        return IMGREF_DOCKER_API_HOST;
    return r->domain;
}

/* length of the host part of "h", "h:port", "[v6]" or "[v6]:port" */
static size_t
host_part_len(const char *h, size_t n)
{
    const char *c;
    if (n > 0 && h[0] == '[') {
        const char *rb = memchr(h, ']', n);
        return rb ? (size_t)(rb - h) + 1 : n;
    }
    c = memchr(h, ':', n);
    return c ? (size_t)(c - h) : n;
}

int
imgref_host_in_list(const char *host, const char *list)
{
    size_t hl = strlen(host), hostonly = host_part_len(host, hl);
    const char *p = list;

    if (!list)
        return 0;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ", \t");
        if (n == 0)
            break;
        if (n == hl && strncmp(p, host, n) == 0)
            return 1;
        /* an entry without a port matches every port of that host */
        if (host_part_len(p, n) == n && n == hostonly && strncmp(p, host, n) == 0)
            return 1;
        p += n;
    }
    return 0;
}
