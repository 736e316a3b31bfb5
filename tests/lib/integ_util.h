/* integ_util.h - helpers for the robustness integration tests (crash, diskfull,
 * hostile, bigupload): a deterministic byte generator that can be streamed at any
 * offset, streaming uploads (libcurl READFUNCTION and a raw-socket sender that
 * stops sending as soon as the server has answered), upload-session calls, the
 * spec's JSON error body, storage-layout checks and /proc figures.
 *
 * Every test can also be pointed at the reference registry (Debian
 * docker-registry) with OCIREG_TEST_TARGET=reference, to check the test itself
 * at the HTTP level; checks of ocireg's storage layout are skipped then. */
#ifndef OCIREG_INTEG_UTIL_H
#define OCIREG_INTEG_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/lib/testsrv.h"

/* ---- target ---- */

/* integ_reference - 1 when OCIREG_TEST_TARGET=reference */
int integ_reference(void);

/* integ_srv_start - testsrv_start, or with OCIREG_TEST_TARGET=reference the
 * reference registry on a free port with `root` (NULL: a new mkdtemp folder) as
 * its filesystem root; extra_env is ignored then. Stop it with testsrv_*. */
int integ_srv_start(struct testsrv *s, const char *root, const char *const *extra_env);

/* integ_srv_stop_checked - testsrv_stop, then 0 when the server exited with
 * status 0 (a clean SIGTERM shutdown; under ASan also no leak and no error
 * report), else -1 with the status and the tail of its log in why. */
int integ_srv_stop_checked(struct testsrv *s, char *why, size_t cap);

/* ---- generator and hashing ---- */

/* integ_pattern - fill buf with the n bytes at offset `off` of the endless
 * pseudo-random stream `seed` (same seed and offset: same bytes). */
void integ_pattern(uint64_t seed, uint64_t off, void *buf, size_t n);

struct integ_sha;
struct integ_sha *integ_sha_new(void);
void integ_sha_update(struct integ_sha *h, const void *p, size_t n);
/* integ_sha_final - "sha256:<hex>" into out (72 bytes); frees h */
void integ_sha_final(struct integ_sha *h, char *out);
/* integ_pattern_digest - digest of bytes [0, len) of stream seed */
void integ_pattern_digest(uint64_t seed, uint64_t len, char *out);
/* integ_hash_file - digest of a file; -1 if it cannot be read */
int integ_hash_file(const char *path, char *out, uint64_t *size);

/* ---- HTTP ---- */

/* integ_send_pattern - one request whose body is `len` bytes of stream `seed`
 * from offset `off`, streamed by libcurl's READFUNCTION (never held in memory);
 * when sha is not NULL every byte sent is hashed into it. Returns 0 when a
 * response came (out filled, free with tresp_free), -1 on transport failure. */
int integ_send_pattern(const struct testsrv *s, const char *method, const char *url_or_path,
                       const char *const *headers, uint64_t seed, uint64_t off, uint64_t len,
                       struct integ_sha *sha, struct tresp *out);

/* integ_raw_send_pattern - raw TCP: send `head` (request line and headers,
 * ending in an empty line) then bytes [off, off+len) of stream seed, reading at the same
 * time; sending stops as soon as a complete response has arrived or the peer
 * closed. The response (headers and body, NUL-terminated) goes to resp. Returns
 * the status code, 0 when the connection closed without a status line, -1 on
 * connect failure. *sent (may be NULL) gets the body bytes written. */
long integ_raw_send_pattern(const struct testsrv *s, const char *head, uint64_t seed, uint64_t off,
                            uint64_t len, char *resp, size_t cap, int timeout_ms, uint64_t *sent);

/* integ_status_of - status of a raw response ("HTTP/1.1 404 ..."), 0 if none */
int integ_status_of(const char *resp);
/* integ_body_of - start of the body of a raw response, or "" */
const char *integ_body_of(const char *resp);

/* integ_url_with - url + ('?' or '&') + query into out */
char *integ_url_with(const char *url, const char *query, char *out, size_t cap);

/* integ_upload_start - POST /v2/<repo>/blobs/uploads/; on 202 copies Location into
 * loc. Returns the status, -1 on transport failure. */
long integ_upload_start(const struct testsrv *s, const char *repo, char *loc, size_t cap);

/* integ_upload_patch - PATCH loc with bytes [off, off+len) of stream seed and
 * Content-Range off-(off+len-1); on 202 loc is replaced by the new Location and
 * *range_end (may be NULL) gets the end of the Range header (+1: the next offset).
 * Returns the status, -1 on transport failure. */
long integ_upload_patch(const struct testsrv *s, char *loc, size_t cap, uint64_t seed, uint64_t off,
                        uint64_t len, uint64_t *next_off);

/* integ_upload_finish - PUT loc?digest=D with bytes [off, off+len) of stream seed
 * as body (len 0: empty). Returns the status, -1 on transport failure. */
long integ_upload_finish(const struct testsrv *s, const char *loc, const char *digest,
                         uint64_t seed, uint64_t off, uint64_t len);

/* integ_upload_status - GET loc: returns the status; on 204 *next_off is the
 * offset after the Range header's end (0 when no Range). */
long integ_upload_status(const struct testsrv *s, const char *loc, uint64_t *next_off);

/* integ_get_verify - GET <path> streaming its body through SHA-256. Returns the
 * status (-1 on transport failure); *digest_out and *size (may be NULL) describe
 * what was received. */
long integ_get_hash(const struct testsrv *s, const char *path, const char *const *headers,
                    char *digest_out, uint64_t *size);

/* integ_head_size - HEAD <path>: returns status, *size from Content-Length (or -1) */
long integ_head_size(const struct testsrv *s, const char *path, int64_t *size);

/* integ_json_error - parse the spec's error body {"errors":[{"code":..,
 * "message":..}]}: returns 0 and copies errors[0].code and .message (either may be
 * NULL), or -1 when the body is not such a document. */
int integ_json_error(const char *body, size_t len, char *code, size_t ccap, char *msg, size_t mcap);

/* ---- storage root and process ---- */

/* integ_layout_check - walk an ocireg storage root: the top level may hold only
 * blobs/, uploads/, meta.db* and lock (storage's single-instance flock file);
 * blobs/<algo>/<2hex>/<hex> with matching names, and (verify) each file's bytes hashing to its
 * name; uploads/ only uuid-named entries. fn (may be NULL) is called with each blob digest string.
 * Returns the number of problems (the first described in why), *nuploads the number of entries in
 * uploads/. */
int integ_layout_check(const char *root, int verify, int *nuploads,
                       void (*fn)(void *arg, const char *digest), void *arg, char *why, size_t cap);

/* integ_free_bytes - statvfs free bytes for unprivileged users of path's fs */
uint64_t integ_free_bytes(const char *path);
/* integ_proc_kb - a "Vm..:" field of /proc/<pid>/status in KiB, -1 if absent */
long integ_proc_kb(pid_t pid, const char *field);
/* integ_proc_cpu_ms - user+system CPU time of a process in ms, -1 on error */
long integ_proc_cpu_ms(pid_t pid);
/* integ_server_is_asan - 1 when $OCIREG_BIN was built with AddressSanitizer */
int integ_server_is_asan(void);
/* integ_rm_rf - remove a tree (no symlink following) */
void integ_rm_rf(const char *path);
/* integ_now_ms - monotonic milliseconds */
int64_t integ_now_ms(void);
void integ_sleep_ms(int ms);

/* ---- hostile JSON ---- */

/* integ_json_padded - the JSON object `base` with one more member "x" holding
 * n copies of `item` in an array, or n nested arrays when item is NULL (the
 * shapes that make a JSON library's tree large); malloc'd, the caller frees */
char *integ_json_padded(const char *base, size_t n, const char *item);

#endif
