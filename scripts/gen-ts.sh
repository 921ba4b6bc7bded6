#!/usr/bin/env bash
# Generate the TypeScript wire types of web/client from the Rust crate herald-protocol
# (ts-rs; the Rust types are the single source of the contract).
#
#   scripts/gen-ts.sh          regenerate web/client/src/generated/ (replaces its contents)
#   scripts/gen-ts.sh --check  regenerate into a temp dir and fail if it differs from the
#                              committed files (drift check used by scripts/web-test.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/web/client/src/generated"
MODE="${1:-write}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "[gen-ts] cargo test -p herald-protocol --features ts (TS_RS_EXPORT_DIR=$TMP)"
(cd "$ROOT" && TS_RS_EXPORT_DIR="$TMP" cargo test -q -p herald-protocol --features ts >"$TMP.log" 2>&1) || {
    cat "$TMP.log" >&2
    rm -f "$TMP.log"
    echo "[gen-ts] cargo test failed" >&2
    exit 1
}
rm -f "$TMP.log"
n="$(find "$TMP" -name '*.ts' | wc -l)"
[[ "$n" -gt 0 ]] || { echo "[gen-ts] ts-rs wrote no files to $TMP" >&2; exit 1; }

case "$MODE" in
write | "")
    mkdir -p "$OUT"
    find "$OUT" -maxdepth 1 -name '*.ts' -delete
    cp "$TMP"/*.ts "$OUT"/
    echo "[gen-ts] wrote $n files to ${OUT#"$ROOT"/}"
    ;;
--check | check)
    if diff -ru "$OUT" "$TMP" >"$TMP/../gen-ts.diff.$$" 2>&1; then
        rm -f "$TMP/../gen-ts.diff.$$"
        echo "[gen-ts] OK: ${OUT#"$ROOT"/} matches the Rust types ($n files)"
    else
        cat "$TMP/../gen-ts.diff.$$" >&2
        rm -f "$TMP/../gen-ts.diff.$$"
        echo "[gen-ts] DRIFT: web/client/src/generated differs from crates/herald-protocol; run scripts/gen-ts.sh and commit" >&2
        exit 1
    fi
    ;;
*)
    echo "usage: scripts/gen-ts.sh [--check]" >&2
    exit 2
    ;;
esac
