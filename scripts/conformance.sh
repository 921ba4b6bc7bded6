#!/usr/bin/env bash
# WebSocket conformance: runs the Autobahn TestSuite cases (fuzzingclient mode) against
# Herald's dev-only `GET /dev/echo`, an echo built with the production codec settings
# (max frame and reassembled message = HERALD_MAX_MESSAGE_BYTES, default 16 KiB).
#
#   scripts/conformance.sh [kosoku case options...]
#
# Default selection: every case except 12.* and 13.* (permessage-deflate, which Herald does
# not negotiate). Pass your own, e.g. `scripts/conformance.sh -i '1.*' -i '7.*'`.
#
# Runner: kosoku (PyPI), a Python 3 / Rust runner of the Autobahn case files; installed with
# pip if missing (KOSOKU_VERSION pins it, default 0.1.0). Needs PostgreSQL on 127.0.0.1:5432
# (scripts/services.sh starts it); creates the database herald_conformance if missing.
# Starts `target/release/herald serve` on HERALD_CONFORMANCE_PORT (default 18765), stops it
# on exit. Reports: conformance/reports/ (git-ignored); summary printed per category.
# Exit status is kosoku's: non-zero when any case is FAILED (some are by design, see
# conformance/RESULTS.md), so callers compare the summary rather than the exit status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

port=${HERALD_CONFORMANCE_PORT:-18765}
db=${HERALD_CONFORMANCE_DB:-herald_conformance}
pg="postgres://postgres@127.0.0.1:5432"
out="$root/conformance/reports"
kosoku_version=${KOSOKU_VERSION:-0.1.0}

python3 - "$kosoku_version" <<'PY' || python3 -m pip install --quiet "kosoku==$kosoku_version"
import sys
from importlib.metadata import version
sys.exit(0 if version("kosoku") == sys.argv[1] else 1)
PY
kosoku=$(python3 -c 'import shutil,sys; print(shutil.which("kosoku") or "")')
[[ -n "$kosoku" ]] || { echo "conformance: kosoku not on PATH after install" >&2; exit 1; }

if ! psql "$pg/postgres" -XtAqc 'select 1' >/dev/null 2>&1; then
    bash scripts/services.sh
fi
if [[ -z "$(psql "$pg/postgres" -XtAqc "select 1 from pg_database where datname = '$db'")" ]]; then
    psql "$pg/postgres" -Xqc "create database $db"
fi

cargo build --release -p herald-gateway --features lab

log="$root/conformance/herald.log"
mkdir -p "$root/conformance"
env HERALD_LISTEN="127.0.0.1:$port" HERALD_ADMIN_LISTEN=127.0.0.1:0 \
    HERALD_DATABASE_URL="$pg/$db" \
    HERALD_MIGRATE_ON_START=true \
    HERALD_SERVICE_KEYS=conformance-key-0123456789 \
    HERALD_JWT_HS256_SECRET=conformance-secret-0123456789abcdef0123 \
    HERALD_JWT_AUDIENCE=herald-conformance HERALD_JWT_ISSUER=herald-conformance \
    HERALD_DEV_ENDPOINTS=true \
    HERALD_LOG=warn \
    "$root/target/release/herald" serve >"$log" 2>&1 &
herald_pid=$!
stop() {
    if kill -0 "$herald_pid" 2>/dev/null; then
        kill -TERM "$herald_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$herald_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$herald_pid" 2>/dev/null || true
    fi
}
trap stop EXIT

for _ in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$herald_pid" 2>/dev/null || { cat "$log" >&2; echo "conformance: herald exited" >&2; exit 1; }
    sleep 0.2
done

cases=("$@")
[[ ${#cases[@]} -gt 0 ]] || cases=(-x '12.*' -x '13.*')

echo "conformance: kosoku $kosoku_version against ws://127.0.0.1:$port/dev/echo ${cases[*]}" >&2
rm -rf "$out"
rc=0
"$kosoku" -o "$out" "${cases[@]}" "ws://127.0.0.1:$port/dev/echo" || rc=$?
python3 "$root/conformance/summarize.py" "$out" || true
exit "$rc"
