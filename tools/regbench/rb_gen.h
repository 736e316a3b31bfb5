/* rb_gen.h - deterministic blob content and its digest.
 *
 * Blob content is a counter-based PRNG stream (splitmix64 of seed + word index,
 * little-endian), so any byte range of any blob can be regenerated at any offset
 * without keeping the blob in memory: uploads stream it from a read callback and
 * Range pulls compare the received bytes against it. A blob may instead be backed
 * by memory (an image config, a manifest). */
#ifndef REGBENCH_RB_GEN_H
#define REGBENCH_RB_GEN_H

#include <stddef.h>
#include <stdint.h>

#define RB_DIGEST_MAX 80 /* "sha256:" + 64 hex + NUL, with room */

struct rb_blob {
    uint64_t seed;
    uint64_t size;
    const unsigned char *mem; /* borrowed; NULL = PRNG content */
    char digest[RB_DIGEST_MAX];
};

/* rb_gen_fill - write bytes [off, off+len) of the PRNG stream `seed` to buf. */
void rb_gen_fill(uint64_t seed, uint64_t off, void *buf, size_t len);

/* rb_blob_read - bytes [off, off+len) of blob b (PRNG or memory) into buf. */
void rb_blob_read(const struct rb_blob *b, uint64_t off, void *buf, size_t len);

/* rb_blob_digest - compute b->digest ("sha256:<hex>") from its content. Returns
 * 0, or -1 if OpenSSL fails. */
int rb_blob_digest(struct rb_blob *b);

/* rb_sha256_hex - "sha256:" + lower-case hex of the 32-byte md into out. */
void rb_sha256_hex(const unsigned char md[32], char out[RB_DIGEST_MAX]);

/* rb_sha256_buf - digest of a memory buffer into out ("sha256:<hex>"). */
int rb_sha256_buf(const void *p, size_t len, char out[RB_DIGEST_MAX]);

#endif
