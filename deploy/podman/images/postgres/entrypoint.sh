#!/usr/bin/env bash
# Entrypoint of the local postgres:15 stand-in (see Dockerfile): as root, fix ownership and
# drop to postgres; on an empty data directory, initdb with POSTGRES_USER/POSTGRES_PASSWORD
# and create POSTGRES_DB; then exec postgres listening on every interface.
set -euo pipefail

if [[ "$(id -u)" -eq 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    # Create the database on a server that listens on the socket only.
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    if [[ "$db" != postgres ]]; then
        psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -Xq \
            -c "create database \"${db//\"/\"\"}\""
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "herald-postgres: initialised $PGDATA (user $user, database $db)"
fi

if [[ "${1:-}" == postgres ]]; then
    shift
    exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
