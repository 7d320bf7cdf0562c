// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The time-embedding path of UNet2DModel, forward and backward, on raw row-major matrices:
// - the class embedding table (nn.Embedding, UNet2DModel's class_embedding when class_embed_type is null
//   and num_class_embeds is set): weight [num_classes, dim], out[b] = weight[label[b]];
// - the timestep-embedding MLP (nn/timestep_embedding.hpp) with what the UNet does around it:
//     temb = out_act(linear_2(hidden_act(linear_1(x))) + add)                         [docs/unet.md, Eq. (U4)]
//   x the sinusoidal embedding [batch, in], add the class embedding [batch, dim] (or nothing), out_act the
//   activation the UNet applies once before the blocks read temb (identity for TimestepEmbedding alone).
// Linear layers as nn::Linear stores them: weight [out, in] row-major, bias [out]. The backward pass of
// y = x W^T + b is dW += dY^T X, db += sum_rows dY, dX = dY W.

#include <cstring>
#include <span>
#include <string>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/detail/norm_backward.hpp"

namespace ddpm::nn::detail {

/// Throws ddpm::invalid_argument naming fn, the first label outside [0, num_classes), its index and value.
inline void check_labels(const char* fn, std::span<const int> labels, Eigen::Index num_classes) {
  for (std::size_t b = 0; b < labels.size(); ++b) {
    if (labels[b] < 0 || labels[b] >= num_classes) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": labels[" + ddpm::detail::number_string(b) + "] is " +
                                           ddpm::detail::number_string(labels[b]) + ", but must be in [0, " +
                                           ddpm::detail::number_string(num_classes) + ")");
    }
  }
}

/// out[b, :] = weight[labels[b], :] for b < labels.size() (out += ... when accumulate: the UNet adds the
/// class embedding to the time embedding), weight [num_classes, dim], out [labels.size(), dim] row-major.
/// Throws ddpm::invalid_argument if a label is outside [0, num_classes).
template <class S>
void embedding_forward(const S* weight, Eigen::Index num_classes, Eigen::Index dim, std::span<const int> labels,
                       S* out, bool accumulate = false) {
  check_labels("ddpm::nn::detail::embedding_forward", labels, num_classes);
  using Row = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
  using ConstRow = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;
  for (std::size_t b = 0; b < labels.size(); ++b) {
    Row o(out + static_cast<Eigen::Index>(b) * dim, dim);
    const ConstRow w(weight + static_cast<Eigen::Index>(labels[b]) * dim, dim);
    if (accumulate) {
      o += w;
    } else {
      o = w;
    }
  }
}

/// The backward pass of embedding_forward: d_weight[l, :] += sum of d_out[b, :] over the b with
/// labels[b] = l (a scatter-add; each class's rows summed in batch order, then added once, so that two
/// calls accumulate exactly as the sum of their results).
/// Throws ddpm::invalid_argument if a label is outside [0, num_classes).
template <class S>
void embedding_backward(std::span<const int> labels, const S* d_out, Eigen::Index num_classes, Eigen::Index dim,
                        S* d_weight) {
  check_labels("ddpm::nn::detail::embedding_backward", labels, num_classes);
  const std::size_t B = labels.size();
  for (std::size_t b = 0; b < B; ++b) {
    bool seen = false;  // the class was added at its first occurrence
    for (std::size_t e = 0; e < b && !seen; ++e) seen = labels[e] == labels[b];
    if (seen) continue;
    S* const row = d_weight + static_cast<Eigen::Index>(labels[b]) * dim;
    for (Eigen::Index j = 0; j < dim; ++j) {
      S sum = d_out[static_cast<Eigen::Index>(b) * dim + j];
      for (std::size_t e = b + 1; e < B; ++e) {
        if (labels[e] == labels[b]) sum += d_out[static_cast<Eigen::Index>(e) * dim + j];
      }
      row[j] += sum;
    }
  }
}

/// The timestep MLP and its surroundings: temb = out_act(linear_2(hidden_act(linear_1(x))) + add).
template <class S>
struct TimestepMlpArgs {
  Eigen::Index batch = 0, in = 0, dim = 0;
  const S* w1 = nullptr;  ///< linear_1.weight [dim, in]
  const S* b1 = nullptr;  ///< linear_1.bias [dim] (null: no bias)
  const S* w2 = nullptr;  ///< linear_2.weight [dim, dim]
  const S* b2 = nullptr;  ///< linear_2.bias [dim] (null: no bias)
  Activation hidden_act = Activation::silu;
  Activation out_act = Activation::identity;
  const S* add = nullptr;  ///< [batch, dim] added before out_act (the class embedding), or null
};

/// Where timestep_mlp_backward accumulates (+=) the parameter gradients (null skips one), and where it
/// writes (=) the gradients of its inputs (null skips one).
template <class S>
struct TimestepMlpGrads {
  S* w1 = nullptr;
  S* b1 = nullptr;
  S* w2 = nullptr;
  S* b2 = nullptr;
  S* x = nullptr;    ///< [batch, in]: d/dx (not needed for the UNet: x is the sinusoidal embedding)
  S* add = nullptr;  ///< [batch, dim]: d/d add = d_out * out_act'(.), the class embedding's d_out
};

/// The backward pass of the MLP above for d_out = dL/d temb [batch, dim]. Forward needs to save only x
/// (and the add term, e.g. by its labels): the hidden layer is recomputed here (a few batch x dim x (in +
/// dim) multiply-adds, small beside the UNet). Everything runs on the calling thread (packing buffer 0 of
/// ctx), the sums over the batch in a fixed order. Scratch: (4 batch + 1) dim values from ctx.
///   h0 = x W1^T + b1, h = hidden_act(h0), y0 = h W2^T + b2 + add
///   g = d_out * out_act'(y0):   dW2 += g^T h, db2 += sum_b g, d_add = g
///   gh0 = (g W2) * hidden_act'(h0):   dW1 += gh0^T x, db1 += sum_b gh0, d_x = gh0 W1
/// Throws ddpm::invalid_argument if a size is < 1 or a weight is null.
template <class S>
void timestep_mlp_backward(Context<S>& ctx, const TimestepMlpArgs<S>& args, const S* x, const S* d_out,
                           const TimestepMlpGrads<S>& grads) {
  const Eigen::Index B = args.batch, in = args.in, dim = args.dim;
  if (B < 1 || in < 1 || dim < 1 || args.w1 == nullptr || args.w2 == nullptr) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::detail::timestep_mlp_backward: batch, in and dim are " +
                                         ddpm::detail::number_string(B) + ", " + ddpm::detail::number_string(in) + " and " + ddpm::detail::number_string(dim) +
                                         ", but must be >= 1, with weights w1 and w2 given");
  }
  typename Context<S>::Buffer scratch = ctx.acquire(4 * B * dim + dim);
  PackingBuffer<S>& packing = ctx.packing_buffer(0);  // the calling thread's slot
  S* const h0 = scratch.data();
  S* const h = h0 + B * dim;
  S* const g = h + B * dim;
  S* const gh = g + B * dim;
  using Rows = Eigen::Map<RowMatrix<S>>;
  using Vec = Eigen::Map<const Eigen::Matrix<S, 1, Eigen::Dynamic>>;
  gemm<S, false, true>(packing, B, dim, in, x, in, args.w1, in, h0, dim, false);
  if (args.b1 != nullptr) Rows(h0, B, dim).rowwise() += Vec(args.b1, dim);
  std::memcpy(h, h0, static_cast<std::size_t>(B * dim) * sizeof(S));
  apply_activation(args.hidden_act, h, B * dim);
  if (args.out_act != Activation::identity) {
    S* const y0 = gh;  // scratch until g is known
    gemm<S, false, true>(packing, B, dim, dim, h, dim, args.w2, dim, y0, dim, false);
    if (args.b2 != nullptr) Rows(y0, B, dim).rowwise() += Vec(args.b2, dim);
    if (args.add != nullptr) {
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(y0, B * dim) +=
          Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(args.add, B * dim);
    }
    activation_grad(args.out_act, y0, d_out, g, B * dim);
  } else {
    std::memcpy(g, d_out, static_cast<std::size_t>(B * dim) * sizeof(S));
  }
  if (grads.add != nullptr) std::memcpy(grads.add, g, static_cast<std::size_t>(B * dim) * sizeof(S));
  if (grads.w2 != nullptr) gemm<S, true, false>(packing, dim, dim, B, g, dim, h, dim, grads.w2, dim, true);
  auto add_column_sums = [&](const S* rows, S* out) {  // the batch's sum in order, then added once
    Eigen::Map<Eigen::Matrix<S, 1, Eigen::Dynamic>> sum(scratch.data() + 4 * B * dim, dim);
    sum = Vec(rows, dim);
    for (Eigen::Index b = 1; b < B; ++b) sum += Vec(rows + b * dim, dim);
    Eigen::Map<Eigen::Matrix<S, 1, Eigen::Dynamic>>(out, dim) += sum;
  };
  if (grads.b2 != nullptr) add_column_sums(g, grads.b2);
  gemm<S, false, false>(packing, B, dim, dim, g, dim, args.w2, dim, gh, dim, false);
  activation_grad(args.hidden_act, h0, gh, gh, B * dim);
  if (grads.w1 != nullptr) gemm<S, true, false>(packing, dim, in, B, gh, dim, x, in, grads.w1, in, true);
  if (grads.b1 != nullptr) add_column_sums(gh, grads.b1);
  if (grads.x != nullptr) gemm<S, false, false>(packing, B, in, dim, gh, dim, args.w1, in, grads.x, in, false);
}

}  // namespace ddpm::nn::detail
