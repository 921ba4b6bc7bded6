#!/usr/bin/env bash
# Herald vs the baselines on this machine. Starts two Herald nodes and two nodes of each
# baseline (loadtest/baselines/socketio: socket.io@4 + Redis adapter + pg, the seed design
# without a framework; loadtest/baselines/nestjs: the same design in the seed's own NestJS
# stack) on the same PostgreSQL database (Herald's tables vs `sio_notifications` /
# `nestjs_notifications` / `nestjs_prisma_notifications`) and the same Redis (distinct key /
# channel prefixes), runs the same scenarios with the same parameters against each system in
# turn, and writes side-by-side Markdown tables (Herald vs each baseline) with ratios to
# loadtest/results/latest.md
# plus a latency-percentile plot (loadtest/results/latest-latency.png, or .svg without
# matplotlib). JSON per run in loadtest/results/bench-<stamp>/<system>/.
#
#   loadtest/bench.sh                       # defaults below: ~6-8 minutes after the build
#   LT_USERS=10000 LT_RATE=1000 loadtest/bench.sh
#   LT_SYSTEMS=herald LT_SKIP_BUILD=1 loadtest/bench.sh
#   LT_HERALD_BIN=/path/to/old/herald LT_SYSTEMS=herald LT_SCENARIOS=... loadtest/bench.sh   # before/after
#   LT_SYSTEMS="herald nestjs" loadtest/bench.sh                   # one baseline
#   LT_SYSTEMS="herald-sio socketio" loadtest/bench.sh             # Herald's Socket.IO endpoint vs the baseline
#   LT_SYSTEMS="herald nestjs nestjs-prisma" loadtest/bench.sh     # NestJS through pg and Prisma
#   LT_RATES="500 1000 2000" LT_SCENARIOS=fanout-rate loadtest/bench.sh   # p99 vs fixed rate
#   LT_SCENARIOS="fanout-max fanout-max-batch100" LT_SYSTEMS=herald loadtest/bench.sh   # a subset
#   LT_MAX_CONCS="16 64 256 1024" LT_SCENARIOS=fanout-max loadtest/bench.sh   # max rate vs publishes in flight
#   LT_REDIS_CLUSTER=$(scripts/redis-cluster.sh seeds) LT_SYSTEMS=herald loadtest/bench.sh   # Herald on a Redis Cluster
#   loadtest/cluster-vs-single.sh           # Herald on a Redis Cluster vs a single Redis, interleaved
#
# Scenarios per system: idle (RSS per connection), fanout at LT_RATE/s (latency at the same
# rate), fanout at max rate (LT_MAX_CONCS publishes in flight), fanout at half of that max,
# broadcast, storm (Herald: drop + publish while down + resume; Socket.IO: drop + reconnect
# only, it has no resume). Herald also runs fanout-max with 100 recipients per call
# (LT_BATCH=0 to skip; the baseline's API has one recipient per call).
# System `herald-sio`: the same two Herald nodes, the sockets on their Socket.IO endpoint
# (/socket.io/, namespace /notifications, auth.token), publishing through Herald's API; its
# storm publishes while down and recovers with Socket.IO's pid + offset. The report puts it
# beside the Socket.IO baseline.
#
# Every process is limited to 20,000 open files here: keep LT_USERS / 2 below ~19,000 per
# gateway node and LT_USERS / LT_WORKERS below 19,000 per harness worker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

PG="${LT_PG:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${LT_REDIS:-redis://127.0.0.1:6379}"
# Redis Cluster seeds (host:port,...): Herald's nodes use the cluster bus (sharded pub/sub)
# instead of LT_REDIS. The baselines keep LT_REDIS.
REDIS_CLUSTER="${LT_REDIS_CLUSTER:-}"
USERS="${LT_USERS:-5000}"
WORKERS="${LT_WORKERS:-1}"
HOLD="${LT_HOLD:-10}"
SECS="${LT_SECS:-20}"
RATE="${LT_RATE:-500}"
# Several fixed rates (a latency-vs-rate curve): runs fanout-rate-<r> for each.
RATES="${LT_RATES:-$RATE}"
# Publishes in flight for the max-rate runs (LT_MAX_CONC: one value). Several values sweep
# them (fanout-max-c<N> each):
# each system's max rate is its best over the sweep, and half max is half of that. Herald's
# group commit needs calls in flight to form batches, a single-threaded baseline queues them,
# so no single value is every system's best (docs/performance.md, "What limits each figure").
MAX_CONCS="${LT_MAX_CONCS:-${LT_MAX_CONC:-16 64 256 1024}}"
for c in $MAX_CONCS; do
    [[ "$c" =~ ^[1-9][0-9]*$ && "$c" -le 8192 ]] || { echo "LT_MAX_CONCS: '$c' is not a count of 1..8192" >&2; exit 2; }
done
GRACE="${LT_GRACE:-10}"
BATCH="${LT_BATCH:-1}"
# Worker threads per Herald node. Two nodes share the two cores with PostgreSQL, Redis and the
# harness, and each baseline node is one Node.js event loop: one worker each is the like-for-like
# setting, and measured faster than two (docs/performance.md, "Settings the benchmarks change").
HERALD_WORKERS="${LT_HERALD_WORKERS:-1}"
SYSTEMS="${LT_SYSTEMS:-herald herald-sio socketio nestjs}"
SCENARIOS="${LT_SCENARIOS:-idle fanout-rate fanout-max fanout-half-max fanout-max-batch100 broadcast storm}"
# shellcheck source=baselines/lib.sh
source "$ROOT/loadtest/baselines/lib.sh"
for s in $SYSTEMS; do
    [[ "$s" == herald || "$s" == herald-sio ]] || is_baseline "$s" || { echo "LT_SYSTEMS: unknown system '$s' (herald, herald-sio, $BASELINE_NAMES)" >&2; exit 2; }
done
RUN_ID="lt_bench_$$_$RANDOM"
DB="herald_${RUN_ID}"
WORK="$(mktemp -d -t herald-lt-bench.XXXXXX)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/loadtest/results/bench-$STAMP"
SERVICE_KEY="lt-bench-service-key-$RANDOM$RANDOM"
JWT_SECRET="lt-bench-jwt-secret-0123456789abcdef-$RANDOM$RANDOM"
PIDS=()
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has() { [[ " $SYSTEMS " == *" $1 "* ]]; }
# fanout-rate-1000 is fanout-rate, fanout-max-c256 is fanout-max.
want() { local n="${1%-[0-9]*}"; n="${n%-c[0-9]*}"; [[ " $SCENARIOS " == *" $n "* ]]; }

teardown() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" --scan --pattern "$RUN_ID:*" 2>/dev/null | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap teardown EXIT INT TERM

if [[ -z "${LT_SKIP_BUILD:-}" ]]; then
    cargo build --release -p herald-gateway -p herald-loadtest --features lab
fi
# LT_HERALD_BIN: another Herald binary (e.g. an earlier commit's, for a before/after run).
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
HERALD="${LT_HERALD_BIN:-$TARGET/release/herald}"
LT="$TARGET/release/herald-loadtest"
for bin in "$HERALD" "$LT"; do
    [[ -x "$bin" ]] || { echo "bench: $bin is missing (build it, or drop LT_SKIP_BUILD)" >&2; exit 2; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports() { local a b; a=$(free_port); b=$(free_port); while [[ "$b" == "$a" ]]; do b=$(free_port); done; echo "$a $b"; }
wait_ready() {
    for _ in $(seq 1 200); do
        curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "node on :$1 did not become ready:"; tail -20 "$2" >&2; return 1
}

declare -A ENTRY
for b in $BASELINE_NAMES; do
    has "$b" || continue
    log "npm ci ($(baseline_dir "$b"))"
    ENTRY[$b]=$(loadtest/baselines/install.sh "$(baseline_dir "$b")")
done

psql "$PG/postgres" -qAtc "CREATE DATABASE \"$DB\"" >/dev/null
mkdir -p "$OUT"

HERALD_PIDS=()
if has herald || has herald-sio; then
    read -r H_A H_B < <(ports)
    if [[ -n "$REDIS_CLUSTER" ]]; then
        BUS_ENV=(HERALD_REDIS_CLUSTER_NODES="$REDIS_CLUSTER")
    else
        BUS_ENV=(HERALD_REDIS_URL="$REDIS_URL")
    fi
    start_herald() {
        env "${BUS_ENV[@]}" HERALD_LISTEN="127.0.0.1:$2" HERALD_ADMIN_LISTEN=127.0.0.1:0 HERALD_NODE_ID="lt-$1" HERALD_DATABASE_URL="$PG/$DB" \
        HERALD_REDIS_PREFIX="$RUN_ID:" HERALD_SERVICE_KEYS="$SERVICE_KEY" \
        HERALD_JWT_HS256_SECRET="$JWT_SECRET" HERALD_MIGRATE_ON_START=true HERALD_MAX_CONNECTIONS=25000 HERALD_MAX_HTTP_CONNECTIONS=2048 HERALD_WORKERS="$HERALD_WORKERS" \
        HERALD_ALLOWED_ORIGINS=http://127.0.0.1 HERALD_LOG=warn "$HERALD" serve >"$WORK/herald-$1.log" 2>&1 &
        PIDS+=($!); HERALD_PIDS+=($!)
        wait_ready "$2" "$WORK/herald-$1.log"
    }
    start_herald a "$H_A"
    start_herald b "$H_B"
    log "herald nodes a=:$H_A b=:$H_B (bus: ${REDIS_CLUSTER:+redis cluster }${REDIS_CLUSTER:-$REDIS_URL})"
fi
declare -A BASE_PORTS BASE_PIDS
for b in $BASELINE_NAMES; do
    has "$b" || continue
    read -r p_a p_b < <(ports)
    BASE_PORTS[$b]="$p_a $p_b"
    start_base() {
        SIO_LISTEN="127.0.0.1:$3" SIO_NODE_ID="$1-$2" SIO_DATABASE_URL="$PG/$DB" SIO_TABLE="$(baseline_table "$1")" SIO_ORM="$(baseline_orm "$1")" \
        SIO_REDIS_URL="$REDIS_URL" SIO_REDIS_KEY="$RUN_ID:$1" SIO_JWT_SECRET="$JWT_SECRET" \
        SIO_SERVICE_KEYS="$SERVICE_KEY" node "${ENTRY[$1]}" >"$WORK/$1-$2.log" 2>&1 &
        PIDS+=($!); BASE_PIDS[$1]="${BASE_PIDS[$1]:+${BASE_PIDS[$1]},}$!"
        wait_ready "$3" "$WORK/$1-$2.log"
    }
    # One after the other: the first creates the table.
    start_base "$b" a "$p_a"
    start_base "$b" b "$p_b"
    log "$b baseline nodes a=:$p_a b=:$p_b"
done
log "results in $OUT"

export HERALD_JWT_HS256_SECRET="$JWT_SECRET" HERALD_SERVICE_KEY="$SERVICE_KEY"
run() {
    local dir="$1" name="$2"; shift 2
    want "$name" || return 0
    log "$(basename "$dir")/$name: $*"
    local rc=0
    "$LT" "$@" --out "$dir/$name.json" || rc=$?
    ((rc == 0)) || log "$(basename "$dir")/$name exited $rc"
}
# Half of the best max-rate run of a system's directory (report.py picks it, as in its table).
half_max() { python3 "$ROOT/loadtest/report.py" --half-max "$1" 2>/dev/null || echo "$RATE"; }

bench_system() {
    local sys="$1" dir="$OUT/$1" targets pub pids proto=()
    mkdir -p "$dir"
    if [[ "$sys" == herald ]]; then
        targets="ws://127.0.0.1:$H_A/v1/ws,ws://127.0.0.1:$H_B/v1/ws"; pub="http://127.0.0.1:$H_A"
        pids="${HERALD_PIDS[0]},${HERALD_PIDS[1]}"
    elif [[ "$sys" == herald-sio ]]; then
        targets="ws://127.0.0.1:$H_A,ws://127.0.0.1:$H_B"; pub="http://127.0.0.1:$H_A"
        pids="${HERALD_PIDS[0]},${HERALD_PIDS[1]}"; proto=(--protocol herald-sio)
    else
        local p_a p_b
        read -r p_a p_b <<<"${BASE_PORTS[$sys]}"
        targets="ws://127.0.0.1:$p_a,ws://127.0.0.1:$p_b"; pub="http://127.0.0.1:$p_a"
        pids="${BASE_PIDS[$sys]}"; proto=(--protocol socketio)
    fi
    local common=("${proto[@]}" --users "$USERS" --workers "$WORKERS" --targets "$targets" --gateway-pids "$pids"
                  --timeout 600 --results-dir "$dir" --progress 5)
    local p=(--publish-url "$pub")
    run "$dir" idle idle "${common[@]}" --hold "$HOLD"
    local r name
    for r in $RATES; do
        name=fanout-rate
        [[ "$RATES" == "$RATE" ]] || name="fanout-rate-$r"
        run "$dir" "$name" fanout "${common[@]}" "${p[@]}" --rate "$r" --duration "$SECS" --grace "$GRACE"
    done
    local c name_max
    for c in $MAX_CONCS; do
        name_max=fanout-max
        [[ "$MAX_CONCS" == "$c" ]] || name_max="fanout-max-c$c"
        run "$dir" "$name_max" fanout "${common[@]}" "${p[@]}" --rate max --duration "$SECS" --publish-concurrency "$c" --grace "$GRACE"
    done
    run "$dir" fanout-half-max fanout "${common[@]}" "${p[@]}" --rate "$(half_max "$dir")" --duration "$SECS" --grace "$GRACE"
    if [[ "$sys" == herald && "$BATCH" == 1 ]]; then
        run "$dir" fanout-max-batch100 fanout "${common[@]}" "${p[@]}" --rate max --duration "$SECS" --recipients-per-publish 100 --publish-concurrency 16 --grace "$GRACE"
    fi
    run "$dir" broadcast broadcast "${common[@]}" "${p[@]}" --count 3
    if [[ "$sys" == herald || "$sys" == herald-sio ]]; then
        run "$dir" storm storm "${common[@]}" "${p[@]}" --publish-while-down 2000 --rounds 2 --connect-concurrency 512
    else
        run "$dir" storm storm "${common[@]}" "${p[@]}" --publish-while-down 0 --rounds 2 --connect-concurrency 512
    fi
}

for s in $SYSTEMS; do bench_system "$s"; done

# Plotting: matplotlib in a venv under target/ if PyPI is reachable, else report.py writes SVG.
PY=python3
if [[ -z "${LT_NO_MPL:-}" ]]; then
    VENV="$ROOT/target/lt-venv"
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
        { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib; } >/dev/null 2>&1 || log "no matplotlib: SVG plot"
    fi
    "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null && PY="$VENV/bin/python"
fi
if [[ -n "${LT_SCENARIOS:-}" ]]; then
    # A subset: the table goes beside its JSON, latest.md keeps the last full comparison.
    "$PY" "$ROOT/loadtest/report.py" "$OUT" --plot "$OUT/latency" > "$OUT/report.md" || true
    log "wrote $OUT/report.md"
    cat "$OUT/report.md"
    exit 0
fi
rm -f "$ROOT/loadtest/results/latest-latency.png" "$ROOT/loadtest/results/latest-latency.svg"
"$PY" "$ROOT/loadtest/report.py" "$OUT" --plot "$ROOT/loadtest/results/latest-latency" > "$ROOT/loadtest/results/latest.md"
log "wrote loadtest/results/latest.md"
cat "$ROOT/loadtest/results/latest.md"
