/* access.h - per-repository access rules: who (a user, a group, anonymous) may
 * pull, push or delete in which repositories, read from the rules file named by
 * [auth] rules. Immutable once loaded: a reload (SIGHUP) loads a new object and
 * the caller swaps it in, so lookups take no lock.
 *
 * File format (docs/auth.md is the user's reference):
 *
 *   # comments start with '#' or ';'
 *   [groups]
 *   devs = alice, bob           # a group and its members (users only)
 *   admins = root
 *
 *   [admin]
 *   groups = admins             # members may do everything everywhere,
 *   users = ops-bot             # _catalog lists every repository for them
 *
 *   [repo "library-*"]          # a repository glob
 *   anonymous = pull            # no credentials needed (pull only: anonymous
 *                               # never gets push or delete, a load error)
 *   @devs = pull, push          # a group
 *   alice = pull, push, delete  # a user (also a client certificate's CN)
 *   * = pull                    # every authenticated identity
 *
 * Globs: '*' matches any run of characters except '/', '**' any run including
 * '/', '?' one character other than '/'; everything else literally. The
 * [repo "..."] sections are tried in file order and the FIRST whose glob
 * matches the repository decides alone (like a firewall): within it, the
 * actions of every line that names the identity (the user, one of its groups,
 * '*', anonymous) are added up. No matching section: nothing (admins aside).
 *
 * Without a rules file (access_load(NULL)) every authenticated identity may do
 * everything and anonymous nothing. */
#ifndef OCIREG_ACCESS_H
#define OCIREG_ACCESS_H

#include "common/err.h"

/* actions, as bits: also the "actions" of a token's access claim */
#define ACCESS_PULL 1u
#define ACCESS_PUSH 2u
#define ACCESS_DELETE 4u
#define ACCESS_ALL (ACCESS_PULL | ACCESS_PUSH | ACCESS_DELETE)

/* limits of a rules file; over them is a load error */
#define ACCESS_NAME_MAX 255   /* user or group name, glob */
#define ACCESS_MAX_RULES 4096 /* [repo] sections */

struct access_rules;

/* access_load - parse the rules file at path; NULL: the built-in default policy
 * above. Returns a new object owned by the caller (access_free), or NULL with
 * ERR_CONFIG ("FILE:LINE: ..." for a syntax error, an unknown section or key,
 * an unknown action, a group used but never defined, anonymous given more than
 * pull, a limit exceeded) or ERR_IO (unreadable file) or ERR_NOMEM. */
struct access_rules *access_load(const char *path, struct err *e);
void access_free(struct access_rules *r);

/* access_allowed - the ACCESS_* bits that user (NULL: anonymous) may do in
 * repository repo (a valid repository name). Thread-safe (read only), no
 * allocation. Admins get ACCESS_ALL. */
unsigned access_allowed(const struct access_rules *r, const char *user, const char *repo);

/* access_is_admin - 1 when user (not NULL) is an admin (a user of [admin], or a
 * member of one of its groups), else 0 */
int access_is_admin(const struct access_rules *r, const char *user);

/* access_action_parse - "pull" / "push" / "delete" / "*" (all three) -> bit;
 * 0 for anything else (also used for a token's scope actions) */
unsigned access_action_parse(const char *s, size_t n);

#endif
