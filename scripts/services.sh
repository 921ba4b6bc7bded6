#!/usr/bin/env bash
# Ensure PostgreSQL and Redis are installed, running and reachable on
# 127.0.0.1 (ports 5432 and 6379). Idempotent: does nothing but check when both
# are already up.
#
#   scripts/services.sh            # run it
#   source scripts/services.sh     # or source it and call herald_services_up
#
# Installs missing packages with apt-get (Debian/Ubuntu, needs root or sudo).
# Tunables: HERALD_SERVICES_TIMEOUT (seconds to wait for each service, default 60).

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

# Run a block with this script's log tag without changing the caller's.
_svc_log() { LOG_TAG=services log "$@"; }
_svc_die() { LOG_TAG=services die "$@"; }

pg_reachable() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }
pg_can_login() {
    PGCONNECT_TIMEOUT=3 psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres \
        -XtAqc 'select 1' </dev/null >/dev/null 2>&1
}
redis_reachable() { [[ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

# Newest installed PostgreSQL major version with a cluster config, if any.
pg_version() {
    local d
    for d in /etc/postgresql/*/main; do
        [[ -d "$d" ]] && basename "$(dirname "$d")"
    done | sort -V | tail -n1
}

pg_install_if_missing() {
    if have pg_ctlcluster && have psql && have pg_isready && [[ -n "$(pg_version)" ]]; then
        return 0
    fi
    _svc_log "PostgreSQL not installed: installing via apt"
    apt_install postgresql postgresql-client
    if [[ -z "$(pg_version)" ]]; then
        # The package normally creates the 'main' cluster; create it if not.
        local v
        v="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
        [[ -n "$v" ]] || _svc_die "PostgreSQL installed but no server version found"
        _svc_log "creating PostgreSQL ${v} cluster 'main'"
        as_root pg_createcluster "$v" main
    fi
}

# Make sure 127.0.0.1 / ::1 connections use trust auth (dev/CI machines only).
pg_configure_trust() {
    local v hba
    v="$(pg_version)"
    hba="/etc/postgresql/${v}/main/pg_hba.conf"
    [[ -f "$hba" ]] || _svc_die "cannot find ${hba}"
    if grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        return 0
    fi
    _svc_log "configuring trust auth for 127.0.0.1 and ::1 in ${hba} (dev setting)"
    local tmp
    tmp="$(mktemp)"
    {
        echo "# Added by herald scripts/services.sh: trust local TCP connections (dev/CI only)"
        echo "host    all    all    127.0.0.1/32    trust"
        echo "host    all    all    ::1/128         trust"
        cat "$hba"
    } >"$tmp"
    as_root cp "$tmp" "$hba"
    rm -f "$tmp"
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main reload 2>/dev/null ||
        as_root pg_ctlcluster "$v" main reload || true
}

pg_start() {
    local v
    v="$(pg_version)"
    _svc_log "PostgreSQL ${v} not reachable on ${PG_HOST}:${PG_PORT}: starting cluster ${v}/main"
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>/dev/null ||
        as_root pg_ctlcluster "$v" main start ||
        pg_reachable || _svc_die "could not start PostgreSQL (see /var/log/postgresql/)"
}

ensure_postgres() {
    local timeout="${HERALD_SERVICES_TIMEOUT:-60}"
    pg_install_if_missing
    if ! pg_reachable; then
        pg_start
    fi
    wait_until "pg_isready -h ${PG_HOST}" "$timeout" pg_reachable ||
        _svc_die "PostgreSQL is not accepting connections on ${PG_HOST}:${PG_PORT}"
    if ! pg_can_login; then
        pg_configure_trust
        wait_until "psql login as postgres" 15 pg_can_login ||
            _svc_die "PostgreSQL is up but 'psql -h ${PG_HOST} -U postgres' fails (check pg_hba.conf)"
    fi
    _svc_log "PostgreSQL ready on ${PG_HOST}:${PG_PORT} (user postgres, trust auth)"
}

redis_install_if_missing() {
    if have redis-server && have redis-cli; then
        return 0
    fi
    _svc_log "Redis not installed: installing via apt"
    apt_install redis-server redis-tools
}

redis_start() {
    local dir=/var/lib/redis logdir=/var/log/redis
    if [[ "$(id -u)" -ne 0 ]]; then
        dir="${XDG_STATE_HOME:-$HOME/.local/state}/herald/redis"
        logdir="$dir"
    fi
    mkdir -p "$dir" "$logdir" 2>/dev/null || as_root mkdir -p "$dir" "$logdir"
    _svc_log "Redis not reachable on ${REDIS_HOST}:${REDIS_PORT}: starting redis-server (no persistence)"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$dir" --logfile "$logdir/ci.log" >/dev/null ||
        _svc_die "redis-server failed to start (see $logdir/ci.log)"
}

ensure_redis() {
    local timeout="${HERALD_SERVICES_TIMEOUT:-60}"
    redis_install_if_missing
    if ! redis_reachable; then
        redis_start
    fi
    wait_until "redis-cli -h ${REDIS_HOST} ping" "$timeout" redis_reachable ||
        _svc_die "Redis is not answering PING on ${REDIS_HOST}:${REDIS_PORT}"
    _svc_log "Redis ready on ${REDIS_HOST}:${REDIS_PORT}"
}

herald_services_up() {
    have curl || apt_install curl ca-certificates
    ensure_postgres
    ensure_redis
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    LOG_TAG=services
    herald_services_up
fi
