/* storage_test.c - blobs across repositories, manifests, tags, catalog,
 * referrers, recovery on open and the root lock; lost blob files, annotations
 * kept out of the hot tables, descriptor limits. */
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <time.h>

#include "storage_testutil.h"
/* white-box: statement run counters of the handle */
#include "storage/metadb.h"

TU_STORE_SUITE(storage, 0);

static struct digest
put(const char *repo, const char *data)
{
    return tu_put(T.h, repo, data);
}

static char *
image_manifest(const struct digest *cfg, size_t cfg_size, const struct digest *layer,
               size_t layer_size, const char *extra)
{
    char c[DIGEST_STR_MAX], l[DIGEST_STR_MAX];
    char *out = NULL;
    cr_assert(asprintf(&out,
                       "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
                       "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                       "\"digest\":\"%s\",\"size\":%zu},"
                       "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
                       "\"digest\":\"%s\",\"size\":%zu}]%s}",
                       digest_format(cfg, c), cfg_size, digest_format(layer, l), layer_size,
                       extra ? extra : "") > 0);
    return out;
}

/* a pushed image (config + layer + manifest) in repo; returns the manifest digest */
static struct digest
push_image(const char *repo, const char *tag, const char *seed, const char *extra)
{
    char cfg[64], layer[64];
    snprintf(cfg, sizeof(cfg), "{\"cfg\":\"%s\"}", seed);
    snprintf(layer, sizeof(layer), "layer-%s", seed);
    struct digest dc = put(repo, cfg), dl = put(repo, layer);
    char *m = image_manifest(&dc, strlen(cfg), &dl, strlen(layer), extra);
    struct manifest_meta meta;
    struct err e = {0};
    const char *tags[1] = {tag};
    cr_assert_eq(storage_manifest_put(T.h, repo, m, strlen(m), MT_OCI_MANIFEST, NULL, tags,
                                      tag ? 1 : 0, &meta, NULL, NULL, &e),
                 0, "manifest_put: %s", e.msg);
    cr_assert_eq(meta.size, strlen(m));
    free(m);
    return meta.digest;
}

/* ---- blobs ---- */

Test(storage, blob_put_then_open_reads_back)
{
    struct digest d = put("a/b", "hello");
    int fd = -1;
    uint64_t size = 0;
    struct err e = {0};
    cr_assert_eq(tu_blob_open_fd(T.h, "a/b", &d, &fd, &size, &e), 0, "%s", e.msg);
    cr_assert_eq(size, 5);
    size_t n;
    char *buf = tu_read_fd(fd, &n);
    cr_assert_str_eq(buf, "hello");
    free(buf);
    close(fd);
    cr_assert(tu_blob_file_exists(T.root, &d));
    /* HEAD: fd NULL */
    cr_assert_eq(storage_blob_open(T.h, "a/b", &d, NULL, &size, &e), 0);
}

Test(storage, blob_is_per_repository)
{
    struct digest d = put("repo-a", "shared");
    struct err e = {0};
    cr_assert_eq(storage_blob_open(T.h, "repo-b", &d, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    /* the same content pushed to B is stored once */
    struct digest d2 = put("repo-b", "shared");
    cr_assert(digest_equal(&d, &d2));
    cr_assert_eq(storage_blob_open(T.h, "repo-b", &d, NULL, NULL, &e), 0);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 1);
}

Test(storage, blob_unknown_digest)
{
    struct digest d;
    digest_of(DIGEST_SHA256, "nope", 4, &d);
    struct err e = {0};
    int fd = 1234;
    cr_assert_eq(tu_blob_open_fd(T.h, "r", &d, &fd, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    cr_assert_eq(fd, 1234, "fd untouched on error");
}

Test(storage, blob_delete_unlinks_only_that_repo)
{
    struct digest d = put("one", "data");
    put("two", "data");
    struct err e = {0};
    cr_assert_eq(storage_blob_delete(T.h, "one", &d, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_open(T.h, "one", &d, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    cr_assert_eq(storage_blob_open(T.h, "two", &d, NULL, NULL, &e), 0);
    cr_assert_eq(storage_blob_delete(T.h, "one", &d, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    cr_assert(tu_blob_file_exists(T.root, &d), "the file stays for gc");
}

Test(storage, blob_mount_from_named_and_any_repo)
{
    struct digest d = put("src", "mountme");
    struct err e = {0};
    cr_assert_eq(storage_blob_mount(T.h, "dst", "other", &d, &e), 0, "not in 'other'");
    cr_assert_eq(storage_blob_open(T.h, "dst", &d, NULL, NULL, &e), -1);
    cr_assert_eq(storage_blob_mount(T.h, "dst", "src", &d, &e), 1, "%s", e.msg);
    uint64_t size = 0;
    cr_assert_eq(storage_blob_open(T.h, "dst", &d, NULL, &size, &e), 0);
    cr_assert_eq(size, 7);
    cr_assert_eq(storage_blob_mount(T.h, "dst", "src", &d, &e), 1, "already linked");
    cr_assert_eq(storage_blob_mount(T.h, "dst2", NULL, &d, &e), 1, "automatic mount");
    cr_assert_eq(storage_blob_open(T.h, "dst2", &d, NULL, NULL, &e), 0);
    struct digest none;
    digest_of(DIGEST_SHA256, "absent", 6, &none);
    cr_assert_eq(storage_blob_mount(T.h, "dst", NULL, &none, &e), 0);
    cr_assert_eq(storage_blob_mount(T.h, "dst", "Bad..Name", &d, &e), 0);
    cr_assert_eq(storage_blob_mount(T.h, "Bad", "src", &d, &e), -1);
    cr_assert_eq(e.code, ERR_NAME_INVALID);
}

Test(storage, blob_put_rejects_bad_repo)
{
    struct digest d;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "../x", "a", 1, DIGEST_SHA256, &d, &e), -1);
    cr_assert_eq(e.code, ERR_NAME_INVALID);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 0);
}

Test(storage, blob_put_sha512_layout)
{
    struct digest d;
    struct err e = {0};
    cr_assert_eq(storage_blob_put(T.h, "r", "x", 1, DIGEST_SHA512, &d, &e), 0);
    cr_assert_eq(d.algo, DIGEST_SHA512);
    char p[512];
    snprintf(p, sizeof(p), "%s/blobs/sha512/%c%c/%s", T.root, d.hex[0], d.hex[1], d.hex);
    cr_assert_eq(access(p, F_OK), 0);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), 0);
}

/* ---- manifests ---- */

Test(storage, manifest_put_get_by_tag_and_digest)
{
    struct digest md = push_image("app", "v1", "one", NULL);
    struct manifest_meta meta;
    int fd = -1;
    struct err e = {0};
    cr_assert_eq(tu_manifest_get_fd(T.h, "app", "v1", &meta, &fd, &e), 0, "%s", e.msg);
    cr_assert(digest_equal(&meta.digest, &md));
    cr_assert_str_eq(meta.media_type, MT_OCI_MANIFEST);
    size_t n;
    char *body = tu_read_fd(fd, &n);
    close(fd);
    cr_assert_eq(n, meta.size);
    struct digest check;
    digest_of(DIGEST_SHA256, body, n, &check);
    cr_assert(digest_equal(&check, &md));
    free(body);
    char ds[DIGEST_STR_MAX];
    cr_assert_eq(storage_manifest_get(T.h, "app", digest_format(&md, ds), &meta, NULL, &e), 0);
    cr_assert_eq(storage_manifest_get(T.h, "other", "v1", &meta, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
    cr_assert_eq(storage_manifest_get(T.h, "app", "v2", &meta, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
    cr_assert_eq(storage_manifest_get(T.h, "app", "sha256:zz", &meta, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    /* the manifest is not a blob of the repository */
    cr_assert_eq(storage_blob_open(T.h, "app", &md, NULL, NULL, &e), -1);
}

Test(storage, manifest_put_missing_blob_is_manifest_blob_unknown)
{
    struct digest dc = put("r", "{}"), missing;
    digest_of(DIGEST_SHA256, "missing", 7, &missing);
    char *m = image_manifest(&dc, 2, &missing, 7, NULL);
    struct err e = {0};
    const char *tags[] = {"t"};
    cr_assert_eq(
        storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, tags, 1, NULL, NULL, NULL, &e),
        -1);
    cr_assert_eq(e.code, ERR_MANIFEST_BLOB_UNKNOWN);
    struct manifest_meta meta;
    cr_assert_eq(storage_manifest_get(T.h, "r", "t", &meta, NULL, &e), -1);
    /* a blob in another repository does not count */
    put("elsewhere", "missing");
    cr_assert_eq(
        storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, tags, 1, NULL, NULL, NULL, &e),
        -1);
    cr_assert_eq(e.code, ERR_MANIFEST_BLOB_UNKNOWN);
    put("r", "missing");
    cr_assert_eq(
        storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, tags, 1, NULL, NULL, NULL, &e), 0,
        "%s", e.msg);
    free(m);
}

/* a blob never pushed is an ordinary client mistake, not a lost file: the
 * refusal reads, it commits no repair transaction */
Test(storage, manifest_naming_a_never_pushed_blob_writes_nothing)
{
    struct digest dc = put("r", "{}"), missing;
    digest_of(DIGEST_SHA256, "never pushed", 12, &missing);
    char *m = image_manifest(&dc, 2, &missing, 12, NULL);
    struct err e = {0};
    unsigned long c0 = __atomic_load_n(&T.st->meta->durable_commits, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, NULL, 0, NULL, NULL,
                                          NULL, &e),
                     -1);
        cr_assert_eq(e.code, ERR_MANIFEST_BLOB_UNKNOWN, "%d %s", e.code, e.msg);
    }
    cr_assert_eq(__atomic_load_n(&T.st->meta->durable_commits, __ATOMIC_RELAXED), c0,
                 "an unknown blob committed a write transaction");
    free(m);
}

Test(storage, manifest_put_checks_reference_digest)
{
    struct digest dc = put("r", "{}"), dl = put("r", "L");
    char *m = image_manifest(&dc, 2, &dl, 1, NULL);
    struct digest wrong;
    digest_of(DIGEST_SHA256, "x", 1, &wrong);
    struct err e = {0};
    cr_assert_eq(
        storage_manifest_put(T.h, "r", m, strlen(m), NULL, &wrong, NULL, 0, NULL, NULL, NULL, &e),
        -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    struct digest right;
    digest_of(DIGEST_SHA512, m, strlen(m), &right);
    struct manifest_meta meta;
    cr_assert_eq(
        storage_manifest_put(T.h, "r", m, strlen(m), NULL, &right, NULL, 0, &meta, NULL, NULL, &e),
        0, "sha512 reference: %s", e.msg);
    cr_assert(digest_equal(&meta.digest, &right));
    char ds[DIGEST_STR_MAX];
    cr_assert_eq(storage_manifest_get(T.h, "r", digest_format(&right, ds), &meta, NULL, &e), 0);
    free(m);
}

Test(storage, manifest_put_too_large_and_bad_tags)
{
    struct err e = {0};
    size_t big = 5 * 1024 * 1024;
    char *body = calloc(1, big);
    cr_assert_eq(
        storage_manifest_put(T.h, "r", body, big, NULL, NULL, NULL, 0, NULL, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_TOO_LARGE);
    free(body);
    const char *tags[] = {"../../x"};
    cr_assert_eq(storage_manifest_put(T.h, "r", "{}", 2, NULL, NULL, tags, 1, NULL, NULL, NULL, &e),
                 -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
    cr_assert_eq(
        storage_manifest_put(T.h, "r", "nope", 4, NULL, NULL, NULL, 0, NULL, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
}

Test(storage, manifest_tag_moves_and_delete_by_tag_keeps_manifest)
{
    struct digest m1 = push_image("r", "latest", "1", NULL);
    struct digest m2 = push_image("r", "latest", "2", NULL);
    struct manifest_meta meta;
    struct err e = {0};
    cr_assert_eq(storage_manifest_get(T.h, "r", "latest", &meta, NULL, &e), 0);
    cr_assert(digest_equal(&meta.digest, &m2));
    cr_assert_eq(storage_manifest_delete(T.h, "r", "latest", &e), 0, "%s", e.msg);
    cr_assert_eq(storage_manifest_get(T.h, "r", "latest", &meta, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
    char ds[DIGEST_STR_MAX];
    cr_assert_eq(storage_manifest_get(T.h, "r", digest_format(&m2, ds), &meta, NULL, &e), 0);
    cr_assert_eq(storage_manifest_get(T.h, "r", digest_format(&m1, ds), &meta, NULL, &e), 0);
    cr_assert_eq(storage_manifest_delete(T.h, "r", "latest", &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
}

Test(storage, manifest_delete_by_digest_removes_its_tags)
{
    struct digest m = push_image("r", "a", "1", NULL);
    struct err e = {0};
    char ds[DIGEST_STR_MAX];
    digest_format(&m, ds);
    /* a second tag for the same manifest */
    struct manifest_meta meta;
    int fd;
    cr_assert_eq(tu_manifest_get_fd(T.h, "r", ds, &meta, &fd, &e), 0);
    size_t n;
    char *body = tu_read_fd(fd, &n);
    close(fd);
    const char *tags[] = {"b", "c"};
    cr_assert_eq(
        storage_manifest_put(T.h, "r", body, n, MT_OCI_MANIFEST, &m, tags, 2, NULL, NULL, NULL, &e),
        0, "%s", e.msg);
    free(body);
    cr_assert_eq(storage_manifest_get(T.h, "r", "c", &meta, NULL, &e), 0);
    cr_assert_eq(storage_manifest_delete(T.h, "r", ds, &e), 0, "%s", e.msg);
    const char *all[] = {"a", "b", "c", ds};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(storage_manifest_get(T.h, "r", all[i], &meta, NULL, &e), -1, "%s", all[i]);
        cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
    }
    cr_assert_eq(storage_manifest_delete(T.h, "r", ds, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
    cr_assert_eq(storage_manifest_delete(T.h, "r", "sha256:bad", &e), -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
}

static char *
index_of(const struct digest *const *children, size_t n, const char *mt, const char *child_mt)
{
    size_t cap = 256 + n * 300;
    char *out = malloc(cap);
    size_t off =
        (size_t)snprintf(out, cap, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[", mt);
    for (size_t i = 0; i < n; i++) {
        char ds[DIGEST_STR_MAX];
        off += (size_t)snprintf(out + off, cap - off,
                                "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":10,"
                                "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}",
                                i ? "," : "", child_mt, digest_format(children[i], ds));
    }
    snprintf(out + off, cap - off, "]}");
    return out;
}

Test(storage, index_requires_child_manifests_in_repo)
{
    struct digest c1 = push_image("r", NULL, "1", NULL);
    struct digest c2 = push_image("other", NULL, "2", NULL);
    const struct digest *kids[] = {&c1, &c2};
    char *idx = index_of(kids, 2, MT_OCI_INDEX, MT_OCI_MANIFEST);
    struct err e = {0};
    const char *tags[] = {"multi"};
    cr_assert_eq(storage_manifest_put(T.h, "r", idx, strlen(idx), MT_OCI_INDEX, NULL, tags, 1, NULL,
                                      NULL, NULL, &e),
                 -1);
    cr_assert_eq(e.code, ERR_MANIFEST_BLOB_UNKNOWN);
    free(idx);
    idx = index_of(kids, 1, MT_OCI_INDEX, MT_OCI_MANIFEST);
    struct manifest_meta meta;
    cr_assert_eq(storage_manifest_put(T.h, "r", idx, strlen(idx), MT_OCI_INDEX, NULL, tags, 1,
                                      &meta, NULL, NULL, &e),
                 0, "%s", e.msg);
    cr_assert_str_eq(meta.media_type, MT_OCI_INDEX);
    free(idx);
    cr_assert_eq(storage_manifest_get(T.h, "r", "multi", &meta, NULL, &e), 0);
    cr_assert_str_eq(meta.media_type, MT_OCI_INDEX);
}

Test(storage, docker_types_round_trip)
{
    struct digest dc = put("d", "{\"c\":1}"), dl = put("d", "layer");
    char c[DIGEST_STR_MAX], l[DIGEST_STR_MAX];
    char *m = NULL;
    cr_assert(
        asprintf(&m,
                 "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST "\","
                 "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
                 "\"digest\":\"%s\",\"size\":7},\"layers\":[{\"mediaType\":"
                 "\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"%s\","
                 "\"size\":5}]}",
                 digest_format(&dc, c), digest_format(&dl, l)) > 0);
    struct manifest_meta meta;
    struct err e = {0};
    const char *tags[] = {"img"};
    cr_assert_eq(storage_manifest_put(T.h, "d", m, strlen(m), MT_DOCKER_MANIFEST, NULL, tags, 1,
                                      &meta, NULL, NULL, &e),
                 0, "%s", e.msg);
    free(m);
    const struct digest *kids[] = {&meta.digest};
    char *list = index_of(kids, 1, MT_DOCKER_LIST, MT_DOCKER_MANIFEST);
    const char *ltags[] = {"list"};
    cr_assert_eq(storage_manifest_put(T.h, "d", list, strlen(list), MT_DOCKER_LIST, NULL, ltags, 1,
                                      &meta, NULL, NULL, &e),
                 0, "%s", e.msg);
    free(list);
    cr_assert_eq(storage_manifest_get(T.h, "d", "list", &meta, NULL, &e), 0);
    cr_assert_str_eq(meta.media_type, MT_DOCKER_LIST);
    cr_assert_eq(storage_manifest_get(T.h, "d", "img", &meta, NULL, &e), 0);
    cr_assert_str_eq(meta.media_type, MT_DOCKER_MANIFEST);
}

Test(storage, foreign_layers_need_not_exist)
{
    struct digest dc = put("f", "{}"), missing;
    digest_of(DIGEST_SHA256, "windows-base", 12, &missing);
    char c[DIGEST_STR_MAX], l[DIGEST_STR_MAX];
    char *m = NULL;
    cr_assert(asprintf(&m,
                       "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
                       "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                       "\"digest\":\"%s\",\"size\":2},\"layers\":[{\"mediaType\":"
                       "\"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip\","
                       "\"digest\":\"%s\",\"size\":12,\"urls\":[\"https://example.com/l\"]}]}",
                       digest_format(&dc, c), digest_format(&missing, l)) > 0);
    struct err e = {0};
    cr_assert_eq(
        storage_manifest_put(T.h, "f", m, strlen(m), NULL, NULL, NULL, 0, NULL, NULL, NULL, &e), 0,
        "%s", e.msg);
    free(m);
}

/* ---- tags and catalog paging ---- */

struct names {
    char v[64][64];
    int n;
    int stop_after;
};

static int
collect(void *arg, const char *name)
{
    struct names *ns = arg;
    snprintf(ns->v[ns->n++], 64, "%s", name);
    return ns->stop_after && ns->n >= ns->stop_after;
}

Test(storage, tags_list_byte_order_and_paging)
{
    push_image("r", "b", "1", NULL);
    const char *more_tags[] = {"a", "B", "_z", "a.1", "a-1", "c"};
    struct manifest_meta meta;
    struct err e = {0};
    cr_assert_eq(storage_manifest_get(T.h, "r", "b", &meta, NULL, &e), 0);
    int fd;
    char ds[DIGEST_STR_MAX];
    cr_assert_eq(tu_manifest_get_fd(T.h, "r", digest_format(&meta.digest, ds), NULL, &fd, &e), 0);
    size_t n;
    char *body = tu_read_fd(fd, &n);
    close(fd);
    cr_assert_eq(
        storage_manifest_put(T.h, "r", body, n, NULL, NULL, more_tags, 6, NULL, NULL, NULL, &e), 0,
        "%s", e.msg);
    free(body);
    /* byte order: 'B'(0x42) < '_'(0x5f) < 'a' ; "a-1" < "a.1" */
    const char *want[] = {"B", "_z", "a", "a-1", "a.1", "b", "c"};
    struct names ns = {0};
    int more = -1;
    cr_assert_eq(storage_tags_list(T.h, "r", NULL, -1, collect, &ns, &more, &e), 0, "%s", e.msg);
    cr_assert_eq(ns.n, 7);
    cr_assert_eq(more, 0);
    for (int i = 0; i < 7; i++)
        cr_assert_str_eq(ns.v[i], want[i]);
    /* pages of 3 */
    memset(&ns, 0, sizeof(ns));
    cr_assert_eq(storage_tags_list(T.h, "r", NULL, 3, collect, &ns, &more, &e), 0);
    cr_assert_eq(ns.n, 3);
    cr_assert_eq(more, 1);
    cr_assert_str_eq(ns.v[2], "a");
    struct names ns2 = {0};
    cr_assert_eq(storage_tags_list(T.h, "r", "a", 3, collect, &ns2, &more, &e), 0);
    cr_assert_eq(ns2.n, 3);
    cr_assert_str_eq(ns2.v[0], "a-1");
    cr_assert_eq(more, 1);
    struct names ns3 = {0};
    cr_assert_eq(storage_tags_list(T.h, "r", "b", 3, collect, &ns3, &more, &e), 0);
    cr_assert_eq(ns3.n, 1);
    cr_assert_str_eq(ns3.v[0], "c");
    cr_assert_eq(more, 0);
    /* exactly at the end: no more */
    struct names ns4 = {0};
    cr_assert_eq(storage_tags_list(T.h, "r", "a.1", 2, collect, &ns4, &more, &e), 0);
    cr_assert_eq(ns4.n, 2);
    cr_assert_eq(more, 0);
    /* n = 0 */
    struct names ns5 = {0};
    cr_assert_eq(storage_tags_list(T.h, "r", NULL, 0, collect, &ns5, &more, &e), 0);
    cr_assert_eq(ns5.n, 0);
    cr_assert_eq(more, 1);
    /* past the end: empty, not an error */
    struct names ns6 = {0};
    cr_assert_eq(storage_tags_list(T.h, "r", "zzz", 5, collect, &ns6, &more, &e), 0);
    cr_assert_eq(ns6.n, 0);
    /* a huge n is "all" */
    struct names ns8 = {0};
    cr_assert_eq(storage_tags_list(T.h, "r", NULL, LONG_MAX, collect, &ns8, &more, &e), 0);
    cr_assert_eq(ns8.n, 7);
    cr_assert_eq(more, 0);
    /* the callback can stop early */
    struct names ns7 = {.stop_after = 2};
    cr_assert_eq(storage_tags_list(T.h, "r", NULL, -1, collect, &ns7, &more, &e), 0);
    cr_assert_eq(ns7.n, 2);
}

Test(storage, tags_list_unknown_repo)
{
    struct names ns = {0};
    int more;
    struct err e = {0};
    cr_assert_eq(storage_tags_list(T.h, "nope", NULL, -1, collect, &ns, &more, &e), -1);
    cr_assert_eq(e.code, ERR_NAME_UNKNOWN);
    /* a repo with only blobs exists (the catalog lists it): an empty list */
    put("blobsonly", "x");
    cr_assert_eq(storage_tags_list(T.h, "blobsonly", NULL, -1, collect, &ns, &more, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(ns.n, 0);
    /* a repo with an untagged manifest: empty list */
    push_image("untagged", NULL, "1", NULL);
    cr_assert_eq(storage_tags_list(T.h, "untagged", NULL, -1, collect, &ns, &more, &e), 0);
    cr_assert_eq(ns.n, 0);
}

Test(storage, catalog_lists_repos_with_blobs_or_manifests)
{
    put("zeta", "1");
    push_image("alpha/one", "t", "1", NULL);
    put("beta", "2");
    char uuid[UPLOAD_ID_LEN + 1];
    struct err e = {0};
    struct digest bd;
    cr_assert_eq(storage_blob_put(T.h, "Beta-not-valid", "3", 1, DIGEST_SHA256, &bd, &e), -1);
    cr_assert_eq(storage_upload_start(T.h, "uploadonly", DIGEST_SHA256, uuid, &e), 0);
    struct names ns = {0};
    int more;
    cr_assert_eq(storage_catalog(T.h, NULL, -1, collect, &ns, &more, &e), 0, "%s", e.msg);
    cr_assert_eq(ns.n, 3);
    cr_assert_str_eq(ns.v[0], "alpha/one");
    cr_assert_str_eq(ns.v[1], "beta");
    cr_assert_str_eq(ns.v[2], "zeta");
    cr_assert_eq(more, 0);
    struct names p1 = {0}, p2 = {0};
    cr_assert_eq(storage_catalog(T.h, NULL, 2, collect, &p1, &more, &e), 0);
    cr_assert_eq(p1.n, 2);
    cr_assert_eq(more, 1);
    cr_assert_eq(storage_catalog(T.h, p1.v[1], 2, collect, &p2, &more, &e), 0);
    cr_assert_eq(p2.n, 1);
    cr_assert_str_eq(p2.v[0], "zeta");
    cr_assert_eq(more, 0);
    /* a repo whose only blob was deleted disappears */
    struct digest d;
    digest_of(DIGEST_SHA256, "1", 1, &d);
    cr_assert_eq(storage_blob_delete(T.h, "zeta", &d, &e), 0);
    struct names ns2 = {0};
    cr_assert_eq(storage_catalog(T.h, NULL, -1, collect, &ns2, &more, &e), 0);
    cr_assert_eq(ns2.n, 2);
}

static void rm_blob_file(const struct digest *d);

/* catalog and tags/list agree on which repositories exist, through every way
 * a repository loses its content */
Test(storage, emptied_repository_is_neither_listed_nor_known)
{
    char cfg[] = "{\"cfg\":\"gone\"}", layer[] = "layer-gone";
    struct digest md = push_image("gone", "t", "gone", NULL);
    push_image("kept", "t", "kept", NULL);
    struct names ns = {0};
    int more;
    struct err e = {0};
    char ds[DIGEST_STR_MAX];
    /* every manifest deleted, blobs still linked: listed, empty tag list */
    cr_assert_eq(storage_manifest_delete(T.h, "gone", digest_format(&md, ds), &e), 0, "%s", e.msg);
    cr_assert_eq(storage_tags_list(T.h, "gone", NULL, -1, collect, &ns, &more, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(ns.n, 0);
    struct names cat = {0};
    cr_assert_eq(storage_catalog(T.h, NULL, -1, collect, &cat, &more, &e), 0);
    cr_assert_eq(cat.n, 2);
    cr_assert_str_eq(cat.v[0], "gone");
    /* last link deleted: neither listed nor known */
    struct digest dc, dl;
    digest_of(DIGEST_SHA256, cfg, strlen(cfg), &dc);
    digest_of(DIGEST_SHA256, layer, strlen(layer), &dl);
    cr_assert_eq(storage_blob_delete(T.h, "gone", &dc, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_tags_list(T.h, "gone", NULL, -1, collect, &ns, &more, &e), 0);
    cr_assert_eq(storage_blob_delete(T.h, "gone", &dl, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_tags_list(T.h, "gone", NULL, -1, collect, &ns, &more, &e), -1);
    cr_assert_eq(e.code, ERR_NAME_UNKNOWN);
    struct names cat2 = {0};
    cr_assert_eq(storage_catalog(T.h, NULL, -1, collect, &cat2, &more, &e), 0);
    cr_assert_eq(cat2.n, 1);
    cr_assert_str_eq(cat2.v[0], "kept");
    /* a repository whose only blob file was lost (repaired on read): gone too */
    struct digest dx = put("lost", "only blob");
    rm_blob_file(&dx);
    cr_assert_eq(storage_blob_open(T.h, "lost", &dx, NULL, NULL, &e), -1);
    cr_assert_eq(storage_tags_list(T.h, "lost", NULL, -1, collect, &ns, &more, &e), -1);
    cr_assert_eq(e.code, ERR_NAME_UNKNOWN);
    struct names cat3 = {0};
    cr_assert_eq(storage_catalog(T.h, NULL, -1, collect, &cat3, &more, &e), 0);
    cr_assert_eq(cat3.n, 1);
    /* pushed again: exists again */
    put("gone", "again");
    cr_assert_eq(storage_tags_list(T.h, "gone", NULL, -1, collect, &ns, &more, &e), 0);
}

/* ---- referrers ---- */

struct refs {
    char digest[8][DIGEST_STR_MAX];
    char at[8][128];
    char ann[8][256];
    int n;
};

static int
collect_ref(void *arg, const struct referrer *r)
{
    struct refs *rs = arg;
    digest_format(r->digest, rs->digest[rs->n]);
    snprintf(rs->at[rs->n], 128, "%s", r->artifact_type);
    snprintf(rs->ann[rs->n], 256, "%s", r->annotations_json ? r->annotations_json : "");
    cr_assert_str_eq(r->media_type, MT_OCI_MANIFEST);
    rs->n++;
    return 0;
}

/* push_image's extra for a referrer of the manifest sd: an artifactType (unless
 * NULL), the subject, then `more` (unless NULL) */
static void
referrer_extra(char *buf, size_t n, const char *artifact_type, const char *sd, const char *more)
{
    snprintf(buf, n,
             "%s%s%s,\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST
             "\",\"digest\":\"%s\",\"size\":1}%s",
             artifact_type ? ",\"artifactType\":\"" : "", artifact_type ? artifact_type : "",
             artifact_type ? "\"" : "", sd, more ? more : "");
}

Test(storage, referrers_by_subject_with_artifact_type_filter)
{
    struct digest subj = push_image("r", "base", "base", NULL);
    char sd[DIGEST_STR_MAX], extra[512];
    digest_format(&subj, sd);
    referrer_extra(extra, sizeof(extra), "application/vnd.example.sig", sd,
                   ",\"annotations\":{\"k\":\"v\"}");
    struct digest r1 = push_image("r", NULL, "sig", extra);
    referrer_extra(extra, sizeof(extra), "application/vnd.example.sbom", sd, NULL);
    struct digest r2 = push_image("r", NULL, "sbom", extra);
    /* a referrer without artifactType gets config.mediaType */
    referrer_extra(extra, sizeof(extra), NULL, sd, NULL);
    push_image("r", NULL, "plain", extra);
    /* same subject in another repo is not listed */
    push_image("other", NULL, "sig", extra);

    struct refs rs = {0};
    struct err e = {0};
    cr_assert_eq(storage_referrers(T.h, "r", &subj, NULL, collect_ref, &rs, &e), 0, "%s", e.msg);
    cr_assert_eq(rs.n, 3);
    for (int i = 1; i < rs.n; i++)
        cr_assert(strcmp(rs.digest[i - 1], rs.digest[i]) < 0, "ordered by digest");
    struct refs fs = {0};
    cr_assert_eq(
        storage_referrers(T.h, "r", &subj, "application/vnd.example.sig", collect_ref, &fs, &e), 0);
    cr_assert_eq(fs.n, 1);
    char d1[DIGEST_STR_MAX];
    cr_assert_str_eq(fs.digest[0], digest_format(&r1, d1));
    cr_assert_str_eq(fs.at[0], "application/vnd.example.sig");
    cr_assert_str_eq(fs.ann[0], "{\"k\":\"v\"}");
    struct refs cfg = {0};
    cr_assert_eq(storage_referrers(T.h, "r", &subj, "application/vnd.oci.image.config.v1+json",
                                   collect_ref, &cfg, &e),
                 0);
    cr_assert_eq(cfg.n, 1);
    (void)r2;
    /* unknown subject: none, no error */
    struct digest nobody;
    digest_of(DIGEST_SHA256, "nobody", 6, &nobody);
    struct refs none = {0};
    cr_assert_eq(storage_referrers(T.h, "r", &nobody, NULL, collect_ref, &none, &e), 0);
    cr_assert_eq(none.n, 0);
}

Test(storage, subject_may_not_exist_yet_and_is_reported)
{
    struct digest future;
    digest_of(DIGEST_SHA256, "future", 6, &future);
    char sd[DIGEST_STR_MAX], extra[512];
    snprintf(extra, sizeof(extra),
             ",\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":3}",
             digest_format(&future, sd));
    struct digest dc = put("r", "{}"), dl = put("r", "L");
    char *m = image_manifest(&dc, 2, &dl, 1, extra);
    int has = 0;
    struct digest subj;
    struct err e = {0};
    cr_assert_eq(storage_manifest_put(T.h, "r", m, strlen(m), MT_OCI_MANIFEST, NULL, NULL, 0, NULL,
                                      &has, &subj, &e),
                 0, "%s", e.msg);
    free(m);
    cr_assert_eq(has, 1);
    cr_assert(digest_equal(&subj, &future));
    struct refs rs = {0};
    cr_assert_eq(storage_referrers(T.h, "r", &future, NULL, collect_ref, &rs, &e), 0);
    cr_assert_eq(rs.n, 1);
}

/* ---- referrers pages (keyset) ---- */

struct refpage {
    char digest[64][DIGEST_STR_MAX];
    int n;
    int stop_after; /* > 0: the callback stops after this many */
};

static int
collect_page(void *arg, const struct referrer *r)
{
    struct refpage *p = arg;
    cr_assert_lt(p->n, 64);
    digest_format(r->digest, p->digest[p->n++]);
    return p->stop_after > 0 && p->n >= p->stop_after;
}

/* nref referrers of a new subject in repo "r" (artifactType alternating
 * sig/sbom); their digests sorted into out; returns the subject */
static struct digest
push_referrers(int nref, char out[][DIGEST_STR_MAX])
{
    struct digest subj = push_image("r", "base", "base", NULL);
    char sd[DIGEST_STR_MAX], extra[512], seed[32];
    digest_format(&subj, sd);
    for (int i = 0; i < nref; i++) {
        snprintf(extra, sizeof(extra),
                 ",\"artifactType\":\"application/"
                 "vnd.example.%s\",\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST
                 "\",\"digest\":\"%s\",\"size\":1}",
                 i % 2 ? "sbom" : "sig", sd);
        snprintf(seed, sizeof(seed), "ref-%d", i);
        struct digest d = push_image("r", NULL, seed, extra);
        digest_format(&d, out[i]);
    }
    qsort(out, (size_t)nref, DIGEST_STR_MAX, (int (*)(const void *, const void *))strcmp);
    return subj;
}

/* one page of subj's referrers in "r" (artifactType at or NULL, after last or
 * from the start, n per page): asserts the call works and returns want_n
 * descriptors and more == want_more; the digests land in *p (which may ask the
 * callback to stop early) */
static void
expect_page(const struct digest *subj, const char *at, const char *last_text, long n,
            int want_n, int want_more, struct refpage *p)
{
    struct err e = {0};
    struct digest last;
    if (last_text)
        cr_assert_eq(digest_parse(last_text, strlen(last_text), &last, NULL), 0);
    int more = -1;
    cr_assert_eq(storage_referrers_page(T.h, "r", subj, at, last_text ? &last : NULL, n,
                                        collect_page, p, &more, &e),
                 0, "%s", e.msg);
    cr_assert_eq(p->n, want_n, "page of %ld after %s: %d descriptors", n,
                 last_text ? last_text : "-", p->n);
    cr_assert_eq(more, want_more, "page of %ld after %s: more %d", n, last_text ? last_text : "-",
                 more);
}

Test(storage, referrers_page_resumes_after_last)
{
    char all[5][DIGEST_STR_MAX];
    struct digest subj = push_referrers(5, all);
    /* first page of 2 */
    struct refpage p1 = {0};
    expect_page(&subj, NULL, NULL, 2, 2, 1, &p1);
    cr_assert_str_eq(p1.digest[0], all[0]);
    cr_assert_str_eq(p1.digest[1], all[1]);
    /* after the last digest sent */
    struct refpage p2 = {0};
    expect_page(&subj, NULL, all[1], 2, 2, 1, &p2);
    cr_assert_str_eq(p2.digest[0], all[2]);
    cr_assert_str_eq(p2.digest[1], all[3]);
    /* the last page: exactly what remains, no more */
    struct refpage p3 = {0};
    expect_page(&subj, NULL, all[3], 2, 1, 0, &p3);
    cr_assert_str_eq(p3.digest[0], all[4]);
    /* a page of exactly the rest says no more either */
    struct refpage p4 = {0};
    expect_page(&subj, NULL, NULL, 5, 5, 0, &p4);
    /* n < 0: all; n == 0: none, but more says they exist */
    struct refpage p5 = {0};
    expect_page(&subj, NULL, NULL, -1, 5, 0, &p5);
    struct refpage p6 = {0};
    expect_page(&subj, NULL, NULL, 0, 0, 1, &p6);
}

Test(storage, referrers_page_last_need_not_be_a_referrer)
{
    char all[4][DIGEST_STR_MAX];
    struct digest subj = push_referrers(4, all);
    /* a marker between the 2nd and 3rd digest (the hex string just before
     * the 3rd, which is not the 2nd but for a 2^-256 chance): the page
     * starts at the 3rd */
    char mid[DIGEST_STR_MAX];
    memcpy(mid, all[2], sizeof(mid));
    size_t k = strlen(mid) - 1;
    while (mid[k] == '0')
        mid[k--] = 'f';
    mid[k] = mid[k] == 'a' ? '9' : (char)(mid[k] - 1);
    cr_assert(strcmp(mid, all[1]) > 0 && strcmp(mid, all[2]) < 0, "%s %s %s", all[1], mid, all[2]);
    struct refpage p = {0};
    expect_page(&subj, NULL, mid, 10, 2, 0, &p);
    cr_assert_str_eq(p.digest[0], all[2]);
    cr_assert_str_eq(p.digest[1], all[3]);
    /* a marker past every digest: an empty page */
    char endstr[DIGEST_STR_MAX];
    snprintf(endstr, sizeof(endstr), "sha256:%064d", 0);
    memset(endstr + 7, 'f', 64);
    struct refpage none = {0};
    expect_page(&subj, NULL, endstr, 10, 0, 0, &none);
}

Test(storage, referrers_page_filter_and_early_stop)
{
    char all[6][DIGEST_STR_MAX];
    struct digest subj = push_referrers(6, all);
    struct err e = {0};
    /* 3 of each type; pages of 2 of the sig ones */
    struct refpage p1 = {0};
    expect_page(&subj, "application/vnd.example.sig", NULL, 2, 2, 1, &p1);
    cr_assert(strcmp(p1.digest[0], p1.digest[1]) < 0);
    struct refpage p2 = {0};
    expect_page(&subj, "application/vnd.example.sig", p1.digest[1], 2, 1, 0, &p2);
    cr_assert(strcmp(p2.digest[0], p1.digest[1]) > 0);
    /* the callback ends the page: more is left 0 (the caller knows) */
    struct refpage p3 = {.stop_after = 2};
    expect_page(&subj, NULL, NULL, 10, 2, 0, &p3);
    /* storage_referrers is the one-page-of-everything case */
    struct refs rs = {0};
    cr_assert_eq(storage_referrers(T.h, "r", &subj, NULL, collect_ref, &rs, &e), 0);
    cr_assert_eq(rs.n, 6);
    for (int i = 0; i < 6; i++)
        cr_assert_str_eq(rs.digest[i], all[i]);
}

Test(storage, referrers_page_cost_does_not_grow_with_its_position)
{
    /* the keyset query reads only the rows of its page: a page at the end of
     * the list runs about as many VM steps as the first (a scan that skipped
     * up to `last` would run ~15x more here) */
    char all[32][DIGEST_STR_MAX];
    struct digest subj = push_referrers(32, all);
    struct err e = {0};
    int more;
    struct refpage p = {0};
    sqlite3_stmt *q = T.h->mc->q[Q_REFERRERS_PAGE];
    sqlite3_stmt_status(q, SQLITE_STMTSTATUS_VM_STEP, 1);
    cr_assert_eq(
        storage_referrers_page(T.h, "r", &subj, NULL, NULL, 2, collect_page, &p, &more, &e), 0);
    int first = sqlite3_stmt_status(q, SQLITE_STMTSTATUS_VM_STEP, 1);
    struct digest last;
    cr_assert_eq(digest_parse(all[29], strlen(all[29]), &last, NULL), 0);
    struct refpage tail = {0};
    cr_assert_eq(
        storage_referrers_page(T.h, "r", &subj, NULL, &last, 2, collect_page, &tail, &more, &e), 0);
    int end = sqlite3_stmt_status(q, SQLITE_STMTSTATUS_VM_STEP, 1);
    cr_assert_eq(tail.n, 2);
    cr_assert_str_eq(tail.digest[0], all[30]);
    cr_assert_gt(first, 0);
    cr_assert_leq(end, first * 2, "first page %d VM steps, last page %d", first, end);
}

/* ---- open, recovery, lock ---- */

Test(storage, recovery_removes_orphans_on_open)
{
    char uuid[UPLOAD_ID_LEN + 1];
    struct err e = {0};
    cr_assert_eq(storage_upload_start(T.h, "r", DIGEST_SHA256, uuid, &e), 0);
    char keep[UPLOAD_ID_LEN + 1];
    cr_assert_eq(storage_upload_start(T.h, "r", DIGEST_SHA256, keep, &e), 0);
    tu_close_only(&T);
    char p[512];
    /* an upload file without a row, a temp file, junk */
    const char *orphans[] = {"0b5c2a4e-1111-4222-8333-444455556666", "x.tmp",
                             "0b5c2a4e-1111-4222-8333-444455556666.tmp", "junk"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/uploads/%s", T.root, orphans[i]);
        int fd = open(p, O_CREAT | O_WRONLY, 0644);
        cr_assert(fd >= 0);
        close(fd);
    }
    /* a row whose file vanished */
    snprintf(p, sizeof(p), "%s/uploads/%s", T.root, uuid);
    cr_assert_eq(unlink(p), 0);
    tu_open_at(&T, 0);
    cr_assert_eq(tu_count_files(T.root, "uploads"), 1, "only the intact session remains");
    snprintf(p, sizeof(p), "%s/uploads/%s", T.root, keep);
    cr_assert_eq(access(p, F_OK), 0);
    uint64_t off;
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    cr_assert_eq(storage_upload_status(T.h, "r", keep, &off, &e), 0, "%s", e.msg);
    cr_assert_eq(off, 0);
}

Test(storage, second_open_of_same_root_is_refused)
{
    struct storage_opts o = {.root = T.root, .fsync = 0};
    struct err e = {0};
    struct storage *st2 = storage_open(&o, &e);
    cr_assert_null(st2);
    cr_assert_eq(e.code, ERR_CONFIG);
}

Test(storage, open_rejects_missing_root_and_creates_layout)
{
    struct storage_opts o = {.root = NULL};
    struct err e = {0};
    cr_assert_null(storage_open(&o, &e));
    cr_assert_eq(e.code, ERR_CONFIG);
    char p[256];
    snprintf(p, sizeof(p), "%s/blobs/sha256/ff", T.root);
    cr_assert_eq(access(p, F_OK), 0);
    snprintf(p, sizeof(p), "%s/blobs/sha512/00", T.root);
    cr_assert_eq(access(p, F_OK), 0);
    snprintf(p, sizeof(p), "%s/meta.db", T.root);
    cr_assert_eq(access(p, F_OK), 0);
    /* nested root created */
    struct tu_store t2;
    snprintf(t2.root, sizeof(t2.root), "%s/deep/er", T.root);
    tu_open_at(&t2, 1);
    tu_close_only(&t2);
}

Test(storage, data_survives_reopen)
{
    struct digest m = push_image("keep", "v", "1", NULL);
    tu_close_only(&T);
    tu_open_at(&T, 0);
    struct manifest_meta meta;
    struct err e = {0};
    cr_assert_eq(storage_manifest_get(T.h, "keep", "v", &meta, NULL, &e), 0, "%s", e.msg);
    cr_assert(digest_equal(&meta.digest, &m));
}

/* ---- concurrency: manifests and tags from several handles at once ---- */

/* one image (config, a shared layer, manifest) tagged w<id>-<i> and latest, read back */
static int
manifest_round(struct storage_handle *h, int id, int i)
{
    struct err e = {0};
    char cfg[64], layer[64], tag[32];
    snprintf(cfg, sizeof(cfg), "{\"w\":%d,\"i\":%d}", id, i);
    snprintf(layer, sizeof(layer), "shared-layer-%d", i % 3);
    snprintf(tag, sizeof(tag), "w%d-%d", id, i);
    struct digest dc, dl;
    if (storage_blob_put(h, "shared", cfg, strlen(cfg), DIGEST_SHA256, &dc, &e) < 0 ||
        storage_blob_put(h, "shared", layer, strlen(layer), DIGEST_SHA256, &dl, &e) < 0)
        return -1;
    char c[DIGEST_STR_MAX], l[DIGEST_STR_MAX], body[1024];
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":{"
             "\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
             "\"size\":%zu},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
             "\"digest\":\"%s\",\"size\":%zu}]}",
             digest_format(&dc, c), strlen(cfg), digest_format(&dl, l), strlen(layer));
    const char *tags[] = {tag, "latest"};
    struct manifest_meta meta, got;
    if (storage_manifest_put(h, "shared", body, strlen(body), NULL, NULL, tags, 2, &meta, NULL,
                             NULL, &e) < 0)
        return -1;
    if (storage_manifest_get(h, "shared", tag, &got, NULL, &e) < 0 ||
        !digest_equal(&got.digest, &meta.digest))
        return -1;
    int more;
    if (storage_tags_list(h, "shared", NULL, 10, NULL, NULL, &more, &e) < 0)
        return -1;
    return 0;
}

Test(storage, concurrent_manifest_pushes_with_own_handles)
{
    tu_run_workers(T.st, 5, manifest_round, 15);
    struct names ns = {0};
    int more;
    struct err e = {0};
    cr_assert_eq(storage_tags_list(T.h, "shared", NULL, 64, collect, &ns, &more, &e), 0);
    cr_assert_eq(ns.n, 64);
    cr_assert_eq(more, 1, "5 x 15 + latest = 76 tags");
    struct manifest_meta meta;
    cr_assert_eq(storage_manifest_get(T.h, "shared", "latest", &meta, NULL, &e), 0);
}

Test(storage, writes_are_visible_at_once_on_other_handles)
{
    struct err e = {0};
    struct storage_handle *h2 = storage_handle_open(T.st, &e);
    cr_assert_not_null(h2);
    struct digest d;
    digest_of(DIGEST_SHA256, "fresh", 5, &d);
    /* warm h2's read path first so a stale snapshot would show */
    cr_assert_eq(storage_blob_open(h2, "r", &d, NULL, NULL, &e), -1);
    cr_assert_eq(storage_blob_put(T.h, "r", "fresh", 5, DIGEST_SHA256, &d, &e), 0);
    cr_assert_eq(storage_blob_open(h2, "r", &d, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_delete(h2, "r", &d, &e), 0);
    cr_assert_eq(storage_blob_open(T.h, "r", &d, NULL, NULL, &e), -1);
    struct digest m = push_image("r", "t", "x", NULL);
    struct manifest_meta meta;
    cr_assert_eq(storage_manifest_get(h2, "r", "t", &meta, NULL, &e), 0);
    cr_assert(digest_equal(&meta.digest, &m));
    cr_assert_eq(storage_manifest_delete(h2, "r", "t", &e), 0);
    cr_assert_eq(storage_manifest_get(T.h, "r", "t", &meta, NULL, &e), -1);
    storage_handle_close(h2);
}

Test(storage, manifest_put_tag_limit)
{
    const char *tags[PUT_MAX_TAGS + 1];
    char buf[PUT_MAX_TAGS + 1][8];
    for (int i = 0; i <= PUT_MAX_TAGS; i++) {
        snprintf(buf[i], sizeof(buf[i]), "t%d", i);
        tags[i] = buf[i];
    }
    struct digest dc = put("r", "{}"), dl = put("r", "L");
    char *m = image_manifest(&dc, 2, &dl, 1, NULL);
    struct err e = {0};
    cr_assert_eq(storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, tags, PUT_MAX_TAGS + 1,
                                      NULL, NULL, NULL, &e),
                 -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
    cr_assert_eq(storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, tags, PUT_MAX_TAGS, NULL,
                                      NULL, NULL, &e),
                 0, "%s", e.msg);
    free(m);
    struct names ns = {0};
    int more;
    cr_assert_eq(storage_tags_list(T.h, "r", NULL, -1, collect, &ns, &more, &e), 0);
    cr_assert_eq(ns.n, PUT_MAX_TAGS);
}

Test(storage, unsupported_media_type_stores_nothing)
{
    struct err e = {0};
    const char *body = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.x+json\"}";
    cr_assert_eq(storage_manifest_put(T.h, "r", body, strlen(body), NULL, NULL, NULL, 0, NULL, NULL,
                                      NULL, &e),
                 -1);
    cr_assert_eq(e.code, ERR_UNSUPPORTED);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 0);
}

/* ---- lost or damaged blob files ---- */

static void
rm_blob_file(const struct digest *d)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/blobs/%s/%c%c/%s", T.root,
             d->algo == DIGEST_SHA512 ? "sha512" : "sha256", d->hex[0], d->hex[1], d->hex);
    cr_assert_eq(unlink(p), 0);
}

Test(storage, lost_blob_file_is_unknown_to_head_and_get_and_repaired)
{
    struct digest d = put("a", "soon lost");
    put("b", "soon lost");
    rm_blob_file(&d);
    struct err e = {0};
    uint64_t sz;
    cr_assert_eq(storage_blob_open(T.h, "a", &d, NULL, &sz, &e), -1, "HEAD must not say 200");
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    int fd = -1;
    cr_assert_eq(tu_blob_open_fd(T.h, "a", &d, &fd, &sz, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    /* the rows went: unknown in the other repository too, and no mount source */
    cr_assert_eq(storage_blob_open(T.h, "b", &d, NULL, &sz, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    cr_assert_eq(storage_blob_mount(T.h, "c", NULL, &d, &e), 0);
    /* a re-push heals it */
    put("a", "soon lost");
    cr_assert_eq(tu_blob_open_fd(T.h, "a", &d, &fd, &sz, &e), 0, "%s", e.msg);
    close(fd);
    cr_assert_eq(sz, strlen("soon lost"));
}

Test(storage, get_of_lost_blob_file_repairs_rows_too)
{
    struct digest d = put("a", "lost on get");
    rm_blob_file(&d);
    struct err e = {0};
    int fd = -1;
    cr_assert_eq(tu_blob_open_fd(T.h, "a", &d, &fd, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    /* recreate the file behind the registry's back: the rows stay gone */
    char p[512];
    snprintf(p, sizeof(p), "%s/blobs/sha256/%c%c/%s", T.root, d.hex[0], d.hex[1], d.hex);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("lost on get", f);
    fclose(f);
    cr_assert_eq(storage_blob_open(T.h, "a", &d, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
}

Test(storage, truncated_blob_file_is_unknown)
{
    struct digest d = put("a", "will be truncated");
    char p[512];
    snprintf(p, sizeof(p), "%s/blobs/sha256/%c%c/%s", T.root, d.hex[0], d.hex[1], d.hex);
    cr_assert_eq(truncate(p, 3), 0);
    struct err e = {0};
    cr_assert_eq(storage_blob_open(T.h, "a", &d, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    put("a", "will be truncated");
    uint64_t sz = 0;
    cr_assert_eq(storage_blob_open(T.h, "a", &d, NULL, &sz, &e), 0, "%s", e.msg);
    cr_assert_eq(sz, strlen("will be truncated"));
}

Test(storage, mount_of_lost_blob_file_falls_back_to_upload)
{
    struct digest d = put("src", "mount me");
    rm_blob_file(&d);
    struct err e = {0};
    cr_assert_eq(storage_blob_mount(T.h, "dst", "src", &d, &e), 0, "mount must not link it");
    cr_assert_eq(storage_blob_open(T.h, "dst", &d, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    /* already linked in the target but lost: not "mounted" either */
    struct digest d2 = put("dst", "linked but lost");
    rm_blob_file(&d2);
    cr_assert_eq(storage_blob_mount(T.h, "dst", NULL, &d2, &e), 0);
}

Test(storage, manifest_referencing_lost_blob_file_is_refused)
{
    char cfg[] = "{\"cfg\":\"lost\"}", layer[] = "layer-lost";
    struct digest dc = put("r", cfg), dl = put("r", layer);
    rm_blob_file(&dl);
    char *m = image_manifest(&dc, strlen(cfg), &dl, strlen(layer), NULL);
    struct err e = {0};
    cr_assert_eq(storage_manifest_put(T.h, "r", m, strlen(m), MT_OCI_MANIFEST, NULL, NULL, 0, NULL,
                                      NULL, NULL, &e),
                 -1);
    cr_assert_eq(e.code, ERR_MANIFEST_BLOB_UNKNOWN, "%d %s", e.code, e.msg);
    /* pushing the layer again heals and the manifest goes in */
    put("r", layer);
    cr_assert_eq(storage_manifest_put(T.h, "r", m, strlen(m), MT_OCI_MANIFEST, NULL, NULL, 0, NULL,
                                      NULL, NULL, &e),
                 0, "%s", e.msg);
    free(m);
}

Test(storage, manifest_head_and_get_agree_when_body_is_lost)
{
    struct digest md = push_image("r", "t", "body", NULL);
    rm_blob_file(&md);
    struct err e = {0};
    struct manifest_meta meta;
    cr_assert_eq(storage_manifest_get(T.h, "r", "t", &meta, NULL, &e), -1, "HEAD must not say 200");
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
    int fd = -1;
    cr_assert_eq(tu_manifest_get_fd(T.h, "r", "t", &meta, &fd, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_UNKNOWN);
    /* re-push heals */
    push_image("r", "t", "body", NULL);
    cr_assert_eq(tu_manifest_get_fd(T.h, "r", "t", &meta, &fd, &e), 0, "%s", e.msg);
    close(fd);
}

/* ---- descriptors ---- */

/* a manifest with config dc and nlayers layer descriptors all naming dl */
static char *
many_layers(const struct digest *dc, size_t csz, const struct digest *dl, size_t lsz, int nlayers)
{
    char c[DIGEST_STR_MAX], l[DIGEST_STR_MAX];
    digest_format(dc, c);
    digest_format(dl, l);
    char one[256];
    int ol = snprintf(one, sizeof(one),
                      "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                      "\"digest\":\"%s\",\"size\":%zu}",
                      l, lsz);
    size_t cap = 512 + (size_t)nlayers * ((size_t)ol + 1);
    char *m = malloc(cap);
    cr_assert_not_null(m);
    size_t n = (size_t)snprintf(m, cap,
                                "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
                                "\"config\":{\"mediaType\":\"application/vnd.oci.image.config."
                                "v1+json\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[",
                                c, csz);
    for (int i = 0; i < nlayers; i++) {
        if (i)
            m[n++] = ',';
        memcpy(m + n, one, (size_t)ol);
        n += (size_t)ol;
    }
    memcpy(m + n, "]}", 3);
    return m;
}

/* a config and a layer pushed into "r" from seed */
struct cfg_layer {
    struct digest dc, dl;
    size_t csz, lsz;
};

static struct cfg_layer
cfg_layer_put(const char *seed)
{
    char cfg[64], layer[64];
    snprintf(cfg, sizeof(cfg), "{\"cfg\":\"%s\"}", seed);
    snprintf(layer, sizeof(layer), "layer-%s", seed);
    struct cfg_layer b = {
        .dc = put("r", cfg), .dl = put("r", layer), .csz = strlen(cfg), .lsz = strlen(layer)};
    return b;
}

/* storage_manifest_put into "r" of b's config and nlayers descriptors of its layer */
static int
many_layers_put(const struct cfg_layer *b, int nlayers, struct err *e)
{
    char *m = many_layers(&b->dc, b->csz, &b->dl, b->lsz, nlayers);
    int rc = storage_manifest_put(T.h, "r", m, strlen(m), NULL, NULL, NULL, 0, NULL, NULL, NULL, e);
    free(m);
    return rc;
}

Test(storage, duplicate_descriptors_are_checked_and_recorded_once)
{
    struct cfg_layer b = cfg_layer_put("dup");
    /* write transactions run on the store's write connection (st->wh) */
    sqlite3_stmt **q = T.st->meta->wh->q;
    sqlite3_stmt_status(q[Q_LINK_EXISTS], SQLITE_STMTSTATUS_RUN, 1);
    sqlite3_stmt_status(q[Q_REF_INSERT], SQLITE_STMTSTATUS_RUN, 1);
    struct err e = {0};
    cr_assert_eq(many_layers_put(&b, 3000, &e), 0, "%s", e.msg);
    int checks = sqlite3_stmt_status(q[Q_LINK_EXISTS], SQLITE_STMTSTATUS_RUN, 0);
    int inserts = sqlite3_stmt_status(q[Q_REF_INSERT], SQLITE_STMTSTATUS_RUN, 0);
    cr_assert_eq(checks, 2, "config and the one layer, once each (got %d)", checks);
    cr_assert_eq(inserts, 2, "got %d", inserts);
}

Test(storage, too_many_descriptors_is_manifest_invalid)
{
    struct cfg_layer b = cfg_layer_put("many");
    struct err e = {0};
    /* default: 10000 descriptors; config + 10000 layers is one too many */
    cr_assert_eq(many_layers_put(&b, 10000, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
    cr_assert(strstr(e.msg, "too many descriptors") != NULL, "%s", e.msg);
    cr_assert_eq(many_layers_put(&b, 9999, &e), 0, "%s", e.msg);
}

Test(storage, max_manifest_refs_option)
{
    tu_close(&T);
    tu_open_with(&T, (struct storage_opts){.max_manifest_refs = 4});
    struct cfg_layer b = cfg_layer_put("opt");
    struct err e = {0};
    cr_assert_eq(many_layers_put(&b, 4, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
    cr_assert_eq(many_layers_put(&b, 3, &e), 0, "%s", e.msg);
}

/* ---- annotations ---- */

struct ann_one {
    int n;
    char *ann;
};

static int
collect_ann_one(void *arg, const struct referrer *r)
{
    struct ann_one *a = arg;
    a->n++;
    free(a->ann);
    a->ann = r->annotations_json ? strdup(r->annotations_json) : NULL;
    return 0;
}

/* a referrer's annotations are kept whole in the database at PUT: a referrers
 * listing never reads its body (here deleted before the listing); a manifest
 * without a subject, never listed, keeps none */
Test(storage, large_annotations_are_listed_without_reading_the_body)
{
    struct digest subj = push_image("r", "base", "base", NULL);
    char *ann = NULL;
    char *extra = tu_big_annotations(&subj, 200000, &ann);
    struct digest dbig = push_image("r", NULL, "big", extra);
    char *plain = tu_big_annotations(NULL, 200000, NULL);
    push_image("r", "plain", "plain", plain);
    char p[600];
    snprintf(p, sizeof(p), "%s/blobs/sha256/%.2s/%s", T.root, dbig.hex, dbig.hex);
    cr_assert_eq(unlink(p), 0, "%s", p);

    struct ann_one a = {0};
    struct err e = {0};
    cr_assert_eq(storage_referrers(T.h, "r", &subj, NULL, collect_ann_one, &a, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(a.n, 1);
    cr_assert_not_null(a.ann);
    cr_assert_eq(strcmp(a.ann, ann), 0, "the whole annotations, as manifest_parse dumps them");
    snprintf(p, sizeof(p), "%s/meta.db", T.root);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT coalesce(max(length(annotations)), 0), count(*)"
                                    " FROM manifest_annotations",
                                    -1, &s, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(s, 0), (int)strlen(ann));
    cr_assert_eq(sqlite3_column_int(s, 1), 1, "only the referrer's row");
    sqlite3_finalize(s);
    sqlite3_close(db);
    free(a.ann);
    free(ann);
    free(extra);
    free(plain);
}

/* pages the handle's connection has fetched (from its cache or the file) */
static int
db_pages_fetched(struct storage_handle *h)
{
    int hit = 0, miss = 0, hw;
    sqlite3_db_status(h->mc->db, SQLITE_DBSTATUS_CACHE_HIT, &hit, &hw, 0);
    sqlite3_db_status(h->mc->db, SQLITE_DBSTATUS_CACHE_MISS, &miss, &hw, 0);
    return hit + miss;
}

Test(storage, huge_annotations_do_not_slow_other_lookups, .timeout = 120)
{
    push_image("a", "t", "small", NULL);
    /* 8 manifests with ~3.9 MB of annotations in another repository */
    for (int i = 0; i < 8; i++) {
        char *extra = tu_big_annotations(NULL, 3900000, NULL);
        char seed[16];
        snprintf(seed, sizeof(seed), "huge%d", i);
        push_image("b", NULL, seed, extra);
        free(extra);
    }
    struct err e = {0};
    struct manifest_meta meta;
    enum { N = 300 };
    int p0 = db_pages_fetched(T.h);
    for (int i = 0; i < N; i++)
        cr_assert_eq(storage_manifest_get(T.h, "a", "t", &meta, NULL, &e), 0, "%s", e.msg);
    int per = (db_pages_fetched(T.h) - p0) / N;
    /* Counted in pages, not timed: a key compared against a row whose payload
     * overflows makes sqlite read the whole payload, so the WITHOUT ROWID table
     * with the text inline read ~1,000 overflow pages per lookup (~14 ms); two
     * b-tree descents need a handful. */
    cr_assert_lt(per, 32, "manifest lookup fetched %d pages", per);
}
