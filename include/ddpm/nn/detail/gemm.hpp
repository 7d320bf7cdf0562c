// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Matrix products on raw row-major buffers through Eigen's GEMM (Eigen::Map over contiguous memory is far
// faster than a Tensor contraction), and the same product cut over a Workspace's threads. The packing
// buffers come from the caller (a Workspace holds one per thread slot): nothing here keeps state.

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

#if EIGEN_VERSION_AT_LEAST(3, 4, 0)
#define DDPM_NN_GEMM_PREALLOCATED 1

/// The blocking of Eigen's GEMM with its packing buffers supplied, so that a product allocates nothing: a
/// plain `C.noalias() = A * B` allocates (and frees) its packing buffers on every call once they exceed
/// EIGEN_STACK_ALLOCATION_LIMIT (128 kB), hundreds of times per forward pass of a UNet. The buffers are
/// the caller's (one PackingBuffer per thread slot of a Workspace) and only grow. (Eigen's internal API of 3.4: level3_blocking, computeProductBlockingSizes,
/// general_matrix_matrix_product, as Eigen's own products use them.)
template <class S>
class GemmBlocking : public Eigen::internal::level3_blocking<S, S> {
 public:
  // A row-major destination is computed by Eigen as the column-major product C^T = B^T A^T: its "rows"
  // are our n and its "cols" our m (as gemm_blocking_space<RowMajor, ...> sets them).
  GemmBlocking(Eigen::Index m, Eigen::Index n, Eigen::Index k, PackingBuffer<S>& packing) {
    this->m_mc = n;
    this->m_nc = m;
    this->m_kc = k;
    Eigen::internal::computeProductBlockingSizes<S, S, 1>(this->m_kc, this->m_mc, this->m_nc, Eigen::Index{1});
    const Eigen::Index size_a = (this->m_mc * this->m_kc + 63) / 64 * 64, size_b = this->m_kc * this->m_nc;
    S* buffer = packing.reserve(size_a + size_b);
    this->m_blockA = buffer;
    this->m_blockB = buffer + size_a;
  }
};
#endif

/// C (m x n, row stride ldc) = alpha op(A) op(B), or C += alpha op(A) op(B) when accumulate, where A is
/// stored row-major as m x k (lda) or, when TransA, as k x m whose transpose is used; B likewise as k x n or
/// n x k. `packing` holds the packed operands (only this call may use it until it returns); nothing is
/// allocated once it has held a product of this size.
template <class S, bool TransA = false, bool TransB = false>
void gemm(PackingBuffer<S>& packing, Eigen::Index m, Eigen::Index n, Eigen::Index k, const S* a, Eigen::Index lda, const S* b, Eigen::Index ldb,
          S* c, Eigen::Index ldc, bool accumulate, S alpha = S(1)) {
  if (m == 0 || n == 0) return;
  RowMap<S> cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    if (!accumulate) cm.setZero();
    return;
  }
#ifdef DDPM_NN_GEMM_PREALLOCATED
  // Tiny products and matrix-vector products go through Eigen's expressions, which allocate nothing there.
  if (n > 1 && m > 1 && m + n + k >= 32) {
    if (!accumulate) cm.setZero();
    GemmBlocking<S> blocking(m, n, k, packing);
    constexpr int OrderA = TransA ? Eigen::ColMajor : Eigen::RowMajor;
    constexpr int OrderB = TransB ? Eigen::ColMajor : Eigen::RowMajor;
    Eigen::internal::general_matrix_matrix_product<Eigen::Index, S, OrderA, false, S, OrderB, false, Eigen::RowMajor,
                                                   1>::run(m, n, k, a, lda, b, ldb, c, 1, ldc, alpha, blocking, nullptr);
    return;
  }
#endif
  using ColMap = Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>, Eigen::Unaligned,
                            Eigen::OuterStride<>>;
  if (m == 1 && !TransA) {
    // a row vector times a matrix, computed as the matrix-vector product c^T = op(B)^T a^T (no temporary)
    using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
    Eigen::Map<Vector, Eigen::Unaligned> cv(c, n);
    const Eigen::Map<const Vector, Eigen::Unaligned> av(a, k);
    auto assign = [&](const auto& bt) {
      if (accumulate) {
        cv.noalias() += alpha * (bt * av);
      } else {
        cv.noalias() = alpha * (bt * av);
      }
    };
    if constexpr (TransB) {
      assign(ConstRowMap<S>(b, n, k, Eigen::OuterStride<>(ldb)));
    } else {
      assign(ColMap(b, n, k, Eigen::OuterStride<>(ldb)));
    }
    return;
  }
  auto product = [&](const auto& am) {
    if constexpr (TransB) {
      const ColMap bm(b, k, n, Eigen::OuterStride<>(ldb));
      if (accumulate) {
        cm.noalias() += alpha * am * bm;
      } else {
        cm.noalias() = alpha * am * bm;
      }
    } else {
      const ConstRowMap<S> bm(b, k, n, Eigen::OuterStride<>(ldb));
      if (accumulate) {
        cm.noalias() += alpha * am * bm;
      } else {
        cm.noalias() = alpha * am * bm;
      }
    }
  };
  if constexpr (TransA) {
    product(ColMap(a, m, k, Eigen::OuterStride<>(lda)));
  } else {
    product(ConstRowMap<S>(a, m, k, Eigen::OuterStride<>(lda)));
  }
}

/// The product above, cut over ctx's threads (each with its own packing buffer): by column blocks when there are enough columns (each thread
/// packs A itself but B and C are split), otherwise by row blocks.
template <class S>
void parallel_gemm(Workspace<S>& ctx, Eigen::Index m, Eigen::Index n, Eigen::Index k, const S* a, Eigen::Index lda,
                   const S* b, Eigen::Index ldb, S* c, Eigen::Index ldc, bool accumulate) {
  const int threads = ctx.num_threads();
  constexpr Eigen::Index kMinCols = 64, kRowAlign = 16;
  if (threads <= 1 || m * n * k < (Eigen::Index{1} << 18)) {
    gemm(ctx.packing_buffer(0), m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  } else if (n >= kMinCols * threads) {
    const Eigen::Index blocks = (n + kRowAlign - 1) / kRowAlign;  // whole 16-column blocks per thread
    ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
      const Eigen::Index c0 = begin * kRowAlign, c1 = std::min(n, end * kRowAlign);
      gemm(ctx.packing_buffer(thread), m, c1 - c0, k, a, lda, b + c0, ldb, c + c0, ldc, accumulate);
    });
  } else {
    const Eigen::Index blocks = (m + kRowAlign - 1) / kRowAlign;
    ctx.parallel_for(blocks, [&](Eigen::Index begin, Eigen::Index end, int thread) {
      const Eigen::Index r0 = begin * kRowAlign, r1 = std::min(m, end * kRowAlign);
      gemm(ctx.packing_buffer(thread), r1 - r0, n, k, a + r0 * lda, lda, b, ldb, c + r0 * ldc, ldc, accumulate);
    });
  }
}

}  // namespace ddpm::nn::detail
