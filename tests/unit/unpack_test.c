/* unpack_test.c - layer unpacking (layerfs): OCI whiteout / opaque semantics in
 * both layer forms, flattening, overlay stacking, diff_id checks, ownership, and
 * hostile tars that try to write outside the target directory.
 *
 * Tars are written here with libarchive (which stores any name it is given),
 * so each trick is tested on its own; the fixture's hostile tars
 * ($OCIREG_FIXTURES/hostile/) are checked too when the variable is set. */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tools/ocirun-lite/fsutil.h"
#include "tools/ocirun-lite/layerfs.h"

#include "common/banned.h"

/* ---- helpers ------------------------------------------------------------------ */

struct tent {
    char type; /* d f l h c (char dev) */
    const char *name;
    const char *arg; /* file content, link target */
    int mode;
    int uid;
    const char *xattr; /* name of an xattr to attach (value "y") */
};

static char g_top[256]; /* per-test scratch: TOP/a/b/target is the unpack dir */

static void
setup_dirs(void)
{
    snprintf(g_top, sizeof(g_top), "/tmp/ocirun-unpack-XXXXXX");
    cr_assert(mkdtemp(g_top) != NULL);
    char p[512];
    snprintf(p, sizeof(p), "%s/a/b", g_top);
    struct err e;
    cr_assert_eq(fsutil_mkdir_p(p, &e), 0);
    snprintf(p, sizeof(p), "%s/victim.txt", g_top);
    FILE *f = fopen(p, "w");
    cr_assert(f != NULL);
    fputs("victim\n", f);
    fclose(f);
}

static void
teardown_dirs(void)
{
    if (g_top[0])
        fsutil_rm_rf_at(AT_FDCWD, g_top, NULL);
    g_top[0] = '\0';
}

static void
path_of(char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/%s", g_top, rel);
}

static void
make_tar(const char *path, const struct tent *t, size_t n, int gzip)
{
    struct archive *a = archive_write_new();
    struct archive_entry *ae;
    cr_assert(a != NULL);
    archive_write_set_format_pax_restricted(a);
    if (gzip)
        archive_write_add_filter_gzip(a);
    cr_assert_eq(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        ae = archive_entry_new();
        archive_entry_set_pathname(ae, t[i].name);
        archive_entry_set_uid(ae, t[i].uid);
        archive_entry_set_gid(ae, t[i].uid);
        archive_entry_set_mtime(ae, 1704067200, 0);
        size_t sz = 0;
        switch (t[i].type) {
        case 'd':
            archive_entry_set_filetype(ae, AE_IFDIR);
            archive_entry_set_perm(ae, t[i].mode ? t[i].mode : 0755);
            break;
        case 'f':
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_perm(ae, t[i].mode ? t[i].mode : 0644);
            sz = t[i].arg ? strlen(t[i].arg) : 0;
            archive_entry_set_size(ae, (la_int64_t)sz);
            break;
        case 'l':
            archive_entry_set_filetype(ae, AE_IFLNK);
            archive_entry_set_perm(ae, 0777);
            archive_entry_set_symlink(ae, t[i].arg);
            break;
        case 'h':
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_perm(ae, 0644);
            archive_entry_set_hardlink(ae, t[i].arg);
            archive_entry_set_size(ae, 0);
            break;
        case 'c':
            archive_entry_set_filetype(ae, AE_IFCHR);
            archive_entry_set_perm(ae, 0666);
            archive_entry_set_rdevmajor(ae, 1);
            archive_entry_set_rdevminor(ae, 3);
            break;
        default:
            cr_assert_fail("bad tent type");
        }
        if (t[i].xattr)
            archive_entry_xattr_add_entry(ae, t[i].xattr, "y", 1);
        cr_assert_eq(archive_write_header(a, ae), ARCHIVE_OK, "%s", archive_error_string(a));
        if (sz)
            cr_assert_eq(archive_write_data(a, t[i].arg, sz), (la_ssize_t)sz);
        archive_entry_free(ae);
    }
    cr_assert_eq(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* sha256 of a file (decompressed with libarchive if needed) as "sha256:hex" */
static void
diff_id_of(const char *path, char out[80])
{
    struct archive *a = archive_read_new();
    struct archive_entry *ae;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl;
    char buf[65536];
    la_ssize_t n;
    archive_read_support_filter_all(a);
    archive_read_support_format_raw(a);
    cr_assert_eq(archive_read_open_filename(a, path, 65536), ARCHIVE_OK);
    cr_assert_eq(archive_read_next_header(a, &ae), ARCHIVE_OK);
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0)
        EVP_DigestUpdate(md, buf, (size_t)n);
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    archive_read_free(a);
    memcpy(out, "sha256:", 7);
    for (unsigned i = 0; i < dl; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", d[i]);
}

static int
exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int
exists_in(const char *dir, const char *rel)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return exists(p);
}

static char *
read_small(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* everything directly below TOP must be what the test created: a/, victim.txt
 * (unchanged), layer.tar; and /tmp must not have the fixture's escape names */
static void
assert_nothing_escaped(void)
{
    DIR *d = opendir(g_top);
    struct dirent *de;
    char p[512];
    cr_assert(d != NULL);
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        cr_assert(strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "a") == 0 ||
                      strcmp(n, "victim.txt") == 0 || strcmp(n, "layer.tar") == 0,
                  "unexpected entry outside the target: %s/%s", g_top, n);
    }
    closedir(d);
    snprintf(p, sizeof(p), "%s/a", g_top);
    d = opendir(p);
    cr_assert(d != NULL);
    while ((de = readdir(d)) != NULL)
        cr_assert(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                      strcmp(de->d_name, "b") == 0,
                  "unexpected entry outside the target: %s/a/%s", g_top, de->d_name);
    closedir(d);
    snprintf(p, sizeof(p), "%s/a/b", g_top);
    d = opendir(p);
    cr_assert(d != NULL);
    while ((de = readdir(d)) != NULL)
        cr_assert(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                      strcmp(de->d_name, "target") == 0,
                  "unexpected entry outside the target: %s/a/b/%s", g_top, de->d_name);
    closedir(d);
    path_of(p, sizeof(p), "victim.txt");
    struct stat st;
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(st.st_nlink, 1, "victim.txt got hard-linked from the layer");
    cr_assert_str_eq(read_small(p), "victim\n", "victim.txt was modified");
    cr_assert(!exists("/tmp/ocirun-hostile-abs.txt"));
    cr_assert(!exists("/tmp/ocirun-hostile-symlink.txt"));
}

/* unpack the given entries as TOP/layer.tar into TOP/a/b/target */
static int
unpack_entries(const struct tent *t, size_t n, enum layerfs_mode mode, struct err *e)
{
    char tar[512], dest[512];
    path_of(tar, sizeof(tar), "layer.tar");
    path_of(dest, sizeof(dest), "a/b/target");
    make_tar(tar, t, n, 0);
    err_clear(e);
    return layerfs_unpack(tar, NULL, dest, mode, NULL, e);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- whiteouts -------------------------------------------------------------------- */

static const struct tent layer1[] = {
    {'d', "bin", NULL, 0755, 0, NULL},
    {'f', "bin/busybox", "#!binary", 0755, 0, NULL},
    {'l', "bin/ls", "busybox", 0, 0, NULL},
    {'l', "bin/cat", "busybox", 0, 0, NULL},
    {'d', "data", NULL, 0755, 0, NULL},
    {'f', "data/keep.txt", "keep\n", 0644, 0, NULL},
    {'h', "data/keep-hardlink.txt", "data/keep.txt", 0, 0, NULL},
    {'l', "data/keep-symlink", "keep.txt", 0, 0, NULL},
    {'f', "data/remove-me.txt", "remove\n", 0644, 0, NULL},
    {'d', "gone", NULL, 0755, 0, NULL},
    {'d', "gone/deeper", NULL, 0755, 0, NULL},
    {'f', "gone/deeper/file2.txt", "gone2\n", 0644, 0, NULL},
    {'d', "opq", NULL, 0755, 0, NULL},
    {'f', "opq/old1.txt", "old1\n", 0644, 0, NULL},
    {'d', "opq/sub", NULL, 0755, 0, NULL},
    {'f', "opq/sub/old2.txt", "old2\n", 0644, 0, NULL},
};

static const struct tent layer2[] = {
    {'f', ".wh.gone", "", 0644, 0, NULL},
    {'d', "bin", NULL, 0755, 0, NULL},
    {'f', "bin/.wh.ls", "", 0644, 0, NULL},
    {'d', "data", NULL, 0755, 0, NULL},
    {'f', "data/.wh.remove-me.txt", "", 0644, 0, NULL},
    {'f', "data/added.txt", "added\n", 0644, 0, NULL},
    {'d', "opq", NULL, 0755, 0, NULL},
    /* before the opaque marker in the stream: must survive */
    {'f', "opq/-early.txt", "early\n", 0644, 0, NULL},
    {'f', "opq/.wh..wh..opq", "", 0644, 0, NULL},
    {'f', "opq/new.txt", "new\n", 0644, 0, NULL},
};

static void
check_merged(const char *r)
{
    cr_assert(exists_in(r, "data/keep.txt"));
    cr_assert(exists_in(r, "data/keep-hardlink.txt"));
    cr_assert(exists_in(r, "data/keep-symlink"));
    cr_assert(exists_in(r, "data/added.txt"));
    cr_assert(!exists_in(r, "data/remove-me.txt"), "whiteout did not delete remove-me.txt");
    cr_assert(!exists_in(r, "gone"), "whiteout did not delete the /gone tree");
    cr_assert(!exists_in(r, "opq/old1.txt"), "opaque dir kept a lower file");
    cr_assert(!exists_in(r, "opq/sub"), "opaque dir kept a lower dir");
    cr_assert(exists_in(r, "opq/new.txt"));
    cr_assert(exists_in(r, "opq/-early.txt"), "opaque marker removed an entry of its own layer");
    cr_assert(!exists_in(r, "bin/ls"), "whiteout did not delete the ls symlink");
    cr_assert(exists_in(r, "bin/cat"));
    cr_assert(!exists_in(r, "data/.wh.remove-me.txt"));
    cr_assert(!exists_in(r, ".wh.gone"));
    cr_assert(!exists_in(r, "opq/.wh..wh..opq"));
    cr_assert(!exists_in(r, "bin/.wh.ls"));
}

static void
unpack_two(enum layerfs_mode mode, char *l1, char *l2, size_t len)
{
    char t1[512], t2[512];
    struct err e;
    path_of(t1, sizeof(t1), "l1.tar");
    path_of(t2, sizeof(t2), "l2.tar");
    make_tar(t1, layer1, N(layer1), 1);
    make_tar(t2, layer2, N(layer2), 0);
    snprintf(l1, len, "%s/L1", g_top);
    snprintf(l2, len, "%s/L2", g_top);
    char d1[80], d2[80];
    diff_id_of(t1, d1);
    diff_id_of(t2, d2);
    err_clear(&e);
    cr_assert_eq(layerfs_unpack(t1, d1, l1, mode, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(layerfs_unpack(t2, d2, l2, mode, NULL, &e), 0, "%s", e.msg);
}

Test(unpack, whiteouts_oci_form_then_flatten, .init = setup_dirs, .fini = teardown_dirs)
{
    char l1[512], l2[512], r[512];
    struct err e;
    unpack_two(LAYERFS_OCI, l1, l2, sizeof(l1));
    /* OCI form keeps the markers as files in the layer dir */
    cr_assert(exists_in(l2, "opq/.wh..wh..opq"));
    cr_assert(exists_in(l2, "data/.wh.remove-me.txt"));
    snprintf(r, sizeof(r), "%s/R", g_top);
    cr_assert_eq(mkdir(r, 0755), 0);
    const char *layers[] = {l1, l2};
    err_clear(&e);
    cr_assert_eq(layerfs_flatten(layers, 2, r, &e), 0, "%s", e.msg);
    check_merged(r);
}

Test(unpack, whiteouts_overlay_form_then_flatten, .init = setup_dirs, .fini = teardown_dirs)
{
    char l1[512], l2[512], r[512], p[600];
    struct stat st;
    struct err e;
    if (layerfs_default_mode(g_top) != LAYERFS_OVERLAY) {
        teardown_dirs(); /* .fini does not run for a skipped test */
        cr_skip_test("needs root (mknod 0/0 and trusted.* xattrs)");
    }
    unpack_two(LAYERFS_OVERLAY, l1, l2, sizeof(l1));
    /* converted: 0/0 char devices and the opaque xattr, no .wh. files */
    snprintf(p, sizeof(p), "%s/data/remove-me.txt", l2);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
    snprintf(p, sizeof(p), "%s/gone", l2);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert(S_ISCHR(st.st_mode));
    char v[4] = "";
    snprintf(p, sizeof(p), "%s/opq", l2);
    cr_assert_eq(lgetxattr(p, "trusted.overlay.opaque", v, sizeof(v)), 1);
    cr_assert_eq(v[0], 'y');
    cr_assert(exists_in(l2, "opq/-early.txt"));
    cr_assert(!exists_in(l2, "opq/.wh..wh..opq"));
    cr_assert(!exists_in(l2, "bin/.wh.ls"));
    snprintf(r, sizeof(r), "%s/R", g_top);
    cr_assert_eq(mkdir(r, 0755), 0);
    const char *layers[] = {l1, l2};
    err_clear(&e);
    cr_assert_eq(layerfs_flatten(layers, 2, r, &e), 0, "%s", e.msg);
    check_merged(r);
}

Test(unpack, overlay_mount_of_overlay_form_layers, .init = setup_dirs, .fini = teardown_dirs)
{
    char l1[512], l2[512];
    if (!layerfs_overlay_works(g_top)) {
        teardown_dirs(); /* .fini does not run for a skipped test */
        cr_skip_test("overlayfs with whiteout layers not available here");
    }
    unpack_two(LAYERFS_OVERLAY, l1, l2, sizeof(l1));
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        char up[600], wk[600], mnt[600], opts[2048];
        snprintf(up, sizeof(up), "%s/up", g_top);
        snprintf(wk, sizeof(wk), "%s/wk", g_top);
        snprintf(mnt, sizeof(mnt), "%s/mnt", g_top);
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mkdir(up, 0755) || mkdir(wk, 0755) || mkdir(mnt, 0755))
            _exit(2);
        snprintf(opts, sizeof(opts), "lowerdir=%s:%s,upperdir=%s,workdir=%s", l2, l1, up, wk);
        if (mount("overlay", mnt, "overlay", 0, opts) < 0)
            _exit(3);
        struct stat st;
        char p[700];
        int bad = 0;
        const char *present[] = {"data/keep.txt", "data/added.txt", "opq/new.txt", "opq/-early.txt",
                                 "bin/cat"};
        const char *absent[] = {"data/remove-me.txt", "gone", "opq/old1.txt", "opq/sub", "bin/ls",
                                "opq/.wh..wh..opq"};
        for (size_t i = 0; i < N(present); i++) {
            snprintf(p, sizeof(p), "%s/%s", mnt, present[i]);
            bad |= lstat(p, &st) != 0;
        }
        for (size_t i = 0; i < N(absent); i++) {
            snprintf(p, sizeof(p), "%s/%s", mnt, absent[i]);
            bad |= lstat(p, &st) == 0;
        }
        umount2(mnt, MNT_DETACH);
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "overlay view wrong (child exit %d)", WEXITSTATUS(status));
}

Test(unpack, flatten_keeps_hardlinks_and_symlinks, .init = setup_dirs, .fini = teardown_dirs)
{
    char l1[512], l2[512], r[512], a[600], b[600];
    struct stat sa, sb;
    struct err e;
    unpack_two(LAYERFS_OCI, l1, l2, sizeof(l1));
    snprintf(r, sizeof(r), "%s/R", g_top);
    cr_assert_eq(mkdir(r, 0755), 0);
    const char *layers[] = {l1};
    cr_assert_eq(layerfs_flatten(layers, 1, r, &e), 0, "%s", e.msg);
    snprintf(a, sizeof(a), "%s/data/keep.txt", r);
    snprintf(b, sizeof(b), "%s/data/keep-hardlink.txt", r);
    cr_assert_eq(stat(a, &sa), 0);
    cr_assert_eq(stat(b, &sb), 0);
    cr_assert_eq(sa.st_ino, sb.st_ino, "hard link lost in the copy");
    snprintf(a, sizeof(a), "%s/data/keep-symlink", r);
    char tgt[64];
    ssize_t n = readlink(a, tgt, sizeof(tgt) - 1);
    cr_assert_eq(n, 8);
    tgt[n] = '\0';
    cr_assert_str_eq(tgt, "keep.txt");
}

Test(unpack, diff_id_mismatch_is_refused, .init = setup_dirs, .fini = teardown_dirs)
{
    char t[512], d[512];
    struct err e;
    path_of(t, sizeof(t), "layer.tar");
    path_of(d, sizeof(d), "a/b/target");
    make_tar(t, layer1, N(layer1), 1);
    err_clear(&e);
    cr_assert_eq(layerfs_unpack(t,
                                "sha256:0000000000000000000000000000000000000000000000000000"
                                "000000000000",
                                d, LAYERFS_OCI, NULL, &e),
                 -1);
    cr_assert_eq(e.code, ERR_DIGEST_INVALID);
    cr_assert(strstr(e.msg, "sha256:0000") != NULL, "%s", e.msg);
}

Test(unpack, not_a_tar_is_refused, .init = setup_dirs, .fini = teardown_dirs)
{
    char t[512], d[512];
    struct err e;
    path_of(t, sizeof(t), "layer.tar");
    path_of(d, sizeof(d), "a/b/target");
    FILE *f = fopen(t, "w");
    cr_assert(f != NULL);
    fputs("this is not a tar archive, just text that goes on and on\n", f);
    fclose(f);
    cr_assert_eq(layerfs_unpack(t, NULL, d, LAYERFS_OCI, NULL, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
}

Test(unpack, ownership_modes_devices_kept_as_root, .init = setup_dirs, .fini = teardown_dirs)
{
    static const struct tent t[] = {
        {'d', "home", NULL, 0755, 0, NULL},
        {'d', "home/app", NULL, 0750, 1000, NULL},
        {'f', "home/app/hello.txt", "hello\n", 0640, 1000, NULL},
        {'f', "suid", "x", 04755, 0, NULL},
        {'d', "ro", NULL, 0555, 0, NULL},
        {'f', "ro/inside", "x", 0444, 0, NULL},
        {'c', "null", NULL, 0, 0, NULL},
    };
    char d[512], p[600];
    struct stat st;
    struct err e;
    if (geteuid() != 0) {
        teardown_dirs(); /* .fini does not run for a skipped test */
        cr_skip_test("needs root");
    }
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), 0, "%s", e.msg);
    path_of(d, sizeof(d), "a/b/target");
    snprintf(p, sizeof(p), "%s/home/app", d);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_uid, 1000);
    cr_assert_eq(st.st_mode & 07777, 0750);
    snprintf(p, sizeof(p), "%s/home/app/hello.txt", d);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_uid, 1000);
    cr_assert_eq(st.st_gid, 1000);
    cr_assert_eq(st.st_mode & 07777, 0640);
    cr_assert_eq(st.st_mtime, 1704067200);
    snprintf(p, sizeof(p), "%s/suid", d);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 04755);
    snprintf(p, sizeof(p), "%s/ro", d);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0555);
    cr_assert(exists_in(d, "ro/inside"));
    snprintf(p, sizeof(p), "%s/null", d);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert(S_ISCHR(st.st_mode));
    cr_assert_eq(st.st_rdev, makedev(1, 3));
}

Test(unpack, overlay_xattrs_in_the_tar_are_dropped, .init = setup_dirs, .fini = teardown_dirs)
{
    static const struct tent t[] = {
        {'d', "dir", NULL, 0755, 0, "trusted.overlay.opaque"},
        {'f', "dir/f", "x", 0644, 0, "trusted.overlay.redirect"},
    };
    char p[600];
    char v[8];
    struct err e;
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), 0, "%s", e.msg);
    path_of(p, sizeof(p), "a/b/target/dir");
    cr_assert_eq(lgetxattr(p, "trusted.overlay.opaque", v, sizeof(v)), -1);
    path_of(p, sizeof(p), "a/b/target/dir/f");
    cr_assert_eq(lgetxattr(p, "trusted.overlay.redirect", v, sizeof(v)), -1);
}

/* ---- hostile tars -------------------------------------------------------------------- */

Test(unpack, hostile_dotdot_refused, .init = setup_dirs, .fini = teardown_dirs)
{
    static const struct tent t[] = {
        {'f', "ok.txt", "ok", 0644, 0, NULL},
        {'f', "../escape-dotdot.txt", "escaped", 0644, 0, NULL},
    };
    struct err e;
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), -1);
    cr_assert_eq(e.code, ERR_MANIFEST_INVALID);
    cr_assert(strstr(e.msg, "escape") != NULL, "%s", e.msg);
    assert_nothing_escaped();
}

Test(unpack, hostile_inner_dotdot_refused, .init = setup_dirs, .fini = teardown_dirs)
{
    static const struct tent t[] = {
        {'d', "x", NULL, 0755, 0, NULL},
        {'f', "x/../../../../escape2.txt", "escaped", 0644, 0, NULL},
    };
    struct err e;
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), -1);
    assert_nothing_escaped();
}

Test(unpack, hostile_absolute_name_lands_inside, .init = setup_dirs, .fini = teardown_dirs)
{
    char abs[600], d[512];
    path_of(abs, sizeof(abs), "abs-escape.txt"); /* absolute path of TOP/abs-escape.txt */
    const struct tent t[] = {{'f', abs, "escaped", 0644, 0, NULL}};
    struct err e;
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), 0, "%s", e.msg);
    assert_nothing_escaped();
    path_of(d, sizeof(d), "a/b/target");
    cr_assert(exists_in(d, abs + 1), "absolute name not placed below the target");
}

Test(unpack, hostile_relative_symlink_cannot_lead_out, .init = setup_dirs, .fini = teardown_dirs)
{
    static const struct tent t[] = {
        {'l', "up", "../../..", 0, 0, NULL},
        {'f', "up/escape-symlink.txt", "escaped", 0644, 0, NULL},
        {'d', "dir", NULL, 0755, 0, NULL},
        {'l', "dir/sub", "../../../..", 0, 0, NULL},
        {'f', "dir/sub/escape-nested.txt", "escaped", 0644, 0, NULL},
    };
    char d[512];
    struct err e;
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), 0, "%s", e.msg);
    assert_nothing_escaped();
    /* RESOLVE_IN_ROOT: ".." at the root stays at the root */
    path_of(d, sizeof(d), "a/b/target");
    cr_assert(exists_in(d, "escape-symlink.txt"));
    cr_assert(exists_in(d, "escape-nested.txt"));
}

Test(unpack, hostile_absolute_symlink_cannot_lead_out, .init = setup_dirs, .fini = teardown_dirs)
{
    char outside[600], dir[600];
    path_of(outside, sizeof(outside), "");
    path_of(dir, sizeof(dir), "a");
    const struct tent t[] = {
        {'l', "abs", outside, 0, 0, NULL},
        {'f', "abs/escape-abs.txt", "escaped", 0644, 0, NULL},
    };
    struct err e;
    (void)dir;
    /* whether it is refused or placed inside, nothing may land outside */
    unpack_entries(t, N(t), LAYERFS_OCI, &e);
    assert_nothing_escaped();
    const struct tent t2[] = {
        {'l', "root", "/", 0, 0, NULL},
        {'d', "root/tmp", NULL, 0755, 0, NULL},
        {'f', "root/tmp/ocirun-hostile-abs.txt", "escaped", 0644, 0, NULL},
    };
    char d[512];
    path_of(d, sizeof(d), "a/b/target");
    fsutil_rm_rf_at(AT_FDCWD, d, NULL);
    cr_assert_eq(unpack_entries(t2, N(t2), LAYERFS_OCI, &e), 0, "%s", e.msg);
    assert_nothing_escaped();
    cr_assert(exists_in(d, "tmp/ocirun-hostile-abs.txt"));
}

Test(unpack, hostile_file_replaces_symlink_not_writes_through, .init = setup_dirs,
     .fini = teardown_dirs)
{
    static const struct tent t[] = {
        {'l', "victim", "../../../victim.txt", 0, 0, NULL},
        {'f', "victim", "pwned", 0644, 0, NULL},
    };
    char d[512], p[600];
    struct stat st;
    struct err e;
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), 0, "%s", e.msg);
    assert_nothing_escaped();
    path_of(d, sizeof(d), "a/b/target");
    snprintf(p, sizeof(p), "%s/victim", d);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_str_eq(read_small(p), "pwned");
}

Test(unpack, hostile_hardlink_out_of_tree_refused, .init = setup_dirs, .fini = teardown_dirs)
{
    static const struct tent t[] = {
        {'h', "hl", "../../../victim.txt", 0, 0, NULL},
        {'f', "hl", "pwned", 0644, 0, NULL},
    };
    struct err e;
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), -1);
    cr_assert(strstr(e.msg, "escape") != NULL, "%s", e.msg);
    assert_nothing_escaped();
}

Test(unpack, hostile_hardlink_absolute_resolves_inside, .init = setup_dirs, .fini = teardown_dirs)
{
    char victim[600];
    path_of(victim, sizeof(victim), "victim.txt");
    const struct tent t[] = {{'h', "hlabs", victim, 0, 0, NULL}};
    struct err e;
    /* "/TOP/victim.txt" means TARGET/TOP/victim.txt, which does not exist */
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), -1);
    assert_nothing_escaped();
    const struct tent t2[] = {{'h', "pw", "/etc/passwd", 0, 0, NULL}};
    char d[512], p[600];
    path_of(d, sizeof(d), "a/b/target");
    fsutil_rm_rf_at(AT_FDCWD, d, NULL);
    cr_assert_eq(unpack_entries(t2, N(t2), LAYERFS_OCI, &e), -1);
    snprintf(p, sizeof(p), "%s/pw", d);
    cr_assert(!exists(p));
}

Test(unpack, hostile_hardlink_through_symlink_parent, .init = setup_dirs, .fini = teardown_dirs)
{
    /* the link target's parent is a symlink pointing out: resolved in root */
    static const struct tent t[] = {
        {'l', "up", "../../..", 0, 0, NULL},
        {'h', "hl", "up/victim.txt", 0, 0, NULL},
    };
    struct err e;
    cr_assert_eq(unpack_entries(t, N(t), LAYERFS_OCI, &e), -1);
    assert_nothing_escaped();
}

Test(unpack, hostile_whiteout_cannot_delete_outside, .init = setup_dirs, .fini = teardown_dirs)
{
    static const struct tent t[] = {
        {'l', "up", "../../..", 0, 0, NULL},
        {'f', "up/.wh.victim.txt", "", 0644, 0, NULL},
        {'f', ".wh..", "", 0644, 0, NULL},
    };
    struct err e;
    enum layerfs_mode mode = layerfs_default_mode(g_top);
    unpack_entries(t, N(t), mode, &e);
    assert_nothing_escaped();
}

static void
run_fixture_tar(const char *name, int expect_ok)
{
    const char *fx = getenv("OCIREG_FIXTURES");
    char src[1024], tar[512], dest[512];
    struct err e;
    if (!fx || !*fx) {
        teardown_dirs(); /* .fini does not run for a skipped test */
        cr_skip_test("OCIREG_FIXTURES not set (tests/run-all.sh sets it)");
    }
    snprintf(src, sizeof(src), "%s/hostile/%s", fx, name);
    cr_assert(exists(src), "fixture %s missing: run tests/fixtures/build.sh", src);
    path_of(tar, sizeof(tar), "layer.tar");
    path_of(dest, sizeof(dest), "a/b/target");
    /* copy the fixture next to the target (TOP/layer.tar) */
    FILE *in = fopen(src, "rb"), *out = fopen(tar, "wb");
    cr_assert(in && out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    err_clear(&e);
    int rc = layerfs_unpack(tar, NULL, dest, layerfs_default_mode(g_top), NULL, &e);
    if (expect_ok >= 0)
        cr_assert_eq(rc, expect_ok ? 0 : -1, "%s: rc %d (%s)", name, rc, e.msg);
    assert_nothing_escaped();
}

Test(unpack, fixture_hostile_dotdot, .init = setup_dirs, .fini = teardown_dirs)
{
    run_fixture_tar("dotdot.tar", 0);
}

Test(unpack, fixture_hostile_symlink, .init = setup_dirs, .fini = teardown_dirs)
{
    run_fixture_tar("symlink.tar", -1);
}

Test(unpack, fixture_hostile_hardlink, .init = setup_dirs, .fini = teardown_dirs)
{
    run_fixture_tar("hardlink.tar", 0);
}

Test(unpack, hostile_dot_whiteouts_refused_in_both_forms, .init = setup_dirs, .fini = teardown_dirs)
{
    static const struct tent t1[] = {{'f', ".wh...", "", 0644, 0, NULL}};
    static const struct tent t2[] = {{'d', "d", NULL, 0755, 0, NULL},
                                     {'f', "d/.wh..", "", 0644, 0, NULL}};
    char d[512];
    struct err e;
    path_of(d, sizeof(d), "a/b/target");
    cr_assert_eq(unpack_entries(t1, N(t1), LAYERFS_OCI, &e), -1);
    cr_assert(strstr(e.msg, "bad whiteout") != NULL, "%s", e.msg);
    fsutil_rm_rf_at(AT_FDCWD, d, NULL);
    cr_assert_eq(unpack_entries(t2, N(t2), LAYERFS_OCI, &e), -1);
    fsutil_rm_rf_at(AT_FDCWD, d, NULL);
    if (layerfs_default_mode(g_top) == LAYERFS_OVERLAY) {
        cr_assert_eq(unpack_entries(t1, N(t1), LAYERFS_OVERLAY, &e), -1);
        fsutil_rm_rf_at(AT_FDCWD, d, NULL);
    }
    assert_nothing_escaped();
}

/* a layer directory that holds ".wh..." / ".wh.." (made by hand, as a
 * hostile cache could): flattening must not remove the target or its parent */
Test(unpack, flatten_ignores_whiteouts_of_dot_and_dotdot, .init = setup_dirs, .fini = teardown_dirs)
{
    char layer[512], dest[512], p[700];
    struct err e;
    path_of(layer, sizeof(layer), "a/b/layer");
    path_of(dest, sizeof(dest), "a/b/target");
    cr_assert_eq(mkdir(layer, 0755), 0);
    cr_assert_eq(mkdir(dest, 0755), 0);
    snprintf(p, sizeof(p), "%s/keep", dest);
    FILE *f = fopen(p, "w");
    cr_assert(f != NULL);
    fclose(f);
    snprintf(p, sizeof(p), "%s/.wh...", layer);
    f = fopen(p, "w");
    fclose(f);
    snprintf(p, sizeof(p), "%s/.wh..", layer);
    f = fopen(p, "w");
    fclose(f);
    snprintf(p, sizeof(p), "%s/sub", layer);
    cr_assert_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/sub/.wh...", layer);
    f = fopen(p, "w");
    fclose(f);
    const char *layers[] = {layer};
    err_clear(&e);
    cr_assert_eq(layerfs_flatten(layers, 1, dest, &e), 0, "%s", e.msg);
    cr_assert(exists_in(dest, "keep"), "flatten removed the target's own content");
    cr_assert(exists_in(dest, "sub"));
    path_of(p, sizeof(p), "a/b/layer/sub");
    cr_assert(exists(p), "flatten removed the layer (the target's sibling)");
    cr_assert(!exists_in(dest, ".wh..."));
    path_of(p, sizeof(p), "victim.txt");
    cr_assert(exists(p));
}

/* ---- the probe cache (ROOT/probe) ------------------------------------------------- */

static void
probe_file(char *path, size_t len)
{
    snprintf(path, len, "%s/probe", g_top);
}

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static void
read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL, "%s missing", path);
    cr_assert(fgets(buf, (int)len, f) != NULL);
    fclose(f);
}

/* the probe-cache tests: root only (else skipped); tmp gets a fresh folder
 * below the test's top; OCIRUN_REPROBE unset */
static void
probe_test_begin(char *tmp, size_t cap)
{
    if (geteuid() != 0) {
        teardown_dirs();
        cr_skip_test("the probe cache is only used as root");
    }
    snprintf(tmp, cap, "%s/tmp", g_top);
    cr_assert_eq(mkdir(tmp, 0700), 0);
    unsetenv("OCIRUN_REPROBE");
}

Test(unpack, probe_cache_is_written_then_read_back, .init = setup_dirs, .fini = teardown_dirs)
{
    char p[512], line[512], tmp[512], flipped[512];
    enum layerfs_mode mode, mode2;
    int ovl, ovl2;

    probe_test_begin(tmp, sizeof(tmp));
    layerfs_probe_cached(g_top, &mode, &ovl);
    cr_assert_eq(mode, layerfs_default_mode(tmp));
    cr_assert_eq(ovl, layerfs_overlay_works(tmp));
    probe_file(p, sizeof(p));
    read_text(p, line, sizeof(line));
    cr_assert(strncmp(line, "ocirun-probe v1 ", 16) == 0, "cache line: %s", line);
    /* same key, the other answer: a second call must return what the file says */
    char *o = strstr(line, " overlay=");
    cr_assert(o != NULL);
    o[9] = ovl ? '0' : '1';
    snprintf(flipped, sizeof(flipped), "%s", line);
    write_text(p, flipped);
    layerfs_probe_cached(g_top, &mode2, &ovl2);
    cr_assert_eq(mode2, mode);
    cr_assert_eq(ovl2, !ovl, "the cached answer was not used");
    /* OCIRUN_REPROBE=1 probes again and rewrites the file */
    setenv("OCIRUN_REPROBE", "1", 1);
    layerfs_probe_cached(g_top, &mode2, &ovl2);
    unsetenv("OCIRUN_REPROBE");
    cr_assert_eq(ovl2, ovl);
    read_text(p, line, sizeof(line));
    cr_assert(strcmp(line, flipped) != 0, "OCIRUN_REPROBE=1 left the cache as it was");
}

Test(unpack, probe_cache_with_another_key_or_garbage_is_ignored, .init = setup_dirs,
     .fini = teardown_dirs)
{
    char p[512], line[512], tmp[512];
    enum layerfs_mode mode;
    int ovl, want;

    probe_test_begin(tmp, sizeof(tmp));
    want = layerfs_overlay_works(tmp);
    probe_file(p, sizeof(p));
    /* another kernel release: stale, whatever it says */
    write_text(p, want ? "ocirun-probe v1 0.0.0-other 1 mode=1 overlay=0\n"
                       : "ocirun-probe v1 0.0.0-other 1 mode=2 overlay=1\n");
    layerfs_probe_cached(g_top, &mode, &ovl);
    cr_assert_eq(ovl, want);
    read_text(p, line, sizeof(line));
    cr_assert(strstr(line, "0.0.0-other") == NULL, "stale cache not replaced: %s", line);
    /* garbage: probed again */
    write_text(p, "nonsense\n");
    layerfs_probe_cached(g_top, &mode, &ovl);
    cr_assert_eq(ovl, want);
    cr_assert_eq(mode, layerfs_default_mode(tmp));
}
