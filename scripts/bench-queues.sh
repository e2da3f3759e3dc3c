#!/usr/bin/env bash
# Many-queues benchmark (not a test; `BENCH_SUITE=queues scripts/bench.sh` runs it): what
# the number of queues of a project costs `zaqar standalone` (raft catalog and embedded
# store): the first page of GET /v2/queues, a post, the memory of the process, the
# catalog's files and the time a restart takes.
#
# For each count N it starts a fresh `zaqar standalone`, creates N queues with zaqar-bench
# --extra-queues N (16 connections, not measured), then runs one producer (1 message per
# post to one queue) and one queue lister (GET /v2/queues?limit=20) for BENCH_DURATION;
# it reads the resident memory before the queues and after the run, the size of the data
# directory, then restarts the server and times it until /v2/ping answers. It prints one
# table; the JSON reports stay in $BENCH_OUT.
#
# Knobs (environment):
#   BENCH_QUEUE_COUNTS="1000 100000 1000000"   BENCH_DURATION=10s   BENCH_BUILD=1
#   BENCH_OUT=target/bench-queues
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
COUNTS="${BENCH_QUEUE_COUNTS:-1000 100000 1000000}"
DURATION="${BENCH_DURATION:-10s}"

start_standalone() {  # data-dir port ws-port: sets TARGET_PID; non-zero if not ready in 10 min
    spawn "standalone-$(basename "$1")" env RUST_LOG=warn "$ZAQAR" standalone \
        --listen "127.0.0.1:$2" --ws-listen "127.0.0.1:$3" --data-dir "$1"
    TARGET_PID="$LAST_PID"
    wait_ready "http://127.0.0.1:$2" 600
}

prepare_run bench-queues

for count in $COUNTS; do
    data="$WORK/queues-$count"
    free_port port
    free_port ws
    log "standalone with $count queues"
    start_standalone "$data" "$port" "$ws" || { log "WARNING: standalone did not come up"; continue; }
    rss_kib "$TARGET_PID" > "$OUT/rss-before-$count.kib"
    "$BENCH" --url "http://127.0.0.1:$port" --duration "$DURATION" --timeout 30s \
        --project many --queue-prefix many --queues 1 --extra-queues "$count" --keep-queues \
        --producers 1 --batch 1 --consumers 0 --observers 0 --queue-listers 1 --list-limit 20 \
        --label "$count queues" --json "$OUT/queues-$count.json" | tee "$OUT/queues-$count.txt"
    rss_kib "$TARGET_PID" > "$OUT/rss-after-$count.kib"
    du -sk "$data" | cut -f1 > "$OUT/data-$count.kib"
    (cd "$data" && find . -type f -printf '%s %p\n' | sort -k2) > "$OUT/files-$count.txt"
    stop_pid "$TARGET_PID"
    PIDS=()
    started=$(date +%s.%N)
    start_standalone "$data" "$port" "$ws" || log "WARNING: standalone did not restart"
    python3 -c "print($(date +%s.%N) - $started)" > "$OUT/restart-$count.s"
    rss_kib "$TARGET_PID" > "$OUT/rss-restarted-$count.kib"
    stop_pid "$TARGET_PID"
    PIDS=()
done

python3 - "$OUT" "$COUNTS" <<'PY' | tee "$OUT/summary.txt"
"""One table: per queue count, post and queue-list latency, memory, files, restart."""
import json, os, sys

out, counts = sys.argv[1], sys.argv[2].split()


def read(name):
    path = os.path.join(out, name)
    return open(path).read().strip() if os.path.exists(path) else None


def op(report, role):
    for r in report["roles"]:
        if r["role"] == role:
            return r["latency_ms"]
    return None


print("\n== many queues: zaqar standalone (raft catalog, SQLite store), one project ==")
print(f"{'queues':>10}{'post p50':>10}{'post p99':>10}{'list p50':>10}{'list p99':>10}"
      f"{'RSS before':>12}{'RSS after':>11}{'per queue':>11}{'data dir':>10}{'restart s':>11}{'RSS restarted':>15}")
for c in counts:
    report = read(f"queues-{c}.json")
    if not report:
        continue
    report = json.loads(report)
    post, listed = op(report, "producer"), op(report, "lister")
    before, after = int(read(f"rss-before-{c}.kib")), int(read(f"rss-after-{c}.kib"))
    restarted = int(read(f"rss-restarted-{c}.kib") or 0)
    per_queue = (after - before) * 1024 / int(c)
    print(f"{c:>10}{post['p50']:>10.2f}{post['p99']:>10.2f}{listed['p50']:>10.2f}{listed['p99']:>10.2f}"
          f"{before / 1024:>10.1f}Mi{after / 1024:>9.1f}Mi{per_queue:>9.0f} B{int(read(f'data-{c}.kib')) / 1024:>8.1f}Mi"
          f"{float(read(f'restart-{c}.s')):>11.2f}{restarted / 1024:>13.1f}Mi")
PY
