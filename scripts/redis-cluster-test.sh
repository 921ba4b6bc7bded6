#!/usr/bin/env bash
# The cluster bus on a real Redis Cluster: brings the local cluster up
# (scripts/redis-cluster.sh), then runs
#   1. the bus crate's cluster tests (many users across slots; a master SIGKILLed while
#      publishing: failover, re-subscribe, resync);
#   2. the gateway delivery suite with every node on the cluster (HERALD_TEST_BUS=cluster);
#   3. the gateway failover check: notifications published from one node while a master is
#      SIGKILLed; every socket must get each seq exactly once, in order (it prints
#      "lost=0 duplicated=0 out_of_order=0").
# The cluster is left running. Exit status: non-zero if any step failed.

LOG_TAG=redis-cluster-test
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
set -euo pipefail
cd "$HERALD_ROOT"

export HERALD_TEST_DATABASE_URL="${HERALD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export HERALD_TEST_REDIS_URL="${HERALD_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

bash scripts/services.sh
bash scripts/redis-cluster.sh up
HERALD_TEST_REDIS_CLUSTER="$(bash scripts/redis-cluster.sh seeds)"
export HERALD_TEST_REDIS_CLUSTER

# run_tests PACKAGE TEST_BINARY FILTER: nextest when installed (FILTER is a nextest
# expression), else cargo test with the FILTER's plain-name fallback in $FALLBACK.
run_tests() {
    local pkg="$1" bin="$2" expr="$3" fallback="$4"
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run -p "$pkg" --test "$bin" --no-fail-fast --no-capture -E "$expr"
    else
        cargo test -p "$pkg" --test "$bin" -- --nocapture "$fallback"
    fi
}

rc=0
log "1/3 bus cluster tests"
run_tests herald-bus cluster 'all()' '' || rc=1
log "2/3 gateway delivery suite on the cluster (HERALD_TEST_BUS=cluster)"
HERALD_TEST_BUS=cluster run_tests herald-gateway api 'test(/^delivery::/)' 'delivery::' || rc=1
log "3/3 gateway: a master SIGKILLed while publishing"
run_tests herald-gateway api 'test(/cluster_failover/)' 'cluster_failover' 2>&1 |
    tee target/redis-cluster-failover.log || rc=1
grep -h 'cluster failover (' target/redis-cluster-failover.log || true
bash scripts/redis-cluster.sh status >/dev/null || {
    warn "the cluster is not healthy after the tests"
    rc=1
}
if ((rc == 0)); then log "redis cluster tests: PASSED"; else log "redis cluster tests: FAILED"; fi
exit "$rc"
