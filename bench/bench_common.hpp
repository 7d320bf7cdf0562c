// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// What the bench_<area> executables share: NCHW shapes from a benchmark's arguments, random tensors, and
// a STREAM-style triad measured on the same size, so that every elementwise kernel reports the fraction of
// this machine's memory bandwidth it reaches (counter `triad_fraction`).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <ctime>
#include <map>

#include "ddpm/random.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm_bench {

using Shape = std::array<Eigen::Index, 4>;

/// The NCHW shape given as the benchmark's four arguments.
inline Shape shape_of(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(2), state.range(3)};
}

/// A float tensor of the shape filled with standard-normal numbers of the seed.
inline ddpm::Tensor<float, 4> filled(const Shape& s, std::uint64_t seed) {
  ddpm::Tensor<float, 4> x(s[0], s[1], s[2], s[3]);
  ddpm::fill_normal(x, seed);
  return x;
}

/// Seconds of CPU time this process has used: the clock Google Benchmark's rates (bytes/s, items/s and
/// every kIsRate counter) divide by, unless a benchmark asks for real time. On a shared machine a process
/// gets only part of a core, and wall-clock and CPU-time rates then differ by that part.
inline double process_cpu_seconds() {
#if defined(CLOCK_PROCESS_CPUTIME_ID)
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
#else
  return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
#endif
}

/// a = b + s * c over three arrays of n floats: STREAM's triad, the bandwidth an elementwise kernel that
/// reads two tensors and writes one can hope for at this size (in cache for small n, DRAM for large n).
/// Measured once per size (best of several passes) in CPU time, the clock of the rates it is compared
/// with, and cached.
inline double triad_bytes_per_second(Eigen::Index n) {
  static std::map<Eigen::Index, double> cache;
  if (auto it = cache.find(n); it != cache.end()) return it->second;
  Eigen::ArrayXf a = Eigen::ArrayXf::Zero(n), b = Eigen::ArrayXf::Random(n), c = Eigen::ArrayXf::Random(n);
  const int reps =
      static_cast<int>(std::clamp<Eigen::Index>((Eigen::Index{1} << 28) / std::max<Eigen::Index>(n, 1), 5, 20000));
  double best = 1e300;
  for (int pass = 0; pass < 7; ++pass) {
    const double start = process_cpu_seconds();
    for (int r = 0; r < reps; ++r) {
      a = b + 0.5f * c;
      benchmark::DoNotOptimize(a.data());
      benchmark::ClobberMemory();
    }
    const double seconds = (process_cpu_seconds() - start) / reps;
    best = std::min(best, seconds);
  }
  return cache[n] = 3.0 * sizeof(float) * static_cast<double>(n) / best;
}

/// Elements per array of the STREAM triad proper: 3 x 128 MiB, far beyond any cache, so it measures DRAM.
inline constexpr Eigen::Index kStreamElements = Eigen::Index{1} << 25;

/// Reports items/s (n per iteration), bytes/s for `bytes_per_iteration`, the fraction of the triad
/// bandwidth of size n that those bytes/s are (counter `triad_fraction`: in cache for the shapes here, the
/// strict reference), and their fraction of STREAM's triad on DRAM-sized arrays (`stream_fraction`: the
/// machine's memory bandwidth, the figure STREAM itself reports).
inline void report(benchmark::State& state, Eigen::Index n, double bytes_per_iteration) {
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * bytes_per_iteration));
  state.counters["triad_fraction"] = benchmark::Counter(bytes_per_iteration / triad_bytes_per_second(n),
                                                        benchmark::Counter::kIsIterationInvariantRate);
  state.counters["stream_fraction"] = benchmark::Counter(
      bytes_per_iteration / triad_bytes_per_second(kStreamElements), benchmark::Counter::kIsIterationInvariantRate);
}

/// STREAM's triad a = b + s * c on arrays of the benchmark's NCHW size: the reference for triad_fraction.
inline void BM_Triad(benchmark::State& state) {
  const Shape s = shape_of(state);
  const Eigen::Index n = s[0] * s[1] * s[2] * s[3];
  Eigen::ArrayXf a = Eigen::ArrayXf::Zero(n), b = Eigen::ArrayXf::Random(n), c = Eigen::ArrayXf::Random(n);
  for (auto _ : state) {
    a = b + 0.5f * c;
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  report(state, n, 3.0 * sizeof(float) * static_cast<double>(n));
}

/// The standard-normal fill alone (a NoiseSource into one tensor of the benchmark's NCHW size): the
/// generator's rate, against which every kernel that draws noise is bound. Its bytes are the one tensor written.
inline void BM_FillNormal(benchmark::State& state) {
  const Shape s = shape_of(state);
  ddpm::Tensor<float, 4> out(s[0], s[1], s[2], s[3]);
  ddpm::NoiseSource noise(3);
  for (auto _ : state) {
    noise(out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report(state, out.size(), 1.0 * sizeof(float) * static_cast<double>(out.size()));
}

}  // namespace ddpm_bench
