/* retention.h - which tags to let go: rules per repository glob, read from the
 * file named by [retention] rules (docs/gc.md). A gc pass asks retention_plan
 * for each repository and deletes the tags it marks (and, when nothing else
 * names or needs their manifests, the manifests). Immutable once loaded.
 *
 * Rule kinds (several may apply to one repository; a tag is kept when any
 * kept-rule keeps it):
 *   keep the newest N tags (by push time);
 *   keep tags pushed or pulled within an age;
 *   protect tag patterns (globs: never deleted).
 * A repository no rule names keeps every tag. */
#ifndef OCIREG_RETENTION_H
#define OCIREG_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* limits of a rules file; over them is a load error */
#define RETENTION_MAX_SECTIONS 4096  /* [repo "..."] sections */
#define RETENTION_MAX_PROTECT 256    /* protect patterns of one section */
#define RETENTION_MAX_KEEP 1000000   /* keep_newest */

struct retention_rules;

/* retention_load - parse the rules file at path. Returns a new object owned by
 * the caller (retention_free), or NULL with ERR_CONFIG ("FILE:LINE: ...") /
 * ERR_IO / ERR_NOMEM. */
struct retention_rules *retention_load(const char *path, struct err *e);
void retention_free(struct retention_rules *r);

/* one tag of a repository as retention_plan sees it */
struct retention_tag {
    const char *tag;
    const char *digest; /* the manifest it names */
    int64_t pushed;     /* seconds since the epoch: last time the tag was set */
    int64_t pulled;     /* last manifest GET by this tag; 0: never (or unknown) */
    int remove;         /* out: 1 when the rules let it go */
    const char *why;    /* out: the rule that decided (static in r), for dry runs */
};

/* retention_plan - mark tags[i].remove for repository repo at time now.
 * Returns how many are marked, 0 when no rule names repo. Thread-safe. */
size_t retention_plan(const struct retention_rules *r, const char *repo,
                      struct retention_tag *tags, size_t n, int64_t now);

#endif
