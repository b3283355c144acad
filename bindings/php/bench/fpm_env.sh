# The start the php-fpm benchmarks share. Source, do not run, after setting `here` to the bench
# directory: sets `root`, CARGO_TARGET_DIR (default target/ in the repo), unsets every EVLOG_*
# variable (a benchmark sets its config through php.ini, nothing else), sources stack.sh (nginx
# + php-fpm) and collector.sh (a local collector or the stand-in).
#   php_ext [PROFILE]   builds the extension (profiling by default: release code with line
#                       tables; debug reuses the test build) and sets `ext` to its .so;
#                       EXT=path uses that .so instead (a copy kept from another build, to compare)
#   mode_start MODE     sets `sink_args` (php-fpm -d options) for MODE: null | forward (a local
#                       collector, COMPRESSION default auto) | forward-remote (the stand-in for a
#                       collector on another host, COMPRESSION default zstd: what auto does toward
#                       one), starting what the mode sends to (`url`)
#   bench_cleanup       the EXIT trap the benchmarks share: stops a busy loop (`busy_pid`), the
#                       stack and the collector or stand-in, removes the stack's directory
root=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
for v in $(env | awk -F= '/^EVLOG_/ {print $1}'); do unset "$v"; done
source "$root/bindings/php/tests/fpm/stack.sh"
source "$here/collector.sh"

php_ext() {
  if [ -n "${EXT:-}" ]; then ext=$EXT; return; fi
  local profile=${1:-profiling}
  if [ "$profile" = debug ]; then
    (cd "$root" && cargo build -q -p evlog-php)
  else
    (cd "$root" && cargo build --profile "$profile" -q -p evlog-php)
  fi
  ext="$CARGO_TARGET_DIR/$profile/libevlog_php.so"
}

busy_pid="" coll_pid="" coll_dir=""

bench_cleanup() {
  [ -n "$busy_pid" ] && kill "$busy_pid" 2>/dev/null
  stack_stop || true
  collector_stop
  [ -n "${STACK_DIR:-}" ] && rm -rf "$STACK_DIR"
  true
}

mode_start() {
  # Quoted: php -d (and php.ini) read a bare `none` as an empty string.
  case "$1" in
    null) sink_args=(-d 'evlog.mode="null"') ;;
    forward)
      collector_start "$root/bindings/php/tests/fpm/schemas"
      sink_args=(-d evlog.mode=forward -d "evlog.forward_url=$url" -d "evlog.forward_compression=\"${COMPRESSION:-auto}\"") ;;
    forward-remote)
      standin_build_start "$root"
      sink_args=(-d evlog.mode=forward -d "evlog.forward_url=$url" -d "evlog.forward_compression=\"${COMPRESSION:-zstd}\"") ;;
    *) echo "MODE must be null, forward or forward-remote, not $1" >&2; return 2 ;;
  esac
}
