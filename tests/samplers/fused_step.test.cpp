// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// A sampler step is one pass over x, the model output and the noise (samplers/common.hpp, run_step): noise
// from a ddpm::NoiseSource is made a chunk at a time inside that pass, x0 is stored only when the caller
// asks for it, and a multistep sampler's history is read and rewritten in the same pass. These tests check
// that every calling form gives the same numbers, bit for bit, on tensors large enough to be cut into
// many chunks (and, with OpenMP, threads), with a stream offset that is not a multiple of the generator's
// chunk, and with a learned-variance output whose batch stride is twice x's; and they check one such step
// against the update rule evaluated in double from the sampler's own coefficients.

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ddpm/random.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace {

using ddpm::Tensor;

// 3 x 5 x 67 x 71 = 71,355 elements: more than two parallel grains (2 x 32,768) and than the generator's
// parallel threshold (65,536), and no batch element a multiple of the 256-number chunk.
constexpr Eigen::Index kBatch = 3, kChannels = 5, kHeight = 67, kWidth = 71;
constexpr std::uint64_t kSeed = 2024, kOffset = 37;

Tensor<float, 4> normal_tensor(Eigen::Index channels, std::uint64_t seed) {
  Tensor<float, 4> t(kBatch, channels, kHeight, kWidth);
  ddpm::fill_normal(t, seed);
  return t;
}

bool identical(const Tensor<float, 4>& a, const Tensor<float, 4>& b) {
  if (a.size() != b.size()) return false;
  for (Eigen::Index i = 0; i < a.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(a.data()[i]) != std::bit_cast<std::uint32_t>(b.data()[i])) return false;
  }
  return true;
}

/// Step i of `sampler` on x in the four forms: x0 wanted or not, noise as a NoiseSource or as a tensor
/// filled from the same stream. Checks that all four give the same x and x0, and that the source advanced
/// by x.size() exactly when the step adds noise (`noisy`).
template <class Sampler>
void check_forms(Sampler& a, Sampler& b, Sampler& c, Sampler& d, int i, const Tensor<float, 4>& output,
                 Tensor<float, 4>& x_a, Tensor<float, 4>& x_b, Tensor<float, 4>& x_c, Tensor<float, 4>& x_d,
                 bool noisy) {
  const std::uint64_t offset = kOffset + static_cast<std::uint64_t>(i) * static_cast<std::uint64_t>(x_a.size());
  Tensor<float, 4> z(x_a.dimensions());
  ddpm::fill_normal(z, kSeed, offset);
  ddpm::NoiseSource source_a(kSeed, offset), source_b(kSeed, offset);
  Tensor<float, 4> x0_a, x0_c;
  a.step(i, output, x_a, source_a, x0_a);
  b.step(i, output, x_b, source_b);
  c.step(i, output, x_c, z, x0_c);
  d.step(i, output, x_d, z);
  CHECK(identical(x_a, x_b));
  CHECK(identical(x_a, x_c));
  CHECK(identical(x_a, x_d));
  CHECK(identical(x0_a, x0_c));
  const std::uint64_t drawn = noisy ? static_cast<std::uint64_t>(x_a.size()) : 0;
  CHECK(source_a.offset() == offset + drawn);
  CHECK(source_b.offset() == offset + drawn);
}

/// Runs `steps` steps of four copies of a sampler through check_forms, from the same x.
template <class Sampler>
void check_run(const Sampler& prototype, Eigen::Index output_channels, const std::vector<bool>& noisy) {
  Sampler a = prototype, b = prototype, c = prototype, d = prototype;
  Tensor<float, 4> x = normal_tensor(kChannels, 1);
  Tensor<float, 4> x_a = x, x_b = x, x_c = x, x_d = x;
  for (int i = 0; i < static_cast<int>(noisy.size()); ++i) {
    INFO("step " << i);
    // The model output depends on the step, so that a multistep history matters.
    const Tensor<float, 4> output = normal_tensor(output_channels, 100 + static_cast<std::uint64_t>(i));
    check_forms(a, b, c, d, i, output, x_a, x_b, x_c, x_d, noisy[static_cast<std::size_t>(i)]);
  }
}

}  // namespace

TEST_CASE("Sampler steps: every calling form gives the same numbers, on chunked tensors", "[samplers][fused]") {
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  const ddpm::Clipping clippings[] = {ddpm::Clipping::none(), ddpm::Clipping::clip(1.5),
                                      ddpm::Clipping::dynamic_threshold(0.9, 2.0)};
  for (const ddpm::Clipping& clipping : clippings) {
    INFO("clipping mode " << static_cast<int>(clipping.mode));
    {  // DDPM fixed_small, learned_range (2C output), fixed_small with a 2C output
      ddpm::DDPMSampler<float> fixed(schedule, {.grid = {.num_inference_steps = 3}, .clipping = clipping});
      check_run(fixed, kChannels, {true, true, false});
      ddpm::DDPMSampler<float> learned(schedule, {.grid = {.num_inference_steps = 3},
                                                  .variance_type = ddpm::VarianceType::learned_range,
                                                  .clipping = clipping});
      check_run(learned, 2 * kChannels, {true, true, false});
      ddpm::DDPMSampler<float> doubled(schedule, {.grid = {.num_inference_steps = 3}, .clipping = clipping});
      check_run(doubled, 2 * kChannels, {true, true, false});
    }
    {  // DDIM eta 0 and 0.5, with and without the clipped model output
      for (bool rederive : {true, false}) {
        ddpm::DDIMSampler<float> deterministic(schedule, {.grid = {.num_inference_steps = 3},
                                                          .eta = 0.0,
                                                          .clipping = clipping,
                                                          .use_clipped_model_output = rederive});
        check_run(deterministic, kChannels, {false, false, false});
        ddpm::DDIMSampler<float> noisy(schedule, {.grid = {.num_inference_steps = 3},
                                                  .eta = 0.5,
                                                  .clipping = clipping,
                                                  .use_clipped_model_output = rederive});
        check_run(noisy, 2 * kChannels, {true, true, false});
      }
    }
    {  // DPM-Solver++(2M), Euler, Euler ancestral
      ddpm::DPMSolverMultistepSampler<float> dpm(schedule, {.grid = {.num_inference_steps = 4}, .clipping = clipping});
      check_run(dpm, kChannels, {false, false, false, false});
      ddpm::EulerSampler<float> euler(schedule, {.grid = {.num_inference_steps = 3}, .clipping = clipping});
      check_run(euler, 2 * kChannels, {false, false, false});
      if (clipping.mode != ddpm::Clipping::Mode::dynamic_threshold) {
        // Churn at every step (the noise enters x0 too).
        ddpm::EulerSampler<float> churned(schedule,
                                          {.grid = {.num_inference_steps = 3}, .clipping = clipping, .s_churn = 0.5});
        check_run(churned, kChannels, {true, true, true});
      }
      ddpm::EulerAncestralSampler<float> ancestral(schedule,
                                                   {.grid = {.num_inference_steps = 3}, .clipping = clipping});
      check_run(ancestral, kChannels, {true, true, false});
    }
  }
}

TEST_CASE("A fused DDIM step with a learned-variance output equals Eq. (S9) in double", "[samplers][fused]") {
  // eta = 0.7 at step 1 of 4, epsilon prediction, the output with 2C channels (the second half must be
  // ignored), noise from a source at an odd offset: x' = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps
  // + sigma z with x0 = (x - sqrt(1 - ab) eps) / sqrt(ab), evaluated in double from the float inputs.
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  ddpm::DDIMSampler<float> sampler(schedule, {.grid = {.num_inference_steps = 4}, .eta = 0.7});
  const Tensor<float, 4> x = normal_tensor(kChannels, 5);
  const Tensor<float, 4> output = normal_tensor(2 * kChannels, 6);
  Tensor<float, 4> z(x.dimensions());
  ddpm::fill_normal(z, kSeed, kOffset);
  Tensor<float, 4> stepped = x, x0;
  ddpm::NoiseSource source(kSeed, kOffset);
  sampler.step(1, output, stepped, source, x0);

  const auto k = sampler.coefficients(1);
  const double dir = std::sqrt(1.0 - k.alpha_bar_prev - k.sigma * k.sigma);
  const Eigen::Index ps = x.size() / kBatch;
  double worst_x = 0.0, worst_x0 = 0.0;
  for (Eigen::Index b = 0; b < kBatch; ++b) {
    for (Eigen::Index j = 0; j < ps; ++j) {
      const Eigen::Index n = b * ps + j;
      const double xv = x.data()[n], eps = output.data()[b * 2 * ps + j], zv = z.data()[n];
      const double x0v = (xv - std::sqrt(1.0 - k.alpha_bar) * eps) / std::sqrt(k.alpha_bar);
      const double expected = std::sqrt(k.alpha_bar_prev) * x0v + dir * eps + k.sigma * zv;
      // Rounding is relative to the terms' magnitude (x0's terms are up to 1 / sqrt(ab) ~ 3.4 times |x|).
      const double scale = 1.0 + std::abs(xv) + std::abs(eps) + std::abs(zv);
      worst_x0 = std::max(worst_x0, std::abs(x0.data()[n] - x0v) / (scale / std::sqrt(k.alpha_bar)));
      worst_x = std::max(worst_x, std::abs(stepped.data()[n] - expected) / (scale / std::sqrt(k.alpha_bar)));
    }
  }
  // Float rounding of a handful of operations: a few units of 2^-24 = 6e-8 relative to the scale.
  CHECK(worst_x0 < 1e-6);
  CHECK(worst_x < 1e-6);
  CHECK(source.offset() == kOffset + static_cast<std::uint64_t>(x.size()));
}
