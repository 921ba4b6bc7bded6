#!/usr/bin/env bash
# Scale run: as many gateway processes as it takes (each process here is limited to 20,000
# open files), N idle authenticated sockets spread over them, held with heartbeats, then the
# idle report (connect rate, RSS per connection per gateway, kernel socket memory, drops).
#
#   loadtest/scale.sh                                  # 200,000 sockets, 11 nodes, hold 300 s
#   LT_USERS=100000 LT_NODES=6 LT_HOLD=60 loadtest/scale.sh
#   LT_SKIP_BUILD=1 ...                                # reuse target/release binaries
#   LT_SCENARIO=fanout LT_USERS=100000 LT_EXTRA="--rate 1000 --duration 20 --grace 15" \
#       loadtest/scale.sh                              # any scenario with N sockets attached
#   LT_SYSTEM=socketio LT_USERS=100000 LT_HOLD=30 loadtest/scale.sh
#                                                      # the Socket.IO baseline, same harness
#   LT_SYSTEM=nestjs ...                               # the NestJS baseline
#   LT_SYSTEM=nestjs-prisma ...                        # the NestJS baseline writing through Prisma
#
# Every node gets HERALD_MAX_CONNECTIONS=LT_PER_NODE (default 19,500: the descriptor limit
# less what the pools need) and a small database pool (LT_POOL, default 3), so N nodes fit
# PostgreSQL's max_connections. Results: loadtest/results/scale-<stamp>/ (JSON from the harness, node logs,
# summary.txt). Exit status non-zero if any socket failed to connect or was dropped (--check).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

USERS="${LT_USERS:-200000}"
PER_NODE="${LT_PER_NODE:-19500}"
NODES="${LT_NODES:-$(( (USERS + PER_NODE - 1) / PER_NODE ))}"
HOLD="${LT_HOLD:-300}"
SCENARIO="${LT_SCENARIO:-idle}"
SYSTEM="${LT_SYSTEM:-herald}"
# shellcheck source=baselines/lib.sh
source "$ROOT/loadtest/baselines/lib.sh"
[[ "$SYSTEM" == herald ]] || is_baseline "$SYSTEM" || { echo "LT_SYSTEM must be herald or one of: $BASELINE_NAMES, not '$SYSTEM'" >&2; exit 2; }
BASE_PORT="${LT_BASE_PORT:-19300}"
PG="${LT_PG:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${LT_REDIS:-redis://127.0.0.1:6379}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${LT_OUT:-$ROOT/loadtest/results/scale-$STAMP}"
RUN_ID="lt_scale_$$_$RANDOM"
DB="herald_${RUN_ID}"
SERVICE_KEY="lt-scale-service-key-$RANDOM$RANDOM"
JWT_SECRET="lt-scale-jwt-secret-0123456789abcdef-$RANDOM$RANDOM"
PIDS=()

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

teardown() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    ((rc == 0)) || log "FAILED (exit $rc); node logs in $OUT"
    exit "$rc"
}
trap teardown EXIT INT TERM

scripts/services.sh >/dev/null
if [[ -z "${LT_SKIP_BUILD:-}" ]]; then
    log "building release binaries"
    cargo build --release -p herald-gateway -p herald-loadtest --features lab
fi
# LT_HERALD_BIN: another Herald binary (e.g. an earlier commit's, for a before/after run).
HERALD="${LT_HERALD_BIN:-$ROOT/target/release/herald}"
LT="$ROOT/target/release/herald-loadtest"
mkdir -p "$OUT"
psql "$PG/postgres" -qAtc "CREATE DATABASE \"$DB\"" >/dev/null
HERALD_DATABASE_URL="$PG/$DB" "$HERALD" migrate >"$OUT/migrate.log" 2>&1

wait_ready() {
    for _ in $(seq 1 200); do
        curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "node on :$1 not ready"; return 1
}

TARGETS=()
PROTO=()
if [[ "$SYSTEM" != herald ]]; then
    ENTRY=$(loadtest/baselines/install.sh "$(baseline_dir "$SYSTEM")")
    PROTO=(--protocol socketio)
    for i in $(seq 1 "$NODES"); do
        port=$((BASE_PORT + i))
        SIO_LISTEN="127.0.0.1:$port" SIO_NODE_ID="$SYSTEM-$i" SIO_DATABASE_URL="$PG/$DB" \
        SIO_TABLE="$(baseline_table "$SYSTEM")" SIO_ORM="$(baseline_orm "$SYSTEM")" SIO_PG_POOL="${LT_POOL:-3}" SIO_REDIS_URL="$REDIS_URL" \
        SIO_REDIS_KEY="$RUN_ID:$SYSTEM" SIO_JWT_SECRET="$JWT_SECRET" SIO_SERVICE_KEYS="$SERVICE_KEY" \
            node "$ENTRY" >"$OUT/node-$i.log" 2>&1 &
        PIDS+=($!)
        TARGETS+=("ws://127.0.0.1:$port")
        # One after the other: the first creates the table.
        wait_ready "$port"
    done
fi
for i in $(seq 1 "$NODES"); do
    [[ "$SYSTEM" == herald ]] || break
    port=$((BASE_PORT + i))
    HERALD_LISTEN="127.0.0.1:$port" HERALD_ADMIN_LISTEN="127.0.0.1:$((port + 100))" HERALD_NODE_ID="scale-$i" \
    HERALD_DATABASE_URL="$PG/$DB" HERALD_DATABASE_POOL_SIZE="${LT_POOL:-3}" HERALD_REDIS_URL="$REDIS_URL" \
    HERALD_REDIS_PREFIX="$RUN_ID:" HERALD_SERVICE_KEYS="$SERVICE_KEY" \
    HERALD_JWT_HS256_SECRET="$JWT_SECRET" HERALD_MAX_CONNECTIONS="$PER_NODE" HERALD_MAX_HTTP_CONNECTIONS=256 \
    HERALD_WORKERS=1 HERALD_ALLOWED_ORIGINS=http://127.0.0.1 HERALD_LOG=warn \
        "$HERALD" serve >"$OUT/node-$i.log" 2>&1 &
    PIDS+=($!)
    TARGETS+=("ws://127.0.0.1:$port/v1/ws")
done
for i in $(seq 1 "$NODES"); do
    wait_ready $((BASE_PORT + i)) || exit 1
done
log "$NODES $SYSTEM nodes up; $USERS sockets, hold ${HOLD}s"

T=$(IFS=,; echo "${TARGETS[*]}")
GP=$(IFS=,; echo "${PIDS[*]}")
ARGS=("${PROTO[@]}" --users "$USERS" --targets "$T" --gateway-pids "$GP" --connect-deadline 600
      --results-dir "$OUT" --progress 10 --check)
if [[ "$SCENARIO" == idle ]]; then
    ARGS+=(--hold "$HOLD" --timeout $((HOLD + 900)))
else
    ARGS+=(--publish-url "http://127.0.0.1:$((BASE_PORT + 1))" --timeout 1200)
fi
# shellcheck disable=SC2086 # LT_EXTRA is a list of options
HERALD_JWT_HS256_SECRET="$JWT_SECRET" HERALD_SERVICE_KEY="$SERVICE_KEY" \
    "$LT" "$SCENARIO" "${ARGS[@]}" ${LT_EXTRA:-} 2>&1 | tee "$OUT/summary.txt"
rc=${PIPESTATUS[0]}
for i in $(seq 1 "$NODES"); do
    port=$((BASE_PORT + i))
    curl -fsS "http://127.0.0.1:$((port + 100))/metrics" -o "$OUT/metrics-node-$i.txt" 2>/dev/null || continue
    grep -E '^herald_(connections|accept_errors_total|socket_task_bytes|syncs_total) |^process_(open_fds|resident_memory_bytes) |^herald_connection_closes_total' "$OUT/metrics-node-$i.txt" |
        sed "s/^/node-$i /" >>"$OUT/summary.txt" || true
done
log "results in $OUT"
exit "$rc"
