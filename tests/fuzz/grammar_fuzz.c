/* grammar_fuzz.c - libFuzzer target: repository name, tag and digest grammars
 * (storage/grammar.c, storage/digest.c) and the router that applies them to a
 * request path (server/router.c). The input is tried as each of them. Checks:
 * a digest that parses formats back to the same bytes; what the router accepts
 * passes the grammars on its own. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/router.h"
#include "storage/storage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_route(const char *path)
{
    static const enum http_method methods[] = {HTTP_M_GET, HTTP_M_PUT, HTTP_M_POST, HTTP_M_PATCH,
                                               HTTP_M_DELETE};
    for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
        struct route rt;
        struct err e;
        if (router_match(methods[k], path, &rt, &e) < 0)
            continue;
        if (rt.name[0] && name_validate(rt.name, strlen(rt.name), &e) < 0)
            abort();
        if (rt.kind == ROUTE_MANIFEST && !rt.ref_is_digest &&
            tag_validate(rt.ref, strlen(rt.ref), &e) < 0)
            abort();
        (void)router_allow(rt.kind);
        (void)router_kind_name(rt.kind);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct err e;
    (void)name_validate(s, size, &e);
    (void)tag_validate(s, size, &e);
    enum digest_algo algo;
    (void)digest_algo_parse(s, size, &algo, &e);
    struct digest d;
    if (digest_parse(s, size, &d, &e) == 0) {
        char buf[DIGEST_STR_MAX];
        digest_format(&d, buf);
        if (strlen(buf) != size || memcmp(buf, s, size) != 0)
            abort();
    }
    /* the router takes a NUL-terminated path, as the connection layer gives it */
    char *path = malloc(size + 1);
    if (!path)
        abort();
    memcpy(path, data, size);
    path[size] = '\0';
    check_route(path);
    free(path);
    return 0;
}
