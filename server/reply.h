/* reply.h - the one mapping from an error code to an HTTP status and the
 * distribution-spec JSON error body:
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

/* reply_reason - the reason phrase for a status ("Not Found") */
const char *reply_reason(int status);

#endif
