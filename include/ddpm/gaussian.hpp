// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The Gaussian terms of the variational bound: the log density of a diagonal Gaussian, the KL divergence
// between two of them, and the discretized Gaussian log-likelihood of 8-bit data, plus mean_flat, the
// per-sample mean that turns elementwise terms into per-sample losses.   [docs/math.md, Eqs. (16)-(18)]
// Every function accepts Tensor, TensorMap and ConstTensorMap arguments (float or double), takes a log
// variance (or log scale) either as one scalar shared by every element - the `log_variance` of a
// ddpm::Gaussian - or as a tensor of the data's shape, and has a form that writes into the caller's `out`
// (resized if it is a Tensor, checked if it is a map; `out` may be one of the inputs).

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <limits>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/tensor.hpp"

namespace ddpm {

/// A log-variance or log-scale argument: one arithmetic scalar shared by every element, or a DenseTensor
/// with the shape of the data.
template <class T>
concept ScalarOrDenseTensor =
    DenseTensor<T> || (std::is_arithmetic_v<std::remove_cvref_t<T>> && !std::same_as<std::remove_cvref_t<T>, bool>);

namespace detail {

template <class S>
using GaussianArray = Eigen::Array<S, Eigen::Dynamic, 1>;
template <class S>
using GaussianConstMap = Eigen::Map<const GaussianArray<S>, Eigen::Unaligned>;
template <class S>
using GaussianMap = Eigen::Map<GaussianArray<S>, Eigen::Unaligned>;

/// The elements [begin, begin + n) of a tensor argument as a flat array, or a scalar argument broadcast
/// to n elements.
template <class S, class T>
auto gaussian_segment(const T& t, Eigen::Index begin, Eigen::Index n) {
  if constexpr (DenseTensor<T>) {
    return GaussianConstMap<S>(t.data() + begin, n);
  } else {
    return GaussianArray<S>::Constant(n, static_cast<S>(t));
  }
}

// The elementwise kernels run block by block into an aligned buffer on the stack. Eigen evaluates exp
// with packets from an aligned start and with std::exp for unaligned heads and tails, and the two can
// differ in the last bit; through the buffer every element takes a path fixed by its index and the
// tensor's size alone, so a Tensor, a TensorMap over an unaligned buffer and an aliased `out` give
// identical results.
inline constexpr Eigen::Index kGaussianBlock = 256;
template <class S>
using GaussianBlock = Eigen::Array<S, Eigen::Dynamic, 1, Eigen::ColMajor, kGaussianBlock, 1>;

/// Calls block(buffer, begin, length) for consecutive ranges of [0, n) and copies each buffer to out.
template <class S, class F>
void gaussian_blockwise(S* out, Eigen::Index n, F&& block) {
  GaussianBlock<S> buffer;
  for (Eigen::Index begin = 0; begin < n; begin += kGaussianBlock) {
    const Eigen::Index length = std::min(kGaussianBlock, n - begin);
    buffer.resize(length);
    block(buffer, begin, length);
    GaussianMap<S>(out + begin, length) = buffer;
  }
}

/// Checks a scalar-or-tensor argument against the reference tensor `like`: a tensor must have its scalar
/// type (at compile time) and its shape.
template <class S, class T, DenseTensor Like>
void gaussian_check_argument(const char* fn, const char* like_name, const Like& like, const char* name, const T& t) {
  if constexpr (DenseTensor<T>) {
    static_assert(std::is_same_v<scalar_t<T>, S>, "ddpm: all tensor arguments must have the same scalar type");
    require_same_shape(fn, like_name, like, name, t);
  }
}

inline std::string gaussian_value_text(long double v) { return number_string(v); }

/// P(a < Z <= b) for a standard normal Z and a <= b, accurate in both tails: the two probabilities that are
/// subtracted are always the smaller tails (erfc of the side away from zero), and a bin that straddles zero
/// adds two erf values of opposite sign, so nothing is lost to cancellation against 1.
template <class C>
C standard_normal_mass(C a, C b) {
  constexpr C inv_sqrt2 = C(0.707106781186547524400844362104849039L);
  if (a >= C(0)) return C(0.5) * (std::erfc(a * inv_sqrt2) - std::erfc(b * inv_sqrt2));
  if (b <= C(0)) return C(0.5) * (std::erfc(-b * inv_sqrt2) - std::erfc(-a * inv_sqrt2));
  return C(0.5) * (std::erf(b * inv_sqrt2) - std::erf(a * inv_sqrt2));
}

/// Phi(z) = P(Z <= z), accurate (relative) in the lower tail; use Phi(-z) for the upper tail.
template <class C>
C standard_normal_cdf(C z) {
  constexpr C inv_sqrt2 = C(0.707106781186547524400844362104849039L);
  return C(0.5) * std::erfc(-z * inv_sqrt2);
}

// improved-diffusion's constants: bins of width 2/255 centred on the 256 levels of [-1, 1], the outer
// bins recognised by |x| > 0.999, and probabilities clamped at 1e-12 before the log.
inline constexpr double kDiscretizedEdge = 0.999;
inline constexpr double kDiscretizedMinProbability = 1e-12;

/// log P(bin of x) under N(mean, exp(log_scale)^2), computed in C (double, or long double).
template <class C>
C discretized_gaussian_log_prob(C x, C mean, C log_scale) {
  // A vanishing scale would give inv_sigma = inf and inf * 0 = NaN for x on a bin edge; the largest finite
  // value gives the same limits without the NaN (a NaN log_scale still propagates through std::min).
  const C inv_sigma = std::min(std::exp(-log_scale), std::numeric_limits<C>::max());
  const C centered = x - mean;
  const C half_bin = C(1) / C(255);
  const C upper = inv_sigma * (centered + half_bin);
  const C lower = inv_sigma * (centered - half_bin);
  C p;
  if (x < -C(kDiscretizedEdge)) {
    p = standard_normal_cdf(upper);  // (-inf, x + 1/255]
  } else if (x > C(kDiscretizedEdge)) {
    p = standard_normal_cdf(-lower);  // (x - 1/255, inf), as the lower tail of -Z
  } else {
    p = standard_normal_mass(lower, upper);
  }
  return std::log(std::max(p, C(kDiscretizedMinProbability)));
}

}  // namespace detail

/// Elementwise log density of a diagonal Gaussian.                              [docs/math.md, Eq. (16)]
///   log N(x; mean, exp(log_variance)) = -0.5 * (log(2 pi) + log_variance + (x - mean)^2 * exp(-log_variance))
/// log_variance is one scalar for every element or a tensor of x's shape. Evaluated in the tensors'
/// scalar type as -0.5 * (log(2 pi) + log_variance) - 0.5 * ((x - mean) * exp(-log_variance / 2))^2, so a
/// tiny variance overflows only where log_variance < -2 * log(max value of the type).
/// Throws ddpm::invalid_argument if x is empty, or mean, a tensor log_variance or a map `out` differs in
/// shape from x.
template <DenseTensor X, DenseTensor M, ScalarOrDenseTensor LV, MutableDenseTensor Out>
void normal_log_density(const X& x, const M& mean, const LV& log_variance, Out&& out) {
  using S = scalar_t<X>;
  constexpr const char* fn = "ddpm::normal_log_density";
  static_assert(std::is_same_v<scalar_t<M>, S> && std::is_same_v<scalar_t<Out>, S>,
                "ddpm: all tensor arguments must have the same scalar type");
  detail::require_nonempty(fn, "x", x);
  detail::require_same_shape(fn, "x", x, "mean", mean);
  detail::gaussian_check_argument<S>(fn, "x", x, "log_variance", log_variance);
  detail::prepare_output(fn, out, x);
  constexpr S log_2pi = S(1.83787706640934548356065947281123527L);
  const auto block = [&](detail::GaussianBlock<S>& o, Eigen::Index begin, Eigen::Index length) {
    const detail::GaussianConstMap<S> xs(x.data() + begin, length);
    const detail::GaussianConstMap<S> ms(mean.data() + begin, length);
    if constexpr (DenseTensor<LV>) {
      const detail::GaussianConstMap<S> lv(log_variance.data() + begin, length);
      o = S(-0.5) * (log_2pi + lv) - S(0.5) * ((xs - ms) * (S(-0.5) * lv).exp()).square();
    } else {
      const S lv = static_cast<S>(log_variance);
      o = S(-0.5) * (log_2pi + lv) - S(0.5) * ((xs - ms) * std::exp(S(-0.5) * lv)).square();
    }
  };
  detail::gaussian_blockwise(out.data(), x.size(), block);
}

template <DenseTensor X, DenseTensor M, ScalarOrDenseTensor LV>
plain_tensor_t<X> normal_log_density(const X& x, const M& mean, const LV& log_variance) {
  plain_tensor_t<X> out;
  normal_log_density(x, mean, log_variance, out);
  return out;
}

/// Elementwise KL divergence KL(N1 || N2) between diagonal Gaussians.           [docs/math.md, Eq. (17)]
///   KL = 0.5 * (-1 + lv2 - lv1 + exp(lv1 - lv2) + (mean1 - mean2)^2 * exp(-lv2))
/// (improved-diffusion's losses.normal_kl), with lv1 = log_variance1, lv2 = log_variance2, each one scalar or
/// a tensor of mean1's shape. The variance part is evaluated as max(expm1(d) - d, 0) with d = lv1 - lv2, so
/// it is exactly 0 for equal variances and never negative through rounding; the result is >= 0.
/// Throws ddpm::invalid_argument if mean1 is empty, or mean2, a tensor log variance or a map `out` differs
/// in shape from mean1.
template <DenseTensor M1, ScalarOrDenseTensor LV1, DenseTensor M2, ScalarOrDenseTensor LV2, MutableDenseTensor Out>
void normal_kl(const M1& mean1, const LV1& log_variance1, const M2& mean2, const LV2& log_variance2, Out&& out) {
  using S = scalar_t<M1>;
  constexpr const char* fn = "ddpm::normal_kl";
  static_assert(std::is_same_v<scalar_t<M2>, S> && std::is_same_v<scalar_t<Out>, S>,
                "ddpm: all tensor arguments must have the same scalar type");
  detail::require_nonempty(fn, "mean1", mean1);
  detail::gaussian_check_argument<S>(fn, "mean1", mean1, "log_variance1", log_variance1);
  detail::require_same_shape(fn, "mean1", mean1, "mean2", mean2);
  detail::gaussian_check_argument<S>(fn, "mean1", mean1, "log_variance2", log_variance2);
  detail::prepare_output(fn, out, mean1);
  // Scalar std::expm1 rather than Eigen's packet expm1, which GCC 12 with AVX-512 rejects under
  // -Werror=uninitialized (GCC PR 105593, inside the intrinsics it inlines).
  const auto variance_part = [](S d) { return S(0.5) * std::max(std::expm1(d) - d, S(0)); };
  const auto block = [&](detail::GaussianBlock<S>& o, Eigen::Index begin, Eigen::Index length) {
    const detail::GaussianConstMap<S> m1(mean1.data() + begin, length);
    const detail::GaussianConstMap<S> m2(mean2.data() + begin, length);
    if constexpr (!DenseTensor<LV1> && !DenseTensor<LV2>) {
      const S lv1 = static_cast<S>(log_variance1), lv2 = static_cast<S>(log_variance2);
      o = variance_part(lv1 - lv2) + S(0.5) * std::exp(-lv2) * (m1 - m2).square();
    } else {
      const auto evaluate = [&](const auto& lv1, const auto& lv2) {
        o = (lv1 - lv2).unaryExpr(variance_part) + S(0.5) * (m1 - m2).square() * (-lv2).exp();
      };
      evaluate(detail::gaussian_segment<S>(log_variance1, begin, length),
               detail::gaussian_segment<S>(log_variance2, begin, length));
    }
  };
  detail::gaussian_blockwise(out.data(), mean1.size(), block);
}

template <DenseTensor M1, ScalarOrDenseTensor LV1, DenseTensor M2, ScalarOrDenseTensor LV2>
plain_tensor_t<M1> normal_kl(const M1& mean1, const LV1& log_variance1, const M2& mean2, const LV2& log_variance2) {
  plain_tensor_t<M1> out;
  normal_kl(mean1, log_variance1, mean2, log_variance2, out);
  return out;
}

/// Elementwise log-likelihood of data quantised to 256 levels in [-1, 1] under N(mean, exp(log_scale)^2),
/// the decoder term L_0 of the variational bound.                               [docs/math.md, Eq. (18)]
///   log P(x) = log(Phi((x + 1/255 - mean) / sigma) - Phi((x - 1/255 - mean) / sigma)),  sigma = exp(log_scale)
/// where the bin [x - 1/255, x + 1/255] of width 2/255 becomes (-inf, x + 1/255] for x < -0.999 and
/// (x - 1/255, +inf) for x > 0.999, and P is clamped to at least 1e-12 before the log, so every result lies
/// in [log(1e-12), 0] = [-27.631..., 0] (NaN only from a NaN mean or log_scale). log_scale is the log of the
/// standard deviation (half the log variance), one scalar or a tensor of x's shape.
/// These are the semantics of improved-diffusion's losses.discretized_gaussian_log_likelihood, with one
/// difference: Phi here is the exact normal CDF (std::erfc, evaluated in double - long double for long
/// double tensors - with each probability formed from the smaller tail), where improved-diffusion uses the
/// approximation 0.5 * (1 + tanh(sqrt(2 / pi) * (z + 0.044715 z^3))). That approximation is off by up to
/// 1.8e-4 in the CDF; the two log-likelihoods differ by under 1e-3 nats for bins within one standard
/// deviation of the mean, under 8e-3 within two, about 0.1 within three, and by up to 5 nats in the far
/// tails (bin masses near 1e-10, which the approximation puts near the 1e-12 clamp).
/// Throws ddpm::invalid_argument if x is empty, an element of x is outside [-1, 1] (or NaN), or mean, a
/// tensor log_scale or a map `out` differs in shape from x.
template <DenseTensor X, DenseTensor M, ScalarOrDenseTensor LS, MutableDenseTensor Out>
void discretized_gaussian_log_likelihood(const X& x, const M& mean, const LS& log_scale, Out&& out) {
  using S = scalar_t<X>;
  using C = std::common_type_t<S, double>;
  constexpr const char* fn = "ddpm::discretized_gaussian_log_likelihood";
  static_assert(std::is_same_v<scalar_t<M>, S> && std::is_same_v<scalar_t<Out>, S>,
                "ddpm: all tensor arguments must have the same scalar type");
  detail::require_nonempty(fn, "x", x);
  detail::require_same_shape(fn, "x", x, "mean", mean);
  detail::gaussian_check_argument<S>(fn, "x", x, "log_scale", log_scale);
  const Eigen::Index n = x.size();
  const S* xs = x.data();
  if (!(detail::GaussianConstMap<S>(xs, n) >= S(-1) && detail::GaussianConstMap<S>(xs, n) <= S(1)).all()) {
    for (Eigen::Index i = 0; i < n; ++i) {
      if (!(xs[i] >= S(-1) && xs[i] <= S(1))) {
        detail::throw_invalid_argument(std::string(fn) + ": x[" + ddpm::detail::number_string(i) + "] (flat index) is " +
                                       detail::gaussian_value_text(xs[i]) + ", but every element must be in [-1, 1]");
      }
    }
  }
  detail::prepare_output(fn, out, x);
  const S* ms = mean.data();
  S* os = out.data();
  // One erf/erfc pair per element dominates the cost; elements are independent, so threads cannot change
  // the result.
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= 2 * detail::kParallelGrain)
#endif
  for (Eigen::Index i = 0; i < n; ++i) {
    C ls;
    if constexpr (DenseTensor<LS>) {
      ls = static_cast<C>(log_scale.data()[i]);
    } else {
      ls = static_cast<C>(log_scale);
    }
    os[i] = static_cast<S>(detail::discretized_gaussian_log_prob<C>(static_cast<C>(xs[i]), static_cast<C>(ms[i]), ls));
  }
}

template <DenseTensor X, DenseTensor M, ScalarOrDenseTensor LS>
plain_tensor_t<X> discretized_gaussian_log_likelihood(const X& x, const M& mean, const LS& log_scale) {
  plain_tensor_t<X> out;
  discretized_gaussian_log_likelihood(x, mean, log_scale, out);
  return out;
}

/// The mean over every dimension but the first (batch) one: one value per batch element, e.g. a per-sample
/// loss from an elementwise KL or log-likelihood (improved-diffusion's mean_flat). Accumulates in double
/// (long double for long double tensors).
///   result[b] = (1 / n) * sum_i t[b, i],  n = the number of elements per batch element
/// Throws ddpm::invalid_argument if t is empty.
template <DenseTensor T>
Eigen::Array<scalar_t<T>, Eigen::Dynamic, 1> mean_flat(const T& t) {
  using S = scalar_t<T>;
  using C = std::common_type_t<S, double>;
  detail::require_nonempty("ddpm::mean_flat", "t", t);
  const Eigen::Index batch = t.dimension(0);
  const Eigen::Index per_sample = detail::per_sample_size(t);
  Eigen::Array<S, Eigen::Dynamic, 1> result(batch);
  for (Eigen::Index b = 0; b < batch; ++b) {
    const C sum = detail::GaussianConstMap<S>(t.data() + b * per_sample, per_sample).template cast<C>().sum();
    result[b] = static_cast<S>(sum / static_cast<C>(per_sample));
  }
  return result;
}

}  // namespace ddpm
