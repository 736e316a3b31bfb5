/* tls.h - the server's TLS context (OpenSSL 3): certificate chain and key,
 * protocol and cipher policy, optional client certificates, reload, kernel TLS.
 *
 * Policy (docs/tls.md): TLS 1.2 and 1.3 only; for 1.2 ECDHE key exchange with
 * AEAD ciphers (AES-GCM, ChaCha20-Poly1305), for 1.3 OpenSSL's default suites;
 * no compression, no renegotiation; ALPN "http/1.1" is selected when the client
 * offers it (a client offering only other protocols gets no ALPN answer and
 * speaks HTTP/1.1 anyway); session resumption by tickets.
 *
 * Client certificates (client_ca set): requested on every handshake; a
 * certificate that is sent must verify against client_ca (else the handshake
 * fails); with client_cert_required a client without one is refused too.
 *
 * Reload (tls_reload): a new SSL_CTX is built from the same paths and taken by
 * connections accepted afterwards; each SSL object holds a reference on the
 * SSL_CTX it was made from, so connections already open keep theirs until they
 * close. A reload that fails keeps the current context.
 *
 * Thread safety: tls_ssl_new and tls_reload may run concurrently on any threads;
 * the rest works on one SSL object at a time. */
#ifndef OCIREG_TLS_H
#define OCIREG_TLS_H

#include <stddef.h>

#include "common/err.h"

struct ssl_st; /* OpenSSL's SSL */
struct tls_ctx;

struct tls_opts {
    const char *cert;         /* PEM: the server certificate, then its chain */
    const char *key;          /* PEM private key of cert */
    const char *client_ca;    /* PEM bundle of CAs for client certificates; NULL or
                                 "": client certificates are not requested */
    int client_cert_required; /* with client_ca: a client without one is refused */
    int ktls;                 /* 1: offer kernel TLS (SSL_OP_ENABLE_KTLS), 0: never */
};

/* tls_ctx_new - load the certificate, key and client CAs and build the first
 * SSL_CTX. The paths are copied (tls_reload reads them again). Returns a context
 * owned by the caller (tls_ctx_free), or NULL with ERR_CONFIG naming the file
 * and OpenSSL's reason. */
struct tls_ctx *tls_ctx_new(const struct tls_opts *o, struct err *e);

/* tls_ctx_free - drop the context's reference on its current SSL_CTX (SSL
 * objects still alive keep theirs) and free it. NULL accepted. Every SSL from
 * tls_ssl_new should be freed first: the kTLS note below reads the context. */
void tls_ctx_free(struct tls_ctx *t);

/* tls_reload - build a new SSL_CTX from the same files; on success new
 * connections use it. Returns 0, or -1 with ERR_CONFIG (the current context is
 * kept; the caller logs e). Any thread. */
int tls_reload(struct tls_ctx *t, struct err *e);

/* tls_ctx_adopt - the second half of a reload whose files may have moved
 * (SIGHUP with new [tls] paths): `from`, a context built by tls_ctx_new with the
 * new options (so every file was loaded and checked), gives t its SSL_CTX, its
 * paths and its client-certificate policy; connections accepted afterwards use
 * them, open ones keep theirs, later tls_reload calls read the new paths. Cannot
 * fail. t keeps its kTLS setting. Takes ownership of from (freed). Call it from
 * one thread at a time, as tls_reload. */
void tls_ctx_adopt(struct tls_ctx *t, struct tls_ctx *from);

/* tls_ssl_new - a server-side SSL object (accept state) on socket fd, made from
 * the current SSL_CTX (it holds a reference on it). Returns an SSL owned by the
 * caller (SSL_free; fd stays open), or NULL with ERR_NOMEM. Any thread. */
struct ssl_st *tls_ssl_new(struct tls_ctx *t, int fd, struct err *e);

/* tls_handshake_done - call once per connection when its handshake completed.
 * Returns 1 when blob bodies can go out with SSL_sendfile (kernel TLS carries
 * the sends), else 0. The first call of the process logs which path file
 * bodies take ("kernel TLS: SSL_sendfile" or "kernel TLS unavailable (why):
 * read + SSL_write"). */
int tls_handshake_done(struct tls_ctx *t, struct ssl_st *ssl);

/* tls_client_mode - "off", "optional" or "required": the client-certificate
 * policy (static string) */
const char *tls_client_mode(const struct tls_ctx *t);

/* tls_peer_identity - the identity of a client whose certificate verified
 * against client_ca: its subject's CN, else the first subjectAltName entry that
 * is an email address or a DNS name, copied into buf (NUL-terminated). Returns 0, or -1 when the
 * client sent no verified certificate or it names none of these (or it does
 * not fit in cap, or contains a NUL or control byte). */
int tls_peer_identity(struct ssl_st *ssl, char *buf, size_t cap);

/* tls_ssl_error - OpenSSL's reason for the last failure on this thread ("no
 * shared cipher", "certificate verify failed"), into buf; clears the thread's
 * error queue. Returns buf. No secret ever appears in these strings. */
const char *tls_ssl_error(char *buf, size_t cap);

#endif
