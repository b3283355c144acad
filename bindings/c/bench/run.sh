#!/usr/bin/env bash
# Benchmark of evlog_log() from C: builds the release static library, compiles bench_log.c with
# -O2, and prints the median and p99 ns per call for 1 and 2 threads (null sink; every event is
# still validated on the flush thread). Usage: bash bindings/c/bench/run.sh [EVENTS_PER_THREAD]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
events="${1:-1000000}"
cargo build --release -p evlog-c >&2
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
gcc -std=c11 -O2 -Iinclude bindings/c/bench/bench_log.c "$CARGO_TARGET_DIR/release/libevlog.a" \
  -lpthread -ldl -lm -o "$out/bench_log"
for event in page_view transaction; do
  for threads in 1 2; do
    "$out/bench_log" core/tests/data/schemas "$threads" "$events" "$event"
  done
done
