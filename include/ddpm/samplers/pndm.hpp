// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"), as diffusers'
// PNDMScheduler runs it: the pseudo-numerical transfer of Eq. (9) of the paper (a DDIM step written without
// cancellation), driven by a linear multistep combination of model outputs (PLMS, Adams-Bashforth up to
// order 4), started either by three pseudo Runge-Kutta steps (F-PNDM) or, with skip_prk_steps (Stable
// Diffusion 1.x), by one second-order step that calls the model twice at the first interval.
//                                                                     [docs/samplers.md, Eqs. (S30)-(S32)]

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/posterior.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/detail/two_stage.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// Options of PNDMSampler (diffusers' PNDMScheduler config; its defaults).
struct PNDMOptions {
  /// The grid (GridOptions; PNDMSampler::grid_defaults: N = 50, leading spacing; the N spaced
  /// timesteps only: no timestep list, no sigma options). N is in [1, T] (with the Runge-Kutta warm-up in
  /// [4, T]); Stable Diffusion 1.x: leading spacing with steps_offset 1.
  GridOptions grid = {};
  /// true: PLMS with its second-order start (Stable Diffusion 1.x, N + 1 model calls); false: F-PNDM, three
  /// pseudo Runge-Kutta steps of four model calls each, then PLMS (N + 9 model calls).
  bool skip_prk_steps = false;
  /// The alpha_bar of a step that would go below timestep 0: 1 (true) or alpha_bar[0] (false, diffusers'
  /// PNDM default).
  bool set_alpha_to_one = false;
};

/// The PNDM sampler (deterministic).                                 [docs/samplers.md, Eqs. (S30)-(S32)]
/// Every step is the transfer of Eq. (S30) from timestep s to timestep s' (alpha_bar a, a'; a' of a
/// negative s' is 1 or alpha_bar[0] as set_alpha_to_one says), applied to a base sample x_s and a
/// combination m of raw model outputs, converted to eps at (x_s, a) (diffusers' order: combine, then
/// convert):
///   x <- sqrt(a' / a) x_s - (a' - a) / (sqrt(a) (sqrt(a (1 - a')) + sqrt(a' (1 - a)))) eps(m)
/// With r = T / N (integer division), the steps are diffusers' (Eqs. (S31), (S32)): PLMS steps go from
/// s = t to s' = t - r (not to the next listed timestep where r does not divide the spacing's gaps), and
/// combine the current and up to three earlier outputs with Adams-Bashforth weights; the warm-up of
/// skip_prk_steps repeats the second timestep (t_0, t_1, t_1, t_2, ...): the call at the first t_1 redoes
/// the first step from x_{t_0} with the mean of both outputs, from t_1 + r to t_1. The Runge-Kutta warm-up
/// visits t, t - r/2 twice and t - r per step (r/2 = r / 2 rounded down) and combines (1, 2, 2, 1) / 6.
/// timesteps() lists every model call (N + 1, or N + 9 with the warm-up). A run steps i = 0, 1, 2, ... in
/// order (step 0 or reset() starts anew); the sampler keeps up to three outputs, the base sample and the
/// Runge-Kutta sum. The x0 stored by step(..., x0_out) is the conversion of this step's output at
/// (x, alpha_bar[timesteps()[i]]), without bounds (diffusers' PNDM has no clipping).
/// Every prediction kind is accepted (diffusers: epsilon and v_prediction; a sample prediction converts
/// the same way); an epsilon prediction needs a > 0.
template <std::floating_point S>
class PNDMSampler : public detail::SamplerBase<PNDMSampler<S>, S> {
  using Base = detail::SamplerBase<PNDMSampler<S>, S>;
  friend Base;

 public:
  /// The grid defaults (PNDMScheduler's): N = 50, leading spacing; the N spaced timesteps only (no
  /// timestep list, no drop_final_timestep, no sigma options).
  static constexpr GridDefaults grid_defaults = {.num_inference_steps = 50,
                                                 .timestep_spacing = TimestepSpacing::leading,
                                                 .drop_final_timestep = false,
                                                 .sigma_ends = SigmaEnds::spaced,
                                                 .sigma_grid = false,
                                                 .explicit_timesteps = false};

  /// Throws ddpm::invalid_argument if N is outside [1, T] ([4, T] without skip_prk_steps), the
  /// spacing/offset is bad (see inference_timesteps), or a timestep list, drop_final_timestep or a sigma
  /// option is given (see make_grid).
  explicit PNDMSampler(NoiseSchedule<S> schedule, PNDMOptions options = {})
      : Base(std::move(schedule)), options_(options) {
    const char* fn = "ddpm::PNDMSampler";
    const int T = this->schedule_.num_train_timesteps();
    const int N = options_.grid.num_inference_steps.value_or(grid_defaults.num_inference_steps);
    if (!options_.skip_prk_steps && N < 4) {
      detail::throw_invalid_argument(std::string(fn) + ": num_inference_steps is " + ddpm::detail::number_string(N) +
                                     ", but the Runge-Kutta warm-up (skip_prk_steps = false) needs it in [4, " +
                                     ddpm::detail::number_string(T) + "]; set skip_prk_steps for fewer steps");
    }
    const std::vector<int> listed =
        make_grid(this->schedule_, options_.grid, grid_defaults, fn).timesteps;  // decreasing
    const int r = T / N, half = r / 2;
    auto add = [this](int call, int from, int to) {
      Stage s;
      s.call = call;
      s.from = from;
      s.to = to;
      stages_.push_back(s);
      this->timesteps_.push_back(call);
    };
    auto add_plms = [&](int t) {
      // ets has at most 3 earlier outputs before this one is appended: Adams-Bashforth of order q.
      add(t, t, t - r);
      Stage& s = stages_.back();
      s.push = true;
      const int q = std::min(history_count_ + 1, 4);
      static constexpr double w[4][4] = {{1.0, 0.0, 0.0, 0.0},
                                         {3.0 / 2.0, -1.0 / 2.0, 0.0, 0.0},
                                         {23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0, 0.0},
                                         {55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0}};
      s.w_out = w[q - 1][0];
      for (int k = 0; k + 1 < q; ++k) s.w_hist[static_cast<std::size_t>(k)] = w[q - 1][k + 1];
      s.history = q - 1;
      history_count_ = std::min(history_count_ + 1, 3);
    };
    if (options_.skip_prk_steps) {
      const int t0 = listed[0];
      add(t0, t0, t0 - r);  // the first step: Euler's, from x_{t_0}, which is kept
      stages_.back().push = true;
      stages_.back().save = true;
      history_count_ = 1;
      if (N >= 2) {
        const int t1 = listed[1];
        add(t1, t1 + r, t1);  // again from x_{t_0}, with the mean of both outputs
        Stage& s = stages_.back();
        s.from_saved = true;
        s.w_out = 0.5;
        s.w_hist[0] = 0.5;
        s.history = 1;
        for (std::size_t k = 1; k < listed.size(); ++k) add_plms(listed[k]);
      }
    } else {
      // u3 > u2 > u1 > u0: the four largest timesteps; three pseudo Runge-Kutta steps u3 -> u2 -> u1 -> u0.
      for (int k = 0; k < 3; ++k) {
        const int start = listed[static_cast<std::size_t>(k)], end = listed[static_cast<std::size_t>(k + 1)];
        const std::array<int, 4> calls = {start, end + half, end + half, end};
        for (int j = 0; j < 4; ++j) {
          const int call = calls[static_cast<std::size_t>(j)];
          add(call, start, call - (j % 2 == 1 ? 0 : half));
          Stage& s = stages_.back();
          s.from_saved = j > 0;
          if (j == 0) {
            s.save = true;
            s.push = true;
            s.sum = SumMode::set;
            s.sum_weight = 1.0 / 6.0;
          } else if (j < 3) {
            s.sum = SumMode::add;
            s.sum_weight = 1.0 / 3.0;
          } else {
            s.w_out = 1.0 / 6.0;
            s.w_sum = 1.0;
          }
        }
      }
      history_count_ = 3;
      for (std::size_t k = 3; k < listed.size(); ++k) add_plms(listed[k]);
    }
    const std::vector<double>& ab = this->schedule_.alphas_cumprod_double();
    const double final_ab = options_.set_alpha_to_one ? 1.0 : ab[0];
    for (Stage& s : stages_) {
      s.alpha_bar = ab[static_cast<std::size_t>(s.from)];
      s.alpha_bar_prev = s.to >= 0 ? ab[static_cast<std::size_t>(s.to)] : final_ab;
    }
  }

  const PNDMOptions& options() const { return options_; }
  /// Forgets the outputs and samples kept; the next step must be step 0.
  void reset() { next_step_ = 0; }

  /// What step i computes (Eq. (S30)): the timesteps s and s' of the transfer as diffusers computes them
  /// (s' < 0: below timestep 0), their alpha_bar (alpha_bar_prev of s' < 0 is 1 or alpha_bar[0]), and the
  /// weights of the combination m: of this step's output, of the kept outputs (newest first; `history` of
  /// them), of the Runge-Kutta sum; `from_saved`: the base sample is the one kept by an earlier step.
  /// Throws ddpm::invalid_argument if i is outside [0, num_inference_steps()).
  struct Coefficients {
    int timestep, prev_timestep;
    double alpha_bar, alpha_bar_prev;
    double output_weight;
    std::array<double, 3> history_weights;
    int history;
    double sum_weight;
    bool from_saved;
  };
  Coefficients coefficients(int i) const {
    detail::check_step_index("ddpm::PNDMSampler::coefficients", i, this->num_inference_steps());
    const Stage& s = stages_[static_cast<std::size_t>(i)];
    return {s.from, s.to, s.alpha_bar, s.alpha_bar_prev, s.w_out, s.w_hist, s.history, s.w_sum, s.from_saved};
  }

  /// The coefficients of Eq. (S30) with eps(m) expanded for a prediction kind, x <- x_coef x_s + m_coef m,
  /// without cancellation (d = a' - a, D = sqrt(a' (1 - a)) + sqrt(a (1 - a'))):
  ///   epsilon:  x_coef = sqrt(a' / a),                           m_coef = -d / (sqrt(a) D)
  ///   velocity: x_coef = sqrt(a a') + sqrt((1 - a) (1 - a')),    m_coef = -d / D
  ///   sample:   x_coef = sqrt((1 - a') / (1 - a)),               m_coef = d / (sqrt(1 - a) D)
  static Conversion transfer(Prediction kind, double a, double a_prev) {
    const double d = a_prev - a;
    const double D = std::sqrt(a_prev * (1.0 - a)) + std::sqrt(a * (1.0 - a_prev));
    switch (kind) {
      case Prediction::epsilon: return {std::sqrt(a_prev / a), -d / (std::sqrt(a) * D)};
      case Prediction::velocity: return {std::sqrt(a * a_prev) + std::sqrt((1.0 - a) * (1.0 - a_prev)), -d / D};
      case Prediction::sample: return {std::sqrt((1.0 - a_prev) / (1.0 - a)), d / (std::sqrt(1.0 - a) * D)};
    }
    detail::throw_invalid_argument("ddpm::PNDMSampler::transfer: kind is " +
                                   ddpm::detail::number_string(static_cast<int>(kind)) +
                                   ", but must be Prediction::epsilon, sample or velocity");
  }

 private:
  enum class SumMode { none, set, add };
  struct Stage {
    int call = 0, from = 0, to = 0;
    double alpha_bar = 0.0, alpha_bar_prev = 0.0;
    double w_out = 1.0;
    std::array<double, 3> w_hist = {0.0, 0.0, 0.0};
    int history = 0;
    double w_sum = 0.0;
    SumMode sum = SumMode::none;
    double sum_weight = 0.0;
    bool from_saved = false, save = false, push = false;
  };

  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::PNDMSampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    detail::check_in_order(fn, i, next_step_, x, elements_);
    const Stage& s = stages_[static_cast<std::size_t>(i)];
    detail::check_x0_defined(fn, kind, s.alpha_bar, s.from);
    const auto total = static_cast<std::size_t>(x.size());
    elements_ = total;
    if (i == 0) {
      history_.clear();
      saved_.resize(total);
      sum_.resize(total);
    }
    if (s.push) spare_.resize(total);
    const Conversion c = transfer(kind, s.alpha_bar, s.alpha_bar_prev);
    Conversion c0{0.0, 0.0};
    if (target.x0 != nullptr) {
      const int t = this->timesteps_[static_cast<std::size_t>(i)];
      const double a = this->schedule_.alphas_cumprod_double()[static_cast<std::size_t>(t)];
      detail::check_x0_defined(fn, kind, a, t);
      c0 = x0_conversion(kind, a);
    }
    const Eigen::Index ps = detail::per_sample_size(x), batch = x.dimension(0), stride = target.stride;
    const S* hist[3] = {nullptr, nullptr, nullptr};
    for (int k = 0; k < s.history; ++k) hist[k] = history_[static_cast<std::size_t>(k)].data();
    // Per element in double (inputs and state are stored as S).
    auto run = [&](auto history_constant, auto general_constant) {
      constexpr int kHistory = decltype(history_constant)::value;
      constexpr bool kGeneral = decltype(general_constant)::value;
      S* __restrict xs = x.data();
      const double xc = c.from_x, mc = c.from_output, wo = s.w_out, w0 = s.w_hist[0], w1 = s.w_hist[1],
                   w2 = s.w_hist[2];
      for (Eigen::Index b = 0; b < batch; ++b) {
        const S* __restrict out = output.data() + b * stride;
        const Eigen::Index off = b * ps;
        S* __restrict xb = xs + off;
        S* __restrict pushed = s.push ? spare_.data() + off : nullptr;
        for (Eigen::Index j = 0; j < ps; ++j) {
          const double o = static_cast<double>(out[j]);
          double m = wo * o;
          if constexpr (kHistory >= 1) m += w0 * static_cast<double>(hist[0][off + j]);
          if constexpr (kHistory >= 2) m += w1 * static_cast<double>(hist[1][off + j]);
          if constexpr (kHistory >= 3) m += w2 * static_cast<double>(hist[2][off + j]);
          const double xv = static_cast<double>(xb[j]);
          double base = xv;
          if constexpr (kGeneral) {
            const std::size_t e = static_cast<std::size_t>(off + j);
            if (s.w_sum != 0.0) m += s.w_sum * static_cast<double>(sum_[e]);
            if (s.sum == SumMode::set) sum_[e] = static_cast<S>(s.sum_weight * o);
            if (s.sum == SumMode::add) sum_[e] = static_cast<S>(static_cast<double>(sum_[e]) + s.sum_weight * o);
            if (s.from_saved) base = static_cast<double>(saved_[e]);
            if (s.save) saved_[e] = xb[j];
            if (target.x0 != nullptr) target.x0[e] = static_cast<S>(c0.from_x * xv + c0.from_output * o);
          }
          if (pushed != nullptr) pushed[j] = out[j];
          xb[j] = static_cast<S>(xc * base + mc * m);
        }
      }
    };
    const bool general = s.from_saved || s.save || s.sum != SumMode::none || s.w_sum != 0.0 || target.x0 != nullptr;
    auto with_history = [&](auto general_constant) {
      switch (s.history) {
        case 0: run(std::integral_constant<int, 0>{}, general_constant); break;
        case 1: run(std::integral_constant<int, 1>{}, general_constant); break;
        case 2: run(std::integral_constant<int, 2>{}, general_constant); break;
        default: run(std::integral_constant<int, 3>{}, general_constant); break;
      }
    };
    if (general) {
      with_history(std::true_type{});
    } else {
      with_history(std::false_type{});
    }
    if (s.push) {
      // The output becomes history_[0]; the oldest of three is dropped (its buffer becomes the spare).
      std::vector<S> oldest;
      if (history_.size() == 3) {
        oldest = std::move(history_.back());
        history_.pop_back();
      }
      history_.insert(history_.begin(), std::move(spare_));
      spare_ = std::move(oldest);
    }
    next_step_ = i + 1;
  }

  PNDMOptions options_;
  std::vector<Stage> stages_;
  int history_count_ = 0;          // while building the stages
  std::vector<std::vector<S>> history_;  // earlier raw outputs, newest first (at most 3)
  std::vector<S> spare_, saved_, sum_;
  std::size_t elements_ = 0;
  int next_step_ = 0;
};

}  // namespace ddpm
