/* maint.h - the maintenance thread: periodic storage housekeeping off the
 * request path. It removes expired upload sessions (storage_expire_uploads)
 * and, with pull tracking on (retention rules), writes the tags' last-pulled
 * times (storage_pulls_flush); and runs the online garbage collection
 * (gc_pass, gc/gc.h) every [gc] interval, and at once when asked
 * (maint_gc_now: SIGUSR1 in the server).
 *
 * The thread has its own storage_handle (handles are per thread). It wakes for
 * the earlier of its two schedules: upload expiry and pull times every
 * min(upload_expiry / 10, pull_flush, 60 s) (at least 100 ms; at once when
 * storage asks for a pull flush: a table filling up), a gc pass [gc] interval
 * after the previous pass ended. It stops promptly: maint_stop signals a
 * condition variable the thread sleeps on, and a gc pass in progress asks
 * between its steps whether to stop, so maint_stop never waits a whole pass;
 * it then flushes the pull times one last time, so it is called right before
 * storage_close (after the http workers have stopped). */
#ifndef OCIREG_MAINT_H
#define OCIREG_MAINT_H

#include <stdint.h>

#include "common/err.h"

struct maint;
struct storage;
struct retention_rules;
struct gc_stats;

struct maint_opts {
    int upload_expiry_sec; /* 0: sessions never expire */
    long pull_flush_ms;    /* with storage's track_pulls: how often the tags'
                              pull times are written (MAINT_PULL_FLUSH_MS);
                              0: not tracked */
    int gc_interval_ms;    /* [gc] interval; 0: no periodic pass (maint_gc_now still runs one) */
    int64_t gc_grace_sec;  /* [gc] grace */
    int gc_delete_untagged;                  /* [gc] delete_untagged */
    const struct retention_rules *retention; /* borrowed, outlives the maint object; NULL: none */
    /* tests only (OCIREG_TEST_GC_KILL_STEP): the process SIGKILLs itself the
     * n-th time a gc pass asks whether to stop, counted from maint_start, so a
     * crash test can end the server in the middle of a pass. 0: never. */
    unsigned long test_kill_step;
};

/* a minute: the precision retention's pull times are kept to */
#define MAINT_PULL_FLUSH_MS 60000L

/* maint_start - open a storage handle and start the thread. st is borrowed and
 * must outlive the maint object. Returns a new object owned by the caller (free
 * with maint_stop), or NULL with ERR_IO / ERR_DB (the handle) or ERR_INTERNAL
 * (the thread). */
struct maint *maint_start(struct storage *st, const struct maint_opts *o, struct err *e);

/* maint_interval_ms - the upload-expiry period maint_start uses for these
 * options (0 when sessions never expire). */
long maint_interval_ms(const struct maint_opts *o);

/* maint_runs - how many upload-expiry rounds have completed (for tests). */
unsigned long maint_runs(struct maint *m);

/* maint_gc_now - ask for a gc pass as soon as the thread is free: a pass that
 * starts after this call answers it (several calls before it starts are one
 * pass). Never runs the pass on the calling thread; not async-signal-safe
 * (call it from a sigwait thread). NULL is accepted (nothing). */
void maint_gc_now(struct maint *m);

/* the [gc] and [retention] settings a running server changes on SIGHUP */
struct maint_gc_config {
    int interval_ms;      /* as gc_interval_ms */
    int64_t grace_sec;
    int delete_untagged;
    struct retention_rules *retention; /* NULL: none; see maint_reconfigure */
};

/* maint_reconfigure - the gc settings for passes that start afterwards (a
 * pass in progress finishes with the old ones); the next periodic pass is
 * due interval_ms from now. Takes ownership of c->retention: the maintenance
 * thread frees the rules it replaces (once no pass uses them) when they were
 * given by an earlier maint_reconfigure (those of maint_opts stay the
 * caller's), and its own at maint_stop. Turning retention on or off needs a
 * restart (pull times are tracked from storage_open): the caller keeps it on
 * or off. Thread-safe. */
void maint_reconfigure(struct maint *m, const struct maint_gc_config *c);

/* maint_gc_passes - how many gc passes have ended (also failed ones). */
unsigned long maint_gc_passes(struct maint *m);

/* maint_gc_last - the figures of the last pass that ended into *out, and
 * whether it failed (returns 1; 0 when it succeeded, -1 when no pass has ended
 * yet: *out untouched). For metrics and tests. */
int maint_gc_last(struct maint *m, struct gc_stats *out);

/* maint_stop - wake the thread, wait for it to end (an upload round in
 * progress finishes first; a gc pass ends at its next step), close its handle
 * and free m. NULL is accepted. */
void maint_stop(struct maint *m);

#endif
