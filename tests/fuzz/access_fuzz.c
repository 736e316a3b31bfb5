/* access_fuzz.c - libFuzzer target: the rules file (auth/access.c). The input
 * is the file; it is written to a memory file (memfd) once per run and loaded
 * through its /proc/self/fd path, as [auth] rules would load it. A file that
 * loads is then asked about a few identities and repositories, one of them
 * made from the input's first bytes, so the glob matcher runs on what the
 * parser kept. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "auth/access.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int rules_fd = -1;
static char rules_path[64];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (rules_fd < 0) {
        rules_fd = memfd_create("access.conf", MFD_CLOEXEC);
        if (rules_fd < 0)
            abort();
        snprintf(rules_path, sizeof(rules_path), "/proc/self/fd/%d", rules_fd);
    }
    if (ftruncate(rules_fd, 0) < 0 || pwrite(rules_fd, data, size, 0) != (ssize_t)size)
        abort();
    struct err e;
    struct access_rules *r = access_load(rules_path, &e);
    if (!r) {
        if (strnlen(e.msg, sizeof(e.msg)) == sizeof(e.msg))
            abort();
        return 0;
    }
    /* a repository-name-like string from the input */
    static const char alphabet[] = "abcxyz019._-/";
    char repo[256];
    size_t n = size < sizeof(repo) - 1 ? size : sizeof(repo) - 1;
    for (size_t i = 0; i < n; i++)
        repo[i] = alphabet[data[i] % (sizeof(alphabet) - 1)];
    if (!n)
        repo[n++] = 'a';
    repo[n] = '\0';
    static const char *const users[] = {NULL, "alice", "bob", "root", "devs", "anonymous", "*"};
    static const char *const repos[] = {"library/ubuntu", "a", "team/x/y", "x"};
    for (size_t u = 0; u < sizeof(users) / sizeof(users[0]); u++) {
        for (size_t i = 0; i < sizeof(repos) / sizeof(repos[0]); i++)
            if (access_allowed(r, users[u], repos[i]) & ~ACCESS_ALL)
                abort();
        unsigned a = access_allowed(r, users[u], repo);
        if (a & ~ACCESS_ALL)
            abort();
        /* anonymous never gets more than pull */
        if (!users[u] && (a & ~ACCESS_PULL))
            abort();
        if (users[u] && access_is_admin(r, users[u]) && a != ACCESS_ALL)
            abort();
    }
    access_free(r);
    return 0;
}
