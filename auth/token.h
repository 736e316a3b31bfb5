/* token.h - bearer tokens: JSON Web Tokens as the Docker/OCI token protocol uses
 * them (distribution's docs "Token Authentication Specification" and "Token
 * Authentication Implementation"; RFC 7515, 7517, 7518, 7519).
 *
 * The built-in issuer signs ES256 (ECDSA P-256, SHA-256) tokens whose header
 * names the key by its libtrust-style kid. The verifier accepts tokens of that
 * key and of external token servers: keys given by an x5c certificate chain
 * that ends at a trusted certificate of a PEM bundle, by the JWKS `kid` of a
 * JWKS file, or by the libtrust-style `kid` of a bundle certificate's key (what
 * docker_auth and other token servers send; distribution 3 stopped accepting
 * it). Accepted algorithms: ES256/ES384/ES512 and RS256/RS384/RS512 with a key
 * of the matching type; refused: `none`, every HS* (no shared secrets: an HS
 * token "signed" with a public key is the classic confusion attack), a
 * mismatch of alg and key type, a bad signature, an `iss` other than the
 * configured issuer, an `aud` (string or array) that does not hold the
 * configured audience, `exp` in the past or `nbf` in the future beyond the
 * leeway (60 s), a missing exp, a "crit" header (no extension is understood).
 * Every certificate of the bundle is a trust anchor (root or not); an x5c
 * chain is checked at the verification time given to token_verify.
 *
 * A verified token is cached (keyed by the SHA-256 of the whole token, so a
 * changed payload with a copied signature is never a hit) until it expires,
 * so the signature of a token is checked once, not once per request.
 *
 * The `access` claim: [{"type":"repository","name":"library/x","actions":["pull","push"]}, ...].
 * Scopes in requests: "repository:library/x:pull,push": the type is up to the
 * first ":", the actions after the last one, the name between (it may hold
 * ":" of a host:port prefix); "registry:catalog:*". */
#ifndef OCIREG_TOKEN_H
#define OCIREG_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TOKEN_MAX_ACCESS 16    /* access entries kept per token (more: refused) */
#define TOKEN_TYPE_MAX 31
#define TOKEN_NAME_MAX 255     /* a repository name (NAME_MAX_LEN) */
#define TOKEN_SUB_MAX 255
#define TOKEN_MAX_LEN 16384    /* a longer token is refused unparsed */
#define TOKEN_LEEWAY_SEC 60

/* one entry of the access claim, or one requested scope */
struct token_access {
    char type[TOKEN_TYPE_MAX + 1]; /* "repository", "registry", ... */
    char name[TOKEN_NAME_MAX + 1]; /* "library/x", "catalog" */
    unsigned actions;              /* ACCESS_* bits (auth/access.h); "*" = all */
};

struct token_claims {
    char sub[TOKEN_SUB_MAX + 1]; /* "" for an anonymous token */
    int64_t exp, nbf, iat;       /* nbf/iat 0 when absent */
    int refresh;                 /* 1: a refresh token of the built-in issuer
                                    (claim "ocireg_refresh": true); never valid
                                    as an access token (the caller checks) */
    size_t n_access;
    struct token_access access[TOKEN_MAX_ACCESS];
};

/* token_scope_parse - one scope "type:name:a1,a2" into *out. Unknown actions are
 * ignored (the spec: a server grants the subset it knows), so actions may be 0.
 * Returns 0, or -1 with ERR_BAD_REQUEST (no two ':', empty type or name, too
 * long, a space, control character, '"' or '\\' in type or name: they could
 * not be quoted back into a challenge). */
int token_scope_parse(const char *s, size_t n, struct token_access *out, struct err *e);

/* token_scope_format - "type:name:pull,push" into buf (actions in the order
 * pull, push, delete; all three as "*", so "registry:catalog:*" round-trips);
 * returns the length (as snprintf: >= cap means truncated) */
size_t token_scope_format(const struct token_access *a, char *buf, size_t cap);

/* ---- the built-in issuer's key ---- */

struct token_key;

/* token_key_load - the EC P-256 private key in PEM at path. create: when the
 * file does not exist, generate a key and write it there (mode 0600, written
 * to a temporary file, fsynced, renamed) so that tokens survive a restart.
 * Returns a new key owned by the caller (token_key_free), or NULL with ERR_IO
 * or ERR_CONFIG (not a P-256 private key). */
struct token_key *token_key_load(const char *path, int create, struct err *e);
void token_key_free(struct token_key *k);
/* token_key_kid - the libtrust-style key id of the public key: base32 (no
 * padding) of the first 240 bits of the SHA-256 of its DER
 * SubjectPublicKeyInfo, in 12 groups of 4 joined by ':'. Static in k. */
const char *token_key_kid(const struct token_key *k);

struct token_issue {
    const char *issuer;   /* iss */
    const char *audience; /* aud (the service) */
    const char *subject;  /* sub; "" for anonymous */
    int64_t now;          /* iat, nbf (= now), exp = now + ttl */
    int64_t ttl;          /* seconds */
    int refresh;          /* a refresh token: "ocireg_refresh": true, no access */
    const struct token_access *access;
    size_t n_access;
};

/* token_sign - a compact JWS: {"alg":"ES256","typ":"JWT","kid":...} and the
 * claims iss, sub, aud, exp, nbf, iat, jti (128 random bits, hex), access
 * (entries with actions 0 are left out; all three actions are written "*").
 * *out is a new NUL-terminated string owned by the caller (free). Returns 0,
 * or -1 with ERR_INTERNAL (openssl, or a string that is not UTF-8),
 * ERR_NOMEM, or ERR_BAD_REQUEST (more than TOKEN_MAX_ACCESS entries with
 * actions: the verifier would refuse the token). Thread-safe. */
int token_sign(const struct token_key *k, const struct token_issue *t, char **out, struct err *e);

/* ---- verification ---- */

struct token_verifier_opts {
    const char *issuer;        /* required iss */
    const char *audience;      /* required in aud */
    const struct token_key *own; /* the built-in issuer's key (borrowed), or NULL */
    const char *certs_pem;     /* path of a PEM bundle of trusted certificates, or NULL */
    const char *jwks;          /* path of a JWKS file (public keys), or NULL */
    int leeway_sec;            /* 0: TOKEN_LEEWAY_SEC */
    size_t cache_entries;      /* 0: 4096 (bounded; old entries are replaced) */
};

struct token_verifier;

/* token_verifier_new - load the trusted keys. Returns a new verifier owned by
 * the caller (token_verifier_free), or NULL with ERR_IO (unreadable file) or
 * ERR_CONFIG (a bundle without certificates, a JWKS that does not parse or
 * holds an unsupported key: every JWKS key needs a kid and is EC P-256/384/521
 * or RSA of at least 2048 bits; neither own nor a key source given; no issuer
 * or audience) or ERR_NOMEM. */
struct token_verifier *token_verifier_new(const struct token_verifier_opts *o, struct err *e);
void token_verifier_free(struct token_verifier *v);

/* token_verify - verify the compact JWS jwt[0..len) at time now (seconds since
 * the epoch). Returns 0 with *out filled (from the cache when the same token
 * was verified before and has not expired), or -1 with ERR_UNAUTHORIZED and a
 * short reason in e->msg that may be shown to the client ("token expired",
 * "token not yet valid", "token has no expiry", "unknown signing key",
 * "untrusted certificate chain", "bad signature", "algorithm not allowed" (also
 * an alg that does not fit the named key's type or curve), "wrong issuer",
 * "wrong audience", "too many access entries", "malformed token"). Never logs
 * the token.
 * Thread-safe; a cache hit allocates nothing. */
int token_verify(struct token_verifier *v, const char *jwt, size_t len, int64_t now,
                 struct token_claims *out, struct err *e);

/* token_verifier_hits - cache hits so far (tests, stats) */
unsigned long token_verifier_hits(const struct token_verifier *v);

#endif
