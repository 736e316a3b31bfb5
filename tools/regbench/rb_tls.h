/* rb_tls.h - regbench's TLS client settings: one SSL_CTX per run (the CA to
 * trust, an optional client certificate) shared by every connection of the raw
 * engine, and the same settings applied to libcurl's handles.
 *
 * Verification: the server's chain against --cacert (else the system's default
 * CA paths) and its name against the URL's host (an IP address is checked
 * against the certificate's IP SANs). --insecure turns both off, for
 * self-signed certificates. TLS 1.2 is the minimum. */
#ifndef REGBENCH_RB_TLS_H
#define REGBENCH_RB_TLS_H

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
struct err;

struct rb_tls_opts {
    const char *host;   /* the URL's host: the name checked in the certificate */
    const char *cacert; /* PEM bundle of CAs to trust; NULL = system default */
    const char *cert;   /* client certificate chain (PEM) or NULL */
    const char *key;    /* its private key (PEM); NULL = in cert's file */
    int insecure;       /* 1 = no chain or name verification */
};

struct rb_tls;

/* rb_tls_new - the client context for o (strings are copied). Returns a context
 * owned by the caller (rb_tls_free), or NULL with ERR_CONFIG (unreadable CA,
 * certificate or key, key not matching the certificate) or ERR_INTERNAL. */
struct rb_tls *rb_tls_new(const struct rb_tls_opts *o, struct err *e);

/* rb_tls_free - release t; NULL is accepted. */
void rb_tls_free(struct rb_tls *t);

/* rb_tls_ssl_new - a client SSL object on the connected socket fd with the
 * host check and SNI set. Returns an object owned by the caller (SSL_free; fd
 * stays the caller's), or NULL with ERR_INTERNAL. */
SSL *rb_tls_ssl_new(const struct rb_tls *t, int fd, struct err *e);

/* rb_tls_curl - apply the CA, client certificate and verification settings to
 * the libcurl easy handle h (a CURL *). */
void rb_tls_curl(const struct rb_tls *t, void *h);

/* rb_tls_error - the first queued OpenSSL error as text into buf (the queue is
 * cleared); "no detail" when it is empty. Returns buf. */
char *rb_tls_error(char *buf, unsigned long cap);

#endif
