#!/usr/bin/env bash
# Sourced by test.sh: starts a private Redis, PostgreSQL, etcd, SecantusDB (MongoDB) and
# Keystone on free loopback ports under a run directory, exports their URLs, and stops exactly
# what it started.
#
# Keystone (from .venv-keystone, see setup-deps.sh; skipped when that is missing) keeps its
# sqlite database and keys in RUN/keystone between runs and has, all with the password
# $ZAQAR_TEST_KEYSTONE_PASSWORD: the service user `zaqar` (role `service` in project
# `service`), `zaqar-member-a` (member of `zaqar-a`), `zaqar-member-b` (member of
# `zaqar-b`) and `zaqar-admin` (admin of `zaqar-a`).

ZAQAR_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ZAQAR_TEST_KEYSTONE_PASSWORD=zaqar-test-secret

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_until() {
  local tries=100
  until "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.1
  done
}

start_test_servers() {
  local run=$1
  stop_test_servers "$run"
  : >"$run/pids"

  local redis_port
  redis_port=$(free_port)
  mkdir -p "$run/redis"
  # With an append-only file, as a pool that keeps what it acknowledges is set up.
  rm -rf "$run/redis/appendonlydir"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$run/redis" --save '' \
    --appendonly yes --daemonize no >"$run/redis/log" 2>&1 &
  echo "$! redis-server" >>"$run/pids"
  wait_until redis-cli -p "$redis_port" ping
  ZAQAR_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"

  start_redis_cluster "$run"

  local pg_port pgbin as_pg=()
  pg_port=$(free_port)
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  rm -rf "$run/pg"
  mkdir -p "$run/pg"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$run/pg"
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$run/pg/data" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$run/pg/initdb.log" 2>&1
  "${as_pg[@]}" "$pgbin/postgres" -D "$run/pg/data" -c listen_addresses=127.0.0.1 \
    -p "$pg_port" -k "$run/pg" -c fsync=off -c full_page_writes=off >"$run/pg/log" 2>&1 &
  echo "$! postgres" >>"$run/pids"
  wait_until "$pgbin/pg_isready" -h 127.0.0.1 -p "$pg_port"
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc 'create database zaqar' >/dev/null
  ZAQAR_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/zaqar"

  local etcd_port etcd_peer_port
  etcd_port=$(free_port)
  etcd_peer_port=$(free_port)
  while [ "$etcd_peer_port" = "$etcd_port" ]; do etcd_peer_port=$(free_port); done
  rm -rf "$run/etcd"
  mkdir -p "$run/etcd"
  etcd --name zaqar-test --data-dir "$run/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "zaqar-test=http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster-state new >"$run/etcd/log" 2>&1 &
  echo "$! etcd" >>"$run/pids"
  wait_until env ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$etcd_port" endpoint health
  ZAQAR_TEST_ETCD_URL="etcd://127.0.0.1:$etcd_port"

  export ZAQAR_TEST_REDIS_URL ZAQAR_TEST_REDIS_CLUSTER_URL ZAQAR_TEST_POSTGRES_URL ZAQAR_TEST_ETCD_URL
  echo "redis at $ZAQAR_TEST_REDIS_URL, redis cluster at $ZAQAR_TEST_REDIS_CLUSTER_URL, postgres at $ZAQAR_TEST_POSTGRES_URL, etcd at $ZAQAR_TEST_ETCD_URL"
  start_secantus "$run"
  start_keystone "$run"
}

# A Redis Cluster of 3 masters (no replicas) with AOF, fresh each run; each node's
# cluster bus is on a port of its own (--cluster-port). Sets ZAQAR_TEST_REDIS_CLUSTER_URL.
start_redis_cluster() {
  local run=$1 port bus nodes=() hosts=()
  rm -rf "$run/redis-cluster"
  for i in 1 2 3; do
    # The nodes started before listen already: only these two can coincide.
    port=$(free_port)
    bus=$(free_port)
    while [ "$bus" = "$port" ]; do bus=$(free_port); done
    mkdir -p "$run/redis-cluster/$i"
    redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes --cluster-port "$bus" \
      --cluster-config-file "$run/redis-cluster/$i/nodes.conf" --cluster-node-timeout 5000 \
      --dir "$run/redis-cluster/$i" --save '' --appendonly yes --daemonize no \
      >"$run/redis-cluster/$i/log" 2>&1 &
    echo "$! redis-server" >>"$run/pids"
    wait_until redis-cli -p "$port" ping
    nodes+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
    >"$run/redis-cluster/create.log" 2>&1
  for node in "${nodes[@]}"; do
    wait_until sh -c "redis-cli -p ${node#*:} cluster info | grep -q cluster_state:ok"
  done
  hosts=$(IFS=,; echo "${nodes[*]}")
  ZAQAR_TEST_REDIS_CLUSTER_URL="redis+cluster://$hosts"
}

# SecantusDB (setup-deps.sh builds it), a MongoDB-compatible single-node replica set
# `secantus`, fresh each run; --sync-on-commit makes j:true writes durable as in mongod.
# Exports ZAQAR_TEST_MONGO_URL and ZAQAR_TEST_SECANTUSD (the binary, for tests that
# restart their own server); skipped when the binary is missing.
start_secantus() {
  local run=$1 port
  local bin=${ZAQAR_SECANTUS_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/zaqar-rs/secantus}/bin/secantusd-rs
  if [ ! -x "$bin" ]; then
    echo "no $bin (scripts/setup-deps.sh builds it): MongoDB tests will be skipped"
    return 0
  fi
  port=$(free_port)
  rm -rf "$run/mongo"
  mkdir -p "$run/mongo"
  "$bin" --host 127.0.0.1 --port "$port" --storage-path "$run/mongo/data" --cache-size 256M \
    --log-file-max 16MB --sync-on-commit >"$run/mongo/log" 2>&1 &
  echo "$! secantusd-rs" >>"$run/pids"
  wait_until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)"
  ZAQAR_TEST_MONGO_URL="mongodb://127.0.0.1:$port/?replicaSet=secantus"
  ZAQAR_TEST_SECANTUSD=$bin
  export ZAQAR_TEST_MONGO_URL ZAQAR_TEST_SECANTUSD
  echo "mongodb (secantus) at $ZAQAR_TEST_MONGO_URL"
}

# Keystone 30 under gunicorn (one worker, so its in-memory token cache sees every
# revocation), sqlite and fernet tokens; the first run also sets up the database.
start_keystone() {
  local run=$1 venv=$ZAQAR_SCRIPTS_DIR/../.venv-keystone
  local d=$run/keystone port url started=$SECONDS
  if [ ! -x "$venv/bin/gunicorn" ]; then
    echo "no $venv (scripts/setup-deps.sh installs it): Keystone tests will be skipped"
    return 0
  fi
  local km=(env PYTHONWARNINGS=ignore "$venv/bin/keystone-manage" --config-file "$d/keystone.conf")
  if [ ! -f "$d/ready" ]; then
    rm -rf "$d"
    mkdir -p "$d/fernet-keys" "$d/credential-keys"
    chmod 700 "$d/fernet-keys" "$d/credential-keys"
    printf '%s\n' '[DEFAULT]' "log_file = $d/keystone.log" \
      '[database]' "connection = sqlite:///$d/keystone.db" \
      '[token]' 'provider = fernet' \
      '[fernet_tokens]' "key_repository = $d/fernet-keys" \
      '[credential]' "key_repository = $d/credential-keys" \
      '[cache]' 'enabled = true' 'backend = dogpile.cache.memory' >"$d/keystone.conf"
    if ! {
      "${km[@]}" db_sync &&
        "${km[@]}" fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)" &&
        "${km[@]}" credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)" &&
        "${km[@]}" bootstrap --bootstrap-password "$ZAQAR_TEST_KEYSTONE_PASSWORD" \
          --bootstrap-public-url http://127.0.0.1:5000/v3/ --bootstrap-region-id RegionOne
    } >"$d/setup.log" 2>&1; then
      echo "keystone setup failed, see $d/setup.log" >&2
      return 1
    fi
    touch "$d/ready"
  fi
  # oslo.config would parse gunicorn's flags: the shim empties sys.argv first.
  printf '%s\n' 'import sys' 'sys.argv = sys.argv[:1]' \
    'from keystone.wsgi.api import application  # noqa' >"$d/ks_wsgi_shim.py"
  port=$(free_port)
  url=http://127.0.0.1:$port/v3
  env OS_KEYSTONE_CONFIG_FILES="$d/keystone.conf" PYTHONWARNINGS=ignore "$venv/bin/gunicorn" \
    --chdir "$d" --bind "127.0.0.1:$port" --workers 1 --threads 4 --timeout 120 \
    --no-control-socket ks_wsgi_shim:application >"$d/gunicorn.log" 2>&1 &
  echo "$! gunicorn" >>"$run/pids"
  local tries=300
  until curl -sf --max-time 2 "$url/" >/dev/null 2>&1; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || { echo "keystone did not answer, see $d/gunicorn.log" >&2; return 1; }
    sleep 0.1
  done
  if ! python3 "$ZAQAR_SCRIPTS_DIR/keystone-users.py" "$url" "$ZAQAR_TEST_KEYSTONE_PASSWORD"; then
    echo "keystone users could not be created" >&2
    return 1
  fi
  ZAQAR_TEST_KEYSTONE_URL=$url
  export ZAQAR_TEST_KEYSTONE_URL ZAQAR_TEST_KEYSTONE_PASSWORD
  echo "keystone at $ZAQAR_TEST_KEYSTONE_URL (ready in $((SECONDS - started)) s)"
}

stop_test_servers() {
  local run=$1 pid name
  [ -f "$run/pids" ] || return 0
  while read -r pid name; do
    [ -r "/proc/$pid/cmdline" ] && grep -q "$name" "/proc/$pid/cmdline" || continue
    # postgres: SIGINT is its fast shutdown.
    if [ "$name" = postgres ]; then kill -INT "$pid"; else kill -TERM "$pid"; fi
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done <"$run/pids"
  rm -f "$run/pids"
}
