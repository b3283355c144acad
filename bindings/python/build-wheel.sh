#!/usr/bin/env bash
# Builds the evlog wheel people install: one abi3 wheel for CPython >= 3.10, tagged manylinux2014
# (glibc >= 2.17), so it installs on distributions older than the build machine.
#   bash bindings/python/build-wheel.sh [OUT_DIR]     default OUT_DIR=dist/
# A plain `maturin build` links against this machine's glibc and gets its tag (Debian 12:
# manylinux_2_34); here maturin links with zig (`ziglang` from PyPI, installed into the
# project-local .venv) against glibc 2.17's symbol versions instead, and checks the result.
# Built with the `dist` profile (LTO, no debug info; see Cargo.toml).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../tests/lib.sh"
cd "$REPO_ROOT"
out="$(realpath -m "${1:-dist}")"
ensure_venv "maturin>=1.5,<2" "ziglang>=0.10,<0.14"
(cd bindings/python/ext &&
  maturin build --profile dist --zig --compatibility manylinux2014 --out "$out" >&2)
ls -l "$out"/evlog-*manylinux2014*.whl
