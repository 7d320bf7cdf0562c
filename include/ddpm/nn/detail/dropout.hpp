// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Dropout as PyTorch's nn.Dropout (diffusers' ResnetBlock2D applies it to the hidden state before conv2):
// in training each element is kept with probability 1 - p and the kept ones are scaled by 1 / (1 - p);
// in evaluation it is the identity. The mask comes from a NoiseSource, so a training step is reproducible
// from (seed, offset):
//   keep[s] = !(z[offset + s] < Phi^{-1}(p))                                         [docs/math.md, Eq. (19)]
// where z is the source's standard-normal stream and s the element's index in NCHW order (image b,
// channel c, pixel i: s = (b C + c) H W + i), so an image's mask does not depend on the layout or on the
// images after it. P(z < Phi^{-1}(p)) = p, exact up to the generator. A pass advances the source by the
// element count whatever p is (p = 0 and p = 1 draw nothing: their masks are all ones and all zeros).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numbers>
#include <span>
#include <string>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/random.hpp"

namespace ddpm::nn::detail {

/// Phi^{-1}(p), the standard normal quantile, for p in (0, 1), to about 1 ulp: Acklam's rational
/// approximation (relative error 1.2e-9) refined by one Halley step on Phi(x) - p, with Phi from erfc (which
/// keeps the lower tail's relative precision). Phi^{-1}(0) = -inf, Phi^{-1}(1) = +inf; NaN outside [0, 1].
inline double inverse_normal_cdf(double p) {
  if (!(p >= 0.0 && p <= 1.0)) return std::numeric_limits<double>::quiet_NaN();
  if (p == 0.0) return -std::numeric_limits<double>::infinity();
  if (p == 1.0) return std::numeric_limits<double>::infinity();
  constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                          1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                          6.680131188771972e+01, -1.328068155288572e+01};
  constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                          -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                          3.754408661907416e+00};
  constexpr double p_low = 0.02425;
  double x;
  if (p < p_low || p > 1.0 - p_low) {
    const double q = std::sqrt(-2.0 * std::log(p < p_low ? p : 1.0 - p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    if (p > p_low) x = -x;
  } else {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  }
  // Halley: with e = Phi(x) - p and u = e / phi(x), x -= u / (1 + x u / 2). In the upper half the error is
  // taken as (1 - p) - Phi(-x), so the upper tail keeps the precision that erfc gives the lower one
  // (1 - p is exact for p > 1/2, Sterbenz)
  const double err = p > 0.5 ? (1.0 - p) - 0.5 * std::erfc(x / std::numbers::sqrt2)
                             : 0.5 * std::erfc(-x / std::numbers::sqrt2) - p;
  const double u = err * std::sqrt(2.0 * std::numbers::pi) * std::exp(0.5 * x * x);
  return x - u / (1.0 + 0.5 * x * u);
}

/// Throws ddpm::invalid_argument naming fn unless p is in [0, 1].
inline void check_dropout_probability(const char* fn, double p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": p is " + ddpm::detail::number_string(p) + ", but must be in [0, 1]");
  }
}

/// The factor of a kept element: 1 / (1 - p) rounded to S (0 when p = 1, when nothing is kept).
template <class S>
S dropout_keep_scale(double p) {
  return p < 1.0 ? static_cast<S>(1.0 / (1.0 - p)) : S(0);
}

/// Dropout's forward pass on a channel-major map:                               [docs/math.md, Eq. (19)]
///   training:   keep = !(z < Phi^{-1}(p)) (the top of this header), out = x * (keep ? 1 / (1 - p) : 0),
///               mask[k] = keep (1 or 0) at the element's place in the map, noise advanced by x.size()
///   evaluation: out = x; nothing drawn, mask not written (it may be null)
/// The mask does not depend on S (the normals are drawn in float for both) nor on ctx's thread count. out
/// may be x.
/// Throws ddpm::invalid_argument if p is outside [0, 1], the shapes differ, mask is null in training, or the
/// draws run past the end of the noise stream.
template <class S>
void dropout_forward(Context<S>& ctx, double p, bool training, NoiseSource& noise, FeatureMap<const S> x,
                     FeatureMap<S> out, std::uint8_t* mask) {
  constexpr const char* fn = "ddpm::nn::detail::dropout_forward";
  check_dropout_probability(fn, p);
  if (out.channels != x.channels || out.batch != x.batch || out.height != x.height || out.width != x.width) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": out has " + ddpm::detail::number_string(out.size()) +
                                         " elements in a different shape, but must have the shape of x (" +
                                         ddpm::detail::number_string(x.size()) + " elements)");
  }
  const Eigen::Index total = x.size();
  if (!training) {
    if (out.data != x.data) std::memmove(out.data, x.data, static_cast<std::size_t>(total) * sizeof(S));
    return;
  }
  if (mask == nullptr) ddpm::detail::throw_invalid_argument(std::string(fn) + ": mask must not be null in training");
  const std::uint64_t first = noise.offset(), n = static_cast<std::uint64_t>(total);
  if (n > std::numeric_limits<std::uint64_t>::max() - first) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": " + ddpm::detail::number_string(n) + " draws from offset " +
                                         ddpm::detail::number_string(first) + " run past the end of the stream (2^64 - 1 numbers)");
  }
  if (total == 0) return;
  const S scale = dropout_keep_scale<S>(p);
  if (p == 0.0 || p == 1.0) {  // all kept or all dropped: no number of the stream can change that
    const std::uint8_t keep = p == 0.0 ? 1 : 0;
    const S factor = p == 0.0 ? S(1) : S(0);
    std::memset(mask, keep, static_cast<std::size_t>(total));
    for (Eigen::Index k = 0; k < total; ++k) out.data[k] = x.data[k] * factor;
    noise.set_offset(first + n);
    return;
  }
  const double threshold = inverse_normal_cdf(p);
  const std::uint64_t seed = noise.seed(), last = first + (n - 1);  // inclusive
  constexpr std::uint64_t kChunk = ddpm::detail::kNormalChunk;       // the generator's block of normals
  const std::uint64_t chunk0 = first / kChunk, chunks = last / kChunk - chunk0 + 1;
  const Eigen::Index C = x.channels, hw = x.pixels(), plane = x.plane();
  // One stream chunk at a time (each normal made once), walked in runs of one image channel. The normals
  // are drawn in float whatever S is (1.2 G/s per core against 0.5 in double); z rounded to float moves
  // P(drop) by at most phi(t) |t| 2^-22 ~ 1e-7, far below anything a training run could see.
  ctx.parallel_for(static_cast<Eigen::Index>(chunks), [&](Eigen::Index begin, Eigen::Index end, int) {
    alignas(64) float z[kChunk];
    alignas(64) std::uint8_t keep[kChunk];
    for (Eigen::Index k = begin; k < end; ++k) {
      const std::uint64_t start = (chunk0 + static_cast<std::uint64_t>(k)) * kChunk;
      const std::uint64_t s0 = std::max(start, first) - first, s1 = std::min(start + (kChunk - 1), last) - first + 1;
      const auto count = static_cast<Eigen::Index>(s1 - s0);
      fill_normal(std::span<float>(z, static_cast<std::size_t>(count)), seed, first + s0);
      for (Eigen::Index j = 0; j < count; ++j) keep[j] = static_cast<double>(z[j]) < threshold ? 0 : 1;
      for (Eigen::Index j0 = 0; j0 < count;) {
        const Eigen::Index si = static_cast<Eigen::Index>(s0) + j0;
        const Eigen::Index i = si % hw, bc = si / hw, b = bc / C, c = bc % C;
        const Eigen::Index run = std::min(count - j0, hw - i);
        const Eigen::Index at = c * plane + b * hw + i;
        std::memcpy(mask + at, keep + j0, static_cast<std::size_t>(run));
        const S* const xr = x.data + at;
        S* const o = out.data + at;
        const std::uint8_t* const kr = keep + j0;
        for (Eigen::Index j = 0; j < run; ++j) o[j] = xr[j] * (kr[j] != 0 ? scale : S(0));
        j0 += run;
      }
    }
  });
  noise.set_offset(first + n);
}

/// dropout_forward on n contiguous values in memory order (the stream index of value k is offset + k).
template <class S>
void dropout_forward(Context<S>& ctx, double p, bool training, NoiseSource& noise, const S* x, S* out, Eigen::Index n,
                     std::uint8_t* mask) {
  dropout_forward(ctx, p, training, noise, FeatureMap<const S>{x, 1, 1, 1, n}, FeatureMap<S>{out, 1, 1, 1, n}, mask);
}

/// Dropout's backward pass: d_x = d_out * (mask ? 1 / (1 - p) : 0) in training (the mask of the forward
/// pass), d_x = d_out in evaluation. d_x may be d_out. n = the element count of the forward pass.
/// Throws ddpm::invalid_argument if p is outside [0, 1] or mask is null in training.
template <class S>
void dropout_backward(Context<S>& ctx, double p, bool training, const std::uint8_t* mask, const S* d_out, S* d_x,
                      Eigen::Index n) {
  constexpr const char* fn = "ddpm::nn::detail::dropout_backward";
  check_dropout_probability(fn, p);
  if (!training) {
    if (d_x != d_out) std::memmove(d_x, d_out, static_cast<std::size_t>(n) * sizeof(S));
    return;
  }
  if (mask == nullptr) ddpm::detail::throw_invalid_argument(std::string(fn) + ": mask must not be null in training");
  const S scale = dropout_keep_scale<S>(p);
  constexpr Eigen::Index kGrain = Eigen::Index{1} << 20;  // a bandwidth-bound pass: threads pay off late
  auto run = [&](Eigen::Index begin, Eigen::Index end, int) {
    for (Eigen::Index k = begin; k < end; ++k) d_x[k] = d_out[k] * (mask[k] != 0 ? scale : S(0));
  };
  if (ctx.num_threads() == 1 || n < 2 * kGrain) {
    run(0, n, 0);
  } else {
    ctx.parallel_for(n, run);
  }
}

/// The map form of dropout_backward (the shapes of d_out and d_x must agree).
template <class S>
void dropout_backward(Context<S>& ctx, double p, bool training, const std::uint8_t* mask, FeatureMap<const S> d_out,
                      FeatureMap<S> d_x) {
  if (d_out.channels != d_x.channels || d_out.batch != d_x.batch || d_out.height != d_x.height ||
      d_out.width != d_x.width) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::dropout_backward: d_x has " + ddpm::detail::number_string(d_x.size()) +
                                         " elements in a different shape, but must have the shape of d_out (" +
                                         ddpm::detail::number_string(d_out.size()) + " elements)");
  }
  dropout_backward(ctx, p, training, mask, d_out.data, d_x.data, d_out.size());
}

}  // namespace ddpm::nn::detail
