#!/usr/bin/env bash
# A local Redis Cluster for Herald's cluster-bus tests and benchmarks: 3 masters and 3
# replicas on 127.0.0.1:7001-7006 (Redis >= 7, for sharded pub/sub), data under
# target/redis-cluster/<port>/.
#
#   scripts/redis-cluster.sh up       # idempotent: a healthy running cluster is left alone,
#                                     # a stopped node is restarted, a broken cluster recreated
#   scripts/redis-cluster.sh down     # stop every node and delete the data
#   scripts/redis-cluster.sh status   # exit 0 only when all 6 nodes run and say cluster_state:ok
#   scripts/redis-cluster.sh seeds    # prints 127.0.0.1:7001,...,127.0.0.1:7006
#
# Installs redis-server/redis-tools with apt-get when missing or older than 7.
# Tunables: REDIS_CLUSTER_TIMEOUT (seconds to wait for cluster_state:ok, default 60),
# REDIS_CLUSTER_NODE_TIMEOUT_MS (cluster-node-timeout, default 2000: how long a master may be
# unreachable before its replica takes over).

LOG_TAG=redis-cluster
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
set -euo pipefail

HOST=127.0.0.1
PORTS=(7001 7002 7003 7004 7005 7006)
DATA="${HERALD_ROOT}/target/redis-cluster"
TIMEOUT="${REDIS_CLUSTER_TIMEOUT:-60}"
NODE_TIMEOUT_MS="${REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}"

seeds() {
    local out="" p
    for p in "${PORTS[@]}"; do out+="${out:+,}${HOST}:${p}"; done
    printf '%s\n' "$out"
}

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}"; }

node_up() { [[ "$(cli "$1" ping 2>/dev/null)" == "PONG" ]]; }

node_ok() { cli "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

# All six run, each says cluster_state:ok and knows six connected nodes, three of them masters.
healthy() {
    local p masters
    for p in "${PORTS[@]}"; do
        node_up "$p" || return 1
        node_ok "$p" || return 1
        [[ "$(cli "$p" cluster info 2>/dev/null | tr -d '\r' | awk -F: '/^cluster_known_nodes:/{print $2}')" == "6" ]] || return 1
    done
    masters="$(cli "${PORTS[0]}" cluster nodes 2>/dev/null | awk '$3 ~ /master/ && $3 !~ /fail/ && $8 == "connected" && NF >= 9' | wc -l)"
    [[ "$masters" == "3" ]]
}

redis_major() { redis-server --version 2>/dev/null | sed -n 's/.*v=\([0-9]*\)\..*/\1/p'; }

install_if_needed() {
    if have redis-server && have redis-cli && [[ "$(redis_major)" -ge 7 ]] 2>/dev/null; then
        return 0
    fi
    log "Redis >= 7 not installed: installing via apt"
    apt_install redis-server redis-tools
    [[ "$(redis_major)" -ge 7 ]] || die "redis-server $(redis_major) is too old: sharded pub/sub needs Redis 7"
}

write_conf() {
    local p="$1" dir="${DATA}/$1"
    mkdir -p "$dir"
    cat >"${dir}/redis.conf" <<EOF
port ${p}
bind ${HOST}
protected-mode no
daemonize yes
dir ${dir}
pidfile ${dir}/redis.pid
logfile ${dir}/redis.log
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout ${NODE_TIMEOUT_MS}
cluster-require-full-coverage yes
appendonly no
save ""
EOF
}

start_node() {
    local p="$1"
    node_up "$p" && return 0
    [[ -f "${DATA}/${p}/redis.conf" ]] || write_conf "$p"
    redis-server "${DATA}/${p}/redis.conf" >/dev/null
}

stop_all() {
    local p pid
    for p in "${PORTS[@]}"; do
        if node_up "$p"; then
            cli "$p" shutdown nosave >/dev/null 2>&1 || true
        fi
        pid="$(cat "${DATA}/${p}/redis.pid" 2>/dev/null || true)"
        if pid_alive "$pid" redis-server; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    for p in "${PORTS[@]}"; do
        wait_until "node ${p} stopped" 10 bash -c "! redis-cli -h ${HOST} -p ${p} ping" ||
            die "node ${p} does not stop"
    done
}

create() {
    log "creating a 3-master, 3-replica cluster on ${HOST}:${PORTS[0]}-${PORTS[5]}"
    stop_all
    rm -rf "$DATA"
    local p args=()
    for p in "${PORTS[@]}"; do
        write_conf "$p"
        start_node "$p"
        args+=("${HOST}:${p}")
    done
    for p in "${PORTS[@]}"; do
        wait_until "node ${p} answers PING" 15 node_up "$p" || die "node ${p} did not start (see ${DATA}/${p}/redis.log)"
    done
    redis-cli --cluster create "${args[@]}" --cluster-replicas 1 --cluster-yes >"${DATA}/create.log" 2>&1 ||
        die "redis-cli --cluster create failed (see ${DATA}/create.log)"
}

up() {
    install_if_needed
    if healthy; then
        log "cluster already up and healthy ($(seeds))"
        return 0
    fi
    # A node that stopped (killed by a test, machine restart) rejoins from its nodes.conf.
    local p restarted=0
    if [[ -f "${DATA}/${PORTS[0]}/nodes.conf" ]]; then
        for p in "${PORTS[@]}"; do
            if ! node_up "$p" && [[ -f "${DATA}/${p}/redis.conf" ]]; then
                start_node "$p" || true
                restarted=1
            fi
        done
        if ((restarted)) || [[ -f "${DATA}/create.log" ]]; then
            log "waiting for the existing cluster to heal"
            if wait_until "existing cluster healthy" 20 healthy; then
                log "cluster up ($(seeds))"
                return 0
            fi
        fi
    fi
    create
    wait_until "cluster_state:ok on all 6 nodes" "$TIMEOUT" healthy ||
        die "cluster not healthy after ${TIMEOUT}s (logs under ${DATA})"
    log "cluster up ($(seeds))"
}

status() {
    local p
    for p in "${PORTS[@]}"; do
        if node_up "$p"; then
            printf '%s:%s %s %s\n' "$HOST" "$p" \
                "$(cli "$p" cluster info 2>/dev/null | tr -d '\r' | grep '^cluster_state:')" \
                "$(cli "$p" info replication 2>/dev/null | tr -d '\r' | grep '^role:')"
        else
            printf '%s:%s down\n' "$HOST" "$p"
        fi
    done
    healthy
}

case "${1:-}" in
up) up ;;
down)
    stop_all
    rm -rf "$DATA"
    log "cluster stopped"
    ;;
status) status ;;
seeds) seeds ;;
*) die "usage: $0 up|down|status|seeds" ;;
esac
