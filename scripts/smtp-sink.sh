#!/usr/bin/env bash
# The local SMTP server of the email tests (aiosmtpd, from PyPI, in a venv of its own).
#
#   scripts/smtp-sink.sh setup              # create the venv once (idempotent, locked)
#   scripts/smtp-sink.sh run --port P --dir D [--reject ADDR]... [--tempfail ADDR:N]...
#
# The venv is $HERALD_SMTP_SINK_VENV, default target/smtp-sink-venv. The gateway's email tests
# run `run` themselves (which sets the venv up first), so `cargo nextest` alone works too.
set -euo pipefail
LOG_TAG="smtp-sink"
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

VENV="${HERALD_SMTP_SINK_VENV:-$HERALD_ROOT/target/smtp-sink-venv}"
AIOSMTPD_VERSION="1.4.6"

setup() {
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
        return 0
    fi
    mkdir -p "$(dirname "$VENV")"
    # Several tests may start at once: one creates the venv, the others wait for it.
    exec 9>"$VENV.lock"
    flock 9
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
        return 0
    fi
    have python3 || die "python3 is needed for the SMTP test server"
    log "creating $VENV with aiosmtpd $AIOSMTPD_VERSION"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION" >&2
}

case "${1:-}" in
setup)
    setup
    ;;
run)
    shift
    setup
    exec "$VENV/bin/python" "$HERALD_ROOT/scripts/lib/smtp_sink.py" "$@"
    ;;
*)
    die "usage: $0 setup | run --port P --dir D [--reject ADDR]... [--tempfail ADDR:N]..."
    ;;
esac
