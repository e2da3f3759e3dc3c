#!/usr/bin/env bash
# Balanced-flow benchmark (not a test; `BENCH_SUITE=flow scripts/bench.sh` runs it): the
# figure users compare with a broker. `zaqar standalone` on a private Redis with AOF
# (`appendfsync everysec`); zaqar-bench runs 8 producers posting one 256-byte message per
# request and 8 consumers claiming 10 and deleting each message with its own request, all
# on one queue, for BENCH_DURATION. BENCH_FLOW_BULK_DELETE=1 deletes the messages of a
# claim with one request, and BENCH_FLOW_WAIT=N makes each claim wait up to N seconds for
# messages on an empty queue (long polling) instead of answering at once. It prints messages posted and consumed per second with
# their latencies, and the CPU each process used (zaqar, Redis, the load generator, idle),
# per request: on a shared 2-core machine that split says what bounds the rate.
#
# Knobs (environment):
#   BENCH_DURATION=20s   BENCH_FLOW_PRODUCERS=8   BENCH_FLOW_CONSUMERS=8
#   BENCH_FLOW_CLAIM_LIMIT=10   BENCH_FLOW_BULK_DELETE=0   BENCH_FLOW_WAIT=0
#   BENCH_BUILD=1   BENCH_OUT=target/bench-flow
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
DURATION="${BENCH_DURATION:-20s}"
PRODUCERS="${BENCH_FLOW_PRODUCERS:-8}"
CONSUMERS="${BENCH_FLOW_CONSUMERS:-8}"
CLAIM_LIMIT="${BENCH_FLOW_CLAIM_LIMIT:-10}"
WAIT="${BENCH_FLOW_WAIT:-0}"
DELETES=()
if [[ "${BENCH_FLOW_BULK_DELETE:-0}" == 1 ]]; then
    DELETES=(--bulk-delete)
fi

cpu_ticks() {  # pid: user + system clock ticks it used so far
    awk '{print $14 + $15}' "/proc/$1/stat"
}

idle_ticks() {  # idle clock ticks of all CPUs so far
    awk '/^cpu / {print $5}' /proc/stat
}

prepare_run bench-flow

start_redis --appendonly yes --appendfsync everysec
free_port port
free_port ws
spawn standalone env RUST_LOG=warn "$ZAQAR" standalone --listen "127.0.0.1:$port" \
    --ws-listen "127.0.0.1:$ws" --data-dir "$WORK/standalone" \
    --pool-uri "redis://127.0.0.1:$REDIS_PORT/1" --require-durable-store
ZAQAR_PID="$LAST_PID"
wait_ready "http://127.0.0.1:$port" 60 || { tail -n 20 "$WORK/standalone.log" >&2; exit 1; }

zaqar_before="$(cpu_ticks "$ZAQAR_PID")"
redis_before="$(cpu_ticks "$REDIS_PID")"
idle_before="$(idle_ticks)"
log "balanced flow for $DURATION: $PRODUCERS producers, $CONSUMERS consumers (claim $CLAIM_LIMIT, wait $WAIT s${DELETES:+, bulk delete})"
"$BENCH" --url "http://127.0.0.1:$port" --duration "$DURATION" --queues 1 \
    --message-size 256 --producers "$PRODUCERS" --consumers "$CONSUMERS" --observers 0 \
    --batch 1 --claim-limit "$CLAIM_LIMIT" --wait "$WAIT" --project bench-flow --queue-prefix bench-flow \
    --timeout 10s --label "standalone flow" --json "$OUT/flow.json" "${DELETES[@]}" &
BENCH_PID="$!"
bench_ticks=0
while kill -0 "$BENCH_PID" 2>/dev/null; do
    bench_ticks="$(cpu_ticks "$BENCH_PID" 2>/dev/null || echo "$bench_ticks")"
    sleep 0.2
done
wait "$BENCH_PID"
echo "zaqar $(($(cpu_ticks "$ZAQAR_PID") - zaqar_before))" > "$OUT/ticks.txt"
echo "redis $(($(cpu_ticks "$REDIS_PID") - redis_before))" >> "$OUT/ticks.txt"
echo "bench $bench_ticks" >> "$OUT/ticks.txt"
echo "idle $(($(idle_ticks) - idle_before))" >> "$OUT/ticks.txt"

python3 - "$OUT" "$(getconf CLK_TCK)" <<'PY' | tee "$OUT/summary.txt"
"""The balanced flow's rates and the CPU split of its run."""
import json, os, sys

out, hz = sys.argv[1], int(sys.argv[2])
with open(os.path.join(out, "flow.json")) as f:
    report = json.load(f)
ticks = dict(line.split() for line in open(os.path.join(out, "ticks.txt")))
roles = {r["role"]: r for r in report["roles"]}
ops = {o["op"]: o for o in roles["consumer"]["ops"]}
seconds = report["elapsed_s"]
requests = report["total"]["requests_per_s"] * seconds
print(f"balanced flow, {seconds:.0f} s, standalone on Redis (AOF everysec)")
print(f"  posted:   {roles['producer']['messages_per_s']:9.0f} messages/s"
      f"  (post p50 {roles['producer']['latency_ms']['p50']:.2f} ms,"
      f" p99 {roles['producer']['latency_ms']['p99']:.2f} ms)")
deleted = "a claim's messages per request" if report["settings"]["bulk_delete"] else "one per request"
print(f"  consumed: {ops['delete']['messages_per_s']:9.0f} messages/s"
      f"  (claim p50 {ops['claim']['latency_ms']['p50']:.2f} ms,"
      f" delete p50 {ops['delete']['latency_ms']['p50']:.2f} ms,"
      f" p99 {ops['delete']['latency_ms']['p99']:.2f} ms)")
print(f"  claims:   {ops['claim']['requests']} taking {ops['claim']['messages']} messages;"
      f" deletes: {ops['delete']['requests']} ({deleted})")
print(f"  errors:   {report['total']['errors']}")
print(f"CPU over the run ({requests:.0f} requests):")
for name in ("zaqar", "redis", "bench", "idle"):
    cpu = int(ticks[name]) / hz
    print(f"  {name:6} {cpu:6.2f} s  {cpu / seconds:5.2f} cores  {cpu / requests * 1e6:6.1f} us per request")
PY
