/* cstore.c - the local content store: verified blobs, image records, gc.
 *
 * Blob writes: ROOT/tmp/blob-XXXXXX is written while hashing (OpenSSL EVP,
 * loaded on first use: dynlib.h),
 * then size and digest are compared, the file is fsync'd and renamed to
 * blobs/sha256/<hex>, and blobs/sha256 is fsync'd. A crash leaves at most a
 * stray tmp file, which gc removes. */
#include "tools/ocirun-lite/cstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tools/ocirun-lite/dynlib.h"
#include "tools/ocirun-lite/fsutil.h"

#include "common/banned.h"

struct cstore {
    char root[PATH_MAX];
    int lockfd;
};

struct cstore_writer {
    struct cstore *cs;
    char digest[CSTORE_DIGEST_LEN];
    int64_t size;
    int64_t written;
    int fd;
    char tmp[PATH_MAX];
    EVP_MD_CTX *md;
};

static void
hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

const char *
cstore_digest_hex(const char *digest)
{
    if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
        return NULL;
    for (const char *p = digest + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return NULL;
    return digest + 7;
}

/* SHA-256 (FIPS 180-4) in plain C for small inputs (record names, configs,
 * manifests). Why not EVP: the first EVP call initialises OpenSSL (reads
 * openssl.cnf, loads the default provider), a few ms that a warm `run` of a
 * cached image would pay only to hash its reference and verify its config.
 * Large inputs go to EVP, which is several times faster per byte. */
static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t
ror32(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void
sha_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, hh;

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
                      sha_k[i] + w[i];
        uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

static void
sha256_small_hex(const void *data, size_t len, char out[65])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const unsigned char *p = data;
    unsigned char tail[128];
    size_t full = len & ~(size_t)63, rest = len - full, tl;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t off = 0; off < full; off += 64)
        sha_block(h, p + off);
    /* padding: 0x80, zeros, the 64-bit big-endian bit length */
    memset(tail, 0, sizeof(tail));
    if (rest)
        memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    tl = rest + 1 + 8 <= 64 ? 64 : 128;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha_block(h, tail);
    if (tl == 128)
        sha_block(h, tail + 64);
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", h[i]);
}

void
cstore_sha256(const void *data, size_t len, char out[CSTORE_DIGEST_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    /* small inputs, or no libcrypto: the plain C version (same result) */
    if (len <= 64 * 1024 || dynlib_crypto(NULL) < 0) {
        memcpy(out, "sha256:", 7);
        sha256_small_hex(data, len, out + 7);
        return;
    }
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    memcpy(out, "sha256:", 7);
    hex_encode(md, mdlen, out + 7);
}

struct cstore *
cstore_open(const char *root, struct err *e)
{
    static const char *const sub[] = {"blobs/sha256", "layers", "images", "tmp", "containers"};
    struct cstore *cs;
    char path[PATH_MAX + 64];

    if (fsutil_mkdir_p(root, e) < 0)
        return NULL;
    cs = calloc(1, sizeof(*cs));
    if (!cs) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    cs->lockfd = -1;
    if (!realpath(root, cs->root)) {
        err_sys(e, ERR_IO, errno, "cannot resolve \"%s\"", root);
        goto fail;
    }
    for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", cs->root, sub[i]);
        if (fsutil_mkdir_p(path, e) < 0)
            goto fail;
    }
    snprintf(path, sizeof(path), "%s/lock", cs->root);
    cs->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (cs->lockfd < 0) {
        err_sys(e, ERR_IO, errno, "cannot open \"%s\"", path);
        goto fail;
    }
    if (flock(cs->lockfd, LOCK_SH) < 0) {
        err_sys(e, ERR_IO, errno, "cannot lock \"%s\"", path);
        goto fail;
    }
    return cs;
fail:
    cstore_close(cs);
    return NULL;
}

void
cstore_close(struct cstore *cs)
{
    if (!cs)
        return;
    if (cs->lockfd >= 0)
        close(cs->lockfd);
    free(cs);
}

const char *
cstore_root(const struct cstore *cs)
{
    return cs->root;
}

int
cstore_blob_path(const struct cstore *cs, const char *digest, char *buf, size_t len, struct err *e)
{
    const char *hex = cstore_digest_hex(digest);
    if (!hex)
        return err_set(e, ERR_DIGEST_INVALID, 0, "unsupported or invalid digest \"%s\"",
                       digest ? digest : "");
    if ((size_t)snprintf(buf, len, "%s/blobs/sha256/%s", cs->root, hex) >= len)
        return err_set(e, ERR_IO, ENAMETOOLONG, "store path too long");
    return 0;
}

int
cstore_blob_has(const struct cstore *cs, const char *digest, int64_t size)
{
    char path[PATH_MAX];
    struct stat st;
    if (cstore_blob_path(cs, digest, path, sizeof(path), NULL) < 0)
        return 0;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return size < 0 || st.st_size == size;
}

int
cstore_blob_read(const struct cstore *cs, const char *digest, size_t maxlen, char **data,
                 size_t *len, struct err *e)
{
    char path[PATH_MAX], got[CSTORE_DIGEST_LEN];
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    int fd, rc = -1;

    if (cstore_blob_path(cs, digest, path, sizeof(path), e) < 0)
        return -1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_BLOB_UNKNOWN, 0, "blob %s is not in the local store", digest);
        return err_sys(e, ERR_IO, errno, "cannot open %s", path);
    }
    if (fstat(fd, &st) < 0) {
        err_sys(e, ERR_IO, errno, "cannot stat %s", path);
        goto out;
    }
    if ((uint64_t)st.st_size > maxlen) {
        err_set(e, ERR_TOO_LARGE, 0, "blob %s is too large (%lld bytes)", digest,
                (long long)st.st_size);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err_sys(e, ERR_IO, r < 0 ? errno : EIO, "cannot read %s", path);
            goto out;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    cstore_sha256(buf, n, got);
    if (strcmp(got, digest) != 0) {
        err_set(e, ERR_DIGEST_INVALID, 0, "stored blob %s is corrupt (hashes to %s)", digest, got);
        goto out;
    }
    *data = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    close(fd);
    return rc;
}

struct cstore_writer *
cstore_writer_new(struct cstore *cs, const char *digest, int64_t size, struct err *e)
{
    struct cstore_writer *w;

    if (digest && !cstore_digest_hex(digest)) {
        err_set(e, ERR_DIGEST_INVALID, 0, "unsupported or invalid digest \"%s\"", digest);
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    w->cs = cs;
    w->fd = -1;
    w->size = size;
    if (digest)
        snprintf(w->digest, sizeof(w->digest), "%s", digest);
    snprintf(w->tmp, sizeof(w->tmp), "%s/tmp/blob-XXXXXX", cs->root);
    w->fd = mkostemp(w->tmp, O_CLOEXEC);
    if (w->fd < 0) {
        err_sys(e, ERR_IO, errno, "cannot create a temporary file in %s/tmp", cs->root);
        w->tmp[0] = '\0';
        goto fail;
    }
    if (dynlib_crypto(e) < 0)
        goto fail;
    w->md = EVP_MD_CTX_new();
    if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        err_set(e, ERR_INTERNAL, 0, "cannot initialise sha256");
        goto fail;
    }
    return w;
fail:
    cstore_writer_abort(w);
    return NULL;
}

int
cstore_writer_write(struct cstore_writer *w, const void *buf, size_t n, struct err *e)
{
    if (w->size >= 0 && w->written + (int64_t)n > w->size)
        return err_set(e, ERR_SIZE_INVALID, 0,
                       "blob %s is larger than the %lld bytes its descriptor announces",
                       w->digest[0] ? w->digest : "(unknown)", (long long)w->size);
    if (EVP_DigestUpdate(w->md, buf, n) != 1)
        return err_set(e, ERR_INTERNAL, 0, "sha256 update failed");
    if (fsutil_write_all(w->fd, buf, n) < 0)
        return err_sys(e, ERR_IO, errno, "cannot write %s", w->tmp);
    w->written += (int64_t)n;
    return 0;
}

int
cstore_writer_reset(struct cstore_writer *w, struct err *e)
{
    if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
        return err_sys(e, ERR_IO, errno, "cannot truncate %s", w->tmp);
    if (EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1)
        return err_set(e, ERR_INTERNAL, 0, "sha256 init failed");
    w->written = 0;
    return 0;
}

int64_t
cstore_writer_written(const struct cstore_writer *w)
{
    return w->written;
}

int
cstore_writer_commit(struct cstore_writer *w, struct err *e)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char got[CSTORE_DIGEST_LEN], path[PATH_MAX], dir[PATH_MAX];
    int rc = -1;

    if (w->size >= 0 && w->written != w->size) {
        err_set(e, ERR_SIZE_INVALID, 0, "blob %s: got %lld bytes, expected %lld", w->digest,
                (long long)w->written, (long long)w->size);
        goto out;
    }
    if (EVP_DigestFinal_ex(w->md, md, &mdlen) != 1) {
        err_set(e, ERR_INTERNAL, 0, "sha256 final failed");
        goto out;
    }
    memcpy(got, "sha256:", 7);
    hex_encode(md, mdlen, got + 7);
    if (w->digest[0] && strcmp(got, w->digest) != 0) {
        err_set(e, ERR_DIGEST_INVALID, 0,
                "digest mismatch: blob %s received with content hashing to %s; not stored",
                w->digest, got);
        goto out;
    }
    if (!w->digest[0])
        snprintf(w->digest, sizeof(w->digest), "%s", got);
    if (fsync(w->fd) < 0) {
        err_sys(e, ERR_IO, errno, "cannot fsync %s", w->tmp);
        goto out;
    }
    if (fchmod(w->fd, 0644) < 0) {
        err_sys(e, ERR_IO, errno, "cannot chmod %s", w->tmp);
        goto out;
    }
    if (cstore_blob_path(w->cs, w->digest, path, sizeof(path), e) < 0)
        goto out;
    if (rename(w->tmp, path) < 0) {
        err_sys(e, ERR_IO, errno, "cannot rename %s to %s", w->tmp, path);
        goto out;
    }
    w->tmp[0] = '\0';
    snprintf(dir, sizeof(dir), "%s/blobs/sha256", w->cs->root);
    if (fsutil_fsync_dir(dir) < 0) {
        err_sys(e, ERR_IO, errno, "cannot fsync %s", dir);
        goto out;
    }
    rc = 0;
out:
    cstore_writer_abort(w);
    return rc;
}

void
cstore_writer_abort(struct cstore_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp[0])
        unlink(w->tmp);
    if (w->md) /* set only once libcrypto is loaded */
        EVP_MD_CTX_free(w->md);
    free(w);
}

int
cstore_blob_put(struct cstore *cs, const char *digest, const void *data, size_t len,
                char digest_out[CSTORE_DIGEST_LEN], struct err *e)
{
    char got[CSTORE_DIGEST_LEN];
    struct cstore_writer *w;

    cstore_sha256(data, len, got);
    if (digest && strcmp(digest, got) != 0)
        return err_set(e, ERR_DIGEST_INVALID, 0,
                       "digest mismatch: %s expected, content hashes to %s; not stored", digest,
                       got);
    if (digest_out)
        memcpy(digest_out, got, sizeof(got));
    if (cstore_blob_has(cs, got, (int64_t)len))
        return 0;
    w = cstore_writer_new(cs, got, (int64_t)len, e);
    if (!w)
        return -1;
    if (cstore_writer_write(w, data, len, e) < 0) {
        cstore_writer_abort(w);
        return -1;
    }
    return cstore_writer_commit(w, e);
}

int
cstore_tmpdir(struct cstore *cs, const char *prefix, char *buf, size_t len, struct err *e)
{
    if ((size_t)snprintf(buf, len, "%s/tmp/%s-XXXXXX", cs->root, prefix) >= len)
        return err_set(e, ERR_IO, ENAMETOOLONG, "tmp path too long");
    if (!mkdtemp(buf))
        return err_sys(e, ERR_IO, errno, "cannot create a directory in %s/tmp", cs->root);
    return 0;
}

/* ---- image records ------------------------------------------------------- */

static void
record_path(const struct cstore *cs, const char *ref, char *buf, size_t len)
{
    char d[CSTORE_DIGEST_LEN];
    cstore_sha256(ref, strlen(ref), d);
    snprintf(buf, len, "%s/images/%s.json", cs->root, d + 7);
}

static json_t *
strv_to_json(char **v)
{
    json_t *a = json_array();
    for (size_t i = 0; v && v[i]; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static char **
json_to_strv(json_t *a)
{
    size_t n = json_is_array(a) ? json_array_size(a) : 0, k = 0;
    char **v = calloc(n + 1, sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s)
            v[k++] = strdup(s);
    }
    return v;
}

static void
strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void
cstore_image_release(struct cstore_image *img)
{
    if (!img)
        return;
    strv_free(img->blobs);
    strv_free(img->layers);
    img->blobs = img->layers = NULL;
}

int
cstore_image_put(struct cstore *cs, const struct cstore_image *img, struct err *e)
{
    char path[PATH_MAX], tmp[PATH_MAX + 16];
    json_t *o;
    char *text;
    int fd, rc = -1;

    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "ref", img->ref, "digest", img->digest,
                  "manifest", img->manifest, "config", img->config, "platform", img->platform,
                  "size", (json_int_t)img->size, "created", (json_int_t)img->created);
    if (!o)
        return err_set(e, ERR_INTERNAL, 0, "cannot build the image record");
    json_object_set_new(o, "blobs", strv_to_json(img->blobs));
    json_object_set_new(o, "layers", strv_to_json(img->layers));
    text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    if (!text)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    record_path(cs, img->ref, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_sys(e, ERR_IO, errno, "cannot create %s", tmp);
        goto out;
    }
    if (fsutil_write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
        err_sys(e, ERR_IO, errno, "cannot write %s", tmp);
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        err_sys(e, ERR_IO, errno, "cannot rename %s", tmp);
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(text);
    return rc;
}

static int
record_load(const char *path, struct cstore_image *img, struct err *e)
{
    json_error_t jerr;
    json_t *o = json_load_file(path, 0, &jerr);
    struct cstore_image r;

    if (!o) {
        if (errno == ENOENT && jerr.line == -1)
            return 0;
        return err_set(e, ERR_IO, 0, "cannot read image record %s: %s", path, jerr.text);
    }
    memset(&r, 0, sizeof(r));
#define GETS(field)                                                                                \
    snprintf(r.field, sizeof(r.field), "%s",                                                       \
             json_string_value(json_object_get(o, #field))                                         \
                 ? json_string_value(json_object_get(o, #field))                                   \
                 : "")
    GETS(ref);
    GETS(digest);
    GETS(manifest);
    GETS(config);
    GETS(platform);
#undef GETS
    r.size = json_integer_value(json_object_get(o, "size"));
    r.created = json_integer_value(json_object_get(o, "created"));
    r.blobs = json_to_strv(json_object_get(o, "blobs"));
    r.layers = json_to_strv(json_object_get(o, "layers"));
    json_decref(o);
    if (!r.blobs || !r.layers || !r.ref[0]) {
        cstore_image_release(&r);
        return err_set(e, ERR_IO, 0, "image record %s is malformed", path);
    }
    *img = r;
    return 1;
}

int
cstore_image_get(struct cstore *cs, const char *ref, struct cstore_image *img, struct err *e)
{
    char path[PATH_MAX];
    struct stat st;
    record_path(cs, ref, path, sizeof(path));
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : err_sys(e, ERR_IO, errno, "cannot stat %s", path);
    return record_load(path, img, e);
}

static int
image_cmp(const void *a, const void *b)
{
    return strcmp(((const struct cstore_image *)a)->ref, ((const struct cstore_image *)b)->ref);
}

int
cstore_image_list(struct cstore *cs, struct cstore_image **imgs, size_t *count, struct err *e)
{
    char dir[PATH_MAX], path[PATH_MAX + 300];
    struct cstore_image *arr = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s/images", cs->root);
    d = opendir(dir);
    if (!d)
        return err_sys(e, ERR_IO, errno, "cannot list %s", dir);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct cstore_image *na = realloc(arr, cap * sizeof(*arr));
            if (!na) {
                err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
                goto fail;
            }
            arr = na;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        int r = record_load(path, &arr[n], e);
        if (r < 0)
            goto fail;
        if (r > 0)
            n++;
    }
    closedir(d);
    if (n > 1)
        qsort(arr, n, sizeof(*arr), image_cmp);
    *imgs = arr;
    *count = n;
    return 0;
fail:
    closedir(d);
    cstore_image_list_free(arr, n);
    return -1;
}

void
cstore_image_list_free(struct cstore_image *imgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cstore_image_release(&imgs[i]);
    free(imgs);
}

int
cstore_image_delete(struct cstore *cs, const char *ref, struct err *e)
{
    char path[PATH_MAX];
    record_path(cs, ref, path, sizeof(path));
    if (unlink(path) < 0)
        return errno == ENOENT ? 0 : err_sys(e, ERR_IO, errno, "cannot remove %s", path);
    return 1;
}

/* ---- gc -------------------------------------------------------------------- */

static int
in_strv_sorted(char **v, size_t n, const char *s)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(v[mid], s);
        if (c == 0)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int
str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* remove every entry of dir whose name (hex) is not "sha256:<name>" in keep */
static int
sweep(const char *dir, char **keep, size_t nkeep, size_t *freed, struct err *e)
{
    char key[CSTORE_DIGEST_LEN + 8];
    struct dirent *de;
    DIR *d = opendir(dir);
    int rc = 0;

    if (!d)
        return err_sys(e, ERR_IO, errno, "cannot list %s", dir);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(key, sizeof(key), "sha256:%s", de->d_name);
        if (in_strv_sorted(keep, nkeep, key))
            continue;
        if (fsutil_rm_rf_at(dirfd(d), de->d_name, e) < 0) {
            rc = -1;
            break;
        }
        (*freed)++;
    }
    closedir(d);
    return rc;
}

int
cstore_gc(struct cstore *cs, size_t *freed, struct err *e)
{
    struct cstore_image *imgs = NULL;
    size_t nimg = 0, nblob = 0, nlayer = 0, cap = 0;
    char **blobs = NULL, **layers = NULL;
    char dir[PATH_MAX + 16];
    int rc = -1;

    *freed = 0;
    /* upgrade our shared lock: fails while another process holds it */
    if (flock(cs->lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return 0;
        return err_sys(e, ERR_IO, errno, "cannot lock the store");
    }
    if (cstore_image_list(cs, &imgs, &nimg, e) < 0)
        goto out;
    for (size_t i = 0; i < nimg; i++) {
        for (size_t j = 0; imgs[i].blobs[j]; j++)
            cap++;
        for (size_t j = 0; imgs[i].layers[j]; j++)
            cap++;
    }
    blobs = calloc(cap + 1, sizeof(*blobs));
    layers = calloc(cap + 1, sizeof(*layers));
    if (!blobs || !layers) {
        err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nimg; i++) {
        for (size_t j = 0; imgs[i].blobs[j]; j++)
            blobs[nblob++] = imgs[i].blobs[j];
        for (size_t j = 0; imgs[i].layers[j]; j++)
            layers[nlayer++] = imgs[i].layers[j];
    }
    qsort(blobs, nblob, sizeof(*blobs), str_cmp);
    qsort(layers, nlayer, sizeof(*layers), str_cmp);
    snprintf(dir, sizeof(dir), "%s/blobs/sha256", cs->root);
    if (sweep(dir, blobs, nblob, freed, e) < 0)
        goto out;
    snprintf(dir, sizeof(dir), "%s/layers", cs->root);
    if (sweep(dir, layers, nlayer, freed, e) < 0)
        goto out;
    /* nobody else holds the lock: whatever is in tmp/ is left over */
    snprintf(dir, sizeof(dir), "%s/tmp", cs->root);
    if (sweep(dir, NULL, 0, &(size_t){0}, e) < 0)
        goto out;
    rc = 1;
out:
    free(blobs);
    free(layers);
    cstore_image_list_free(imgs, nimg);
    flock(cs->lockfd, LOCK_SH);
    return rc;
}
