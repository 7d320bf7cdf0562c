// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The variational bound in bits per dimension, with improved-diffusion's semantics: the prior term, the
// KL terms L_t for t > 0, the decoder NLL L_0 (discretized Gaussian with the tanh approximation of the
// normal CDF), the hybrid loss of improved DDPM with its gradient, and the full-bound evaluation
// (calc_bpd_loop).                                                  [docs/math.md, Eqs. (23)-(27)]
//
// The terms are evaluated per element in double (long double stays long double), from the schedule's
// double-precision alpha_bar and beta, and cast to S once per sample.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <numbers>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "ddpm/detail/per_timestep.hpp"
#include "ddpm/forward.hpp"
#include "ddpm/gaussian.hpp"
#include "ddpm/loss.hpp"
#include "ddpm/posterior.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/random.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {
namespace detail {

/// The per-timestep coefficients of the bound, in double, as improved-diffusion derives them.
struct VlbCoefficients {
  double sqrt_recip_ab;    // sqrt(1 / alpha_bar)
  double sqrt_recipm1_ab;  // sqrt(1 / alpha_bar - 1), as sqrt((1 - alpha_bar) / alpha_bar)
  double sqrt_ab, sqrt_1mab;
  double coef1, coef2;     // posterior mean = coef1 x0 + coef2 x_t
  double true_log_var;     // posterior_log_variance_clipped[t]
  double model_log_var;    // fixed types: the model's log variance
  double max_log, min_log; // learned_range: log(beta[t]), posterior_log_variance_clipped[t]
};

template <class S>
VlbCoefficients vlb_coefficients(const NoiseSchedule<S>& schedule, VarianceType var, int t) {
  const std::vector<double>& beta = schedule.betas_double();
  const std::vector<double>& ab = schedule.alphas_cumprod_double();
  const int T = schedule.num_train_timesteps();
  const auto post_var = [&](int s) {
    const double a_prev = s > 0 ? ab[static_cast<std::size_t>(s - 1)] : 1.0;
    return beta[static_cast<std::size_t>(s)] * (1.0 - a_prev) / (1.0 - ab[static_cast<std::size_t>(s)]);
  };
  const auto clipped_log = [&](int s) {
    if (s > 0) return std::log(post_var(s));
    return T > 1 ? std::log(post_var(1)) : std::log(beta[0]);
  };
  const auto ts = static_cast<std::size_t>(t);
  const double a = ab[ts];
  const double a_prev = t > 0 ? ab[ts - 1] : 1.0;
  VlbCoefficients k{};
  k.sqrt_recip_ab = std::sqrt(1.0 / a);
  k.sqrt_recipm1_ab = std::sqrt((1.0 - a) / a);
  k.sqrt_ab = std::sqrt(a);
  k.sqrt_1mab = std::sqrt(1.0 - a);
  k.coef1 = beta[ts] * std::sqrt(a_prev) / (1.0 - a);
  k.coef2 = (1.0 - a_prev) * std::sqrt(1.0 - beta[ts]) / (1.0 - a);
  k.true_log_var = clipped_log(t);
  k.max_log = std::log(beta[ts]);
  k.min_log = k.true_log_var;
  switch (var) {
    case VarianceType::fixed_large:
      // improved-diffusion: [posterior_variance[1], beta[1:]], for a better decoder likelihood at t = 0.
      k.model_log_var = t > 0 ? std::log(beta[ts]) : (T > 1 ? std::log(post_var(1)) : std::log(beta[0]));
      break;
    default: k.model_log_var = k.true_log_var; break;
  }
  return k;
}

/// improved-diffusion's approx_standard_normal_cdf: 0.5 (1 + tanh(sqrt(2 / pi) (z + 0.044715 z^3))), and
/// its derivative.
inline constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876373;
inline constexpr double kGeluCubic = 0.044715;

template <class C>
C approx_normal_cdf(C z) {
  return C(0.5) * (C(1) + std::tanh(C(kSqrt2OverPi) * (z + C(kGeluCubic) * z * z * z)));
}

template <class C>
C approx_normal_cdf_derivative(C z) {
  const C th = std::tanh(C(kSqrt2OverPi) * (z + C(kGeluCubic) * z * z * z));
  return C(0.5) * (C(1) - th * th) * C(kSqrt2OverPi) * (C(1) + C(3 * kGeluCubic) * z * z);
}

/// log P(bin of x) under N(mean, exp(log_scale)^2) with the tanh CDF (improved-diffusion's
/// discretized_gaussian_log_likelihood), and d logP / d log_scale when d_log_scale is not null (0 where
/// the 1e-12 clamp is active, as torch.clamp's gradient).
template <class C>
C approx_discretized_log_prob(C x, C mean, C log_scale, C* d_log_scale) {
  const C inv = std::exp(-log_scale);
  const C centered = x - mean;
  const C plus = inv * (centered + C(1) / C(255));
  const C minus = inv * (centered - C(1) / C(255));
  const C floor = C(kDiscretizedMinProbability);
  C p, dp;  // probability and its derivative with respect to log_scale (d plus / d ls = -plus)
  if (x < -C(kDiscretizedEdge)) {
    p = approx_normal_cdf(plus);
    dp = -approx_normal_cdf_derivative(plus) * plus;
  } else if (x > C(kDiscretizedEdge)) {
    p = C(1) - approx_normal_cdf(minus);
    dp = approx_normal_cdf_derivative(minus) * minus;
  } else {
    p = approx_normal_cdf(plus) - approx_normal_cdf(minus);
    dp = -approx_normal_cdf_derivative(plus) * plus + approx_normal_cdf_derivative(minus) * minus;
  }
  if (d_log_scale != nullptr) *d_log_scale = p < floor ? C(0) : dp / p;
  return std::log(std::max(p, floor));
}

/// KL(N(m1, exp(lv1)) || N(m2, exp(lv2))) elementwise (Eq. (17)), with the variance part as
/// expm1(d) - d (d = lv1 - lv2) so that equal variances give exactly 0.
template <class C>
C kl_element(C m1, C lv1, C m2, C lv2) {
  const C d = lv1 - lv2;
  const C dm = m1 - m2;
  return C(0.5) * (std::max(std::expm1(d) - d, C(0)) + dm * dm * std::exp(-lv2));
}

template <class C>
C kl_d_lv2(C m1, C lv1, C m2, C lv2) {
  const C dm = m1 - m2;
  return C(0.5) * (-std::expm1(lv1 - lv2) - dm * dm * std::exp(-lv2));  // expm1: no cancellation near lv1 = lv2
}

/// Validates the bound's arguments: x0 non-empty, x_t shaped like x0, the output like x0 (or with 2C
/// channels for learned_range), t one valid timestep per batch element. Returns the output's batch stride.
template <class S, DenseTensor O, DenseTensor X0, DenseTensor Xt>
Eigen::Index check_vlb_arguments(const char* fn, const NoiseSchedule<S>& schedule, VarianceType var, const O& output,
                                 const X0& x0, const Xt& x_t, std::span<const int> t) {
  static_assert(std::is_same_v<scalar_t<O>, S> && std::is_same_v<scalar_t<X0>, S> && std::is_same_v<scalar_t<Xt>, S>,
                "ddpm: tensors must have the schedule's scalar type");
  static_assert(rank_v<O> == rank_v<X0> && rank_v<Xt> == rank_v<X0> && rank_v<X0> >= 2,
                "ddpm: model_output, x0 and x_t must have the same rank (>= 2, channels in dimension 1)");
  require_nonempty(fn, "x0", x0);
  require_same_shape(fn, "x0", x0, "x_t", x_t);
  check_timesteps(fn, schedule, t, x0.dimension(0));
  switch (var) {
    case VarianceType::fixed_small: case VarianceType::fixed_small_log: case VarianceType::fixed_large:
    case VarianceType::learned_range: break;
    default:
      throw_invalid_argument(std::string(fn) + ": variance_type is " + ddpm::detail::number_string(static_cast<int>(var)) +
                             ", but must be a VarianceType");
  }
  const bool learned = var == VarianceType::learned_range;
  bool ok = output.dimension(0) == x0.dimension(0) && output.dimension(1) == (learned ? 2 : 1) * x0.dimension(1);
  for (int i = 2; i < rank_v<X0>; ++i) ok = ok && output.dimension(i) == x0.dimension(i);
  if (!ok) {
    throw_invalid_argument(std::string(fn) + ": model_output has shape " + shape_string(output) + ", but must have " +
                           (learned ? "twice the channels of x0 (learned_range: prediction, then variance values) "
                                    : "the shape of x0 ") +
                           shape_string(x0));
  }
  return per_sample_size(output);
}

/// One sample's bound term (bits/dim) and what the bpd loop reports; the gradient of the term with
/// respect to the variance values (learned_range, the mean held fixed) into d_var when not null, scaled
/// by grad_scale.
template <class C, class S>
struct VlbSampleResult {
  C term = 0, xstart_mse = 0, eps_mse = 0;
};

template <class C, class S>
VlbSampleResult<C, S> vlb_sample(const VlbCoefficients& k, bool learned, bool decoder, Prediction kind, bool clip,
                                 const S* out, const S* x0, const S* xt, Eigen::Index n, S* d_var, C grad_scale,
                                 const S* eps) {
  const S* vvals = out + n;  // the variance half (learned_range)
  C sum = 0, xs_sum = 0, eps_sum = 0;
  const C inv_ln2_n = C(1) / (C(std::numbers::ln2) * C(n));
  for (Eigen::Index i = 0; i < n; ++i) {
    const C o = static_cast<C>(out[i]), xi = static_cast<C>(xt[i]), x0i = static_cast<C>(x0[i]);
    C px0;
    switch (kind) {
      case Prediction::epsilon: px0 = C(k.sqrt_recip_ab) * xi - C(k.sqrt_recipm1_ab) * o; break;
      case Prediction::sample: px0 = o; break;
      default: px0 = C(k.sqrt_ab) * xi - C(k.sqrt_1mab) * o; break;
    }
    if (clip) px0 = std::clamp(px0, C(-1), C(1));
    const C mean = C(k.coef1) * px0 + C(k.coef2) * xi;
    C lv = C(k.model_log_var), dlv_dv = 0;
    if (learned) {
      const C frac = (static_cast<C>(vvals[i]) + C(1)) / C(2);
      lv = frac * C(k.max_log) + (C(1) - frac) * C(k.min_log);
      dlv_dv = (C(k.max_log) - C(k.min_log)) / C(2);
    }
    if (decoder) {
      C dls = 0;
      sum -= approx_discretized_log_prob<C>(x0i, mean, C(0.5) * lv, d_var != nullptr ? &dls : nullptr);
      if (d_var != nullptr) d_var[i] = static_cast<S>(grad_scale * inv_ln2_n * (-dls) * C(0.5) * dlv_dv);
    } else {
      const C true_mean = C(k.coef1) * x0i + C(k.coef2) * xi;
      sum += kl_element<C>(true_mean, C(k.true_log_var), mean, lv);
      if (d_var != nullptr) {
        d_var[i] = static_cast<S>(grad_scale * inv_ln2_n * kl_d_lv2<C>(true_mean, C(k.true_log_var), mean, lv) * dlv_dv);
      }
    }
    if (eps != nullptr) {
      const C e = (C(k.sqrt_recip_ab) * xi - px0) / C(k.sqrt_recipm1_ab) - static_cast<C>(eps[i]);
      xs_sum += (px0 - x0i) * (px0 - x0i);
      eps_sum += e * e;
    }
  }
  VlbSampleResult<C, S> r;
  r.term = sum * inv_ln2_n;
  r.xstart_mse = xs_sum / C(n);
  r.eps_mse = eps_sum / C(n);
  return r;
}

template <class S>
using vlb_compute_t = std::common_type_t<S, double>;

}  // namespace detail

/// The per-sample term of the variational bound in bits/dim (improved-diffusion's _vb_terms_bpd).
///                                                                        [docs/math.md, Eqs. (23)-(25)]
///   t > 0:  L_t = mean_i KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) / ln 2            (Eq. (24))
///   t = 0:  L_0 = -mean_i log P_tanh(x0 | mean, exp(log_var / 2)) / ln 2                  (Eq. (25))
/// where q has the posterior mean and posterior_log_variance_clipped[t], and p has the mean
/// coef1[t] x0_hat + coef2[t] x_t with x0_hat from the output of the prediction kind (clamped to [-1, 1]
/// when clip_denoised; improved-diffusion's training loss does not clip, its calc_bpd_loop does) and the
/// log variance of the VarianceType: fixed_small (and fixed_small_log) posterior_log_variance_clipped[t];
/// fixed_large log of [posterior_variance[1], beta[1:]][t]; learned_range frac log(beta[t]) + (1 - frac)
/// posterior_log_variance_clipped[t], frac = (v + 1) / 2, v the second half of the 2C output channels.
/// P_tanh is the discretized Gaussian of Eq. (18) with improved-diffusion's tanh approximation of Phi
/// (not gaussian.hpp's exact CDF), so results are improved-diffusion's.
/// Throws ddpm::invalid_argument if x0 is empty, x_t differs in shape from x0, model_output is not x0's
/// shape (2C channels for learned_range), t does not hold one timestep in [0, T) per batch element, or
/// variance_type is not a VarianceType.
template <std::floating_point S, DenseTensor O, DenseTensor X0, DenseTensor Xt>
Tensor<S, 1> vb_terms_bpd(const NoiseSchedule<S>& schedule, VarianceType variance_type, const O& model_output,
                          const X0& x0, const Xt& x_t, std::span<const int> t, Prediction kind = Prediction::epsilon,
                          bool clip_denoised = false) {
  using C = detail::vlb_compute_t<S>;
  constexpr const char* fn = "ddpm::vb_terms_bpd";
  const Eigen::Index stride = detail::check_vlb_arguments(fn, schedule, variance_type, model_output, x0, x_t, t);
  const Eigen::Index batch = x0.dimension(0), n = detail::per_sample_size(x0);
  Tensor<S, 1> result(batch);
  for (Eigen::Index b = 0; b < batch; ++b) {
    const int tb = t[static_cast<std::size_t>(b)];
    const detail::VlbCoefficients k = detail::vlb_coefficients(schedule, variance_type, tb);
    result(b) = static_cast<S>(detail::vlb_sample<C, S>(k, variance_type == VarianceType::learned_range, tb == 0, kind,
                                                        clip_denoised, model_output.data() + b * stride,
                                                        x0.data() + b * n, x_t.data() + b * n, n, nullptr, C(0), nullptr)
                                   .term);
  }
  return result;
}

/// The prior term of the bound in bits/dim (improved-diffusion's _prior_bpd), per sample:
///   L_T = mean_i KL(N(sqrt(alpha_bar[T-1]) x0, 1 - alpha_bar[T-1]) || N(0, 1)) / ln 2      [docs/math.md, Eq. (23)]
/// It does not depend on the model. Evaluated as 0.5 (alpha_bar x0^2 - alpha_bar - log1p(-alpha_bar)), which
/// equals Eq. (17) without its cancellation. Throws ddpm::invalid_argument if x0 is empty.
template <std::floating_point S, DenseTensor X0>
Tensor<S, 1> prior_bpd(const NoiseSchedule<S>& schedule, const X0& x0) {
  using C = detail::vlb_compute_t<S>;
  static_assert(std::is_same_v<scalar_t<X0>, S>, "ddpm: x0 must have the schedule's scalar type");
  detail::require_nonempty("ddpm::prior_bpd", "x0", x0);
  const C a = static_cast<C>(schedule.alphas_cumprod_double().back());
  const C constant = -a - std::log1p(-a);  // -1 + (1 - a) - log(1 - a)
  const Eigen::Index batch = x0.dimension(0), n = detail::per_sample_size(x0);
  Tensor<S, 1> result(batch);
  for (Eigen::Index b = 0; b < batch; ++b) {
    C sum = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const C x = static_cast<C>(x0.data()[b * n + i]);
      sum += C(0.5) * (constant + a * x * x);
    }
    result(b) = static_cast<S>(sum / (C(n) * C(std::numbers::ln2)));
  }
  return result;
}

/// The hybrid loss's parts, per sample.
template <std::floating_point S>
struct HybridLossValue {
  S loss = S(0);                            ///< mean over the batch of weight[b] * (mse[b] + vb[b])
  Eigen::Array<S, Eigen::Dynamic, 1> mse;   ///< mean over C, H, W of (target - mean half)^2
  Eigen::Array<S, Eigen::Dynamic, 1> vb;    ///< the bound term in bits/dim times T / 1000 (RESCALED_MSE)
};

/// The hybrid loss of improved DDPM (Nichol & Dhariwal 2021, L_hybrid; improved-diffusion's RESCALED_MSE
/// with learned_range) and its gradient with respect to the whole 2C-channel output.  [docs/math.md, Eq. (26)]
///   loss = (1 / N) sum_b w[b] (mse[b] + (T / 1000) L_t[b](stop_grad(mean half), variance half))
/// with mse[b] the simple loss of the mean half against `target` and L_t the bound term of vb_terms_bpd
/// (learned_range, no clipping). The mean half's gradient is the simple loss's alone (Eq. (21)); the
/// variance half's is the bound's alone,
///   d loss / d v = w[b] / N * (T / 1000) * dL_t / dlog_var * (log beta[t] - posterior_log_variance_clipped[t]) / 2
/// with dL_t / dlog_var from Eq. (17) for t > 0 and from the tanh CDF of Eq. (25) at t = 0 (0 where the
/// 1e-12 clamp is active). grad gets model_output's shape (a Tensor is resized, a map must match).
/// Throws as vb_terms_bpd (with learned_range), and if target differs in shape from x0 or weights is
/// neither empty nor one per batch element.
template <std::floating_point S, DenseTensor O, DenseTensor X0, DenseTensor Xt, DenseTensor Tg, MutableDenseTensor G>
HybridLossValue<S> hybrid_loss_and_gradient(const NoiseSchedule<S>& schedule, const O& model_output, const X0& x0,
                                            const Xt& x_t, std::span<const int> t, const Tg& target,
                                            std::span<const S> weights, G&& grad,
                                            Prediction kind = Prediction::epsilon) {
  using C = detail::vlb_compute_t<S>;
  constexpr const char* fn = "ddpm::hybrid_loss_and_gradient";
  const Eigen::Index stride =
      detail::check_vlb_arguments(fn, schedule, VarianceType::learned_range, model_output, x0, x_t, t);
  detail::require_same_shape(fn, "x0", x0, "target", target);
  const Eigen::Index batch = x0.dimension(0), n = detail::per_sample_size(x0);
  if (!weights.empty() && static_cast<Eigen::Index>(weights.size()) != batch) {
    detail::throw_invalid_argument(std::string(fn) + ": weights holds " + ddpm::detail::number_string(weights.size()) +
                                   " values, but must be empty or hold one per batch element (" +
                                   ddpm::detail::number_string(batch) + ")");
  }
  detail::prepare_output(fn, grad, model_output);
  const C rescale = C(schedule.num_train_timesteps()) / C(1000);
  HybridLossValue<S> r;
  r.mse.resize(batch);
  r.vb.resize(batch);
  C total = 0;
  for (Eigen::Index b = 0; b < batch; ++b) {
    const int tb = t[static_cast<std::size_t>(b)];
    const C w = weights.empty() ? C(1) : static_cast<C>(weights[static_cast<std::size_t>(b)]);
    const S* ob = model_output.data() + b * stride;
    S* gb = grad.data() + b * stride;
    const S mse_scale = static_cast<S>(C(2) * w / (C(batch) * C(n)));
    const C mse = static_cast<C>(detail::squared_error_sum(ob, target.data() + b * n, gb, mse_scale, n)) / C(n);
    const detail::VlbCoefficients k = detail::vlb_coefficients(schedule, VarianceType::learned_range, tb);
    const C vb = detail::vlb_sample<C, S>(k, true, tb == 0, kind, false, ob, x0.data() + b * n, x_t.data() + b * n, n,
                                          gb + n, w * rescale / C(batch), nullptr)
                     .term *
                 rescale;
    r.mse[b] = static_cast<S>(mse);
    r.vb[b] = static_cast<S>(vb);
    total += w * (mse + vb);
  }
  r.loss = static_cast<S>(total / C(batch));
  return r;
}

/// The hybrid loss alone (no gradient): the same values as hybrid_loss_and_gradient.
template <std::floating_point S, DenseTensor O, DenseTensor X0, DenseTensor Xt, DenseTensor Tg>
HybridLossValue<S> hybrid_loss(const NoiseSchedule<S>& schedule, const O& model_output, const X0& x0, const Xt& x_t,
                               std::span<const int> t, const Tg& target, std::span<const S> weights = {},
                               Prediction kind = Prediction::epsilon) {
  Tensor<S, rank_v<O>> grad;
  return hybrid_loss_and_gradient(schedule, model_output, x0, x_t, t, target, weights, grad, kind);
}

/// What calc_bpd_loop reports, per sample (rows) and timestep index (columns of the N x T arrays).
template <std::floating_point S>
struct BpdResult {
  Eigen::Array<S, Eigen::Dynamic, 1> total_bpd;   ///< sum over t of vb(:, t) + prior_bpd
  Eigen::Array<S, Eigen::Dynamic, 1> prior_bpd;   ///< Eq. (23)
  Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic> vb;          ///< L_t in bits/dim (Eqs. (24)-(25))
  Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic> xstart_mse;  ///< mean (x0_hat - x0)^2
  Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic> mse;         ///< mean (eps_hat - eps)^2
};

/// The whole variational bound of a model on data in bits/dim (improved-diffusion's calc_bpd_loop), the
/// negative log-likelihood bound papers report.                                     [docs/math.md, Eq. (27)]
/// For t = T-1 down to 0: eps = the next x0.size() normals of `noise`, x_t = q_sample(x0, t, eps), output =
/// model(x_t, training timesteps) with one training timestep per sample (schedule.timestep_map()[t]), and
/// vb(:, t) = vb_terms_bpd(output, clip_denoised); then total = sum_t vb(:, t) + prior_bpd(x0).
/// `model` is callable as model(const Tensor<S,R>& x_t, std::span<const int> t) -> something convertible
/// to Tensor<S,R> (x0's shape, 2C channels for learned_range). clip_denoised defaults to true, as in
/// improved-diffusion's calc_bpd_loop. Throws as vb_terms_bpd.
template <std::floating_point S, DenseTensor X0, class Model>
BpdResult<S> calc_bpd_loop(const NoiseSchedule<S>& schedule, VarianceType variance_type, Model&& model, const X0& x0,
                           NoiseSource& noise, Prediction kind = Prediction::epsilon, bool clip_denoised = true) {
  using C = detail::vlb_compute_t<S>;
  constexpr int R = rank_v<X0>;
  constexpr const char* fn = "ddpm::calc_bpd_loop";
  static_assert(std::is_same_v<scalar_t<X0>, S>, "ddpm: x0 must have the schedule's scalar type");
  detail::require_nonempty(fn, "x0", x0);
  const int T = schedule.num_train_timesteps();
  const Eigen::Index batch = x0.dimension(0), n = detail::per_sample_size(x0);
  BpdResult<S> r;
  r.vb.resize(batch, T);
  r.xstart_mse.resize(batch, T);
  r.mse.resize(batch, T);
  Tensor<S, R> eps(x0.dimensions()), x_t(x0.dimensions());
  std::vector<int> t_batch(static_cast<std::size_t>(batch)), model_t(static_cast<std::size_t>(batch));
  for (int t = T - 1; t >= 0; --t) {
    std::fill(t_batch.begin(), t_batch.end(), t);
    std::fill(model_t.begin(), model_t.end(), schedule.timestep_map()[static_cast<std::size_t>(t)]);
    noise(eps);
    q_sample(schedule, x0, std::span<const int>(t_batch), eps, x_t);
    const Tensor<S, R> output = model(static_cast<const Tensor<S, R>&>(x_t), std::span<const int>(model_t));
    const Eigen::Index stride =
        detail::check_vlb_arguments(fn, schedule, variance_type, output, x0, x_t, std::span<const int>(t_batch));
    const detail::VlbCoefficients k = detail::vlb_coefficients(schedule, variance_type, t);
    for (Eigen::Index b = 0; b < batch; ++b) {
      const auto s = detail::vlb_sample<C, S>(k, variance_type == VarianceType::learned_range, t == 0, kind,
                                              clip_denoised, output.data() + b * stride, x0.data() + b * n,
                                              x_t.data() + b * n, n, nullptr, C(0), eps.data() + b * n);
      r.vb(b, t) = static_cast<S>(s.term);
      r.xstart_mse(b, t) = static_cast<S>(s.xstart_mse);
      r.mse(b, t) = static_cast<S>(s.eps_mse);
    }
  }
  const Tensor<S, 1> prior = prior_bpd(schedule, x0);
  r.prior_bpd.resize(batch);
  r.total_bpd.resize(batch);
  for (Eigen::Index b = 0; b < batch; ++b) {
    r.prior_bpd[b] = prior(b);
    C sum = 0;
    for (int t = 0; t < T; ++t) sum += static_cast<C>(r.vb(b, t));
    r.total_bpd[b] = static_cast<S>(sum + static_cast<C>(prior(b)));
  }
  return r;
}

}  // namespace ddpm
