#!/usr/bin/env bash
# Builds and runs the whole ddpm test suite: the Release build (unit tests, packaging consumers, benchmarks
# and examples compile), the same tests under AddressSanitizer + UndefinedBehaviorSanitizer, and the
# safetensors fuzzer for a bounded time. Installs missing Debian packages first (scripts/install-deps.sh, which
# includes OpenMPI, so that examples/sample_mpi is built and ctest runs it over 1, 2 and 3 ranks).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/install-deps.sh clang-14 libclang-rt-14-dev

# The digits file for the train_digits smoke test (Debian's python3-sklearn copy, or that one package's file).
digits="$(scripts/get-digits.sh)"

echo "== Release build and tests"
cmake --preset release -DDDPM_DIGITS_DATA="$digits"
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
cmake --preset sanitize
cmake --build --preset sanitize -j "$jobs"
ctest --preset sanitize -j "$jobs"

if [ -x tests/fuzz/run_fuzz.sh ]; then
  echo "== safetensors fuzzer (${DDPM_FUZZ_SECONDS:-60} s)"
  tests/fuzz/run_fuzz.sh "${DDPM_FUZZ_SECONDS:-60}"
fi
echo "== all ddpm tests passed"
