// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// The training kernels of nn/detail/ against this machine's limits: the Conv2d backward pass
// (nn/detail/conv_backward.hpp: d_weight, d_bias and d_x) at UNet-like shapes, beside the im2col and Winograd
// forward of the same convolution, and the FP32 FMA peak measured in the same run (BM_FmaPeak: independent
// vector FMA chains in registers, 1 and 2 threads). GFLOP/s count multiply and add apart, as bench_unet
// does: forward 2 I O kh kw P, backward twice that (d_weight and d_x, each one product of the forward's size),
// P = batch * out_h * out_w.
//
//   build/<dir>/bench/bench_backward --benchmark_counters_tabular=true --benchmark_min_time=1
//
// Compare backward and forward GFLOP/s with `GFLOP/s` of BM_FmaPeak at the same thread count.

#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "bench_common.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/detail/conv_backward.hpp"

namespace {

struct ConvSetup {
  ddpm::nn::Conv2d<float> conv;
  ddpm::nn::Context<float> ctx;
  std::vector<float> x, out, d_out, d_x, d_w, d_b;
  ddpm::nn::FeatureMap<const float> xmap, dmap;
  double flops_forward = 0;

  ConvSetup(const benchmark::State& state)
      : conv(state.range(0), state.range(1), state.range(4), 1, state.range(4) / 2),
        ctx(static_cast<int>(state.range(5))) {
    const Eigen::Index cin = state.range(0), cout = state.range(1), size = state.range(2), batch = state.range(3);
    const Eigen::Index k = state.range(4);
    for (Eigen::Index i = 0; i < conv.weight().size(); ++i) conv.weight().data()[i] = std::sin(0.1f * float(i)) * 0.05f;
    x.resize(static_cast<std::size_t>(cin * batch * size * size));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.01f * float(i));
    out.resize(static_cast<std::size_t>(cout * batch * size * size));
    d_out.resize(out.size());
    for (std::size_t i = 0; i < d_out.size(); ++i) d_out[i] = std::sin(0.013f * float(i));
    d_x.resize(x.size());
    d_w.resize(static_cast<std::size_t>(conv.weight().size()));
    d_b.resize(static_cast<std::size_t>(cout));
    xmap = {x.data(), cin, batch, size, size};
    dmap = {d_out.data(), cout, batch, size, size};
    flops_forward = 2.0 * double(cin * cout * k * k * size * size * batch);
    conv.prepare();  // after the last non-const access to the weights
  }
};

/// conv2d_backward (d_weight, d_bias and d_x) of a k x k convolution of stride 1, padding k / 2.
/// Arguments: cin, cout, size, batch, kernel, threads.
void BM_Conv2d_Backward(benchmark::State& state) {
  ConvSetup s(state);
  const ddpm::nn::Conv2d<float>& conv = s.conv;
  const ddpm::nn::FeatureMap<float> dx{s.d_x.data(), s.xmap.channels, s.xmap.batch, s.xmap.height, s.xmap.width};
  const ddpm::nn::detail::ConvGrads<float> g{s.d_w.data(), s.d_b.data(), nullptr};
  ddpm::nn::detail::conv2d_backward(s.ctx, conv, s.xmap, s.dmap, 1.0f, dx, false, g);
  for (auto _ : state) {
    ddpm::nn::detail::conv2d_backward(s.ctx, conv, s.xmap, s.dmap, 1.0f, dx, false, g);
    benchmark::DoNotOptimize(s.d_w.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2 * s.flops_forward * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// The forward pass of the same convolution; the last argument picks im2col (0) or Winograd (1).
/// Arguments: cin, cout, size, batch, kernel, threads, winograd.
void BM_Conv2d_Forward(benchmark::State& state) {
  if (state.range(6) == 1 && state.range(4) != 3) {
    state.SkipWithError("Winograd needs a 3x3 kernel");
    return;
  }
  ConvSetup s(state);
  s.conv.set_algorithm(state.range(6) == 0 ? ddpm::nn::ConvAlgorithm::im2col : ddpm::nn::ConvAlgorithm::winograd);
  const ddpm::nn::FeatureMap<float> out{s.out.data(), s.dmap.channels, s.dmap.batch, s.dmap.height, s.dmap.width};
  s.conv.forward(s.ctx, s.xmap, out);
  for (auto _ : state) {
    s.conv.forward(s.ctx, s.xmap, out);
    benchmark::DoNotOptimize(s.out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(s.flops_forward * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(ddpm_bench::BM_FmaPeak)->Threads(1)->Threads(2)->UseRealTime();

// UNet-like shapes: 64 -> 64 at 16 x 16 (batch 32: the small test UNet's second level), 128 -> 128 at
// 32 x 32 (batch 8: DDPM-CIFAR10's first level), 32 -> 32 at 8 x 8 (batch 64: the digits), and the pointwise
// shortcut 128 -> 64 at 16 x 16.
#define DDPM_CONV_SHAPES(...)                                    \
  ArgsProduct({{64}, {64}, {16}, {32}, {3}, __VA_ARGS__})        \
      ->ArgsProduct({{128}, {128}, {32}, {8}, {3}, __VA_ARGS__}) \
      ->ArgsProduct({{32}, {32}, {8}, {64}, {3}, __VA_ARGS__})   \
      ->ArgsProduct({{128}, {64}, {16}, {32}, {1}, __VA_ARGS__})

BENCHMARK(BM_Conv2d_Backward)
    ->ArgNames({"cin", "cout", "size", "batch", "k", "threads"})
    ->DDPM_CONV_SHAPES({1, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_Conv2d_Forward)
    ->ArgNames({"cin", "cout", "size", "batch", "k", "threads", "winograd"})
    ->DDPM_CONV_SHAPES({1, 2}, {0, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
