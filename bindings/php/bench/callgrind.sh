#!/usr/bin/env bash
# Instructions per evlog_log() (mode=null), by part, under callgrind (exact instruction counts,
# threads run one at a time, so the flush thread validates every event after or between calls).
#   bash bindings/php/bench/callgrind.sh [N]    (from the repo root; default N=20000)
# Builds the extension with `--profile profiling` (release code, line tables). Prints, per call:
# the main thread's instructions for the log loop minus the no-op loop, the PHP entry's inclusive
# count and its parts, and the flush thread's instructions per event; then the top functions of
# each thread. Keeps the callgrind files in $OUT (default: a temp dir, printed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
for v in $(env | awk -F= '/^EVLOG_/ {print $1}'); do unset "$v"; done
(cd "$root" && cargo build --profile profiling -q -p evlog-php)
ext="$CARGO_TARGET_DIR/profiling/libevlog_php.so"
n=${1:-20000}
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/evlog-callgrind.XXXXXX")}
php_args=(-n -d "extension=$ext" -d 'evlog.mode="null"' -d "evlog.schema_dir=$root/core/tests/data/schemas"
  -d evlog.queue_capacity=1000000)
run() { # run NAME N WHAT
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/$1.%p" \
    php8.2 "${php_args[@]}" "$here/loop.php" "$2" "$3" 2> "$out/$1.err" || { cat "$out/$1.err" >&2; exit 1; }
}
if [ -z "${SKIP_RUN:-}" ]; then # SKIP_RUN=1 OUT=dir: only report on the files of an earlier run
  run log "$n" log
  run log0 0 log      # the same process with no calls: start-up, pipeline build, flush(), exit
  run noop "$n" noop
  run noop0 0 noop
fi
total() { # total Ir of one callgrind file (0 when there is none: no such thread)
  if [ -n "${1:-}" ] && [ -f "$1" ]; then awk '/^summary:|^totals:/ {print $2; exit}' "$1"; else echo 0; fi
}
incl() { # incl FILE REGEX: largest inclusive Ir of a function matching REGEX
  callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    awk -v re="$2" '$0 ~ re {gsub(",", "", $1); if ($1+0 > m) m = $1+0} END {print m+0}'
}
main_of() { ls "$out/$1".*-01 2>/dev/null | head -1 || true; }
flush_of() { ls "$out/$1".*-02 2>/dev/null | head -1 || true; }
per() { awk -v a="$1" -v b="$2" -v n="$n" 'BEGIN {printf "%.0f", (a - b) / n}'; }
lm=$(main_of log) l0m=$(main_of log0) nm=$(main_of noop) n0m=$(main_of noop0)
lf=$(flush_of log) l0f=$(flush_of log0)
echo "## Instructions per call, callgrind, N=$n evlog_log() of a 6-field event, mode=null"
echo
echo "| part | instructions per call |"
echo "|---|---|"
echo "| main thread, log loop − no-op loop (whole call as PHP runs it) | $(per "$(( $(total "$lm") - $(total "$l0m") ))" "$(( $(total "$nm") - $(total "$n0m") ))") |"
entry=$(incl "$lm" '_internal_evlog_log|evlog_log_handler') body=$(incl "$lm" 'evlog_php::error::guard') conv=$(incl "$lm" 'convert::write_table')
echo "| PHP entry, inclusive (the \`evlog_log\` handler: argument parsing, then the body) | $(per "$entry" 0) |"
echo "| … the body (\`error::guard\` closure: pipeline lookup, conversion, core's log) | $(per "$body" 0) |"
echo "| … … argument conversion (\`convert::write_table\`: the event array to JSON text) | $(per "$conv" 0) |"
echo "| … … core's \`Pipeline::log\` (inlined into the body: body − conversion) | $(per "$body" "$conv") |"
echo "| flush thread, all of it, per event | $(per "$(( $(total "$lf") - $(total "$l0f") ))" 0) |"
echo "| … validation (\`Processor::process_for\`) | $(per "$(incl "$lf" 'Processor::process_for')" 0) |"
echo
for f in "$lm" "$lf"; do
  echo "### top functions (self), $(basename "$f")"
  echo '```'
  callgrind_annotate --auto=no --threshold=95 "$f" 2>/dev/null | sed -n '/file:function/,$p' | head -32 || true
  echo '```'
  echo "### top functions (inclusive), $(basename "$f")"
  echo '```'
  callgrind_annotate --auto=no --inclusive=yes --threshold=99 "$f" 2>/dev/null | sed -n '/file:function/,$p' | head -40 || true
  echo '```'
done
echo "callgrind files: $out"
