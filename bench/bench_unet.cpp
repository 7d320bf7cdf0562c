// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// The forward pass of ddpm::nn::UNet2D in the DDPM-CIFAR10 configuration (35.7M parameters, 32 x 32 images)
// with random weights, at batch 1 and 8 on 1 and 2 threads, reported as images/s and GFLOP/s (the
// convolutions, projections and attention products: 12.4 GFLOP per image, multiply and add counted apart).
// bench/compare_torch_unet.py runs this and PyTorch side by side.
//
//   build/release/bench/bench_unet --benchmark_counters_tabular=true --benchmark_min_time=2
//
// On a shared machine, the best of single passes says more than a mean (compare_torch_unet.py does this):
//   bench_unet --benchmark_filter=UNet2D --benchmark_min_time=0 --benchmark_repetitions=10

#include <benchmark/benchmark.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "ddpm/nn/unet2d.hpp"

#if defined(__GLIBC__)
// Every heap allocation of the process is counted (glibc's allocator is interposed), so that the benchmark
// can report the allocations of a forward pass in the steady state: the counter `allocs` (expected: 0).
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}
namespace {
std::atomic<long> g_allocations{0};
}
extern "C" void* malloc(std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
extern "C" void* calloc(std::size_t n, std::size_t size) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
extern "C" void* realloc(void* p, std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
extern "C" int posix_memalign(void** p, std::size_t alignment, std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  *p = __libc_memalign(alignment, n);
  return *p != nullptr ? 0 : 12;
}
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, n);
}
#define DDPM_BENCH_COUNTS_ALLOCATIONS 1
#endif

namespace {

using ddpm::nn::UNet2DConfig;

// Multiply-adds x 2 of one forward pass of one H x W image through a UNet2DModel of config c.
double unet_flops(const UNet2DConfig& c, double H, double W) {
  const auto& ch = c.block_out_channels;
  const std::size_t levels = ch.size();
  auto conv = [](double cin, double cout, double k, double pixels) { return 2.0 * cin * cout * k * k * pixels; };
  auto resnet = [&](double cin, double cout, double pixels) {
    return conv(cin, cout, 3, pixels) + conv(cout, cout, 3, pixels) + (cin != cout ? conv(cin, cout, 1, pixels) : 0.0);
  };
  auto attention = [&](double channels, double pixels, std::optional<int> head_dim) {
    const double d = head_dim ? *head_dim : channels;
    const double inner = std::floor(channels / d) * d;
    return 2.0 * pixels * channels * inner * 4 + 2.0 * 2.0 * pixels * pixels * inner;
  };
  double flops = conv(c.in_channels, ch[0], 3, H * W), pixels = H * W;
  double out = ch[0];
  for (std::size_t i = 0; i < levels; ++i) {
    double in = out;
    out = ch[i];
    for (int l = 0; l < c.layers_per_block; ++l) {
      flops += resnet(l == 0 ? in : out, out, pixels);
      if (c.down_block_types[i] == "AttnDownBlock2D") flops += attention(out, pixels, c.attention_head_dim);
    }
    if (i + 1 < levels) {
      pixels /= 4;
      flops += conv(out, out, 3, pixels);
    }
  }
  flops += 2 * resnet(ch.back(), ch.back(), pixels) + (c.add_attention ? attention(ch.back(), pixels, c.attention_head_dim) : 0.0);
  out = ch.back();
  for (std::size_t i = 0; i < levels; ++i) {
    const double prev = out;
    out = ch[levels - 1 - i];
    const double in = ch[i + 2 <= levels ? levels - 2 - i : 0];
    for (int l = 0; l <= c.layers_per_block; ++l) {
      const double skip = l == c.layers_per_block ? in : out;
      flops += resnet((l == 0 ? prev : out) + skip, out, pixels);
      if (c.up_block_types[i] == "AttnUpBlock2D") flops += attention(out, pixels, c.attention_head_dim);
    }
    if (i + 1 < levels) {
      pixels *= 4;
      flops += conv(out, out, 3, pixels);
    }
  }
  return flops + conv(ch[0], c.out_channels, 3, pixels);
}

// The model with deterministic uniform weights of PyTorch's default scale (+-1/sqrt(fan_in)), built once.
ddpm::nn::UNet2D<float>& cifar10_model() {
  static ddpm::nn::UNet2D<float> model = [] {
    ddpm::nn::UNet2D<float> m(UNet2DConfig::ddpm_cifar10());
    std::uint64_t state = 12345;
    auto uniform = [&] {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<double>(state >> 11) * 0x1.0p-53 * 2.0 - 1.0;
    };
    for (const auto& p : m.parameters()) {
      double fan_in = 1;
      for (std::size_t i = 1; i < p.shape.size(); ++i) fan_in *= static_cast<double>(p.shape[i]);
      const bool norm_weight = p.shape.size() == 1 && p.name.find("norm") != std::string::npos &&
                               p.name.rfind("weight") == p.name.size() - 6;
      for (std::int64_t i = 0; i < p.numel(); ++i) {
        p.data[i] = norm_weight ? 1.0f : static_cast<float>(uniform() / std::sqrt(fan_in));
      }
    }
    m.prepare();  // the weights changed: rebuild the Winograd transforms
    return m;
  }();
  return model;
}

void BM_UNet2D_Forward(benchmark::State& state) {
  const Eigen::Index batch = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  ddpm::nn::UNet2D<float>& model = cifar10_model();
  model.set_num_threads(threads);
  ddpm::Tensor<float, 4> x(batch, 3, 32, 32), out;
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = std::sin(0.37f * static_cast<float>(i));
  const double t = 500;
  model.forward(x, std::span<const double>(&t, 1), out);  // warm-up: the scratch buffers reach steady state
#ifdef DDPM_BENCH_COUNTS_ALLOCATIONS
  model.forward(x, std::span<const double>(&t, 1), out);
  const long before = g_allocations.load();
  model.forward(x, std::span<const double>(&t, 1), out);
  state.counters["allocs"] = static_cast<double>(g_allocations.load() - before);  // of one pass
#endif
  for (auto _ : state) {
    model.forward(x, std::span<const double>(&t, 1), out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double flops = unet_flops(model.config(), 32, 32) * static_cast<double>(batch);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/image"] = unet_flops(model.config(), 32, 32) * 1e-9;
  state.counters["threads"] = threads;
  model.set_num_threads(1);
}

// One 3x3 convolution (stride 1, padding 1) of the CIFAR10 network's shapes, by algorithm (0 im2col, 1 Winograd).
void BM_Conv2d_3x3(benchmark::State& state) {
  const Eigen::Index cin = state.range(0), cout = state.range(1), size = state.range(2), batch = state.range(3);
  const auto algorithm = state.range(4) == 0 ? ddpm::nn::ConvAlgorithm::im2col : ddpm::nn::ConvAlgorithm::winograd;
  ddpm::nn::Conv2d<float> conv(cin, cout, 3, 1, 1);
  conv.set_algorithm(algorithm);
  for (Eigen::Index i = 0; i < conv.weight().size(); ++i) conv.weight().data()[i] = std::sin(0.1f * float(i)) * 0.05f;
  conv.prepare();
  ddpm::nn::Context<float> ctx(static_cast<int>(state.range(5)));
  ddpm::nn::Feature<float> in = ddpm::nn::make_feature(ctx, cin, batch, size, size);
  ddpm::nn::Feature<float> out = ddpm::nn::make_feature(ctx, cout, batch, size, size);
  for (Eigen::Index i = 0; i < in.map.size(); ++i) in.map.data[i] = std::cos(0.01f * float(i));
  conv.forward(ctx, in.cview(), out.view());
  for (auto _ : state) {
    conv.forward(ctx, in.cview(), out.view());
    benchmark::DoNotOptimize(out.map.data);
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * double(cin * cout * 9 * size * size * batch);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_Conv2d_3x3)
    ->ArgNames({"cin", "cout", "size", "batch", "winograd", "threads"})
    ->ArgsProduct({{256}, {256}, {4, 8}, {1, 8}, {0, 1}, {1}})
    ->ArgsProduct({{128}, {128}, {32}, {1, 8}, {0, 1}, {1}})
    ->ArgsProduct({{512}, {256}, {16}, {1, 8}, {0, 1}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_UNet2D_Forward)
    ->ArgNames({"batch", "threads"})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Args({8, 1})
    ->Args({8, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
