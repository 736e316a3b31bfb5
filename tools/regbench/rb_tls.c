/* rb_tls.c - TLS client settings, see rb_tls.h. */
#include "tools/regbench/rb_tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/err.h"
#include "common/banned.h"

struct rb_tls {
    SSL_CTX *ctx;
    int insecure;
    int host_is_ip;
    char host[256];
    char *cacert, *cert, *key;
};

char *
rb_tls_error(char *buf, unsigned long cap)
{
    unsigned long code = ERR_get_error();
    if (code == 0)
        snprintf(buf, cap, "no detail");
    else
        ERR_error_string_n(code, buf, cap);
    ERR_clear_error();
    return buf;
}

static char *
dup_or_null(const char *s, int *bad)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *bad = 1;
    return d;
}

struct rb_tls *
rb_tls_new(const struct rb_tls_opts *o, struct err *e)
{
    char why[256];
    int bad = 0;
    struct rb_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        err_set(e, ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    t->insecure = o->insecure;
    snprintf(t->host, sizeof(t->host), "%s", o->host ? o->host : "");
    unsigned char addr[16];
    t->host_is_ip = inet_pton(AF_INET, t->host, addr) == 1 || inet_pton(AF_INET6, t->host, addr) == 1;
    t->cacert = dup_or_null(o->cacert, &bad);
    t->cert = dup_or_null(o->cert, &bad);
    t->key = dup_or_null(o->key, &bad);
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (bad || !t->ctx) {
        err_set(e, ERR_INTERNAL, 0, "tls: SSL_CTX_new failed: %s", rb_tls_error(why, sizeof(why)));
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    /* an EOF without close_notify ends a response framed by the close, as in
     * plain HTTP; the figures, not the transport's integrity, are measured */
    SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* a pull then takes one recv for several records instead of two per record */
    SSL_CTX_set_read_ahead(t->ctx, 1);
    SSL_CTX_set_default_read_buffer_len(t->ctx, 64 * 1024);
    SSL_CTX_set_verify(t->ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (o->cacert) {
        if (SSL_CTX_load_verify_locations(t->ctx, o->cacert, NULL) != 1) {
            err_set(e, ERR_CONFIG, 0, "tls: CA file '%s': %s", o->cacert,
                    rb_tls_error(why, sizeof(why)));
            goto fail;
        }
    } else if (!o->insecure) {
        SSL_CTX_set_default_verify_paths(t->ctx);
    }
    if (o->cert) {
        const char *key = o->key ? o->key : o->cert;
        if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert) != 1) {
            err_set(e, ERR_CONFIG, 0, "tls: client certificate '%s': %s", o->cert,
                    rb_tls_error(why, sizeof(why)));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(t->ctx) != 1) {
            err_set(e, ERR_CONFIG, 0, "tls: client key '%s': %s", key,
                    rb_tls_error(why, sizeof(why)));
            goto fail;
        }
    } else if (o->key) {
        err_set(e, ERR_CONFIG, 0, "tls: a client key needs its certificate (--cert)");
        goto fail;
    }
    return t;
fail:
    rb_tls_free(t);
    return NULL;
}

void
rb_tls_free(struct rb_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cacert);
    free(t->cert);
    free(t->key);
    free(t);
}

SSL *
rb_tls_ssl_new(const struct rb_tls *t, int fd, struct err *e)
{
    char why[256];
    SSL *s = SSL_new(t->ctx);
    if (!s || SSL_set_fd(s, fd) != 1)
        goto fail;
    if (t->host[0] && !t->host_is_ip && SSL_set_tlsext_host_name(s, t->host) != 1)
        goto fail;
    if (!t->insecure && t->host[0]) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(s);
        int ok = t->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, t->host)
                               : X509_VERIFY_PARAM_set1_host(vp, t->host, 0);
        if (ok != 1)
            goto fail;
    }
    SSL_set_connect_state(s);
    return s;
fail:
    err_set(e, ERR_INTERNAL, 0, "tls: SSL_new failed: %s", rb_tls_error(why, sizeof(why)));
    SSL_free(s);
    return NULL;
}

void
rb_tls_curl(const struct rb_tls *t, void *h)
{
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, t->insecure ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, t->insecure ? 0L : 2L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (t->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, t->cacert);
    if (t->cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, t->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, t->key ? t->key : t->cert);
    }
}
