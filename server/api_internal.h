/* api_internal.h - shared by server/api*.c only: the per-worker context, the
 * reply helpers, a small JSON writer, and one handler per route and method. */
#ifndef OCIREG_API_INTERNAL_H
#define OCIREG_API_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "server/api.h"
#include "server/http.h"
#include "server/router.h"
#include "storage/storage.h"

#define API_MOD "api"
#define CT_JSON "application/json"
#define CT_OCTET "application/octet-stream"

struct api {
    struct storage *st;
    struct api_opts o;
};

/* one per worker thread: its storage handle and a reusable output buffer (JSON
 * bodies are built here and copied by http_reply, so a request allocates none) */
struct api_worker {
    struct api *a;
    struct storage_handle *h;
    char *buf;
    size_t cap;
};

/* ---- JSON writer over the worker buffer (grows; aborts on OOM) ---- */
struct jbuf {
    struct api_worker *w;
    size_t len;
};
void jbuf_init(struct jbuf *j, struct api_worker *w);
void jbuf_put(struct jbuf *j, const char *s, size_t n);
#define jbuf_lit(j, lit) jbuf_put((j), lit, sizeof(lit) - 1)
/* a JSON string literal with quotes; bytes >= 0x80 pass through (UTF-8) */
void jbuf_str(struct jbuf *j, const char *s);
void jbuf_u64(struct jbuf *j, uint64_t v);
const char *jbuf_data(const struct jbuf *j);
/* after the reply: drop an unusually large buffer so one huge listing does not
 * pin memory for the worker's life */
void jbuf_done(struct jbuf *j);

/* ---- replies ---- */
/* reply the error of e (http_reply_error), logging 5xx once */
void api_reply_err(struct http_req *r, const struct err *e);
/* reply a spec JSON error body with an explicit status, for the few places the
 * one code->status mapping has no entry for (unknown route 404, bad paging 400) */
void api_reply_code(struct http_req *r, int status, enum err_code code, const char *msg);
/* answer a HEAD: Content-Length `size`, no body, no file opened */
void api_reply_head(struct http_req *r, int status, const char *content_type, uint64_t size);
/* Location + Range + Docker-Upload-UUID of an upload session */
void api_upload_headers(struct http_req *r, const char *name, const char *uuid, uint64_t offset);

/* ---- handlers (route already validated) ---- */
void api_blob_get(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_blob_delete(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_start(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_patch(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_put(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_status(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_upload_cancel(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_manifest_get(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_manifest_put(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_manifest_delete(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_tags_list(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_catalog(struct api_worker *w, struct http_req *r, const struct route *rt);
void api_referrers(struct api_worker *w, struct http_req *r, const struct route *rt);

#endif
