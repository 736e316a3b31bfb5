/* range_fuzz.c - libFuzzer target: the PATCH Content-Range and GET Range headers
 * (storage/range.c). The input is the header value, as many bytes as given (no
 * NUL: the parsers take a length). Besides "no crash", each answer is checked
 * against the header's contract in storage/storage.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "storage/storage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct err e;
    uint64_t a = 0, b = 0;
    if (range_parse_content(s, size, &a, &b, &e) == 0) {
        if (a > b)
            abort();
    } else if (e.code != ERR_RANGE_INVALID) {
        abort();
    }
    static const uint64_t sizes[] = {0, 1, 100, 4096, UINT64_MAX};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        int rc = range_parse_request(s, size, sizes[k], &a, &b, &e);
        if (rc == 1 && (a > b || b >= sizes[k]))
            abort(); /* a satisfiable range lies inside the body */
        if (rc < 0 && e.code != ERR_RANGE_NOT_SATISFIABLE)
            abort();
        if (rc != 1 && rc != 0 && rc != -1)
            abort();
    }
    return 0;
}
