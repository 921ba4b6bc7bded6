#!/usr/bin/env bash
# Process-level fault suite (crates/herald-chaos): real herald nodes, a private
# redis-server, haproxy in front, PostgreSQL, thousands of WebSocket clients.
#
#   scripts/chaos.sh            smoke sizes (all scenarios, well under a minute)
#   scripts/chaos.sh --full     full sizes (thousands of sockets and publishes)
#   scripts/chaos.sh [--full] [TEST_NAME_FILTER]
#   scripts/chaos.sh --prepare  only install haproxy and build the release binary
#                               (the smoke tests then also run inside
#                               `cargo nextest run --workspace`: herald-chaos is a
#                               workspace member and finds target/release/herald)
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust, user postgres) -- scripts/services.sh
# starts it -- and redis-server on PATH (no shared Redis is used: each test runs
# its own). Installs haproxy (apt) when missing, builds the release binary,
# then runs `cargo test -p herald-chaos`. Figures are printed and appended to
# target/chaos-results.jsonl; node/haproxy/redis logs go to target/chaos-logs/.

set -euo pipefail
LOG_TAG="chaos"
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$HERALD_ROOT"

FULL=0
PREPARE=0
FILTER=()
for arg in "$@"; do
    case "$arg" in
    --full) FULL=1 ;;
    --prepare) PREPARE=1 ;;
    -h | --help)
        sed -n '2,17p' "$0"
        exit 0
        ;;
    *) FILTER+=("$arg") ;;
    esac
done

if [[ ! -x /usr/sbin/haproxy ]] && ! have haproxy; then
    log "haproxy not installed: installing via apt"
    apt_install haproxy
    # The Debian package may start a system haproxy; it is not ours, stop it.
    if pgrep -f '/etc/haproxy/haproxy.cfg' >/dev/null 2>&1; then
        as_root service haproxy stop >/dev/null 2>&1 || true
    fi
fi
have redis-server || die "redis-server not on PATH (apt-get install -y redis-server)"
have psql || die "psql not on PATH (scripts/services.sh sets up PostgreSQL)"

log "cargo build --release -p herald-gateway --features lab --bin herald"
cargo build --release -p herald-gateway --features lab --bin herald
export HERALD_CHAOS_BIN="${CARGO_TARGET_DIR:-$HERALD_ROOT/target}/release/herald"
[[ -x "$HERALD_CHAOS_BIN" ]] || die "$HERALD_CHAOS_BIN missing after the build"
if ((PREPARE)); then
    log "prepared: haproxy installed, $HERALD_CHAOS_BIN built"
    exit 0
fi

# Leftover databases of killed runs (ones still in use belong to a running suite).
psql -h 127.0.0.1 -U postgres -d postgres -XtAq </dev/null -c \
    "select d.datname from pg_database d
      where d.datname like 'herald\\_chaos\\_%'
        and not exists (select 1 from pg_stat_activity a where a.datname = d.datname)" |
    while IFS= read -r db; do
        [[ -n "$db" ]] || continue
        psql -h 127.0.0.1 -U postgres -d postgres -Xq </dev/null \
            -c "drop database if exists \"${db}\"" >/dev/null 2>&1 || true
    done

if ((FULL)); then
    export HERALD_CHAOS_FULL=1
    log "full sizes (HERALD_CHAOS_FULL=1)"
else
    unset HERALD_CHAOS_FULL
fi
# --test-threads=1: the tests serialise on target/chaos.lock anyway.
cargo test -p herald-chaos --test chaos -- --nocapture --test-threads=1 "${FILTER[@]}"
