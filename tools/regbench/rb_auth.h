/* rb_auth.h - logging regbench into a registry with auth, once per run.
 *
 * --user U:P: GET <base>/v2/ without credentials. 200: the registry wants none.
 * 401 with a Bearer challenge: the Docker token flow, GET
 * <realm>?service=<service>&scope=<scope>... with Basic U:P, whose JSON answer's
 * "token" (or OAuth2 "access_token") is then sent as `Authorization: Bearer T`
 * on every request. A Basic challenge: `Authorization: Basic base64(U:P)` on
 * every request. Either way one GET /v2/ with the header must then answer 200.
 * The challenge is parsed by ocirun-lite's regauth_parse_challenge (RFC 7235
 * auth-params, quoted strings with escapes and commas). */
#ifndef REGBENCH_RB_AUTH_H
#define REGBENCH_RB_AUTH_H

#include <stddef.h>

struct err;
struct rb_tls;

enum rb_auth_scheme { RB_AUTH_NONE = 0, RB_AUTH_BASIC, RB_AUTH_BEARER };

/* rb_auth_token_url - from the WWW-Authenticate value www: the scheme it asks
 * for (Bearer preferred when several are offered) and, for Bearer, the token
 * request URL "<realm>?service=S&scope=X&scope=Y" with every value
 * percent-encoded (service left out when the challenge has none; the
 * challenge's own scope is requested when nscopes is 0) into url (for Basic url
 * is ""). Returns 0, or -1 with ERR_UNAUTHORIZED (no Basic or Bearer challenge,
 * malformed header, Bearer without realm), ERR_CONFIG (the realm is not an
 * http(s) URL, the URL does not fit in cap) or ERR_NOMEM. */
int rb_auth_token_url(const char *www, const char *const *scopes, size_t nscopes,
                      enum rb_auth_scheme *scheme, char *url, size_t cap, struct err *e);

/* rb_auth_token_parse - the token of a token server's JSON answer: "token",
 * else "access_token"; *expires_in gets "expires_in" (0 when absent). Returns 0
 * with *token a string owned by the caller (free), or -1 with ERR_UNAUTHORIZED
 * (not JSON, no non-empty token, a token with characters that cannot go in a
 * header). */
int rb_auth_token_parse(const char *body, size_t len, char **token, long *expires_in,
                        struct err *e);

struct rb_auth_opts {
    const char *base;           /* "http(s)://HOST:PORT" */
    const struct rb_tls *tls;   /* set for https (also used for an https realm) */
    const char *userpass;       /* "user:password" */
    const char *const *scopes;  /* the scopes to ask the token for */
    size_t nscopes;
    double timeout;             /* seconds per request */
    int any_host;               /* 0 = the realm must be on a loopback host */
};

/* rb_auth_login - the flow above. Returns 0 with *hdr the header line to send
 * ("Authorization: ..."; owned by the caller, free) or NULL when /v2/ answered
 * 200 without credentials, *scheme what the registry asked for and *expires_in
 * the token's lifetime in seconds (0 = not given or not a token). Returns -1 with
 * ERR_CONFIG (bad U:P, realm off loopback), ERR_UNAUTHORIZED (credentials
 * refused, no usable challenge or token, the header still refused) or ERR_IO
 * (transport). Nothing secret is put in the error message. */
int rb_auth_login(const struct rb_auth_opts *o, char **hdr, enum rb_auth_scheme *scheme,
                  long *expires_in, struct err *e);

#endif
