// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Matrix products on raw row-major buffers through Eigen's GEMM (Eigen::Map over contiguous memory is far
// faster than a Tensor contraction), and the same product cut over a Workspace's threads. The packing
// buffers come from the caller (a Workspace holds one per thread slot): nothing here keeps state.

#include <algorithm>
#include <type_traits>

#include <Eigen/Core>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

#if defined(__AVX512F__)
#define DDPM_NN_SMALL_GEMM 1

/// The products small_gemm takes: float, B not transposed, n a multiple of 16, at most kSmallGemmMaxRows rows
/// and B (k x n) at most kSmallGemmMaxB values (it stays in the L1 cache while every row block passes over it).
/// These are the attention core's products per image and head (the scores q^T k and dO^T v with k = head_dim,
/// the value and key gradients with k = the image's pixels) at the small UNets' sizes, where Eigen's GEMM
/// spends more time packing its operands and zeroing C than multiplying.
inline constexpr Eigen::Index kSmallGemmMaxRows = 64, kSmallGemmMaxB = 8192;
template <class S, bool TransB>
constexpr bool small_gemm_applies(Eigen::Index m, Eigen::Index n, Eigen::Index k) {
  return std::is_same_v<S, float> && !TransB && m >= 1 && m <= kSmallGemmMaxRows && n >= 16 && n % 16 == 0 &&
         k >= 1 && k * n <= kSmallGemmMaxB;
}

/// RB rows x VB vectors of 16 columns of C = alpha op(A) B (+ C): each value is sum_l A(r, l) B(l, j) formed by
/// fused multiply-adds in the order l = 0, 1, ..., k - 1, then scaled by alpha (and added to C in one rounding).
template <bool TransA, int RB, int VB>
inline void small_gemm_tile(Eigen::Index k, const float* a, Eigen::Index lda, const float* b, Eigen::Index ldb,
                            float* c, Eigen::Index ldc, bool accumulate, float alpha) {
  __m512 acc[RB][VB];
  for (int r = 0; r < RB; ++r) {
    for (int v = 0; v < VB; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (Eigen::Index l = 0; l < k; ++l) {
    __m512 row[VB];
    for (int v = 0; v < VB; ++v) row[v] = _mm512_loadu_ps(b + l * ldb + 16 * v);
    for (int r = 0; r < RB; ++r) {
      const __m512 x = _mm512_set1_ps(TransA ? a[l * lda + r] : a[r * lda + l]);
      for (int v = 0; v < VB; ++v) acc[r][v] = _mm512_fmadd_ps(x, row[v], acc[r][v]);
    }
  }
  const __m512 s = _mm512_set1_ps(alpha);
  for (int r = 0; r < RB; ++r) {
    for (int v = 0; v < VB; ++v) {
      float* out = c + r * ldc + 16 * v;
      _mm512_storeu_ps(out, accumulate ? _mm512_fmadd_ps(s, acc[r][v], _mm512_loadu_ps(out))
                                       : _mm512_mul_ps(s, acc[r][v]));
    }
  }
}

/// C = alpha op(A) B (or C += it) for the shapes of small_gemm_applies, in row blocks of 4 and column blocks of
/// 4, 2 and 1 vectors.
template <bool TransA>
void small_gemm(Eigen::Index m, Eigen::Index n, Eigen::Index k, const float* a, Eigen::Index lda, const float* b,
                Eigen::Index ldb, float* c, Eigen::Index ldc, bool accumulate, float alpha) {
  auto rows = [&](auto rb, Eigen::Index r) {
    constexpr int RB = decltype(rb)::value;
    const float* ar = TransA ? a + r : a + r * lda;
    Eigen::Index j = 0;
    for (; j + 64 <= n; j += 64) {
      small_gemm_tile<TransA, RB, 4>(k, ar, lda, b + j, ldb, c + r * ldc + j, ldc, accumulate, alpha);
    }
    if (j + 32 <= n) {
      small_gemm_tile<TransA, RB, 2>(k, ar, lda, b + j, ldb, c + r * ldc + j, ldc, accumulate, alpha);
      j += 32;
    }
    if (j < n) small_gemm_tile<TransA, RB, 1>(k, ar, lda, b + j, ldb, c + r * ldc + j, ldc, accumulate, alpha);
  };
  Eigen::Index r = 0;
  for (; r + 4 <= m; r += 4) rows(std::integral_constant<int, 4>{}, r);
  for (; r < m; ++r) rows(std::integral_constant<int, 1>{}, r);
}
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
#ifdef DDPM_NN_SMALL_GEMM
  if constexpr (std::is_same_v<S, float> && !TransB) {
    if (small_gemm_applies<S, TransB>(m, n, k)) {
      small_gemm<TransA>(m, n, k, a, lda, b, ldb, c, ldc, accumulate, alpha);
      return;
    }
  }
#endif
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
