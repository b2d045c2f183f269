#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), on the seed corpora
# kept in fuzz/corpus/<target>, and prints each target's executions.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# A crash stops with libFuzzer's report and the input in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
targets=(event_line answer_tap stix_import config client_addr gateway_logs exfil_sources)
cargo +nightly fuzz build -O
for t in "${targets[@]}"; do
  # New inputs found go to a scratch copy: the kept corpus stays small.
  work="target/fuzz-corpus/$t"
  mkdir -p "$work"
  out=$(cargo +nightly fuzz run -O "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -max_len=4096 -print_final_stats=1 2>&1) || { echo "$out" | tail -40; echo "FAILED: $t"; exit 1; }
  runs=$(echo "$out" | grep -Eo 'stat::number_of_executed_units: *[0-9]+' | grep -Eo '[0-9]+$' || echo "?")
  echo "$t: $runs executions in ${secs}s, no crash"
done
