// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// DDIM (Song et al. 2021, Eq. (12)): a non-Markovian reverse process with the same marginals as DDPM;
// eta = 0 makes it deterministic (the probability-flow ODE's first-order exponential integrator),
// eta = 1 recovers DDPM's posterior variance.                            [docs/samplers.md, Eqs. (S9)-(S10)]

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

/// Which alpha_bar a DDIM step goes to (a' of Eqs. (S9), (S10)):          [docs/samplers.md, Eq. (S33)]
///   listed:    alpha_bar of the next entry of timesteps(); after the last step 1 or alpha_bar[0]
///              (set_alpha_to_one). The default.
///   diffusers: alpha_bar[t - T / N] (integer division), or 1 / alpha_bar[0] where t - T / N < 0, as
///              diffusers' DDIMScheduler.step computes it. The same as listed for leading spacing (any
///              steps_offset); for trailing and linspace spacing where N does not divide T it steps to a
///              timestep the model is not called at (diffusers issue 12633), and a trailing run's last
///              step goes to alpha_bar[0] even with set_alpha_to_one.
enum class PreviousTimestep { listed, diffusers };

/// Options of DDIMSampler (diffusers' DDIMScheduler config, set_timesteps and step arguments).
struct DDIMOptions {
  /// The grid (GridOptions; DDIMSampler::grid_defaults: N = 50, leading spacing; timesteps only).
  GridOptions grid = {};
  /// Noise weight in [0, 1]: 0 is deterministic DDIM, 1 has DDPM's posterior variance.
  double eta = 0.0;
  /// The alpha_bar the last step goes to: 1 (true; a clean x0) or alpha_bar[0] (false).
  bool set_alpha_to_one = true;
  /// Bounds on the predicted x0 (diffusers' clip_sample / thresholding). Default: none.
  Clipping clipping = {};
  /// With bounds, re-derive eps from the bounded x0 (improved-diffusion always does; diffusers' step
  /// argument of the same name defaults to false). No effect without bounds.
  bool use_clipped_model_output = true;
  /// The alpha_bar each step goes to (Eq. (S33)): the next listed timestep's, or diffusers' t - T / N
  /// (not with an explicit timestep list, which diffusers' DDIMScheduler does not take).
  PreviousTimestep previous_timestep = PreviousTimestep::listed;
};

/// The DDIM sampler.                                                           [docs/samplers.md, Eq. (S9)]
/// Step i (t = timesteps()[i]; alpha_bar_prev = alpha_bar of timesteps()[i+1], after the last step 1 or
/// alpha_bar[0] as set_alpha_to_one says):
///   x0    = the prediction converted to x0 (Eq. (S1)) and bounded (Eq. (S3))
///   eps   = the prediction converted to eps, or re-derived from the bounded x0
///   sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar[t]) (1 - alpha_bar[t] / alpha_bar_prev))
///   x    <- sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z
/// The previous alpha_bar is that of the next timestep in the list, not of t - T / N as in diffusers (wrong
/// for trailing and linspace spacing when N does not divide T, diffusers issue 12633); the two agree
/// wherever diffusers is right. previous_timestep = PreviousTimestep::diffusers gives diffusers' choice
/// exactly (Eq. (S33)). Noise is drawn only when sigma > 0.
template <std::floating_point S>
class DDIMSampler : public detail::SamplerBase<DDIMSampler<S>, S> {
  using Base = detail::SamplerBase<DDIMSampler<S>, S>;
  friend Base;

 public:
  /// The grid defaults (DDIMScheduler's): N = 50, leading spacing; timesteps only (no sigma options).
  static constexpr GridDefaults grid_defaults = {.num_inference_steps = 50,
                                                 .timestep_spacing = TimestepSpacing::leading,
                                                 .drop_final_timestep = false,
                                                 .sigma_ends = SigmaEnds::spaced,
                                                 .sigma_grid = false,
                                                 .explicit_timesteps = true};

  /// Throws ddpm::invalid_argument if eta is outside [0, 1], N is outside [1, T], the spacing/offset,
  /// timestep list or clipping options are bad, a sigma option is set (see make_grid), previous_timestep is
  /// not a PreviousTimestep, or it is diffusers together with a timestep list or drop_final_timestep true.
  explicit DDIMSampler(NoiseSchedule<S> schedule, DDIMOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::DDIMSampler";
    if (!(options_.eta >= 0.0 && options_.eta <= 1.0)) {
      detail::throw_invalid_argument(std::string(fn) + ": eta is " + ddpm::detail::number_string(options_.eta) +
                                     ", but must be in [0, 1]");
    }
    if (options_.previous_timestep != PreviousTimestep::listed &&
        options_.previous_timestep != PreviousTimestep::diffusers) {
      detail::throw_invalid_argument(std::string(fn) + ": previous_timestep is PreviousTimestep(" +
                                     ddpm::detail::number_string(static_cast<int>(options_.previous_timestep)) +
                                     "), but must be listed or diffusers");
    }
    if (options_.previous_timestep == PreviousTimestep::diffusers && !options_.grid.timesteps.empty()) {
      detail::throw_invalid_argument(std::string(fn) + ": previous_timestep is diffusers and timesteps has " +
                                     ddpm::detail::number_string(options_.grid.timesteps.size()) +
                                     " entries, but diffusers' t - T / N needs the spaced timesteps (timesteps "
                                     "empty); use PreviousTimestep::listed with a list");
    }
    if (options_.previous_timestep == PreviousTimestep::diffusers &&
        options_.grid.drop_final_timestep.value_or(false)) {
      detail::throw_invalid_argument(
          std::string(fn) +
          ": previous_timestep is diffusers and drop_final_timestep is true, "
          "but diffusers' t - T / N needs the N spaced timesteps; use PreviousTimestep::listed");
    }
    this->timesteps_ = make_grid(this->schedule_, options_.grid, grid_defaults, fn).timesteps;
    detail::check_clipping(fn, options_.clipping);
  }

  const DDIMOptions& options() const { return options_; }
  /// No history to forget; present so that every sampler can be reset.
  void reset() {}

  /// The coefficients of step i, in double: alpha_bar[t], alpha_bar_prev, sigma and the weight of eps,
  /// direction = sqrt(1 - alpha_bar_prev - sigma^2) (Eq. (S9)), computed without the cancelling
  /// subtraction as                                                         [docs/samplers.md, Eq. (S9)]
  ///   direction^2 = (1 - alpha_bar_prev) ((1 - eta^2) + eta^2 alpha_bar (1 - alpha_bar_prev) /
  ///                                                       (alpha_bar_prev (1 - alpha_bar)))
  /// (a sum of non-negative terms), so it is exactly 0 where it vanishes in exact arithmetic (eta = 1 at a
  /// zero-terminal-SNR step, alpha_bar = 0; or alpha_bar_prev = 1).
  /// Throws ddpm::invalid_argument if i is outside [0, num_inference_steps()).
  struct Coefficients {
    double alpha_bar, alpha_bar_prev, sigma, direction;
  };
  Coefficients coefficients(int i) const {
    detail::check_step_index("ddpm::DDIMSampler::coefficients", i, this->num_inference_steps());
    const std::vector<double>& ab = this->schedule_.alphas_cumprod_double();
    const double a = ab[static_cast<std::size_t>(this->timesteps_[static_cast<std::size_t>(i)])];
    double a_prev = 0.0;
    if (options_.previous_timestep == PreviousTimestep::diffusers) {
      const int prev = this->timesteps_[static_cast<std::size_t>(i)] -
                       this->schedule_.num_train_timesteps() / this->num_inference_steps();
      a_prev = prev >= 0 ? ab[static_cast<std::size_t>(prev)] : (options_.set_alpha_to_one ? 1.0 : ab[0]);
    } else {
      a_prev = i + 1 < this->num_inference_steps()
                   ? ab[static_cast<std::size_t>(this->timesteps_[static_cast<std::size_t>(i + 1)])]
                   : (options_.set_alpha_to_one ? 1.0 : ab[0]);
    }
    const double variance = (1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev);
    const double eta = options_.eta;
    // 1 - a_prev - sigma^2 = (1 - a_prev) (1 - eta^2 (a_prev - a) / (a_prev (1 - a))), and
    // a_prev (1 - a) - eta^2 (a_prev - a) = (1 - eta^2) a_prev (1 - a) + eta^2 a (1 - a_prev): no term is
    // subtracted from another. The direct form left about 1e-17 where the result is 0 (a = 0, eta = 1),
    // whose square root added 3.6e-9 eps to the sample (issue 13).
    const double ratio = a * (1.0 - a_prev) / (a_prev * (1.0 - a));
    const double direction = std::sqrt((1.0 - a_prev) * ((1.0 - eta * eta) + eta * eta * ratio));
    return {a, a_prev, eta * std::sqrt(std::max(variance, 0.0)), direction};
  }

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::DDIMSampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    const Coefficients k = coefficients(i);
    detail::check_x0_defined(fn, kind, k.alpha_bar, this->timesteps_[static_cast<std::size_t>(i)]);
    const double c_x0 = std::sqrt(k.alpha_bar_prev);
    const double dir = k.direction;
    detail::StepPlan plan{x0_conversion(kind, k.alpha_bar)};
    plan.noise = k.sigma > 0.0;
    plan.noise_coef = k.sigma;
    if (options_.use_clipped_model_output && options_.clipping.mode != Clipping::Mode::none) {
      // eps re-derived from the bounded x0, as if the model had predicted it, folded into the
      // coefficients of x and x0.
      const Conversion e = eps_conversion(Prediction::sample, k.alpha_bar);
      plan.x0_coef = c_x0 + dir * e.from_output;
      plan.x_coef = dir * e.from_x;
    } else {
      const Conversion e = eps_conversion(kind, k.alpha_bar);
      plan.x0_coef = c_x0;
      plan.x_coef = dir * e.from_x;
      plan.output_coef = dir * e.from_output;
    }
    this->template run_step<false, true>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping);
  }

  DDIMOptions options_;
};

}  // namespace ddpm
