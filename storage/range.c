/* range.c - the two range headers of the distribution API.
 *
 * PATCH Content-Range (spec end-5): "<start>-<end>", inclusive, no unit; the RFC
 * 9110 form "bytes <start>-<end>/<total|*>" is accepted too.
 * GET Range (RFC 9110 14.2): one "bytes=" range; anything the server may ignore
 * (another unit, several ranges, a malformed spec) yields 0 = serve it all. */
#include "storage/storage.h"

#include <string.h>

#include "common/banned.h"

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* parse_u64 - decimal digits at s[*i..len); at least one; no overflow. */
static int
parse_u64(const char *s, size_t len, size_t *i, uint64_t *out)
{
    size_t j = *i;
    uint64_t v = 0;
    if (j >= len || !is_digit(s[j]))
        return -1;
    while (j < len && is_digit(s[j])) {
        unsigned d = (unsigned)(s[j] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        j++;
    }
    *i = j;
    *out = v;
    return 0;
}

static void
trim(const char **s, size_t *len)
{
    while (*len && is_ows(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_ows((*s)[*len - 1]))
        (*len)--;
}

int
range_parse_content(const char *s, size_t len, uint64_t *start, uint64_t *end, struct err *e)
{
    if (!s)
        goto bad;
    trim(&s, &len);
    size_t i = 0;
    int unit = 0;
    if (len >= 6 && strncasecmp(s, "bytes ", 6) == 0) {
        unit = 1;
        i = 6;
        while (i < len && is_ows(s[i]))
            i++;
    }
    uint64_t a, b;
    if (parse_u64(s, len, &i, &a) < 0 || i >= len || s[i] != '-')
        goto bad;
    i++;
    if (parse_u64(s, len, &i, &b) < 0 || a > b)
        goto bad;
    if (unit) {
        if (i >= len || s[i] != '/')
            goto bad;
        i++;
        if (i < len && s[i] == '*') {
            i++;
        } else {
            uint64_t total;
            if (parse_u64(s, len, &i, &total) < 0 || b >= total)
                goto bad;
        }
    }
    if (i != len)
        goto bad;
    *start = a;
    *end = b;
    return 0;
bad:
    return err_set(e, ERR_RANGE_INVALID, 0, "invalid content-range");
}

int
range_parse_request(const char *s, size_t len, uint64_t size, uint64_t *start, uint64_t *end,
                    struct err *e)
{
    if (!s)
        return 0;
    trim(&s, &len);
    if (len < 6 || strncasecmp(s, "bytes=", 6) != 0)
        return 0;
    size_t i = 6;
    while (i < len && is_ows(s[i]))
        i++;
    if (memchr(s + i, ',', len - i))
        return 0; /* several ranges: we may ignore the header and send it all */
    uint64_t a = 0, b = 0;
    if (i < len && s[i] == '-') {
        /* suffix: the last n bytes */
        i++;
        if (parse_u64(s, len, &i, &b) < 0 || i != len)
            return 0;
        if (b == 0 || size == 0)
            goto unsat;
        *start = b >= size ? 0 : size - b;
        *end = size - 1;
        return 1;
    }
    if (parse_u64(s, len, &i, &a) < 0 || i >= len || s[i] != '-')
        return 0;
    i++;
    int open_end = i == len;
    if (!open_end && (parse_u64(s, len, &i, &b) < 0 || i != len || b < a))
        return 0;
    if (a >= size)
        goto unsat;
    *start = a;
    *end = open_end || b >= size ? size - 1 : b;
    return 1;
unsat:
    return err_set(e, ERR_RANGE_NOT_SATISFIABLE, 0, "range not satisfiable");
}
