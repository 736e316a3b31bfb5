/* hotpath_alloc_test.c - the hot metadata paths (GET/HEAD manifest by tag,
 * HEAD blob, tags list) make no heap allocation per request in steady state
 * (see the comment above measure() for how each layer avoids them).
 *
 * How: the registry runs in this process (tests/lib/inproc.c: storage + api +
 * http layer, one worker thread). Every heap allocation of the process is
 * counted, but only on event-loop threads (the one thread that calls
 * epoll_wait, the http worker) and only while a measurement window is open. A
 * keep-alive raw-socket client on the test thread warms a path up, then sends N
 * requests of one kind inside the window; the count must be 0.
 *
 * Counting:
 *   - plain build: this file defines malloc/calloc/realloc/free (and the aligned
 *     variants) and forwards them to glibc's __libc_* entry points; libevent,
 *     sqlite, jansson and libc itself call these (glibc supports replacing its
 *     allocator this way). epoll_wait is wrapped the same way to mark the
 *     worker thread.
 *   - ASan build: ASan owns malloc, so the same counters are fed by its
 *     allocator hooks (__sanitizer_install_malloc_and_free_hooks). The test runs
 *     under ASan too; it does not skip.
 * A realloc counts as one allocation (and, when it moves an existing block,
 * one free), in both builds.
 *
 * On failure the backtraces of the first counted allocations are printed
 * (plain build), so a new allocation on a hot path is found at once. */
#include <dlfcn.h>
#include <malloc.h>
#include <execinfo.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sqlite3.h>
#include <unistd.h>

#include "tests/integration/api_test.h"
#include "tests/lib/inproc.h"

#include "common/banned.h"

#if defined(__SANITIZE_ADDRESS__)
#define HP_ASAN 1
#else
#define HP_ASAN 0
#endif

/* ---- counting ---------------------------------------------------------------- */

static __thread int tl_loop; /* this thread runs an event loop (called epoll_wait) */
static atomic_int g_on;      /* measurement window open */
static atomic_ulong g_allocs, g_frees;

static atomic_int g_ntrace; /* counted allocations traced (plain build) */
#if !HP_ASAN
#define TRACE_MAX 12
#define TRACE_DEPTH 14
static __thread int tl_inside; /* re-entry guard while recording a backtrace */
static void *g_trace[TRACE_MAX][TRACE_DEPTH];
static int g_trace_len[TRACE_MAX];
#endif

static void
note_alloc(void)
{
    if (!tl_loop || !atomic_load_explicit(&g_on, memory_order_relaxed))
        return;
    atomic_fetch_add(&g_allocs, 1);
#if !HP_ASAN
    if (tl_inside)
        return;
    int k = atomic_fetch_add(&g_ntrace, 1);
    if (k < TRACE_MAX) {
        tl_inside = 1;
        g_trace_len[k] = backtrace(g_trace[k], TRACE_DEPTH);
        tl_inside = 0;
    }
#endif
}

static void
note_free(void)
{
    if (tl_loop && atomic_load_explicit(&g_on, memory_order_relaxed))
        atomic_fetch_add(&g_frees, 1);
}

#if HP_ASAN
/* sanitizer_common's allocator hooks (not in gcc 12's public headers) */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static void
hook_malloc(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    note_alloc();
}

static void
hook_free(const volatile void *p)
{
    if (p)
        note_free();
}

static void
counting_init(void)
{
    static int done;
    if (!done)
        __sanitizer_install_malloc_and_free_hooks(hook_malloc, hook_free);
    done = 1;
}
#else
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t a, size_t b);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

void *
malloc(size_t n)
{
    note_alloc();
    return __libc_malloc(n);
}

void *
calloc(size_t a, size_t b)
{
    note_alloc();
    return __libc_calloc(a, b);
}

void *
realloc(void *p, size_t n)
{
    note_alloc();
    if (p && n)
        note_free();
    return __libc_realloc(p, n);
}

void
free(void *p)
{
    if (p)
        note_free();
    __libc_free(p);
}

void *
memalign(size_t align, size_t n)
{
    note_alloc();
    return __libc_memalign(align, n);
}

void *
aligned_alloc(size_t align, size_t n)
{
    note_alloc();
    return __libc_memalign(align, n);
}

int
posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return 22; /* EINVAL */
    note_alloc();
    void *p = __libc_memalign(align, n);
    if (!p)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}

static void
counting_init(void)
{
    /* backtrace() loads libgcc on its first call, which allocates: not inside
     * a hook */
    void *f[2];
    backtrace(f, 2);
}
#endif

typedef int (*epoll_wait_fn)(int, struct epoll_event *, int, int);

/* libevent's epoll backend calls this on its loop thread only: mark it */
int
epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
    static epoll_wait_fn real;
    tl_loop = 1;
    epoll_wait_fn f = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
    if (!f) {
        f = (epoll_wait_fn)dlsym(RTLD_NEXT, "epoll_wait");
        __atomic_store_n(&real, f, __ATOMIC_RELEASE);
    }
    return f(epfd, events, maxevents, timeout);
}

static void
window_open(void)
{
    atomic_store(&g_allocs, 0);
    atomic_store(&g_frees, 0);
    atomic_store(&g_ntrace, 0);
    atomic_store(&g_on, 1);
}

/* The worker frees a request after its reply is written, so closing the window
 * as soon as the last reply is in may miss that request's frees: an allocation
 * made for every request is still counted in each of the others. */
static void
window_close(void)
{
    atomic_store(&g_on, 0);
}

static void
print_traces(void)
{
#if !HP_ASAN
    int n = atomic_load(&g_ntrace);
    if (n > TRACE_MAX)
        n = TRACE_MAX;
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "-- counted allocation %d:\n", i + 1);
        backtrace_symbols_fd(g_trace[i], g_trace_len[i], 2);
    }
#endif
}

/* ---- a keep-alive client --------------------------------------------------- */

static struct inproc P;
static int C = -1; /* the client's connection */

static void
hp_setup(void)
{
    counting_init();
    cr_assert_eq(inproc_start(&P, "hotpath-alloc", 0, 10000, &S), 0,
                 "in-process server did not start");
}

static void
hp_teardown(void)
{
    if (C >= 0)
        close(C);
    C = -1;
    inproc_stop(&P);
}

TestSuite(hotpath_alloc, .init = hp_setup, .fini = hp_teardown, .timeout = 120);

static void
client_connect(void)
{
    C = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(C >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(C, (struct sockaddr *)&a, sizeof(a)), 0, "connect");
}

/* one request on the keep-alive connection; returns the status, *body_len the
 * Content-Length read (the body itself is read and dropped unless HEAD) */
static int
ka(const char *method, const char *path, size_t *body_len)
{
    char rq[512];
    int n = snprintf(rq, sizeof(rq), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    cr_assert_eq(write(C, rq, (size_t)n), n, "write request");
    static char buf[1 << 16];
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        cr_assert(got < sizeof(buf) - 1, "response headers too large");
        ssize_t r = read(C, buf + got, sizeof(buf) - 1 - got);
        cr_assert(r > 0, "connection closed by the server");
        got += (size_t)r;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = atoi(buf + 9);
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t len = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    size_t have = got - (size_t)(end + 4 - buf);
    size_t want = strcmp(method, "HEAD") == 0 ? 0 : len;
    cr_assert(have <= want, "more bytes than the reply (pipelining is not used here)");
    while (have < want) {
        ssize_t r = read(C, buf, sizeof(buf) < want - have ? sizeof(buf) : want - have);
        cr_assert(r > 0, "connection closed in the body");
        have += (size_t)r;
    }
    if (body_len)
        *body_len = len;
    return status;
}

/* A hot request allocates nothing from the heap once its worker is warm:
 *   - the api, the router and storage's own code write into the request arena
 *     and the worker's reply buffer, and read sqlite columns in place;
 *   - the connection layer takes the request struct, its arena block and its
 *     header and reply-header buffers from per-thread spares
 *     (server/http_req.c);
 *   - sqlite (Debian's 3.40 is built with SQLITE_OMIT_LOOKASIDE: every cursor
 *     and copied text column of a statement run is an allocation) allocates
 *     through storage/sqlmem.c, whose per-thread free lists play the missing
 *     lookaside.
 * Any allocation counted here is a regression: the test prints its backtrace. */
#define WARMUP 50
#define N 400

static void
measure(const char *method, const char *path, int want_status)
{
    size_t len = 0;
    for (int i = 0; i < WARMUP; i++)
        cr_assert_eq(ka(method, path, &len), want_status, "%s %s warm-up", method, path);
    window_open();
    for (int i = 0; i < N; i++) {
        int st = ka(method, path, NULL);
        if (st != want_status) {
            atomic_store(&g_on, 0);
            cr_assert_fail("%s %s: status %d", method, path, st);
        }
    }
    window_close();
    unsigned long a = atomic_load(&g_allocs), f = atomic_load(&g_frees);
    fprintf(stderr, "%s %s: %lu allocations, %lu frees in %d requests\n", method, path, a, f, N);
    if (a)
        print_traces();
    cr_assert_eq(a, 0, "%s %s: %lu heap allocations in %d requests, want none", method, path, a,
                 N);
    cr_assert_eq(f, 0, "%s %s: %lu frees in %d requests, want none", method, path, f, N);
}

/* the data of every test: image r:v1 and tags t000..t099 on it */
static void
seed_repo(void)
{
    char body[1024], dg[80];
    make_image("r", 0, "hot", body, sizeof(body));
    cr_assert_eq(put_manifest("r", "v1", MT_OCI_MANIFEST, body, dg), 201);
    for (int i = 0; i < 100; i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "t%03d", i);
        cr_assert_eq(put_manifest("r", tag, MT_OCI_MANIFEST, body, NULL), 201);
    }
    client_connect();
}

Test(hotpath_alloc, event_loop_thread_is_seen)
{
    /* the counting reaches the server thread at all: without this the other
     * tests would pass vacuously */
    seed_repo();
    size_t len;
    cr_assert_eq(ka("GET", "/v2/", &len), 200);
    window_open();
    /* a request that must allocate on the worker: a new connection */
    int keep = C;
    client_connect();
    cr_assert_eq(ka("GET", "/v2/", &len), 200);
    window_close();
    close(C);
    C = keep;
    cr_assert(atomic_load(&g_allocs) > 0, "no allocation counted on the worker thread: the "
                                          "epoll_wait/malloc interposition does not work");
}

Test(hotpath_alloc, manifest_get_by_tag)
{
    seed_repo();
    measure("GET", "/v2/r/manifests/v1", 200);
}

Test(hotpath_alloc, manifest_head_by_tag)
{
    seed_repo();
    measure("HEAD", "/v2/r/manifests/v1", 200);
}

Test(hotpath_alloc, blob_head)
{
    seed_repo();
    char dg[80];
    push_blob("r", "a blob for HEAD", dg);
    char path[200];
    snprintf(path, sizeof(path), "/v2/r/blobs/%s", dg);
    measure("HEAD", path, 200);
}

Test(hotpath_alloc, tags_list)
{
    seed_repo();
    size_t len = 0;
    cr_assert_eq(ka("GET", "/v2/r/tags/list", &len), 200);
    cr_assert(len > 100 * 7, "the whole list in one page (%zu bytes)", len);
    /* no Link (one page): no extra header */
    measure("GET", "/v2/r/tags/list", 200);
}

Test(hotpath_alloc, tags_list_paged_with_link)
{
    seed_repo();
    measure("GET", "/v2/r/tags/list?n=10&last=t050", 200);
}

/* with retention rules the same requests also note the tag's pull time
 * (storage/pulls.c): still nothing allocated per request, while the
 * maintenance thread flushes the notes every 100 ms beside them */
static void
hp_setup_pulls(void)
{
    counting_init();
    struct inproc_opts o = {.prefix = "hotpath-pulls",
                            .max_page = 10000,
                            .io = -1,
                            .track_pulls = 1,
                            .pull_flush_ms = 100};
    cr_assert_eq(inproc_start_with(&P, &o, &S), 0, "in-process server did not start");
}

TestSuite(hotpath_alloc_pulls, .init = hp_setup_pulls, .fini = hp_teardown, .timeout = 120);

Test(hotpath_alloc_pulls, manifest_get_by_tag)
{
    seed_repo();
    measure("GET", "/v2/r/manifests/v1", 200);
}

Test(hotpath_alloc_pulls, manifest_head_by_tag)
{
    seed_repo();
    measure("HEAD", "/v2/r/manifests/v1", 200);
}
