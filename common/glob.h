/* glob.h - the name globs of the rules files (auth/access.c's repository
 * globs, gc/retention.c's repository and tag globs): '*' matches any run of
 * characters except '/', '**' any run including '/', '?' one character other
 * than '/'; everything else literally (no escapes, no classes).
 *
 * A compiled glob is matched as an NFA over a bitset of token positions:
 * linear in (name length x glob length) whatever the pattern, so no glob can
 * make a match explode the way backtracking on "**a**a**a" can. The literal
 * prefix (up to the first wildcard) is compared first, which rejects most
 * names in a few instructions. Matching allocates nothing and only reads the
 * glob: a compiled glob may be shared by threads. */
#ifndef OCIREG_GLOB_H
#define OCIREG_GLOB_H

#include <stddef.h>

#define GLOB_MAX_LEN 255 /* longest pattern glob_compile takes */

struct glob_tok;

struct glob {
    char *pat;     /* the pattern as given (owned) */
    size_t prefix; /* length of its literal prefix */
    int literal;   /* no wildcard at all */
    struct glob_tok *toks;
    size_t ntok;
};

/* glob_compile - compile pattern (at most GLOB_MAX_LEN bytes, checked by the
 * caller: a longer one is refused) into *g. Returns 0, or -1 (out of memory,
 * or too long) with *g holding nothing to release. */
int glob_compile(struct glob *g, const char *pattern);

/* glob_release - free what glob_compile allocated; a zeroed glob is fine */
void glob_release(struct glob *g);

/* glob_match - 1 when s matches g, else 0 */
int glob_match(const struct glob *g, const char *s);

/* glob_repo_section - the glob of a rules file's section name `repo "GLOB"`
 * (name: the text between the brackets, trimmed; changed in place). Returns
 * 0 with *out pointing into name, or -1 with *why a static message: not a
 * repo section (*why NULL then: the caller knows its other sections), no
 * quotes, empty or longer than max, or a character no repository name has
 * (a-z, 0-9, '.', '_', '-', '/' and the wildcards '*', '?'). */
int glob_repo_section(char *name, size_t max, char **out, const char **why);

#endif
