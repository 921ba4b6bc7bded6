#!/usr/bin/env bash
# Load-test smoke: builds release binaries, starts two gateway nodes (fresh database, fresh
# Redis prefix, free ports), runs every scenario tiny with --check (zero lost / duplicated /
# out-of-order, every socket connected), tears everything down. Exit status non-zero on any
# failure. Needs PostgreSQL (trust, user postgres) and Redis on 127.0.0.1. Fanout and storm
# also go through the nodes' Socket.IO endpoint (--protocol herald-sio). Then the same for
# each baseline (LT_BASELINES, default "socketio nestjs nestjs-prisma"; installed from npm by
# loadtest/baselines/install.sh): fanout and storm through the harness's Socket.IO protocol,
# so the side-by-side bench keeps working.
#
#   loadtest/smoke.sh                    # build + run (< 2 min after the build)
#   LT_SKIP_BUILD=1 loadtest/smoke.sh    # reuse target/release binaries
#   LT_USERS=200 LT_SECS=3 loadtest/smoke.sh
#   LT_BASELINES= loadtest/smoke.sh      # Herald only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

PGHOST_URL="${LT_PG:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${LT_REDIS:-redis://127.0.0.1:6379}"
USERS="${LT_USERS:-50}"
SECS="${LT_SECS:-2}"
BASELINES="${LT_BASELINES-socketio nestjs nestjs-prisma}"
# shellcheck source=baselines/lib.sh
source "$ROOT/loadtest/baselines/lib.sh"
for b in $BASELINES; do
    is_baseline "$b" || { echo "LT_BASELINES: unknown baseline '$b' ($BASELINE_NAMES)" >&2; exit 2; }
done
RUN_ID="lt_smoke_$$_$RANDOM"
DB="herald_${RUN_ID}"
WORK="$(mktemp -d -t herald-lt-smoke.XXXXXX)"
OUT="$WORK/results"
SERVICE_KEY="lt-smoke-service-key-$RANDOM$RANDOM"
JWT_SECRET="lt-smoke-jwt-secret-0123456789abcdef-$RANDOM$RANDOM"
PIDS=()

log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

teardown() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    psql "$PGHOST_URL/postgres" -qAtc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    if ((rc != 0)); then
        log "FAILED (exit $rc); gateway logs:"
        tail -n 30 "$WORK"/node-*.log >&2 2>/dev/null || true  # Herald's and the baselines' nodes
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap teardown EXIT INT TERM

if [[ -z "${LT_SKIP_BUILD:-}" ]]; then
    log "building release binaries"
    cargo build --release -p herald-gateway -p herald-loadtest --features lab
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
HERALD="$TARGET/release/herald"
LT="$TARGET/release/herald-loadtest"
START=$SECONDS

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql "$PGHOST_URL/postgres" -qAtc "CREATE DATABASE \"$DB\"" >/dev/null
PORT_A=$(free_port)
PORT_B=$(free_port)
while [[ "$PORT_B" == "$PORT_A" ]]; do PORT_B=$(free_port); done

start_node() { # name port
    HERALD_LISTEN="127.0.0.1:$2" HERALD_ADMIN_LISTEN=127.0.0.1:0 HERALD_NODE_ID="lt-$1" \
    HERALD_DATABASE_URL="$PGHOST_URL/$DB" HERALD_REDIS_URL="$REDIS_URL" \
    HERALD_REDIS_PREFIX="$RUN_ID:" HERALD_SERVICE_KEYS="$SERVICE_KEY" \
    HERALD_JWT_HS256_SECRET="$JWT_SECRET" HERALD_MIGRATE_ON_START=true \
    HERALD_MAX_CONNECTIONS=25000 HERALD_ALLOWED_ORIGINS=http://127.0.0.1 HERALD_LOG=warn \
        "$HERALD" serve >"$WORK/node-$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 150); do
        if curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    log "node $1 did not become ready"; return 1
}
# One after the other: the first one runs the migrations.
start_node a "$PORT_A"
start_node b "$PORT_B"
log "nodes up: a=:$PORT_A (pid ${PIDS[0]}) b=:$PORT_B (pid ${PIDS[1]}), db $DB"

export HERALD_JWT_HS256_SECRET="$JWT_SECRET" HERALD_SERVICE_KEY="$SERVICE_KEY"
COMMON=(--users "$USERS" --targets "ws://127.0.0.1:$PORT_A/v1/ws,ws://127.0.0.1:$PORT_B/v1/ws"
        --gateway-pids "${PIDS[0]},${PIDS[1]}" --workers 2 --timeout 60 --connect-deadline 20
        --results-dir "$OUT" --check --progress 1)
PUB=(--publish-url "http://127.0.0.1:$PORT_A")

log "idle";      "$LT" idle "${COMMON[@]}" --hold "$SECS" --sockets-per-user 2
log "fanout";    "$LT" fanout "${COMMON[@]}" "${PUB[@]}" --rate 200 --duration "$SECS" --grace 10
log "fanout max (10 recipients per call, publishes spread over both nodes)"
"$LT" fanout "${COMMON[@]}" --publish-url "http://127.0.0.1:$PORT_A,http://127.0.0.1:$PORT_B" \
    --rate max --duration "$SECS" --recipients-per-publish 10 --publish-concurrency 16 --grace 10
log "broadcast"; "$LT" broadcast "${COMMON[@]}" "${PUB[@]}" --count 2 --grace 10
log "storm";     "$LT" storm "${COMMON[@]}" "${PUB[@]}" --publish-while-down 200 --rounds 2 --grace 15
# The same nodes through their Socket.IO endpoint: seq-checked fanout, and storm recovery by
# Socket.IO's pid + offset.
SCOMMON=(--protocol herald-sio --users "$USERS" --targets "ws://127.0.0.1:$PORT_A,ws://127.0.0.1:$PORT_B"
         --gateway-pids "${PIDS[0]},${PIDS[1]}" --workers 2 --timeout 60 --connect-deadline 20
         --results-dir "$OUT" --check --progress 1)
log "socket.io endpoint: fanout"; "$LT" fanout "${SCOMMON[@]}" "${PUB[@]}" --rate 200 --duration "$SECS" --grace 10
log "socket.io endpoint: storm";  "$LT" storm "${SCOMMON[@]}" "${PUB[@]}" --publish-while-down 200 --rounds 2 --grace 15

nb=0
for b in $BASELINES; do
    log "baseline $b: install"
    entry=$(loadtest/baselines/install.sh "$(baseline_dir "$b")")
    ports=() bpids=()
    for n in a b; do
        port=$(free_port)
        SIO_LISTEN="127.0.0.1:$port" SIO_NODE_ID="$b-$n" SIO_DATABASE_URL="$PGHOST_URL/$DB" \
        SIO_TABLE="$(baseline_table "$b")" SIO_ORM="$(baseline_orm "$b")" SIO_REDIS_URL="$REDIS_URL" SIO_REDIS_KEY="$RUN_ID:$b" \
        SIO_JWT_SECRET="$JWT_SECRET" SIO_SERVICE_KEYS="$SERVICE_KEY" \
            node "$entry" >"$WORK/node-$b-$n.log" 2>&1 &
        PIDS+=($!); bpids+=($!); ports+=("$port")
        # One after the other: the first creates the table.
        for _ in $(seq 1 150); do
            curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
            sleep 0.1
        done
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { log "$b node $n did not become ready"; exit 1; }
    done
    BCOMMON=(--protocol socketio --users "$USERS" --targets "ws://127.0.0.1:${ports[0]},ws://127.0.0.1:${ports[1]}"
             --gateway-pids "${bpids[0]},${bpids[1]}" --timeout 60 --connect-deadline 20
             --results-dir "$OUT/$b" --check --progress 1)
    log "baseline $b: fanout"
    "$LT" fanout "${BCOMMON[@]}" --publish-url "http://127.0.0.1:${ports[0]}" --rate 200 --duration "$SECS" --grace 10
    log "baseline $b: storm"
    "$LT" storm "${BCOMMON[@]}" --publish-url "http://127.0.0.1:${ports[0]}" --publish-while-down 0 --rounds 1 --grace 15
    nb=$((nb + 2))
done

n=$(find "$OUT" -name '*.json' | wc -l)
if ((n != 7 + nb)); then log "expected $((7 + nb)) result files, found $n"; exit 1; fi
python3 - "$OUT" <<'PY'
import json, pathlib, sys
bad = [str(p) for p in pathlib.Path(sys.argv[1]).rglob("*.json") if not json.loads(p.read_text())["checks"]["passed"]]
sys.exit(f"checks failed in {bad}" if bad else 0)
PY
log "all scenarios passed in $((SECONDS - START))s (after the build)"
