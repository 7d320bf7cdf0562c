// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Matrix products on raw row-major buffers through Eigen's GEMM (Eigen::Map over contiguous memory is far
// faster than a Tensor contraction), and the same product cut over a Context's threads.

#include <algorithm>

#include <Eigen/Core>

#include "ddpm/nn/context.hpp"

namespace ddpm::nn::detail {

template <class S>
using RowMatrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using ConstRowMap = Eigen::Map<const RowMatrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class S>
using RowMap = Eigen::Map<RowMatrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// C (m x n, row stride ldc) = A (m x k, lda) * B (k x n, ldb), or C += A * B when accumulate.
template <class S>
void gemm(Eigen::Index m, Eigen::Index n, Eigen::Index k, const S* a, Eigen::Index lda, const S* b, Eigen::Index ldb,
          S* c, Eigen::Index ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  RowMap<S> cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    if (!accumulate) cm.setZero();
    return;
  }
  ConstRowMap<S> am(a, m, k, Eigen::OuterStride<>(lda));
  ConstRowMap<S> bm(b, k, n, Eigen::OuterStride<>(ldb));
  if (accumulate) {
    cm.noalias() += am * bm;
  } else {
    cm.noalias() = am * bm;
  }
}

/// The product above, cut over ctx's threads: by column blocks when there are enough columns (each thread
/// packs A itself but B and C are split), otherwise by row blocks.
template <class S>
void parallel_gemm(Context<S>& ctx, Eigen::Index m, Eigen::Index n, Eigen::Index k, const S* a, Eigen::Index lda,
                   const S* b, Eigen::Index ldb, S* c, Eigen::Index ldc, bool accumulate) {
  const int threads = ctx.num_threads();
  constexpr Eigen::Index kMinCols = 64, kRowAlign = 16;
  if (threads <= 1 || m * n * k < (Eigen::Index{1} << 18)) {
    gemm(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  } else if (n >= kMinCols * threads) {
    const Eigen::Index blocks = (n + kRowAlign - 1) / kRowAlign;  // whole 16-column blocks per thread
    ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int) {
      const Eigen::Index c0 = begin * kRowAlign, c1 = std::min(n, end * kRowAlign);
      gemm(m, c1 - c0, k, a, lda, b + c0, ldb, c + c0, ldc, accumulate);
    });
  } else {
    const Eigen::Index blocks = (m + kRowAlign - 1) / kRowAlign;
    ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int) {
      const Eigen::Index r0 = begin * kRowAlign, r1 = std::min(m, end * kRowAlign);
      gemm(r1 - r0, n, k, a + r0 * lda, lda, b, ldb, c + r0 * ldc, ldc, accumulate);
    });
  }
}

}  // namespace ddpm::nn::detail
