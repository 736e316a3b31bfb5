/* rb_json.c - allocation-free JSON validation for tags lists, see rb_json.h.
 * Grammar: RFC 8259 (values, strings with escapes, numbers), nesting limited to
 * 64 levels. */
#include "tools/regbench/rb_json.h"

#include <stdio.h>
#include <string.h>

#include "common/banned.h"

#define MAX_DEPTH 64

struct cur {
    const char *p, *end;
    int depth;
    const char *why;
};

static int
fail(struct cur *c, const char *why)
{
    if (!c->why)
        c->why = why;
    return -1;
}

static void
ws(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int
is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* a string at c->p: *s and *n give its raw content, *esc = 1 if it holds escapes */
static int
string(struct cur *c, const char **s, size_t *n, int *esc)
{
    if (c->p >= c->end || *c->p != '"')
        return fail(c, "expected a string");
    const char *start = ++c->p;
    int e = 0;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            *s = start;
            *n = (size_t)(c->p - start);
            *esc = e;
            c->p++;
            return 0;
        }
        if (ch < 0x20)
            return fail(c, "control character in a string");
        if (ch == '\\') {
            e = 1;
            if (++c->p >= c->end)
                break;
            char x = *c->p;
            if (x == 'u') {
                if (c->end - c->p < 5 || !is_hex(c->p[1]) || !is_hex(c->p[2]) || !is_hex(c->p[3]) ||
                    !is_hex(c->p[4]))
                    return fail(c, "bad \\u escape");
                c->p += 4;
            } else if (!strchr("\"\\/bfnrt", x) || x == '\0') {
                return fail(c, "bad escape");
            }
        }
        c->p++;
    }
    return fail(c, "unterminated string");
}

static int
literal(struct cur *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return fail(c, "bad literal");
    c->p += n;
    return 0;
}

static int
digits(struct cur *c)
{
    const char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > s ? 0 : fail(c, "bad number");
}

static int
number(struct cur *c)
{
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (c->p < c->end && *c->p == '0')
        c->p++;
    else if (digits(c) != 0)
        return -1;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (digits(c) != 0)
            return -1;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (digits(c) != 0)
            return -1;
    }
    return 0;
}

static int value(struct cur *c);

/* '[' already current: elements; *count and *all_strings describe them */
static int
array(struct cur *c, size_t *count, int *all_strings)
{
    size_t k = 0;
    int strs = 1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        goto done;
    }
    for (;;) {
        ws(c);
        if (c->p < c->end && *c->p == '"') {
            const char *s;
            size_t n;
            int esc;
            if (string(c, &s, &n, &esc) != 0)
                return -1;
        } else {
            strs = 0;
            if (value(c) != 0)
                return -1;
        }
        k++;
        ws(c);
        if (c->p >= c->end)
            return fail(c, "unterminated array");
        if (*c->p == ']') {
            c->p++;
            break;
        }
        if (*c->p != ',')
            return fail(c, "expected ',' or ']'");
        c->p++;
    }
done:
    if (count)
        *count = k;
    if (all_strings)
        *all_strings = strs;
    return 0;
}

static int
object_members(struct cur *c, int top, const char **name, size_t *name_len, int *name_esc,
               size_t *ntags, int *seen)
{
    c->p++; /* '{' */
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        const char *k;
        size_t kn;
        int kesc;
        ws(c);
        if (string(c, &k, &kn, &kesc) != 0)
            return -1;
        ws(c);
        if (c->p >= c->end || *c->p != ':')
            return fail(c, "expected ':'");
        c->p++;
        ws(c);
        if (top && !kesc && kn == 4 && memcmp(k, "name", 4) == 0) {
            if (*seen & 1)
                return fail(c, "duplicate \"name\"");
            *seen |= 1;
            if (string(c, name, name_len, name_esc) != 0)
                return fail(c, "\"name\" is not a string");
        } else if (top && !kesc && kn == 4 && memcmp(k, "tags", 4) == 0) {
            if (*seen & 2)
                return fail(c, "duplicate \"tags\"");
            *seen |= 2;
            if (c->p < c->end && *c->p == 'n') {
                if (literal(c, "null") != 0)
                    return -1;
                *ntags = 0;
            } else {
                int strs;
                if (c->p >= c->end || *c->p != '[')
                    return fail(c, "\"tags\" is not an array");
                if (array(c, ntags, &strs) != 0)
                    return -1;
                if (!strs)
                    return fail(c, "a tag is not a string");
            }
        } else if (value(c) != 0) {
            return -1;
        }
        ws(c);
        if (c->p >= c->end)
            return fail(c, "unterminated object");
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p != ',')
            return fail(c, "expected ',' or '}'");
        c->p++;
    }
}

static int
value(struct cur *c)
{
    int rc;
    ws(c);
    if (c->p >= c->end)
        return fail(c, "expected a value");
    if (++c->depth > MAX_DEPTH)
        return fail(c, "nested too deep");
    switch (*c->p) {
    case '{': {
        const char *n;
        size_t nl, t;
        int e, seen = 0;
        rc = object_members(c, 0, &n, &nl, &e, &t, &seen);
        break;
    }
    case '[':
        rc = array(c, NULL, NULL);
        break;
    case '"': {
        const char *s;
        size_t n;
        int e;
        rc = string(c, &s, &n, &e);
        break;
    }
    case 't':
        rc = literal(c, "true");
        break;
    case 'f':
        rc = literal(c, "false");
        break;
    case 'n':
        rc = literal(c, "null");
        break;
    default:
        rc = number(c);
        break;
    }
    c->depth--;
    return rc;
}

int
rb_json_tags(const char *buf, size_t len, const char **name, size_t *name_len, int *escaped,
             size_t *ntags, char *why, size_t whycap)
{
    struct cur c = {.p = buf, .end = buf + len};
    const char *n = NULL;
    size_t nl = 0, t = 0;
    int e = 0, seen = 0;
    ws(&c);
    if (c.p >= c.end || *c.p != '{') {
        fail(&c, "not a JSON object");
        goto bad;
    }
    c.depth = 1;
    if (object_members(&c, 1, &n, &nl, &e, &t, &seen) != 0)
        goto bad;
    ws(&c);
    if (c.p != c.end) {
        fail(&c, "bytes after the JSON object");
        goto bad;
    }
    if (seen != 3) {
        fail(&c, (seen & 1) ? "no \"tags\" member" : "no \"name\" member");
        goto bad;
    }
    *name = n;
    *name_len = nl;
    *escaped = e;
    *ntags = t;
    return 0;
bad:
    snprintf(why, whycap, "%s at byte %zu", c.why ? c.why : "invalid JSON", (size_t)(c.p - buf));
    return -1;
}
