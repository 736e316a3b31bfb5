/* conformance_nofd_test.c - the project's conformance program against a
 * registry whose blob backend offers no file descriptor: tests/lib/blob_nofd
 * (the filesystem backend without its descriptor offers) and tests/lib/blob_mem
 * (bytes in memory, read and write only: no descriptor, no rename, no file).
 * Every blob and manifest GET then streams from the backend's reader and every
 * upload is written through the writer's append, so a pass on blob_mem proves
 * the server needs neither descriptors nor renames from its blob backend
 * (issue 9, point 6).
 * The registry runs in this process (inproc, one worker); the program is
 * $CONFORMANCE_BIN (tests/run-all.sh sets it; default build/conformance). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/lib/blob_nofd.h"
#include "tests/lib/inproc.h"
#include "tests/lib/testsrv.h"

#include "common/banned.h"

static void
conformance_on(const char *backend)
{
    setenv("OCIREG_TEST_BLOBS", backend, 1);
    cr_assert_not_null(blob_nofd_selected(), "OCIREG_TEST_BLOBS=%s selects no backend", backend);
    struct inproc p;
    struct testsrv s;
    cr_assert_eq(inproc_start(&p, "ocireg-conf-nofd", 1, 0, &s), 0);

    const char *bin = getenv("CONFORMANCE_BIN");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", bin && *bin ? bin : "build/conformance", s.url);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    char line[1024], last[1024] = "";
    int fails = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "FAIL", 4) == 0) {
            fails++;
            cr_log_error("%s", line);
        }
        if (strstr(line, " passed, "))
            snprintf(last, sizeof(last), "%s", line);
    }
    int st = pclose(f);
    inproc_stop(&p);
    unsetenv("OCIREG_TEST_BLOBS");

    cr_assert_neq(last[0], '\0', "the conformance program printed no summary");
    cr_log_info("conformance on the %s backend: %s", backend, last);
    cr_assert_eq(fails, 0, "%d checks failed: %s", fails, last);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "conformance exit status %d", st);
    cr_assert_not_null(strstr(last, " 0 failed"), "%s", last);
}

Test(conformance_nofd, every_check_passes_on_a_backend_without_descriptors, .timeout = 300)
{
    conformance_on("nofd");
}

Test(conformance_nofd, every_check_passes_on_the_read_write_only_memory_backend, .timeout = 300)
{
    conformance_on("mem");
}
