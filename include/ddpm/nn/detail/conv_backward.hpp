// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The backward pass of Conv2d (nn/conv2d.hpp, groups = 1) with its fused epilogue, on the channel-major
// layout of nn/feature_map.hpp. Forward, with K = in_channels * kh * kw and col(x) the im2col matrix
// [K, P] of the input (P = batch * out_h * out_w output columns):
//   out = scale * (R + W col(x) + bias[o] + batch_bias[b, o])          [docs/unet.md, Eq. (U1)]
// where R is the previous content of out (ConvEpilogue::accumulate) and/or ConvEpilogue::residual. With
// g = d_out and dy = scale * g (the gradient of the convolution's own result):
//   d_W[o, k]          += sum_p dy[o, p] col(x)[k, p]               (dy col(x)^T: one GEMM per block)
//   d_bias[o]          += sum_p dy[o, p]
//   d_batch_bias[b, o] += sum over the pixels p of image b of dy[o, p]
//   d_x                 = col2im(W^T dy)                             (the adjoint of im2col: a scatter-add)
//   d_R                 = dy = scale * d_out                         (see conv2d_backward_residual)
// The residual branch is the caller's: R is not an input of the kernel, and its gradient is just the
// scaled d_out (conv2d_backward_residual writes or adds it where the caller wants it).
//
// What forward must save: the input x only (the weights are the layer's). Winograd or im2col forward
// compute the same function, so either may have run.
//
// Threads: the columns are cut into blocks of whole output rows (about kConvBackwardColumns each, chosen
// from the shape alone). For each block, the threads share the im2col (by input channels), then thread t
// computes the rows of d_W of its output channels and the rows of W^T dy of its input channels, and
// scatters them into its own channels of d_x; so no two threads write the same value and no reduction
// across threads is needed. The channels are shared out in groups of kConvChannelGroup (a multiple of the
// GEMM kernel's register block), so every value is computed by the same sequence of floating-point
// operations whatever the thread count: results are bit-identical across thread counts (tested).

#include <algorithm>
#include <concepts>
#include <string>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/detail/direct_conv3x3.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/feature_map.hpp"

namespace ddpm::nn::detail {

/// Output columns per block of the im2col backward pass (each block's im2col and W^T dy are K x this).
inline constexpr Eigen::Index kConvBackwardColumns = 1024;
/// Channels are handed to threads in groups of this many (the last group takes the remainder), so that
/// each thread's GEMM rows start on a multiple of the GEMM kernel's register block.
inline constexpr Eigen::Index kConvChannelGroup = 16;

/// The shape of a convolution: what the backward kernel needs besides the weights.
struct ConvGeometry {
  Eigen::Index in_channels = 0, out_channels = 0, kernel_h = 1, kernel_w = 1, stride = 1;
  Padding2d padding{};

  /// K = in_channels * kernel_h * kernel_w: the columns of the weight matrix [out, K].
  Eigen::Index weight_columns() const { return in_channels * kernel_h * kernel_w; }
  Eigen::Index output_height(Eigen::Index h) const {
    return (h + padding.top + padding.bottom - kernel_h) / stride + 1;
  }
  Eigen::Index output_width(Eigen::Index w) const { return (w + padding.left + padding.right - kernel_w) / stride + 1; }
  /// A 1x1 convolution of stride 1 without padding: a plain product with the input (no im2col).
  bool pointwise() const { return kernel_h == 1 && kernel_w == 1 && stride == 1 && padding == Padding2d{}; }
};

/// The geometry of a Conv2d layer.
template <std::floating_point S>
ConvGeometry conv_geometry(const Conv2d<S>& conv) {
  return {conv.in_channels(), conv.out_channels(), conv.kernel_h(), conv.kernel_w(), conv.stride(), conv.padding()};
}

/// Where conv2d_backward accumulates (+=) the parameter gradients; a null pointer skips that gradient.
template <class S>
struct ConvGrads {
  S* d_weight = nullptr;      ///< [out, in * kh * kw], laid out as Conv2d::weight()
  S* d_bias = nullptr;        ///< [out]
  S* d_batch_bias = nullptr;  ///< [batch, out] row-major, as ConvEpilogue::batch_bias
};

/// The channel range [c0, c1) of thread t of `threads` when `count` channels are shared out in groups of
/// kConvChannelGroup (the last group takes the remainder; an empty range when there are fewer groups).
inline std::pair<Eigen::Index, Eigen::Index> conv_channel_range(Eigen::Index count, int t, int threads) {
  const Eigen::Index groups = std::max<Eigen::Index>(1, count / kConvChannelGroup);
  const Eigen::Index g0 = groups * t / threads, g1 = groups * (t + 1) / threads;
  if (g0 >= g1) return {0, 0};
  return {g0 * kConvChannelGroup, g1 == groups ? count : g1 * kConvChannelGroup};
}

/// col[(i - i0) * kh * kw + u * kw + v][p - p0] = x_pad[i, b, y s + u, x s + v] for the input channels
/// [i0, i1) and the output rows [r0, r1) (row r = b * OH + y; p = r * OW + x): forward's im2col restricted to
/// some channels. The rows of one channel are contiguous, so a channel range is a contiguous row range.
template <class S>
void conv_im2col(const ConvGeometry& g, FeatureMap<const S> in, Eigen::Index OH, Eigen::Index OW, Eigen::Index r0,
                 Eigen::Index r1, Eigen::Index i0, Eigen::Index i1, S* col) {
  const Eigen::Index cols = (r1 - r0) * OW, H = in.height, W = in.width, s = g.stride;
  const Eigen::Index kh = g.kernel_h, kw = g.kernel_w;
  for (Eigen::Index i = i0; i < i1; ++i) {
    for (Eigen::Index u = 0; u < kh; ++u) {
      for (Eigen::Index v = 0; v < kw; ++v) {
        S* dst = col + (((i - i0) * kh + u) * kw + v) * cols;
        const Eigen::Index dx = v - g.padding.left;
        if (s == 1 && OW == W) {
          im2col_tap_same_width(in.channel(i), H, W, OH, r0, r1, u - g.padding.top, dx, dst);
          continue;
        }
        // output x with 0 <= x * s + dx < W
        const Eigen::Index x0 = std::min<Eigen::Index>(dx >= 0 ? 0 : (-dx + s - 1) / s, OW);
        const Eigen::Index x1 = std::clamp<Eigen::Index>(W - dx > 0 ? (W - dx + s - 1) / s : 0, x0, OW);
        // (image, y) of row r counted along, not divided out per row (two 64-bit divisions per short run)
        for (Eigen::Index r = r0, b = r0 / OH, y = r0 % OH; r < r1;
             ++r, dst += OW, b += (y + 1 == OH), y = (y + 1 == OH ? 0 : y + 1)) {
          const Eigen::Index iy = y * s + u - g.padding.top;
          if (iy < 0 || iy >= H) {
            std::fill_n(dst, OW, S(0));
            continue;
          }
          const S* src = in.image_channel(i, b) + iy * W + dx;
          if (s == 1) {
            im2col_run(dst, src, x0, x1, OW);
            continue;
          }
          std::fill_n(dst, x0, S(0));
          for (Eigen::Index x = x0; x < x1; ++x) dst[x] = src[x * s];
          std::fill(dst + x1, dst + OW, S(0));
        }
      }
    }
  }
}

/// The adjoint of conv_im2col: d_x[i, b, y s + u, x s + v] += dcol[(i - i0) * kh * kw + u * kw + v][p - p0]
/// for the input channels [i0, i1) and output rows [r0, r1); padding positions are dropped. Each target is
/// visited in a fixed order (u, v, then the rows), so the sums do not depend on who runs the loop.
template <class S>
void conv_col2im(const ConvGeometry& g, const S* dcol, Eigen::Index OH, Eigen::Index OW, Eigen::Index r0,
                 Eigen::Index r1, Eigen::Index i0, Eigen::Index i1, FeatureMap<S> d_x) {
  const Eigen::Index cols = (r1 - r0) * OW, H = d_x.height, W = d_x.width, s = g.stride;
  const Eigen::Index kh = g.kernel_h, kw = g.kernel_w;
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  for (Eigen::Index i = i0; i < i1; ++i) {
    for (Eigen::Index u = 0; u < kh; ++u) {
      for (Eigen::Index v = 0; v < kw; ++v) {
        const S* src = dcol + (((i - i0) * kh + u) * kw + v) * cols;
        const Eigen::Index dx = v - g.padding.left;
        const Eigen::Index x0 = std::min<Eigen::Index>(dx >= 0 ? 0 : (-dx + s - 1) / s, OW);
        const Eigen::Index x1 = std::clamp<Eigen::Index>(W - dx > 0 ? (W - dx + s - 1) / s : 0, x0, OW);
        if (x1 <= x0) continue;
        // (image, y) of row r counted along, not divided out per row (two 64-bit divisions per short run)
        for (Eigen::Index r = r0, b = r0 / OH, y = r0 % OH; r < r1;
             ++r, src += OW, b += (y + 1 == OH), y = (y + 1 == OH ? 0 : y + 1)) {
          const Eigen::Index iy = y * s + u - g.padding.top;
          if (iy < 0 || iy >= H) continue;
          S* dst = d_x.image_channel(i, b) + iy * W + dx;
          if (s == 1) {
            Eigen::Map<Array>(dst + x0, x1 - x0) += Eigen::Map<const Array>(src + x0, x1 - x0);
          } else {
            for (Eigen::Index x = x0; x < x1; ++x) dst[x * s] += src[x];
          }
        }
      }
    }
  }
}

/// d_bias[o] += scale sum_{b, pixels} d_out[o, b, .],  d_batch_bias[b, o] += scale sum_{pixels} d_out[o, b, .]
/// (either pointer may be null): the bias parts of conv2d_backward, one output channel per task, each sum
/// in a fixed order.
template <std::floating_point S>
void conv2d_bias_backward(Workspace<S>& ctx, FeatureMap<const S> d_out, S scale, S* d_bias, S* d_batch_bias) {
  if (d_bias == nullptr && d_batch_bias == nullptr) return;
  const Eigen::Index M = d_out.channels, N = d_out.batch, n = d_out.pixels();
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  ctx.parallel_for(M, [&](Eigen::Index m0, Eigen::Index m1, int) {
    for (Eigen::Index m = m0; m < m1; ++m) {
      S total = S(0);
      for (Eigen::Index b = 0; b < N; ++b) {
        const S sum = n > 0 ? Eigen::Map<const Array>(d_out.image_channel(m, b), n).sum() : S(0);
        if (d_batch_bias != nullptr) d_batch_bias[b * M + m] += scale * sum;
        total += sum;
      }
      if (d_bias != nullptr) d_bias[m] += scale * total;
    }
  });
}

/// The gradient of the residual branch of the epilogue (the previous content of out under
/// ConvEpilogue::accumulate, and ConvEpilogue::residual): d_residual = scale * d_out, written, or added
/// when accumulate (e.g. into the gradient of a ResNet block's shortcut output). `n` values each.
template <std::floating_point S>
void conv2d_backward_residual(Workspace<S>& ctx, const S* d_out, Eigen::Index n, S scale, S* d_residual,
                              bool accumulate) {
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  auto run = [&](Eigen::Index begin, Eigen::Index end, int) {
    Eigen::Map<Array> dst(d_residual + begin, end - begin);
    const Eigen::Map<const Array> src(d_out + begin, end - begin);
    if (accumulate) {
      dst += scale * src;
    } else {
      dst = scale * src;
    }
  };
  constexpr Eigen::Index kGrain = Eigen::Index{1} << 15;
  if (ctx.num_threads() == 1 || n < 2 * kGrain) {
    if (n > 0) run(0, n, 0);
  } else {
    ctx.parallel_for(n, run);
  }
}

/// The number of column blocks of a backward pass over `rows` output rows of `columns` columns in all:
/// about kConvBackwardColumns columns each, but at least 4 blocks (for the threads) while each keeps 256
/// columns or more. It depends on the shape alone, never on the thread count.
inline Eigen::Index conv_backward_blocks(Eigen::Index columns, Eigen::Index rows) {
  Eigen::Index blocks = std::max<Eigen::Index>(1, (columns + kConvBackwardColumns / 2) / kConvBackwardColumns);
  blocks = std::max(blocks, std::min<Eigen::Index>(4, columns / 256));
  blocks = std::clamp<Eigen::Index>(blocks, 1, std::max<Eigen::Index>(rows, 1));
  const Eigen::Index block_rows = (rows + blocks - 1) / blocks;
  return std::max<Eigen::Index>(1, (rows + block_rows - 1) / block_rows);
}

/// d_x (=, or += when accumulate) scale * (the input gradient of a stride-1 convolution), computed as the
/// forward convolution of d_out with the flipped, channel-transposed kernel (see conv2d_backward). Blocks of
/// d_x's rows are shared out over the threads whole; each value comes from one product of a shape fixed by
/// the shape of the problem. Precondition: stride 1 and every padding smaller than the kernel along its axis.
template <std::floating_point S>
void conv2d_backward_input_transposed(Workspace<S>& ctx, const ConvGeometry& g, const S* weight,
                                      FeatureMap<const S> d_out, S scale, FeatureMap<S> d_x, bool accumulate) {
  const Eigen::Index M = g.out_channels, I = g.in_channels, kh = g.kernel_h, kw = g.kernel_w, kk = kh * kw;
  const Eigen::Index K = I * kk, Kt = M * kk, H = d_x.height, W = d_x.width, Pin = d_x.plane();
  const ConvGeometry gt{
      M,
      I,
      kh,
      kw,
      1,
      Padding2d{kh - 1 - g.padding.top, kw - 1 - g.padding.left, kh - 1 - g.padding.bottom, kw - 1 - g.padding.right}};
  // W'[i, (m * kh + u) * kw + v] = W[m, (i * kh + kh - 1 - u) * kw + kw - 1 - v]
  typename Workspace<S>::Buffer wt = ctx.acquire(I * Kt);
  ctx.parallel_for(I, [&](Eigen::Index i0, Eigen::Index i1, int) {
    for (Eigen::Index i = i0; i < i1; ++i) {
      for (Eigen::Index m = 0; m < M; ++m) {
        const S* src = weight + m * K + i * kk;
        S* dst = wt.data() + i * Kt + m * kk;
        for (Eigen::Index j = 0; j < kk; ++j) dst[j] = src[kk - 1 - j];
      }
    }
  });
  const Eigen::Index rows = d_x.batch * H;
  const Eigen::Index blocks = conv_backward_blocks(Pin, rows), block_rows = (rows + blocks - 1) / blocks;
  const Eigen::Index used = std::min<Eigen::Index>(ctx.num_threads(), blocks), col_size = Kt * block_rows * W;
  typename Workspace<S>::Buffer cols = ctx.acquire(used * col_size);
  ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
    S* col = cols.data() + thread * col_size;
    for (Eigen::Index blk = begin; blk < end; ++blk) {
      const Eigen::Index r0 = blk * block_rows, r1 = std::min(rows, r0 + block_rows);
      const Eigen::Index p0 = r0 * W, n = (r1 - r0) * W;
      conv_im2col(gt, d_out, H, W, r0, r1, Eigen::Index{0}, M, col);
      gemm(ctx.packing_buffer(thread), I, n, Kt, static_cast<const S*>(wt.data()), Kt, static_cast<const S*>(col), n,
           d_x.data + p0, Pin, accumulate, scale);
    }
  });
}

/// Checks the shapes of a conv2d_backward call. Throws ddpm::invalid_argument naming what does not fit.
template <class S>
void check_conv2d_backward(const ConvGeometry& g, const S* weight, FeatureMap<const S> x, FeatureMap<const S> d_out,
                           FeatureMap<S> d_x) {
  const auto dims = [](Eigen::Index c, Eigen::Index n, Eigen::Index h, Eigen::Index w) {
    return "[C=" + ddpm::detail::number_string(c) + ", N=" + ddpm::detail::number_string(n) + ", H=" + ddpm::detail::number_string(h) +
           ", W=" + ddpm::detail::number_string(w) + "]";
  };
  if (g.in_channels < 1 || g.out_channels < 1 || g.kernel_h < 1 || g.kernel_w < 1 || g.stride < 1 ||
      g.padding.top < 0 || g.padding.left < 0 || g.padding.bottom < 0 || g.padding.right < 0) {
    ddpm::detail::throw_invalid_argument(
        "ddpm::nn::detail::conv2d_backward: the geometry (channels " + ddpm::detail::number_string(g.in_channels) + " -> " +
        ddpm::detail::number_string(g.out_channels) + ", kernel " + ddpm::detail::number_string(g.kernel_h) + "x" + ddpm::detail::number_string(g.kernel_w) +
        ", stride " + ddpm::detail::number_string(g.stride) + ") must have channels, kernel and stride >= 1 and paddings >= 0");
  }
  if (weight == nullptr) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::conv2d_backward: weight is null, but must point to [" +
                                         ddpm::detail::number_string(g.out_channels) + ", " + ddpm::detail::number_string(g.weight_columns()) +
                                         "] values");
  }
  const Eigen::Index oh = g.output_height(x.height), ow = g.output_width(x.width);
  if (x.data == nullptr || x.channels != g.in_channels || oh < 1 || ow < 1 || d_out.data == nullptr ||
      d_out.channels != g.out_channels || d_out.batch != x.batch || d_out.height != oh || d_out.width != ow) {
    ddpm::detail::throw_invalid_argument(
        "ddpm::nn::detail::conv2d_backward: x " + dims(x.channels, x.batch, x.height, x.width) + " and d_out " +
        dims(d_out.channels, d_out.batch, d_out.height, d_out.width) + " do not fit a " +
        ddpm::detail::number_string(g.in_channels) + " -> " + ddpm::detail::number_string(g.out_channels) + " convolution with kernel " +
        ddpm::detail::number_string(g.kernel_h) + "x" + ddpm::detail::number_string(g.kernel_w) + " and stride " + ddpm::detail::number_string(g.stride) +
        " (d_out must be " + dims(g.out_channels, x.batch, oh, ow) + ")");
  }
  if (d_x.data != nullptr &&
      (d_x.channels != x.channels || d_x.batch != x.batch || d_x.height != x.height || d_x.width != x.width)) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::conv2d_backward: d_x is " +
                                         dims(d_x.channels, d_x.batch, d_x.height, d_x.width) +
                                         ", but must have x's shape " + dims(x.channels, x.batch, x.height, x.width));
  }
}

/// The backward pass of a convolution with the epilogue's output scale `scale` (1 without one):
///   d_x (=, or += when accumulate_d_x) col2im(scale W^T d_out)
///   grads.d_weight += scale d_out col(x)^T,  grads.d_bias[o] += scale sum d_out[o],
///   grads.d_batch_bias[b, o] += scale sum_{pixels of b} d_out[o, b]          (formulas at the top)
/// x is the convolution's input as forward saw it, weight its [out, in * kh * kw] row-major weights,
/// d_out the gradient of its output. d_x.data may be null (no input gradient, e.g. for conv_in), as may
/// each pointer of grads. d_x must not alias x or d_out. The residual's gradient is not computed here
/// (conv2d_backward_residual). Scratch memory from ctx: 2 K x kConvBackwardColumns values (none for a
/// pointwise convolution).
/// Throws ddpm::invalid_argument if weight is null or x, d_out and d_x do not fit the geometry.
template <std::floating_point S>
void conv2d_backward(Workspace<S>& ctx, const ConvGeometry& g, const S* weight, FeatureMap<const S> x,
                     FeatureMap<const S> d_out, S scale, FeatureMap<S> d_x, bool accumulate_d_x,
                     const ConvGrads<S>& grads, bool allow_direct = true) {
  check_conv2d_backward(g, weight, x, d_out, d_x);
  conv2d_bias_backward(ctx, d_out, scale, grads.d_bias, grads.d_batch_bias);
  S* d_weight = grads.d_weight;
  if (d_weight == nullptr && d_x.data == nullptr) return;
  const Eigen::Index M = g.out_channels, I = g.in_channels, kk = g.kernel_h * g.kernel_w, K = I * kk;
  const Eigen::Index OH = d_out.height, OW = d_out.width, P = d_out.plane();
  const S* dy = d_out.data;
  const int threads = ctx.num_threads();

  if constexpr (std::is_same_v<S, float>) {
#ifdef DDPM_NN_DIRECT_CONV3X3
    // 3x3, stride 1, padding 1 on AVX-512: d_x is the direct forward kernel over d_out with the adjoint
    // weights, d_W the direct weight-gradient kernel (nn/detail/direct_conv3x3.hpp).
    // Each where its channel bound holds (kDirectMaxChannelProduct, kDirectGradMaxChannelProduct); what is
    // left takes the paths below.
    if (allow_direct && g.kernel_h == 3 && g.kernel_w == 3 && g.stride == 1 && g.padding == Padding2d::same(1) &&
        direct3x3_applies<S>(x.height, x.width)) {
      if (d_x.data != nullptr && I * M <= kDirectMaxChannelProduct) {
        typename Workspace<S>::Buffer wt = ctx.acquire(9 * I * M);
        direct3x3_weights(ctx, weight, M, I, true, wt.data());
        direct3x3_forward(ctx, d_out, static_cast<const S*>(wt.data()), d_x, accumulate_d_x, scale,
                          [](Eigen::Index, Eigen::Index) {});
        d_x.data = nullptr;
      }
      if (d_weight != nullptr && I * M <= kDirectGradMaxChannelProduct) {
        direct3x3_weight_grad(ctx, x, d_out, scale, d_weight);
        d_weight = nullptr;
      }
      if (d_weight == nullptr && d_x.data == nullptr) return;
    }
#endif
  }
  (void)allow_direct;
  const bool want_dx = d_x.data != nullptr;

  if (g.pointwise()) {
    // d_W += scale dy x^T and d_x = scale W^T dy directly on the channel-major rows: no im2col, no col2im.
    ctx.parallel_for(threads, [&](Eigen::Index t, Eigen::Index, int thread) {
      const auto [m0, m1] = conv_channel_range(M, static_cast<int>(t), threads);
      if (d_weight != nullptr && m1 > m0) {
        gemm<S, false, true>(ctx.packing_buffer(thread), m1 - m0, I, P, dy + m0 * P, P, x.data, P, d_weight + m0 * I, I,
                             true, scale);
      }
      const auto [i0, i1] = conv_channel_range(I, static_cast<int>(t), threads);
      if (want_dx && i1 > i0) {
        gemm<S, true, false>(ctx.packing_buffer(thread), i1 - i0, P, M, weight + i0, I, dy, P, d_x.data + i0 * P, P,
                             accumulate_d_x, scale);
      }
    });
    return;
  }

  // d_x of a stride-1 convolution is itself a convolution: the cross-correlation of dy with the kernel
  // flipped in both axes and transposed in its channels, W'[i, m, u, v] = W[m, i, kh-1-u, kw-1-v], under the
  // padding kh-1-top (top), kh-1-bottom (bottom), kw-1-left, kw-1-right. As a forward im2col pass over blocks
  // of d_x's rows its product has depth out_channels * kh * kw (the col2im form's has out_channels) and
  // writes d_x directly, with no scatter.
  const Padding2d& pad = g.padding;
  const bool transposed = want_dx && g.stride == 1 && pad.top < g.kernel_h && pad.bottom < g.kernel_h &&
                          pad.left < g.kernel_w && pad.right < g.kernel_w;
  if (transposed) conv2d_backward_input_transposed(ctx, g, weight, d_out, scale, d_x, accumulate_d_x);

  const bool col2im_dx = want_dx && !transposed;
  if (d_weight == nullptr && !col2im_dx) return;
  // Blocks of whole output rows (image, y), about kConvBackwardColumns columns each, from the shape alone.
  const Eigen::Index rows = x.batch * OH;
  const Eigen::Index blocks = conv_backward_blocks(P, rows), block_rows = (rows + blocks - 1) / blocks;
  const Eigen::Index max_cols = block_rows * OW;
  typename Workspace<S>::Buffer col, dcol;
  if (d_weight != nullptr) col = ctx.acquire(K * max_cols);
  if (col2im_dx) dcol = ctx.acquire(K * max_cols);
  for (Eigen::Index r0 = 0; r0 < rows; r0 += block_rows) {
    const Eigen::Index r1 = std::min(rows, r0 + block_rows);
    const Eigen::Index p0 = r0 * OW, n = (r1 - r0) * OW;
    if (d_weight != nullptr) {
      ctx.parallel_for(I, [&](Eigen::Index i0, Eigen::Index i1, int) {
        conv_im2col(g, x, OH, OW, r0, r1, i0, i1, col.data() + i0 * kk * n);
      });
    }
    ctx.parallel_for(threads, [&](Eigen::Index t, Eigen::Index, int thread) {
      const auto [m0, m1] = conv_channel_range(M, static_cast<int>(t), threads);
      if (d_weight != nullptr && m1 > m0) {
        gemm<S, false, true>(ctx.packing_buffer(thread), m1 - m0, K, n, dy + m0 * P + p0, P, col.data(), n,
                             d_weight + m0 * K, K, true, scale);
      }
      const auto [i0, i1] = conv_channel_range(I, static_cast<int>(t), threads);
      if (col2im_dx && i1 > i0) {
        S* dc = dcol.data() + i0 * kk * n;
        gemm<S, true, false>(ctx.packing_buffer(thread), (i1 - i0) * kk, n, M, weight + i0 * kk, K, dy + p0, P, dc, n,
                             false, scale);
        if (r0 == 0 && !accumulate_d_x) std::fill_n(d_x.channel(i0), (i1 - i0) * d_x.plane(), S(0));
        conv_col2im(g, static_cast<const S*>(dc), OH, OW, r0, r1, i0, i1, d_x);
      }
    });
  }
}

/// conv2d_backward for a Conv2d layer (its geometry and weights); `scale` is the epilogue's scale. Where the
/// layer's training passes use Winograd (Conv2d::trains_winograd), d_x is the adjoint convolution through
/// Winograd F(2x2, 3x3) (winograd_conv_blocks: the flipped, channel-transposed kernel's transform is a
/// permutation of the transposed U), with the layer's prepared transform when current, else one computed here;
/// d_W and the biases as above.
template <std::floating_point S>
void conv2d_backward(Workspace<S>& ctx, const Conv2d<S>& conv, FeatureMap<const S> x, FeatureMap<const S> d_out,
                     S scale, FeatureMap<S> d_x, bool accumulate_d_x, const ConvGrads<S>& grads) {
  const ConvGeometry g = conv_geometry(conv);
  // (The Winograd epilogue scales what it accumulates into, so d_x += scale * ... with scale != 1 stays below.)
  if (d_x.data != nullptr && conv.trains_winograd(x.batch, x.height, x.width) && (!accumulate_d_x || scale == S(1))) {
    check_conv2d_backward(g, conv.weight().data(), x, d_out, d_x);
    typename Workspace<S>::Buffer transform;
    const S* u = conv.current_winograd_weights();
    if (u == nullptr) {
      transform = ctx.acquire(16 * g.out_channels * g.in_channels);
      winograd_weights_parallel(ctx, conv.weight().data(), g.out_channels, g.in_channels, transform.data());
      u = transform.data();
    }
    ConvEpilogue<S> epi;
    epi.accumulate = accumulate_d_x;
    epi.scale = scale;
    winograd_conv_blocks(ctx, d_out, d_x, u, true, static_cast<const S*>(nullptr), epi);
    transform = {};
    const FeatureMap<S> no_dx{nullptr, x.channels, x.batch, x.height, x.width};
    conv2d_backward(ctx, g, conv.weight().data(), x, d_out, scale, no_dx, false, grads,
                    conv.uses_direct3x3(x.height, x.width));
    return;
  }
  conv2d_backward(ctx, g, conv.weight().data(), x, d_out, scale, d_x, accumulate_d_x, grads,
                  conv.uses_direct3x3(x.height, x.width));
}

}  // namespace ddpm::nn::detail
