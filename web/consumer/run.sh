#!/usr/bin/env bash
# The published-package check: what a third party gets from `npm install herald-notify-client
# herald-notify-react`, tested outside this repository.
#   1. `npm pack` both workspaces (prepack builds dist/) into a temp dir; check the tarballs hold
#      only package.json, README and dist/ (styles.css included);
#   2. a fresh Vite + React app in another temp dir (app/ copied, package.json written here with
#      pinned versions), both tarballs installed together with `npm install` (so the React
#      package's dependency on herald-notify-client is the local tarball, never the registry);
#      steps 2-5 run twice: React 19 and React 18 (the bottom of the peer range);
#   3. tsc on the app (moduleResolution Bundler and NodeNext, skipLibCheck off);
#   4. SSR safety in plain Node (app/ssr-check.mjs); sizes, minified + gzip (app/size.mjs, once);
#   5. `vite build`, then Chromium against gateway nodes serving the build (browser.test.mjs;
#      HERALD_BIN / CARGO_TARGET_DIR as in web/e2e/cluster.mjs). CONSUMER_SKIP_BROWSER=1 skips it.
# CONSUMER_KEEP=1 keeps the temp dir. Needs the npm registry (the app's dependencies).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WEB=$(dirname "$HERE")
ROOT=$(dirname "$WEB")
say() { printf '[consumer] %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

# Pinned, and all supporting Node 20 (vite 7 and plugin-react 5 need 20.19+).
REACT_VERSION=19.3.1
TYPES_REACT_VERSION=19.3.0
REACT18_VERSION=18.3.1 # the peer range starts at 18
TYPES_REACT18_VERSION=18.3.12
TYPES_REACT_DOM18_VERSION=18.3.1
VITE_VERSION=7.3.8
PLUGIN_REACT_VERSION=5.2.0
TYPESCRIPT_VERSION=5.9.3
ESBUILD_VERSION=0.28.2

work=$(mktemp -d "${TMPDIR:-/tmp}/herald-consumer.XXXXXX")
case "$work/" in "$ROOT"/*) fail "temp dir $work is inside the repository" ;; esac
if [[ "${CONSUMER_KEEP:-0}" == "1" ]]; then say "keeping $work"; else trap 'rm -rf "$work"' EXIT; fi

say "npm pack (builds dist/ through prepack)"
mkdir -p "$work/tarballs"
(cd "$WEB" && npm pack --silent --pack-destination "$work/tarballs" -w herald-notify-client -w herald-notify-react >/dev/null)
version() { node -p "require('$WEB/$1/package.json').version"; }
client_tgz="$work/tarballs/herald-notify-client-$(version client).tgz"
react_tgz="$work/tarballs/herald-notify-react-$(version react).tgz"
for t in "$client_tgz" "$react_tgz"; do
    [[ -f "$t" ]] || fail "missing $t"
    files=$(tar -tzf "$t") # (a variable, not a pipe into grep -q: pipefail + SIGPIPE)
    stray=$(grep -Ev '^package/(package\.json|README(\.md)?|LICENSE.*|dist/.+)$' <<<"$files" || true)
    [[ -z "$stray" ]] || fail "$(basename "$t") holds files outside dist/: $stray"
    for f in package/dist/index.js package/dist/index.d.ts package/README.md; do
        grep -qx "$f" <<<"$files" || fail "$(basename "$t") lacks $f"
    done
    say "$(basename "$t"): $(wc -l <<<"$files") files, $(wc -c <"$t") bytes"
done
grep -qx package/dist/styles.css <<<"$(tar -tzf "$react_tgz")" || fail "react tarball lacks dist/styles.css"

# One app per React major the peer range claims: typecheck, SSR, (sizes once), build, browser.
consumer_app() { # <dir name> <react> <@types/react> <@types/react-dom>
    local app="$work/$1"
    say "fresh Vite + React $2 app in $app"
    cp -r "$HERE/app" "$app"
    cat >"$app/package.json" <<JSON
{
  "name": "herald-consumer-app",
  "private": true,
  "version": "0.0.0",
  "type": "module",
  "dependencies": {
    "herald-notify-client": "file:$client_tgz",
    "herald-notify-react": "file:$react_tgz",
    "react": "$2",
    "react-dom": "$2"
  },
  "devDependencies": {
    "@types/react": "$3",
    "@types/react-dom": "$4",
    "@vitejs/plugin-react": "$PLUGIN_REACT_VERSION",
    "esbuild": "$ESBUILD_VERSION",
    "typescript": "$TYPESCRIPT_VERSION",
    "vite": "$VITE_VERSION"
  }
}
JSON
    cd "$app"
    # Both tarballs in one install: the React package's herald-notify-client@<version> is then
    # the local tarball, never looked up on the registry.
    npm install --no-audit --no-fund --loglevel=error
    node -e '
const lock = require("./package-lock.json").packages;
for (const n of ["herald-notify-client", "herald-notify-react"]) {
  const p = lock["node_modules/" + n];
  if (!p || !String(p.resolved).startsWith("file:")) throw new Error(n + " not installed from its tarball: " + JSON.stringify(p));
}
const nested = Object.keys(lock).filter((k) => k.endsWith("/node_modules/herald-notify-client"));
if (nested.length) throw new Error("a second herald-notify-client: " + nested);
' || fail "the tarballs were not installed together"

    say "[react $2] typecheck the app against the packages' declarations (Bundler, NodeNext)"
    npx tsc -p tsconfig.json
    npx tsc -p tsconfig.nodenext.json

    say "[react $2] SSR safety (plain Node)"
    node ssr-check.mjs

    if [[ "$1" == app ]]; then
        say "sizes (esbuild $ESBUILD_VERSION, minified, gzip -9)"
        node size.mjs
    fi

    say "[react $2] vite build"
    npx vite build --logLevel warn
    [[ -f dist/index.html ]] || fail "vite build produced no dist/index.html"

    if [[ "${CONSUMER_SKIP_BROWSER:-0}" == "1" ]]; then
        say "CONSUMER_SKIP_BROWSER=1: skipping the browser check"
        return 0
    fi
    say "[react $2] Chromium against gateway nodes serving the app"
    (cd "$HERE" && CONSUMER_DIST="$app/dist" CONSUMER_LABEL="react${2%%.*}" timeout 180 node --test --test-reporter=spec browser.test.mjs)
}

consumer_app app "$REACT_VERSION" "$TYPES_REACT_VERSION" "$TYPES_REACT_VERSION"
consumer_app app-react18 "$REACT18_VERSION" "$TYPES_REACT18_VERSION" "$TYPES_REACT_DOM18_VERSION"
say "consumer test passed"
