#!/usr/bin/env bash
# Builds and runs the second demo: a class-conditional UNet trained from scratch on the 8x8 handwritten
# digits on two cores, then sampled with classifier-free guidance (examples/train_digits.cpp).
# Installs missing Debian packages first and fetches the digits file (scripts/get-digits.sh).
# Extra arguments are passed to the demo (try --help), e.g. --steps 500 or --out DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
data="$(scripts/get-digits.sh)"
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-march=native \
      -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_BENCHMARKS=OFF -DDDPM_BUILD_EXAMPLES=ON > /dev/null
cmake --build build/demo -j "$(nproc)" --target train_digits
build/demo/examples/train_digits --data "$data" --threads 2 --out build/train_digits "$@"
