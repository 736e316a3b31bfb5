/* maint.h - the maintenance thread: periodic storage housekeeping off the
 * request path. It removes expired upload sessions (storage_expire_uploads)
 * and, with pull tracking on (retention rules), writes the tags' last-pulled
 * times (storage_pulls_flush); garbage collection will run here later.
 *
 * The thread has its own storage_handle (handles are per thread). It wakes every
 * min(upload_expiry / 10, pull_flush, 60 s) (at least 100 ms), and at once when
 * storage asks for a pull flush (a table filling up), and stops promptly:
 * maint_stop signals a condition variable the thread sleeps on, joins it and
 * flushes the pull times one last time, so it can be called right before
 * storage_close (after the http workers have stopped). */
#ifndef OCIREG_MAINT_H
#define OCIREG_MAINT_H

#include "common/err.h"

struct maint;
struct storage;

struct maint_opts {
    int upload_expiry_sec; /* 0: sessions never expire (the thread then idles) */
    long pull_flush_ms;    /* with storage's track_pulls: how often the tags'
                              pull times are written (MAINT_PULL_FLUSH_MS);
                              0: not tracked */
};

/* a minute: the precision retention's pull times are kept to */
#define MAINT_PULL_FLUSH_MS 60000L

/* maint_start - open a storage handle and start the thread. st is borrowed and
 * must outlive the maint object. Returns a new object owned by the caller (free
 * with maint_stop), or NULL with ERR_IO / ERR_DB (the handle) or ERR_INTERNAL
 * (the thread). */
struct maint *maint_start(struct storage *st, const struct maint_opts *o, struct err *e);

/* maint_interval_ms - the wake-up period maint_start uses for these options
 * (0 when there is nothing periodic to do). */
long maint_interval_ms(const struct maint_opts *o);

/* maint_runs - how many housekeeping rounds have completed (for tests). */
unsigned long maint_runs(struct maint *m);

/* maint_stop - wake the thread, wait for it to end (a round in progress
 * finishes first), close its handle and free m. NULL is accepted. */
void maint_stop(struct maint *m);

#endif
