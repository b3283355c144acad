#!/usr/bin/env bash
# Resident memory of a php-fpm worker, per step: without evlog (ctype.so loaded instead), with the
# extension loaded, after the first event, right after a burst of 100k events (evlog_flush()
# returned), 10 s later, and after glibc's malloc_trim(0); beside each, glibc's mallinfo2() (bytes
# in use, bytes free but kept) read by www/malloc.php through FFI (ffi.so is loaded in every run).
#   bash bindings/php/bench/memory.sh           (from the repo root)
# Env: MODES ("null forward"; forward needs COLLECTOR_BIN), WORKERS (1: every request reaches
# the one worker), BURST (100000).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/fpm_env.sh"
php_ext
workers=${WORKERS:-1} burst=${BURST:-100000}
trap bench_cleanup EXIT
www="$here/www"
schemas="$root/bindings/php/tests/fpm/schemas"

rss() { # rss LABEL [trim]: one table row per worker: VmRSS, anonymous, [heap], other anonymous,
  # evlog .so (resident, private dirty), malloc in use / free kept (MiB)
  local p mi
  mi=$(get "malloc.php${2:+?trim=1}")
  for p in $(pgrep -P "$STACK_FPM_PID"); do
    awk -v label="$1" -v pid="$p" -v so="$(basename "$ext")" -v mi="$mi" '
      /^[0-9a-f]+-[0-9a-f]+ / {name = $6}
      /^Rss:/ {rss += $2; if (name == "[heap]") heap += $2; else if (name == "") other += $2; if (index(name, so)) sorss += $2}
      /^Private_Dirty:/ {if (index(name, so)) sodirty += $2}
      /^Anonymous:/ {an += $2}
      END {match(mi, /"in_use":[0-9]+/); u = substr(mi, RSTART + 9, RLENGTH - 9); match(mi, /"free_kept":[0-9]+/); f = substr(mi, RSTART + 12, RLENGTH - 12)
        printf "| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f / %.1f | %.1f / %.1f |\n", label, pid, rss/1024, an/1024, heap/1024, other/1024, sorss/1024, sodirty/1024, u/1048576, f/1048576}' "/proc/$p/smaps"
  done
}
get() { curl -fsS "http://127.0.0.1:$STACK_PORT/$1"; }
head_row() {
  echo "| step | worker pid | RSS MiB | anonymous MiB | [heap] (main arena) MiB | unnamed anon (thread arenas, stacks, ZendMM) MiB | evlog .so resident / private dirty MiB | malloc in use / free kept MiB |"
  echo "|---|---|---|---|---|---|---|---|"
}

echo "## Resident memory per php-fpm worker ($workers static), /proc/<pid>/smaps"
echo
echo "### without evlog (ctype.so loaded instead)"
echo
head_row
stack_start "$(php8.2 -r 'echo ini_get("extension_dir");')/ctype.so" "$www" "$workers" 0 -d extension=ffi -d ffi.enable=1
for _ in 1 2 3; do get noop.php > /dev/null; done
sleep 0.5
rss "no evlog, after 3 requests"
stack_stop; rm -rf "$STACK_DIR"

for mode in ${MODES:-null forward}; do
  mode_start "$mode"
  echo
  echo "### mode=$mode"
  echo
  head_row
  stack_start "$ext" "$www" "$workers" 0 "${sink_args[@]}" -d "evlog.schema_dir=$schemas" -d extension=ffi -d ffi.enable=1
  for _ in 1 2 3; do get noop.php > /dev/null; done
  sleep 0.5
  rss "extension loaded, 3 requests without evlog calls"
  get "burst.php?n=1" > "$STACK_DIR/first.json"
  sleep 1.5 # batch.max_age (1 s): the first batch has gone to the sink
  rss "after the first event"
  get "burst.php?n=$burst&flush=1" > "$STACK_DIR/burst.json"
  rss "right after a burst of $burst events (evlog_flush() returned)"
  sleep 10
  rss "10 s later"
  rss "then malloc_trim(0)" trim
  echo
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("burst page: %d evlog_log() false; accepted %d, delivered %d, dropped %s" % (s["false"], s["evlog_events_accepted_total"], s["evlog_events_delivered_total"], sum(v for k,v in s.items() if k.startswith("evlog_events_dropped_total"))))' "$STACK_DIR/burst.json"
  stack_stop; rm -rf "$STACK_DIR"; STACK_DIR=""
  collector_stop
done
