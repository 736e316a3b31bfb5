/* dynlib.c - dlopen of libcurl, libarchive and libcrypto on first use (see dynlib.h). */
#define DYNLIB_NO_REDIRECT
#include "tools/ocirun-lite/dynlib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

#include "common/err.h"

#include "common/banned.h"

#define DYNLIB_DEFINE(f) __typeof__(f) *dynlib_##f;
DYNLIB_CURL_FUNCS(DYNLIB_DEFINE)
DYNLIB_ARCHIVE_FUNCS(DYNLIB_DEFINE)
DYNLIB_CRYPTO_FUNCS(DYNLIB_DEFINE)
#undef DYNLIB_DEFINE

struct sym {
    const char *name;
    void **slot;
};

#define DYNLIB_SYM(f) {#f, (void **)&dynlib_##f},
static const struct sym curl_syms[] = {DYNLIB_CURL_FUNCS(DYNLIB_SYM)};
static const struct sym archive_syms[] = {DYNLIB_ARCHIVE_FUNCS(DYNLIB_SYM)};
static const struct sym crypto_syms[] = {DYNLIB_CRYPTO_FUNCS(DYNLIB_SYM)};
#undef DYNLIB_SYM

struct lib {
    pthread_once_t once;
    const char *const *sonames;
    const struct sym *syms;
    size_t nsyms;
    int ok;
    char why[200];
};

/* the versioned names first: the unversioned .so link exists only with the
 * -dev package */
static const char *const curl_names[] = {"libcurl.so.4", "libcurl-gnutls.so.4", "libcurl.so",
                                         NULL};
static const char *const archive_names[] = {"libarchive.so.13", "libarchive.so", NULL};
static const char *const crypto_names[] = {"libcrypto.so.3", "libcrypto.so", NULL};

static struct lib curl_lib = {PTHREAD_ONCE_INIT, curl_names, curl_syms,
                              sizeof(curl_syms) / sizeof(curl_syms[0]), 0, ""};
static struct lib archive_lib = {PTHREAD_ONCE_INIT, archive_names, archive_syms,
                                 sizeof(archive_syms) / sizeof(archive_syms[0]), 0, ""};
static struct lib crypto_lib = {PTHREAD_ONCE_INIT, crypto_names, crypto_syms,
                                sizeof(crypto_syms) / sizeof(crypto_syms[0]), 0, ""};

static void
lib_load(struct lib *l)
{
    void *h = NULL;
    const char *err = "not found";

    for (size_t i = 0; !h && l->sonames[i]; i++) {
        h = dlopen(l->sonames[i], RTLD_NOW | RTLD_LOCAL);
        if (!h && i == 0)
            err = dlerror();
    }
    if (!h) {
        snprintf(l->why, sizeof(l->why), "cannot load %s: %s", l->sonames[0], err);
        return;
    }
    for (size_t i = 0; i < l->nsyms; i++) {
        void *p = dlsym(h, l->syms[i].name);
        if (!p) {
            snprintf(l->why, sizeof(l->why), "%s: no symbol '%s'", l->sonames[0],
                     l->syms[i].name);
            return; /* the handle stays open: nothing was half-published */
        }
        *l->syms[i].slot = p;
    }
    l->ok = 1;
}

static void
curl_load(void)
{
    lib_load(&curl_lib);
    if (curl_lib.ok && dynlib_curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        curl_lib.ok = 0;
        snprintf(curl_lib.why, sizeof(curl_lib.why), "curl_global_init failed");
    }
}

static void
archive_load(void)
{
    lib_load(&archive_lib);
}

static void
crypto_load(void)
{
    lib_load(&crypto_lib);
}

int
dynlib_curl(struct err *e)
{
    pthread_once(&curl_lib.once, curl_load);
    return curl_lib.ok ? 0 : err_set(e, ERR_INTERNAL, 0, "%s", curl_lib.why);
}

int
dynlib_archive(struct err *e)
{
    pthread_once(&archive_lib.once, archive_load);
    return archive_lib.ok ? 0 : err_set(e, ERR_INTERNAL, 0, "%s", archive_lib.why);
}

int
dynlib_crypto(struct err *e)
{
    pthread_once(&crypto_lib.once, crypto_load);
    return crypto_lib.ok ? 0 : err_set(e, ERR_INTERNAL, 0, "%s", crypto_lib.why);
}
