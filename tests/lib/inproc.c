#include "tests/lib/inproc.h"
#include "tests/lib/blob_nofd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/api.h"
#include "server/http.h"
#include "server/maint.h"
#include "storage/storage.h"
#include "tests/lib/integ_util.h"
#include "tests/lib/testsrv.h"

#include "common/banned.h"

static void *
run(void *arg)
{
    struct inproc *p = arg;
    struct err e;
    http_server_run(p->srv, &e);
    return NULL;
}

static int
io_from_env(void)
{
    const char *v = getenv("OCIREG_STORAGE_IO");
    if (v && strcmp(v, "uring") == 0)
        return HTTP_IO_URING;
    if (v && strcmp(v, "posix") == 0)
        return HTTP_IO_POSIX;
    return HTTP_IO_AUTO;
}

int
inproc_start(struct inproc *p, const char *prefix, int fsync, long max_page, struct testsrv *s)
{
    return inproc_start_opts(p, prefix, fsync, max_page, -1, 0, s);
}

int
inproc_start_opts(struct inproc *p, const char *prefix, int fsync, long max_page, int io,
                  unsigned long long max_blob_size, struct testsrv *s)
{
    struct inproc_opts o = {.prefix = prefix,
                            .fsync = fsync,
                            .max_page = max_page,
                            .io = io,
                            .max_blob_size = max_blob_size};
    return inproc_start_with(p, &o, s);
}

int
inproc_start_with(struct inproc *p, const struct inproc_opts *o, struct testsrv *s)
{
    const char *prefix = o->prefix ? o->prefix : "inproc";
    int fsync = o->fsync, io = o->io;
    long max_page = o->max_page;
    unsigned long long max_blob_size = o->max_blob_size;
    struct err e = {0};
    memset(p, 0, sizeof(*p));
    snprintf(p->root, sizeof(p->root), "/tmp/%s.XXXXXX", prefix);
    if (!mkdtemp(p->root)) {
        perror("inproc: mkdtemp");
        return -1;
    }
    struct storage_opts so = {.root = p->root,
                              .fsync = fsync,
                              .max_manifest = 4u << 20,
                              .max_blob_size = max_blob_size,
                              .track_pulls = o->track_pulls,
                              .test_blobs = blob_nofd_selected()};
    p->st = storage_open(&so, &e);
    if (!p->st)
        goto fail;
    if (o->pull_flush_ms > 0) {
        struct maint_opts mo = {.pull_flush_ms = o->pull_flush_ms};
        if (!(p->maint = maint_start(p->st, &mo, &e)))
            goto fail;
    }
    struct api_opts ao = {
        .max_manifest = 4u << 20, .max_page = max_page, .upload_threads = o->upload_threads};
    p->api = api_new(p->st, &ao, &e);
    if (!p->api)
        goto fail;
    struct http_app app;
    api_http_app(p->api, &app);
    struct http_server_opts ho = {
        .listen = "127.0.0.1:0",
        .workers = 1,
        .header_max = 16384,
        .body_buffer = 64 * 1024,
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .max_connections = 64,
        .io = io < 0 ? io_from_env() : io,
    };
    p->srv = http_server_new(&ho, &app, &e);
    if (!p->srv)
        goto fail;
    const char *addr = http_server_address(p->srv);
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    s->port = atoi(strrchr(addr, ':') + 1);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
    if (pthread_create(&p->thr, NULL, run, p) != 0) {
        snprintf(e.msg, sizeof(e.msg), "pthread_create failed");
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "inproc: %s\n", e.msg);
    http_server_free(p->srv);
    api_free(p->api);
    maint_stop(p->maint);
    storage_close(p->st);
    p->srv = NULL;
    p->api = NULL;
    p->maint = NULL;
    p->st = NULL;
    return -1;
}

void
inproc_stop(struct inproc *p)
{
    if (p->srv) {
        http_server_stop(p->srv);
        pthread_join(p->thr, NULL);
        http_server_free(p->srv);
        p->srv = NULL;
    }
    api_free(p->api);
    maint_stop(p->maint); /* after the workers: its last flush sees their pulls */
    storage_close(p->st);
    p->api = NULL;
    p->maint = NULL;
    p->st = NULL;
    if (p->root[0])
        integ_rm_rf(p->root);
}
