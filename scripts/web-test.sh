#!/usr/bin/env bash
# Web client + browser tests, end to end and idempotent:
#   chromium + emoji font (apt, only when missing) -> Postgres/Redis (scripts/services.sh)
#   -> npm ci in web/ -> TS types drift check (scripts/gen-ts.sh --check) -> tsc --noEmit
#   -> vitest -> vite build of web/demo -> cargo build of the gateway -> e2e (playwright-core
#   + Debian chromium against a private two-node cluster behind HAProxy; see web/e2e/cluster.mjs)
#   -> installable packages (web/consumer/run.sh: npm pack both packages, install the tarballs
#   into a fresh Vite + React app outside the repo, tsc, SSR check, sizes, vite build, Chromium).
# Exit status non-zero if any step fails. Tunables: WEB_TEST_SKIP_E2E=1 (also skips the
# consumer app's browser check, not its build), CLUSTER_NO_BUILD=1, HERALD_BIN.
set -euo pipefail
LOG_TAG=web-test
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$HERALD_ROOT"

step() { log "--- $*"; }

step "browser: chromium + emoji font"
pkgs=()
[[ -x /usr/bin/chromium ]] || pkgs+=(chromium)
[[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]] || pkgs+=(fonts-noto-color-emoji)
if ((${#pkgs[@]})); then
    apt_install "${pkgs[@]}"
fi
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing after apt-get install"
have haproxy || apt_install haproxy

step "services: PostgreSQL + Redis"
bash scripts/services.sh

step "npm ci (web/)"
# npm 11 sometimes writes lock files without the optional per-platform packages (rollup,
# esbuild), which `npm ci` then rejects; fall back to `npm install` (same pinned versions).
(cd web && { npm ci --no-audit --no-fund --loglevel=error 2>/dev/null ||
    { warn "npm ci refused the lock file; falling back to npm install"; npm install --no-audit --no-fund --loglevel=error; }; })

step "TypeScript types vs Rust (scripts/gen-ts.sh --check)"
bash scripts/gen-ts.sh --check

step "typecheck (tsc --noEmit)"
(cd web && npx tsc -p tsconfig.json --noEmit)

step "unit tests (vitest)"
(cd web && npx vitest run)

step "build demo (vite)"
(cd web && npm run build --silent)

if [[ "${WEB_TEST_SKIP_E2E:-0}" == "1" ]]; then
    step "installable packages (web/consumer/run.sh, no browser)"
    CONSUMER_SKIP_BROWSER=1 bash web/consumer/run.sh
    log "WEB_TEST_SKIP_E2E=1: skipping browser e2e"
    exit 0
fi

step "gateway binary"
if [[ "${CLUSTER_NO_BUILD:-0}" != "1" ]]; then
    cargo build --release -p herald-gateway --features lab
fi

step "browser e2e (private 2-node cluster + haproxy)"
(cd web/e2e && timeout 300 node --test --test-concurrency=1 --test-reporter=spec e2e.test.mjs)

step "installable packages: npm pack -> fresh Vite + React app -> Chromium (web/consumer/run.sh)"
timeout 600 bash web/consumer/run.sh
log "web tests passed (screenshots: test-artifacts/)"
