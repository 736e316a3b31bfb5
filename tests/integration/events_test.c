/* events_test.c - webhook notifications (server/events.h, docs/operations.md
 * "Events (webhooks)"): a receiver in this process (a small HTTP server thread
 * on 127.0.0.1:0 recording every POST) gets distribution's envelope for the
 * pushes, pulls and deletes of a real server; retries reach a receiver that
 * recovers; a full queue drops its oldest events and counts them; requests and
 * shutdown never wait for a receiver that hangs; broken endpoint files are
 * refused with file:line. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/metrics.h"
#include "server/events.h"
#include "tests/integration/api_test.h"

extern char **environ;

/* ---- the receiver ------------------------------------------------------------ */

#define RECV_MAX 256

struct receiver {
    int lfd, port;
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* behaviour, set by the test */
    int fail_first; /* answer 500 to this many POSTs first */
    int hang;       /* hold each POST unanswered while set */
    int stop;
    /* what came */
    int posts;          /* POSTs received */
    int held;           /* a POST is being held (hang) */
    int bad_ctype;      /* POSTs without the envelope's media type */
    char auth[256];     /* Authorization of the last POST */
    json_t *events;     /* every event of the POSTs answered 200, in order */
    json_t *failed_ids; /* ids of the events of POSTs answered 500 */
};

static struct receiver RV;

static int
rv_stopping(struct receiver *rv)
{
    pthread_mutex_lock(&rv->mu);
    int s = rv->stop;
    pthread_mutex_unlock(&rv->mu);
    return s;
}

/* read into buf until the request is complete; 1 request, 0 peer closed/stop */
static int
read_request(struct receiver *rv, int fd, char *buf, size_t cap, size_t *hlen, size_t *clen)
{
    size_t n = 0;
    for (;;) {
        char *end = n ? memmem(buf, n, "\r\n\r\n", 4) : NULL;
        if (end) {
            *hlen = (size_t)(end - buf) + 4;
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            *clen = cl ? strtoul(cl + 17, NULL, 10) : 0;
            if (n >= *hlen + *clen)
                return 1;
        }
        if (n + 1 >= cap)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, 100);
        if (rv_stopping(rv))
            return 0;
        if (pr <= 0)
            continue;
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got <= 0)
            return 0;
        n += (size_t)got;
        buf[n] = '\0';
    }
}

static void
header_of(const char *head, const char *name, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\r\n%s:", name);
    const char *h = strcasestr(head, pat);
    out[0] = '\0';
    if (!h)
        return;
    h += strlen(pat);
    while (*h == ' ')
        h++;
    size_t k = strcspn(h, "\r\n");
    snprintf(out, cap, "%.*s", (int)(k < cap ? k : cap - 1), h);
}

static void *
rv_thread(void *arg)
{
    struct receiver *rv = arg;
    static char buf[1 << 20];
    while (!rv_stopping(rv)) {
        struct pollfd p = {.fd = rv->lfd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(rv->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        size_t hlen, clen;
        while (read_request(rv, fd, buf, sizeof(buf), &hlen, &clen)) {
            char ct[200], auth[256];
            header_of(buf, "Content-Type", ct, sizeof(ct));
            header_of(buf, "Authorization", auth, sizeof(auth));
            json_t *env = json_loadb(buf + hlen, clen, 0, NULL);
            pthread_mutex_lock(&rv->mu);
            rv->posts++;
            if (strcmp(ct, EVENTS_CONTENT_TYPE) != 0)
                rv->bad_ctype++;
            snprintf(rv->auth, sizeof(rv->auth), "%s", auth);
            if (rv->hang) {
                rv->held++;
                pthread_cond_broadcast(&rv->cv);
                while (rv->hang && !rv->stop)
                    pthread_cond_wait(&rv->cv, &rv->mu);
            }
            int fail = rv->fail_first > 0;
            if (fail)
                rv->fail_first--;
            json_t *list = json_object_get(env, "events");
            size_t i;
            json_t *ev;
            json_array_foreach(list, i, ev)
            {
                if (fail)
                    json_array_append(rv->failed_ids, json_object_get(ev, "id"));
                else
                    json_array_append(rv->events, ev);
            }
            pthread_cond_broadcast(&rv->cv);
            pthread_mutex_unlock(&rv->mu);
            json_decref(env);
            const char *resp =
                fail ? "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
                     : "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            if (send(fd, resp, strlen(resp), MSG_NOSIGNAL) < 0)
                break;
        }
        close(fd);
    }
    return NULL;
}

static void
rv_start(int fail_first, int hang)
{
    memset(&RV, 0, sizeof(RV));
    pthread_mutex_init(&RV.mu, NULL);
    pthread_cond_init(&RV.cv, NULL);
    RV.fail_first = fail_first;
    RV.hang = hang;
    RV.events = json_array();
    RV.failed_ids = json_array();
    RV.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(RV.lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(RV.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(RV.lfd, 16), 0);
    socklen_t al = sizeof(a);
    getsockname(RV.lfd, (struct sockaddr *)&a, &al);
    RV.port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&RV.thr, NULL, rv_thread, &RV), 0);
}

static void
rv_set_hang(int hang)
{
    pthread_mutex_lock(&RV.mu);
    RV.hang = hang;
    pthread_cond_broadcast(&RV.cv);
    pthread_mutex_unlock(&RV.mu);
}

static void
rv_stop(void)
{
    pthread_mutex_lock(&RV.mu);
    RV.stop = 1;
    pthread_cond_broadcast(&RV.cv);
    pthread_mutex_unlock(&RV.mu);
    pthread_join(RV.thr, NULL);
    close(RV.lfd);
    json_decref(RV.events);
    json_decref(RV.failed_ids);
}

enum { W_EVENTS, W_HELD, W_POSTS };

/* wait (at most 20 s) until the receiver holds n events / n held POSTs /
 * n POSTs; returns 1 when it does */
static int
rv_wait(int what, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&RV.mu);
    int ok;
    for (;;) {
        size_t have = what == W_EVENTS ? json_array_size(RV.events)
                      : what == W_HELD ? (size_t)RV.held
                                       : (size_t)RV.posts;
        ok = have >= n;
        if (ok || pthread_cond_timedwait(&RV.cv, &RV.mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&RV.mu);
    return ok;
}

static const char *
jstr(json_t *o, const char *path1, const char *key)
{
    json_t *v = json_object_get(path1 ? json_object_get(o, path1) : o, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

static long long
jint(json_t *o, const char *path1, const char *key)
{
    json_t *v = json_object_get(json_object_get(o, path1), key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* the i-th event the receiver accepted (borrowed while RV lives) */
static json_t *
rv_event(size_t i)
{
    pthread_mutex_lock(&RV.mu);
    json_t *e = json_array_get(RV.events, i);
    pthread_mutex_unlock(&RV.mu);
    return e;
}

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* ---- end to end: the real server -------------------------------------------- */

static char dir[256];

static void
start_server(const char *endpoint_extra, int with_auth)
{
    snprintf(dir, sizeof(dir), "/tmp/ocireg-events.XXXXXX");
    cr_assert(mkdtemp(dir));
    char conf[300], text[1024];
    snprintf(conf, sizeof(conf), "%s/events.conf", dir);
    snprintf(text, sizeof(text),
             "# test endpoint\n"
             "[endpoint \"hook\"]\n"
             "url = http://127.0.0.1:%d/events\n"
             "header = Authorization: Bearer hook-secret-1234\n"
             "backoff = 10ms\n"
             "%s",
             RV.port, endpoint_extra);
    write_text(conf, text);
    static char envs[3][400];
    const char *env[4] = {envs[0], NULL, NULL, NULL};
    snprintf(envs[0], sizeof(envs[0]), "OCIREG_EVENTS_ENDPOINTS=%s", conf);
    if (with_auth) {
        char htpw[300], salt[CRYPT_GENSALT_OUTPUT_SIZE], line[300];
        snprintf(htpw, sizeof(htpw), "%s/htpasswd", dir);
        cr_assert(crypt_gensalt_rn("$2y$", 4, NULL, 0, salt, sizeof(salt)));
        struct crypt_data cd;
        memset(&cd, 0, sizeof(cd));
        snprintf(line, sizeof(line), "alice:%s\n", crypt_r("alice-pw", salt, &cd));
        write_text(htpw, line);
        snprintf(envs[1], sizeof(envs[1]), "OCIREG_AUTH_HTPASSWD=%s", htpw);
        env[1] = envs[1];
    }
    cr_assert_eq(testsrv_start(&S, NULL, env), 0, "server did not start");
}

static void
stop_server(void)
{
    api_teardown();
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *AUTH = "Authorization: Basic YWxpY2U6YWxpY2UtcHc="; /* alice:alice-pw */

/* one request as alice with an optional extra header; returns the status,
 * rid (may be NULL) gets the response's X-Request-Id when it has one */
static long
areq(const char *method, const char *path, const char *extra, const char *body, char *rid)
{
    const char *h[] = {AUTH, "User-Agent: events-test/1.0", extra, NULL};
    struct tresp r;
    req(method, path, h, body, body ? strlen(body) : 0, &r);
    long st = r.status;
    if (rid)
        snprintf(rid, 128, "%s", H(&r, "X-Request-Id"));
    tresp_free(&r);
    return st;
}

static void
apush_blob(const char *repo, const char *data, char *dg)
{
    char path[400];
    tdigest(data, strlen(data), dg);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, dg);
    cr_assert_eq(areq("POST", path, "Content-Type: application/octet-stream", data, NULL), 201);
}

static json_t *
find_event(const char *action, const char *digest, const char *tag, const char *method)
{
    for (size_t i = 0;; i++) {
        json_t *e = rv_event(i);
        if (!e)
            return NULL;
        if (strcmp(jstr(e, NULL, "action"), action) == 0 &&
            strcmp(jstr(e, "target", "digest"), digest) == 0 &&
            strcmp(jstr(e, "target", "tag"), tag) == 0 &&
            strcmp(jstr(e, "request", "method"), method) == 0)
            return e;
    }
}

static void
check_common(json_t *e, const char *repo)
{
    cr_assert_str_eq(jstr(e, "target", "repository"), repo);
    cr_assert_str_eq(jstr(e, "actor", "name"), "alice");
    cr_assert_str_eq(jstr(e, "request", "addr"), "127.0.0.1");
    cr_assert_str_eq(jstr(e, "request", "useragent"), "events-test/1.0");
    cr_assert_neq(strlen(jstr(e, "request", "id")), 0);
    cr_assert_eq(strlen(jstr(e, NULL, "id")), 36, "event id %s", jstr(e, NULL, "id"));
    cr_assert_neq(strlen(jstr(e, "source", "instanceID")), 0);
    cr_assert_neq(strlen(jstr(e, "source", "addr")), 0);
    /* RFC 3339 with fractions, UTC */
    const char *ts = jstr(e, NULL, "timestamp");
    cr_assert(strlen(ts) == 30 && ts[10] == 'T' && ts[19] == '.' && ts[29] == 'Z', "ts %s", ts);
}

Test(events, push_pull_delete_reach_the_receiver_in_distributions_envelope, .timeout = 120)
{
    rv_start(0, 0);
    start_server("", 1);
    const char *repo = "team/app";
    char cdg[80], ldg[80], mdg[80], body[1024], path[400];
    const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    const char *layer = "layer bytes for the events test";
    apush_blob(repo, cfg, cdg);
    apush_blob(repo, layer, ldg);
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":"
             "\"%s\",\"size\":%zu}]}",
             MT_OCI_MANIFEST, MT_OCI_CONFIG, cdg, strlen(cfg), MT_OCI_LAYER, ldg, strlen(layer));
    tdigest(body, strlen(body), mdg);
    char rid_put[128], rid_get[128];
    snprintf(path, sizeof(path), "/v2/%s/manifests/v1", repo);
    cr_assert_eq(areq("PUT", path, "Content-Type: " MT_OCI_MANIFEST, body, rid_put), 201);
    snprintf(path, sizeof(path), "/v2/%s/manifests/v2", repo);
    cr_assert_eq(areq("PUT", path, "Content-Type: " MT_OCI_MANIFEST, body, NULL), 201);
    /* a HEAD is no pull (distribution), a GET is */
    snprintf(path, sizeof(path), "/v2/%s/manifests/v1", repo);
    cr_assert_eq(areq("HEAD", path, NULL, NULL, NULL), 200);
    cr_assert_eq(areq("GET", path, NULL, NULL, rid_get), 200);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, ldg);
    cr_assert_eq(areq("HEAD", path, NULL, NULL, NULL), 200);
    cr_assert_eq(areq("GET", path, NULL, NULL, NULL), 200);
    snprintf(path, sizeof(path), "/v2/other/blobs/uploads/?mount=%s&from=%s", ldg, repo);
    cr_assert_eq(areq("POST", path, NULL, NULL, NULL), 201);
    snprintf(path, sizeof(path), "/v2/%s/manifests/v2", repo);
    cr_assert_eq(areq("DELETE", path, NULL, NULL, NULL), 202);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, mdg);
    cr_assert_eq(areq("DELETE", path, NULL, NULL, NULL), 202);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, cdg);
    cr_assert_eq(areq("DELETE", path, NULL, NULL, NULL), 202);

    /* 2 blob pushes, 2 manifest pushes, 2 pulls, a mount, 3 deletes: one
     * sender per endpoint keeps their order, so once the last is in, all are */
    cr_assert(rv_wait(W_EVENTS, 10), "events received: %zu", json_array_size(RV.events));
    cr_assert_eq(json_array_size(RV.events), 10);
    json_t *last = rv_event(9);
    cr_assert_str_eq(jstr(last, NULL, "action"), "delete");
    cr_assert_str_eq(jstr(last, "target", "digest"), cdg);

    json_t *e = find_event("push", cdg, "", "POST");
    cr_assert(e, "no push event for the config blob");
    check_common(e, repo);
    cr_assert_str_eq(jstr(e, "target", "mediaType"), "application/octet-stream");
    cr_assert_eq(jint(e, "target", "size"), (long long)strlen(cfg));
    cr_assert_eq(jint(e, "target", "length"), (long long)strlen(cfg));
    cr_assert(find_event("push", ldg, "", "POST"), "no push event for the layer");

    e = find_event("push", mdg, "v1", "PUT");
    cr_assert(e, "no push event for the manifest");
    check_common(e, repo);
    cr_assert_str_eq(jstr(e, "target", "mediaType"), MT_OCI_MANIFEST);
    cr_assert_eq(jint(e, "target", "size"), (long long)strlen(body));
    char url[600];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v2/%s/manifests/%s", S.port, repo, mdg);
    cr_assert_str_eq(jstr(e, "target", "url"), url);
    if (rid_put[0]) /* when the server echoes its request id */
        cr_assert_str_eq(jstr(e, "request", "id"), rid_put);
    cr_assert(find_event("push", mdg, "v2", "PUT"));

    e = find_event("pull", mdg, "v1", "GET");
    cr_assert(e, "no pull event for the manifest");
    check_common(e, repo);
    cr_assert_str_eq(jstr(e, "target", "mediaType"), MT_OCI_MANIFEST);
    cr_assert_eq(jint(e, "target", "size"), (long long)strlen(body));
    if (rid_get[0])
        cr_assert_str_eq(jstr(e, "request", "id"), rid_get);
    cr_assert_str_neq(jstr(e, "request", "id"),
                      jstr(find_event("push", mdg, "v1", "PUT"), "request", "id"));
    e = find_event("pull", ldg, "", "GET");
    cr_assert(e, "no pull event for the layer");
    cr_assert_eq(jint(e, "target", "size"), (long long)strlen(layer));
    cr_assert(!find_event("pull", mdg, "v1", "HEAD"), "a HEAD made a pull event");
    cr_assert(!find_event("pull", ldg, "", "HEAD"), "a HEAD made a pull event");

    e = find_event("mount", ldg, "", "POST");
    cr_assert(e, "no mount event");
    check_common(e, "other");
    cr_assert_str_eq(jstr(e, "target", "fromRepository"), repo);
    cr_assert_eq(jint(e, "target", "size"), (long long)strlen(layer));

    e = find_event("delete", "", "v2", "DELETE");
    cr_assert(e, "no delete event for the tag");
    check_common(e, repo);
    e = find_event("delete", mdg, "", "DELETE");
    cr_assert(e, "no delete event for the manifest");
    check_common(e, repo);

    pthread_mutex_lock(&RV.mu);
    cr_assert_eq(RV.bad_ctype, 0, "POSTs without the envelope's media type");
    cr_assert_str_eq(RV.auth, "Bearer hook-secret-1234");
    pthread_mutex_unlock(&RV.mu);
    /* the receiver's credential is never logged */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "grep -q hook-secret '%s'", S.log);
    cr_assert_neq(system(cmd), 0, "the endpoint's header value is in the server log");
    stop_server();
    rv_stop();
}

Test(events, requests_and_shutdown_never_wait_for_a_hung_receiver, .timeout = 120)
{
    rv_start(0, 1);
    start_server("timeout = 60s\nqueue = 2\nbatch = 1\n", 0);
    char dg[80];
    push_image("hang/app", "v1", "hang", dg);
    cr_assert(rv_wait(W_HELD, 1), "the receiver got no POST");
    /* the sender is stuck in a POST the receiver never answers: requests go on */
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(status_of("GET", "/v2/hang/app/manifests/v1"), 200);
        cr_assert_eq(status_of("HEAD", "/v2/hang/app/manifests/v1"), 200);
    }
    push_image("hang/app", "v2", "hang2", dg);
    /* shutdown cuts the hung POST after EVENTS_FLUSH_MS: a clean exit well
     * within testsrv_stop's 5 s before SIGKILL */
    stop_server();
    rv_stop();
}

/* ---- the module in this process: retries, drops, metrics -------------------- */

static struct events_conf *
conf_for(const char *extra)
{
    char path[] = "/tmp/ocireg-events-conf.XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    char text[1024];
    snprintf(text, sizeof(text),
             "[endpoint \"slow\"]\nurl = http://127.0.0.1:%d/hook\nbackoff = 10ms\n"
             "max_backoff = 40ms\n%s",
             RV.port, extra);
    write_text(path, text);
    struct err e = {0};
    struct events_conf *c = events_conf_load(path, &e);
    unlink(path);
    cr_assert(c, "%s", e.msg);
    return c;
}

static void
emit_n(struct events *evs, int from, int to)
{
    for (int i = from; i < to; i++) {
        char repo[32];
        snprintf(repo, sizeof(repo), "r%d", i);
        struct events_event ev = {.action = EVENTS_PUSH,
                                  .manifest = 1,
                                  .repository = repo,
                                  .digest = "sha256:0123",
                                  .tag = "latest",
                                  .media_type = MT_OCI_MANIFEST,
                                  .size = 42,
                                  .request_id = "rq",
                                  .host = "reg.example"};
        events_emit(evs, &ev);
    }
}

Test(events, failed_posts_are_retried_until_the_receiver_recovers, .timeout = 60)
{
    rv_start(3, 0);
    struct events_conf *c = conf_for("batch = 10\n");
    struct err e = {0};
    struct events *evs = events_new(c, "test:5000", "http", &e);
    free(c);
    cr_assert(evs, "%s", e.msg);
    emit_n(evs, 0, 5);
    cr_assert(rv_wait(W_EVENTS, 5), "events did not arrive after the receiver recovered");
    struct events_stats st;
    /* the counters move just after the reply is read */
    for (int i = 0; i < 2000; i++) {
        cr_assert_eq(events_stats(evs, "slow", &st), 0);
        if (st.sent == 5)
            break;
        usleep(1000);
    }
    cr_assert_eq(st.sent, 5);
    cr_assert_eq(st.failed, 3);
    cr_assert_eq(st.dropped, 0);
    pthread_mutex_lock(&RV.mu);
    cr_assert_geq(RV.posts, 4);
    cr_assert_eq(json_array_size(RV.events), 5, "an event was delivered twice");
    /* each retry re-sent the same events (same ids): a receiver can deduplicate */
    size_t nf = json_array_size(RV.failed_ids);
    cr_assert_geq(nf, 3);
    for (size_t i = 0; i < nf; i++) {
        const char *id = json_string_value(json_array_get(RV.failed_ids, i));
        int found = 0;
        for (size_t k = 0; k < 5; k++)
            found |= strcmp(id, jstr(json_array_get(RV.events, k), NULL, "id")) == 0;
        cr_assert(found, "a retry carried new event ids");
    }
    for (int i = 0; i < 5; i++) {
        char repo[32];
        snprintf(repo, sizeof(repo), "r%d", i);
        cr_assert_str_eq(jstr(json_array_get(RV.events, (size_t)i), "target", "repository"), repo);
    }
    /* anonymous: an empty actor, as distribution's omitempty name */
    cr_assert_eq(json_object_size(json_object_get(json_array_get(RV.events, 0), "actor")), 0);
    pthread_mutex_unlock(&RV.mu);
    events_free(evs);
    rv_stop();
}

Test(events, a_full_queue_drops_its_oldest_events_and_counts_them, .timeout = 60)
{
    rv_start(0, 1);
    struct events_conf *c = conf_for("queue = 4\nbatch = 1\ntimeout = 60s\n");
    struct err e = {0};
    struct events *evs = events_new(c, "test:5000", "http", &e);
    free(c);
    cr_assert(evs, "%s", e.msg);
    emit_n(evs, 0, 1);
    cr_assert(rv_wait(W_HELD, 1), "the first event was not sent");
    /* r0 is in flight; r1..r7 go into a queue of 4: r1..r3 are dropped */
    emit_n(evs, 1, 8);
    struct events_stats st;
    cr_assert_eq(events_stats(evs, "slow", &st), 0);
    cr_assert_eq(st.dropped, 3);
    cr_assert_eq(st.queued, 4);
    cr_assert_eq(st.inflight, 1);

    size_t len;
    char *text = metrics_render(&len, &e);
    cr_assert(text, "%s", e.msg);
    cr_assert(strstr(text, "ocireg_events_dropped_total{endpoint=\"slow\"} 3\n"), "%s", text);
    cr_assert(strstr(text, "ocireg_events_queue_length{endpoint=\"slow\"} 5\n"), "%s", text);
    cr_assert(strstr(text, "ocireg_events_sent_total{endpoint=\"slow\"} 0\n"), "%s", text);
    cr_assert(strstr(text, "# TYPE ocireg_events_failed_total counter\n"), "%s", text);
    free(text);

    rv_set_hang(0);
    cr_assert(rv_wait(W_EVENTS, 5), "queued events did not arrive");
    const char *want[] = {"r0", "r4", "r5", "r6", "r7"};
    for (size_t i = 0; i < 5; i++)
        cr_assert_str_eq(jstr(rv_event(i), "target", "repository"), want[i]);
    events_free(evs);
    /* nothing more came than what was queued */
    cr_assert_eq(json_array_size(RV.events), 5);
    rv_stop();
}

Test(events, shutdown_flushes_what_is_queued, .timeout = 60)
{
    rv_start(0, 0);
    struct events_conf *c = conf_for("batch = 2\n");
    struct err e = {0};
    struct events *evs = events_new(c, "test:5000", "http", &e);
    free(c);
    cr_assert(evs, "%s", e.msg);
    emit_n(evs, 0, 7);
    events_free(evs);
    cr_assert_eq(json_array_size(RV.events), 7);
    rv_stop();
}

Test(events, ignored_actions_and_media_types_are_not_sent, .timeout = 60)
{
    rv_start(0, 0);
    struct events_conf *c =
        conf_for("ignore_actions = pull, delete\nignore_media_types = application/octet-stream\n");
    struct err e = {0};
    struct events *evs = events_new(c, "test:5000", "http", &e);
    free(c);
    cr_assert(evs, "%s", e.msg);
    struct events_event pull = {.action = EVENTS_PULL, .repository = "a"};
    struct events_event blob = {
        .action = EVENTS_PUSH, .repository = "b", .media_type = "application/octet-stream"};
    struct events_event keep = {
        .action = EVENTS_PUSH, .repository = "c", .media_type = MT_OCI_MANIFEST};
    events_emit(evs, &pull);
    events_emit(evs, &blob);
    events_emit(evs, &keep);
    events_free(evs);
    cr_assert_eq(json_array_size(RV.events), 1);
    cr_assert_str_eq(jstr(rv_event(0), "target", "repository"), "c");
    rv_stop();
}

/* ---- the endpoints file ------------------------------------------------------ */

static void
expect_conf_error(const char *text, const char *want)
{
    char path[] = "/tmp/ocireg-events-bad.XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_text(path, text);
    struct err e = {0};
    struct events_conf *c = events_conf_load(path, &e);
    unlink(path);
    cr_assert_null(c, "accepted: %s", text);
    cr_assert_eq(e.code, ERR_CONFIG);
    char full[600];
    snprintf(full, sizeof(full), "%s:%s", path, want);
    cr_assert(strstr(e.msg, full), "message '%s' lacks '%s'", e.msg, full);
}

Test(events_conf, bad_files_are_config_errors_with_file_and_line)
{
    expect_conf_error("[endpoint \"a\"]\nurl = ftp://x/\n", "2: url");
    expect_conf_error("[endpoint \"a\"]\nurl = http://\n", "2: url");
    expect_conf_error("[endpoint \"a\"]\nurl = http:///path\n", "2: url");
    expect_conf_error("[endpoint \"a\"]\n# c\nurl = http://a b/\n", "3: url");
    expect_conf_error("[endpoint \"a\"]\nurl = http://h/\ncolour = red\n", "3: unknown key");
    expect_conf_error("[endpoint \"a\"]\nurl = http://h/\ntimeout = soon\n", "3: timeout");
    expect_conf_error("[endpoint \"a\"]\nurl = http://h/\nqueue = 0\n", "3: queue");
    expect_conf_error("[endpoint \"a\"]\nurl = http://h/\nheader = NoColon\n", "3: header");
    expect_conf_error("[endpoint \"a\"]\nurl = http://h/\nignore_actions = push, fly\n",
                      "3: ignore_actions");
    expect_conf_error("[endpoint \"a\"]\nurl = http://h/\n[endpoint \"a\"]\nurl = http://h/\n",
                      "3: endpoint 'a' declared twice");
    expect_conf_error("[endpoint \"a\"]\ntimeout = 1s\n\n[endpoint \"b\"]\nurl = http://h/\n",
                      "1: [endpoint \"a\"] needs a url");
    expect_conf_error("url = http://h/\n", "1: line outside");
    expect_conf_error("[hook \"a\"]\n", "1: unknown section");
}

Test(events_conf, a_good_file_gives_every_key)
{
    char path[] = "/tmp/ocireg-events-good.XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_text(path, "[endpoint \"audit\"]   # the audit hook\n"
                     "url = https://user:pw@hooks.example.com:8443/reg?x=1\n"
                     "header = Authorization: Bearer abc#def\n"
                     "header = X-Tenant: blue\n"
                     "timeout = 500ms\nbackoff = 2s\nmax_backoff = 1m\n"
                     "queue = 50\nbatch = 5\n"
                     "ignore_actions = pull mount\n"
                     "ignore_media_types = a/b, c/d\n"
                     "[endpoint \"second\"]\nurl = http://127.0.0.1:1/\n");
    struct err e = {0};
    struct events_conf *c = events_conf_load(path, &e);
    unlink(path);
    cr_assert(c, "%s", e.msg);
    cr_assert_eq(c->n, 2);
    const struct events_endpoint_conf *a = &c->ep[0];
    cr_assert_str_eq(a->name, "audit");
    cr_assert_str_eq(a->url, "https://user:pw@hooks.example.com:8443/reg?x=1");
    cr_assert_eq(a->nheaders, 2);
    cr_assert_str_eq(a->headers[0], "Authorization: Bearer abc#def");
    cr_assert_eq(a->timeout_ms, 500);
    cr_assert_eq(a->backoff_ms, 2000);
    cr_assert_eq(a->max_backoff_ms, 60000);
    cr_assert_eq(a->queue, 50);
    cr_assert_eq(a->batch, 5);
    cr_assert_eq(a->ignore_actions, (1u << EVENTS_PULL) | (1u << EVENTS_MOUNT));
    cr_assert_eq(a->nignore_types, 2);
    cr_assert_str_eq(a->ignore_types[1], "c/d");
    cr_assert_eq(c->ep[1].queue, 1000);
    cr_assert_eq(c->ep[1].timeout_ms, 5000);
    free(c);
}

Test(events_conf, the_server_refuses_a_broken_file_naming_file_and_line, .timeout = 60)
{
    char d[] = "/tmp/ocireg-events-srv.XXXXXX";
    cr_assert(mkdtemp(d));
    char conf[300], out[300], env1[400], env2[400], env3[400];
    snprintf(conf, sizeof(conf), "%s/events.conf", d);
    snprintf(out, sizeof(out), "%s/stderr", d);
    write_text(conf, "[endpoint \"x\"]\nurl = gopher://h/\n");
    snprintf(env1, sizeof(env1), "OCIREG_EVENTS_ENDPOINTS=%s", conf);
    snprintf(env2, sizeof(env2), "OCIREG_STORAGE_ROOT=%s/data", d);
    snprintf(env3, sizeof(env3), "OCIREG_SERVER_LISTEN=127.0.0.1:0");
    char *envp[] = {env1, env2, env3, NULL};
    const char *bin = getenv("OCIREG_BIN") ? getenv("OCIREG_BIN") : "build/ocireg";
    char *argv[] = {(char *)bin, "serve", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, argv, envp), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x", st);
    FILE *f = fopen(out, "r");
    char log[4096] = "";
    size_t n = f ? fread(log, 1, sizeof(log) - 1, f) : 0;
    log[n] = '\0';
    if (f)
        fclose(f);
    char want[400];
    snprintf(want, sizeof(want), "%s:2: url", conf);
    cr_assert(strstr(log, want), "log: %s", log);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
}
