/* layerfs.h - unpack image layers safely, apply OCI whiteouts, stack them.
 *
 * A layer is unpacked once into its own directory. Two forms exist:
 *   LAYERFS_OVERLAY  whiteouts converted to overlayfs' form at unpack time:
 *                    ".wh.NAME" becomes a 0/0 character device NAME and
 *                    ".wh..wh..opq" becomes xattr trusted.overlay.opaque=y on
 *                    its directory, so the layer dirs can be overlay lowerdirs.
 *                    Needs root (mknod, trusted.* xattrs).
 *   LAYERFS_OCI      the ".wh." files are kept as they are in the tar.
 * layerfs_flatten understands both.
 *
 * Whatever the tar holds, nothing is created, changed or linked outside the
 * target directory: names with ".." components are refused, absolute names are
 * taken relative to the target, parents are resolved with openat2
 * RESOLVE_IN_ROOT (a symlink in the layer cannot lead outside), the final
 * component is never followed, and hard-link targets are resolved the same way.
 * xattrs named trusted.overlay.* in a tar are dropped (they would steer overlayfs). */
#ifndef OCIRUN_LAYERFS_H
#define OCIRUN_LAYERFS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum layerfs_mode { LAYERFS_OCI = 1, LAYERFS_OVERLAY = 2 };

struct layerfs_stats {
    uint64_t entries; /* tar entries applied */
    uint64_t bytes;   /* file data written */
    uint64_t skipped; /* entries that cannot be created here (devices as non-root) */
};

/* layerfs_unpack - unpack the layer blob at blob_path (tar, optionally gzip/
 * zstd/... compressed: libarchive detects it) into the new directory dest
 * (created with mode 0755; its parent must exist). When diff_id is not NULL the
 * uncompressed stream must hash to it. On failure dest may hold a partial tree:
 * the caller unpacks into a temporary name and removes it. Returns 0 or -1 with
 * ERR_DIGEST_INVALID (diff_id mismatch), ERR_MANIFEST_INVALID (bad or hostile
 * archive: the message names the entry), ERR_IO. stats may be NULL. */
int layerfs_unpack(const char *blob_path, const char *diff_id, const char *dest,
                   enum layerfs_mode mode, struct layerfs_stats *stats, struct err *e);

/* layerfs_flatten - apply the layer directories layers[0] (bottom) ..
 * layers[n-1] (top) into dest (an existing, usually empty directory) with OCI
 * semantics: a whiteout deletes the named entry of the lower layers, an opaque
 * directory hides all lower entries of that directory (never entries of its own
 * layer), whiteout markers never appear in dest. Owners, modes, times, hard
 * links (within a layer), symlinks, devices and xattrs are kept. Returns 0 or
 * -1 with ERR_IO. */
int layerfs_flatten(const char *const *layers, size_t n, const char *dest, struct err *e);

/* layerfs_default_mode - LAYERFS_OVERLAY when whiteout devices and trusted.*
 * xattrs can be created in dir (probed once per process), else LAYERFS_OCI. */
enum layerfs_mode layerfs_default_mode(const char *dir);

/* layerfs_overlay_works - 1 when an overlay mount with LAYERFS_OVERLAY lower
 * layers behaves as expected (whiteout + opaque dir), tested once per process
 * in a child process with a private mount namespace, under dir. 0 otherwise. */
int layerfs_overlay_works(const char *dir);

/* layerfs_probe_cached - layerfs_default_mode and layerfs_overlay_works for
 * the store at root (probed in root/tmp), remembered in the file root/probe
 * under a key of the kernel release and the device of root/tmp: a later
 * process with the same key reads the answers instead of probing again.
 * OCIRUN_REPROBE=1 (or deleting root/probe) forces a new probe. Results are
 * only cached for root (uid 0). Writes *mode and *overlay; never fails (a
 * cache that cannot be read or written means probing). */
void layerfs_probe_cached(const char *root, enum layerfs_mode *mode, int *overlay);

#endif
