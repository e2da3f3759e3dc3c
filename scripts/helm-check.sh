#!/usr/bin/env bash
# Lints, renders and checks the Helm chart helm/zaqar-rs with the real Helm engine, no cluster
# needed: helm-python-sdk (Helm's Go SDK as a library) renders it for the default values and
# each helm/zaqar-rs/ci/*-values.yaml, kubernetes-validate checks every manifest strictly
# against the Kubernetes schemas, and helm/check_chart.py checks what schemas cannot (raft
# members, selectors, the PDB and HPA targets, secrets, network policies, the api-node's
# config file, refusals of bad values), and helm/check_monitoring.py the metrics wiring, the
# ServiceMonitor, the PrometheusRule (with Debian's promtool: check rules, test rules) and the
# Grafana dashboard, whose metric names must be those docs/operations.md lists. With ZAQAR_BIN (a built `zaqar`), helm/e2e_loopback.py
# then runs the rendered pods as real processes on loopback addresses in private namespaces
# (3 raft catalog nodes, 2 pools, an api-node) and drives a queue through them.
# The venv (.venv-helm) is created once; later runs take a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-helm
export PYTHONDONTWRITEBYTECODE=1
if ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml, requests, websocket' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'helm-python-sdk==0.2.*' 'kubernetes-validate==1.37.*' pyyaml requests websocket-client
fi
"$VENV/bin/python" helm/check_chart.py helm/zaqar-rs

if [ -n "${ZAQAR_BIN:-}" ]; then
  "$VENV/bin/python" helm/e2e_loopback.py helm/zaqar-rs "$ZAQAR_BIN"
elif [ -n "${CI:-}" ]; then
  echo "helm-check: ZAQAR_BIN is not set: the loopback run of the chart cannot run" >&2
  exit 1
else
  echo "skipped the loopback run of the chart (set ZAQAR_BIN to a built zaqar)"
fi
