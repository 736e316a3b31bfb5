/* err.h - the one error type of the whole tree.
 *
 * Functions that can fail take a `struct err *` as their last argument and return
 * 0 / -1 (or a pointer / NULL). On failure they fill the err with a code, the errno
 * that caused it (0 if none) and a message in git's style: lower case, no full
 * stop, "what failed: why". The message buffer is fixed so the error path never
 * allocates. An err may be NULL, in which case nothing is recorded.
 *
 * Every code maps to an HTTP status in exactly one place (server/reply.c:
 * reply_status) and to the code of the spec's JSON body in err_code_name; no
 * caller chooses a status of its own for an error. */
#ifndef OCIREG_ERR_H
#define OCIREG_ERR_H

#include <stddef.h>

enum err_code {
    ERR_NONE = 0,
    /* distribution-spec error codes (spec "Error Codes" table) */
    ERR_BLOB_UNKNOWN,          /* 404 */
    ERR_BLOB_UPLOAD_INVALID,   /* 400 (416 for range errors, see ERR_RANGE_INVALID) */
    ERR_BLOB_UPLOAD_UNKNOWN,   /* 404 */
    ERR_DIGEST_INVALID,        /* 400 */
    ERR_MANIFEST_BLOB_UNKNOWN, /* 400 */
    ERR_MANIFEST_INVALID,      /* 400 */
    ERR_MANIFEST_UNKNOWN,      /* 404 */
    ERR_NAME_INVALID,          /* 400 */
    ERR_NAME_UNKNOWN,          /* 404 */
    ERR_SIZE_INVALID,          /* 400 */
    ERR_UNAUTHORIZED,          /* 401 */
    ERR_DENIED,                /* 403 */
    ERR_UNSUPPORTED,           /* 415: unknown manifest media type */
    ERR_TOOMANYREQUESTS,       /* 429 */
    /* protocol-level conditions that still answer with a spec JSON body */
    ERR_RANGE_INVALID,         /* 416, code BLOB_UPLOAD_INVALID (out-of-order chunk) */
    ERR_RANGE_NOT_SATISFIABLE, /* 416 on GET with a Range past the end */
    ERR_TOO_LARGE,             /* 413, code SIZE_INVALID */
    ERR_BAD_REQUEST,           /* 400, code UNSUPPORTED: malformed HTTP, or a query
                                  parameter outside its grammar (paging n/last,
                                  artifactType) */
    ERR_NOT_FOUND,             /* 404, code UNSUPPORTED: no such route */
    ERR_METHOD,                /* 405, code UNSUPPORTED */
    ERR_HEADERS_TOO_LARGE,     /* 431 */
    ERR_TIMEOUT,               /* 408 */
    ERR_BUSY,                  /* 409, code BLOB_UPLOAD_INVALID: an upload session
                                  leased by another request (the spec has no
                                  code for it and allows only its own) */
    ERR_NOT_IMPLEMENTED,       /* 501, code UNSUPPORTED: a transfer coding the
                                  server cannot decode */
    ERR_OVERLOADED,            /* 503, code TOOMANYREQUESTS: connection limit */
    /* internal */
    ERR_IO,                    /* 500 */
    ERR_NOSPACE,               /* 507 */
    ERR_DB,                    /* 500 */
    ERR_CONFIG,
    ERR_NOMEM,
    ERR_INTERNAL,
    ERR__COUNT
};

struct err {
    enum err_code code;
    int sys_errno;
    char msg[256];
};

/* err_set - record code, errno and a printf-style message in *e (if e is not
 * NULL). Returns -1 so that `return err_set(e, ...)` reads naturally. */
int err_set(struct err *e, enum err_code code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* err_sys - like err_set with the message suffixed by ": strerror(errno)"; the code
 * is ERR_NOSPACE for ENOSPC/EDQUOT, else the given code. Returns -1. */
int err_sys(struct err *e, enum err_code code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* err_clear - reset to ERR_NONE. */
void err_clear(struct err *e);

/* err_code_name - the spec's code string ("BLOB_UNKNOWN", ...) for the JSON
 * body; internal codes map to the closest spec code or "UNKNOWN". Static string. */
const char *err_code_name(enum err_code code);

#endif
