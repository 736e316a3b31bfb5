/* check_cmd_test.c - `ocireg check` against a real server's store: refused
 * (exit 2) while the server runs, 0 once it stopped, 1 on a damaged blob,
 * --repair quarantines it and deletes the manifest it broke, the next check
 * is 0, and the restarted server answers 404 for that manifest (not a broken
 * image) while the rest still pulls. */
#include "tests/integration/api_test.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/banned.h"

static void
setup(void)
{
    cr_assert_eq(testsrv_start(&S, NULL, NULL), 0, "server did not start");
}

static void
teardown(void)
{
    testsrv_cleanup(&S);
}

TestSuite(check_cmd, .init = setup, .fini = teardown, .timeout = 60);

/* $OCIREG_BIN check [--repair] on S's root: exit status, output in out */
static int
ocireg_check(int repair, char *out, size_t cap)
{
    const char *bin = getenv("OCIREG_BIN");
    if (!bin)
        bin = "build/ocireg";
    char path[] = "/tmp/ocireg-check-cmd-XXXXXX";
    int ofd = mkstemp(path);
    cr_assert(ofd >= 0);
    unlink(path);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(ofd, 2);
        setenv("OCIREG_STORAGE_ROOT", S.root, 1);
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

static long
get_status(const char *path)
{
    struct tresp r;
    cr_assert_eq(treq(&S, "GET", path, NULL, NULL, 0, &r), 0);
    long st = r.status;
    tresp_free(&r);
    return st;
}

Test(check_cmd, refused_while_served_then_finds_repairs_and_is_clean)
{
    char a[80], b[80], out[16384];
    push_image("app", "v1", "one", a);
    push_image("lib", "v1", "two", b);

    cr_assert_eq(ocireg_check(0, out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "in use"), "%s", out);
    cr_assert_eq(testsrv_stop(&S) & 0xffff, 0);

    cr_assert_eq(ocireg_check(0, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "checked 6 blobs, 2 manifests"), "%s", out);

    /* the layer of app:v1 (make_image's bytes) loses its tail */
    char ld[80], path[512];
    const char layer[] = "layer bytes of one";
    tdigest(layer, sizeof(layer) - 1, ld);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", S.root, ld + 7, ld + 7);
    cr_assert_eq(truncate(path, 4), 0, "%s", path);

    cr_assert_eq(ocireg_check(0, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "size 4 on disk, 18 in the database"), "%s", out);
    cr_assert_eq(ocireg_check(1, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "repaired: blob sha256:"), "%s", out);
    cr_assert(strstr(out, "deleted with its tags and references"), "%s", out);
    cr_assert_eq(access(path, F_OK), -1, "the damaged file is still in blobs/");
    char q[512];
    snprintf(q, sizeof(q), "%s/quarantine/sha256", S.root);
    DIR *d = opendir(q);
    cr_assert_not_null(d, "no quarantine folder");
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strncmp(de->d_name, ld + 7, 64) == 0;
    closedir(d);
    cr_assert_eq(n, 1, "the damaged file is not in quarantine/");
    cr_assert_eq(ocireg_check(0, out, sizeof(out)), 0, "%s", out);

    char root[sizeof(S.root)];
    memcpy(root, S.root, sizeof(root));
    int own = S.own_root;
    cr_assert_eq(testsrv_start(&S, root, NULL), 0, "server did not restart");
    S.own_root = own;
    cr_assert_eq(get_status("/v2/app/manifests/v1"), 404);
    cr_assert_eq(get_status("/v2/lib/manifests/v1"), 200);
}
