#!/bin/sh
# test-certs.sh - a throw-away test CA, a server certificate for 127.0.0.1,
# ::1 and localhost, and a client certificate (CN regbench), made with the
# openssl CLI into DIR (which must exist; a mkdtemp folder of the caller):
#   ca.crt ca.key server.crt server.key client.crt client.key
# EC P-256 keys (fast to make), valid 2 days. Nothing here is ever committed:
# bench.sh and the tests call this at run time. Exit 0, or 1 with openssl's
# message on stderr.
#
#   sh scripts/test-certs.sh DIR
set -eu
d=${1:?usage: test-certs.sh DIR}
cd "$d"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=ocireg test CA" -days 2 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt 2>/dev/null
sign() {   # NAME CN EXTFILE
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -sha256 \
        -extfile "$3" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr"
}
printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' >client.ext
sign server 127.0.0.1 server.ext
sign client regbench client.ext
rm -f server.ext client.ext ca.srl
chmod 600 ca.key server.key client.key
