#!/usr/bin/env bash
# Memory per php-fpm worker over many workers under load (issue 18's target is stated per worker,
# measured over 16): WORKERS static workers (16), first without evlog (ctype.so loaded instead,
# the page's 10 evlog_log() calls skipped), then with it, per MODE. Steps: after warm-up requests
# that do not log; steady state under load (LOAD_REQUESTS requests of the bench page, 10 events
# each, WORKERS at a time); right after a burst of BURST events in every worker at once (one
# burst.php request per worker, concurrently: a worker serves one request at a time, so each
# gets one); and 10 s later. Per step: mean and max over the workers of RSS, PSS (shared pages
# split between the processes that map them: the .so's code counts 1/WORKERS per worker) and
# anonymous memory, from /proc/<pid>/smaps_rollup, in MiB.
#   bash bindings/php/bench/memory_fpm16.sh     (from the repo root)
# Env: MODES ("null forward"; forward needs COLLECTOR_BIN), COMPRESSION (forward:
# evlog.forward_compression, default auto, none toward this loopback collector; zstd holds what
# a worker sending to a remote collector holds), WORKERS (16), BURST (100000), LOAD_REQUESTS
# (20000), PROFILE (profiling; "debug" reuses the test build).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/fpm_env.sh"
php_ext "${PROFILE:-profiling}"
workers=${WORKERS:-16} burst=${BURST:-100000} load=${LOAD_REQUESTS:-20000}
trap bench_cleanup EXIT
www="$here/www"
schemas="$root/bindings/php/tests/fpm/schemas"
# The bench page (10 events per request, or none without ?log=1) beside memory.sh's pages.
page_dir=$(mktemp -d "${TMPDIR:-/tmp}/evlog-mem16-www.XXXXXX")
cp "$www"/*.php "$root/bindings/php/tests/fpm/www/bench.php" "$page_dir/"

row() { # row LABEL: mean and max over the workers of RSS, PSS, anonymous (MiB)
  local pids
  pids=$(pgrep -P "$STACK_FPM_PID" | tr '\n' ' ')
  for p in $pids; do cat "/proc/$p/smaps_rollup"; echo "--"; done | awk -v label="$1" -v n="$(echo $pids | wc -w)" '
    /^Rss:/ {r = $2} /^Pss:/ {p = $2} /^Anonymous:/ {a = $2}
    /^--/ {R += r; P += p; A += a; if (r > mr) mr = r; if (p > mp) mp = p; if (a > ma) ma = a}
    END {printf "| %s | %d | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f |\n", label, n, R/n/1024, mr/1024, P/n/1024, mp/1024, A/n/1024, ma/1024}'
}
head_row() {
  echo "| step | workers | RSS mean / max MiB | PSS mean / max MiB | anonymous mean / max MiB |"
  echo "|---|---|---|---|---|"
}
get() { curl -fsS "http://127.0.0.1:$STACK_PORT/$1"; }
warm() { # every worker serves a few requests
  ab -q -n $((workers * 4)) -c "$workers" "http://127.0.0.1:$STACK_PORT/noop.php" > /dev/null 2>&1
}

run() { # run LABEL EXT LOG(0/1) ARGS...
  local label=$1 so=$2 log=$3; shift 3
  echo
  echo "### $label"
  echo
  head_row
  stack_start "$so" "$page_dir" "$workers" 0 "$@"
  warm
  row "after warm-up requests (no events)"
  ab -q -n "$load" -c "$workers" "http://127.0.0.1:$STACK_PORT/bench.php$([ "$log" = 1 ] && echo "?log=1")" > "$STACK_DIR/ab.txt" 2>&1
  row "steady: after $load requests (10 events each, $workers at a time)"
  if [ "$log" = 1 ]; then
    local pids=()
    for _ in $(seq "$workers"); do get "burst.php?n=$burst&flush=1" > /dev/null & pids+=($!); done
    wait "${pids[@]}" # only the bursts: php-fpm and nginx are children of this shell too
    row "right after a burst of $burst events in every worker"
    sleep 10
    row "10 s later"
  fi
  stack_stop; rm -rf "$STACK_DIR"; STACK_DIR=""
}

echo "## Memory per php-fpm worker, $workers static workers, /proc/<pid>/smaps_rollup"
run "without evlog (ctype.so loaded instead; the bench page without its evlog_log() calls)" \
  "$(php8.2 -r 'echo ini_get("extension_dir");')/ctype.so" ""
for mode in ${MODES:-null forward}; do
  mode_start "$mode"
  run "mode=$mode${COMPRESSION:+, compression=$COMPRESSION}" "$ext" 1 "${sink_args[@]}" -d "evlog.schema_dir=$schemas"
  collector_stop
done
rm -rf "$page_dir"
