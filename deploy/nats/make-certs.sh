#!/usr/bin/env sh
# Make a throwaway test CA and one NATS server certificate (also used for cluster routes, so it has
# serverAuth + clientAuth). For tests and trial deployments only; production certificates come from
# your PKI or cert-manager. Nothing made here is committed (certs/.gitignore).
#
#   deploy/nats/make-certs.sh [OUT_DIR]            # default: deploy/nats/certs
#   EXTRA_SANS="DNS:nats.example.org,IP:10.0.0.5" deploy/nats/make-certs.sh
#
# Writes OUT_DIR/ca.pem, ca-key.pem, server.pem, server-key.pem (keys mode 600, certificates 644:
# the NATS container runs as a non-root user and must read them).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/certs}
days=${DAYS:-825}
mkdir -p "$out"
cd "$out"

# Names the servers are reached by: compose service names, the Kubernetes headless service
# (pods est-nats-0..2) and client service, in the "est" namespace, and loopback for local tests.
sans="DNS:localhost,IP:127.0.0.1,DNS:nats1,DNS:nats2,DNS:nats3"
sans="$sans,DNS:est-nats,DNS:est-nats.est,DNS:est-nats.est.svc,DNS:est-nats.est.svc.cluster.local"
sans="$sans,DNS:*.est-nats-headless,DNS:*.est-nats-headless.est,DNS:*.est-nats-headless.est.svc"
sans="$sans,DNS:*.est-nats-headless.est.svc.cluster.local"
if [ -n "${EXTRA_SANS:-}" ]; then sans="$sans,$EXTRA_SANS"; fi

openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -sha256 \
  -subj "/O=EST Lagesbild test/CN=EST test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout ca-key.pem -out ca.pem 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 -subj "/O=EST Lagesbild test/CN=nats" \
  -keyout server-key.pem -out server.csr 2>/dev/null
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$sans" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" -sha256 \
  -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl

chmod 600 ca-key.pem
chmod 644 ca.pem server.pem server-key.pem
echo "made $out/ca.pem and $out/server.pem ($sans)"
