#!/usr/bin/env bash
# Long-polling benchmark (not a test; `BENCH_SUITE=long-poll scripts/bench.sh` runs it): a
# catalog, one pool-node on a private Redis and two api-nodes (A and B), release builds.
#   1. Idle waiters: BENCH_IDLE_WAITERS claims (wait=20) held on api-node A for
#      BENCH_DURATION, each on its own connection: the CPU api-node A and the pool-node
#      used meanwhile, and api-node A's resident memory with them held against before.
#      Then the same over WebSocket, on api-node B.
#   2. Wake probes: BENCH_WAKE_PROBES times, a claim with wait=10 on A, then a post a
#      second later through B: how soon after the post's answer the claim answers
#      (p50, p99, max).
#
# Knobs (environment):
#   BENCH_IDLE_WAITERS=1000   BENCH_WAKE_PROBES=100   BENCH_DURATION=30s
#   BENCH_BUILD=1   BENCH_OUT=target/bench-long-poll
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
WAITERS="${BENCH_IDLE_WAITERS:-1000}"
PROBES="${BENCH_WAKE_PROBES:-100}"
DURATION="${BENCH_DURATION:-30s}"
trap cleanup EXIT
trap 'exit 130' INT TERM
# Every waiter holds a connection on both sides.
ulimit -n "$(ulimit -Hn)"

cpu_ticks() {  # pid: user + system clock ticks it used so far
    awk '{print $14 + $15}' "/proc/$1/stat"
}

prepare_run bench-long-poll

start_redis
free_port catalog_port
spawn catalog env RUST_LOG=warn "$ZAQAR" catalog --listen "127.0.0.1:$catalog_port" \
    --uri "sqlite://$WORK/catalog.db"
CATALOG="http://127.0.0.1:$catalog_port"
free_port pool_port
spawn pool-node env RUST_LOG=warn "$ZAQAR" pool-node --listen "127.0.0.1:$pool_port" \
    --uri "redis://127.0.0.1:$REDIS_PORT/0" --name pool-0 --weight 100 --catalog "$CATALOG"
POOL_PID="$LAST_PID"
declare -A API_PORT API_PID WS_PORT
for node in a b; do
    free_port port
    free_port ws
    spawn "api-$node" env RUST_LOG=warn "$ZAQAR" api-node --listen "127.0.0.1:$port" \
        --ws-listen "127.0.0.1:$ws" --catalog "$CATALOG"
    API_PORT[$node]="$port"
    WS_PORT[$node]="$ws"
    API_PID[$node]="$LAST_PID"
    wait_ready "http://127.0.0.1:$port" 60 || { tail -n 20 "$WORK/api-$node.log" >&2; exit 1; }
done
A="http://127.0.0.1:${API_PORT[a]}"
B="http://127.0.0.1:${API_PORT[b]}"

# One idle phase (rest or websocket) on api-node NODE: writes $OUT/idle-NAME.txt and
# idle-NAME.figures, one line: the node, the CPU ticks of the api-node and of the
# pool-node, the api-node's resident memory (KiB) before and held.
idle_phase() {  # name node [zaqar-bench flags...]
    local name="$1" node="$2"
    shift 2
    log "idle waiters: $WAITERS claims waiting on api-node $node for $DURATION over $name"
    local rss_before api_before pool_before bench_pid rss rss_held=0
    rss_before="$(rss_kib "${API_PID[$node]}")"
    api_before="$(cpu_ticks "${API_PID[$node]}")"
    pool_before="$(cpu_ticks "$POOL_PID")"
    "$BENCH" --url "http://127.0.0.1:${API_PORT[$node]}" --duration "$DURATION" --producers 0 --consumers 0 --observers 0 \
        --idle-waiters "$WAITERS" --project bench-long-poll --queue-prefix "bench-lp-$name" \
        "$@" > "$OUT/idle-$name.txt" &
    bench_pid="$!"
    while kill -0 "$bench_pid" 2>/dev/null; do
        rss="$(rss_kib "${API_PID[$node]}")"
        ((rss > rss_held)) && rss_held="$rss"
        sleep 1
    done
    wait "$bench_pid"
    printf '%s %s %s %s %s\n' "$node" "$(($(cpu_ticks "${API_PID[$node]}") - api_before))" \
        "$(($(cpu_ticks "$POOL_PID") - pool_before))" "$rss_before" "$rss_held" \
        > "$OUT/idle-$name.figures"
}
# Each on an api-node of its own: memory freed is not given back to the system at once.
idle_phase rest a
idle_phase websocket b --ws-url "ws://127.0.0.1:${WS_PORT[b]}"

log "wake probes: $PROBES claims on A woken by a post through B"
"$BENCH" --url "$A" --post-url "$B" --duration 1s --producers 0 --consumers 0 \
    --observers 0 --wake-probes "$PROBES" --project bench-long-poll --queue-prefix bench-lp \
    > "$OUT/probes.txt"

python3 - "$(getconf CLK_TCK)" "$DURATION" "$WAITERS" "$OUT" <<'PY' | tee "$OUT/summary.txt"
"""The long-polling benchmark's figures."""
import os, re, sys

hz, duration, waiters, out = sys.argv[1:]
hz, waiters = int(hz), int(waiters)
seconds = float(re.match(r"[\d.]+", duration).group()) * {"s": 1, "m": 60}.get(duration[-1], 1)
for name in ("rest", "websocket"):
    idle = open(os.path.join(out, f"idle-{name}.txt")).read().strip()
    node, *figures = open(os.path.join(out, f"idle-{name}.figures")).read().split()
    api, pool, before, held = map(int, figures)
    print(f"{waiters} idle waiting claims for {seconds:.0f} s: {idle}")
    print(f"  api-node {node.upper()}: {api / hz / seconds * 100:.2f}% of a core,"
          f" resident memory {before / 1024:.1f} MiB before, {held / 1024:.1f} MiB"
          f" held ({(held - before) / 1024:+.1f} MiB)")
    print(f"  pool-node:  {pool / hz / seconds * 100:.2f}% of a core")
print(open(os.path.join(out, "probes.txt")).read().strip())
PY
