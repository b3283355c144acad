#!/usr/bin/env bash
# Installs the C binding under PREFIX:
#   lib/libevlog.a                      static library (debug info stripped)
#   lib/libevlog.so.X.Y.Z               shared library, SONAME libevlog.so.<abi> (see build.rs)
#   lib/libevlog.so.<abi> -> libevlog.so.X.Y.Z, lib/libevlog.so -> libevlog.so.<abi>
#   include/evlog.h
#   lib/pkgconfig/evlog.pc (shared), evlog-static.pc (static)
#   lib/cmake/evlog/evlogConfig.cmake, evlogConfigVersion.cmake (find_package(evlog): targets
#                                       evlog::evlog (shared) and evlog::evlog_static)
# then runs ldconfig when PREFIX/lib is a directory the loader searches (e.g. /usr/local/lib on
# Debian), so programs linked against libevlog.so start without LD_LIBRARY_PATH or an rpath.
#   bash bindings/c/install.sh [PREFIX]      default PREFIX=/usr/local; builds --release
#   PROFILE=debug bash bindings/c/install.sh PREFIX   installs a debug build (used by the tests)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Absolute before the cd below: a relative PREFIX means one under the caller's directory, and
# the .pc files must name an absolute prefix.
prefix="$(realpath -ms "${1:-/usr/local}")"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
profile="${PROFILE:-release}"
case "$profile" in
  dist | release) cargo build --profile "$profile" -p evlog-c >&2 ;;
  debug) cargo build -p evlog-c >&2 ;;
  *) echo "PROFILE must be dist, release or debug" >&2; exit 2 ;;
esac
built="$CARGO_TARGET_DIR/$profile"
version=$(sed -n 's/^#define EVLOG_VERSION "\(.*\)"$/\1/p' include/evlog.h)
soname=$(readelf -d "$built/libevlog.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ -z "$soname" ]; then
  echo "$built/libevlog.so has no SONAME (bindings/c/build.rs sets it)" >&2
  exit 1
fi
libdir="$prefix/lib"
install -d "$libdir/pkgconfig" "$libdir/cmake/evlog" "$prefix/include"
install -m 644 "$built/libevlog.a" "$libdir/libevlog.a"
# A Rust static library carries the debug info of the standard library it bundles; users of an
# installed library do not need it (`cargo build --profile profiling` keeps it, for perf).
strip --strip-debug "$libdir/libevlog.a"
install -m 755 "$built/libevlog.so" "$libdir/libevlog.so.$version"
strip --strip-debug "$libdir/libevlog.so.$version"
ln -sfn "libevlog.so.$version" "$libdir/$soname"
ln -sfn "$soname" "$libdir/libevlog.so"
install -m 644 include/evlog.h "$prefix/include/evlog.h"
for pc in evlog evlog-static; do
  sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "bindings/c/$pc.pc.in" \
    > "$libdir/pkgconfig/$pc.pc"
done
for f in evlogConfig.cmake evlogConfigVersion.cmake; do
  sed -e "s|@VERSION@|$version|" -e "s|@SONAME@|$soname|" "bindings/c/cmake/$f.in" \
    > "$libdir/cmake/evlog/$f"
done
# The loader's cache: only for a directory it already searches (ldconfig -v lists them); any
# other prefix needs LD_LIBRARY_PATH, an rpath (-Wl,-rpath,$prefix/lib) or an ld.so.conf.d entry.
if [ -w "$libdir" ] && command -v ldconfig >/dev/null &&
  ldconfig -v 2>/dev/null | grep -q "^$(readlink -f "$libdir"):"; then
  ldconfig
  echo "ran ldconfig: $libdir is on the loader's path" >&2
else
  echo "note: $libdir is not on the loader's path; run programs linked to libevlog.so with" \
    "LD_LIBRARY_PATH=$libdir, link them with -Wl,-rpath,$libdir, or add $libdir to" \
    "/etc/ld.so.conf.d/ and run ldconfig" >&2
fi
echo "installed evlog $version ($soname) under $prefix" >&2
