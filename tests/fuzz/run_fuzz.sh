#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
#
# Builds the libFuzzer target for the safetensors reader (clang, -fsanitize=fuzzer,address,undefined) and runs
# it for a bounded time on a copy of the seed corpus (tests/fuzz/corpus stays as committed).
# Exits non-zero if the fuzzer finds a crash, a sanitizer report, a leak or a timeout; the input that did it is
# left in the build directory as crash-*/leak-*/timeout-* (replay: BUILD_DIR/fuzz_safetensors FILE).
#
# Usage: tests/fuzz/run_fuzz.sh [SECONDS (default 60)] [BUILD_DIR (default build/fuzz)]
# Environment: CXX_FUZZ (default clang++-14), FUZZ_JOBS (default 1), KEEP_CORPUS=1 keeps the grown corpus.
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${2:-$root/build/fuzz}"
cxx="${CXX_FUZZ:-clang++-14}"
mkdir -p "$build"
build="$(cd "$build" && pwd)"

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "run_fuzz.sh: $cxx not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi

# libFuzzer's runtime is in libclang-rt-14-dev on Debian; install it when it is missing and we may.
probe="$build/probe.cpp"
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > "$probe"
if ! "$cxx" -fsanitize=fuzzer "$probe" -o "$build/probe" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run_fuzz.sh: installing libclang-rt-14-dev for the libFuzzer runtime" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y libclang-rt-14-dev >&2
  else
    echo "run_fuzz.sh: $cxx cannot link -fsanitize=fuzzer; install libclang-rt-14-dev (as root)" >&2
    exit 2
  fi
fi
rm -f "$probe" "$build/probe"

eigen_flags="$(pkg-config --cflags eigen3 2>/dev/null || echo -isystem /usr/include/eigen3)"
echo "run_fuzz.sh: building $build/fuzz_safetensors" >&2
# shellcheck disable=SC2086
"$cxx" -std=c++20 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/include" $eigen_flags \
  "$here/fuzz_safetensors.cpp" -o "$build/fuzz_safetensors"

work="$(mktemp -d "$build/corpus.XXXXXX")"
if [ "${KEEP_CORPUS:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
cp "$here"/corpus/* "$work"/

echo "run_fuzz.sh: fuzzing for ${seconds}s on a copy of the corpus in $work" >&2
parallel=()
if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then parallel=(-fork="$FUZZ_JOBS"); fi
status=0
(cd "$build" && ./fuzz_safetensors -max_total_time="$seconds" "${parallel[@]}" \
  -dict="$here/safetensors.dict" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$build/" "$work") || status=$?
if [ "$status" != 0 ]; then
  echo "run_fuzz.sh: the fuzzer failed (exit $status); see $build/crash-* / leak-* / timeout-*" >&2
  exit "$status"
fi
echo "run_fuzz.sh: no crash in ${seconds}s" >&2
