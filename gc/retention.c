/* retention.c - the retention rules file (docs/gc.md "Retention" is the
 * user's reference) and the plan of one repository's tags.
 *
 *   # comments start with '#' or ';'
 *   [repo "team/app-*"]     # a repository glob (common/glob.h)
 *   keep_newest = 10        # the newest 10 tags by push time
 *   keep_within = 30d       # tags pushed or pulled within 30 days
 *   protect = v*, latest    # tag globs never deleted (may repeat)
 *
 *   [repo "prod**"]
 *   keep_all = true         # exempt from the sections below
 *
 * Decision for a repository: the FIRST section whose glob matches decides
 * alone (as the access rules do); no matching section keeps every tag. Within
 * it, a tag is kept when a protect pattern matches it (protect beats
 * everything), or it is among the keep_newest newest of the tags no protect
 * pattern matches, or it was pushed or pulled within keep_within; every other
 * tag is removed. A section needs keep_newest and/or keep_within, or keep_all
 * alone: a section holding only protect patterns is a load error, since it
 * would remove every other tag, which is never what "protect" means.
 *
 * Ranking (keep_newest): by push time, newest first; equal push times are
 * ordered by tag name, the name that sorts last (bytewise) counting as the
 * newer, so a plan never depends on the order the tags were listed in.
 * retention_plan finds the N-th newest by selection over the caller's array
 * without moving or copying anything (expected O(n log n) comparisons): no
 * allocation, no lock, the rules only read. */
#include "gc/retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/config.h"
#include "common/glob.h"
#include "common/ini.h"

#include "common/banned.h"

#define LINE_MAX_LEN 8192
#define WHY_MAX 512

struct rsection {
    struct glob glob;
    int lineno;
    long keep_newest;    /* 0: not set */
    int64_t keep_within; /* seconds; 0: not set */
    int keep_all;
    int has_keep_all; /* the key was given (true or false) */
    struct glob *protect;
    char **protect_why; /* "protect = PATTERN", one per pattern */
    size_t nprotect;
    char *newest_why, *within_why, *all_why, *remove_why;
};

struct retention_rules {
    struct rsection *s;
    size_t n, cap;
};

static void
section_free(struct rsection *s)
{
    glob_release(&s->glob);
    for (size_t i = 0; i < s->nprotect; i++) {
        glob_release(&s->protect[i]);
        free(s->protect_why[i]);
    }
    free(s->protect);
    free(s->protect_why);
    free(s->newest_why);
    free(s->within_why);
    free(s->all_why);
    free(s->remove_why);
}

void
retention_free(struct retention_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        section_free(&r->s[i]);
    free(r->s);
    free(r);
}

/* ---- parsing ---- */

struct parser {
    struct retention_rules *r;
    const char *path;
    int lineno;
    struct err *e;
};

static int
nomem(struct parser *p)
{
    return ini_nomem(p->e, p->path);
}

static int
bad(struct parser *p, const char *what, const char *name)
{
    return ini_bad(p->e, p->path, p->lineno, what, name);
}

/* join - a new string a b c (NULL: out of memory) */
static char *
join(const char *a, const char *b, const char *c)
{
    char buf[WHY_MAX];
    snprintf(buf, sizeof(buf), "%s%s%s", a, b, c);
    return strdup(buf);
}

/* the characters of tags ([a-zA-Z0-9_][a-zA-Z0-9._-]*) and the wildcards */
static int
tag_glob_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == '*' || c == '?';
}

/* "30d", "12h", "90m", "3600s", "3600": whole seconds, at least one */
static int
parse_age(const char *s, int64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    int64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    while (*s == ' ' || *s == '\t')
        s++;
    int64_t mul;
    if (!*s || strcmp(s, "s") == 0)
        mul = 1;
    else if (strcmp(s, "m") == 0)
        mul = 60;
    else if (strcmp(s, "h") == 0)
        mul = 3600;
    else if (strcmp(s, "d") == 0)
        mul = 86400;
    else
        return -1;
    if (v <= 0 || v > INT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int
add_protect(struct parser *p, struct rsection *s, char *pat)
{
    size_t n = strlen(pat);
    if (n == 0)
        return bad(p, "empty item in a list", NULL);
    if (n > GLOB_MAX_LEN)
        return bad(p, "tag pattern too long", NULL);
    for (size_t i = 0; i < n; i++)
        if (!tag_glob_char(pat[i]))
            return bad(p,
                       "tag pattern can never match a tag (a-z, A-Z, 0-9, '.', '_', '-', '*', "
                       "'?')",
                       pat);
    if (s->nprotect == RETENTION_MAX_PROTECT)
        return err_set(p->e, ERR_CONFIG, 0, "%s:%d: more than %d protect patterns in a section",
                       p->path, p->lineno, RETENTION_MAX_PROTECT);
    if (s->nprotect == 0) {
        s->protect = calloc(RETENTION_MAX_PROTECT, sizeof(*s->protect));
        s->protect_why = calloc(RETENTION_MAX_PROTECT, sizeof(*s->protect_why));
        if (!s->protect || !s->protect_why)
            return nomem(p);
    }
    if (glob_compile(&s->protect[s->nprotect], pat) < 0)
        return nomem(p);
    s->nprotect++;
    if (!(s->protect_why[s->nprotect - 1] = join("protect = ", pat, "")))
        return nomem(p);
    return 0;
}

static int
parse_key(struct parser *p, char *key, char *val)
{
    struct rsection *s = &p->r->s[p->r->n - 1];
    if (!*val)
        return bad(p, "empty value of", key);
    if (strcasecmp(key, "keep_newest") == 0) {
        if (s->keep_newest)
            return bad(p, "keep_newest given twice in a section", NULL);
        char *end;
        errno = 0;
        long v = *val >= '0' && *val <= '9' ? strtol(val, &end, 10) : -1;
        if (v < 1 || v > RETENTION_MAX_KEEP || errno || *end)
            return err_set(p->e, ERR_CONFIG, 0,
                           "%s:%d: keep_newest: '%.*s' is not a number in [1, %d]", p->path,
                           p->lineno, 64, val, RETENTION_MAX_KEEP);
        s->keep_newest = v;
        return (s->newest_why = join("keep_newest = ", val, "")) ? 0 : nomem(p);
    }
    if (strcasecmp(key, "keep_within") == 0) {
        if (s->keep_within)
            return bad(p, "keep_within given twice in a section", NULL);
        if (parse_age(val, &s->keep_within) < 0)
            return err_set(p->e, ERR_CONFIG, 0,
                           "%s:%d: keep_within: '%.*s' is not an age (e.g. 30d, 12h, 90m, 3600s)",
                           p->path, p->lineno, 64, val);
        return (s->within_why = join("keep_within = ", val, "")) ? 0 : nomem(p);
    }
    if (strcasecmp(key, "keep_all") == 0) {
        if (s->has_keep_all)
            return bad(p, "keep_all given twice in a section", NULL);
        if (config_parse_bool(val, &s->keep_all) < 0)
            return bad(p, "keep_all: not a boolean (true/false)", val);
        s->has_keep_all = 1;
        return 0;
    }
    if (strcasecmp(key, "protect") == 0) {
        for (char *it = val;;) {
            char *comma = strchr(it, ',');
            if (comma)
                *comma = '\0';
            if (add_protect(p, s, ini_trim(it)) < 0)
                return -1;
            if (!comma)
                return 0;
            it = comma + 1;
        }
    }
    return bad(p, "unknown key (keep_newest, keep_within, protect or keep_all)", key);
}

/* a section is complete: check it makes sense, build its removal reason */
static int
finish_section(struct parser *p)
{
    if (p->r->n == 0)
        return 0;
    struct rsection *s = &p->r->s[p->r->n - 1];
    const char *g = s->glob.pat;
    if (s->keep_all) {
        if (s->keep_newest || s->keep_within || s->nprotect)
            return err_set(p->e, ERR_CONFIG, 0,
                           "%s:%d: [repo \"%.*s\"]: keep_all = true keeps every tag; it takes no "
                           "other rule",
                           p->path, s->lineno, 64, g);
        return (s->all_why = join("keep_all (repo \"", g, "\")")) ? 0 : nomem(p);
    }
    if (!s->keep_newest && !s->keep_within)
        return err_set(p->e, ERR_CONFIG, 0,
                       "%s:%d: [repo \"%.*s\"] needs keep_newest and/or keep_within (or "
                       "keep_all = true): protect alone would remove every other tag",
                       p->path, s->lineno, 64, g);
    char rules[WHY_MAX];
    snprintf(rules, sizeof(rules), "%s%s%s", s->newest_why ? s->newest_why : "",
             s->newest_why && s->within_why ? ", " : "", s->within_why ? s->within_why : "");
    s->remove_why = join("repo \"", g, "\": ");
    if (s->remove_why) {
        char *w = join(s->remove_why, rules, "");
        free(s->remove_why);
        s->remove_why = w;
    }
    return s->remove_why ? 0 : nomem(p);
}

static int
parse_header(struct parser *p, char *s)
{
    struct retention_rules *r = p->r;
    char *end = strrchr(s, ']');
    if (!end || *ini_trim(end + 1))
        return bad(p, "malformed section header", NULL);
    *end = '\0';
    char *name = ini_trim(s + 1);
    char *g;
    const char *why;
    if (glob_repo_section(name, GLOB_MAX_LEN, &g, &why) < 0)
        return why ? bad(p, why, NULL) : bad(p, "unknown section (only [repo \"glob\"])", name);
    if (finish_section(p) < 0)
        return -1;
    if (r->n == RETENTION_MAX_SECTIONS)
        return err_set(p->e, ERR_CONFIG, 0, "%s:%d: more than %d [repo] sections", p->path,
                       p->lineno, RETENTION_MAX_SECTIONS);
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        struct rsection *ns = realloc(r->s, ncap * sizeof(*ns));
        if (!ns)
            return nomem(p);
        r->s = ns;
        r->cap = ncap;
    }
    struct rsection *sec = &r->s[r->n];
    memset(sec, 0, sizeof(*sec));
    if (glob_compile(&sec->glob, g) < 0)
        return nomem(p);
    sec->lineno = p->lineno;
    r->n++;
    return 0;
}

static int
parse_file(void *arg, FILE *f)
{
    struct parser *p = arg;
    char *line = NULL, *s;
    size_t cap = 0;
    const char *why = NULL;
    int got;
    int rc = 0;
    while ((got = ini_read_line(f, &line, &cap, LINE_MAX_LEN, &p->lineno, &s, &why)) > 0) {
        if (*s == '[') {
            if ((rc = parse_header(p, s)) < 0)
                break;
            continue;
        }
        char *key, *val;
        if (ini_split(s, &key, &val) < 0) {
            rc = bad(p, "expected 'name = value'", NULL);
            break;
        }
        if (!*key)
            rc = bad(p, "missing name before '='", NULL);
        else if (p->r->n == 0)
            rc = bad(p, "line outside of a [repo \"glob\"] section", NULL);
        else
            rc = parse_key(p, key, val);
        if (rc < 0)
            break;
    }
    if (got < 0)
        rc = bad(p, why, NULL);
    if (rc == 0 && ferror(f))
        rc = err_sys(p->e, ERR_IO, errno, "reading '%s'", p->path);
    if (rc == 0)
        rc = finish_section(p);
    free(line);
    return rc;
}

struct retention_rules *
retention_load(const char *path, struct err *e)
{
    struct retention_rules *r = calloc(1, sizeof(*r));
    if (!r) {
        err_set(e, ERR_NOMEM, ENOMEM, "retention rules: out of memory");
        return NULL;
    }
    struct parser p = {.r = r, .path = path, .e = e};
    if (ini_load(path, "retention rules", parse_file, &p, e) < 0) {
        retention_free(r);
        return NULL;
    }
    return r;
}

/* ---- the plan ---- */

/* newer - tag i ranks before tag j (push time, then name; then position, so
 * the order is total even for a caller's duplicate) */
static int
newer(const struct retention_tag *t, size_t i, size_t j)
{
    if (t[i].pushed != t[j].pushed)
        return t[i].pushed > t[j].pushed;
    int c = strcmp(t[i].tag, t[j].tag);
    if (c)
        return c > 0;
    return i < j;
}

#define NONE ((size_t)-1)

/* a candidate (no rule decided it yet) strictly between the bounds: ranked
 * after lo and before hi (NONE: no bound) */
static int
in_range(const struct retention_tag *t, size_t i, size_t lo, size_t hi)
{
    return !t[i].why && (lo == NONE || newer(t, lo, i)) && (hi == NONE || newer(t, i, hi));
}

/* select_rank - the candidate of rank k (0: the newest) among the candidates
 * (why == NULL), of which there are more than k. Quickselect that keeps its
 * partition as two bounds instead of moving elements. */
static size_t
select_rank(const struct retention_tag *t, size_t n, size_t k)
{
    size_t lo = NONE, hi = NONE, base = 0;
    uint64_t rnd = 0x9e3779b97f4a7c15ull ^ n;
    for (;;) {
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++)
            cnt += (size_t)in_range(t, i, lo, hi);
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        size_t pick = (size_t)(rnd % cnt), pivot = NONE;
        for (size_t i = 0; i < n; i++)
            if (in_range(t, i, lo, hi) && pick-- == 0) {
                pivot = i;
                break;
            }
        size_t above = 0;
        for (size_t i = 0; i < n; i++)
            above += (size_t)(in_range(t, i, lo, hi) && newer(t, i, pivot));
        size_t rank = base + above;
        if (rank == k)
            return pivot;
        if (k < rank) {
            hi = pivot;
        } else {
            lo = pivot;
            base = rank + 1;
        }
    }
}

size_t
retention_plan(const struct retention_rules *r, const char *repo, struct retention_tag *tags,
               size_t n, int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        tags[i].remove = 0;
        tags[i].why = NULL;
    }
    if (!r || !repo)
        return 0;
    const struct rsection *s = NULL;
    for (size_t i = 0; i < r->n && !s; i++)
        if (glob_match(&r->s[i].glob, repo))
            s = &r->s[i];
    if (!s)
        return 0;
    if (s->keep_all) {
        for (size_t i = 0; i < n; i++)
            tags[i].why = s->all_why;
        return 0;
    }
    /* protect first: it beats everything, and protected tags do not take
     * places among the newest */
    size_t cand = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < s->nprotect && !tags[i].why; k++)
            if (glob_match(&s->protect[k], tags[i].tag))
                tags[i].why = s->protect_why[k];
        cand += !tags[i].why;
    }
    if (s->keep_newest) {
        size_t keep = (size_t)s->keep_newest;
        size_t last = cand > keep ? select_rank(tags, n, keep - 1) : NONE;
        /* newer() does not look at why: marking as we go is safe */
        for (size_t i = 0; i < n; i++)
            if (!tags[i].why && (last == NONE || i == last || newer(tags, i, last)))
                tags[i].why = s->newest_why;
    }
    size_t removed = 0;
    for (size_t i = 0; i < n; i++) {
        if (tags[i].why)
            continue;
        int64_t seen = tags[i].pulled > tags[i].pushed ? tags[i].pulled : tags[i].pushed;
        if (s->keep_within && seen >= now - s->keep_within) {
            tags[i].why = s->within_why;
            continue;
        }
        tags[i].remove = 1;
        tags[i].why = s->remove_why;
        removed++;
    }
    return removed;
}
