/* http_fuzz.c - libFuzzer target: request framing through the connection layer
 * (server/http_conn.c, http_req.c over libhttp-parser): request line, headers,
 * Content-Length and chunked bodies, pipelined requests, early replies, the
 * header and body limits.
 *
 * The input is what a client sends on one connection. Its last byte also says
 * how the bytes arrive: 1..127 = reads of that many bytes, else one read, so
 * that the fuzzer explores every split of a request across reads. A split
 * input is also run in one read, and the two conversations must agree: the
 * same status lines, X- headers and Connection headers in the same order
 * (framing that depended on how TCP cut the bytes would be a request-smuggling
 * bug). Which fault a broken header block is rejected for may differ, as long
 * as it is rejected at the same point: our callbacks see a partial name at the
 * end of a read (and count it against HTTP_MAX_HEADERS: 431) where in one read
 * the parser meets the bad byte in it first (400). So 431 counts as 400 here
 * and error messages are not compared.
 *
 * The app answers by path, so that every body mode is reached:
 *   /c...  collect the body (at most 256 bytes), reply 201 when it is complete
 *   /s...  stream the body, reply 202 at its end; over 512 bytes: 413 from on_body
 *   /e...  reply 400 at once, before the body (discarded or connection closed)
 *   /x...  reply 200 with Connection: close
 *   else   reply 200 at once
 * Every request also reads its accessors (headers, query, path). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/http.h"
#include "server/reply.h"
#include "tests/fuzz/fuzz_http.h"

/* small limits, so that inputs of libFuzzer's default 4096 bytes cross them */
#define COLLECT_MAX 256
#define STREAM_MAX 512

struct stream_state {
    uint64_t seen;
};

/* an early 413 from on_body: whether the rest of the body is discarded or the
 * connection closed depends on how much of it was read by then (the layer's
 * documented policy), so such runs are not compared */
static int split_sensitive;

static void
touch_accessors(struct http_req *r)
{
    const char *v[8];
    size_t n = http_req_query_all(r, "n", v, 8);
    for (size_t i = 0; i < n; i++)
        (void)strlen(v[i]);
    const char *h = http_req_header(r, "Content-Type");
    if (h)
        (void)strlen(h);
    (void)http_req_query(r, "last");
    (void)http_req_content_length(r);
    (void)strlen(http_req_raw_target(r));
    (void)strlen(http_req_method_name(r));
}

static void
collect_done(struct http_req *r, void *state)
{
    size_t n;
    const char *b = http_req_body(r, &n);
    if (b[n] != '\0')
        abort(); /* the collected body is NUL-terminated */
    unsigned long sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = sum * 31 + (unsigned char)b[i];
    http_reply_header(r, "X-Body", "%zu %lu", n, sum);
    http_reply(r, 201, "text/plain", "collected\n", 10);
}

static int
stream_body(struct http_req *r, void *state, const void *data, size_t n)
{
    struct stream_state *s = state;
    s->seen += n;
    if (s->seen > STREAM_MAX) {
        split_sensitive = 1;
        http_reply_errorf(r, ERR_TOO_LARGE, "stream over %d bytes", STREAM_MAX);
        return -1;
    }
    return 0;
}

static void
stream_done(struct http_req *r, void *state)
{
    http_reply(r, 202, NULL, NULL, 0);
}

static void
dispatch(struct http_req *r, void *wctx)
{
    touch_accessors(r);
    const char *p = http_req_path(r);
    http_reply_header(r, "X-Path", "%s", p); /* CR/LF must not reach the wire */
    switch (p[0] == '/' ? p[1] : 0) {
    case 'c':
        http_req_collect_body(r, COLLECT_MAX, collect_done, NULL);
        break;
    case 's': {
        struct stream_state *s = http_req_alloc(r, sizeof(*s));
        s->seen = 0;
        http_req_on_body(r, stream_body, stream_done, NULL, s);
        break;
    }
    case 'e':
        http_reply_errorf(r, ERR_BAD_REQUEST, "early");
        break;
    case 'x':
        http_reply_close(r);
        http_reply(r, 200, "text/plain", "bye\n", 4);
        break;
    default:
        http_reply(r, 200, "text/plain", "ok\n", 3);
        break;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct http_server_opts o = {
        .listen = "127.0.0.1:0",
        .workers = 1,
        .header_max = 1024,  /* the smallest registry.conf allows: 431 in reach */
        .body_buffer = 4096, /* likewise: a read can fill the buffer */
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .max_connections = 16,
    };
    struct http_app app = {
        .dispatch = dispatch, .error = reply_error_render, .headers = REPLY_HEADERS};
    fuzz_http_init(&o, &app, NULL);
    return 0;
}

#define OUT_CAP (256 * 1024)

/* what must not depend on the split: every status line (a JSON error body
 * has no newline, so the next status line may follow it on the same line), the
 * X- headers the app set (not X-Request-Id, unique per request) and the
 * Connection headers, in order; returns the
 * length of that summary, written over s */
static size_t
summary(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) + 1 : n;
        const char *line = s + i;
        size_t len = end - i;
        const char *st = memmem(line, len, "HTTP/1.1 ", 9);
        if (st) {
            len -= (size_t)(st - line);
            line = st;
            if (len >= 12 && memcmp(line, "HTTP/1.1 431", 12) == 0) {
                memcpy(s + o, "HTTP/1.1 400\n", 13);
                o += 13;
                i = end;
                continue;
            }
        } else if ((!(len >= 2 && memcmp(line, "X-", 2) == 0) &&
                    !(len >= 11 && memcmp(line, "Connection:", 11) == 0)) ||
                   (len >= 13 && strncasecmp(line, "X-Request-Id:", 13) == 0)) {
            /* X-Request-Id is unique per request by design: two runs differ */
            len = 0;
        }
        memmove(s + o, line, len);
        o += len;
        i = end;
    }
    return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char a[OUT_CAP], b[OUT_CAP];
    size_t piece = size && data[size - 1] < 128 ? data[size - 1] : 0;
    split_sensitive = 0;
    size_t na = fuzz_http_run(data, size, piece, a, sizeof(a));
    if (!piece || piece >= size || split_sensitive)
        return 0;
    size_t nb = fuzz_http_run(data, size, 0, b, sizeof(b));
    if (split_sensitive || na > sizeof(a) || nb > sizeof(b))
        return 0;
    na = summary(a, na);
    nb = summary(b, nb);
    if (na != nb || memcmp(a, b, na) != 0)
        abort(); /* the same bytes, cut differently, got different answers */
    return 0;
}
