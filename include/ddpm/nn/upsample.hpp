// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Upsample2D: doubles the image by nearest-neighbour interpolation, then (optionally) a 3x3 convolution
// (parameter "conv").

#include <concepts>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/detail/resample_backward.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

template <std::floating_point S>
class Upsample2D {
 public:
  Upsample2D() = default;
  /// Nearest x2 of `channels` channels, followed by a 3x3 convolution (padding 1) when use_conv.
  /// Throws ddpm::invalid_argument if channels < 1.
  explicit Upsample2D(Eigen::Index channels, bool use_conv = true) : channels_(channels) {
    if (channels < 1) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Upsample2D: channels is " + ddpm::detail::number_string(channels) +
                                           ", but must be >= 1");
    }
    if (use_conv) conv_ = Conv2d<S>(channels, channels, 3, 1, 1);
  }

  bool use_conv() const { return conv_.weight().size() > 0; }
  Eigen::Index channels() const { return channels_; }
  Conv2d<S>& conv() { return conv_; }

  /// Rebuilds what the sub-layers derive from their weights (call after changing the weights).
  void prepare() {
    if (use_conv()) conv_.prepare();
  }
  /// Declares a change of the weights written through pointers obtained earlier (see Conv2d).
  void mark_weights_changed() { for_each_parameter("", [](const Parameter<S>&) {}); }
  /// A copy with zero parameters: the gradients, laid out as the parameters (same names, shapes, order).
  Upsample2D gradient_like() const { return zeros_like<S>(*this); }

  /// up[c, b, y, x] = in[c, b, y / 2, x / 2] (PyTorch's interpolate, mode "nearest", scale 2);
  /// out = conv(up) or up.                                                       [docs/unet.md, Eq. (U8)]
  /// `out` must be [channels, batch, 2 H, 2 W]. Throws ddpm::invalid_argument if the shapes do not fit.
  void forward(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out) const {
    if (in.channels != channels_ || out.channels != channels_ || out.batch != in.batch ||
        out.height != 2 * in.height || out.width != 2 * in.width) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Upsample2D::forward: in is " + map_shape_string(in) + " and out " +
                                           map_shape_string(out) + " [C, N, H, W], but must be [" +
                                           ddpm::detail::number_string(channels_) + ", N, H, W] and [" +
                                           ddpm::detail::number_string(channels_) + ", N, 2 H, 2 W]");
    }
    Feature<S> up;
    FeatureMap<S> target = out;
    if (use_conv()) {
      up = make_feature(ctx, channels_, in.batch, out.height, out.width);
      target = up.view();
    }
    const Eigen::Index W = in.width, H = in.height, OW = out.width;
    ctx.parallel_for(in.channels * in.batch, [&](Eigen::Index begin, Eigen::Index end, int) {
      for (Eigen::Index j = begin; j < end; ++j) {
        const Eigen::Index c = j / in.batch, b = j % in.batch;
        const S* src = in.image_channel(c, b);
        S* dst = target.image_channel(c, b);
        for (Eigen::Index y = 0; y < H; ++y) {
          S* row = dst + 2 * y * OW;
          for (Eigen::Index x = 0; x < W; ++x) row[2 * x] = row[2 * x + 1] = src[y * W + x];
          std::copy_n(row, OW, row + OW);
        }
      }
    });
    if (use_conv()) conv_.forward(ctx, up.cview(), out);
  }

  /// The layer applied to an NCHW batch, returned as NCHW (a convenience that allocates).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x) const {
    static_assert(rank_v<X> == 4, "ddpm::nn::Upsample2D: the input must be an NCHW tensor");
    Workspace<S> ctx;
    Feature<S> in = to_feature(ctx, x);
    Feature<S> out = make_feature(ctx, channels_, x.dimension(0), 2 * x.dimension(2), 2 * x.dimension(3));
    forward(ctx, in.cview(), out.view());
    return to_nchw(out.cview());
  }

  /// What backward needs from forward_train: the input.
  struct Saved {
    Feature<S> x;
  };
  /// The training pass (nearest x2, then the conv through im2col), keeping the input.
  void forward_train(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, Saved& saved) const {
    saved.x = make_feature(ctx, in.channels, in.batch, in.height, in.width);
    parallel_copy(ctx, in.data, in.size(), saved.x.map.data);
    if (!use_conv()) {
      forward(ctx, in, out);
      return;
    }
    Feature<S> up = make_feature(ctx, channels_, in.batch, out.height, out.width);
    detail::upsample_nearest2x(ctx, in, up.view());
    conv_.forward_train(ctx, up.cview(), out);
  }
  /// The backward pass: d_x (=, or += when accumulate); parameter gradients added to `grads`.
  void backward(Workspace<S>& ctx, const Saved& saved, FeatureMap<const S> d_out, FeatureMap<S> d_x, bool accumulate,
                Upsample2D& grads) const {
    detail::upsample2d_backward(ctx, use_conv() ? &conv_ : nullptr, saved.x.cview(), static_cast<const S*>(nullptr), d_out, d_x, accumulate,
                                use_conv() ? detail::ConvGrads<S>{grads.conv_.weight().data(),
                                                                  grads.conv_.has_bias() ? grads.conv_.bias().data()
                                                                                         : nullptr,
                                                                  nullptr}
                                           : detail::ConvGrads<S>{});
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
    if (self.use_conv()) self.conv_.for_each_parameter(prefix + "conv.", f);
  }

 private:
  Eigen::Index channels_ = 0;
  Conv2d<S> conv_;
};

}  // namespace ddpm::nn
