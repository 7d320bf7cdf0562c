// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Downsample2D: halves the image, by a 3x3 convolution of stride 2 (parameter "conv") or, without a
// convolution, by 2x2 average pooling.

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
class Downsample2D {
 public:
  Downsample2D() = default;
  /// With use_conv, a 3x3 stride-2 convolution of `channels` channels with zero padding `padding` on every
  /// side, except that padding = 0 means diffusers' asymmetric pad (0 top/left, 1 bottom/right); without,
  /// 2x2 average pooling of stride 2.
  /// Throws ddpm::invalid_argument if channels < 1 or padding < 0.
  Downsample2D(Eigen::Index channels, bool use_conv = true, Eigen::Index padding = 1) : channels_(channels) {
    if (channels < 1 || padding < 0) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Downsample2D: channels is " + ddpm::detail::number_string(channels) +
                                           " and padding " + ddpm::detail::number_string(padding) +
                                           ", but must be >= 1 and >= 0");
    }
    if (use_conv) {
      const Padding2d pad = padding == 0 ? Padding2d{0, 0, 1, 1} : Padding2d::same(padding);
      conv_ = Conv2d<S>(channels, channels, 3, 3, 2, pad);
    }
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
  Downsample2D gradient_like() const { return zeros_like<S>(*this); }

  Eigen::Index output_height(Eigen::Index h) const { return use_conv() ? conv_.output_height(h) : h / 2; }
  Eigen::Index output_width(Eigen::Index w) const { return use_conv() ? conv_.output_width(w) : w / 2; }

  /// out = conv(x) (stride 2), or out[c, b, y, x] = mean of in[c, b, 2y .. 2y+1, 2x .. 2x+1].
  ///                                                                                [docs/unet.md, Eq. (U7)]
  /// Throws ddpm::invalid_argument if the shapes do not fit.
  void forward(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out) const {
    if (use_conv()) {
      conv_.forward(ctx, in, out);
      return;
    }
    if (in.channels != channels_ || out.channels != channels_ || out.batch != in.batch ||
        out.height != in.height / 2 || out.width != in.width / 2) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Downsample2D::forward: in is " + map_shape_string(in) + " and out " +
                                           map_shape_string(out) + " [C, N, H, W], but must be [" +
                                           ddpm::detail::number_string(channels_) + ", N, H, W] and [" +
                                           ddpm::detail::number_string(channels_) + ", N, H / 2, W / 2]");
    }
    const Eigen::Index W = in.width, OH = out.height, OW = out.width;
    ctx.parallel_for(in.channels * in.batch, [&](Eigen::Index begin, Eigen::Index end, int) {
      for (Eigen::Index j = begin; j < end; ++j) {
        const Eigen::Index c = j / in.batch, b = j % in.batch;
        const S* src = in.image_channel(c, b);
        S* dst = out.image_channel(c, b);
        for (Eigen::Index y = 0; y < OH; ++y) {
          const S* r0 = src + 2 * y * W;
          const S* r1 = r0 + W;
          for (Eigen::Index x = 0; x < OW; ++x) {
            dst[y * OW + x] = (r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1]) * S(0.25);
          }
        }
      }
    });
  }

  /// The layer applied to an NCHW batch, returned as NCHW (a convenience that allocates).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x) const {
    static_assert(rank_v<X> == 4, "ddpm::nn::Downsample2D: the input must be an NCHW tensor");
    Workspace<S> ctx;
    Feature<S> in = to_feature(ctx, x);
    Feature<S> out =
        make_feature(ctx, channels_, x.dimension(0), output_height(x.dimension(2)), output_width(x.dimension(3)));
    forward(ctx, in.cview(), out.view());
    return to_nchw(out.cview());
  }

  /// What backward needs from forward_train: the input.
  struct Saved {
    Feature<S> x;
  };
  /// The training pass (the conv through im2col), keeping the input.
  void forward_train(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, Saved& saved) const {
    saved.x = make_feature(ctx, in.channels, in.batch, in.height, in.width);
    parallel_copy(ctx, in.data, in.size(), saved.x.map.data);
    if (use_conv()) {
      conv_.forward_train(ctx, in, out);
    } else {
      forward(ctx, in, out);
    }
  }
  /// The backward pass: d_x (=, or += when accumulate); parameter gradients added to `grads`.
  void backward(Workspace<S>& ctx, const Saved& saved, FeatureMap<const S> d_out, FeatureMap<S> d_x, bool accumulate,
                Downsample2D& grads) const {
    detail::downsample2d_backward(ctx, use_conv() ? &conv_ : nullptr, saved.x.cview(), d_out, d_x, accumulate,
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
