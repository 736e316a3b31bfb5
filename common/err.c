#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/banned.h"

int
err_set(struct err *e, enum err_code code, int sys_errno, const char *fmt, ...)
{
    if (!e)
        return -1;
    e->code = code;
    e->sys_errno = sys_errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

int
err_sys(struct err *e, enum err_code code, int sys_errno, const char *fmt, ...)
{
    if (!e)
        return -1;
    if (sys_errno == ENOSPC || sys_errno == EDQUOT)
        code = ERR_NOSPACE;
    e->code = code;
    e->sys_errno = sys_errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(e->msg)) {
        char ebuf[128];
        const char *s = strerror_r(sys_errno, ebuf, sizeof(ebuf));
        snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, ": %s", s);
    }
    return -1;
}

void
err_clear(struct err *e)
{
    if (!e)
        return;
    e->code = ERR_NONE;
    e->sys_errno = 0;
    e->msg[0] = '\0';
}

const char *
err_code_name(enum err_code code)
{
    switch (code) {
    case ERR_BLOB_UNKNOWN: return "BLOB_UNKNOWN";
    case ERR_BLOB_UPLOAD_INVALID: return "BLOB_UPLOAD_INVALID";
    case ERR_BLOB_UPLOAD_UNKNOWN: return "BLOB_UPLOAD_UNKNOWN";
    case ERR_DIGEST_INVALID: return "DIGEST_INVALID";
    case ERR_MANIFEST_BLOB_UNKNOWN: return "MANIFEST_BLOB_UNKNOWN";
    case ERR_MANIFEST_INVALID: return "MANIFEST_INVALID";
    case ERR_MANIFEST_UNKNOWN: return "MANIFEST_UNKNOWN";
    case ERR_NAME_INVALID: return "NAME_INVALID";
    case ERR_NAME_UNKNOWN: return "NAME_UNKNOWN";
    case ERR_SIZE_INVALID: return "SIZE_INVALID";
    case ERR_UNAUTHORIZED: return "UNAUTHORIZED";
    case ERR_DENIED: return "DENIED";
    case ERR_UNSUPPORTED: return "UNSUPPORTED";
    case ERR_TOOMANYREQUESTS: return "TOOMANYREQUESTS";
    case ERR_RANGE_INVALID: return "BLOB_UPLOAD_INVALID";
    case ERR_RANGE_NOT_SATISFIABLE: return "BLOB_UNKNOWN";
    case ERR_TOO_LARGE: return "SIZE_INVALID";
    /* spec: a 4xx JSON body's code MUST be one of the spec's codes, so the
     * protocol-level 4xx conditions borrow the closest one */
    case ERR_METHOD:
    case ERR_NOT_FOUND:
    case ERR_BAD_REQUEST:
    case ERR_TIMEOUT:
    case ERR_NOT_IMPLEMENTED: return "UNSUPPORTED";
    case ERR_HEADERS_TOO_LARGE: return "SIZE_INVALID";
    case ERR_BUSY: return "BLOB_UPLOAD_INVALID";
    case ERR_OVERLOADED: return "TOOMANYREQUESTS";
    /* 5xx bodies are not constrained by the spec: name the cause */
    case ERR_NOSPACE: return "NOSPACE";
    case ERR_IO: return "IO_ERROR";
    case ERR_DB: return "DB_ERROR";
    case ERR_NOMEM: return "NOMEM";
    case ERR_CONFIG: return "CONFIG";
    case ERR_NONE:
    case ERR_INTERNAL:
    case ERR__COUNT:
        break;
    }
    return "UNKNOWN";
}
