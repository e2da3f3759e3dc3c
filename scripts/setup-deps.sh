#!/usr/bin/env bash
# Installs, only if missing, the Debian packages and the Python virtualenvs the tests use
# (.venv: python-zaqarclient and friends; .venv-keystone: a real Keystone for the auth tests).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v setpriv >/dev/null || missing+=(util-linux)
# etcd 3.4 for the etcd catalog tests; protoc because etcd-client compiles its protos.
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
# openssl makes the certificates of the Helm chart's loopback run with internal TLS.
command -v openssl >/dev/null || missing+=(openssl)
# A real Prometheus scrapes the roles' /metrics in the metrics test.
command -v prometheus >/dev/null || missing+=(prometheus)
# Headless Chromium and its WebDriver run the CORS test in a real browser.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  ls /var/lib/apt/lists/ | grep -q _Packages || $SUDO apt-get update -q
  # policy-rc.d and the absence of systemd keep apt from starting the services;
  # the tests start private servers themselves.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# SecantusDB (a MongoDB wire-protocol server on WiredTiger, from crates.io: no mongod is in the
# registries this project reaches) for the MongoDB store and catalog tests. Built once, about
# 5 minutes on 2 cores, into a cache outside the repository with its own target directory.
SECANTUS_VERSION=0.5.3-beta.196
SECANTUS_ROOT=${ZAQAR_SECANTUS_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/zaqar-rs/secantus}
if ! "$SECANTUS_ROOT/bin/secantusd-rs" --version 2>/dev/null | grep -qF "$SECANTUS_VERSION"; then
  if ! command -v cmake >/dev/null || [ ! -f /usr/include/lz4.h ]; then
    ls /var/lib/apt/lists/ | grep -q _Packages || $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q cmake liblz4-dev
  fi
  secantus_target=$(mktemp -d)
  CARGO_TARGET_DIR=$secantus_target cargo install secantus-mdb --version "$SECANTUS_VERSION" \
    --locked --ignore-rust-version --root "$SECANTUS_ROOT"
  rm -rf "$secantus_target"
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import zaqarclient, pytest, fixtures, testtools, aiosmtpd' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q 'python-zaqarclient==4.7.*' pytest fixtures testtools requests websocket-client aiosmtpd
fi

# Keystone 30 (2025.2) from PyPI, all wheels; scripts/test-servers.sh runs it under gunicorn.
if [ ! -x .venv-keystone/bin/gunicorn ] || ! .venv-keystone/bin/python -c 'import keystone' 2>/dev/null; then
  python3 -m venv .venv-keystone
  .venv-keystone/bin/pip install -q 'keystone==30.0.0' 'gunicorn==27.0.1' 'python-openstackclient==10.5.0'
fi
