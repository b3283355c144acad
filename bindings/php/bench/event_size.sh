#!/usr/bin/env bash
# Events of several sizes through the call and the lane (php-cli, null sink): pages of 10
# `evlog_log()` calls 0.5 ms apart (`sized.php`), the 10 calls timed together in each page
# (p50 / p99, µs), and how many bodies did not fit their lane's arena and travelled in a
# buffer of their own (a uprobe on core's `owned_body`, counted by `perf stat`; needs root),
# and the flush thread's CPU per event and wake-ups (voluntary context switches).
# With EXTS="a.so b.so" the builds alternate, ROUNDS times each (a copy of the extension kept
# from before a change against the new build).
#   bash bindings/php/bench/event_size.sh   (from the repo root)
# Env: EXTS (default: this tree's profiling build), PADS ("0 300 800": bytes added to the
# event's `coupon`), ROUNDS (3), PAGES (2000).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
for v in $(env | awk -F= '/^EVLOG_/ {print $1}'); do unset "$v"; done
exts=${EXTS:-}
if [ -z "$exts" ]; then
  (cd "$root" && cargo build --profile profiling -q -p evlog-php)
  exts="$CARGO_TARGET_DIR/profiling/libevlog_php.so"
fi
rounds=${ROUNDS:-3} pages=${PAGES:-2000}
out=$(mktemp -d "${TMPDIR:-/tmp}/evlog-size.XXXXXX")
trap 'perf probe -q -d "probe_evlog:*" 2> /dev/null || true; rm -rf "$out"' EXIT
echo "## Events by size, php-cli, null sink: pages of 10 calls 0.5 ms apart ($pages pages per run)"
echo
echo "| round | build | body bytes | 10 calls p50 µs | p99 µs | bodies in their own buffer | flush thread µs per event | its wake-ups |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$rounds"); do
  for pad in ${PADS:-0 300 800}; do
    for ext in $exts; do
      sym=$(nm --defined-only "$ext" | awk '/lanes10owned_body/ && !s {s = $3} END {print s}')
      perf probe -q -d 'probe_evlog:*' 2> /dev/null || true
      perf probe -q -x "$ext" --add "probe_evlog:owned=$sym"
      perf stat -x, -e probe_evlog:owned -o "$out/stat.txt" -- \
        php8.2 -n -d "extension=$ext" -d 'evlog.mode="null"' -d "evlog.schema_dir=$root/core/tests/data/schemas" \
        "$here/sized.php" "$pad" "$pages" > "$out/line.txt"
      owned=$(awk -F, '/probe_evlog:owned/ {print $1}' "$out/stat.txt")
      read -r _ bytes _ p50 _ p99 _ flush _ wakes < "$out/line.txt"
      printf '| %s | %s | %s | %s | %s | %s of %s | %s | %s |\n' "$round" "$(basename "$ext")" "$bytes" "$p50" "$p99" \
        "$owned" "$((pages * 10))" "$flush" "$wakes"
    done
  done
done
