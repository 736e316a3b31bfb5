/* rb_util.c - argument parsing, see rb_util.h. */
#include "tools/regbench/rb_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/banned.h"

int
rb_parse_size(const char *s, uint64_t *out, struct err *e)
{
    char *end = NULL;
    if (!s || !isdigit((unsigned char)s[0]))
        return err_set(e, ERR_CONFIG, 0, "size '%s': not a number", s ? s : "");
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return err_set(e, ERR_CONFIG, 0, "size '%s': out of range", s);
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case '\0':
        break;
    case 'K':
        shift = 10;
        end++;
        break;
    case 'M':
        shift = 20;
        end++;
        break;
    case 'G':
        shift = 30;
        end++;
        break;
    default:
        return err_set(e, ERR_CONFIG, 0, "size '%s': unknown unit", s);
    }
    if (shift && (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0))
        end += strlen(end);
    if (*end != '\0')
        return err_set(e, ERR_CONFIG, 0, "size '%s': unknown unit", s);
    if (v == 0)
        return err_set(e, ERR_CONFIG, 0, "size '%s': must be positive", s);
    if (v > (UINT64_MAX >> shift))
        return err_set(e, ERR_CONFIG, 0, "size '%s': out of range", s);
    *out = (uint64_t)v << shift;
    return 0;
}

int
rb_parse_url(const char *url, char *base, size_t basecap, char *host, size_t hostcap, char *port,
             size_t portcap, struct err *e)
{
    const char *p;
    const char *defport;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        defport = "80";
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        defport = "443";
    } else {
        return err_set(e, ERR_CONFIG, 0, "url '%s': want http://HOST:PORT", url);
    }
    const char *hs = p, *he;
    if (*p == '[') {
        he = strchr(p, ']');
        if (!he)
            return err_set(e, ERR_CONFIG, 0, "url '%s': unclosed '['", url);
        hs = p + 1;
        p = he + 1;
    } else {
        p += strcspn(p, ":/?#@");
        he = p;
    }
    if (he == hs || (size_t)(he - hs) >= hostcap)
        return err_set(e, ERR_CONFIG, 0, "url '%s': bad host", url);
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    const char *ps = defport;
    size_t pl = strlen(defport);
    if (*p == ':') {
        ps = ++p;
        while (isdigit((unsigned char)*p))
            p++;
        pl = (size_t)(p - ps);
        if (pl == 0 || pl > 5 || atoi(ps) < 1 || atoi(ps) > 65535)
            return err_set(e, ERR_CONFIG, 0, "url '%s': bad port", url);
    }
    if (pl >= portcap)
        return err_set(e, ERR_CONFIG, 0, "url '%s': bad port", url);
    memcpy(port, ps, pl);
    port[pl] = '\0';
    if (!(*p == '\0' || (p[0] == '/' && p[1] == '\0')))
        return err_set(e, ERR_CONFIG, 0, "url '%s': no path, query or user allowed", url);
    size_t bl = (size_t)(p - url);
    if (bl >= basecap)
        return err_set(e, ERR_CONFIG, 0, "url '%s': too long", url);
    memcpy(base, url, bl);
    base[bl] = '\0';
    return 0;
}

int
rb_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}
