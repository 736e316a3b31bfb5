/* ini.c - see ini.h */
#include "common/ini.h"

#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include "common/banned.h"

char *
ini_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

void
ini_cut_comment(char *s)
{
    for (char *p = s; *p; p++) {
        if ((*p == '#' || *p == ';') && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            return;
        }
    }
}

int
ini_read_line(FILE *f, char **line, size_t *cap, size_t max, int *lineno, char **out,
              const char **why)
{
    ssize_t len;
    while ((len = getline(line, cap, f)) >= 0) {
        (*lineno)++;
        if ((size_t)len > max) {
            *why = "line too long";
            return -1;
        }
        if (strlen(*line) != (size_t)len) {
            *why = "NUL byte in line";
            return -1;
        }
        ini_cut_comment(*line);
        char *s = ini_trim(*line);
        if (*s) {
            *out = s;
            return 1;
        }
    }
    return 0;
}

int
ini_split(char *s, char **key, char **val)
{
    char *eq = strchr(s, '=');
    if (!eq)
        return -1;
    *eq = '\0';
    *key = ini_trim(s);
    *val = ini_trim(eq + 1);
    return 0;
}

int
ini_bad(struct err *e, const char *path, int lineno, const char *what, const char *name)
{
    if (name)
        return err_set(e, ERR_CONFIG, 0, "%s:%d: %s '%.*s'", path, lineno, what, 64, name);
    return err_set(e, ERR_CONFIG, 0, "%s:%d: %s", path, lineno, what);
}

int
ini_nomem(struct err *e, const char *path)
{
    return err_set(e, ERR_NOMEM, ENOMEM, "%s: out of memory", path);
}

int
ini_load(const char *path, const char *what, int (*parse)(void *arg, FILE *f), void *arg,
         struct err *e)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return err_sys(e, ERR_IO, errno, "%s file '%s'", what, path);
    int rc = parse(arg, f);
    fclose(f);
    return rc;
}
