/* htpasswd.h - users and bcrypt password hashes from an htpasswd file
 * ([auth] htpasswd), as `htpasswd -B` writes it: "user:$2y$12$...", one a line.
 * Only bcrypt ($2y$, $2b$, $2a$) is accepted; anything else is a load error
 * naming the line (never the hash).
 *
 * The file is re-read when it changes (no restart): htpasswd_refresh stats it
 * at most once a second and swaps in the new content; a broken new file keeps
 * the old content (logged). All functions are thread-safe.
 *
 * Checking a password runs bcrypt (cost 10-12: 60-300 ms of CPU), so it belongs
 * on a blocking pool, never on an event loop: the worker first asks
 * htpasswd_cached, which answers from a cache of recent successful checks
 * (keyed by a keyed hash of user and password, never the password itself) and
 * runs no bcrypt; only a miss goes to htpasswd_verify on the pool. Comparisons
 * are constant-time, and an unknown user costs one bcrypt like a known one (a
 * fixed dummy hash), so timing does not tell which users exist. */
#ifndef OCIREG_HTPASSWD_H
#define OCIREG_HTPASSWD_H

#include <stddef.h>

#include "common/err.h"

#define HTPASSWD_USER_MAX 255
#define HTPASSWD_MAX_USERS 100000
/* a cached success is trusted this long (and dropped at once when the user's
 * line changes or the user is removed) */
#define HTPASSWD_CACHE_SEC 300

struct htpasswd;

/* htpasswd_open - read the file at path. Returns a new object owned by the
 * caller (htpasswd_free), or NULL with ERR_IO (unreadable) or ERR_CONFIG
 * ("FILE:LINE: user 'x': ...": not bcrypt, malformed line, duplicate user,
 * over the limits). */
struct htpasswd *htpasswd_open(const char *path, struct err *e);
void htpasswd_free(struct htpasswd *h);

/* htpasswd_refresh - re-read the file when its (device, inode, size, mtime)
 * changed since the last read; a stat at most once a second (now: seconds, any
 * monotonic-enough clock). Returns 1 when new content was loaded, 0 when
 * unchanged or not checked yet, -1 with the load error when the new file is
 * broken or gone (the old content stays in use; ERR_CONFIG / ERR_IO). A broken
 * file is reported once: later calls answer 0 until the file changes again. */
int htpasswd_refresh(struct htpasswd *h, long long now, struct err *e);

/* htpasswd_cached - 1 when (user, pass) succeeded in htpasswd_verify within
 * HTPASSWD_CACHE_SEC and the user's entry is unchanged since; else 0. Runs no
 * bcrypt and allocates nothing: for the event loop. */
int htpasswd_cached(struct htpasswd *h, const char *user, const char *pass, size_t passlen,
                    long long now);

/* htpasswd_verify - run bcrypt: 1 when pass matches user's hash (and the
 * success is cached), 0 when not or when the user is unknown (same cost).
 * A password holding a NUL byte or longer than 4096 bytes never matches.
 * Slow: call it on a blocking pool. */
int htpasswd_verify(struct htpasswd *h, const char *user, const char *pass, size_t passlen,
                    long long now);

/* htpasswd_has_user - 1 when user has a line in the current content */
int htpasswd_has_user(struct htpasswd *h, const char *user);

#endif
