#!/usr/bin/env bash
# Deep-queue benchmark (not a test; `BENCH_SUITE=depth scripts/bench.sh` runs it): what a
# claim, a pop, a default listing, a post and the queue's stats cost in one queue of
# increasing depth whose older half is in flight (claimed), on every store, and what
# another project's posts cost while four consumers drain that queue on the same pool.
#
# For each target and depth it starts the server afresh, fills one queue with
# zaqar-bench --prefill DEPTH --prefill-claimed DEPTH/2, then runs one producer (1
# message per post), one consumer (claims 1, deletes it), one observer (default listing
# of 10 from the head of the queue), one popper (pops 1) and one stats reader together
# for BENCH_DURATION. At the deepest depth it then measures the noisy neighbour: one
# producer of another project posting single messages to its own queue, first alone,
# then while 4 consumers (claims of 10) drain the deep queue. It prints the table of
# p50/p99 per operation and depth, the growth from the shallowest to the deepest, and
# the neighbour's figures; the JSON reports stay in $BENCH_OUT.
#
# Knobs (environment):
#   BENCH_DEPTH_TARGETS="reference redis sqlite mongodb"   servers: the reference Zaqar
#       (Redis), zaqar-rs standalone on Redis, on its embedded SQLite store, on MongoDB
#       (SecantusDB, built by scripts/setup-deps.sh; zaqar-rs is built with mongodb)
#   BENCH_DEPTHS="1000 100000 1000000"            queue depths for zaqar-rs
#   BENCH_REFERENCE_DEPTHS="1000 10000 100000"     for the reference, whose claims cost
#       in proportion to the messages in flight: filling a queue of 1,000,000 with
#       500,000 claimed takes it hours
#   BENCH_MONGODB_DEPTHS="1000 10000 100000"   for SecantusDB, on which filling a queue
#       is slow (about a minute for 100,000; docs/benchmarks.md)
#   BENCH_DURATION=10s   BENCH_BUILD=1   BENCH_OUT=target/bench-depth
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
TARGETS="${BENCH_DEPTH_TARGETS:-reference redis sqlite mongodb}"
DEPTHS="${BENCH_DEPTHS:-1000 100000 1000000}"
REFERENCE_DEPTHS="${BENCH_REFERENCE_DEPTHS:-1000 10000 100000}"
MONGODB_DEPTHS="${BENCH_MONGODB_DEPTHS:-1000 10000 100000}"
DURATION="${BENCH_DURATION:-10s}"
SECANTUSD="${ZAQAR_SECANTUS_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/zaqar-rs/secantus}/bin/secantusd-rs"
MONGO_PORT=""

start_target() {  # target depth: a fresh server; sets TARGET_URL; non-zero if it failed
    local target="$1" depth="$2" port ws
    free_port port
    free_port ws
    TARGET_URL="http://127.0.0.1:$port"
    redis-cli -p "$REDIS_PORT" flushall > /dev/null
    local store
    case "$target" in
    reference) start_reference "$port" "$ws" || return 1 ;;
    redis) store="redis://127.0.0.1:$REDIS_PORT/1" ;;
    sqlite) store="sqlite://$WORK/sqlite-$depth/messages.db" ;;
    mongodb) store="mongodb://127.0.0.1:$MONGO_PORT/deep_$depth?replicaSet=secantus" ;;
    esac
    if [[ "$target" != reference ]]; then
        spawn "$target-$depth" env RUST_LOG=warn "$ZAQAR" standalone \
            --listen "127.0.0.1:$port" --ws-listen "127.0.0.1:$ws" \
            --data-dir "$WORK/$target-$depth" --pool-uri "$store"
    fi
    wait_ready "$TARGET_URL" 60
}

bench() {  # name flags...: one zaqar-bench run, its report in $OUT/name.json
    local name="$1"; shift
    "$BENCH" --url "$TARGET_URL" --duration "$DURATION" --timeout 30s --queues 1 \
        --message-size 256 --label "$name" --json "$OUT/$name.json" "$@" \
        | tee "$OUT/$name.txt"
}

deep_run() {  # target depth: the four operations on a queue of depth messages, half claimed
    local target="$1" depth="$2"
    log "$target: depth $depth"
    bench "deep-$target-$depth" --project deep --queue-prefix deep \
        --prefill "$depth" --prefill-claimed "$((depth / 2))" --keep-queues \
        --producers 1 --batch 1 --consumers 1 --claim-limit 1 \
        --observers 1 --list-limit 10 --list-from-head --poppers 1 --stats-readers 1
}

neighbour_runs() {  # target: another project's posts, alone, then during a drain
    local target="$1" drain
    log "$target: noisy neighbour"
    bench "neighbour-$target-alone" --project neighbour --queue-prefix neighbour \
        --producers 1 --batch 1 --consumers 0 --observers 0
    bench "drain-$target" --project deep --queue-prefix deep --reuse-queues --keep-queues \
        --producers 0 --consumers 4 --claim-limit 10 --observers 0 > /dev/null &
    drain=$!
    bench "neighbour-$target-drain" --project neighbour --queue-prefix neighbour \
        --producers 1 --batch 1 --consumers 0 --observers 0
    wait "$drain"
}

# ------------------------------------------------------------------------------ run ---
prepare_run bench-depth --features zaqar-pool-node/mongodb
start_redis
if [[ " $TARGETS " == *" mongodb "* ]]; then
    if [[ -x "$SECANTUSD" ]]; then
        free_port MONGO_PORT
        "$SECANTUSD" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$WORK/mongo" \
            --cache-size 1G --log-file-max 16MB --sync-on-commit > "$WORK/mongo.log" 2>&1 &
        EXTRA_PIDS+=("$!")
        for _ in $(seq 40); do
            python3 -c "import socket; socket.create_connection(('127.0.0.1', $MONGO_PORT), 1)" \
                2> /dev/null && break
            sleep 0.25
        done
    else
        log "WARNING: no $SECANTUSD (scripts/setup-deps.sh builds it): mongodb skipped"
        TARGETS="${TARGETS/mongodb/}"
    fi
fi

for target in $TARGETS; do
    case "$target" in
    reference) depths="$REFERENCE_DEPTHS" ;;
    mongodb) depths="$MONGODB_DEPTHS" ;;
    *) depths="$DEPTHS" ;;
    esac
    last=""
    for depth in $depths; do
        if ! start_target "$target" "$depth"; then
            log "WARNING: $target did not come up; skipped (logs: $WORK)"
            stop_target "$target"
            continue 2
        fi
        deep_run "$target" "$depth" || log "WARNING: $target depth $depth failed"
        last="$depth"
        [[ "$depth" == "${depths##* }" ]] && { neighbour_runs "$target" || log "WARNING: $target neighbour runs failed"; }
        stop_target "$target"
    done
    echo "$last" > "$OUT/deepest-$target.txt"
done

# ---------------------------------------------------------------------------- table ---
python3 - "$OUT" "$TARGETS" <<'PY' | tee "$OUT/summary.txt"
"""The deep-queue tables: p50/p99 per operation and depth, growth, the noisy neighbour."""
import glob, json, os, re, sys

out, targets = sys.argv[1], sys.argv[2].split()
OPS = [("claim", "consumer", "claim"), ("pop", "popper", "pop"),
       ("list", "observer", "list"), ("post", "producer", "post"),
       ("stats", "stats_reader", "stats")]


def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None


def op(report, role, name):
    for r in report["roles"]:
        if r["role"] == role:
            for o in r["ops"]:
                if o["op"] == name:
                    return o
    return None


def depths(target):
    found = []
    for path in glob.glob(os.path.join(out, f"deep-{target}-*.json")):
        found.append(int(re.search(r"-(\d+)\.json$", path).group(1)))
    return sorted(found)


print("\n== deep queue: one queue, half of it claimed at its head; latency in ms ==")
header = f"{'target':<10}{'depth':>10}" + "".join(f"{n + ' p50':>12}{n + ' p99':>12}" for n, _, _ in OPS)
print(header + f"{'errors':>8}")
print("-" * (len(header) + 8))
growth = []
for t in targets:
    ds = depths(t)
    for d in ds:
        r = load(f"deep-{t}-{d}.json")
        cells = ""
        for name, role, opname in OPS:
            o = op(r, role, opname)
            lat = o["latency_ms"] if o else None
            cells += f"{lat['p50']:>12.2f}{lat['p99']:>12.2f}" if lat else f"{'-':>12}{'-':>12}"
        print(f"{t:<10}{d:>10}{cells}{r['total']['errors']:>8}")
    if len(ds) >= 2:
        lo, hi = load(f"deep-{t}-{ds[0]}.json"), load(f"deep-{t}-{ds[-1]}.json")
        row = []
        for name, role, opname in OPS:
            a, b = op(lo, role, opname), op(hi, role, opname)
            row.append(b["latency_ms"]["p50"] / a["latency_ms"]["p50"] if a and b and a["latency_ms"]["p50"] else None)
        growth.append((t, ds[0], ds[-1], row))

print("\n== cost growth: p50 at the deepest / p50 at the shallowest (target: <= 2x) ==")
print(f"{'target':<10}{'from':>10}{'to':>10}" + "".join(f"{n:>10}" for n, _, _ in OPS))
for t, lo, hi, row in growth:
    print(f"{t:<10}{lo:>10}{hi:>10}" + "".join(f"{(f'{x:.2f}x' if x else '-'):>10}" for x in row))

print("\n== noisy neighbour: another project's single-message posts, ms ==")
print(f"{'target':<10}{'deep queue':>12}{'alone p50':>11}{'alone p99':>11}{'drain p50':>11}{'drain p99':>11}{'drain claims/s':>16}")
for t in targets:
    alone, during, drain = load(f"neighbour-{t}-alone.json"), load(f"neighbour-{t}-drain.json"), load(f"drain-{t}.json")
    if not (alone and during and drain):
        continue
    deepest = open(os.path.join(out, f"deepest-{t}.txt")).read().strip()
    a, d = alone["total"]["latency_ms"], during["total"]["latency_ms"]
    claims = op(drain, "consumer", "claim")
    print(f"{t:<10}{deepest:>12}{a['p50']:>11.2f}{a['p99']:>11.2f}{d['p50']:>11.2f}{d['p99']:>11.2f}"
          f"{claims['requests_per_s'] if claims else 0:>16.0f}")
PY
