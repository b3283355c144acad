#!/usr/bin/env bash
# C binding: builds libevlog.a once (debug profile, shared target dir), compiles the C tests
# (bindings/c/tests/c/evlog_test.c) with gcc against it, and runs them plain, under
# AddressSanitizer + UBSan and under valgrind; checks the header compiles as C and C++; builds and
# runs the example with the README's command; installs into a temp prefix and builds the example
# through pkg-config (shared and static).
# Also checks the installed artifacts: the .so's SONAME, no debug info, and a CMake project using
# find_package(evlog) against the prefix (shared and static).
# The plain run also writes evlog_stats_text's output, which must pass `promtool check metrics`
# and parse with prometheus_client into the right family types (tests/check_metrics.py).
#   bash tests/suites/10-c.sh setup   installs gcc, g++, valgrind, pkg-config, cmake, binutils,
#                                     promtool (Debian's prometheus), prometheus_client (.venv)
#   bash tests/suites/10-c.sh         runs the suite
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${1:-}" = setup ]; then
  ensure_apt gcc g++ libc6-dev valgrind pkg-config cmake make binutils prometheus
  ensure_venv "prometheus_client>=0.17"
  exit 0
fi

cd "$REPO_ROOT"
passed=0
failed=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "not ok - $1" >&2; }
# check NAME CMD...: runs CMD, counts it as one test.
check() {
  local name="$1"
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# C test runs print "ok - NAME" / "not ok - NAME"; count them (prefixed by the run's label).
count_c_run() {
  local label="$1" log="$2" status="$3"
  local ok bad
  ok=$(grep -c '^ok - ' "$log" || true)
  bad=$(grep -c '^not ok - ' "$log" || true)
  sed -n 's/^\(not \)\{0,1\}ok - /&'"$label"': /p' "$log"
  passed=$((passed + ok))
  failed=$((failed + bad))
  if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
    fail "$label: exited with status $status"
  fi
}

log "c: cargo build -p evlog-c (debug)"
cargo build -p evlog-c
lib="$CARGO_TARGET_DIR/debug/libevlog.a"
native_libs="-lpthread -ldl -lm"
schemas="core/tests/data/schemas"
cflags=(-std=c11 -Wall -Wextra -Werror -g -Iinclude)

log "c: compile the C tests (plain and with -fsanitize=address,undefined)"
check "compile evlog_test" gcc "${cflags[@]}" bindings/c/tests/c/evlog_test.c "$lib" $native_libs \
  -o "$work/evlog_test"
check "compile evlog_test (asan)" gcc "${cflags[@]}" -fsanitize=address,undefined \
  -fno-omit-frame-pointer bindings/c/tests/c/evlog_test.c "$lib" $native_libs \
  -o "$work/evlog_test_asan"
printf '#include <evlog.h>\nint main(void) { evlog_status s = EVLOG_OK; return (int)s; }\n' \
  > "$work/header.cpp"
check "header compiles as C++ (cpp_compat)" g++ -std=c++11 -Wall -Werror -Iinclude \
  -fsyntax-only "$work/header.cpp"
check "header compiles as C with -pedantic" gcc -std=c99 -pedantic -Wall -Werror -Iinclude \
  -fsyntax-only -x c "$work/header.cpp"

# run_c LABEL LOGFILE "TEST..." CMD...: runs CMD SCHEMAS DIR TEST... (a C test binary, possibly
# under valgrind) in its own work dir; counts its result lines. Empty TESTS = all.
run_c() {
  local label="$1" logf="$2" tests="$3"
  shift 3
  local dir
  dir="$(mktemp -d "$work/run.XXXXXX")"
  local status=0
  # shellcheck disable=SC2086
  "$@" "$schemas" "$dir" $tests > "$logf" 2> "$logf.err" || status=$?
  cat "$logf.err" >&2
  count_c_run "$label" "$logf" "$status"
}

if [ -x "$work/evlog_test" ]; then
  log "c: C tests (100000 events in the threads test)"
  EVTEST_STATS_TEXT="$work/stats.prom" run_c plain "$work/plain.log" "" "$work/evlog_test"
  log "c: evlog_stats_text's output through promtool and prometheus_client"
  ensure_venv
  check "stats text passes promtool check metrics" sh -c "promtool check metrics < '$work/stats.prom'"
  check "stats text parses with prometheus_client into typed families" \
    python tests/check_metrics.py "$work/stats.prom" \
    evlog_events_accepted=counter evlog_events_delivered=counter \
    evlog_events_rejected=counter evlog_events_dropped=counter \
    evlog_events_retried=counter evlog_events_spooled=counter evlog_queue_events=gauge \
    'evlog_sink_errors=counter?' evlog_dead_letters_waiting=gauge evlog_flush_seconds=histogram \
    evlog_config_reloads=counter 'evlog_config_reloads_total{result=error}' \
    'evlog_events_dropped_total{reason=invalid_envelope}' 'evlog_events_rejected_total{}'
fi
if [ -x "$work/evlog_test_asan" ]; then
  # Every test but fork. Debian 12's AddressSanitizer (GCC 12's libasan) does not lock its
  # allocator around fork(): when the parent's flush thread is inside malloc at that instant,
  # the child inherits a held allocator lock and hangs at its first malloc of that size class
  # (seen here: 1 child in 5 to 20 runs on a busy machine, stuck in
  # SizeClassAllocator64::GetFromAllocator). LLVM's ASan installs an atfork handler since
  # llvm/llvm-project#75290 (LLVM 18); glibc's malloc has always had one. The fork test runs
  # with glibc's malloc above and under valgrind (memory errors checked) below.
  log "c: C tests under AddressSanitizer + UBSan (leak check on; fork runs plain and under valgrind)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_c asan "$work/asan.log" \
    "version_and_strerror open_errors log_misuse shutdown_handle threads other_exact" \
    "$work/evlog_test_asan"
fi
if [ -x "$work/evlog_test" ]; then
  # Leaks of kinds definite/indirect and every memory error fail the run. The fork test runs with
  # --leak-check=no: a forked child inherits the parent's in-flight state (its flush thread's
  # batches and queue), which it must never touch, so a leak check of the child would report that
  # memory; its memory errors are still checked, and the same open/log/close paths are
  # leak-checked by the other tests.
  vg=(valgrind -q --error-exitcode=99 --track-origins=no)
  log "c: C tests under valgrind (20000 events in the threads test)"
  EVTEST_EVENTS=20000 run_c valgrind "$work/vg.log" \
    "version_and_strerror open_errors log_misuse shutdown_handle threads" \
    "${vg[@]}" --leak-check=full --errors-for-leak-kinds=definite,indirect "$work/evlog_test"
  EVTEST_EVENTS=20000 run_c valgrind "$work/vg-fork.log" fork \
    "${vg[@]}" --leak-check=no "$work/evlog_test"
fi

log "c: the example, built with the README's command"
check "example builds" gcc -O2 -Iinclude bindings/c/examples/hello.c "$lib" $native_libs \
  -o "$work/hello"
example_config="$(printf '[sink.file]\ndir = "%s/example-data"\n[schemas]\ndir = "collector/examples/schemas"\n' "$work")"
example_ok() {
  local out
  out="$("$@" "$example_config")" || return 1
  echo "$out"
  grep -q 'accepted 5, delivered 4, rejected 0, dropped 1' <<<"$out" &&
    grep -q 'refused as expected: .*"event"' <<<"$out" &&
    [ "$(cat "$work"/example-data/events/transaction*.ndjson | wc -l)" -ge 3 ]
}
check "example runs" example_ok "$work/hello"

log "c: install into a temp prefix, build the example through pkg-config"
prefix="$work/prefix"
if PROFILE=debug bash bindings/c/install.sh "$prefix"; then
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
  check "pkg-config version matches the header" test "$(pkg-config --modversion evlog)" = \
    "$(sed -n 's/^#define EVLOG_VERSION "\(.*\)"$/\1/p' include/evlog.h)"
  # shellcheck disable=SC2046
  check "example links the shared library via pkg-config" gcc bindings/c/examples/hello.c \
    $(pkg-config --cflags --libs evlog) -Wl,-rpath,"$prefix/lib" -o "$work/hello-shared"
  # shellcheck disable=SC2046
  check "example links the static library via pkg-config" gcc bindings/c/examples/hello.c \
    $(pkg-config --cflags --libs evlog-static) -o "$work/hello-static"
  rm -rf "$work/example-data"
  check "shared example runs" example_ok "$work/hello-shared"
  check "shared example uses libevlog.so" sh -c "ldd '$work/hello-shared' | grep -q '$prefix/lib/libevlog.so'"
  rm -rf "$work/example-data"
  check "static example runs" example_ok "$work/hello-static"

  version=$(pkg-config --modversion evlog)
  soname=$(readelf -d "$prefix/lib/libevlog.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
  check "libevlog.so.$version has SONAME libevlog.so.0.<minor> ($soname)" \
    test "$soname" = "libevlog.so.$(cut -d. -f1-2 <<<"$version")"
  check "libevlog.so and the SONAME link resolve to the versioned file" sh -c \
    "test \"\$(readlink -f '$prefix/lib/libevlog.so')\" = \"\$(readlink -f '$prefix/lib/libevlog.so.$version')\" && test -e '$prefix/lib/$soname'"
  check "a program linked via pkg-config records the SONAME (NEEDED $soname)" sh -c \
    "readelf -d '$work/hello-shared' | grep -q 'Shared library: \[$soname\]'"
  # shellcheck disable=SC2046
  gcc bindings/c/examples/hello.c $(pkg-config --cflags --libs evlog) -o "$work/hello-norpath"
  rm -rf "$work/example-data"
  with_ld_path() { LD_LIBRARY_PATH="$prefix/lib" example_ok "$@"; }
  check "without an rpath, the program runs with LD_LIBRARY_PATH=PREFIX/lib (install.sh's note)" \
    with_ld_path "$work/hello-norpath"
  no_debug_info() { ! readelf -S --wide "$1" 2>/dev/null | grep -q '\.debug_info'; }
  check "installed libevlog.a has no debug info" no_debug_info "$prefix/lib/libevlog.a"
  check "installed libevlog.so has no debug info" no_debug_info "$prefix/lib/libevlog.so.$version"

  log "c: a CMake project with find_package(evlog) against the prefix"
  mkdir -p "$work/cmake-src"
  cp bindings/c/examples/hello.c "$work/cmake-src/"
  cat > "$work/cmake-src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(evlog_cmake_check C)
find_package(evlog $version CONFIG REQUIRED)
add_executable(hello_shared hello.c)
target_link_libraries(hello_shared PRIVATE evlog::evlog)
add_executable(hello_static hello.c)
target_link_libraries(hello_static PRIVATE evlog::evlog_static)
CMAKE
  if cmake -S "$work/cmake-src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/cmake.log" 2>&1 &&
    cmake --build "$work/cmake-build" >>"$work/cmake.log" 2>&1; then
    pass "CMake find_package(evlog $version) configures and builds (shared and static)"
    rm -rf "$work/example-data"
    check "CMake shared example runs" example_ok "$work/cmake-build/hello_shared"
    rm -rf "$work/example-data"
    check "CMake static example runs" example_ok "$work/cmake-build/hello_static"
  else
    cat "$work/cmake.log" >&2
    fail "CMake find_package(evlog $version) configures and builds (shared and static)"
  fi
  mkdir -p "$work/cmake-src9"
  cp "$work/cmake-src/hello.c" "$work/cmake-src9/"
  sed 's/find_package(evlog [0-9.]*/find_package(evlog 9.0/' "$work/cmake-src/CMakeLists.txt" \
    > "$work/cmake-src9/CMakeLists.txt"
  check "find_package(evlog 9.0) is refused (evlogConfigVersion.cmake)" sh -c \
    "! cmake -S '$work/cmake-src9' -B '$work/cmake-build9' -DCMAKE_PREFIX_PATH='$prefix' >/dev/null 2>&1"
else
  fail "install.sh"
fi

# The README's own block for a user's program, run as written: HOME is a fresh directory (the
# block installs into $HOME/evlog and builds in ~/evlog-app), the debug build stands in for the
# release one (PROFILE=debug, as above), and both of its programs must log what hello.c logs.
log "c: the C README's 'Build your own program' block, as written"
readme_c() {
  local home="$work/readme-home" block out
  rm -rf "$home" && mkdir -p "$home"
  block="$(python3 tests/readme_block.py bindings/c/README.md "Build your own program" sh)" || return 1
  # A fresh HOME, as a new user's; rustup and cargo keep theirs (they live under the real one).
  out="$(RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
    HOME="$home" PROFILE=debug bash -e -c "$block" 2>&1)" || { echo "$out" >&2; return 1; }
  echo "$out"
  [ "$(grep -c 'accepted 5, delivered 4, rejected 0, dropped 1' <<<"$out")" -eq 2 ] &&
    [ "$(cat "$home"/evlog-app/evlog-data/events/transaction*.ndjson | wc -l)" -ge 6 ]
}
check "the C README's install, pkg-config and CMake block runs as written" readme_c

echo "c: $passed passed, $failed failed"
record_counts c "$passed" "$failed"
[ "$failed" -eq 0 ]
