/* rb_json.h - a validating JSON scanner for the tags-list body.
 *
 * A 1000-tag list parsed into a jansson tree costs the client a thousand small
 * allocations per request, about what a fast server spends answering it; this
 * scanner checks the whole body against the JSON grammar and counts the tags
 * without allocating. */
#ifndef REGBENCH_RB_JSON_H
#define REGBENCH_RB_JSON_H

#include <stddef.h>

/* rb_json_tags - check that buf[0, len) is one JSON object with a string member
 * "name" and a member "tags" that is an array of strings (or null), other
 * members allowed. On success returns 0, *name and *name_len give the raw
 * (still escaped) name inside buf, *escaped says whether it holds escapes, and
 * *ntags the number of tags. Returns -1 with a reason in why otherwise. */
int rb_json_tags(const char *buf, size_t len, const char **name, size_t *name_len, int *escaped,
                 size_t *ntags, char *why, size_t whycap);

#endif
