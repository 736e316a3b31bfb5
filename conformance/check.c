/* check.c - conformance check results. */
#include "conformance/check.h"

#include <fnmatch.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conformance/client.h"
#include "common/banned.h"

static const char *only_glob;
static int json_out;
static int n_passed, n_failed;

void
check_setup(const char *only, int json)
{
    only_glob = only;
    json_out = json;
}

int
check_begin(struct check *c, const char *id, const char *desc)
{
    c->id = id;
    c->desc = desc;
    c->failed = 0;
    c->reason[0] = '\0';
    return 1;
}

static void __attribute__((format(printf, 2, 0)))
fail_v(struct check *c, const char *fmt, va_list ap)
{
    if (c->failed)
        return;
    c->failed = 1;
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
}

static void __attribute__((format(printf, 2, 3))) fail(struct check *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fail_v(c, fmt, ap);
    va_end(ap);
}

int
check_ok(const struct check *c)
{
    return !c->failed;
}

int
check_require(struct check *c, int ok, const char *prereq)
{
    if (!ok)
        fail(c, "skipped: prerequisite %s failed", prereq);
    return ok;
}

int
check_true(struct check *c, int cond, const char *fmt, ...)
{
    va_list ap;

    if (c->failed)
        return 0;
    if (!cond) {
        va_start(ap, fmt);
        fail_v(c, fmt, ap);
        va_end(ap);
    }
    return cond;
}

int
check_transport(struct check *c, const struct resp *r, const char *what)
{
    if (c->failed)
        return 0;
    if (r->status == 0) {
        fail(c, "%s: no response: %s", what, r->error);
        return 0;
    }
    if (r->truncated) {
        fail(c,
             "%s: status %ld, but the body is shorter than its Content-Length (HTTP framing "
             "error: %s)",
             what, r->status, r->error);
        return 0;
    }
    return 1;
}

/* a short, single-line, printable-ASCII excerpt of a response body for
 * failure messages (bodies may be binary; --json needs valid UTF-8) */
static void
excerpt(const struct resp *r, char *out, size_t n)
{
    size_t j = 0;

    for (size_t i = 0; i < r->body_len && j + 1 < n && i < 160; i++) {
        unsigned char ch = (unsigned char)r->body[i];
        out[j++] = (ch == '\n' || ch == '\r' || ch == '\t') ? ' '
                   : (ch < 0x20 || ch > 0x7e)               ? '.'
                                                            : (char)ch;
    }
    out[j] = '\0';
}

int
check_status(struct check *c, const struct resp *r, long want, const char *what)
{
    char ex[200];

    if (!check_transport(c, r, what))
        return 0;
    if (r->status != want) {
        excerpt(r, ex, sizeof(ex));
        fail(c, "%s: expected status %ld, got %ld%s%s", what, want, r->status,
             ex[0] ? " body " : "", ex);
        return 0;
    }
    return 1;
}

int
check_header_eq(struct check *c, const struct resp *r, const char *name, const char *want,
                const char *what)
{
    char v[1024];

    if (c->failed)
        return 0;
    if (!resp_header(r, name, v, sizeof(v))) {
        fail(c, "%s: expected header %s: %s, got none", what, name, want);
        return 0;
    }
    if (strcmp(v, want) != 0) {
        fail(c, "%s: expected header %s: %s, got %s", what, name, want, v);
        return 0;
    }
    return 1;
}

int
check_header_present(struct check *c, const struct resp *r, const char *name, char *out,
                     size_t out_size, const char *what)
{
    char v[2048];

    if (c->failed)
        return 0;
    if (!resp_header(r, name, v, sizeof(v)) || v[0] == '\0') {
        fail(c, "%s: expected a %s header, got none", what, name);
        return 0;
    }
    if (out != NULL)
        snprintf(out, out_size, "%s", v);
    return 1;
}

int
check_content_type(struct check *c, const struct resp *r, const char *want, const char *what)
{
    char v[512];

    if (c->failed)
        return 0;
    if (!resp_header(r, "Content-Type", v, sizeof(v))) {
        fail(c, "%s: expected Content-Type %s, got none", what, want);
        return 0;
    }
    char *semi = strchr(v, ';');
    if (semi != NULL)
        *semi = '\0';
    size_t l = strlen(v);
    while (l > 0 && (v[l - 1] == ' ' || v[l - 1] == '\t'))
        v[--l] = '\0';
    if (strcasecmp(v, want) != 0) {
        fail(c, "%s: expected Content-Type %s, got %s", what, want, v);
        return 0;
    }
    return 1;
}

int
check_body_eq(struct check *c, const struct resp *r, const void *want, size_t want_len,
              const char *what)
{
    if (c->failed)
        return 0;
    if (r->body_len != want_len) {
        fail(c, "%s: expected a body of %zu bytes, got %zu bytes", what, want_len, r->body_len);
        return 0;
    }
    if (memcmp(r->body, want, want_len) != 0) {
        fail(c, "%s: body of %zu bytes differs from what was pushed", what, want_len);
        return 0;
    }
    return 1;
}

int
check_error_body(struct check *c, const struct resp *r, long status, const char *code,
                 const char *what)
{
    char ct[256], ex[200];
    json_t *root = NULL, *errs;
    json_error_t jerr;
    int found = 0;

    if (!check_status(c, r, status, what))
        return 0;
    excerpt(r, ex, sizeof(ex));
    resp_header(r, "Content-Type", ct, sizeof(ct));
    /* spec "Error Codes": a JSON error body has this shape; parameters such as
     * "; charset=utf-8" are allowed on the media type */
    if (strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
        fail(c, "%s: expected Content-Type application/json on the error, got '%s' (body '%s')",
             what, ct, ex);
        return 0;
    }
    root = json_loadb(r->body, r->body_len, 0, &jerr);
    errs = root ? json_object_get(root, "errors") : NULL;
    if (!json_is_array(errs) || json_array_size(errs) == 0) {
        fail(c, "%s: expected body {\"errors\":[{\"code\":...}]}, got '%s'", what, ex);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(errs); i++) {
        json_t *e = json_array_get(errs, i);
        const char *ec = json_string_value(json_object_get(e, "code"));
        if (ec == NULL) {
            fail(c, "%s: errors[%zu] has no string \"code\" (body '%s')", what, i, ex);
            goto out;
        }
        json_t *m = json_object_get(e, "message");
        if (m != NULL && !json_is_string(m)) {
            fail(c, "%s: errors[%zu].message is not a string (body '%s')", what, i, ex);
            goto out;
        }
        if (code == NULL || strcmp(ec, code) == 0)
            found = 1;
    }
    if (!found)
        fail(c, "%s: expected error code %s, got body '%s'", what, code, ex);
out:
    json_decref(root);
    return !c->failed;
}

int
check_end(struct check *c)
{
    /* one line per check whatever the reason quotes (bodies, URLs): blanks
     * for line breaks, '.' for anything not printable ASCII */
    for (char *p = c->reason; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '\n' || ch == '\r' || ch == '\t')
            *p = ' ';
        else if (ch < 0x20 || ch > 0x7e)
            *p = '.';
    }
    if (only_glob != NULL && fnmatch(only_glob, c->id, 0) != 0)
        return !c->failed;
    if (c->failed)
        n_failed++;
    else
        n_passed++;
    if (json_out) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "id", c->id, "result", c->failed ? "fail" : "pass",
                              "description", c->desc);
        if (o != NULL && c->failed)
            json_object_set_new(o, "reason", json_string(c->reason));
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s != NULL)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    } else if (c->failed) {
        printf("FAIL %s %s: %s\n", c->id, c->desc, c->reason);
    } else {
        printf("PASS %s %s\n", c->id, c->desc);
    }
    fflush(stdout);
    return !c->failed;
}

int
check_summary(void)
{
    printf("%d passed, %d failed\n", n_passed, n_failed);
    fflush(stdout);
    return n_failed;
}
