#!/usr/bin/env bash
# Installs a baseline from npm (pinned by its package-lock.json) and builds it if it has a
# build step. Prints the file to run with `node`: the package's "main".
#   loadtest/baselines/install.sh loadtest/baselines/nestjs   # -> .../nestjs/dist/main.js
# Idempotent: npm ci reinstalls from the lock file; the build rewrites dist/.
set -euo pipefail
dir=$(cd "$1" && pwd)
cd "$dir"
# npm 11 sometimes rejects a lock file it wrote itself: fall back to npm install (same pins).
if ! npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1; then
    echo "[baselines] npm ci refused the lock file in $dir; falling back to npm install" >&2
    npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
if node -e 'process.exit(require("./package.json").scripts?.build ? 0 : 1)'; then
    npm run --silent build >&2
fi
echo "$dir/$(node -p 'require("./package.json").main')"
