/* token.c - JSON Web Tokens (compact JWS) of the Docker/OCI token protocol:
 * scopes, the built-in issuer's ES256 signing and the verifier with its cache.
 *
 * Verification order (each step refuses with a short reason, never echoing the
 * token): size bound; cache lookup by the SHA-256 of the whole token; exactly
 * three base64url segments; header JSON (alg on the allow-list, no "crit");
 * key selection (x5c chain to the bundle, else kid); alg fits the key type;
 * signature; only then the payload is parsed (so an unsigned payload is never
 * looked at) and the claims checked (iss, aud, exp, nbf, access, sub).
 *
 * The cache is direct-mapped (one slot per hash bucket, a newer token replaces
 * the older) and striped: a slot is guarded by the mutex of its stripe. A slot
 * holds a copy of the claims sized to their access entries, so a full cache of
 * short tokens stays small. A hit copies the claims out under the stripe's
 * lock and allocates nothing (hence the low-level SHA-256 below). */
#include "auth/token.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "auth/access.h"

#include "common/banned.h"

#define KID_LEN 59  /* 48 base32 characters in 12 groups of 4, 11 ':' */
#define KID_MAX 255 /* a JWKS kid */
#define X5C_MAX 8   /* certificates of an x5c chain */
#define JWKS_MAX_BYTES (1u << 20)
#define CACHE_DEFAULT 4096
#define CACHE_MAX (1u << 20)
#define STRIPES 64

/* ---- base64 -------------------------------------------------------------- */

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* b64url_encode - RFC 7515 §2: the URL-safe alphabet, no padding. out holds at
 * least (n * 4 + 2) / 3 + 1 bytes; returns the length written (NUL-terminated). */
static size_t
b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
        out[o++] = b64url_chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int
b64_value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* b64_decode - in[0..n) into out (at least n / 4 * 3 + 2 bytes). url: the JWS
 * form (URL-safe alphabet, no padding); else standard base64 with optional
 * padding (x5c, RFC 7515 §4.1.6). Non-zero leftover bits are refused, so one
 * token has one encoding. Returns the decoded length, or -1. */
static long
b64_decode(const char *in, size_t n, int url, unsigned char *out)
{
    if (!url && n % 4 == 0 && n > 0 && in[n - 1] == '=')
        n -= (n > 1 && in[n - 2] == '=') ? 2 : 1;
    if (n % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)in[i], url);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1))
        return -1;
    return o;
}

/* ---- scopes -------------------------------------------------------------- */

/* bytes allowed in a scope's type and name: printable, and nothing that would
 * break the quoted scope="..." of a WWW-Authenticate challenge */
static int
scope_text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

int
token_scope_parse(const char *s, size_t n, struct token_access *out, struct err *e)
{
    const char *first = memchr(s, ':', n);
    const char *last = memrchr(s, ':', n);
    if (!first || first == last)
        return err_set(e, ERR_BAD_REQUEST, 0, "invalid scope: expected type:name:actions");
    size_t tlen = (size_t)(first - s), nlen = (size_t)(last - first - 1);
    if (tlen == 0 || nlen == 0)
        return err_set(e, ERR_BAD_REQUEST, 0, "invalid scope: empty type or name");
    if (tlen > TOKEN_TYPE_MAX || nlen > TOKEN_NAME_MAX)
        return err_set(e, ERR_BAD_REQUEST, 0, "invalid scope: too long");
    if (!scope_text_ok(s, tlen) || !scope_text_ok(first + 1, nlen))
        return err_set(e, ERR_BAD_REQUEST, 0, "invalid scope: bad character");
    unsigned actions = 0;
    const char *p = last + 1, *end = s + n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        actions |= access_action_parse(p, (size_t)(stop - p));
        p = stop + 1;
    }
    memcpy(out->type, s, tlen);
    out->type[tlen] = '\0';
    memcpy(out->name, first + 1, nlen);
    out->name[nlen] = '\0';
    out->actions = actions;
    return 0;
}

/* the action names of a set of bits: "*" for all three (what "registry:catalog:*"
 * asks for), else the known ones in a fixed order */
static size_t
actions_names(unsigned actions, const char *names[3])
{
    if ((actions & ACCESS_ALL) == ACCESS_ALL) {
        names[0] = "*";
        return 1;
    }
    size_t k = 0;
    if (actions & ACCESS_PULL)
        names[k++] = "pull";
    if (actions & ACCESS_PUSH)
        names[k++] = "push";
    if (actions & ACCESS_DELETE)
        names[k++] = "delete";
    return k;
}

size_t
token_scope_format(const struct token_access *a, char *buf, size_t cap)
{
    const char *names[3];
    size_t k = actions_names(a->actions, names);
    int n =
        snprintf(buf, cap, "%s:%s:%s%s%s%s%s", a->type, a->name, k > 0 ? names[0] : "",
                 k > 1 ? "," : "", k > 1 ? names[1] : "", k > 2 ? "," : "", k > 2 ? names[2] : "");
    return n < 0 ? 0 : (size_t)n;
}

/* ---- keys ---------------------------------------------------------------- */

struct token_key {
    EVP_PKEY *pkey;
    char kid[KID_LEN + 1];
};

/* libtrust_kid - libtrust's KeyID: SHA-256 of the DER SubjectPublicKeyInfo,
 * first 240 bits, base32 (RFC 4648 alphabet; 240 bits need no padding), 12
 * groups of 4 joined by ':'. Returns 0, or -1 (openssl). */
static int
libtrust_kid(EVP_PKEY *pk, char out[KID_LEN + 1])
{
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pk, &der);
    if (n <= 0)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok)
        return -1;
    char raw[48];
    for (int g = 0; g < 6; g++) { /* 5 bytes = 8 base32 characters */
        uint64_t v = 0;
        for (int k = 0; k < 5; k++)
            v = v << 8 | md[g * 5 + k];
        for (int k = 0; k < 8; k++)
            raw[g * 8 + k] = b32[v >> (35 - 5 * k) & 31];
    }
    size_t o = 0;
    for (int i = 0; i < 48; i++) {
        if (i > 0 && i % 4 == 0)
            out[o++] = ':';
        out[o++] = raw[i];
    }
    out[o] = '\0';
    return 0;
}

static int
is_p256_private(EVP_PKEY *pk)
{
    char group[64];
    BIGNUM *d = NULL;
    if (!EVP_PKEY_is_a(pk, "EC") || !EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) ||
        strcmp(group, "prime256v1") != 0)
        return 0;
    int ok = EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1;
    BN_clear_free(d);
    return ok;
}

/* write_new_key - generate a P-256 key and store it at path: a temporary file
 * in the same folder (0600), fsynced, renamed over path, folder fsynced. */
static EVP_PKEY *
write_new_key(const char *path, struct err *e)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    if (!pk) {
        err_set(e, ERR_INTERNAL, 0, "token key: cannot generate a P-256 key");
        return NULL;
    }
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp)) {
        err_set(e, ERR_CONFIG, 0, "token key '%s': path too long", path);
        goto fail;
    }
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0) {
        err_sys(e, ERR_IO, errno, "token key: cannot create '%s'", tmp);
        goto fail;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        err_sys(e, ERR_IO, errno, "token key: cannot write '%s'", tmp);
        close(fd);
        unlink(tmp);
        goto fail;
    }
    int ok = PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) == 1 && fflush(f) == 0 &&
             fsync(fd) == 0;
    int werr = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        werr = errno;
    }
    if (!ok || rename(tmp, path) != 0) {
        err_sys(e, ERR_IO, ok ? errno : werr, "token key: cannot write '%s'", path);
        unlink(tmp);
        goto fail;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the rename is durable; a failure here loses nothing yet */
        close(dfd);
    }
    return pk;
fail:
    EVP_PKEY_free(pk);
    return NULL;
}

struct token_key *
token_key_load(const char *path, int create, struct err *e)
{
    EVP_PKEY *pk = NULL;
    FILE *f = fopen(path, "re");
    if (f) {
        pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        ERR_clear_error();
        if (!pk || !is_p256_private(pk)) {
            EVP_PKEY_free(pk);
            err_set(e, ERR_CONFIG, 0, "token key '%s': not a P-256 private key in PEM", path);
            return NULL;
        }
    } else if (errno == ENOENT && create) {
        pk = write_new_key(path, e);
        if (!pk)
            return NULL;
    } else {
        err_sys(e, ERR_IO, errno, "token key: cannot read '%s'", path);
        return NULL;
    }
    struct token_key *k = calloc(1, sizeof(*k));
    if (!k) {
        EVP_PKEY_free(pk);
        err_set(e, ERR_NOMEM, ENOMEM, "token key: out of memory");
        return NULL;
    }
    k->pkey = pk;
    if (libtrust_kid(pk, k->kid) < 0) {
        token_key_free(k);
        err_set(e, ERR_INTERNAL, 0, "token key '%s': cannot compute its key id", path);
        return NULL;
    }
    return k;
}

void
token_key_free(struct token_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

const char *
token_key_kid(const struct token_key *k)
{
    return k->kid;
}

/* ---- signing ------------------------------------------------------------- */

/* encode_json - base64url of the compact JSON of j into *out (malloc) */
static int
encode_json(json_t *j, char **out, size_t *outlen)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (!s)
        return -1;
    size_t n = strlen(s);
    *out = malloc(n / 3 * 4 + 5);
    if (!*out) {
        free(s);
        return -1;
    }
    *outlen = b64url_encode((const unsigned char *)s, n, *out);
    free(s);
    return 0;
}

static json_t *
claims_json(const struct token_issue *t)
{
    unsigned char rnd[16];
    char jti[33];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return NULL;
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
    json_t *c = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "iss", t->issuer, "sub",
                          t->subject ? t->subject : "", "aud", t->audience, "exp",
                          (json_int_t)(t->now + t->ttl), "nbf", (json_int_t)t->now, "iat",
                          (json_int_t)t->now, "jti", jti);
    if (!c)
        return NULL;
    if (t->refresh) {
        if (json_object_set_new(c, "ocireg_refresh", json_true()) < 0)
            goto fail;
        return c;
    }
    json_t *acc = json_array();
    if (json_object_set_new(c, "access", acc) < 0)
        goto fail;
    for (size_t i = 0; i < t->n_access; i++) {
        const struct token_access *a = &t->access[i];
        if (a->actions == 0)
            continue;
        const char *names[3];
        size_t k = actions_names(a->actions, names);
        json_t *acts = json_array();
        for (size_t j = 0; j < k; j++)
            json_array_append_new(acts, json_string(names[j]));
        if (json_array_append_new(acc, json_pack("{s:s, s:s, s:o}", "type", a->type, "name",
                                                 a->name, "actions", acts)) < 0)
            goto fail;
    }
    return c;
fail:
    json_decref(c);
    return NULL;
}

int
token_sign(const struct token_key *k, const struct token_issue *t, char **out, struct err *e)
{
    size_t granted = 0;
    for (size_t i = 0; i < t->n_access; i++)
        granted += t->access[i].actions != 0;
    if (!t->refresh && granted > TOKEN_MAX_ACCESS)
        return err_set(e, ERR_BAD_REQUEST, 0, "too many scopes (at most %d)", TOKEN_MAX_ACCESS);
    int rc = -1;
    char *h64 = NULL, *c64 = NULL, *tok = NULL;
    size_t hlen = 0, clen = 0;
    EVP_MD_CTX *ctx = NULL;
    ECDSA_SIG *sig = NULL;
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", "JWT", "kid", k->kid);
    json_t *claims = claims_json(t);
    if (!hdr || !claims || encode_json(hdr, &h64, &hlen) < 0 ||
        encode_json(claims, &c64, &clen) < 0) {
        err_set(e, ERR_INTERNAL, 0, "token: cannot build the claims");
        goto out;
    }
    /* header.claims.signature: 64 raw signature bytes are 86 base64url characters */
    tok = malloc(hlen + 1 + clen + 1 + 86 + 1);
    if (!tok) {
        err_set(e, ERR_NOMEM, ENOMEM, "token: out of memory");
        goto out;
    }
    memcpy(tok, h64, hlen);
    tok[hlen] = '.';
    memcpy(tok + hlen + 1, c64, clen);
    size_t input_len = hlen + 1 + clen;
    unsigned char der[256], raw[64];
    size_t derlen = sizeof(der);
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) != 1 ||
        EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)tok, input_len) != 1) {
        err_set(e, ERR_INTERNAL, 0, "token: signing failed");
        goto out;
    }
    /* openssl signs DER (SEQUENCE of r, s); JWS ES256 wants r || s, 32 bytes each
     * (RFC 7518 §3.4) */
    const unsigned char *p = der;
    const BIGNUM *r, *s;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (!sig) {
        err_set(e, ERR_INTERNAL, 0, "token: signing failed");
        goto out;
    }
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32) {
        err_set(e, ERR_INTERNAL, 0, "token: signing failed");
        goto out;
    }
    tok[input_len] = '.';
    b64url_encode(raw, sizeof(raw), tok + input_len + 1);
    *out = tok;
    tok = NULL;
    rc = 0;
out:
    ERR_clear_error();
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(ctx);
    free(tok);
    free(h64);
    free(c64);
    json_decref(hdr);
    json_decref(claims);
    return rc;
}

/* ---- verifier ------------------------------------------------------------ */

/* a key named by a kid: the own key, a JWKS key, a bundle certificate's key */
struct vkey {
    char kid[KID_MAX + 1];
    EVP_PKEY *pkey;
};

/* a cached verified token: the claims, sized to their access entries */
struct cached {
    char sub[TOKEN_SUB_MAX + 1];
    int64_t exp, nbf, iat;
    int refresh;
    size_t n_access;
    struct token_access access[];
};

struct slot {
    unsigned char hash[SHA256_DIGEST_LENGTH];
    struct cached *c; /* NULL: empty */
};

struct token_verifier {
    char *issuer, *audience;
    int leeway;
    X509_STORE *store; /* the bundle, NULL without one */
    struct vkey *keys;
    size_t n_keys;
    struct slot *slots;
    size_t n_slots;
    pthread_mutex_t locks[STRIPES];
    atomic_ulong hits;
};

struct alg {
    const char *name;
    int ec;            /* 1: ECDSA, 0: RSA PKCS#1 v1.5 */
    const char *group; /* the curve of an ES* key */
    size_t coord;      /* bytes of r and of s in a JWS ES* signature */
    const EVP_MD *(*md)(void);
};

/* RFC 7518 §3.1; HS* (shared secrets) and none are left out on purpose */
static const struct alg algs[] = {
    {"ES256", 1, "prime256v1", 32, EVP_sha256}, {"ES384", 1, "secp384r1", 48, EVP_sha384},
    {"ES512", 1, "secp521r1", 66, EVP_sha512},  {"RS256", 0, NULL, 0, EVP_sha256},
    {"RS384", 0, NULL, 0, EVP_sha384},          {"RS512", 0, NULL, 0, EVP_sha512},
};

static int
alg_fits_key(const struct alg *a, EVP_PKEY *pk)
{
    if (a->ec) {
        char group[64];
        return EVP_PKEY_is_a(pk, "EC") && EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) &&
               strcmp(group, a->group) == 0;
    }
    return EVP_PKEY_is_a(pk, "RSA") && EVP_PKEY_get_bits(pk) >= 2048;
}

static int
add_key(struct token_verifier *v, const char *kid, size_t kidlen, EVP_PKEY *pk, struct err *e)
{
    if (kidlen > KID_MAX)
        return err_set(e, ERR_CONFIG, 0, "token keys: kid too long");
    struct vkey *nk = realloc(v->keys, (v->n_keys + 1) * sizeof(*nk));
    if (!nk)
        return err_set(e, ERR_NOMEM, ENOMEM, "token keys: out of memory");
    v->keys = nk;
    memcpy(nk[v->n_keys].kid, kid, kidlen);
    nk[v->n_keys].kid[kidlen] = '\0';
    nk[v->n_keys].pkey = pk;
    v->n_keys++;
    return 0;
}

static int
load_bundle(struct token_verifier *v, const char *path, struct err *e)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return err_sys(e, ERR_IO, errno, "token certificates: cannot read '%s'", path);
    v->store = X509_STORE_new();
    if (!v->store) {
        fclose(f);
        return err_set(e, ERR_NOMEM, ENOMEM, "token certificates: out of memory");
    }
    /* every certificate of the bundle is an anchor, a root or not: the
     * operator named it as trusted (as distribution's rootcertbundle) */
    X509_STORE_set_flags(v->store, X509_V_FLAG_PARTIAL_CHAIN);
    int n = 0, rc = 0;
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        char kid[KID_LEN + 1];
        EVP_PKEY *pk = X509_get_pubkey(x);
        if (!pk || libtrust_kid(pk, kid) < 0 || X509_STORE_add_cert(v->store, x) != 1) {
            EVP_PKEY_free(pk);
            X509_free(x);
            rc = err_set(e, ERR_CONFIG, 0, "token certificates '%s': unusable certificate", path);
            break;
        }
        X509_free(x);
        if (add_key(v, kid, strlen(kid), pk, e) < 0) {
            EVP_PKEY_free(pk);
            rc = -1;
            break;
        }
        n++;
    }
    unsigned long last = ERR_peek_last_error();
    ERR_clear_error();
    fclose(f);
    if (rc < 0)
        return rc;
    if (ERR_GET_REASON(last) != PEM_R_NO_START_LINE || n == 0)
        return err_set(e, ERR_CONFIG, 0, "token certificates '%s': %s", path,
                       n == 0 ? "no certificate in PEM" : "malformed PEM");
    return 0;
}

/* jwk_b64 - a base64url member of a JWK into a new buffer (free); NULL if absent or bad */
static unsigned char *
jwk_b64(json_t *jwk, const char *name, size_t *len)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    if (!s)
        return NULL;
    size_t n = strlen(s);
    unsigned char *buf = malloc(n / 4 * 3 + 3);
    long got = buf ? b64_decode(s, n, 1, buf) : -1;
    if (got <= 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)got;
    return buf;
}

/* jwk_key - RFC 7518 §6.2 (EC: crv, x, y) and §6.3 (RSA: n, e) public keys */
static EVP_PKEY *
jwk_key(json_t *jwk)
{
    static const struct {
        const char *crv, *group;
        size_t coord;
    } curves[] = {
        {"P-256", "prime256v1", 32}, {"P-384", "secp384r1", 48}, {"P-521", "secp521r1", 66}};
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    unsigned char *a = NULL, *b = NULL, pt[1 + 2 * 66];
    size_t alen = 0, blen = 0;
    BIGNUM *n = NULL, *ex = NULL;
    if (!kty || !bld)
        goto out;
    if (strcmp(kty, "EC") == 0) {
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        size_t c = 0;
        while (c < 3 && crv && strcmp(crv, curves[c].crv) != 0)
            c++;
        if (!crv || c == 3)
            goto out;
        a = jwk_b64(jwk, "x", &alen);
        b = jwk_b64(jwk, "y", &blen);
        size_t w = curves[c].coord;
        if (!a || !b || alen != w || blen != w) /* RFC 7518 §6.2.1.2: full length */
            goto out;
        pt[0] = 0x04; /* an uncompressed point (SEC 1 §2.3.3) */
        memcpy(pt + 1, a, w);
        memcpy(pt + 1 + w, b, w);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[c].group, 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * w))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    } else if (strcmp(kty, "RSA") == 0) {
        a = jwk_b64(jwk, "n", &alen);
        b = jwk_b64(jwk, "e", &blen);
        if (!a || !b)
            goto out;
        n = BN_bin2bn(a, (int)alen, NULL);
        ex = BN_bin2bn(b, (int)blen, NULL);
        if (!n || !ex || BN_num_bits(n) < 2048 ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, ex))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    } else {
        goto out;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    /* fromdata decodes the EC point, which refuses a point off the curve */
    if (!ctx || !params || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pk = NULL;
out:
    ERR_clear_error();
    BN_free(n);
    BN_free(ex);
    free(a);
    free(b);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    return pk;
}

static int
load_jwks(struct token_verifier *v, const char *path, struct err *e)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return err_sys(e, ERR_IO, errno, "token jwks: cannot read '%s'", path);
    char *buf = malloc(JWKS_MAX_BYTES);
    size_t n = buf ? fread(buf, 1, JWKS_MAX_BYTES, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (!buf)
        return err_set(e, ERR_NOMEM, ENOMEM, "token jwks: out of memory");
    if (rerr) {
        free(buf);
        return err_set(e, ERR_IO, EIO, "token jwks: cannot read '%s'", path);
    }
    if (n == JWKS_MAX_BYTES) {
        free(buf);
        return err_set(e, ERR_CONFIG, 0, "token jwks '%s': larger than 1 MiB", path);
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_array(keys) || json_array_size(keys) == 0) {
        json_decref(root);
        return err_set(e, ERR_CONFIG, 0, "token jwks '%s': no \"keys\" array", path);
    }
    int rc = 0;
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        EVP_PKEY *pk = kid ? jwk_key(jwk) : NULL;
        if (!pk) {
            rc = err_set(e, ERR_CONFIG, 0,
                         "token jwks '%s': key %zu: no kid or unsupported key (EC P-256/384/521 "
                         "or RSA >= 2048 bits)",
                         path, i);
            break;
        }
        if (add_key(v, kid, strlen(kid), pk, e) < 0) {
            EVP_PKEY_free(pk);
            rc = -1;
            break;
        }
    }
    json_decref(root);
    return rc;
}

struct token_verifier *
token_verifier_new(const struct token_verifier_opts *o, struct err *e)
{
    if (!o->issuer || !o->audience) {
        err_set(e, ERR_CONFIG, 0, "token verifier: issuer and audience are required");
        return NULL;
    }
    if (!o->own && !o->certs_pem && !o->jwks) {
        err_set(e, ERR_CONFIG, 0, "token verifier: no key (own key, certificates or jwks)");
        return NULL;
    }
    struct token_verifier *v = calloc(1, sizeof(*v));
    if (!v) {
        err_set(e, ERR_NOMEM, ENOMEM, "token verifier: out of memory");
        return NULL;
    }
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&v->locks[i], NULL);
    atomic_init(&v->hits, 0);
    v->leeway = o->leeway_sec > 0 ? o->leeway_sec : TOKEN_LEEWAY_SEC;
    v->n_slots = o->cache_entries ? o->cache_entries : CACHE_DEFAULT;
    if (v->n_slots > CACHE_MAX)
        v->n_slots = CACHE_MAX;
    v->slots = calloc(v->n_slots, sizeof(*v->slots));
    v->issuer = strdup(o->issuer);
    v->audience = strdup(o->audience);
    if (!v->slots || !v->issuer || !v->audience) {
        err_set(e, ERR_NOMEM, ENOMEM, "token verifier: out of memory");
        goto fail;
    }
    if (o->own) {
        EVP_PKEY_up_ref(o->own->pkey);
        if (add_key(v, o->own->kid, strlen(o->own->kid), o->own->pkey, e) < 0) {
            EVP_PKEY_free(o->own->pkey);
            goto fail;
        }
    }
    if (o->certs_pem && load_bundle(v, o->certs_pem, e) < 0)
        goto fail;
    if (o->jwks && load_jwks(v, o->jwks, e) < 0)
        goto fail;
    return v;
fail:
    token_verifier_free(v);
    return NULL;
}

void
token_verifier_free(struct token_verifier *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n_keys; i++)
        EVP_PKEY_free(v->keys[i].pkey);
    free(v->keys);
    if (v->slots)
        for (size_t i = 0; i < v->n_slots; i++)
            free(v->slots[i].c);
    free(v->slots);
    X509_STORE_free(v->store);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&v->locks[i]);
    free(v->issuer);
    free(v->audience);
    free(v);
}

unsigned long
token_verifier_hits(const struct token_verifier *v)
{
    return atomic_load_explicit(&v->hits, memory_order_relaxed);
}

/* ---- the cache ----------------------------------------------------------- */

/* token_hash - SHA-256 of the whole token. The deprecated low-level interface
 * on purpose: openssl 3.0's EVP digests allocate a context per call (also with
 * a reused EVP_MD_CTX), and a cache hit must allocate nothing. */
static void
token_hash(const char *jwt, size_t len, unsigned char out[SHA256_DIGEST_LENGTH])
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, jwt, len);
    SHA256_Final(out, &c);
#pragma GCC diagnostic pop
}

static size_t
slot_of(const struct token_verifier *v, const unsigned char *hash)
{
    uint64_t h;
    memcpy(&h, hash, sizeof(h));
    return (size_t)(h % v->n_slots);
}

static int
time_ok(const struct token_verifier *v, int64_t exp, int64_t nbf, int64_t now)
{
    /* written as now - leeway so that a huge exp cannot overflow */
    return !(now - v->leeway > exp) && !(nbf - v->leeway > now);
}

static int
cache_get(struct token_verifier *v, const unsigned char *hash, int64_t now,
          struct token_claims *out)
{
    size_t i = slot_of(v, hash);
    pthread_mutex_t *m = &v->locks[i % STRIPES];
    int hit = 0;
    pthread_mutex_lock(m);
    const struct cached *c = v->slots[i].c;
    if (c && memcmp(v->slots[i].hash, hash, SHA256_DIGEST_LENGTH) == 0 &&
        time_ok(v, c->exp, c->nbf, now)) {
        memcpy(out->sub, c->sub, sizeof(out->sub));
        out->exp = c->exp;
        out->nbf = c->nbf;
        out->iat = c->iat;
        out->refresh = c->refresh;
        out->n_access = c->n_access;
        memcpy(out->access, c->access, c->n_access * sizeof(c->access[0]));
        hit = 1;
    }
    pthread_mutex_unlock(m);
    if (hit)
        atomic_fetch_add_explicit(&v->hits, 1, memory_order_relaxed);
    return hit;
}

/* cache_put - best effort: without memory the token is simply not cached */
static void
cache_put(struct token_verifier *v, const unsigned char *hash, const struct token_claims *cl)
{
    struct cached *c = malloc(sizeof(*c) + cl->n_access * sizeof(c->access[0]));
    if (!c)
        return;
    memcpy(c->sub, cl->sub, sizeof(c->sub));
    c->exp = cl->exp;
    c->nbf = cl->nbf;
    c->iat = cl->iat;
    c->refresh = cl->refresh;
    c->n_access = cl->n_access;
    memcpy(c->access, cl->access, cl->n_access * sizeof(c->access[0]));
    size_t i = slot_of(v, hash);
    pthread_mutex_t *m = &v->locks[i % STRIPES];
    pthread_mutex_lock(m);
    struct cached *old = v->slots[i].c;
    memcpy(v->slots[i].hash, hash, SHA256_DIGEST_LENGTH);
    v->slots[i].c = c;
    pthread_mutex_unlock(m);
    free(old);
}

/* ---- verification -------------------------------------------------------- */

#define REFUSE(msg) err_set(e, ERR_UNAUTHORIZED, 0, "%s", (msg))

static int
check_signature(const struct alg *a, EVP_PKEY *pk, const char *input, size_t inlen,
                const unsigned char *sig, size_t siglen)
{
    unsigned char *der = NULL;
    const unsigned char *use = sig;
    size_t uselen = siglen;
    ECDSA_SIG *es = NULL;
    EVP_MD_CTX *ctx = NULL;
    int ok = 0;
    if (a->ec) {
        /* RFC 7518 §3.4: r || s, each exactly the curve's size; openssl wants DER */
        if (siglen != 2 * a->coord)
            goto out;
        es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)a->coord, NULL);
        BIGNUM *s = BN_bin2bn(sig + a->coord, (int)a->coord, NULL);
        if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            goto out;
        }
        int n = i2d_ECDSA_SIG(es, &der);
        if (n <= 0)
            goto out;
        use = der;
        uselen = (size_t)n;
    }
    ctx = EVP_MD_CTX_new();
    ok = ctx && EVP_DigestVerifyInit(ctx, NULL, a->md(), NULL, pk) == 1 &&
         EVP_DigestVerify(ctx, use, uselen, (const unsigned char *)input, inlen) == 1;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    ECDSA_SIG_free(es);
    OPENSSL_free(der);
    return ok;
}

/* x5c_key - RFC 7515 §4.1.6: the leaf (first) certificate must chain to a
 * certificate of the bundle, the others are untrusted intermediates. Returns
 * the leaf's key (a new reference), or NULL with the reason in *why. */
static EVP_PKEY *
x5c_key(const struct token_verifier *v, json_t *x5c, int64_t now, const char **why)
{
    *why = "malformed token";
    size_t n = json_array_size(x5c);
    if (n == 0 || n > X5C_MAX)
        return NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509_STORE_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    unsigned char *der = NULL;
    if (!chain)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(x5c, i));
        if (!s)
            goto out;
        size_t slen = strlen(s);
        free(der);
        der = malloc(slen / 4 * 3 + 3);
        long dl = der ? b64_decode(s, slen, 0, der) : -1;
        const unsigned char *p = der;
        X509 *x = dl > 0 ? d2i_X509(NULL, &p, dl) : NULL;
        if (!x || p != der + dl) {
            X509_free(x);
            goto out;
        }
        if (i == 0) {
            leaf = x;
        } else if (!sk_X509_push(chain, x)) {
            X509_free(x);
            goto out;
        }
    }
    *why = "untrusted certificate chain";
    if (!v->store)
        goto out;
    ctx = X509_STORE_CTX_new();
    if (!ctx || X509_STORE_CTX_init(ctx, v->store, leaf, chain) != 1)
        goto out;
    X509_STORE_CTX_set_time(ctx, 0, (time_t)now);
    if (X509_verify_cert(ctx) != 1)
        goto out;
    pk = X509_get_pubkey(leaf);
out:
    ERR_clear_error();
    free(der);
    X509_STORE_CTX_free(ctx);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    return pk;
}

/* json_time - a NumericDate (RFC 7519 §2: may be fractional) into *out */
static int
json_time(json_t *j, int64_t *out)
{
    if (json_is_integer(j)) {
        *out = json_integer_value(j);
        return 0;
    }
    if (json_is_real(j)) {
        double d = json_real_value(j);
        if (!(d > -1e15 && d < 1e15))
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

static int
copy_bounded(char *dst, size_t cap, json_t *j)
{
    const char *s = json_string_value(j);
    if (!s)
        return -1;
    size_t n = json_string_length(j);
    if (n >= cap || memchr(s, '\0', n))
        return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

static int
parse_access(json_t *acc, struct token_claims *out, const char **why)
{
    *why = "malformed token";
    if (!acc || json_is_null(acc))
        return 0;
    if (!json_is_array(acc))
        return -1;
    if (json_array_size(acc) > TOKEN_MAX_ACCESS) {
        *why = "too many access entries";
        return -1;
    }
    size_t i;
    json_t *ent;
    json_array_foreach(acc, i, ent)
    {
        struct token_access *a = &out->access[i];
        if (!json_is_object(ent) ||
            copy_bounded(a->type, sizeof(a->type), json_object_get(ent, "type")) < 0 ||
            copy_bounded(a->name, sizeof(a->name), json_object_get(ent, "name")) < 0)
            return -1;
        a->actions = 0;
        json_t *acts = json_object_get(ent, "actions"), *act;
        size_t k;
        if (acts && !json_is_null(acts) && !json_is_array(acts))
            return -1;
        json_array_foreach(acts, k, act)
        {
            if (!json_is_string(act))
                return -1;
            a->actions |= access_action_parse(json_string_value(act), json_string_length(act));
        }
    }
    out->n_access = json_array_size(acc);
    return 0;
}

/* str_is - j is the string want, compared by length: a JSON string may hold
 * "\u0000", which strcmp would take for its end */
static int
str_is(json_t *j, const char *want)
{
    size_t n = strlen(want);
    return json_is_string(j) && json_string_length(j) == n &&
           memcmp(json_string_value(j), want, n) == 0;
}

static int
aud_holds(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return str_is(aud, want);
    size_t i;
    json_t *a;
    json_array_foreach(aud, i, a)
    {
        if (str_is(a, want))
            return 1;
    }
    return 0;
}

/* check_claims - RFC 7519 §4.1 and the token spec's access claim */
static int
check_claims(const struct token_verifier *v, json_t *c, int64_t now, struct token_claims *out,
             const char **why)
{
    *why = "malformed token";
    if (!json_is_object(c))
        return -1;
    if (!str_is(json_object_get(c, "iss"), v->issuer)) {
        *why = "wrong issuer";
        return -1;
    }
    if (!aud_holds(json_object_get(c, "aud"), v->audience)) {
        *why = "wrong audience";
        return -1;
    }
    json_t *exp = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf"),
           *iat = json_object_get(c, "iat");
    if (!exp) {
        *why = "token has no expiry";
        return -1;
    }
    out->nbf = out->iat = 0;
    if (json_time(exp, &out->exp) < 0 || (nbf && json_time(nbf, &out->nbf) < 0) ||
        (iat && json_time(iat, &out->iat) < 0))
        return -1;
    if (now - v->leeway > out->exp) {
        *why = "token expired";
        return -1;
    }
    if (out->nbf - v->leeway > now) {
        *why = "token not yet valid";
        return -1;
    }
    json_t *sub = json_object_get(c, "sub");
    out->sub[0] = '\0';
    if (sub && copy_bounded(out->sub, sizeof(out->sub), sub) < 0)
        return -1;
    json_t *refresh = json_object_get(c, "ocireg_refresh");
    out->refresh = json_is_true(refresh);
    out->n_access = 0;
    return parse_access(json_object_get(c, "access"), out, why);
}

int
token_verify(struct token_verifier *v, const char *jwt, size_t len, int64_t now,
             struct token_claims *out, struct err *e)
{
    if (len == 0 || len > TOKEN_MAX_LEN)
        return REFUSE("malformed token");
    unsigned char hash[SHA256_DIGEST_LENGTH];
    token_hash(jwt, len, hash);
    if (cache_get(v, hash, now, out))
        return 0;

    const char *d1 = memchr(jwt, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - jwt)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - jwt)))
        return REFUSE("malformed token");
    size_t hseg = (size_t)(d1 - jwt), pseg = (size_t)(d2 - d1 - 1);
    size_t sseg = len - (size_t)(d2 + 1 - jwt);

    const char *why = "malformed token";
    int rc = -1;
    json_t *hdr = NULL, *claims = NULL;
    EVP_PKEY *x5c_pk = NULL;
    struct token_claims *tmp = NULL;
    /* the three decoded segments, one after the other */
    unsigned char *buf = malloc(len / 4 * 3 + 9);
    if (!buf)
        goto out;
    long hlen = b64_decode(jwt, hseg, 1, buf);
    if (hlen <= 0)
        goto out;
    unsigned char *pbuf = buf + hlen;
    long plen = b64_decode(d1 + 1, pseg, 1, pbuf);
    if (plen <= 0)
        goto out;
    unsigned char *sbuf = pbuf + plen;
    long slen = b64_decode(d2 + 1, sseg, 1, sbuf);
    if (slen < 0)
        goto out;

    hdr = json_loadb((const char *)buf, (size_t)hlen, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(hdr))
        goto out;
    json_t *alg_name = json_object_get(hdr, "alg");
    const struct alg *a = NULL;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (str_is(alg_name, algs[i].name))
            a = &algs[i];
    if (!a) {
        why = "algorithm not allowed";
        goto out;
    }
    /* RFC 7515 §4.1.11: no extension is understood here, so none may be critical */
    if (json_object_get(hdr, "crit"))
        goto out;
    if (slen == 0) {
        why = "bad signature";
        goto out;
    }

    json_t *x5c = json_object_get(hdr, "x5c");
    int verified = 0;
    if (x5c) {
        x5c_pk = x5c_key(v, x5c, now, &why);
        if (!x5c_pk)
            goto out;
        if (!alg_fits_key(a, x5c_pk)) {
            why = "algorithm not allowed";
            goto out;
        }
        verified = check_signature(a, x5c_pk, jwt, (size_t)(d2 - jwt), sbuf, (size_t)slen);
    } else {
        json_t *kid = json_object_get(hdr, "kid");
        int named = 0, fitting = 0;
        for (size_t i = 0; !verified && i < v->n_keys; i++) {
            if (!str_is(kid, v->keys[i].kid))
                continue;
            named = 1;
            if (!alg_fits_key(a, v->keys[i].pkey))
                continue;
            fitting = 1;
            verified =
                check_signature(a, v->keys[i].pkey, jwt, (size_t)(d2 - jwt), sbuf, (size_t)slen);
        }
        if (!named) {
            why = "unknown signing key";
            goto out;
        }
        if (!fitting) {
            why = "algorithm not allowed";
            goto out;
        }
    }
    if (!verified) {
        why = "bad signature";
        goto out;
    }

    claims = json_loadb((const char *)pbuf, (size_t)plen, JSON_REJECT_DUPLICATES, NULL);
    /* out is written only on success: claims are checked into a scratch copy */
    tmp = malloc(sizeof(*tmp));
    if (!tmp) {
        why = "out of memory";
        goto out;
    }
    if (check_claims(v, claims, now, tmp, &why) < 0)
        goto out;
    cache_put(v, hash, tmp);
    memcpy(out, tmp, sizeof(*out));
    rc = 0;
out:
    free(tmp);
    EVP_PKEY_free(x5c_pk);
    json_decref(claims);
    json_decref(hdr);
    free(buf);
    if (rc < 0)
        return REFUSE(why);
    return 0;
}
