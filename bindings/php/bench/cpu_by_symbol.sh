#!/usr/bin/env bash
# Where the CPU a page's 10 evlog_log() calls add goes, by thread and function, at saturation:
# nginx + php-fpm serving the bench page without and with its calls, alternating, each run
# sampled by `perf record -e cpu-clock` on every worker thread (the PHP threads and the evlog
# flush threads) for 5 s; cpu_by_symbol.py turns each sample into 100 µs and divides by the
# requests served in the window, and prints the µs per request each (thread, library) and each
# function adds with the calls, one column per pair, then the flush threads' own top functions.
# Complements fpm_cpu.sh, whose per-thread CPU (schedstat) is exact but says nothing of where.
#   bash bindings/php/bench/cpu_by_symbol.sh     (from the repo root; root, for perf)
# Env: WORKERS (16), CONCURRENCY (16), MODE (forward-remote; null | forward as in fpm_cpu.sh),
# COMPRESSION, PAIRS (2), EXT (a kept .so instead of this tree's build).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/fpm_env.sh"
php_ext
workers=${WORKERS:-16} conc=${CONCURRENCY:-16} mode=${MODE:-forward-remote} pairs=${PAIRS:-2}
trap bench_cleanup EXIT
mode_start "$mode"
stack_start "$ext" "$root/bindings/php/tests/fpm/www" "$workers" 0 "${sink_args[@]}" \
  -d "evlog.schema_dir=$root/bindings/php/tests/fpm/schemas"
base="http://127.0.0.1:$STACK_PORT/bench.php"
wrk -t1 -c"$workers" -d3s "$base?log=1" > /dev/null # every worker has its flush thread
pids=$(pgrep -P "$STACK_FPM_PID" | paste -sd,)
echo "## CPU added per request by the page's 10 calls, by thread and function ($workers workers, -c$conc, mode=$mode${COMPRESSION:+, compression=$COMPRESSION}; cpu-clock samples, 5 s per run)"
for run in $(seq 1 "$pairs"); do
  order="without with"; [ $((run % 2)) = 0 ] && order="with without"
  for page in $order; do
    url=$base; [ "$page" = with ] && url="$base?log=1"
    wrk -t1 -c"$conc" -d7s "$url" > "$STACK_DIR/wrk.txt" &
    wrk_pid=$!
    sleep 1 # sampled once the load runs, within wrk's run
    perf record -q -e cpu-clock -F 10000 -p "$pids" -o "$STACK_DIR/perf.data" -- sleep 5 2> /dev/null
    wait "$wrk_pid"
    perf report -i "$STACK_DIR/perf.data" --no-children --sort comm,dso,sym --stdio \
      -F sample,comm,dso,sym 2> /dev/null | grep -v '^#' | grep -v '^$' > "$STACK_DIR/$page-$run.txt"
    awk '/^Requests\/sec:/ {print $2}' "$STACK_DIR/wrk.txt" > "$STACK_DIR/$page-$run.rps"
  done
done
python3 "$here/cpu_by_symbol.py" "$STACK_DIR" "$pairs"
