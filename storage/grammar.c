/* grammar.c - repository name and tag grammars (distribution-spec "pulling
 * manifests"). Hand-written matchers: no regex engine, linear time, and every
 * byte is checked (a NUL, '%', '/' at the ends or ".." can never slip through,
 * which is what keeps names safe to log and to compare). */
#include "storage/storage.h"

#include "common/banned.h"

static int
is_lower_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* name: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)* */
int
name_validate(const char *name, size_t len, struct err *e)
{
    if (!name || len == 0)
        return err_set(e, ERR_NAME_INVALID, 0, "invalid repository name: empty");
    if (len > NAME_MAX_LEN)
        return err_set(e, ERR_NAME_INVALID, 0, "invalid repository name: longer than %d",
                       NAME_MAX_LEN);
    size_t i = 0;
    for (;;) {
        /* an alphanumeric run is required here: start, after a separator or '/' */
        if (i >= len || !is_lower_alnum((unsigned char)name[i]))
            goto bad;
        while (i < len && is_lower_alnum((unsigned char)name[i]))
            i++;
        if (i == len)
            return 0;
        switch (name[i]) {
        case '.':
        case '/':
            i++;
            break;
        case '_':
            i++;
            if (i < len && name[i] == '_')
                i++;
            break;
        case '-':
            while (i < len && name[i] == '-')
                i++;
            break;
        default:
            goto bad;
        }
    }
bad:
    return err_set(e, ERR_NAME_INVALID, 0, "invalid repository name");
}

static int
is_tag_first(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
int
tag_validate(const char *tag, size_t len, struct err *e)
{
    if (!tag || len == 0 || len > TAG_MAX_LEN || !is_tag_first((unsigned char)tag[0]))
        return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid tag");
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)tag[i];
        if (!is_tag_first(c) && c != '.' && c != '-')
            return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid tag");
    }
    return 0;
}
