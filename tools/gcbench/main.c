/* gcbench - builds a large store through the storage API and times gc passes
 * on it (scripts/bench.sh, "gc" section; docs/gc.md). Offline only: never run
 * it on the root of a running server (storage_open refuses: the root's lock).
 *
 *   gcbench populate ROOT [BLOBS MANIFESTS REPOS]
 *       BLOBS small blobs and MANIFESTS tagged image manifests (each referring
 *       to BLOBS / MANIFESTS of its repository's blobs) spread over REPOS
 *       repositories (default 100000 10000 100). Prints the time taken.
 *   gcbench pass ROOT [--full] [--delete N] [--no-pass] [--grace SEC]
 *       delete N manifests first (spread over the repositories), then one
 *       gc_pass (grace 0 unless given); prints the pass's figures and the
 *       process's peak RSS. --no-pass only deletes (the server then collects). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "gc/gc.h"
#include "storage/storage.h"

#include "common/banned.h"

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
die(const char *what, const struct err *e)
{
    fprintf(stderr, "gcbench: %s: %s\n", what, e->msg);
    return 1;
}

static void
repo_name(char *out, size_t cap, long r)
{
    snprintf(out, cap, "bench/gc%03ld", r);
}

static int
populate(struct storage_handle *h, long nblobs, long nman, long nrepos)
{
    long bpr = nblobs / nrepos, mpr = nman / nrepos, per = bpr / (mpr ? mpr : 1);
    if (per < 2) {
        fprintf(stderr, "gcbench: need at least 2 blobs per manifest\n");
        return 1;
    }
    struct err e = {0};
    struct digest *d = calloc((size_t)bpr, sizeof(*d));
    size_t cap = (size_t)per * 160 + 512;
    char *body = malloc(cap);
    double t0 = now_s();
    for (long r = 0; r < nrepos; r++) {
        char repo[64];
        repo_name(repo, sizeof(repo), r);
        for (long b = 0; b < bpr; b++) {
            char data[64];
            int n = snprintf(data, sizeof(data), "gcbench blob %ld of %s", b, repo);
            if (storage_blob_put(h, repo, data, (size_t)n, DIGEST_SHA256, &d[b], &e) < 0)
                return die("blob", &e);
        }
        for (long m = 0; m < mpr; m++) {
            char ds[DIGEST_STR_MAX];
            size_t off = (size_t)snprintf(
                body, cap,
                "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":{"
                "\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
                "\"size\":%d},\"layers\":[",
                digest_format(&d[m * per], ds), 0);
            for (long i = 1; i < per; i++)
                off += (size_t)snprintf(body + off, cap - off,
                                        "%s{\"mediaType\":\"application/vnd.oci.image.layer.v1."
                                        "tar\",\"digest\":\"%s\",\"size\":%d}",
                                        i > 1 ? "," : "", digest_format(&d[m * per + i], ds), 0);
            off += (size_t)snprintf(body + off, cap - off, "]}");
            char tag[32];
            snprintf(tag, sizeof(tag), "t%ld", m);
            const char *tags[] = {tag};
            if (storage_manifest_put(h, repo, body, off, MT_OCI_MANIFEST, NULL, tags, 1, NULL, NULL,
                                     NULL, &e) < 0)
                return die("manifest", &e);
        }
    }
    printf("populate: %ld blobs, %ld manifests, %ld repositories in %.1f s\n", bpr * nrepos,
           mpr * nrepos, nrepos, now_s() - t0);
    free(d);
    free(body);
    return 0;
}

/* delete n manifests, round-robin over the repositories, newest tags first */
static int
delete_some(struct storage_handle *h, long n, long nrepos)
{
    struct err e = {0};
    long done = 0;
    for (long k = 0; done < n && k < 1000000; k++) {
        char repo[64], tag[32];
        repo_name(repo, sizeof(repo), k % nrepos);
        snprintf(tag, sizeof(tag), "t%ld", k / nrepos);
        struct manifest_meta mm;
        if (storage_manifest_get(h, repo, tag, &mm, NULL, &e) < 0)
            continue;
        char ds[DIGEST_STR_MAX];
        if (storage_manifest_delete(h, repo, digest_format(&mm.digest, ds), &e) < 0)
            return die("delete", &e);
        done++;
    }
    printf("deleted %ld manifests\n", done);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: gcbench populate ROOT [BLOBS MANIFESTS REPOS]\n"
                        "       gcbench pass ROOT [--full] [--delete N] [--no-pass] [--grace SEC]\n");
        return 2;
    }
    int is_pop = strcmp(argv[1], "populate") == 0;
    long nrepos = 100;
    struct gc_opts go = {0};
    long ndel = 0;
    int nopass = 0;
    if (is_pop) {
        if (argc > 5)
            nrepos = atol(argv[5]);
    } else {
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--full") == 0)
                go.full = 1;
            else if (strcmp(argv[i], "--no-pass") == 0)
                nopass = 1;
            else if (strcmp(argv[i], "--delete") == 0 && i + 1 < argc)
                ndel = atol(argv[++i]);
            else if (strcmp(argv[i], "--grace") == 0 && i + 1 < argc)
                go.grace_sec = atol(argv[++i]);
            else if (strcmp(argv[i], "--repos") == 0 && i + 1 < argc)
                nrepos = atol(argv[++i]);
        }
    }
    struct err e = {0};
    struct storage_opts so = {.root = argv[2], .fsync = 0};
    struct storage *st = storage_open(&so, &e);
    if (!st)
        return die("open", &e);
    struct storage_handle *h = storage_handle_open(st, &e);
    if (!h)
        return die("handle", &e);
    int rc = 0;
    if (is_pop) {
        rc = populate(h, argc > 3 ? atol(argv[3]) : 100000, argc > 4 ? atol(argv[4]) : 10000,
                      nrepos);
    } else {
        if (ndel)
            rc = delete_some(h, ndel, nrepos);
        if (!rc && !nopass) {
            struct gc_stats gs;
            double t0 = now_s();
            if (gc_pass(h, &go, &gs, &e) < 0) {
                rc = die("gc pass", &e);
            } else {
                struct rusage ru;
                getrusage(RUSAGE_SELF, &ru);
                printf("pass%s: %.2f s (wall %.2f s), %llu reviewed, %llu manifests, %llu links,"
                       " %llu blobs removed; peak RSS %.1f MiB\n",
                       go.full ? " (full)" : "", gs.seconds, now_s() - t0,
                       (unsigned long long)gs.reviewed, (unsigned long long)gs.manifests,
                       (unsigned long long)gs.links, (unsigned long long)gs.blobs,
                       (double)ru.ru_maxrss / 1024.0);
            }
        }
    }
    storage_handle_close(h);
    storage_close(st);
    return rc;
}
