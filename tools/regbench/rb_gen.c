/* rb_gen.c - PRNG blob content and SHA-256 digests, see rb_gen.h. */
#include "tools/regbench/rb_gen.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/banned.h"

static inline uint64_t
gen_word(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return htole64(z ^ (z >> 31));
}

void
rb_gen_fill(uint64_t seed, uint64_t off, void *buf, size_t len)
{
    unsigned char *p = buf;
    uint64_t w = off / 8;
    unsigned skip = (unsigned)(off % 8);
    if (skip != 0 && len > 0) {
        uint64_t v = gen_word(seed, w++);
        size_t n = 8 - skip < len ? 8 - skip : len;
        memcpy(p, (unsigned char *)&v + skip, n);
        p += n;
        len -= n;
    }
    while (len >= 8) {
        uint64_t v = gen_word(seed, w++);
        memcpy(p, &v, 8);
        p += 8;
        len -= 8;
    }
    if (len > 0) {
        uint64_t v = gen_word(seed, w);
        memcpy(p, &v, len);
    }
}

void
rb_blob_read(const struct rb_blob *b, uint64_t off, void *buf, size_t len)
{
    if (b->mem)
        memcpy(buf, b->mem + off, len);
    else
        rb_gen_fill(b->seed, off, buf, len);
}

void
rb_sha256_hex(const unsigned char md[32], char out[RB_DIGEST_MAX])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 15];
    }
    out[71] = '\0';
}

int
rb_sha256_buf(const void *p, size_t len, char out[RB_DIGEST_MAX])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    rb_sha256_hex(md, out);
    return 0;
}

int
rb_blob_digest(struct rb_blob *b)
{
    if (b->mem)
        return rb_sha256_buf(b->mem, b->size, b->digest);
    enum { STEP = 256 * 1024 };
    int rc = -1;
    unsigned char *buf = malloc(STEP);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    for (uint64_t off = 0; off < b->size; off += STEP) {
        size_t n = b->size - off < STEP ? (size_t)(b->size - off) : STEP;
        rb_gen_fill(b->seed, off, buf, n);
        if (EVP_DigestUpdate(ctx, buf, n) != 1)
            goto out;
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
        goto out;
    rb_sha256_hex(md, b->digest);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return rc;
}
