// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The DDPM ancestral sampler (Ho et al. 2020, Algorithm 2; improved DDPM's variances), over any subset of
// the training timesteps: each step draws x at the next timestep from the Gaussian posterior around the
// predicted x0.                                                         [docs/samplers.md, Eqs. (S7)-(S8)]

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/posterior.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// Options of DDPMSampler (diffusers' DDPMScheduler config and set_timesteps arguments).
struct DDPMOptions {
  /// The grid (GridOptions; DDPMSampler::grid_defaults: N = T, leading spacing; timesteps only).
  GridOptions grid = {};
  VarianceType variance_type = VarianceType::fixed_small;
  /// Bounds on the predicted x0 (diffusers' clip_sample / thresholding). Default: none.
  Clipping clipping = {};
};

/// The DDPM ancestral sampler.                                              [docs/samplers.md, Eq. (S7)]
/// Step i (t = timesteps()[i], alpha_bar_prev = alpha_bar of timesteps()[i+1], or 1 after the last step):
///   x0  = the prediction converted to x0 (Eq. (S1)) and bounded (Eq. (S3))
///   x  <- sqrt(alpha_bar_prev) beta / (1 - alpha_bar[t]) x0
///         + sqrt(alpha_bar[t] / alpha_bar_prev) (1 - alpha_bar_prev) / (1 - alpha_bar[t]) x + std z
/// with std from the VarianceType (Eq. (S8)) and no noise at the last step (the posterior variance there is
/// 0, and x becomes x0). With N = T and no clipping this is Eq. (9) of docs/math.md.
/// A learned-variance model (2C channels) works with every variance type; only learned_range uses the
/// second half, the others take the first C channels.
template <std::floating_point S>
class DDPMSampler : public detail::SamplerBase<DDPMSampler<S>, S> {
  using Base = detail::SamplerBase<DDPMSampler<S>, S>;
  friend Base;

 public:
  /// The grid defaults (DDPMScheduler's): N = T (0 here; an explicit 0 also means T), leading spacing;
  /// timesteps only (no sigma options).
  static constexpr GridDefaults grid_defaults = {.num_inference_steps = 0,
                                                 .timestep_spacing = TimestepSpacing::leading,
                                                 .drop_final_timestep = false,
                                                 .sigma_ends = SigmaEnds::spaced,
                                                 .sigma_grid = false,
                                                 .explicit_timesteps = true};

  /// Throws ddpm::invalid_argument for N outside [1, T] (or 0 for T), a bad spacing/offset or timestep
  /// list, a sigma option (see make_grid), or bad clipping options.
  explicit DDPMSampler(NoiseSchedule<S> schedule, DDPMOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::DDPMSampler";
    this->timesteps_ = make_grid(this->schedule_, options_.grid, grid_defaults, fn).timesteps;
    detail::check_clipping(fn, options_.clipping);
    switch (options_.variance_type) {
      case VarianceType::fixed_small: case VarianceType::fixed_small_log: case VarianceType::fixed_large:
      case VarianceType::learned_range: break;
      default:
        detail::throw_invalid_argument(std::string(fn) + ": variance_type is " +
                                       ddpm::detail::number_string(static_cast<int>(options_.variance_type)) + ", but must be a VarianceType");
    }
  }

  const DDPMOptions& options() const { return options_; }
  /// No history to forget; present so that every sampler can be reset.
  void reset() {}

  /// The coefficients of step i, in double: alpha_bar[t], alpha_bar_prev, beta (Eq. (S7)) and the posterior
  /// variance. Throws ddpm::invalid_argument if i is outside [0, num_inference_steps()).
  struct Coefficients {
    double alpha_bar, alpha_bar_prev, beta, posterior_variance;
  };
  Coefficients coefficients(int i) const {
    detail::check_step_index("ddpm::DDPMSampler::coefficients", i, this->num_inference_steps());
    const std::vector<double>& ab = this->schedule_.alphas_cumprod_double();
    const double a = ab[static_cast<std::size_t>(this->timesteps_[static_cast<std::size_t>(i)])];
    const double a_prev =
        i + 1 < this->num_inference_steps() ? ab[static_cast<std::size_t>(this->timesteps_[static_cast<std::size_t>(i + 1)])] : 1.0;
    const double beta = 1.0 - a / a_prev;
    return {a, a_prev, beta, (1.0 - a_prev) / (1.0 - a) * beta};
  }

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::DDPMSampler::step";
    bool has_variance = false;
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind, &has_variance);
    const bool learned = options_.variance_type == VarianceType::learned_range;
    if (learned && !has_variance) {
      detail::throw_invalid_argument(std::string(fn) + ": variance_type is learned_range, but model_output has shape " +
                                     detail::shape_string(output) + "; it must have twice the channels of x " +
                                     detail::shape_string(x) + " in dimension 1 (prediction, then variance values)");
    }
    const Coefficients k = coefficients(i);
    const int t = this->timesteps_[static_cast<std::size_t>(i)];
    detail::check_x0_defined(fn, kind, k.alpha_bar, t);
    // Posterior mean coefficients (Eq. (7) of docs/math.md over the visited timesteps).
    detail::StepPlan plan{x0_conversion(kind, k.alpha_bar)};
    plan.x0_coef = std::sqrt(k.alpha_bar_prev) * k.beta / (1.0 - k.alpha_bar);
    plan.x_coef = std::sqrt(k.alpha_bar / k.alpha_bar_prev) * (1.0 - k.alpha_bar_prev) / (1.0 - k.alpha_bar);
    const bool last = i + 1 == this->num_inference_steps();
    const double variance = std::max(k.posterior_variance, 1e-20);  // as diffusers clamps it
    if (last || !learned) {
      plan.noise = !last;
      switch (options_.variance_type) {
        case VarianceType::fixed_small: plan.noise_coef = std::sqrt(variance); break;
        case VarianceType::fixed_small_log: plan.noise_coef = std::exp(0.5 * std::log(variance)); break;
        default: plan.noise_coef = std::sqrt(k.beta); break;
      }
      this->template run_step<false, true>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping);
      return;
    }
    // learned_range: a per-element standard deviation from the variance half of the output.
    const Eigen::Index batch = x.dimension(0), ps = detail::per_sample_size(x);
    S* const x0 = target.x0 != nullptr ? target.x0 : this->workspace_.x0(x.size());
    this->predict_x0(output, target.stride, x, plan.x0, options_.clipping, x0);
    const S* z = detail::draw_noise<S, rank_v<X>>(fn, noise, x.dimensions(), this->workspace_);
    using Vec = Eigen::Array<S, Eigen::Dynamic, 1>;
    const S min_log = static_cast<S>(std::log(variance));
    const S max_log = static_cast<S>(std::log(k.beta));
    const S a0 = static_cast<S>(plan.x0_coef), a1 = static_cast<S>(plan.x_coef);
    for (Eigen::Index b = 0; b < batch; ++b) {
      Eigen::Map<Vec> xb(x.data() + b * ps, ps);
      Eigen::Map<const Vec> x0b(x0 + b * ps, ps);
      Eigen::Map<const Vec> vb(output.data() + b * target.stride + ps, ps);
      Eigen::Map<const Vec> zb(z + b * ps, ps);
      xb = a0 * x0b + a1 * xb +
           (S(0.5) * ((vb + S(1)) * S(0.5) * max_log + (S(1) - (vb + S(1)) * S(0.5)) * min_log)).exp() * zb;
    }
  }

  DDPMOptions options_;
};

}  // namespace ddpm
