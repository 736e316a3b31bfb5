/* inproc.h - run the registry (storage + api + http layer) inside the test
 * process on 127.0.0.1:0 with one worker, for tests that must reach into it
 * (storage_fault_inject, api internals). The storage root is a new mkdtemp
 * folder, removed by inproc_stop. */
#ifndef OCIREG_INPROC_H
#define OCIREG_INPROC_H

#include <pthread.h>

struct storage;
struct api;
struct http_server;
struct maint;
struct testsrv;

struct inproc {
    struct storage *st;
    struct api *api;
    struct http_server *srv;
    struct maint *maint; /* with inproc_opts.pull_flush_ms, else NULL */
    pthread_t thr;
    char root[128];
};

/* inproc_start - open storage under a new /tmp/<prefix>.XXXXXX root (fsync as
 * given), an api with max_page, and the http server on a thread; fills s's port
 * and url (s->pid = -1: nothing to stop by PID). Returns 0, or -1 with a message
 * on stderr. */
int inproc_start(struct inproc *p, const char *prefix, int fsync, long max_page,
                 struct testsrv *s);

/* inproc_start_opts - the same with more knobs: io is an
 * enum http_io (HTTP_IO_AUTO / URING / POSIX; -1: from OCIREG_STORAGE_IO when
 * set, else auto), max_blob_size as storage_opts'. inproc_start is
 * inproc_start_opts(p, prefix, fsync, max_page, -1, 0, s). */
int inproc_start_opts(struct inproc *p, const char *prefix, int fsync, long max_page, int io,
                      unsigned long long max_blob_size, struct testsrv *s);

/* every knob of inproc_start_with; 0 is the default of each */
struct inproc_opts {
    const char *prefix;
    int fsync;
    long max_page;
    int io; /* as inproc_start_opts' (0 = HTTP_IO_AUTO; -1: from the environment) */
    unsigned long long max_blob_size;
    int track_pulls;    /* storage_opts.track_pulls */
    long pull_flush_ms; /* > 0: a maintenance thread (server/maint.h) writes
                           the pull times this often */
    int upload_threads; /* api_opts.upload_threads (0: the upload pool with its
                           default size; -1: none, the worker writes) */
};

/* inproc_start_with - inproc_start_opts with the options in a struct */
int inproc_start_with(struct inproc *p, const struct inproc_opts *o, struct testsrv *s);

/* inproc_stop - stop and free everything, remove the root */
void inproc_stop(struct inproc *p);

#endif
