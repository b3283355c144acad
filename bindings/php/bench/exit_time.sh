#!/usr/bin/env bash
# Exit time of a php-cli script that logs one event, with the forward sink pointed at a dead port
# (nothing listens: every connect is refused at once), spool off and on; RUNS runs each,
# alternating. Then one traced run of each (strace -f: the connect() attempts and the waits).
#   bash bindings/php/bench/exit_time.sh        (from the repo root)
# Env: RUNS (5), EXTRA (more -d options for every run, e.g. "-d evlog.shutdown_timeout=1s").
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
for v in $(env | awk -F= '/^EVLOG_/ {print $1}'); do unset "$v"; done
(cd "$root" && cargo build --profile profiling -q -p evlog-php)
ext="$CARGO_TARGET_DIR/profiling/libevlog_php.so"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evlog-exit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') # closed again: dead
read -r -a extra <<< "${EXTRA:-}"
script='var_dump(evlog_log("web", "hit", ["req" => "x", "i" => 1, "path" => "/", "ua" => "cli", "ms" => 1.5, "ok" => true]));'
args() { # args SPOOL(0|1) DIR
  echo -n "-n -d extension=$ext -d evlog.mode=forward -d evlog.forward_url=http://127.0.0.1:$port"
  echo -n " -d evlog.schema_dir=$root/bindings/php/tests/fpm/schemas -d evlog.spool_enabled=$1 -d evlog.spool_dir=$2"
}
declare -A times
for run in $(seq 1 "${RUNS:-5}"); do
  for spool in 0 1; do
    d="$tmp/spool-$spool-$run"; mkdir -p "$d"
    # shellcheck disable=SC2046
    t=$( { /usr/bin/time -f '%e' php8.2 $(args "$spool" "$d") "${extra[@]}" -r "$script" > /dev/null; } 2>&1 | tail -1)
    kept=$(find "$d" -type f -size +0 | wc -l)
    times[$spool]+="$t "
    echo "run $run spool=$spool: exit after ${t} s; spool files with data: $kept"
  done
done
stat() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {printf "median %s s, min %s s, max %s s (n=%d)", a[int((NR+1)/2)], a[1], a[NR], NR}'; }
echo
echo "spool off: $(stat "${times[0]}")"
echo "spool on:  $(stat "${times[1]}")"
for spool in 0 1; do
  d="$tmp/trace-$spool"; mkdir -p "$d"
  # shellcheck disable=SC2046
  strace -f -tt -e trace=connect,exit_group -o "$tmp/strace-$spool.txt" php8.2 $(args "$spool" "$d") "${extra[@]}" -r "$script" > /dev/null 2>&1 || true
  echo
  echo "traced run, spool=$spool: connect() to the dead port, then exit (strace -f -tt):"
  grep -E "connect\(.*$port|exit_group" "$tmp/strace-$spool.txt" | awk '{c=$3; sub(/\(.*/, "", c); print "  " $2, "tid " $1, c}' | head -20
  echo "  spool files with data: $(find "$d" -type f -size +0 | wc -l)"
done
