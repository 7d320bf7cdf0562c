// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Benchmarks of the optimisers (docs/training.md, "Optimisation and EMA") over the parameters of the
// DDPM-CIFAR10 UNet: 35,746,307 float parameters in its 328 tensors, with their real sizes (read from
// nn::UNet2D's for_each_parameter list), each parameter, gradient and state tensor a separate allocation,
// as in PyTorch.
//
//   BM_AdamW_Step      one AdamW step (PyTorch's defaults): reads p, g, m, v and writes p, m, v: 28 bytes
//                      per parameter
//   BM_Adam_Step       Adam with L2 weight decay 1e-2: the same 28 bytes
//   BM_SGD_Step        SGD with momentum 0.9 (after the first step): reads p, g, b and writes p, b: 20 bytes
//   BM_ClipGradNorm    clip_grad_norm with max_norm below the norm: the norm pass reads g (4 bytes), the
//                      scaling pass reads and writes it (8 bytes): 12 bytes per parameter
//   BM_GradNorm        the norm alone (4 bytes per parameter)
//   BM_EMA_Step        diffusers' EMA step: reads p and the shadow and writes the shadow: 12 bytes
//   BM_Triad           STREAM's triad on arrays of 35.7M floats (3 x 143 MB: DRAM), for reference
//
// `triad_fraction` is bytes/s over the triad of the same element count (here DRAM-sized, so it is the
// same reference as `stream_fraction`, the triad on 3 x 128 MiB), measured in the same run, single-threaded
// and in CPU time, the clock of Google Benchmark's rates (on a machine shared with other jobs, wall-clock
// rates would count the time this process waits for a core). With an OpenMP build (DDPM_OPENMP) on 2
// threads, the benchmark thread's CPU time is the wall time of the step (the other thread works alongside,
// and waiting at the barrier spins), so the fractions there are against the one-thread triad.
//
// `bench_optim --print-sizes` prints the 328 tensor sizes, one a line (bench/compare_torch_optim.py reads them).
//
//   cmake -S . -B build/optim -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-march=native
//         -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_EXAMPLES=OFF
//   cmake --build build/optim --target bench_optim
//   build/optim/bench/bench_optim --benchmark_counters_tabular=true
//   /usr/bin/python3 bench/compare_torch_optim.py --bench build/optim/bench/bench_optim

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <span>
#include <string_view>
#include <vector>

#include "bench_common.hpp"
#include "ddpm/ema.hpp"
#include "ddpm/nn/config.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/optim.hpp"

namespace {

using ddpm_bench::report;

// The sizes of the DDPM-CIFAR10 UNet's parameter tensors, in for_each_parameter order.
const std::vector<std::size_t>& unet_sizes() {
  static const std::vector<std::size_t> sizes = [] {
    ddpm::nn::UNet2D<float> model(ddpm::nn::UNet2DConfig::ddpm_cifar10());
    std::vector<std::size_t> out;
    for (const auto& p : ddpm::nn::parameters_of<float>(model)) out.push_back(static_cast<std::size_t>(p.numel()));
    return out;
  }();
  return sizes;
}

// A list of tensors of the UNet's sizes, filled with a deterministic pattern of the given scale.
struct Tensors {
  std::vector<std::vector<float>> data;
  Eigen::Index total = 0;

  explicit Tensors(float scale, float phase) {
    for (std::size_t n : unet_sizes()) {
      std::vector<float> v(n);
      for (std::size_t i = 0; i < n; ++i) v[i] = scale * std::sin(0.001f * static_cast<float>(i % 6283) + phase);
      total += static_cast<Eigen::Index>(n);
      data.push_back(std::move(v));
    }
  }
  std::vector<std::span<float>> spans() {
    std::vector<std::span<float>> out;
    for (auto& v : data) out.emplace_back(v);
    return out;
  }
  std::vector<std::span<const float>> const_spans() const {
    std::vector<std::span<const float>> out;
    for (const auto& v : data) out.emplace_back(v);
    return out;
  }
};

template <class Opt>
void time_optimizer(benchmark::State& state, Opt opt, double bytes_per_parameter) {
  Tensors params(0.05f, 0.0f);
  const Tensors grads(1e-3f, 1.0f);
  const auto p = params.spans();
  const auto g = grads.const_spans();
  opt.step(p, g);  // the state exists from here on (and SGD's first-step copy is behind us)
  for (auto _ : state) {
    opt.step(p, g);
    benchmark::DoNotOptimize(params.data[0].data());
    benchmark::ClobberMemory();
  }
  if (!std::isfinite(params.data.back().back())) state.SkipWithError("parameters are no longer finite");
  state.counters["tensors"] = static_cast<double>(params.data.size());
  report(state, params.total, bytes_per_parameter * static_cast<double>(params.total));
}

void BM_AdamW_Step(benchmark::State& state) { time_optimizer(state, ddpm::AdamW<float>(), 28.0); }

void BM_Adam_Step(benchmark::State& state) {
  time_optimizer(state, ddpm::Adam<float>({.weight_decay = 1e-2}), 28.0);
}

void BM_SGD_Step(benchmark::State& state) {
  time_optimizer(state, ddpm::SGD<float>({.lr = 1e-3, .momentum = 0.9}), 20.0);
}

void BM_ClipGradNorm(benchmark::State& state) {
  Tensors grads(1.0f, 0.5f);
  const auto g = grads.spans();
  const double norm = ddpm::grad_norm<float>(grads.const_spans());
  for (auto _ : state) {
    // max_norm just below the norm: every call scales, and the norm stays the same to rounding.
    benchmark::DoNotOptimize(ddpm::clip_grad_norm<float>(g, 0.999999 * norm));
    benchmark::ClobberMemory();
  }
  report(state, grads.total, 12.0 * static_cast<double>(grads.total));
}

void BM_GradNorm(benchmark::State& state) {
  const Tensors grads(1.0f, 0.5f);
  const auto g = grads.const_spans();
  for (auto _ : state) benchmark::DoNotOptimize(ddpm::grad_norm<float>(g));
  report(state, grads.total, 4.0 * static_cast<double>(grads.total));
}

void BM_EMA_Step(benchmark::State& state) {
  const Tensors params(0.05f, 0.0f);
  const auto p = params.const_spans();
  ddpm::EMA<float> ema(p, {.decay = 0.999, .use_ema_warmup = true});
  for (auto _ : state) {
    ema.step(p);
    benchmark::ClobberMemory();
  }
  report(state, params.total, 12.0 * static_cast<double>(params.total));
}

void BM_Triad(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(Tensors(0.0f, 0.0f).total);
  Eigen::ArrayXf a = Eigen::ArrayXf::Zero(n), b = Eigen::ArrayXf::Random(n), c = Eigen::ArrayXf::Random(n);
  for (auto _ : state) {
    a = b + 0.5f * c;
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  report(state, n, 3.0 * sizeof(float) * static_cast<double>(n));
}

BENCHMARK(BM_Triad)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AdamW_Step)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Adam_Step)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SGD_Step)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ClipGradNorm)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GradNorm)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EMA_Step)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]) == "--print-sizes") {
    for (std::size_t n : unet_sizes()) std::printf("%zu\n", n);
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
