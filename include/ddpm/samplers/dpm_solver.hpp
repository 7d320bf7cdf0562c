// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// DPM-Solver++ (Lu et al. 2022), multistep, first or second order ("2M"): an exponential integrator of the
// probability-flow ODE in the data-prediction form, in the log-SNR time lambda = -log sigma, reusing the
// previous step's x0 prediction for the second-order term.              [docs/samplers.md, Eqs. (S11)-(S12)]

#include <algorithm>
#include <cmath>
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

/// The second-order update of DPM-Solver++(2M) (diffusers' `solver_type`): "midpoint" (the paper's
/// Algorithm 2, diffusers' default) or "heun".
enum class SolverType { midpoint, heun };

/// Options of DPMSolverMultistepSampler (diffusers' DPMSolverMultistepScheduler with algorithm_type
/// "dpmsolver++").
struct DPMSolverOptions {
  /// The timestep choice of GridOptions: N, spacing (linspace and leading place N + 1 points and drop the
  /// smallest, as the solver ends at sigma = 0 instead; trailing places N), offset, or an explicit list.
  int num_inference_steps = 20;
  TimestepSpacing timestep_spacing = TimestepSpacing::linspace;
  int steps_offset = 0;
  std::vector<int> timesteps = {};
  /// 1 (DPM-Solver++ 1, i.e. DDIM) or 2 (2M).
  int solver_order = 2;
  SolverType solver_type = SolverType::midpoint;
  /// Use first order for the last step when N < 15 (always when the last sigma is 0).
  bool lower_order_final = true;
  /// Karras et al.'s rho = 7 sigmas from sigma[T-1] down to sigma[0] (diffusers' name for
  /// sigma_spacing = SigmaSpacing::karras); the model sees the nearest timestep.
  bool use_karras_sigmas = false;
  /// The noise levels (GridOptions): a ramp from sigma[T-1] down to sigma[0], or an explicit list.
  SigmaSpacing sigma_spacing = SigmaSpacing::timesteps;
  std::vector<double> sigmas = {};
  FinalSigma final_sigma = FinalSigma::zero;
  /// Bounds on the predicted x0 (diffusers has thresholding here). Default: none.
  Clipping clipping = {};

  /// The grid fields as GridOptions, with DPMSolverMultistepScheduler's semantics (N + 1 points for
  /// linspace and leading, ramps over the whole training range).
  GridOptions grid() const {
    return {.num_inference_steps = num_inference_steps,
            .timestep_spacing = timestep_spacing,
            .steps_offset = steps_offset,
            .drop_final_timestep = true,
            .timesteps = timesteps,
            .sigma_spacing = use_karras_sigmas ? SigmaSpacing::karras : sigma_spacing,
            .sigma_ends = SigmaEnds::training,
            .sigmas = sigmas,
            .final_sigma = final_sigma};
  }
};

/// DPM-Solver++(2M).                                                     [docs/samplers.md, Eqs. (S11)-(S12)]
/// With sigma_i the noise levels (sigma[t] of Eq. (12) of docs/math.md at the visited timesteps, a sigma
/// ramp or a given list; see make_grid), followed by the final sigma, and for each noise level
///   alpha = 1 / sqrt(1 + sigma^2),  sigma_vp = sigma alpha,  lambda = log(alpha / sigma_vp) = -log sigma,
/// step i from sigma_i to sigma_{i+1} with h = lambda_{i+1} - lambda_i and D0 = x0_i (the prediction
/// converted to x0 at alpha_bar = alpha_i^2 and bounded):
///   first order:  x <- (sigma_vp_{i+1} / sigma_vp_i) x - alpha_{i+1} (e^-h - 1) D0
///   second order: D1 = (x0_i - x0_{i-1}) / r,  r = (lambda_i - lambda_{i-1}) / h
///     midpoint:   x <- (sigma_vp_{i+1} / sigma_vp_i) x - alpha_{i+1} (e^-h - 1) (D0 + D1 / 2)
///     heun:       x <- (sigma_vp_{i+1} / sigma_vp_i) x - alpha_{i+1} (e^-h - 1) D0
///                      + alpha_{i+1} ((e^-h - 1) / h + 1) D1
/// Step 0 is first order, as is the last (when the final sigma is 0 it returns D0; with lower_order_final
/// and N < 15 always). x is the variance-preserving x_t throughout, as in diffusers.
/// Timesteps (diffusers' semantics): linspace = round(linspace(0, T - 1, N + 1))[::-1][:-1]; leading = k
/// (T // (N + 1)) + steps_offset for k = N..1; trailing as inference_timesteps. When N + 1 > T (linspace,
/// leading) every timestep T-1..0 is used (diffusers would repeat timesteps). Under zero terminal SNR,
/// alpha_bar[T-1] = 0 is replaced by 2^-24 (sigma_max about 4096), as diffusers does.
/// The sampler keeps the previous x0 (its history): a run must step i = 0, 1, 2, ... in order; step 0 (or
/// reset()) starts a new run.
template <std::floating_point S>
class DPMSolverMultistepSampler : public detail::SamplerBase<DPMSolverMultistepSampler<S>, S> {
  using Base = detail::SamplerBase<DPMSolverMultistepSampler<S>, S>;
  friend Base;

 public:
  /// Throws ddpm::invalid_argument if N is outside [1, T], solver_order is not 1 or 2, or the grid
  /// options (see make_grid) or clipping options are bad.
  explicit DPMSolverMultistepSampler(NoiseSchedule<S> schedule, DPMSolverOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::DPMSolverMultistepSampler";
    if (options_.solver_order != 1 && options_.solver_order != 2) {
      detail::throw_invalid_argument(std::string(fn) + ": solver_order is " + ddpm::detail::number_string(options_.solver_order) +
                                     ", but must be 1 or 2");
    }
    if (options_.solver_type != SolverType::midpoint && options_.solver_type != SolverType::heun) {
      detail::throw_invalid_argument(std::string(fn) + ": solver_type is " +
                                     ddpm::detail::number_string(static_cast<int>(options_.solver_type)) +
                                     ", but must be SolverType::midpoint or heun");
    }
    detail::check_clipping(fn, options_.clipping);
    detail::check_karras_flag(fn, options_.use_karras_sigmas, options_.sigma_spacing);
    Grid grid = make_grid(this->schedule_, options_.grid(), fn);
    this->timesteps_ = std::move(grid.timesteps);
    sigmas_ = std::move(grid.sigmas);
  }

  const DPMSolverOptions& options() const { return options_; }
  /// The noise levels sigma_0, ..., sigma_{N-1} of the steps followed by the final sigma (N + 1 values).
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// Forgets the history; the next step must be step 0.
  void reset() { next_step_ = 0; }

  /// The timesteps of diffusers' DPMSolverMultistepScheduler for N steps (see the class comment).
  /// Throws ddpm::invalid_argument as inference_timesteps.
  static std::vector<int> dpm_timesteps(int T, int N, TimestepSpacing spacing, int steps_offset = 0) {
    return detail::grid_timesteps(T, N, spacing, steps_offset, /*drop_final=*/true);
  }

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::DPMSolverMultistepSampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    if (i != 0 && i != next_step_) {
      detail::throw_invalid_argument(std::string(fn) + ": step index i is " + ddpm::detail::number_string(i) + ", but must be " +
                                     ddpm::detail::number_string(next_step_) +
                                     " (a multistep sampler steps in order; step 0 or reset() starts a new run)");
    }
    if (i == 0) lower_order_count_ = 0;
    if (i > 0 && static_cast<Eigen::Index>(history_.size()) != x.size()) {
      detail::throw_invalid_argument(std::string(fn) + ": x has shape " + detail::shape_string(x) +
                                     ", but the run began with another shape (" + ddpm::detail::number_string(history_.size()) +
                                     " elements); start a new run with step 0");
    }

    const double s0 = sigmas_[static_cast<std::size_t>(i)], s1 = sigmas_[static_cast<std::size_t>(i + 1)];
    const double alpha0 = 1.0 / std::sqrt(1.0 + s0 * s0), sigma_vp0 = s0 * alpha0;
    detail::StepPlan plan{x0_conversion(kind, alpha0 * alpha0)};
    const int n = this->num_inference_steps();
    const bool last = i == n - 1;
    const bool lower_final = last && ((options_.lower_order_final && n < 15) || s1 == 0.0);
    if (s1 == 0.0) {
      plan.x0_coef = 1.0;  // lambda = +inf: the first-order update is exactly x0
    } else {
      const double alpha1 = 1.0 / std::sqrt(1.0 + s1 * s1), sigma_vp1 = s1 * alpha1;
      const double h = std::log(s0) - std::log(s1);  // lambda_{i+1} - lambda_i, lambda = -log sigma
      const double em1 = std::expm1(-h);             // e^-h - 1
      plan.x_coef = sigma_vp1 / sigma_vp0;
      plan.x0_coef = -alpha1 * em1;
      if (!(options_.solver_order == 1 || lower_order_count_ < 1 || lower_final)) {
        const double s_prev = sigmas_[static_cast<std::size_t>(i - 1)];
        const double r = (std::log(s_prev) - std::log(s0)) / h;
        // x <- c_x x + a D0 + b D1 with D1 = (x0_i - x0_{i-1}) / r
        const double b = options_.solver_type == SolverType::midpoint ? -0.5 * alpha1 * em1 : alpha1 * (em1 / h + 1.0);
        plan.x0_coef += b / r;
        plan.history_coef = -b / r;
      }
    }
    // The history is read as the previous x0 and overwritten with this one in the same pass.
    history_.resize(static_cast<std::size_t>(x.size()));
    this->template run_step<true, false>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping,
                                         history_.data());
    if (lower_order_count_ < options_.solver_order) ++lower_order_count_;
    next_step_ = i + 1;
  }

  DPMSolverOptions options_;
  std::vector<double> sigmas_;
  std::vector<S> history_;  // x0 of the previous step
  int lower_order_count_ = 0;
  int next_step_ = 0;
};

}  // namespace ddpm
