#!/usr/bin/env bash
# Builds and runs ddpm's main demo. Installs missing Debian packages first.
# Extra arguments are passed to the demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-march=native \
      -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_BENCHMARKS=OFF -DDDPM_BUILD_EXAMPLES=ON > /dev/null
cmake --build build/demo -j "$(nproc)" --target gmm2d
build/demo/examples/gmm2d "$@"
