#include "server/reply.h"

#include <stdio.h>

#include "common/banned.h"

int
reply_status(enum err_code code)
{
    switch (code) {
    case ERR_NONE: return 200;
    case ERR_BLOB_UNKNOWN:
    case ERR_BLOB_UPLOAD_UNKNOWN:
    case ERR_MANIFEST_UNKNOWN:
    case ERR_NAME_UNKNOWN:
    case ERR_NOT_FOUND: return 404;
    case ERR_BLOB_UPLOAD_INVALID:
    case ERR_DIGEST_INVALID:
    case ERR_MANIFEST_BLOB_UNKNOWN:
    case ERR_MANIFEST_INVALID:
    case ERR_NAME_INVALID:
    case ERR_SIZE_INVALID:
    case ERR_BAD_REQUEST: return 400;
    case ERR_UNAUTHORIZED: return 401;
    case ERR_DENIED: return 403;
    case ERR_METHOD: return 405;
    case ERR_TIMEOUT: return 408;
    case ERR_BUSY: return 409;
    case ERR_TOO_LARGE: return 413;
    case ERR_UNSUPPORTED: return 415;
    case ERR_RANGE_INVALID:
    case ERR_RANGE_NOT_SATISFIABLE: return 416;
    case ERR_TOOMANYREQUESTS: return 429;
    case ERR_HEADERS_TOO_LARGE: return 431;
    case ERR_NOT_IMPLEMENTED: return 501;
    case ERR_OVERLOADED: return 503;
    case ERR_NOSPACE: return 507;
    case ERR_DB:
    case ERR_IO:
    case ERR_NOMEM:
    case ERR_CONFIG:
    case ERR_INTERNAL:
    case ERR__COUNT: break;
    }
    return 500;
}

size_t
reply_error_json(enum err_code code, const char *message, char *buf, size_t cap)
{
    size_t n = 0;
    int w = snprintf(buf, cap, "{\"errors\":[{\"code\":\"%s\",\"message\":\"", err_code_name(code));
    if (w < 0 || (size_t)w >= cap)
        return cap ? cap - 1 : 0;
    n = (size_t)w;
    /* escape the message as a JSON string; leave room for the tail */
    for (const char *p = message ? message : ""; *p && n + 8 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    w = snprintf(buf + n, cap - n, "\",\"detail\":null}]}");
    if (w < 0 || (size_t)w >= cap - n)
        return cap - 1;
    return n + (size_t)w;
}

int
reply_error_render(void *arg, const struct err *e, char *body, size_t cap, size_t *len,
                   const char **content_type)
{
    *content_type = "application/json";
    *len = reply_error_json(e->code, e->msg, body, cap);
    return reply_status(e->code);
}
