#!/usr/bin/env bash
# Bigger load-test runs on this machine: two gateway nodes (fresh database and Redis prefix),
# then idle / fanout (fixed rate, max, max with batched recipients) / broadcast / storm, and a
# Markdown table of the results in loadtest/results/latest.md (JSON per run beside it).
#
#   loadtest/bench.sh                         # defaults below, ~5 minutes after the build
#   LT_USERS=20000 LT_WORKERS=2 loadtest/bench.sh
#   LT_SKIP_BUILD=1 loadtest/bench.sh
#
# Each gateway process and each harness worker is limited to 20,000 open files here: keep
# users * sockets-per-user / 2 below ~19,000 per gateway (or add nodes) and per worker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

PG="${LT_PG:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${LT_REDIS:-redis://127.0.0.1:6379}"
USERS="${LT_USERS:-10000}"
WORKERS="${LT_WORKERS:-2}"
HOLD="${LT_HOLD:-30}"
SECS="${LT_SECS:-20}"
RATE="${LT_RATE:-1000}"
RUN_ID="lt_bench_$$_$RANDOM"
DB="herald_${RUN_ID}"
WORK="$(mktemp -d -t herald-lt-bench.XXXXXX)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/loadtest/results/bench-$STAMP"
SERVICE_KEY="lt-bench-service-key-$RANDOM$RANDOM"
JWT_SECRET="lt-bench-jwt-secret-0123456789abcdef-$RANDOM$RANDOM"
PIDS=()
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

teardown() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap teardown EXIT INT TERM

if [[ -z "${LT_SKIP_BUILD:-}" ]]; then
    cargo build --release -p herald-gateway -p herald-loadtest
fi
HERALD="$ROOT/target/release/herald"
LT="$ROOT/target/release/herald-loadtest"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql "$PG/postgres" -qAtc "CREATE DATABASE \"$DB\"" >/dev/null
PORT_A=$(free_port); PORT_B=$(free_port)
while [[ "$PORT_B" == "$PORT_A" ]]; do PORT_B=$(free_port); done
start_node() {
    HERALD_LISTEN="127.0.0.1:$2" HERALD_NODE_ID="lt-$1" HERALD_DATABASE_URL="$PG/$DB" \
    HERALD_REDIS_URL="$REDIS_URL" HERALD_REDIS_PREFIX="$RUN_ID:" HERALD_SERVICE_KEYS="$SERVICE_KEY" \
    HERALD_JWT_HS256_SECRET="$JWT_SECRET" HERALD_MIGRATE_ON_START=true HERALD_MAX_CONNECTIONS=25000 \
    HERALD_ALLOWED_ORIGINS=http://127.0.0.1 HERALD_LOG=warn "$HERALD" serve >"$WORK/node-$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 150); do
        curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "node $1 did not become ready"; return 1
}
start_node a "$PORT_A"
start_node b "$PORT_B"
log "nodes a=:$PORT_A b=:$PORT_B; results in $OUT"

export HERALD_JWT_HS256_SECRET="$JWT_SECRET" HERALD_SERVICE_KEY="$SERVICE_KEY"
COMMON=(--users "$USERS" --workers "$WORKERS" --targets "ws://127.0.0.1:$PORT_A/v1/ws,ws://127.0.0.1:$PORT_B/v1/ws"
        --gateway-pids "${PIDS[0]},${PIDS[1]}" --timeout 600 --results-dir "$OUT" --progress 5)
PUB=(--publish-url "http://127.0.0.1:$PORT_A")
run() { local name="$1"; shift; log "$name: $*"; "$LT" "$@" --out "$OUT/$name.json" || log "$name exited $?"; }

run idle idle "${COMMON[@]}" --hold "$HOLD"
run fanout-rate fanout "${COMMON[@]}" "${PUB[@]}" --rate "$RATE" --duration "$SECS"
run fanout-max fanout "${COMMON[@]}" "${PUB[@]}" --rate max --duration "$SECS" --publish-concurrency 64
run fanout-max-batch100 fanout "${COMMON[@]}" "${PUB[@]}" --rate max --duration "$SECS" --recipients-per-publish 100 --publish-concurrency 16
run broadcast broadcast "${COMMON[@]}" "${PUB[@]}" --count 3
run storm storm "${COMMON[@]}" "${PUB[@]}" --publish-while-down 2000 --rounds 2 --connect-concurrency 512

python3 "$ROOT/loadtest/report.py" "$OUT" > "$ROOT/loadtest/results/latest.md"
log "wrote loadtest/results/latest.md"
cat "$ROOT/loadtest/results/latest.md"
