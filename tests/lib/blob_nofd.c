/* blob_nofd.c - see blob_nofd.h. Every operation is the filesystem
 * backend's, except the two descriptor offers (reader, writer), which are
 * refused. A reader keeps the inner reader ops in its priv field. */
#include "tests/lib/blob_nofd.h"

#include <stdlib.h>
#include <string.h>

#include "storage/blob.h"
#include "tests/lib/blob_mem.h"

struct nofd {
    struct blob_backend b;
    struct blob_backend *in;
    struct blob_backend_ops ops;
};

static const struct blob_reader_ops *
inner(const struct blob_reader *rd)
{
    return rd->priv;
}

static int
rd_fd(struct blob_reader *rd, int *fd, uint64_t *off)
{
    return -1;
}

static long
rd_read(struct blob_reader *rd, uint64_t off, void *buf, size_t n, struct err *e)
{
    return inner(rd)->read(rd, off, buf, n, e);
}

static int
rd_redirect(struct blob_reader *rd, char *url, size_t urlsz, struct err *e)
{
    return -1;
}

static void
rd_close(struct blob_reader *rd)
{
    inner(rd)->close(rd);
}

static const struct blob_reader_ops nofd_reader_ops = {
    .fd = rd_fd, .read = rd_read, .redirect = rd_redirect, .close = rd_close,
};

static struct blob_backend *
in_of(struct blob_backend *b)
{
    return ((struct nofd *)b)->in;
}

static int
nf_open(struct blob_backend *b, const struct digest *d, struct blob_reader *rd, struct err *e)
{
    int rc = in_of(b)->ops->open(in_of(b), d, rd, e);
    if (rc == 1) {
        rd->priv = (void *)rd->ops;
        rd->ops = &nofd_reader_ops;
    }
    return rc;
}

static int
nf_w_fd(struct blob_writer *w, int *fd, uint64_t *off)
{
    return -1;
}

static void
nf_close(struct blob_backend *b)
{
    struct nofd *n = (struct nofd *)b;
    n->in->ops->close(n->in);
    free(n);
}

#define FWD(name, params, args)                                                                    \
    static int nf_##name params                                                                    \
    {                                                                                              \
        return in_of(b)->ops->name args;                                                           \
    }
FWD(stat, (struct blob_backend * b, const struct digest *d, uint64_t *size, struct err *e),
    (in_of(b), d, size, e))
FWD(put, (struct blob_backend * b, const struct digest *d, const void *data, size_t n,
          enum blob_put_mode mode, struct err *e),
    (in_of(b), d, data, n, mode, e))
FWD(remove, (struct blob_backend * b, const struct digest *d, struct err *e), (in_of(b), d, e))
FWD(list, (struct blob_backend * b, int (*fn)(void *, const struct digest *, uint64_t),
           void *arg, struct err *e),
    (in_of(b), fn, arg, e))
FWD(sync, (struct blob_backend * b, struct err *e), (in_of(b), e))
FWD(w_create, (struct blob_backend * b, const char *id, struct err *e), (in_of(b), id, e))
FWD(w_open, (struct blob_backend * b, const char *id, struct blob_writer **w, struct err *e),
    (in_of(b), id, w, e))
FWD(w_stat, (struct blob_backend * b, const char *id, uint64_t *size, struct err *e),
    (in_of(b), id, size, e))
FWD(w_remove, (struct blob_backend * b, const char *id, struct err *e), (in_of(b), id, e))
FWD(w_list, (struct blob_backend * b, int (*fn)(void *, const char *), void *arg,
             struct err *e),
    (in_of(b), fn, arg, e))

struct blob_backend *
blob_nofd_wrap(struct blob_backend *fs, struct err *e)
{
    struct nofd *n = calloc(1, sizeof(*n));
    if (!n) {
        fs->ops->close(fs);
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    n->in = fs;
    /* the writer operations take the inner writer as it is: only its
     * descriptor offer is refused */
    n->ops = *fs->ops;
    n->ops.name = "nofd";
    n->ops.close = nf_close;
    n->ops.stat = nf_stat;
    n->ops.open = nf_open;
    n->ops.put = nf_put;
    n->ops.remove = nf_remove;
    n->ops.list = nf_list;
    n->ops.sync = nf_sync;
    n->ops.w_create = nf_w_create;
    n->ops.w_open = nf_w_open;
    n->ops.w_stat = nf_w_stat;
    n->ops.w_remove = nf_w_remove;
    n->ops.w_list = nf_w_list;
    n->ops.w_fd = nf_w_fd;
    n->b.ops = &n->ops;
    return &n->b;
}

struct blob_backend *(*blob_nofd_selected(void))(struct blob_backend *, struct err *)
{
    const char *v = getenv("OCIREG_TEST_BLOBS");
    if (v && strcmp(v, "nofd") == 0)
        return blob_nofd_wrap;
    if (v && strcmp(v, "mem") == 0)
        return blob_mem_replace;
    return NULL;
}
