// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The posterior q(x_{t-1} | x_t, x_0) and the conversions between the three things a network may
// predict (eps, x0, v). These are the sampler's arithmetic.      [docs/math.md, Eqs. (5)-(8), (14)-(15)]
// The coefficients of the conversions come from one place, x0_conversion and eps_conversion, which the
// tensor functions here and every sampler use. The tensor functions accept Tensor, TensorMap and
// ConstTensorMap arguments and have a form writing into `out`.

#include <cmath>
#include <span>
#include <string>

#include "ddpm/detail/per_timestep.hpp"
#include "ddpm/forward.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

/// What a model predicts from (x_t, t). Every sampler accepts every kind: it converts the output to x0
/// (and eps) with Eqs. (8) and (15) of docs/math.md.                              [docs/samplers.md, Eq. (S1)]
///   epsilon:  the noise eps of x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps   (diffusers "epsilon")
///   sample:   x0 itself                                                             (diffusers "sample")
///   velocity: v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0                      (diffusers "v_prediction")
enum class Prediction { epsilon, sample, velocity };

/// "epsilon", "sample" or "velocity".
inline const char* prediction_name(Prediction kind) {
  switch (kind) {
    case Prediction::epsilon: return "epsilon";
    case Prediction::sample: return "sample";
    case Prediction::velocity: return "velocity";
  }
  return "unknown";
}

/// A value linear in x_t and a model output, with its coefficients in double:
///   value = from_x * x_t + from_output * output
struct Conversion {
  double from_x;
  double from_output;
};

/// x0 from x_t and a model output of the given kind at noise level a = alpha_bar (Eq. (4) solved for x0,
/// Eq. (15)):                                      [docs/math.md, Eqs. (8), (15); docs/samplers.md, (S1)]
///   epsilon:  x0 = sqrt(1 / a) x_t - sqrt((1 - a) / a) eps
///   sample:   x0 = output
///   velocity: x0 = sqrt(a) x_t - sqrt(1 - a) v
/// sqrt((1 - a) / a) rather than sqrt(1 / a - 1), whose subtraction loses log10(1 / (1 - a)) digits where
/// a is near 1 (1 - a itself is exact there).
/// Precondition: a in (0, 1] (epsilon: (0, 1)). Throws ddpm::invalid_argument for a kind that is not a
/// Prediction.
inline Conversion x0_conversion(Prediction kind, double alpha_bar) {
  switch (kind) {
    case Prediction::epsilon: return {std::sqrt(1.0 / alpha_bar), -std::sqrt((1.0 - alpha_bar) / alpha_bar)};
    case Prediction::sample: return {0.0, 1.0};
    case Prediction::velocity: return {std::sqrt(alpha_bar), -std::sqrt(1.0 - alpha_bar)};
  }
  detail::throw_invalid_argument("ddpm::x0_conversion: kind is " + ddpm::detail::number_string(static_cast<int>(kind)) +
                                 ", but must be Prediction::epsilon, sample or velocity");
}

/// eps from x_t and a model output of the given kind at noise level a = alpha_bar (Eq. (4) solved for
/// eps, Eq. (15)):                                 [docs/math.md, Eqs. (8), (15); docs/samplers.md, (S1)]
///   epsilon:  eps = output
///   sample:   eps = x_t / sqrt(1 - a) - sqrt(a / (1 - a)) x0
///   velocity: eps = sqrt(1 - a) x_t + sqrt(a) v
/// sqrt(a / (1 - a)) rather than 1 / sqrt(1 / a - 1), which cancels where a is near 1.
/// Precondition: a in [0, 1] (sample: [0, 1)). Throws ddpm::invalid_argument for a kind that is not a
/// Prediction.
inline Conversion eps_conversion(Prediction kind, double alpha_bar) {
  switch (kind) {
    case Prediction::epsilon: return {0.0, 1.0};
    case Prediction::sample: return {1.0 / std::sqrt(1.0 - alpha_bar), -std::sqrt(alpha_bar / (1.0 - alpha_bar))};
    case Prediction::velocity: return {std::sqrt(1.0 - alpha_bar), std::sqrt(alpha_bar)};
  }
  detail::throw_invalid_argument("ddpm::eps_conversion: kind is " + ddpm::detail::number_string(static_cast<int>(kind)) +
                                 ", but must be Prediction::epsilon, sample or velocity");
}

/// The variance of a DDPM step (diffusers' `variance_type`, improved-diffusion's ModelVarType), with
/// alpha_bar_prev the alpha_bar of the next timestep visited (1 after the last) and
/// beta = 1 - alpha_bar[t] / alpha_bar_prev:                                   [docs/samplers.md, Eq. (S8)]
///   fixed_small:     the posterior variance beta (1 - alpha_bar_prev) / (1 - alpha_bar[t]), std = sqrt
///   fixed_small_log: the same, std = exp(log(variance) / 2) (diffusers' rounding of it)
///   fixed_large:     beta (the upper bound of Ho et al.; better log-likelihood, noisier samples)
///   learned_range:   the model returns 2C channels; the second C, v in [-1, 1], interpolate
///                    log variance = (v + 1) / 2 * log(beta) + (1 - v) / 2 * log(posterior variance)
/// (Here rather than in samplers/ddpm.hpp so that the variational bound, vlb.hpp, needs no sampler.)
enum class VarianceType { fixed_small, fixed_small_log, fixed_large, learned_range };

/// "fixed_small", "fixed_small_log", "fixed_large" or "learned_range".
inline const char* variance_type_name(VarianceType v) {
  switch (v) {
    case VarianceType::fixed_small: return "fixed_small";
    case VarianceType::fixed_small_log: return "fixed_small_log";
    case VarianceType::fixed_large: return "fixed_large";
    case VarianceType::learned_range: return "learned_range";
  }
  return "unknown";
}

/// The posterior mean alone, written into `out`.                                 [docs/math.md, Eq. (7)]
template <std::floating_point S, DenseTensor X0, DenseTensor Xt, MutableDenseTensor Out>
void q_posterior_mean(const NoiseSchedule<S>& schedule, const X0& x0, const Xt& x_t, int t, Out&& out) {
  detail::check_timesteps("ddpm::q_posterior", schedule, t, x0.dimension(0));
  detail::combine("ddpm::q_posterior", "x0", x0, detail::Coefficient<S>(schedule.posterior_mean_coef1(), t), "x_t", x_t,
                  detail::Coefficient<S>(schedule.posterior_mean_coef2(), t), out);
}

/// The Gaussian posterior q(x_{t-1} | x_t, x_0).                                [docs/math.md, Eq. (7)]
///   mean = posterior_mean_coef1[t] * x0 + posterior_mean_coef2[t] * x_t
///   variance = posterior_variance[t],  log_variance = posterior_log_variance_clipped[t]
/// Throws ddpm::invalid_argument if t is outside [0, T), x0 is empty, or x_t differs in shape from x0.
template <std::floating_point S, DenseTensor X0, DenseTensor Xt>
Gaussian<S, rank_v<X0>> q_posterior(const NoiseSchedule<S>& schedule, const X0& x0, const Xt& x_t, int t) {
  Gaussian<S, rank_v<X0>> g;
  q_posterior_mean(schedule, x0, x_t, t, g.mean);
  g.variance = schedule.posterior_variance()[t];
  g.log_variance = schedule.posterior_log_variance_clipped()[t];
  return g;
}

/// x0 from x_t and the noise that made it (Eq. (4) solved for x0).                [docs/math.md, Eq. (8)]
///   x0 = sqrt(1 / alpha_bar[t]) * x_t - sqrt(1 / alpha_bar[t] - 1) * eps
/// Throws ddpm::invalid_argument if t is outside [0, T), alpha_bar[t] is 0 (zero terminal SNR: eps does
/// not determine x0 there; use a v-prediction model), or eps differs in shape from x_t.
template <std::floating_point S, DenseTensor Xt, DenseTensor E, MutableDenseTensor Out>
void predict_x0_from_eps(const NoiseSchedule<S>& schedule, const Xt& x_t, int t, const E& eps, Out&& out) {
  constexpr const char* fn = "ddpm::predict_x0_from_eps";
  detail::check_timesteps(fn, schedule, t, x_t.dimension(0));
  if (!(schedule.alphas_cumprod()[t] > S(0))) {
    detail::throw_invalid_argument(std::string(fn) + ": alpha_bar[" + ddpm::detail::number_string(t) +
                                   "] is 0 (zero terminal SNR), but eps determines x0 only where alpha_bar > 0");
  }
  const Conversion k = x0_conversion(Prediction::epsilon, schedule.alphas_cumprod_double()[t]);
  detail::combine(fn, "x_t", x_t, detail::Coefficient<S>(static_cast<S>(k.from_x)), "eps", eps,
                  detail::Coefficient<S>(static_cast<S>(k.from_output)), out);
}

template <std::floating_point S, DenseTensor Xt, DenseTensor E>
plain_tensor_t<Xt> predict_x0_from_eps(const NoiseSchedule<S>& schedule, const Xt& x_t, int t, const E& eps) {
  plain_tensor_t<Xt> out;
  predict_x0_from_eps(schedule, x_t, t, eps, out);
  return out;
}

/// The noise that took x0 to x_t (Eq. (4) solved for eps).                         [docs/math.md, Eq. (8)]
///   eps = (sqrt(1 / alpha_bar[t]) * x_t - x0) / sqrt(1 / alpha_bar[t] - 1)
///       = x_t / sqrt(1 - alpha_bar[t]) - sqrt(alpha_bar[t] / (1 - alpha_bar[t])) * x0   (eps_conversion)
/// Throws ddpm::invalid_argument if t is outside [0, T) or x0 differs in shape from x_t.
template <std::floating_point S, DenseTensor Xt, DenseTensor X0, MutableDenseTensor Out>
void predict_eps_from_x0(const NoiseSchedule<S>& schedule, const Xt& x_t, int t, const X0& x0, Out&& out) {
  constexpr const char* fn = "ddpm::predict_eps_from_x0";
  detail::check_timesteps(fn, schedule, t, x_t.dimension(0));
  const Conversion k = eps_conversion(Prediction::sample, schedule.alphas_cumprod_double()[t]);
  detail::combine(fn, "x_t", x_t, detail::Coefficient<S>(static_cast<S>(k.from_x)), "x0", x0,
                  detail::Coefficient<S>(static_cast<S>(k.from_output)), out);
}

template <std::floating_point S, DenseTensor Xt, DenseTensor X0>
plain_tensor_t<Xt> predict_eps_from_x0(const NoiseSchedule<S>& schedule, const Xt& x_t, int t, const X0& x0) {
  plain_tensor_t<Xt> out;
  predict_eps_from_x0(schedule, x_t, t, x0, out);
  return out;
}

/// The velocity target of Salimans & Ho (2022).                                    [docs/math.md, Eq. (14)]
///   v = sqrt(alpha_bar[t]) * eps - sqrt(1 - alpha_bar[t]) * x0
/// Throws ddpm::invalid_argument if t is outside [0, T) or eps differs in shape from x0.
template <std::floating_point S, DenseTensor X0, DenseTensor E, MutableDenseTensor Out>
void predict_v(const NoiseSchedule<S>& schedule, const X0& x0, int t, const E& eps, Out&& out) {
  constexpr const char* fn = "ddpm::predict_v";
  detail::check_timesteps(fn, schedule, t, x0.dimension(0));
  const std::vector<double>& alpha_bar = schedule.alphas_cumprod_double();
  const detail::Coefficient<S> a(alpha_bar, t, [](double ab) { return -std::sqrt(1.0 - ab); });
  const detail::Coefficient<S> c(schedule.sqrt_alphas_cumprod(), t);
  detail::combine(fn, "x0", x0, a, "eps", eps, c, out);
}

template <std::floating_point S, DenseTensor X0, DenseTensor E>
plain_tensor_t<X0> predict_v(const NoiseSchedule<S>& schedule, const X0& x0, int t, const E& eps) {
  plain_tensor_t<X0> out;
  predict_v(schedule, x0, t, eps, out);
  return out;
}

/// x0 from x_t and a velocity.                                                     [docs/math.md, Eq. (15)]
///   x0 = sqrt(alpha_bar[t]) * x_t - sqrt(1 - alpha_bar[t]) * v
/// Throws ddpm::invalid_argument if t is outside [0, T) or v differs in shape from x_t.
template <std::floating_point S, DenseTensor Xt, DenseTensor V, MutableDenseTensor Out>
void predict_x0_from_v(const NoiseSchedule<S>& schedule, const Xt& x_t, int t, const V& v, Out&& out) {
  constexpr const char* fn = "ddpm::predict_x0_from_v";
  detail::check_timesteps(fn, schedule, t, x_t.dimension(0));
  const Conversion k = x0_conversion(Prediction::velocity, schedule.alphas_cumprod_double()[t]);
  detail::combine(fn, "x_t", x_t, detail::Coefficient<S>(static_cast<S>(k.from_x)), "v", v,
                  detail::Coefficient<S>(static_cast<S>(k.from_output)), out);
}

template <std::floating_point S, DenseTensor Xt, DenseTensor V>
plain_tensor_t<Xt> predict_x0_from_v(const NoiseSchedule<S>& schedule, const Xt& x_t, int t, const V& v) {
  plain_tensor_t<Xt> out;
  predict_x0_from_v(schedule, x_t, t, v, out);
  return out;
}

/// eps from x_t and a velocity.                                                    [docs/math.md, Eq. (15)]
///   eps = sqrt(1 - alpha_bar[t]) * x_t + sqrt(alpha_bar[t]) * v
/// Throws ddpm::invalid_argument if t is outside [0, T) or v differs in shape from x_t.
template <std::floating_point S, DenseTensor Xt, DenseTensor V, MutableDenseTensor Out>
void predict_eps_from_v(const NoiseSchedule<S>& schedule, const Xt& x_t, int t, const V& v, Out&& out) {
  constexpr const char* fn = "ddpm::predict_eps_from_v";
  detail::check_timesteps(fn, schedule, t, x_t.dimension(0));
  const Conversion k = eps_conversion(Prediction::velocity, schedule.alphas_cumprod_double()[t]);
  detail::combine(fn, "x_t", x_t, detail::Coefficient<S>(static_cast<S>(k.from_x)), "v", v,
                  detail::Coefficient<S>(static_cast<S>(k.from_output)), out);
}

template <std::floating_point S, DenseTensor Xt, DenseTensor V>
plain_tensor_t<Xt> predict_eps_from_v(const NoiseSchedule<S>& schedule, const Xt& x_t, int t, const V& v) {
  plain_tensor_t<Xt> out;
  predict_eps_from_v(schedule, x_t, t, v, out);
  return out;
}

}  // namespace ddpm
