/* token_fuzz.c - libFuzzer target: bearer tokens (auth/token.c), the part of a
 * request a client controls most. The first byte chooses what the rest is:
 *
 *   'T' (and any byte not below): a whole token, given to token_verify twice
 *       (the second may come from the cache and must agree) and, as a scope,
 *       to token_scope_parse;
 *   'P': a claims payload (JSON), signed with the issuer's key under a valid
 *       ES256 header, so the claim checks behind the signature are reached;
 *   'H': a header (JSON) over a valid payload, signed with the issuer's key:
 *       alg, kid and x5c handling. "@kid@" in it becomes the issuer's kid and
 *       "@x5c@" the base64 of a certificate of its key (in the bundle).
 *
 * The key and its self-signed certificate are made at the first run in a
 * folder under TMPDIR (scripts/fuzz.sh gives each target a scratch TMPDIR).
 * Checks: every refusal is ERR_UNAUTHORIZED; accepted claims are bounded. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000
#define BUF_MAX (3 * TOKEN_MAX_LEN)

static struct token_key *own;
static EVP_PKEY *own_pk;
static struct token_verifier *ver;
static char kid[64];
static char *cert64;

/* base64 (url: the JWS form, no padding) of in into out; returns the length */
static size_t
b64(const void *in, size_t n, int url, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    if (url) {
        while (len > 0 && out[len - 1] == '=')
            len--;
        out[len] = '\0';
        for (int i = 0; i < len; i++)
            out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    return (size_t)len;
}

static void
setup(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[256], path[300];
    snprintf(dir, sizeof(dir), "%s/token-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/key.pem", dir);
    struct err e;
    own = token_key_load(path, 1, &e);
    FILE *f = fopen(path, "r");
    if (!own || !f)
        abort();
    own_pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(kid, sizeof(kid), "%s", token_key_kid(own));

    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_time_adj_ex(X509_getm_notBefore(x), -1, 0, &(time_t){NOW});
    X509_time_adj_ex(X509_getm_notAfter(x), 1, 0, &(time_t){NOW});
    X509_set_pubkey(x, own_pk);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    if (X509_sign(x, own_pk, EVP_sha256()) <= 0)
        abort();
    snprintf(path, sizeof(path), "%s/bundle.pem", dir);
    f = fopen(path, "w");
    if (!f || PEM_write_X509(f, x) != 1)
        abort();
    fclose(f);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    cert64 = malloc((size_t)n / 3 * 4 + 8);
    b64(der, (size_t)n, 0, cert64);
    OPENSSL_free(der);
    X509_free(x);

    struct token_verifier_opts o = {.issuer = "fuzz-issuer",
                                    .audience = "fuzz-service",
                                    .own = own,
                                    .certs_pem = path,
                                    .cache_entries = 64};
    ver = token_verifier_new(&o, &e);
    if (!ver)
        abort();
}

static void
check(const char *tok, size_t len)
{
    struct token_claims c, again;
    struct err e;
    int rc = token_verify(ver, tok, len, NOW, &c, &e);
    if (rc < 0 && e.code != ERR_UNAUTHORIZED)
        abort();
    if (rc == 0) {
        if (c.n_access > TOKEN_MAX_ACCESS || strlen(c.sub) > TOKEN_SUB_MAX)
            abort();
        for (size_t i = 0; i < c.n_access; i++)
            if (strlen(c.access[i].type) > TOKEN_TYPE_MAX ||
                strlen(c.access[i].name) > TOKEN_NAME_MAX || c.access[i].actions & ~7u)
                abort();
    }
    int rc2 = token_verify(ver, tok, len, NOW, &again, &e);
    if (rc2 != rc || (rc == 0 && (again.exp != c.exp || again.n_access != c.n_access ||
                                  strcmp(again.sub, c.sub) != 0)))
        abort();
}

/* replace - copy in[0..n) to out with each "@kid@" / "@x5c@" expanded */
static size_t
expand(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        const char *rep = NULL;
        if (n - i >= 5 && memcmp(in + i, "@kid@", 5) == 0)
            rep = kid;
        else if (n - i >= 5 && memcmp(in + i, "@x5c@", 5) == 0)
            rep = cert64;
        if (rep) {
            size_t r = strlen(rep);
            if (o + r >= cap)
                break;
            memcpy(out + o, rep, r);
            o += r;
            i += 5;
        } else {
            if (o + 1 >= cap)
                break;
            out[o++] = in[i++];
        }
    }
    return o;
}

/* sign_and_check - header.payload signed ES256 with the issuer's key */
static void
sign_and_check(const char *hdr, size_t hlen, const char *pay, size_t plen)
{
    static char tok[BUF_MAX * 2];
    size_t o = b64(hdr, hlen, 1, tok);
    tok[o++] = '.';
    o += b64(pay, plen, 1, tok + o);
    unsigned char der[160], raw[64];
    size_t derlen = sizeof(der);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, own_pk) != 1 ||
        EVP_DigestSign(ctx, der, &derlen, (unsigned char *)tok, o) != 1)
        abort();
    EVP_MD_CTX_free(ctx);
    const unsigned char *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    BN_bn2binpad(ECDSA_SIG_get0_r(s), raw, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(s), raw + 32, 32);
    ECDSA_SIG_free(s);
    tok[o++] = '.';
    o += b64(raw, sizeof(raw), 1, tok + o);
    check(tok, o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ver)
        setup();
    if (size == 0 || size > BUF_MAX)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] == 'P') {
        char hdr[128];
        int hlen =
            snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", kid);
        sign_and_check(hdr, (size_t)hlen, in, n);
    } else if (data[0] == 'H') {
        static char hdr[BUF_MAX + 4096];
        size_t hlen = expand(in, n, hdr, sizeof(hdr));
        static const char pay[] = "{\"iss\":\"fuzz-issuer\",\"aud\":\"fuzz-service\","
                                  "\"sub\":\"fuzz\",\"exp\":1700000600}";
        sign_and_check(hdr, hlen, pay, sizeof(pay) - 1);
    } else {
        check(in, n);
        struct token_access a;
        struct err e;
        if (token_scope_parse(in, n, &a, &e) == 0) {
            char buf[TOKEN_TYPE_MAX + TOKEN_NAME_MAX + 32];
            struct token_access back;
            size_t len = token_scope_format(&a, buf, sizeof(buf));
            if (len >= sizeof(buf) || token_scope_parse(buf, len, &back, &e) != 0 ||
                strcmp(back.type, a.type) != 0 || strcmp(back.name, a.name) != 0 ||
                back.actions != a.actions)
                abort();
        } else if (e.code != ERR_BAD_REQUEST) {
            abort();
        }
    }
    return 0;
}
