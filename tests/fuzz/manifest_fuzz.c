/* manifest_fuzz.c - libFuzzer target: manifest and index JSON as a PUT hands it
 * to storage (storage/manifest.c manifest_parse, with whatever value, depth and
 * descriptor limits it applies). The input is the body. It is parsed twice: with
 * no Content-Type, and with a Content-Type chosen by its first byte (leading
 * JSON whitespace picks the others), so that bodies without mediaType are
 * parsed as every kind the registry knows. Checks: a parsed manifest's
 * references are well-formed digests. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
parse_one(const char *body, size_t size, const char *ct)
{
    struct manifest_info mi;
    struct err e;
    if (manifest_parse(body, size, ct, &mi, &e) < 0)
        return;
    if (mi.nrefs && !mi.refs)
        abort();
    for (size_t i = 0; i < mi.nrefs; i++) {
        char buf[DIGEST_STR_MAX];
        struct digest back;
        digest_format(&mi.refs[i].digest, buf);
        if (digest_parse(buf, strlen(buf), &back, &e) < 0)
            abort();
    }
    if (strlen(mi.media_type) >= sizeof(mi.media_type) ||
        strlen(mi.artifact_type) >= sizeof(mi.artifact_type))
        abort();
    manifest_info_release(&mi);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST,
                                        MT_DOCKER_LIST};
    const char *body = (const char *)data;
    parse_one(body, size, NULL);
    if (size)
        parse_one(body, size, types[data[0] % 4]);
    return 0;
}
