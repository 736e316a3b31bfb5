/* check.h - recording and printing of conformance checks.
 *
 * A check has an id ("push-chunked-416"), a one-line description and a result.
 * It is written as a sequence of assertions on a `struct check`; the first one
 * that fails records the reason and turns the later ones into no-ops, so a test
 * reads top to bottom without nested ifs. check_end prints exactly one line:
 *   PASS <id> <description>
 *   FAIL <id> <description>: <reason>
 * (or one JSON object per line with --json) and counts it. */
#ifndef CONFORMANCE_CHECK_H
#define CONFORMANCE_CHECK_H

#include <stddef.h>

struct resp;

struct check {
    const char *id;
    const char *desc;
    int failed;
    char reason[768];
};

/* check_setup - only ids matching the fnmatch(3) glob `only` (NULL = all) are
 * printed and counted; json selects JSON-lines output. */
void check_setup(const char *only, int json);

/* check_begin - start a check. Returns 1. */
int check_begin(struct check *c, const char *id, const char *desc);

/* check_require - fail the check as "skipped: prerequisite <prereq> failed"
 * unless ok. Returns ok. */
int check_require(struct check *c, int ok, const char *prereq);

/* check_true - fail with the printf-style reason unless cond. Returns cond
 * (0 as well when the check had already failed). */
int check_true(struct check *c, int cond, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* check_ok - 1 while no assertion of c has failed. */
int check_ok(const struct check *c);

/* check_transport - fail if the request did not get a response. */
int check_transport(struct check *c, const struct resp *r, const char *what);

/* check_status - the response's status is `want`; `what` names the request
 * ("PUT manifest by tag"). */
int check_status(struct check *c, const struct resp *r, long want, const char *what);

/* check_header_eq - header `name` is present and equal to want (exact). */
int check_header_eq(struct check *c, const struct resp *r, const char *name, const char *want,
                    const char *what);

/* check_header_present - header `name` is present and not empty; its value
 * is copied into out (when out is not NULL). */
int check_header_present(struct check *c, const struct resp *r, const char *name, char *out,
                         size_t out_size, const char *what);

/* check_content_type - the media type of Content-Type (parameters after ';'
 * ignored, as the spec tells clients to) equals want. */
int check_content_type(struct check *c, const struct resp *r, const char *want, const char *what);

/* check_body_eq - the body is byte-identical to want. */
int check_body_eq(struct check *c, const struct resp *r, const void *want, size_t want_len,
                  const char *what);

/* check_error_body - the response is `status` with Content-Type
 * application/json and a body {"errors":[{"code":..., "message":...}, ...]}
 * in which one entry has code `code` (code NULL: any code). */
int check_error_body(struct check *c, const struct resp *r, long status, const char *code,
                     const char *what);

/* check_end - print and count the check. Returns 1 if it passed. */
int check_end(struct check *c);

/* check_summary - print "N passed, N failed". Returns the number failed. */
int check_summary(void);

#endif
