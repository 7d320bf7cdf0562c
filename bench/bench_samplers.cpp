// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Benchmarks of the samplers (docs/samplers.md): one in-place step of each sampler, `sampler.step(i,
// model_output, x, noise)` with the predicted x0 kept in the sampler's own buffer, on NCHW float shapes; and
// the per-step cost of the whole reverse loop ddpm::sample() with a model that costs nothing.
//
// Bytes are what a step must move at the least: read the model output and x, write x (3 tensors), and for
// the multistep DPM-Solver++(2M) also read the previous x0 and keep this one (5 tensors). Noise is not
// counted: a step that adds noise draws it from a NoiseSource inside the timed region, so `triad_fraction`
// (bytes/s over the STREAM-triad bandwidth of the same size) includes the noise generation.
// Every step benchmark visits the steps of a 1000-step run in order, 0, 1, ..., N-2, then again from 0 and
// x_T, leaving out the last step (which adds no noise, and is first order for DPM-Solver++); so all the steps
// of a noisy sampler draw noise, and all but one in 999 of DPM-Solver++ are second order.
//
//   build/h-benchs/bench/bench_samplers --benchmark_counters_tabular=true
//   /usr/bin/python3 bench/compare_torch_samplers.py --bench build/h-benchs/bench/bench_samplers

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstddef>

#include "bench_common.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/sample.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "ddpm/samplers/dpm2.hpp"
#include "ddpm/samplers/dpmpp_2s_ancestral.hpp"
#include "ddpm/samplers/dpmpp_sde.hpp"
#include "ddpm/samplers/dpmpp_sde_multistep.hpp"
#include "ddpm/samplers/heun.hpp"
#include "ddpm/samplers/lms.hpp"
#include "ddpm/samplers/pndm.hpp"
#include "ddpm/samplers/unipc.hpp"

namespace {

using ddpm_bench::filled;
using ddpm_bench::report;
using ddpm_bench::Shape;
using ddpm_bench::shape_of;

constexpr int kTrainSteps = 1000;
constexpr int kRunSteps = 1000;  // the benchmarked run: every training timestep

const ddpm::NoiseSchedule<float>& schedule() {
  static const auto s = ddpm::NoiseSchedule<float>::linear(kTrainSteps);
  return s;
}

bool all_finite(const ddpm::Tensor<float, 4>& x) {
  for (Eigen::Index k = 0; k < x.size(); ++k) {
    if (!std::isfinite(x.data()[k])) return false;
  }
  return true;
}

// Times sampler.step(i, output, x, noise) in place (with_x0: sampler.step(i, output, x, noise, x0)), i cycling
// through 0 .. N-2. `tensors` is the number of tensors of x's size the step must read or write (see the top of
// this file).
template <class Sampler, class Noise>
void time_steps(benchmark::State& state, Sampler& sampler, Noise&& noise, int tensors, bool with_x0 = false) {
  const Shape s = shape_of(state);
  const auto output = filled(s, 1);  // an eps prediction
  const auto x_T = filled(s, 2);
  auto x = x_T;
  ddpm::Tensor<float, 4> x0(x.dimensions());
  const int wrap = sampler.num_inference_steps() - 1;
  int i = 0;
  sampler.reset();
  for (auto _ : state) {
    if (with_x0) {
      sampler.step(i, output, x, noise, x0);
    } else {
      sampler.step(i, output, x, noise);
    }
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
    if (++i == wrap) {
      // A new run from x_T (restarting from the end of a run would grow x without bound); one copy per
      // 999 steps.
      i = 0;
      x = x_T;
    }
  }
  if (!all_finite(x)) state.SkipWithError("x is no longer finite");
  report(state, x.size(), static_cast<double>(tensors) * sizeof(float) * static_cast<double>(x.size()));
}

// DDPM (fixed_small variance), the noise from a NoiseSource.
void BM_DDPM_Step(benchmark::State& state) {
  ddpm::DDPMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  ddpm::NoiseSource noise(7);
  time_steps(state, sampler, noise, 3);
}

// DDIM with eta = 0: deterministic, no noise drawn.
void BM_DDIM_Eta0_Step(benchmark::State& state) {
  ddpm::DDIMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}, .eta = 0.0});
  time_steps(state, sampler, ddpm::no_noise, 3);
}

// DDIM with eta = 0, asking for the predicted x0 too (sampler.step(i, output, x, noise, x0)): one more tensor
// written.
void BM_DDIM_Eta0_StepWithX0(benchmark::State& state) {
  ddpm::DDIMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}, .eta = 0.0});
  time_steps(state, sampler, ddpm::no_noise, 4, true);
}

// DDIM with eta = 1: DDPM's variance, the noise from a NoiseSource.
void BM_DDIM_Eta1_Step(benchmark::State& state) {
  ddpm::DDIMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}, .eta = 1.0});
  ddpm::NoiseSource noise(7);
  time_steps(state, sampler, noise, 3);
}

// DDIM with eta = 1, the noise from a PerImageNoiseSource (one stream per image, also fused into the pass).
void BM_DDIM_Eta1_Step_PerImage(benchmark::State& state) {
  ddpm::DDIMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}, .eta = 1.0});
  ddpm::PerImageNoiseSource noise(7);
  time_steps(state, sampler, noise, 3);
}

// DPM-Solver++(2M), midpoint: also reads the previous x0 and keeps this one.
void BM_DPMSolver2M_Step(benchmark::State& state) {
  ddpm::DPMSolverMultistepSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  time_steps(state, sampler, ddpm::no_noise, 5);
}

// DPM-Solver++(3M): reads the two previous x0 (one of them overwritten with this one).
void BM_DPMSolver3M_Step(benchmark::State& state) {
  ddpm::DPMSolverMultistepSampler<float> sampler(schedule(),
                                                 {.grid = {.num_inference_steps = kRunSteps}, .solver_order = 3});
  time_steps(state, sampler, ddpm::no_noise, 6);
}

// DPM++ 2M SDE (k-diffusion's; diffusers' sde-dpmsolver++ has the same step): the previous x0 read, this
// x0 kept, the noise from a NoiseSource.
void BM_DPMPP2MSDE_Step(benchmark::State& state) {
  ddpm::DPMPP2MSDESampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  ddpm::NoiseSource noise(7);
  time_steps(state, sampler, noise, 5);
}

// DPM++ 3M SDE: the two previous x0 read, the noise from a NoiseSource.
void BM_DPMPP3MSDE_Step(benchmark::State& state) {
  ddpm::DPMPP3MSDESampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  ddpm::NoiseSource noise(7);
  time_steps(state, sampler, noise, 6);
}

void BM_Euler_Step(benchmark::State& state) {
  ddpm::EulerSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  time_steps(state, sampler, ddpm::no_noise, 3);
}

// Euler ancestral, the noise from a NoiseSource.
void BM_EulerAncestral_Step(benchmark::State& state) {
  ddpm::EulerAncestralSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  ddpm::NoiseSource noise(7);
  time_steps(state, sampler, noise, 3);
}

// Heun: each step is one stage (two per interval, alternating); reads x, the output and the stage-1 x0,
// writes x and x0 (the history), as DPM-Solver++(2M).
void BM_Heun_Step(benchmark::State& state) {
  ddpm::HeunSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  time_steps(state, sampler, ddpm::no_noise, 5);
}

// LMS, order 4: x read and written, the output, x0 written and read back, three derivatives read, one written
// (two passes: x0 first, then the combination).
void BM_LMS_Step(benchmark::State& state) {
  ddpm::LMSSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  time_steps(state, sampler, ddpm::no_noise, 9);
}

// PLMS (PNDM with skip_prk_steps, as Stable Diffusion): all but the first two steps are fourth-order
// Adams-Bashforth: x read and written, the output read and kept (copied), three earlier outputs read.
void BM_PLMS_Step(benchmark::State& state) {
  ddpm::PNDMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}, .skip_prk_steps = true});
  time_steps(state, sampler, ddpm::no_noise, 7);
}

// UniPC (diffusers' defaults: bh2, order 2, the corrector on): x, the output, the previous corrected sample
// and the two previous outputs read; x, the corrected sample and this output written (8 tensors).
void BM_UniPC_Step(benchmark::State& state) {
  ddpm::UniPCSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  time_steps(state, sampler, ddpm::no_noise, 8);
}

// DPM2 (stages alternate, as Heun).
void BM_DPM2_Step(benchmark::State& state) {
  ddpm::DPM2Sampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  time_steps(state, sampler, ddpm::no_noise, 5);
}

// DPM2 ancestral and DPM++ 2S ancestral: stage 2 also draws the noise from a NoiseSource.
void BM_DPM2Ancestral_Step(benchmark::State& state) {
  ddpm::DPM2AncestralSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  ddpm::NoiseSource noise(7);
  time_steps(state, sampler, noise, 5);
}

void BM_DPMPP2SAncestral_Step(benchmark::State& state) {
  ddpm::DPMPP2SAncestralSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  ddpm::NoiseSource noise(7);
  time_steps(state, sampler, noise, 5);
}

// DPM++ SDE (stages alternate), its normalized Brownian increments given as a tensor (the step's arithmetic
// alone, as the PyTorch row): stage 1 reads x, the output and z and writes x and the kept start; stage 2
// reads x, the output, the start and z and writes x.
void BM_DPMPPSDE_Step(benchmark::State& state) {
  ddpm::DPMPPSDESampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  const auto z = filled(shape_of(state), 3);
  time_steps(state, sampler, z, 5);
}

// The same with the increments from the Brownian tree of a NoiseSource's seed (the default tolerance 1e-6:
// depth 28 over sigma in [0.0100, 157.4], up to 57 node normals per element and step, made in double).
void BM_DPMPPSDE_Step_Brownian(benchmark::State& state) {
  ddpm::DPMPPSDESampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kRunSteps}});
  ddpm::NoiseSource noise(7);
  time_steps(state, sampler, noise, 5);
}

// One normalized increment of a Brownian tree over [0.01, 157.4] (tolerance 1e-6, depth 28) into a float
// tensor: the noise query of a DPM++ SDE stage. Bytes: the one tensor written.
void BM_BrownianTree_Increment(benchmark::State& state) {
  const Shape s = shape_of(state);
  auto out = filled(s, 4);
  const ddpm::BrownianTreeNoise tree(0.01, 157.4, 7);
  for (auto _ : state) {
    tree(5.0, 4.9, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["depth"] = tree.tree().depth();
  report(state, out.size(), sizeof(float) * static_cast<double>(out.size()));
}

// For reference: the triad itself, and the normal generator alone (writes one tensor; its bytes/s are
// those of that one tensor), on the same shapes.
using ddpm_bench::BM_Triad;

using ddpm_bench::BM_FillNormal;

// The whole reverse loop: ddpm::sample() over a 50-step DDIM (eta = 0) run with a model that costs nothing:
// it returns a preallocated tensor, which the loop copies into the output tensor it keeps (a real model
// would allocate and fill that tensor itself). Counter `per_step` is the time per step. Two references
// take the loop apart: BM_SampleLoop_ByHand is the same loop written out (the same copy, the same steps),
// so its difference from BM_SampleLoop_Overhead is what sample() itself adds; BM_SampleLoop_StepsOnly is
// the 50 steps alone on one output tensor, so its difference from BM_SampleLoop_Overhead is the whole
// loop's overhead per step with a zero-cost model (the model output's allocation and copy included).
constexpr int kLoopSteps = 50;

template <class Body>
void time_loop(benchmark::State& state, Body&& body) {
  for (auto _ : state) body();
  state.SetItemsProcessed(state.iterations() * kLoopSteps);
  state.counters["per_step"] =
      benchmark::Counter(kLoopSteps, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_SampleLoop_Overhead(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto output = filled(s, 1);
  const auto x_T = filled(s, 2);
  ddpm::DDIMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kLoopSteps}});
  auto model = [&output](const ddpm::Tensor<float, 4>&, int) -> const ddpm::Tensor<float, 4>& { return output; };
  time_loop(state, [&] {
    ddpm::Tensor<float, 4> x = ddpm::sample(sampler, model, x_T, ddpm::no_noise);
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  });
}

void BM_SampleLoop_ByHand(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto output = filled(s, 1);
  const auto x_T = filled(s, 2);
  ddpm::DDIMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kLoopSteps}});
  auto model = [&output](const ddpm::Tensor<float, 4>&, int) -> const ddpm::Tensor<float, 4>& { return output; };
  time_loop(state, [&] {
    ddpm::Tensor<float, 4> x = x_T;
    sampler.reset();
    for (int i = 0; i < kLoopSteps; ++i) {
      const ddpm::Tensor<float, 4> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
      sampler.step(i, out, x, ddpm::no_noise);
    }
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  });
}

void BM_SampleLoop_StepsOnly(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto output = filled(s, 1);
  const auto x_T = filled(s, 2);
  ddpm::DDIMSampler<float> sampler(schedule(), {.grid = {.num_inference_steps = kLoopSteps}});
  time_loop(state, [&] {
    ddpm::Tensor<float, 4> x = x_T;
    sampler.reset();
    for (int i = 0; i < kLoopSteps; ++i) sampler.step(i, output, x, ddpm::no_noise);
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  });
}

void sampler_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1, 3, 8, 8})->Args({16, 3, 64, 64})->Args({4, 4, 128, 128});
  b->ArgNames({"n", "c", "h", "w"});
}

BENCHMARK(BM_Triad)->Apply(sampler_shapes);
BENCHMARK(BM_FillNormal)->Apply(sampler_shapes);
BENCHMARK(BM_DDPM_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DDIM_Eta0_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DDIM_Eta0_StepWithX0)->Apply(sampler_shapes);
BENCHMARK(BM_DDIM_Eta1_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DDIM_Eta1_Step_PerImage)->Apply(sampler_shapes);
BENCHMARK(BM_DPMSolver2M_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DPMSolver3M_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DPMPP2MSDE_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DPMPP3MSDE_Step)->Apply(sampler_shapes);
BENCHMARK(BM_Euler_Step)->Apply(sampler_shapes);
BENCHMARK(BM_EulerAncestral_Step)->Apply(sampler_shapes);
BENCHMARK(BM_Heun_Step)->Apply(sampler_shapes);
BENCHMARK(BM_LMS_Step)->Apply(sampler_shapes);
BENCHMARK(BM_PLMS_Step)->Apply(sampler_shapes);
BENCHMARK(BM_UniPC_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DPM2_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DPM2Ancestral_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DPMPP2SAncestral_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DPMPPSDE_Step)->Apply(sampler_shapes);
BENCHMARK(BM_DPMPPSDE_Step_Brownian)->Apply(sampler_shapes);
BENCHMARK(BM_BrownianTree_Increment)->Apply(sampler_shapes);
BENCHMARK(BM_SampleLoop_Overhead)->Apply(sampler_shapes);
BENCHMARK(BM_SampleLoop_ByHand)->Apply(sampler_shapes);
BENCHMARK(BM_SampleLoop_StepsOnly)->Apply(sampler_shapes);

}  // namespace

BENCHMARK_MAIN();
