#!/usr/bin/env bash
# Where a page's cost goes under nginx + php-fpm: for the bench page with and without its 10
# evlog_log() calls (alternating runs), per request: latency (wrk), CPU time of the workers' main
# threads and of their evlog flush threads (/proc/<pid>/task/<tid>/schedstat, ns), and context
# switches of each (/proc/.../status: voluntary = the thread slept and was woken, i.e. a flush
# thread wake-up; nonvoluntary = preempted); one request at a time, also the wall time of the
# page's loop of 10 events measured inside the page (hrtime, sent back in a header and read by
# page_ns.lua): what the calls themselves add, without nginx's and wrk's noise. The pairs
# alternate their order (without-with, then with-without) so that a drift of the machine's
# speed during the run does not land on one side. Optionally a perf profile of the workers.
#   bash bindings/php/bench/fpm_cpu.sh          (from the repo root)
# Env: WORKERS (4), CONCURRENCY (1), DURATION (10 s), PAIRS (3), MODE (null | forward: a real
# collector on this host, needs COLLECTOR_BIN | forward-remote: the stand-in for a collector on
# another host, tests/examples/collector_standin.rs, built here unless STANDIN_BIN is given),
# LOOP_NS (1 with CONCURRENCY=1, else 0: read the page's loop time; wrk then runs a Lua callback
# per response, so it is left off at saturation, where it would take CPU from the pages),
# COMPRESSION (forward modes: evlog.forward_compression; default auto with the local collector,
# zstd with the stand-in, which is what auto does toward a collector on another host), BUSY=1 (one busy loop on another process while measuring), PERF=1 (then a perf
# record -g of the workers during one more "with" run; top entries printed), WITH (log: the page
# with its 10 evlog_log() calls | json: with a json_encode() of each event instead, no evlog call:
# the reference of serializing the events in PHP alone).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/fpm_env.sh"
php_ext
workers=${WORKERS:-4} conc=${CONCURRENCY:-1} dur=${DURATION:-10} pairs=${PAIRS:-3} mode=${MODE:-null}
loop_ns=${LOOP_NS:-$([ "$conc" = 1 ] && echo 1 || echo 0)}
wrk_script=(); [ "$loop_ns" = 1 ] && wrk_script=(-s "$here/page_ns.lua")
with_query=log=1
case "${WITH:-log}" in
  log) ;;
  json) with_query=json=1 ;;
  *) echo "WITH must be log or json" >&2; exit 2 ;;
esac
trap bench_cleanup EXIT
mode_start "$mode"
standin_url=${url:-}
stack_start "$ext" "$root/bindings/php/tests/fpm/www" "$workers" 0 "${sink_args[@]}" \
  -d "evlog.schema_dir=$root/bindings/php/tests/fpm/schemas"
base="http://127.0.0.1:$STACK_PORT/bench.php"
# Every worker logs once, so each has its flush thread before anything is measured.
wrk -t1 -c"$workers" -d3s "$base?log=1" > "$STACK_DIR/warm.txt"
logged=$(($(awk '/requests in/ {print $1}' "$STACK_DIR/warm.txt") * 10)) # events the pages logged
wrk -t1 -c"$conc" -d2s "$base" > /dev/null
[ "${BUSY:-0}" = 1 ] && { sh -c 'while :; do :; done' & busy_pid=$!; }

snapshot() { # one line per thread of every worker: comm cpu_ns voluntary nonvoluntary
  local p t
  for p in $(pgrep -P "$STACK_FPM_PID"); do
    for t in /proc/"$p"/task/*; do
      awk -v comm="$(cat "$t/comm" 2>/dev/null)" -v cpu="$(awk '{print $1}' "$t/schedstat" 2>/dev/null)" \
        '/^voluntary_ctxt_switches/ {v=$2} /^nonvoluntary_ctxt_switches/ {nv=$2}
         END {c = (comm ~ /^evlog/) ? "flush" : "main"; print c, cpu, v, nv}' "$t/status" 2>/dev/null || true
    done
  done | awk -v coll="$(collector_ns)" '{cpu[$1]+=$2; v[$1]+=$3; nv[$1]+=$4} END {printf "%.0f %.0f %.0f %.0f %.0f %.0f %.0f\n", cpu["main"], v["main"], nv["main"], cpu["flush"], v["flush"], nv["flush"], coll}'
}
collector_ns() { # CPU time of the local collector's (or stand-in's) threads, ns; 0 without one
  [ -n "$coll_pid" ] || { echo 0; return; }
  cat /proc/"$coll_pid"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s}'
}
lat_us() { # lat_us FILE PCT: wrk --latency percentile in µs
  awk -v p="$2" '$1 == p"%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s/,"",v); print v*1000000}}' "$1"
}
echo "## Per request, nginx + php-fpm ($workers workers), mode=$mode${COMPRESSION:+, compression=$COMPRESSION}, wrk -t1 -c$conc -d${dur}s, busy loop: ${BUSY:-0}"
echo
echo "| run | page | p50 µs | p99 µs | req/s | main CPU µs/req | flush CPU µs/req | flush wake-ups/req | flush preempted/req | main vol. sw/req | main preempted/req | collector CPU µs/req | loop p50 µs | loop p99 µs |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for run in $(seq 1 "$pairs"); do
  order="without with"; [ $((run % 2)) = 0 ] && order="with without"
  for page in $order; do
    url=$base; [ "$page" = with ] && url="$base?$with_query"
    read -r m0 mv0 mn0 f0 fv0 fn0 c0 < <(snapshot)
    wrk -t1 -c"$conc" -d"${dur}s" --latency "${wrk_script[@]}" "$url" > "$STACK_DIR/wrk.txt"
    read -r m1 mv1 mn1 f1 fv1 fn1 c1 < <(snapshot)
    reqs=$(awk '/requests in/ {print $1}' "$STACK_DIR/wrk.txt")
    [ "$page" = with ] && [ "$with_query" = log=1 ] && logged=$((logged + reqs * 10))
    awk -v rows="$STACK_DIR/rows.txt" -v r="$run" -v pg="$page" -v n="$reqs" -v p50="$(lat_us "$STACK_DIR/wrk.txt" 50)" -v p99="$(lat_us "$STACK_DIR/wrk.txt" 99)" \
      -v rps="$(awk '/^Requests\/sec:/ {print $2}' "$STACK_DIR/wrk.txt")" \
      -v lp50="$(awk '$1 == "loop_ns" {print $2 / 1000}' "$STACK_DIR/wrk.txt")" -v lp99="$(awk '$1 == "loop_ns" {print $3 / 1000}' "$STACK_DIR/wrk.txt")" \
      -v m=$((m1 - m0)) -v f=$((f1 - f0)) -v fv=$((fv1 - fv0)) -v fn=$((fn1 - fn0)) -v mv=$((mv1 - mv0)) -v mn=$((mn1 - mn0)) -v c=$((c1 - c0)) \
      'BEGIN {printf "| %s | %s | %s | %s | %s | %.1f | %.2f | %.3f | %.3f | %.2f | %.3f | %.1f | %.2f | %.2f |\n", r, pg, p50, p99, rps, m/n/1000, f/n/1000, fv/n, fn/n, mv/n, mn/n, c/n/1000, lp50, lp99
              printf "%s %s %s %s %s %.3f %.3f %.3f %.3f %.3f\n", r, pg, p50, p99, rps, m/n/1000, f/n/1000, c/n/1000, lp50, lp99 >> rows}'
  done
done
if [ "$mode" = forward-remote ]; then
  # Deliveries, not failures, were measured: the stand-in acknowledged every event the pages
  # logged (wrk counts completed pages; events reach it within batch.max_age).
  acked() { curl -fsS "$standin_url/count"; }
  if stack_wait 60 sh -c "[ \"\$(curl -fsS '$standin_url/count')\" -ge $logged ]"; then
    echo; echo "The stand-in acknowledged $(acked) events; the pages logged at least $logged."
  else
    echo "FAIL: the stand-in acknowledged $(acked) events, the pages logged at least $logged" >&2
    exit 1
  fi
fi
# The pairs' summary: medians of the with-minus-without differences, and the spread of each.
added="10 evlog_log()"; [ "$with_query" = log=1 ] || added="10 json_encode() (no evlog call)"
python3 "$here/pairs_summary.py" "$STACK_DIR/rows.txt" "$workers workers, -c$conc, mode=$mode${COMPRESSION:+, compression=$COMPRESSION}, busy=${BUSY:-0}" "$added"
if [ "${PERF:-0}" = 1 ]; then
  pids=$(pgrep -P "$STACK_FPM_PID" | paste -sd,)
  wrk -t1 -c"$conc" -d"$((dur + 2))s" "$base?log=1" > /dev/null &
  wrk_pid=$!
  sleep 1
  perf record -q -e cpu-clock -F 4999 -g -o "$STACK_DIR/perf.data" -p "$pids" -- sleep "$dur" 2> /dev/null
  wait "$wrk_pid"
  echo
  echo "### perf, workers' threads, page with 10 evlog_log(): top entries by thread (self)"
  echo '```'
  { perf report -i "$STACK_DIR/perf.data" --no-children --sort comm,dso --stdio -g none 2> /dev/null | grep -v '^#' | grep -v '^$' | head -14; } || true
  echo
  { perf report -i "$STACK_DIR/perf.data" --no-children --sort comm,sym --stdio -g none 2> /dev/null | grep -v '^#' | grep -v '^$' | head -45; } || true
  echo '```'
  [ -n "${PERF_KEEP:-}" ] && cp "$STACK_DIR/perf.data" "$PERF_KEEP"
fi
