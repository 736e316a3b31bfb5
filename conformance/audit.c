/* audit.c - error-format audit over every response of a run. */
#include "conformance/audit.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conformance/check.h"
#include "conformance/client.h"
#include "common/banned.h"

static struct {
    int seen;      /* 4xx responses with a body to inspect */
    int not_json;  /* ... without Content-Type application/json */
    int bad_shape; /* ... JSON, but not the spec's error shape */
    char first_not_json[600];
    char first_bad_shape[600];
} a;

/* 1 if the body is {"errors":[{"code":"UPPER_CASE", "message"?: string}, ...]} */
static int
error_shape(const struct resp *r)
{
    json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *errs = json_object_get(root, "errors");
    int ok = json_is_array(errs) && json_array_size(errs) > 0;

    for (size_t i = 0; ok && i < json_array_size(errs); i++) {
        json_t *e = json_array_get(errs, i);
        const char *code = json_string_value(json_object_get(e, "code"));
        json_t *msg = json_object_get(e, "message");
        /* spec: code contains only uppercase letters and underscores */
        ok = code != NULL && code[0] != '\0' &&
             strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == strlen(code) &&
             (msg == NULL || json_is_string(msg));
    }
    json_decref(root);
    return ok;
}

static void
observe(void *arg, const char *method, const char *url, const struct resp *r)
{
    char ct[256];

    (void)arg;
    if (r->status < 400 || r->status > 499 || strcmp(method, "HEAD") == 0 || r->truncated)
        return;
    a.seen++;
    resp_header(r, "Content-Type", ct, sizeof(ct));
    int json = strncasecmp(ct, "application/json", 16) == 0 &&
               (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
    if (!json) {
        if (a.not_json++ == 0)
            snprintf(a.first_not_json, sizeof(a.first_not_json),
                     "%s %s answered %ld with Content-Type '%s' body '%.80s'", method, url,
                     r->status, ct, r->body);
        return;
    }
    if (!error_shape(r) && a.bad_shape++ == 0)
        snprintf(a.first_bad_shape, sizeof(a.first_bad_shape), "%s %s answered %ld with '%.120s'",
                 method, url, r->status, r->body);
}

void
audit_start(struct client *c)
{
    memset(&a, 0, sizeof(a));
    client_observe(c, observe, NULL);
}

void
audit_report(struct client *c)
{
    struct check k;

    client_observe(c, NULL, NULL);
    check_begin(&k, "err-json-shape",
                "every JSON 4xx body of the run is "
                "{\"errors\":[{\"code\":\"UPPER_CASE\",\"message\":...}]}");
    check_true(&k, a.seen > 0, "no 4xx response was seen");
    check_true(&k, a.bad_shape == 0, "%d of %d error bodies malformed; first: %s", a.bad_shape,
               a.seen, a.first_bad_shape);
    check_end(&k);

    check_begin(&k, "err-json-everywhere",
                "every 4xx response of the run (HEAD aside) has Content-Type application/json");
    check_true(&k, a.seen > 0, "no 4xx response was seen");
    check_true(&k, a.not_json == 0, "%d of %d error responses not JSON; first: %s", a.not_json,
               a.seen, a.first_not_json);
    check_end(&k);
}
