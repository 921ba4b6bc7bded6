#!/usr/bin/env bash
# One user's token hammering the user API, and another user's latency meanwhile: the figure
# behind the per-user rate limit (docs/reliability.md, abuse table).
#
#   loadtest/hammer.sh [herald-binary ...]      # default: target/release/herald
#
# For each binary: a fresh database, one node with its default limits (no exemptions), then
# for HAMMER_SECS (default 10) user `mallory` POSTs read-all on HAMMER_CONNS (default 64)
# connections (wrk) while user `bob` GETs his unread count 10 times a second, as a client
# would (curl, one keep-alive connection per batch of 10); prints bob's p50/p99 and how many
# of mallory's requests were served and refused. Needs wrk (apt) and a running PostgreSQL.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PG="${LT_PG:-postgres://postgres@127.0.0.1:5432}"
SECS="${HAMMER_SECS:-10}"
CONNS="${HAMMER_CONNS:-64}"
PORT="${HAMMER_PORT:-18931}"
SECRET="hammer-secret-0123456789abcdef0123456789"
KEY="hammer-service-key-0123456789"
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || BINS=("$ROOT/target/release/herald")
command -v wrk >/dev/null || { echo "hammer: wrk is required (apt-get install wrk)" >&2; exit 2; }
WORK="$(mktemp -d)"
NODE=""
cleanup() {
    [[ -n "$NODE" ]] && kill "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
EOF

for bin in "${BINS[@]}"; do
    db="herald_hammer_$$_$RANDOM"
    psql "$PG/postgres" -Xqc "CREATE DATABASE $db" >/dev/null
    # Shared by `serve` and `token` (the tokens carry neither aud nor iss).
    export HERALD_JWT_HS256_SECRET="$SECRET" HERALD_JWT_ALLOW_ANY_AUDIENCE=true \
        HERALD_JWT_ALLOW_ANY_ISSUER=true
    HERALD_LISTEN="127.0.0.1:$PORT" HERALD_ADMIN_LISTEN=127.0.0.1:0 HERALD_DATABASE_URL="$PG/$db" HERALD_MIGRATE_ON_START=true \
        HERALD_SERVICE_KEYS="$KEY" HERALD_LOG=warn HERALD_WORKERS=1 \
        "$bin" serve >"$WORK/node.log" 2>&1 &
    NODE=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break
        sleep 0.1
    done
    mallory="$("$bin" token --user mallory --ttl-secs 600)"
    bob="$("$bin" token --user bob --ttl-secs 600)"
    for u in mallory bob; do
        curl -fs -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
            -d "{\"recipient\":\"$u\",\"type\":\"t\",\"title\":\"hello\"}" \
            "http://127.0.0.1:$PORT/v1/notifications"
    done
    wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$WORK/post.lua" -H "Authorization: Bearer $mallory" \
        "http://127.0.0.1:$PORT/v1/notifications/read-all" >"$WORK/mallory.txt" 2>&1 &
    hammer=$!
    sleep 1
    : >"$WORK/bob.txt"
    for _ in $(seq $((SECS - 2))); do
        # Ten requests on one connection, 100 ms apart: bob's client at 10 requests a second.
        args=()
        for i in $(seq 10); do
            ((i > 1)) && args+=(--next)
            args+=(-s -o /dev/null -w '%{http_code} %{time_starttransfer}\n'
                -H "Authorization: Bearer $bob" "http://127.0.0.1:$PORT/v1/notifications/unread-count")
        done
        curl "${args[@]}" >>"$WORK/bob.txt" &
        sleep 1
        wait $!
    done
    wait "$hammer"
    bob_n="$(wc -l <"$WORK/bob.txt")"
    bob_ok="$(awk '$1 == 200' "$WORK/bob.txt" | wc -l)"
    read -r p50 p99 < <(awk '{print $2 * 1000}' "$WORK/bob.txt" | sort -n |
        awk '{v[NR] = $1} END {printf "%.1f %.1f\n", v[int(NR * 0.5 + 0.5)], v[int(NR * 0.99 + 0.5)]}')
    mal_n="$(awk '/requests in/ {print $1}' "$WORK/mallory.txt")"
    mal_non2xx="$(awk '/Non-2xx/ {print $NF}' "$WORK/mallory.txt")"
    echo "hammer: $bin: bob p50 ${p50} ms, p99 ${p99} ms ($bob_ok of $bob_n answered 200); mallory $mal_n requests, ${mal_non2xx:-0} refused (non-2xx)"
    kill "$NODE" && wait "$NODE" 2>/dev/null || true
    NODE=""
    psql "$PG/postgres" -Xqc "DROP DATABASE $db WITH (FORCE)" >/dev/null
done
