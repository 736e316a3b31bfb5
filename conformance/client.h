/* client.h - the conformance program's HTTP client: one libcurl easy handle,
 * one request at a time, the whole response (status, raw headers, body) kept in
 * memory. Tests talk to the registry only through this module. */
#ifndef CONFORMANCE_CLIENT_H
#define CONFORMANCE_CLIENT_H

#include <stddef.h>

struct client;

/* A response. `headers` holds the raw header block of the final response (the
 * status line included, interim 100 responses dropped), NUL terminated; `body`
 * is NUL terminated too (the NUL is not counted in body_len). */
struct resp {
    long status;
    char *headers;
    size_t headers_len;
    char *body;
    size_t body_len;
    int truncated;   /* the body ended before its Content-Length (framing error) */
    char error[256]; /* transport error (status is 0 then), or the framing error */
};

/* client_new - a client for the registry at base_url ("http://host:port", a
 * trailing slash is ignored). Returns NULL on allocation failure. */
struct client *client_new(const char *base_url);
void client_free(struct client *c);

/* client_do - send one request. `target` is either an absolute URL or a path
 * starting with '/' that is appended to the base URL; it is sent exactly as
 * given (no "../" normalisation, so traversal attempts reach the server).
 * `headers` is a NULL-terminated list of "Name: value" strings or NULL. When
 * `body` is not NULL, `body_len` bytes are sent with a Content-Length; when it
 * is NULL and the method is POST, PUT or PATCH, "Content-Length: 0" is sent.
 * HEAD does not read a body. Redirects are not followed.
 * Returns 0 when a response was received (any status), -1 on a transport
 * failure (r->error says why). *r is always initialised; free it with
 * resp_release. */
int client_do(struct client *c, const char *method, const char *target, const char *const *headers,
              const void *body, size_t body_len, struct resp *r);

/* client_observe - call fn(arg, method, url, r) after every response client_do
 * receives (the error-format audit uses it). fn NULL stops observing. */
typedef void client_observe_fn(void *arg, const char *method, const char *url,
                               const struct resp *r);
void client_observe(struct client *c, client_observe_fn *fn, void *arg);

/* client_url - write the absolute URL for `target` (as client_do resolves it)
 * into out. Returns out. */
char *client_url(const struct client *c, const char *target, char *out, size_t out_size);

void resp_release(struct resp *r);

/* resp_header - copy the value of the first header `name` (case-insensitive,
 * surrounding blanks trimmed) into out. Returns 1 if the header is present
 * (even when truncated), 0 if not. */
int resp_header(const struct resp *r, const char *name, char *out, size_t out_size);

/* resp_header_count - how many times header `name` occurs. */
int resp_header_count(const struct resp *r, const char *name);

#endif
