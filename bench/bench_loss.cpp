// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Benchmarks of the training objectives: the simple loss with its gradient (one fused pass: reads the output
// and the target, writes the gradient, so its bytes are the triad's), the loss alone, a whole training batch
// (timesteps, noise, x_t and target), and the hybrid loss with its gradient, next to a STREAM-style triad
// on the same shapes (counter `triad_fraction`).
//
//   build/loss/bench/bench_loss --benchmark_counters_tabular=true
// Compare with PyTorch's F.mse_loss(out, target).backward(): bench/compare_torch_loss.py.

#include <benchmark/benchmark.h>

#include <span>
#include <vector>

#include "bench_common.hpp"
#include "ddpm/loss.hpp"
#include "ddpm/vlb.hpp"

namespace {

using ddpm_bench::filled;
using ddpm_bench::report;
using ddpm_bench::Shape;
using ddpm_bench::shape_of;

using ddpm_bench::BM_Triad;

// The simple loss and its gradient w.r.t. the output, with per-sample weights (Min-SNR style), into a
// caller's gradient tensor: 2 reads + 1 write per element.
void BM_SimpleLoss_Gradient(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto out = filled(s, 1), target = filled(s, 2);
  ddpm::Tensor<float, 4> grad(s[0], s[1], s[2], s[3]);
  std::vector<float> w(static_cast<std::size_t>(s[0]), 1.0f);
  Eigen::ArrayXf per;
  for (auto _ : state) {
    const float loss = ddpm::simple_loss_and_gradient(out, target, std::span<const float>(w), grad, per);
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(grad.data());
    benchmark::ClobberMemory();
  }
  report(state, out.size(), 3.0 * sizeof(float) * static_cast<double>(out.size()));
}

// The loss value alone (2 reads per element).
void BM_SimpleLoss_Value(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto out = filled(s, 1), target = filled(s, 2);
  for (auto _ : state) {
    const auto r = ddpm::simple_loss(out, target);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  report(state, out.size(), 2.0 * sizeof(float) * static_cast<double>(out.size()));
}

// A whole batch of training pairs (uniform t, eps drawn, x_t, eps target) into reused buffers: bound by the
// normal generator (see BM_FillNormal in bench_core). Bytes: x0 read; eps, x_t and target written, x_t's
// inputs read back.
void BM_MakeTrainingBatch(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  const auto x0 = filled(s, 1);
  ddpm::UniformTimestepSampler sampler(1000);
  ddpm::NoiseSource noise(4);
  ddpm::TrainingBatch<float> batch;
  for (auto _ : state) {
    ddpm::make_training_batch(schedule, x0, sampler, noise, ddpm::Prediction::epsilon, batch);
    benchmark::DoNotOptimize(batch.x_t.data());
    benchmark::ClobberMemory();
  }
  report(state, x0.size(), 7.0 * sizeof(float) * static_cast<double>(x0.size()));
}

// The hybrid loss (improved DDPM, learned_range) with its gradient over the 2C output: per-element
// exp/log/tanh in double, far from memory-bound; items are elements of x0.
void BM_HybridLoss_Gradient(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto schedule = ddpm::NoiseSchedule<float>::cosine(1000);
  const auto eps = filled(s, 2);
  auto x0 = filled(s, 1);
  for (Eigen::Index i = 0; i < x0.size(); ++i) x0.data()[i] = std::clamp(x0.data()[i] * 0.5f, -1.0f, 1.0f);
  const auto out = filled({s[0], 2 * s[1], s[2], s[3]}, 3);
  std::vector<int> t(static_cast<std::size_t>(s[0]));
  for (std::size_t b = 0; b < t.size(); ++b) t[b] = static_cast<int>((b * 397) % 1000);
  const auto x_t = ddpm::q_sample(schedule, x0, std::span<const int>(t), eps);
  ddpm::Tensor<float, 4> grad(s[0], 2 * s[1], s[2], s[3]);
  for (auto _ : state) {
    const auto r = ddpm::hybrid_loss_and_gradient(schedule, out, x0, x_t, std::span<const int>(t), eps,
                                                  std::span<const float>(), grad);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  report(state, x0.size(), 8.0 * sizeof(float) * static_cast<double>(x0.size()));
}

void loss_shapes(benchmark::internal::Benchmark* b) {
  b->Args({8, 3, 32, 32})->Args({64, 3, 32, 32})->Args({16, 3, 64, 64})->Args({64, 3, 256, 256});
  b->ArgNames({"n", "c", "h", "w"});
}

void small_shapes(benchmark::internal::Benchmark* b) {
  b->Args({8, 3, 32, 32})->Args({64, 3, 32, 32});
  b->ArgNames({"n", "c", "h", "w"});
}

BENCHMARK(BM_Triad)->Apply(loss_shapes);
BENCHMARK(BM_SimpleLoss_Gradient)->Apply(loss_shapes);
BENCHMARK(BM_SimpleLoss_Value)->Apply(loss_shapes);
BENCHMARK(BM_MakeTrainingBatch)->Apply(loss_shapes);
BENCHMARK(BM_HybridLoss_Gradient)->Apply(small_shapes);

}  // namespace

BENCHMARK_MAIN();
