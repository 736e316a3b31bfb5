/* api_auth_test.c - auth end to end through the real binary: the challenge,
 * Basic, the built-in token issuer (GET and OAuth2 POST, refresh tokens),
 * access rules (pull-only users, anonymous pull, groups), refused tokens,
 * scope escalation through a mount, the catalog filter, the failed-login limit,
 * reloads, and that no secret reaches the log.
 *
 * Users' hashes are made here with bcrypt cost 4 (crypt_gensalt), so the
 * suite stays quick; the cost is the file's business, not the server's. */
#include <crypt.h>
#include <openssl/evp.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "auth/access.h"
#include "auth/token.h"
#include "tests/integration/api_test.h"
#include "tests/lib/testpki.h"

static char dir[256];
static char htpw[300], rules[300];

static void
write_file(const char *path, const char *text)
{
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "cannot write %s", tmp);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0);
}

/* "user:$2y$04$..." */
static void
hash_line(const char *user, const char *pass, char *out, size_t cap)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    cr_assert(crypt_gensalt_rn("$2y$", 4, NULL, 0, salt, sizeof(salt)));
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *h = crypt_r(pass, salt, &cd);
    cr_assert(h && h[0] == '$');
    snprintf(out, cap, "%s:%s\n", user, h);
}

static void
write_users(int with_carol)
{
    char a[256], b[256], c[256] = "", d[256], all[1100];
    hash_line("alice", "alice-pw", a, sizeof(a));
    hash_line("bob", "bob-pw", b, sizeof(b));
    hash_line("root", "root-pw", d, sizeof(d));
    if (with_carol)
        hash_line("carol", "carol-pw", c, sizeof(c));
    snprintf(all, sizeof(all), "%s%s%s%s", a, b, d, c);
    write_file(htpw, all);
}

static const char RULES[] = "[groups]\n"
                            "devs = alice\n"
                            "admins = root\n"
                            "[admin]\n"
                            "groups = admins\n"
                            "[repo \"public/**\"]\n"
                            "anonymous = pull\n"
                            "@devs = pull, push, delete\n"
                            "[repo \"team/**\"]\n"
                            "@devs = pull, push, delete\n"
                            "bob = pull\n"
                            "[repo \"bob/**\"]\n"
                            "bob = pull, push\n";

static void
start_with(const char *rules_text, const char *extra)
{
    snprintf(dir, sizeof(dir), "/tmp/ocireg-auth.XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(htpw, sizeof(htpw), "%s/htpasswd", dir);
    snprintf(rules, sizeof(rules), "%s/access.conf", dir);
    write_users(0);
    char e1[400], e2[400];
    snprintf(e1, sizeof(e1), "OCIREG_AUTH_HTPASSWD=%s", htpw);
    snprintf(e2, sizeof(e2), "OCIREG_AUTH_RULES=%s", rules);
    const char *env[] = {e1, rules_text ? e2 : NULL, extra, NULL};
    if (!rules_text) {
        env[1] = extra;
        env[2] = NULL;
    } else {
        write_file(rules, rules_text);
    }
    cr_assert_eq(testsrv_start(&S, NULL, env), 0, "server did not start");
}

static void
setup(void)
{
    start_with(RULES, "OCIREG_AUTH_MAX_FAILURES=3");
}

static void
teardown(void)
{
    api_teardown();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* "Authorization: Basic ..." for user:pass */
static const char *
basic(const char *user, const char *pass)
{
    static char out[4][600];
    static int k;
    char *o = out[k++ & 3];
    char up[300];
    int n = snprintf(up, sizeof(up), "%s:%s", user, pass);
    strcpy(o, "Authorization: Basic ");
    EVP_EncodeBlock((unsigned char *)o + strlen(o), (const unsigned char *)up, n);
    return o;
}

static const char *
bearer(const char *tok)
{
    static char out[4][TOKEN_MAX_LEN + 32];
    static int k;
    char *o = out[k++ & 3];
    snprintf(o, TOKEN_MAX_LEN + 32, "Authorization: Bearer %s", tok);
    return o;
}

/* a token from GET /auth/token (auth: a header line or NULL); the status */
static long
get_token(const char *auth, const char *query, char *tok, size_t cap)
{
    char path[1024];
    snprintf(path, sizeof(path), "/auth/token?service=ocireg%s%s", query ? "&" : "",
             query ? query : "");
    const char *h[] = {auth, NULL};
    struct tresp r;
    cr_assert_eq(treq(&S, "GET", path, h, NULL, 0, &r), 0);
    long st = r.status;
    if (st == 200) {
        json_error_t je;
        json_t *j = json_loadb(r.body, r.len, 0, &je);
        cr_assert(j, "token body is not JSON: %s", r.body);
        const char *t = json_string_value(json_object_get(j, "token"));
        const char *at = json_string_value(json_object_get(j, "access_token"));
        cr_assert(t && at && strcmp(t, at) == 0, "token and access_token differ");
        cr_assert(json_integer_value(json_object_get(j, "expires_in")) > 0);
        cr_assert(json_is_string(json_object_get(j, "issued_at")));
        snprintf(tok, cap, "%s", t);
        json_decref(j);
    }
    tresp_free(&r);
    return st;
}

static long
areq(const char *method, const char *path, const char *auth, const char *extra, const void *body,
    size_t n, struct tresp *out)
{
    const char *h[] = {auth, extra, NULL};
    if (!auth) {
        h[0] = extra;
        h[1] = NULL;
    }
    cr_assert_eq(treq(&S, method, path, h, body, n, out), 0);
    return out->status;
}

static long
astatus(const char *method, const char *path, const char *auth)
{
    struct tresp r;
    long st = areq(method, path, auth, NULL, NULL, 0, &r);
    tresp_free(&r);
    return st;
}

/* push a blob monolithically; the status */
static long
apush_blob(const char *repo, const char *auth, const char *data, char *digest)
{
    char path[512];
    tdigest(data, strlen(data), digest);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, digest);
    struct tresp r;
    long st = areq("POST", path, auth, "Content-Type: application/octet-stream", data,
                  strlen(data), &r);
    tresp_free(&r);
    return st;
}

/* push config + manifest as repo:tag; the manifest PUT's status */
static long
apush_image(const char *repo, const char *tag, const char *auth)
{
    char cd[80];
    long st = apush_blob(repo, auth, "{}", cd);
    if (st != 201)
        return st;
    char m[512];
    snprintf(m, sizeof(m),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"" MT_OCI_CONFIG "\",\"digest\":\"%s\",\"size\":2},\"layers\":[]}",
             cd);
    char path[512];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, tag);
    struct tresp r;
    st = areq("PUT", path, auth, "Content-Type: " MT_OCI_MANIFEST, m, strlen(m), &r);
    tresp_free(&r);
    return st;
}

TestSuite(api_auth, .init = setup, .fini = teardown, .timeout = 60);

Test(api_auth, base_answers_401_with_a_bearer_challenge)
{
    struct tresp r;
    cr_assert_eq(areq("GET", "/v2/", NULL, NULL, NULL, 0, &r), 401);
    char want[200];
    snprintf(want, sizeof(want),
             "Bearer realm=\"http://127.0.0.1:%d/auth/token\",service=\"ocireg\"", S.port);
    cr_assert_str_eq(H(&r, "WWW-Authenticate"), want);
    cr_assert_str_eq(ecode(&r), "UNAUTHORIZED");
    tresp_free(&r);
    cr_assert_eq(astatus("GET", "/v2/", basic("alice", "alice-pw")), 200);
    cr_assert_eq(astatus("GET", "/v2/", basic("alice", "wrong")), 401);
}

Test(api_auth, challenge_names_the_scope_a_request_needs)
{
    struct tresp r;
    cr_assert_eq(areq("PUT", "/v2/team/app/manifests/v1", NULL, "Content-Type: " MT_OCI_MANIFEST,
                     "{}", 2, &r),
                 401);
    cr_assert(strstr(H(&r, "WWW-Authenticate"), "scope=\"repository:team/app:push\""), "%s",
              H(&r, "WWW-Authenticate"));
    tresp_free(&r);
    cr_assert_eq(areq("GET", "/v2/_catalog", NULL, NULL, NULL, 0, &r), 401);
    cr_assert(strstr(H(&r, "WWW-Authenticate"), "scope=\"registry:catalog:*\""));
    tresp_free(&r);
}

Test(api_auth, token_flow_push_and_pull)
{
    char tok[TOKEN_MAX_LEN];
    cr_assert_eq(get_token(basic("alice", "alice-pw"), "scope=repository:team/app:pull,push", tok,
                           sizeof(tok)),
                 200);
    cr_assert_eq(apush_image("team/app", "v1", bearer(tok)), 201);
    cr_assert_eq(astatus("GET", "/v2/team/app/manifests/v1", bearer(tok)), 200);
    cr_assert_eq(astatus("GET", "/v2/", bearer(tok)), 200);
    /* a token for team/app does not open team/other */
    struct tresp r;
    cr_assert_eq(areq("GET", "/v2/team/other/tags/list", bearer(tok), NULL, NULL, 0, &r), 401);
    cr_assert(strstr(H(&r, "WWW-Authenticate"), "error=\"insufficient_scope\""), "%s",
              H(&r, "WWW-Authenticate"));
    tresp_free(&r);
    /* nor delete, which it was not granted */
    cr_assert_eq(astatus("DELETE", "/v2/team/app/manifests/v1", bearer(tok)), 401);
}

Test(api_auth, token_grants_only_what_the_rules_allow)
{
    char tok[TOKEN_MAX_LEN];
    /* bob asks for push on team/x: he gets pull only */
    cr_assert_eq(get_token(basic("bob", "bob-pw"), "scope=repository:team/x:pull,push,delete",
                           tok, sizeof(tok)),
                 200);
    cr_assert_eq(apush_image("team/x", "v1", bearer(tok)), 403);
    cr_assert_eq(astatus("DELETE", "/v2/team/x/manifests/v1", bearer(tok)), 403);
    /* with Basic alike */
    cr_assert_eq(apush_image("team/x", "v1", basic("bob", "bob-pw")), 403);
    cr_assert_eq(apush_image("team/x", "v1", basic("alice", "alice-pw")), 201);
    cr_assert_eq(astatus("GET", "/v2/team/x/manifests/v1", basic("bob", "bob-pw")), 200);
    cr_assert_eq(astatus("DELETE", "/v2/team/x/manifests/v1", basic("bob", "bob-pw")), 403);
    struct tresp r;
    cr_assert_eq(areq("DELETE", "/v2/team/x/manifests/v1", basic("bob", "bob-pw"), NULL, NULL, 0,
                     &r),
                 403);
    cr_assert_str_eq(ecode(&r), "DENIED");
    tresp_free(&r);
}

Test(api_auth, anonymous_pull_where_the_rules_allow_it)
{
    cr_assert_eq(apush_image("public/base", "v1", basic("alice", "alice-pw")), 201);
    cr_assert_eq(apush_image("team/secret", "v1", basic("alice", "alice-pw")), 201);
    cr_assert_eq(astatus("GET", "/v2/public/base/manifests/v1", NULL), 200);
    cr_assert_eq(astatus("GET", "/v2/team/secret/manifests/v1", NULL), 401);
    cr_assert_eq(apush_image("public/base", "v2", NULL), 401);
    /* an anonymous token gets what anonymous may do, no more */
    char tok[TOKEN_MAX_LEN];
    cr_assert_eq(get_token(NULL,
                           "scope=repository:public/base:pull,push&scope=repository:team/secret:pull",
                           tok, sizeof(tok)),
                 200);
    cr_assert_eq(astatus("GET", "/v2/public/base/manifests/v1", bearer(tok)), 200);
    cr_assert_eq(astatus("GET", "/v2/team/secret/manifests/v1", bearer(tok)), 401);
    cr_assert_eq(apush_image("public/base", "v2", bearer(tok)), 401);
}

/* a JWS with the given header and payload JSON, signed with nothing */
static void
unsigned_token(const char *header, const char *payload, char *out, size_t cap)
{
    unsigned char b[2][1024];
    const char *in[2] = {header, payload};
    size_t o = 0;
    for (int i = 0; i < 2; i++) {
        int n = EVP_EncodeBlock(b[i], (const unsigned char *)in[i], (int)strlen(in[i]));
        for (int k = 0; k < n && o + 2 < cap; k++) {
            char c = (char)b[i][k];
            if (c == '=')
                break;
            out[o++] = c == '+' ? '-' : c == '/' ? '_' : c;
        }
        out[o++] = '.';
    }
    out[o] = '\0';
}

Test(api_auth, refused_tokens_are_invalid_token)
{
    char tok[TOKEN_MAX_LEN], path[400];
    struct err e;
    /* tokens signed with the server's own key but wrong in one claim */
    snprintf(path, sizeof(path), "%s/token.key", S.root);
    struct token_key *k = token_key_load(path, 0, &e);
    cr_assert(k, "%s", e.msg);
    struct token_access acc = {.type = "repository", .name = "team/app", .actions = ACCESS_ALL};
    struct token_issue good = {.issuer = "ocireg",
                               .audience = "ocireg",
                               .subject = "alice",
                               .now = (int64_t)time(NULL),
                               .ttl = 300,
                               .access = &acc,
                               .n_access = 1};
    struct {
        const char *why;
        struct token_issue t;
    } bad[] = {
        {"expired", good},
        {"wrong issuer", good},
        {"wrong audience", good},
        {"not yet valid", good},
    };
    bad[0].t.now -= 1000;
    bad[1].t.issuer = "somebody-else";
    bad[2].t.audience = "another-registry";
    bad[3].t.now += 1000;
    char *t = NULL;
    cr_assert_eq(token_sign(k, &good, &t, &e), 0);
    cr_assert_eq(astatus("GET", "/v2/team/app/tags/list", bearer(t)), 404, "the good token");
    free(t);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(token_sign(k, &bad[i].t, &t, &e), 0);
        struct tresp r;
        cr_assert_eq(areq("GET", "/v2/team/app/tags/list", bearer(t), NULL, NULL, 0, &r), 401,
                     "%s", bad[i].why);
        cr_assert(strstr(H(&r, "WWW-Authenticate"), "error=\"invalid_token\""), "%s",
                  bad[i].why);
        tresp_free(&r);
        free(t);
    }
    token_key_free(k);
    /* alg none */
    char payload[512];
    snprintf(payload, sizeof(payload),
             "{\"iss\":\"ocireg\",\"aud\":\"ocireg\",\"sub\":\"alice\",\"exp\":%lld,"
             "\"access\":[{\"type\":\"repository\",\"name\":\"team/app\",\"actions\":[\"pull\"]}]}",
             (long long)time(NULL) + 300);
    unsigned_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, tok, sizeof(tok));
    cr_assert_eq(astatus("GET", "/v2/team/app/tags/list", bearer(tok)), 401, "alg none");
    /* a real token whose payload was swapped for a more generous one */
    cr_assert_eq(get_token(basic("bob", "bob-pw"), "scope=repository:bob/x:pull", tok, sizeof(tok)),
                 200);
    char forged[TOKEN_MAX_LEN];
    unsigned_token("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload, forged, sizeof(forged));
    strcat(forged, strrchr(tok, '.') + 1);
    cr_assert_eq(astatus("GET", "/v2/team/app/tags/list", bearer(forged)), 401, "forged");
    cr_assert_eq(astatus("GET", "/v2/team/app/tags/list", bearer("garbage")), 401);
}

Test(api_auth, mount_needs_pull_on_from)
{
    char d[80], path[512];
    cr_assert_eq(apush_blob("team/secret", basic("alice", "alice-pw"), "the secret layer", d), 201);
    /* bob may push to bob/x but not pull team/secret: a plain session, 202 */
    snprintf(path, sizeof(path), "/v2/bob/x/blobs/uploads/?mount=%s&from=team/secret", d);
    cr_assert_eq(astatus("POST", path, basic("root", "root-pw")), 201, "admin mounts");
    snprintf(path, sizeof(path), "/v2/bob/y/blobs/uploads/?mount=%s&from=public/none", d);
    cr_assert_eq(astatus("POST", path, basic("bob", "bob-pw")), 202);
    snprintf(path, sizeof(path), "/v2/bob/y/blobs/uploads/?mount=%s&from=secret/zone", d);
    cr_assert_eq(astatus("POST", path, basic("bob", "bob-pw")), 202);
    /* the automatic mount (no from) is an admin's only */
    snprintf(path, sizeof(path), "/v2/bob/y/blobs/uploads/?mount=%s", d);
    cr_assert_eq(astatus("POST", path, basic("bob", "bob-pw")), 202);
    /* from a repository bob may pull (under team/), it mounts */
    cr_assert_eq(apush_blob("team/shared", basic("alice", "alice-pw"), "a shared layer", d), 201);
    snprintf(path, sizeof(path), "/v2/bob/y/blobs/uploads/?mount=%s&from=team/shared", d);
    cr_assert_eq(astatus("POST", path, basic("bob", "bob-pw")), 201);
    /* a token for bob/y cannot reach zzz/secret (no rule for bob) through a mount */
    char tok[TOKEN_MAX_LEN];
    cr_assert_eq(apush_blob("zzz/secret", basic("root", "root-pw"), "another secret", d), 201);
    cr_assert_eq(get_token(basic("bob", "bob-pw"),
                           "scope=repository:bob/y:pull,push&scope=repository:zzz/secret:pull",
                           tok, sizeof(tok)),
                 200);
    snprintf(path, sizeof(path), "/v2/bob/y/blobs/uploads/?mount=%s&from=zzz/secret", d);
    cr_assert_eq(astatus("POST", path, bearer(tok)), 202);
    /* root's token may */
    cr_assert_eq(get_token(basic("root", "root-pw"),
                           "scope=repository:bob/y:pull,push&scope=repository:zzz/secret:pull",
                           tok, sizeof(tok)),
                 200);
    cr_assert_eq(astatus("POST", path, bearer(tok)), 201);
}

Test(api_auth, catalog_lists_what_the_caller_may_pull)
{
    cr_assert_eq(apush_image("public/base", "v1", basic("alice", "alice-pw")), 201);
    cr_assert_eq(apush_image("team/app", "v1", basic("alice", "alice-pw")), 201);
    cr_assert_eq(apush_image("bob/tool", "v1", basic("bob", "bob-pw")), 201);
    cr_assert_eq(apush_image("zzz/hidden", "v1", basic("root", "root-pw")), 201);
    struct tresp r;
    cr_assert_eq(areq("GET", "/v2/_catalog", basic("bob", "bob-pw"), NULL, NULL, 0, &r), 200);
    /* public/ is pulled anonymously, and so by every user */
    cr_assert_str_eq(r.body, "{\"repositories\":[\"bob/tool\",\"public/base\",\"team/app\"]}");
    tresp_free(&r);
    cr_assert_eq(areq("GET", "/v2/_catalog?n=1", basic("alice", "alice-pw"), NULL, NULL, 0, &r),
                 200);
    cr_assert_str_eq(r.body, "{\"repositories\":[\"public/base\"]}");
    cr_assert(strstr(H(&r, "Link"), "last=public/base"), "%s", H(&r, "Link"));
    tresp_free(&r);
    cr_assert_eq(areq("GET", "/v2/_catalog", basic("root", "root-pw"), NULL, NULL, 0, &r), 200);
    cr_assert_str_eq(r.body, "{\"repositories\":[\"bob/tool\",\"public/base\",\"team/app\","
                             "\"zzz/hidden\"]}");
    tresp_free(&r);
}

Test(api_auth, failed_logins_are_limited)
{
    struct tresp r;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(astatus("GET", "/v2/", basic("alice", "guess")), 401);
    cr_assert_eq(areq("GET", "/v2/", basic("alice", "alice-pw"), NULL, NULL, 0, &r), 429);
    cr_assert_str_eq(ecode(&r), "TOOMANYREQUESTS");
    cr_assert(atoi(H(&r, "Retry-After")) > 0);
    tresp_free(&r);
    /* the token endpoint counts the same failures */
    char tok[TOKEN_MAX_LEN];
    cr_assert_eq(get_token(basic("alice", "alice-pw"), NULL, tok, sizeof(tok)), 429);
    /* another user is not held up */
    cr_assert_eq(astatus("GET", "/v2/", basic("bob", "bob-pw")), 200);
}

Test(api_auth, tampered_basic_headers_are_refused)
{
    cr_assert_eq(astatus("GET", "/v2/", "Authorization: Basic !!!not-base64"), 401);
    cr_assert_eq(astatus("GET", "/v2/", "Authorization: Basic YWxpY2U="), 401); /* "alice" */
    cr_assert_eq(astatus("GET", "/v2/", "Authorization: Basic YWxpY2U6YWxpY2UtcHc="), 200);
    /* one character changed: alice:alice-qw */
    cr_assert_eq(astatus("GET", "/v2/", "Authorization: Basic YWxpY2U6YWxpY2UtcXc="), 401);
    cr_assert_eq(astatus("GET", "/v2/", "Authorization: Digest whatever"), 401);
}

static long
post_form(const char *form, json_t **out)
{
    struct tresp r;
    long st = areq("POST", "/auth/token", NULL, "Content-Type: application/x-www-form-urlencoded",
                  form, strlen(form), &r);
    json_error_t je;
    *out = st == 200 ? json_loadb(r.body, r.len, 0, &je) : NULL;
    tresp_free(&r);
    return st;
}

Test(api_auth, oauth2_password_and_refresh_grants)
{
    json_t *j;
    cr_assert_eq(post_form("grant_type=password&service=ocireg&client_id=test&access_type=offline"
                           "&username=alice&password=alice-pw"
                           "&scope=repository%3Ateam%2Fapp%3Apull%2Cpush+repository%3Apublic%2Fx%3Apull",
                           &j),
                 200);
    const char *tok = json_string_value(json_object_get(j, "access_token"));
    const char *refresh = json_string_value(json_object_get(j, "refresh_token"));
    cr_assert(tok && refresh);
    cr_assert_eq(apush_image("team/app", "v1", bearer(tok)), 201);
    /* a refresh token is not an access token */
    cr_assert_eq(astatus("GET", "/v2/team/app/manifests/v1", bearer(refresh)), 401);
    char form[TOKEN_MAX_LEN + 200];
    snprintf(form, sizeof(form),
             "grant_type=refresh_token&service=ocireg&client_id=test&refresh_token=%s"
             "&scope=repository%%3Ateam%%2Fapp%%3Apull",
             refresh);
    json_t *j2;
    cr_assert_eq(post_form(form, &j2), 200);
    const char *tok2 = json_string_value(json_object_get(j2, "access_token"));
    cr_assert(tok2);
    cr_assert_eq(astatus("GET", "/v2/team/app/manifests/v1", bearer(tok2)), 200);
    json_decref(j2);
    json_decref(j);
    cr_assert_eq(post_form("grant_type=password&service=ocireg&username=alice&password=no", &j),
                 401);
    cr_assert_eq(post_form("grant_type=refresh_token&service=ocireg&refresh_token=abc", &j), 401);
    cr_assert_eq(post_form("grant_type=magic&service=ocireg", &j), 400);
}

Test(api_auth, offline_token_on_get)
{
    struct tresp r;
    cr_assert_eq(areq("GET", "/auth/token?service=ocireg&offline_token=true&scope=repository:team/a:pull",
                     basic("alice", "alice-pw"), NULL, NULL, 0, &r),
                 200);
    cr_assert(strstr(r.body, "\"refresh_token\":\""), "%s", r.body);
    tresp_free(&r);
    cr_assert_eq(areq("GET", "/auth/token?service=ocireg&scope=repository:team/a:pull",
                     basic("alice", "alice-pw"), NULL, NULL, 0, &r),
                 200);
    cr_assert_null(strstr(r.body, "refresh_token"));
    tresp_free(&r);
}

/* poll until `path` answers `want` for auth (reloads take effect shortly) */
static int
eventually(const char *method, const char *path, const char *auth, long want)
{
    for (int i = 0; i < 100; i++) {
        if (astatus(method, path, auth) == want)
            return 1;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* without the failed-login limit: the polls below fail until the change is seen */
static void
setup_unlimited(void)
{
    start_with(RULES, "OCIREG_AUTH_MAX_FAILURES=0");
}

TestSuite(api_auth_reload, .init = setup_unlimited, .fini = teardown, .timeout = 60);

Test(api_auth_reload, htpasswd_changes_and_rules_reload_without_restart)
{
    cr_assert_eq(astatus("GET", "/v2/", basic("carol", "carol-pw")), 401);
    write_users(1);
    cr_assert(eventually("GET", "/v2/", basic("carol", "carol-pw"), 200), "new user not seen");
    /* carol has no rule yet: denied; a new rules file + SIGHUP lets her push */
    cr_assert_eq(apush_image("carol/x", "v1", basic("carol", "carol-pw")), 403);
    char more[sizeof(RULES) + 64];
    snprintf(more, sizeof(more), "%s[repo \"carol/*\"]\ncarol = pull, push\n", RULES);
    write_file(rules, more);
    cr_assert_eq(kill(S.pid, SIGHUP), 0);
    cr_assert(eventually("GET", "/v2/carol/x/tags/list", basic("carol", "carol-pw"), 404),
              "rules not reloaded");
    cr_assert_eq(apush_image("carol/x", "v1", basic("carol", "carol-pw")), 201);
    /* a broken rules file keeps the old rules */
    write_file(rules, "[repo \"carol/*\"\ncarol = fly\n");
    cr_assert_eq(kill(S.pid, SIGHUP), 0);
    cr_assert_eq(apush_image("carol/x", "v2", basic("carol", "carol-pw")), 201);
}

Test(api_auth, no_secret_reaches_the_log)
{
    char tok[TOKEN_MAX_LEN];
    cr_assert_eq(get_token(basic("alice", "alice-pw"), "scope=repository:team/app:pull,push", tok,
                           sizeof(tok)),
                 200);
    cr_assert_eq(apush_image("team/app", "v1", bearer(tok)), 201);
    cr_assert_eq(astatus("GET", "/v2/", basic("alice", "not-her-password")), 401);
    json_t *j;
    cr_assert_eq(post_form("grant_type=password&service=ocireg&username=bob&password=bob-pw", &j),
                 200);
    json_decref(j);
    /* the access log line of the last request must be written: one more */
    cr_assert_eq(astatus("GET", "/v2/", basic("bob", "bob-pw")), 200);
    FILE *f = fopen(S.log, "r");
    cr_assert(f);
    char line[8192];
    int lines = 0;
    char sig[64];
    snprintf(sig, sizeof(sig), "%.40s", strrchr(tok, '.') + 1);
    while (fgets(line, sizeof(line), f)) {
        lines++;
        cr_assert_null(strstr(line, "alice-pw"), "password in log: %s", line);
        cr_assert_null(strstr(line, "not-her-password"), "password in log: %s", line);
        cr_assert_null(strstr(line, "bob-pw"), "password in log: %s", line);
        cr_assert_null(strstr(line, sig), "token in log: %s", line);
        cr_assert_null(strcasestr(line, "Authorization"), "header in log: %s", line);
        cr_assert_null(strstr(line, "YWxpY2U6"), "Basic credentials in log: %s", line);
    }
    fclose(f);
    cr_assert(lines > 5, "the log was not written (%d lines)", lines);
}

static void
setup_norules(void)
{
    start_with(NULL, NULL);
}

TestSuite(api_auth_norules, .init = setup_norules, .fini = teardown, .timeout = 60);

Test(api_auth_norules, authenticated_users_may_do_everything)
{
    cr_assert_eq(apush_image("any/where", "v1", basic("bob", "bob-pw")), 201);
    cr_assert_eq(astatus("DELETE", "/v2/any/where/manifests/v1", basic("bob", "bob-pw")), 202);
    cr_assert_eq(astatus("GET", "/v2/any/where/manifests/v1", NULL), 401);
}

/* ---- TLS client certificates as identities ---- */

static struct testpki P;

static void
setup_mtls(void)
{
    cr_assert_eq(testpki_make(&P, "ci-runner"), 0);
    snprintf(dir, sizeof(dir), "/tmp/ocireg-auth.XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(htpw, sizeof(htpw), "%s/htpasswd", dir);
    snprintf(rules, sizeof(rules), "%s/access.conf", dir);
    write_users(0);
    write_file(rules, "[repo \"team/*\"]\nci-runner = pull, push\nalice = pull\n");
    char e[6][400];
    snprintf(e[0], sizeof(e[0]), "OCIREG_AUTH_HTPASSWD=%s", htpw);
    snprintf(e[1], sizeof(e[1]), "OCIREG_AUTH_RULES=%s", rules);
    snprintf(e[2], sizeof(e[2]), "OCIREG_TLS_CERT=%s", P.server_cert);
    snprintf(e[3], sizeof(e[3]), "OCIREG_TLS_KEY=%s", P.server_key);
    snprintf(e[4], sizeof(e[4]), "OCIREG_TLS_CLIENT_CA=%s", P.ca_cert);
    const char *env[] = {e[0], e[1], e[2], e[3], e[4], NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0, "server did not start");
}

static void
teardown_mtls(void)
{
    teardown();
    testpki_free(&P);
}

TestSuite(api_auth_mtls, .init = setup_mtls, .fini = teardown_mtls, .timeout = 60);

Test(api_auth_mtls, a_client_certificate_is_an_identity_for_the_rules)
{
    /* with the certificate of CN ci-runner: push and pull, no password */
    testsrv_tls(&S, P.ca_cert, P.client_cert, P.client_key);
    cr_assert_eq(apush_image("team/app", "v1", NULL), 201);
    struct tresp r;
    cr_assert_eq(areq("GET", "/v2/team/app/manifests/v1", NULL, "Accept: " MT_OCI_MANIFEST, NULL,
                      0, &r),
                 200);
    char digest[128];
    snprintf(digest, sizeof(digest), "%s", H(&r, "Docker-Content-Digest"));
    tresp_free(&r);
    char path[300];
    snprintf(path, sizeof(path), "/v2/team/app/referrers/%s", digest);
    cr_assert_eq(astatus("GET", path, NULL), 200);
    /* without it: anonymous, sent to the https realm */
    testsrv_tls(&S, P.ca_cert, NULL, NULL);
    cr_assert_eq(areq("GET", "/v2/team/app/manifests/v1", NULL, NULL, NULL, 0, &r), 401);
    char want[200];
    snprintf(want, sizeof(want), "Bearer realm=\"https://127.0.0.1:%d/auth/token\"", S.port);
    cr_assert(strncmp(H(&r, "WWW-Authenticate"), want, strlen(want)) == 0, "%s",
              H(&r, "WWW-Authenticate"));
    tresp_free(&r);
    /* the referrers API follows pull rights */
    cr_assert_eq(astatus("GET", path, NULL), 401);
    cr_assert_eq(astatus("GET", path, basic("alice", "alice-pw")), 200);
    cr_assert_eq(astatus("GET", path, basic("bob", "bob-pw")), 403);
    /* a password user the rules give pull only */
    cr_assert_eq(apush_image("team/app", "v2", basic("alice", "alice-pw")), 403);
}

/* ---- an external token server ---- */

static struct token_key *ext_key;

static void
setup_external(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ocireg-auth.XXXXXX");
    cr_assert(mkdtemp(dir));
    char key[300], pem[300], cmd[1024];
    struct err e;
    snprintf(key, sizeof(key), "%s/ext.key", dir);
    snprintf(pem, sizeof(pem), "%s/ext.pem", dir);
    ext_key = token_key_load(key, 1, &e);
    cr_assert(ext_key, "%s", e.msg);
    /* the token server's certificate, as a bundle would hold it */
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -new -key '%s' -subj /CN=ext-issuer -days 2 -out '%s' 2>/dev/null",
             key, pem);
    cr_assert_eq(system(cmd), 0);
    char e1[400];
    snprintf(e1, sizeof(e1), "OCIREG_AUTH_TOKEN_CERTS=%s", pem);
    const char *env[] = {e1, "OCIREG_AUTH_TOKEN_REALM=https://auth.example.test/token",
                         "OCIREG_AUTH_TOKEN_SERVICE=ext-svc", "OCIREG_AUTH_TOKEN_ISSUER=ext-iss",
                         NULL};
    cr_assert_eq(testsrv_start(&S, NULL, env), 0, "server did not start");
}

static void
teardown_external(void)
{
    token_key_free(ext_key);
    teardown();
}

TestSuite(api_auth_external, .init = setup_external, .fini = teardown_external, .timeout = 60);

static char *
ext_token(const char *iss, const char *aud, unsigned actions)
{
    struct token_access acc = {.type = "repository", .name = "team/app", .actions = actions};
    struct token_issue t = {.issuer = iss,
                            .audience = aud,
                            .subject = "ci",
                            .now = (int64_t)time(NULL),
                            .ttl = 300,
                            .access = &acc,
                            .n_access = 1};
    char *out = NULL;
    struct err e;
    cr_assert_eq(token_sign(ext_key, &t, &out, &e), 0, "%s", e.msg);
    return out;
}

Test(api_auth_external, tokens_of_the_external_server_are_accepted)
{
    struct tresp r;
    cr_assert_eq(areq("GET", "/v2/", NULL, NULL, NULL, 0, &r), 401);
    cr_assert_str_eq(H(&r, "WWW-Authenticate"),
                     "Bearer realm=\"https://auth.example.test/token\",service=\"ext-svc\"");
    tresp_free(&r);
    /* the key is the bundle certificate's, named by its libtrust kid */
    char *t = ext_token("ext-iss", "ext-svc", ACCESS_PULL | ACCESS_PUSH);
    cr_assert_eq(apush_image("team/app", "v1", bearer(t)), 201);
    cr_assert_eq(astatus("GET", "/v2/team/app/manifests/v1", bearer(t)), 200);
    cr_assert_eq(astatus("DELETE", "/v2/team/app/manifests/v1", bearer(t)), 401);
    free(t);
    t = ext_token("ext-iss", "another-service", ACCESS_PULL);
    cr_assert_eq(astatus("GET", "/v2/team/app/manifests/v1", bearer(t)), 401);
    free(t);
    t = ext_token("someone-else", "ext-svc", ACCESS_PULL);
    cr_assert_eq(astatus("GET", "/v2/team/app/manifests/v1", bearer(t)), 401);
    free(t);
    /* no built-in issuer without htpasswd */
    cr_assert_eq(astatus("GET", "/auth/token?service=ext-svc", NULL), 404);
}
