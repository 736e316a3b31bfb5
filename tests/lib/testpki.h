/* testpki.h - certificates for TLS tests, made at test time with the OpenSSL
 * API into a mkdtemp folder (nothing secret is committed): a test CA, a server
 * certificate for 127.0.0.1 (SAN IP 127.0.0.1 and DNS localhost), a client
 * certificate signed by the CA, and a "rogue" client certificate signed by
 * another CA that the server does not trust. Keys are EC P-256. Also a raw
 * TLS client (OpenSSL over a socket) for tests that need control over the
 * bytes: pipelining, a handshake left unfinished, the peer's certificate. */
#ifndef OCIREG_TESTPKI_H
#define OCIREG_TESTPKI_H

#include <stddef.h>

struct ssl_st;
struct evp_pkey_st;
struct x509_st;

struct testpki {
    char dir[128];                            /* the mkdtemp folder */
    char ca_cert[192];                        /* the test CA, PEM */
    char server_cert[192], server_key[192];   /* CN 127.0.0.1, serial 1000 */
    char client_cert[192], client_key[192];   /* CN as given, serial 2000 */
    char rogue_ca_cert[192];                  /* another CA, not given to the server */
    char rogue_cert[192], rogue_key[192];     /* signed by the other CA, CN "rogue" */
    struct evp_pkey_st *ca_key;               /* the test CA, for testpki_issue */
    struct x509_st *ca;
};

/* testpki_make - all of the above into a new /tmp/ocireg-pki.XXXXXX folder.
 * client_cn: the CN of the trusted client certificate. Returns 0, or -1 with
 * a message on stderr (nothing left behind). Free with testpki_free. */
int testpki_make(struct testpki *p, const char *client_cn);

/* testpki_issue - one more certificate signed by the test CA: <dir>/<name>.crt
 * and <name>.key. cn may be NULL (no CN); san like "IP:127.0.0.1,DNS:localhost"
 * or "email:a@example.org" or NULL; client: extendedKeyUsage clientAuth (else
 * serverAuth). The paths are copied to cert_out and key_out (cap bytes each).
 * Returns 0 or -1. */
int testpki_issue(struct testpki *p, const char *name, const char *cn, const char *san,
                  long serial, int client, char *cert_out, char *key_out, size_t cap);

/* testpki_free - free the CA key and remove the folder */
void testpki_free(struct testpki *p);

/* testpki_connect - TCP to 127.0.0.1:port, then a blocking TLS handshake that
 * verifies the server against ca_file (NULL: no verification). cert/key (NULL:
 * none) are a client certificate; min_version/max_version (TLS1_2_VERSION, ...;
 * 0: OpenSSL's defaults) bound the protocol. Returns an SSL owning its socket
 * (testpki_close), or NULL with OpenSSL's reason in why. */
struct ssl_st *testpki_connect(int port, const char *ca_file, const char *cert, const char *key,
                               int min_version, int max_version, char *why, size_t cap);

/* testpki_close - SSL_free and close the socket; NULL accepted */
void testpki_close(struct ssl_st *ssl);

/* testpki_peer_serial - the serial number of the server's certificate on ssl,
 * -1 if none */
long testpki_peer_serial(struct ssl_st *ssl);

#endif
