// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The Euler ancestral sampler of k-diffusion (diffusers' EulerAncestralDiscreteScheduler): an Euler step
// down to sigma_down followed by fresh noise of standard deviation sigma_up, so that the marginal noise
// level after the step is sigma_{i+1}.                                       [docs/samplers.md, Eq. (S14)]

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/predictor.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/detail/two_stage.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// The Euler ancestral sampler.                                   [docs/samplers.md, Eqs. (S14), (S20)]
/// With sigma_i as in EulerSampler (same grid, same options):
///   sigma_up = sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2),  sigma_down = sigma_{i+1}^2 / sigma_i
///   x_ve = sqrt(1 + sigma_i^2) x,  x_ve <- x_ve + (sigma_down - sigma_i) (x_ve - x0) / sigma_i + sigma_up z,
///   x <- x_ve / sqrt(1 + sigma_{i+1}^2)
/// (sigma_down^2 + sigma_up^2 = sigma_{i+1}^2). With k-diffusion's options eta and s_noise (EulerOptions;
/// sample_euler_ancestral's arguments) other than 1, (sigma_down, sigma_up) are those of Eq. (S20) for eta
/// and the noise is s_noise sigma_up z (at eta = s_noise = 1 the same values, computed as above).
/// Noise is drawn at every step with sigma_up > 0, i.e. all but the last when the final sigma is 0 (none
/// at eta = 0). Differences from diffusers as for EulerSampler.
template <std::floating_point S>
class EulerAncestralSampler : public detail::SamplerBase<EulerAncestralSampler<S>, S> {
  using Base = detail::SamplerBase<EulerAncestralSampler<S>, S>;
  friend Base;

 public:
  /// The grid defaults (EulerDiscreteScheduler's): N = 50, linspace spacing, ramps between the spaced ends.
  static constexpr GridDefaults grid_defaults = GridDefaults::euler_discrete();

  /// Throws as EulerSampler's constructor.
  explicit EulerAncestralSampler(NoiseSchedule<S> schedule, EulerOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::EulerAncestralSampler";
    detail::check_clipping(fn, options_.clipping);
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    if (options_.s_churn != 0.0) {
      detail::throw_invalid_argument("ddpm::EulerAncestralSampler: s_churn is " + ddpm::detail::number_string(options_.s_churn) +
                                     ", but must be 0: churn is an option of EulerSampler only");
    }
    detail::check_ancestral(fn, options_.eta, options_.s_noise);
    this->timesteps_ = std::move(grid.timesteps);
    sigmas_ = std::move(grid.sigmas);
  }

  const EulerOptions& options() const { return options_; }
  /// The noise levels of the steps followed by the final sigma (N + 1 values).
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// No history to forget; present so that every sampler can be reset.
  void reset() {}

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::EulerAncestralSampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    const double s0 = sigmas_[static_cast<std::size_t>(i)], s1 = sigmas_[static_cast<std::size_t>(i + 1)];
    double up = std::sqrt(std::max(s1 * s1 * (s0 * s0 - s1 * s1) / (s0 * s0), 0.0));
    double down = s1 * s1 / s0;
    if (options_.eta != 1.0 || options_.s_noise != 1.0) {  // Eq. (S20); the default keeps the form above
      const detail::AncestralStep a = detail::ancestral_step(s0, s1, options_.eta);
      down = a.down;
      up = options_.s_noise * a.up;
    }
    const double inv = 1.0 / std::sqrt(1.0 + s1 * s1);
    const double ratio = down / s0;
    detail::StepPlan plan{x0_conversion(kind, 1.0 / (1.0 + s0 * s0))};
    plan.x_coef = std::sqrt(1.0 + s0 * s0) * ratio * inv;
    plan.x0_coef = (1.0 - ratio) * inv;
    plan.noise = up > 0.0;
    plan.noise_coef = up * inv;
    this->template run_step<false, true>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping);
  }

  EulerOptions options_;
  std::vector<double> sigmas_;
};

}  // namespace ddpm
