// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Benchmarks of the core: schedule construction, q_sample (noise given, and drawing its own), the normal
// fill, and a STREAM-style triad on the same shapes, so that every elementwise kernel reports the fraction
// of this machine's memory bandwidth it reaches (counter `triad_fraction`).
//
//   build/release/bench/bench_core --benchmark_counters_tabular=true

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "ddpm/ddpm.hpp"

namespace {

using ddpm_bench::filled;
using ddpm_bench::report;
using ddpm_bench::Shape;
using ddpm_bench::shape_of;

using ddpm_bench::BM_Triad;

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

// The returning form after ddpm::retain_freed_memory() (process-wide, so registered last): the fresh result
// reuses the heap block the previous one freed instead of a new mapping.
void BM_QSample_GivenNoise_Returning_Retained(benchmark::State& state) {
  if (!ddpm::retain_freed_memory()) {
    state.SkipWithError("retain_freed_memory is not available here (needs glibc)");
    return;
  }
  BM_QSample_GivenNoise_Returning(state);
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

using ddpm_bench::BM_FillNormal;

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
BENCHMARK(BM_QSample_GivenNoise_Returning_Retained)->Apply(tensor_shapes);  // last: it changes malloc's settings

}  // namespace

BENCHMARK_MAIN();
