#!/usr/bin/env sh
# Deploy EST Lägesbild to the current kubectl context, namespace "est". Idempotent: run it again after
# changing a file. Files kept once in deploy/ (NATS users, alert rules, dashboard, DB init) become
# ConfigMaps here, so Kubernetes and compose use the very same, tested files.
#
#   deploy/nats/make-certs.sh              # or put your PKI's ca.pem/server.pem/server-key.pem there
#   cp deploy/k8s/secrets.example.yaml deploy/k8s/secrets.yaml && $EDITOR deploy/k8s/secrets.yaml
#   deploy/k8s/apply.sh
set -eu
k8s=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$k8s")
ns=est
cm() { kubectl -n "$ns" create "$@" --dry-run=client -o yaml | kubectl apply -f -; }

kubectl apply -f "$k8s/namespace.yaml"
if [ -f "$k8s/secrets.yaml" ]; then kubectl apply -f "$k8s/secrets.yaml"; else
  echo "deploy/k8s/secrets.yaml missing: copy secrets.example.yaml and fill it in" >&2; exit 1; fi
kubectl -n "$ns" get secret est-grafana >/dev/null 2>&1 || \
  kubectl -n "$ns" create secret generic est-grafana --from-literal=admin-password="$(openssl rand -hex 16)"

cm secret generic est-nats-tls --from-file="$deploy/nats/certs/ca.pem" \
  --from-file="$deploy/nats/certs/server.pem" --from-file="$deploy/nats/certs/server-key.pem"
cm configmap est-nats-auth --from-file="$deploy/nats/auth.conf"
cm configmap est-postgres-init --from-file="$deploy/postgres/init-databases.sh"
cm configmap est-prometheus --from-file="$k8s/prometheus.yml" --from-file="$deploy/prometheus/alerts.yml"
cm configmap est-grafana-datasources --from-file="$deploy/grafana/provisioning/datasources/prometheus.yml"
cm configmap est-grafana-providers --from-file="$deploy/grafana/provisioning/dashboards/est.yml"
cm configmap est-grafana-dashboards --from-file="$deploy/grafana/dashboards/est-lagesbild.json"

for f in config nats postgres intake aggregator notifier analysis web prometheus grafana; do
  kubectl apply -f "$k8s/$f.yaml"
done
kubectl -n "$ns" rollout status statefulset/est-nats --timeout=5m
for d in intake aggregator notifier analysis web; do kubectl -n "$ns" rollout status deployment/est-$d --timeout=5m; done
