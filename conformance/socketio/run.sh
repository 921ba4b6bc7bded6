#!/usr/bin/env bash
# The official socket.io-client (pinned in package.json) against two Herald nodes behind
# HAProxy, driving the first seed's hook logic (seed-hook.test.mjs). Idempotent: services,
# haproxy (apt, when missing), npm ci, the lab release binary (skipped with
# CLUSTER_NO_BUILD=1; HERALD_BIN picks another binary).
set -euo pipefail
LOG_TAG=socketio
# shellcheck source=../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
cd "$HERALD_ROOT"

have haproxy || apt_install haproxy
bash scripts/services.sh
(cd conformance/socketio && npm ci --no-audit --no-fund --loglevel=error)
if [[ "${CLUSTER_NO_BUILD:-0}" != "1" && -z "${HERALD_BIN:-}" ]]; then
    cargo build --release -p herald-gateway --features lab
fi
cd conformance/socketio
timeout 300 node --test --test-concurrency=1 --test-reporter=spec seed-hook.test.mjs
