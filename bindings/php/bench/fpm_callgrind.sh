#!/usr/bin/env bash
# Instructions a php-fpm worker's main thread executes per request (valgrind callgrind, exact),
# for the bench page without and with its 10 evlog_log() calls: what the calls cost inside a
# real request, against callgrind.sh's figure for the same call in a loop; and what evlog's own
# threads (the flush thread, and the forward sink's HTTP client) execute per event there. A difference per call
# close to the loop's means the extra CPU time a page shows (fpm_cpu.sh) is not more code run
# but the same code running slower (cold caches and TLBs after the rest of the request).
#   bash bindings/php/bench/fpm_callgrind.sh        (from the repo root)
# Env: N (requests per page kind, default 2000), MODE (null | forward-remote: the collector
# stand-in, built here unless STANDIN_BIN is given | forward: a local collector, COLLECTOR_BIN),
# COMPRESSION (forward modes: evlog.forward_compression; default zstd toward the stand-in, what
# auto does toward another host, auto toward the local collector). One worker;
# nginx in front, as in fpm_cpu.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/fpm_env.sh"
php_ext
n=${N:-2000} mode=${MODE:-null}
out=$(mktemp -d "${TMPDIR:-/tmp}/evlog-fpm-callgrind.XXXXXX")
cleanup() {
  bench_cleanup
  rm -rf "$out"
}
trap cleanup EXIT
mode_start "$mode"
# callgrind_control cannot reach a forked worker, so each figure is a whole worker's life (one
# stack per run, the worker's dump at its exit) and the per-request cost the difference of two
# runs that differ only by N more requests: start-up, warm-up and shutdown cancel out.
export STACK_FPM_WRAP="valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$out/cg.%p"
worker_ir() { # worker_ir QUERY COUNT: the worker's main-thread instructions over its whole life
  rm -f "$out"/cg.*
  # This runs in a command substitution: the stack it starts is unknown to the script's EXIT
  # trap, so a failure stops it here.
  trap 'stack_stop >&2 || true; [ -n "${STACK_DIR:-}" ] && rm -rf "$STACK_DIR"' EXIT
  stack_start "$ext" "$root/bindings/php/tests/fpm/www" 1 0 "${sink_args[@]}" \
    -d "evlog.schema_dir=$root/bindings/php/tests/fpm/schemas" >&2
  local base="http://127.0.0.1:$STACK_PORT/bench.php" worker f
  # The master forks its worker once it has started; under valgrind on a busy machine that can
  # take seconds: wait for it (30 s at most).
  local deadline=$((SECONDS + 30))
  until worker=$(pgrep -P "$STACK_FPM_PID" | head -1) && [ -n "$worker" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "no php-fpm worker under valgrind after 30 s" >&2; exit 1; }
    sleep 0.2
  done
  # Warm-up: the flush thread exists and both page kinds have run; then COUNT requests in a row
  # on one keep-alive connection.
  curl -fsS "$base?log=1&w=[1-20]" "$base?x=1&w=[1-20]" > /dev/null
  curl -fsS "$base?$1&r=[1-$2]" > /dev/null
  stack_stop >&2
  rm -rf "$STACK_DIR"
  trap - EXIT
  f="$out/cg.$worker-01"
  [ -f "$f" ] || { echo "no callgrind dump of the worker's main thread ($f)" >&2; ls "$out" >&2; exit 1; }
  # The main thread's total, then the worker's other threads' (evlog's flush thread and, in
  # forward mode, its HTTP client's): the worker exits only after evlog has handed on every event.
  total() { awk '/^summary:|^totals:/ {print $2; exit}' "$1"; }
  local others=0 t
  for t in "$out/cg.$worker"-*; do
    [ "$t" = "$f" ] || others=$((others + $(total "$t")))
  done
  echo "$(total "$f") $others"
}
per_request() { # per_request QUERY: instructions per request of the main thread and of the others
  local a b
  a=$(worker_ir "$1" 100)
  b=$(worker_ir "$1" $((n + 100)))
  awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN {split(a, x, " "); split(b, y, " ");
    printf "%.0f %.0f\n", (y[1] - x[1]) / n, (y[2] - x[2]) / n}'
}
read -r without without_bg < <(per_request x=1)
read -r with with_bg < <(per_request log=1)
echo "## Instructions per request, php-fpm worker (callgrind), mode=$mode, N=$n"
echo
echo "| page | main thread | evlog's threads (flush, sink) |"
echo "|---|---|---|"
echo "| without evlog | $without | $without_bg |"
echo "| with 10 evlog_log() | $with | $with_bg |"
awk -v w="$with" -v a="$without" -v wb="$with_bg" -v ab="$without_bg" \
  'BEGIN {printf "| added per call / per event | %.0f | %.0f |\n", (w - a) / 10, (wb - ab) / 10}'
