#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need
# (Redis, PostgreSQL, etcd from Debian; SecantusDB, a MongoDB-compatible server, built
# once with cargo install; Python virtualenvs with python-zaqarclient, Keystone and Helm),
# starts private servers on free loopback ports, then runs lint, unit,
# conformance, cluster and client-compatibility tests. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/.test-run
mkdir -p "$RUN"

step() { printf '\n== %s\n' "$*"; }

# CI builds once from a clean clone: incremental compilation's caches would only take
# disk there (about 4.6 GB of the 10 GB a full run's target/ held with them).
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi

step "installing test dependencies"
scripts/setup-deps.sh

step "starting private Redis (a server and a cluster), PostgreSQL, etcd and Keystone"
# shellcheck source=/dev/null
source scripts/test-servers.sh
start_test_servers "$RUN"
trap 'stop_test_servers "$RUN"' EXIT

step "format and lints"
cargo fmt --all -- --check
# The etcd and MongoDB backends are opt-in cargo features; lint the catalog without them too.
FEATURES=(--features zaqar-catalog/etcd,zaqar-catalog/mongodb,zaqar-pool-node/mongodb)
cargo clippy --all-targets --locked "${FEATURES[@]}" -- -D warnings
cargo clippy -p zaqar-catalog --all-targets --locked -- -D warnings

step "unit, conformance and cluster tests"
export ZAQAR_TEST_REDIS_URL ZAQAR_TEST_REDIS_CLUSTER_URL ZAQAR_TEST_POSTGRES_URL ZAQAR_TEST_ETCD_URL
export ZAQAR_TEST_KEYSTONE_URL ZAQAR_TEST_KEYSTONE_PASSWORD
cargo build --locked "${FEATURES[@]}" --bin zaqar --bin zaqar-bench
export ZAQAR_BIN=$ROOT/target/debug/zaqar
cargo test --locked --workspace "${FEATURES[@]}" -- --test-threads 2

step "Helm chart: lint, render, validate, run the rendered pods on loopback"
scripts/helm-check.sh

if [ -x scripts/compat-test.sh ]; then
  step "python-zaqarclient functional tests"
  scripts/compat-test.sh
fi
step "all tests passed"
