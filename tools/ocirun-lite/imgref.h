/* imgref.h - image references as docker and podman accept them.
 *
 *   [DOMAIN/]PATH[:TAG][@DIGEST]
 *
 * DOMAIN is the first component when it contains '.' or ':' or is "localhost";
 * without one the reference is on docker.io, where a one-component PATH gets
 * the "library/" prefix. TAG defaults to "latest" unless a DIGEST is given. */
#ifndef OCIRUN_IMGREF_H
#define OCIRUN_IMGREF_H

#include <stddef.h>

#include "common/err.h"

#define IMGREF_DOCKER_DOMAIN "docker.io"
#define IMGREF_DOCKER_API_HOST "registry-1.docker.io"

struct imgref {
    char domain[256]; /* "docker.io", "127.0.0.1:5000", ... */
    char path[256];   /* repository path, e.g. "library/busybox" */
    char tag[129];    /* "" when only a digest was given */
    char digest[136]; /* "sha256:<64 hex>" or "" */
};

/* imgref_parse - parse and normalise s into *r. Returns 0, or -1 with
 * ERR_NAME_INVALID (bad name / domain), ERR_DIGEST_INVALID. */
int imgref_parse(const char *s, struct imgref *r, struct err *e);

/* imgref_format - canonical text "domain/path:tag", "domain/path@digest" or
 * "domain/path:tag@digest" into buf. Returns buf (truncated if too small). */
char *imgref_format(const struct imgref *r, char *buf, size_t len);

/* imgref_reference - what goes after /manifests/: the digest when present,
 * else the tag. Static storage of r. */
const char *imgref_reference(const struct imgref *r);

/* imgref_api_host - host[:port] to talk to for r ("registry-1.docker.io" for
 * docker.io). Static storage. */
const char *imgref_api_host(const struct imgref *r);

/* imgref_host_in_list - 1 when host ("h" or "h:port") matches an entry of the
 * comma/space separated list (entries "h" match any port of h, "h:port" only
 * that port). NULL list: 0. */
int imgref_host_in_list(const char *host, const char *list);

#endif
