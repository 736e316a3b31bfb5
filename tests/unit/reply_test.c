/* reply_test.c - the one map from an error code to an HTTP status and the
 * spec's JSON error code (server/reply.c, common/err.c): every condition the
 * server answers has its code there, and every 4xx body carries a code of the
 * spec's table. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/err.h"
#include "server/reply.h"

/* distribution-spec "Error Codes" (code-1 .. code-14): a JSON 4xx body's code
 * MUST be one of these */
static int
is_spec_code(const char *c)
{
    static const char *const spec[] = {
        "BLOB_UNKNOWN",     "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN",  "NAME_INVALID",
        "NAME_UNKNOWN",     "SIZE_INVALID",        "UNAUTHORIZED",        "DENIED",
        "UNSUPPORTED",      "TOOMANYREQUESTS"};
    for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++)
        if (strcmp(c, spec[i]) == 0)
            return 1;
    return 0;
}

Test(reply, every_4xx_body_carries_a_spec_code)
{
    for (int c = ERR_NONE + 1; c < ERR__COUNT; c++) {
        int st = reply_status((enum err_code)c);
        cr_assert(st >= 400 && st <= 599, "code %d: status %d", c, st);
        if (st < 500)
            cr_assert(is_spec_code(err_code_name((enum err_code)c)), "code %d (status %d): %s", c,
                      st, err_code_name((enum err_code)c));
    }
}

/* the statuses that used to be chosen by hand beside the map */
Test(reply, protocol_conditions_have_their_own_codes)
{
    static const struct {
        enum err_code code;
        int status;
        const char *name;
    } t[] = {
        {ERR_NOT_FOUND, 404, "UNSUPPORTED"},       /* unknown route */
        {ERR_BAD_REQUEST, 400, "UNSUPPORTED"},     /* bad paging, artifactType */
        {ERR_TOO_LARGE, 413, "SIZE_INVALID"},      /* blob over max_blob_size */
        {ERR_NOT_IMPLEMENTED, 501, "UNSUPPORTED"}, /* unknown transfer coding */
        {ERR_OVERLOADED, 503, "TOOMANYREQUESTS"},  /* connection limit */
        {ERR_BUSY, 409, "BLOB_UPLOAD_INVALID"},    /* upload session leased */
        {ERR_UNSUPPORTED, 415, "UNSUPPORTED"},     /* manifest media type */
        {ERR_MANIFEST_UNKNOWN, 404, "MANIFEST_UNKNOWN"},
        {ERR_DIGEST_INVALID, 400, "DIGEST_INVALID"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        cr_assert_eq(reply_status(t[i].code), t[i].status, "code %d", t[i].code);
        cr_assert_str_eq(err_code_name(t[i].code), t[i].name, "code %d", t[i].code);
    }
}
