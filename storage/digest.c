/* digest.c - digest text (OCI image-spec "Digests") and hashing via OpenSSL EVP.
 *
 * Grammar: digest ::= algorithm ":" encoded
 *          algorithm ::= component (separator component)*, component [a-z0-9]+,
 *                        separator [+._-]
 *          encoded ::= [a-zA-Z0-9=_-]+
 * The registered algorithms sha256 and sha512 further require exactly 64 / 128
 * lower-case hex characters. A well-formed digest of another algorithm is
 * ERR_UNSUPPORTED; anything else ERR_DIGEST_INVALID. */
#include "storage/storage.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/banned.h"

struct hasher {
    EVP_MD_CTX *ctx;
    enum digest_algo algo;
};

static const char *const algo_names[] = {"sha256", "sha512"};
static const unsigned char algo_hexlen[] = {64, 128};

static int
is_lower_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int
is_alg_comp(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int
is_encoded(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '=' ||
           c == '_' || c == '-';
}

int
digest_algo_parse(const char *s, size_t len, enum digest_algo *out, struct err *e)
{
    for (int a = 0; a < 2; a++) {
        if (len == strlen(algo_names[a]) && memcmp(s, algo_names[a], len) == 0) {
            *out = (enum digest_algo)a;
            return 0;
        }
    }
    return err_set(e, ERR_UNSUPPORTED, 0, "unsupported digest algorithm");
}

int
digest_parse(const char *s, size_t len, struct digest *out, struct err *e)
{
    if (!s)
        return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest: empty");
    const char *colon = memchr(s, ':', len);
    if (!colon)
        return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest: no algorithm");
    size_t alen = (size_t)(colon - s), elen = len - alen - 1;
    /* algorithm: components separated by single separators, no leading/trailing */
    if (alen == 0)
        goto bad;
    int need_comp = 1;
    for (size_t i = 0; i < alen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_alg_comp(c)) {
            need_comp = 0;
        } else if ((c == '+' || c == '.' || c == '_' || c == '-') && !need_comp) {
            need_comp = 1;
        } else {
            goto bad;
        }
    }
    if (need_comp || elen == 0)
        goto bad;
    for (size_t i = 0; i < elen; i++)
        if (!is_encoded((unsigned char)colon[1 + i]))
            goto bad;

    enum digest_algo algo;
    if (digest_algo_parse(s, alen, &algo, NULL) < 0)
        return err_set(e, ERR_UNSUPPORTED, 0, "unsupported digest algorithm");
    if (elen != algo_hexlen[algo])
        goto bad;
    for (size_t i = 0; i < elen; i++)
        if (!is_lower_hex((unsigned char)colon[1 + i]))
            goto bad;
    out->algo = algo;
    out->len = (unsigned char)elen;
    memcpy(out->hex, colon + 1, elen);
    out->hex[elen] = '\0';
    return 0;
bad:
    return err_set(e, ERR_DIGEST_INVALID, 0, "invalid digest");
}

char *
digest_format(const struct digest *d, char *out)
{
    size_t an = strlen(algo_names[d->algo]);
    memcpy(out, algo_names[d->algo], an);
    out[an] = ':';
    memcpy(out + an + 1, d->hex, d->len);
    out[an + 1 + d->len] = '\0';
    return out;
}

int
digest_equal(const struct digest *a, const struct digest *b)
{
    return a->algo == b->algo && a->len == b->len && memcmp(a->hex, b->hex, a->len) == 0;
}

static const EVP_MD *
algo_md(enum digest_algo algo)
{
    return algo == DIGEST_SHA512 ? EVP_sha512() : EVP_sha256();
}

static void
to_digest(enum digest_algo algo, const unsigned char *md, struct digest *out)
{
    static const char hexd[] = "0123456789abcdef";
    unsigned n = algo_hexlen[algo] / 2;
    for (unsigned i = 0; i < n; i++) {
        out->hex[2 * i] = hexd[md[i] >> 4];
        out->hex[2 * i + 1] = hexd[md[i] & 15];
    }
    out->hex[2 * n] = '\0';
    out->len = (unsigned char)(2 * n);
    out->algo = algo;
}

struct hasher *
hasher_new(enum digest_algo algo)
{
    struct hasher *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->algo = algo;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, algo_md(algo), NULL) != 1) {
        hasher_free(h);
        return NULL;
    }
    return h;
}

void
hasher_update(struct hasher *h, const void *data, size_t n)
{
    if (n)
        EVP_DigestUpdate(h->ctx, data, n);
}

void
hasher_final(struct hasher *h, struct digest *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(h->ctx, md, &mdlen);
    to_digest(h->algo, md, out);
}

void
hasher_free(struct hasher *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void
digest_of(enum digest_algo algo, const void *data, size_t n, struct digest *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(data, n, md, &mdlen, algo_md(algo), NULL);
    to_digest(algo, md, out);
}
