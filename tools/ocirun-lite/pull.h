/* pull.h - resolve a reference, fetch an image into the content store, unpack
 * its layers into the layer cache, and assemble a rootfs for the runtime. */
#ifndef OCIRUN_PULL_H
#define OCIRUN_PULL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "tools/ocirun-lite/cstore.h"
#include "tools/ocirun-lite/imgref.h"
#include "tools/ocirun-lite/regclient.h"

struct platform {
    char os[32];
    char arch[32];
    char variant[32]; /* "" = any */
};

struct pull_opts {
    struct regclient_opts client;
    struct platform platform; /* wanted platform (pull_platform_host by default) */
    int quiet;                /* no progress lines on stderr */
};

/* pull_platform_host - the platform this process runs on, in OCI terms
 * (x86_64 -> linux/amd64, aarch64 -> linux/arm64/v8, ...). */
void pull_platform_host(struct platform *p);

/* pull_platform_parse - "os/arch[/variant]" into *p. Returns 0 or -1 with
 * ERR_CONFIG. */
int pull_platform_parse(const char *s, struct platform *p, struct err *e);

/* pull_platform_format - "os/arch[/variant]" into buf; returns buf. */
char *pull_platform_format(const struct platform *p, char *buf, size_t len);

/* pull_select_platform - pick the manifest for `want` from an image index /
 * manifest list (JSON text). A descriptor matches when os and architecture are
 * equal and, when both name a variant, the variants are equal (arm64 without a
 * variant counts as v8); an exact variant match wins over a missing one.
 * Writes its digest, size and media type. Returns 0, or -1 with
 * ERR_MANIFEST_INVALID (bad JSON) or ERR_MANIFEST_UNKNOWN (no match; the
 * message lists the platforms on offer). */
int pull_select_platform(const char *index_json, const struct platform *want,
                         char digest[CSTORE_DIGEST_LEN], int64_t *size, char *mediatype,
                         size_t mtlen, struct err *e);

/* pull_image - fetch ref (index -> platform manifest -> config + layers, all
 * verified), unpack the layers into the cache and write the image record,
 * which is returned in *img (release with cstore_image_release). Returns 0 or
 * -1 with the error of the failing step. */
int pull_image(struct cstore *cs, const struct imgref *ref, const struct pull_opts *o,
               struct cstore_image *img, struct err *e);

/* pull_ensure_layers - make sure every layer of img is unpacked in the layer
 * cache (after a crash or a gc race). Returns 0 or -1. */
int pull_ensure_layers(struct cstore *cs, const struct cstore_image *img, int quiet, struct err *e);

/* pull_layer_dir - "ROOT/layers/<hex>/fs" for diff_id into buf. */
void pull_layer_dir(const struct cstore *cs, const char *diff_id, char *buf, size_t len);

/* pull_layers_overlay_form - 1 when every layer of img was unpacked in the
 * overlay whiteout form (LAYERFS_OVERLAY), else 0. */
int pull_layers_overlay_form(const struct cstore *cs, const struct cstore_image *img);

#endif
