/* main.c - regbench: a load generator for any OCI registry with digest
 * verification. See docs/bench.md for the scenarios, options and output. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/err.h"
#include "tools/regbench/rb_auth.h"
#include "tools/regbench/rb_ceil.h"
#include "tools/regbench/rb_report.h"
#include "tools/regbench/rb_scen.h"
#include "tools/regbench/rb_tls.h"
#include "tools/regbench/rb_util.h"
#include "common/banned.h"

#define DEFAULT_SCENARIOS                                                                          \
    "push,push-chunked,pull,pull-range,manifest-put,manifest-get,head-blob,tags-list,catalog"

static void
usage(FILE *f)
{
    fprintf(f, "usage: regbench -u URL [options]      benchmark the registry at URL\n"
               "       regbench --ceilings [--json]    loopback TCP and SHA-256 rates\n"
               "       regbench --free-port            print a free TCP port of 127.0.0.1\n"
               "       regbench --list                 list the scenarios\n"
               "options:\n"
               "  -u, --url URL          registry base URL, http://HOST:PORT or https://HOST:PORT\n"
               "                         (loopback only unless --any-host)\n"
               "  -s, --scenario LIST    comma-separated scenarios (default: all but idle)\n"
               "  -c, --connections N    concurrent connections (default 8)\n"
               "  -t, --threads N        client threads driving them (default 2)\n"
               "  -n, --requests N       operations per scenario (a bound)\n"
               "  -d, --duration SEC     seconds per scenario (a bound; default 5 when no -n)\n"
               "  -r, --repetitions N    run each scenario N times (default 1)\n"
               "  -S, --size SIZE        blob size, e.g. 4K, 1M, 256M (default 1M)\n"
               "      --chunk SIZE       PATCH size of push-chunked (default 8M)\n"
               "      --range-size SIZE  bytes per pull-range request (default 256K)\n"
               "      --tags N           tags created for tags-list (default 100)\n"
               "      --repos N          repositories created for catalog (default 10)\n"
               "      --idle N           idle keep-alive connections for idle (default 1000)\n"
               "      --blobs N          distinct blobs pulled round-robin by pull (default 1)\n"
               "      --timeout SEC      limit per HTTP request (default 120)\n"
               "      --max-time SEC     whole run limit, then exit 3 (default 1800)\n"
               "      --server-pid PID   report this local server's CPU and RSS per scenario\n"
               "      --repo PREFIX      repository prefix (default regbench)\n"
               "      --seed N           content seed (default: from the run id)\n"
               "      --blob DIGEST:SIZE pull/head this existing blob (no push; with --blob-repo)\n"
               "      --blob-repo REPO   repository holding --blob\n"
               "      --json             JSON output instead of the table\n"
               "      --curl             libcurl for GET/HEAD too (default: a raw keep-alive\n"
               "                         client for them, libcurl for uploads)\n"
               "      --any-host         allow a non-loopback host\n"
               "TLS (https:// URLs):\n"
               "      --cacert FILE      PEM bundle of the CAs to trust (default: the system's)\n"
               "      --insecure         verify neither the certificate chain nor the name\n"
               "      --cert FILE        client certificate chain (PEM), for mTLS\n"
               "      --key FILE         its private key (PEM; default: in --cert's file)\n"
               "auth:\n"
               "  -H, --header 'N: V'    send this header on every request (repeatable)\n"
               "      --token TOKEN      send 'Authorization: Bearer TOKEN' on every request\n"
               "      --user USER:PASS   log in once at start: the token flow for a Bearer\n"
               "                         challenge (then the token on every request), Basic on\n"
               "                         every request for a Basic one\n");
}

static void
on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "regbench: --max-time reached, stopping\n";
    ssize_t k = write(2, msg, sizeof(msg) - 1);
    (void)k;
    _exit(3);
}

static int
parse_int(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* parse_int from 1 to hi into an int option */
static int
parse_count(const char *s, long hi, int *out)
{
    long v;
    if (parse_int(s, 1, hi, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

static int
parse_secs(const char *s, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !(v > 0) || v > 86400)
        return -1;
    *out = v;
    return 0;
}

enum {
    O_CHUNK = 256,
    O_RANGE,
    O_TAGS,
    O_REPOS,
    O_IDLE,
    O_BLOBS,
    O_TIMEOUT,
    O_MAXTIME,
    O_PID,
    O_REPO,
    O_SEED,
    O_BLOB,
    O_BLOBREPO,
    O_JSON,
    O_ANYHOST,
    O_CEIL,
    O_FREEPORT,
    O_LIST,
    O_CURL,
    O_CACERT,
    O_INSECURE,
    O_CERT,
    O_KEY,
    O_TOKEN,
    O_USER,
};

#define MAX_HEADERS 16

/* a header line as given to -H: "Name: value", one line, printable */
static int
header_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h)
        return 0;
    for (const char *p = h; *p; p++)
        if ((unsigned char)*p < ' ' && *p != '\t')
            return 0;
    for (const char *p = h; p < colon; p++)
        if (*p == ' ' || *p == '\t')
            return 0;
    return 1;
}

/* one scope per repository the run will touch: its token must cover them all */
static char **
run_scopes(const struct rb_opts *o, const char *const *names, int nnames, size_t *n)
{
    size_t cap = 8, k = 0;
    char **v = malloc(cap * sizeof(*v));
    char repo[400], buf[512];
    for (int rep = 1; v && rep <= o->reps; rep++) {
        for (int i = 0; v && i < nnames; i++) {
            int cat = strcmp(names[i], "catalog") == 0;
            for (int j = -1; v && j < (cat ? o->repos : 0); j++) {
                rb_scen_repo(o, names[i], rep, repo, sizeof(repo));
                if (j >= 0)
                    snprintf(buf, sizeof(buf), "repository:%s-%d:pull,push", repo, j);
                else
                    snprintf(buf, sizeof(buf), "repository:%s:%s", repo,
                             o->ext_repo ? "pull" : "pull,push");
                int dup = 0;
                for (size_t q = 0; q < k && !dup; q++)
                    dup = strcmp(v[q], buf) == 0;
                if (dup)
                    continue;
                if (k + 2 > cap) {
                    char **nv = realloc(v, (cap *= 2) * sizeof(*v));
                    if (!nv) {
                        for (size_t q = 0; q < k; q++)
                            free(v[q]);
                        free(v);
                        v = NULL;
                        break;
                    }
                    v = nv;
                }
                if ((v[k] = strdup(buf)) != NULL)
                    k++;
            }
            if (v && cat && (k == 0 || strcmp(v[k - 1], "registry:catalog:*") != 0) &&
                (v[k] = strdup("registry:catalog:*")) != NULL)
                k++;
        }
    }
    *n = k;
    return v;
}

static void
free_scopes(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* the login of --user; on success *hdr (may be NULL: no auth needed) replaces
 * the previous one and *until is when to log in again (0 = never) */
static int
login(const struct rb_opts *o, const char *userpass, char **scopes, size_t nscopes, int any_host,
      char **hdr, double *until, struct err *e)
{
    struct rb_auth_opts ao = {
        .base = o->base,
        .tls = o->tls,
        .userpass = userpass,
        .scopes = (const char *const *)scopes,
        .nscopes = nscopes,
        .timeout = o->timeout < 30 ? o->timeout : 30,
        .any_host = any_host,
    };
    enum rb_auth_scheme sch;
    long exp = 0;
    char *h = NULL;
    if (rb_auth_login(&ao, &h, &sch, &exp, e) != 0)
        return -1;
    free(*hdr);
    *hdr = h;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* renewed at 80% of its life, before a scenario, so none runs on a dead token */
    *until = exp > 0 ? (double)ts.tv_sec + 0.8 * (double)exp : 0;
    if (sch == RB_AUTH_BEARER)
        fprintf(stderr, "regbench: auth: bearer token (%zu scopes, expires_in %ld s)\n", nscopes,
                exp);
    else
        fprintf(stderr, "regbench: auth: %s\n",
                sch == RB_AUTH_BASIC ? "basic" : "none (GET /v2/ answered 200)");
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"url", 1, 0, 'u'},
        {"scenario", 1, 0, 's'},
        {"connections", 1, 0, 'c'},
        {"threads", 1, 0, 't'},
        {"requests", 1, 0, 'n'},
        {"duration", 1, 0, 'd'},
        {"repetitions", 1, 0, 'r'},
        {"size", 1, 0, 'S'},
        {"chunk", 1, 0, O_CHUNK},
        {"range-size", 1, 0, O_RANGE},
        {"tags", 1, 0, O_TAGS},
        {"repos", 1, 0, O_REPOS},
        {"idle", 1, 0, O_IDLE},
        {"blobs", 1, 0, O_BLOBS},
        {"timeout", 1, 0, O_TIMEOUT},
        {"max-time", 1, 0, O_MAXTIME},
        {"server-pid", 1, 0, O_PID},
        {"repo", 1, 0, O_REPO},
        {"seed", 1, 0, O_SEED},
        {"blob", 1, 0, O_BLOB},
        {"blob-repo", 1, 0, O_BLOBREPO},
        {"json", 0, 0, O_JSON},
        {"any-host", 0, 0, O_ANYHOST},
        {"ceilings", 0, 0, O_CEIL},
        {"free-port", 0, 0, O_FREEPORT},
        {"list", 0, 0, O_LIST},
        {"help", 0, 0, 'h'},
        {"curl", 0, 0, O_CURL},
        {"cacert", 1, 0, O_CACERT},
        {"insecure", 0, 0, O_INSECURE},
        {"cert", 1, 0, O_CERT},
        {"key", 1, 0, O_KEY},
        {"header", 1, 0, 'H'},
        {"token", 1, 0, O_TOKEN},
        {"user", 1, 0, O_USER},
        {0, 0, 0, 0},
    };
    struct rb_opts o;
    struct err e = {0};
    memset(&o, 0, sizeof(o));
    o.conns = 8;
    o.threads = 2;
    o.reps = 1;
    o.size = 1u << 20;
    o.chunk = 8u << 20;
    o.range_size = 256u << 10;
    o.tags = 100;
    o.repos = 10;
    o.idle = 1000;
    o.blobs = 1;
    o.timeout = 120;
    o.repo_prefix = "regbench";
    const char *url = NULL, *scen = DEFAULT_SCENARIOS;
    const char *headers[MAX_HEADERS + 2] = {0}; /* the given ones, the login's, NULL */
    int nheaders = 0;
    struct rb_tls_opts to = {0};
    const char *token = NULL, *userpass = NULL;
    char *token_hdr = NULL, *auth_hdr = NULL, **scopes = NULL;
    size_t nscopes = 0;
    double relogin_at = 0;
    struct rb_tls *tls = NULL;
    int json = 0, any_host = 0, mode = 0, have_seed = 0;
    double max_time = 1800;
    long v = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "u:s:c:t:n:d:r:S:H:h", lo, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'u':
            url = optarg;
            break;
        case 's':
            scen = optarg;
            break;
        case 'c':
            bad = parse_count(optarg, 100000, &o.conns);
            break;
        case 't':
            bad = parse_count(optarg, 64, &o.threads);
            break;
        case 'n':
            bad = parse_int(optarg, 1, 1000000000L, &v);
            o.requests = (uint64_t)v;
            break;
        case 'd':
            bad = parse_secs(optarg, &o.duration);
            break;
        case 'r':
            bad = parse_count(optarg, 1000, &o.reps);
            break;
        case 'S':
            bad = rb_parse_size(optarg, &o.size, &e);
            break;
        case O_CHUNK:
            bad = rb_parse_size(optarg, &o.chunk, &e);
            break;
        case O_RANGE:
            bad = rb_parse_size(optarg, &o.range_size, &e);
            break;
        case O_TAGS:
            bad = parse_count(optarg, 1000000, &o.tags);
            break;
        case O_REPOS:
            bad = parse_count(optarg, 100000, &o.repos);
            break;
        case O_IDLE:
            bad = parse_count(optarg, 1000000, &o.idle);
            break;
        case O_BLOBS:
            bad = parse_count(optarg, 4096, &o.blobs);
            break;
        case O_TIMEOUT:
            bad = parse_secs(optarg, &o.timeout);
            break;
        case O_MAXTIME:
            bad = parse_secs(optarg, &max_time);
            break;
        case O_PID:
            bad = parse_count(optarg, 1L << 30, &o.server_pid);
            break;
        case O_REPO:
            o.repo_prefix = optarg;
            break;
        case O_SEED:
            o.seed = strtoull(optarg, NULL, 0);
            have_seed = 1;
            break;
        case O_BLOB: {
            const char *colon = strrchr(optarg, ':');
            bad = !colon || colon - optarg >= RB_DIGEST_MAX ||
                  rb_parse_size(colon + 1, &o.ext_size, &e) != 0;
            if (!bad)
                snprintf(o.ext_digest, sizeof(o.ext_digest), "%.*s", (int)(colon - optarg), optarg);
            break;
        }
        case O_BLOBREPO:
            o.ext_repo = optarg;
            break;
        case O_JSON:
            json = 1;
            break;
        case O_ANYHOST:
            any_host = 1;
            break;
        case O_CURL:
            o.use_curl = 1;
            break;
        case O_CACERT:
            to.cacert = optarg;
            break;
        case O_INSECURE:
            to.insecure = 1;
            break;
        case O_CERT:
            to.cert = optarg;
            break;
        case O_KEY:
            to.key = optarg;
            break;
        case 'H':
            bad = !header_ok(optarg) || nheaders == MAX_HEADERS;
            if (!bad)
                headers[nheaders++] = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            bad = !*optarg || strpbrk(optarg, " \t\r\n") != NULL;
            break;
        case O_USER:
            userpass = optarg;
            bad = strchr(optarg, ':') == NULL;
            break;
        case O_CEIL:
            mode = O_CEIL;
            break;
        case O_FREEPORT:
            mode = O_FREEPORT;
            break;
        case O_LIST:
            mode = O_LIST;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (bad) {
            /* credentials are never echoed */
            int secret = ch == O_USER || ch == O_TOKEN || (ch == 'H' && strchr(optarg, ':'));
            fprintf(stderr, "regbench: bad value for -%c: '%s'%s%s\n", ch < 256 ? ch : '-',
                    secret ? "(not shown)" : optarg,
                    e.msg[0] ? ": " : "", e.msg);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (mode == O_LIST) {
        for (int i = 0; rb_scen_names[i]; i++)
            printf("%s\n", rb_scen_names[i]);
        return 0;
    }
    if (mode == O_FREEPORT) {
        int port;
        if (rb_free_port(&port, &e) != 0) {
            fprintf(stderr, "regbench: %s\n", e.msg);
            return 2;
        }
        printf("%d\n", port);
        return 0;
    }
    if (mode == O_CEIL) {
        double lb = 0, sha = 0;
        if (rb_ceil_loopback(1.0, &lb, &e) != 0 || rb_ceil_sha256(1.0, &sha, &e) != 0) {
            fprintf(stderr, "regbench: %s\n", e.msg);
            return 2;
        }
        if (json)
            printf("{\"loopback_mb_per_s\": %.1f, \"sha256_mb_per_s\": %.1f}\n", lb, sha);
        else
            printf("loopback TCP: %.1f MB/s\nSHA-256 (one core): %.1f MB/s\n", lb, sha);
        return 0;
    }
    if (!url) {
        usage(stderr);
        return 2;
    }
    if (rb_parse_url(url, o.base, sizeof(o.base), o.host, sizeof(o.host), o.port, sizeof(o.port),
                     &e) != 0) {
        fprintf(stderr, "regbench: %s\n", e.msg);
        return 2;
    }
    if (!any_host && !rb_host_is_loopback(o.host)) {
        fprintf(stderr, "regbench: host '%s' is not loopback (pass --any-host to allow)\n", o.host);
        return 2;
    }
    int https = strncmp(o.base, "https://", 8) == 0;
    if (!https && (to.cacert || to.insecure || to.cert || to.key)) {
        fprintf(stderr, "regbench: --cacert, --insecure, --cert and --key need an https:// URL\n");
        return 2;
    }
    if (token && userpass) {
        fprintf(stderr, "regbench: --token and --user exclude each other\n");
        return 2;
    }
    if (o.ext_digest[0] && !o.ext_repo) {
        fprintf(stderr, "regbench: --blob needs --blob-repo\n");
        return 2;
    }
    if (o.threads > o.conns)
        o.threads = o.conns;

    /* scenarios */
    char *list = strdup(scen), *save = NULL;
    const char *names[64];
    int nnames = 0;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!rb_scen_known(t)) {
            fprintf(stderr, "regbench: unknown scenario '%s' (see --list)\n", t);
            free(list);
            return 2;
        }
        if (o.ext_digest[0] && strcmp(t, "pull") != 0) {
            fprintf(stderr, "regbench: --blob works with the pull scenario only\n");
            free(list);
            return 2;
        }
        if (nnames < 64)
            names[nnames++] = t;
    }
    if (nnames == 0) {
        fprintf(stderr, "regbench: no scenario\n");
        free(list);
        return 2;
    }

    /* idle connections need descriptors: raise the soft limit to the hard one */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(max_time + 0.999));

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t rid =
        ((uint64_t)ts.tv_nsec * 2654435761u) ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    snprintf(o.runid, sizeof(o.runid), "%08" PRIx64, rid & 0xffffffffu);
    if (!have_seed)
        o.seed = rid * UINT64_C(0x9E3779B97F4A7C15);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "regbench: curl_global_init failed\n");
        free(list);
        return 2;
    }
    int nent = nnames * o.reps, k = 0, failed = 0, rc = 0;
    struct rb_entry *ents = NULL;
    if (https) {
        to.host = o.host;
        if (!(tls = rb_tls_new(&to, &e))) {
            fprintf(stderr, "regbench: %s\n", e.msg);
            rc = 2;
            goto out;
        }
        o.tls = tls;
    }
    if (token) {
        size_t n = strlen(token) + 32;
        token_hdr = malloc(n);
        if (!token_hdr) {
            rc = 2;
            goto out;
        }
        snprintf(token_hdr, n, "Authorization: Bearer %s", token);
        headers[nheaders] = token_hdr;
    }
    o.headers = headers;
    if (userpass) {
        scopes = run_scopes(&o, names, nnames, &nscopes);
        if (!scopes || login(&o, userpass, scopes, nscopes, any_host, &auth_hdr, &relogin_at,
                             &e) != 0) {
            fprintf(stderr, "regbench: login: %s\n", scopes ? e.msg : "out of memory");
            rc = 2;
            goto out;
        }
        headers[nheaders] = auth_hdr;
    }
    ents = calloc((size_t)nent, sizeof(*ents));
    if (!ents) {
        fprintf(stderr, "regbench: out of memory\n");
        rc = 2;
        goto out;
    }
    for (int rep = 1; rep <= o.reps; rep++) {
        for (int i = 0; i < nnames; i++, k++) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (relogin_at > 0 && (double)now.tv_sec >= relogin_at) {
                if (login(&o, userpass, scopes, nscopes, any_host, &auth_hdr, &relogin_at, &e) !=
                    0) {
                    fprintf(stderr, "regbench: login again: %s\n", e.msg);
                    rc = 2;
                    goto out;
                }
                headers[nheaders] = auth_hdr;
            }
            if (rb_scen_run(&o, names[i], rep, &ents[k], &e) != 0) {
                fprintf(stderr, "regbench: %s: %s\n", names[i], e.msg);
                rc = 2;
                goto out;
            }
            failed += !ents[k].ok;
        }
    }
    if (json)
        rb_report_json(stdout, o.base, ents, k);
    else
        rb_report_table(stdout, o.base, ents, k);
    rc = failed ? 1 : 0;
out:
    free(ents);
    free(list);
    free(token_hdr);
    free(auth_hdr);
    free_scopes(scopes, nscopes);
    rb_tls_free(tls);
    curl_global_cleanup();
    return rc;
}
