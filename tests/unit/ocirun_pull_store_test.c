/* ocirun_pull_store_test.c - the content store: verified writes, nothing
 * half-stored, image records, gc of unshared content. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/ocirun-lite/cstore.h"
#include "tools/ocirun-lite/fsutil.h"

#include "common/banned.h"

static char g_root[64];
static struct cstore *g_cs;

static void
setup(void)
{
    struct err e;
    snprintf(g_root, sizeof(g_root), "/tmp/ocirun-store-XXXXXX");
    cr_assert(mkdtemp(g_root) != NULL);
    g_cs = cstore_open(g_root, &e);
    cr_assert(g_cs != NULL, "%s", e.msg);
}

static void
teardown(void)
{
    cstore_close(g_cs);
    g_cs = NULL;
    fsutil_rm_rf_at(AT_FDCWD, g_root, NULL);
}

static size_t
count_dir(const char *sub)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", g_root, sub);
    DIR *d = opendir(p);
    struct dirent *de;
    size_t n = 0;
    cr_assert(d != NULL);
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

Test(cstore, streamed_blob_verified_and_stored, .init = setup, .fini = teardown)
{
    char d[CSTORE_DIGEST_LEN];
    struct err e;
    cstore_sha256("hello world", 11, d);
    struct cstore_writer *w = cstore_writer_new(g_cs, d, 11, &e);
    cr_assert(w != NULL);
    cr_assert_eq(cstore_writer_write(w, "hello ", 6, &e), 0);
    cr_assert_eq(cstore_writer_write(w, "world", 5, &e), 0);
    cr_assert_eq(cstore_writer_commit(w, &e), 0, "%s", e.msg);
    cr_assert_eq(cstore_blob_has(g_cs, d, 11), 1);
    cr_assert_eq(cstore_blob_has(g_cs, d, 12), 0);
    char *data;
    size_t len;
    cr_assert_eq(cstore_blob_read(g_cs, d, 100, &data, &len, &e), 0);
    cr_assert_eq(len, 11);
    cr_assert_str_eq(data, "hello world");
    free(data);
    cr_assert_eq(cstore_blob_read(g_cs, d, 5, &data, &len, &e), -1);
    cr_assert_eq(e.code, ERR_TOO_LARGE);
    cr_assert_eq(count_dir("tmp"), 0);
}

Test(cstore, digest_mismatch_stores_nothing, .init = setup, .fini = teardown)
{
    char d[CSTORE_DIGEST_LEN];
    struct err e;
    cstore_sha256("expected", 8, d);
    struct cstore_writer *w = cstore_writer_new(g_cs, d, 8, &e);
    cr_assert(w != NULL);
    cr_assert_eq(cstore_writer_write(w, "Expected", 8, &e), 0);
    err_clear(&e);
    cr_assert_eq(cstore_writer_commit(w, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    cr_assert(strstr(e.msg, d) != NULL, "message must name the digest: %s", e.msg);
    cr_assert_eq(cstore_blob_has(g_cs, d, -1), 0);
    cr_assert_eq(count_dir("blobs/sha256"), 0);
    cr_assert_eq(count_dir("tmp"), 0, "temporary file left behind");
}

Test(cstore, oversize_and_short_blobs_refused, .init = setup, .fini = teardown)
{
    char d[CSTORE_DIGEST_LEN];
    struct err e;
    cstore_sha256("abc", 3, d);
    struct cstore_writer *w = cstore_writer_new(g_cs, d, 2, &e);
    cr_assert(w != NULL);
    cr_assert_eq(cstore_writer_write(w, "abc", 3, &e), -1);
    cr_assert_eq(e.code, ERR_SIZE_INVALID);
    cstore_writer_abort(w);
    w = cstore_writer_new(g_cs, d, 4, &e);
    cr_assert_eq(cstore_writer_write(w, "abc", 3, &e), 0);
    cr_assert_eq(cstore_writer_commit(w, &e), -1);
    cr_assert_eq(e.code, ERR_SIZE_INVALID);
    cr_assert_eq(count_dir("blobs/sha256"), 0);
    cr_assert_eq(count_dir("tmp"), 0);
}

Test(cstore, reset_restarts_the_hash, .init = setup, .fini = teardown)
{
    char d[CSTORE_DIGEST_LEN];
    struct err e;
    cstore_sha256("good", 4, d);
    struct cstore_writer *w = cstore_writer_new(g_cs, d, 4, &e);
    cr_assert_eq(cstore_writer_write(w, "ba", 2, &e), 0);
    cr_assert_eq(cstore_writer_reset(w, &e), 0);
    cr_assert_eq(cstore_writer_write(w, "good", 4, &e), 0);
    cr_assert_eq(cstore_writer_commit(w, &e), 0, "%s", e.msg);
}

Test(cstore, corrupted_stored_blob_detected_on_read, .init = setup, .fini = teardown)
{
    char d[CSTORE_DIGEST_LEN], path[256];
    struct err e;
    cr_assert_eq(cstore_blob_put(g_cs, NULL, "{\"a\":1}", 7, d, &e), 0);
    cr_assert_eq(cstore_blob_path(g_cs, d, path, sizeof(path), &e), 0);
    FILE *f = fopen(path, "w");
    fputs("{\"a\":2}", f);
    fclose(f);
    char *data;
    size_t len;
    cr_assert_eq(cstore_blob_read(g_cs, d, 100, &data, &len, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    cr_assert_eq(
        cstore_blob_put(g_cs,
                        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                        "x", 1, NULL, &e),
        -1);
    cr_assert_eq(cstore_blob_path(g_cs, "sha256:../../etc", path, sizeof(path), &e), -1);
}

static void
put_image(const char *ref, const char *const *blobs, const char *const *layers)
{
    struct cstore_image img;
    struct err e;
    size_t nb = 0, nl = 0;
    memset(&img, 0, sizeof(img));
    snprintf(img.ref, sizeof(img.ref), "%s", ref);
    snprintf(img.digest, sizeof(img.digest), "%s", blobs[0]);
    snprintf(img.manifest, sizeof(img.manifest), "%s", blobs[0]);
    snprintf(img.config, sizeof(img.config), "%s", blobs[1]);
    snprintf(img.platform, sizeof(img.platform), "linux/amd64");
    img.size = 42;
    img.created = 1700000000;
    while (blobs[nb])
        nb++;
    while (layers[nl])
        nl++;
    img.blobs = calloc(nb + 1, sizeof(char *));
    img.layers = calloc(nl + 1, sizeof(char *));
    for (size_t i = 0; i < nb; i++)
        img.blobs[i] = strdup(blobs[i]);
    for (size_t i = 0; i < nl; i++)
        img.layers[i] = strdup(layers[i]);
    cr_assert_eq(cstore_image_put(g_cs, &img, &e), 0, "%s", e.msg);
    cstore_image_release(&img);
}

static void
blob(const char *text, char out[CSTORE_DIGEST_LEN])
{
    struct err e;
    cr_assert_eq(cstore_blob_put(g_cs, NULL, text, strlen(text), out, &e), 0);
}

static void
layer_dir(const char *diff)
{
    char p[256];
    struct err e;
    snprintf(p, sizeof(p), "%s/layers/%s/fs", g_root, cstore_digest_hex(diff));
    cr_assert_eq(fsutil_mkdir_p(p, &e), 0);
}

Test(cstore, records_roundtrip_and_list_sorted, .init = setup, .fini = teardown)
{
    char m[CSTORE_DIGEST_LEN], c[CSTORE_DIGEST_LEN], l[CSTORE_DIGEST_LEN];
    struct cstore_image img, *all;
    size_t n;
    struct err e;
    blob("m", m);
    blob("c", c);
    blob("l", l);
    const char *b[] = {m, c, l, NULL};
    const char *ls[] = {l, NULL};
    put_image("r.io/z:1", b, ls);
    put_image("r.io/a:1", b, ls);
    cr_assert_eq(cstore_image_get(g_cs, "r.io/a:1", &img, &e), 1);
    cr_assert_str_eq(img.config, c);
    cr_assert_str_eq(img.platform, "linux/amd64");
    cr_assert_eq(img.size, 42);
    cr_assert_str_eq(img.blobs[2], l);
    cr_assert_null(img.blobs[3]);
    cr_assert_str_eq(img.layers[0], l);
    cstore_image_release(&img);
    cr_assert_eq(cstore_image_get(g_cs, "r.io/none:1", &img, &e), 0);
    cr_assert_eq(cstore_image_list(g_cs, &all, &n, &e), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(all[0].ref, "r.io/a:1");
    cr_assert_str_eq(all[1].ref, "r.io/z:1");
    cstore_image_list_free(all, n);
    cr_assert_eq(cstore_image_delete(g_cs, "r.io/a:1", &e), 1);
    cr_assert_eq(cstore_image_delete(g_cs, "r.io/a:1", &e), 0);
}

Test(cstore, gc_keeps_shared_content_and_drops_the_rest, .init = setup, .fini = teardown)
{
    char m1[CSTORE_DIGEST_LEN], c1[CSTORE_DIGEST_LEN], base[CSTORE_DIGEST_LEN];
    char m2[CSTORE_DIGEST_LEN], c2[CSTORE_DIGEST_LEN], top[CSTORE_DIGEST_LEN];
    char stray[CSTORE_DIGEST_LEN];
    struct err e;
    size_t freed;
    blob("m1", m1);
    blob("c1", c1);
    blob("base", base);
    blob("m2", m2);
    blob("c2", c2);
    blob("top", top);
    blob("stray", stray);
    /* diff_ids reuse the blob digests here for brevity */
    layer_dir(base);
    layer_dir(top);
    layer_dir(stray);
    const char *b1[] = {m1, c1, base, NULL}, *l1[] = {base, NULL};
    const char *b2[] = {m2, c2, base, top, NULL}, *l2[] = {base, top, NULL};
    put_image("r/one:1", b1, l1);
    put_image("r/two:1", b2, l2);
    cr_assert_eq(cstore_gc(g_cs, &freed, &e), 1, "%s", e.msg);
    cr_assert_eq(freed, 2); /* the stray blob and the stray layer */
    cr_assert_eq(cstore_blob_has(g_cs, stray, -1), 0);
    cr_assert_eq(count_dir("blobs/sha256"), 6);
    cr_assert_eq(count_dir("layers"), 2);
    /* removing image two frees m2 c2 top (blob + layer), keeps the base */
    cr_assert_eq(cstore_image_delete(g_cs, "r/two:1", &e), 1);
    cr_assert_eq(cstore_gc(g_cs, &freed, &e), 1);
    cr_assert_eq(freed, 4);
    cr_assert_eq(cstore_blob_has(g_cs, base, -1), 1);
    cr_assert_eq(cstore_blob_has(g_cs, top, -1), 0);
    cr_assert_eq(count_dir("layers"), 1);
}

Test(cstore, gc_waits_while_another_user_holds_the_store, .init = setup, .fini = teardown)
{
    char s[CSTORE_DIGEST_LEN];
    struct err e;
    size_t freed = 99;
    blob("unused", s);
    struct cstore *other = cstore_open(g_root, &e);
    cr_assert(other != NULL);
    cr_assert_eq(cstore_gc(g_cs, &freed, &e), 0);
    cr_assert_eq(freed, 0);
    cr_assert_eq(cstore_blob_has(g_cs, s, -1), 1, "gc removed content while the store was shared");
    cstore_close(other);
    cr_assert_eq(cstore_gc(g_cs, &freed, &e), 1);
    cr_assert_eq(cstore_blob_has(g_cs, s, -1), 0);
}

/* cstore_sha256 hashes small inputs without OpenSSL: it must agree with EVP
 * for every length around the 55/56/64-byte padding boundaries and across the
 * 64 KiB switch to EVP, else stored blobs and record names would not match */
static void
evp_hex(const void *data, size_t len, char out[CSTORE_DIGEST_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    cr_assert_eq(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
    memcpy(out, "sha256:", 7);
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
}

Test(cstore, sha256_agrees_with_openssl_at_every_length)
{
    size_t max = 64 * 1024 + 200;
    unsigned char *buf = malloc(max);
    char a[CSTORE_DIGEST_LEN], b[CSTORE_DIGEST_LEN];
    cr_assert(buf != NULL);
    for (size_t i = 0; i < max; i++)
        buf[i] = (unsigned char)(i * 131 + (i >> 8));
    cstore_sha256("abc", 3, a);
    cr_assert_str_eq(a, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cstore_sha256("", 0, a);
    cr_assert_str_eq(a, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    for (size_t n = 0; n <= 300; n++) {
        cstore_sha256(buf, n, a);
        evp_hex(buf, n, b);
        cr_assert_str_eq(a, b, "length %zu", n);
    }
    for (size_t n = 64 * 1024 - 70; n < max; n += 7) {
        cstore_sha256(buf, n, a);
        evp_hex(buf, n, b);
        cr_assert_str_eq(a, b, "length %zu", n);
    }
    free(buf);
}

/* record files stay named by the SHA-256 of the reference */
Test(cstore, record_file_named_by_sha256_of_the_ref, .init = setup, .fini = teardown)
{
    char m[CSTORE_DIGEST_LEN], d[CSTORE_DIGEST_LEN], p[512];
    struct stat st;
    blob("m2", m);
    const char *b[] = {m, m, NULL};
    const char *ls[] = {NULL};
    put_image("r.io/x/y:tag", b, ls);
    evp_hex("r.io/x/y:tag", 12, d);
    snprintf(p, sizeof(p), "%s/images/%s.json", g_root, d + 7);
    cr_assert_eq(stat(p, &st), 0, "no record file %s", p);
}
