/* api_auth.c - who may do what: the auth step between the router and the
 * handlers, and the built-in token issuer at /auth/token (docs/auth.md).
 *
 * A request's identity comes from, in this order: an Authorization header
 * (Bearer: a token of the built-in issuer or of the external token server;
 * Basic: a user of the htpasswd file), a verified TLS client certificate (its
 * CN), or nobody (anonymous). What it may do in a repository:
 *   - a bearer token: exactly the actions its `access` claim grants there;
 *   - a user, a certificate or anonymous: what the access rules give it.
 * Refusals follow distribution's token protocol: no or bad credentials, or a
 * token without the scope, is 401 with the Bearer challenge (the client then
 * gets a token for the scope named in it); an authenticated identity that the
 * rules refuse is 403 DENIED; too many failed logins is 429.
 *
 * Password checks (bcrypt, 60-300 ms of CPU) run on a pool of their own whose
 * threads have the lowest CPU priority, so a storm of logins neither holds up
 * an event loop nor the commits on the blocking-work pool, nor takes CPU from
 * the workers; a success is cached (auth/htpasswd.h), so Basic on every
 * request costs one bcrypt per user and password every few minutes. */
#include <ctype.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "auth/access.h"
#include "auth/htpasswd.h"
#include "auth/ratelimit.h"
#include "auth/token.h"
#include "common/log.h"
#include "common/pool.h"
#include "server/api_internal.h"

#include "common/banned.h"

#define AUTH_MOD "auth"
/* user:password of a Basic header, decoded; longer is refused unread */
#define BASIC_MAX 1024
/* scopes taken from one token request (more are ignored) */
#define SCOPES_MAX TOKEN_MAX_ACCESS
/* a token request's form body */
#define FORM_MAX 16384

struct api_auth {
    struct api_auth_opts o; /* strings point into the copies below */
    char *paths;            /* one allocation holding the copied strings */
    struct htpasswd *users; /* NULL: no htpasswd (external tokens only) */
    pthread_rwlock_t lock;  /* guards rules against a reload's swap */
    struct access_rules *rules;
    struct token_key *key;            /* the built-in issuer's */
    struct token_verifier *own;       /* its tokens */
    struct token_verifier *external;  /* the external server's, or NULL */
    struct ratelimit *limit;
    struct pool *pool; /* password checks */
    /* for metrics (api_auth_counts), relaxed atomics */
    uint64_t n_ok_basic, n_ok_bearer, n_fail_basic, n_fail_bearer, n_limited;
};

#define COUNT(au, field) __atomic_add_fetch(&(au)->field, 1, __ATOMIC_RELAXED)

static long long
now_sec(void)
{
    return (long long)time(NULL);
}

/* ---- set-up ---- */

/* A password check is pure CPU: the auth pool's threads run at the lowest
 * priority so that the event loops always win the CPU from them. */
static void *
auth_thread_init(void *arg, int index, struct err *e)
{
    (void)arg;
    (void)index;
    (void)e;
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) < 0)
        log_debug(AUTH_MOD, NULL, "lowering the priority of a password-check thread failed");
    return NULL;
}

/* copy the option strings so that the api owns them (reloads read the paths) */
static int
copy_opts(struct api_auth *au, const struct api_auth_opts *o, struct err *e)
{
    const char **fields[] = {&au->o.htpasswd,    &au->o.rules,         &au->o.service,
                             &au->o.issuer,      &au->o.token_key,     &au->o.token_realm,
                             &au->o.token_service, &au->o.token_issuer, &au->o.token_certs,
                             &au->o.token_jwks};
    au->o = *o;
    size_t total = 0;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (*fields[i] && **fields[i])
            total += strlen(*fields[i]) + 1;
    au->paths = malloc(total + 1);
    if (!au->paths)
        return err_set(e, ERR_NOMEM, 0, "auth: out of memory");
    char *p = au->paths;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (!*fields[i] || !**fields[i]) {
            *fields[i] = NULL;
            continue;
        }
        size_t n = strlen(*fields[i]) + 1;
        memcpy(p, *fields[i], n);
        *fields[i] = p;
        p += n;
    }
    if (!au->o.service)
        au->o.service = "ocireg";
    if (!au->o.issuer)
        au->o.issuer = "ocireg";
    return 0;
}

struct api_auth *
api_auth_new(const struct api_auth_opts *o, struct err *e)
{
    struct api_auth *au = calloc(1, sizeof(*au));
    if (!au) {
        err_set(e, ERR_NOMEM, 0, "auth: out of memory");
        return NULL;
    }
    pthread_rwlock_init(&au->lock, NULL);
    if (copy_opts(au, o, e) < 0)
        goto fail;
    const struct api_auth_opts *c = &au->o;
    if (c->token_realm && (!c->token_service || !c->token_issuer ||
                           (!c->token_certs && !c->token_jwks))) {
        err_set(e, ERR_CONFIG,
                0, "[auth] token_realm needs token_service, token_issuer and token_certs or "
                   "token_jwks");
        goto fail;
    }
    if (c->htpasswd) {
        au->users = htpasswd_open(c->htpasswd, e);
        if (!au->users)
            goto fail;
    }
    au->rules = access_load(c->rules, e);
    if (!au->rules)
        goto fail;
    if (c->htpasswd) {
        au->key = token_key_load(c->token_key, 1, e);
        if (!au->key)
            goto fail;
        struct token_verifier_opts vo = {
            .issuer = c->issuer, .audience = c->service, .own = au->key};
        au->own = token_verifier_new(&vo, e);
        if (!au->own)
            goto fail;
    }
    if (c->token_realm) {
        struct token_verifier_opts vo = {.issuer = c->token_issuer,
                                         .audience = c->token_service,
                                         .certs_pem = c->token_certs,
                                         .jwks = c->token_jwks};
        au->external = token_verifier_new(&vo, e);
        if (!au->external)
            goto fail;
    }
    au->limit = ratelimit_new(c->max_failures, c->failure_window_sec > 0 ? c->failure_window_sec : 60,
                              16384, e);
    if (!au->limit)
        goto fail;
    struct pool_opts po = {.name = "auth",
                           .threads = pool_per_core(1, 1, 1024),
                           .queue_max = 4096,
                           .thread_init = auth_thread_init};
    au->pool = pool_new(&po, e);
    if (!au->pool)
        goto fail;
    log_info(AUTH_MOD, NULL, "auth on: %s%s%s, rules: %s", c->htpasswd ? "htpasswd users" : "",
             c->htpasswd && c->token_realm ? ", " : "",
             c->token_realm ? "external token server" : "",
             c->rules ? c->rules : "default (authenticated: all, anonymous: none)");
    return au;
fail:
    api_auth_free(au);
    return NULL;
}

void
api_auth_free(struct api_auth *au)
{
    if (!au)
        return;
    pool_free(au->pool);
    ratelimit_free(au->limit);
    token_verifier_free(au->external);
    token_verifier_free(au->own);
    token_key_free(au->key);
    access_free(au->rules);
    htpasswd_free(au->users);
    pthread_rwlock_destroy(&au->lock);
    free(au->paths);
    free(au);
}

int
api_auth_reload(struct api_auth *au, struct err *e)
{
    if (!au)
        return 0;
    /* all or nothing: the rules are loaded (without effect) before the users
     * are refreshed (which takes effect), and swapped in only after that */
    struct access_rules *nr = access_load(au->o.rules, e);
    if (!nr)
        return -1;
    if (au->users && htpasswd_refresh(au->users, now_sec() + 2, e) < 0) {
        access_free(nr);
        return -1;
    }
    pthread_rwlock_wrlock(&au->lock);
    struct access_rules *old = au->rules;
    au->rules = nr;
    pthread_rwlock_unlock(&au->lock);
    access_free(old);
    return 0;
}

static unsigned
rules_allowed(struct api_auth *au, const char *user, const char *repo)
{
    pthread_rwlock_rdlock(&au->lock);
    unsigned a = access_allowed(au->rules, user, repo);
    pthread_rwlock_unlock(&au->lock);
    return a;
}

static int
rules_admin(struct api_auth *au, const char *user)
{
    if (!user)
        return 0;
    pthread_rwlock_rdlock(&au->lock);
    int a = access_is_admin(au->rules, user);
    pthread_rwlock_unlock(&au->lock);
    return a;
}

/* ---- what a request needs ---- */

/* the actions a route needs in rt->name; 0 for /v2/ and _catalog, which need
 * an identity (any: the catalog is filtered) */
static unsigned
route_needs(const struct route *rt, enum http_method m)
{
    switch (rt->kind) {
    case ROUTE_MANIFEST:
    case ROUTE_BLOB:
        if (m == HTTP_M_DELETE)
            return ACCESS_DELETE;
        return m == HTTP_M_PUT ? ACCESS_PUSH : ACCESS_PULL;
    case ROUTE_UPLOAD_START:
    case ROUTE_UPLOAD:
        return ACCESS_PUSH;
    case ROUTE_TAGS:
    case ROUTE_REFERRERS:
        return ACCESS_PULL;
    default:
        return 0;
    }
}

static const char *
action_list(unsigned a, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s%s%s", a & ACCESS_PULL ? "pull" : "",
             (a & ACCESS_PULL) && (a & (ACCESS_PUSH | ACCESS_DELETE)) ? "," : "",
             a & ACCESS_PUSH ? "push" : "", (a & ACCESS_PUSH) && (a & ACCESS_DELETE) ? "," : "",
             a & ACCESS_DELETE ? "delete" : "");
    return buf;
}

/* A Host header fit to be quoted in the challenge: host[:port] characters only */
static const char *
host_of(struct http_req *r)
{
    const char *h = http_req_header(r, "Host");
    if (!h || !*h || strlen(h) > 255)
        return NULL;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-:[]_", *p))
            return NULL;
    return h;
}

/* the 401: the Bearer challenge (RFC 6750 section 3) naming the scope the
 * request needs, and error= when a token was refused or lacked the scope */
static void
reply_challenge(struct api_auth *au, struct http_req *r, const struct route *rt, unsigned need,
                const char *error, const char *why)
{
    char scope[TOKEN_NAME_MAX + 64] = "";
    char acts[32];
    if (need)
        snprintf(scope, sizeof(scope), ",scope=\"repository:%s:%s\"", rt->name,
                 action_list(need, acts, sizeof(acts)));
    else if (rt && rt->kind == ROUTE_CATALOG)
        snprintf(scope, sizeof(scope), ",scope=\"registry:catalog:*\"");
    char err[64] = "";
    if (error)
        snprintf(err, sizeof(err), ",error=\"%s\"", error);
    if (au->o.token_realm) {
        http_reply_header(r, "WWW-Authenticate", "Bearer realm=\"%s\",service=\"%s\"%s%s",
                          au->o.token_realm, au->o.token_service, scope, err);
    } else {
        const char *host = host_of(r);
        http_reply_header(r, "WWW-Authenticate", "Bearer realm=\"%s://%s/auth/token\",service=\"%s\"%s%s",
                          au->o.tls ? "https" : "http", host ? host : "localhost", au->o.service,
                          scope, err);
    }
    http_reply_errorf(r, ERR_UNAUTHORIZED, "%s", why);
}

static void
reply_denied(struct http_req *r, const char *repo, unsigned need)
{
    char acts[32];
    http_reply_errorf(r, ERR_DENIED, "requested access to the resource is denied: %s on %s",
                      action_list(need, acts, sizeof(acts)), repo);
}

static void
reply_limited(struct http_req *r, int wait)
{
    http_reply_header(r, "Retry-After", "%d", wait);
    http_reply_errorf(r, ERR_TOOMANYREQUESTS, "too many failed logins: retry in %d s", wait);
}

/* ---- Basic credentials ---- */

struct basic {
    char *user;
    char *pass;
    size_t passlen;
};

/* decode "Basic <base64(user:pass)>" into the request's arena; 0 or -1 */
static int
basic_parse(struct http_req *r, const char *h, struct basic *out)
{
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    while (n && h[n - 1] == ' ')
        n--;
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > BASIC_MAX)
        return -1;
    unsigned char *buf = http_req_alloc(r, n / 4 * 3 + 1);
    int len = EVP_DecodeBlock(buf, (const unsigned char *)h, (int)n);
    if (len < 0)
        return -1;
    /* EVP_DecodeBlock counts the bytes that '=' padding stands for */
    if (h[n - 1] == '=')
        len--;
    if (h[n - 2] == '=')
        len--;
    buf[len] = '\0';
    if (memchr(buf, '\0', (size_t)len))
        return -1;
    char *colon = memchr(buf, ':', (size_t)len);
    if (!colon || colon == (char *)buf || colon - (char *)buf > HTPASSWD_USER_MAX)
        return -1;
    *colon = '\0';
    out->user = (char *)buf;
    out->pass = colon + 1;
    out->passlen = (size_t)len - (size_t)(colon + 1 - (char *)buf);
    return 0;
}

/* a password check: on the worker when cached, else bcrypt on the auth pool,
 * then `done` on the worker with ok = 1/0 */
typedef void (*basic_done_fn)(struct http_req *r, void *arg, int ok);
struct basic_job {
    struct api_worker *w;
    struct basic b;
    int ok;
    basic_done_fn done;
    void *arg;
};

static void
basic_work(void *tctx, void *arg)
{
    struct basic_job *j = arg;
    struct api_auth *au = j->w->a->auth;
    j->ok = htpasswd_verify(au->users, j->b.user, j->b.pass, j->b.passlen, now_sec());
}

static void
basic_checked(struct http_req *r, void *arg)
{
    struct basic_job *j = arg;
    OPENSSL_cleanse(j->b.pass, j->b.passlen);
    struct api_auth *au = j->w->a->auth;
    const char *addr = http_req_peer_addr(r);
    if (j->ok) {
        COUNT(au, n_ok_basic);
        ratelimit_success(au->limit, addr ? addr : "", j->b.user);
    } else {
        COUNT(au, n_fail_basic);
        ratelimit_fail(au->limit, addr ? addr : "", j->b.user, now_sec());
    }
    if (http_req_is_dead(r))
        return;
    j->done(r, j->arg, j->ok);
}

/* check b: 1 answered at once (*ok set), 0 suspended (done follows), -1
 * replied (429, 503) */
static int
basic_check(struct api_worker *w, struct http_req *r, struct basic *b, basic_done_fn done,
            void *arg, int *ok)
{
    struct api_auth *au = w->a->auth;
    struct err e;
    const char *addr = http_req_peer_addr(r);
    long long now = now_sec();
    int wait = ratelimit_check(au->limit, addr ? addr : "", b->user, now);
    if (wait > 0) {
        log_info(AUTH_MOD, http_req_id(r), "login of user '%s' from %s refused: too many failures",
                 b->user, addr ? addr : "?");
        COUNT(au, n_limited);
        reply_limited(r, wait);
        return -1;
    }
    if (!au->users) {
        COUNT(au, n_fail_basic);
        *ok = 0;
        return 1;
    }
    htpasswd_refresh(au->users, now, NULL);
    if (htpasswd_cached(au->users, b->user, b->pass, b->passlen, now)) {
        OPENSSL_cleanse(b->pass, b->passlen);
        COUNT(au, n_ok_basic);
        *ok = 1;
        return 1;
    }
    struct basic_job *j = http_req_alloc(r, sizeof(*j));
    *j = (struct basic_job){.w = w, .b = *b, .done = done, .arg = arg};
    if (http_req_offload(r, au->pool, basic_work, basic_checked, j, &e) < 0) {
        OPENSSL_cleanse(b->pass, b->passlen);
        http_reply_error(r, &e);
        return -1;
    }
    return 0;
}

/* ---- the auth step ---- */

struct step {
    struct api_worker *w;
    struct route *rt;
    api_route_fn run;
    unsigned need;
    const char *user;
    int admin; /* api_auth_admin: only an admin may go on */
};

static int
token_grants(const struct token_claims *c, const char *repo, unsigned need)
{
    unsigned have = 0;
    for (size_t i = 0; i < c->n_access; i++)
        if (strcmp(c->access[i].type, "repository") == 0 && strcmp(c->access[i].name, repo) == 0)
            have |= c->access[i].actions;
    return (have & need) == need;
}

/* an identity the rules decide for (a user, a certificate, anonymous) */
static void
step_by_rules(struct http_req *r, struct step *s)
{
    struct api_auth *au = s->w->a->auth;
    struct api_call *call = (struct api_call *)(void *)s->rt;
    call->who.user = s->user;
    if (s->admin) {
        if (!s->user)
            reply_challenge(au, r, s->rt, 0, NULL, "authentication required");
        else if (!rules_admin(au, s->user))
            http_reply_errorf(r, ERR_DENIED, "requested access to the resource is denied: "
                                             "admins only");
        else
            s->run(s->w, r, s->rt);
        return;
    }
    if (!s->need) {
        if (!s->user) {
            reply_challenge(au, r, s->rt, 0, NULL, "authentication required");
            return;
        }
        s->run(s->w, r, s->rt);
        return;
    }
    unsigned have = rules_allowed(au, s->user, s->rt->name);
    if ((have & s->need) == s->need) {
        s->run(s->w, r, s->rt);
        return;
    }
    if (!s->user)
        reply_challenge(au, r, s->rt, s->need, NULL, "authentication required");
    else
        reply_denied(r, s->rt->name, s->need);
}

static void
step_basic_done(struct http_req *r, void *arg, int ok)
{
    struct step *s = arg;
    if (!ok) {
        reply_challenge(s->w->a->auth, r, s->rt, s->need, NULL, "invalid username or password");
        return;
    }
    step_by_rules(r, s);
}

static void
step_bearer(struct http_req *r, struct step *s, const char *tok)
{
    struct api_auth *au = s->w->a->auth;
    struct api_call *call = (struct api_call *)(void *)s->rt;
    struct token_claims *c = http_req_alloc(r, sizeof(*c));
    struct err e;
    size_t n = strlen(tok);
    int64_t now = (int64_t)now_sec();
    int own = 1;
    int rc = -1;
    if (au->own)
        rc = token_verify(au->own, tok, n, now, c, &e);
    if (rc < 0 && au->external) {
        own = 0;
        rc = token_verify(au->external, tok, n, now, c, &e);
    }
    if (rc < 0 || c->refresh) {
        COUNT(au, n_fail_bearer);
        reply_challenge(au, r, s->rt, s->need, "invalid_token",
                        rc < 0 ? e.msg : "a refresh token is not an access token");
        return;
    }
    COUNT(au, n_ok_bearer);
    call->who.tok = c;
    call->who.user = c->sub[0] ? c->sub : NULL;
    if (s->admin) {
        /* the subject's standing in the rules, whatever the token grants */
        if (call->who.user && rules_admin(au, call->who.user))
            s->run(s->w, r, s->rt);
        else
            http_reply_errorf(r, ERR_DENIED, "requested access to the resource is denied: "
                                             "admins only");
        return;
    }
    if (!s->need || token_grants(c, s->rt->name, s->need)) {
        s->run(s->w, r, s->rt);
        return;
    }
    /* a user whom the rules refuse gets no better token by asking again */
    if (own && c->sub[0] && (rules_allowed(au, c->sub, s->rt->name) & s->need) != s->need) {
        reply_denied(r, s->rt->name, s->need);
        return;
    }
    reply_challenge(au, r, s->rt, s->need, "insufficient_scope", "token lacks the scope");
}

/* find r's identity (Bearer, Basic, TLS client certificate, anonymous), then
 * let the step decide: s->run, or a refusal */
static void
step_start(struct http_req *r, struct step *s)
{
    struct api_auth *au = s->w->a->auth;
    const char *h = http_req_header(r, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        step_bearer(r, s, h);
        return;
    }
    if (h && strncasecmp(h, "Basic ", 6) == 0) {
        struct basic b;
        int ok = 0;
        if (basic_parse(r, h + 6, &b) < 0) {
            COUNT(au, n_fail_basic);
            reply_challenge(au, r, s->rt, s->need, NULL, "malformed Basic credentials");
            return;
        }
        s->user = b.user;
        int rc = basic_check(s->w, r, &b, step_basic_done, s, &ok);
        if (rc == 1)
            step_basic_done(r, s, ok);
        return;
    }
    if (h) {
        reply_challenge(au, r, s->rt, s->need, NULL, "unsupported authorization scheme");
        return;
    }
    s->user = http_req_tls_identity(r);
    step_by_rules(r, s);
}


void
api_auth_request(struct api_worker *w, struct http_req *r, struct route *rt, api_route_fn run)
{
    struct step *s = http_req_alloc(r, sizeof(*s));
    *s = (struct step){.w = w, .rt = rt, .run = run, .need = route_needs(rt, http_req_method(r))};
    step_start(r, s);
}

int
api_auth_on(const struct api *a)
{
    return a->auth != NULL;
}

void
api_auth_admin(struct api_worker *w, struct http_req *r, struct route *rt, api_route_fn run)
{
    struct step *s = http_req_alloc(r, sizeof(*s));
    *s = (struct step){.w = w, .rt = rt, .run = run, .admin = 1};
    step_start(r, s);
}

void
api_auth_counts(const struct api *a, struct api_auth_counts *out)
{
    struct api_auth *au = a->auth;
    memset(out, 0, sizeof(*out));
    if (!au)
        return;
    out->ok_basic = __atomic_load_n(&au->n_ok_basic, __ATOMIC_RELAXED);
    out->ok_bearer = __atomic_load_n(&au->n_ok_bearer, __ATOMIC_RELAXED);
    out->fail_basic = __atomic_load_n(&au->n_fail_basic, __ATOMIC_RELAXED);
    out->fail_bearer = __atomic_load_n(&au->n_fail_bearer, __ATOMIC_RELAXED);
    out->limited = __atomic_load_n(&au->n_limited, __ATOMIC_RELAXED);
}

int
api_auth_may(const struct api *a, const struct route *rt, const char *repo, unsigned action)
{
    struct api_auth *au = a->auth;
    if (!au)
        return 1;
    const struct api_ident *who = api_who(rt);
    if (!repo) /* every repository: an automatic mount */
        return rules_admin(au, who->user);
    if (who->tok)
        return token_grants(who->tok, repo, action);
    return (rules_allowed(au, who->user, repo) & action) == action;
}

int
api_auth_may_list(const struct api *a, const struct route *rt, const char *repo)
{
    struct api_auth *au = a->auth;
    if (!au)
        return 1;
    return (rules_allowed(au, api_who(rt)->user, repo) & ACCESS_PULL) != 0;
}

/* ---- the token issuer ---- */

/* the parameters of a token request, from the query (GET) or the form (POST) */
struct treq {
    struct api_worker *w;
    const char *service;
    const char *grant; /* POST: "password" or "refresh_token"; GET: NULL */
    const char *refresh_in;
    int offline;
    size_t nscope;
    const char *scopes[SCOPES_MAX];
    struct basic b;
    int have_basic;
    const char *user; /* the authenticated subject, NULL: anonymous */
};

static int
hexv(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* application/x-www-form-urlencoded: '+' is a space, %XX a byte; decodes in
 * place, NUL-terminated; -1 on a bad escape or %00 */
static int
form_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '+') {
            *o++ = ' ';
        } else if (*p == '%') {
            int hi = hexv((unsigned char)p[1]), lo = hi < 0 ? -1 : hexv((unsigned char)p[2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return 0;
}

/* add the space-separated scopes of s (kept in the arena) */
static void
add_scopes(struct http_req *r, struct treq *t, const char *s)
{
    char *copy = http_req_strdup(r, s);
    char *save = NULL;
    for (char *tok = strtok_r(copy, " ", &save); tok && t->nscope < SCOPES_MAX;
         tok = strtok_r(NULL, " ", &save))
        t->scopes[t->nscope++] = tok;
}

static int
form_parse(struct http_req *r, struct treq *t, char *body)
{
    char *save = NULL;
    const char *user = NULL, *pass = NULL;
    for (char *kv = strtok_r(body, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *v = eq + 1;
        if (form_decode(kv) < 0 || form_decode(v) < 0)
            return -1;
        if (strcmp(kv, "grant_type") == 0)
            t->grant = v;
        else if (strcmp(kv, "service") == 0)
            t->service = v;
        else if (strcmp(kv, "scope") == 0)
            add_scopes(r, t, v);
        else if (strcmp(kv, "refresh_token") == 0)
            t->refresh_in = v;
        else if (strcmp(kv, "access_type") == 0)
            t->offline = strcmp(v, "offline") == 0;
        else if (strcmp(kv, "username") == 0)
            user = v;
        else if (strcmp(kv, "password") == 0)
            pass = v;
    }
    if (user && pass) {
        if (!*user || strlen(user) > HTPASSWD_USER_MAX || strchr(user, ':'))
            return -1;
        t->b.user = (char *)user;
        t->b.pass = (char *)pass;
        t->b.passlen = strlen(pass);
        t->have_basic = 1;
    }
    return 0;
}

static void
reply_token_error(struct http_req *r, enum err_code code, const char *why)
{
    if (code == ERR_UNAUTHORIZED)
        http_reply_header(r, "WWW-Authenticate", "Basic realm=\"ocireg\"");
    http_reply_errorf(r, code, "%s", why);
}

/* grant the requested scopes (each cut to what t->user may do) and reply */
static void
token_issue_reply(struct http_req *r, struct treq *t)
{
    struct api_auth *au = t->w->a->auth;
    struct err e;
    struct token_access *acc = http_req_alloc(r, sizeof(*acc) * SCOPES_MAX);
    size_t n = 0;
    for (size_t i = 0; i < t->nscope; i++) {
        struct token_access a;
        if (token_scope_parse(t->scopes[i], strlen(t->scopes[i]), &a, &e) < 0)
            continue; /* the spec: grant what can be granted, ignore the rest */
        if (strcmp(a.type, "repository") == 0) {
            if (name_validate(a.name, strlen(a.name), NULL) < 0)
                continue;
            a.actions &= rules_allowed(au, t->user, a.name);
        } else if (strcmp(a.type, "registry") == 0 && strcmp(a.name, "catalog") == 0) {
            /* the catalog lists only what the caller may pull */
            a.actions = t->user ? a.actions : 0;
        } else {
            continue;
        }
        if (a.actions)
            acc[n++] = a;
    }
    int64_t now = (int64_t)now_sec();
    struct token_issue ti = {.issuer = au->o.issuer,
                             .audience = au->o.service,
                             .subject = t->user ? t->user : "",
                             .now = now,
                             .ttl = au->o.token_ttl_sec > 0 ? au->o.token_ttl_sec : 300,
                             .access = acc,
                             .n_access = n};
    char *tok = NULL, *refresh = NULL;
    if (token_sign(au->key, &ti, &tok, &e) < 0) {
        http_reply_error(r, &e);
        return;
    }
    if (t->user && t->offline && !t->refresh_in) {
        struct token_issue rt = ti;
        rt.refresh = 1;
        rt.access = NULL;
        rt.n_access = 0;
        rt.ttl = au->o.refresh_ttl_sec > 0 ? au->o.refresh_ttl_sec : 30 * 86400;
        if (token_sign(au->key, &rt, &refresh, &e) < 0) {
            free(tok);
            http_reply_error(r, &e);
            return;
        }
    }
    char issued[32];
    time_t tnow = (time_t)now;
    struct tm tm;
    gmtime_r(&tnow, &tm);
    strftime(issued, sizeof(issued), "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *rtok = refresh ? refresh : t->refresh_in;
    size_t cap = 2 * strlen(tok) + (rtok ? strlen(rtok) : 0) + 256;
    char *body = http_req_alloc(r, cap);
    int len = snprintf(body, cap,
                       "{\"token\":\"%s\",\"access_token\":\"%s\",\"expires_in\":%" PRId64
                       ",\"issued_at\":\"%s\"%s%s%s}",
                       tok, tok, ti.ttl, issued, rtok ? ",\"refresh_token\":\"" : "",
                       rtok ? rtok : "", rtok ? "\"" : "");
    free(tok);
    free(refresh);
    http_reply_header(r, "Cache-Control", "no-store");
    http_reply(r, 200, CT_JSON, body, (size_t)len);
}

static void
token_basic_done(struct http_req *r, void *arg, int ok)
{
    struct treq *t = arg;
    if (!ok) {
        reply_token_error(r, ERR_UNAUTHORIZED, "invalid username or password");
        return;
    }
    t->user = t->b.user;
    token_issue_reply(r, t);
}

/* the credentials are known: check them (or the refresh token), then issue */
static void
token_authenticate(struct http_req *r, struct treq *t)
{
    struct api_auth *au = t->w->a->auth;
    if (t->service && strcmp(t->service, au->o.service) != 0) {
        reply_token_error(r, ERR_BAD_REQUEST, "unknown service");
        return;
    }
    if (t->grant && strcmp(t->grant, "refresh_token") == 0) {
        struct token_claims *c = http_req_alloc(r, sizeof(*c));
        struct err e;
        if (!t->refresh_in ||
            token_verify(au->own, t->refresh_in, strlen(t->refresh_in), (int64_t)now_sec(), c,
                         &e) < 0 ||
            !c->refresh || !c->sub[0] || !htpasswd_has_user(au->users, c->sub)) {
            COUNT(au, n_fail_bearer);
            reply_token_error(r, ERR_UNAUTHORIZED, "invalid refresh token");
            return;
        }
        COUNT(au, n_ok_bearer);
        t->user = c->sub;
        token_issue_reply(r, t);
        return;
    }
    if (t->grant && strcmp(t->grant, "password") != 0) {
        reply_token_error(r, ERR_BAD_REQUEST, "unsupported grant_type");
        return;
    }
    if (!t->have_basic) {
        if (t->grant) {
            reply_token_error(r, ERR_UNAUTHORIZED, "username and password required");
            return;
        }
        /* anonymous: a token with what anonymous may do */
        t->user = http_req_tls_identity(r);
        token_issue_reply(r, t);
        return;
    }
    int ok = 0;
    int rc = basic_check(t->w, r, &t->b, token_basic_done, t, &ok);
    if (rc == 1)
        token_basic_done(r, t, ok);
}

static void
token_form_complete(struct http_req *r, void *state)
{
    struct treq *t = state;
    size_t n;
    const char *body = http_req_body(r, &n);
    char *copy = http_req_alloc(r, n + 1);
    memcpy(copy, body, n);
    copy[n] = '\0';
    if (memchr(copy, '\0', n) || form_parse(r, t, copy) < 0) {
        reply_token_error(r, ERR_BAD_REQUEST, "malformed form");
        return;
    }
    token_authenticate(r, t);
}

void
api_auth_token(struct api_worker *w, struct http_req *r)
{
    struct api_auth *au = w->a->auth;
    enum http_method m = http_req_method(r);
    if (!au || !au->key) {
        http_reply_errorf(r, ERR_NOT_FOUND, "no token issuer here");
        return;
    }
    struct treq *t = http_req_alloc(r, sizeof(*t));
    *t = (struct treq){.w = w};
    if (m == HTTP_M_POST) {
        const char *ct = http_req_header(r, "Content-Type");
        if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
            reply_token_error(r, ERR_BAD_REQUEST, "expected a form (application/x-www-form-urlencoded)");
            return;
        }
        http_req_collect_body(r, FORM_MAX, token_form_complete, t);
        return;
    }
    if (m != HTTP_M_GET && m != HTTP_M_HEAD) {
        http_reply_header(r, "Allow", "GET, POST");
        http_reply_errorf(r, ERR_METHOD, "method not allowed");
        return;
    }
    t->service = http_req_query(r, "service");
    const char *off = http_req_query(r, "offline_token");
    t->offline = off && strcmp(off, "true") == 0;
    const char *sc[SCOPES_MAX];
    size_t ns = http_req_query_all(r, "scope", sc, SCOPES_MAX);
    for (size_t i = 0; i < ns; i++)
        add_scopes(r, t, sc[i]);
    const char *h = http_req_header(r, "Authorization");
    if (h && strncasecmp(h, "Basic ", 6) == 0) {
        if (basic_parse(r, h + 6, &t->b) < 0) {
            COUNT(au, n_fail_basic);
            reply_token_error(r, ERR_UNAUTHORIZED, "malformed Basic credentials");
            return;
        }
        t->have_basic = 1;
    } else if (h) {
        reply_token_error(r, ERR_UNAUTHORIZED, "the token endpoint takes Basic credentials");
        return;
    }
    token_authenticate(r, t);
}
