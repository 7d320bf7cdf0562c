// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Backward kernels of the layers that change the image size or stack channels, on the channel-major layout
// of nn/feature_map.hpp:
//   Downsample2D (nn/downsample.hpp, [docs/unet.md, Eq. (U7)]): the stride-2 convolution is conv2d_backward
//     (downsample_padding = 0 is the layer's Padding2d{0, 0, 1, 1}); the 2x2 average pool's adjoint spreads
//     each output gradient over its block:  d_x[c, b, 2y + i, 2x + j] = d_out[c, b, y, x] / 4 (i, j in {0, 1}),
//     and 0 on a last row or column that the pool dropped (odd H or W).
//   Upsample2D (nn/upsample.hpp, Eq. (U8)): up = nearest2x(x), out = conv(up) or up. The adjoint of the
//     nearest upsampling sums each 2x2 block:  d_x[c, b, y, x] = sum_{i, j in {0, 1}} d_up[c, b, 2y + i, 2x + j],
//     and d_up is conv2d_backward's d_x (with the conv) or d_out.
//   Skip concatenation [a; b] along channels (nn/unet_blocks.hpp concat_channels): channel-major, so its
//     gradient is the two contiguous channel ranges of d_cat (channel_slice views them without a copy).
// Every output value is computed by one thread in a fixed order: results do not depend on the thread count.

#include <algorithm>
#include <concepts>
#include <string>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/detail/conv_backward.hpp"
#include "ddpm/nn/feature_map.hpp"

namespace ddpm::nn::detail {

namespace resample_detail {

inline std::string dims(Eigen::Index c, Eigen::Index n, Eigen::Index h, Eigen::Index w) {
  return "[C=" + ddpm::detail::number_string(c) + ", N=" + ddpm::detail::number_string(n) + ", H=" + ddpm::detail::number_string(h) +
         ", W=" + ddpm::detail::number_string(w) + "]";
}
template <class A>
std::string dims(const FeatureMap<A>& m) {
  return dims(m.channels, m.batch, m.height, m.width);
}

/// Runs f(c, b) for every (channel, image) plane of `channels` x `batch`, cut over ctx's threads.
template <class S, class F>
void for_each_plane(Workspace<S>& ctx, Eigen::Index channels, Eigen::Index batch, F&& f) {
  ctx.parallel_for(channels * batch, [&](Eigen::Index begin, Eigen::Index end, int) {
    for (Eigen::Index j = begin; j < end; ++j) f(j / batch, j % batch);
  });
}

}  // namespace resample_detail

/// The adjoint of 2x2 average pooling of stride 2 (Downsample2D without a conv):
///   d_x[c, b, 2y + i, 2x + j] (=, or += when accumulate) d_out[c, b, y, x] / 4
/// for y < H / 2, x < W / 2; the last row (column) of an odd H (W), which the pool dropped, gets 0 (or is
/// left as it is when accumulating). d_x is the pool's input shape, d_out [C, N, H / 2, W / 2].
/// Throws ddpm::invalid_argument if the shapes do not fit.
template <std::floating_point S>
void avg_pool2x2_backward(Workspace<S>& ctx, FeatureMap<const S> d_out, FeatureMap<S> d_x, bool accumulate) {
  if ((d_out.data == nullptr && d_out.size() > 0) || (d_x.data == nullptr && d_x.size() > 0) ||
      d_out.channels != d_x.channels || d_out.batch != d_x.batch || d_out.height != d_x.height / 2 ||
      d_out.width != d_x.width / 2) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::avg_pool2x2_backward: d_out " +
                                         resample_detail::dims(d_out) + " and d_x " + resample_detail::dims(d_x) +
                                         " do not fit (d_out must be [C, N, H / 2, W / 2] of d_x's [C, N, H, W])");
  }
  const Eigen::Index W = d_x.width, H = d_x.height, OH = d_out.height, OW = d_out.width;
  resample_detail::for_each_plane(ctx, d_x.channels, d_x.batch, [&](Eigen::Index c, Eigen::Index b) {
    const S* src = d_out.image_channel(c, b);
    S* dst = d_x.image_channel(c, b);
    for (Eigen::Index y = 0; y < OH; ++y) {
      S* r0 = dst + 2 * y * W;
      S* r1 = r0 + W;
      for (Eigen::Index x = 0; x < OW; ++x) {
        const S g = src[y * OW + x] * S(0.25);
        if (accumulate) {
          r0[2 * x] += g;
          r0[2 * x + 1] += g;
          r1[2 * x] += g;
          r1[2 * x + 1] += g;
        } else {
          r0[2 * x] = r0[2 * x + 1] = r1[2 * x] = r1[2 * x + 1] = g;
        }
      }
      if (!accumulate && W > 2 * OW) r0[W - 1] = r1[W - 1] = S(0);
    }
    if (!accumulate && H > 2 * OH) std::fill_n(dst + (H - 1) * W, W, S(0));
  });
}

/// Nearest-neighbour upsampling by 2 (Upsample2D's first step, for recomputing what backward needs):
///   out[c, b, y, x] = in[c, b, y / 2, x / 2];  out is [C, N, 2 H, 2 W].
/// Throws ddpm::invalid_argument if the shapes do not fit.
template <std::floating_point S>
void upsample_nearest2x(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out) {
  if ((in.data == nullptr && in.size() > 0) || (out.data == nullptr && out.size() > 0) || in.channels != out.channels ||
      in.batch != out.batch || out.height != 2 * in.height || out.width != 2 * in.width) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::upsample_nearest2x: in " + resample_detail::dims(in) +
                                         " and out " + resample_detail::dims(out) +
                                         " do not fit (out must be [C, N, 2 H, 2 W])");
  }
  const Eigen::Index W = in.width, H = in.height, OW = out.width;
  resample_detail::for_each_plane(ctx, in.channels, in.batch, [&](Eigen::Index c, Eigen::Index b) {
    const S* src = in.image_channel(c, b);
    S* dst = out.image_channel(c, b);
    for (Eigen::Index y = 0; y < H; ++y) {
      S* row = dst + 2 * y * OW;
      for (Eigen::Index x = 0; x < W; ++x) row[2 * x] = row[2 * x + 1] = src[y * W + x];
      std::copy_n(row, OW, row + OW);
    }
  });
}

/// The adjoint of upsample_nearest2x:                                        [docs/unet.md, Eq. (U8)]
///   d_x[c, b, y, x] (=, or += when accumulate) (d_up[2y, 2x] + d_up[2y, 2x + 1]) + (d_up[2y + 1, 2x] + d_up[2y + 1, 2x
///   + 1])
/// d_up is [C, N, 2 H, 2 W], d_x [C, N, H, W]. Throws ddpm::invalid_argument if the shapes do not fit.
template <std::floating_point S>
void upsample_nearest2x_backward(Workspace<S>& ctx, FeatureMap<const S> d_up, FeatureMap<S> d_x, bool accumulate) {
  if ((d_up.data == nullptr && d_up.size() > 0) || (d_x.data == nullptr && d_x.size() > 0) ||
      d_up.channels != d_x.channels || d_up.batch != d_x.batch || d_up.height != 2 * d_x.height ||
      d_up.width != 2 * d_x.width) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::upsample_nearest2x_backward: d_up " +
                                         resample_detail::dims(d_up) + " and d_x " + resample_detail::dims(d_x) +
                                         " do not fit (d_up must be [C, N, 2 H, 2 W] of d_x's [C, N, H, W])");
  }
  const Eigen::Index W = d_x.width, H = d_x.height, UW = d_up.width;
  resample_detail::for_each_plane(ctx, d_x.channels, d_x.batch, [&](Eigen::Index c, Eigen::Index b) {
    const S* src = d_up.image_channel(c, b);
    S* dst = d_x.image_channel(c, b);
    for (Eigen::Index y = 0; y < H; ++y) {
      const S* r0 = src + 2 * y * UW;
      const S* r1 = r0 + UW;
      S* out = dst + y * W;
      for (Eigen::Index x = 0; x < W; ++x) {
        const S g = (r0[2 * x] + r0[2 * x + 1]) + (r1[2 * x] + r1[2 * x + 1]);
        out[x] = accumulate ? out[x] + g : g;
      }
    }
  });
}

/// The backward pass of Downsample2D:                                         [docs/unet.md, Eq. (U7)]
/// with its convolution (`conv`, the layer's stride-2 Conv2d), conv2d_backward of x (the layer's input as
/// forward saw it) with scale 1, accumulating d_weight and d_bias into grads; without (conv == nullptr),
/// avg_pool2x2_backward (x is then used for its shape only, and grads must be empty). d_x is written, or
/// added to when accumulate; with a conv it may have null data (no input gradient).
/// Throws ddpm::invalid_argument if the shapes do not fit.
template <std::floating_point S>
void downsample2d_backward(Workspace<S>& ctx, const Conv2d<S>* conv, FeatureMap<const S> x, FeatureMap<const S> d_out,
                           FeatureMap<S> d_x, bool accumulate, const ConvGrads<S>& grads) {
  if (conv != nullptr) {
    conv2d_backward(ctx, *conv, x, d_out, S(1), d_x, accumulate, grads);
    return;
  }
  if (d_x.channels != x.channels || d_x.batch != x.batch || d_x.height != x.height || d_x.width != x.width) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::downsample2d_backward: d_x is " +
                                         resample_detail::dims(d_x) + ", but must have x's shape " +
                                         resample_detail::dims(x));
  }
  if (grads.d_weight != nullptr || grads.d_bias != nullptr || grads.d_batch_bias != nullptr) {
    ddpm::detail::throw_invalid_argument(
        "ddpm::nn::detail::downsample2d_backward: grads has parameter buffers, but average pooling has no "
        "parameters (pass empty ConvGrads)");
  }
  avg_pool2x2_backward(ctx, d_out, d_x, accumulate);
}

/// The backward pass of Upsample2D:                                           [docs/unet.md, Eq. (U8)]
/// with its convolution (`conv`, the layer's 3x3 Conv2d), d_up = conv2d_backward of up = nearest2x(x) (its
/// input) with scale 1, accumulating d_weight and d_bias into grads, then d_x = the adjoint of nearest2x of
/// d_up; without (conv == nullptr), d_x = the adjoint of nearest2x of d_out. `up` is the upsampled input if
/// forward kept it ([C, N, 2 H, 2 W]); when null it is recomputed from x. d_x is written, or added to when
/// accumulate; its data may be null (only the parameter gradients). Scratch from ctx: up (when not given)
/// and d_up, C N 4 H W values each, besides conv2d_backward's.
/// Throws ddpm::invalid_argument if the shapes do not fit.
template <std::floating_point S>
void upsample2d_backward(Workspace<S>& ctx, const Conv2d<S>* conv, FeatureMap<const S> x, const S* up,
                         FeatureMap<const S> d_out, FeatureMap<S> d_x, bool accumulate, const ConvGrads<S>& grads) {
  if (x.data == nullptr || d_out.channels != x.channels || d_out.batch != x.batch || d_out.height != 2 * x.height ||
      d_out.width != 2 * x.width ||
      (d_x.data != nullptr &&
       (d_x.channels != x.channels || d_x.batch != x.batch || d_x.height != x.height || d_x.width != x.width))) {
    ddpm::detail::throw_invalid_argument(
        "ddpm::nn::detail::upsample2d_backward: x " + resample_detail::dims(x) + ", d_out " +
        resample_detail::dims(d_out) + " and d_x " + resample_detail::dims(d_x) +
        " do not fit (d_out must be [C, N, 2 H, 2 W] of x's [C, N, H, W], and d_x x's shape)");
  }
  if (conv == nullptr) {
    if (grads.d_weight != nullptr || grads.d_bias != nullptr || grads.d_batch_bias != nullptr) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::detail::upsample2d_backward: grads has parameter buffers, but there is no conv (pass empty "
          "ConvGrads)");
    }
    if (d_x.data != nullptr) upsample_nearest2x_backward(ctx, d_out, d_x, accumulate);
    return;
  }
  const Eigen::Index C = x.channels, N = x.batch, UH = 2 * x.height, UW = 2 * x.width;
  typename Workspace<S>::Buffer up_buffer, d_up_buffer;
  if (up == nullptr && grads.d_weight != nullptr) {
    up_buffer = ctx.acquire(C * N * UH * UW);
    upsample_nearest2x(ctx, x, FeatureMap<S>{up_buffer.data(), C, N, UH, UW});
    up = up_buffer.data();
  }
  FeatureMap<S> d_up{};
  if (d_x.data != nullptr) {
    d_up_buffer = ctx.acquire(C * N * UH * UW);
    d_up = {d_up_buffer.data(), C, N, UH, UW};
  }
  // without d_weight, the conv's input is only needed for its shape
  const FeatureMap<const S> up_map{up != nullptr ? up : x.data, C, N, UH, UW};
  conv2d_backward(ctx, *conv, up_map, d_out, S(1), d_up, false, grads);
  if (d_x.data != nullptr) upsample_nearest2x_backward(ctx, FeatureMap<const S>(d_up), d_x, accumulate);
}

/// Channels [c0, c1) of a map: a view (no copy), since each channel is one contiguous row. The gradient of
/// a concatenation [a; b] along channels is channel_slice(d_cat, 0, a.channels) for a and
/// channel_slice(d_cat, a.channels, a.channels + b.channels) for b.
/// Throws ddpm::invalid_argument unless 0 <= c0 <= c1 <= m.channels.
template <class S>
FeatureMap<S> channel_slice(FeatureMap<S> m, Eigen::Index c0, Eigen::Index c1) {
  if (c0 < 0 || c1 < c0 || c1 > m.channels) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::channel_slice: the range [" + ddpm::detail::number_string(c0) + ", " +
                                         ddpm::detail::number_string(c1) + ") must lie in [0, " + ddpm::detail::number_string(m.channels) + "]");
  }
  return {m.data + c0 * m.plane(), c1 - c0, m.batch, m.height, m.width};
}

/// dst (=, or += when accumulate) src, two maps of the same shape, cut over ctx's threads.
/// Throws ddpm::invalid_argument if the shapes differ.
template <std::floating_point S>
void copy_or_add_feature(Workspace<S>& ctx, FeatureMap<const S> src, FeatureMap<S> dst, bool accumulate) {
  if (src.channels != dst.channels || src.batch != dst.batch || src.height != dst.height || src.width != dst.width) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::copy_or_add_feature: src " + resample_detail::dims(src) +
                                         " and dst " + resample_detail::dims(dst) + " differ in shape");
  }
  if (!accumulate) {
    parallel_copy(ctx, src.data, src.size(), dst.data);
    return;
  }
  conv2d_backward_residual(ctx, src.data, src.size(), S(1), dst.data, true);
}

/// The backward pass of concat_channels(a, b) = [a; b] into separate buffers:
///   d_a (=, or += when accumulate_a) d_cat[0 .. a.channels),  d_b (=, or +=) d_cat[a.channels ..)
/// Either target may have null data (skipped). Where a plain view suffices, use channel_slice instead.
/// Throws ddpm::invalid_argument if d_a's and d_b's channels do not add up to d_cat's or a shape differs.
template <std::floating_point S>
void concat_channels_backward(Workspace<S>& ctx, FeatureMap<const S> d_cat, FeatureMap<S> d_a, bool accumulate_a,
                              FeatureMap<S> d_b, bool accumulate_b) {
  if (d_a.channels + d_b.channels != d_cat.channels) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::concat_channels_backward: d_a has " +
                                         ddpm::detail::number_string(d_a.channels) + " and d_b " + ddpm::detail::number_string(d_b.channels) +
                                         " channels, but together they must have d_cat's " +
                                         ddpm::detail::number_string(d_cat.channels));
  }
  if (d_a.data != nullptr) copy_or_add_feature(ctx, channel_slice(d_cat, 0, d_a.channels), d_a, accumulate_a);
  if (d_b.data != nullptr) {
    copy_or_add_feature(ctx, channel_slice(d_cat, d_a.channels, d_cat.channels), d_b, accumulate_b);
  }
}

}  // namespace ddpm::nn::detail
