/* util.h - small helpers of the conformance program: digests, random data,
 * growable strings, URL query building. */
#ifndef CONFORMANCE_UTIL_H
#define CONFORMANCE_UTIL_H

#include <stddef.h>

/* Longest "sha512:" + 128 hex digits, plus NUL. */
#define UTIL_DIGEST_MAX 136

/* util_digest - "alg:hex" of data into out (UTIL_DIGEST_MAX bytes). alg is
 * "sha256" or "sha512". Returns out. Aborts on an unknown algorithm (a bug). */
char *util_digest(const char *alg, const void *data, size_t len, char *out);

/* util_random - fill buf with n random bytes (getrandom). */
void util_random(void *buf, size_t n);

/* util_random_hex - n random lowercase hex digits into out (n+1 bytes). */
char *util_random_hex(char *out, size_t n);

/* util_with_query - the URL `loc` with `param` ("digest=...") appended after
 * '?' or '&' as needed, into out. Returns out. */
char *util_with_query(const char *loc, const char *param, char *out, size_t out_size);

/* util_xstrdup/util_xmalloc - allocation that aborts on failure (a test
 * program cannot do anything useful without memory). */
void *util_xmalloc(size_t n);
char *util_xstrdup(const char *s);

#endif
