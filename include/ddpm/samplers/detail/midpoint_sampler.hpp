// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Internal: the samplers that take each noise interval in two model calls through a midpoint in log sigma
// (DPM2, DPM2 ancestral: k-diffusion's sample_dpm_2 / sample_dpm_2_ancestral; DPM++ 2S ancestral:
// sample_dpmpp_2s_ancestral), one class for the three, each stage one step() on the fused kernel with the
// stage-1 x0 as the history. The public names are in ddpm/samplers/dpm2.hpp and dpmpp_2s_ancestral.hpp.
//                                                              [docs/samplers.md, Eqs. (S20), (S23)-(S25)]

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

/// Options of DPM2Sampler, DPM2AncestralSampler and DPMPP2SAncestralSampler (diffusers'
/// KDPM2DiscreteScheduler / KDPM2AncestralDiscreteScheduler; k-diffusion's sample_dpm_2,
/// sample_dpm_2_ancestral, sample_dpmpp_2s_ancestral).
struct DPM2Options {
  /// The grid (GridOptions; the samplers' grid_defaults: as EulerSampler's). N is the number of
  /// noise intervals.
  GridOptions grid = {};
  /// Bounds on the predicted x0 (not in the references). Default: none.
  Clipping clipping = {};
  /// Churn (DPM2Sampler only; k-diffusion's sample_dpm_2 arguments, as HeunOptions).
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  /// The ancestral samplers' eta of Eq. (S20) (1: the full ancestral step; 0: deterministic).
  double eta = 1.0;
  /// Scales the fresh noise (churn or ancestral).
  double s_noise = 1.0;
};

namespace detail {

enum class Midpoint { dpm2, dpm2_ancestral, dpmpp_2s_ancestral };

/// See DPM2Sampler, DPM2AncestralSampler (dpm2.hpp) and DPMPP2SAncestralSampler (dpmpp_2s_ancestral.hpp).
template <std::floating_point S, Midpoint kMethod>
class MidpointSampler : public SamplerBase<MidpointSampler<S, kMethod>, S> {
  using Base = SamplerBase<MidpointSampler<S, kMethod>, S>;
  friend Base;
  static constexpr bool kAncestral = kMethod != Midpoint::dpm2;

  static const char* name() {
    switch (kMethod) {
      case Midpoint::dpm2: return "ddpm::DPM2Sampler";
      case Midpoint::dpm2_ancestral: return "ddpm::DPM2AncestralSampler";
      case Midpoint::dpmpp_2s_ancestral: return "ddpm::DPMPP2SAncestralSampler";
    }
    return "";
  }
  static const char* step_name() {
    switch (kMethod) {
      case Midpoint::dpm2: return "ddpm::DPM2Sampler::step";
      case Midpoint::dpm2_ancestral: return "ddpm::DPM2AncestralSampler::step";
      case Midpoint::dpmpp_2s_ancestral: return "ddpm::DPMPP2SAncestralSampler::step";
    }
    return "";
  }

  /// One noise interval k: from sigma_from (sigma_hat_k, or sigma_k) towards sigma_to (sigma_{k+1}, or
  /// sigma_down), through sigma_mid when two-staged; the step that ends it lands at sigma_out (sigma_{k+1},
  /// or the next interval's churned sigma_hat) after adding noise of standard deviation noise (x_ve units).
  struct Interval {
    double from, to, mid, out, noise;
    bool two_stage;
  };

 public:
  /// The grid defaults (KDPM2DiscreteScheduler's, EulerDiscreteScheduler's): N = 50, linspace spacing,
  /// ramps between the spaced ends.
  static constexpr GridDefaults grid_defaults = GridDefaults::euler_discrete();

  /// Throws ddpm::invalid_argument if the grid (see make_grid), clipping, churn or eta/s_noise options are
  /// bad, or an option of another of these samplers is set (churn for the ancestral ones, eta != 1 for DPM2).
  explicit MidpointSampler(NoiseSchedule<S> schedule, DPM2Options options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = name();
    check_clipping(fn, options_.clipping);
    check_churn(fn, options_.s_churn, options_.s_tmin, options_.s_tmax, options_.s_noise);
    check_ancestral(fn, options_.eta, options_.s_noise);
    if (kAncestral && options_.s_churn != 0.0) {
      throw_invalid_argument(std::string(fn) + ": s_churn is " + ddpm::detail::number_string(options_.s_churn) +
                             ", but must be 0: churn is an option of DPM2Sampler (and HeunSampler)");
    }
    if (!kAncestral && options_.eta != 1.0) {
      throw_invalid_argument(std::string(fn) + ": eta is " + ddpm::detail::number_string(options_.eta) +
                             ", but must be 1: eta is an option of the ancestral samplers");
    }
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    sigmas_ = std::move(grid.sigmas);
    const std::vector<double> table = sigma_table(this->schedule_);
    const int n = static_cast<int>(grid.timesteps.size());
    // sigma_hat_k: the churned start of interval k (DPM2), else sigma_k.
    std::vector<double> hat(static_cast<std::size_t>(n));
    const double gamma_max = std::min(options_.s_churn / n, std::sqrt(2.0) - 1.0);
    for (int k = 0; k < n; ++k) {
      const double s = sigmas_[static_cast<std::size_t>(k)];
      const bool churn = options_.s_churn > 0.0 && options_.s_tmin <= s && s <= options_.s_tmax;
      hat[static_cast<std::size_t>(k)] = churn ? s * (1.0 + gamma_max) : s;
    }
    for (int k = 0; k < n; ++k) {
      const auto u = static_cast<std::size_t>(k);
      const double s1 = sigmas_[u + 1];
      Interval iv{hat[u], s1, 0.0, s1, 0.0, false};
      if constexpr (kAncestral) {
        const AncestralStep a = ancestral_step(sigmas_[u], s1, options_.eta);
        iv.to = a.down;
        iv.noise = options_.s_noise * a.up;
        // k-diffusion's DPM2 ancestral adds no noise on its Euler branch (sigma_down = 0)
        if (kMethod == Midpoint::dpm2_ancestral && a.down == 0.0) iv.noise = 0.0;
      } else if (k + 1 < n && hat[u + 1] > s1) {
        iv.out = hat[u + 1];
        iv.noise = options_.s_noise * std::sqrt(iv.out * iv.out - s1 * s1);
      }
      iv.two_stage = iv.to > 0.0;
      if (iv.two_stage) iv.mid = std::exp(0.5 * (std::log(iv.from) + std::log(iv.to)));
      intervals_.push_back(iv);
      stages_.push_back({k, false, iv.from});
      this->timesteps_.push_back(nearest_timestep(table, iv.from, grid.timesteps[u], iv.from == sigmas_[u]));
      if (iv.two_stage) {
        stages_.push_back({k, true, iv.mid});
        this->timesteps_.push_back(nearest_timestep(table, iv.mid, 0, false));
      }
    }
  }

  const DPM2Options& options() const { return options_; }
  /// The grid: the noise levels sigma_0, ..., sigma_{N-1} of the intervals followed by the final sigma.
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// The noise level each step's model call sees (timesteps().size() values).
  std::vector<double> step_sigmas() const {
    std::vector<double> r;
    for (const Stage& s : stages_) r.push_back(s.sigma);
    return r;
  }
  /// The number of noise intervals N (num_inference_steps() counts model calls).
  int num_intervals() const { return static_cast<int>(intervals_.size()); }
  /// Forgets the stage-1 x0; the next step must be step 0.
  void reset() { next_step_ = 0; }

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = step_name();
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    check_in_order(fn, i, next_step_, x, history_.size());
    const Stage st = stages_[static_cast<std::size_t>(i)];
    const Interval& iv = intervals_[static_cast<std::size_t>(st.interval)];
    const double s_in = st.sigma;
    StepPlan plan{x0_conversion(kind, 1.0 / (1.0 + s_in * s_in))};
    const double scale_in = std::sqrt(1.0 + s_in * s_in);
    const bool ends = st.second || !iv.two_stage;
    const double s_land = ends ? iv.out : iv.mid;
    const double inv = 1.0 / std::sqrt(1.0 + s_land * s_land);
    double x_ve = 0.0, x0_now = 0.0, x0_prev = 0.0;  // coefficients in x_ve units
    if (!iv.two_stage) {
      x0_now = 1.0;  // x_ve + (0 - s) (x_ve - x0) / s = x0
    } else if (!st.second) {
      // The Euler step to sigma_mid (DPM2), or the first-order DPM-Solver++ step with h = log(from / to),
      // x' = e^{-h/2} x_ve - expm1(-h/2) x0 (the same value, computed as k-diffusion does).
      if constexpr (kMethod == Midpoint::dpmpp_2s_ancestral) {
        const double h = std::log(iv.from) - std::log(iv.to);
        x_ve = std::exp(-0.5 * h);
        x0_now = -std::expm1(-0.5 * h);
      } else {
        x_ve = iv.mid / iv.from;
        x0_now = 1.0 - x_ve;
      }
    } else if constexpr (kMethod == Midpoint::dpmpp_2s_ancestral) {
      // x <- (sigma_to / sigma_from) x_ve - expm1(-h) x0_2, x_ve = (sigma_from / sigma_mid) (x' - (1 - sigma_mid / sigma_from) x0_1)
      const double h = std::log(iv.from) - std::log(iv.to);
      const double q = std::exp(-0.5 * h);  // sigma_to / sigma_mid
      x_ve = q;
      x0_prev = q * std::expm1(-0.5 * h);
      x0_now = -std::expm1(-h);
    } else {
      // x <- x_ve + (sigma_to - sigma_from) d2 with x_ve = x' - (sigma_mid - sigma_from) / sigma_mid (x' - x0_1)
      x_ve = iv.to / iv.mid;
      x0_prev = (iv.mid - iv.from) / iv.mid;
      x0_now = (iv.from - iv.to) / iv.mid;
    }
    plan.x_coef = x_ve * scale_in * inv;
    plan.x0_coef = x0_now * inv;
    plan.history_coef = x0_prev * inv;
    plan.noise = ends && iv.noise > 0.0;
    plan.noise_coef = plan.noise ? iv.noise * inv : 0.0;
    history_.resize(static_cast<std::size_t>(x.size()));
    this->template run_step<true, true>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping,
                                        history_.data());
    next_step_ = i + 1;
  }

  DPM2Options options_;
  std::vector<double> sigmas_;
  std::vector<Interval> intervals_;
  std::vector<Stage> stages_;
  std::vector<S> history_;  // x0 of stage 1
  int next_step_ = 0;
};

}  // namespace detail
}  // namespace ddpm
