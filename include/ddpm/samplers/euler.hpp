// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The Euler sampler of k-diffusion (Karras et al. 2022, Algorithm 1 without churn; diffusers'
// EulerDiscreteScheduler): Euler steps of the probability-flow ODE dx/dsigma = (x - x0) / sigma in the
// variance-exploding variable x / sqrt(alpha_bar) = x0 + sigma eps.        [docs/samplers.md, Eq. (S13)]

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/predictor.hpp"
#include "ddpm/samplers/common.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// Options of EulerSampler and EulerAncestralSampler (diffusers' EulerDiscreteScheduler and
/// EulerAncestralDiscreteScheduler).
struct EulerOptions {
  int num_inference_steps = 50;
  TimestepSpacing timestep_spacing = TimestepSpacing::linspace;
  int steps_offset = 0;
  /// If not empty: the timesteps to visit, strictly decreasing, replacing the three options above.
  std::vector<int> timesteps = {};
  /// Karras et al.'s rho = 7 sigmas between the sigmas of the first and last spaced timesteps; the model
  /// sees the nearest timestep of each.
  bool use_karras_sigmas = false;
  FinalSigma final_sigma = FinalSigma::zero;
  /// Bounds on the predicted x0 (not in diffusers' Euler). Default: none.
  Clipping clipping = {};
};

namespace detail {

/// The timesteps and sigmas (N + 1, the last the final sigma) of an Euler run.
struct SigmaGrid {
  std::vector<int> timesteps;
  std::vector<double> sigmas;
};

template <class S>
SigmaGrid euler_grid(const char* fn, const NoiseSchedule<S>& schedule, const EulerOptions& o) {
  const int T = schedule.num_steps();
  check_clipping(fn, o.clipping);
  const std::vector<double> table = sigma_table(schedule);
  SigmaGrid g;
  if (!o.timesteps.empty()) {
    if (o.use_karras_sigmas) {
      throw_invalid_argument(std::string(fn) +
                             ": use_karras_sigmas is true, but Karras sigmas choose their own timesteps; leave "
                             "timesteps empty");
    }
    g.timesteps = checked_timesteps(T, o.timesteps);
  } else {
    g.timesteps = spaced_timesteps(T, o.num_inference_steps, o.timestep_spacing, o.steps_offset);
  }
  for (int t : g.timesteps) g.sigmas.push_back(table[static_cast<std::size_t>(t)]);
  if (o.use_karras_sigmas) {
    if (T < 2) throw_invalid_argument(std::string(fn) + ": use_karras_sigmas needs T >= 2, but T is " + std::to_string(T));
    g.sigmas = karras_sigmas(g.sigmas.back(), g.sigmas.front(), static_cast<int>(g.sigmas.size()));
    for (std::size_t k = 0; k < g.sigmas.size(); ++k) {
      g.timesteps[k] = static_cast<int>(std::nearbyint(sigma_to_timestep(table, g.sigmas[k])));
    }
  }
  g.sigmas.push_back(o.final_sigma == FinalSigma::zero ? 0.0 : table.front());
  return g;
}

}  // namespace detail

/// The Euler sampler (deterministic).                                          [docs/samplers.md, Eq. (S13)]
/// With sigma_i the noise level of step i (sigma[t] of Eq. (12) of docs/math.md at timesteps()[i], or the
/// Karras sigmas) and sigma_N the final sigma, step i takes the variance-preserving x_t to
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
  /// Throws ddpm::invalid_argument if N is outside [1, T], Karras sigmas are combined with a timestep
  /// list, or the spacing/offset, timestep list or clipping options are bad.
  explicit EulerSampler(NoiseSchedule<S> schedule, EulerOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    detail::SigmaGrid g = detail::euler_grid("ddpm::EulerSampler", this->schedule_, options_);
    this->timesteps_ = std::move(g.timesteps);
    sigmas_ = std::move(g.sigmas);
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
    // x <- (sqrt(1 + s0^2) (s1 / s0) x + (1 - s1 / s0) x0) / sqrt(1 + s1^2)
    const double inv = 1.0 / std::sqrt(1.0 + s1 * s1);
    const double ratio = s1 / s0;
    detail::StepPlan plan{detail::x0_from_output(kind, 1.0 / (1.0 + s0 * s0))};
    plan.x_coef = std::sqrt(1.0 + s0 * s0) * ratio * inv;
    plan.x0_coef = (1.0 - ratio) * inv;
    this->template run_step<false, false>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping);
  }

  EulerOptions options_;
  std::vector<double> sigmas_;
};

}  // namespace ddpm
