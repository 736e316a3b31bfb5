/* glob.c - see glob.h */
#include "common/glob.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

enum tok_type { T_LIT, T_ONE, T_STAR, T_DSTAR };

struct glob_tok {
    unsigned char type;
    char c;
};

int
glob_compile(struct glob *g, const char *pattern)
{
    memset(g, 0, sizeof(*g));
    size_t n = strlen(pattern);
    if (n > GLOB_MAX_LEN)
        return -1;
    g->pat = strdup(pattern);
    g->toks = calloc(n ? n : 1, sizeof(*g->toks));
    if (!g->pat || !g->toks) {
        glob_release(g);
        return -1;
    }
    g->prefix = strcspn(pattern, "*?");
    g->literal = pattern[g->prefix] == '\0';
    for (size_t i = 0; i < n;) {
        struct glob_tok *t = &g->toks[g->ntok++];
        if (pattern[i] == '*') {
            size_t j = i;
            while (pattern[j] == '*')
                j++;
            t->type = j - i >= 2 ? T_DSTAR : T_STAR;
            i = j;
        } else {
            t->type = pattern[i] == '?' ? T_ONE : T_LIT;
            t->c = pattern[i];
            i++;
        }
    }
    return 0;
}

void
glob_release(struct glob *g)
{
    free(g->pat);
    free(g->toks);
    memset(g, 0, sizeof(*g));
}

#define SET_WORDS ((GLOB_MAX_LEN + 1 + 63) / 64)

static void
closure(uint64_t *set, const struct glob_tok *t, size_t nt)
{
    /* ascending order carries a chain of stars to its end in one pass */
    for (size_t i = 0; i < nt; i++)
        if ((set[i / 64] >> (i % 64) & 1) && (t[i].type == T_STAR || t[i].type == T_DSTAR))
            set[(i + 1) / 64] |= 1ull << ((i + 1) % 64);
}

int
glob_match(const struct glob *g, const char *s)
{
    if (g->literal)
        return strcmp(g->pat, s) == 0;
    if (strncmp(g->pat, s, g->prefix) != 0)
        return 0;
    const struct glob_tok *t = g->toks;
    size_t nt = g->ntok;
    uint64_t cur[SET_WORDS] = {0}, nxt[SET_WORDS];
    cur[0] = 1;
    closure(cur, t, nt);
    for (; *s; s++) {
        memset(nxt, 0, sizeof(nxt));
        uint64_t any = 0;
        for (size_t w = 0; w < SET_WORDS; w++) {
            for (uint64_t bits = cur[w]; bits; bits &= bits - 1) {
                size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
                if (i >= nt)
                    continue;
                size_t to = i + 1;
                switch (t[i].type) {
                case T_LIT:
                    if (t[i].c != *s)
                        continue;
                    break;
                case T_ONE:
                    if (*s == '/')
                        continue;
                    break;
                case T_STAR:
                    if (*s == '/')
                        continue;
                    to = i;
                    break;
                default:
                    to = i;
                    break;
                }
                nxt[to / 64] |= 1ull << (to % 64);
            }
        }
        closure(nxt, t, nt);
        for (size_t w = 0; w < SET_WORDS; w++)
            any |= cur[w] = nxt[w];
        if (!any)
            return 0;
    }
    return (int)(cur[nt / 64] >> (nt % 64) & 1);
}

static int
repo_glob_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
           c == '/' || c == '*' || c == '?';
}

int
glob_repo_section(char *name, size_t max, char **out, const char **why)
{
    *why = NULL;
    if (strncasecmp(name, "repo", 4) != 0 || (name[4] != ' ' && name[4] != '\t'))
        return -1;
    char *g = name + 4;
    while (*g == ' ' || *g == '\t')
        g++;
    size_t n = strlen(g);
    if (n < 2 || g[0] != '"' || g[n - 1] != '"') {
        *why = "expected [repo \"glob\"]";
        return -1;
    }
    g[n - 1] = '\0';
    g++;
    n -= 2;
    if (n == 0 || n > max) {
        *why = "glob empty or too long";
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!repo_glob_char(g[i])) {
            *why = "glob can never match a repository name (a-z, 0-9, '.', '_', '-', '/', '*', "
                   "'?')";
            return -1;
        }
    *out = g;
    return 0;
}
