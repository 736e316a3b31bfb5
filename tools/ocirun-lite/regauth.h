/* regauth.h - registry credentials and the WWW-Authenticate challenge.
 *
 * Credentials come from (first match wins): --creds; $REGISTRY_AUTH_FILE;
 * $XDG_RUNTIME_DIR/containers/auth.json; $DOCKER_CONFIG/config.json or
 * ~/.docker/config.json. In those files only "auths": {"HOST": {"auth":
 * base64("user:pass")}} is read (also "username"/"password" fields);
 * credential helpers are not supported. */
#ifndef OCIRUN_REGAUTH_H
#define OCIRUN_REGAUTH_H

#include <stddef.h>

#include "common/err.h"

enum regauth_scheme { REGAUTH_NONE = 0, REGAUTH_BASIC, REGAUTH_BEARER };

struct regauth_challenge {
    enum regauth_scheme scheme;
    char realm[1024];
    char service[256];
    char scope[1024];
};

struct regauth_creds {
    char user[256];
    char pass[1024];
};

/* regauth_parse_challenge - parse the value of a WWW-Authenticate header (one
 * or several challenges, RFC 7235 auth-params, quoted or token values). A
 * Bearer challenge is preferred over Basic. Returns 0, or -1 with
 * ERR_UNAUTHORIZED when no Basic/Bearer challenge is found or it is malformed
 * (a Bearer challenge without a realm). */
int regauth_parse_challenge(const char *hdr, struct regauth_challenge *c, struct err *e);

/* regauth_lookup_file - credentials for registry host `host` ("h" or "h:port";
 * docker.io also matches index.docker.io, registry-1.docker.io and
 * https://index.docker.io/v1/) in the auth file `path`. Returns 1 and fills *c
 * when found, 0 when absent (also when the file does not exist), -1 with
 * ERR_CONFIG if the file is unreadable or malformed. */
int regauth_lookup_file(const char *path, const char *host, struct regauth_creds *c, struct err *e);

/* regauth_lookup - regauth_lookup_file over the standard files, in order. */
int regauth_lookup(const char *host, struct regauth_creds *c, struct err *e);

/* regauth_parse_creds - "user:pass" (as given to --creds) into *c. Returns 0 or
 * -1 with ERR_CONFIG. */
int regauth_parse_creds(const char *s, struct regauth_creds *c, struct err *e);

/* regauth_base64_decode - decode NUL-terminated standard base64 `in` into out
 * (at most outlen-1 bytes, NUL-terminated). Returns the decoded length or -1
 * on invalid input / no room. */
long regauth_base64_decode(const char *in, char *out, size_t outlen);

#endif
