/* api_blobs.c - end-2/end-3 (GET/HEAD blob, with Range) and end-10 (DELETE blob). */
#include <inttypes.h>
#include <string.h>

#include "server/api_internal.h"
#include "server/events.h"

#include "common/banned.h"

void
api_blob_get(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    struct err e;
    struct blob_reader rd = {0};
    uint64_t size = 0;
    int head = http_req_method(r) == HTTP_M_HEAD;

    /* HEAD: size from the metadata alone, no file opened */
    if (storage_blob_open(w->h, rt->name, &rt->digest, head ? NULL : &rd, &size, &e) < 0) {
        api_reply_err(r, &e);
        return;
    }
    http_reply_header(r, "Docker-Content-Digest", "%s", rt->ref);
    http_reply_header(r, "Accept-Ranges", "bytes");
    /* blobs are immutable: the digest is a perfect strong validator */
    http_reply_header(r, "ETag", "\"%s\"", rt->ref);

    const char *range = head ? NULL : http_req_header(r, "Range");
    if (range) {
        uint64_t start = 0, end = 0;
        int rc = range_parse_request(range, strlen(range), size, &start, &end, &e);
        if (rc < 0) {
            blob_reader_close(&rd);
            http_reply_header(r, "Content-Range", "bytes */%" PRIu64, size);
            http_reply_error(r, &e);
            return;
        }
        if (rc == 1) {
            http_reply_header(r, "Content-Range", "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start,
                              end, size);
            api_event(w, r, rt, EVENTS_PULL, 0, rt->ref, NULL, CT_OCTET, size);
            api_reply_reader(w, r, 206, CT_OCTET, &rd, start, end - start + 1);
            return;
        }
        /* rc == 0: a form we do not serve partially (multi-range): whole body */
    }
    if (head) {
        api_reply_head(r, 200, CT_OCTET, size);
        return;
    }
    /* distribution: a GET (whole or ranged) is a pull, a HEAD is not */
    api_event(w, r, rt, EVENTS_PULL, 0, rt->ref, NULL, CT_OCTET, size);
    api_reply_reader(w, r, 200, CT_OCTET, &rd, 0, size);
}

/* the unlink's durable commit waits for the group WAL fsync: on the pool */
static int
delete_call(struct storage_handle *h, const struct route *rt, void *arg, struct err *e)
{
    return storage_blob_delete(h, rt->name, &rt->digest, e);
}

void
api_blob_delete(struct api_worker *w, struct http_req *r, const struct route *rt)
{
    api_offload_call(w, r, rt, delete_call, api_reply_deleted, NULL);
}
