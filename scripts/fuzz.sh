#!/usr/bin/env bash
# Fuzz what a client's bytes reach first: the WebSocket frame reader
# (herald_gateway::ws::frames::FrameReader: header checks, parsing, reassembly) and the
# client-message parser (herald_protocol::ws::parse_client_message).
#
#   scripts/fuzz.sh [seconds] [target...]
#
# seconds  libFuzzer -max_total_time per target (default 300)
# target   ws_frames, parse_client_message, roundtrip_client_message (default: all three, one
#          after the other)
#
# Installs cargo-fuzz from crates.io if missing. Only the stable toolchain is needed:
# RUSTC_BOOTSTRAP=1 lets it accept the -Z flags cargo-fuzz passes (sanitizer, coverage).
# Set FUZZ_SANITIZER=none to build without AddressSanitizer (faster, catches panics only).
# Each target starts from its committed seed corpus (fuzz/corpus/ws_frames/ for the frame
# reader, fuzz/corpus/parse_client_message/ for both message targets) plus whatever
# fuzz/work/corpus/<target>/ holds from earlier runs, which is git-ignored.
# Crashes land in fuzz/artifacts/<target>/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-...
# Exit status: 0 if no target crashed. Logs: fuzz/work/<target>.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

secs=${1:-300}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(ws_frames parse_client_message roundtrip_client_message)
sanitizer=${FUZZ_SANITIZER:-address}

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

cd "$root/fuzz"
mkdir -p work
status=0
for t in "${targets[@]}"; do
    mkdir -p "work/corpus/$t" "artifacts/$t"
    echo "fuzz: $t for ${secs}s (sanitizer: $sanitizer)" >&2
    # First corpus dir is writable (new inputs go there); the seed dir is only read.
    # -seed=1 makes the mutation sequence repeatable for a given corpus and build.
    if [[ $t == ws_frames ]]; then
        seeds=(corpus/ws_frames)
        extra=(-max_len=8192)
    else
        seeds=(corpus/parse_client_message)
        extra=(-dict=dict/client_message.dict -max_len=4096)
    fi
    if ! cargo fuzz run --release --sanitizer "$sanitizer" "$t" \
        "work/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -seed=1 "${extra[@]}" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"work/$t.log" 2>&1; then
        status=1
        echo "fuzz: $t FAILED (see fuzz/work/$t.log and fuzz/artifacts/$t/)" >&2
    fi
    # Summary: the last status line and libFuzzer's final stats.
    grep -E '^#[0-9]+.*(DONE|pulse|NEW)' "work/$t.log" | tail -n1 >&2 || true
    grep -E '^stat::' "work/$t.log" >&2 || true
done
exit "$status"
