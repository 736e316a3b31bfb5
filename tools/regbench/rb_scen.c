/* rb_scen.c - scenarios, see rb_scen.h. */
#include "tools/regbench/rb_scen.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/banned.h"

const char *const rb_scen_names[] = {
    "push",      "push-chunked", "pull",    "pull-range", "manifest-put", "manifest-get",
    "head-blob", "tags-list",    "catalog", "idle",       NULL,
};

int
rb_scen_known(const char *name)
{
    for (int i = 0; rb_scen_names[i]; i++)
        if (strcmp(rb_scen_names[i], name) == 0)
            return 1;
    return 0;
}

void
rb_proc_read(int pid, struct rb_proc *p)
{
    char path[64], buf[4096];
    memset(p, 0, sizeof(*p));
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *q = strrchr(buf, ')');
    if (!q)
        return;
    /* fields after "pid (comm)": state is field 3, utime 14, stime 15 */
    unsigned long long ut = 0, st = 0;
    if (sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return;
    long tck = sysconf(_SC_CLK_TCK);
    p->cpu_s = (double)(ut + st) / (double)(tck > 0 ? tck : 100);
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(buf, sizeof(buf), f)) {
        if (strncmp(buf, "VmRSS:", 6) == 0)
            p->rss_kib = strtol(buf + 6, NULL, 10);
        else if (strncmp(buf, "VmHWM:", 6) == 0)
            p->hwm_kib = strtol(buf + 6, NULL, 10);
    }
    fclose(f);
    p->ok = 1;
}

/* ---- helpers ------------------------------------------------------------- */

struct scen {
    const struct rb_opts *o;
    struct rb_entry *out;
    char repo[300];
    uint64_t seed; /* per run and repetition */
    /* manifest set-up */
    unsigned char config[256];
    struct rb_blob cfg, layer;
    char mhead[1024];
    const char *mtail;
};

static void
phase_init(struct scen *s, struct rb_phase *p, enum rb_op op)
{
    memset(p, 0, sizeof(*p));
    p->base = s->o->base;
    p->tls = s->o->tls;
    p->headers = s->o->headers;
    p->repo = s->repo;
    p->op = op;
    p->conns = s->o->conns;
    p->threads = s->o->threads;
    p->req_timeout = s->o->timeout;
    p->use_curl = s->o->use_curl;
    p->seed = s->seed;
    p->blob_size = s->o->size;
    p->chunk = s->o->chunk;
    p->range_len = s->o->range_size;
    p->manifest_head = s->mhead;
    p->manifest_tail = s->mtail;
}

/* run an unmeasured set-up phase: every one of its max_ops must succeed */
static int
setup_run(struct scen *s, struct rb_phase *p, const char *what, struct err *e)
{
    struct rb_result *r = malloc(sizeof(*r));
    if (!r)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    int rc = rb_phase_run(p, r, e);
    if (rc == 0 && (r->errors > 0 || r->ops != p->max_ops)) {
        snprintf(s->out->setup_err, sizeof(s->out->setup_err),
                 "set-up (%s): %" PRIu64 " of %" PRIu64 " done: %s", what, r->ops, p->max_ops,
                 r->nerr ? r->err_msg[0] : "stopped early");
        rc = 1;
    }
    free(r);
    return rc;
}

/* n PRNG blobs of the given size with their digests (computed now, unmeasured) */
static struct rb_blob *
make_blobs(uint64_t seed, uint64_t n, uint64_t size, struct err *e)
{
    struct rb_blob *b = calloc(n, sizeof(*b));
    if (!b) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) {
        b[i].seed = seed + i;
        b[i].size = size;
        if (rb_blob_digest(&b[i]) != 0) {
            free(b);
            err_set(e, ERR_INTERNAL, 0, "sha-256 failed");
            return NULL;
        }
    }
    return b;
}

static int
push_blobs(struct scen *s, const struct rb_blob *b, uint64_t n, struct err *e)
{
    struct rb_phase p;
    phase_init(s, &p, RB_OP_PUSH);
    p.blobs = b;
    p.nblobs = n;
    p.max_ops = n;
    if ((uint64_t)p.conns > n)
        p.conns = (int)n;
    return setup_run(s, &p, "push blobs", e);
}

/* push an image config and a 4 KiB layer and prepare the manifest template */
static int
setup_manifest_parts(struct scen *s, struct err *e)
{
    int n = snprintf((char *)s->config, sizeof(s->config),
                     "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":"
                     "\"layers\",\"diff_ids\":[]},\"comment\":\"regbench %s\"}",
                     s->o->runid);
    s->cfg.mem = s->config;
    s->cfg.size = (uint64_t)n;
    s->layer.seed = s->seed ^ UINT64_C(0x5bd1e995);
    s->layer.size = 4096;
    if (rb_blob_digest(&s->cfg) != 0 || rb_blob_digest(&s->layer) != 0)
        return err_set(e, ERR_INTERNAL, 0, "sha-256 failed");
    struct rb_blob both[2] = {s->cfg, s->layer};
    int rc = push_blobs(s, both, 2, e);
    if (rc != 0)
        return rc;
    snprintf(s->mhead, sizeof(s->mhead),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":%" PRIu64 "},\"layers\":[{\"mediaType\":"
             "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":%" PRIu64
             "}],\"annotations\":{\"org.regbench.n\":\"",
             s->cfg.digest, s->cfg.size, s->layer.digest, s->layer.size);
    s->mtail = "\"}}";
    return 0;
}

/* PUT count manifests under tags "<prefix>0".."<prefix>count-1" */
static int
put_manifests(struct scen *s, const char *prefix, uint64_t count, struct err *e)
{
    struct rb_phase p;
    phase_init(s, &p, RB_OP_MANIFEST_PUT);
    p.tag_prefix = prefix;
    p.max_ops = count;
    if (p.conns > 8)
        p.conns = 8;
    return setup_run(s, &p, "put manifests", e);
}

static int
measure(struct scen *s, struct rb_phase *p, struct err *e)
{
    struct rb_entry *out = s->out;
    if (s->o->server_pid)
        rb_proc_read(s->o->server_pid, &out->before);
    if (rb_phase_run(p, &out->r, e) != 0)
        return -1;
    if (s->o->server_pid)
        rb_proc_read(s->o->server_pid, &out->after);
    out->ok = out->r.errors == 0 && out->r.ops > 0;
    if (out->r.ops == 0 && out->r.errors == 0) {
        out->r.nerr = 1;
        out->r.err_count[0] = 1;
        snprintf(out->r.err_msg[0], sizeof(out->r.err_msg[0]),
                 "no operation completed within the bounds");
    }
    return 0;
}

static void
apply_bounds(struct scen *s, struct rb_phase *p, uint64_t def_ops, double def_dur)
{
    const struct rb_opts *o = s->o;
    p->max_ops = o->requests ? o->requests : (o->duration > 0 ? 0 : def_ops);
    p->duration = o->duration > 0 ? o->duration : (o->requests ? 0 : def_dur);
}

/* ---- idle connections ----------------------------------------------------- */

/* one keep-alive connection that has done one GET /v2/; returns fd or -1 */
static int
idle_connect(const struct addrinfo *ai, const char *host)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        goto fail;
    char req[400];
    int n = snprintf(req, sizeof(req), "GET /v2/ HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    if (write(fd, req, (size_t)n) != n)
        goto fail;
    char buf[4096];
    size_t got = 0;
    char *eoh = NULL;
    while (!eoh) {
        if (got >= sizeof(buf) - 1)
            goto fail;
        ssize_t k = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (k <= 0)
            goto fail;
        got += (size_t)k;
        buf[got] = '\0';
        eoh = strstr(buf, "\r\n\r\n");
    }
    if (strncmp(buf, "HTTP/1.1 2", 10) != 0 && strncmp(buf, "HTTP/1.1 401", 12) != 0)
        goto fail;
    size_t clen = 0;
    *eoh = '\0';
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl)
        clen = strtoul(cl + 17, NULL, 10);
    size_t have = got - (size_t)(eoh + 4 - buf);
    while (have < clen) {
        ssize_t k = read(fd, buf, sizeof(buf) < clen - have ? sizeof(buf) : clen - have);
        if (k <= 0)
            goto fail;
        have += (size_t)k;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

/* ---- scenarios ------------------------------------------------------------- */

static int
run_push(struct scen *s, int chunked, struct err *e)
{
    struct rb_phase p;
    phase_init(s, &p, chunked ? RB_OP_PUSH_CHUNKED : RB_OP_PUSH);
    struct rb_blob *pool = NULL;
    if (s->o->size >= (1u << 20)) {
        /* big blobs: digests computed before the clock starts */
        uint64_t def = (512u << 20) / s->o->size;
        def = def < 2 ? 2 : def > 1024 ? 1024 : def;
        uint64_t n = s->o->requests ? s->o->requests : def;
        pool = make_blobs(s->seed, n, s->o->size, e);
        if (!pool)
            return -1;
        p.blobs = pool;
        p.nblobs = n;
        p.max_ops = n;
        p.duration = s->o->duration;
    } else {
        apply_bounds(s, &p, 0, 5.0);
    }
    int rc = measure(s, &p, e);
    free(pool);
    return rc;
}

static int
run_pull(struct scen *s, enum rb_op op, struct err *e)
{
    const struct rb_opts *o = s->o;
    struct rb_blob *pool = NULL;
    uint64_t n = 1;
    struct rb_blob ext;
    int rc;
    if (o->ext_digest[0]) {
        memset(&ext, 0, sizeof(ext));
        snprintf(ext.digest, sizeof(ext.digest), "%s", o->ext_digest);
        ext.size = o->ext_size;
        s->out->size = o->ext_size;
        pool = &ext;
    } else {
        n = op == RB_OP_PULL && o->blobs > 0 ? (uint64_t)o->blobs : 1;
        pool = make_blobs(s->seed, n, o->size, e);
        if (!pool)
            return -1;
        rc = push_blobs(s, pool, n, e);
        if (rc != 0)
            goto out;
    }
    struct rb_phase p;
    phase_init(s, &p, op);
    p.blobs = pool;
    p.nblobs = n;
    if (op == RB_OP_PULL && o->size >= (1u << 20))
        apply_bounds(s, &p, (uint64_t)p.conns * 4, 30.0);
    else
        apply_bounds(s, &p, 0, 5.0);
    rc = measure(s, &p, e);
out:
    if (pool != &ext)
        free(pool);
    return rc;
}

static int
run_manifest(struct scen *s, enum rb_op op, struct err *e)
{
    int rc = setup_manifest_parts(s, e);
    if (rc != 0)
        return rc;
    struct rb_phase p;
    char digest[RB_DIGEST_MAX], body[4096];
    phase_init(s, &p, op);
    if (op == RB_OP_MANIFEST_GET) {
        rc = put_manifests(s, "bench", 1, e);
        if (rc != 0)
            return rc;
        snprintf(body, sizeof(body), "%s0%s", s->mhead, s->mtail);
        if (rb_sha256_buf(body, strlen(body), digest) != 0)
            return err_set(e, ERR_INTERNAL, 0, "sha-256 failed");
        p.tag = "bench0";
        p.manifest_digest = digest;
    } else {
        p.tag_prefix = "m";
    }
    apply_bounds(s, &p, 0, 5.0);
    return measure(s, &p, e);
}

static int
run_head(struct scen *s, struct err *e)
{
    struct rb_blob *b = make_blobs(s->seed, 1, s->o->size, e);
    if (!b)
        return -1;
    int rc = push_blobs(s, b, 1, e);
    if (rc == 0) {
        struct rb_phase p;
        phase_init(s, &p, RB_OP_HEAD);
        p.blobs = b;
        p.nblobs = 1;
        apply_bounds(s, &p, 0, 5.0);
        rc = measure(s, &p, e);
    }
    free(b);
    return rc;
}

static int
run_tags(struct scen *s, struct err *e)
{
    int rc = setup_manifest_parts(s, e);
    if (rc == 0)
        rc = put_manifests(s, "t", (uint64_t)s->o->tags, e);
    if (rc != 0)
        return rc;
    struct rb_phase p;
    phase_init(s, &p, RB_OP_TAGS);
    p.expect_tags = (uint64_t)s->o->tags;
    apply_bounds(s, &p, 0, 5.0);
    return measure(s, &p, e);
}

static int
run_catalog(struct scen *s, struct err *e)
{
    struct rb_blob b = {.seed = s->seed, .size = 4096};
    if (rb_blob_digest(&b) != 0)
        return err_set(e, ERR_INTERNAL, 0, "sha-256 failed");
    struct rb_phase p;
    phase_init(s, &p, RB_OP_PUSH);
    p.blobs = &b;
    p.nblobs = 1;
    p.repo_per_op = 1;
    p.max_ops = (uint64_t)s->o->repos;
    if (p.conns > 8)
        p.conns = 8;
    int rc = setup_run(s, &p, "create repositories", e);
    if (rc != 0)
        return rc;
    char first[320];
    snprintf(first, sizeof(first), "%s-0", s->repo);
    phase_init(s, &p, RB_OP_CATALOG);
    p.repo = first;
    apply_bounds(s, &p, 0, 5.0);
    return measure(s, &p, e);
}

static int
run_idle(struct scen *s, struct err *e)
{
    const struct rb_opts *o = s->o;
    struct rb_entry *out = s->out;
    if (o->tls) {
        snprintf(out->setup_err, sizeof(out->setup_err),
                 "set-up (idle): idle connections are plain HTTP only");
        return 1;
    }
    int rc = setup_manifest_parts(s, e);
    if (rc == 0)
        rc = put_manifests(s, "bench", 1, e);
    if (rc != 0)
        return rc;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(o->host, o->port, &hints, &ai);
    if (gai != 0)
        return err_set(e, ERR_CONFIG, 0, "resolve '%s': %s", o->host, gai_strerror(gai));
    int *fds = malloc(sizeof(int) * (size_t)(o->idle > 0 ? o->idle : 1));
    if (!fds) {
        freeaddrinfo(ai);
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    struct rb_proc p0, p1;
    memset(&p0, 0, sizeof(p0));
    memset(&p1, 0, sizeof(p1));
    if (o->server_pid)
        rb_proc_read(o->server_pid, &p0);
    out->idle_want = o->idle;
    int n = 0;
    uint64_t limit = rb_now_ns() + 60 * UINT64_C(1000000000);
    for (; n < o->idle && rb_now_ns() < limit; n++) {
        fds[n] = idle_connect(ai, o->host);
        if (fds[n] < 0) {
            snprintf(out->setup_err, sizeof(out->setup_err),
                     "set-up (idle): connection %d of %d failed: %s", n + 1, o->idle,
                     strerror(errno));
            break;
        }
    }
    freeaddrinfo(ai);
    out->idle_open = n;
    if (out->setup_err[0] == '\0' && n < o->idle)
        snprintf(out->setup_err, sizeof(out->setup_err),
                 "set-up (idle): only %d of %d connections opened in 60 s", n, o->idle);
    if (out->setup_err[0] == '\0') {
        usleep(300 * 1000); /* let the server settle its per-connection state */
        if (o->server_pid) {
            rb_proc_read(o->server_pid, &p1);
            if (p0.ok && p1.ok)
                out->idle_rss_delta_kib = p1.rss_kib - p0.rss_kib;
        }
        char body[4096], digest[RB_DIGEST_MAX];
        struct rb_phase p;
        snprintf(body, sizeof(body), "%s0%s", s->mhead, s->mtail);
        if (rb_sha256_buf(body, strlen(body), digest) != 0) {
            rc = err_set(e, ERR_INTERNAL, 0, "sha-256 failed");
        } else {
            phase_init(s, &p, RB_OP_MANIFEST_GET);
            p.tag = "bench0";
            p.manifest_digest = digest;
            apply_bounds(s, &p, 0, 5.0);
            rc = measure(s, &p, e);
        }
        /* an idle connection the server has closed polls readable (EOF) */
        for (int k = 0; k < n; k++) {
            struct pollfd pf = {.fd = fds[k], .events = POLLIN};
            if (poll(&pf, 1, 0) > 0)
                out->idle_closed++;
        }
    }
    for (int k = 0; k < n; k++)
        close(fds[k]);
    free(fds);
    return rc < 0 ? -1 : 0;
}

void
rb_scen_repo(const struct rb_opts *o, const char *name, int rep, char *out, size_t cap)
{
    if (o->ext_repo)
        snprintf(out, cap, "%s", o->ext_repo);
    else
        snprintf(out, cap, "%s/%s-%s-%d", o->repo_prefix, name, o->runid, rep);
}

int
rb_scen_run(const struct rb_opts *o, const char *name, int rep, struct rb_entry *out, struct err *e)
{
    struct scen *s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(e, ERR_NOMEM, 0, "out of memory");
    memset(out, 0, sizeof(*out));
    snprintf(out->scenario, sizeof(out->scenario), "%s", name);
    out->rep = rep;
    out->conns = o->conns;
    out->size = o->size;
    s->o = o;
    s->out = out;
    s->seed = o->seed ^ ((uint64_t)(rep + 1) * UINT64_C(0xD6E8FEB86659FD93));
    rb_scen_repo(o, name, rep, s->repo, sizeof(s->repo));
    int rc;
    if (strcmp(name, "push") == 0)
        rc = run_push(s, 0, e);
    else if (strcmp(name, "push-chunked") == 0)
        rc = run_push(s, 1, e);
    else if (strcmp(name, "pull") == 0)
        rc = run_pull(s, RB_OP_PULL, e);
    else if (strcmp(name, "pull-range") == 0)
        rc = run_pull(s, RB_OP_RANGE, e);
    else if (strcmp(name, "manifest-put") == 0)
        rc = run_manifest(s, RB_OP_MANIFEST_PUT, e);
    else if (strcmp(name, "manifest-get") == 0)
        rc = run_manifest(s, RB_OP_MANIFEST_GET, e);
    else if (strcmp(name, "head-blob") == 0)
        rc = run_head(s, e);
    else if (strcmp(name, "tags-list") == 0)
        rc = run_tags(s, e);
    else if (strcmp(name, "catalog") == 0)
        rc = run_catalog(s, e);
    else if (strcmp(name, "idle") == 0)
        rc = run_idle(s, e);
    else
        rc = err_set(e, ERR_CONFIG, 0, "unknown scenario '%s'", name);
    free(s);
    if (rc > 0) { /* set-up failed: out->setup_err says why */
        out->ok = 0;
        rc = 0;
    }
    if (out->setup_err[0])
        out->ok = 0;
    return rc;
}
