/* main.c - `conformance URL [--repo NAME] [--repo2 NAME] [--only GLOB] [--json]`:
 * the project's own OCI distribution-spec conformance program. It pushes its
 * own content to a live registry, checks every endpoint, status, header and
 * error body, prints one line per check and ends with "N passed, N failed".
 * Exit status 0 only when nothing failed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/audit.h"
#include "conformance/check.h"
#include "conformance/client.h"
#include "conformance/suite.h"
#include "common/banned.h"

static void
usage(FILE *f)
{
    fprintf(f, "usage: conformance URL [--repo NAME] [--repo2 NAME] [--only GLOB] [--json]\n"
               "  URL          registry base URL, e.g. http://127.0.0.1:5000\n"
               "  --repo NAME  main repository (default conformance/<random>)\n"
               "  --repo2 NAME second repository for cross-repository checks (default <repo>-b)\n"
               "  --only GLOB  report only checks whose id matches the glob (all still run)\n"
               "  --json       one JSON object per check instead of PASS/FAIL lines\n");
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"repo", required_argument, NULL, 'r'}, {"repo2", required_argument, NULL, 'R'},
        {"only", required_argument, NULL, 'o'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    struct ctx x;
    const char *only = NULL;
    int json = 0, ch, failed;
    char hex[11];

    memset(&x, 0, sizeof(x));
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'r':
            snprintf(x.repo, sizeof(x.repo), "%s", optarg);
            break;
        case 'R':
            snprintf(x.repo2, sizeof(x.repo2), "%s", optarg);
            break;
        case 'o':
            only = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    /* unique names per run so that runs never see each other's content */
    if (x.repo[0] == '\0')
        snprintf(x.repo, sizeof(x.repo), "conformance/%s", util_random_hex(hex, 10));
    if (x.repo2[0] == '\0')
        snprintf(x.repo2, sizeof(x.repo2), "%s-b", x.repo);
    x.cl = client_new(argv[optind]);
    if (x.cl == NULL) {
        fprintf(stderr, "conformance: cannot initialise libcurl\n");
        return 2;
    }
    check_setup(only, json);
    if (!json)
        printf("# registry %s, repositories %s and %s\n", argv[optind], x.repo, x.repo2);

    audit_start(x.cl);
    suite_base(&x);
    suite_pull(&x);
    suite_push(&x);
    suite_discovery(&x);
    suite_management(&x);
    suite_errors(&x);
    audit_report(x.cl);

    failed = check_summary();
    client_free(x.cl);
    return failed == 0 ? 0 : 1;
}
