/* reply.h - the one mapping from an error code to an HTTP status and the
 * distribution-spec JSON error body (every error reply, the connection layer's
 * own included, goes through here):
 *   {"errors":[{"code":"BLOB_UNKNOWN","message":"...","detail":...}]} */
#ifndef OCIREG_REPLY_H
#define OCIREG_REPLY_H

#include <stddef.h>

#include "common/err.h"

/* reply_status - HTTP status for an error code */
int reply_status(enum err_code code);

/* reply_error_json - the JSON body for (code, message) into buf (NUL-terminated,
 * truncated safely); returns its length. */
size_t reply_error_json(enum err_code code, const char *message, char *buf, size_t cap);

/* The registry's side of the connection layer (struct http_app in
 * server/http.h), which knows nothing of the registry: */
/* the header every response carries (spec: clients may check it on /v2/) */
#define REPLY_HEADERS "Docker-Distribution-API-Version: registry/2.0\r\n"
/* reply_error_render - the app's error callback: the status of reply_status(e->code)
 * and the JSON body of reply_error_json into body; *content_type is static */
int reply_error_render(void *arg, const struct err *e, char *body, size_t cap, size_t *len,
                       const char **content_type);

#endif
