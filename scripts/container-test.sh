#!/usr/bin/env bash
# Run the Docker files for real, with podman (no Docker engine, no Docker Hub here):
#
#   scripts/container-test.sh
#
# 1. scripts/podman-setup.sh: podman, podman-compose, the debootstrap-made
#    debian:bookworm-slim (cached).
# 2. The gateway image from deploy/Dockerfile, tagged herald:dev (the name
#    docker-compose.yml uses). No Rust toolchain image can be pulled, so the image packages
#    a binary built on this machine (--build-arg HERALD_BINARY=prebuilt, the herald-bin
#    build context): target/release/herald, built first as the test suites build it
#    (`cargo build --release -p herald-gateway --features lab --bin herald`, a no-op when
#    it is fresh; the lab features stay off unless HERALD_DEV_ENDPOINTS / HERALD_FAULT_*
#    are set, and the compose file sets neither). HERALD_CONTAINER_BINARY=PATH packages
#    another binary (e.g. a production build) and skips cargo. Prints the image size.
# 3. The local stand-ins for postgres:15, redis:7 and haproxy:2.8 (deploy/podman/images).
# 4. docker-compose.yml + deploy/podman/compose.local.yml with podman-compose, as project
#    herald-ct-<pid>, the balancer published on a free port of 127.0.0.1 (HERALD_PORT), fresh
#    random secrets: waits (bounded) for Postgres and Redis to be healthy, the migration to
#    complete, both gateways' healthchecks to pass and the balancer to reach both gateways;
#    mints a token with the image (`herald token`); opens WebSockets through the balancer
#    until both gateways hold one, publishes through the balancer and checks that every
#    socket receives the notification (scripts/lib/container_ws_check.py).
# 5. Always brings the stack down (containers, network and the database volume), also on
#    failure or Ctrl-C, after printing the services' logs when something failed.
#
# How the depends_on graph is honoured: podman 4.3 (Debian 12) runs no healthchecks by
# itself without systemd, podman-compose ignores `condition: service_healthy` on podman <
# 4.6, and podman 4.3 cannot start a gateway linked to an exited migrate container
# (podman-compose links depends_on with --requires). So this script walks the graph of
# docker-compose.yml itself, one `podman-compose up -d --no-deps SERVICE...` per level:
# postgres + redis, until healthy (it runs `podman healthcheck run`, as systemd's timer
# would) -> migrate, until it exited 0 -> gateway-a + gateway-b, until healthy -> haproxy.
#
# Knobs: HERALD_CONTAINER_BINARY, CT_TIMEOUT (bounded waits, default 120 s),
# CT_KEEP=1 (leave the stack up on success; the next run removes it, or the command printed).

set -euo pipefail
LOG_TAG=container-test
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/containers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/containers.sh"
cd "$HERALD_ROOT"

IMAGE=herald:dev
# One compose project per run (two runs on one machine must not clash); a killed run's
# leftovers are removed by the next run (remove_leftovers).
PROJECT_PREFIX=herald-ct-
PROJECT="${PROJECT_PREFIX}$$"
TIMEOUT="${CT_TIMEOUT:-120}"
BIN_CTX="$HERALD_ROOT/target/containers/herald-bin"
COMPOSE=()
STACK_UP=0
STARTED=$SECONDS

# The container of a compose service (podman-compose names them PROJECT_SERVICE_1).
ctr() { printf '%s_%s_1' "$PROJECT" "$1"; }

build_binary() {
    if [[ -n "${HERALD_CONTAINER_BINARY:-}" ]]; then
        BINARY="$HERALD_CONTAINER_BINARY"
    else
        log "cargo build --release -p herald-gateway --features lab --bin herald"
        cargo build --release -p herald-gateway --features lab --bin herald
        BINARY="${CARGO_TARGET_DIR:-$HERALD_ROOT/target}/release/herald"
    fi
    [[ -x "$BINARY" ]] || die "no herald binary at $BINARY"
    mkdir -p "$BIN_CTX"
    # A copy, not a link: the build context must not change under the build.
    cp -f "$BINARY" "$BIN_CTX/herald.tmp"
    mv -f "$BIN_CTX/herald.tmp" "$BIN_CTX/herald"
}

build_images() {
    local t=$SECONDS
    log "podman build -f deploy/Dockerfile --build-arg HERALD_BINARY=prebuilt -t $IMAGE (binary: $BINARY)"
    podman build --quiet --format docker -f deploy/Dockerfile \
        --build-arg HERALD_BINARY=prebuilt --build-context "herald-bin=$BIN_CTX" \
        -t "$IMAGE" . >/dev/null
    local version
    version="$(podman run --rm --no-healthcheck "$IMAGE" --version)" || die "the image does not run: herald --version failed"
    [[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" == 10001:10001 ]] ||
        die "the image does not run as user 10001"
    [[ -n "$(podman image inspect --format '{{.Config.Healthcheck}}' "$IMAGE" | grep -o healthz)" ]] ||
        die "the image lost its HEALTHCHECK"
    log "ok image $IMAGE ($version): size $(ct_image_size "$IMAGE") [$((SECONDS - t))s]"
    t=$SECONDS
    local svc tag
    for svc in postgres:15 redis:7 haproxy:2.6; do
        tag="localhost/herald-local/$svc"
        podman build --quiet --format docker -t "$tag" "deploy/podman/images/${svc%%:*}" >/dev/null
    done
    log "ok local postgres/redis/haproxy images [$((SECONDS - t))s]"
    # Images left untagged by earlier builds (a new binary, a new base), kept a day as cache.
    podman image prune -f --filter until=24h >/dev/null 2>&1 || true
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

dump_logs() {
    local c
    for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
        printf '%s\n' "----- podman logs --tail 40 $c ($(podman inspect --format '{{.State.Status}} exit={{.State.ExitCode}}' "$c" 2>/dev/null))" >&2
        podman logs --tail 40 "$c" >&2 2>&1 || true
    done
}

# remove_project NAME: its containers, database volume and network, whatever state they
# are in (what compose down leaves, or a killed run's stack).
remove_project() {
    local left
    left="$(podman ps -aq --filter "label=io.podman.compose.project=$1")"
    if [[ -n "$left" ]]; then
        # shellcheck disable=SC2086  # one id per word
        podman rm -f -t 5 $left >/dev/null 2>&1 || true
    fi
    podman volume rm -f "${1}_pgdata" >/dev/null 2>&1 || true
    podman network rm -f "${1}_default" >/dev/null 2>&1 || true
    [[ -z "$(podman ps -aq --filter "label=io.podman.compose.project=$1")" ]]
}

stack_down() {
    log "bringing the stack down (podman-compose down -v)"
    local t=$SECONDS
    timeout 120 "${COMPOSE[@]}" down -v -t 25 >>"$CT_LOG" 2>&1 || warn "podman-compose down failed"
    if ! remove_project "$PROJECT"; then
        warn "containers of $PROJECT are still there: podman ps -a"
        return 1
    fi
    log "stack down [$((SECONDS - t))s]"
}

# Stacks (and volumes) of earlier runs whose script is no longer running.
remove_leftovers() {
    local name pid
    while IFS= read -r name; do
        [[ "$name" == "$PROJECT_PREFIX"* ]] || continue
        pid="${name#"$PROJECT_PREFIX"}"
        pid="${pid%_pgdata}"
        pid_alive "$pid" container-test && continue
        log "removing leftovers of an earlier run: $name"
        remove_project "${name%_pgdata}" || warn "could not remove all of ${name%_pgdata}"
    done < <({
        podman ps -a --format '{{ index .Labels "io.podman.compose.project" }}'
        podman volume ls --format '{{.Name}}'
    } | sort -u)
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if ((STACK_UP)); then
        if ((rc != 0)); then
            warn "failed (exit $rc): the services' logs follow"
            dump_logs
        fi
        if [[ -n "${CT_KEEP:-}" && $rc -eq 0 ]]; then
            log "CT_KEEP: stack $PROJECT left up on $LB_URL (secrets in: podman inspect $(ctr gateway-a));" \
                "the next run of scripts/container-test.sh removes it, or now:" \
                "CONTAINERS_CONF=$CONTAINERS_CONF HERALD_SERVICE_KEYS=x HERALD_JWT_HS256_SECRET=x POSTGRES_PASSWORD=x" \
                "${COMPOSE[*]} down -v"
        else
            stack_down || rc=1
        fi
    fi
    if ((rc == 0)); then
        rm -f "$CT_LOG"
        log "container test: PASSED in $((SECONDS - STARTED))s"
    else
        log "container test: FAILED (exit $rc) after $((SECONDS - STARTED))s"
    fi
    exit "$rc"
}

# compose_up SERVICE...: `podman-compose up -d --no-deps` (bounded). The script walks
# docker-compose.yml's depends_on graph itself (see the header): with podman 4.3 the
# containers must not be linked with --requires (podman-compose's way of expressing
# depends_on), or starting a gateway fails with "generating dependency graph ... not found
# in input list" once migrate has exited.
compose_up() {
    log "podman-compose up -d --no-deps $*"
    if ! timeout "$TIMEOUT" "${COMPOSE[@]}" up -d --no-build --no-deps "$@" >>"$CT_LOG" 2>&1; then
        grep -v 'unable to get systemd connection' "$CT_LOG" | tail -n 30 >&2
        die "podman-compose up $* failed (or took over ${TIMEOUT}s)"
    fi
}

container_exited() {
    [[ "$(podman inspect --format '{{.State.Status}}' "$1" 2>/dev/null)" == exited ]]
}

# container_healthy NAME: one healthcheck run (what systemd's timer would do) says healthy.
container_healthy() {
    podman healthcheck run "$1" >/dev/null 2>&1 &&
        [[ "$(podman inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null)" == healthy ]]
}

wait_healthy() {
    local svc
    for svc in "$@"; do
        wait_until "$svc healthy" "$TIMEOUT" container_healthy "$(ctr "$svc")" ||
            die "service $svc did not become healthy within ${TIMEOUT}s"
    done
}

# lb_sees_both: /readyz through the balancer is answered by gateway-a and by gateway-b
# (round-robin over the servers its health checks have put up).
lb_sees_both() {
    local seen="" body
    for _ in 1 2 3 4; do
        body="$(curl -fsS --max-time 3 "$LB_URL/readyz" 2>/dev/null)" || return 1
        seen+=" $(grep -o '"node_id":"[^"]*"' <<<"$body")"
    done
    [[ "$seen" == *'"gateway-a"'* && "$seen" == *'"gateway-b"'* ]]
}

run_stack() {
    local port
    port="$(free_port)"
    HERALD_SERVICE_KEYS="sk-ct-$(random_token 24)"
    HERALD_JWT_HS256_SECRET="$(random_token 48)"
    POSTGRES_PASSWORD="$(random_token 18)"
    export HERALD_BIND=127.0.0.1 HERALD_PORT="$port" HERALD_SERVICE_KEYS HERALD_JWT_HS256_SECRET \
        POSTGRES_PASSWORD HERALD_JWT_AUDIENCE=herald HERALD_JWT_ISSUER=herald-dev
    LB_URL="http://127.0.0.1:$port"
    COMPOSE=("$CT_VENV/bin/podman-compose" --in-pod=false -p "$PROJECT"
        -f docker-compose.yml -f deploy/podman/compose.local.yml)

    remove_leftovers

    local t=$SECONDS
    STACK_UP=1
    log "balancer will be on $LB_URL; compose log: $CT_LOG"
    compose_up postgres redis
    wait_healthy postgres redis
    log "ok postgres and redis healthy [$((SECONDS - t))s]"

    t=$SECONDS
    compose_up migrate
    wait_until "migrate to finish" "$TIMEOUT" container_exited "$(ctr migrate)" ||
        die "migrate did not finish within ${TIMEOUT}s"
    [[ "$(podman inspect --format '{{.State.ExitCode}}' "$(ctr migrate)")" == 0 ]] ||
        die "migrate did not complete successfully"
    log "ok migrate completed: $(podman logs "$(ctr migrate)" 2>&1 | grep -m1 'migrations applied' || echo '?') [$((SECONDS - t))s]"

    t=$SECONDS
    compose_up gateway-a gateway-b
    wait_healthy gateway-a gateway-b
    log "ok gateway-a and gateway-b healthy (their healthcheck: /readyz inside the container) [$((SECONDS - t))s]"

    t=$SECONDS
    compose_up haproxy
    wait_until "the balancer on $LB_URL to reach both gateways" "$TIMEOUT" lb_sees_both ||
        die "the balancer on $LB_URL does not answer from both gateways"
    log "ok the balancer answers /readyz from gateway-a and gateway-b [$((SECONDS - t))s]"

    local user token
    user="ct-user-$(random_token 6)"
    token="$(podman run --rm --no-healthcheck -e HERALD_LOG=error -e HERALD_JWT_HS256_SECRET \
        -e HERALD_JWT_AUDIENCE -e HERALD_JWT_ISSUER "$IMAGE" token --user "$user" | tail -n1)"
    [[ "$token" == *.*.* ]] || die "herald token (in the image) printed no token"
    log "minted a token for $user with the image (herald token)"

    "$CT_VENV/bin/python" scripts/lib/container_ws_check.py --url "$LB_URL" \
        --service-key "$HERALD_SERVICE_KEYS" --token "$token" --user "$user" \
        --nodes 2 --timeout 60

    log "services:"
    podman ps --filter "label=io.podman.compose.project=$PROJECT" \
        --format '  {{.Names}}  {{.Image}}  {{.Status}}' >&2
}

main() {
    CT_LOG="$(mktemp -t herald-container-test.XXXXXX)"
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    local t=$SECONDS
    bash scripts/podman-setup.sh
    log "ok setup [$((SECONDS - t))s]"
    t=$SECONDS
    build_binary
    log "ok binary [$((SECONDS - t))s]"
    build_images
    run_stack
}

main "$@"
