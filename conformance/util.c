/* util.c - helpers of the conformance program. */
#include "conformance/util.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/banned.h"

char *
util_digest(const char *alg, const void *data, size_t len, char *out)
{
    const EVP_MD *md = strcmp(alg, "sha512") == 0 ? EVP_sha512() : EVP_sha256();
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    static const char hex[] = "0123456789abcdef";

    if (strcmp(alg, "sha256") != 0 && strcmp(alg, "sha512") != 0)
        abort();
    if (EVP_Digest(data, len, h, &hl, md, NULL) != 1)
        abort();
    size_t o = (size_t)snprintf(out, UTIL_DIGEST_MAX, "%s:", alg);
    for (unsigned int i = 0; i < hl && o + 2 < UTIL_DIGEST_MAX; i++) {
        out[o++] = hex[h[i] >> 4];
        out[o++] = hex[h[i] & 15];
    }
    out[o] = '\0';
    return out;
}

void
util_random(void *buf, size_t n)
{
    unsigned char *p = buf;

    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r <= 0)
            abort();
        p += r;
        n -= (size_t)r;
    }
}

char *
util_random_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[64];

    if (n > 2 * sizeof(b))
        n = 2 * sizeof(b);
    util_random(b, (n + 1) / 2);
    for (size_t i = 0; i < n; i++)
        out[i] = hex[(b[i / 2] >> ((i % 2) ? 0 : 4)) & 15];
    out[n] = '\0';
    return out;
}

char *
util_with_query(const char *loc, const char *param, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s%c%s", loc, strchr(loc, '?') ? '&' : '?', param);
    return out;
}

void *
util_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "conformance: out of memory\n");
        abort();
    }
    return p;
}

char *
util_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = util_xmalloc(n);

    memcpy(p, s, n);
    return p;
}
