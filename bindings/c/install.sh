#!/usr/bin/env bash
# Installs the C binding under PREFIX: lib/libevlog.{a,so}, include/evlog.h and the pkg-config
# files lib/pkgconfig/evlog.pc (shared) and evlog-static.pc (static).
#   bash bindings/c/install.sh [PREFIX]      default PREFIX=/usr/local; builds --release
#   PROFILE=debug bash bindings/c/install.sh PREFIX   installs a debug build (used by the tests)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
prefix="${1:-/usr/local}"
profile="${PROFILE:-release}"
case "$profile" in
  release) cargo build --release -p evlog-c >&2 ;;
  debug) cargo build -p evlog-c >&2 ;;
  *) echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac
built="$CARGO_TARGET_DIR/$profile"
version=$(sed -n 's/^#define EVLOG_VERSION "\(.*\)"$/\1/p' include/evlog.h)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 644 "$built/libevlog.a" "$prefix/lib/libevlog.a"
install -m 755 "$built/libevlog.so" "$prefix/lib/libevlog.so"
install -m 644 include/evlog.h "$prefix/include/evlog.h"
for pc in evlog evlog-static; do
  sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "bindings/c/$pc.pc.in" \
    > "$prefix/lib/pkgconfig/$pc.pc"
done
echo "installed evlog $version under $prefix" >&2
