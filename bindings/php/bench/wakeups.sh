#!/usr/bin/env bash
# Why a page waits: one request at a time under nginx + php-fpm, the bench page with its 10
# evlog_log() calls, recorded with `perf record` (the scheduler's wake-up and switch events on
# every CPU, and cpu-clock samples with call chains); wakeups.py then takes every wake-up of a
# page-serving thread (php-fpm, nginx, wrk) that waited more than 100 µs for its CPU and says
# which task that CPU was running when the wake-up came, and for those where it was an evlog
# flush thread, where that thread was (its top frames while the page's thread waited). Also the
# VM's own price of a wake-up: a pipe ping-pong between two threads on different CPUs and on
# one CPU (gcc-built, `vm_pingpong.c`).
#   bash bindings/php/bench/wakeups.sh          (from the repo root; needs root for perf's
#                                                tracepoints)
# Env: WORKERS (4), SECONDS_REC (5), MODE (null | forward | forward-remote, as in fpm_cpu.sh;
# default forward-remote), COMPRESSION (forward modes), STACK_POOL_EXTRA (php-fpm pool lines,
# e.g. `env[NAME] = value`, for an experiment).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/fpm_env.sh"
php_ext
workers=${WORKERS:-4} rec=${SECONDS_REC:-5} mode=${MODE:-forward-remote}
trap bench_cleanup EXIT
mode_start "$mode"
stack_start "$ext" "$root/bindings/php/tests/fpm/www" "$workers" 0 "${sink_args[@]}" \
  -d "evlog.schema_dir=$root/bindings/php/tests/fpm/schemas"
base="http://127.0.0.1:$STACK_PORT/bench.php?log=1"
wrk -t1 -c"$workers" -d2s "$base" > /dev/null
wrk -t1 -c1 -d"$((rec + 4))s" --latency "$base" > "$STACK_DIR/wrk.txt" &
wrk_pid=$!
sleep 2
perf record -q -e sched:sched_wakeup,sched:sched_switch -e cpu-clock -F 20000 -g \
  -o "$STACK_DIR/perf.data" -a -- sleep "$rec" 2> /dev/null
wait "$wrk_pid"
echo "## Page wake-ups that waited for a CPU ($workers workers, mode=$mode, wrk -c1, ${rec} s recorded)"
echo
echo "wrk, whole run: $(awk '$1 == "50%" || $1 == "99%" {printf "p%s %s  ", $1, $2}' "$STACK_DIR/wrk.txt" | tr -d '%')"
perf script -i "$STACK_DIR/perf.data" 2> /dev/null | python3 "$here/wakeups.py"
gcc -O2 -pthread -o "$STACK_DIR/pingpong" "$here/vm_pingpong.c"
echo
"$STACK_DIR/pingpong"
