/* upload_io_test.c - the three upload write paths, run through the same cases
 * against the in-process server (one worker, 64 KiB receive buffers, so a few
 * MiB make many pieces in flight):
 *   pool   (the default, [server] upload_threads): the body received into the
 *          request's own buffers, each piece hashed and written on the upload
 *          pool, one at a time and in order, while the next one is received;
 *   uring  (upload_threads = -1, `io = uring`): hashed on the worker, written
 *          by IORING_OP_WRITE while the next buffer is received;
 *   posix  (upload_threads = -1, `io = posix`): hashed on the worker, pwrite
 *          from the worker's buffer.
 * The cases: monolithic and chunked uploads byte-exact, ENOSPC while writes are
 * in flight, a chunked body crossing max_blob_size, a client that disconnects
 * in the middle of a body (monolithic: nothing left; PATCH: the session resumes
 * at a consistent offset and commits with the right digest), and the early 413
 * on a declared Content-Length. Each path is checked to be taken (piece, ring
 * write and overlapped-read counters), and the others to be left alone. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/api_test.h"
#include "tests/lib/blob_mem.h"
#include "tests/lib/blob_nofd.h"
#include "tests/lib/inproc.h"

#include "server/api.h"
#include "server/http.h"
#include "storage/storage.h"

#include "common/banned.h"

#define MIB (1024u * 1024u)

static struct inproc P;

/* the paths: HTTP_IO_URING and HTTP_IO_POSIX without the upload pool, and
 * IO_POOL (io auto) with it */
#define IO_POOL 100

static void
start_io(int io, unsigned long long max_blob)
{
    struct inproc_opts o = {.prefix = "upload-io",
                            .max_page = 100,
                            .io = io == IO_POOL ? HTTP_IO_AUTO : io,
                            .max_blob_size = max_blob,
                            .upload_threads = io == IO_POOL ? 0 : -1};
    cr_assert_eq(inproc_start_with(&P, &o, &S), 0, "in-process server did not start");
    if (io != IO_POOL)
        cr_assert_str_eq(http_server_upload_io_name(P.srv),
                         io == HTTP_IO_URING ? "uring" : "posix");
}

/* after a push of n bytes: the path of io was taken, and only that one */
static void
expect_path(int io, size_t n)
{
    unsigned long w = http_server_uring_writes(P.srv), pc = http_server_pooled_pieces(P.srv);
    if (io == HTTP_IO_URING && !blob_nofd_selected())
        /* 64 KiB receive buffers: ~100 writes went through the ring */
        cr_assert_geq(w, n / (64 * 1024) / 2, "only %lu ring writes", w);
    else
        cr_assert_eq(w, 0, "%lu ring writes", w);
    if (io == IO_POOL)
        cr_assert_geq(pc, n / (64 * 1024) / 2, "only %lu pieces on the upload pool", pc);
    else
        cr_assert_eq(pc, 0, "%lu pieces on the upload pool", pc);
}

static void
stop_io(void)
{
    inproc_stop(&P);
}

TestSuite(upload_io, .fini = stop_io, .timeout = 90);

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* deterministic content */
static unsigned char *
pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
    return p;
}

#define uploads_left() uploads_left_in(P.root)
#define start upload_start_at

/* GET the blob over a raw socket into one buffer of the expected size (libcurl
 * through treq grows its buffer chunk by chunk: quadratic under ASan) */
static void
expect_blob(const char *repo, const char *dg, const unsigned char *want, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char q[400];
    int ql = snprintf(q, sizeof(q),
                      "GET /v2/%s/blobs/%s HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\n\r\n",
                      repo, dg);
    cr_assert_eq(send(fd, q, (size_t)ql, MSG_NOSIGNAL), ql);
    size_t cap = n + 4096, got = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        cr_assert_gt(poll(&pfd, 1, 30000), 0, "GET %s: no data for 30 s", dg);
        ssize_t r = recv(fd, buf + got, cap - got, 0);
        cr_assert_geq(r, 0);
        if (r == 0 || got + (size_t)r == cap) {
            got += (size_t)r;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "GET %s: %.40s", dg, buf);
    char *body = strstr(buf, "\r\n\r\n");
    cr_assert_not_null(body);
    body += 4;
    cr_assert_eq(got - (size_t)(body - buf), n, "GET %s: %zu body bytes, want %zu", dg,
                 got - (size_t)(body - buf), n);
    cr_assert(memcmp(body, want, n) == 0, "GET %s: content differs", dg);
    free(buf);
}

/* a raw connection: send head and the first `sent` bytes of body, then close
 * (reads nothing) */
static void
send_partial_and_close(const char *head, const unsigned char *body, size_t sent)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    size_t hl = strlen(head);
    cr_assert_eq(send(fd, head, hl, MSG_NOSIGNAL), (ssize_t)hl);
    size_t off = 0;
    while (off < sent) {
        ssize_t w = send(fd, body + off, sent - off, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        off += (size_t)w;
    }
    close(fd);
}

/* a raw request whose body is never sent: the answer must come without it */
static long
status_without_body(const char *head, char *resp, size_t cap)
{
    long n = traw(&S, head, strlen(head), resp, cap, 3000);
    cr_assert_gt(n, 12, "no answer before the body was sent");
    return strtol(resp + 9, NULL, 10);
}

/* ---- the cases, each run on both paths ---- */

static void
case_monolithic(int io)
{
    start_io(io, 0);
    size_t n = 6 * MIB + 12345;
    unsigned char *b = pattern(n, 1);
    char dg[80];
    cr_assert_eq(tpush_blob(&S, "io/mono", b, n, dg), 201);
    expect_blob("io/mono", dg, b, n);
    expect_path(io, n);
    cr_assert_eq(uploads_left(), 0);
    free(b);
}

Test(upload_io, monolithic_uring)
{
    case_monolithic(HTTP_IO_URING);
}
Test(upload_io, monolithic_posix)
{
    case_monolithic(HTTP_IO_POSIX);
}
Test(upload_io, monolithic_pool)
{
    case_monolithic(IO_POOL);
}

static void
case_chunked(int io)
{
    start_io(io, 0);
    size_t n = 7 * MIB + 333;
    unsigned char *b = pattern(n, 2);
    char loc[300], cr[100], dg[80], path[400];
    struct tresp r;
    start("io/chunk", loc, sizeof(loc));
    /* 1: Content-Length with Content-Range */
    size_t a = 3 * MIB;
    snprintf(cr, sizeof(cr), "Content-Range: 0-%zu", a - 1);
    const char *h1[] = {"Content-Type: application/octet-stream", cr, NULL};
    req("PATCH", loc, h1, b, a, &r);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    snprintf(loc, sizeof(loc), "%s", H(&r, "Location"));
    tresp_free(&r);
    /* 2: a chunked transfer coding (libcurl frames the chunks) */
    size_t c2 = 3 * MIB + 7;
    const char *h2[] = {"Content-Type: application/octet-stream", "Transfer-Encoding: chunked",
                        NULL};
    req("PATCH", loc, h2, b + a, c2, &r);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    char want[64];
    snprintf(want, sizeof(want), "0-%zu", a + c2 - 1);
    cr_assert_str_eq(H(&r, "Range"), want);
    snprintf(loc, sizeof(loc), "%s", H(&r, "Location"));
    tresp_free(&r);
    req("GET", loc, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 204);
    cr_assert_str_eq(H(&r, "Range"), want);
    tresp_free(&r);
    /* 3: the PUT carries the last bytes */
    tdigest(b, n, dg);
    snprintf(path, sizeof(path), "%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?', dg);
    req("PUT", path, NULL, b + a + c2, n - a - c2, &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    tresp_free(&r);
    expect_blob("io/chunk", dg, b, n);
    expect_path(io, n);
    cr_assert_eq(uploads_left(), 0);
    free(b);
}

Test(upload_io, chunked_uring)
{
    case_chunked(HTTP_IO_URING);
}
Test(upload_io, chunked_posix)
{
    case_chunked(HTTP_IO_POSIX);
}
Test(upload_io, chunked_pool)
{
    case_chunked(IO_POOL);
}

static void
case_enospc(int io)
{
    if (blob_mem_selected())
        cr_skip_test("fault injection is the filesystem backend's (OCIREG_TEST_BLOBS=mem)");
    start_io(io, 0);
    size_t n = 4 * MIB;
    unsigned char *b = pattern(n, 3);
    char loc[300];
    struct tresp r;
    start("io/full", loc, sizeof(loc));
    storage_fault_inject(P.st, FAULT_WRITE, ENOSPC, 1000000);
    req("PATCH", loc, NULL, b, n, &r);
    storage_fault_inject(P.st, 0, 0, 0);
    assert_err(&r, 507, "NOSPACE");
    tresp_free(&r);
    req("GET", loc, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
    cr_assert_eq(uploads_left(), 0);
    /* and uploads go on */
    char dg[80];
    cr_assert_eq(tpush_blob(&S, "io/full", b, n, dg), 201);
    expect_blob("io/full", dg, b, n);
    free(b);
}

Test(upload_io, enospc_with_writes_in_flight_uring)
{
    case_enospc(HTTP_IO_URING);
}
Test(upload_io, enospc_posix)
{
    case_enospc(HTTP_IO_POSIX);
}
Test(upload_io, enospc_with_pieces_in_flight_pool)
{
    case_enospc(IO_POOL);
}

static void
case_chunked_over_limit(int io)
{
    start_io(io, 2 * MIB);
    size_t n = 3 * MIB;
    unsigned char *b = pattern(n, 4);
    char loc[300];
    struct tresp r;
    start("io/limit", loc, sizeof(loc));
    /* no length up front: refused when the limit is crossed, with the writes
     * before it still in flight on the ring path */
    const char *h[] = {"Content-Type: application/octet-stream", "Transfer-Encoding: chunked",
                       NULL};
    req("PATCH", loc, h, b, n, &r);
    assert_err(&r, 413, "SIZE_INVALID");
    tresp_free(&r);
    req("GET", loc, NULL, NULL, 0, &r);
    assert_err(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    tresp_free(&r);
    for (int i = 0; i < 1500 && uploads_left(); i++) /* 30 s: a guard only */
        sleep_ms(20);
    cr_assert_eq(uploads_left(), 0);
    char dg[80];
    cr_assert_eq(tpush_blob(&S, "io/limit", b, MIB, dg), 201);
    free(b);
}

Test(upload_io, chunked_body_crossing_max_blob_size_uring)
{
    case_chunked_over_limit(HTTP_IO_URING);
}
Test(upload_io, chunked_body_crossing_max_blob_size_posix)
{
    case_chunked_over_limit(HTTP_IO_POSIX);
}
Test(upload_io, chunked_body_crossing_max_blob_size_pool)
{
    case_chunked_over_limit(IO_POOL);
}

static void
case_disconnect(int io)
{
    start_io(io, 0);
    size_t n = 16 * MIB;
    unsigned char *b = pattern(n, 5);
    char dg[80], head[600];

    /* monolithic POST cut in the middle: the session the client never saw goes */
    tdigest(b, n, dg);
    snprintf(head, sizeof(head),
             "POST /v2/io/cut/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\n"
             "Content-Length: %zu\r\n\r\n",
             dg, n);
    send_partial_and_close(head, b, 5 * MIB + 100);
    for (int i = 0; i < 1500 && uploads_left(); i++) /* 30 s: a guard only */
        sleep_ms(20);
    cr_assert_eq(uploads_left(), 0, "the cut monolithic upload left its file");
    snprintf(head, sizeof(head), "/v2/io/cut/blobs/%s", dg);
    cr_assert_eq(status_of("HEAD", head), 404);

    /* PATCH cut in the middle: the session stays, at an offset whose bytes are
     * all in the file and in the hash: the client resumes there and commits */
    char loc[300];
    start("io/cut", loc, sizeof(loc));
    snprintf(head, sizeof(head),
             "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
             "Content-Length: %zu\r\n\r\n",
             loc, n);
    send_partial_and_close(head, b, 9 * MIB + 4321);
    struct tresp r;
    long st = 0;
    for (int i = 0; i < 1500; i++) { /* 30 s: a guard only */
        /* an empty PATCH takes the lease: 409 BUSY until the server has seen the
         * close and every write of the cut request has ended */
        req("PATCH", loc, NULL, NULL, 0, &r);
        st = r.status;
        if (st == 202)
            break;
        cr_assert_eq(st, 409, "empty PATCH after the cut: %ld %s", st, r.body);
        tresp_free(&r);
        sleep_ms(20);
    }
    cr_assert_eq(st, 202, "empty PATCH after the cut: %ld", st);
    const char *range = H(&r, "Range");
    const char *dash = strchr(range, '-');
    cr_assert_not_null(dash, "Range %s", range);
    size_t have = (size_t)strtoull(dash + 1, NULL, 10) + 1;
    if (strcmp(range, "0-0") == 0)
        have = 0;
    tresp_free(&r);
    cr_assert_leq(have, 9 * MIB + 4321, "offset %zu past what was sent", have);
    char path[500];
    snprintf(path, sizeof(path), "%s?digest=%s", loc, dg);
    req("PUT", path, NULL, b + have, n - have, &r);
    cr_assert_eq(r.status, 201, "resumed at %zu: %ld %s", have, r.status, r.body);
    tresp_free(&r);
    expect_blob("io/cut", dg, b, n);
    free(b);
}

Test(upload_io, client_disconnects_mid_body_uring)
{
    case_disconnect(HTTP_IO_URING);
}
Test(upload_io, client_disconnects_mid_body_posix)
{
    case_disconnect(HTTP_IO_POSIX);
}
Test(upload_io, client_disconnects_mid_body_pool)
{
    case_disconnect(IO_POOL);
}

static void
case_early_413(int io)
{
    start_io(io, 1 * MIB);
    char head[600], resp[4096], dg[80], loc[300];
    tdigest("x", 1, dg);
    /* monolithic: the declared length alone is refused, no byte of it sent */
    snprintf(head, sizeof(head),
             "POST /v2/io/big/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\n"
             "Content-Length: %u\r\n\r\n",
             dg, 2 * MIB);
    cr_assert_eq(status_without_body(head, resp, sizeof(resp)), 413, "%s", resp);
    cr_assert(strstr(resp, "\"SIZE_INVALID\""), "%s", resp);
    cr_assert_eq(uploads_left(), 0);
    /* PATCH past the limit from the current offset: 413, the session stays */
    start("io/big", loc, sizeof(loc));
    unsigned char *b = pattern(MIB, 6);
    struct tresp r;
    req("PATCH", loc, NULL, b, 600 * 1024, &r);
    cr_assert_eq(r.status, 202);
    snprintf(loc, sizeof(loc), "%s", H(&r, "Location"));
    tresp_free(&r);
    snprintf(head, sizeof(head), "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: %u\r\n\r\n", loc,
             500 * 1024);
    cr_assert_eq(status_without_body(head, resp, sizeof(resp)), 413, "%s", resp);
    cr_assert(strstr(resp, "\"SIZE_INVALID\""), "%s", resp);
    req("GET", loc, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 204);
    cr_assert_str_eq(H(&r, "Range"), "0-614399");
    tresp_free(&r);
    /* exactly up to the limit is fine */
    char path[500];
    tdigest(b, MIB, dg);
    snprintf(path, sizeof(path), "%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?', dg);
    req("PUT", path, NULL, b + 600 * 1024, MIB - 600 * 1024, &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    tresp_free(&r);
    free(b);
}

Test(upload_io, early_413_on_declared_length_uring)
{
    case_early_413(HTTP_IO_URING);
}
Test(upload_io, early_413_on_declared_length_posix)
{
    case_early_413(HTTP_IO_POSIX);
}
Test(upload_io, early_413_on_declared_length_pool)
{
    case_early_413(IO_POOL);
}

/* the next receive overlaps the previous write: counted by the layer whenever a
 * recv happens while a write of the same request is in flight */
Test(upload_io, receives_overlap_ring_writes)
{
    /* ring writes need the writer's descriptor offer */
    if (blob_nofd_selected())
        cr_skip_test("the test blob backend offers no descriptor (OCIREG_TEST_BLOBS=nofd)");
    start_io(HTTP_IO_URING, 0);
    size_t n = 32 * MIB;
    unsigned char *b = pattern(n, 7);
    char dg[80];
    cr_assert_eq(tpush_blob(&S, "io/overlap", b, n, dg), 201);
    unsigned long w = http_server_uring_writes(P.srv);
    unsigned long o = http_server_overlapped_reads(P.srv);
    cr_log_info("32 MiB: %lu ring writes, %lu receives overlapped a write", w, o);
    cr_assert_geq(w, n / (64 * 1024) / 2);
    cr_assert_gt(o, 0, "no receive ever overlapped a write");
    expect_blob("io/overlap", dg, b, n);
    free(b);
}

/* the next receive overlaps the work on the previous piece, on the pool: the
 * worker only receives */
Test(upload_io, receives_overlap_pool_pieces)
{
    start_io(IO_POOL, 0);
    size_t n = 32 * MIB;
    unsigned char *b = pattern(n, 8);
    char dg[80];
    cr_assert_eq(tpush_blob(&S, "io/overlap", b, n, dg), 201);
    unsigned long pc = http_server_pooled_pieces(P.srv);
    unsigned long o = http_server_overlapped_reads(P.srv);
    unsigned long jobs = api_upload_jobs(P.api);
    cr_log_info("32 MiB: %lu pieces in %lu pool jobs, %lu receives overlapped a piece", pc, jobs,
                o);
    cr_assert_geq(pc, n / (64 * 1024) / 2);
    cr_assert_gt(jobs, 0, "no piece went to the upload pool");
    cr_assert_leq(jobs, pc, "more jobs than pieces");
    cr_assert_gt(o, 0, "no receive ever overlapped a piece on the pool");
    expect_blob("io/overlap", dg, b, n);
    free(b);
}
