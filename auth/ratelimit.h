/* ratelimit.h - failed logins, counted per (client address, user name), so that
 * passwords cannot be guessed at the speed of the server: after `max_failures`
 * failures within `window_sec`, further attempts of that pair are refused
 * (429 TOOMANYREQUESTS with Retry-After) until the window has passed since the
 * first counted failure. A success clears the pair. Thread-safe; a bounded
 * table (max_entries; the oldest entries are dropped first when it is full).
 * Never keeps a password. */
#ifndef OCIREG_RATELIMIT_H
#define OCIREG_RATELIMIT_H

#include <stddef.h>

#include "common/err.h"

struct ratelimit;

/* ratelimit_new - Returns a new object owned by the caller, or NULL with
 * ERR_NOMEM. max_failures 0: never limits. window_sec below 1 counts as 1,
 * max_entries 0 as 1; when full, the pair whose last failure is the oldest
 * is forgotten. */
struct ratelimit *ratelimit_new(unsigned max_failures, int window_sec, size_t max_entries,
                                struct err *e);
void ratelimit_free(struct ratelimit *rl);

/* ratelimit_check - 0 when (addr, user) may try now, else the seconds to wait
 * (>= 1: the Retry-After). user may be "" (a request without a name). now:
 * seconds. */
int ratelimit_check(struct ratelimit *rl, const char *addr, const char *user, long long now);

/* ratelimit_fail / ratelimit_success - record one failed / successful attempt */
void ratelimit_fail(struct ratelimit *rl, const char *addr, const char *user, long long now);
void ratelimit_success(struct ratelimit *rl, const char *addr, const char *user);

#endif
