// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The Euler sampler of k-diffusion (Karras et al. 2022; diffusers' EulerDiscreteScheduler): Euler steps of
// the probability-flow ODE dx/dsigma = (x - x0) / sigma in the variance-exploding variable
// x / sqrt(alpha_bar) = x0 + sigma eps, with Algorithm 2's churn as an option.
//                                                                  [docs/samplers.md, Eqs. (S13), (S13c)]

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/predictor.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// Options of EulerSampler and EulerAncestralSampler (diffusers' EulerDiscreteScheduler and
/// EulerAncestralDiscreteScheduler).
struct EulerOptions {
  /// The grid (GridOptions; EulerSampler::grid_defaults: N = 50, linspace spacing, ramps between
  /// the sigmas of the first and last spaced timesteps, as EulerDiscreteScheduler).
  GridOptions grid = {};
  /// Bounds on the predicted x0 (not in diffusers' Euler). Default: none.
  Clipping clipping = {};
  /// Churn (Karras et al. 2022, Algorithm 2; diffusers' EulerDiscreteScheduler.step arguments of the same
  /// names), EulerSampler only: at a step whose sigma is in [s_tmin, s_tmax], sigma is raised to
  /// sigma_hat = sigma (1 + gamma), gamma = min(s_churn / N, sqrt(2) - 1), by adding noise of standard
  /// deviation s_noise sqrt(sigma_hat^2 - sigma^2) to x. s_churn = 0 (the default) is the deterministic
  /// Euler sampler.
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
  /// EulerAncestralSampler only: k-diffusion's eta of Eq. (S20) (1, the default: the full ancestral step;
  /// 0: deterministic); s_noise above then scales its noise.
  double eta = 1.0;
};

/// The Euler sampler (deterministic).                                          [docs/samplers.md, Eq. (S13)]
/// With sigma_i the noise level of step i (sigma[t] of Eq. (12) of docs/math.md at timesteps()[i], a sigma
/// ramp or a given list; see make_grid) and sigma_N the final sigma, step i takes the variance-preserving x_t to
///   x_ve = sqrt(1 + sigma_i^2) x,   d = (x_ve - x0) / sigma_i,   x_ve <- x_ve + (sigma_{i+1} - sigma_i) d,
///   x <- x_ve / sqrt(1 + sigma_{i+1}^2)
/// with x0 the prediction converted at alpha_bar = 1 / (1 + sigma_i^2) and bounded. This is diffusers'
/// EulerDiscreteScheduler with scale_model_input folded in: x stays the variance-preserving x_t, which is
/// what the model takes and what a run starts from (x_T ~ N(0, I)); diffusers instead starts from
/// sigma_max * noise for linspace and trailing spacing, which differs by a factor
/// sigma_max / sqrt(1 + sigma_max^2) (1 - 2e-5 for the linear schedule). The model sees integer timesteps
/// (diffusers passes fractional ones for linspace spacing and Karras sigmas; we round, as the model is
/// called with a training timestep). Under zero terminal SNR, alpha_bar[T-1] = 0 becomes 2^-24.
template <std::floating_point S>
class EulerSampler : public detail::SamplerBase<EulerSampler<S>, S> {
  using Base = detail::SamplerBase<EulerSampler<S>, S>;
  friend Base;

 public:
  /// The grid defaults (EulerDiscreteScheduler's): N = 50, linspace spacing, ramps between the spaced ends.
  static constexpr GridDefaults grid_defaults = GridDefaults::euler_discrete();

  /// Throws ddpm::invalid_argument if the grid options (see make_grid), the clipping or the churn options
  /// are bad.
  explicit EulerSampler(NoiseSchedule<S> schedule, EulerOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::EulerSampler";
    detail::check_clipping(fn, options_.clipping);
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    this->timesteps_ = std::move(grid.timesteps);
    sigmas_ = std::move(grid.sigmas);
    auto fail = [fn](const std::string& what) { detail::throw_invalid_argument(std::string(fn) + ": " + what); };
    if (!(std::isfinite(options_.s_churn) && options_.s_churn >= 0.0)) {
      fail("s_churn is " + ddpm::detail::number_string(options_.s_churn) + ", but must be finite and >= 0");
    }
    if (!(std::isfinite(options_.s_noise) && options_.s_noise >= 0.0)) {
      fail("s_noise is " + ddpm::detail::number_string(options_.s_noise) + ", but must be finite and >= 0");
    }
    if (std::isnan(options_.s_tmin) || std::isnan(options_.s_tmax) || options_.s_tmin > options_.s_tmax) {
      fail("s_tmin is " + ddpm::detail::number_string(options_.s_tmin) + " and s_tmax " + ddpm::detail::number_string(options_.s_tmax) +
           ", but they must be numbers with s_tmin <= s_tmax");
    }
    if (options_.eta != 1.0) {
      fail("eta is " + ddpm::detail::number_string(options_.eta) + ", but must be 1: eta is an option of EulerAncestralSampler");
    }
    if (options_.s_churn > 0.0 && options_.clipping.mode == Clipping::Mode::dynamic_threshold) {
      fail("s_churn is " + ddpm::detail::number_string(options_.s_churn) +
           " together with dynamic thresholding, which is not supported; use Clipping::clip or no bounds");
    }
  }

  /// gamma of step i: min(s_churn / N, sqrt(2) - 1) if s_tmin <= sigmas()[i] <= s_tmax, else 0.
  /// Throws ddpm::invalid_argument if i is outside [0, num_inference_steps()).
  double churn(int i) const {
    detail::check_step_index("ddpm::EulerSampler::churn", i, this->num_inference_steps());
    const double s = sigmas_[static_cast<std::size_t>(i)];
    if (!(options_.s_churn > 0.0 && options_.s_tmin <= s && s <= options_.s_tmax)) return 0.0;
    return std::min(options_.s_churn / this->num_inference_steps(), std::sqrt(2.0) - 1.0);
  }

  const EulerOptions& options() const { return options_; }
  /// The noise levels of the steps followed by the final sigma (N + 1 values).
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// No history to forget; present so that every sampler can be reset.
  void reset() {}

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::EulerSampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    const double s0 = sigmas_[static_cast<std::size_t>(i)], s1 = sigmas_[static_cast<std::size_t>(i + 1)];
    const double gamma = churn(i);
    const double s_hat = s0 * (1.0 + gamma);
    // In the variance-exploding variable, x_ve = sqrt(1 + s0^2) x + c z (c = 0 without churn), then
    //   x0 = x_ve - s_hat eps (epsilon; diffusers scales the output evaluated at s0 by s_hat),
    //   x0 = x_ve / (1 + s0^2) - s0 / sqrt(1 + s0^2) v (velocity),  x0 = output (sample),
    //   x_ve <- x_ve + (s1 - s_hat) (x_ve - x0) / s_hat,  x <- x_ve / sqrt(1 + s1^2).
    const double scale = std::sqrt(1.0 + s0 * s0);
    const double c = gamma > 0.0 ? options_.s_noise * std::sqrt(s_hat * s_hat - s0 * s0) : 0.0;
    const double inv = 1.0 / std::sqrt(1.0 + s1 * s1);
    const double ratio = s1 / s_hat;
    detail::StepPlan plan{x0_conversion(kind, 1.0 / (1.0 + s0 * s0))};
    switch (kind) {
      case Prediction::epsilon:
        plan.x0.from_output = -s_hat;
        plan.x0_from_noise = c;
        break;
      case Prediction::velocity: plan.x0_from_noise = c / (1.0 + s0 * s0); break;
      default: break;
    }
    plan.x_coef = scale * ratio * inv;
    plan.x0_coef = (1.0 - ratio) * inv;
    plan.noise = gamma > 0.0;
    plan.noise_coef = c * ratio * inv;
    this->template run_step<false, true>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping);
  }

  EulerOptions options_;
  std::vector<double> sigmas_;
};

}  // namespace ddpm
