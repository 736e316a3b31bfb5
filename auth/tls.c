/* tls.c - the server's TLS context (see tls.h). */
#include "auth/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#include "common/banned.h"

/* TLS 1.2: forward secrecy (ECDHE) and AEAD only, ECDSA before RSA (Mozilla's
 * "intermediate" list without the finite-field DHE suites) */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct tls_ctx {
    char *cert, *key, *client_ca;
    int client_cert_required;
    int ktls;
    pthread_mutex_t mu; /* guards cur between tls_reload and tls_ssl_new */
    SSL_CTX *cur;       /* the context's own reference */
};

/* the kTLS line is written once per process (the first handshake) */
static atomic_int ktls_logged;

const char *
tls_ssl_error(char *buf, size_t cap)
{
    unsigned long code = ERR_get_error();
    const char *why = code ? ERR_reason_error_string(code) : NULL;
    if (why)
        snprintf(buf, cap, "%s", why);
    else if (code)
        snprintf(buf, cap, "openssl error %lx", code);
    else
        snprintf(buf, cap, "%s", errno ? strerror(errno) : "connection closed");
    ERR_clear_error();
    return buf;
}

/* ALPN: we speak HTTP/1.1 only; a client that does not offer it gets no ALPN
 * answer (RFC 7301 allows that) rather than a fatal alert */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, http11, sizeof(http11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *
ctx_build(const struct tls_ctx *t, struct err *e)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c) {
        err_set(e, ERR_NOMEM, 0, "tls context: %s", tls_ssl_error(why, sizeof(why)));
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(c, tls12_ciphers)) {
        err_set(e, ERR_CONFIG, 0, "tls policy: %s", tls_ssl_error(why, sizeof(why)));
        goto fail;
    }
    /* IGNORE_UNEXPECTED_EOF: a client closing without close_notify is an end of
     * input like any other (HTTP framing tells a truncated body) */
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                    SSL_OP_IGNORE_UNEXPECTED_EOF;
    if (t->ktls)
        opts |= SSL_OP_ENABLE_KTLS;
    SSL_CTX_set_options(c, opts);
    /* PARTIAL_WRITE and MOVING_WRITE_BUFFER: the connection layer retries a
     * blocked write with the same bytes, not always at the same address (the
     * copy path reads the file again); RELEASE_BUFFERS: an idle keep-alive
     * connection holds no record buffers */
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
    /* one read(2) takes a whole record (and whatever follows it) instead of
     * its 5-byte header first and its body then: a syscall less per request
     * (the transport's pending op tells the layer about bytes read ahead) */
    SSL_CTX_set_read_ahead(c, 1);
    SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
    /* resumption with client certificates needs a session id context */
    static const unsigned char sid_ctx[] = "ocireg";
    SSL_CTX_set_session_id_context(c, sid_ctx, sizeof(sid_ctx) - 1);

    if (SSL_CTX_use_certificate_chain_file(c, t->cert) != 1) {
        err_set(e, ERR_CONFIG, 0, "tls cert '%s': %s", t->cert, tls_ssl_error(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, t->key, SSL_FILETYPE_PEM) != 1) {
        err_set(e, ERR_CONFIG, 0, "tls key '%s': %s", t->key, tls_ssl_error(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        err_set(e, ERR_CONFIG, 0, "tls key '%s' does not match cert '%s': %s", t->key, t->cert,
                tls_ssl_error(why, sizeof(why)));
        goto fail;
    }
    if (t->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
        if (!names || SSL_CTX_load_verify_locations(c, t->client_ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            err_set(e, ERR_CONFIG, 0, "tls client_ca '%s': %s", t->client_ca,
                    tls_ssl_error(why, sizeof(why)));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(c, names); /* takes names */
        SSL_CTX_set_verify(c,
                           SSL_VERIFY_PEER |
                               (t->client_cert_required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
    }
    ERR_clear_error();
    return c;
fail:
    SSL_CTX_free(c);
    return NULL;
}

static char *
dup_or_null(const char *s)
{
    if (!s || !*s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

struct tls_ctx *
tls_ctx_new(const struct tls_opts *o, struct err *e)
{
    if (!o->cert || !*o->cert || !o->key || !*o->key) {
        err_set(e, ERR_CONFIG, 0, "tls: cert and key must both be set");
        return NULL;
    }
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (!t)
        abort();
    t->cert = dup_or_null(o->cert);
    t->key = dup_or_null(o->key);
    t->client_ca = dup_or_null(o->client_ca);
    t->client_cert_required = t->client_ca && o->client_cert_required;
    t->ktls = o->ktls;
    pthread_mutex_init(&t->mu, NULL);
    t->cur = ctx_build(t, e);
    if (!t->cur) {
        tls_ctx_free(t);
        return NULL;
    }
    return t;
}

void
tls_ctx_free(struct tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->cur);
    pthread_mutex_destroy(&t->mu);
    free(t->cert);
    free(t->key);
    free(t->client_ca);
    free(t);
}

int
tls_reload(struct tls_ctx *t, struct err *e)
{
    SSL_CTX *n = ctx_build(t, e);
    if (!n)
        return -1;
    pthread_mutex_lock(&t->mu);
    SSL_CTX *old = t->cur;
    t->cur = n;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* connections made from it hold their own references */
    return 0;
}

void
tls_ctx_adopt(struct tls_ctx *t, struct tls_ctx *from)
{
    pthread_mutex_lock(&t->mu);
    SSL_CTX *c = t->cur;
    t->cur = from->cur;
    from->cur = c;
    char *p = t->cert;
    t->cert = from->cert;
    from->cert = p;
    p = t->key;
    t->key = from->key;
    from->key = p;
    p = t->client_ca;
    t->client_ca = from->client_ca;
    from->client_ca = p;
    t->client_cert_required = from->client_cert_required;
    pthread_mutex_unlock(&t->mu);
    tls_ctx_free(from); /* the old SSL_CTX: connections made from it hold their own references */
}

SSL *
tls_ssl_new(struct tls_ctx *t, int fd, struct err *e)
{
    pthread_mutex_lock(&t->mu);
    SSL *s = SSL_new(t->cur); /* takes a reference on cur */
    pthread_mutex_unlock(&t->mu);
    if (!s || SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        ERR_clear_error();
        err_set(e, ERR_NOMEM, ENOMEM, "tls: cannot create a connection");
        return NULL;
    }
    SSL_set_accept_state(s);
    return s;
}

/* why the kernel does not carry this connection's records */
static void
ktls_why(const struct tls_ctx *t, SSL *ssl, char *buf, size_t cap)
{
    if (!t->ktls) {
        snprintf(buf, cap, "[tls] ktls = off");
        return;
    }
    char ulp[256] = "";
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");
    if (f) {
        if (!fgets(ulp, sizeof(ulp), f))
            ulp[0] = '\0';
        fclose(f);
    }
    int has_tls = 0;
    for (char *p = ulp; (p = strstr(p, "tls")) != NULL; p += 3)
        if ((p == ulp || p[-1] == ' ') && (p[3] == '\0' || p[3] == ' ' || p[3] == '\n'))
            has_tls = 1;
    if (!has_tls)
        snprintf(buf, cap, "the kernel offers no TLS ULP: CONFIG_TLS or modprobe tls");
    else
        snprintf(buf, cap, "not offered for %s %s", SSL_get_version(ssl),
                 SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}

int
tls_handshake_done(struct tls_ctx *t, SSL *ssl)
{
    int send = BIO_get_ktls_send(SSL_get_wbio(ssl)) ? 1 : 0;
    int expected = 0;
    if (atomic_load_explicit(&ktls_logged, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong(&ktls_logged, &expected, 1)) {
        if (send) {
            log_info("tls", NULL, "kernel TLS: SSL_sendfile");
        } else {
            char why[160];
            ktls_why(t, ssl, why, sizeof(why));
            log_info("tls", NULL, "kernel TLS unavailable (%s): read + SSL_write", why);
        }
    }
    return send;
}

const char *
tls_client_mode(const struct tls_ctx *t)
{
    if (!t->client_ca)
        return "off";
    return t->client_cert_required ? "required" : "optional";
}

/* copy an ASN1 string as UTF-8; -1 when empty, too long or holding a control
 * byte (an identity goes into logs and rules) */
static int
copy_text(const ASN1_STRING *s, char *buf, size_t cap)
{
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, s);
    int rc = -1;
    if (n > 0 && (size_t)n < cap) {
        rc = 0;
        for (int i = 0; i < n; i++)
            if (u[i] < 0x20 || u[i] == 0x7f)
                rc = -1;
        if (rc == 0) {
            memcpy(buf, u, (size_t)n);
            buf[n] = '\0';
        }
    }
    OPENSSL_free(u);
    return rc;
}

int
tls_peer_identity(SSL *ssl, char *buf, size_t cap)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (!x || SSL_get_verify_result(ssl) != X509_V_OK)
        return -1;
    X509_NAME *name = X509_get_subject_name(x);
    int i = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (i >= 0)
        return copy_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)), buf, cap);
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = -1;
    for (int k = 0; gens && k < sk_GENERAL_NAME_num(gens); k++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
        if (g->type == GEN_EMAIL || g->type == GEN_DNS) {
            rc = copy_text(g->type == GEN_EMAIL ? g->d.rfc822Name : g->d.dNSName, buf, cap);
            break;
        }
    }
    GENERAL_NAMES_free(gens);
    return rc;
}
