#!/usr/bin/env bash
# shellcheck disable=SC2317  # stage functions are called indirectly via run_stage
# THE test command (CI runs .ci/run, which runs exactly this):
#
#   scripts/test.sh
#
# Stages: services (Postgres + Redis + the local Redis Cluster up, the SMTP test server's venv) -> cleanup of leftover test databases
# -> cargo fmt --check -> clippy -D warnings -> deploy file validation
# -> containers (the image and the compose stack run with podman)
# -> nextest (or cargo test) -> web/browser tests (scripts/web-test.sh).
# Every stage runs even when an earlier one failed (so one CI run shows all
# problems); the exit status is non-zero if any stage failed.
#
# Tunables: HERALD_TEST_SKIP="fmt clippy" skips stages by name.

set -euo pipefail
LOG_TAG="test"
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$HERALD_ROOT"

export HERALD_TEST_DATABASE_URL="${HERALD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export HERALD_TEST_REDIS_URL="${HERALD_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
# The local Redis Cluster (scripts/redis-cluster.sh, started by the services stage): the bus
# crate's cluster tests, the gateway's failover check and the delivery suite's second run.
HERALD_TEST_REDIS_CLUSTER="${HERALD_TEST_REDIS_CLUSTER:-$(bash "$HERALD_ROOT/scripts/redis-cluster.sh" seeds)}"
export HERALD_TEST_REDIS_CLUSTER
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-$([[ -n "${CI:-}" ]] && echo never || echo auto)}"

RESULTS=()
FAILED=0

# run_stage NAME FUNCTION: runs it, records ok/FAILED/skipped with duration.
run_stage() {
    local name="$1" fn="$2" start rc
    if [[ " ${HERALD_TEST_SKIP:-} " == *" $name "* ]]; then
        log "=== ${name}: skipped (HERALD_TEST_SKIP)"
        RESULTS+=("${name}=skipped")
        return 0
    fi
    log "=== ${name}: start"
    start=$SECONDS
    set +e
    (
        set -e
        "$fn"
    )
    rc=$?
    set -e
    if ((rc == 0)); then
        log "=== ${name}: ok ($((SECONDS - start))s)"
        RESULTS+=("${name}=ok")
    elif ((rc == 99)); then
        log "=== ${name}: skipped"
        RESULTS+=("${name}=skipped")
    else
        log "=== ${name}: FAILED (exit ${rc}, $((SECONDS - start))s)"
        RESULTS+=("${name}=FAILED")
        FAILED=1
    fi
}

stage_services() {
    bash scripts/services.sh
    bash scripts/redis-cluster.sh up
    # The email tests' SMTP server (aiosmtpd from PyPI, in its own venv; the tests start it).
    bash scripts/smtp-sink.sh setup
}

# Drop databases that earlier (possibly killed) test runs left behind. Ones
# with open connections belong to a test run in progress (e.g. another
# developer's on the same machine) and are left alone.
stage_cleanup_test_dbs() {
    local dbs db
    dbs="$(psql -h 127.0.0.1 -U postgres -d postgres -XtAq </dev/null -c \
        "select d.datname from pg_database d
          where (d.datname like 'herald\\_test\\_%' or d.datname like 'herald\\_store\\_test\\_%')
            and not exists (select 1 from pg_stat_activity a where a.datname = d.datname)")"
    if [[ -z "$dbs" ]]; then
        log "no leftover test databases"
        return 0
    fi
    local n
    n="$(grep -c . <<<"$dbs")"
    log "dropping ${n} leftover test database(s): $(head -n 3 <<<"$dbs" | tr '\n' ' ')..."
    # One session, one autocommit statement per database; psql goes on after
    # an error (e.g. a database that just got a connection), which is fine.
    while IFS= read -r db; do
        [[ -n "$db" ]] && printf 'drop database if exists "%s";\n' "$db"
    done <<<"$dbs" | psql -h 127.0.0.1 -U postgres -d postgres -Xq -v ON_ERROR_STOP=0 ||
        warn "some leftover test databases could not be dropped (in use?)"
}

stage_fmt() {
    cargo fmt --all -- --check
}

# Twice: with every feature (the lab build: dev endpoints, fault injection) and as production
# builds the gateway (no features), so neither configuration hides a warning.
stage_clippy() {
    cargo clippy --workspace --all-targets --all-features -- -D warnings
    cargo clippy -p herald-gateway --lib --bins -- -D warnings
}

TEST_LOG="$HERALD_ROOT/target/test-logs/tests.log"

# Output is also kept in target/test-logs/tests.log so that the runner's
# summary line can be repeated at the very end of the run.
stage_tests() {
    mkdir -p "$(dirname "$TEST_LOG")"
    # The process-level fault suite (crates/herald-chaos, smoke sizes) needs haproxy and a
    # fresh release binary.
    bash scripts/chaos.sh --prepare
    local rc=0
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$TEST_LOG" || rc=$?
        # The delivery suite again, every node on the Redis Cluster (sharded pub/sub).
        log "delivery suite on the Redis Cluster (HERALD_TEST_BUS=cluster)"
        HERALD_TEST_BUS=cluster cargo nextest run -p herald-gateway --test api --no-fail-fast \
            -E 'test(/^delivery::/)' 2>&1 | tee -a "$TEST_LOG" || rc=$?
    else
        warn "cargo-nextest not installed: falling back to cargo test"
        cargo test --workspace --no-fail-fast 2>&1 | tee "$TEST_LOG" || rc=$?
        HERALD_TEST_BUS=cluster cargo test -p herald-gateway --test api --no-fail-fast \
            -- delivery:: 2>&1 | tee -a "$TEST_LOG" || rc=$?
    fi
    return "$rc"
}

# The official socket.io-client running the first seed's hook logic against two nodes behind
# HAProxy (conformance/socketio; the lab release binary is built by the containers stage).
stage_socketio() {
    bash conformance/socketio/run.sh
}
# The load-test harness, every scenario at a tiny size with --check (zero lost/duplicated).
stage_loadtest_smoke() {
    bash loadtest/smoke.sh
}

stage_deploy() {
    bash scripts/validate-deploy.sh
}

# The Docker files run for real with podman: the gateway image from deploy/Dockerfile, the
# docker-compose.yml stack (with deploy/podman/compose.local.yml's local images), a
# notification published through the balancer and received on WebSockets on both gateways,
# everything brought down again. Builds the lab release binary the tests stage needs anyway.
stage_containers() {
    bash scripts/container-test.sh
}

# ---------------------------------------------------------------------------
# WEB / BROWSER TEST STAGE -- the hook for the web client and browser tests:
# runs scripts/web-test.sh when it exists (owned by the web work). Contract:
#   * install what it needs idempotently (npm ci, apt-get for chromium, ...);
#   * if it needs a running cluster, start and always stop its own (a trap),
#     or use `bash scripts/cluster.sh up` + `source .cluster/env` + `down`;
#   * exit 0 on success, non-zero on failure (99 = skipped).
# ---------------------------------------------------------------------------
stage_web() {
    if [[ -f scripts/web-test.sh ]]; then
        bash scripts/web-test.sh
    else
        log "web/browser tests not added yet (scripts/web-test.sh missing)"
        return 99
    fi
}

main() {
    local started=$SECONDS
    log "repo: ${HERALD_ROOT} (CI=${CI:-})"
    run_stage services stage_services
    if [[ "${RESULTS[-1]}" == "services=FAILED" ]]; then
        # Without Postgres/Redis the integration tests cannot mean anything.
        log "test.sh result: FAILED -- services could not be started"
        exit 1
    fi
    run_stage cleanup-test-dbs stage_cleanup_test_dbs
    run_stage fmt stage_fmt
    run_stage clippy stage_clippy
    run_stage deploy stage_deploy
    run_stage containers stage_containers
    rm -f "$TEST_LOG"
    run_stage tests stage_tests
    run_stage socketio stage_socketio
    run_stage loadtest-smoke stage_loadtest_smoke
    run_stage web stage_web

    if [[ -f "$TEST_LOG" ]]; then
        log "test runner summary (repeated from above):"
        grep -E '^[[:space:]]*Summary \[|^test result:' "$TEST_LOG" || log "(no summary line found)"
    fi
    local verdict=PASSED
    ((FAILED == 0)) || verdict=FAILED
    log "test.sh result: ${verdict} in $((SECONDS - started))s -- ${RESULTS[*]}"
    exit "$FAILED"
}

main "$@"
