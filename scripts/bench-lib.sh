# Helpers shared by the scripts/bench*.sh benchmarks (sourced, not run).
# The caller sets ROOT; this sets WORK (a fresh temporary directory), the list of
# PIDs to stop, a trap that stops everything started and removes WORK on exit, and
# where the release binaries are (ZAQAR, BENCH).

REF_DIR="${ZAQAR_REFERENCE_DIR:-$ROOT/../shared/reference-zaqar}"
ZAQAR="$ROOT/target/release/zaqar"
BENCH="$ROOT/target/release/zaqar-bench"
WORK="$(mktemp -d /tmp/zaqar-bench.XXXXXX)"
REDIS_PID=""
PIDS=()          # the zaqar-rs processes of the current target
EXTRA_PIDS=()    # servers that live for the whole run (besides Redis)
REF_STARTED=0

log() { printf '[bench] %s\n' "$*" >&2; }

USED_PORTS=" "
free_port() {  # VAR: sets VAR to a free port, different from those handed out before
    local candidate
    while :; do
        candidate="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
        [[ "$USED_PORTS" == *" $candidate "* ]] || break
    done
    USED_PORTS+="$candidate "
    printf -v "$1" '%s' "$candidate"
}

stop_pid() {  # pid: TERM, then KILL after 10 s
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
}

# start-zaqar.sh patches the shared virtualenv for the reference's list bug; put it
# back as it was for the other users of that virtualenv.
VENV="${ZAQAR_VENV:-/tmp/zaqar-venv}"
list_bug_patched() {
    grep -qs "PATCHED by start-zaqar.sh" "$VENV"/lib/python3*/site-packages/zaqar/storage/redis/messages.py
}
PATCHED_BEFORE=0
list_bug_patched && PATCHED_BEFORE=1

stop_reference() {
    if ((REF_STARTED)); then
        ZAQAR_RUN="$WORK/reference" "$REF_DIR/stop-zaqar.sh" >&2 || true
        REF_STARTED=0
        if ((!PATCHED_BEFORE)) && list_bug_patched; then
            ZAQAR_PATCH_REDIS_LIST_BUG=0 "$REF_DIR/start-zaqar.sh" --install-only >&2 || true
        fi
    fi
}

prepare_run() {  # name [cargo flags...]: sets OUT ($BENCH_OUT, or target/NAME) and
    # empties its reports; then, unless BENCH_BUILD=0, builds the release binaries.
    OUT="${BENCH_OUT:-$ROOT/target/$1}"
    shift
    mkdir -p "$OUT"
    rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.figures
    if [[ "${BENCH_BUILD:-1}" == 1 ]]; then
        log "building release binaries${*:+ ($*)}"
        (cd "$ROOT" && cargo build --release -q -p zaqar-ops --bins "$@")
    fi
}

stop_target() {  # target: stops the reference, or the zaqar-rs processes of PIDS
    if [[ "$1" == reference ]]; then
        stop_reference
        return
    fi
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    PIDS=()
}

cleanup() {
    local i
    stop_reference
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    PIDS=()
    for pid in "${EXTRA_PIDS[@]}"; do stop_pid "$pid"; done
    [[ -n "$REDIS_PID" ]] && stop_pid "$REDIS_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

spawn() {  # name command...: starts it in the background, logs in $WORK/name.log
    local name="$1"; shift
    "$@" > "$WORK/$name.log" 2>&1 < /dev/null &
    PIDS+=("$!")
    LAST_PID="$!"
}

wait_ready() {  # url seconds: until GET /v2/ping answers 204
    local i code
    for ((i = 0; i < $2 * 4; i++)); do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            -H 'Client-ID: 3381af92-2b9e-11e3-b191-71861300734c' \
            -H 'X-Project-ID: bench' "$1/v2/ping" || true)"
        [[ "$code" == 204 ]] && return 0
        sleep 0.25
    done
    return 1
}

rss_kib() {  # pid...: summed VmRSS in KiB
    local total=0 pid kib
    for pid in "$@"; do
        kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

start_redis() {  # [redis-server flags...]: sets REDIS_PORT and REDIS_PID: a private Redis,
    # without persistence unless the flags say otherwise
    free_port REDIS_PORT
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$WORK" "$@" > "$WORK/redis.log" 2>&1 < /dev/null &
    REDIS_PID="$!"
    for _ in $(seq 40); do redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1 && break; sleep 0.25; done
    log "redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"
}

start_reference() {  # http-port ws-port: the reference Zaqar (gunicorn) on Redis database 0
    mkdir -p "$WORK/reference"
    REF_STARTED=1
    ZAQAR_RUN="$WORK/reference" ZAQAR_HTTP_SERVER=gunicorn ZAQAR_PATCH_REDIS_LIST_BUG=1 \
        REDIS_PORT="$REDIS_PORT" ZAQAR_HTTP_PORT="$1" ZAQAR_WS_PORT="$2" \
        "$REF_DIR/start-zaqar.sh" >&2 || return 1
    TARGET_PID="$(cat "$WORK/reference/zaqar-http.pid")"
}
