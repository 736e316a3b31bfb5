/* check.h - `ocireg check` (docs/gc.md "ocireg check"): verify a store, and
 * with repair put it right without losing anything that is still good.
 *
 * What a run verifies, in this order:
 *   1. the database's own integrity (sqlite PRAGMA quick_check);
 *   2. every blob row: its bytes are stored, have the row's size and hash to
 *      the row's digest (sha256 or sha512, streamed through one buffer);
 *   3. every row that names another row: links name blob rows, manifests have
 *      the blob row of their body (of their size), their blob references are
 *      linked in their repository, their child manifests are in it, tags name
 *      manifests of their repository, reference rows belong to a manifest;
 *   4. blob files without a row (garbage for gc: counted, not wrong) and
 *      upload-area entries without a session row (noted).
 * A referrer whose subject is not stored is counted, not wrong (the spec lets
 * a referrer be pushed before its subject).
 *
 * Repair (never a delete of bytes, never a touch of a healthy blob): a blob
 * whose bytes are damaged or of the wrong size is moved by the blob backend to
 * quarantine (fs: <root>/quarantine/<algo>/<hex>.<time>) and its rows are
 * removed in the same durable transaction (the rename happens before the
 * commit, so a row never outlives its file); a blob row whose file is missing
 * loses its rows; a manifest whose body or any reference is broken is deleted
 * with its tags and references (meta_manifest_delete), so that clients get
 * 404 instead of a broken image; which may break an index that references it,
 * deleted in turn, until nothing is left to repair. Bytes that cannot be read
 * (an I/O error) are reported and left as they are. */
#ifndef OCIREG_CHECK_H
#define OCIREG_CHECK_H

#include <stdint.h>

#include "common/err.h"

struct storage_handle;

enum check_line {
    CHECK_PROBLEM,  /* something is wrong (counted in problems) */
    CHECK_REPAIRED, /* what repair did (counted in repaired) */
    CHECK_NOTE,     /* worth knowing, not wrong */
};

struct check_opts {
    int repair;
    /* one line per finding, without a newline; NULL: no lines */
    void (*report)(void *arg, enum check_line kind, const char *line);
    void *report_arg;
};

struct check_stats {
    uint64_t blobs;          /* blob rows verified */
    uint64_t links, manifests, tags; /* rows at the end of the run */
    uint64_t problems;       /* CHECK_PROBLEM lines */
    uint64_t repaired;       /* CHECK_REPAIRED lines */
    uint64_t quarantined;    /* files moved to quarantine */
    uint64_t bytes_read;     /* blob bytes hashed */
    uint64_t garbage_files;  /* blob files without a row (gc removes them) */
    uint64_t garbage_bytes;
    uint64_t stray_uploads;  /* upload-area entries without a session row */
    uint64_t absent_subjects; /* referrers whose subject is not stored */
    double seconds;
};

/* check_run - one run with handle h (the caller's thread's), meant for a store
 * nothing else writes to (the ocireg command holds the root's lock). Returns 0
 * with *st filled (st->problems says whether anything is wrong), or -1 when
 * the run could not finish: ERR_DB / ERR_IO / ERR_NOSPACE / ERR_NOMEM (*st
 * holds what was counted so far; repairs made stay made). */
int check_run(struct storage_handle *h, const struct check_opts *o, struct check_stats *st,
              struct err *e);

#endif
