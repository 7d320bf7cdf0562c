// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// ResnetBlock2D: diffusers' ResNet block with a time-embedding projection (norm1, conv1, time_emb_proj,
// norm2, conv2, and conv_shortcut when the channel count changes).

#include <algorithm>
#include <cstdint>
#include <vector>
#include <cmath>
#include <concepts>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/detail/conv_backward.hpp"
#include "ddpm/nn/detail/dropout.hpp"
#include "ddpm/nn/detail/norm_backward.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/random.hpp"

namespace ddpm::nn {

namespace detail {
/// The gradient pointers of a gradient_like() convolution (and a per-image bias gradient, or null).
template <std::floating_point S>
ConvGrads<S> conv_grads_of(Conv2d<S>& g, S* d_batch_bias = nullptr) {
  return {g.weight().data(), g.has_bias() ? g.bias().data() : nullptr, d_batch_bias};
}
}  // namespace detail

/// How a ResNet block injects the time embedding (diffusers' resnet_time_scale_shift).
enum class TimeEmbeddingNorm {
  additive,     ///< "default": h = norm2(conv1(..) + proj(temb))
  scale_shift,  ///< "scale_shift": h = norm2(conv1(..)) * (1 + scale) + shift, [scale, shift] = proj(temb)
};

template <std::floating_point S>
class ResnetBlock2D {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  ResnetBlock2D() = default;
  /// A block from in_channels to out_channels, conditioned on a time embedding of temb_channels, with
  /// GroupNorms of `groups` groups and `eps`, activation `act`, and out = (shortcut + h) / output_scale_factor.
  /// Weights start at zero (norms at weight 1, bias 0).
  /// Throws ddpm::invalid_argument if a size is < 1, groups do not divide both channel counts, eps <= 0 or
  /// output_scale_factor is 0 or not finite.
  ResnetBlock2D(Eigen::Index in_channels, Eigen::Index out_channels, Eigen::Index temb_channels, Eigen::Index groups,
                double eps, Activation act = Activation::silu, double output_scale_factor = 1.0,
                TimeEmbeddingNorm time_norm = TimeEmbeddingNorm::additive)
      : norm1_(groups, in_channels, eps),
        conv1_(in_channels, out_channels, 3, 1, 1),
        time_emb_proj_(temb_channels, time_norm == TimeEmbeddingNorm::scale_shift ? 2 * out_channels : out_channels),
        norm2_(groups, out_channels, eps),
        conv2_(out_channels, out_channels, 3, 1, 1),
        act_(act),
        time_norm_(time_norm),
        output_scale_factor_(output_scale_factor) {
    if (!(output_scale_factor != 0.0) || !std::isfinite(output_scale_factor)) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::ResnetBlock2D: output_scale_factor is " +
                                           ddpm::detail::number_string(output_scale_factor) + ", but must be finite and != 0");
    }
    if (in_channels != out_channels) conv_shortcut_ = Conv2d<S>(in_channels, out_channels, 1);
  }

  Eigen::Index in_channels() const { return conv1_.in_channels(); }
  Eigen::Index out_channels() const { return conv1_.out_channels(); }
  Eigen::Index temb_channels() const { return time_emb_proj_.in_features(); }
  bool has_conv_shortcut() const { return conv_shortcut_.weight().size() > 0; }
  double output_scale_factor() const { return output_scale_factor_; }
  Activation activation() const { return act_; }

  /// Rebuilds what the sub-layers derive from their weights (call after changing the weights).
  void prepare() {
    conv1_.prepare();
    conv2_.prepare();
    if (has_conv_shortcut()) conv_shortcut_.prepare();
  }
  /// Declares a change of the weights written through pointers obtained earlier (see Conv2d).
  void mark_weights_changed() { for_each_parameter("", [](const Parameter<S>&) {}); }
  /// A copy with zero parameters: the gradients, laid out as the parameters (same names, shapes, order).
  ResnetBlock2D gradient_like() const { return zeros_like<S>(*this); }

  GroupNorm<S>& norm1() { return norm1_; }
  Conv2d<S>& conv1() { return conv1_; }
  Linear<S>& time_emb_proj() { return time_emb_proj_; }
  GroupNorm<S>& norm2() { return norm2_; }
  Conv2d<S>& conv2() { return conv2_; }
  Conv2d<S>& conv_shortcut() { return conv_shortcut_; }

  /// With a = act (the block's activation) and temb_act = a(temb) [batch, temb_channels]:
  ///   h = conv1(a(norm1(x)))                                                     [docs/unet.md, Eq. (U6)]
  ///   additive:    h = a(norm2(h + proj(temb_act)))
  ///   scale_shift: h = a(norm2(h) * (1 + scale) + shift),  [scale, shift] = proj(temb_act)
  ///   out = (shortcut(x) + conv2(h)) / output_scale_factor,  shortcut = 1x1 conv or identity
  /// diffusers applies the activation to temb inside each block; a UNet applies it once for all blocks and
  /// passes temb_act. `out` must be [out_channels, batch, H, W] and not alias x.
  /// Throws ddpm::invalid_argument if the shapes do not fit.
  void forward(Workspace<S>& ctx, FeatureMap<const S> x, const Eigen::Ref<const Matrix>& temb_act, FeatureMap<S> out) const {
    if (temb_act.rows() != x.batch || temb_act.cols() != temb_channels()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::ResnetBlock2D::forward: temb has shape [" +
                                           ddpm::detail::number_string(temb_act.rows()) + ", " + ddpm::detail::number_string(temb_act.cols()) +
                                           "], but must be [batch = " + ddpm::detail::number_string(x.batch) +
                                           ", temb_channels = " + ddpm::detail::number_string(temb_channels()) + "]");
    }
    if (out.channels != out_channels() || out.batch != x.batch || out.height != x.height || out.width != x.width) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::ResnetBlock2D::forward: out has shape " + map_shape_string(out) +
                                           " [C, N, H, W], but must be [" + ddpm::detail::number_string(out_channels()) +
                                           ", " + ddpm::detail::number_string(x.batch) + ", " +
                                           ddpm::detail::number_string(x.height) + ", " +
                                           ddpm::detail::number_string(x.width) + "] (out_channels, x's batch and size)");
    }
    const Eigen::Index B = x.batch, C = out_channels(), P = time_emb_proj_.out_features();
    // the time projection [B, P]
    typename Workspace<S>::Buffer tproj = ctx.acquire(B * P);
    detail::gemm<S, false, true>(ctx.packing_buffer(0), B, P, temb_channels(), temb_act.data(), temb_act.outerStride(),
                                 time_emb_proj_.weight().data(), temb_channels(), tproj.data(), P, false);  // temb W^T
    Eigen::Map<Matrix> t(tproj.data(), B, P);
    t.rowwise() += time_emb_proj_.bias().transpose();

    Feature<S> h = make_feature(ctx, x.channels, B, x.height, x.width);
    norm1_.forward(ctx, x, h.view(), act_);
    Feature<S> h2 = make_feature(ctx, C, B, x.height, x.width);
    ConvEpilogue<S> e1;
    if (time_norm_ == TimeEmbeddingNorm::additive) e1.batch_bias = tproj.data();
    conv1_.forward(ctx, h.cview(), h2.view(), e1);
    h = Feature<S>{};
    if (time_norm_ == TimeEmbeddingNorm::additive) {
      norm2_.forward(ctx, h2.cview(), h2.view(), act_);
    } else {
      typename Workspace<S>::Buffer mod = ctx.acquire(2 * B * C);
      for (Eigen::Index b = 0; b < B; ++b) {
        std::copy_n(tproj.data() + b * P, C, mod.data() + b * C);                  // scale
        std::copy_n(tproj.data() + b * P + C, C, mod.data() + B * C + b * C);      // shift
      }
      norm2_.forward(ctx, h2.cview(), h2.view(), act_, mod.data(), mod.data() + B * C);
    }
    tproj.release();
    ConvEpilogue<S> e2;
    if (has_conv_shortcut()) {
      conv_shortcut_.forward(ctx, x, out);
      e2.accumulate = true;
    } else {
      e2.residual = x.data;
    }
    e2.scale = static_cast<S>(1.0 / output_scale_factor_);
    conv2_.forward(ctx, h2.cview(), out, e2);
  }

  /// Dropout probability before conv2 (diffusers' `dropout`; applied only by forward_train with a noise
  /// source). Throws ddpm::invalid_argument if p is outside [0, 1].
  void set_dropout(double p) {
    detail::check_dropout_probability("ddpm::nn::ResnetBlock2D::set_dropout", p);
    dropout_ = p;
  }
  double dropout() const { return dropout_; }

  /// What backward needs from forward_train (pool buffers of the pass's workspace).
  struct Saved {
    Feature<S> x, n1, c1, d;  // input, act(norm1(x)), conv1 + temb, conv2's input (after dropout)
    std::vector<S> mean1, rstd1, mean2, rstd2, mod;  // norm statistics; [scale; shift] (scale_shift)
    std::vector<std::uint8_t> mask;                  // dropout keep flags (when dropout ran)
    bool dropped = false;
  };

  /// The training pass: forward's arithmetic through im2col convolutions (no prepare() needed), keeping
  /// what backward needs in `saved`. Dropout (probability dropout()) runs when `noise` is given.
  void forward_train(Workspace<S>& ctx, FeatureMap<const S> x, const Eigen::Ref<const Matrix>& temb_act,
                     FeatureMap<S> out, Saved& saved, NoiseSource* noise = nullptr) const {
    if (temb_act.rows() != x.batch || temb_act.cols() != temb_channels() || x.channels != in_channels() ||
        out.channels != out_channels() || out.batch != x.batch || out.height != x.height || out.width != x.width) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::ResnetBlock2D::forward_train: x is " + map_shape_string(x) + ", out " + map_shape_string(out) +
          " [C, N, H, W] and temb [" + ddpm::detail::number_string(temb_act.rows()) + ", " +
          ddpm::detail::number_string(temb_act.cols()) + "], but must be [" + ddpm::detail::number_string(in_channels()) +
          ", N, H, W], [" + ddpm::detail::number_string(out_channels()) + ", N, H, W] and [N, " +
          ddpm::detail::number_string(temb_channels()) + "]");
    }
    const Eigen::Index B = x.batch, C = out_channels(), P = time_emb_proj_.out_features();
    Matrix tproj = temb_act * time_emb_proj_.weight().transpose();
    tproj.rowwise() += time_emb_proj_.bias().transpose();
    saved.x = make_feature(ctx, x.channels, B, x.height, x.width);
    parallel_copy(ctx, x.data, x.size(), saved.x.map.data);
    saved.n1 = make_feature(ctx, x.channels, B, x.height, x.width);
    saved.mean1.resize(B * norm1_.groups());
    saved.rstd1.resize(B * norm1_.groups());
    detail::group_norm_forward_saved(ctx, detail::group_norm_args(norm1_, act_), x, saved.n1.view(),
                                     saved.mean1.data(), saved.rstd1.data());
    saved.c1 = make_feature(ctx, C, B, x.height, x.width);
    ConvEpilogue<S> e1;
    if (time_norm_ == TimeEmbeddingNorm::additive) e1.batch_bias = tproj.data();
    conv1_.forward_train(ctx, saved.n1.cview(), saved.c1.view(), e1);
    const S* scale = nullptr;
    const S* shift = nullptr;
    if (time_norm_ == TimeEmbeddingNorm::scale_shift) {
      saved.mod.resize(2 * B * C);
      for (Eigen::Index b = 0; b < B; ++b) {
        std::copy_n(tproj.data() + b * P, C, saved.mod.data() + b * C);
        std::copy_n(tproj.data() + b * P + C, C, saved.mod.data() + B * C + b * C);
      }
      scale = saved.mod.data();
      shift = saved.mod.data() + B * C;
    }
    saved.d = make_feature(ctx, C, B, x.height, x.width);
    saved.mean2.resize(B * norm2_.groups());
    saved.rstd2.resize(B * norm2_.groups());
    detail::group_norm_forward_saved(ctx, detail::group_norm_args(norm2_, act_, scale, shift), saved.c1.cview(),
                                     saved.d.view(), saved.mean2.data(), saved.rstd2.data());
    saved.dropped = noise != nullptr && dropout_ > 0.0;
    if (saved.dropped) {
      saved.mask.resize(static_cast<std::size_t>(saved.d.map.size()));
      detail::dropout_forward(ctx, dropout_, true, *noise, saved.d.cview(), saved.d.view(), saved.mask.data());
    }
    ConvEpilogue<S> e2;
    if (has_conv_shortcut()) {
      conv_shortcut_.forward_train(ctx, x, out);
      e2.accumulate = true;
    } else {
      e2.residual = x.data;
    }
    e2.scale = static_cast<S>(1.0 / output_scale_factor_);
    conv2_.forward_train(ctx, saved.d.cview(), out, e2);
  }

  /// The backward pass of forward_train for d_out = dL/d out: writes d_x (=, its data may be null),
  /// adds dL/d temb_act to d_temb (a [batch, temb_channels] row-major buffer, or null) and accumulates the
  /// parameter gradients into `grads` (a gradient_like() block).                   [docs/unet.md, Eq. (U6)]
  void backward(Workspace<S>& ctx, const Saved& saved, const Eigen::Ref<const Matrix>& temb_act,
                FeatureMap<const S> d_out, FeatureMap<S> d_x, S* d_temb, ResnetBlock2D& grads) const {
    const Eigen::Index B = saved.x.map.batch, C = out_channels(), P = time_emb_proj_.out_features();
    const S s = static_cast<S>(1.0 / output_scale_factor_);
    const Eigen::Index H = saved.x.map.height, W = saved.x.map.width;
    // conv2 (and the dropout before it)
    Feature<S> dd = make_feature(ctx, C, B, H, W);
    detail::conv2d_backward(ctx, conv2_, saved.d.cview(), d_out, s, dd.view(), false,
                            detail::conv_grads_of(grads.conv2_));
    if (saved.dropped) {
      detail::dropout_backward(ctx, dropout_, true, saved.mask.data(), dd.map.data, dd.map.data, dd.map.size());
    }
    // norm2 (+ modulation + activation)
    Matrix d_tproj = Matrix::Zero(B, P);
    std::vector<S> d_mod;
    const S* scale = nullptr;
    const S* shift = nullptr;
    detail::GroupNormGrads<S> g2{grads.norm2_.weight().data(), grads.norm2_.bias().data(), nullptr, nullptr};
    if (time_norm_ == TimeEmbeddingNorm::scale_shift) {
      scale = saved.mod.data();
      shift = saved.mod.data() + B * C;
      d_mod.assign(2 * B * C, S(0));
      g2.scale = d_mod.data();
      g2.shift = d_mod.data() + B * C;
    }
    detail::group_norm_backward(ctx, detail::group_norm_args(norm2_, act_, scale, shift), saved.c1.cview(),
                                saved.mean2.data(), saved.rstd2.data(), dd.cview(), dd.view(), g2);
    if (time_norm_ == TimeEmbeddingNorm::scale_shift) {
      for (Eigen::Index b = 0; b < B; ++b) {
        for (Eigen::Index c = 0; c < C; ++c) {
          d_tproj(b, c) = d_mod[b * C + c];
          d_tproj(b, C + c) = d_mod[B * C + b * C + c];
        }
      }
    }
    // conv1 (the additive time bias is its per-image bias)
    Feature<S> dn1 = make_feature(ctx, in_channels(), B, H, W);
    detail::conv2d_backward(ctx, conv1_, saved.n1.cview(), dd.cview(), S(1), dn1.view(), false,
                            detail::conv_grads_of(grads.conv1_, time_norm_ == TimeEmbeddingNorm::additive ? d_tproj.data() : nullptr));
    dd = Feature<S>{};
    // time_emb_proj: tproj = temb_act W^T + b
    grads.time_emb_proj_.weight().noalias() += d_tproj.transpose() * temb_act;
    grads.time_emb_proj_.bias() += d_tproj.colwise().sum().transpose();
    if (d_temb != nullptr) {
      Eigen::Map<Matrix>(d_temb, B, temb_channels()).noalias() += d_tproj * time_emb_proj_.weight();
    }
    // norm1, then the shortcut's share
    detail::group_norm_backward(ctx, detail::group_norm_args(norm1_, act_), saved.x.cview(), saved.mean1.data(),
                                saved.rstd1.data(), dn1.cview(), dn1.view(),
                                detail::GroupNormGrads<S>{grads.norm1_.weight().data(), grads.norm1_.bias().data(),
                                                          nullptr, nullptr});
    if (d_x.data != nullptr) parallel_copy(ctx, dn1.map.data, dn1.map.size(), d_x.data);
    if (has_conv_shortcut()) {
      detail::conv2d_backward(ctx, conv_shortcut_, saved.x.cview(), d_out, s, d_x, true,
                              detail::conv_grads_of(grads.conv_shortcut_));
    } else if (d_x.data != nullptr) {
      detail::conv2d_backward_residual(ctx, d_out.data, d_out.size(), s, d_x.data, true);
    }
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
    self.norm1_.for_each_parameter(prefix + "norm1.", f);
    self.conv1_.for_each_parameter(prefix + "conv1.", f);
    self.time_emb_proj_.for_each_parameter(prefix + "time_emb_proj.", f);
    self.norm2_.for_each_parameter(prefix + "norm2.", f);
    self.conv2_.for_each_parameter(prefix + "conv2.", f);
    if (self.has_conv_shortcut()) self.conv_shortcut_.for_each_parameter(prefix + "conv_shortcut.", f);
  }

 private:
  GroupNorm<S> norm1_;
  Conv2d<S> conv1_;
  Linear<S> time_emb_proj_;
  GroupNorm<S> norm2_;
  Conv2d<S> conv2_;
  Conv2d<S> conv_shortcut_;  // empty (no weights) when in == out
  Activation act_ = Activation::silu;
  TimeEmbeddingNorm time_norm_ = TimeEmbeddingNorm::additive;
  double output_scale_factor_ = 1.0;
  double dropout_ = 0.0;
};

}  // namespace ddpm::nn
