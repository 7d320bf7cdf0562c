// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Conv2d: PyTorch's nn.Conv2d with groups = 1 (any kernel size, stride and zero padding, which may differ
// on each side), computed as im2col + one Eigen GEMM per block of output columns, with the bias, a
// per-image bias (a ResNet block's time embedding), a residual already in the output and an output scale
// fused into the pass over each block while it is still in cache.
//
// Derived weights: the Winograd path multiplies by a transform of the weights (16 C_out x C_in matrices).
// prepare() computes it; every mutable access to the parameters (weight(), bias(), for_each_parameter,
// mark_weights_changed()) bumps weights_version(), and the Winograd path of the const forward throws
// ddpm::invalid_argument when the weights changed since the last prepare() rather than use stale
// transforms. (docs/unet.md, "Forward and backward (the training protocol)".)

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/detail/direct_conv3x3.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/detail/winograd.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

/// Zero padding on each side of the image.
struct Padding2d {
  Eigen::Index top = 0, left = 0, bottom = 0, right = 0;
  /// The same padding p on all four sides.
  static Padding2d same(Eigen::Index p) { return {p, p, p, p}; }
  bool operator==(const Padding2d&) const = default;
};

/// How Conv2d computes: im2col + GEMM works for every convolution; Winograd F(2x2, 3x3) (2.25x fewer
/// multiplications) for 3x3 kernels of stride 1 and padding 1; automatic picks Winograd where it is faster.
enum class ConvAlgorithm { automatic, im2col, winograd };

/// What a convolution does with its result besides adding the bias.
template <class S>
struct ConvEpilogue {
  /// out += conv(x) instead of out = conv(x): out already holds something to add (a residual).
  bool accumulate = false;
  /// Optional values of out's shape (channel-major, not aliasing out) added to the result: a residual that
  /// lives elsewhere, without copying it into out first.
  const S* residual = nullptr;
  /// Optional [batch, out_channels] (row-major) values added to channel c of image b.
  const S* batch_bias = nullptr;
  /// The finished value (residual + conv + biases) is multiplied by scale.
  S scale = S(1);
};

namespace detail {

/// dst[x] = src[x] for x in [x0, x1) and 0 elsewhere in [0, n): one row of an im2col matrix of a stride-1
/// convolution (src is the image row shifted by the kernel tap; its values outside [x0, x1) are padding and
/// never read). Rows are short (8 to 32 values in a UNet), so per-row calls to memmove and memset, or a
/// vector loop's peeling, cost more than the copy; with AVX-512, float rows go through masked loads (masked
/// lanes are not read) and stores, 16 values at a time.
template <class S>
inline void im2col_run(S* dst, const S* src, Eigen::Index x0, Eigen::Index x1, Eigen::Index n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<S, float>) {
    for (Eigen::Index x = 0; x < n; x += 16) {
      const auto lo = static_cast<unsigned>(std::clamp<Eigen::Index>(x0 - x, 0, 16));
      const auto hi = static_cast<unsigned>(std::clamp<Eigen::Index>(x1 - x, 0, 16));
      const auto len = static_cast<unsigned>(std::min<Eigen::Index>(16, n - x));
      const auto load = static_cast<__mmask16>(hi > lo ? ((1u << hi) - 1u) & ~((1u << lo) - 1u) : 0u);
      const __m512 v = _mm512_maskz_loadu_ps(load, src + x);
      _mm512_mask_storeu_ps(dst + x, static_cast<__mmask16>((1u << len) - 1u), v);
    }
    return;
  }
#endif
  std::fill_n(dst, x0, S(0));
  std::copy(src + x0, src + x1, dst + x0);
  std::fill(dst + x1, dst + n, S(0));
}

/// The im2col rows of one kernel tap (dy, dx) of one input channel for a stride-1 convolution whose output is
/// as wide as its input (W): for the output rows r in [r0, r1) (row r = image b, output y; OH rows per image),
///   dst[(r - r0) * W + x] = channel[b, y + dy, x + dx], or 0 outside the image.
/// The rows of one image that fall inside it are one contiguous run in both the channel and dst, so they are
/// copied as one run, and then the (at most |dx|) positions per row that the run took from the neighbouring row
/// are zeroed: a copy at memcpy speed instead of one short copy per row. `channel` is the channel's batch,
/// image b at channel + b * H * W.
template <class S>
void im2col_tap_same_width(const S* channel, Eigen::Index H, Eigen::Index W, Eigen::Index OH, Eigen::Index r0,
                           Eigen::Index r1, Eigen::Index dy, Eigen::Index dx, S* dst) {
  const Eigen::Index x0 = std::clamp<Eigen::Index>(-dx, 0, W), x1 = std::clamp<Eigen::Index>(W - dx, x0, W);
  for (Eigen::Index r = r0; r < r1;) {
    const Eigen::Index b = r / OH, y = r % OH, end = std::min(r1, (b + 1) * OH);
    const Eigen::Index y_end = y + (end - r);
    // output rows y with 0 <= y + dy < H
    const Eigen::Index lo = std::clamp<Eigen::Index>(-dy, y, y_end), hi = std::clamp<Eigen::Index>(H - dy, lo, y_end);
    S* d = dst + (r - r0) * W;
    std::fill_n(d, (lo - y) * W, S(0));
    if (hi > lo && x1 > x0) {
      S* run = d + (lo - y) * W;
      const S* src = channel + b * H * W + (lo + dy) * W + (dx + x0);
      std::copy(src, src + (hi - lo - 1) * W + (x1 - x0), run + x0);
      for (Eigen::Index k = 0; k < hi - lo; ++k) {
        S* row = run + k * W;
        for (Eigen::Index x = 0; x < x0; ++x) row[x] = S(0);
        for (Eigen::Index x = x1; x < W; ++x) row[x] = S(0);
      }
    } else {
      std::fill_n(d + (lo - y) * W, (hi - lo) * W, S(0));
    }
    std::fill_n(d + (hi - y) * W, (y_end - hi) * W, S(0));
    r = end;
  }
}

/// winograd_weights (nn/detail/winograd.hpp) with the same arithmetic, so the same bits, computed one output
/// channel at a time over contiguous rows of C_in values: the kernel's nine taps are first gathered into nine
/// rows (scratch: 15 * c_in values per thread slot), and each of the 16 rows of U is written in one pass. Writing
/// the 16 matrices element by element, as winograd_weights does, puts 16 stores 4 * C_out * C_in bytes apart in
/// flight (cache-set conflicts): about 60 ns per kernel against bandwidth speed here, which matters when a
/// training pass transforms the weights every step. Output channels are shared out over ctx's threads.
template <class S>
void winograd_weights_parallel(Workspace<S>& ctx, const S* w, Eigen::Index c_out, Eigen::Index c_in, S* u) {
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Array>;
  const Eigen::Index C = c_in, plane = c_out * c_in, per_thread = 15 * C;
  typename Workspace<S>::Buffer scratch = ctx.acquire(std::min<Eigen::Index>(ctx.num_threads(), c_out) * per_thread);
  ctx.parallel_for(c_out, [&](Eigen::Index o0, Eigen::Index o1, int thread) {
    S* t = scratch.data() + thread * per_thread;  // t[j * C + c] = w[o, c, j]: 9 rows
    S* gg = t + 9 * C;                             // (G g) rows 1 and 2 for v = 0, 1, 2: 6 rows
    for (Eigen::Index o = o0; o < o1; ++o) {
      const S* wo = w + o * C * 9;
      for (Eigen::Index c = 0; c < C; ++c) {
        for (Eigen::Index j = 0; j < 9; ++j) t[j * C + c] = wo[c * 9 + j];
      }
      auto g = [&](Eigen::Index j) { return Map(t + j * C, C); };
      for (Eigen::Index v = 0; v < 3; ++v) {
        Map(gg + v * C, C) = S(0.5) * (g(v) + g(3 + v) + g(6 + v));
        Map(gg + (3 + v) * C, C) = S(0.5) * (g(v) - g(3 + v) + g(6 + v));
      }
      // row i of G g: i = 0 the taps 0..2, i = 1 and 2 the combinations above, i = 3 the taps 6..8
      auto row = [&](int i, Eigen::Index v) { return i == 0 ? g(v) : i == 3 ? g(6 + v) : Map(gg + ((i - 1) * 3 + v) * C, C); };
      for (int i = 0; i < 4; ++i) {
        S* dst = u + (i * 4) * plane + o * C;
        Map(dst, C) = row(i, 0);
        Map(dst + plane, C) = S(0.5) * (row(i, 0) + row(i, 1) + row(i, 2));
        Map(dst + 2 * plane, C) = S(0.5) * (row(i, 0) - row(i, 1) + row(i, 2));
        Map(dst + 3 * plane, C) = row(i, 2);
      }
    }
  });
}

/// Tile rows per block of a training Winograd pass (winograd_conv_blocks): about kWinogradTrainTiles tiles per
/// block, but at least 4 blocks (for the threads) while each keeps 64 tiles or more. From the shape alone, never
/// the thread count, so that results do not depend on it.
inline constexpr Eigen::Index kWinogradTrainTiles = 256;
inline Eigen::Index winograd_block_rows(Eigen::Index tile_rows, Eigen::Index tile_cols) {
  const Eigen::Index total = tile_rows * tile_cols;
  Eigen::Index blocks = std::max<Eigen::Index>(1, (total + kWinogradTrainTiles / 2) / kWinogradTrainTiles);
  blocks = std::max(blocks, std::min<Eigen::Index>(4, total / 64));
  blocks = std::clamp<Eigen::Index>(blocks, 1, std::max<Eigen::Index>(tile_rows, 1));
  return (tile_rows + blocks - 1) / blocks;
}

/// A 3x3 convolution of stride 1 and padding 1 through Winograd F(2x2, 3x3), for the training passes:
///   out = scale * ((accumulate ? out : 0) + conv(in) + bias[o] + batch_bias[b, o] + residual)   (ConvEpilogue)
/// u holds the transformed weights of a kernel W [C_out_w][C_in_w * 9] as winograd_weights writes them,
/// U[xi] = [C_out_w][C_in_w]. adjoint == false: the convolution with W (in has C_in_w channels, out C_out_w).
/// adjoint == true: the convolution with W's flipped, channel-transposed kernel W'[i, m, u, v] =
/// W[m, i, 2 - u, 2 - v] (in has C_out_w channels, out C_in_w): the input gradient of the convolution with W.
/// Its transform is U'[xi] = U[p(xi)]^T, where p swaps the rows and columns 0 and 3 of the 4x4 (because
/// G J = P G for the reversal J of three taps and the swap P of rows 0 and 3), so the same u serves both.
/// Blocks of tile rows come from the shape alone and each is computed whole by one thread: results do not
/// depend on the thread count.
template <class S>
void winograd_conv_blocks(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, const S* u, bool adjoint,
                          const S* bias, const ConvEpilogue<S>& epi) {
  const WinogradTiles tiles(in.height, in.width);
  const Eigen::Index rows = in.batch * tiles.rows, C = in.channels, M = out.channels;
  const Eigen::Index block_rows = winograd_block_rows(rows, tiles.cols), blocks = (rows + block_rows - 1) / block_rows;
  const Eigen::Index nt = block_rows * tiles.cols;
  const Eigen::Index per_thread = 16 * (C + M) * nt + winograd_scratch_size(tiles.cols, nt);
  const Eigen::Index used = std::min<Eigen::Index>(ctx.num_threads(), blocks);
  typename Workspace<S>::Buffer work = ctx.acquire(used * per_thread);
  ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
    S* v = work.data() + thread * per_thread;
    S* m = v + 16 * C * nt;
    S* scratch = m + 16 * M * nt;
    for (Eigen::Index blk = begin; blk < end; ++blk) {
      const Eigen::Index r0 = blk * block_rows, r1 = std::min(rows, r0 + block_rows);
      const Eigen::Index n = (r1 - r0) * tiles.cols;
      winograd_input(in, tiles, r0, r1, Eigen::Index{0}, C, v, scratch);
      for (Eigen::Index xi = 0; xi < 16; ++xi) {
        if (!adjoint) {
          gemm(ctx.packing_buffer(thread), M, n, C, u + xi * M * C, C, static_cast<const S*>(v + xi * C * n), n,
               m + xi * M * n, n, false);
        } else {
          const Eigen::Index a = xi / 4, b = xi % 4;
          const Eigen::Index pa = a == 0 ? 3 : a == 3 ? 0 : a, pb = b == 0 ? 3 : b == 3 ? 0 : b;
          gemm<S, true, false>(ctx.packing_buffer(thread), M, n, C, u + (pa * 4 + pb) * C * M, M,
                               static_cast<const S*>(v + xi * C * n), n, m + xi * M * n, n, false);
        }
      }
      winograd_output(static_cast<const S*>(m), tiles, r0, r1, Eigen::Index{0}, M, out, bias, epi.batch_bias,
                      epi.residual, epi.scale, epi.accumulate, scratch);
    }
  });
}

}  // namespace detail

template <std::floating_point S>
class Conv2d {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;

  Conv2d() = default;
  /// A convolution with a square kernel and the same padding on every side (zero weights and bias).
  Conv2d(Eigen::Index in_channels, Eigen::Index out_channels, Eigen::Index kernel, Eigen::Index stride = 1,
         Eigen::Index padding = 0, bool bias = true)
      : Conv2d(in_channels, out_channels, kernel, kernel, stride, Padding2d::same(padding), bias) {}
  /// The general form: kernel_h x kernel_w, one stride for both axes, padding per side.
  /// Throws ddpm::invalid_argument if a channel count, kernel size or stride is < 1 or a padding is < 0.
  Conv2d(Eigen::Index in_channels, Eigen::Index out_channels, Eigen::Index kernel_h, Eigen::Index kernel_w,
         Eigen::Index stride, Padding2d padding, bool bias = true)
      : in_(in_channels), kh_(kernel_h), kw_(kernel_w), stride_(stride), pad_(padding) {
    if (in_channels < 1 || out_channels < 1 || kernel_h < 1 || kernel_w < 1 || stride < 1) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::Conv2d: in_channels, out_channels, kernel and stride are " + ddpm::detail::number_string(in_channels) +
          ", " + ddpm::detail::number_string(out_channels) + ", " + ddpm::detail::number_string(kernel_h) + "x" + ddpm::detail::number_string(kernel_w) +
          " and " + ddpm::detail::number_string(stride) + ", but must all be >= 1");
    }
    if (padding.top < 0 || padding.left < 0 || padding.bottom < 0 || padding.right < 0) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::Conv2d: padding (top, left, bottom, right) is (" + ddpm::detail::number_string(padding.top) + ", " +
          ddpm::detail::number_string(padding.left) + ", " + ddpm::detail::number_string(padding.bottom) + ", " +
          ddpm::detail::number_string(padding.right) + "), but every side must be >= 0");
    }
    weight_ = Matrix::Zero(out_channels, in_channels * kernel_h * kernel_w);
    if (bias) bias_ = Vector::Zero(out_channels);
    prepare();
  }

  Eigen::Index in_channels() const { return in_; }
  Eigen::Index out_channels() const { return weight_.rows(); }
  Eigen::Index kernel_h() const { return kh_; }
  Eigen::Index kernel_w() const { return kw_; }
  Eigen::Index stride() const { return stride_; }
  const Padding2d& padding() const { return pad_; }
  bool has_bias() const { return bias_.size() > 0; }
  /// [out, in * kh * kw]: PyTorch's [out, in, kh, kw] weight, flattened (same memory). The mutable
  /// accessors count as a change of the weights (they bump weights_version(); call prepare() afterwards).
  Matrix& weight() {
    mark_weights_changed();
    return weight_;
  }
  const Matrix& weight() const { return weight_; }
  Vector& bias() {
    mark_weights_changed();
    return bias_;
  }
  const Vector& bias() const { return bias_; }

  /// Counts the changes of the weights: bumped by every mutable access to the parameters.
  std::uint64_t weights_version() const { return version_; }
  /// Declares that the weights changed (a trainer calls it after an optimiser step that wrote through
  /// pointers it obtained earlier); the next Winograd forward needs prepare() first.
  void mark_weights_changed() { ++version_; }
  /// Whether the derived weights are those of the current weights (prepare() has run since the last change).
  bool is_prepared() const { return prepared_version_ == version_; }
  /// Rebuilds what the layer derives from its weights (the Winograd transform of a 3x3, stride 1, padding 1
  /// kernel). Call it after changing the weights and before the next pass. Not thread-safe with a pass.
  void prepare() {
    if (winograd_possible()) {
      winograd_u_.resize(static_cast<std::size_t>(16 * out_channels() * in_));
      detail::winograd_weights(weight_.data(), out_channels(), in_, winograd_u_.data());
    }
    prepared_version_ = version_;
  }
  /// A layer of the same configuration with zero parameters: the gradients of this layer, laid out as its
  /// parameters (for_each_parameter lists the same names and shapes in the same order).
  Conv2d gradient_like() const {
    Conv2d g(in_, out_channels(), kh_, kw_, stride_, pad_, has_bias());
    g.algorithm_ = algorithm_;
    return g;
  }

  void set_algorithm(ConvAlgorithm algorithm) { algorithm_ = algorithm; }
  ConvAlgorithm algorithm() const { return algorithm_; }
  /// Whether forward takes the Winograd path for a batch of `batch` images of h x w pixels.
  bool uses_winograd(Eigen::Index batch, Eigen::Index h, Eigen::Index w) const {
    if (!winograd_possible() || algorithm_ == ConvAlgorithm::im2col) return false;
    if (algorithm_ == ConvAlgorithm::winograd) return true;
    // measured (bench_unet BM_Conv2d_3x3): Winograd wins from about 64 output pixels per product
    return in_ >= kWinogradMinChannels && out_channels() >= kWinogradMinChannels &&
           batch * h * w >= kWinogradMinPixels;
  }

  /// Whether the convolution of h x w images runs the direct 3x3 kernel (nn/detail/direct_conv3x3.hpp) where
  /// it does not run Winograd, forward and backward: a 3x3 kernel of stride 1 and padding 1, float, the
  /// automatic algorithm, compiled for AVX-512, in_channels * out_channels at most 128 * 128 (128 * 64 for the
  /// weight gradient), and images that detail::direct3x3_applies accepts (w one of 4, 8, 16, 32, 64; h * w a
  /// multiple of 16 up to 4096 pixels). Elsewhere im2col + GEMM.
  bool uses_direct3x3(Eigen::Index h, Eigen::Index w) const {
    return winograd_possible() && algorithm_ == ConvAlgorithm::automatic && detail::direct3x3_applies<S>(h, w) &&
           in_ * out_channels() <= detail::kDirectMaxChannelProduct;
  }

  /// Output size along an axis of input size n:  (n + pad_before + pad_after - kernel) / stride + 1.
  Eigen::Index output_height(Eigen::Index h) const { return (h + pad_.top + pad_.bottom - kh_) / stride_ + 1; }
  Eigen::Index output_width(Eigen::Index w) const { return (w + pad_.left + pad_.right - kw_) / stride_ + 1; }

  /// Cross-correlation, as PyTorch computes it:                                     [docs/unet.md, Eq. (U1)]
  ///   out[o, b, y, x] = bias[o] + sum_{i, u, v} W[o, i, u, v] * in_pad[i, b, y * stride + u, x * stride + v]
  /// then the epilogue (residual, per-image bias, scale). `out` must have the output shape.
  /// Throws ddpm::invalid_argument if the channels, the output shape or the image size do not fit, or if
  /// the pass takes the Winograd path and the weights changed since prepare().
  void forward(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, const ConvEpilogue<S>& epi = {}) const {
    check_shapes(in, out);
    if (uses_winograd(in.batch, in.height, in.width)) {
      if (!is_prepared()) {
        ddpm::detail::throw_invalid_argument(
            "ddpm::nn::Conv2d::forward: the weights changed since prepare() (weights_version " +
            ddpm::detail::number_string(version_) + ", prepared at " + ddpm::detail::number_string(prepared_version_) +
            "), but the Winograd path needs their transform; call prepare()");
      }
      forward_winograd(ctx, in, out, epi, winograd_u_.data());
      return;
    }
    forward_im2col(ctx, in, out, epi);
  }

  /// The training pass: the same convolution, which needs no prepare() after an optimiser step. Where
  /// trains_winograd() holds it runs Winograd F(2x2, 3x3) in blocks fixed by the shape (results do not depend on
  /// the thread count), with the weights' transform of prepare() when it is current and otherwise one computed
  /// for this pass in the workspace; else im2col + GEMM. The backward kernels (nn/detail/conv_backward.hpp) take
  /// its input as the saved state.
  /// Throws ddpm::invalid_argument if the channels, the output shape or the image size do not fit.
  void forward_train(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, const ConvEpilogue<S>& epi = {}) const {
    check_shapes(in, out);
    if (trains_winograd(in.batch, in.height, in.width)) {
      typename Workspace<S>::Buffer transform;
      const S* u = current_winograd_weights();
      if (u == nullptr) {
        transform = ctx.acquire(16 * out_channels() * in_);
        detail::winograd_weights_parallel(ctx, weight_.data(), out_channels(), in_, transform.data());
        u = transform.data();
      }
      detail::winograd_conv_blocks(ctx, in, out, u, false, has_bias() ? bias_.data() : nullptr, epi);
      return;
    }
    forward_im2col(ctx, in, out, epi);
  }

  /// Whether the training passes (forward_train, and the input gradient of conv2d_backward) use Winograd for a
  /// batch of `batch` images of h x w pixels: where forward would, with at least kWinogradTrainMinChannels
  /// channels in and out and kWinogradTrainMinTiles 2x2 tiles in the batch. Below that the input transform
  /// costs about what the multiplications it saves cost (bench_backward, 32 channels at 8 x 8: 25% slower than
  /// im2col; 128 channels at 32 x 32: 20% faster; the small UNet's 64-channel layers: no change).
  bool trains_winograd(Eigen::Index batch, Eigen::Index h, Eigen::Index w) const {
    return uses_winograd(batch, h, w) && std::min(in_, out_channels()) >= kWinogradTrainMinChannels &&
           batch * ((h + 1) / 2) * ((w + 1) / 2) >= kWinogradTrainMinTiles;
  }
  /// The Winograd transform of the weights (16 matrices [out, in]) when prepare() has run since their last
  /// change, else null.
  const S* current_winograd_weights() const {
    return winograd_possible() && is_prepared() ? winograd_u_.data() : nullptr;
  }

  /// The convolution of an NCHW batch, returned as NCHW (a convenience that allocates; the network
  /// itself calls the channel-major form above). Unprepared weights are transformed for this call only.
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x) const {
    static_assert(rank_v<X> == 4, "ddpm::nn::Conv2d: the input must be an NCHW tensor");
    Workspace<S> ctx;
    Feature<S> in = to_feature(ctx, x);
    Feature<S> out = make_feature(ctx, out_channels(), x.dimension(0), output_height(x.dimension(2)),
                                  output_width(x.dimension(3)));
    check_shapes(in.cview(), out.view());
    if (uses_winograd(x.dimension(0), x.dimension(2), x.dimension(3)) && !is_prepared()) {
      std::vector<S> u(static_cast<std::size_t>(16 * out_channels() * in_));
      detail::winograd_weights(weight_.data(), out_channels(), in_, u.data());
      forward_winograd(ctx, in.cview(), out.view(), {}, u.data());
    } else {
      forward(ctx, in.cview(), out.view());
    }
    return to_nchw(out.cview());
  }

  /// Visits every parameter (name, PyTorch shape, writable pointer): a change of the weights (bumps
  /// weights_version()).
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    mark_weights_changed();
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
    f(P{prefix + "weight", {self.weight_.rows(), self.in_, self.kh_, self.kw_}, self.weight_.data()});
    if (self.has_bias()) f(P{prefix + "bias", {self.bias_.size()}, self.bias_.data()});
  }

 private:
  bool winograd_possible() const { return kh_ == 3 && kw_ == 3 && stride_ == 1 && pad_ == Padding2d::same(1); }

  void forward_im2col(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, const ConvEpilogue<S>& epi) const {
    const Eigen::Index OH = out.height, OW = out.width, P = out.plane(), K = weight_.cols(), M = out_channels();
    const int threads = ctx.num_threads();
    if (kh_ == 1 && kw_ == 1 && stride_ == 1 && pad_ == Padding2d{}) {
      // A pointwise convolution is a plain product with the input: no im2col.
      const Eigen::Index blocks = (P + kColAlign - 1) / kColAlign;
      auto run = [&](Eigen::Index begin, Eigen::Index end, int thread) {
        const Eigen::Index p0 = begin * kColAlign, p1 = std::min(P, end * kColAlign);
        detail::gemm(ctx.packing_buffer(thread), M, p1 - p0, K, weight_.data(), K, in.data + p0, P, out.data + p0, P, epi.accumulate);
        finish(out, epi, 0, M, p0, p1);
      };
      if (threads > 1 && P >= 2 * kColAlign * threads) {
        ctx.parallel_for(blocks, run);
      } else {
        run(0, blocks, 0);
      }
      return;
    }
#ifdef DDPM_NN_DIRECT_CONV3X3
    if (uses_direct3x3(in.height, in.width)) {
      // 3x3, stride 1, padding 1 on AVX-512 (nn/detail/direct_conv3x3.hpp): no im2col, no packing.
      if constexpr (std::is_same_v<S, float>) {
        typename Workspace<S>::Buffer wt = ctx.acquire(9 * in_ * M);
        detail::direct3x3_weights(ctx, weight_.data(), M, in_, false, wt.data());
        detail::direct3x3_forward(ctx, in, wt.data(), out, epi.accumulate, 1.0f,
                                  [&](Eigen::Index p0, Eigen::Index p1) { finish(out, epi, 0, M, p0, p1); });
        return;
      }
    }
#endif
    const Eigen::Index rows = out.batch * OH;  // output rows (image, y); a block of columns is whole rows
    if (threads > 1 && (P < M || P < kMinColumnsPerThread * threads)) {
      // Few columns: one im2col, and the threads share out the output channels, so that each packs only
      // its rows of the weights (the larger operand).
      typename Workspace<S>::Buffer col = ctx.acquire(K * P);
      im2col(in, OH, OW, 0, rows, col.data());
      const Eigen::Index row_blocks = (M + kRowAlign - 1) / kRowAlign;
      ctx.parallel_for(row_blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
        const Eigen::Index m0 = begin * kRowAlign, m1 = std::min(M, end * kRowAlign);
        detail::gemm(ctx.packing_buffer(thread), m1 - m0, P, K, weight_.data() + m0 * K, K, col.data(), P, out.data + m0 * P, P, epi.accumulate);
        finish(out, epi, m0, m1, 0, P);
      });
      return;
    }
    // Blocks of whole output rows, about kColumnTarget columns each, the same number on every thread.
    Eigen::Index blocks = std::max<Eigen::Index>(1, (P + kColumnTarget / 2) / kColumnTarget);
    blocks = std::min((blocks + threads - 1) / threads * threads, rows);
    const Eigen::Index block_rows = (rows + blocks - 1) / blocks;
    blocks = (rows + block_rows - 1) / block_rows;
    const Eigen::Index used = std::min<Eigen::Index>(threads, blocks), col_size = K * block_rows * OW;
    typename Workspace<S>::Buffer cols = ctx.acquire(used * col_size);
    ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
      S* col = cols.data() + thread * col_size;
      for (Eigen::Index blk = begin; blk < end; ++blk) {
        const Eigen::Index r0 = blk * block_rows, r1 = std::min(rows, r0 + block_rows);
        const Eigen::Index p0 = r0 * OW, p1 = r1 * OW;
        im2col(in, OH, OW, r0, r1, col);
        detail::gemm(ctx.packing_buffer(thread), M, p1 - p0, K, weight_.data(), K, col, p1 - p0, out.data + p0, P, epi.accumulate);
        finish(out, epi, 0, M, p0, p1);
      }
    });
  }

  // The Winograd path. Each thread packs (copies) the whole of whichever operand of the 16 products it does
  // not split, so the work is split along the larger one: the tiles when there are more tiles than output
  // channels (blocks of whole tile rows, about kTileTarget tiles each, the same number on every thread),
  // else the output channels (in three phases: input transform, products, output transform).
  void forward_winograd(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, const ConvEpilogue<S>& epi,
                        const S* u) const {
    const detail::WinogradTiles tiles(in.height, in.width);
    const Eigen::Index rows = in.batch * tiles.rows, C = in_, M = out_channels(), total = rows * tiles.cols;
    const int threads = ctx.num_threads();
    const S* bias = has_bias() ? bias_.data() : nullptr;
    if (threads > 1 && (total < M || rows < threads)) {
      const Eigen::Index scratch_size = detail::winograd_scratch_size(tiles.cols, total);
      typename Workspace<S>::Buffer work = ctx.acquire(16 * (C + M) * total + threads * scratch_size);
      S* v = work.data();
      S* m = v + 16 * C * total;
      S* scratch = m + 16 * M * total;
      ctx.parallel_for(C, [&](Eigen::Index c0, Eigen::Index c1, int thread) {
        detail::winograd_input(in, tiles, Eigen::Index{0}, rows, c0, c1, v, scratch + thread * scratch_size);
      });
      const Eigen::Index row_blocks = (M + kRowAlign - 1) / kRowAlign;
      ctx.parallel_for(row_blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
        const Eigen::Index m0 = begin * kRowAlign, m1 = std::min(M, end * kRowAlign);
        for (Eigen::Index xi = 0; xi < 16; ++xi) {
          detail::gemm(ctx.packing_buffer(thread), m1 - m0, total, C, u + (xi * M + m0) * C, C, v + xi * C * total, total,
                       m + (xi * M + m0) * total, total, false);
        }
      });
      ctx.parallel_for(M, [&](Eigen::Index o0, Eigen::Index o1, int thread) {
        detail::winograd_output(static_cast<const S*>(m), tiles, Eigen::Index{0}, rows, o0, o1, out, bias,
                                epi.batch_bias, epi.residual, epi.scale, epi.accumulate,
                                scratch + thread * scratch_size);
      });
      return;
    }
    Eigen::Index blocks = std::max<Eigen::Index>(1, (total + kTileTarget / 2) / kTileTarget);
    blocks = std::min((blocks + threads - 1) / threads * threads, rows);
    const Eigen::Index block_rows = (rows + blocks - 1) / blocks;
    blocks = (rows + block_rows - 1) / block_rows;
    const Eigen::Index nt = block_rows * tiles.cols;
    const Eigen::Index per_thread = 16 * (C + M) * nt + detail::winograd_scratch_size(tiles.cols, nt);
    const Eigen::Index used = std::min<Eigen::Index>(threads, blocks);
    typename Workspace<S>::Buffer work = ctx.acquire(used * per_thread);
    ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
      S* v = work.data() + thread * per_thread;
      S* m = v + 16 * C * nt;
      S* scratch = m + 16 * M * nt;
      for (Eigen::Index blk = begin; blk < end; ++blk) {
        const Eigen::Index r0 = blk * block_rows, r1 = std::min(rows, r0 + block_rows);
        const Eigen::Index n = (r1 - r0) * tiles.cols;
        detail::winograd_input(in, tiles, r0, r1, Eigen::Index{0}, C, v, scratch);
        for (Eigen::Index xi = 0; xi < 16; ++xi) {
          detail::gemm(ctx.packing_buffer(thread), M, n, C, u + xi * M * C, C, v + xi * C * n, n, m + xi * M * n, n, false);
        }
        detail::winograd_output(static_cast<const S*>(m), tiles, r0, r1, Eigen::Index{0}, M, out, bias,
                                epi.batch_bias, epi.residual, epi.scale, epi.accumulate, scratch);
      }
    });
  }

  static constexpr Eigen::Index kTileTarget = 256;  // Winograd tiles per block
  static constexpr Eigen::Index kWinogradMinChannels = 16, kWinogradMinPixels = 64;
  static constexpr Eigen::Index kWinogradTrainMinTiles = 128, kWinogradTrainMinChannels = 128;
  static constexpr Eigen::Index kColumnTarget = 1024;  // output columns per GEMM block
  static constexpr Eigen::Index kMinColumnsPerThread = 128;
  static constexpr Eigen::Index kColAlign = 64, kRowAlign = 16;

  void check_shapes(const FeatureMap<const S>& in, const FeatureMap<S>& out) const {
    const Eigen::Index oh = output_height(in.height), ow = output_width(in.width);
    if (in.channels != in_ || oh < 1 || ow < 1 || out.channels != out_channels() || out.batch != in.batch ||
        out.height != oh || out.width != ow) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::Conv2d::forward: input [C=" + ddpm::detail::number_string(in.channels) + ", N=" + ddpm::detail::number_string(in.batch) +
          ", H=" + ddpm::detail::number_string(in.height) + ", W=" + ddpm::detail::number_string(in.width) + "] and output [C=" +
          ddpm::detail::number_string(out.channels) + ", N=" + ddpm::detail::number_string(out.batch) + ", H=" + ddpm::detail::number_string(out.height) +
          ", W=" + ddpm::detail::number_string(out.width) + "] do not fit a " + ddpm::detail::number_string(in_) + " -> " +
          ddpm::detail::number_string(out_channels()) + " convolution with kernel " + ddpm::detail::number_string(kh_) + "x" +
          ddpm::detail::number_string(kw_) + " and stride " + ddpm::detail::number_string(stride_));
    }
  }

  // col[k, p - p0] for the output rows [r0, r1) (row r = image * OH + y), k = (i * kh + u) * kw + v.
  void im2col(const FeatureMap<const S>& in, Eigen::Index OH, Eigen::Index OW, Eigen::Index r0, Eigen::Index r1,
              S* col) const {
    const Eigen::Index cols = (r1 - r0) * OW, H = in.height, W = in.width, s = stride_;
    for (Eigen::Index i = 0; i < in_; ++i) {
      for (Eigen::Index u = 0; u < kh_; ++u) {
        for (Eigen::Index v = 0; v < kw_; ++v) {
          S* dst = col + ((i * kh_ + u) * kw_ + v) * cols;
          const Eigen::Index dx = v - pad_.left;
          if (s == 1 && OW == W) {
            detail::im2col_tap_same_width(in.channel(i), H, W, OH, r0, r1, u - pad_.top, dx, dst);
            continue;
          }
          // output x with 0 <= x * s + dx < W
          const Eigen::Index x0 = dx >= 0 ? 0 : (-dx + s - 1) / s;
          const Eigen::Index x1 = std::clamp<Eigen::Index>(W - dx > 0 ? (W - dx + s - 1) / s : 0, x0, OW);
          // (image, y) of row r counted along, not divided out per row (two 64-bit divisions per short run)
          for (Eigen::Index r = r0, b = r0 / OH, y = r0 % OH; r < r1;
               ++r, dst += OW, b += (y + 1 == OH), y = (y + 1 == OH ? 0 : y + 1)) {
            const Eigen::Index iy = y * s + u - pad_.top;
            if (iy < 0 || iy >= H) {
              std::fill_n(dst, OW, S(0));
              continue;
            }
            const S* src = in.image_channel(i, b) + iy * W + dx;
            if (s == 1) {
              detail::im2col_run(dst, src, x0, x1, OW);
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

  // Bias, per-image bias and scale on output channels [m0, m1) x columns [p0, p1).
  void finish(const FeatureMap<S>& out, const ConvEpilogue<S>& epi, Eigen::Index m0, Eigen::Index m1,
              Eigen::Index p0, Eigen::Index p1) const {
    if (!has_bias() && epi.batch_bias == nullptr && epi.residual == nullptr && epi.scale == S(1)) return;
    const Eigen::Index image = out.pixels(), M = out_channels(), P = out.plane();
    using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
    for (Eigen::Index m = m0; m < m1; ++m) {
      S* row = out.channel(m);
      for (Eigen::Index p = p0; p < p1;) {
        const Eigen::Index b = p / image, end = std::min(p1, (b + 1) * image);
        S add = has_bias() ? bias_[m] : S(0);
        if (epi.batch_bias != nullptr) add += epi.batch_bias[b * M + m];
        Eigen::Map<Array> seg(row + p, end - p);
        if (epi.residual != nullptr) {
          seg = (seg + add + Eigen::Map<const Array>(epi.residual + m * P + p, end - p)) * epi.scale;
        } else if (epi.scale == S(1)) {
          seg += add;
        } else {
          seg = (seg + add) * epi.scale;
        }
        p = end;
      }
    }
  }

  Eigen::Index in_ = 0, kh_ = 1, kw_ = 1, stride_ = 1;
  Padding2d pad_{};
  Matrix weight_;
  Vector bias_;
  ConvAlgorithm algorithm_ = ConvAlgorithm::automatic;
  // The Winograd transform of the weights (16 matrices [out, in]), rebuilt by prepare(); valid while
  // prepared_version_ == version_. The zero weights of a new layer are prepared.
  std::vector<S> winograd_u_;
  std::uint64_t version_ = 0, prepared_version_ = 0;
};

}  // namespace ddpm::nn
