// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// One training step of ddpm::nn::UNet2D, as a user runs it: ddpm::nn::train_step (nn/trainer.hpp) with
// random timesteps and noise (make_training_batch: t ~ U{0..999}, eps ~ N(0, I), x_t = q_sample), the forward
// pass with saved activations (forward_train), the simple loss and its gradient, the gradients zeroed,
// backward, and AdamW at lr 1e-4 (PyTorch's defaults otherwise); no clipping (max_grad_norm 0: train_step then
// only computes the gradient norm it reports), no EMA, no label dropout.
// bench/compare_torch_train.py times PyTorch's step (forward, F.mse_loss, backward, AdamW.step, zero_grad) on
// the same architectures, batches and threads, and prints both side by side.
//
// Configurations (BENCH_NAMES in compare_torch_train.py): BM_Train_Step/<model>/<batch>/<threads>
//   small:   block_out_channels (32, 64), one layer per block, norm_num_groups 8, attention_head_dim 8,
//            DownBlock2D + AttnDownBlock2D, AttnUpBlock2D + UpBlock2D (and the mid block's attention), 16 x 16,
//            3 channels; batch 32 and 64
//   cifar10: the DDPM-CIFAR10 shape (UNet2DConfig::ddpm_cifar10(): 35,746,307 parameters), 32 x 32; batch 8
// on 1 and 2 threads (the TrainState's Workspace), with random weights of PyTorch's default scale. Time is wall
// time ("Time"); "CPU" is the process's CPU time per step (all threads: on a loaded machine the 1-thread CPU
// time is the better estimate of the unloaded step).
//
// Counters:
//   GFLOP/s      3 x the forward FLOPs (2 x the multiply-adds of every convolution and linear layer plus the
//                two attention products, as compare_torch_train.py counts them with hooks) per step, per
//                second of wall time
//   peak_frac    GFLOP/s over the FP32 FMA peak of the same thread count, measured in this run
//   peak_bytes   the most heap a training step holds beyond the model, its gradients and AdamW's state:
//                counted by a malloc wrapper (bench_common.hpp, DDPM_BENCH_HEAP_ACCOUNTING) over the first step
//                of a fresh TrainState, as the high-water mark of live heap bytes minus those before the step
//                (model and gradients) minus AdamW's two moment buffers (allocated in that step). It includes
//                the workspace's pool (saved activations, im2col columns, GEMM packing), the batch, the output
//                and its gradient. PyTorch's figure (peak RSS growth over its first step) includes the gradients
//                and AdamW's state too: compare with that minus 12 bytes per parameter.
//   held_bytes   of those, what the state keeps between steps (the workspace's pool, the step's buffers)
//   allocs       heap allocations of one step in the steady state
// BM_FmaPeak (1 and 2 threads) and BM_Triad on DRAM-sized arrays give the machine's limits in the same run.
//
//   build/<dir>/bench/bench_train --benchmark_counters_tabular=true
//   /usr/bin/python3 bench/compare_torch_train.py --bench build/<dir>/bench/bench_train --measure-peak

#define DDPM_BENCH_HEAP_ACCOUNTING 1
#include "bench_common.hpp"

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/nn/trainer.hpp"

namespace {

using ddpm::nn::UNet2DConfig;

/// The small UNet of compare_torch_train.py's SMALL_CONFIG.
UNet2DConfig small_config() {
  UNet2DConfig c;
  c.sample_size = std::array<int, 2>{16, 16};
  c.in_channels = 3;
  c.out_channels = 3;
  c.block_out_channels = {32, 64};
  c.layers_per_block = 1;
  c.norm_num_groups = 8;
  c.attention_head_dim = 8;
  c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
  return c;
}

/// 2 x the multiply-adds of one forward pass of one H x W image: every convolution, every linear layer (the
/// time embedding MLP, the ResNet blocks' time projections, attention's q, k, v and output projections) and
/// attention's two products QK^T and PV; compare_torch_train.py's convention (it counts the same with hooks).
double forward_flops(const UNet2DConfig& c, double H, double W) {
  const auto& ch = c.block_out_channels;
  const std::size_t levels = ch.size();
  const double T = c.temb_channels(), E = ch[0];
  const double temb_out = c.resnet_time_scale_shift == "scale_shift" ? 2.0 : 1.0;
  auto conv = [](double cin, double cout, double k, double pixels) { return 2.0 * cin * cout * k * k * pixels; };
  auto resnet = [&](double cin, double cout, double pixels) {
    return conv(cin, cout, 3, pixels) + conv(cout, cout, 3, pixels) + (cin != cout ? conv(cin, cout, 1, pixels) : 0.0) +
           2.0 * T * temb_out * cout;
  };
  auto attention = [&](double channels, double pixels) {
    const double d = c.attention_head_dim ? *c.attention_head_dim : channels;
    const double inner = std::floor(channels / d) * d;
    return 2.0 * pixels * channels * inner * 4 + 2.0 * 2.0 * pixels * pixels * inner;
  };
  double pixels = H * W;
  double flops = 2.0 * E * T + 2.0 * T * T + conv(c.in_channels, ch[0], 3, pixels);
  double out = ch[0];
  for (std::size_t i = 0; i < levels; ++i) {
    const double in = out;
    out = ch[i];
    for (int l = 0; l < c.layers_per_block; ++l) {
      flops += resnet(l == 0 ? in : out, out, pixels);
      if (c.down_block_types[i] == "AttnDownBlock2D") flops += attention(out, pixels);
    }
    if (i + 1 < levels) {
      pixels /= 4;
      flops += conv(out, out, 3, pixels);
    }
  }
  if (c.mid_block_type) flops += 2 * resnet(ch.back(), ch.back(), pixels) + (c.add_attention ? attention(ch.back(), pixels) : 0.0);
  out = ch.back();
  for (std::size_t i = 0; i < levels; ++i) {
    const double prev = out;
    out = ch[levels - 1 - i];
    const double in = ch[i + 2 <= levels ? levels - 2 - i : 0];
    for (int l = 0; l <= c.layers_per_block; ++l) {
      const double skip = l == c.layers_per_block ? in : out;
      flops += resnet((l == 0 ? prev : out) + skip, out, pixels);
      if (c.up_block_types[i] == "AttnUpBlock2D") flops += attention(out, pixels);
    }
    if (i + 1 < levels) {
      pixels *= 4;
      flops += conv(out, out, 3, pixels);
    }
  }
  return flops + conv(ch[0], c.out_channels, 3, pixels);
}

/// A model of `config` with deterministic uniform weights of PyTorch's default scale (+-1/sqrt(fan_in)) and
/// the norms' weights at 1.
ddpm::nn::UNet2D<float> random_model(const UNet2DConfig& config, std::uint64_t seed) {
  ddpm::nn::UNet2D<float> m(config);
  std::uint64_t state = seed;
  auto uniform = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state >> 11) * 0x1.0p-53 * 2.0 - 1.0;
  };
  for (const auto& p : m.parameters()) {
    double fan_in = 1;
    for (std::size_t i = 1; i < p.shape.size(); ++i) fan_in *= static_cast<double>(p.shape[i]);
    const bool norm_weight =
        p.shape.size() == 1 && p.name.find("norm") != std::string::npos && p.name.rfind("weight") == p.name.size() - 6;
    for (std::int64_t i = 0; i < p.numel(); ++i) {
      p.data[i] = norm_weight ? 1.0f : static_cast<float>(uniform() / std::sqrt(fan_in));
    }
  }
  m.prepare();
  return m;
}

/// The data source: four fixed batches of images in [-1, 1], taken in turn.
struct FixedBatches {
  std::vector<ddpm::Tensor<float, 4>> images;
  FixedBatches(Eigen::Index batch, Eigen::Index channels, Eigen::Index size) {
    for (std::uint64_t k = 0; k < 4; ++k) {
      ddpm::Tensor<float, 4> x = ddpm_bench::filled({batch, channels, size, size}, 100 + k);
      x = x.cwiseMax(-1.0f).cwiseMin(1.0f);
      images.push_back(std::move(x));
    }
  }
  void operator()(std::int64_t step, ddpm::nn::DataBatch<float>& batch) const {
    batch.x0 = images[static_cast<std::size_t>(step % 4)];
  }
};

/// One configuration: the model (small or the CIFAR10 shape), the batch and the threads.
void BM_Train_Step(benchmark::State& state, bool cifar, Eigen::Index batch, int threads) {
  const UNet2DConfig config = cifar ? UNet2DConfig::ddpm_cifar10() : small_config();
  const Eigen::Index size = cifar ? 32 : 16;
  const double peak = ddpm_bench::fma_peak_flops_per_second(threads);  // before the model takes memory
  const FixedBatches data(batch, config.in_channels, size);
  ddpm::nn::TrainOptions options;
  options.optimizer.lr = 1e-4;
  options.lr_schedule = ddpm::LRSchedule::constant(1e-4);
  options.max_grad_norm = 0.0;
  options.use_ema = false;
  std::optional<ddpm::nn::TrainState<float>> train;
  train.emplace(random_model(config, 12345), ddpm::NoiseSchedule<float>::linear(), options, 7, threads);
  const double params = static_cast<double>(train->model.num_parameters());

  // The first step of the fresh state: its heap high-water mark over what existed before it.
#ifdef DDPM_BENCH_HAS_HEAP_ACCOUNTING
  const long long before = ddpm_bench::heap::live_bytes();
  ddpm_bench::heap::reset_high_water();
#endif
  ddpm::nn::train_step(*train, data);
#ifdef DDPM_BENCH_HAS_HEAP_ACCOUNTING
  const double adam_state = 2.0 * sizeof(float) * params;
  state.counters["peak_bytes"] = static_cast<double>(ddpm_bench::heap::high_water_bytes() - before) - adam_state;
  state.counters["held_bytes"] = static_cast<double>(ddpm_bench::heap::live_bytes() - before) - adam_state;
  ddpm::nn::train_step(*train, data);
  const long long allocations = ddpm_bench::heap::allocation_count();
  ddpm::nn::train_step(*train, data);
  state.counters["allocs"] = static_cast<double>(ddpm_bench::heap::allocation_count() - allocations);
#else
  ddpm::nn::train_step(*train, data);
#endif

  for (auto _ : state) {
    const ddpm::nn::StepResult r = ddpm::nn::train_step(*train, data);
    benchmark::DoNotOptimize(r.loss);
  }
  const double flops = 3.0 * forward_flops(config, static_cast<double>(size), static_cast<double>(size)) *
                       static_cast<double>(batch);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_frac"] = benchmark::Counter(flops / peak, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/step"] = flops * 1e-9;
  state.counters["params"] = params;
  state.counters["workspace_bytes"] = static_cast<double>(train->workspace.scratch_bytes());
  state.SetLabel(std::string(cifar ? "cifar10" : "small") + ", FMA peak " +
                 std::to_string(static_cast<int>(peak * 1e-9)) + " GFLOP/s on " + std::to_string(threads) +
                 (threads == 1 ? " thread" : " threads"));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("BM_FmaPeak", ddpm_bench::BM_FmaPeak)->Threads(1)->Threads(2)->UseRealTime();
  // STREAM's triad on DRAM-sized arrays (3 x 128 MiB).
  benchmark::RegisterBenchmark("BM_Triad", ddpm_bench::BM_Triad)
      ->Args({1, 1, 1 << 12, 1 << 13})
      ->Unit(benchmark::kMillisecond);
  // Named as compare_torch_train.py's BENCH_NAMES expect: BM_Train_Step/<model>/<batch>/<threads>.
  struct Config {
    const char* model;
    Eigen::Index batch;
    int threads;
  };
  for (const Config& c : {Config{"small", 32, 1}, Config{"small", 32, 2}, Config{"small", 64, 1},
                          Config{"small", 64, 2}, Config{"cifar10", 8, 1}, Config{"cifar10", 8, 2}}) {
    const std::string name = std::string("BM_Train_Step/") + c.model + "/" + std::to_string(c.batch) + "/" +
                             std::to_string(c.threads);
    benchmark::RegisterBenchmark(name.c_str(), BM_Train_Step, std::string(c.model) == "cifar10", c.batch, c.threads)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(2.0)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
