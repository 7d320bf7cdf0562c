// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The attention block's kernels for training [docs/unet.md, Eq. (U5)]: a forward pass that keeps what the
// backward pass needs (it is the AttentionBlock forward, operation for operation, so its output is
// bit-identical), and the backward pass of everything after the GroupNorm: the q/k/v projections, the
// multi-head softmax attention, the output projection, the residual and the rescale.
//
// Saved per batch (N = batch * H * W pixels, inner = heads * head_dim): q, k, v [3 inner, N], the heads'
// outputs o [inner, N] and the row log-sum-exp of the scaled scores [heads, N]; the layer also keeps the
// normalised input xn [C, N] (or recomputes it from the GroupNorm's saved statistics). That is
// (C + 4 inner + heads) * N values: O(H W C) per image. The probabilities P are recomputed in backward, one
// (image, head) at a time per thread, from q, k and the log-sum-exp: P = exp(scale q^T k - lse).
//
// Every reduction over the batch (the weight and bias gradients) is cut into pieces fixed by the shapes alone
// and summed in a fixed order, so gradients are bit-identical for any thread count.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/feature_map.hpp"

namespace ddpm::nn::detail {

/// The attention block's weights as AttentionBlock stores them (row-major):
///   qkv_weight [3 inner, C]: to_q.weight, to_k.weight, to_v.weight stacked (older files: query, key, value;
///   the loader maps the names, the layout is the same), qkv_bias [3 inner], out_weight [C, inner]
///   (to_out.0 / proj_attn), out_bias [C].
template <class S>
struct AttentionWeights {
  const S* qkv_weight = nullptr;
  const S* qkv_bias = nullptr;
  const S* out_weight = nullptr;
  const S* out_bias = nullptr;
  Eigen::Index channels = 0, heads = 0, head_dim = 0;
  double rescale = 1.0;  ///< rescale_output_factor

  Eigen::Index inner() const { return heads * head_dim; }
};

/// Gradient buffers laid out as AttentionWeights (a second AttentionBlock's storage); the kernels add (+=).
template <class S>
struct AttentionGradients {
  S* qkv_weight = nullptr;
  S* qkv_bias = nullptr;
  S* out_weight = nullptr;
  S* out_bias = nullptr;
};

/// What the training forward keeps for the backward pass (caller-owned, N = batch * H * W):
///   qkv [3 inner, N]  q, k, v of every pixel with their biases (rows h * head_dim .. of each third: head h)
///   heads_out [inner, N]  o = [o_1 .. o_heads] before the output projection
///   lse [heads, N]  log sum_j exp(s_ij), s = q_h^T k_h / sqrt(head_dim), for head h and query pixel i
template <class S>
struct AttentionSaved {
  S* qkv = nullptr;
  S* heads_out = nullptr;
  S* lse = nullptr;

  operator AttentionSaved<const S>() const
    requires(!std::is_const_v<S>)
  {
    return {qkv, heads_out, lse};
  }
};

/// Sizes of the AttentionSaved buffers for `pixels` = batch * H * W.
struct AttentionSavedSizes {
  Eigen::Index qkv = 0, heads_out = 0, lse = 0;
  Eigen::Index total() const { return qkv + heads_out + lse; }
};
template <class S>
AttentionSavedSizes attention_saved_sizes(const AttentionWeights<S>& w, Eigen::Index pixels) {
  return {3 * w.inner() * pixels, w.inner() * pixels, w.heads * pixels};
}

template <class S>
void attention_check_shapes(const char* fn, const AttentionWeights<S>& w, FeatureMap<const S> a, FeatureMap<const S> b,
                            const char* b_name) {
  if (w.channels < 1 || w.heads < 1 || w.head_dim < 1 || w.head_dim > w.channels || !(w.rescale != 0.0)) {
    ddpm::detail::throw_invalid_argument(std::string("ddpm::nn::detail::") + fn + ": weights have channels " +
                                         ddpm::detail::number_string(w.channels) + ", heads " + ddpm::detail::number_string(w.heads) +
                                         " and head_dim " + ddpm::detail::number_string(w.head_dim) +
                                         ", but must have 1 <= head_dim <= channels, heads >= 1, rescale != 0");
  }
  if (a.channels != w.channels || b.channels != w.channels || a.batch != b.batch || a.height != b.height ||
      a.width != b.width) {
    ddpm::detail::throw_invalid_argument(std::string("ddpm::nn::detail::") + fn + ": " + b_name + " has shape (" +
                                         ddpm::detail::number_string(b.channels) + ", " + ddpm::detail::number_string(b.batch) + ", " +
                                         ddpm::detail::number_string(b.height) + ", " + ddpm::detail::number_string(b.width) +
                                         "), but must be (" + ddpm::detail::number_string(w.channels) + ", " +
                                         ddpm::detail::number_string(a.batch) + ", " + ddpm::detail::number_string(a.height) + ", " +
                                         ddpm::detail::number_string(a.width) + ") (channels, batch, height, width)");
  }
}

/// The attention block's forward pass on the normalised input xn (= in when the block has no GroupNorm),
/// keeping q, k, v, o and the log-sum-exp in `saved` (all three pointers set) or nothing (all null: the
/// inference pass, from ctx's scratch).                                          [docs/unet.md, Eq. (U5)]
///   q, k, v = Wq xn + bq, Wk xn + bk, Wv xn + bv (pixels as columns), per head h and image:
///   o_h = v_h softmax(scale q_h^T k_h)^T, scale = 1 / sqrt(head_dim), softmax over keys in S
///   out = (Wo o + bo + in) / rescale
/// The same operations in the same order as AttentionBlock<S>::forward at the same thread count, so `out` is
/// bit-identical to it. (The softmax runs in S: float32 for float as diffusers' upcast, double for double.)
/// Throws ddpm::invalid_argument if xn or out does not have in's shape with w.channels channels.
template <std::floating_point S>
void attention_forward(Workspace<S>& ctx, const AttentionWeights<S>& w, FeatureMap<const S> in, FeatureMap<const S> xn,
                       FeatureMap<S> out, const AttentionSaved<S>& saved = {}) {
  attention_check_shapes<S>("attention_forward", w, in, xn, "xn");
  attention_check_shapes<S>("attention_forward", w, in, out, "out");
  const Eigen::Index C = w.channels, N = in.plane(), L = in.pixels(), heads = w.heads, d = w.head_dim;
  const Eigen::Index inner = w.inner();
  typename Workspace<S>::Buffer qkv_scratch, heads_scratch;
  S* qkv = saved.qkv;
  if (qkv == nullptr) {
    qkv_scratch = ctx.acquire(3 * inner * N);
    qkv = qkv_scratch.data();
  }
  parallel_gemm(ctx, 3 * inner, N, C, w.qkv_weight, C, xn.data, N, qkv, N, false);
  ctx.parallel_for(3 * inner, [&](Eigen::Index begin, Eigen::Index end, int) {
    for (Eigen::Index r = begin; r < end; ++r) {
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(qkv + r * N, N) += w.qkv_bias[r];
    }
  });
  S* heads_out = saved.heads_out;
  if (heads_out == nullptr) {
    heads_scratch = ctx.acquire(inner * N);
    heads_out = heads_scratch.data();
  }
  S* lse = saved.lse;
  // Per (image, head, block of queries), as AttentionBlock: the same cut and the same score rows, so that
  // every vectorised exp and sum sees the same data at the same alignment.
  const Eigen::Index pairs = in.batch * heads, threads = ctx.num_threads();
  const Eigen::Index splits = std::min<Eigen::Index>(L, (threads + pairs - 1) / pairs);
  const Eigen::Index query_block = (L + splits - 1) / splits;
  const Eigen::Index jobs = pairs * splits, used = std::min(threads, jobs);
  typename Workspace<S>::Buffer scores = ctx.acquire(used * query_block * L);
  const S scale = S(1) / std::sqrt(static_cast<S>(d));
  ctx.parallel_for(jobs, [&](Eigen::Index begin, Eigen::Index end, int thread) {
    using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
    for (Eigen::Index job = begin; job < end; ++job) {
      const Eigen::Index pair = job / splits, q0 = (job % splits) * query_block;
      const Eigen::Index nq = std::min(L, q0 + query_block) - q0;
      if (nq <= 0) continue;
      const Eigen::Index b = pair / heads, h = pair % heads;
      const S* base = qkv + b * L;
      const S* q = base + (h * d) * N + q0;
      const S* k = base + (inner + h * d) * N;
      const S* v = base + (2 * inner + h * d) * N;
      S* p = scores.data() + thread * query_block * L;
      gemm<S, true, false>(ctx.packing_buffer(thread), nq, L, d, q, N, k, N, p, L, false, scale);
      for (Eigen::Index i = 0; i < nq; ++i) {
        Eigen::Map<Array> row(p + i * L, L);
        const S m = row.maxCoeff();
        row = (row - m).exp();
        const S sum = row.sum();
        row *= S(1) / sum;
        if (lse != nullptr) lse[h * N + b * L + q0 + i] = m + std::log(sum);
      }
      S* o = heads_out + (h * d) * N + b * L + q0;
      gemm<S, false, true>(ctx.packing_buffer(thread), d, nq, L, v, N, p, L, o, N, false);
    }
  });
  scores.release();
  qkv_scratch.release();
  parallel_gemm(ctx, C, N, inner, w.out_weight, inner, heads_out, N, out.data, N, false);
  const S inv = static_cast<S>(1.0 / w.rescale);
  ctx.parallel_for(C, [&](Eigen::Index begin, Eigen::Index end, int) {
    using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
    for (Eigen::Index c = begin; c < end; ++c) {
      Eigen::Map<Array> row(out.channel(c), N);
      const Eigen::Map<const Array> residual(in.channel(c), N);
      if (w.rescale == 1.0) {
        row += residual + w.out_bias[c];
      } else {
        row = (row + residual + w.out_bias[c]) * inv;
      }
    }
  });
}

/// x[0] + ... + x[n - 1] in an order fixed by n alone: 16 lanes over whole blocks of 16, the lanes summed, then
/// the tail (Eigen's own reductions start their vector loop at the first aligned element, so their rounding
/// depends on the buffer's address).
template <class S>
S attention_sum(const S* x, Eigen::Index n) {
  constexpr Eigen::Index kLanes = 16;
  using Lanes = Eigen::Array<S, kLanes, 1>;
  Lanes acc = Lanes::Zero();
  Eigen::Index i = 0;
  for (; i + kLanes <= n; i += kLanes) acc += Eigen::Map<const Lanes, Eigen::Unaligned>(x + i);
  S sum = acc.sum();
  for (; i < n; ++i) sum += x[i];
  return sum;
}

/// C (m x n) = alpha op(A) op(B) (or += when accumulate) as gemm<S, TransA, TransB>, cut into column blocks
/// fixed by the shape alone (at most 8, of whole 16-column multiples), run over ctx's threads: every element
/// is computed by the same call whatever the thread count.
template <class S, bool TransA, bool TransB>
void attention_column_gemm(Workspace<S>& ctx, Eigen::Index m, Eigen::Index n, Eigen::Index k, const S* a,
                           Eigen::Index lda, const S* b, Eigen::Index ldb, S* c, Eigen::Index ldc, bool accumulate) {
  constexpr Eigen::Index kMaxBlocks = 8, kMinCols = 64, kAlign = 16;
  Eigen::Index width = n;
  if (m * n * k >= (Eigen::Index{1} << 18)) {
    width = std::max(kMinCols, ((n + kMaxBlocks - 1) / kMaxBlocks + kAlign - 1) / kAlign * kAlign);
  }
  const Eigen::Index blocks = (n + width - 1) / width;
  ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
    for (Eigen::Index blk = begin; blk < end; ++blk) {
      const Eigen::Index c0 = blk * width, c1 = std::min(n, c0 + width);
      const S* bb = TransB ? b + c0 * ldb : b + c0;
      gemm<S, TransA, TransB>(ctx.packing_buffer(thread), m, c1 - c0, k, a, lda, bb, ldb, c + c0, ldc, accumulate);
    }
  });
}

/// G (m x n, row stride ldg) += A B^T with A [m, k] and B [n, k] row-major (row strides lda, ldb): a weight
/// gradient summed over k = the batch's pixels. k is cut into chunks fixed by the shape alone (at most 8, of
/// at least 256), each chunk's product is formed on some thread into `partial`, and the chunks are added to G
/// in chunk order, so the result does not depend on the thread count.
template <class S>
void attention_weight_gradient(Workspace<S>& ctx, Eigen::Index m, Eigen::Index n, Eigen::Index k, const S* a,
                               Eigen::Index lda, const S* b, Eigen::Index ldb, S* g, Eigen::Index ldg) {
  constexpr Eigen::Index kMaxChunks = 8, kMinChunk = 256;
  Eigen::Index chunks = 1;
  if (m * n * k >= (Eigen::Index{1} << 18)) chunks = std::clamp<Eigen::Index>(k / kMinChunk, 1, kMaxChunks);
  if (chunks == 1) {
    gemm<S, false, true>(ctx.packing_buffer(0), m, n, k, a, lda, b, ldb, g, ldg, true);
    return;
  }
  typename Workspace<S>::Buffer partial = ctx.acquire(chunks * m * n);
  ctx.parallel_for(chunks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
    for (Eigen::Index ch = begin; ch < end; ++ch) {
      const Eigen::Index k0 = k * ch / chunks, k1 = k * (ch + 1) / chunks;
      gemm<S, false, true>(ctx.packing_buffer(thread), m, n, k1 - k0, a + k0, lda, b + k0, ldb, partial.data() + ch * m * n, n, false);
    }
  });
  ctx.parallel_for(m, [&](Eigen::Index begin, Eigen::Index end, int) {
    for (Eigen::Index r = begin; r < end; ++r) {
      for (Eigen::Index ch = 0; ch < chunks; ++ch) {
        Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(g + r * ldg, n) +=
            Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(partial.data() + (ch * m + r) * n, n);
      }
    }
  });
}

/// The backward pass of attention_forward after the GroupNorm.                [docs/unet.md, Eq. (U5)]
/// With g = d_out / rescale (the gradient of the pre-rescale sum) and, per image and head h (pixels as
/// columns, P = exp(scale q^T k - lse) recomputed, rows the queries):
///   d_bo += sum_pixels g,  d_Wo += g o^T,  d_o = Wo^T g
///   dV = dO P,  dP = dO^T V,  dS = P * (dP - rowsum(P * dP)),  dQ = scale K dS^T,  dK = scale Q dS
///   d_bqkv += sum_pixels [dQ; dK; dV],  d_Wqkv += [dQ; dK; dV] xn^T,  d_normed = Wqkv^T [dQ; dK; dV]
/// d_normed is written (not added to). The residual's share, d_x += g, is attention_residual_backward's;
/// the layer's backward is therefore d_x = GroupNorm backward(d_normed) + d_out / rescale (without a
/// GroupNorm, d_normed may be d_x itself, then the residual added).
/// xn and saved are what attention_forward used and kept. Parameter gradients are added to `grads`; the
/// (image, head) pairs run over ctx's threads (two L x L scratch matrices per thread), and the results are
/// bit-identical for any thread count.
/// Throws ddpm::invalid_argument if d_out or d_normed does not have xn's shape with w.channels channels, or a
/// saved buffer is null.
template <std::floating_point S>
void attention_backward(Workspace<S>& ctx, const AttentionWeights<S>& w, FeatureMap<const S> xn,
                        const AttentionSaved<const S>& saved, FeatureMap<const S> d_out, FeatureMap<S> d_normed,
                        const AttentionGradients<S>& grads) {
  attention_check_shapes<S>("attention_backward", w, xn, d_out, "d_out");
  attention_check_shapes<S>("attention_backward", w, xn, d_normed, "d_normed");
  if (saved.qkv == nullptr || saved.heads_out == nullptr || saved.lse == nullptr) {
    ddpm::detail::throw_invalid_argument(
        "ddpm::nn::detail::attention_backward: saved has a null buffer, but qkv, heads_out and lse must all be "
        "kept by attention_forward");
  }
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  const Eigen::Index C = w.channels, N = xn.plane(), L = xn.pixels(), heads = w.heads, d = w.head_dim;
  const Eigen::Index inner = w.inner();
  // g = d_out / rescale, the gradient of Wo o + bo (and of the residual)
  const S* g = d_out.data;
  typename Workspace<S>::Buffer g_scratch;
  if (w.rescale != 1.0) {
    g_scratch = ctx.acquire(C * N);
    const S inv = static_cast<S>(1.0 / w.rescale);
    ctx.parallel_for(C, [&](Eigen::Index begin, Eigen::Index end, int) {
      for (Eigen::Index c = begin; c < end; ++c) {
        Eigen::Map<Array>(g_scratch.data() + c * N, N) = Eigen::Map<const Array>(d_out.channel(c), N) * inv;
      }
    });
    g = g_scratch.data();
  }
  ctx.parallel_for(C, [&](Eigen::Index begin, Eigen::Index end, int) {
    for (Eigen::Index c = begin; c < end; ++c) grads.out_bias[c] += attention_sum(g + c * N, N);
  });
  attention_weight_gradient(ctx, C, inner, N, g, N, saved.heads_out, N, grads.out_weight, inner);
  typename Workspace<S>::Buffer d_heads = ctx.acquire(inner * N);
  attention_column_gemm<S, true, false>(ctx, inner, N, C, w.out_weight, inner, g, N, d_heads.data(), N, false);
  g_scratch.release();

  // the attention core, one (image, head) pair per job
  typename Workspace<S>::Buffer d_qkv = ctx.acquire(3 * inner * N);
  const Eigen::Index pairs = xn.batch * heads;
  const Eigen::Index used = std::min<Eigen::Index>(ctx.num_threads(), pairs);
  // Each thread's P and dP start on a 64-byte boundary, so the vectorised exp and sums see every row at
  // the same alignment on every thread (Eigen peels unaligned heads off with scalar code).
  constexpr Eigen::Index kAlign = static_cast<Eigen::Index>(64 / sizeof(S));
  const Eigen::Index stride = (2 * L * L + kAlign - 1) / kAlign * kAlign;
  typename Workspace<S>::Buffer scratch = ctx.acquire(used * stride);
  const S scale = S(1) / std::sqrt(static_cast<S>(d));
  ctx.parallel_for(pairs, [&](Eigen::Index begin, Eigen::Index end, int thread) {
    S* p = scratch.data() + thread * stride;  // P [L, L], queries as rows
    S* dp = p + L * L;                           // dP, then dS
    for (Eigen::Index pair = begin; pair < end; ++pair) {
      const Eigen::Index b = pair / heads, h = pair % heads;
      const Eigen::Index off = (h * d) * N + b * L;
      const S* q = saved.qkv + off;
      const S* k = saved.qkv + inner * N + off;
      const S* v = saved.qkv + 2 * inner * N + off;
      const S* dO = d_heads.data() + off;
      S* dq = d_qkv.data() + off;
      S* dk = d_qkv.data() + inner * N + off;
      S* dv = d_qkv.data() + 2 * inner * N + off;
      const S* lse = saved.lse + h * N + b * L;
      gemm<S, true, false>(ctx.packing_buffer(thread), L, L, d, q, N, k, N, p, L, false, scale);
      for (Eigen::Index i = 0; i < L; ++i) {
        Eigen::Map<Array> row(p + i * L, L);
        row = (row - lse[i]).exp();
      }
      gemm<S, true, false>(ctx.packing_buffer(thread), L, L, d, dO, N, v, N, dp, L, false);
      gemm<S, false, false>(ctx.packing_buffer(thread), d, L, L, dO, N, p, L, dv, N, false);
      for (Eigen::Index i = 0; i < L; ++i) {
        const Eigen::Map<const Array> pr(p + i * L, L);
        Eigen::Map<Array> dr(dp + i * L, L);
        const S dot = (pr * dr).sum();
        dr = pr * (dr - dot);
      }
      gemm<S, false, true>(ctx.packing_buffer(thread), d, L, L, k, N, dp, L, dq, N, false, scale);
      gemm<S, false, false>(ctx.packing_buffer(thread), d, L, L, q, N, dp, L, dk, N, false, scale);
    }
  });
  scratch.release();
  d_heads.release();

  ctx.parallel_for(3 * inner, [&](Eigen::Index begin, Eigen::Index end, int) {
    for (Eigen::Index r = begin; r < end; ++r) {
      grads.qkv_bias[r] += attention_sum(d_qkv.data() + r * N, N);
    }
  });
  attention_weight_gradient(ctx, 3 * inner, C, N, d_qkv.data(), N, xn.data, N, grads.qkv_weight, C);
  attention_column_gemm<S, true, false>(ctx, C, N, 3 * inner, w.qkv_weight, C, d_qkv.data(), N, d_normed.data, N,
                                        false);
}

/// The residual's share of the input gradient: d_x += d_out / rescale (the same factor as the forward's).
/// Throws ddpm::invalid_argument if the shapes differ.
template <std::floating_point S>
void attention_residual_backward(Workspace<S>& ctx, double rescale, FeatureMap<const S> d_out, FeatureMap<S> d_x) {
  if (d_out.channels != d_x.channels || d_out.batch != d_x.batch || d_out.height != d_x.height ||
      d_out.width != d_x.width) {
    ddpm::detail::throw_invalid_argument(
        "ddpm::nn::detail::attention_residual_backward: d_x has " + ddpm::detail::number_string(d_x.size()) +
        " values in another shape, but must have d_out's shape (" + ddpm::detail::number_string(d_out.channels) + ", " +
        ddpm::detail::number_string(d_out.batch) + ", " + ddpm::detail::number_string(d_out.height) + ", " + ddpm::detail::number_string(d_out.width) + ")");
  }
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  const Eigen::Index N = d_out.plane();
  const S inv = static_cast<S>(1.0 / rescale);
  ctx.parallel_for(d_out.channels, [&](Eigen::Index begin, Eigen::Index end, int) {
    for (Eigen::Index c = begin; c < end; ++c) {
      if (rescale == 1.0) {
        Eigen::Map<Array>(d_x.channel(c), N) += Eigen::Map<const Array>(d_out.channel(c), N);
      } else {
        Eigen::Map<Array>(d_x.channel(c), N) += Eigen::Map<const Array>(d_out.channel(c), N) * inv;
      }
    }
  });
}

}  // namespace ddpm::nn::detail
