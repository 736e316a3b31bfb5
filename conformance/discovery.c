/* discovery.c - spec "Content Discovery" workflow: tag listing with n, last
 * and Link (end-8a, end-8b), the /v2/_catalog extension, and the referrers API
 * (end-12a, end-12b). */
#include "conformance/suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conformance/check.h"
#include "conformance/client.h"
#include "common/banned.h"

/* the tags pushed for listing: mixed case, digits, '_' and version-like names,
 * so ASCIIbetical and case-insensitive order differ */
static const char *const TAGS[] = {"v9", "latest", "1.0", "alpha", "Beta", "_under", "v10", "v1"};
#define NTAGS (sizeof(TAGS) / sizeof(TAGS[0]))

/* parse {"<key>": [strings]} from a response into a new array of strings;
 * returns the count or -1 (reason in why) */
static int
string_list(const struct resp *r, const char *key, char ***out, char *why, size_t why_size)
{
    json_error_t e;
    json_t *root = json_loadb(r->body, r->body_len, 0, &e), *arr;
    int n = -1;

    *out = NULL;
    if (root == NULL) {
        snprintf(why, why_size, "body is not JSON: %s", e.text);
        return -1;
    }
    arr = json_object_get(root, key);
    if (json_is_null(arr) || (arr == NULL && strcmp(key, "tags") == 0)) {
        /* distribution answers "tags": null for a repository without tags */
        n = 0;
        *out = util_xmalloc(sizeof(char *));
        goto out;
    }
    if (!json_is_array(arr)) {
        snprintf(why, why_size, "no \"%s\" array in %.120s", key, r->body);
        goto out;
    }
    *out = util_xmalloc(sizeof(char *) * (json_array_size(arr) + 1));
    n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (s == NULL) {
            snprintf(why, why_size, "%s[%zu] is not a string", key, i);
            for (int k = 0; k < n; k++)
                free((*out)[k]);
            free(*out);
            *out = NULL;
            n = -1;
            goto out;
        }
        (*out)[n++] = util_xstrdup(s);
    }
out:
    json_decref(root);
    return n;
}

static void
free_list(char **l, int n)
{
    for (int i = 0; l != NULL && i < n; i++)
        free(l[i]);
    free(l);
}

static int
cmp_ascii(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 if l is ASCIIbetical or case-insensitive order (spec "Listing Tags":
 * "lexical (i.e. case-insensitive alphanumeric order) or ASCIIbetical") */
static int
sorted(char **l, int n)
{
    int ascii = 1, lex = 1;

    for (int i = 1; i < n; i++) {
        if (strcmp(l[i - 1], l[i]) > 0)
            ascii = 0;
        if (strcasecmp(l[i - 1], l[i]) > 0)
            lex = 0;
    }
    return ascii || lex;
}

static void
join(char **l, int n, char *out, size_t out_size)
{
    size_t o = 0;

    out[0] = '\0';
    for (int i = 0; i < n && o + 1 < out_size; i++)
        o += (size_t)snprintf(out + o, out_size - o, "%s%s", i ? "," : "", l[i]);
}

/* the target of a Link: <url>; rel="next" header, or 0 if there is none */
static int
link_next(const struct resp *r, char *out, size_t out_size)
{
    char v[2048];
    char *lt, *gt;

    if (!resp_header(r, "Link", v, sizeof(v)))
        return 0;
    lt = strchr(v, '<');
    gt = lt ? strchr(lt, '>') : NULL;
    if (gt == NULL || strstr(gt, "rel=\"next\"") == NULL)
        return 0;
    snprintf(out, out_size, "%.*s", (int)(gt - lt - 1), lt + 1);
    return 1;
}

/* GET path answers 200 with {"tags": want[0..nwant-1]}, in that order */
static void
expect_tag_page(struct ctx *x, struct check *c, const char *path, char **want_l, int nwant)
{
    struct resp r;
    char why[512], got[1024], want[1024];
    char **l = NULL;
    int n;

    client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
    check_status(c, &r, 200, path);
    if (check_ok(c)) {
        n = string_list(&r, "tags", &l, why, sizeof(why));
        if (check_true(c, n >= 0, "%s: %s", path, why)) {
            join(l, n, got, sizeof(got));
            join(want_l, nwant, want, sizeof(want));
            check_true(c, strcmp(got, want) == 0, "%s: expected [%s], got [%s]", path, want, got);
        }
        free_list(l, n);
    }
    resp_release(&r);
}

static void
disc_tags(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct image im;
    struct image_opts o = {.no_layer = 1, .empty_config = 1};
    char repo[300], path[1024], why[512], got[1024], want[1024];
    char **full = NULL, **l = NULL;
    int nfull = -1, n, ok;

    snprintf(repo, sizeof(repo), "%s/tags", x->repo);
    suite_image_make(&im, &o);
    check_begin(&c, "disc-setup", "push a manifest to <repo>/tags under 8 tags");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, suite_blob_push(x, repo, &im.config, why, sizeof(why)) == 0, "%s", why)) {
        for (size_t i = 0; i < NTAGS && check_ok(&c); i++) {
            suite_manifest_put(x, repo, TAGS[i], &im.manifest, &r);
            check_status(&c, &r, 201, TAGS[i]);
            resp_release(&r);
        }
    }
    ok = check_end(&c);
    suite_image_release(&im);

    snprintf(path, sizeof(path), "/v2/%s/tags/list", repo);
    check_begin(
        &c, "disc-tags-list",
        "GET tags/list answers 200 with {\"name\": <repo>, \"tags\": [every tag]} (end-8a)");
    if (check_require(&c, ok, "disc-setup")) {
        client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
        check_status(&c, &r, 200, path);
        if (check_ok(&c)) {
            json_t *root = json_loadb(r.body, r.body_len, 0, NULL);
            const char *name = json_string_value(json_object_get(root, "name"));
            check_true(&c, name != NULL && strcmp(name, repo) == 0,
                       "expected \"name\": \"%s\", got %.200s", repo, r.body);
            json_decref(root);
        }
        if (check_ok(&c)) {
            nfull = string_list(&r, "tags", &full, why, sizeof(why));
            check_true(&c, nfull >= 0, "%s", why);
        }
        if (check_ok(&c)) {
            char *exp[NTAGS];
            char **cp = util_xmalloc(sizeof(char *) * (size_t)(nfull ? nfull : 1));
            memcpy(exp, TAGS, sizeof(exp));
            memcpy(cp, full, sizeof(char *) * (size_t)nfull);
            qsort(exp, NTAGS, sizeof(char *), cmp_ascii);
            qsort(cp, (size_t)nfull, sizeof(char *), cmp_ascii);
            join(exp, NTAGS, want, sizeof(want));
            join(cp, nfull, got, sizeof(got));
            check_true(&c, strcmp(want, got) == 0, "expected tags {%s}, got {%s}", want, got);
            free(cp);
        }
        resp_release(&r);
    }
    int list_ok = check_end(&c);

    check_begin(&c, "disc-tags-sorted", "tags/list is in lexical or ASCIIbetical order");
    if (check_require(&c, list_ok, "disc-tags-list")) {
        join(full, nfull, got, sizeof(got));
        check_true(&c, sorted(full, nfull), "tags not sorted: %s", got);
    }
    check_end(&c);

    /* spec end-8b: with n, exactly n results unless fewer remain or a Link
     * header is given */
    snprintf(path, sizeof(path), "/v2/%s/tags/list?n=3", repo);
    check_begin(&c, "disc-tags-n", "tags/list?n=3 answers the first 3 tags of the full list");
    if (check_require(&c, list_ok, "disc-tags-list"))
        expect_tag_page(x, &c, path, full, 3);
    check_end(&c);

    check_begin(
        &c, "disc-tags-link",
        "tags/list?n=3 sends Link: <...>; rel=\"next\" and following it answers the next tags");
    if (check_require(&c, list_ok, "disc-tags-list")) {
        char next[2048];
        client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
        check_status(&c, &r, 200, path);
        check_true(&c, link_next(&r, next, sizeof(next)),
                   "%s: expected a Link header with rel=\"next\", got none", path);
        resp_release(&r);
        if (check_ok(&c)) {
            client_do(x->cl, "GET", next, NULL, NULL, 0, &r);
            check_status(&c, &r, 200, next);
            if (check_ok(&c)) {
                n = string_list(&r, "tags", &l, why, sizeof(why));
                if (check_true(&c, n > 0, "GET %s: %s", next, n < 0 ? why : "no tags")) {
                    join(l, n, got, sizeof(got));
                    join(full + 3, n <= nfull - 3 ? n : nfull - 3, want, sizeof(want));
                    check_true(&c, strcmp(got, want) == 0, "GET %s: expected [%s], got [%s]", next,
                               want, got);
                }
                free_list(l, n);
            }
            resp_release(&r);
        }
    }
    check_end(&c);

    check_begin(&c, "disc-tags-last", "tags/list?n=3&last=<3rd tag> answers tags 4 to 6");
    if (check_require(&c, list_ok, "disc-tags-list")) {
        snprintf(path, sizeof(path), "/v2/%s/tags/list?n=3&last=%s", repo, full[2]);
        expect_tag_page(x, &c, path, full + 3, 3);
    }
    check_end(&c);

    check_begin(&c, "disc-tags-last-only", "tags/list?last=<6th tag> answers the tags after it");
    if (check_require(&c, list_ok, "disc-tags-list")) {
        snprintf(path, sizeof(path), "/v2/%s/tags/list?last=%s", repo, full[5]);
        expect_tag_page(x, &c, path, full + 6, nfull - 6);
    }
    check_end(&c);

    check_begin(&c, "disc-tags-n0", "tags/list?n=0 answers an empty list and no Link header");
    if (check_require(&c, list_ok, "disc-tags-list")) {
        snprintf(path, sizeof(path), "/v2/%s/tags/list?n=0", repo);
        client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
        check_status(&c, &r, 200, path);
        if (check_ok(&c)) {
            n = string_list(&r, "tags", &l, why, sizeof(why));
            join(l, n, got, sizeof(got));
            check_true(&c, n == 0, "%s: expected no tags, got [%s]", path, n < 0 ? why : got);
            check_true(&c, resp_header_count(&r, "Link") == 0, "%s: Link header present", path);
            free_list(l, n);
        }
        resp_release(&r);
    }
    check_end(&c);

    check_begin(&c, "disc-tags-unknown-repo",
                "tags/list of a repository that does not exist answers 404 NAME_UNKNOWN");
    if (check_require(&c, x->base_ok, "base-v2")) {
        snprintf(path, sizeof(path), "/v2/%s/never-pushed/tags/list", x->repo);
        client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
        check_error_body(&c, &r, 404, "NAME_UNKNOWN", path);
        resp_release(&r);
    }
    check_end(&c);
    free_list(full, nfull);
}

static void
disc_catalog(struct ctx *x)
{
    struct check c;
    struct resp r;
    char path[2048], why[512], got[1024];
    char **l = NULL;
    int n;

    /* the /v2/_catalog extension (Docker Registry API V2): the same n, last
     * and Link rules as tags/list */
    check_begin(&c, "disc-catalog",
                "GET /v2/_catalog lists this run's repository (following Link pages)");
    if (check_require(&c, x->base_ok, "base-v2")) {
        int found = 0;
        snprintf(path, sizeof(path), "/v2/_catalog?n=100");
        for (int page = 0; page < 200 && !found && check_ok(&c); page++) {
            client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
            check_status(&c, &r, 200, path);
            if (check_ok(&c)) {
                n = string_list(&r, "repositories", &l, why, sizeof(why));
                if (check_true(&c, n >= 0, "%s: %s", path, why)) {
                    for (int i = 0; i < n; i++)
                        found |= strcmp(l[i], x->repo) == 0;
                }
                free_list(l, n);
                if (!found && !link_next(&r, path, sizeof(path)))
                    check_true(&c, 0, "%s not listed and no further Link page", x->repo);
            }
            resp_release(&r);
        }
        check_true(&c, found, "%s not listed in 200 pages", x->repo);
    }
    check_end(&c);

    check_begin(&c, "disc-catalog-n",
                "GET /v2/_catalog?n=1 answers 1 repository and a Link rel=\"next\"");
    if (check_require(&c, x->base_ok, "base-v2")) {
        char next[2048];
        client_do(x->cl, "GET", "/v2/_catalog?n=1", NULL, NULL, 0, &r);
        check_status(&c, &r, 200, "/v2/_catalog?n=1");
        if (check_ok(&c)) {
            n = string_list(&r, "repositories", &l, why, sizeof(why));
            join(l, n, got, sizeof(got));
            check_true(&c, n == 1, "expected 1 repository, got [%s]", n < 0 ? why : got);
            check_true(
                &c, link_next(&r, next, sizeof(next)),
                "expected a Link header with rel=\"next\" (this run made several repositories)");
            free_list(l, n);
        }
        resp_release(&r);
    }
    check_end(&c);

    check_begin(&c, "disc-catalog-last",
                "GET /v2/_catalog?last=<repo> answers only repositories after it");
    if (check_require(&c, x->base_ok, "base-v2")) {
        snprintf(path, sizeof(path), "/v2/_catalog?n=5&last=%s", x->repo);
        client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
        check_status(&c, &r, 200, path);
        if (check_ok(&c)) {
            n = string_list(&r, "repositories", &l, why, sizeof(why));
            join(l, n, got, sizeof(got));
            check_true(&c, n > 0, "%s: expected the repositories after %s, got [%s]", path, x->repo,
                       n < 0 ? why : got);
            for (int i = 0; i < n && check_ok(&c); i++)
                check_true(&c, strcmp(l[i], x->repo) > 0, "%s: %s is not after %s", path, l[i],
                           x->repo);
            free_list(l, n);
        }
        resp_release(&r);
    }
    check_end(&c);
}

/* the referrers index of subject, every page gathered; NULL + why on failure */
static json_t *
referrers(struct ctx *x, struct check *c, const char *repo, const char *subject, const char *filter,
          struct resp *first)
{
    char path[2048], why[256];
    json_t *all = json_array();
    struct resp r;

    snprintf(path, sizeof(path), "/v2/%s/referrers/%s%s%s", repo, subject,
             filter ? "?artifactType=" : "", filter ? filter : "");
    for (int page = 0; page < 20 && check_ok(c); page++) {
        client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
        check_status(c, &r, 200, path);
        check_content_type(c, &r, MT_OCI_INDEX, path);
        if (check_ok(c)) {
            json_error_t e;
            json_t *root = json_loadb(r.body, r.body_len, 0, &e);
            json_t *m = json_object_get(root, "manifests");
            const char *mt = json_string_value(json_object_get(root, "mediaType"));
            json_int_t sv = json_integer_value(json_object_get(root, "schemaVersion"));
            snprintf(why, sizeof(why), "%.200s", r.body);
            check_true(c,
                       root != NULL && json_is_array(m) && sv == 2 && mt != NULL &&
                           strcmp(mt, MT_OCI_INDEX) == 0,
                       "%s: expected an image index with schemaVersion 2, mediaType %s and "
                       "manifests, got %s",
                       path, MT_OCI_INDEX, why);
            if (check_ok(c))
                json_array_extend(all, m);
            json_decref(root);
        }
        int more = check_ok(c) && link_next(&r, path, sizeof(path));
        if (page == 0 && first != NULL) {
            *first = r;
        } else {
            resp_release(&r);
        }
        if (!more)
            break;
    }
    if (!check_ok(c)) {
        json_decref(all);
        return NULL;
    }
    return all;
}

static json_t *
find_desc(json_t *arr, const char *digest)
{
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *d = json_string_value(json_object_get(json_array_get(arr, i), "digest"));
        if (d != NULL && strcmp(d, digest) == 0)
            return json_array_get(arr, i);
    }
    return NULL;
}

static void
disc_referrers(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct image subj, a, b;
    struct doc idx;
    struct image_opts o = {0};
    char why[512], path[1024];
    const char *AT_A = "application/vnd.conformance.referrer-a";
    const char *CFG_B = "application/vnd.conformance.config-b.v1+json";
    json_t *list;
    int ok;

    suite_image_make(&subj, &o);
    o.artifact_type = AT_A;
    o.empty_config = 1;
    o.subject = &subj.manifest;
    o.annotation_key = "org.example.conformance";
    o.annotation_value = "referrer a";
    suite_image_make(&a, &o);
    memset(&o, 0, sizeof(o));
    o.config_media_type = CFG_B;
    o.subject = &subj.manifest;
    o.annotation_key = "org.example.conformance";
    o.annotation_value = "referrer b";
    o.no_layer = 1;
    suite_image_make(&b, &o);
    {
        json_t *j = json_pack("{s:i, s:s, s:[o], s:o, s:{s:s}}", "schemaVersion", 2, "mediaType",
                              MT_OCI_INDEX, "manifests", suite_descriptor(&a.manifest), "subject",
                              suite_descriptor(&subj.manifest), "annotations",
                              "org.example.conformance", "referrer index");
        suite_doc_json(&idx, MT_OCI_INDEX, j);
    }

    check_begin(&c, "disc-referrers-setup",
                "push a subject image and three referrers (two manifests, one index)");
    if (check_require(&c, x->base_ok, "base-v2")) {
        check_true(&c,
                   suite_image_push(x, x->repo, &subj, "referrers-subject", why, sizeof(why)) ==
                           0 &&
                       suite_image_push(x, x->repo, &a, NULL, why, sizeof(why)) == 0 &&
                       suite_image_push(x, x->repo, &b, NULL, why, sizeof(why)) == 0,
                   "%s", why);
        if (check_ok(&c)) {
            suite_manifest_put(x, x->repo, idx.digest, &idx, &r);
            check_status(&c, &r, 201, "PUT referrer index");
            resp_release(&r);
        }
    }
    ok = check_end(&c);

    check_begin(&c, "disc-referrers",
                "GET referrers/<subject> answers 200, Content-Type image index, one descriptor per "
                "referrer (end-12a)");
    list = NULL;
    if (check_require(&c, ok, "disc-referrers-setup")) {
        list = referrers(x, &c, x->repo, subj.manifest.digest, NULL, NULL);
        const struct doc *want[] = {&a.manifest, &b.manifest, &idx};
        for (int i = 0; i < 3 && check_ok(&c); i++) {
            json_t *d = find_desc(list, want[i]->digest);
            check_true(&c, d != NULL, "referrer %s missing from the list", want[i]->digest);
            if (!check_ok(&c))
                break;
            const char *mt = json_string_value(json_object_get(d, "mediaType"));
            json_int_t sz = json_integer_value(json_object_get(d, "size"));
            check_true(&c,
                       mt != NULL && strcmp(mt, want[i]->media_type) == 0 &&
                           sz == (json_int_t)want[i]->len,
                       "descriptor of %s: expected mediaType %s size %zu, got %s %lld",
                       want[i]->digest, want[i]->media_type, want[i]->len, mt ? mt : "(none)",
                       (long long)sz);
        }
        check_true(&c, list == NULL || json_array_size(list) == 3, "expected 3 referrers, got %zu",
                   list ? json_array_size(list) : 0);
    }
    int list_ok = check_end(&c);

    /* spec "Listing Referrers": artifactType from the manifest, else the
     * config mediaType for an image manifest, omitted for an index without one */
    check_begin(&c, "disc-referrers-artifact-type",
                "referrer descriptors carry artifactType (from the manifest, else the config "
                "mediaType, omitted for an index)");
    if (check_require(&c, list_ok, "disc-referrers")) {
        const char *at_a =
            json_string_value(json_object_get(find_desc(list, a.manifest.digest), "artifactType"));
        const char *at_b =
            json_string_value(json_object_get(find_desc(list, b.manifest.digest), "artifactType"));
        json_t *at_i = json_object_get(find_desc(list, idx.digest), "artifactType");
        check_true(&c, at_a != NULL && strcmp(at_a, AT_A) == 0,
                   "referrer a: expected artifactType %s, got %s", AT_A, at_a ? at_a : "(none)");
        check_true(&c, at_b != NULL && strcmp(at_b, CFG_B) == 0,
                   "referrer b (no artifactType): expected the config mediaType %s, got %s", CFG_B,
                   at_b ? at_b : "(none)");
        check_true(&c, at_i == NULL || (json_is_string(at_i) && json_string_length(at_i) == 0),
                   "index without artifactType: expected no artifactType, got %s",
                   json_string_value(at_i) ? json_string_value(at_i) : "(non-string)");
    }
    check_end(&c);

    check_begin(&c, "disc-referrers-annotations",
                "referrer descriptors carry the annotations of their manifests");
    if (check_require(&c, list_ok, "disc-referrers")) {
        struct {
            const char *digest, *value;
        } w[] = {{a.manifest.digest, "referrer a"},
                 {b.manifest.digest, "referrer b"},
                 {idx.digest, "referrer index"}};
        for (int i = 0; i < 3; i++) {
            json_t *ann = json_object_get(find_desc(list, w[i].digest), "annotations");
            const char *v = json_string_value(json_object_get(ann, "org.example.conformance"));
            check_true(&c, v != NULL && strcmp(v, w[i].value) == 0,
                       "descriptor of %s: expected annotation org.example.conformance=%s, got %s",
                       w[i].digest, w[i].value, v ? v : "(none)");
        }
    }
    check_end(&c);
    json_decref(list);

    check_begin(&c, "disc-referrers-filter",
                "referrers?artifactType= answers only matching referrers with OCI-Filters-Applied: "
                "artifactType (end-12b)");
    if (check_require(&c, ok, "disc-referrers-setup")) {
        struct resp first = {0};
        list = referrers(x, &c, x->repo, subj.manifest.digest, AT_A, &first);
        check_header_eq(&c, &first, "OCI-Filters-Applied", "artifactType",
                        "GET referrers?artifactType=");
        resp_release(&first);
        if (check_ok(&c)) {
            check_true(&c, json_array_size(list) == 1 && find_desc(list, a.manifest.digest) != NULL,
                       "expected only %s, got %zu descriptors", a.manifest.digest,
                       json_array_size(list));
        }
        json_decref(list);
    }
    check_end(&c);

    /* spec "Listing Referrers": descriptors are of manifests "in the same
     * <name> namespace" */
    check_begin(&c, "disc-referrers-scoped",
                "a referrer pushed to another repository is not listed in this one");
    if (check_require(&c, ok, "disc-referrers-setup")) {
        struct image other;
        struct image_opts oo = {.no_layer = 1,
                                .empty_config = 1,
                                .subject = &subj.manifest,
                                .artifact_type = "application/vnd.conformance.elsewhere"};
        suite_image_make(&other, &oo);
        if (check_true(&c, suite_image_push(x, x->repo2, &other, NULL, why, sizeof(why)) == 0,
                       "setup in %s: %s", x->repo2, why)) {
            list = referrers(x, &c, x->repo, subj.manifest.digest, NULL, NULL);
            check_true(&c, list == NULL || find_desc(list, other.manifest.digest) == NULL,
                       "the referrer pushed to %s is listed in %s", x->repo2, x->repo);
            json_decref(list);
            list = referrers(x, &c, x->repo2, subj.manifest.digest, NULL, NULL);
            check_true(&c,
                       list == NULL || (json_array_size(list) == 1 &&
                                        find_desc(list, other.manifest.digest) != NULL),
                       "%s lists %zu referrers, expected only its own", x->repo2,
                       list ? json_array_size(list) : 0);
            json_decref(list);
        }
        suite_image_release(&other);
    }
    check_end(&c);

    check_begin(&c, "disc-referrers-unknown",
                "referrers of a digest nothing refers to answers 200 with an empty image index");
    if (check_require(&c, x->base_ok, "base-v2")) {
        char dg[UTIL_DIGEST_MAX], hex[33];
        util_digest("sha256", util_random_hex(hex, 32), 32, dg);
        list = referrers(x, &c, x->repo, dg, NULL, NULL);
        check_true(&c, list == NULL || json_array_size(list) == 0, "expected no manifests, got %zu",
                   list ? json_array_size(list) : 0);
        json_decref(list);
    }
    check_end(&c);

    check_begin(&c, "disc-referrers-bad-digest", "referrers of a malformed digest answers 400");
    if (check_require(&c, x->base_ok, "base-v2")) {
        snprintf(path, sizeof(path), "/v2/%s/referrers/sha256:nothex", x->repo);
        client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
        check_status(&c, &r, 400, path);
        resp_release(&r);
    }
    check_end(&c);

    suite_image_release(&subj);
    suite_image_release(&a);
    suite_image_release(&b);
    suite_doc_release(&idx);
}

void
suite_discovery(struct ctx *x)
{
    disc_tags(x);
    disc_catalog(x);
    disc_referrers(x);
}
