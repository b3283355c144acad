#!/usr/bin/env bash
# Builds the evlog wheel people install: one abi3 wheel for CPython >= 3.10, tagged manylinux2014
# (glibc >= 2.17), so it installs on distributions older than the build machine.
#   bash bindings/python/build-wheel.sh [--profile P] [OUT_DIR]   default: --profile dist, OUT_DIR=dist/
# A plain `maturin build` links against this machine's glibc and gets its tag (Debian 12:
# manylinux_2_34); here maturin links with zig (`ziglang` from PyPI, installed into the
# project-local .venv) against glibc 2.17's symbol versions instead, and checks the result.
# Built with the `dist` profile (LTO, no debug info; see Cargo.toml); the test suite passes
# `--profile dev` to prove the same command in less time. The script then checks what it built
# itself: the tag says manylinux2014 and no symbol the extension imports needs a glibc newer than
# 2.17. Prints the wheel's path and size.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../tests/lib.sh"
cd "$REPO_ROOT"
profile=dist
if [ "${1:-}" = --profile ]; then profile="$2"; shift 2; fi
out="$(realpath -m "${1:-dist}")"
ensure_venv "maturin>=1.5,<2" "ziglang>=0.10,<0.14"
rm -f "$out"/evlog-*.whl
(cd bindings/python/ext &&
  maturin build --profile "$profile" --zig --compatibility manylinux2014 --out "$out" >&2)
wheel=$(ls "$out"/evlog-*.whl)
case "$(basename "$wheel")" in
  *-cp310-abi3-*manylinux2014_x86_64*) ;;
  *) echo "build-wheel: unexpected tag: $wheel" >&2; exit 1 ;;
esac
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python -m zipfile -e "$wheel" "$tmp"
so=$(find "$tmp" -name '*.so' | head -1)
newest=$(objdump -T "$so" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k1,1 -k2,2n -k3,3n -V | tail -1)
if [ "$(printf '%s\nGLIBC_2.17\n' "$newest" | sort -V | tail -1)" != GLIBC_2.17 ]; then
  echo "build-wheel: $so needs $newest (> GLIBC_2.17)" >&2; exit 1
fi
echo "$wheel $(stat -c %s "$wheel") bytes; extension $(stat -c %s "$so") bytes; newest glibc symbol $newest"
