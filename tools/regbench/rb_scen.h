/* rb_scen.h - regbench scenarios: set-up, the measured phase, server figures.
 *
 * Each scenario works in a repository of its own ("<prefix>/<scenario>-<run id>-
 * <rep>") so repeated runs never measure de-duplicated uploads; blob content is
 * seeded from the run id for the same reason. Set-up (blobs to pull, tags to
 * list, ...) is done with the same engine but is not measured, and a set-up that
 * fails makes the scenario fail. */
#ifndef REGBENCH_RB_SCEN_H
#define REGBENCH_RB_SCEN_H

#include <stddef.h>
#include <stdint.h>

#include "tools/regbench/rb_engine.h"

struct err;

struct rb_opts {
    char base[512]; /* scheme://host:port */
    char host[256]; /* for plain sockets (idle scenario) */
    char port[16];
    int conns;
    int threads;
    uint64_t requests; /* 0 = scenario default */
    double duration;   /* 0 = scenario default */
    int reps;
    uint64_t size;
    uint64_t chunk;
    uint64_t range_size;
    int tags;
    int repos;
    int idle;
    int blobs;
    double timeout;
    int server_pid; /* 0 = none */
    int use_curl;   /* libcurl for GET/HEAD too */
    const char *repo_prefix;
    uint64_t seed;
    char runid[32];
    /* --blob DIGEST:SIZE: pull an existing blob instead of pushing one */
    char ext_digest[RB_DIGEST_MAX];
    uint64_t ext_size;
    const char *ext_repo;
    const struct rb_tls *tls;   /* https: the TLS settings (borrowed), else NULL */
    const char *const *headers; /* sent on every request, NULL-terminated, or NULL */
};

struct rb_proc {
    int ok;
    double cpu_s; /* utime+stime */
    long rss_kib; /* VmRSS */
    long hwm_kib; /* VmHWM */
};

struct rb_entry {
    char scenario[32];
    int rep;
    int conns;
    uint64_t size;
    int ok;              /* the phase ran and no operation failed */
    char setup_err[400]; /* set-up failure, empty if none */
    struct rb_result r;
    /* server figures over the measured phase (when --server-pid is given) */
    struct rb_proc before, after;
    /* idle scenario */
    int idle_want, idle_open, idle_closed;
    long idle_rss_delta_kib;
};

/* rb_scen_names - the scenario names, NULL-terminated. */
extern const char *const rb_scen_names[];

/* rb_scen_known - 1 if name is a scenario. */
int rb_scen_known(const char *name);

/* rb_scen_run - run scenario `name` (repetition rep) and fill *out. Returns 0 when
 * *out describes the run (out->ok says whether it passed), -1 on an internal
 * failure (e filled). */
int rb_scen_run(const struct rb_opts *o, const char *name, int rep, struct rb_entry *out,
                struct err *e);

/* rb_scen_repo - the repository scenario `name` uses in repetition rep (the
 * catalog scenario also uses "<it>-<i>" for i < o->repos) into out. */
void rb_scen_repo(const struct rb_opts *o, const char *name, int rep, char *out, size_t cap);

/* rb_proc_read - CPU seconds and RSS of pid from /proc; p->ok = 0 if unreadable. */
void rb_proc_read(int pid, struct rb_proc *p);

#endif
