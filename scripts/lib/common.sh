# shellcheck shell=bash
# Shared helpers for Herald's scripts. Source it; do not execute it.
#
#   LOG_TAG=my-script; source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Provides: HERALD_ROOT, log, warn, die, have, as_root, apt_install,
# wait_until, http_code, pid_alive, random_token.

if [[ -n "${__HERALD_COMMON_SH:-}" ]]; then
    return 0
fi
__HERALD_COMMON_SH=1

HERALD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export HERALD_ROOT

log() { printf '[%s] %s\n' "${LOG_TAG:-herald}" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "${LOG_TAG:-herald}" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "${LOG_TAG:-herald}" "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Run a command as root (directly when we are root, else through sudo).
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif have sudo; then
        sudo -n "$@" || sudo "$@"
    else
        die "need root for: $* (run as root or install sudo)"
    fi
}

# apt-get install, running 'apt-get update' at most once per process tree.
apt_install() {
    have apt-get || die "apt-get not found: install these packages by hand: $*"
    if [[ -z "${__HERALD_APT_UPDATED:-}" ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        __HERALD_APT_UPDATED=1
        export __HERALD_APT_UPDATED
    fi
    log "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$@" >/dev/null
}

# wait_until DESCRIPTION TIMEOUT_SECONDS COMMAND...
# Polls COMMAND (quietly) every 0.25 s until it succeeds; returns 1 on timeout.
wait_until() {
    local desc="$1" timeout="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            warn "timed out after ${timeout}s waiting for: ${desc}"
            return 1
        fi
        sleep 0.25
    done
}

# http_code URL -> prints the HTTP status (000 when unreachable).
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" 2>/dev/null || true
}

# http_ok URL -> succeeds when URL answers 200.
http_ok() { [[ "$(http_code "$1")" == "200" ]]; }

# pid_alive PID [NAME_SUBSTRING]: the process exists (and its command line
# contains NAME_SUBSTRING, which guards against pid reuse).
pid_alive() {
    local pid="$1" name="${2:-}"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -n "$name" && -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$name" || return 1
    fi
    return 0
}

# pid_gone PID: the process has exited (no such pid, or a zombie not yet reaped).
pid_gone() {
    local pid="$1" state
    kill -0 "$pid" 2>/dev/null || return 0
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" == "Z" ]]
}

# random_token NBYTES -> NBYTES random bytes, base64url without padding.
random_token() {
    head -c "$1" /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='
}
