#!/usr/bin/env bash
# Prepare this machine to build and run Herald's containers with podman, without Docker
# Hub (public image registries are not reachable here). Idempotent; run as root.
#
#   scripts/podman-setup.sh
#
# 1. apt: podman (with runc, the CNI plugins and dnsname for service names), debootstrap,
#    python3-venv.
# 2. Podman settings: deploy/podman/containers.conf, used through CONTAINERS_CONF by the
#    scripts (runc, cgroupfs, no default ulimits; /etc/containers is left alone). For
#    podman by hand: export CONTAINERS_CONF=$PWD/deploy/podman/containers.conf
# 3. podman-compose and websockets, pinned, in the tools venv (target/herald-tools/venv).
# 4. The base image: a debian:bookworm-slim equivalent made with debootstrap from Debian's
#    mirror (deploy/podman/debian-base.sh) and imported as
#    docker.io/library/debian:bookworm-slim, so `FROM debian:bookworm-slim` resolves
#    locally. The tarball is cached in ~/.cache/herald/containers (HERALD_CONTAINER_CACHE)
#    under a hash of its recipe and the mirror; the image is labelled with that hash and
#    only re-imported when it changes. HERALD_CONTAINER_REBUILD=1 makes it anew.
#
# Knobs: HERALD_DEBIAN_MIRROR (http://deb.debian.org/debian), HERALD_CONTAINER_CACHE.

set -euo pipefail
LOG_TAG=podman-setup
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/containers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/containers.sh"
cd "$HERALD_ROOT"

# Packages, each with a file that shows it is installed.
APT_PACKAGES=(
    podman:/usr/bin/podman
    runc:/usr/sbin/runc
    containernetworking-plugins:/usr/lib/cni/bridge
    golang-github-containernetworking-plugin-dnsname:/usr/lib/cni/dnsname
    iptables:/usr/sbin/iptables
    debootstrap:/usr/sbin/debootstrap
)

install_packages() {
    local entry missing=()
    for entry in "${APT_PACKAGES[@]}"; do
        [[ -e "${entry#*:}" ]] || missing+=("${entry%%:*}")
    done
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
    log "ok $(podman --version), $(runc --version | head -n1), debootstrap $(dpkg-query -W -f '${Version}' debootstrap)"
}

check_podman() {
    local out
    if ! out="$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}' 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "podman info failed (CONTAINERS_CONF=$CONTAINERS_CONF)"
    fi
    log "ok podman: runtime/cgroups/storage = $out (CONTAINERS_CONF=$CONTAINERS_CONF)"
}

ensure_base_image() {
    local key tarball have_key
    key="$(ct_base_key)"
    have_key="$(ct_image_label "$CT_BASE_IMAGE" herald.base-key)"
    if [[ "$have_key" == "$key" && -z "${HERALD_CONTAINER_REBUILD:-}" ]]; then
        log "ok $CT_BASE_IMAGE (debootstrap base $key, cached)"
        return 0
    fi
    mkdir -p "$CT_CACHE_DIR"
    tarball="$CT_CACHE_DIR/debian-bookworm-slim-$key.tar"
    if [[ ! -s "$tarball" || -n "${HERALD_CONTAINER_REBUILD:-}" ]]; then
        log "debootstrap --variant=minbase bookworm from $CT_DEBIAN_MIRROR (about a minute)"
        as_root bash deploy/podman/debian-base.sh "$tarball" "$CT_DEBIAN_MIRROR"
        # Older tarballs (other recipes) are of no further use.
        find "$CT_CACHE_DIR" -maxdepth 1 -name 'debian-bookworm-slim-*.tar' \
            -not -name "$(basename "$tarball")" -delete
    fi
    log "podman import $tarball as $CT_BASE_IMAGE"
    podman import --quiet \
        --change 'CMD ["bash"]' \
        --change "LABEL herald.base-key=$key" \
        --message "debootstrap --variant=minbase bookworm (deploy/podman/debian-base.sh)" \
        "$tarball" "$CT_BASE_IMAGE" >/dev/null
    podman run --rm "$CT_BASE_IMAGE" true ||
        die "a container of $CT_BASE_IMAGE does not start (see the error above)"
    log "ok $CT_BASE_IMAGE (debootstrap base $key, $(ct_image_size "$CT_BASE_IMAGE"))"
}

main() {
    [[ "$(uname -m)" == x86_64 ]] || warn "only tested on x86_64"
    install_packages
    check_podman
    ct_ensure_tools
    log "ok podman-compose $("$CT_VENV/bin/podman-compose" --version 2>/dev/null | grep -m1 -o '[0-9][0-9.]*' || echo '?')"
    ensure_base_image
    log "podman is set up; use it with: export CONTAINERS_CONF=$CONTAINERS_CONF"
}

main "$@"
