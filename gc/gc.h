/* gc.h - online garbage collection (docs/gc.md): one pass removes what nothing
 * needs any more, beside live pushes and pulls, and never loses data.
 *
 * What a pass collects (each only when older than the grace period):
 *   - per repository: blob links that no kept manifest of that repository
 *     references;
 *   - with delete_untagged: manifests that no tag names, except one that a
 *     kept index of its repository references and a referrer whose subject is
 *     kept (signatures and SBOMs stay with their image);
 *   - what the retention rules (gc/retention.h) untag first;
 *   - globally: blob files that no repository links and no manifest is stored
 *     as (storage's rule: the row goes and the file is unlinked inside one
 *     write transaction, so a writer that references the blob in its own
 *     transaction either sees it gone or keeps it);
 *   - upload sessions idle past [storage] upload_expiry.
 *
 * Work is proportional to what changed: the operations that can orphan
 * something (manifest delete, tag move or delete, link removal, upload end)
 * queue candidates in the metadata (a review queue, as GitLab's registry
 * keeps); a pass reviews the queue, not the store. A full pass (every
 * repository, every blob) runs when asked (`full`), and the first time a store
 * from before the queue is collected.
 *
 * Readers never wait for gc: every step is a short write transaction; a pull
 * that already streams a blob finishes (the file's data lives while open).
 * A crash at any point leaves a consistent store and the next pass finishes
 * the job. */
#ifndef OCIREG_GC_H
#define OCIREG_GC_H

#include <stdint.h>

#include "common/err.h"

struct storage_handle;
struct retention_rules;

struct gc_opts {
    int64_t grace_sec;     /* [gc] grace: nothing younger is collected */
    int delete_untagged;   /* [gc] delete_untagged */
    int dry_run;           /* count and list, change nothing (the whole pass
                              runs in one transaction that is rolled back:
                              writers wait for it, so for a stopped store) */
    int full;              /* review the whole store, not only the queue */
    const struct retention_rules *retention; /* NULL: no retention rules */
    /* each thing removed (or, dry run, that would be): "manifest REPO@DIGEST
     * (rule ...)", "link REPO DIGEST", "blob DIGEST SIZE", "upload UUID",
     * "tag REPO:TAG (rule ...)" (retention); called on the pass's thread;
     * NULL: no listing */
    void (*report)(void *arg, const char *line);
    void *report_arg;
    /* asked between steps: non-zero ends the pass early (server shutdown);
     * NULL: never */
    int (*stop)(void *arg);
    void *stop_arg;
};

struct gc_stats {
    uint64_t tags;      /* tags removed by retention */
    uint64_t manifests; /* manifests deleted */
    uint64_t links;     /* blob links removed */
    uint64_t blobs;     /* blob files deleted */
    uint64_t bytes;     /* their bytes */
    uint64_t uploads;   /* expired upload sessions */
    uint64_t reviewed;  /* candidates looked at */
    double seconds;     /* the pass's duration */
};

/* gc_pass - one pass with handle h (the caller's thread's). Returns 0 with
 * *st filled, or -1 with ERR_DB / ERR_IO / ERR_NOSPACE (what was done before
 * stays done and counted in *st; the next pass goes on). */
int gc_pass(struct storage_handle *h, const struct gc_opts *o, struct gc_stats *st,
            struct err *e);

#endif
