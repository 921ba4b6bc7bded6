# shellcheck shell=bash
# Shared helpers for the container scripts (scripts/podman-setup.sh,
# scripts/container-test.sh). Source it after lib/common.sh; do not execute it.
#
# Provides: CONTAINERS_CONF (exported: deploy/podman/containers.conf), CT_CACHE_DIR,
# CT_TOOLS_DIR, CT_VENV, CT_BASE_IMAGE, ct_base_key, ct_ensure_tools, ct_image_label,
# ct_image_size.

# shellcheck disable=SC2034  # the variables are for the scripts that source this file

if [[ -n "${__HERALD_CONTAINERS_SH:-}" ]]; then
    return 0
fi
__HERALD_CONTAINERS_SH=1

# Podman reads only this file (not /etc/containers/containers.conf): runc, cgroupfs, no
# default ulimits. See the file for why.
CONTAINERS_CONF="${HERALD_CONTAINERS_CONF:-$HERALD_ROOT/deploy/podman/containers.conf}"
export CONTAINERS_CONF

# Cached across checkouts and CI runs (a CI run is a fresh clone, so target/ would not do):
# the debootstrap base tarball. Images themselves live in podman's storage.
CT_CACHE_DIR="${HERALD_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald/containers}"
# The Python tools venv, shared with scripts/validate-deploy.sh.
CT_TOOLS_DIR="${HERALD_TOOLS_DIR:-$HERALD_ROOT/target/herald-tools}"
CT_VENV="$CT_TOOLS_DIR/venv"
# Pinned: podman-compose runs docker-compose.yml; websockets is the test's client.
CT_PY_REQS=(podman-compose==1.6.0 python-dotenv==1.2.4 pyyaml==6.0.3 websockets==15.0.1)

# The tag deploy/Dockerfile's `FROM debian:bookworm-slim` resolves to.
CT_BASE_IMAGE=docker.io/library/debian:bookworm-slim
CT_DEBIAN_MIRROR="${HERALD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# ct_base_key: what the base image depends on (its recipe and the mirror), hashed.
ct_base_key() {
    {
        cat "$HERALD_ROOT/deploy/podman/debian-base.sh"
        echo "mirror=$CT_DEBIAN_MIRROR arch=$(uname -m)"
    } | sha256sum | cut -c1-16
}

# ct_image_label IMAGE LABEL: the label's value ("" when the image or label is missing).
ct_image_label() {
    podman image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null |
        sed 's/^<no value>$//' || true
}

# ct_image_size IMAGE: "<bytes> bytes (<MB> MB)".
ct_image_size() {
    local bytes
    bytes="$(podman image inspect --format '{{.Size}}' "$1")"
    printf '%s bytes (%s MB)' "$bytes" "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')"
}

# ct_ensure_tools: the venv with podman-compose and websockets (pinned).
ct_ensure_tools() {
    mkdir -p "$CT_TOOLS_DIR"
    if [[ ! -x "$CT_VENV/bin/python" ]]; then
        log "creating Python venv $CT_VENV"
        if ! python3 -m venv "$CT_VENV" >/dev/null 2>&1; then
            rm -rf "$CT_VENV"
            apt_install python3-venv python3-pip
            python3 -m venv "$CT_VENV"
        fi
    fi
    local stamp="$CT_VENV/.herald-container-reqs"
    if [[ "$(cat "$stamp" 2>/dev/null)" != "${CT_PY_REQS[*]}" ]]; then
        log "pip install ${CT_PY_REQS[*]}"
        "$CT_VENV/bin/pip" install -q --disable-pip-version-check "${CT_PY_REQS[@]}"
        echo "${CT_PY_REQS[*]}" >"$stamp"
    fi
}
