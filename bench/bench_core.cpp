// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Benchmarks of the core: schedule construction, q_sample (noise given, and drawing its own), the normal
// fill, and a STREAM-style triad on the same shapes, so that every elementwise kernel reports the fraction
// of this machine's memory bandwidth it reaches (counter `triad_fraction`).
//
//   build/release/bench/bench_core --benchmark_counters_tabular=true

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>

#include "ddpm/ddpm.hpp"

namespace {

using Shape = std::array<Eigen::Index, 4>;

Shape shape_of(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(2), state.range(3)};
}

ddpm::Tensor<float, 4> filled(const Shape& s, std::uint64_t seed) {
  ddpm::Tensor<float, 4> x(s[0], s[1], s[2], s[3]);
  ddpm::fill_normal(x, seed);
  return x;
}

// a = b + s * c over three arrays of n floats: STREAM's triad, the bandwidth an elementwise kernel that reads
// two tensors and writes one can hope for. Measured once per size (best of several passes) and cached.
double triad_bytes_per_second(Eigen::Index n) {
  static std::map<Eigen::Index, double> cache;
  if (auto it = cache.find(n); it != cache.end()) return it->second;
  Eigen::ArrayXf a = Eigen::ArrayXf::Zero(n), b = Eigen::ArrayXf::Random(n), c = Eigen::ArrayXf::Random(n);
  const int reps = static_cast<int>(std::clamp<Eigen::Index>((Eigen::Index{1} << 28) / std::max<Eigen::Index>(n, 1), 5, 20000));
  double best = 1e300;
  for (int pass = 0; pass < 7; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) {
      a = b + 0.5f * c;
      benchmark::DoNotOptimize(a.data());
      benchmark::ClobberMemory();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps;
    best = std::min(best, seconds);
  }
  return cache[n] = 3.0 * sizeof(float) * static_cast<double>(n) / best;
}

// Reports bytes/s and items/s for `bytes_per_iteration` and the fraction of the triad bandwidth.
void report(benchmark::State& state, Eigen::Index n, double bytes_per_iteration) {
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes_per_iteration));
  state.counters["triad_fraction"] = benchmark::Counter(
      bytes_per_iteration / triad_bytes_per_second(n), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Triad(benchmark::State& state) {
  const Shape s = shape_of(state);
  const Eigen::Index n = s[0] * s[1] * s[2] * s[3];
  Eigen::ArrayXf a = Eigen::ArrayXf::Zero(n), b = Eigen::ArrayXf::Random(n), c = Eigen::ArrayXf::Random(n);
  for (auto _ : state) {
    a = b + 0.5f * c;
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  report(state, n, 3.0 * sizeof(float) * n);
}

void BM_NoiseSchedule_Construct(benchmark::State& state) {
  for (auto _ : state) {
    auto schedule = ddpm::NoiseSchedule<float>::cosine(1000);
    benchmark::DoNotOptimize(schedule.posterior_mean_coef2().data());
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}

void BM_NoiseSchedule_Linear(benchmark::State& state) {
  for (auto _ : state) {
    auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
    benchmark::DoNotOptimize(schedule.posterior_mean_coef2().data());
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}

// x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps with eps given: reads two tensors, writes one.
void BM_QSample_GivenNoise(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  const auto x0 = filled(s, 1), eps = filled(s, 2);
  ddpm::Tensor<float, 4> out(s[0], s[1], s[2], s[3]);
  for (auto _ : state) {
    ddpm::q_sample(schedule, x0, 500, eps, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report(state, x0.size(), 3.0 * sizeof(float) * x0.size());
}

// The same, returning a new tensor each call (pays the allocation and its page faults on large shapes).
void BM_QSample_GivenNoise_Returning(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  const auto x0 = filled(s, 1), eps = filled(s, 2);
  for (auto _ : state) {
    auto out = ddpm::q_sample(schedule, x0, 500, eps);
    benchmark::DoNotOptimize(out.data());
  }
  report(state, x0.size(), 3.0 * sizeof(float) * x0.size());
}

// q_sample drawing its own noise (Philox + Box-Muller fused into the pass): reads one tensor, writes one.
void BM_QSample_DrawNoise(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  const auto x0 = filled(s, 1);
  ddpm::Tensor<float, 4> out(s[0], s[1], s[2], s[3]);
  ddpm::NoiseSource noise(7);
  for (auto _ : state) {
    ddpm::q_sample(schedule, x0, 500, noise, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report(state, x0.size(), 2.0 * sizeof(float) * x0.size());
}

// q_sample with one timestep per batch element (a training batch).
void BM_QSample_PerSampleT(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  const auto x0 = filled(s, 1), eps = filled(s, 2);
  std::vector<int> t(static_cast<std::size_t>(s[0]));
  for (std::size_t b = 0; b < t.size(); ++b) t[b] = static_cast<int>((b * 397) % 1000);
  ddpm::Tensor<float, 4> out(s[0], s[1], s[2], s[3]);
  for (auto _ : state) {
    ddpm::q_sample(schedule, x0, std::span<const int>(t), eps, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report(state, x0.size(), 3.0 * sizeof(float) * x0.size());
}

// The standard-normal fill alone: writes one tensor.
void BM_FillNormal(benchmark::State& state) {
  const Shape s = shape_of(state);
  ddpm::Tensor<float, 4> out(s[0], s[1], s[2], s[3]);
  ddpm::NoiseSource noise(3);
  for (auto _ : state) {
    noise(out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report(state, out.size(), 1.0 * sizeof(float) * out.size());
}

void tensor_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1, 3, 32, 32})->Args({16, 3, 64, 64})->Args({4, 4, 128, 128})->Args({64, 3, 256, 256});
  b->ArgNames({"n", "c", "h", "w"});
}

BENCHMARK(BM_NoiseSchedule_Construct);
BENCHMARK(BM_NoiseSchedule_Linear);
BENCHMARK(BM_Triad)->Apply(tensor_shapes);
BENCHMARK(BM_QSample_GivenNoise)->Apply(tensor_shapes);
BENCHMARK(BM_QSample_GivenNoise_Returning)->Apply(tensor_shapes);
BENCHMARK(BM_QSample_PerSampleT)->Apply(tensor_shapes);
BENCHMARK(BM_QSample_DrawNoise)->Apply(tensor_shapes);
BENCHMARK(BM_FillNormal)->Apply(tensor_shapes);

}  // namespace

BENCHMARK_MAIN();
