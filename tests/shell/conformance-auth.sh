#!/bin/sh
# conformance-auth.sh - the conformance program against an ocireg with auth on
# (htpasswd), its credentials given as OCI_USERNAME / OCI_PASSWORD: every check
# must pass as without auth. See conformance.sh.
CONFORMANCE_AUTH=1 exec sh "$(dirname "$0")/conformance.sh" "$@"
