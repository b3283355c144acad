#!/usr/bin/env bash
# Instructions per event on the forward sink's flush thread, by part (valgrind callgrind, exact
# counts, insensitive to load), with `tests/examples/forward_cpu.rs`: a Rust producer, a real
# collector (null sink) in the same process on loopback.
#   bash tests/examples/forward_callgrind.sh [FORMAT] [N] [COMPRESSION]   (from the repo root;
#   events, 20000, auto: toward this loopback collector none; zstd or gzip to count it). CHUNK=k: the
#   producer waits for each k events to be delivered before logging more (a steady producer, as
#   a php-fpm worker; default: one burst).
# Runs N and N/10 events and divides the difference by the 0.9 N between, so start-up, the
# warm-up event and exit cancel out. Prints the flush thread's total per event and the inclusive
# count per event of its parts (framing, compression, the HTTP exchange, reading the answer),
# then its top functions. Keeps the callgrind files in $OUT (default: a temp dir, printed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
format=${1:-events}
n=${2:-20000}
compression=${3:-auto}
small=$((n / 10))
# BIN=path: measure that binary (a copy kept from an earlier build, to compare) without building.
bin=${BIN:-$CARGO_TARGET_DIR/profiling/examples/forward_cpu}
[ -n "${BIN:-}" ] || (cd "$root" && cargo build --profile profiling -q -p evlog-tests --example forward_cpu)
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/evlog-fwd-callgrind.XXXXXX")}
for k in "$n" "$small"; do
  [ -z "${SKIP_RUN:-}" ] || break # SKIP_RUN=1 OUT=dir: only report on an earlier run's files
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/fwd-$k.%p" \
    "$bin" "$format" "$k" 1 "$compression" "${CHUNK:-$k}" > "$out/fwd-$k.out" 2> "$out/fwd-$k.err" ||
    { cat "$out/fwd-$k.err" >&2; exit 1; }
done
total() { awk '/^summary:|^totals:/ {print $2; exit}' "$1"; }
flush_of() { # the flush thread: the busiest thread that runs the pipeline's flush code
  for f in $(grep -l 'pipeline::flush' "$out"/fwd-"$1".*-*); do echo "$(total "$f") $f"; done |
    sort -rn | head -1 | cut -d' ' -f2
}
incl() { # incl FILE REGEX: largest inclusive Ir of a function matching REGEX
  callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    awk -v re="$2" '$0 ~ re {gsub(",", "", $1); if ($1+0 > m) m = $1+0} END {print m+0}'
}
big=$(flush_of "$n") little=$(flush_of "$small")
per() { # per REGEX: inclusive instructions per event of the matching function
  awk -v a="$(incl "$big" "$1")" -v b="$(incl "$little" "$1")" -v n=$((n - small)) \
    'BEGIN {printf "%.0f", (a - b) / n}'
}
echo "## Flush thread, format=$format, compression=$compression, instructions per event (callgrind, ($n − $small) events)"
echo
echo "| part | instructions per event |"
echo "|---|---|"
all=$(awk -v a="$(total "$big")" -v b="$(total "$little")" -v n=$((n - small)) \
  'BEGIN {printf "%.0f", (a - b) / n}')
# `frame` may be inlined into its caller: then its per-event part, `push_envelope`, stands for it.
frame=$(per 'forward::(events::frame|wire::push_envelope)') zip=$(per 'sink::http::(Encoding::encode|compress|gzip|zstd)')
answer=$(per 'check_batch_answer')
echo "| flush thread, all of it | $all |"
echo "| … framing (\`events::frame\`, or \`wire::push_envelope\` when it is inlined) | $frame |"
echo "| … compression (\`http::zstd\` or \`http::gzip\`) | $zip |"
echo "| … reading the answer (\`check_batch_answer\`) | $answer |"
echo "| … the rest: lanes, batching, HTTP exchange (all − the three above) | $((all - frame - zip - answer)) |"
echo
echo "### top functions (self), flush thread, N=$n"
echo '```'
callgrind_annotate --auto=no --threshold=95 "$big" 2>/dev/null | sed -n '/file:function/,$p' | head -30 || true
echo '```'
echo "### top functions (inclusive), flush thread, N=$n"
echo '```'
callgrind_annotate --auto=no --inclusive=yes --threshold=99 "$big" 2>/dev/null | sed -n '/file:function/,$p' | head -45 || true
echo '```'
echo "callgrind files: $out"
