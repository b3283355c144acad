#!/usr/bin/env bash
# What the kernel does for evlog at saturation: nginx + php-fpm serving the bench page with its
# 10 evlog_log() calls, and `perf stat -a` over 5 s of it counting glibc's malloc_trim calls (a
# uprobe on libc), madvise system calls (what a trim does) and user page faults (what the pages
# a trim gave back cost when they are used again). With EXTS="a.so b.so" the builds alternate,
# ROUNDS times each, a fresh stack per run (e.g. a copy of the extension kept from before a
# change against the new build), so a drift of the machine lands on both.
#   bash bindings/php/bench/kernel_events.sh   (from the repo root; root, for perf's uprobe)
# Env: WORKERS (16), CONCURRENCY (16), MODE (forward-remote; null | forward as in fpm_cpu.sh),
# COMPRESSION, EXTS (default: this tree's build), ROUNDS (3), LANES (1: also count, with uprobes on
# the extension, the bodies that did not travel through their lane's ring and the new rings).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/fpm_env.sh"
workers=${WORKERS:-16} conc=${CONCURRENCY:-16} mode=${MODE:-forward-remote} rounds=${ROUNDS:-3}
exts=${EXTS:-}
[ -n "$exts" ] || { php_ext; exts=$ext; }
libc=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
perf probe -q -d 'probe_libc:malloc_trim' 2> /dev/null || true
perf probe -q -x "$libc" malloc_trim
trap 'bench_cleanup; perf probe -q -d "probe_libc:malloc_trim" 2> /dev/null || true
  perf probe -q -d "probe_evlog:*" 2> /dev/null || true' EXIT
lanes=${LANES:-0}
echo "## Kernel events in 5 s at saturation ($workers workers, -c$conc, mode=$mode${COMPRESSION:+, compression=$COMPRESSION}), the page with its 10 calls"
echo
if [ "$lanes" = 1 ]; then
  echo "| round | build | req/s | malloc_trim | madvise | page faults (user) | bodies in their own buffer | new rings (each instance of rtrb's RingBuffer::new) |"
  echo "|---|---|---|---|---|---|---|---|"
else
  echo "| round | build | req/s | malloc_trim | madvise | page faults (user) |"
  echo "|---|---|---|---|---|---|"
fi
# LANES=1: uprobes on this build's core::pipeline::lanes::owned_body (a body that does not travel
# through its lane's ring) and on each instance of rtrb's RingBuffer::new (a lane's new ring:
# after the first, one kept for reuse or a one-shot ring freed once read).
lane_probes() { # lane_probes EXT: (re)defines the probes; prints perf stat's -e arguments
  perf probe -q -d 'probe_evlog:*' 2> /dev/null || true
  local sym n=0 rb esc
  sym=$(nm --defined-only "$1" | awk '/lanes10owned_body/ && !s {s = $3} END {print s}')
  [ -n "$sym" ] && perf probe -q -x "$1" --add "probe_evlog:owned=$sym" && printf ' -e probe_evlog:owned'
  for rb in $(nm --defined-only "$1" | awk '/rtrb19RingBuffer.*3new/ {print $3}'); do
    n=$((n + 1))
    # Mangled names carry `$`; a perf event name must not start with r + hex digits.
    esc=$(printf '%s' "$rb" | sed 's/[$]/\\$/g')
    perf probe -q -x "$1" --add "probe_evlog:ringnew$n=$esc" && printf ' -e probe_evlog:ringnew%s' "$n"
  done
}
for round in $(seq 1 "$rounds"); do
  for ext in $exts; do
    mode_start "$mode"
    stack_start "$ext" "$root/bindings/php/tests/fpm/www" "$workers" 0 "${sink_args[@]}" \
      -d "evlog.schema_dir=$root/bindings/php/tests/fpm/schemas"
    base="http://127.0.0.1:$STACK_PORT/bench.php?log=1"
    wrk -t1 -c"$workers" -d3s "$base" > /dev/null
    wrk -t1 -c"$conc" -d8s "$base" > "$STACK_DIR/wrk.txt" &
    wrk_pid=$!
    sleep 1 # the counting starts once the load runs
    extra=""
    [ "$lanes" = 1 ] && extra=$(lane_probes "$ext")
    # shellcheck disable=SC2086 # $extra is a list of -e arguments
    perf stat -a -x, -e probe_libc:malloc_trim -e syscalls:sys_enter_madvise \
      -e exceptions:page_fault_user $extra -o "$STACK_DIR/stat.txt" -- sleep 5
    wait "$wrk_pid"
    awk -F, -v r="$round" -v b="$(basename "$ext")" -v lanes="$lanes" \
      -v rps="$(awk '/^Requests\/sec:/ {print $2}' "$STACK_DIR/wrk.txt")" \
      '$3 ~ /malloc_trim/ {t=$1} $3 ~ /madvise/ {m=$1} $3 ~ /page_fault/ {f=$1}
       $3 ~ /probe_evlog:owned/ {o=$1} $3 ~ /probe_evlog:ringnew/ {n += $1}
       END {printf "| %s | %s | %s | %s | %s | %s |", r, b, rps, t, m, f
            if (lanes == 1) printf " %s | %s |", o, n
            printf "\n"}' "$STACK_DIR/stat.txt"
    bench_cleanup
    busy_pid="" coll_pid="" coll_dir="" STACK_DIR=""
  done
done
