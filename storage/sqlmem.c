/* sqlmem.c - sqlite's memory allocator: per-thread free lists of small blocks.
 *
 * Debian's libsqlite3 is built with SQLITE_OMIT_LOOKASIDE, so every statement
 * step mallocs and frees a block per cursor and per copied text column (4-9 per
 * hot request, see tests/integration/hotpath_alloc_test.c). This allocator plays
 * the part of the missing lookaside: blocks of up to SQLMEM_MAX_CLASS bytes come
 * from and go back to a free list of the calling thread (each storage handle is
 * used by one thread), so a steady stream of queries makes no malloc/free calls.
 * Larger blocks go straight to malloc.
 *
 * Every block has a 16-byte header holding its usable size (xSize) and class.
 * A block freed by another thread than the one that allocated it simply joins
 * the freeing thread's list. Each list is bounded (SQLMEM_LIST_BYTES per class
 * and thread: at most about 200 KiB per thread in all), a block beyond that is
 * freed; a thread's lists are freed when it exits.
 *
 * Installed once per process, before sqlite initialises (sqlmem_install, called
 * by storage_open); when sqlite was already initialised by somebody else, the
 * default allocator stays and nothing else changes. */
#include "storage/metadb.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/banned.h"

#define SQLMEM_MIN_SHIFT 5 /* 32 bytes */
#define SQLMEM_CLASSES 8   /* 32 .. 4096 */
#define SQLMEM_MAX_CLASS ((size_t)1 << (SQLMEM_MIN_SHIFT + SQLMEM_CLASSES - 1))
#define SQLMEM_LIST_BYTES (24 * 1024)
#define SQLMEM_BIG SQLMEM_CLASSES /* class of a block from plain malloc */

struct blk_hdr {
    uint32_t size; /* usable bytes (class size, or the asked size when big) */
    uint32_t cls;
    uint64_t pad; /* keeps the payload 16-byte aligned */
};

struct free_blk {
    struct free_blk *next;
};

struct lists {
    struct free_blk *head[SQLMEM_CLASSES];
    unsigned n[SQLMEM_CLASSES];
    int registered;
};

static __thread struct lists tl;
static pthread_key_t lists_key;
static pthread_once_t lists_once = PTHREAD_ONCE_INIT;
static int lists_key_ok;

static void
lists_free(void *p)
{
    struct lists *l = p;
    for (int c = 0; c < SQLMEM_CLASSES; c++) {
        while (l->head[c]) {
            struct free_blk *f = l->head[c];
            l->head[c] = f->next;
            free((struct blk_hdr *)f - 1);
        }
        l->n[c] = 0;
    }
}

static void
lists_key_init(void)
{
    lists_key_ok = pthread_key_create(&lists_key, lists_free) == 0;
}

static int
class_of(size_t n)
{
    size_t sz = (size_t)1 << SQLMEM_MIN_SHIFT;
    for (int c = 0; c < SQLMEM_CLASSES; c++, sz <<= 1)
        if (n <= sz)
            return c;
    return SQLMEM_BIG;
}

static void *
mem_malloc(int n)
{
    if (n <= 0)
        return NULL;
    int c = class_of((size_t)n);
    if (c < SQLMEM_CLASSES && tl.head[c]) {
        struct free_blk *f = tl.head[c];
        tl.head[c] = f->next;
        tl.n[c]--;
        return f;
    }
    size_t usable = c < SQLMEM_CLASSES ? (size_t)1 << (SQLMEM_MIN_SHIFT + c) : (size_t)n;
    struct blk_hdr *h = malloc(sizeof(*h) + usable);
    if (!h)
        return NULL;
    h->size = (uint32_t)usable;
    h->cls = (uint32_t)c;
    return h + 1;
}

static void
mem_free(void *p)
{
    if (!p)
        return;
    struct blk_hdr *h = (struct blk_hdr *)p - 1;
    unsigned c = h->cls;
    if (c < SQLMEM_CLASSES && tl.n[c] * h->size < SQLMEM_LIST_BYTES) {
        if (!tl.registered) {
            pthread_once(&lists_once, lists_key_init);
            if (!lists_key_ok) {
                free(h);
                return;
            }
            pthread_setspecific(lists_key, &tl);
            tl.registered = 1;
        }
        struct free_blk *f = p;
        f->next = tl.head[c];
        tl.head[c] = f;
        tl.n[c]++;
        return;
    }
    free(h);
}

static int
mem_size(void *p)
{
    return p ? (int)((struct blk_hdr *)p - 1)->size : 0;
}

static void *
mem_realloc(void *p, int n)
{
    if (!p)
        return mem_malloc(n);
    if (n <= 0) {
        mem_free(p);
        return NULL;
    }
    int have = mem_size(p);
    if (n <= have && (have <= (int)SQLMEM_MAX_CLASS || n > have / 2))
        return p;
    void *q = mem_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, (size_t)(have < n ? have : n));
    mem_free(p);
    return q;
}

static int
mem_roundup(int n)
{
    int c = class_of((size_t)(n > 0 ? n : 1));
    return c < SQLMEM_CLASSES ? 1 << (SQLMEM_MIN_SHIFT + c) : (n + 15) & ~15;
}

static int
mem_init(void *arg)
{
    (void)arg;
    return SQLITE_OK;
}

static void
mem_shutdown(void *arg)
{
    (void)arg;
}

static const sqlite3_mem_methods sqlmem_methods = {
    mem_malloc, mem_free, mem_realloc, mem_size, mem_roundup, mem_init, mem_shutdown, NULL,
};

static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int installed;

static void
install(void)
{
    /* both fail with SQLITE_MISUSE once sqlite is initialised: then the
     * default allocator simply stays */
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &sqlmem_methods) == SQLITE_OK)
        installed = 1;
    /* the allocation counters take a global mutex on every malloc */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int
sqlmem_install(void)
{
    pthread_once(&install_once, install);
    return installed;
}
