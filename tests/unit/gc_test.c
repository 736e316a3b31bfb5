/* gc_test.c - garbage collection passes (gc/gc.h) on a store in a temp dir:
 * each collection rule, grace, shared layers, multi-arch indexes, referrers,
 * dry runs, the review queue (incremental vs full), a manifest PUT racing a
 * pass, and a pass crashed at each of its steps. */
#include "gc/gc.h"
#include "gc/retention.h"

#include <sqlite3.h>
#include <sys/wait.h>

#include "storage_testutil.h"

TU_STORE_SUITE(gc, 0);

/* ---- helpers ---- */

struct lines {
    int n;
    char v[64][256];
};

static void
collect_line(void *arg, const char *line)
{
    struct lines *l = arg;
    if (l->n < 64)
        snprintf(l->v[l->n++], sizeof(l->v[0]), "%s", line);
}

static struct gc_stats
pass_with(struct storage_handle *h, struct gc_opts o)
{
    struct gc_stats st;
    struct err e = {0};
    cr_assert_eq(gc_pass(h, &o, &st, &e), 0, "gc_pass: %s", e.msg);
    return st;
}

/* a pass with grace 0 (everything that exists now is old enough) */
static struct gc_stats
pass0(int delete_untagged)
{
    return pass_with(T.h, (struct gc_opts){.delete_untagged = delete_untagged});
}

static void
del(const char *repo, const char *ref)
{
    struct err e = {0};
    cr_assert_eq(storage_manifest_delete(T.h, repo, ref, &e), 0, "delete %s: %s", ref, e.msg);
}

static void
del_digest(const char *repo, const struct digest *d)
{
    char ds[DIGEST_STR_MAX];
    del(repo, digest_format(d, ds));
}

static int
linked(const char *repo, const struct digest *d)
{
    struct err e = {0};
    return storage_blob_open(T.h, repo, d, NULL, NULL, &e) == 0;
}

static int
has_manifest(const char *repo, const struct digest *d)
{
    char ds[DIGEST_STR_MAX];
    struct err e = {0};
    return storage_manifest_get(T.h, repo, digest_format(d, ds), NULL, NULL, &e) == 0;
}

static uint64_t
manifest_size(const char *repo, const struct digest *d)
{
    char ds[DIGEST_STR_MAX];
    struct err e = {0};
    struct manifest_meta m;
    cr_assert_eq(storage_manifest_get(T.h, repo, digest_format(d, ds), &m, NULL, &e), 0);
    return m.size;
}

/* the config and layer digests of tu_manifest(seed) */
static struct digest
layer_of(const char *seed)
{
    char s[64];
    snprintf(s, sizeof(s), "layer-%s", seed);
    return tu_digest_of(DIGEST_SHA256, s);
}

static struct digest
config_of(const char *seed)
{
    char s[64];
    snprintf(s, sizeof(s), "{\"cfg\":\"%s\"}", seed);
    return tu_digest_of(DIGEST_SHA256, s);
}

/* an index of the given manifests of repo, pushed under tag */
static struct digest
index_put(const char *repo, const char *tag, const struct digest *kids, int n)
{
    char *body = NULL;
    size_t cap = 0;
    FILE *f = open_memstream(&body, &cap);
    fprintf(f, "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":[");
    for (int i = 0; i < n; i++) {
        char ds[DIGEST_STR_MAX];
        fprintf(f,
                "%s{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%llu,"
                "\"platform\":{\"architecture\":\"a%d\",\"os\":\"linux\"}}",
                i ? "," : "", digest_format(&kids[i], ds),
                (unsigned long long)manifest_size(repo, &kids[i]), i);
    }
    fprintf(f, "]}");
    fclose(f);
    struct manifest_meta meta;
    struct err e = {0};
    const char *tags[1] = {tag};
    cr_assert_eq(storage_manifest_put(T.h, repo, body, strlen(body), MT_OCI_INDEX, NULL, tags,
                                      tag ? 1 : 0, &meta, NULL, NULL, &e),
                 0, "index put: %s", e.msg);
    free(body);
    return meta.digest;
}

/* a referrer (an artifact manifest with subject) of subj, untagged */
static struct digest
referrer_put(const char *repo, const char *seed, const struct digest *subj)
{
    char extra[400], ds[DIGEST_STR_MAX];
    snprintf(extra, sizeof(extra),
             ",\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%llu}",
             digest_format(subj, ds), (unsigned long long)manifest_size(repo, subj));
    return tu_manifest_put(T.h, repo, NULL, seed, extra);
}

static sqlite3 *
raw_db(const char *root)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/meta.db", root);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    return db;
}

static int
int_query(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    int v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void
exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
}

/* consistent - on a closed root: every blob row has its file with its size,
 * every link and manifest its blob row; returns the number of blob rows */
static int
consistent(const char *root)
{
    sqlite3 *db = raw_db(root);
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT digest, size FROM blobs", -1, &s, NULL), SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *ds = (const char *)sqlite3_column_text(s, 0);
        struct digest d = tu_digest(ds);
        char p[512];
        snprintf(p, sizeof(p), "%s/blobs/sha256/%.2s/%s", root, d.hex, d.hex);
        struct stat sb;
        cr_assert_eq(stat(p, &sb), 0, "row without its file: %s", ds);
        cr_assert_eq((int64_t)sb.st_size, sqlite3_column_int64(s, 1), "size of %s", ds);
        rows++;
    }
    sqlite3_finalize(s);
    cr_assert_eq(int_query(db, "SELECT count(*) FROM blob_links l WHERE NOT EXISTS"
                               "(SELECT 1 FROM blobs b WHERE b.digest = l.digest)"),
                 0, "a link without its blob row");
    cr_assert_eq(int_query(db, "SELECT count(*) FROM manifests m WHERE NOT EXISTS"
                               "(SELECT 1 FROM blobs b WHERE b.digest = m.digest)"),
                 0, "a manifest without its blob row");
    sqlite3_close(db);
    return rows;
}

/* ---- the rules ---- */

Test(gc, unreferenced_link_and_its_blob_go_referenced_ones_stay)
{
    struct digest loose = tu_put(T.h, "r", "loose bytes");
    struct digest m = tu_manifest_put(T.h, "r", "v1", "s1", NULL);
    cr_assert(tu_blob_file_exists(T.root, &loose));
    struct gc_stats st = pass0(0);
    cr_assert_eq(st.links, 1);
    cr_assert_eq(st.blobs, 1);
    cr_assert_eq(st.bytes, strlen("loose bytes"));
    cr_assert_eq(st.manifests, 0);
    cr_assert_not(linked("r", &loose));
    cr_assert_not(tu_blob_file_exists(T.root, &loose));
    struct digest l = layer_of("s1"), c = config_of("s1");
    cr_assert(linked("r", &l) && linked("r", &c) && has_manifest("r", &m));
    cr_assert(tu_blob_file_exists(T.root, &l));
    /* nothing left to do */
    st = pass0(0);
    cr_assert_eq(st.links + st.blobs + st.manifests, 0);
    cr_assert_eq(tu_count_files(T.root, "blobs"), 3); /* config, layer, manifest */
}

Test(gc, grace_keeps_young_things_and_their_queue_rows)
{
    struct digest loose = tu_put(T.h, "r", "young");
    struct gc_stats st = pass_with(T.h, (struct gc_opts){.grace_sec = 3600});
    cr_assert_eq(st.links + st.blobs, 0);
    cr_assert(st.reviewed >= 1);
    cr_assert(linked("r", &loose));
    int64_t q = 0;
    struct err e = {0};
    cr_assert_eq(storage_gc_queued(T.h, &q, &e), 0);
    cr_assert(q >= 1, "the young link stays queued");
    st = pass0(0);
    cr_assert_eq(st.links, 1);
    cr_assert_eq(st.blobs, 1);
}

Test(gc, deleted_manifest_frees_its_links_and_blobs)
{
    struct digest m = tu_manifest_put(T.h, "r", "v1", "s1", NULL);
    del("r", "v1"); /* the tag: the manifest stays (untagged) */
    struct gc_stats st = pass0(0);
    cr_assert_eq(st.manifests + st.links + st.blobs, 0, "untagged is kept without the option");
    del_digest("r", &m);
    st = pass0(0);
    cr_assert_eq(st.links, 2);
    cr_assert_eq(st.blobs, 3, "config, layer and the manifest's body");
    cr_assert_eq(tu_count_files(T.root, "blobs"), 0);
}

Test(gc, untagged_manifests_go_only_with_delete_untagged)
{
    struct digest a = tu_manifest_put(T.h, "r", NULL, "a", NULL);
    struct digest b = tu_manifest_put(T.h, "r", "b", "b", NULL);
    struct gc_stats st = pass0(0);
    cr_assert_eq(st.manifests, 0);
    cr_assert(has_manifest("r", &a));
    /* the option does not see what the previous pass dropped from the queue:
     * a full pass does */
    st = pass_with(T.h, (struct gc_opts){.delete_untagged = 1, .full = 1});
    cr_assert_eq(st.manifests, 1);
    cr_assert_not(has_manifest("r", &a));
    cr_assert(has_manifest("r", &b));
    cr_assert_eq(st.links, 2);
    cr_assert_eq(st.blobs, 3);
    /* a moved tag queues the manifest it left */
    struct digest b2 = tu_manifest_put(T.h, "r", "b", "b2", NULL);
    st = pass0(1);
    cr_assert_eq(st.manifests, 1);
    cr_assert_not(has_manifest("r", &b));
    cr_assert(has_manifest("r", &b2));
}

Test(gc, shared_layer_survives_until_both_links_go)
{
    struct digest a = tu_manifest_put(T.h, "a", "v", "shared", NULL);
    struct digest b = tu_manifest_put(T.h, "b", "v", "shared", NULL);
    struct digest l = layer_of("shared");
    cr_assert(digest_equal(&a, &b));
    del_digest("a", &a);
    struct gc_stats st = pass0(0);
    cr_assert_eq(st.links, 2);
    cr_assert_eq(st.blobs, 0, "b still links config and layer, and stores the manifest");
    cr_assert_not(linked("a", &l));
    cr_assert(linked("b", &l));
    cr_assert(tu_blob_file_exists(T.root, &l));
    del_digest("b", &b);
    st = pass0(0);
    cr_assert_eq(st.links, 2);
    cr_assert_eq(st.blobs, 3);
    cr_assert_not(tu_blob_file_exists(T.root, &l));
}

Test(gc, index_children_stay_with_their_index_and_go_with_it)
{
    struct digest kids[2] = {tu_manifest_put(T.h, "r", NULL, "amd64", NULL),
                             tu_manifest_put(T.h, "r", NULL, "arm64", NULL)};
    struct digest idx = index_put("r", "latest", kids, 2);
    struct gc_stats st = pass_with(T.h, (struct gc_opts){.delete_untagged = 1, .full = 1});
    cr_assert_eq(st.manifests, 0, "untagged children of a kept index are kept");
    cr_assert(has_manifest("r", &kids[0]) && has_manifest("r", &kids[1]));
    cr_assert_eq(tu_count_files(T.root, "blobs"), 7);
    del("r", "latest");
    st = pass0(1);
    cr_assert_eq(st.manifests, 3, "the index, then its children in the same pass");
    cr_assert_eq(st.links, 4);
    cr_assert_eq(st.blobs, 7);
    cr_assert_not(has_manifest("r", &idx));
    cr_assert_eq(tu_count_files(T.root, "blobs"), 0);
}

Test(gc, referrer_stays_while_its_subject_is_kept)
{
    struct digest subj = tu_manifest_put(T.h, "r", "v1", "img", NULL);
    struct digest sig = referrer_put("r", "sig", &subj);
    struct gc_stats st = pass_with(T.h, (struct gc_opts){.delete_untagged = 1, .full = 1});
    cr_assert_eq(st.manifests, 0);
    cr_assert(has_manifest("r", &sig));
    del("r", "v1");
    st = pass0(1);
    cr_assert_eq(st.manifests, 2, "the untagged subject, then its referrer");
    cr_assert_not(has_manifest("r", &sig));
    cr_assert_eq(tu_count_files(T.root, "blobs"), 0);
}

Test(gc, a_pull_already_reading_a_collected_blob_finishes)
{
    static const char text[] = "bytes being pulled while gc removes them";
    struct digest d = tu_put(T.h, "r", text);
    int fd = -1;
    struct err e = {0};
    cr_assert_eq(tu_blob_open_fd(T.h, "r", &d, &fd, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(storage_blob_delete(T.h, "r", &d, &e), 0);
    struct gc_stats st = pass0(0);
    cr_assert_eq(st.blobs, 1);
    cr_assert_not(tu_blob_file_exists(T.root, &d));
    size_t n = 0;
    char *got = tu_read_fd(fd, &n);
    cr_assert_eq(n, strlen(text));
    cr_assert_str_eq(got, text);
    free(got);
    close(fd);
}

/* a fixture with some of everything to collect */
static void
garbage(void)
{
    struct digest kids[2] = {tu_manifest_put(T.h, "r", NULL, "k1", NULL),
                             tu_manifest_put(T.h, "r", NULL, "k2", NULL)};
    index_put("r", "multi", kids, 2);
    struct digest keep = tu_manifest_put(T.h, "r", "keep", "keep", NULL);
    referrer_put("r", "keepsig", &keep);
    tu_manifest_put(T.h, "r", "gone", "gone", NULL);
    tu_manifest_put(T.h, "q", "v", "shared", NULL);
    tu_manifest_put(T.h, "r", "shared", "shared", NULL);
    tu_put(T.h, "r", "loose");
    tu_put(T.h, "q", "loose");
    del("r", "multi");
    del("r", "gone");
    del("r", "shared");
}

Test(gc, dry_run_changes_nothing_and_reports_what_a_pass_removes)
{
    garbage();
    int files = tu_count_files(T.root, "blobs");
    struct lines dry = {0}, real = {0};
    struct gc_stats d = pass_with(
        T.h, (struct gc_opts){
                 .delete_untagged = 1, .dry_run = 1, .report = collect_line, .report_arg = &dry});
    cr_assert(d.manifests > 0 && d.links > 0 && d.blobs > 0 && d.bytes > 0);
    cr_assert_eq(tu_count_files(T.root, "blobs"), files, "a dry run removes no file");
    struct gc_stats d2 = pass_with(T.h, (struct gc_opts){.delete_untagged = 1, .dry_run = 1});
    cr_assert_eq(d2.blobs, d.blobs, "nor any row or queue entry");
    cr_assert_eq(d2.manifests, d.manifests);
    struct gc_stats r = pass_with(
        T.h, (struct gc_opts){.delete_untagged = 1, .report = collect_line, .report_arg = &real});
    cr_assert_eq(r.manifests, d.manifests);
    cr_assert_eq(r.links, d.links);
    cr_assert_eq(r.blobs, d.blobs);
    cr_assert_eq(r.bytes, d.bytes);
    cr_assert_eq(dry.n, real.n);
    cr_assert_eq(dry.n, (int)(r.manifests + r.links + r.blobs));
    int blob_lines = 0;
    for (int i = 0; i < real.n; i++)
        blob_lines += strncmp(real.v[i], "blob sha256:", 12) == 0;
    cr_assert_eq(blob_lines, (int)r.blobs);
    cr_assert_eq(tu_count_files(T.root, "blobs"), files - (int)r.blobs);
    tu_close_only(&T);
    cr_assert_eq(consistent(T.root), files - (int)r.blobs);
    tu_open_at(&T, 0);
}

Test(gc, an_incremental_pass_looks_only_at_the_queue)
{
    char tag[16], seed[16];
    for (int i = 0; i < 40; i++) {
        snprintf(tag, sizeof(tag), "t%d", i);
        snprintf(seed, sizeof(seed), "s%d", i);
        tu_manifest_put(T.h, "r", tag, seed, NULL);
    }
    struct gc_stats st = pass0(1);
    cr_assert_eq(st.links + st.blobs + st.manifests, 0);
    cr_assert(st.reviewed >= 120, "the pushes queued their links and manifests");
    st = pass0(1);
    cr_assert_eq(st.reviewed, 0, "nothing changed, nothing to look at");
    struct gc_stats full = pass_with(T.h, (struct gc_opts){.delete_untagged = 1, .full = 1});
    cr_assert(full.reviewed >= 200, "a full pass looks at everything (%llu)",
              (unsigned long long)full.reviewed);
    del("r", "t7");
    st = pass0(1);
    cr_assert_eq(st.manifests, 1);
    cr_assert_eq(st.links, 2);
    cr_assert_eq(st.blobs, 3);
    cr_assert(st.reviewed <= 10, "only the candidates of one delete (%llu)",
              (unsigned long long)st.reviewed);
}

Test(gc, a_full_pass_finds_garbage_the_queue_lost)
{
    garbage();
    tu_close_only(&T);
    sqlite3 *db = raw_db(T.root);
    exec_ok(db, "DELETE FROM gc_queue");
    sqlite3_close(db);
    tu_open_at(&T, 0);
    struct gc_stats st = pass0(1);
    cr_assert_eq(st.blobs + st.links + st.manifests, 0);
    st = pass_with(T.h, (struct gc_opts){.delete_untagged = 1, .full = 1});
    cr_assert(st.blobs > 0 && st.links > 0 && st.manifests > 0);
}

Test(gc, a_store_from_before_the_queue_gets_a_full_pass_once)
{
    garbage();
    tu_close_only(&T);
    sqlite3 *db = raw_db(T.root);
    exec_ok(db, "BEGIN; DROP TRIGGER gcq_link_ins; DROP TRIGGER gcq_link_del;"
                "DROP TRIGGER gcq_mf_ins; DROP TRIGGER gcq_mf_del; DROP TRIGGER gcq_ref_del;"
                "DROP TRIGGER gcq_tag_upd; DROP TRIGGER gcq_tag_del; DROP TABLE gc_queue;"
                "DROP TABLE gc_state; ALTER TABLE tags DROP COLUMN pulled;"
                "PRAGMA user_version = 4; COMMIT;");
    sqlite3_close(db);
    tu_open_at(&T, 0);
    struct gc_stats st = pass0(1);
    cr_assert(st.blobs > 0 && st.links > 0 && st.manifests > 0, "the migration asked for it");
    struct gc_stats st2 = pass_with(T.h, (struct gc_opts){.delete_untagged = 1, .full = 1});
    cr_assert_eq(st2.blobs + st2.links + st2.manifests, 0, "the first pass found everything");
    tu_close_only(&T);
    cr_assert_eq(consistent(T.root), tu_count_files(T.root, "blobs"),
                 "every file left has its row");
    tu_open_at(&T, 0);
}

Test(gc, expired_upload_sessions_go)
{
    tu_close_only(&T);
    tu_open_opts_at(&T, (struct storage_opts){.upload_expiry_sec = 1});
    char uuid[UPLOAD_ID_LEN + 1];
    struct err e = {0};
    cr_assert_eq(storage_upload_start(T.h, "r", DIGEST_SHA256, uuid, &e), 0);
    /* created more than a second ago: wait on the clock, not a fixed sleep */
    time_t t0 = time(NULL);
    while (time(NULL) < t0 + 3)
        usleep(50000);
    struct lines l = {0};
    struct gc_stats st =
        pass_with(T.h, (struct gc_opts){.dry_run = 1, .report = collect_line, .report_arg = &l});
    cr_assert_eq(st.uploads, 1);
    cr_assert_eq(l.n, 1);
    char want[64];
    snprintf(want, sizeof(want), "upload %s", uuid);
    cr_assert_str_eq(l.v[0], want);
    uint64_t off;
    cr_assert_eq(storage_upload_status(T.h, "r", uuid, &off, &e), 0, "a dry run keeps it");
    st = pass0(0);
    cr_assert_eq(st.uploads, 1);
    cr_assert_neq(storage_upload_status(T.h, "r", uuid, &off, &e), 0);
}

static int
stop_at_once(void *arg)
{
    (void)arg;
    return 1;
}

Test(gc, stop_ends_the_pass_and_the_next_one_goes_on)
{
    garbage();
    struct gc_stats st =
        pass_with(T.h, (struct gc_opts){.delete_untagged = 1, .stop = stop_at_once});
    cr_assert_eq(st.blobs + st.links + st.manifests, 0);
    st = pass0(1);
    cr_assert(st.blobs > 0);
}

/* ---- a manifest PUT racing a pass ---- */

struct race {
    struct storage *st;
    int rounds;
    volatile int done;
    int ok, unknown, put_fail;
    int again, again_fail;
    char failmsg[256], againmsg[256];
    int *succeeded; /* per round */
};

static void *
racer_gc(void *arg)
{
    struct race *r = arg;
    struct err e = {0};
    struct storage_handle *h = storage_handle_open(r->st, &e);
    while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
        struct gc_stats st;
        struct gc_opts o = {.delete_untagged = 0};
        if (gc_pass(h, &o, &st, &e) < 0) {
            snprintf(r->failmsg, sizeof(r->failmsg), "gc: %s", e.msg);
            break;
        }
    }
    storage_handle_close(h);
    return NULL;
}

static void *
racer_push(void *arg)
{
    struct race *r = arg;
    struct err e = {0};
    struct storage_handle *h = storage_handle_open(r->st, &e);
    for (int i = 0; i < r->rounds; i++) {
        char seed[32], tag[32], cfg[64], layer[64], c[DIGEST_STR_MAX], l[DIGEST_STR_MAX];
        snprintf(seed, sizeof(seed), "r%d", i);
        snprintf(tag, sizeof(tag), "t%d", i);
        snprintf(cfg, sizeof(cfg), "{\"cfg\":\"%s\"}", seed);
        snprintf(layer, sizeof(layer), "layer-%s", seed);
        struct digest dc, dl;
        if (storage_blob_put(h, "r", cfg, strlen(cfg), DIGEST_SHA256, &dc, &e) < 0 ||
            storage_blob_put(h, "r", layer, strlen(layer), DIGEST_SHA256, &dl, &e) < 0) {
            r->put_fail++;
            snprintf(r->failmsg, sizeof(r->failmsg), "blob put: %s", e.msg);
            continue;
        }
        char body[1024];
        snprintf(body, sizeof(body),
                 "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
                 "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                 "\"digest\":\"%s\",\"size\":%zu},"
                 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                 "\"digest\":\"%s\",\"size\":%zu}]}",
                 digest_format(&dc, c), strlen(cfg), digest_format(&dl, l), strlen(layer));
        const char *tags[1] = {tag};
        struct manifest_meta meta;
        if (storage_manifest_put(h, "r", body, strlen(body), MT_OCI_MANIFEST, NULL, tags, 1, &meta,
                                 NULL, NULL, &e) == 0) {
            r->ok++;
            r->succeeded[i] = 1;
        } else if (e.code == ERR_MANIFEST_BLOB_UNKNOWN) {
            r->unknown++;
        } else {
            r->put_fail++;
            snprintf(r->failmsg, sizeof(r->failmsg), "manifest put: %s", e.msg);
        }
    }
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    storage_handle_close(h);
    return NULL;
}

/* blob puts of bytes that are garbage most of the time (gc removes them
 * between two puts): a put must never lose to gc, a file being installed is
 * kept */
static void *
racer_again(void *arg)
{
    struct race *r = arg;
    struct err e = {0};
    struct storage_handle *h = storage_handle_open(r->st, &e);
    while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
        struct digest d;
        if (storage_blob_put(h, "again", "again", 5, DIGEST_SHA256, &d, &e) < 0) {
            r->again_fail++;
            snprintf(r->againmsg, sizeof(r->againmsg), "blob put: %s", e.msg);
        }
        r->again++;
    }
    storage_handle_close(h);
    return NULL;
}

/* ---- retention through a pass ---- */

static struct retention_rules *
rules_of(const char *text)
{
    char path[] = "/tmp/ocireg-retention.XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct err e = {0};
    struct retention_rules *r = retention_load(path, &e);
    unlink(path);
    cr_assert(r, "retention_load: %s", e.msg);
    return r;
}

static int
has_line(const struct lines *l, const char *prefix, const char *also)
{
    for (int i = 0; i < l->n; i++)
        if (strncmp(l->v[i], prefix, strlen(prefix)) == 0 && (!also || strstr(l->v[i], also)))
            return 1;
    return 0;
}

/* keep_newest = 1 and a protected pattern in "app": two tags go (the dry run
 * lists them with their rule and the bytes they free, the same as the real
 * pass), their manifests and blobs with them; the newest tag names an index
 * whose untagged platform manifests stay with it; another repository that no
 * rule names keeps everything */
Test(gc, retention_untags_by_rule_and_keeps_what_kept_indexes_need)
{
    struct retention_rules *rr = rules_of("[repo \"app\"]\nkeep_newest = 1\nprotect = keep-*\n");
    struct digest a1 = tu_manifest_put(T.h, "app", "a1", "one", NULL);
    struct digest a2 = tu_manifest_put(T.h, "app", "a2", "two", NULL);
    struct digest kept = tu_manifest_put(T.h, "app", "keep-me", "three", NULL);
    struct digest kids[2] = {tu_manifest_put(T.h, "app", NULL, "amd64", NULL),
                             tu_manifest_put(T.h, "app", NULL, "arm64", NULL)};
    struct digest idx = index_put("app", "z9", kids, 2);
    struct digest other = tu_manifest_put(T.h, "other", "a1", "four", NULL);
    int files = tu_count_files(T.root, "blobs");

    struct lines dry = {0}, real = {0};
    struct gc_stats d = pass_with(T.h, (struct gc_opts){.retention = rr,
                                                        .dry_run = 1,
                                                        .report = collect_line,
                                                        .report_arg = &dry});
    cr_assert_eq(d.tags, 2, "a1 and a2 go, keep-me is protected, z9 is the newest");
    cr_assert(has_line(&dry, "tag app:a1", "keep_newest = 1"), "%s", dry.n ? dry.v[0] : "");
    cr_assert(has_line(&dry, "tag app:a2", "keep_newest = 1"));
    cr_assert_not(has_line(&dry, "tag app:keep-me", NULL));
    cr_assert_not(has_line(&dry, "tag other:", NULL));
    cr_assert_eq(d.manifests, 2);
    cr_assert(d.bytes > 0, "the dry run tells the bytes freed");
    cr_assert_eq(tu_count_files(T.root, "blobs"), files, "a dry run removes nothing");
    cr_assert(has_manifest("app", &a1));

    struct gc_stats r = pass_with(
        T.h, (struct gc_opts){.retention = rr, .report = collect_line, .report_arg = &real});
    cr_assert_eq(r.tags, d.tags);
    cr_assert_eq(r.manifests, d.manifests);
    cr_assert_eq(r.blobs, d.blobs);
    cr_assert_eq(r.bytes, d.bytes);
    cr_assert_not(has_manifest("app", &a1));
    cr_assert_not(has_manifest("app", &a2));
    cr_assert(has_manifest("app", &kept));
    cr_assert(has_manifest("app", &idx));
    cr_assert(has_manifest("app", &kids[0]) && has_manifest("app", &kids[1]),
              "the platforms of a kept index stay, untagged as they are");
    cr_assert(has_manifest("other", &other));
    cr_assert_eq(tu_count_files(T.root, "blobs"), files - (int)r.blobs);
    /* a second pass has nothing more to do */
    struct gc_stats again = pass_with(T.h, (struct gc_opts){.retention = rr});
    cr_assert_eq(again.tags + again.manifests + again.blobs, 0);
    tu_close_only(&T);
    consistent(T.root);
    tu_open_at(&T, 0);
    retention_free(rr);
}

/* an index let go by retention takes its platform manifests along */
Test(gc, retention_removing_an_index_takes_its_platforms)
{
    struct retention_rules *rr = rules_of("[repo \"app\"]\nkeep_newest = 1\n");
    struct digest kids[2] = {tu_manifest_put(T.h, "app", NULL, "amd64", NULL),
                             tu_manifest_put(T.h, "app", NULL, "arm64", NULL)};
    struct digest idx = index_put("app", "a-old", kids, 2);
    struct digest newest = tu_manifest_put(T.h, "app", "b-new", "new", NULL);
    struct gc_stats r = pass_with(T.h, (struct gc_opts){.retention = rr});
    cr_assert_eq(r.tags, 1);
    cr_assert_eq(r.manifests, 3, "the index and its two platforms");
    cr_assert_not(has_manifest("app", &idx));
    cr_assert_not(has_manifest("app", &kids[0]) || has_manifest("app", &kids[1]));
    cr_assert(has_manifest("app", &newest));
    retention_free(rr);
}

Test(gc, a_manifest_put_and_a_pass_never_both_win, .timeout = 120)
{
    struct race r = {.st = T.st, .rounds = 400};
    r.succeeded = calloc((size_t)r.rounds, sizeof(int));
    pthread_t tg, tp, ta;
    cr_assert_eq(pthread_create(&tg, NULL, racer_gc, &r), 0);
    cr_assert_eq(pthread_create(&ta, NULL, racer_again, &r), 0);
    cr_assert_eq(pthread_create(&tp, NULL, racer_push, &r), 0);
    pthread_join(tp, NULL);
    pthread_join(ta, NULL);
    pthread_join(tg, NULL);
    cr_assert_eq(r.again_fail, 0, "%d of %d: %s", r.again_fail, r.again, r.againmsg);
    cr_assert_eq(r.put_fail, 0, "%s", r.failmsg);
    cr_assert_eq(r.ok + r.unknown, r.rounds);
    cr_log_info("race: %d PUTs won, %d saw a blob collected first", r.ok, r.unknown);
    pass0(0);
    for (int i = 0; i < r.rounds; i++) {
        if (!r.succeeded[i])
            continue;
        char seed[32];
        snprintf(seed, sizeof(seed), "r%d", i);
        struct digest l = layer_of(seed), c = config_of(seed);
        cr_assert(linked("r", &l) && linked("r", &c), "round %d: a PUT that succeeded lost a blob",
                  i);
    }
    free(r.succeeded);
    tu_close_only(&T);
    consistent(T.root);
    tu_open_at(&T, 0);
}

/* ---- a pass that crashes ---- */

struct crash_at {
    enum storage_gc_point pt;
    int hits, at;
};

static void
crash_hook(void *arg, enum storage_gc_point pt)
{
    struct crash_at *c = arg;
    if (pt == c->pt && ++c->hits == c->at)
        _exit(42);
}

/* lots of garbage: more blobs than one batch */
static void
much_garbage(void)
{
    char s[32];
    for (int i = 0; i < 300; i++) {
        snprintf(s, sizeof(s), "loose-%d", i);
        tu_put(T.h, i % 2 ? "a" : "b", s);
    }
    garbage();
}

Test(gc, a_crash_anywhere_in_a_pass_leaves_a_consistent_store, .timeout = 120)
{
    static const struct {
        enum storage_gc_point pt;
        int at;
    } points[] = {
        {STORAGE_GC_AT_ROWS_SETTLED, 1},     {STORAGE_GC_AT_ROWS_SETTLED, 3},
        {STORAGE_GC_AT_BLOB_ROWS_GONE, 1},   {STORAGE_GC_AT_BLOB_ROWS_GONE, 2},
        {STORAGE_GC_AT_BLOB_FILE_GONE, 1},   {STORAGE_GC_AT_BLOB_FILE_GONE, 100},
        {STORAGE_GC_AT_BLOB_FILE_GONE, 270}, {STORAGE_GC_AT_BLOBS_SETTLED, 1},
    };
    much_garbage();
    tu_close_only(&T);
    int initial = tu_count_files(T.root, "blobs");
    for (size_t k = 0; k < sizeof(points) / sizeof(points[0]); k++) {
        /* each round on a copy of the same garbage */
        char cmd[256], root[80];
        snprintf(root, sizeof(root), "%s-c%zu", T.root, k);
        snprintf(cmd, sizeof(cmd), "cp -a %s %s", T.root, root);
        cr_assert_eq(system(cmd), 0);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            struct storage_opts o = {.root = root, .fsync = 1};
            struct err e = {0};
            struct storage *st = storage_open(&o, &e);
            struct storage_handle *h = st ? storage_handle_open(st, &e) : NULL;
            if (!h)
                _exit(2);
            struct crash_at c = {.pt = points[k].pt, .at = points[k].at};
            storage_gc_hook(st, crash_hook, &c);
            struct gc_stats gs;
            struct gc_opts go = {.delete_untagged = 1};
            gc_pass(h, &go, &gs, &e);
            _exit(3); /* the crash point was never reached */
        }
        int status = 0;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 42, "point %zu: status %d", k,
                  status);
        int rows = consistent(root);
        cr_assert(rows <= initial);
        struct tu_store t2 = {0};
        snprintf(t2.root, sizeof(t2.root), "%s", root);
        tu_open_at(&t2, 1);
        pass_with(t2.h, (struct gc_opts){.delete_untagged = 1});
        struct gc_stats again = pass_with(t2.h, (struct gc_opts){.delete_untagged = 1, .full = 1});
        cr_assert_eq(again.blobs + again.links + again.manifests, 0,
                     "point %zu: the pass after the crash finished the job", k);
        tu_close_only(&t2);
        rows = consistent(root);
        cr_assert_eq(tu_count_files(root, "blobs"), rows, "point %zu: no file without its row", k);
        /* what is left: keep (3 files), its signature (3) and q's image (3) */
        cr_assert_eq(rows, 9, "point %zu: %d blobs left", k, rows);
        tu_rm_rf(root);
    }
    tu_open_at(&T, 0);
}
