/* check_test.c - ocireg check (gc/check.h) on stores built through the
 * storage API: a sound store checks clean, each kind of damage is found, and
 * repair quarantines (a rename, not a delete), removes the rows, leaves every
 * healthy blob as it was, and a second check is clean. The command itself
 * ($OCIREG_BIN check) is run for its exit status, and refused while another
 * process holds the store. */
#include "gc/check.h"

#include <sqlite3.h>
#include <sys/wait.h>

#include "storage_testutil.h"

TU_STORE_SUITE(check, 0);

/* ---- running a check ---- */

struct lines {
    char *text; /* every reported line, "P|R|N line\n" */
    size_t len, cap;
};

static void
collect(void *arg, enum check_line kind, const char *line)
{
    struct lines *l = arg;
    size_t n = strlen(line) + 3;
    if (l->len + n + 1 > l->cap) {
        l->cap = (l->len + n + 1) * 2;
        l->text = realloc(l->text, l->cap);
        cr_assert_not_null(l->text);
    }
    l->len += (size_t)snprintf(l->text + l->len, l->cap - l->len, "%c %s\n",
                               kind == CHECK_PROBLEM ? 'P' : kind == CHECK_REPAIRED ? 'R' : 'N',
                               line);
}

/* run_check - check_run on T with its lines in *l (freed by the caller) */
static struct check_stats
run_check(int repair, struct lines *l)
{
    memset(l, 0, sizeof(*l));
    l->text = calloc(1, 1);
    struct check_opts o = {.repair = repair, .report = collect, .report_arg = l};
    struct check_stats st;
    struct err e = {0};
    cr_assert_eq(check_run(T.h, &o, &st, &e), 0, "check_run: %s", e.msg);
    return st;
}

static void
assert_clean(void)
{
    struct lines l;
    struct check_stats st = run_check(0, &l);
    cr_assert_eq(st.problems, 0, "problems after repair:\n%s", l.text);
    free(l.text);
}

static int
has_line(const struct lines *l, char kind, const char *part)
{
    for (const char *p = l->text; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char line[1200];
        snprintf(line, sizeof(line), "%.*s", (int)n, p);
        if (line[0] == kind && strstr(line, part))
            return 1;
        p += n + (end ? 1 : 0);
    }
    return 0;
}

#define assert_line(l, kind, part)                                                                 \
    cr_assert(has_line((l), (kind), (part)), "no %c line with '%s' in:\n%s", (kind), (part),       \
              (l)->text)

/* ---- the store ---- */

/* an image of repo tagged tag; *layer gets its layer's digest */
static struct digest
image(const char *repo, const char *tag, const char *seed, struct digest *layer)
{
    char ls[64];
    snprintf(ls, sizeof(ls), "layer-%s", seed);
    if (layer)
        *layer = tu_digest_of(DIGEST_SHA256, ls);
    return tu_manifest_put(T.h, repo, tag, seed, NULL);
}

/* an index of repo naming child, tagged tag */
static struct digest
index_put(const char *repo, const char *tag, const struct digest *child)
{
    char cs[DIGEST_STR_MAX], *idx = NULL;
    cr_assert(asprintf(&idx,
                       "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":["
                       "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":10,"
                       "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}",
                       digest_format(child, cs)) > 0);
    const char *tags[1] = {tag};
    struct manifest_meta meta;
    struct err e = {0};
    cr_assert_eq(storage_manifest_put(T.h, repo, idx, strlen(idx), MT_OCI_INDEX, NULL, tags, 1,
                                      &meta, NULL, NULL, &e),
                 0, "%s", e.msg);
    free(idx);
    return meta.digest;
}

/* what every test starts from: two repositories, three images, an index, a
 * sha512 blob */
struct fixture {
    struct digest app, app_layer, lib, lib_layer, idx, big;
};

static struct fixture
build(void)
{
    struct fixture f;
    f.app = image("a/app", "v1", "one", &f.app_layer);
    f.idx = index_put("a/app", "multi", &f.app);
    f.lib = image("b/lib", "latest", "two", &f.lib_layer);
    struct err e = {0};
    const char big[] = "a blob hashed with sha512";
    cr_assert_eq(storage_blob_put(T.h, "b/lib", big, sizeof(big) - 1, DIGEST_SHA512, &f.big, &e), 0,
                 "%s", e.msg);
    return f;
}

static void
blob_path(const struct digest *d, char *out, size_t cap)
{
    snprintf(out, cap, "%s/blobs/%s/%c%c/%s", T.root,
             d->algo == DIGEST_SHA512 ? "sha512" : "sha256", d->hex[0], d->hex[1], d->hex);
}

static void
flip_byte(const struct digest *d)
{
    char p[512];
    blob_path(d, p, sizeof(p));
    int fd = open(p, O_RDWR);
    cr_assert(fd >= 0);
    unsigned char c;
    cr_assert_eq(pread(fd, &c, 1, 0), 1);
    c ^= 0x20;
    cr_assert_eq(pwrite(fd, &c, 1, 0), 1);
    close(fd);
}

static void
truncate_blob(const struct digest *d, off_t len)
{
    char p[512];
    blob_path(d, p, sizeof(p));
    cr_assert_eq(truncate(p, len), 0);
}

static void
delete_blob(const struct digest *d)
{
    char p[512];
    blob_path(d, p, sizeof(p));
    cr_assert_eq(unlink(p), 0);
}

static void
sql(const char *q)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/meta.db", T.root);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, q, NULL, NULL, &msg), SQLITE_OK, "%s: %s", q, msg);
    sqlite3_close(db);
}

/* ---- healthy blobs stay as they were: every blob file's digest, before and after ---- */

#define MAX_FILES 64
static struct {
    int n;
    char path[MAX_FILES][256];
    struct digest d[MAX_FILES];
} snap;

static int
hash_path(const char *path, struct digest *out)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    size_t n;
    char *buf = tu_read_fd(fd, &n);
    close(fd);
    const char *slash = strstr(path, "/blobs/sha512/");
    digest_of(slash ? DIGEST_SHA512 : DIGEST_SHA256, buf, n, out);
    free(buf);
    return 0;
}

static int
snap_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_F && snap.n < MAX_FILES) {
        snprintf(snap.path[snap.n], sizeof(snap.path[0]), "%s", path);
        cr_assert_eq(hash_path(path, &snap.d[snap.n]), 0);
        snap.n++;
    }
    return 0;
}

/* snapshot - every blob file but the one of `except` */
static void
snapshot(const struct digest *except)
{
    char p[256], skip[512];
    snap.n = 0;
    snprintf(p, sizeof(p), "%s/blobs", T.root);
    nftw(p, snap_cb, 16, FTW_PHYS);
    blob_path(except, skip, sizeof(skip));
    for (int i = 0; i < snap.n; i++)
        if (strcmp(snap.path[i], skip) == 0)
            snap.path[i][0] = '\0';
}

static void
assert_snapshot_unchanged(void)
{
    int kept = 0;
    for (int i = 0; i < snap.n; i++) {
        if (!snap.path[i][0])
            continue;
        struct digest d;
        cr_assert_eq(hash_path(snap.path[i], &d), 0, "healthy blob %s is gone", snap.path[i]);
        cr_assert(digest_equal(&d, &snap.d[i]), "healthy blob %s changed", snap.path[i]);
        kept++;
    }
    cr_assert(kept >= 6, "only %d healthy blobs looked at", kept);
}

static int
quarantined(const struct digest *d)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/quarantine/%s", T.root,
             d->algo == DIGEST_SHA512 ? "sha512" : "sha256");
    DIR *dir = opendir(p);
    if (!dir)
        return 0;
    int found = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL)
        if (strncmp(de->d_name, d->hex, d->len) == 0 && de->d_name[d->len] == '.')
            found = 1;
    closedir(dir);
    return found;
}

static int
manifest_there(const char *repo, const char *ref)
{
    struct err e = {0};
    return storage_manifest_get(T.h, repo, ref, NULL, NULL, &e) == 0;
}

/* ---- tests ---- */

Test(check, a_sound_store_checks_clean)
{
    struct fixture f = build();
    (void)f;
    struct lines l;
    struct check_stats st = run_check(0, &l);
    cr_assert_eq(st.problems, 0, "%s", l.text);
    cr_assert_str_eq(l.text, "");
    /* 3 configs/layers x 2 images' blobs, 3 manifest bodies, the sha512 blob */
    cr_assert_eq(st.blobs, 8);
    cr_assert_eq(st.manifests, 3);
    cr_assert_eq(st.tags, 3);
    cr_assert(st.bytes_read > 0);
    cr_assert_eq(st.garbage_files, 0);
    free(l.text);
}

Test(check, a_truncated_blob_is_quarantined_and_what_it_breaks_deleted)
{
    struct fixture f = build();
    char ls[DIGEST_STR_MAX], ms[DIGEST_STR_MAX], is[DIGEST_STR_MAX], line[400];
    digest_format(&f.app_layer, ls);
    digest_format(&f.app, ms);
    digest_format(&f.idx, is);
    truncate_blob(&f.app_layer, 3);
    snapshot(&f.app_layer);

    struct lines l;
    struct check_stats st = run_check(0, &l);
    snprintf(line, sizeof(line), "blob %s: size 3 on disk, 9 in the database", ls);
    assert_line(&l, 'P', line);
    snprintf(line, sizeof(line), "manifest a/app@%s references blob %s", ms, ls);
    assert_line(&l, 'P', line);
    cr_assert_eq(st.repaired, 0);
    free(l.text);

    st = run_check(1, &l);
    cr_assert(st.problems > 0);
    cr_assert_eq(st.quarantined, 1, "%s", l.text);
    snprintf(line, sizeof(line), "blob %s: moved to quarantine/sha256/", ls);
    assert_line(&l, 'R', line);
    snprintf(line, sizeof(line), "manifest a/app@%s deleted", ms);
    assert_line(&l, 'R', line);
    /* the index naming the deleted image goes in the next round */
    snprintf(line, sizeof(line), "manifest a/app@%s deleted", is);
    assert_line(&l, 'R', line);
    free(l.text);

    cr_assert(quarantined(&f.app_layer), "the damaged file is not in quarantine/");
    cr_assert_not(tu_blob_file_exists(T.root, &f.app_layer));
    cr_assert_not(manifest_there("a/app", "v1"));
    cr_assert_not(manifest_there("a/app", "multi"));
    cr_assert(manifest_there("b/lib", "latest"));
    assert_snapshot_unchanged();
    assert_clean();
}

Test(check, a_flipped_byte_is_found_by_its_hash)
{
    struct fixture f = build();
    char bs[DIGEST_STR_MAX], line[300];
    flip_byte(&f.big);
    snapshot(&f.big);
    struct lines l;
    struct check_stats st = run_check(0, &l);
    snprintf(line, sizeof(line), "blob %s: content hashes to sha512:", digest_format(&f.big, bs));
    assert_line(&l, 'P', line);
    cr_assert_eq(st.problems, 1, "%s", l.text);
    free(l.text);

    st = run_check(1, &l);
    cr_assert_eq(st.quarantined, 1, "%s", l.text);
    free(l.text);
    cr_assert(quarantined(&f.big));
    struct err e = {0};
    cr_assert_eq(storage_blob_open(T.h, "b/lib", &f.big, NULL, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_BLOB_UNKNOWN);
    assert_snapshot_unchanged();
    assert_clean();
}

Test(check, a_deleted_blob_file_loses_its_rows)
{
    struct fixture f = build();
    char ls[DIGEST_STR_MAX], line[300];
    digest_format(&f.lib_layer, ls);
    delete_blob(&f.lib_layer);
    snapshot(&f.lib_layer);
    struct lines l;
    run_check(0, &l);
    snprintf(line, sizeof(line), "blob %s: file missing", ls);
    assert_line(&l, 'P', line);
    free(l.text);

    struct check_stats st = run_check(1, &l);
    cr_assert_eq(st.quarantined, 0);
    snprintf(line, sizeof(line), "blob %s: its rows removed", ls);
    assert_line(&l, 'R', line);
    assert_line(&l, 'R', "manifest b/lib@");
    free(l.text);
    cr_assert_not(manifest_there("b/lib", "latest"));
    cr_assert(manifest_there("a/app", "v1"));
    assert_snapshot_unchanged();
    assert_clean();
}

Test(check, a_deleted_manifest_body_deletes_the_manifest)
{
    struct fixture f = build();
    char ms[DIGEST_STR_MAX], line[300];
    digest_format(&f.lib, ms);
    delete_blob(&f.lib);
    snapshot(&f.lib);
    struct lines l;
    run_check(0, &l);
    snprintf(line, sizeof(line), "manifest b/lib@%s: its body is missing or damaged", ms);
    assert_line(&l, 'P', line);
    free(l.text);

    run_check(1, &l);
    snprintf(line, sizeof(line), "manifest b/lib@%s deleted with its tags and references", ms);
    assert_line(&l, 'R', line);
    free(l.text);
    cr_assert_not(manifest_there("b/lib", "latest"));
    assert_snapshot_unchanged();
    assert_clean();
}

Test(check, a_damaged_manifest_body_is_quarantined)
{
    struct fixture f = build();
    char ms[DIGEST_STR_MAX], line[300];
    digest_format(&f.app, ms);
    flip_byte(&f.app);
    snapshot(&f.app);
    struct lines l;
    run_check(0, &l);
    snprintf(line, sizeof(line), "blob %s: content hashes to", ms);
    assert_line(&l, 'P', line);
    snprintf(line, sizeof(line), "manifest a/app@%s: its body is missing or damaged", ms);
    assert_line(&l, 'P', line);
    /* the index references it */
    snprintf(line, sizeof(line), "references manifest %s whose body is missing or damaged", ms);
    assert_line(&l, 'P', line);
    free(l.text);

    struct check_stats st = run_check(1, &l);
    cr_assert_eq(st.quarantined, 1, "%s", l.text);
    free(l.text);
    cr_assert(quarantined(&f.app));
    cr_assert_not(manifest_there("a/app", "v1"));
    cr_assert_not(manifest_there("a/app", "multi"));
    assert_snapshot_unchanged();
    assert_clean();
}

Test(check, a_link_without_its_blob_row_is_removed)
{
    struct fixture f = build();
    char ls[DIGEST_STR_MAX], q[256], line[300];
    digest_format(&f.lib_layer, ls);
    /* no operation removes a blob row and leaves its links: only damage does */
    snprintf(q, sizeof(q), "DELETE FROM blobs WHERE digest = '%s'", ls);
    sql(q);
    struct lines l;
    struct check_stats st = run_check(0, &l);
    snprintf(line, sizeof(line), "blob %s linked in b/lib has no blob row", ls);
    assert_line(&l, 'P', line);
    /* its file has no row now: garbage, not a problem of its own */
    cr_assert_eq(st.garbage_files, 1);
    free(l.text);

    run_check(1, &l);
    snprintf(line, sizeof(line), "blob %s: its links removed", ls);
    assert_line(&l, 'R', line);
    snprintf(line, sizeof(line), "references blob %s that is not linked", ls);
    assert_line(&l, 'P', line);
    free(l.text);
    cr_assert_not(manifest_there("b/lib", "latest"));
    cr_assert(tu_blob_file_exists(T.root, &f.lib_layer), "a file without a row is gc's");
    assert_clean();
}

Test(check, a_tag_naming_a_missing_manifest_is_removed)
{
    build();
    sql("INSERT INTO tags(repo, tag, digest, updated) VALUES('a/app', 'ghost', 'sha256:"
        "0000000000000000000000000000000000000000000000000000000000000000', 0)");
    struct lines l;
    struct check_stats st = run_check(0, &l);
    assert_line(&l, 'P', "tag a/app:ghost names manifest sha256:0000");
    cr_assert_eq(st.problems, 1, "%s", l.text);
    free(l.text);
    run_check(1, &l);
    assert_line(&l, 'R', "tag a/app:ghost removed");
    free(l.text);
    cr_assert(manifest_there("a/app", "v1"));
    assert_clean();
}

Test(check, reference_rows_without_their_manifest_are_removed)
{
    build();
    sql("INSERT INTO manifest_refs(repo, digest, ref, kind) VALUES('a/app', 'sha256:"
        "1111111111111111111111111111111111111111111111111111111111111111', 'sha256:"
        "2222222222222222222222222222222222222222222222222222222222222222', 0)");
    struct lines l;
    run_check(0, &l);
    assert_line(&l, 'P', "manifest a/app@sha256:1111");
    free(l.text);
    run_check(1, &l);
    assert_line(&l, 'R', "reference rows removed");
    free(l.text);
    assert_clean();
}

Test(check, garbage_files_are_counted_not_wrong)
{
    build();
    const char junk[] = "bytes nothing names";
    struct digest d = tu_digest_of(DIGEST_SHA256, junk);
    char p[512];
    blob_path(&d, p, sizeof(p));
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, junk, sizeof(junk) - 1), (ssize_t)(sizeof(junk) - 1));
    close(fd);
    snprintf(p, sizeof(p), "%s/uploads/stray", T.root);
    fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
    cr_assert(fd >= 0);
    close(fd);

    struct lines l;
    struct check_stats st = run_check(0, &l);
    cr_assert_eq(st.problems, 0, "%s", l.text);
    cr_assert_eq(st.garbage_files, 1);
    cr_assert_eq(st.garbage_bytes, sizeof(junk) - 1);
    cr_assert_eq(st.stray_uploads, 1);
    assert_line(&l, 'N', "upload area entry 'stray' has no session row");
    free(l.text);
    /* repair leaves garbage to gc */
    st = run_check(1, &l);
    cr_assert_eq(st.repaired, 0);
    free(l.text);
    cr_assert(tu_blob_file_exists(T.root, &d));
}

/* ---- the command ---- */

/* run_cmd - $OCIREG_BIN check [--repair] on T.root: its exit status, its
 * stdout and stderr in out */
static int
run_cmd(int repair, char *out, size_t cap)
{
    const char *bin = getenv("OCIREG_BIN");
    if (!bin)
        bin = "build/ocireg";
    char path[] = "/tmp/ocireg-check-out-XXXXXX";
    int ofd = mkstemp(path);
    cr_assert(ofd >= 0);
    unlink(path);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(ofd, 2);
        setenv("OCIREG_STORAGE_ROOT", T.root, 1);
        setenv("OCIREG_LOG_LEVEL", "warn", 1);
        execl(bin, bin, "check", repair ? "--repair" : NULL, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    ssize_t n = pread(ofd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(ofd);
    cr_assert(WIFEXITED(status), "ocireg check did not exit: %s", out);
    return WEXITSTATUS(status);
}

Test(check, the_command_exits_0_1_2)
{
    struct fixture f = build();
    char out[8192];
    /* this process holds the store, as a running server would */
    cr_assert_eq(run_cmd(0, out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "in use"), "%s", out);

    tu_close_only(&T);
    cr_assert_eq(run_cmd(0, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "checked 8 blobs, 3 manifests"), "%s", out);
    cr_assert(strstr(out, "0 problems"), "%s", out);

    truncate_blob(&f.lib_layer, 1);
    cr_assert_eq(run_cmd(0, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "size 1 on disk, 9 in the database"), "%s", out);
    cr_assert_eq(run_cmd(1, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "repaired: blob sha256:"), "%s", out);
    cr_assert(quarantined(&f.lib_layer));
    cr_assert_eq(run_cmd(0, out, sizeof(out)), 0, "%s", out);

    char root[64];
    snprintf(root, sizeof(root), "%s/none", T.root);
    memcpy(T.root, root, sizeof(root)); /* a root with no store is refused too */
    cr_assert_eq(run_cmd(0, out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "no store there"), "%s", out);
    *strrchr(T.root, '/') = '\0';
    tu_open_at(&T, 0); /* for the fixture's teardown */
}
