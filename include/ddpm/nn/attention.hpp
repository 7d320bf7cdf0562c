// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// AttentionBlock: the residual spatial self-attention of diffusers' UNet blocks (an Attention module built
// with _from_deprecated_attn_block): GroupNorm, q/k/v projections of every pixel, multi-head scaled
// dot-product attention over the pixels of each image, an output projection, the residual, and a
// rescale. Parameters: group_norm, to_q, to_k, to_v, to_out.0 (older files: query, key, value, proj_attn;
// the loader maps those names).

#include <algorithm>
#include <cmath>
#include <concepts>
#include <optional>
#include <vector>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/detail/attention_backward.hpp"
#include "ddpm/nn/detail/norm_backward.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

template <std::floating_point S>
class AttentionBlock {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;

  AttentionBlock() = default;
  /// Attention over `channels` channels with heads = channels / head_dim heads of head_dim each (diffusers'
  /// attention_head_dim; inner width heads * head_dim), a GroupNorm of norm_groups groups first (none when
  /// empty), and out = (attention + residual) / rescale_output_factor. Weights start at zero.
  /// Throws ddpm::invalid_argument unless 1 <= head_dim <= channels, the groups divide the channels, eps > 0
  /// and rescale_output_factor != 0.
  AttentionBlock(Eigen::Index channels, Eigen::Index head_dim, std::optional<Eigen::Index> norm_groups, double eps,
                 double rescale_output_factor = 1.0)
      : head_dim_(head_dim), rescale_(rescale_output_factor) {
    if (channels < 1 || head_dim < 1 || head_dim > channels) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::AttentionBlock: head_dim is " + ddpm::detail::number_string(head_dim) +
                                           ", but must be in [1, channels = " + ddpm::detail::number_string(channels) + "]");
    }
    if (!(rescale_output_factor != 0.0) || !std::isfinite(rescale_output_factor)) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::AttentionBlock: rescale_output_factor is " +
                                           ddpm::detail::number_string(rescale_output_factor) + ", but must be finite and != 0");
    }
    heads_ = channels / head_dim;
    if (norm_groups) group_norm_ = GroupNorm<S>(*norm_groups, channels, eps);
    const Eigen::Index inner = heads_ * head_dim_;
    qkv_weight_ = Matrix::Zero(3 * inner, channels);
    qkv_bias_ = Vector::Zero(3 * inner);
    out_weight_ = Matrix::Zero(channels, inner);
    out_bias_ = Vector::Zero(channels);
  }

  Eigen::Index channels() const { return out_weight_.rows(); }
  Eigen::Index heads() const { return heads_; }
  Eigen::Index head_dim() const { return head_dim_; }
  Eigen::Index inner_dim() const { return heads_ * head_dim_; }
  bool has_group_norm() const { return group_norm_.has_value(); }
  double rescale_output_factor() const { return rescale_; }

  /// Rebuilds what the sub-layers derive from their weights (call after changing the weights).
  void prepare() {
    if (group_norm_) group_norm_->prepare();
  }
  /// Declares a change of the weights written through pointers obtained earlier (see Conv2d).
  void mark_weights_changed() { for_each_parameter("", [](const Parameter<S>&) {}); }
  /// A copy with zero parameters: the gradients, laid out as the parameters (same names, shapes, order).
  AttentionBlock gradient_like() const { return zeros_like<S>(*this); }

  /// For each image (pixels as tokens, L = H * W), with xn = GroupNorm(x) [L, C]:   [docs/unet.md, Eq. (U5)]
  ///   q, k, v = xn Wq^T + bq, xn Wk^T + bk, xn Wv^T + bv, split into heads of head_dim columns
  ///   o_h = softmax(q_h k_h^T / sqrt(head_dim)) v_h      (softmax over the keys, at least in float32)
  ///   out = ([o_1 .. o_heads] Wo^T + bo + x) / rescale_output_factor
  /// `out` must have the shape of `in` and not alias it.
  void forward(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out) const {
    if (in.channels != channels() || out.channels != in.channels || out.batch != in.batch ||
        out.height != in.height || out.width != in.width) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::AttentionBlock::forward: the input has " +
                                           ddpm::detail::number_string(in.channels) + " channels and the output " +
                                           ddpm::detail::number_string(out.channels) + ", but both must have " +
                                           ddpm::detail::number_string(channels()) + " and the same shape");
    }
    const Eigen::Index C = channels(), N = in.plane(), L = in.pixels(), inner = inner_dim(), d = head_dim_;
    // normalised input [C, N]
    Feature<S> normed;
    FeatureMap<const S> xn = in;
    if (group_norm_) {
      normed = make_feature(ctx, in.channels, in.batch, in.height, in.width);
      group_norm_->forward(ctx, in, normed.view());
      xn = normed.cview();
    }
    // q, k, v of every pixel of the batch in one product: [3 inner, N]
    typename Workspace<S>::Buffer qkv = ctx.acquire(3 * inner * N);
    detail::parallel_gemm(ctx, 3 * inner, N, C, qkv_weight_.data(), C, xn.data, N, qkv.data(), N, false);
    ctx.parallel_for(3 * inner, [&](Eigen::Index begin, Eigen::Index end, int) {
      for (Eigen::Index r = begin; r < end; ++r) {
        Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(qkv.data() + r * N, N) += qkv_bias_[r];
      }
    });
    normed = Feature<S>{};
    // attention per (image, head, block of queries); each thread has its own score matrix. With fewer
    // (image, head) pairs than threads, the queries of each pair are shared out too.
    typename Workspace<S>::Buffer heads_out = ctx.acquire(inner * N);
    const Eigen::Index pairs = in.batch * heads_, threads = ctx.num_threads();
    const Eigen::Index splits = std::min<Eigen::Index>(L, (threads + pairs - 1) / pairs);
    const Eigen::Index query_block = (L + splits - 1) / splits;
    const Eigen::Index jobs = pairs * splits, used = std::min(threads, jobs);
    typename Workspace<S>::Buffer scores = ctx.acquire(used * query_block * L);
    const S scale = S(1) / std::sqrt(static_cast<S>(d));
    ctx.parallel_for(jobs, [&](Eigen::Index begin, Eigen::Index end, int thread) {
      for (Eigen::Index job = begin; job < end; ++job) {
        const Eigen::Index pair = job / splits, q0 = (job % splits) * query_block;
        const Eigen::Index nq = std::min(L, q0 + query_block) - q0;
        if (nq <= 0) continue;
        const Eigen::Index b = pair / heads_, h = pair % heads_;
        const S* base = qkv.data() + b * L;
        const S* q = base + (h * d) * N + q0;           // [d, nq], row stride N
        const S* k = base + (inner + h * d) * N;        // [d, L]
        const S* v = base + (2 * inner + h * d) * N;    // [d, L]
        S* p = scores.data() + thread * query_block * L;  // [nq, L]
        detail::gemm<S, true, false>(ctx.packing_buffer(thread), nq, L, d, q, N, k, N, p, L, false, scale);  // p = scale q^T k
        softmax_rows(p, nq, L);
        S* o = heads_out.data() + (h * d) * N + b * L + q0;  // [d, nq], row stride N
        detail::gemm<S, false, true>(ctx.packing_buffer(thread), d, nq, L, v, N, p, L, o, N, false);  // o[:, i] = sum_j p[i, j] v[:, j]
      }
    });
    scores.release();
    qkv.release();
    // out = (Wo o + bo + x) / rescale
    detail::parallel_gemm(ctx, C, N, inner, out_weight_.data(), inner, heads_out.data(), N, out.data, N, false);
    const S inv = static_cast<S>(1.0 / rescale_);
    ctx.parallel_for(C, [&](Eigen::Index begin, Eigen::Index end, int) {
      using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
      for (Eigen::Index c = begin; c < end; ++c) {
        Eigen::Map<Array> row(out.channel(c), N);
        const Eigen::Map<const Array> residual(in.channel(c), N);
        if (rescale_ == 1.0) {
          row += residual + out_bias_[c];
        } else {
          row = (row + residual + out_bias_[c]) * inv;
        }
      }
    });
  }

  /// The block applied to an NCHW batch, returned as NCHW (a convenience that allocates).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x) const {
    static_assert(rank_v<X> == 4, "ddpm::nn::AttentionBlock: the input must be an NCHW tensor");
    Workspace<S> ctx;
    Feature<S> in = to_feature(ctx, x);
    Feature<S> out = make_feature(ctx, in.map.channels, in.map.batch, in.map.height, in.map.width);
    forward(ctx, in.cview(), out.view());
    return to_nchw(out.cview());
  }

  /// What backward needs from forward_train (pool buffers of the pass's workspace).
  struct Saved {
    Feature<S> x, xn;                     // input (with a GroupNorm), normed input
    std::vector<S> mean, rstd;            // the GroupNorm's statistics
    typename Workspace<S>::Buffer store;  // q, k, v, heads' outputs, log-sum-exp
    detail::AttentionSaved<S> attn;
  };

  /// The training pass: forward's arithmetic, keeping what backward needs.
  void forward_train(Workspace<S>& ctx, FeatureMap<const S> in, FeatureMap<S> out, Saved& saved) const {
    const detail::AttentionWeights<S> w = attention_weights();
    FeatureMap<const S> xn = in;
    if (group_norm_) {
      saved.x = make_feature(ctx, in.channels, in.batch, in.height, in.width);
      parallel_copy(ctx, in.data, in.size(), saved.x.map.data);
      saved.xn = make_feature(ctx, in.channels, in.batch, in.height, in.width);
      saved.mean.resize(in.batch * group_norm_->groups());
      saved.rstd.resize(in.batch * group_norm_->groups());
      detail::group_norm_forward_saved(ctx, detail::group_norm_args(*group_norm_), in, saved.xn.view(),
                                       saved.mean.data(), saved.rstd.data());
    } else {
      saved.xn = make_feature(ctx, in.channels, in.batch, in.height, in.width);
      parallel_copy(ctx, in.data, in.size(), saved.xn.map.data);
    }
    xn = saved.xn.cview();
    const detail::AttentionSavedSizes sz = detail::attention_saved_sizes(w, in.plane());
    saved.store = ctx.acquire(sz.total());
    saved.attn = {saved.store.data(), saved.store.data() + sz.qkv, saved.store.data() + sz.qkv + sz.heads_out};
    detail::attention_forward(ctx, w, in, xn, out, saved.attn);
  }

  /// The backward pass of forward_train: writes d_x (=) and accumulates the parameter gradients into
  /// `grads` (a gradient_like() block).                                            [docs/unet.md, Eq. (U5)]
  void backward(Workspace<S>& ctx, const Saved& saved, FeatureMap<const S> d_out, FeatureMap<S> d_x,
                AttentionBlock& grads) const {
    const detail::AttentionWeights<S> w = attention_weights();
    const detail::AttentionGradients<S> g{grads.qkv_weight_.data(), grads.qkv_bias_.data(),
                                          grads.out_weight_.data(), grads.out_bias_.data()};
    if (group_norm_) {
      Feature<S> dn = make_feature(ctx, d_out.channels, d_out.batch, d_out.height, d_out.width);
      detail::attention_backward(ctx, w, saved.xn.cview(), detail::AttentionSaved<const S>(saved.attn), d_out,
                                 dn.view(), g);
      detail::group_norm_backward(ctx, detail::group_norm_args(*group_norm_), saved.x.cview(), saved.mean.data(),
                                  saved.rstd.data(), dn.cview(), d_x,
                                  detail::GroupNormGrads<S>{grads.group_norm_->weight().data(),
                                                            grads.group_norm_->bias().data(), nullptr, nullptr});
    } else {
      detail::attention_backward(ctx, w, saved.xn.cview(), detail::AttentionSaved<const S>(saved.attn), d_out, d_x,
                                 g);
    }
    detail::attention_residual_backward(ctx, rescale_, d_out, d_x);
  }

  /// Views of the weights as the training kernels take them.
  detail::AttentionWeights<S> attention_weights() const {
    return {qkv_weight_.data(), qkv_bias_.data(), out_weight_.data(), out_bias_.data(), channels(), heads_,
            head_dim_, rescale_};
  }

  /// group_norm.{weight,bias}, to_q, to_k, to_v, to_out.0 (each .weight [out, in] and .bias), as diffusers:
  /// name, PyTorch shape, writable pointer (a change of the weights).
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
    if (self.group_norm_) self.group_norm_->for_each_parameter(prefix + "group_norm.", f);
    const Eigen::Index inner = self.inner_dim(), C = self.channels();
    const char* names[3] = {"to_q.", "to_k.", "to_v."};
    for (int i = 0; i < 3; ++i) {
      f(P{prefix + names[i] + "weight", {inner, C}, self.qkv_weight_.data() + i * inner * C});
      f(P{prefix + names[i] + "bias", {inner}, self.qkv_bias_.data() + i * inner});
    }
    f(P{prefix + "to_out.0.weight", {C, inner}, self.out_weight_.data()});
    f(P{prefix + "to_out.0.bias", {C}, self.out_bias_.data()});
  }

 private:
  // Row-wise softmax, computed in at least float32 (diffusers' upcast_softmax): max-subtracted, so exp never
  // overflows.
  static void softmax_rows(S* p, Eigen::Index rows, Eigen::Index n) {
    for (Eigen::Index i = 0; i < rows; ++i) {
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>> row(p + i * n, n);
      const S m = row.maxCoeff();
      row = (row - m).exp();
      row *= S(1) / row.sum();
    }
  }

  Eigen::Index heads_ = 1, head_dim_ = 1;
  double rescale_ = 1.0;
  std::optional<GroupNorm<S>> group_norm_;
  Matrix qkv_weight_;  // [to_q; to_k; to_v] stacked: one product for all three
  Vector qkv_bias_;
  Matrix out_weight_;
  Vector out_bias_;
};

}  // namespace ddpm::nn
