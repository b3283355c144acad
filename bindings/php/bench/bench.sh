#!/usr/bin/env bash
# evlog PHP benchmarks (same run, same machine):
#   1. µs per evlog_log() vs a curl POST to a local endpoint vs appending a JSON line to a file;
#   2. page latency under nginx + php-fpm (wrk, fixed concurrency): 10 evlog_log() calls vs none.
#   bash bindings/php/bench/bench.sh        (from the repo root; needs the 30-php suite's packages + php8.2-curl)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
for v in $(env | awk -F= '/^EVLOG_/ {print $1}'); do unset "$v"; done # core refuses unknown EVLOG_* vars
source "$root/bindings/php/tests/fpm/stack.sh"
(cd "$root" && cargo build --release -q -p evlog-php)
ext="$CARGO_TARGET_DIR/release/libevlog_php.so"
schemas="$root/core/tests/data/schemas"
trap 'stack_stop || true; [ -n "${STACK_DIR:-}" ] && rm -rf "$STACK_DIR"' EXIT

workers=4 conc=${CONCURRENCY:-4} dur=${DURATION:-10}
stack_start "$ext" "$root/bindings/php/tests/fpm/www" "$workers" 0 -d 'evlog.mode="null"' -d "evlog.schema_dir=$root/bindings/php/tests/fpm/schemas"
echo "## 1. Per call (one PHP process, $(nproc) cores, $(php8.2 -r 'echo PHP_VERSION;'))"
echo
php8.2 -n -d "extension=$ext" -d 'extension=curl' -d 'evlog.mode="null"' -d "evlog.schema_dir=$schemas" \
  -d evlog.queue_capacity=1000000 "$here/log_bench.php" "http://127.0.0.1:$STACK_PORT/204" "$STACK_DIR/segment.log"

p99_us() { # wrk --latency output -> p99 in µs
  awk '/^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000000}}' "$1"
}
p50_us() {
  awk '/^ +50%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000000}}' "$1"
}
rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
base="http://127.0.0.1:$STACK_PORT/bench.php"
wrk -t1 -c"$conc" -d2s "$base" > /dev/null; wrk -t1 -c"$conc" -d2s "$base?log=1" > /dev/null # warm up
echo
echo "## 2. Page latency, nginx + php-fpm ($workers static workers), wrk -t1 -c$conc -d${dur}s, 3 alternating runs each"
echo
echo "| run | page | p50 µs | p99 µs | req/s |"
echo "|---|---|---|---|---|"
declare -a p99_without p99_with
for run in 1 2 3; do
  for page in without with; do
    url=$base; [ "$page" = with ] && url="$base?log=1"
    wrk -t1 -c"$conc" -d"${dur}s" --latency "$url" > "$STACK_DIR/wrk.txt"
    p99=$(p99_us "$STACK_DIR/wrk.txt")
    echo "| $run | $page 10 evlog_log() | $(p50_us "$STACK_DIR/wrk.txt") | $p99 | $(rps "$STACK_DIR/wrk.txt") |"
    if [ "$page" = with ]; then p99_with+=("$p99"); else p99_without+=("$p99"); fi
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mw=$(median "${p99_with[@]}") mo=$(median "${p99_without[@]}")
echo
echo "median p99: with $mw µs, without $mo µs, added $(awk -v a="$mw" -v b="$mo" 'BEGIN {printf "%.0f", a-b}') µs"
