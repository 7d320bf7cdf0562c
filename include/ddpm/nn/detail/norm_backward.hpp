// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Backward kernels of GroupNorm fused with its per-image modulation and activation (nn/group_norm.hpp),
// and of the activations of nn/activation.hpp, on the channel-major layout of nn/feature_map.hpp.
//
// Forward, per image b and group g (channels c of the group, n = channels_per_group * H * W values):
//   mu = mean(x), rstd = 1 / sqrt(mean((x - mu)^2) + eps),  x_hat = (x - mu) rstd
//   y0 = x_hat weight[c] + bias[c],  y1 = y0 (1 + scale[b, c]) + shift[b, c],  out = act(y1)
// Backward, from g1 = d_out * act'(y1) and the sums over the pixels of one image channel
//   S1[c] = sum g1,  S2[c] = sum g1 x_hat,  w'[c] = weight[c] (1 + scale[b, c]):      [docs/unet.md, Eq. (U2)]
//   d_shift[b, c] += S1,  d_scale[b, c] += weight[c] S2 + bias[c] S1
//   d_bias[c] += sum_b (1 + scale[b, c]) S1,  d_weight[c] += sum_b (1 + scale[b, c]) S2
//   d_x = rstd (w'[c] g1 - m1 - x_hat m2),  m1 = sum_c w'[c] S1[c] / n,  m2 = sum_c w'[c] S2[c] / n
// What forward saves: the input x itself (the caller keeps it: training must not run the norm in place)
// and two numbers per (b, g), the mean and rstd; the pre-activation y1 is recomputed from them.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstring>
#include <numbers>
#include <string>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/group_norm.hpp"

namespace ddpm::nn::detail {

inline constexpr Eigen::Index kActivationGradChunk = 256;  // values per stack block of the elementwise kernels

/// d_pre = d_out * act'(pre) elementwise over n values: the backward pass of apply_activation, given the
/// activation's input `pre`. d_pre may alias d_out or pre (each element is read before it is written).
///   silu' = s (1 + x (1 - s)), s = sigmoid(x);   relu' = [x > 0] (0 at 0, as PyTorch)
///   gelu' = Phi(x) + x phi(x);   mish' = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x), sp = softplus(x)
template <class S>
void activation_grad(Activation act, const S* pre, const S* d_out, S* d_pre, Eigen::Index n) {
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  using CMap = Eigen::Map<const Array>;
  using Map = Eigen::Map<Array>;
  if (act == Activation::identity) {
    if (d_pre != d_out) std::memmove(d_pre, d_out, static_cast<std::size_t>(n) * sizeof(S));
    return;
  }
  alignas(64) S tmp[kActivationGradChunk];
  for (Eigen::Index i0 = 0; i0 < n; i0 += kActivationGradChunk) {
    const Eigen::Index m = std::min(kActivationGradChunk, n - i0);
    const CMap y(pre + i0, m), g(d_out + i0, m);
    Map t(tmp, m);
    Map out(d_pre + i0, m);
    switch (act) {
      case Activation::identity:
        break;
      case Activation::silu:
        t = S(1) / (S(1) + (-y).exp());
        out = g * t * (S(1) + y * (S(1) - t));
        break;
      case Activation::mish:
        t = (y.max(S(0)) + (-y.abs()).exp().log1p()).tanh();
        out = g * (t + y * (S(1) - t * t) / (S(1) + (-y).exp()));
        break;
      case Activation::gelu:
        out = g * (S(0.5) * (S(1) + (y * S(1.0 / std::numbers::sqrt2)).erf()) +
                   y * (S(-0.5) * y * y).exp() * S(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2));
        break;
      case Activation::relu:
        out = (y > S(0)).select(g, S(0));
        break;
    }
  }
}

/// s1 += sum g[i] and s2 += sum g[i] (x[i] - mean) over n values, in an order fixed by n alone (16 lanes
/// summed in S, then the lanes and the tail in double), so that the sums do not depend on the buffers'
/// addresses (Eigen's reductions start their vector loop at the first aligned element).
template <class S>
void sum_grad_products(const S* g, const S* x, S mean, Eigen::Index n, double& s1, double& s2) {
  constexpr Eigen::Index kLanes = 16;
  using Lanes = Eigen::Array<S, kLanes, 1>;
  Lanes a1 = Lanes::Zero(), a2 = Lanes::Zero();
  const Eigen::Index body = n / kLanes * kLanes;
  for (Eigen::Index i = 0; i < body; i += kLanes) {
    const Eigen::Map<const Lanes> gi(g + i), xi(x + i);
    a1 += gi;
    a2 += gi * (xi - mean);
  }
  double t1 = 0.0, t2 = 0.0;
  for (Eigen::Index l = 0; l < kLanes; ++l) {
    t1 += static_cast<double>(a1[l]);
    t2 += static_cast<double>(a2[l]);
  }
  for (Eigen::Index i = body; i < n; ++i) {
    t1 += static_cast<double>(g[i]);
    t2 += static_cast<double>(g[i]) * (static_cast<double>(x[i]) - static_cast<double>(mean));
  }
  s1 += t1;
  s2 += t2;
}

/// What a GroupNorm pass reads besides its input: the layer's constants and the per-pass modulation.
template <class S>
struct GroupNormArgs {
  Eigen::Index groups = 1;
  double eps = 1e-5;
  const S* weight = nullptr;  ///< [channels]
  const S* bias = nullptr;    ///< [channels]
  Activation act = Activation::identity;
  const S* scale = nullptr;  ///< [batch, channels] row-major, or null (no scale)
  const S* shift = nullptr;  ///< [batch, channels] row-major, or null (no shift)
};

/// The arguments of a GroupNorm layer's forward(ctx, in, out, act, scale, shift).
template <std::floating_point S>
GroupNormArgs<S> group_norm_args(const GroupNorm<S>& gn, Activation act = Activation::identity,
                                 const S* scale = nullptr, const S* shift = nullptr) {
  return {gn.groups(), gn.eps(), gn.weight().data(), gn.bias().data(), act, scale, shift};
}

/// Where group_norm_backward accumulates (+=) its parameter gradients; a null pointer skips that gradient.
template <class S>
struct GroupNormGrads {
  S* weight = nullptr;  ///< [channels]
  S* bias = nullptr;    ///< [channels]
  S* scale = nullptr;   ///< [batch, channels]: d/d scale[b, c] (scale treated as 0 when args.scale is null)
  S* shift = nullptr;   ///< [batch, channels]
};


template <class S>
void check_group_norm_args(const char* fn, const GroupNormArgs<S>& args, FeatureMap<const S> a, FeatureMap<const S> b) {
  const Eigen::Index C = a.channels;
  if (args.groups < 1 || C < 1 || C % args.groups != 0) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": groups is " + ddpm::detail::number_string(args.groups) +
                                         ", but must be >= 1 and divide the channels (" + ddpm::detail::number_string(C) + ")");
  }
  if (args.weight == nullptr || args.bias == nullptr) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": weight and bias must not be null");
  }
  if (b.channels != a.channels || b.batch != a.batch || b.height != a.height || b.width != a.width) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": the maps have shapes (" + ddpm::detail::number_string(a.channels) +
                                         ", " + ddpm::detail::number_string(a.batch) + ", " + ddpm::detail::number_string(a.height) + ", " +
                                         ddpm::detail::number_string(a.width) + ") and (" + ddpm::detail::number_string(b.channels) + ", " +
                                         ddpm::detail::number_string(b.batch) + ", " + ddpm::detail::number_string(b.height) + ", " +
                                         ddpm::detail::number_string(b.width) + "), but must have the same shape");
  }
}

/// GroupNorm::forward (same arithmetic, the same output bit for bit) that also saves the statistics of
/// each (image b, group g) at b * groups + g: mean[.] and rstd[.] (rounded to S), batch * groups values each
/// (either may be null).
/// `out` may be `in` for inference only: the backward pass needs the input.     [docs/unet.md, Eq. (U2)]
/// Throws ddpm::invalid_argument if the shapes differ, groups does not divide the channels, or weight or
/// bias is null.
template <class S>
void group_norm_forward_saved(Context<S>& ctx, const GroupNormArgs<S>& args, FeatureMap<const S> in, FeatureMap<S> out,
                              S* mean_out, S* rstd_out) {
  check_group_norm_args<S>("ddpm::nn::detail::group_norm_forward_saved", args, in, out);
  group_norm_pass(ctx, args.groups, args.eps, args.weight, args.bias, args.act, args.scale, args.shift, in, out,
                  mean_out, rstd_out);
}

/// The backward pass of group_norm_forward_saved (formulas at the top of this header): writes d_x and
/// accumulates (+=) the gradients of weight, bias, scale and shift that `grads` points to.
/// x, mean and rstd are what the forward pass read and saved; args must be the same. d_x may be d_out (then
/// d_out is overwritten); it must not overlap x. Parallel over the (b, g) pairs; d_weight and d_bias are
/// summed over the batch in a fixed order, so the results do not depend on the thread count, bit for bit.
/// The pre-activation is recomputed with rstd as saved (rounded to S), so for float it may differ from the
/// forward pass's in the last bit. Scratch: 2 * batch * channels values from ctx.
/// Throws ddpm::invalid_argument if the shapes differ, groups does not divide the channels, or weight,
/// bias, mean or rstd is null.
template <class S>
void group_norm_backward(Context<S>& ctx, const GroupNormArgs<S>& args, FeatureMap<const S> x, const S* mean_in,
                         const S* rstd_in, FeatureMap<const S> d_out, FeatureMap<S> d_x, const GroupNormGrads<S>& grads) {
  constexpr const char* fn = "ddpm::nn::detail::group_norm_backward";
  check_group_norm_args<S>(fn, args, x, d_out);
  check_group_norm_args<S>(fn, args, x, d_x);
  if (mean_in == nullptr || rstd_in == nullptr) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": mean and rstd must not be null");
  }
  const Eigen::Index groups = args.groups, C = x.channels, B = x.batch, per_group = C / groups, hw = x.pixels();
  const Eigen::Index jobs = B * groups;
  const S* const weight = args.weight;
  const S* const bias = args.bias;
  const S* const scale = args.scale;
  const S* const shift = args.shift;
  const Activation act = args.act;
  const bool want_params = grads.weight != nullptr || grads.bias != nullptr;
  typename Context<S>::Buffer partial_storage = ctx.acquire(want_params ? 2 * B * C : 1);
  S* const partial_weight = partial_storage.data();  // [b, c]: (1 + scale) S2 of image b
  S* const partial_bias = want_params ? partial_storage.data() + B * C : nullptr;
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  using CMap = Eigen::Map<const Array>;
  using Map = Eigen::Map<Array>;
  ctx.parallel_for(jobs, [&](Eigen::Index begin, Eigen::Index end, int) {
    alignas(64) S pre[kActivationGradChunk];
    for (Eigen::Index job = begin; job < end; ++job) {
      const Eigen::Index b = job / groups, g = job % groups;
      const Eigen::Index c0 = g * per_group, c1 = c0 + per_group;
      const S mean = mean_in[job];
      const S rstd_s = rstd_in[job];
      const double rstd = static_cast<double>(rstd_s);
      double m1 = 0.0, m2 = 0.0;  // sum_c w'[c] S1[c], sum_c w'[c] S2[c]
      // Pass 1: d_x = g1 = d_out * act'(y1), and the per-channel sums.
      for (Eigen::Index c = c0; c < c1; ++c) {
        const S one_plus_scale = scale != nullptr ? S(1) + scale[b * C + c] : S(1);
        S a = static_cast<S>(weight[c] * rstd);
        S d = bias[c] - mean * a;
        if (scale != nullptr) {
          a *= one_plus_scale;
          d *= one_plus_scale;
        }
        if (shift != nullptr) d += shift[b * C + c];
        const S* const xc = x.image_channel(c, b);
        const S* const gc = d_out.image_channel(c, b);
        S* const dc = d_x.image_channel(c, b);
        double s1 = 0.0, s2 = 0.0;
        for (Eigen::Index i0 = 0; i0 < hw; i0 += kActivationGradChunk) {
          const Eigen::Index m = std::min(kActivationGradChunk, hw - i0);
          if (act == Activation::identity) {
            if (dc != gc) std::memmove(dc + i0, gc + i0, static_cast<std::size_t>(m) * sizeof(S));
          } else {
            Map(pre, m) = CMap(xc + i0, m) * a + d;
            activation_grad(act, pre, gc + i0, dc + i0, m);
          }
        }
        sum_grad_products(static_cast<const S*>(dc), xc, mean, hw, s1, s2);
        s2 *= rstd;  // sum g1 x_hat
        const double w_prime = static_cast<double>(weight[c]) * static_cast<double>(one_plus_scale);
        m1 += w_prime * s1;
        m2 += w_prime * s2;
        if (grads.shift != nullptr) grads.shift[b * C + c] += static_cast<S>(s1);
        if (grads.scale != nullptr) {
          grads.scale[b * C + c] += static_cast<S>(static_cast<double>(weight[c]) * s2 + static_cast<double>(bias[c]) * s1);
        }
        if (want_params) {
          partial_weight[b * C + c] = static_cast<S>(static_cast<double>(one_plus_scale) * s2);
          partial_bias[b * C + c] = static_cast<S>(static_cast<double>(one_plus_scale) * s1);
        }
      }
      // Pass 2: d_x = rstd w' g1 - rstd^2 m2 / n (x - mu) - rstd m1 / n.
      const double n = static_cast<double>(per_group * hw);
      const S k2 = static_cast<S>(-rstd * rstd * m2 / n);
      const S k3 = static_cast<S>(-rstd * m1 / n);
      for (Eigen::Index c = c0; c < c1; ++c) {
        const S one_plus_scale = scale != nullptr ? S(1) + scale[b * C + c] : S(1);
        const S k1 = static_cast<S>(rstd * static_cast<double>(weight[c]) * static_cast<double>(one_plus_scale));
        Map dc(d_x.image_channel(c, b), hw);
        dc = k1 * dc + k2 * (CMap(x.image_channel(c, b), hw) - mean) + k3;
      }
    }
  });
  if (want_params) {
    for (Eigen::Index c = 0; c < C; ++c) {
      double sw = 0.0, sb = 0.0;
      for (Eigen::Index b = 0; b < B; ++b) {
        sw += static_cast<double>(partial_weight[b * C + c]);
        sb += static_cast<double>(partial_bias[b * C + c]);
      }
      if (grads.weight != nullptr) grads.weight[c] += static_cast<S>(sw);
      if (grads.bias != nullptr) grads.bias[c] += static_cast<S>(sb);
    }
  }
}

}  // namespace ddpm::nn::detail
