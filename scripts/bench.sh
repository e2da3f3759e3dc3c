#!/usr/bin/env bash
# Side-by-side benchmark (not a test): reference Zaqar vs zaqar-rs on one machine.
#
# Starts one Redis on a free port, then in turn: the reference OpenStack Zaqar
# (gunicorn, ../shared/reference-zaqar/start-zaqar.sh), zaqar-rs standalone and the
# zaqar-rs cluster (catalog + pool-node + api-node), all on that Redis (databases 0, 1
# and 2). Against each it runs the same mixed workload (producers, consumers,
# observers), the same mixed workload over the WebSocket API, and a single-message-post
# workload with target/release/zaqar-bench,
# records resident memory, measures the raw Redis rate of a 2-command Lua script with
# redis-benchmark (50 clients), and prints one table with ratios (zaqar-rs/reference).
# Everything it started is stopped on exit; the JSON reports stay in $BENCH_OUT.
#
# BENCH_SUITE=depth runs the deep-queue benchmark instead (scripts/bench-depth.sh): the
# cost of a claim, a pop, a default listing and a post in one queue of increasing depth
# with half of it in flight, on every store, and another project's posts while four
# consumers drain that queue. BENCH_SUITE=queues runs the many-queues benchmark
# (scripts/bench-queues.sh): what a project's number of queues costs. BENCH_SUITE=flow
# runs the balanced flow (scripts/bench-flow.sh): 8 producers and 8 consumers on one queue
# of standalone on a durable Redis, and the CPU split that bounds it. BENCH_SUITE=long-poll
# runs the long-polling benchmark (scripts/bench-long-poll.sh): what idle waiting claims
# cost an api-node, and how soon a waiting claim answers a post through another api-node.
#
# Knobs (environment):
#   BENCH_TARGETS="reference standalone cluster"   which servers to measure
#   BENCH_DURATION=10s         length of each workload run
#   BENCH_PRODUCERS=8 BENCH_CONSUMERS=8 BENCH_OBSERVERS=4   mixed workload workers
#   BENCH_QUEUES=4 BENCH_MESSAGE_SIZE=256 BENCH_BATCH=5 BENCH_CLAIM_LIMIT=5
#   BENCH_SINGLE_PRODUCERS=16  workers of the single-message-post run (batch 1)
#   BENCH_REDIS_REQUESTS=200000
#   BENCH_BUILD=1              0 = use the existing target/release binaries
#   BENCH_OUT=target/bench     where the reports and the summary are kept
#   ZAQAR_REFERENCE_DIR=../shared/reference-zaqar
#
# Never touches the instances of other users: every port is a free one picked here,
# the reference runs from its own ZAQAR_RUN directory, and only PIDs this script
# started are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${BENCH_SUITE:-mixed}" in
depth) exec "$ROOT/scripts/bench-depth.sh" ;;
queues) exec "$ROOT/scripts/bench-queues.sh" ;;
flow) exec "$ROOT/scripts/bench-flow.sh" ;;
long-poll) exec "$ROOT/scripts/bench-long-poll.sh" ;;
esac
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
TARGETS="${BENCH_TARGETS:-reference standalone cluster}"
DURATION="${BENCH_DURATION:-10s}"
PRODUCERS="${BENCH_PRODUCERS:-8}"
CONSUMERS="${BENCH_CONSUMERS:-8}"
OBSERVERS="${BENCH_OBSERVERS:-4}"
QUEUES="${BENCH_QUEUES:-4}"
MESSAGE_SIZE="${BENCH_MESSAGE_SIZE:-256}"
BATCH="${BENCH_BATCH:-5}"
CLAIM_LIMIT="${BENCH_CLAIM_LIMIT:-5}"
SINGLE_PRODUCERS="${BENCH_SINGLE_PRODUCERS:-16}"
REDIS_REQUESTS="${BENCH_REDIS_REQUESTS:-200000}"
LUA="redis.call('INCR',KEYS[1]); return redis.call('RPUSH',KEYS[2],ARGV[1])"

# The PIDs whose memory counts for a target: the api-node alone for the cluster (the
# figure the issue's target is about), the whole process for standalone, gunicorn's
# master and workers for the reference.
memory_pids() {
    case "$1" in
    reference)
        local master
        master="$(cat "$WORK/reference/zaqar-http.pid")"
        echo "$master" $(pgrep -P "$master" || true)
        ;;
    *) echo "$TARGET_PID" ;;
    esac
}

redis_used_memory() {  # bytes Redis uses now
    redis-cli -p "$REDIS_PORT" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'
}

redis_db() {  # target: the Redis database it stores in
    case "$1" in reference) echo 0 ;; standalone) echo 1 ;; cluster) echo 2 ;; esac
}

run_bench() {  # target kind url: runs one workload, writes $OUT/target-kind.json
    local target="$1" kind="$2" url="$3"
    local flags=(--url "$url" --duration "$DURATION" --queues "$QUEUES"
        --message-size "$MESSAGE_SIZE" --claim-limit "$CLAIM_LIMIT"
        --project "bench-$kind" --queue-prefix "bench-$kind" --timeout 10s
        --label "$target $kind" --json "$OUT/$target-$kind.json")
    case "$kind" in
    mixed) flags+=(--producers "$PRODUCERS" --consumers "$CONSUMERS"
        --observers "$OBSERVERS" --batch "$BATCH" --keep-queues) ;;
    ws) flags+=(--ws-url "$TARGET_WS" --producers "$PRODUCERS" --consumers "$CONSUMERS"
        --observers "$OBSERVERS" --batch "$BATCH") ;;
    single) flags+=(--producers "$SINGLE_PRODUCERS" --consumers 0 --observers 0 --batch 1) ;;
    esac
    log "$target: $kind workload for $DURATION"
    "$BENCH" "${flags[@]}" | tee "$OUT/$target-$kind.txt"
}

start_target() {  # target: starts it, sets TARGET_URL, TARGET_WS and TARGET_PID; non-zero if it failed
    local target="$1" port ws
    free_port port
    free_port ws
    TARGET_URL="http://127.0.0.1:$port"
    TARGET_WS="ws://127.0.0.1:$ws"
    case "$target" in
    reference) start_reference "$port" "$ws" || return 1 ;;
    standalone)
        spawn standalone env RUST_LOG=warn "$ZAQAR" standalone --listen "127.0.0.1:$port" \
            --ws-listen "127.0.0.1:$ws" --data-dir "$WORK/standalone" --pool-uri "redis://127.0.0.1:$REDIS_PORT/1"
        TARGET_PID="$LAST_PID"
        ;;
    cluster)
        local catalog pool
        free_port catalog
        free_port pool
        mkdir -p "$WORK/cluster"
        spawn catalog env RUST_LOG=warn "$ZAQAR" catalog --listen "127.0.0.1:$catalog" \
            --uri "sqlite://$WORK/cluster/catalog.db"
        spawn pool-node env RUST_LOG=warn "$ZAQAR" pool-node --listen "127.0.0.1:$pool" \
            --uri "redis://127.0.0.1:$REDIS_PORT/2" --name pool1 --weight 100 \
            --catalog "http://127.0.0.1:$catalog"
        spawn api-node env RUST_LOG=warn "$ZAQAR" api-node --listen "127.0.0.1:$port" \
            --ws-listen "127.0.0.1:$ws" --catalog "http://127.0.0.1:$catalog"
        TARGET_PID="$LAST_PID"
        ;;
    esac
    wait_ready "$TARGET_URL" 60
}

# ------------------------------------------------------------------------------ run ---
prepare_run bench

start_redis

log "redis-benchmark: 2-command Lua script, 50 clients, $REDIS_REQUESTS requests"
redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" --dbnum 3 -c 50 -n "$REDIS_REQUESTS" --csv \
    EVAL "$LUA" 2 k l v > "$OUT/redis-lua.csv"
redis-cli -p "$REDIS_PORT" -n 3 flushdb > /dev/null
cat "$OUT/redis-lua.csv" >&2

for target in $TARGETS; do
    log "starting $target"
    if ! start_target "$target"; then
        log "WARNING: $target did not come up; skipped (logs: $WORK)"
        tail -n 5 "$WORK"/*.log "$WORK/reference/"*.out 2>/dev/null >&2 || true
        stop_target "$target"
        continue
    fi
    sleep 2  # let it settle before reading its idle memory
    rss_kib $(memory_pids "$target") > "$OUT/$target-rss-idle.kib"
    before="$(redis_used_memory)"
    run_bench "$target" mixed "$TARGET_URL" || log "WARNING: $target mixed run failed"
    # The mixed run keeps its queues: what they hold now is what the target stored.
    echo "$(($(redis_used_memory) - before))" > "$OUT/$target-redis-bytes.txt"
    run_bench "$target" ws "$TARGET_URL" || log "WARNING: $target WebSocket run failed"
    run_bench "$target" single "$TARGET_URL" || log "WARNING: $target single run failed"
    rss_kib $(memory_pids "$target") > "$OUT/$target-rss-loaded.kib"
    stop_target "$target"
    redis-cli -p "$REDIS_PORT" -n "$(redis_db "$target")" flushdb > /dev/null
done

# ---------------------------------------------------------------------------- table ---
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
"""One side-by-side table of the reports in OUT, with ratios zaqar-rs / reference."""
import csv, json, os, sys

out = sys.argv[1]
targets = ["reference", "standalone", "cluster"]


def load(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f) if name.endswith(".json") else f.read().strip()


def role(report, name):
    return next((r for r in report["roles"] if r["role"] == name), {})


def mib(target, when):
    kib = load(f"{target}-rss-{when}.kib")
    return int(kib) / 1024 if kib else None


def metric(target, kind, pick):
    report = load(f"{target}-{kind}.json")
    return pick(report) if report else None


rows = []
if os.path.exists(os.path.join(out, "redis-lua.csv")):
    with open(os.path.join(out, "redis-lua.csv")) as f:
        rows = list(csv.DictReader(f))
redis_rps = float(rows[0]["rps"]) if rows else None

def redis_bytes_per_message(target):
    used = load(f"{target}-redis-bytes.txt")
    report = load(f"{target}-mixed.json")
    if not used or not report:
        return None
    kept = role(report, "producer").get("messages", 0) - role(report, "consumer").get("messages", 0)
    return int(used) / kept if kept > 0 else None


MIXED_RPS = "mixed: total ok req/s"
MIXED_P99 = "mixed: p99 ms (all requests)"
SINGLE_PCT = "single post: % of raw Redis Lua rate"
RSS_IDLE = "RSS idle MiB (1)"
lines = [
    (MIXED_RPS, lambda t: metric(t, "mixed", lambda r: r["total"]["requests_per_s"])),
    ("mixed: p50 ms (all requests)", lambda t: metric(t, "mixed", lambda r: r["total"]["latency_ms"]["p50"])),
    (MIXED_P99, lambda t: metric(t, "mixed", lambda r: r["total"]["latency_ms"]["p99"])),
    ("mixed: messages posted/s", lambda t: metric(t, "mixed", lambda r: role(r, "producer").get("messages_per_s"))),
    ("mixed: messages deleted/s", lambda t: metric(t, "mixed", lambda r: role(r, "consumer").get("messages_per_s"))),
    ("mixed: observer list req/s", lambda t: metric(t, "mixed", lambda r: role(r, "observer").get("requests_per_s"))),
    ("mixed: errors", lambda t: metric(t, "mixed", lambda r: r["total"]["errors"])),
    ("mixed over WebSocket: ok req/s", lambda t: metric(t, "ws", lambda r: r["total"]["requests_per_s"])),
    ("mixed over WebSocket: p99 ms", lambda t: metric(t, "ws", lambda r: r["total"]["latency_ms"]["p99"])),
    ("mixed over WebSocket: errors", lambda t: metric(t, "ws", lambda r: r["total"]["errors"])),
    ("single post: ok req/s", lambda t: metric(t, "single", lambda r: r["total"]["requests_per_s"])),
    ("single post: p99 ms", lambda t: metric(t, "single", lambda r: r["total"]["latency_ms"]["p99"])),
    ("single post: errors", lambda t: metric(t, "single", lambda r: r["total"]["errors"])),
    (SINGLE_PCT, lambda t: metric(t, "single", lambda r: 100 * r["total"]["requests_per_s"] / redis_rps if redis_rps else None)),
    (RSS_IDLE, lambda t: mib(t, "idle")),
    ("RSS after load MiB (1)", lambda t: mib(t, "loaded")),
    ("mixed: Redis bytes per message kept (2)", redis_bytes_per_message),
]


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}"


def ratio(v, ref):
    return "-" if v is None or not ref else f"{v / ref:.2f}x"


settings = None
for t in targets:
    settings = settings or metric(t, "mixed", lambda r: r["settings"])
print()
print("== zaqar-rs vs reference Zaqar: same machine, same Redis ==")
if settings:
    print("mixed: {producers} producers (batch {batch}), {consumers} consumers (claim {claim_limit}), "
          "{observers} observers (list {list_limit}), {queues} queues, {message_size} B messages, "
          "{duration_s:.0f} s per run".format(**settings))
single = None
for t in targets:
    single = single or metric(t, "single", lambda r: r["settings"])
if single:
    print("single post: {producers} producers, 1 message per post".format(**single))
header = (f"{'metric':<40}{'reference':>12}{'standalone':>12}{'cluster':>12}"
          f"{'standalone/ref':>16}{'cluster/ref':>13}")
print(header)
print("-" * len(header))
values = {}
for name, get in lines:
    v = {t: get(t) for t in targets}
    values[name] = v
    ref = v["reference"]
    print(f"{name:<40}{fmt(v['reference']):>12}{fmt(v['standalone']):>12}{fmt(v['cluster']):>12}"
          f"{ratio(v['standalone'], ref):>16}{ratio(v['cluster'], ref):>13}")
print("(1) reference: gunicorn master + workers; standalone: its one process; cluster: the api-node")
print("(2) growth of Redis's used_memory over the mixed run / (messages posted - messages deleted)")
if rows:
    r = rows[0]
    print(f"raw Redis, redis-benchmark -c 50, 2-command Lua script: {float(r['rps']):.0f} req/s, "
          f"p50 {r['p50_latency_ms']} ms, p99 {r['p99_latency_ms']} ms")

print()
print("targets (from the issue):")


def check(label, shown, ok):
    print(f"  {label:<50}" + ("not measured" if shown is None else f"{shown:>10}  {'met' if ok else 'MISSED'}"))


def over(name, t):
    v, ref = values[name][t], values[name]["reference"]
    return v / ref if v is not None and ref else None


for t in ("standalone", "cluster"):
    x = over(MIXED_RPS, t)
    check(f"{t}: mixed req/s >= 30x reference", None if x is None else f"{x:.1f}x", x is not None and x >= 30)
    x = over(MIXED_P99, t)
    check(f"{t}: mixed p99 <= 1/10 of reference", None if x is None else f"{x:.3f}x", x is not None and x <= 0.1)
    pct = values[SINGLE_PCT][t]
    check(f"{t}: single posts >= 25% of raw Redis Lua", None if pct is None else f"{pct:.1f}%",
          pct is not None and pct >= 25)
rss = values[RSS_IDLE]["cluster"]
check("cluster: api-node RSS idle <= 30 MiB", None if rss is None else f"{rss:.1f} MiB", rss is not None and rss <= 30)
PY
