/* testpki.c - test certificates and a raw TLS client (see testpki.h). */
#include "tests/lib/testpki.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/integ_util.h"

#include "common/banned.h"

static int
add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* a certificate for key, signed by issuer (NULL: self-signed) */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, const char *san, long serial, X509 *issuer,
          EVP_PKEY *issuer_key, int kind)
{
    enum { CA = 0, SERVER = 1, CLIENT = 2 };
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    if (cn)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"ocireg tests", -1,
                               -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    int bad = 0;
    bad |= add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    if (issuer)
        bad |= add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    if (kind == CA) {
        bad |= add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        bad |= add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        bad |= add_ext(x, &ctx, NID_basic_constraints, "CA:FALSE");
        bad |= add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature");
        bad |= add_ext(x, &ctx, NID_ext_key_usage, kind == CLIENT ? "clientAuth" : "serverAuth");
    }
    if (san)
        bad |= add_ext(x, &ctx, NID_subject_alt_name, san);
    if (bad || !X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int
write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = x ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* key and certificate into dir/name.key, dir/name.crt */
static int
issue(const char *dir, const char *name, const char *cn, const char *san, long serial,
      X509 *issuer, EVP_PKEY *issuer_key, int kind, char *crt, char *keyp, size_t cap,
      X509 **x_out, EVP_PKEY **k_out)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k ? make_cert(k, cn, san, serial, issuer, issuer_key, kind) : NULL;
    snprintf(crt, cap, "%s/%s.crt", dir, name);
    snprintf(keyp, cap, "%s/%s.key", dir, name);
    int rc = x && write_pem(crt, x, NULL) == 0 && write_pem(keyp, NULL, k) == 0 ? 0 : -1;
    if (rc == 0 && x_out) {
        *x_out = x;
        x = NULL;
    }
    if (rc == 0 && k_out) {
        *k_out = k;
        k = NULL;
    }
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

int
testpki_issue(struct testpki *p, const char *name, const char *cn, const char *san, long serial,
              int client, char *cert_out, char *key_out, size_t cap)
{
    return issue(p->dir, name, cn, san, serial, p->ca, p->ca_key, client ? 2 : 1, cert_out,
                 key_out, cap, NULL, NULL);
}

int
testpki_make(struct testpki *p, const char *client_cn)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/ocireg-pki.XXXXXX");
    if (!mkdtemp(p->dir)) {
        perror("testpki: mkdtemp");
        return -1;
    }
    char ca_key[192], rkey[192];
    X509 *rogue_ca = NULL;
    EVP_PKEY *rogue_key = NULL;
    int rc = -1;
    if (issue(p->dir, "ca", "ocireg test CA", NULL, 1, NULL, NULL, 0, p->ca_cert, ca_key,
              sizeof(ca_key), &p->ca, &p->ca_key) < 0 ||
        testpki_issue(p, "server", "127.0.0.1", "IP:127.0.0.1,DNS:localhost", 1000, 0,
                      p->server_cert, p->server_key, sizeof(p->server_cert)) < 0 ||
        testpki_issue(p, "client", client_cn, NULL, 2000, 1, p->client_cert, p->client_key,
                      sizeof(p->client_cert)) < 0 ||
        issue(p->dir, "rogue-ca", "ocireg rogue CA", NULL, 1, NULL, NULL, 0, p->rogue_ca_cert,
              rkey, sizeof(rkey), &rogue_ca, &rogue_key) < 0 ||
        issue(p->dir, "rogue", "rogue", NULL, 3000, rogue_ca, rogue_key, 2, p->rogue_cert,
              p->rogue_key, sizeof(p->rogue_cert), NULL, NULL) < 0) {
        fprintf(stderr, "testpki: generating certificates failed\n");
        ERR_print_errors_fp(stderr);
        goto out;
    }
    rc = 0;
out:
    X509_free(rogue_ca);
    EVP_PKEY_free(rogue_key);
    if (rc < 0)
        testpki_free(p);
    return rc;
}

void
testpki_free(struct testpki *p)
{
    X509_free(p->ca);
    EVP_PKEY_free(p->ca_key);
    p->ca = NULL;
    p->ca_key = NULL;
    if (p->dir[0])
        integ_rm_rf(p->dir);
    p->dir[0] = '\0';
}

static void
why_from_openssl(char *why, size_t cap, const char *what)
{
    unsigned long code = ERR_get_error();
    const char *r = code ? ERR_reason_error_string(code) : NULL;
    snprintf(why, cap, "%s: %s", what, r ? r : "failed");
    ERR_clear_error();
}

SSL *
testpki_connect(int port, const char *ca_file, const char *cert, const char *key, int min_version,
                int max_version, char *why, size_t cap)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        why_from_openssl(why, cap, "SSL_CTX_new");
        return NULL;
    }
    /* the library's default security level refuses TLS 1.1 before any byte is
     * sent; level 0 lets a test offer it and see what the server says */
    SSL_CTX_set_security_level(ctx, 0);
    if (min_version)
        SSL_CTX_set_min_proto_version(ctx, min_version);
    if (max_version)
        SSL_CTX_set_max_proto_version(ctx, max_version);
    if (max_version && max_version < TLS1_2_VERSION)
        SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            why_from_openssl(why, cap, "CA file");
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
        why_from_openssl(why, cap, "client certificate");
        SSL_CTX_free(ctx);
        return NULL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        snprintf(why, cap, "connect failed");
        if (fd >= 0)
            close(fd);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    if (!ssl) {
        close(fd);
        why_from_openssl(why, cap, "SSL_new");
        return NULL;
    }
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "127.0.0.1");
    if (SSL_connect(ssl) != 1) {
        why_from_openssl(why, cap, "handshake");
        testpki_close(ssl);
        return NULL;
    }
    /* TLS 1.3: the server's verdict on a client certificate comes after the
     * client's Finished, so a refused one shows at the first read */
    return ssl;
}

void
testpki_close(SSL *ssl)
{
    if (!ssl)
        return;
    int fd = SSL_get_fd(ssl);
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
}

long
testpki_peer_serial(SSL *ssl)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (!x)
        return -1;
    return ASN1_INTEGER_get(X509_get0_serialNumber(x));
}
