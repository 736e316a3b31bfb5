/* suite.h - shared state and fixtures of the conformance checks, and the
 * entry point of each workflow group (spec "Workflow Categories": pull, push,
 * content discovery, content management; plus the base endpoint and the error
 * responses). Every group pushes the content it needs itself, so a failure in
 * one group does not cascade into the others. */
#ifndef CONFORMANCE_SUITE_H
#define CONFORMANCE_SUITE_H

#include <jansson.h>
#include <stddef.h>

#include "conformance/util.h"

struct check;
struct client;
struct resp;

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define MT_OCI_EMPTY "application/vnd.oci.empty.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar.gzip"

/* the Accept header every manifest request sends (spec "Pulling manifests":
 * the client SHOULD list the types it supports) */
#define SUITE_ACCEPT                                                                               \
    "Accept: " MT_OCI_MANIFEST ", " MT_OCI_INDEX ", " MT_DOCKER_MANIFEST ", " MT_DOCKER_LIST

/* A blob or manifest held in memory with its sha256 digest. */
struct doc {
    unsigned char *data;
    size_t len;
    char digest[UTIL_DIGEST_MAX];
    char media_type[128];
};

/* An image manifest (or Docker schema2 manifest) with its config and layer. */
struct image {
    struct doc config;
    struct doc layer; /* len 0 when the image has no layer */
    struct doc manifest;
};

/* How suite_image_make builds an image; zero means the default. */
struct image_opts {
    int docker;                    /* Docker schema2 types instead of OCI */
    int no_layer;                  /* "layers": [] */
    const char *artifact_type;     /* top-level artifactType */
    const char *config_media_type; /* default: the image config type */
    int empty_config;              /* config is the empty descriptor "{}" */
    const struct doc *subject;     /* manifest descriptor for "subject" */
    const char *annotation_key;    /* one manifest annotation */
    const char *annotation_value;
};

struct ctx {
    struct client *cl;
    char repo[256];  /* main repository of this run */
    char repo2[256]; /* second repository (cross-repo checks) */
    int base_ok;     /* GET /v2/ answered 200 */
};

/* fixtures (fixture.c) */
void suite_doc_set(struct doc *d, const char *media_type, const void *data, size_t len);
/* suite_doc_json - serialise j compactly into d (takes ownership of j). */
void suite_doc_json(struct doc *d, const char *media_type, json_t *j);
void suite_doc_random(struct doc *d, const char *media_type, size_t len);
void suite_doc_release(struct doc *d);
/* suite_descriptor - a new {"mediaType","digest","size"} object for d. */
json_t *suite_descriptor(const struct doc *d);
void suite_image_make(struct image *im, const struct image_opts *o);
void suite_image_release(struct image *im);

/* suite_blob_push - upload b into repo with POST then PUT ?digest=. Returns 0,
 * or -1 with the reason in why. */
int suite_blob_push(struct ctx *x, const char *repo, const struct doc *b, char *why,
                    size_t why_size);
/* suite_manifest_put - PUT m to /v2/<repo>/manifests/<ref> with Content-Type
 * set to its media type; r as client_do's (caller releases). */
int suite_manifest_put(struct ctx *x, const char *repo, const char *ref, const struct doc *m,
                       struct resp *r);
/* suite_image_push - config, layer (both via suite_blob_push) and the manifest
 * at ref (a tag, or NULL for its digest). Returns 0, or -1 with why. */
int suite_image_push(struct ctx *x, const char *repo, const struct image *im, const char *ref,
                     char *why, size_t why_size);
/* suite_req - `method` on `path` (a path or URL) with the manifest Accept
 * header; r as client_do's (caller releases). */
int suite_req(struct ctx *x, const char *method, const char *path, struct resp *r);

/* suite_index_doc - d = an index of media_type (OCI image index or Docker
 * manifest list) whose one entry is the manifest m, for linux/amd64. */
void suite_index_doc(struct doc *d, const char *media_type, const struct doc *m);
/* suite_expect_get - GET of path answers 200 with exactly d's bytes; with
 * `manifest` set the request carries the manifest Accept header (suite_req).
 * what names the request in a failure. */
void suite_expect_get(struct ctx *x, struct check *c, const char *path, int manifest,
                      const struct doc *d, const char *what);
/* suite_expect_404 - GET and HEAD of path both answer 404 (Accept as for
 * suite_expect_get). */
void suite_expect_404(struct ctx *x, struct check *c, const char *path, int manifest);

/* suite_expect_unknown - `method` on a random sha256 digest under
 * /v2/<repo>/<kind>/ (kind "blobs" or "manifests"; manifests with the manifest
 * Accept header) answers 404 with error code `code`. */
void suite_expect_unknown(struct ctx *x, struct check *c, const char *method, const char *kind,
                          const char *code);

/* groups */
void suite_base(struct ctx *x);
void suite_pull(struct ctx *x);
void suite_push(struct ctx *x);
void suite_discovery(struct ctx *x);
void suite_management(struct ctx *x);
void suite_errors(struct ctx *x);

#endif
