/* access.c - the rules file: parse once into flat arrays, answer lookups
 * without allocating or locking.
 *
 * Loaded form: every user name the file mentions is interned in one sorted
 * table (users[]), so a lookup resolves the caller's name once (binary search)
 * and then compares indices: a rule line names a user or a group by index, a
 * group holds the sorted indices of its members, and admin-ness is one flag
 * per user, computed at load. A user the file never names can only match
 * '*' and anonymous lines.
 *
 * Globs are compiled once (common/glob.h: an NFA linear in name x glob
 * length whatever the pattern, the literal prefix compared first). */
#include "auth/access.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/glob.h"
#include "common/ini.h"

#include "common/banned.h"

#define LINE_MAX_LEN 8192
_Static_assert(ACCESS_NAME_MAX <= GLOB_MAX_LEN, "every glob the file may hold compiles");

enum principal { P_ANON, P_AUTH, P_USER, P_GROUP };
struct rule_line {
    unsigned char kind; /* enum principal */
    unsigned actions;
    uint32_t idx; /* P_USER: into users; P_GROUP: into groups */
    char *name;   /* during parsing only (P_USER / P_GROUP) */
    int lineno;
};

struct section {
    struct glob glob;
    size_t first, nlines; /* into lines */
};

struct group {
    char *name;
    char **member_names; /* during parsing */
    uint32_t *members;   /* sorted user indices */
    size_t n, cap;
    int lineno;
};

struct name_ref {
    char *name;
    int lineno;
};

struct access_rules {
    int builtin_default;
    char **users; /* sorted, unique */
    unsigned char *admin;
    size_t nusers;
    struct group *groups; /* sorted by name */
    size_t ngroups;
    struct section *sections;
    size_t nsections;
    struct rule_line *lines;
    size_t nlines;
    /* [admin], during parsing */
    struct name_ref *admin_users, *admin_groups;
    size_t nadmin_users, nadmin_groups;
};

/* grow *p (n elements in use, *cap allocated) to hold one more */
static int
grow(void *pp, size_t *cap, size_t n, size_t elem)
{
    void **p = pp;
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

static int
valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ACCESS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == ',' || s[i] == '=' || s[i] == '"')
            return 0;
    return 1;
}

unsigned
access_action_parse(const char *s, size_t n)
{
    if (n == 4 && memcmp(s, "pull", 4) == 0)
        return ACCESS_PULL;
    if (n == 4 && memcmp(s, "push", 4) == 0)
        return ACCESS_PUSH;
    if (n == 6 && memcmp(s, "delete", 6) == 0)
        return ACCESS_DELETE;
    if (n == 1 && s[0] == '*')
        return ACCESS_ALL;
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
cmp_group(const void *a, const void *b)
{
    const struct group *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->lineno > y->lineno) - (x->lineno < y->lineno);
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static long
find_user(const struct access_rules *r, const char *name)
{
    size_t lo = 0, hi = r->nusers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, r->users[mid]);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static long
find_group(const struct access_rules *r, const char *name)
{
    size_t lo = 0, hi = r->ngroups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, r->groups[mid].name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static int
is_member(const struct group *g, uint32_t u)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->members[mid] == u)
            return 1;
        if (g->members[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

void
access_free(struct access_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nusers; i++)
        free(r->users[i]);
    free(r->users);
    free(r->admin);
    for (size_t i = 0; i < r->ngroups; i++) {
        free(r->groups[i].name);
        if (r->groups[i].member_names)
            for (size_t j = 0; j < r->groups[i].n; j++)
                free(r->groups[i].member_names[j]);
        free(r->groups[i].member_names);
        free(r->groups[i].members);
    }
    free(r->groups);
    for (size_t i = 0; i < r->nsections; i++) {
        glob_release(&r->sections[i].glob);
    }
    free(r->sections);
    for (size_t i = 0; i < r->nlines; i++)
        free(r->lines[i].name);
    free(r->lines);
    for (size_t i = 0; i < r->nadmin_users; i++)
        free(r->admin_users[i].name);
    free(r->admin_users);
    for (size_t i = 0; i < r->nadmin_groups; i++)
        free(r->admin_groups[i].name);
    free(r->admin_groups);
    free(r);
}

/* ---- parsing ---- */

enum sect { S_NONE, S_GROUPS, S_ADMIN, S_REPO };

struct parser {
    struct access_rules *r;
    const char *path;
    int lineno;
    struct err *e;
    size_t cap_groups, cap_sections, cap_lines, cap_admin_users, cap_admin_groups;
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

/* split a comma-separated list in place; calls fn for each trimmed item */
static int
each_item(struct parser *p, char *list, int (*fn)(struct parser *, char *, void *), void *arg)
{
    if (!*list)
        return bad(p, "empty list", NULL);
    for (char *it = list;;) {
        char *comma = strchr(it, ',');
        if (comma)
            *comma = '\0';
        char *s = ini_trim(it);
        if (!*s)
            return bad(p, "empty item in a list", NULL);
        if (fn(p, s, arg) < 0)
            return -1;
        if (!comma)
            return 0;
        it = comma + 1;
    }
}

static int
add_member(struct parser *p, char *s, void *arg)
{
    struct group *g = arg;
    if (*s == '@')
        return bad(p, "groups hold users only, not", s);
    if (!valid_name(s))
        return bad(p, "invalid user name", s);
    if (grow(&g->member_names, &g->cap, g->n, sizeof(char *)) < 0)
        return nomem(p);
    if (!(g->member_names[g->n] = strdup(s)))
        return nomem(p);
    g->n++;
    return 0;
}

static int
add_admin(struct parser *p, char *s, void *arg)
{
    int groups = *(int *)arg;
    struct access_rules *r = p->r;
    struct name_ref **arr = groups ? &r->admin_groups : &r->admin_users;
    size_t *n = groups ? &r->nadmin_groups : &r->nadmin_users;
    size_t *cap = groups ? &p->cap_admin_groups : &p->cap_admin_users;
    if (groups && *s == '@')
        s++;
    if (!valid_name(s))
        return bad(p, groups ? "invalid group name" : "invalid user name", s);
    if (grow(arr, cap, *n, sizeof(**arr)) < 0)
        return nomem(p);
    if (!((*arr)[*n].name = strdup(s)))
        return nomem(p);
    (*arr)[*n].lineno = p->lineno;
    (*n)++;
    return 0;
}

static int
add_action(struct parser *p, char *s, void *arg)
{
    unsigned a = access_action_parse(s, strlen(s));
    if (!a)
        return bad(p, "unknown action (pull, push, delete or *)", s);
    *(unsigned *)arg |= a;
    return 0;
}

static int
parse_groups_line(struct parser *p, char *key, char *val)
{
    struct access_rules *r = p->r;
    if (*key == '@')
        key++;
    if (!valid_name(key))
        return bad(p, "invalid group name", key);
    if (grow(&r->groups, &p->cap_groups, r->ngroups, sizeof(*r->groups)) < 0)
        return nomem(p);
    struct group *g = &r->groups[r->ngroups];
    memset(g, 0, sizeof(*g));
    if (!(g->name = strdup(key)))
        return nomem(p);
    g->lineno = p->lineno;
    r->ngroups++;
    return each_item(p, val, add_member, g);
}

static int
parse_admin_line(struct parser *p, char *key, char *val)
{
    int groups;
    if (strcasecmp(key, "groups") == 0)
        groups = 1;
    else if (strcasecmp(key, "users") == 0)
        groups = 0;
    else
        return bad(p, "unknown key in [admin] (users or groups)", key);
    return each_item(p, val, add_admin, &groups);
}

static int
parse_repo_line(struct parser *p, char *key, char *val)
{
    struct access_rules *r = p->r;
    struct rule_line l = {.lineno = p->lineno};
    if (strcmp(key, "anonymous") == 0) {
        l.kind = P_ANON;
    } else if (strcmp(key, "*") == 0) {
        l.kind = P_AUTH;
    } else if (*key == '@') {
        l.kind = P_GROUP;
        if (!valid_name(key + 1))
            return bad(p, "invalid group name", key + 1);
    } else {
        l.kind = P_USER;
        if (!valid_name(key))
            return bad(p, "invalid user name", key);
    }
    if (each_item(p, val, add_action, &l.actions) < 0)
        return -1;
    if (l.kind == P_ANON && (l.actions & ~ACCESS_PULL))
        return bad(p, "anonymous may only pull", NULL);
    if ((l.kind == P_USER || l.kind == P_GROUP) &&
        !(l.name = strdup(l.kind == P_GROUP ? key + 1 : key)))
        return nomem(p);
    if (grow(&r->lines, &p->cap_lines, r->nlines, sizeof(*r->lines)) < 0) {
        free(l.name);
        return nomem(p);
    }
    r->lines[r->nlines++] = l;
    r->sections[r->nsections - 1].nlines++;
    return 0;
}

static int
parse_header(struct parser *p, char *s, enum sect *sect)
{
    struct access_rules *r = p->r;
    char *end = strrchr(s, ']');
    if (!end || *ini_trim(end + 1))
        return bad(p, "malformed section header", NULL);
    *end = '\0';
    char *name = ini_trim(s + 1);
    if (strcasecmp(name, "groups") == 0) {
        *sect = S_GROUPS;
        return 0;
    }
    if (strcasecmp(name, "admin") == 0) {
        *sect = S_ADMIN;
        return 0;
    }
    char *g;
    const char *why;
    if (glob_repo_section(name, ACCESS_NAME_MAX, &g, &why) < 0)
        return why ? bad(p, why, NULL)
                   : bad(p, "unknown section (groups, admin or repo \"glob\")", name);
    if (r->nsections == ACCESS_MAX_RULES)
        return err_set(p->e, ERR_CONFIG, 0, "%s:%d: more than %d [repo] sections", p->path,
                       p->lineno, ACCESS_MAX_RULES);
    if (grow(&r->sections, &p->cap_sections, r->nsections, sizeof(*r->sections)) < 0)
        return nomem(p);
    struct section *sec = &r->sections[r->nsections];
    memset(sec, 0, sizeof(*sec));
    if (glob_compile(&sec->glob, g) < 0)
        return nomem(p);
    r->nsections++;
    sec->first = r->nlines;
    *sect = S_REPO;
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
    enum sect sect = S_NONE;
    int rc = 0;
    while ((got = ini_read_line(f, &line, &cap, LINE_MAX_LEN, &p->lineno, &s, &why)) > 0) {
        if (*s == '[') {
            if ((rc = parse_header(p, s, &sect)) < 0)
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
        else if (sect == S_GROUPS)
            rc = parse_groups_line(p, key, val);
        else if (sect == S_ADMIN)
            rc = parse_admin_line(p, key, val);
        else if (sect == S_REPO)
            rc = parse_repo_line(p, key, val);
        else
            rc = bad(p, "line outside of a section", NULL);
        if (rc < 0)
            break;
    }
    if (got < 0)
        rc = bad(p, why, NULL);
    if (rc == 0 && ferror(f))
        rc = err_sys(p->e, ERR_IO, errno, "reading '%s'", p->path);
    free(line);
    return rc;
}

static int
intern(struct access_rules *r, const char *name)
{
    if (!(r->users[r->nusers] = strdup(name)))
        return -1;
    r->nusers++;
    return 0;
}

/* intern every user name, resolve group references, mark admins */
static int
resolve(struct parser *p)
{
    struct access_rules *r = p->r;
    size_t total = r->nadmin_users, at;
    for (size_t i = 0; i < r->ngroups; i++)
        total += r->groups[i].n;
    for (size_t i = 0; i < r->nlines; i++)
        total += r->lines[i].kind == P_USER;
    r->users = calloc(total ? total : 1, sizeof(char *));
    if (!r->users)
        return nomem(p);
    /* copies of every mention (deduplicated below); nusers counts the copies
     * made so far so that access_free frees exactly them */
    for (size_t i = 0; i < r->ngroups; i++)
        for (size_t j = 0; j < r->groups[i].n; j++)
            if (intern(r, r->groups[i].member_names[j]) < 0)
                return nomem(p);
    for (size_t i = 0; i < r->nadmin_users; i++)
        if (intern(r, r->admin_users[i].name) < 0)
            return nomem(p);
    for (size_t i = 0; i < r->nlines; i++)
        if (r->lines[i].kind == P_USER && intern(r, r->lines[i].name) < 0)
            return nomem(p);
    at = r->nusers;
    if (at)
        qsort(r->users, at, sizeof(char *), cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < at; i++) {
        if (u && strcmp(r->users[u - 1], r->users[i]) == 0)
            free(r->users[i]);
        else
            r->users[u++] = r->users[i];
    }
    r->nusers = u;
    if (!(r->admin = calloc(u ? u : 1, 1)))
        return nomem(p);

    if (r->ngroups)
        qsort(r->groups, r->ngroups, sizeof(*r->groups), cmp_group);
    for (size_t i = 1; i < r->ngroups; i++)
        if (strcmp(r->groups[i - 1].name, r->groups[i].name) == 0)
            return err_set(p->e, ERR_CONFIG, 0,
                           "%s:%d: group '%.*s' defined twice (first on line %d)", p->path,
                           r->groups[i].lineno, 64, r->groups[i].name, r->groups[i - 1].lineno);
    for (size_t i = 0; i < r->ngroups; i++) {
        struct group *g = &r->groups[i];
        if (!(g->members = calloc(g->n ? g->n : 1, sizeof(uint32_t))))
            return nomem(p);
        for (size_t j = 0; j < g->n; j++)
            g->members[j] = (uint32_t)find_user(r, g->member_names[j]);
        qsort(g->members, g->n, sizeof(uint32_t), cmp_u32);
    }
    for (size_t i = 0; i < r->nlines; i++) {
        struct rule_line *l = &r->lines[i];
        long idx;
        if (l->kind == P_USER) {
            idx = find_user(r, l->name);
        } else if (l->kind == P_GROUP) {
            idx = find_group(r, l->name);
            if (idx < 0)
                return err_set(p->e, ERR_CONFIG, 0,
                               "%s:%d: group '%.*s' is not defined in [groups]", p->path, l->lineno,
                               64, l->name);
        } else {
            continue;
        }
        l->idx = (uint32_t)idx;
    }
    for (size_t i = 0; i < r->nadmin_users; i++)
        r->admin[find_user(r, r->admin_users[i].name)] = 1;
    for (size_t i = 0; i < r->nadmin_groups; i++) {
        long gi = find_group(r, r->admin_groups[i].name);
        if (gi < 0)
            return err_set(p->e, ERR_CONFIG, 0, "%s:%d: group '%.*s' is not defined in [groups]",
                           p->path, r->admin_groups[i].lineno, 64, r->admin_groups[i].name);
        const struct group *g = &r->groups[gi];
        for (size_t j = 0; j < g->n; j++)
            r->admin[g->members[j]] = 1;
    }
    return 0;
}

struct access_rules *
access_load(const char *path, struct err *e)
{
    struct access_rules *r = calloc(1, sizeof(*r));
    if (!r) {
        err_set(e, ERR_NOMEM, ENOMEM, "access rules: out of memory");
        return NULL;
    }
    if (!path) {
        r->builtin_default = 1;
        return r;
    }
    struct parser p = {.r = r, .path = path, .e = e};
    int rc = ini_load(path, "rules", parse_file, &p, e);
    if (rc == 0)
        rc = resolve(&p);
    if (rc < 0) {
        access_free(r);
        return NULL;
    }
    /* what only parsing needed */
    for (size_t i = 0; i < r->ngroups; i++) {
        for (size_t j = 0; j < r->groups[i].n; j++)
            free(r->groups[i].member_names[j]);
        free(r->groups[i].member_names);
        r->groups[i].member_names = NULL;
    }
    for (size_t i = 0; i < r->nlines; i++) {
        free(r->lines[i].name);
        r->lines[i].name = NULL;
    }
    return r;
}

int
access_is_admin(const struct access_rules *r, const char *user)
{
    if (!r || !user || !*user)
        return 0;
    if (r->builtin_default)
        return 1;
    long u = find_user(r, user);
    return u >= 0 && r->admin[u];
}

unsigned
access_allowed(const struct access_rules *r, const char *user, const char *repo)
{
    if (!r || !repo)
        return 0;
    if (user && !*user)
        user = NULL;
    if (r->builtin_default)
        return user ? ACCESS_ALL : 0;
    long u = user ? find_user(r, user) : -1;
    if (u >= 0 && r->admin[u])
        return ACCESS_ALL;
    for (size_t i = 0; i < r->nsections; i++) {
        const struct section *sec = &r->sections[i];
        if (!glob_match(&sec->glob, repo))
            continue;
        unsigned a = 0;
        for (size_t j = sec->first; j < sec->first + sec->nlines; j++) {
            const struct rule_line *l = &r->lines[j];
            switch (l->kind) {
            case P_ANON:
                a |= l->actions;
                break;
            case P_AUTH:
                if (user)
                    a |= l->actions;
                break;
            case P_USER:
                if (u >= 0 && l->idx == (uint32_t)u)
                    a |= l->actions;
                break;
            default:
                if (u >= 0 && is_member(&r->groups[l->idx], (uint32_t)u))
                    a |= l->actions;
                break;
            }
        }
        return a;
    }
    return 0;
}
