/* ini.h - the line-level pieces shared by the INI-like files (registry.conf
 * in common/config.c, the access rules in auth/access.c, the retention rules
 * in gc/retention.c): each keeps its own grammar above these. */
#ifndef OCIREG_INI_H
#define OCIREG_INI_H

#include <stdio.h>

#include "common/err.h"

/* ini_trim - s without its leading blanks (space, tab) and trailing blanks
 * and line ends, cut in place. Returns a pointer into s. */
char *ini_trim(char *s);

/* ini_cut_comment - end s at a comment: '#' or ';' at its start or after a
 * blank (so "a#b" keeps its '#') */
void ini_cut_comment(char *s);

/* ini_read_line - the next line of f that holds something, its comment cut
 * and trimmed (in *line, grown by getline: free it at the end). *lineno counts
 * every line read. Returns 1 with *out pointing into *line, 0 at the end (or a
 * read error: the caller checks ferror), -1 with *why a static message ("line
 * too long" past max bytes, "NUL byte in line"). */
int ini_read_line(FILE *f, char **line, size_t *cap, size_t max, int *lineno, char **out,
                  const char **why);

/* ini_split - "name = value" into *key and *val, both trimmed (*key may be
 * ""); s is cut in place. 0, or -1 when s has no '='. */
int ini_split(char *s, char **key, char **val);

/* ini_bad - ERR_CONFIG "path:lineno: what 'name'" (name, when not NULL, cut
 * at 64 bytes); returns -1 */
int ini_bad(struct err *e, const char *path, int lineno, const char *what, const char *name);

/* ini_load - open path for reading, run parse(arg, f) and close it: parse's
 * return, or -1 with ERR_IO "<what> file 'path': <strerror>" when it cannot be
 * opened */
int ini_load(const char *path, const char *what, int (*parse)(void *arg, FILE *f), void *arg,
             struct err *e);

/* ini_nomem - ERR_NOMEM "path: out of memory"; returns -1 */
int ini_nomem(struct err *e, const char *path);

#endif
