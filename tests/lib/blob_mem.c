/* blob_mem.c - see blob_mem.h.
 *
 * A buffer is shared by reference count: a reader or an open writer holds
 * one, so gc's remove or a replacing put never frees bytes still being read.
 * A blob's buffer is immutable once in the blob table (a session's buffer
 * becomes a blob only at commit, after its last append); a session's buffer
 * is written and read under the mutex. Callbacks (list, w_list) run on a
 * snapshot taken under the mutex, outside it, so they may call back in. */
#include "tests/lib/blob_mem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/blob.h"
#include "storage/storage_internal.h"

#define MEM_BUCKETS 1024

struct membuf {
    unsigned long refs; /* atomic */
    size_t len, cap;
    char *data;
};

struct item {
    struct item *next;
    struct membuf *buf;
    char key[DIGEST_STR_MAX];
};

struct table {
    struct item *b[MEM_BUCKETS];
};

struct mem {
    struct blob_backend b;
    pthread_mutex_t mu;
    struct table blobs, sessions;
};

struct blob_writer {
    struct mem *m;
    struct membuf *buf;
    char id[UPLOAD_ID_LEN + 1];
};

static struct membuf *
buf_new(void)
{
    struct membuf *f = calloc(1, sizeof(*f));
    if (f)
        f->refs = 1;
    return f;
}

static struct membuf *
buf_ref(struct membuf *f)
{
    __atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
    return f;
}

static void
buf_unref(struct membuf *f)
{
    if (f && __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(f->data);
        free(f);
    }
}

/* buf_write - n bytes at off, growing the buffer (a gap reads as zeros) */
static int
buf_write(struct membuf *f, const void *data, size_t n, uint64_t off, struct err *e)
{
    if (off > SIZE_MAX - n)
        return err_set(e, ERR_NOSPACE, 0, "session too large for memory");
    size_t end = (size_t)off + n;
    if (end > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        while (cap < end)
            cap = cap > SIZE_MAX / 2 ? end : cap * 2;
        char *p = realloc(f->data, cap);
        if (!p)
            return err_set(e, ERR_NOSPACE, 0, "out of memory for session bytes");
        memset(p + f->cap, 0, cap - f->cap);
        f->data = p;
        f->cap = cap;
    }
    if (n)
        memcpy(f->data + off, data, n);
    if (end > f->len)
        f->len = end;
    return 0;
}

static unsigned
hash_key(const char *k)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h % MEM_BUCKETS;
}

static struct item **
slot(struct table *t, const char *key)
{
    struct item **p = &t->b[hash_key(key)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

static struct membuf *
find(struct table *t, const char *key)
{
    struct item *it = *slot(t, key);
    return it ? it->buf : NULL;
}

/* set - key's buffer becomes f (the table takes the caller's reference; the
 * one it had is dropped); -1 on OOM */
static int
set(struct table *t, const char *key, struct membuf *f)
{
    struct item **p = slot(t, key);
    if (*p) {
        buf_unref((*p)->buf);
        (*p)->buf = f;
        return 0;
    }
    struct item *it = calloc(1, sizeof(*it));
    if (!it)
        return -1;
    snprintf(it->key, sizeof(it->key), "%s", key);
    it->buf = f;
    *p = it;
    return 0;
}

static void
drop(struct table *t, const char *key)
{
    struct item **p = slot(t, key);
    struct item *it = *p;
    if (!it)
        return;
    *p = it->next;
    buf_unref(it->buf);
    free(it);
}

static void
table_free(struct table *t)
{
    for (int i = 0; i < MEM_BUCKETS; i++) {
        while (t->b[i]) {
            struct item *it = t->b[i];
            t->b[i] = it->next;
            buf_unref(it->buf);
            free(it);
        }
    }
}

/* snapshot - every key with its length (malloc'd array of n); -1 on OOM */
struct entry {
    char key[DIGEST_STR_MAX];
    uint64_t len;
};

static int
snapshot(struct mem *m, struct table *t, struct entry **out, size_t *n, struct err *e)
{
    size_t cnt = 0, cap = 0;
    struct entry *v = NULL;
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < MEM_BUCKETS && rc == 0; i++) {
        for (struct item *it = t->b[i]; it; it = it->next) {
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct entry *nv = realloc(v, nc * sizeof(*v));
                if (!nv) {
                    rc = err_set(e, ERR_NOMEM, 0, "out of memory");
                    break;
                }
                v = nv;
                cap = nc;
            }
            memcpy(v[cnt].key, it->key, sizeof(it->key));
            v[cnt++].len = it->buf->len;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        free(v);
        return -1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* ---- readers ---- */

static int
rd_fd(struct blob_reader *rd, int *fd, uint64_t *off)
{
    return -1;
}

static long
rd_read(struct blob_reader *rd, uint64_t off, void *buf, size_t n, struct err *e)
{
    const struct membuf *f = rd->priv;
    if (off >= f->len)
        return 0;
    if (n > f->len - off)
        n = f->len - (size_t)off;
    memcpy(buf, f->data + off, n);
    return (long)n;
}

static int
rd_redirect(struct blob_reader *rd, char *url, size_t urlsz, struct err *e)
{
    return -1;
}

static void
rd_close(struct blob_reader *rd)
{
    buf_unref(rd->priv);
    rd->priv = NULL;
}

static const struct blob_reader_ops mem_reader_ops = {
    .fd = rd_fd, .read = rd_read, .redirect = rd_redirect, .close = rd_close,
};

/* ---- blobs ---- */

static int
mem_stat(struct blob_backend *b, const struct digest *d, uint64_t *size, struct err *e)
{
    struct mem *m = (struct mem *)b;
    char key[DIGEST_STR_MAX];
    digest_format(d, key);
    pthread_mutex_lock(&m->mu);
    struct membuf *f = find(&m->blobs, key);
    if (f)
        *size = f->len;
    pthread_mutex_unlock(&m->mu);
    return f != NULL;
}

static int
mem_open(struct blob_backend *b, const struct digest *d, struct blob_reader *rd, struct err *e)
{
    struct mem *m = (struct mem *)b;
    char key[DIGEST_STR_MAX];
    digest_format(d, key);
    pthread_mutex_lock(&m->mu);
    struct membuf *f = find(&m->blobs, key);
    if (f)
        buf_ref(f);
    pthread_mutex_unlock(&m->mu);
    if (!f)
        return 0;
    rd->ops = &mem_reader_ops;
    rd->size = f->len;
    rd->fd = -1;
    rd->priv = f;
    return 1;
}

static int
mem_put(struct blob_backend *b, const struct digest *d, const void *data, size_t n,
        enum blob_put_mode mode, struct err *e)
{
    struct mem *m = (struct mem *)b;
    char key[DIGEST_STR_MAX];
    digest_format(d, key);
    /* copied outside the mutex; dropped again when the blob is already there */
    struct membuf *f = buf_new();
    if (!f || buf_write(f, data, n, 0, e) < 0) {
        buf_unref(f);
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    pthread_mutex_lock(&m->mu);
    struct membuf *have = find(&m->blobs, key);
    int rc = 0;
    if (mode == BLOB_PUT_REPLACE || !have || have->len != n) {
        if (set(&m->blobs, key, f) < 0)
            rc = err_set(e, ERR_NOMEM, 0, "out of memory");
        else
            f = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    buf_unref(f);
    return rc;
}

static int
mem_remove(struct blob_backend *b, const struct digest *d, struct err *e)
{
    struct mem *m = (struct mem *)b;
    char key[DIGEST_STR_MAX];
    digest_format(d, key);
    pthread_mutex_lock(&m->mu);
    drop(&m->blobs, key);
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int
mem_list(struct blob_backend *b, int (*fn)(void *arg, const struct digest *d, uint64_t size),
         void *arg, struct err *e)
{
    struct mem *m = (struct mem *)b;
    struct entry *v;
    size_t n;
    if (snapshot(m, &m->blobs, &v, &n, e) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct digest d;
        if (digest_parse(v[i].key, strlen(v[i].key), &d, NULL) == 0 && fn(arg, &d, v[i].len))
            break;
    }
    free(v);
    return 0;
}

static int
mem_sync(struct blob_backend *b, struct err *e)
{
    return 0; /* every put is as durable as memory gets */
}

/* ---- upload sessions ---- */

static int
mem_w_create(struct blob_backend *b, const char *id, struct err *e)
{
    struct mem *m = (struct mem *)b;
    struct membuf *f = buf_new();
    if (!f)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    if (find(&m->sessions, id))
        rc = err_set(e, ERR_IO, 0, "upload session data '%s' exists", id);
    else if (set(&m->sessions, id, f) < 0)
        rc = err_set(e, ERR_NOMEM, 0, "out of memory");
    else
        f = NULL;
    pthread_mutex_unlock(&m->mu);
    buf_unref(f);
    return rc;
}

static int
mem_w_open(struct blob_backend *b, const char *id, struct blob_writer **out, struct err *e)
{
    struct mem *m = (struct mem *)b;
    struct blob_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    pthread_mutex_lock(&m->mu);
    struct membuf *f = find(&m->sessions, id);
    if (f)
        w->buf = buf_ref(f);
    pthread_mutex_unlock(&m->mu);
    if (!f) {
        free(w);
        return 0;
    }
    w->m = m;
    snprintf(w->id, sizeof(w->id), "%s", id);
    *out = w;
    return 1;
}

static int
mem_w_stat(struct blob_backend *b, const char *id, uint64_t *size, struct err *e)
{
    struct mem *m = (struct mem *)b;
    pthread_mutex_lock(&m->mu);
    struct membuf *f = find(&m->sessions, id);
    if (f)
        *size = f->len;
    pthread_mutex_unlock(&m->mu);
    return f != NULL;
}

static int
mem_w_remove(struct blob_backend *b, const char *id, struct err *e)
{
    struct mem *m = (struct mem *)b;
    pthread_mutex_lock(&m->mu);
    drop(&m->sessions, id);
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int
mem_w_list(struct blob_backend *b, int (*fn)(void *arg, const char *name), void *arg,
           struct err *e)
{
    struct mem *m = (struct mem *)b;
    struct entry *v;
    size_t n;
    if (snapshot(m, &m->sessions, &v, &n, e) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (fn(arg, v[i].key) != 0)
            break;
    free(v);
    return 0;
}

static int
w_append(struct blob_writer *w, const void *data, size_t n, uint64_t off, struct err *e)
{
    pthread_mutex_lock(&w->m->mu);
    int rc = buf_write(w->buf, data, n, off, e);
    pthread_mutex_unlock(&w->m->mu);
    return rc;
}

static int
w_fd(struct blob_writer *w, int *fd, uint64_t *off)
{
    return -1;
}

static void
w_written(struct blob_writer *w, uint64_t end)
{
}

static int
w_hash(struct blob_writer *w, enum digest_algo algo, struct digest *out, uint64_t *size,
       struct hasher **keep, struct err *e)
{
    struct hasher *h = hasher_new(algo);
    if (!h)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    pthread_mutex_lock(&w->m->mu);
    hasher_update(h, w->buf->data, w->buf->len);
    *size = w->buf->len;
    pthread_mutex_unlock(&w->m->mu);
    if (out)
        hasher_final(h, out);
    if (keep)
        *keep = h;
    else
        hasher_free(h);
    return 0;
}

static int
w_commit(struct blob_writer *w, const struct digest *d, uint64_t size, struct err *e)
{
    struct mem *m = w->m;
    char key[DIGEST_STR_MAX];
    digest_format(d, key);
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    struct membuf *have = find(&m->blobs, key);
    if (w->buf->len != size)
        rc = err_set(e, ERR_IO, 0, "upload '%s' holds %zu bytes, not %llu", w->id, w->buf->len,
                     (unsigned long long)size);
    else if ((!have || have->len != size) && set(&m->blobs, key, buf_ref(w->buf)) < 0) {
        buf_unref(w->buf);
        rc = err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    if (rc == 0)
        drop(&m->sessions, w->id);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static void
w_close(struct blob_writer *w)
{
    if (!w)
        return;
    buf_unref(w->buf);
    free(w);
}

/* ---- the backend ---- */

static void
mem_close(struct blob_backend *b)
{
    struct mem *m = (struct mem *)b;
    if (!m)
        return;
    table_free(&m->blobs);
    table_free(&m->sessions);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static const struct blob_backend_ops mem_ops = {
    .name = "mem",
    .close = mem_close,
    .stat = mem_stat,
    .open = mem_open,
    .put = mem_put,
    .remove = mem_remove,
    .list = mem_list,
    .sync = mem_sync,
    .w_create = mem_w_create,
    .w_open = mem_w_open,
    .w_stat = mem_w_stat,
    .w_remove = mem_w_remove,
    .w_list = mem_w_list,
    .w_append = w_append,
    .w_fd = w_fd,
    .w_written = w_written,
    .w_hash = w_hash,
    .w_commit = w_commit,
    .w_close = w_close,
};

struct blob_backend *
blob_mem_replace(struct blob_backend *fs, struct err *e)
{
    fs->ops->close(fs);
    struct mem *m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->b.ops = &mem_ops;
    return &m->b;
}

int
blob_mem_selected(void)
{
    const char *v = getenv("OCIREG_TEST_BLOBS");
    return v && strcmp(v, "mem") == 0;
}
