// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// GroupNorm: PyTorch's nn.GroupNorm (affine), fused with what follows it in a UNet: an optional per-image
// scale and shift (a ResNet block's "scale_shift" time embedding) and the activation.
//
// Inference runs it in place (out == in: the input is overwritten by act(norm(x))). A training pass passes
// a Saved, which keeps what backward needs and the in-place form would destroy: a copy of the input, the
// mean and 1 / std of every (image, group), and copies of the per-image scale and shift.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstring>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

namespace detail {

/// The arithmetic of GroupNorm::forward on raw weights (Eq. (U2)), parallel over (image, group) jobs; also
/// stores each job's mean and rstd (rounded to S) at b * groups + g when saved_mean / saved_rstd are not null.
/// The layer's forward and the training kernels (nn/detail/norm_backward.hpp) both call it, so they give the
/// same bits. Shapes are the caller's to check.
template <class S>
void group_norm_pass(Workspace<S>& ctx, Eigen::Index groups, double eps, const S* weight, const S* bias,
                     Activation act, const S* scale, const S* shift, FeatureMap<const S> in, FeatureMap<S> out,
                     S* saved_mean, S* saved_rstd) {
  const Eigen::Index C = in.channels, per_group = C / groups, hw = in.pixels();
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  ctx.parallel_for(in.batch * groups, [&](Eigen::Index begin, Eigen::Index end, int) {
    for (Eigen::Index job = begin; job < end; ++job) {
      const Eigen::Index b = job / groups, g = job % groups;
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
      const double rstd = 1.0 / std::sqrt(squares / n + eps);
      if (saved_mean != nullptr) saved_mean[job] = mean;
      if (saved_rstd != nullptr) saved_rstd[job] = static_cast<S>(rstd);
      for (Eigen::Index c = c0; c < c1; ++c) {
        S a = static_cast<S>(weight[c] * rstd);
        S d = bias[c] - mean * a;
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

}  // namespace detail

template <std::floating_point S>
class GroupNorm {
 public:
  using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;

  GroupNorm() = default;
  /// GroupNorm over `channels` channels in `groups` groups, with weight 1 and bias 0.
  /// Throws ddpm::invalid_argument unless groups >= 1 divides channels and eps > 0.
  GroupNorm(Eigen::Index groups, Eigen::Index channels, double eps = 1e-5) : groups_(groups), eps_(eps) {
    if (groups < 1 || channels < 1 || channels % groups != 0) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::GroupNorm: groups is " + ddpm::detail::number_string(groups) +
                                           ", but must be >= 1 and divide channels (" + ddpm::detail::number_string(channels) +
                                           ")");
    }
    if (!(eps > 0.0)) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::GroupNorm: eps is " + ddpm::detail::number_string(eps) +
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

  /// What backward needs from a forward pass (buffers of the workspace's pool).
  struct Saved {
    typename Workspace<S>::Buffer input;        ///< x, [channels][batch][h][w] as the input map
    typename Workspace<S>::Buffer mean, rstd;   ///< per (image b, group g) at b * groups + g
    typename Workspace<S>::Buffer scale, shift;  ///< copies of the [batch, channels] modulation (or empty)
    FeatureMap<const S> map;                    ///< the input's shape, data = input.data()
    Activation act = Activation::identity;
  };

  void prepare() {}
  void mark_weights_changed() {}
  /// A GroupNorm of the same shape with zero parameters: the gradients, laid out as the parameters.
  GroupNorm gradient_like() const {
    GroupNorm g(groups_, channels(), eps_);
    g.weight_.setZero();
    return g;
  }

  /// For image b and group g (channels c of the group, all pixels):            [docs/unet.md, Eq. (U2)]
  ///   mu = mean(x), var = mean((x - mu)^2)   (biased, as PyTorch)
  ///   y = (x - mu) / sqrt(var + eps) * weight[c] + bias[c]
  ///   y = y * (1 + scale[b, c]) + shift[b, c]   when scale / shift ([batch, channels] row-major) are given
  ///   out = act(y)
  /// `out` may be `in` (the inference path). With `saved` (training), also keeps a copy of the input, the
  /// statistics and the modulation for backward; `out` may still be `in`.
  /// Throws ddpm::invalid_argument if the shapes differ or the channels do not match.
  void forward(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, Activation act = Activation::identity,
               const S* scale = nullptr, const S* shift = nullptr, Saved* saved = nullptr) const {
    if (in.channels != channels() || out.channels != in.channels || out.batch != in.batch ||
        out.height != in.height || out.width != in.width) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::GroupNorm::forward: the input has " +
                                           ddpm::detail::number_string(in.channels) + " channels and the output " +
                                           ddpm::detail::number_string(out.channels) + ", but both must have " +
                                           ddpm::detail::number_string(channels()) + " and the same shape");
    }
    const Eigen::Index C = channels();
    S* saved_mean = nullptr;
    S* saved_rstd = nullptr;
    if (saved != nullptr) {
      saved->input = ctx.acquire(in.size());
      parallel_copy(ctx, in.data, in.size(), saved->input.data());
      saved->map = {saved->input.data(), in.channels, in.batch, in.height, in.width};
      saved->mean = ctx.acquire(in.batch * groups_);
      saved->rstd = ctx.acquire(in.batch * groups_);
      saved_mean = saved->mean.data();
      saved_rstd = saved->rstd.data();
      saved->scale = {};
      saved->shift = {};
      if (scale != nullptr) {
        saved->scale = ctx.acquire(in.batch * C);
        std::copy_n(scale, in.batch * C, saved->scale.data());
      }
      if (shift != nullptr) {
        saved->shift = ctx.acquire(in.batch * C);
        std::copy_n(shift, in.batch * C, saved->shift.data());
      }
      saved->act = act;
    }
    detail::group_norm_pass(ctx, groups_, eps_, weight_.data(), bias_.data(), act, scale, shift, in, out, saved_mean,
                            saved_rstd);
  }

  /// GroupNorm (and act) of an NCHW batch, returned as NCHW (a convenience that allocates).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x, Activation act = Activation::identity) const {
    static_assert(rank_v<X> == 4, "ddpm::nn::GroupNorm: the input must be an NCHW tensor");
    Workspace<S> ctx;
    Feature<S> f = to_feature(ctx, x);
    forward(ctx, f.cview(), f.view(), act);
    return to_nchw(f.cview());
  }

  /// Visits every parameter (name, PyTorch shape, writable pointer); a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    visit_parameters(*this, prefix, f);
  }
  /// The same list with read-only pointers (Parameter<const S>): not a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) const {
    visit_parameters(*this, prefix, f);
  }

 private:
  // The body of both (Self is this class, const or not).
  template <class Self, class F>
  static void visit_parameters(Self& self, const std::string& prefix, F& f) {
    using P = Parameter<std::conditional_t<std::is_const_v<Self>, const S, S>>;
    f(P{prefix + "weight", {self.weight_.size()}, self.weight_.data()});
    f(P{prefix + "bias", {self.bias_.size()}, self.bias_.data()});
  }

 private:
  Eigen::Index groups_ = 1;
  double eps_ = 1e-5;
  Vector weight_, bias_;
};

}  // namespace ddpm::nn
