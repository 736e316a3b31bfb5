/* management.c - spec "Content Management" workflow: deleting tags and
 * manifests (end-9) and blobs (end-10). */
#include "conformance/suite.h"

#include <stdio.h>
#include <string.h>

#include "conformance/check.h"
#include "conformance/client.h"
#include "common/banned.h"

void
suite_management(struct ctx *x)
{
    struct check c;
    struct resp r;
    struct image im;
    struct image_opts o = {0};
    char why[512], path[1024];
    int ok;

    /* an image under two tags: one tag is deleted, then the manifest */
    suite_image_make(&im, &o);
    check_begin(&c, "mgmt-setup", "push an image tagged \"mgmt-keep\" and \"mgmt-drop\"");
    if (check_require(&c, x->base_ok, "base-v2") &&
        check_true(&c, suite_image_push(x, x->repo, &im, "mgmt-keep", why, sizeof(why)) == 0, "%s",
                   why)) {
        suite_manifest_put(x, x->repo, "mgmt-drop", &im.manifest, &r);
        check_status(&c, &r, 201, "PUT manifest at mgmt-drop");
        resp_release(&r);
    }
    ok = check_end(&c);

    check_begin(&c, "mgmt-delete-tag",
                "DELETE manifests/<tag> answers 202; the tag is then 404, the manifest by digest "
                "and the other tag remain");
    if (check_require(&c, ok, "mgmt-setup")) {
        snprintf(path, sizeof(path), "/v2/%s/manifests/mgmt-drop", x->repo);
        suite_req(x, "DELETE", path, &r);
        check_status(&c, &r, 202, "DELETE manifests/mgmt-drop");
        resp_release(&r);
        if (check_ok(&c)) {
            suite_req(x, "GET", path, &r);
            check_error_body(&c, &r, 404, "MANIFEST_UNKNOWN", "GET of the deleted tag");
            resp_release(&r);
        }
        const char *still[] = {im.manifest.digest, "mgmt-keep"};
        for (int i = 0; i < 2 && check_ok(&c); i++) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, still[i]);
            suite_expect_get(x, &c, path, 1, &im.manifest, path);
        }
        if (check_ok(&c)) {
            snprintf(path, sizeof(path), "/v2/%s/tags/list", x->repo);
            client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
            check_status(&c, &r, 200, path);
            check_true(&c, strstr(r.body, "\"mgmt-drop\"") == NULL, "%s still lists mgmt-drop",
                       path);
            check_true(&c, strstr(r.body, "\"mgmt-keep\"") != NULL, "%s lost mgmt-keep", path);
            resp_release(&r);
        }
    }
    check_end(&c);

    check_begin(&c, "mgmt-delete-manifest",
                "DELETE manifests/<digest> answers 202; the digest and its tags are then 404 "
                "MANIFEST_UNKNOWN");
    if (check_require(&c, ok, "mgmt-setup")) {
        snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, im.manifest.digest);
        suite_req(x, "DELETE", path, &r);
        check_status(&c, &r, 202, "DELETE manifests/<digest>");
        resp_release(&r);
        const char *gone[] = {im.manifest.digest, "mgmt-keep"};
        for (int i = 0; i < 2 && check_ok(&c); i++) {
            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", x->repo, gone[i]);
            suite_req(x, "GET", path, &r);
            check_error_body(&c, &r, 404, "MANIFEST_UNKNOWN", path);
            resp_release(&r);
            suite_req(x, "HEAD", path, &r);
            check_status(&c, &r, 404, path);
            resp_release(&r);
        }
    }
    check_end(&c);

    check_begin(&c, "mgmt-delete-manifest-unknown",
                "DELETE of an unknown manifest digest answers 404 MANIFEST_UNKNOWN");
    if (check_require(&c, x->base_ok, "base-v2"))
        suite_expect_unknown(x, &c, "DELETE", "manifests", "MANIFEST_UNKNOWN");
    check_end(&c);

    check_begin(&c, "mgmt-delete-blob",
                "DELETE blobs/<digest> answers 202; the blob is then 404 BLOB_UNKNOWN (end-10)");
    if (check_require(&c, ok, "mgmt-setup")) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo, im.layer.digest);
        client_do(x->cl, "DELETE", path, NULL, NULL, 0, &r);
        check_status(&c, &r, 202, "DELETE blobs/<digest>");
        resp_release(&r);
        if (check_ok(&c)) {
            client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
            check_error_body(&c, &r, 404, "BLOB_UNKNOWN", "GET of the deleted blob");
            resp_release(&r);
            client_do(x->cl, "HEAD", path, NULL, NULL, 0, &r);
            check_status(&c, &r, 404, "HEAD of the deleted blob");
            resp_release(&r);
        }
    }
    check_end(&c);

    check_begin(&c, "mgmt-blob-repush",
                "a deleted blob can be pushed again and is then served again");
    if (check_require(&c, ok, "mgmt-setup")) {
        check_true(&c, suite_blob_push(x, x->repo, &im.layer, why, sizeof(why)) == 0, "%s", why);
        if (check_ok(&c)) {
            snprintf(path, sizeof(path), "/v2/%s/blobs/%s", x->repo, im.layer.digest);
            suite_expect_get(x, &c, path, 0, &im.layer, path);
        }
    }
    check_end(&c);

    check_begin(&c, "mgmt-delete-blob-unknown",
                "DELETE of an unknown blob answers 404 BLOB_UNKNOWN");
    if (check_require(&c, x->base_ok, "base-v2"))
        suite_expect_unknown(x, &c, "DELETE", "blobs", "BLOB_UNKNOWN");
    check_end(&c);
    suite_image_release(&im);

    /* spec "Enabling the Referrers API"/"Listing Referrers": the list is of
     * the manifests in the repository with that subject, so a deleted
     * referrer leaves it */
    {
        struct image subj, ref;
        struct image_opts so = {.no_layer = 1};
        struct image_opts ro = {.no_layer = 1,
                                .empty_config = 1,
                                .artifact_type = "application/vnd.conformance.deleted"};
        suite_image_make(&subj, &so);
        ro.subject = &subj.manifest;
        suite_image_make(&ref, &ro);
        check_begin(&c, "mgmt-delete-referrer",
                    "after DELETE of a referrer manifest the referrers list no longer has it");
        if (check_require(&c, x->base_ok, "base-v2") &&
            check_true(&c,
                       suite_image_push(x, x->repo, &subj, "mgmt-subject", why, sizeof(why)) == 0 &&
                           suite_image_push(x, x->repo, &ref, NULL, why, sizeof(why)) == 0,
                       "setup: %s", why)) {
            snprintf(path, sizeof(path), "/v2/%s/referrers/%s", x->repo, subj.manifest.digest);
            client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
            check_status(&c, &r, 200, path);
            check_true(&c, strstr(r.body, ref.manifest.digest) != NULL,
                       "%s does not list the referrer before the delete", path);
            resp_release(&r);
            if (check_ok(&c)) {
                char mpath[1024];
                snprintf(mpath, sizeof(mpath), "/v2/%s/manifests/%s", x->repo, ref.manifest.digest);
                suite_req(x, "DELETE", mpath, &r);
                check_status(&c, &r, 202, "DELETE of the referrer");
                resp_release(&r);
            }
            if (check_ok(&c)) {
                client_do(x->cl, "GET", path, NULL, NULL, 0, &r);
                check_status(&c, &r, 200, path);
                check_true(&c, strstr(r.body, ref.manifest.digest) == NULL,
                           "%s still lists the deleted referrer", path);
                resp_release(&r);
            }
        }
        check_end(&c);
        suite_image_release(&subj);
        suite_image_release(&ref);
    }
}
