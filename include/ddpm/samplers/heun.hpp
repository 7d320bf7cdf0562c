// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The Heun sampler of Karras et al. 2022 (Algorithm 2; k-diffusion's sample_heun, diffusers'
// HeunDiscreteScheduler): second-order (trapezoidal) steps of the probability-flow ODE
// dx/dsigma = (x - x0) / sigma in the variance-exploding variable, two model calls per noise interval,
// each its own step() as in diffusers, with Algorithm 2's churn as an option.  [docs/samplers.md, Eq. (S21)]

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/predictor.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/detail/two_stage.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// Options of HeunSampler (diffusers' HeunDiscreteScheduler; the churn of k-diffusion's sample_heun).
struct HeunOptions {
  /// The grid (GridOptions; HeunSampler::grid_defaults: as EulerSampler's). N is the number of noise
  /// intervals. final_sigma zero (diffusers, k-diffusion): the last interval is one Euler step to x0;
  /// sigma_min: every interval is a Heun step.
  GridOptions grid = {};
  /// Bounds on the predicted x0 (diffusers' clip_sample, clip_sample_range). Default: none.
  Clipping clipping = {};
  /// Churn (Karras et al. 2022, Algorithm 2; k-diffusion's sample_heun arguments): interval k whose
  /// sigma_k is in [s_tmin, s_tmax] starts at sigma_hat_k = sigma_k (1 + gamma), gamma = min(s_churn / N,
  /// sqrt(2) - 1), reached by adding noise of standard deviation s_noise sqrt(sigma_hat_k^2 - sigma_k^2).
  /// s_churn = 0 (the default) is the deterministic Heun sampler.
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
};

/// The Heun sampler.                                                          [docs/samplers.md, Eq. (S21)]
/// With sigma_0 > ... > sigma_N the grid (make_grid, as EulerSampler; sigmas()) and x_ve = sqrt(1 + s^2) x
/// the variance-exploding form of the variance-preserving x at noise level s, interval k from
/// sigma_hat_k = sigma_k (1 + gamma_k) to sigma_{k+1} is, with d(x_ve, s) = (x_ve - x0) / s,
///   stage 1 (model at x_ve, sigma_hat_k):  x_ve' = x_ve + (sigma_{k+1} - sigma_hat_k) d(x_ve, sigma_hat_k)
///   stage 2 (model at x_ve', sigma_{k+1}): x_ve <- x_ve + (sigma_{k+1} - sigma_hat_k) (d + d') / 2
/// computed as x_ve <- x_ve' + (sigma_{k+1} - sigma_hat_k) / (2 sigma_{k+1}) (x0_1 - x0_2) (the same
/// value: x_ve' - x0_1 = sigma_{k+1} d); an interval ending at sigma = 0 is stage 1 alone (x <- x0_1).
/// Each stage is one model call and one step(): timesteps() has 2N - 1 entries for final sigma zero
/// (t_0, t_1, t_1, ..., t_{N-1}, t_{N-1}, as diffusers), 2N for sigma_min. x is the variance-preserving x_t
/// at the stage's noise level throughout; x0 is the prediction converted at alpha_bar = 1 / (1 + s^2) and
/// bounded. With churn (k-diffusion's semantics, the model seeing the churned x at sigma_hat_k): the noise
/// that takes interval k from sigma_k to sigma_hat_k is added at the end of the step that reaches sigma_k,
/// so that the model is called on the churned x; interval 0 starts at sigma_hat_0 (x_T ~ N(0, I) is taken
/// at that level, which is the first churn in distribution). The model sees the nearest timestep of
/// sigma_hat_k. The sampler keeps x0 of stage 1 for stage 2: a run steps i = 0, 1, 2, ... in order.
template <std::floating_point S>
class HeunSampler : public detail::SamplerBase<HeunSampler<S>, S> {
  using Base = detail::SamplerBase<HeunSampler<S>, S>;
  friend Base;

 public:
  /// The grid defaults (HeunDiscreteScheduler's, EulerDiscreteScheduler's): N = 50, linspace spacing, ramps
  /// between the spaced ends.
  static constexpr GridDefaults grid_defaults = GridDefaults::euler_discrete();

  /// Throws ddpm::invalid_argument if the grid options (see make_grid), the clipping or the churn options
  /// are bad.
  explicit HeunSampler(NoiseSchedule<S> schedule, HeunOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::HeunSampler";
    detail::check_clipping(fn, options_.clipping);
    detail::check_churn(fn, options_.s_churn, options_.s_tmin, options_.s_tmax, options_.s_noise);
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    sigmas_ = std::move(grid.sigmas);
    const std::vector<double> table = detail::sigma_table(this->schedule_);
    const int n = static_cast<int>(grid.timesteps.size());
    const double gamma_max = std::min(options_.s_churn / n, std::sqrt(2.0) - 1.0);
    sigma_hats_.resize(static_cast<std::size_t>(n));
    for (int k = 0; k < n; ++k) {
      const double s = sigmas_[static_cast<std::size_t>(k)];
      const double gamma = options_.s_churn > 0.0 && options_.s_tmin <= s && s <= options_.s_tmax ? gamma_max : 0.0;
      sigma_hats_[static_cast<std::size_t>(k)] = s * (1.0 + gamma);
      stages_.push_back({k, false, sigma_hats_[static_cast<std::size_t>(k)]});
      this->timesteps_.push_back(
          detail::nearest_timestep(table, sigma_hats_[static_cast<std::size_t>(k)], grid.timesteps[static_cast<std::size_t>(k)], gamma == 0.0));
      const double s1 = sigmas_[static_cast<std::size_t>(k + 1)];
      if (s1 > 0.0) {
        stages_.push_back({k, true, s1});
        this->timesteps_.push_back(k + 1 < n ? grid.timesteps[static_cast<std::size_t>(k + 1)]
                                             : detail::nearest_timestep(table, s1, 0, false));
      }
    }
  }

  const HeunOptions& options() const { return options_; }
  /// The grid: the noise levels sigma_0, ..., sigma_{N-1} of the intervals followed by the final sigma.
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// The noise level each step's model call sees (timesteps().size() values): sigma_hat_k for stage 1,
  /// sigma_{k+1} for stage 2.
  std::vector<double> step_sigmas() const {
    std::vector<double> r;
    for (const detail::Stage& s : stages_) r.push_back(s.sigma);
    return r;
  }
  /// The number of noise intervals N (num_inference_steps() counts model calls, as diffusers' timesteps).
  int num_intervals() const { return static_cast<int>(sigma_hats_.size()); }
  /// Forgets the stage-1 x0; the next step must be step 0.
  void reset() { next_step_ = 0; }

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::HeunSampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    detail::check_in_order(fn, i, next_step_, x, history_.size());
    const detail::Stage st = stages_[static_cast<std::size_t>(i)];
    const auto k = static_cast<std::size_t>(st.interval);
    const double s_in = st.sigma;
    const double s1 = sigmas_[k + 1];
    detail::StepPlan plan{x0_conversion(kind, 1.0 / (1.0 + s_in * s_in))};
    const double scale_in = std::sqrt(1.0 + s_in * s_in);
    // Where the step lands: sigma_{k+1}, or the churned sigma_hat_{k+1} when the next interval churns.
    double s_out = s1, c = 0.0;
    const bool lands = st.second || s1 == 0.0;  // this step ends interval k
    if (lands && k + 1 < sigma_hats_.size() && sigma_hats_[k + 1] > s1) {
      s_out = sigma_hats_[k + 1];
      c = options_.s_noise * std::sqrt(s_out * s_out - s1 * s1);
    }
    const double inv = 1.0 / std::sqrt(1.0 + s_out * s_out);
    if (!st.second) {
      if (s1 == 0.0) {
        plan.x0_coef = 1.0;  // x_ve + (0 - s) (x_ve - x0) / s = x0
      } else {
        const double ratio = s1 / s_in;  // x_ve' = ratio x_ve + (1 - ratio) x0
        plan.x_coef = scale_in * ratio * inv;
        plan.x0_coef = (1.0 - ratio) * inv;
      }
    } else {
      const double h = (s1 - sigma_hats_[k]) / (2.0 * s1);  // x_ve <- x_ve' + h (x0_1 - x0_2)
      plan.x_coef = scale_in * inv;
      plan.x0_coef = -h * inv;
      plan.history_coef = h * inv;
    }
    plan.noise = c > 0.0;
    plan.noise_coef = c * inv;
    history_.resize(static_cast<std::size_t>(x.size()));
    this->template run_step<true, true>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping,
                                        history_.data());
    next_step_ = i + 1;
  }

  HeunOptions options_;
  std::vector<double> sigmas_, sigma_hats_;
  std::vector<detail::Stage> stages_;
  std::vector<S> history_;  // x0 of stage 1
  int next_step_ = 0;
};

}  // namespace ddpm
