// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// detail::gemm (Eigen's GEMM with supplied packing buffers, or Eigen's expressions for small and
// vector-shaped products) against a naive triple loop, for every transposition, with strides, alpha and
// accumulation, and across the sizes where the implementation changes path.

#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/nn/detail/gemm.hpp"
#include "nn_reference.hpp"

namespace {

template <class S, bool TransA, bool TransB>
void check_gemm(Eigen::Index m, Eigen::Index n, Eigen::Index k, bool accumulate, std::uint64_t seed) {
  const Eigen::Index pad = 3;  // row strides larger than the rows
  const Eigen::Index a_rows = TransA ? k : m, a_cols = TransA ? m : k, lda = a_cols + pad;
  const Eigen::Index b_rows = TransB ? n : k, b_cols = TransB ? k : n, ldb = b_cols + pad, ldc = n + pad;
  nn_test::Uniform u(seed);
  std::vector<S> a(static_cast<std::size_t>(a_rows * lda)), b(static_cast<std::size_t>(b_rows * ldb)),
      c(static_cast<std::size_t>(m * ldc));
  for (S& v : a) v = static_cast<S>(u());
  for (S& v : b) v = static_cast<S>(u());
  for (S& v : c) v = static_cast<S>(u());
  const std::vector<S> c0 = c;
  const S alpha = S(0.75);
  ddpm::nn::detail::PackingBuffer<S> packing;
  ddpm::nn::detail::gemm<S, TransA, TransB>(packing, m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc, accumulate, alpha);
  double worst = 0.0;
  for (Eigen::Index i = 0; i < m; ++i) {
    for (Eigen::Index j = 0; j < n; ++j) {
      double acc = 0.0, mag = 0.0;
      for (Eigen::Index l = 0; l < k; ++l) {
        const double x = TransA ? a[l * lda + i] : a[i * lda + l];
        const double y = TransB ? b[j * ldb + l] : b[l * ldb + j];
        acc += x * y;
        mag += std::abs(x * y);
      }
      const double expected = (accumulate ? double(c0[i * ldc + j]) : 0.0) + double(alpha) * acc;
      worst = std::max(worst, std::abs(double(c[i * ldc + j]) - expected) / (mag + 1.0));
    }
    for (Eigen::Index j = n; j < ldc; ++j) REQUIRE(c[i * ldc + j] == c0[i * ldc + j]);  // the padding is untouched
  }
  INFO("m " << m << ", n " << n << ", k " << k << ", TransA " << TransA << ", TransB " << TransB << ", accumulate "
            << accumulate);
  CHECK(worst < 10 * std::numeric_limits<S>::epsilon());
}

template <class S>
void check_all(Eigen::Index m, Eigen::Index n, Eigen::Index k, std::uint64_t seed) {
  for (bool accumulate : {false, true}) {
    check_gemm<S, false, false>(m, n, k, accumulate, seed);
    check_gemm<S, true, false>(m, n, k, accumulate, seed + 1);
    check_gemm<S, false, true>(m, n, k, accumulate, seed + 2);
    check_gemm<S, true, true>(m, n, k, accumulate, seed + 3);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("detail::gemm matches a naive product", "[nn][gemm]", float, double) {
  using S = TestType;
  std::uint64_t seed = 1;
  // tiny, vector-shaped (m = 1, n = 1), the GEMM path, and blocks larger than Eigen's cache blocking
  for (auto [m, n, k] : {std::tuple<Eigen::Index, Eigen::Index, Eigen::Index>{2, 3, 4}, {1, 17, 9}, {1, 300, 129},
                         {19, 1, 33}, {16, 16, 16}, {48, 37, 65}, {130, 260, 300}, {5, 700, 1030}, {3, 3, 0},
                         // the small float kernel (B not transposed, n a multiple of 16, m <= 64, k n <= 8192):
                         // every row and column block, the bounds, and just past each of them
                         {64, 64, 8}, {8, 64, 64}, {7, 112, 16}, {5, 16, 1}, {65, 64, 8}, {4, 128, 64}, {4, 144, 56},
                         {6, 48, 171}}) {
    check_all<S>(m, n, k, seed);
    seed += 4;
  }
}
