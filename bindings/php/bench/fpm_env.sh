# The start the php-fpm benchmarks share. Source, do not run, after setting `here` to the bench
# directory: sets `root`, CARGO_TARGET_DIR (default target/ in the repo), unsets every EVLOG_*
# variable (a benchmark sets its config through php.ini, nothing else), sources stack.sh (nginx
# + php-fpm) and collector.sh (a local collector or the stand-in).
#   php_ext [PROFILE]   builds the extension (profiling by default: release code with line
#                       tables; debug reuses the test build) and sets `ext` to its .so
root=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
for v in $(env | awk -F= '/^EVLOG_/ {print $1}'); do unset "$v"; done
source "$root/bindings/php/tests/fpm/stack.sh"
source "$here/collector.sh"

php_ext() {
  local profile=${1:-profiling}
  if [ "$profile" = debug ]; then
    (cd "$root" && cargo build -q -p evlog-php)
  else
    (cd "$root" && cargo build --profile "$profile" -q -p evlog-php)
  fi
  ext="$CARGO_TARGET_DIR/$profile/libevlog_php.so"
}
