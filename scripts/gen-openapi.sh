#!/usr/bin/env bash
# Generate docs/openapi.json, the OpenAPI 3.1 document of the HTTP API, from the gateway
# (crates/herald-gateway/src/openapi.rs, whose schemas are herald-protocol's wire types), with
# the same code that serves GET /v1/openapi.json: `herald openapi`.
#
#   scripts/gen-openapi.sh          rewrite docs/openapi.json
#   scripts/gen-openapi.sh --check  fail if docs/openapi.json differs from what the code
#                                   generates (drift check; scripts/validate-deploy.sh runs it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/docs/openapi.json"
MODE="${1:-write}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "[gen-openapi] cargo run -p herald-gateway --bin herald -- openapi"
(cd "$ROOT" && cargo run -q -p herald-gateway --bin herald -- openapi >"$TMP/openapi.json" 2>"$TMP/log") || {
    cat "$TMP/log" >&2
    echo "[gen-openapi] herald openapi failed" >&2
    exit 1
}
[[ -s "$TMP/openapi.json" ]] || { echo "[gen-openapi] herald openapi printed nothing" >&2; exit 1; }

case "$MODE" in
write | "")
    cp "$TMP/openapi.json" "$OUT"
    echo "[gen-openapi] wrote ${OUT#"$ROOT"/}"
    ;;
--check | check)
    if diff -u "$OUT" "$TMP/openapi.json" >"$TMP/diff"; then
        echo "[gen-openapi] OK: ${OUT#"$ROOT"/} matches the code"
    else
        cat "$TMP/diff" >&2
        echo "[gen-openapi] DRIFT: docs/openapi.json differs from the gateway's document; run scripts/gen-openapi.sh and commit" >&2
        exit 1
    fi
    ;;
*)
    echo "usage: scripts/gen-openapi.sh [--check]" >&2
    exit 2
    ;;
esac
