#!/usr/bin/env bash
# Each of a page's 10 evlog_log() calls timed on its own inside the page (calls.php, hrtime),
# one request at a time (or CONCURRENCY at once: at saturation) under nginx + php-fpm: which calls of a page cost what, e.g. the first
# (the caches cold after the rest of the request) against the others, and which pay a rare
# extra (a wake-up of the flush thread). Also the same page with the caches evicted between the
# 5th and 6th calls (m=thrash) and with a 2 ms sleep there (m=sleep).
#   bash bindings/php/bench/call_index.sh        (from the repo root)
# Env: WORKERS (4), CONCURRENCY (1), DURATION (8 s per run), MODE (null | forward | forward-remote, as in
# fpm_cpu.sh), COMPRESSION (forward modes, as there), OPCACHE=1 (load
# opcache, as production does). Prints p50 / p99 / p99.9 per call, µs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/fpm_env.sh"
php_ext
workers=${WORKERS:-4} conc=${CONCURRENCY:-1} dur=${DURATION:-8} mode=${MODE:-null}
trap bench_cleanup EXIT
mode_start "$mode"
[ "${OPCACHE:-0}" = 1 ] && sink_args+=(-d zend_extension=opcache.so -d opcache.enable=1)
stack_start "$ext" "$root/bindings/php/tests/fpm/www" "$workers" 0 "${sink_args[@]}" \
  -d "evlog.schema_dir=$root/bindings/php/tests/fpm/schemas"
base="http://127.0.0.1:$STACK_PORT/calls.php"
wrk -t1 -c"$workers" -d2s "$base?log=1" > /dev/null
echo "## Each call of a page timed inside it, µs: p50 / p99 / p99.9 ($workers workers, mode=$mode, opcache=${OPCACHE:-0}, wrk -c$conc -d${dur}s)"
echo
echo "| page | call 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for page in "without:" "with:log=1" "with, caches evicted before call 6:log=1&m=thrash" "with, 2 ms sleep before call 6:log=1&m=sleep"; do
  wrk -t1 -c"$conc" -d"${dur}s" -s "$here/page_ns.lua" "$base?${page#*:}" |
    awk -v name="${page%%:*}" '$1 == "call" {row = row sprintf(" %.2f / %.2f / %.1f |", $3/1000, $4/1000, $5/1000)}
      END {print "| " name " |" row}'
done
