/* token_test.c - bearer tokens (auth/token.c): scopes, the built-in issuer's
 * ES256 tokens and kid, the verifier's refusals, external keys (JWKS, x5c
 * chains, libtrust kids of bundle certificates) and the cache.
 *
 * Every key and certificate is generated here at test time (openssl API) in a
 * mkdtemp folder. Tokens other than the issuer's are built by this file's own
 * JWS code (jws() below: openssl's base64 and signatures), so the verifier is
 * checked against an encoder it does not share. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "auth/access.h"
#include "auth/token.h"
#include "tests/lib/integ_util.h"

#include "common/banned.h"

#define ISS "ocireg-test"
#define AUD "registry.test"

static char g_dir[64];
static char g_keypath[128];
static struct token_key *g_own;
static EVP_PKEY *g_own_pk; /* the same key, read by the test to sign its own tokens */
static int64_t g_now;

static void
setup(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/ocireg-token-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    snprintf(g_keypath, sizeof(g_keypath), "%s/issuer.pem", g_dir);
    struct err e = {0};
    g_own = token_key_load(g_keypath, 1, &e);
    cr_assert_not_null(g_own, "%s", e.msg);
    FILE *f = fopen(g_keypath, "r");
    cr_assert_not_null(f);
    g_own_pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(g_own_pk);
    g_now = (int64_t)time(NULL);
}

static void
teardown(void)
{
    token_key_free(g_own);
    EVP_PKEY_free(g_own_pk);
    integ_rm_rf(g_dir);
}

TestSuite(token, .init = setup, .fini = teardown);

/* ---- the test's own JWS ------------------------------------------------------ */

/* b64 - standard (url 0) or base64url without padding (url 1), via openssl's
 * EVP_EncodeBlock; a new string */
static char *
b64(const void *in, size_t n, int url)
{
    char *out = malloc(n / 3 * 4 + 8);
    cr_assert_not_null(out);
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    if (url) {
        while (len > 0 && out[len - 1] == '=')
            len--;
        out[len] = '\0';
        for (int i = 0; i < len; i++)
            out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    return out;
}

enum how { SIG_NONE, SIG_KEY, SIG_HMAC };

/* jws - header.payload.signature; SIG_KEY signs with pk (ECDSA: raw r || s as
 * JWS wants, RSA: PKCS#1 v1.5) and md, SIG_HMAC with secret. A new string. */
static char *
jws(const char *header, const char *payload, enum how how, EVP_PKEY *pk, const EVP_MD *md,
    const void *secret, size_t secret_len)
{
    char *h = b64(header, strlen(header), 1), *p = b64(payload, strlen(payload), 1);
    size_t inlen = strlen(h) + 1 + strlen(p);
    char *input = malloc(inlen + 1);
    cr_assert_not_null(input);
    snprintf(input, inlen + 1, "%s.%s", h, p);
    unsigned char sig[1024];
    size_t siglen = 0;
    if (how == SIG_HMAC) {
        unsigned int l = 0;
        cr_assert_not_null(
            HMAC(md, secret, (int)secret_len, (unsigned char *)input, inlen, sig, &l));
        siglen = l;
    } else if (how == SIG_KEY) {
        unsigned char der[1024];
        size_t derlen = sizeof(der);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        cr_assert_eq(EVP_DigestSignInit(ctx, NULL, md, NULL, pk), 1);
        cr_assert_eq(EVP_DigestSign(ctx, der, &derlen, (unsigned char *)input, inlen), 1);
        EVP_MD_CTX_free(ctx);
        if (EVP_PKEY_is_a(pk, "EC")) {
            size_t coord = (size_t)(EVP_PKEY_get_bits(pk) + 7) / 8;
            const unsigned char *q = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)derlen);
            cr_assert_not_null(es);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)coord);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + coord, (int)coord);
            ECDSA_SIG_free(es);
            siglen = 2 * coord;
        } else {
            memcpy(sig, der, derlen);
            siglen = derlen;
        }
    }
    char *s = b64(sig, siglen, 1);
    size_t total = inlen + 1 + strlen(s) + 1;
    char *tok = malloc(total);
    cr_assert_not_null(tok);
    snprintf(tok, total, "%s.%s", input, s);
    free(h);
    free(p);
    free(s);
    free(input);
    return tok;
}

/* own_jws - an ES256 token of the issuer's key with the given payload */
static char *
own_jws(const char *payload)
{
    char hdr[256];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             token_key_kid(g_own));
    return jws(hdr, payload, SIG_KEY, g_own_pk, EVP_sha256(), NULL, 0);
}

/* claims - a payload: iss, sub alice, aud (JSON text), exp, iat, and extra
 * members (",\"nbf\":1" ...) */
static const char *
claims(char *buf, size_t cap, const char *iss, const char *aud_json, int64_t exp, const char *extra)
{
    snprintf(buf, cap, "{\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":%s,\"exp\":%lld,\"iat\":%lld%s}",
             iss, aud_json, (long long)exp, (long long)g_now, extra ? extra : "");
    return buf;
}

static struct token_verifier *
verifier(const struct token_key *own, const char *certs, const char *jwks, size_t cache)
{
    struct token_verifier_opts o = {.issuer = ISS,
                                    .audience = AUD,
                                    .own = own,
                                    .certs_pem = certs,
                                    .jwks = jwks,
                                    .cache_entries = cache};
    struct err e = {0};
    struct token_verifier *v = token_verifier_new(&o, &e);
    cr_assert_not_null(v, "%s", e.msg);
    return v;
}

/* verify - token_verify at now; returns 0 or -1 with the reason in why */
static int
verify(struct token_verifier *v, const char *tok, int64_t now, struct token_claims *c, char *why)
{
    struct err e = {0};
    int rc = token_verify(v, tok, strlen(tok), now, c, &e);
    if (rc < 0)
        cr_assert_eq(e.code, ERR_UNAUTHORIZED);
    if (why)
        snprintf(why, 256, "%s", rc < 0 ? e.msg : "");
    return rc;
}

static void
assert_refused(struct token_verifier *v, const char *tok, int64_t now, const char *reason)
{
    struct token_claims c;
    char why[256];
    cr_assert_eq(verify(v, tok, now, &c, why), -1, "accepted, expected \"%s\"", reason);
    cr_assert_str_eq(why, reason);
}

static void
assert_accepted(struct token_verifier *v, const char *tok, int64_t now)
{
    struct token_claims c;
    char why[256];
    cr_assert_eq(verify(v, tok, now, &c, why), 0, "refused: %s", why);
    cr_assert_str_eq(c.sub, "alice");
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

/* ---- scopes ------------------------------------------------------------------ */

static int
scope(const char *s, struct token_access *a)
{
    struct err e = {0};
    int rc = token_scope_parse(s, strlen(s), a, &e);
    if (rc < 0)
        cr_assert_eq(e.code, ERR_BAD_REQUEST);
    return rc;
}

Test(token, scope_parse_splits_type_name_actions)
{
    struct token_access a;
    cr_assert_eq(scope("repository:library/x:pull,push", &a), 0);
    cr_assert_str_eq(a.type, "repository");
    cr_assert_str_eq(a.name, "library/x");
    cr_assert_eq(a.actions, ACCESS_PULL | ACCESS_PUSH);
    /* the name keeps the ':' of a host:port prefix */
    cr_assert_eq(scope("repository:localhost:5000/team/app:delete", &a), 0);
    cr_assert_str_eq(a.name, "localhost:5000/team/app");
    cr_assert_eq(a.actions, ACCESS_DELETE);
    cr_assert_eq(scope("registry:catalog:*", &a), 0);
    cr_assert_str_eq(a.type, "registry");
    cr_assert_str_eq(a.name, "catalog");
    cr_assert_eq(a.actions, ACCESS_ALL);
    /* unknown actions are ignored: the server grants the subset it knows */
    cr_assert_eq(scope("repository:x:pull,frobnicate,,PUSH", &a), 0);
    cr_assert_eq(a.actions, ACCESS_PULL);
    cr_assert_eq(scope("repository:x:", &a), 0);
    cr_assert_eq(a.actions, 0);
}

Test(token, scope_parse_refuses_missing_parts_and_long_ones)
{
    struct token_access a;
    cr_assert_eq(scope("repository", &a), -1);
    cr_assert_eq(scope("repository:x", &a), -1);
    cr_assert_eq(scope(":x:pull", &a), -1);
    cr_assert_eq(scope("repository::pull", &a), -1);
    cr_assert_eq(scope("repository:a b:pull", &a), -1);
    cr_assert_eq(scope("repository:a\"b:pull", &a), -1);
    char buf[600];
    char name[TOKEN_NAME_MAX + 2];
    memset(name, 'a', sizeof(name));
    name[TOKEN_NAME_MAX] = '\0';
    snprintf(buf, sizeof(buf), "repository:%s:pull", name);
    cr_assert_eq(scope(buf, &a), 0);
    cr_assert_eq(strlen(a.name), TOKEN_NAME_MAX);
    name[TOKEN_NAME_MAX] = 'a';
    name[TOKEN_NAME_MAX + 1] = '\0';
    snprintf(buf, sizeof(buf), "repository:%s:pull", name);
    cr_assert_eq(scope(buf, &a), -1);
    char type[TOKEN_TYPE_MAX + 2];
    memset(type, 't', sizeof(type) - 1);
    type[TOKEN_TYPE_MAX + 1] = '\0';
    snprintf(buf, sizeof(buf), "%s:x:pull", type);
    cr_assert_eq(scope(buf, &a), -1);
    /* a length, not a NUL, ends the input */
    cr_assert_eq(token_scope_parse("repository:x:pull", 12, &a, NULL), -1);
}

Test(token, scope_format_round_trips)
{
    struct token_access a = {
        .type = "repository", .name = "library/x", .actions = ACCESS_PULL | ACCESS_PUSH};
    char buf[300];
    cr_assert_eq(token_scope_format(&a, buf, sizeof(buf)),
                 strlen("repository:library/x:pull,push"));
    cr_assert_str_eq(buf, "repository:library/x:pull,push");
    a.actions = ACCESS_DELETE | ACCESS_PULL;
    token_scope_format(&a, buf, sizeof(buf));
    cr_assert_str_eq(buf, "repository:library/x:pull,delete");
    struct token_access c = {.type = "registry", .name = "catalog", .actions = ACCESS_ALL};
    token_scope_format(&c, buf, sizeof(buf));
    cr_assert_str_eq(buf, "registry:catalog:*");
    struct token_access back;
    cr_assert_eq(scope(buf, &back), 0);
    cr_assert_eq(back.actions, ACCESS_ALL);
    /* as snprintf: the full length even when truncated */
    cr_assert_eq(token_scope_format(&a, buf, 8), strlen("repository:library/x:pull,delete"));
    cr_assert_str_eq(buf, "reposit");
}

/* ---- the issuer's key and tokens ------------------------------------------------ */

/* cli_kid - libtrust's kid of the public key in pem_path, computed by the
 * openssl and coreutils commands instead of the code under test */
static void
cli_kid(const char *pem_path, int pub, char out[60])
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl pkey %s -in '%s' -pubout -outform DER | openssl dgst -sha256 -binary | "
             "head -c 30 | base32 -w0",
             pub ? "-pubin" : "", pem_path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char raw[64] = {0};
    size_t n = fread(raw, 1, sizeof(raw) - 1, p);
    cr_assert_eq(pclose(p), 0);
    cr_assert_eq(n, 48, "base32 of 240 bits is 48 characters, got %zu", n);
    size_t o = 0;
    for (size_t i = 0; i < 48; i++) {
        if (i && i % 4 == 0)
            out[o++] = ':';
        out[o++] = raw[i];
    }
    out[o] = '\0';
}

Test(token, kid_is_libtrust_form_and_value)
{
    const char *kid = token_key_kid(g_own);
    cr_assert_eq(strlen(kid), 59);
    for (int i = 0; i < 59; i++) {
        if (i % 5 == 4)
            cr_assert_eq(kid[i], ':', "position %d of %s", i, kid);
        else
            cr_assert((kid[i] >= 'A' && kid[i] <= 'Z') || (kid[i] >= '2' && kid[i] <= '7'),
                      "position %d of %s", i, kid);
    }
    char want[60];
    cli_kid(g_keypath, 0, want);
    cr_assert_str_eq(kid, want);
}

Test(token, key_file_is_private_and_reloads_the_same_key)
{
    struct stat st;
    cr_assert_eq(stat(g_keypath, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    struct err e = {0};
    struct token_key *again = token_key_load(g_keypath, 0, &e);
    cr_assert_not_null(again, "%s", e.msg);
    cr_assert_str_eq(token_key_kid(again), token_key_kid(g_own));
    token_key_free(again);

    char path[160];
    snprintf(path, sizeof(path), "%s/missing.pem", g_dir);
    cr_assert_null(token_key_load(path, 0, &e));
    cr_assert_eq(e.code, ERR_IO);
    /* a P-384 key is not the issuer's P-256 */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    snprintf(path, sizeof(path), "%s/p384.pem", g_dir);
    FILE *f = fopen(path, "w");
    PEM_write_PrivateKey(f, p384, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(p384);
    cr_assert_null(token_key_load(path, 1, &e));
    cr_assert_eq(e.code, ERR_CONFIG);
    write_file(path, "not a key\n");
    cr_assert_null(token_key_load(path, 1, &e));
    cr_assert_eq(e.code, ERR_CONFIG);
}

Test(token, sign_verify_round_trip_keeps_claims_and_access)
{
    struct token_access acc[] = {
        {.type = "repository", .name = "library/x", .actions = ACCESS_PULL | ACCESS_PUSH},
        {.type = "repository", .name = "denied/y", .actions = 0},
        {.type = "registry", .name = "catalog", .actions = ACCESS_ALL},
        {.type = "repository", .name = "localhost:5000/z", .actions = ACCESS_DELETE},
    };
    struct token_issue t = {.issuer = ISS,
                            .audience = AUD,
                            .subject = "alice",
                            .now = g_now,
                            .ttl = 300,
                            .access = acc,
                            .n_access = 4};
    char *tok = NULL;
    struct err e = {0};
    cr_assert_eq(token_sign(g_own, &t, &tok, &e), 0, "%s", e.msg);
    /* header: ES256, JWT, the kid */
    const char *dot = strchr(tok, '.');
    cr_assert_not_null(dot);
    char hdr[256];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             token_key_kid(g_own));
    char *want = b64(hdr, strlen(hdr), 1);
    cr_assert_eq((size_t)(dot - tok), strlen(want));
    cr_assert_eq(memcmp(tok, want, strlen(want)), 0);
    free(want);
    /* the signature is raw r || s: 64 bytes = 86 base64url characters */
    cr_assert_eq(strlen(strrchr(tok, '.') + 1), 86);

    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    struct token_claims c;
    char why[256];
    cr_assert_eq(verify(v, tok, g_now + 10, &c, why), 0, "%s", why);
    cr_assert_str_eq(c.sub, "alice");
    cr_assert_eq(c.exp, g_now + 300);
    cr_assert_eq(c.nbf, g_now);
    cr_assert_eq(c.iat, g_now);
    cr_assert_eq(c.refresh, 0);
    cr_assert_eq(c.n_access, 3, "the entry without actions is left out");
    cr_assert_str_eq(c.access[0].name, "library/x");
    cr_assert_eq(c.access[0].actions, ACCESS_PULL | ACCESS_PUSH);
    cr_assert_str_eq(c.access[1].type, "registry");
    cr_assert_str_eq(c.access[1].name, "catalog");
    cr_assert_eq(c.access[1].actions, ACCESS_ALL);
    cr_assert_str_eq(c.access[2].name, "localhost:5000/z");
    cr_assert_eq(c.access[2].actions, ACCESS_DELETE);
    /* two tokens of the same claims differ (jti) */
    char *tok2 = NULL;
    cr_assert_eq(token_sign(g_own, &t, &tok2, &e), 0);
    cr_assert_str_neq(tok, tok2);
    free(tok2);
    free(tok);

    /* a refresh token: the marker, no access */
    t.refresh = 1;
    cr_assert_eq(token_sign(g_own, &t, &tok, &e), 0);
    cr_assert_eq(verify(v, tok, g_now, &c, why), 0, "%s", why);
    cr_assert_eq(c.refresh, 1);
    cr_assert_eq(c.n_access, 0);
    free(tok);
    /* anonymous */
    t.refresh = 0;
    t.subject = "";
    cr_assert_eq(token_sign(g_own, &t, &tok, &e), 0);
    cr_assert_eq(verify(v, tok, g_now, &c, why), 0, "%s", why);
    cr_assert_str_eq(c.sub, "");
    free(tok);
    token_verifier_free(v);
}

Test(token, sign_refuses_more_scopes_than_a_token_holds)
{
    struct token_access acc[TOKEN_MAX_ACCESS + 1];
    for (size_t i = 0; i < TOKEN_MAX_ACCESS + 1; i++) {
        snprintf(acc[i].type, sizeof(acc[i].type), "repository");
        snprintf(acc[i].name, sizeof(acc[i].name), "r%zu", i);
        acc[i].actions = ACCESS_PULL;
    }
    struct token_issue t = {.issuer = ISS,
                            .audience = AUD,
                            .subject = "alice",
                            .now = g_now,
                            .ttl = 300,
                            .access = acc,
                            .n_access = TOKEN_MAX_ACCESS + 1};
    char *tok = NULL;
    struct err e = {0};
    cr_assert_eq(token_sign(g_own, &t, &tok, &e), -1);
    cr_assert_eq(e.code, ERR_BAD_REQUEST);
    acc[0].actions = 0; /* left out: 16 remain */
    cr_assert_eq(token_sign(g_own, &t, &tok, &e), 0, "%s", e.msg);
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    struct token_claims c;
    cr_assert_eq(verify(v, tok, g_now, &c, NULL), 0);
    cr_assert_eq(c.n_access, TOKEN_MAX_ACCESS);
    free(tok);
    token_verifier_free(v);
}

Test(token, access_claim_ignores_unknown_actions)
{
    char p[512];
    char *tok = own_jws(claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 60,
                               ",\"access\":[{\"type\":\"repository\",\"name\":\"a\","
                               "\"actions\":[\"pull\",\"frobnicate\"]},"
                               "{\"type\":\"repository\",\"name\":\"b\",\"actions\":[\"*\"]},"
                               "{\"type\":\"repository\",\"name\":\"c\",\"actions\":[]}]"));
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    struct token_claims c;
    cr_assert_eq(verify(v, tok, g_now, &c, NULL), 0);
    cr_assert_eq(c.n_access, 3);
    cr_assert_eq(c.access[0].actions, ACCESS_PULL);
    cr_assert_eq(c.access[1].actions, ACCESS_ALL);
    cr_assert_eq(c.access[2].actions, 0);
    free(tok);
    token_verifier_free(v);
}

/* ---- refusals -------------------------------------------------------------------- */

Test(token, refuses_alg_none_and_hs256_signed_with_the_public_key)
{
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    char p[512], hdr[256];
    claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 60, NULL);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             token_key_kid(g_own));
    char *tok = jws(hdr, p, SIG_NONE, NULL, NULL, NULL, 0);
    assert_refused(v, tok, g_now, "algorithm not allowed");
    free(tok);

    /* the confusion attack: HMAC keyed with the verifier's public key */
    BIO *mem = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(mem, g_own_pk);
    char *pem = NULL;
    long pemlen = BIO_get_mem_data(mem, &pem);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             token_key_kid(g_own));
    tok = jws(hdr, p, SIG_HMAC, NULL, EVP_sha256(), pem, (size_t)pemlen);
    assert_refused(v, tok, g_now, "algorithm not allowed");
    free(tok);
    BIO_free(mem);

    /* the same payload, properly signed, passes: the refusals are the alg's */
    tok = own_jws(p);
    assert_accepted(v, tok, g_now);
    free(tok);
    token_verifier_free(v);
}

Test(token, refuses_bad_signature_and_tampered_payload_even_after_caching)
{
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    char p[512], q[512];
    char *good = own_jws(claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 60, NULL));
    assert_accepted(v, good, g_now);
    unsigned long hits = token_verifier_hits(v);

    /* one signature character changed (the first: all 6 bits are significant) */
    char *bad = strdup(good);
    char *sig = strrchr(bad, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    assert_refused(v, bad, g_now, "bad signature");
    free(bad);

    /* another payload (sub mallory, access to everything) under the cached
     * token's header and signature */
    claims(q, sizeof(q), ISS, "\"" AUD "\"", g_now + 60,
           ",\"access\":[{\"type\":\"repository\",\"name\":\"x\",\"actions\":[\"*\"]}]");
    char *qb = b64(q, strlen(q), 1);
    const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    size_t n = strlen(good) + strlen(qb) + 1;
    char *forged = malloc(n);
    snprintf(forged, n, "%.*s.%s%s", (int)(d1 - good), good, qb, d2);
    assert_refused(v, forged, g_now, "bad signature");
    cr_assert_eq(token_verifier_hits(v), hits, "a forged token was a cache hit");
    free(forged);
    free(qb);
    free(good);
    token_verifier_free(v);
}

Test(token, refuses_es256_header_on_an_rsa_key)
{
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    cr_assert_not_null(rsa);
    char path[160];
    snprintf(path, sizeof(path), "%s/rsa.pub.pem", g_dir);
    FILE *f = fopen(path, "w");
    PEM_write_PUBKEY(f, rsa);
    fclose(f);
    /* the RSA key, known by its kid in a JWKS file */
    BIGNUM *n = NULL, *e = NULL;
    EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &e);
    unsigned char nb[256], eb[8];
    int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
    char *n64 = b64(nb, (size_t)nl, 1), *e64 = b64(eb, (size_t)el, 1);
    char jwks[1024];
    snprintf(jwks, sizeof(jwks),
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"rsa-1\",\"n\":\"%s\",\"e\":\"%s\"}]}", n64,
             e64);
    snprintf(path, sizeof(path), "%s/jwks.json", g_dir);
    write_file(path, jwks);
    struct token_verifier *v = verifier(NULL, NULL, path, 0);
    char p[512];
    claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 60, NULL);
    char *tok =
        jws("{\"alg\":\"ES256\",\"kid\":\"rsa-1\"}", p, SIG_KEY, rsa, EVP_sha256(), NULL, 0);
    assert_refused(v, tok, g_now, "algorithm not allowed");
    free(tok);
    /* RS256 with the same key and kid passes */
    tok = jws("{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}", p, SIG_KEY, rsa, EVP_sha256(), NULL, 0);
    assert_accepted(v, tok, g_now);
    free(tok);
    /* and an unknown kid is an unknown key */
    tok = jws("{\"alg\":\"RS256\",\"kid\":\"rsa-2\"}", p, SIG_KEY, rsa, EVP_sha256(), NULL, 0);
    assert_refused(v, tok, g_now, "unknown signing key");
    free(tok);
    token_verifier_free(v);
    free(n64);
    free(e64);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(rsa);
}

Test(token, refuses_wrong_issuer_and_audience)
{
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    char p[512];
    char *tok = own_jws(claims(p, sizeof(p), "someone-else", "\"" AUD "\"", g_now + 60, NULL));
    assert_refused(v, tok, g_now, "wrong issuer");
    free(tok);
    /* a NUL inside a JSON string cannot make it equal to a shorter one */
    tok = own_jws(claims(p, sizeof(p), ISS "\\u0000x", "\"" AUD "\"", g_now + 60, NULL));
    assert_refused(v, tok, g_now, "malformed token");
    free(tok);
    tok = own_jws(claims(p, sizeof(p), ISS, "\"" AUD "\\u0000\"", g_now + 60, NULL));
    assert_refused(v, tok, g_now, "malformed token");
    free(tok);
    tok = own_jws(claims(p, sizeof(p), ISS, "\"other.service\"", g_now + 60, NULL));
    assert_refused(v, tok, g_now, "wrong audience");
    free(tok);
    tok = own_jws(claims(p, sizeof(p), ISS, "[\"a\",\"" AUD "\",\"b\"]", g_now + 60, NULL));
    assert_accepted(v, tok, g_now);
    free(tok);
    tok = own_jws(claims(p, sizeof(p), ISS, "[\"a\",\"b\"]", g_now + 60, NULL));
    assert_refused(v, tok, g_now, "wrong audience");
    free(tok);
    /* no aud at all */
    snprintf(p, sizeof(p), "{\"iss\":\"%s\",\"sub\":\"alice\",\"exp\":%lld}", ISS,
             (long long)g_now + 60);
    tok = own_jws(p);
    assert_refused(v, tok, g_now, "wrong audience");
    free(tok);
    token_verifier_free(v);
}

Test(token, expiry_and_not_before_have_60s_leeway)
{
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    char p[512], extra[64];
    char *tok = own_jws(claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now - 61, NULL));
    assert_refused(v, tok, g_now, "token expired");
    free(tok);
    tok = own_jws(claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now - 59, NULL));
    assert_accepted(v, tok, g_now);
    free(tok);
    snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)g_now + 61);
    tok = own_jws(claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 600, extra));
    assert_refused(v, tok, g_now, "token not yet valid");
    free(tok);
    snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)g_now + 59);
    tok = own_jws(claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 600, extra));
    assert_accepted(v, tok, g_now);
    free(tok);
    /* no exp: refused, a token must end */
    snprintf(p, sizeof(p), "{\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":\"%s\"}", ISS, AUD);
    tok = own_jws(p);
    assert_refused(v, tok, g_now, "token has no expiry");
    free(tok);
    snprintf(p, sizeof(p), "{\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":\"%s\",\"exp\":\"soon\"}",
             ISS, AUD);
    tok = own_jws(p);
    assert_refused(v, tok, g_now, "malformed token");
    free(tok);
    token_verifier_free(v);
}

Test(token, refuses_too_many_access_entries_and_long_subjects)
{
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    char acc[4096], p[8192];
    size_t o = (size_t)snprintf(acc, sizeof(acc), ",\"access\":[");
    for (int i = 0; i < TOKEN_MAX_ACCESS + 1; i++)
        o += (size_t)snprintf(acc + o, sizeof(acc) - o,
                              "%s{\"type\":\"repository\",\"name\":\"r%d\",\"actions\":[\"pull\"]}",
                              i ? "," : "", i);
    snprintf(acc + o, sizeof(acc) - o, "]");
    char *tok = own_jws(claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 60, acc));
    assert_refused(v, tok, g_now, "too many access entries");
    free(tok);

    char sub[TOKEN_SUB_MAX + 2];
    memset(sub, 's', sizeof(sub) - 1);
    sub[TOKEN_SUB_MAX + 1] = '\0';
    snprintf(p, sizeof(p), "{\"iss\":\"%s\",\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld}", ISS, sub,
             AUD, (long long)g_now + 60);
    tok = own_jws(p);
    assert_refused(v, tok, g_now, "malformed token");
    free(tok);
    token_verifier_free(v);
}

Test(token, refuses_oversized_and_garbage_tokens)
{
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    /* a valid token padded past the limit by a long (signed) claim */
    char *pad = malloc(TOKEN_MAX_LEN);
    memset(pad, 'x', TOKEN_MAX_LEN - 1);
    pad[TOKEN_MAX_LEN - 1] = '\0';
    size_t plen = TOKEN_MAX_LEN + 256;
    char *p = malloc(plen);
    snprintf(p, plen, "{\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"pad\":\"%s\"}", ISS, AUD,
             (long long)g_now + 60, pad);
    char *tok = own_jws(p);
    cr_assert_gt(strlen(tok), TOKEN_MAX_LEN);
    assert_refused(v, tok, g_now, "malformed token");
    free(tok);
    free(p);
    free(pad);

    static const char *const garbage[] = {
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "...",
        "!!!!.eyJ9.abcd",
        "eyJhbGciOiJFUzI1NiJ9.eyJ9.AAAA",                  /* payload not base64 of JSON */
        "W10.e30.AAAA",                                    /* header [] */
        "e30.e30.AAAA",                                    /* header {} */
        "eyJhbGciOiJFUzI1NiJ9=.e30.AAAA",                  /* padding in base64url */
        "eyJhbGciOiJFUzI1NiIsImtpZCI6MX0.e30.AAAA",        /* kid not a string */
        "eyJhbGciOiJFUzI1NiIsIngS1MiOjF9.e30.AAAA",        /* broken JSON */
        "eyJhbGciOiJFUzI1NiIsIng1YyI6WyIhIl19.e30.AAAA",   /* x5c ["!"] */
        "eyJhbGciOiJFUzI1NiIsImNyaXQiOlsieCJdfQ.e30.AAAA", /* crit */
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        struct token_claims c;
        cr_assert_eq(verify(v, garbage[i], g_now, &c, NULL), -1, "accepted: %s", garbage[i]);
    }
    token_verifier_free(v);
}

/* ---- external keys ------------------------------------------------------------- */

static char *
b64_bn(EVP_PKEY *pk, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    cr_assert_eq(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
    unsigned char buf[600];
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64(buf, (size_t)n, 1);
}

static void
jwk_ec(char *buf, size_t cap, const char *kid, const char *crv, EVP_PKEY *pk)
{
    int coord = (EVP_PKEY_get_bits(pk) + 7) / 8;
    char *x = b64_bn(pk, OSSL_PKEY_PARAM_EC_PUB_X, coord);
    char *y = b64_bn(pk, OSSL_PKEY_PARAM_EC_PUB_Y, coord);
    snprintf(buf, cap, "{\"kty\":\"EC\",\"kid\":\"%s\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}",
             kid, crv, x, y);
    free(x);
    free(y);
}

static void
jwk_rsa(char *buf, size_t cap, const char *kid, EVP_PKEY *pk)
{
    char *n = b64_bn(pk, OSSL_PKEY_PARAM_RSA_N, 0), *e = b64_bn(pk, OSSL_PKEY_PARAM_RSA_E, 0);
    snprintf(buf, cap, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}",
             kid, n, e);
    free(n);
    free(e);
}

Test(token, accepts_rs256_es256_es384_from_a_jwks_file)
{
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *ec = EVP_EC_gen("P-256"), *ec384 = EVP_EC_gen("P-384");
    char k1[1024], k2[512], k3[512], jwks[2200], path[160];
    jwk_rsa(k1, sizeof(k1), "rsa-key", rsa);
    jwk_ec(k2, sizeof(k2), "ec-key", "P-256", ec);
    jwk_ec(k3, sizeof(k3), "ec384-key", "P-384", ec384);
    snprintf(jwks, sizeof(jwks), "{\"keys\":[%s,%s,%s]}", k1, k2, k3);
    snprintf(path, sizeof(path), "%s/jwks.json", g_dir);
    write_file(path, jwks);
    struct token_verifier *v = verifier(NULL, NULL, path, 0);
    char p[512];
    claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 60,
           ",\"access\":[{\"type\":\"repository\",\"name\":\"a\",\"actions\":[\"pull\"]}]");
    char *tok = jws("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rsa-key\"}", p, SIG_KEY, rsa,
                    EVP_sha256(), NULL, 0);
    assert_accepted(v, tok, g_now);
    free(tok);
    tok = jws("{\"alg\":\"RS512\",\"kid\":\"rsa-key\"}", p, SIG_KEY, rsa, EVP_sha512(), NULL, 0);
    assert_accepted(v, tok, g_now);
    free(tok);
    tok = jws("{\"alg\":\"ES256\",\"kid\":\"ec-key\"}", p, SIG_KEY, ec, EVP_sha256(), NULL, 0);
    assert_accepted(v, tok, g_now);
    free(tok);
    tok =
        jws("{\"alg\":\"ES384\",\"kid\":\"ec384-key\"}", p, SIG_KEY, ec384, EVP_sha384(), NULL, 0);
    assert_accepted(v, tok, g_now);
    free(tok);
    /* ES256 named for the P-384 key: the curve must match the alg */
    tok =
        jws("{\"alg\":\"ES256\",\"kid\":\"ec384-key\"}", p, SIG_KEY, ec384, EVP_sha256(), NULL, 0);
    assert_refused(v, tok, g_now, "algorithm not allowed");
    free(tok);
    /* signed by the other key than the kid names */
    tok =
        jws("{\"alg\":\"ES256\",\"kid\":\"ec-key\"}", p, SIG_KEY, g_own_pk, EVP_sha256(), NULL, 0);
    assert_refused(v, tok, g_now, "bad signature");
    free(tok);
    /* the issuer's own key is not known to this verifier */
    tok = own_jws(p);
    assert_refused(v, tok, g_now, "unknown signing key");
    free(tok);
    token_verifier_free(v);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec384);
}

Test(token, verifier_new_refuses_bad_key_sources)
{
    struct err e = {0};
    struct token_verifier_opts o = {.issuer = ISS, .audience = AUD};
    cr_assert_null(token_verifier_new(&o, &e));
    cr_assert_eq(e.code, ERR_CONFIG);
    char path[160];
    snprintf(path, sizeof(path), "%s/nothing", g_dir);
    o.jwks = path;
    cr_assert_null(token_verifier_new(&o, &e));
    cr_assert_eq(e.code, ERR_IO);
    static const char *const bad_jwks[] = {
        "not json",
        "{\"keys\":[]}",
        "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"c2VjcmV0\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]"
        "}",
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", /* tiny */
    };
    for (size_t i = 0; i < sizeof(bad_jwks) / sizeof(bad_jwks[0]); i++) {
        write_file(path, bad_jwks[i]);
        cr_assert_null(token_verifier_new(&o, &e), "loaded: %s", bad_jwks[i]);
        cr_assert_eq(e.code, ERR_CONFIG);
    }
    /* a P-256 point off the curve */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    char k[512], jwks[600];
    jwk_ec(k, sizeof(k), "e", "P-256", ec);
    char *y = strstr(k, "\"y\":\"") + 5;
    y[0] = y[0] == 'A' ? 'B' : 'A';
    snprintf(jwks, sizeof(jwks), "{\"keys\":[%s]}", k);
    write_file(path, jwks);
    cr_assert_null(token_verifier_new(&o, &e));
    cr_assert_eq(e.code, ERR_CONFIG);
    EVP_PKEY_free(ec);
    o.jwks = NULL;
    o.certs_pem = path;
    write_file(path, "no certificates here\n");
    cr_assert_null(token_verifier_new(&o, &e));
    cr_assert_eq(e.code, ERR_CONFIG);
}

/* cert - a certificate for key, issued by (ca, ca_key) or self-signed; ca_flag
 * makes it a CA */
static X509 *
cert(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *ca_key, int ca_flag)
{
    static long serial = 1;
    X509 *x = X509_new();
    cr_assert_not_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, ca ? ca : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                              ca_flag ? "critical,CA:TRUE" : "CA:FALSE");
    cr_assert_not_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (ca_flag) {
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    cr_assert(X509_sign(x, ca_key ? ca_key : key, EVP_sha256()) > 0);
    return x;
}

static char *
cert_b64(X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    cr_assert_gt(n, 0);
    char *s = b64(der, (size_t)n, 0);
    OPENSSL_free(der);
    return s;
}

static void
write_certs(const char *path, X509 *a, X509 *b)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    PEM_write_X509(f, a);
    if (b)
        PEM_write_X509(f, b);
    fclose(f);
}

Test(token, x5c_chain_to_a_bundle_root_is_accepted_and_other_roots_refused)
{
    EVP_PKEY *root_k = EVP_EC_gen("P-256"), *inter_k = EVP_EC_gen("P-256"),
             *leaf_k = EVP_EC_gen("P-256"), *other_k = EVP_EC_gen("P-256");
    X509 *root = cert(root_k, "test root", NULL, NULL, 1);
    X509 *inter = cert(inter_k, "test intermediate", root, root_k, 1);
    X509 *leaf = cert(leaf_k, "token signer", inter, inter_k, 0);
    X509 *other = cert(other_k, "other root", NULL, NULL, 1);
    X509 *other_inter = cert(inter_k, "test intermediate", other, other_k, 1);
    X509 *other_leaf = cert(leaf_k, "token signer", other_inter, inter_k, 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/bundle.pem", g_dir);
    write_certs(path, root, NULL);
    struct token_verifier *v = verifier(NULL, path, NULL, 0);

    char p[512], hdr[4096];
    claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 60, NULL);
    char *l64 = cert_b64(leaf), *i64 = cert_b64(inter);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"x5c\":[\"%s\",\"%s\"]}", l64,
             i64);
    char *tok = jws(hdr, p, SIG_KEY, leaf_k, EVP_sha256(), NULL, 0);
    assert_accepted(v, tok, g_now);
    free(tok);
    /* without the intermediate the leaf does not chain */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"x5c\":[\"%s\"]}", l64);
    tok = jws(hdr, p, SIG_KEY, leaf_k, EVP_sha256(), NULL, 0);
    assert_refused(v, tok, g_now, "untrusted certificate chain");
    free(tok);
    /* the right chain, but the token signed by another key than the leaf's */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"x5c\":[\"%s\",\"%s\"]}", l64, i64);
    tok = jws(hdr, p, SIG_KEY, inter_k, EVP_sha256(), NULL, 0);
    assert_refused(v, tok, g_now, "bad signature");
    free(tok);
    /* a chain that ends at a root outside the bundle */
    char *ol64 = cert_b64(other_leaf), *oi64 = cert_b64(other_inter), *or64 = cert_b64(other);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"x5c\":[\"%s\",\"%s\",\"%s\"]}", ol64, oi64,
             or64);
    tok = jws(hdr, p, SIG_KEY, leaf_k, EVP_sha256(), NULL, 0);
    assert_refused(v, tok, g_now, "untrusted certificate chain");
    free(tok);
    /* and the chain checked at the token's time: expired certificates fail */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"x5c\":[\"%s\",\"%s\"]}", l64, i64);
    claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 3 * 86400, NULL);
    tok = jws(hdr, p, SIG_KEY, leaf_k, EVP_sha256(), NULL, 0);
    assert_refused(v, tok, g_now + 2 * 86400, "untrusted certificate chain");
    free(tok);
    free(l64);
    free(i64);
    free(ol64);
    free(oi64);
    free(or64);
    token_verifier_free(v);
    X509 *xs[] = {root, inter, leaf, other, other_inter, other_leaf};
    for (size_t i = 0; i < 6; i++)
        X509_free(xs[i]);
    EVP_PKEY *ks[] = {root_k, inter_k, leaf_k, other_k};
    for (size_t i = 0; i < 4; i++)
        EVP_PKEY_free(ks[i]);
}

Test(token, libtrust_kid_of_a_bundle_certificate_key_is_accepted)
{
    /* docker_auth: the token server's certificate is in the bundle and its
     * tokens name the key by the libtrust kid of the certificate's key (RSA) */
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    X509 *rc = cert(rsa, "docker_auth", NULL, NULL, 0);
    X509 *ecc = cert(ec, "another token server", NULL, NULL, 0);
    char path[160], pub[160];
    snprintf(path, sizeof(path), "%s/bundle.pem", g_dir);
    write_certs(path, rc, ecc);
    snprintf(pub, sizeof(pub), "%s/rsa.pub.pem", g_dir);
    FILE *f = fopen(pub, "w");
    PEM_write_PUBKEY(f, rsa);
    fclose(f);
    char kid[60];
    cli_kid(pub, 1, kid);
    struct token_verifier *v = verifier(NULL, path, NULL, 0);
    char p[512], hdr[256];
    claims(p, sizeof(p), ISS, "\"" AUD "\"", g_now + 60, NULL);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", kid);
    char *tok = jws(hdr, p, SIG_KEY, rsa, EVP_sha256(), NULL, 0);
    assert_accepted(v, tok, g_now);
    free(tok);

    /* an EC certificate's key: its private key as an issuer key signs with
     * token_sign, whose kid is the same libtrust kid */
    snprintf(pub, sizeof(pub), "%s/ec.pem", g_dir);
    f = fopen(pub, "w");
    PEM_write_PrivateKey(f, ec, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    struct err e = {0};
    struct token_key *k = token_key_load(pub, 0, &e);
    cr_assert_not_null(k, "%s", e.msg);
    struct token_issue t = {
        .issuer = ISS, .audience = AUD, .subject = "alice", .now = g_now, .ttl = 60};
    cr_assert_eq(token_sign(k, &t, &tok, &e), 0);
    assert_accepted(v, tok, g_now);
    free(tok);
    /* the kid of a key that is not in the bundle */
    cr_assert_eq(token_sign(g_own, &t, &tok, &e), 0);
    assert_refused(v, tok, g_now, "unknown signing key");
    free(tok);
    token_key_free(k);
    token_verifier_free(v);
    X509_free(rc);
    X509_free(ecc);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

/* ---- the cache ----------------------------------------------------------------- */

Test(token, second_verify_is_a_cache_hit_until_expiry)
{
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    struct token_access acc = {.type = "repository", .name = "a", .actions = ACCESS_PULL};
    struct token_issue t = {.issuer = ISS,
                            .audience = AUD,
                            .subject = "alice",
                            .now = g_now,
                            .ttl = 100,
                            .access = &acc,
                            .n_access = 1};
    char *tok = NULL;
    struct err e = {0};
    cr_assert_eq(token_sign(g_own, &t, &tok, &e), 0);
    struct token_claims c1, c2;
    cr_assert_eq(verify(v, tok, g_now, &c1, NULL), 0);
    cr_assert_eq(token_verifier_hits(v), 0);
    memset(&c2, 0xa5, sizeof(c2));
    cr_assert_eq(verify(v, tok, g_now + 1, &c2, NULL), 0);
    cr_assert_eq(token_verifier_hits(v), 1);
    cr_assert_str_eq(c2.sub, "alice");
    cr_assert_eq(c2.exp, c1.exp);
    cr_assert_eq(c2.nbf, c1.nbf);
    cr_assert_eq(c2.iat, c1.iat);
    cr_assert_eq(c2.refresh, 0);
    cr_assert_eq(c2.n_access, 1);
    cr_assert_str_eq(c2.access[0].name, "a");
    cr_assert_eq(c2.access[0].actions, ACCESS_PULL);
    /* within the leeway still a hit; past it refused, not a hit */
    cr_assert_eq(verify(v, tok, g_now + 100 + 59, &c2, NULL), 0);
    cr_assert_eq(token_verifier_hits(v), 2);
    assert_refused(v, tok, g_now + 100 + 61, "token expired");
    cr_assert_eq(token_verifier_hits(v), 2);
    free(tok);
    token_verifier_free(v);
}

/* Counting the heap allocations of this thread while tl_count is set: glibc's
 * allocator replaced by forwarding wrappers (as hotpath_alloc_test does), or
 * under ASan, which owns malloc, its allocator hooks. */
static __thread int tl_count;
static __thread unsigned long tl_allocs;
#if defined(__SANITIZE_ADDRESS__)
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
static void
hook_malloc(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    tl_allocs += tl_count;
}
static void
hook_free(const volatile void *p)
{
    (void)p;
}
static void
counting_init(void)
{
    __sanitizer_install_malloc_and_free_hooks(hook_malloc, hook_free);
}
#else
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t a, size_t b);
extern void *__libc_realloc(void *p, size_t n);
void *
malloc(size_t n)
{
    tl_allocs += tl_count;
    return __libc_malloc(n);
}
void *
calloc(size_t a, size_t b)
{
    tl_allocs += tl_count;
    return __libc_calloc(a, b);
}
void *
realloc(void *p, size_t n)
{
    tl_allocs += tl_count;
    return __libc_realloc(p, n);
}
static void
counting_init(void)
{
}
#endif

Test(token, cache_hit_allocates_nothing)
{
    counting_init();
    struct token_verifier *v = verifier(g_own, NULL, NULL, 0);
    struct token_access acc = {.type = "repository", .name = "a", .actions = ACCESS_PULL};
    struct token_issue t = {.issuer = ISS,
                            .audience = AUD,
                            .subject = "alice",
                            .now = g_now,
                            .ttl = 100,
                            .access = &acc,
                            .n_access = 1};
    char *tok = NULL;
    struct err e = {0};
    cr_assert_eq(token_sign(g_own, &t, &tok, &e), 0);
    struct token_claims c;
    size_t len = strlen(tok);
    tl_count = 1;
    tl_allocs = 0;
    int rc = token_verify(v, tok, len, g_now, &c, &e);
    unsigned long miss_allocs = tl_allocs;
    tl_allocs = 0;
    for (int i = 0; i < 10 && rc == 0; i++)
        rc = token_verify(v, tok, len, g_now, &c, &e);
    unsigned long hit_allocs = tl_allocs;
    tl_count = 0;
    cr_assert_eq(rc, 0);
    cr_assert_gt(miss_allocs, 0, "the counting does not work");
    cr_assert_eq(token_verifier_hits(v), 10);
    cr_assert_eq(hit_allocs, 0, "%lu allocations in 10 cache hits", hit_allocs);
    free(tok);
    token_verifier_free(v);
}

#define THREADS 4
#define TOKENS 8
#define ROUNDS 300

struct race {
    struct token_verifier *v;
    char *toks[TOKENS];
    int next_id; /* the threads' start offsets */
    int failures;
};

static void *
race_thread(void *arg)
{
    struct race *r = arg;
    int id = __atomic_fetch_add(&r->next_id, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < ROUNDS; i++) {
        int k = (i * 3 + id) % TOKENS;
        struct token_claims c;
        struct err e = {0};
        if (token_verify(r->v, r->toks[k], strlen(r->toks[k]), g_now, &c, &e) != 0 ||
            c.n_access != 1 || c.access[0].name[0] != (char)('a' + k))
            __atomic_add_fetch(&r->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

Test(token, concurrent_verifies_share_the_cache)
{
    /* 8 tokens over 4 slots: threads replace each other's entries while others read */
    struct race r = {.v = verifier(g_own, NULL, NULL, 4)};
    for (int k = 0; k < TOKENS; k++) {
        struct token_access acc = {.type = "repository", .actions = ACCESS_PULL};
        snprintf(acc.name, sizeof(acc.name), "%c", 'a' + k);
        struct token_issue t = {.issuer = ISS,
                                .audience = AUD,
                                .subject = "alice",
                                .now = g_now,
                                .ttl = 600,
                                .access = &acc,
                                .n_access = 1};
        struct err e = {0};
        cr_assert_eq(token_sign(g_own, &t, &r.toks[k], &e), 0);
    }
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, race_thread, &r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(r.failures, 0);
    cr_assert_gt(token_verifier_hits(r.v), 0);
    for (int k = 0; k < TOKENS; k++)
        free(r.toks[k]);
    token_verifier_free(r.v);
}
