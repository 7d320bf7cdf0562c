// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// GroupNorm: PyTorch's nn.GroupNorm (affine), fused with what follows it in a UNet: an optional per-image
// scale and shift (a ResNet block's "scale_shift" time embedding) and the activation.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <string>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

template <std::floating_point S>
class GroupNorm {
 public:
  using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;

  GroupNorm() = default;
  /// GroupNorm over `channels` channels in `groups` groups, with weight 1 and bias 0.
  /// Throws ddpm::invalid_argument unless groups >= 1 divides channels and eps > 0.
  GroupNorm(Eigen::Index groups, Eigen::Index channels, double eps = 1e-5) : groups_(groups), eps_(eps) {
    if (groups < 1 || channels < 1 || channels % groups != 0) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::GroupNorm: groups is " + std::to_string(groups) +
                                           ", but must be >= 1 and divide channels (" + std::to_string(channels) +
                                           ")");
    }
    if (!(eps > 0.0)) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::GroupNorm: eps is " + std::to_string(eps) +
                                           ", but must be > 0");
    }
    weight_ = Vector::Ones(channels);
    bias_ = Vector::Zero(channels);
  }

  Eigen::Index groups() const { return groups_; }
  Eigen::Index channels() const { return weight_.size(); }
  double eps() const { return eps_; }
  Vector& weight() { return weight_; }
  const Vector& weight() const { return weight_; }
  Vector& bias() { return bias_; }
  const Vector& bias() const { return bias_; }

  /// For image b and group g (channels c of the group, all pixels):            [docs/unet.md, Eq. (U2)]
  ///   mu = mean(x), var = mean((x - mu)^2)   (biased, as PyTorch)
  ///   y = (x - mu) / sqrt(var + eps) * weight[c] + bias[c]
  ///   y = y * (1 + scale[b, c]) + shift[b, c]   when scale / shift ([batch, channels] row-major) are given
  ///   out = act(y)
  /// `out` may be `in`. Throws ddpm::invalid_argument if the shapes differ or the channels do not match.
  void forward(Context<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, Activation act = Activation::identity,
               const S* scale = nullptr, const S* shift = nullptr) const {
    if (in.channels != channels() || out.channels != in.channels || out.batch != in.batch ||
        out.height != in.height || out.width != in.width) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::GroupNorm::forward: the input has " +
                                           std::to_string(in.channels) + " channels and the output " +
                                           std::to_string(out.channels) + ", but both must have " +
                                           std::to_string(channels()) + " and the same shape");
    }
    const Eigen::Index per_group = channels() / groups_, hw = in.pixels(), C = channels();
    using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
    ctx.parallel_for(in.batch * groups_, [&](Eigen::Index begin, Eigen::Index end, int) {
      for (Eigen::Index job = begin; job < end; ++job) {
        const Eigen::Index b = job / groups_, g = job % groups_;
        const Eigen::Index c0 = g * per_group, c1 = c0 + per_group;
        // Two passes, each image channel summed in S (short runs) and the runs summed in double.
        double sum = 0.0;
        for (Eigen::Index c = c0; c < c1; ++c) sum += Eigen::Map<const Array>(in.image_channel(c, b), hw).sum();
        const double n = static_cast<double>(per_group * hw);
        const S mean = static_cast<S>(sum / n);
        double squares = 0.0;
        for (Eigen::Index c = c0; c < c1; ++c) {
          squares += (Eigen::Map<const Array>(in.image_channel(c, b), hw) - mean).square().sum();
        }
        const double rstd = 1.0 / std::sqrt(squares / n + eps_);
        for (Eigen::Index c = c0; c < c1; ++c) {
          S a = static_cast<S>(weight_[c] * rstd);
          S d = bias_[c] - mean * a;
          if (scale != nullptr) {
            const S s = S(1) + scale[b * C + c];
            a *= s;
            d *= s;
          }
          if (shift != nullptr) d += shift[b * C + c];
          Eigen::Map<Array> y(out.image_channel(c, b), hw);
          y = Eigen::Map<const Array>(in.image_channel(c, b), hw) * a + d;
          apply_activation(act, y.data(), hw);
        }
      }
    });
  }

  /// GroupNorm (and act) of an NCHW batch, returned as NCHW (a convenience that allocates).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x, Activation act = Activation::identity) const {
    static_assert(rank_v<X> == 4, "ddpm::nn::GroupNorm: the input must be an NCHW tensor");
    Context<S> ctx;
    Feature<S> f = to_feature(ctx, x);
    forward(ctx, f.cview(), f.view(), act);
    return to_nchw(f.cview());
  }

  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    f(Parameter<S>{prefix + "weight", {weight_.size()}, weight_.data()});
    f(Parameter<S>{prefix + "bias", {bias_.size()}, bias_.data()});
  }

 private:
  Eigen::Index groups_ = 1;
  double eps_ = 1e-5;
  Vector weight_, bias_;
};

}  // namespace ddpm::nn
