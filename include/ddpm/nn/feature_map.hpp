// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// FeatureMap: how the layers of nn/ hold a batch of images internally, channel-major [C][N][H][W]. Each
// channel of the whole batch is one contiguous row of N*H*W values, so a batch is a C x (N*H*W) row-major
// matrix: a convolution over the whole batch is one matrix product, skip concatenation along channels is
// one copy, and the per-channel operations (bias, GroupNorm affine) are contiguous. The public entry points
// take and return the usual NCHW tensors and convert once at each end.

#include <algorithm>
#include <concepts>
#include <cstring>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "ddpm/nn/context.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

// FeatureMap (the view) and Feature (a view that owns a pool buffer) are defined in nn/context.hpp, beside
// the Workspace whose pool lends the storage.

/// A feature of the given shape with storage from ctx (uninitialised).
template <class S>
Feature<S> make_feature(Workspace<S>& ctx, Eigen::Index channels, Eigen::Index batch, Eigen::Index height,
                        Eigen::Index width) {
  Feature<S> f{ctx.acquire(channels * batch * height * width), {}};
  f.map = {f.storage.data(), channels, batch, height, width};
  return f;
}

/// dst[0 .. n) = src[0 .. n), cut over ctx's threads when it is large.
template <class S>
void parallel_copy(Workspace<S>& ctx, const S* src, Eigen::Index n, S* dst) {
  constexpr Eigen::Index kGrain = Eigen::Index{1} << 15;
  if (ctx.num_threads() == 1 || n < 2 * kGrain) {
    std::copy_n(src, n, dst);
    return;
  }
  ctx.parallel_for(n, [&](Eigen::Index begin, Eigen::Index end, int) { std::copy_n(src + begin, end - begin, dst + begin); });
}

/// Copies an NCHW tensor into a channel-major map of the same shape, optionally as 2 x - 1 (diffusers'
/// center_input_sample).
template <DenseTensor X, class S>
void nchw_to_channel_major(const X& x, FeatureMap<S> out, bool center = false) {
  static_assert(rank_v<X> == 4, "ddpm::nn: images are rank-4 NCHW tensors");
  const Eigen::Index n = x.dimension(0), c = x.dimension(1), hw = x.dimension(2) * x.dimension(3);
  using Vec = Eigen::Array<std::remove_const_t<S>, Eigen::Dynamic, 1>;
  for (Eigen::Index b = 0; b < n; ++b) {
    for (Eigen::Index ch = 0; ch < c; ++ch) {
      Eigen::Map<const Eigen::Array<scalar_t<X>, Eigen::Dynamic, 1>> src(x.data() + (b * c + ch) * hw, hw);
      Eigen::Map<Vec> dst(out.image_channel(ch, b), hw);
      if (center) {
        dst = src.template cast<std::remove_const_t<S>>() * 2 - 1;
      } else {
        dst = src.template cast<std::remove_const_t<S>>();
      }
    }
  }
}

/// Copies a channel-major map into an NCHW tensor (resized if it is a Tensor, checked if it is a map).
template <class S, MutableDenseTensor Out>
void channel_major_to_nchw(FeatureMap<const S> in, Out& out) {
  static_assert(rank_v<Out> == 4, "ddpm::nn: images are rank-4 NCHW tensors");
  const Eigen::array<Eigen::Index, 4> dims{in.batch, in.channels, in.height, in.width};
  if constexpr (ddpm::detail::is_plain_tensor_v<std::remove_cvref_t<Out>>) {
    if (out.dimensions() != dims) out.resize(dims);
  } else {
    for (int i = 0; i < 4; ++i) {
      if (out.dimension(i) != dims[i]) {
        ddpm::detail::throw_invalid_argument("ddpm::nn: out has shape " + ddpm::detail::shape_string(out) +
                                             ", but must have the model's output shape (" +
                                             ddpm::detail::number_string(dims[0]) + ", " + ddpm::detail::number_string(dims[1]) + ", " +
                                             ddpm::detail::number_string(dims[2]) + ", " + ddpm::detail::number_string(dims[3]) + ")");
      }
    }
  }
  const Eigen::Index hw = in.pixels();
  for (Eigen::Index b = 0; b < in.batch; ++b) {
    for (Eigen::Index c = 0; c < in.channels; ++c) {
      std::copy_n(in.image_channel(c, b), hw, out.data() + (b * in.channels + c) * hw);
    }
  }
}

/// An NCHW tensor as an owned channel-major feature.
template <class S, DenseTensor X>
Feature<S> to_feature(Workspace<S>& ctx, const X& x) {
  Feature<S> f = make_feature(ctx, x.dimension(1), x.dimension(0), x.dimension(2), x.dimension(3));
  nchw_to_channel_major(x, f.view());
  return f;
}

/// A channel-major map as a new NCHW tensor.
template <class S>
Tensor<std::remove_const_t<S>, 4> to_nchw(FeatureMap<S> in) {
  Tensor<std::remove_const_t<S>, 4> out(in.batch, in.channels, in.height, in.width);
  channel_major_to_nchw<std::remove_const_t<S>>(in, out);
  return out;
}

}  // namespace ddpm::nn
