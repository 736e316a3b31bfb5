/* main.c - the ocirun-lite command line: pull, images, rmi, run, bundle.
 *
 * Exit status: pull/images/rmi/bundle 0 on success, 1 on failure, 2 on a usage
 * error; run: the container's exit status, or 125 when ocirun-lite itself
 * failed (docker's convention). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/ocirun-lite/cstore.h"
#include "tools/ocirun-lite/fsutil.h"
#include "tools/ocirun-lite/imgref.h"
#include "tools/ocirun-lite/layerfs.h"
#include "tools/ocirun-lite/pull.h"
#include "tools/ocirun-lite/regauth.h"
#include "tools/ocirun-lite/runtime.h"

#include "common/banned.h"

#define DEFAULT_ROOT "/var/lib/ocirun-lite"
#define EXIT_RUN_FAILED 125

static const char *g_root;

static void __attribute__((noreturn)) die_usage(const char *msg, const char *cmd)
{
    fprintf(stderr, "ocirun-lite: %s\nTry 'ocirun-lite %s%s--help'.\n", msg, cmd ? cmd : "",
            cmd ? " " : "");
    exit(2);
}

static void
report(const struct err *e)
{
    fprintf(stderr, "ocirun-lite: error: %s\n", e->msg[0] ? e->msg : "unknown failure");
}

static const char usage_main[] =
    "usage: ocirun-lite [--root DIR] COMMAND [OPTIONS] ...\n"
    "\n"
    "Pull OCI/Docker images from a registry and run them in a container.\n"
    "\n"
    "Commands:\n"
    "  pull REF                 fetch an image into the local store\n"
    "  images                   list pulled images\n"
    "  rmi REF...               remove images (and content no image uses any more)\n"
    "  run [OPTIONS] REF [CMD ARGS...]   run a container (pulls REF if missing)\n"
    "  bundle [OPTIONS] REF DIR [CMD ARGS...]   write an OCI bundle (runc/crun run it)\n"
    "\n"
    "Global options:\n"
    "  --root DIR     store root (default $OCIRUN_ROOT or " DEFAULT_ROOT ")\n"
    "  -h, --help     this text; 'ocirun-lite COMMAND --help' for a command\n"
    "  --version      print the version\n"
    "\n"
    "REF: [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST]; no HOST means docker.io\n"
    "(library/ added to one-component names); TAG defaults to latest.\n";

static const char reg_opts_help[] =
    "Registry options:\n"
    "  --insecure             plain HTTP (also for hosts in $OCIRUN_INSECURE_REGISTRIES,\n"
    "                         a comma separated list of host or host:port)\n"
    "  --tls-verify=false     HTTPS without certificate verification\n"
    "  --creds USER:PASS      credentials (else $REGISTRY_AUTH_FILE,\n"
    "                         $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json)\n"
    "  --platform OS/ARCH[/VARIANT]  platform to pick from an index (default: this host)\n"
    "  -q, --quiet            no progress output\n";

static const char usage_pull[] = "usage: ocirun-lite pull [OPTIONS] REF\n"
                                 "\n"
                                 "Fetch REF (manifest, config, layers; every digest verified)\n"
                                 "into the store and unpack its layers. Prints the resolved\n"
                                 "digest on stdout.\n\n";

static const char usage_run_opts[] =
    "Container options:\n"
    "  --rm                   remove the container's state when it exits\n"
    "  --name NAME            container id (default: random)\n"
    "  -e, --env K=V          set an environment variable (repeatable)\n"
    "  -w, --workdir DIR      working directory\n"
    "  -u, --user USER        user[:group] (names or numbers)\n"
    "  --entrypoint PROG      replace the image's Entrypoint\n"
    "  --hostname NAME        hostname (default: the container id)\n"
    "  --memory N[b|k|m|g]    memory limit\n"
    "  --cpus N               CPU limit (e.g. 0.5)\n"
    "  --pids N               process count limit\n"
    "  --net none|host        network: a new empty namespace (default) or the host's\n"
    "  -t, --tty              allocate a terminal\n"
    "  --userns               also run in a new user namespace\n"
    "  --pull always|missing|never   when to pull (default missing)\n";

/* ---- shared option parsing ---------------------------------------------------- */

struct cli {
    struct pull_opts pull;
    struct regauth_creds creds;
    int have_creds;
    int insecure;
    int pull_policy; /* 0 missing, 1 always, 2 never */
    struct rt_opts rt;
    const char **env;
    size_t nenv;
};

enum {
    OPT_INSECURE = 256,
    OPT_TLS_VERIFY,
    OPT_CREDS,
    OPT_PLATFORM,
    OPT_RM,
    OPT_NAME,
    OPT_ENTRYPOINT,
    OPT_HOSTNAME,
    OPT_MEMORY,
    OPT_CPUS,
    OPT_PIDS,
    OPT_NET,
    OPT_USERNS,
    OPT_PULL,
};

static int
parse_bytes(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0)
        return -1;
    double mul = 1;
    switch (*end) {
    case '\0':
    case 'b':
    case 'B':
        break;
    case 'k':
    case 'K':
        mul = 1024.0;
        break;
    case 'm':
    case 'M':
        mul = 1024.0 * 1024;
        break;
    case 'g':
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        break;
    default:
        return -1;
    }
    if (*end && end[1] && !((end[1] == 'b' || end[1] == 'B') && !end[2]))
        return -1;
    v *= mul;
    if (v > 9e18)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* the index of arg in the NULL-terminated names; anything else is a usage
 * error saying msg */
static int
pick(const char *arg, const char *const *names, const char *msg, const char *cmd)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(arg, names[i]) == 0)
            return i;
    die_usage(msg, cmd);
}

/* parse options of pull / run / bundle; returns optind of the first operand */
static int
parse_cmd_opts(int argc, char **argv, const char *cmd, int runlike, struct cli *c,
               const char *usage)
{
    static const struct option lo[] = {
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"tls-verify", required_argument, NULL, OPT_TLS_VERIFY},
        {"creds", required_argument, NULL, OPT_CREDS},
        {"platform", required_argument, NULL, OPT_PLATFORM},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"rm", no_argument, NULL, OPT_RM},
        {"name", required_argument, NULL, OPT_NAME},
        {"env", required_argument, NULL, 'e'},
        {"workdir", required_argument, NULL, 'w'},
        {"user", required_argument, NULL, 'u'},
        {"entrypoint", required_argument, NULL, OPT_ENTRYPOINT},
        {"hostname", required_argument, NULL, OPT_HOSTNAME},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"cpus", required_argument, NULL, OPT_CPUS},
        {"pids", required_argument, NULL, OPT_PIDS},
        {"net", required_argument, NULL, OPT_NET},
        {"network", required_argument, NULL, OPT_NET},
        {"tty", no_argument, NULL, 't'},
        {"userns", no_argument, NULL, OPT_USERNS},
        {"pull", required_argument, NULL, OPT_PULL},
        {NULL, 0, NULL, 0},
    };
    struct err e;
    int ch;

    memset(c, 0, sizeof(*c));
    c->pull.client.tls_verify = 1;
    pull_platform_host(&c->pull.platform);
    c->env = calloc((size_t)argc + 1, sizeof(char *));
    if (!c->env) {
        fprintf(stderr, "ocirun-lite: out of memory\n");
        exit(1);
    }
    optind = 1;
    /* '+': stop at the first operand, so CMD ARGS keep their own options */
    while ((ch = getopt_long(argc, argv, runlike ? "+hqe:w:u:t" : "+hq", lo, NULL)) != -1) {
        if (!runlike && ch >= OPT_RM) {
            die_usage("option not valid for this command", cmd);
        }
        switch (ch) {
        case 'h':
            fputs(usage, stdout);
            fputs(reg_opts_help, stdout);
            if (runlike)
                fputs(usage_run_opts, stdout);
            exit(0);
        case 'q':
            c->pull.quiet = 1;
            break;
        case OPT_INSECURE:
            c->insecure = 1;
            break;
        case OPT_TLS_VERIFY: {
            static const char *const tf[] = {"false", "true", NULL};
            c->pull.client.tls_verify = pick(optarg, tf, "--tls-verify takes true or false", cmd);
            break;
        }
        case OPT_CREDS:
            if (regauth_parse_creds(optarg, &c->creds, &e) < 0)
                die_usage(e.msg, cmd);
            c->have_creds = 1;
            break;
        case OPT_PLATFORM:
            if (pull_platform_parse(optarg, &c->pull.platform, &e) < 0)
                die_usage(e.msg, cmd);
            break;
        case OPT_RM:
            c->rt.rm = 1;
            break;
        case OPT_NAME:
            c->rt.name = optarg;
            break;
        case 'e':
            if (!strchr(optarg, '=')) {
                /* docker: "-e NAME" passes the caller's value through */
                const char *v = getenv(optarg);
                if (!v)
                    break;
                size_t n = strlen(optarg) + strlen(v) + 2;
                char *kv = malloc(n);
                if (!kv)
                    exit(1);
                snprintf(kv, n, "%s=%s", optarg, v);
                c->env[c->nenv++] = kv; /* lives until exit */
                break;
            }
            c->env[c->nenv++] = optarg;
            break;
        case 'w':
            c->rt.workdir = optarg;
            break;
        case 'u':
            c->rt.user = optarg;
            break;
        case OPT_ENTRYPOINT:
            c->rt.entrypoint = optarg;
            break;
        case OPT_HOSTNAME:
            c->rt.hostname = optarg;
            break;
        case OPT_MEMORY:
            if (parse_bytes(optarg, &c->rt.memory) < 0)
                die_usage("--memory takes a size such as 64m", cmd);
            break;
        case OPT_CPUS: {
            char *end;
            c->rt.cpus = strtod(optarg, &end);
            if (*end || !(c->rt.cpus > 0) || !isfinite(c->rt.cpus))
                die_usage("--cpus takes a positive number such as 0.5", cmd);
            break;
        }
        case OPT_PIDS: {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (*end || v <= 0)
                die_usage("--pids takes a positive integer", cmd);
            c->rt.pids = v;
            break;
        }
        case OPT_NET: {
            static const char *const nets[] = {"none", "host", NULL};
            static const enum rt_net net[] = {RT_NET_NONE, RT_NET_HOST};
            c->rt.net = net[pick(optarg, nets, "--net takes none or host", cmd)];
            break;
        }
        case 't':
            c->rt.tty = 1;
            break;
        case OPT_USERNS:
            c->rt.userns = 1;
            break;
        case OPT_PULL: {
            /* in the order of pull_policy's values */
            static const char *const policies[] = {"missing", "always", "never", NULL};
            c->pull_policy = pick(optarg, policies, "--pull takes always, missing or never", cmd);
            break;
        }
        default:
            die_usage("invalid option", cmd);
        }
    }
    c->rt.env = c->nenv ? c->env : NULL;
    return optind;
}

/* free what parse_cmd_opts allocated and wipe the credentials */
static void
cli_release(struct cli *c)
{
    free(c->env);
    memset(&c->creds, 0, sizeof(c->creds));
}

/* fill the client options that depend on the reference */
static int
client_for(struct cli *c, const struct imgref *r, struct err *e)
{
    const char *host = imgref_api_host(r);
    c->pull.client.plain_http =
        c->insecure || imgref_host_in_list(r->domain, getenv("OCIRUN_INSECURE_REGISTRIES")) ||
        imgref_host_in_list(host, getenv("OCIRUN_INSECURE_REGISTRIES"));
    c->pull.client.progress = !c->pull.quiet && isatty(2);
    if (!c->have_creds) {
        int found = regauth_lookup(r->domain, &c->creds, e);
        if (found < 0)
            return -1;
        c->have_creds = found;
    }
    c->pull.client.creds = c->have_creds ? &c->creds : NULL;
    return 0;
}

static const char *
root_dir(void)
{
    if (g_root)
        return g_root;
    const char *v = getenv("OCIRUN_ROOT");
    return v && *v ? v : DEFAULT_ROOT;
}

/* ---- commands ------------------------------------------------------------------- */

static int
cmd_pull(int argc, char **argv)
{
    struct cli c;
    struct imgref r;
    struct cstore *cs = NULL;
    struct cstore_image img;
    struct err e;
    int rc = 1;

    err_clear(&e);
    int i = parse_cmd_opts(argc, argv, "pull", 0, &c, usage_pull);
    if (argc - i != 1)
        die_usage("pull takes exactly one REF", "pull");
    if (imgref_parse(argv[i], &r, &e) < 0 || client_for(&c, &r, &e) < 0)
        goto out;
    cs = cstore_open(root_dir(), &e);
    if (!cs)
        goto out;
    if (pull_image(cs, &r, &c.pull, &img, &e) < 0)
        goto out;
    printf("%s\n", img.digest);
    cstore_image_release(&img);
    rc = 0;
out:
    if (rc)
        report(&e);
    cstore_close(cs);
    cli_release(&c);
    return rc;
}

static void
human_size(int64_t v, char *buf, size_t len)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    double d = (double)v;
    int i = 0;
    while (d >= 1000 && i < 4) {
        d /= 1000;
        i++;
    }
    snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", d, u[i]);
}

static int
cmd_images(int argc, char **argv)
{
    static const struct option lo[] = {{"help", no_argument, NULL, 'h'},
                                       {"quiet", no_argument, NULL, 'q'},
                                       {"digests", no_argument, NULL, 'd'},
                                       {NULL, 0, NULL, 0}};
    struct cstore_image *imgs = NULL;
    struct cstore *cs;
    size_t n = 0;
    struct err e;
    int ch, quiet = 0, digests = 0;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "+hq", lo, NULL)) != -1) {
        if (ch == 'h') {
            printf("usage: ocirun-lite images [-q|--quiet] [--digests]\n\n"
                   "List pulled images: reference, image id (config digest), platform,\n"
                   "size (config + compressed layers) and pull time. -q prints references\n"
                   "only; --digests adds the resolved manifest/index digest.\n");
            return 0;
        }
        if (ch == 'q')
            quiet = 1;
        else if (ch == 'd')
            digests = 1;
        else
            die_usage("invalid option", "images");
    }
    if (optind != argc)
        die_usage("images takes no operands", "images");
    err_clear(&e);
    cs = cstore_open(root_dir(), &e);
    if (!cs || cstore_image_list(cs, &imgs, &n, &e) < 0) {
        report(&e);
        cstore_close(cs);
        return 1;
    }
    if (!quiet)
        printf("%-50s %-12s %-14s %-10s %s%s\n", "REFERENCE", "IMAGE ID", "PLATFORM", "SIZE",
               "PULLED", digests ? "  DIGEST" : "");
    for (size_t i = 0; i < n; i++) {
        char sz[32], when[32];
        struct tm tm;
        time_t t = (time_t)imgs[i].created;
        if (quiet) {
            printf("%s\n", imgs[i].ref);
            continue;
        }
        human_size(imgs[i].size, sz, sizeof(sz));
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        const char *id = cstore_digest_hex(imgs[i].config);
        printf("%-50s %-12.12s %-14s %-10s %s%s%s\n", imgs[i].ref, id ? id : "?", imgs[i].platform,
               sz, when, digests ? "  " : "", digests ? imgs[i].digest : "");
    }
    cstore_image_list_free(imgs, n);
    cstore_close(cs);
    return 0;
}

static int
cmd_rmi(int argc, char **argv)
{
    static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct cstore *cs;
    struct err e;
    int ch, rc = 0;
    size_t freed = 0;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        if (ch == 'h') {
            printf("usage: ocirun-lite rmi REF...\n\n"
                   "Remove the image records of the given references, then every blob\n"
                   "and unpacked layer that no remaining image uses. Content is shared:\n"
                   "a layer used by another image stays. While another ocirun-lite\n"
                   "process uses the store (a pull or a running container) only the\n"
                   "records are removed; the content goes at the next rmi.\n");
            return 0;
        }
        die_usage("invalid option", "rmi");
    }
    if (optind >= argc)
        die_usage("rmi needs at least one REF", "rmi");
    err_clear(&e);
    cs = cstore_open(root_dir(), &e);
    if (!cs) {
        report(&e);
        return 1;
    }
    for (int i = optind; i < argc; i++) {
        struct imgref r;
        char refs[600];
        if (imgref_parse(argv[i], &r, &e) < 0) {
            report(&e);
            rc = 1;
            continue;
        }
        imgref_format(&r, refs, sizeof(refs));
        int d = cstore_image_delete(cs, refs, &e);
        if (d < 0) {
            report(&e);
            rc = 1;
        } else if (d == 0) {
            fprintf(stderr, "ocirun-lite: error: no such image: %s\n", refs);
            rc = 1;
        } else {
            printf("Untagged: %s\n", refs);
        }
    }
    int g = cstore_gc(cs, &freed, &e);
    if (g < 0) {
        report(&e);
        rc = 1;
    } else if (g == 0) {
        fprintf(stderr, "ocirun-lite: store in use by another process; unused content kept "
                        "until the next rmi\n");
    } else if (freed) {
        printf("Removed %zu unused blob(s)/layer(s)\n", freed);
    }
    cstore_close(cs);
    return rc;
}

/* Resolve REF to a local image (pulling per policy) and build the rootfs
 * description. *flat is a flattened copy to remove afterwards ("" if none). */
struct prepared {
    struct cstore_image img;
    char *config;
    size_t config_len;
    const char **lower;
    char **lower_store;
    size_t nlower;
    char flat[PATH_MAX];
    struct rt_rootfs rootfs;
};

static void
prepared_release(struct prepared *p)
{
    cstore_image_release(&p->img);
    free(p->config);
    for (size_t i = 0; i < p->nlower; i++)
        free(p->lower_store[i]);
    free(p->lower_store);
    free(p->lower);
    if (p->flat[0])
        fsutil_rm_rf_at(AT_FDCWD, p->flat, NULL);
    memset(p, 0, sizeof(*p));
}

static int
prepare_image(struct cstore *cs, struct cli *c, const struct imgref *r, int for_bundle,
              struct prepared *p, struct err *e)
{
    char refs[600], tmp[PATH_MAX];
    int have;
    size_t n = 0, total = 0;

    memset(p, 0, sizeof(*p));
    imgref_format(r, refs, sizeof(refs));
    have = c->pull_policy == 1 ? 0 : cstore_image_get(cs, refs, &p->img, e);
    if (have < 0)
        return -1;
    if (have && !cstore_blob_has(cs, p->img.config, -1)) {
        cstore_image_release(&p->img);
        have = 0;
    }
    if (!have) {
        if (c->pull_policy == 2)
            return err_set(e, ERR_MANIFEST_UNKNOWN, 0,
                           "image %s is not in the local store "
                           "(--pull=never)",
                           refs);
        if (client_for(c, r, e) < 0 || pull_image(cs, r, &c->pull, &p->img, e) < 0)
            return -1;
    } else if (pull_ensure_layers(cs, &p->img, c->pull.quiet, e) < 0) {
        return -1;
    }
    if (cstore_blob_read(cs, p->img.config, 8 << 20, &p->config, &p->config_len, e) < 0)
        return -1;
    while (p->img.layers[n])
        n++;
    p->lower = calloc(n + 1, sizeof(*p->lower));
    p->lower_store = calloc(n + 1, sizeof(*p->lower_store));
    if (!p->lower || !p->lower_store)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    /* top layer first, as overlayfs' lowerdir wants */
    for (size_t i = 0; i < n; i++) {
        char dir[PATH_MAX];
        pull_layer_dir(cs, p->img.layers[n - 1 - i], dir, sizeof(dir));
        p->lower_store[i] = strdup(dir);
        if (!p->lower_store[i])
            return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
        p->lower[i] = p->lower_store[i];
        p->nlower++;
        total += strlen(dir) + 1;
    }
    snprintf(tmp, sizeof(tmp), "%s/tmp", cstore_root(cs));
    const char *no = getenv("OCIRUN_NO_OVERLAY");
    int overlay_ok = n > 0 && pull_layers_overlay_form(cs, &p->img) && total < 3500 &&
                     !(no && *no && strcmp(no, "0") != 0);
    if (overlay_ok && !for_bundle) {
        enum layerfs_mode mode;
        layerfs_probe_cached(cstore_root(cs), &mode, &overlay_ok);
    }
    if (overlay_ok) {
        p->rootfs.lower = p->lower;
        p->rootfs.nlower = p->nlower;
        return 0;
    }
    /* copy-based rootfs: apply the layers bottom-up into a private dir */
    const char **bottom = calloc(n + 1, sizeof(*bottom));
    if (!bottom)
        return err_set(e, ERR_NOMEM, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        bottom[i] = p->lower[n - 1 - i];
    int rc = cstore_tmpdir(cs, "rootfs", p->flat, sizeof(p->flat), e);
    if (rc == 0)
        rc = layerfs_flatten(bottom, n, p->flat, e);
    free(bottom);
    if (rc < 0)
        return -1;
    p->rootfs.dir = p->flat;
    return 0;
}

/* what run and bundle share: the options, REF and the image prepared from the
 * store for it */
struct session {
    struct cli c;
    struct imgref r;
    struct cstore *cs;
    struct prepared p;
};

/* parse cmd's options and operands (REF first, then nops - 1 more; CMD ARGS
 * after them), open the store and prepare REF's image. Returns the index of
 * REF in argv, or -1 (e set). session_close releases s either way. */
static int
session_open(struct session *s, int argc, char **argv, const char *cmd, const char *usage, int nops,
             const char *operands_msg, struct err *e)
{
    memset(&s->p, 0, sizeof(s->p));
    s->cs = NULL;
    int i = parse_cmd_opts(argc, argv, cmd, 1, &s->c, usage);
    if (argc - i < nops)
        die_usage(operands_msg, cmd);
    if (imgref_parse(argv[i], &s->r, e) < 0)
        return -1;
    s->c.rt.argv = i + nops < argc ? (const char *const *)&argv[i + nops] : NULL;
    s->cs = cstore_open(root_dir(), e);
    if (!s->cs || prepare_image(s->cs, &s->c, &s->r, nops == 2, &s->p, e) < 0)
        return -1;
    return i;
}

static void
session_close(struct session *s)
{
    prepared_release(&s->p);
    cstore_close(s->cs);
    cli_release(&s->c);
}

static int
cmd_run(int argc, char **argv)
{
    struct session s;
    struct err e;
    int exit_code = EXIT_RUN_FAILED;

    err_clear(&e);
    if (session_open(&s, argc, argv, "run",
                     "usage: ocirun-lite run [OPTIONS] REF [CMD ARGS...]\n\n"
                     "Run REF in a new container (pulled first if it is not in the\n"
                     "store). CMD ARGS replace the image's Cmd. The exit status is the\n"
                     "container's (125 when ocirun-lite itself fails).\n\n",
                     1, "run needs a REF", &e) < 0 ||
        rt_run(cstore_root(s.cs), s.p.config, &s.p.rootfs, &s.c.rt, &exit_code, &e) < 0) {
        report(&e);
        exit_code = EXIT_RUN_FAILED;
    }
    session_close(&s);
    return exit_code;
}

static int
cmd_bundle(int argc, char **argv)
{
    struct session s;
    struct err e;
    int rc = 1;

    err_clear(&e);
    int i = session_open(&s, argc, argv, "bundle",
                         "usage: ocirun-lite bundle [OPTIONS] REF DIR [CMD ARGS...]\n\n"
                         "Write an OCI runtime bundle for REF into DIR: config.json (from\n"
                         "the image config and the options below) and rootfs/ (a copy of\n"
                         "the stacked layers). `runc run -b DIR ID` runs it.\n\n",
                         2, "bundle needs REF and DIR", &e);
    if (i >= 0 && rt_bundle_write(argv[i + 1], s.p.config, &s.p.rootfs, &s.c.rt, &e) >= 0) {
        printf("%s\n", argv[i + 1]);
        rc = 0;
    }
    if (rc)
        report(&e);
    session_close(&s);
    return rc;
}

int
main(int argc, char **argv)
{
    int i = 1;

    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--root") == 0 && i + 1 < argc) {
            g_root = argv[++i];
        } else if (strncmp(argv[i], "--root=", 7) == 0) {
            g_root = argv[i] + 7;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_main, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("ocirun-lite 0.1\n");
            return 0;
        } else {
            die_usage("unknown global option", NULL);
        }
    }
    if (i >= argc) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "pull") == 0)
        return cmd_pull(sub_argc, sub_argv);
    if (strcmp(cmd, "images") == 0)
        return cmd_images(sub_argc, sub_argv);
    if (strcmp(cmd, "rmi") == 0)
        return cmd_rmi(sub_argc, sub_argv);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(sub_argc, sub_argv);
    if (strcmp(cmd, "bundle") == 0)
        return cmd_bundle(sub_argc, sub_argv);
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    fprintf(stderr, "ocirun-lite: unknown command \"%s\"\n", cmd);
    fputs(usage_main, stderr);
    return 2;
}
