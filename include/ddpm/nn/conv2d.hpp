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

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
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
          "ddpm::nn::Conv2d: in_channels, out_channels, kernel and stride are " + std::to_string(in_channels) +
          ", " + std::to_string(out_channels) + ", " + std::to_string(kernel_h) + "x" + std::to_string(kernel_w) +
          " and " + std::to_string(stride) + ", but must all be >= 1");
    }
    if (padding.top < 0 || padding.left < 0 || padding.bottom < 0 || padding.right < 0) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Conv2d: a padding is negative, but must be >= 0");
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
            std::to_string(version_) + ", prepared at " + std::to_string(prepared_version_) +
            "), but the Winograd path needs their transform; call prepare()");
      }
      forward_winograd(ctx, in, out, epi, winograd_u_.data());
      return;
    }
    forward_im2col(ctx, in, out, epi);
  }

  /// The training pass: the same convolution through im2col + GEMM whatever the size (never Winograd, so it
  /// needs no prepare() after an optimiser step); the backward kernels (nn/detail/conv_backward.hpp) take
  /// its input as the saved state.
  /// Throws ddpm::invalid_argument if the channels, the output shape or the image size do not fit.
  void forward_train(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, const ConvEpilogue<S>& epi = {}) const {
    check_shapes(in, out);
    forward_im2col(ctx, in, out, epi);
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
  static constexpr Eigen::Index kColumnTarget = 1024;  // output columns per GEMM block
  static constexpr Eigen::Index kMinColumnsPerThread = 128;
  static constexpr Eigen::Index kColAlign = 64, kRowAlign = 16;

  void check_shapes(const FeatureMap<const S>& in, const FeatureMap<S>& out) const {
    const Eigen::Index oh = output_height(in.height), ow = output_width(in.width);
    if (in.channels != in_ || oh < 1 || ow < 1 || out.channels != out_channels() || out.batch != in.batch ||
        out.height != oh || out.width != ow) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::Conv2d::forward: input [C=" + std::to_string(in.channels) + ", N=" + std::to_string(in.batch) +
          ", H=" + std::to_string(in.height) + ", W=" + std::to_string(in.width) + "] and output [C=" +
          std::to_string(out.channels) + ", N=" + std::to_string(out.batch) + ", H=" + std::to_string(out.height) +
          ", W=" + std::to_string(out.width) + "] do not fit a " + std::to_string(in_) + " -> " +
          std::to_string(out_channels()) + " convolution with kernel " + std::to_string(kh_) + "x" +
          std::to_string(kw_) + " and stride " + std::to_string(stride_));
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
          // output x with 0 <= x * s + dx < W
          const Eigen::Index x0 = dx >= 0 ? 0 : (-dx + s - 1) / s;
          const Eigen::Index x1 = std::clamp<Eigen::Index>(W - dx > 0 ? (W - dx + s - 1) / s : 0, x0, OW);
          for (Eigen::Index r = r0; r < r1; ++r, dst += OW) {
            const Eigen::Index b = r / OH, iy = (r % OH) * s + u - pad_.top;
            if (iy < 0 || iy >= H) {
              std::fill_n(dst, OW, S(0));
              continue;
            }
            const S* src = in.image_channel(i, b) + iy * W + dx;
            std::fill_n(dst, x0, S(0));
            if (s == 1) {
              std::copy(src + x0, src + x1, dst + x0);
            } else {
              for (Eigen::Index x = x0; x < x1; ++x) dst[x] = src[x * s];
            }
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
