// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Exponential moving averages of a model's weights: improved-diffusion's fixed rate (update_ema) and
// diffusers' EMAModel with its decay warm-up, over the same parameter lists as the optimisers (optim.hpp).
//                                                                               [docs/training.md, "EMA"]

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/optim.hpp"

namespace ddpm {

/// diffusers EMAModel's arguments, with its defaults.
struct EMAOptions {
  double decay = 0.9999;             ///< the largest decay (EMAModel's `decay`, max_decay)
  double min_decay = 0.0;
  std::int64_t update_after_step = 0;
  bool use_ema_warmup = false;
  double inv_gamma = 1.0;            ///< used with use_ema_warmup
  double power = 2.0 / 3.0;          ///< used with use_ema_warmup
};

/// diffusers EMAModel.get_decay(optimization_step), in double with diffusers' operations in its order.
///                                                                             [docs/training.md, Eq. (O6)]
///   s = max(0, optimization_step - update_after_step - 1);  0 if s <= 0, else
///   d = 1 - (1 + s / inv_gamma)^(-power)   (use_ema_warmup)   or   d = (1 + s) / (10 + s),
///   clamped to [min_decay, decay] (first min with decay, then max with min_decay).
inline double ema_decay(const EMAOptions& o, std::int64_t optimization_step) {
  const std::int64_t s = std::max<std::int64_t>(0, optimization_step - o.update_after_step - 1);
  if (s <= 0) return 0.0;
  const auto sd = static_cast<double>(s);
  double d = o.use_ema_warmup ? 1.0 - std::pow(1.0 + sd / o.inv_gamma, -o.power) : (1.0 + sd) / (10.0 + sd);
  d = std::min(d, o.decay);
  d = std::max(d, o.min_decay);
  return d;
}

namespace detail {

inline void validate_ema_options(const EMAOptions& o) {
  constexpr const char* fn = "ddpm::EMA";
  require_in(fn, "decay", o.decay, 0.0, 1.0, "in [0, 1]");
  require_in(fn, "min_decay", o.min_decay, 0.0, o.decay, "in [0, decay]");
  if (o.update_after_step < 0) {
    throw_invalid_argument(std::string(fn) + ": update_after_step is " + ddpm::detail::number_string(o.update_after_step) +
                           ", but must be >= 0");
  }
  if (!(o.inv_gamma > 0.0) || !std::isfinite(o.inv_gamma)) {
    throw_optim_argument(fn, "inv_gamma", o.inv_gamma, "a finite number > 0");
  }
  if (!(o.power > 0.0) || !std::isfinite(o.power)) throw_optim_argument(fn, "power", o.power, "a finite number > 0");
}

// shadow = shadow - (1 - decay) * (shadow - param)      (diffusers: s_param.sub_(one_minus_decay * (s_param - param)))
template <class S>
void ema_sub_update(S* shadow, const S* param, Eigen::Index n, S one_minus_decay) {
  using namespace Eigen::internal;
  using Pk = Packet<S>;
  const Pk omd = pset1<Pk>(one_minus_decay);
  packet_loop<S, 1, 1>(n, {param}, {shadow}, {S(0)}, {S(0)}, [&](const auto& in, const auto& io) {
    const Pk s = ploadu<Pk>(io[0]);
    pstoreu(io[0], psub(s, pmul(omd, psub(s, ploadu<Pk>(in[0])))));
  });
}

// target = target * rate + (1 - rate) * source   (improved-diffusion: targ.mul_(rate).add_(src, alpha=1 - rate),
// whose add with alpha is an fma)
template <class S>
void ema_rate_update(S* target, const S* source, Eigen::Index n, S rate, S one_minus_rate) {
  using namespace Eigen::internal;
  using Pk = Packet<S>;
  const Pk r = pset1<Pk>(rate), a = pset1<Pk>(one_minus_rate);
  packet_loop<S, 1, 1>(n, {source}, {target}, {S(0)}, {S(0)}, [&](const auto& in, const auto& io) {
    pstoreu(io[0], pmadd(ploadu<Pk>(in[0]), a, pmul(ploadu<Pk>(io[0]), r)));
  });
}

}  // namespace detail

/// improved-diffusion's update_ema: target = rate * target + (1 - rate) * source, tensor by tensor.
///                                                                             [docs/training.md, Eq. (O5)]
/// Throws ddpm::invalid_argument if rate is outside [0, 1] or the lists differ in count or sizes.
template <std::floating_point S>
void update_ema(std::span<const std::span<S>> target, std::span<const std::span<const S>> source,
                double rate = 0.9999) {
  detail::require_in("ddpm::update_ema", "rate", rate, 0.0, 1.0, "in [0, 1]");
  detail::require_matching_lists("ddpm::update_ema", "target", target, "source", source);
  std::vector<detail::TensorPiece> pieces;
  const Eigen::Index total = detail::plan_pieces(target, pieces);
  const S r = static_cast<S>(rate), a = static_cast<S>(1.0 - rate);
  detail::for_each_piece(pieces, total, [&](const detail::TensorPiece& p) {
    detail::ema_rate_update(target[p.tensor].data() + p.begin, source[p.tensor].data() + p.begin, p.end - p.begin, r,
                            a);
  });
}
template <std::floating_point S>
void update_ema(std::span<const std::span<S>> target, std::span<const std::span<S>> source, double rate = 0.9999) {
  std::vector<std::span<const S>> src(source.begin(), source.end());
  update_ema<S>(target, std::span<const std::span<const S>>(src), rate);
}

/// A moving average of a model's weights (the "shadow" parameters), kept beside the model.
///
///   ddpm::EMA<float> ema(params, {.decay = 0.999, .use_ema_warmup = true});   // diffusers' EMAModel
///   auto ema = ddpm::EMA<float>::fixed_rate(params, 0.9999);                   // improved-diffusion
///   ema.step(params);          // after each optimiser step
///   ema.swap(params);          // sample with the averaged weights ...
///   ema.swap(params);          // ... and put the training weights back
///
/// diffusers' form (constructor): step() increments optimization_step, takes d = ema_decay(options, step)
/// and updates shadow = shadow - (1 - d) * (shadow - param); the first step (d = 0) copies the weights.
/// Fixed-rate form (fixed_rate()): step() updates shadow = rate * shadow + (1 - rate) * param.
template <std::floating_point S>
class EMA {
 public:
  using Scalar = S;

  /// diffusers' EMAModel over `params`: the shadow starts as a copy of the parameters.
  /// Throws ddpm::invalid_argument unless 0 <= min_decay <= decay <= 1, update_after_step >= 0 and
  /// inv_gamma, power are finite and > 0.
  explicit EMA(std::span<const std::span<const S>> params, const EMAOptions& options = {}) : o_(options) {
    detail::validate_ema_options(o_);
    copy_from(params);
  }
  explicit EMA(std::span<const std::span<S>> params, const EMAOptions& options = {}) : o_(options) {
    detail::validate_ema_options(o_);
    copy_from(params);
  }

  /// improved-diffusion's fixed-rate average over `params` (a copy of them to start from).
  /// Throws ddpm::invalid_argument if rate is outside [0, 1].
  template <class P>
  static EMA fixed_rate(std::span<const std::span<P>> params, double rate = 0.9999) {
    detail::require_in("ddpm::EMA::fixed_rate", "rate", rate, 0.0, 1.0, "in [0, 1]");
    EMA e;
    e.fixed_ = true;
    e.rate_ = rate;
    e.o_.decay = rate;
    e.copy_from(params);
    return e;
  }
  static EMA fixed_rate(std::span<const std::span<S>> params, double rate = 0.9999) {
    return fixed_rate<S>(params, rate);
  }
  static EMA fixed_rate(std::span<const std::span<const S>> params, double rate = 0.9999) {
    return fixed_rate<const S>(params, rate);
  }

  bool is_fixed_rate() const noexcept { return fixed_; }
  /// The fixed rate (is_fixed_rate()), else NaN.
  double rate() const noexcept { return fixed_ ? rate_ : std::numeric_limits<double>::quiet_NaN(); }
  /// diffusers' options (for the fixed-rate form only `decay`, the rate, is meaningful).
  const EMAOptions& options() const noexcept { return o_; }
  /// The number of step() calls (diffusers' optimization_step).
  std::int64_t optimization_step() const noexcept { return step_; }
  /// The decay the last step() used (diffusers' cur_decay_value), NaN before the first.
  double current_decay() const noexcept { return current_decay_; }
  /// The decay the next step() will use.
  double next_decay() const { return fixed_ ? rate_ : ema_decay(o_, step_ + 1); }

  /// The averaged weights, one vector per parameter tensor.
  const std::vector<std::vector<S>>& shadow() const noexcept { return shadow_; }

  /// One update from the current weights; returns the decay used.
  /// Throws ddpm::invalid_argument if params does not match the shadow's tensors in count and sizes.
  double step(std::span<const std::span<const S>> params) { return step_impl(params); }
  double step(std::span<const std::span<S>> params) { return step_impl(params); }

  /// Copies the averaged weights into params (diffusers' copy_to).
  /// Throws ddpm::invalid_argument if params does not match the shadow.
  void copy_to(std::span<const std::span<S>> params) const {
    detail::require_state_matches("ddpm::EMA::copy_to", "shadow", shadow_, params);
    for (std::size_t k = 0; k < params.size(); ++k) std::copy(shadow_[k].begin(), shadow_[k].end(), params[k].begin());
  }

  /// Exchanges the averaged weights and params; a second swap restores both (diffusers' store, copy_to and
  /// restore in one, without a third copy of the weights).
  /// Throws ddpm::invalid_argument if params does not match the shadow.
  void swap(std::span<const std::span<S>> params) {
    detail::require_state_matches("ddpm::EMA::swap", "shadow", shadow_, params);
    for (std::size_t k = 0; k < params.size(); ++k) {
      std::swap_ranges(shadow_[k].begin(), shadow_[k].end(), params[k].begin());
    }
  }

  /// Replaces the step count, the last decay and the averaged weights (as a saved training state restores
  /// them). Throws ddpm::invalid_argument if step < 0 or the shadow's tensor count or sizes differ from the
  /// current shadow's.
  void load_state(std::int64_t step, double current_decay, std::vector<std::vector<S>> shadow) {
    if (step < 0) {
      detail::throw_invalid_argument("ddpm::EMA::load_state: step is " + ddpm::detail::number_string(step) + ", but must be >= 0");
    }
    if (shadow.size() != shadow_.size()) {
      detail::throw_invalid_argument("ddpm::EMA::load_state: shadow has " + ddpm::detail::number_string(shadow.size()) +
                                     " tensors, but this EMA has " + ddpm::detail::number_string(shadow_.size()));
    }
    for (std::size_t k = 0; k < shadow.size(); ++k) {
      if (shadow[k].size() != shadow_[k].size()) {
        detail::throw_invalid_argument("ddpm::EMA::load_state: shadow[" + ddpm::detail::number_string(k) + "] has " +
                                       ddpm::detail::number_string(shadow[k].size()) + " elements, but this EMA's has " +
                                       ddpm::detail::number_string(shadow_[k].size()));
      }
    }
    step_ = step;
    current_decay_ = current_decay;
    shadow_ = std::move(shadow);
  }

 private:
  EMA() = default;

  template <class P>
  void copy_from(std::span<const std::span<P>> params) {
    shadow_.resize(params.size());
    for (std::size_t k = 0; k < params.size(); ++k) shadow_[k].assign(params[k].begin(), params[k].end());
  }

  template <class P>
  double step_impl(std::span<const std::span<P>> params) {
    detail::require_state_matches("ddpm::EMA::step", "shadow", shadow_, params);
    ++step_;
    const double decay = fixed_ ? rate_ : ema_decay(o_, step_);
    current_decay_ = decay;
    const Eigen::Index total = detail::plan_pieces(params, pieces_);
    if (fixed_) {
      const S r = static_cast<S>(rate_), a = static_cast<S>(1.0 - rate_);
      detail::for_each_piece(pieces_, total, [&](const detail::TensorPiece& p) {
        detail::ema_rate_update(shadow_[p.tensor].data() + p.begin, params[p.tensor].data() + p.begin,
                                p.end - p.begin, r, a);
      });
    } else {
      const S omd = static_cast<S>(1.0 - decay);
      detail::for_each_piece(pieces_, total, [&](const detail::TensorPiece& p) {
        detail::ema_sub_update(shadow_[p.tensor].data() + p.begin, params[p.tensor].data() + p.begin,
                               p.end - p.begin, omd);
      });
    }
    return decay;
  }

  EMAOptions o_{};
  bool fixed_ = false;
  double rate_ = 0.0;
  std::int64_t step_ = 0;
  double current_decay_ = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::vector<S>> shadow_;
  std::vector<detail::TensorPiece> pieces_;
};

}  // namespace ddpm
