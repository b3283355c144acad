#!/usr/bin/env bash
# Every figure of the PHP-FPM cost targets (issue 18) in one run, each from the script that owns
# it: the call in a loop (per_call.php), the page cost of 10 evlog_log() calls one request at a
# time on a quiet machine and with one core busy, requests/s at saturation (4 and 16 connections
# × 4 and 16 workers), CPU per event on the web host (fpm_cpu.sh: alternating pairs, medians of
# the pairs' differences; one request at a time also the page's loop of 10 events timed inside
# the page, the calls' own cost without nginx's and wrk's noise), resident memory per worker (memory.sh: one worker step by step; memory_fpm16.sh: 16 workers under load) and the exit time with the sink
# down (exit_time.sh). Takes about 25 minutes; run it on an otherwise idle machine (the load
# average is printed before each section so a busy run can be told apart).
#   bash bindings/php/bench/targets.sh          (from the repo root)
# Env: MODES ("null forward forward-remote": forward to a collector on this host, and to the
# stand-in for one on another host, what the web host pays alone; see fpm_cpu.sh), PAIRS (5 for one request at a time; saturation runs take 3),
# SECTIONS ("call page busy saturation memory exit").
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
for v in $(env | awk -F= '/^EVLOG_/ {print $1}'); do unset "$v"; done
(cd "$root" && cargo build --profile profiling -q -p evlog-php && cargo build --release -q -p evlog-collector &&
  cargo build --release -q -p evlog-tests --example collector_standin)
export COLLECTOR_BIN="$CARGO_TARGET_DIR/release/evlog-collector"
export STANDIN_BIN="$CARGO_TARGET_DIR/release/examples/collector_standin"
ext="$CARGO_TARGET_DIR/profiling/libevlog_php.so"
modes=${MODES:-null forward forward-remote} pairs=${PAIRS:-5} sections=${SECTIONS:-call page busy saturation memory exit}
want() { [[ " $sections " == *" $1 "* ]]; }
load() { echo "_load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores), $(date -u +%H:%M:%S) UTC_"; echo; }

echo "# evlog on PHP-FPM: the issue-18 figures ($(php8.2 -r 'echo PHP_VERSION;'), $(nproc) cores)"
echo
if want call; then
  echo "## evlog_log() in a loop (per_call.php: median of 200 rounds of 1000 calls), 5 runs"
  echo
  load
  tmp=$(mktemp "${TMPDIR:-/tmp}/evlog-percall.XXXXXX")
  for run in 1 2 3 4 5; do
    php8.2 -n -d "extension=$ext" -d 'evlog.mode="null"' -d "evlog.schema_dir=$root/core/tests/data/schemas" \
      -d evlog.queue_capacity=1000000 "$here/per_call.php" "$tmp" | tee -a "$tmp.out"
  done
  python3 -c 'import statistics as s, sys
rows = [l.split() for l in open(sys.argv[1])]
e = sorted(float(r[1]) for r in rows); j = sorted(float(r[4]) for r in rows)
print(f"\nmedian: evlog_log {s.median(e):.3f} µs ({e[0]:.3f}–{e[-1]:.3f}), json_encode+fwrite {s.median(j):.3f} µs\n")' "$tmp.out"
  rm -f "$tmp" "$tmp.out"
fi
for mode in $modes; do
  if want page; then
    load
    MODE=$mode CONCURRENCY=1 PAIRS=$pairs bash "$here/fpm_cpu.sh"
    echo
  fi
  if want busy; then
    load
    MODE=$mode CONCURRENCY=1 PAIRS=$pairs BUSY=1 bash "$here/fpm_cpu.sh"
    echo
  fi
  if want saturation; then
    for workers in 4 16; do
      for conc in 4 16; do
        load
        MODE=$mode WORKERS=$workers CONCURRENCY=$conc PAIRS=3 DURATION=5 bash "$here/fpm_cpu.sh"
        echo
      done
    done
  fi
done
if want memory; then
  load
  bash "$here/memory.sh"
  echo
  load
  bash "$here/memory_fpm16.sh"
  echo
fi
if want exit; then
  load
  bash "$here/exit_time.sh"
fi
