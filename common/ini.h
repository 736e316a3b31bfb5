/* ini.h - the line-level pieces shared by the INI-like files (registry.conf
 * in common/config.c, the access rules in auth/access.c, the retention rules
 * in gc/retention.c): each keeps its own grammar above these. */
#ifndef OCIREG_INI_H
#define OCIREG_INI_H

/* ini_trim - s without its leading blanks (space, tab) and trailing blanks
 * and line ends, cut in place. Returns a pointer into s. */
char *ini_trim(char *s);

/* ini_cut_comment - end s at a comment: '#' or ';' at its start or after a
 * blank (so "a#b" keeps its '#') */
void ini_cut_comment(char *s);

#endif
