// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Dropout (PyTorch's semantics) with its mask drawn from a NoiseSource [docs/math.md, Eq. (19)]: the normal
// quantile against erfc, the keep rate and the pair rate within 5 sigma, the scaling of kept elements,
// reproducibility from (seed, offset) across calls, thread counts, precisions and layouts, evaluation as
// the identity, the backward pass against finite differences and the adjoint identity, bad input.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ddpm/nn/detail/dropout.hpp"
#include "nn_reference.hpp"

namespace {

using nn_test::Index;
using ddpm::nn::detail::dropout_backward;
using ddpm::nn::detail::dropout_forward;

template <class S>
std::vector<S> uniform_vector(Index n, std::uint64_t seed) {
  nn_test::Uniform u(seed);
  std::vector<S> v(static_cast<std::size_t>(n));
  for (S& e : v) e = static_cast<S>(u(0.5, 1.5));  // never 0, so a zero output means "dropped"
  return v;
}

}  // namespace

TEST_CASE("inverse_normal_cdf inverts Phi to a few ulp", "[nn][dropout]") {
  using ddpm::nn::detail::inverse_normal_cdf;
  for (const double p : {1e-300, 1e-12, 1e-6, 0.001, 0.02, 0.02425, 0.1, 0.25, 0.5, 0.7, 0.9, 0.97575, 0.99,
                         0.999999}) {
    const double x = inverse_normal_cdf(p);
    // Phi(x) = erfc(-x / sqrt 2) / 2, and the upper tail through 1 - p = erfc(x / sqrt 2) / 2
    const double phi = 0.5 * std::erfc(-x / std::sqrt(2.0)), upper = 0.5 * std::erfc(x / std::sqrt(2.0));
    INFO("p = " << p << ", x = " << x);
    // a few ulp of x: Phi's relative condition number |x phi(x) / Phi(x)| grows as x^2 in the tails (and
    // erfc carries a few ulp of its own)
    const double tol = 4 * std::numeric_limits<double>::epsilon() * (4 + x * x);
    if (p <= 0.5) {
      CHECK(std::abs(phi / p - 1) <= tol);
    } else {
      CHECK(std::abs(upper / (1 - p) - 1) <= tol);
    }
  }
  CHECK(inverse_normal_cdf(0.5) == Approx(0.0).margin(1e-16));
  CHECK(inverse_normal_cdf(0.975) == Approx(1.959963984540054).epsilon(1e-15));  // the textbook 97.5% quantile
  CHECK(inverse_normal_cdf(0.0) == -std::numeric_limits<double>::infinity());
  CHECK(inverse_normal_cdf(1.0) == std::numeric_limits<double>::infinity());
  CHECK(std::isnan(inverse_normal_cdf(-0.1)));
}

TEMPLATE_TEST_CASE("dropout keeps 1 - p of the elements, scaled by 1 / (1 - p)", "[nn][dropout]", float, double) {
  using S = TestType;
  const Index n = Index{1} << 20;
  const std::vector<S> x = uniform_vector<S>(n, 1);
  for (const double p : {0.1, 0.5, 0.9}) {
    INFO("p = " << p);
    ddpm::NoiseSource noise(7, 1000);
    ddpm::nn::Context<S> ctx(1);
    std::vector<S> out(static_cast<std::size_t>(n));
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(n), 7);
    dropout_forward<S>(ctx, p, true, noise, x.data(), out.data(), n, mask.data());
    CHECK(noise.offset() == 1000 + static_cast<std::uint64_t>(n));
    const S scale = static_cast<S>(1.0 / (1.0 - p));
    Index kept = 0, pairs = 0, wrong = 0;
    for (Index k = 0; k < n; ++k) {
      const bool keep = mask[k] == 1;
      if (!(mask[k] == 0 || mask[k] == 1)) ++wrong;
      if (keep ? out[k] != x[k] * scale : out[k] != S(0)) ++wrong;
      kept += keep;
      if (k % 2 == 1) pairs += keep && mask[k - 1] == 1;
    }
    CHECK(wrong == 0);
    // Binomial counts: |rate - q| <= 5 sqrt(q (1 - q) / N), for the keep rate q = 1 - p over N = n elements and
    // for neighbours both kept, q = (1 - p)^2 over the n / 2 disjoint pairs (independence of the draws)
    const double q = 1 - p, q2 = q * q;
    CHECK(std::abs(double(kept) / double(n) - q) <= 5 * std::sqrt(q * (1 - q) / double(n)));
    CHECK(std::abs(double(pairs) / double(n / 2) - q2) <= 5 * std::sqrt(q2 * (1 - q2) / double(n / 2)));
  }
}

TEST_CASE("dropout masks are reproducible: calls, threads, precisions and batch layouts", "[nn][dropout]") {
  const double p = 0.3;
  const Index C = 3, N = 2, H = 5, W = 7, n = C * N * H * W;  // 210: not a multiple of the generator's 256
  const std::vector<double> x = uniform_vector<double>(n, 2);
  const std::vector<float> xf(x.begin(), x.end());
  const std::uint64_t offset = 250;  // straddles a generator chunk
  auto forward = [&](auto& ctx, const auto& input, std::uint64_t off, Index c, Index b) {
    using S = std::remove_cvref_t<decltype(input[0])>;
    ddpm::NoiseSource noise(11, off);
    std::vector<S> out(input.size());
    std::vector<std::uint8_t> mask(input.size());
    dropout_forward<S>(ctx, p, true, noise, ddpm::nn::FeatureMap<const S>{input.data(), c, b, H, W},
                       ddpm::nn::FeatureMap<S>{out.data(), c, b, H, W}, mask.data());
    CHECK(noise.offset() == off + input.size());
    return mask;
  };
  ddpm::nn::Context<double> one(1), two(2);
  ddpm::nn::Context<float> onef(1);
  const std::vector<std::uint8_t> mask = forward(one, x, offset, C, N);
  CHECK(forward(one, x, offset, C, N) == mask);   // same seed and offset
  CHECK(forward(two, x, offset, C, N) == mask);   // thread count
  CHECK(forward(onef, xf, offset, C, N) == mask);  // the normals are drawn in float for both precisions
  CHECK(forward(one, x, offset + 1, C, N) != mask);

  // the stream runs in NCHW order: element (c, b, i) of the map takes z[offset + (b C + c) H W + i]
  std::vector<float> z(static_cast<std::size_t>(n));  // the stream in float, as the kernel draws it
  ddpm::fill_normal(std::span<float>(z), 11, offset);
  const double threshold = ddpm::nn::detail::inverse_normal_cdf(p);
  Index mismatches = 0;
  for (Index b = 0; b < N; ++b)
    for (Index c = 0; c < C; ++c)
      for (Index i = 0; i < H * W; ++i) {
        const bool keep = !(double(z[(b * C + c) * H * W + i]) < threshold);
        mismatches += mask[(c * N + b) * H * W + i] != (keep ? 1 : 0);
      }
  CHECK(mismatches == 0);

  // so the first image's mask does not depend on the batch: a batch of one from the same offset
  std::vector<double> first_image(static_cast<std::size_t>(C * H * W));
  for (Index c = 0; c < C; ++c) std::copy_n(&x[(c * N) * H * W], H * W, &first_image[c * H * W]);
  const std::vector<std::uint8_t> single = forward(one, first_image, offset, C, 1);
  for (Index c = 0; c < C; ++c)
    for (Index i = 0; i < H * W; ++i) CHECK(single[c * H * W + i] == mask[(c * N) * H * W + i]);

  // consecutive calls continue the stream: two flat halves equal one flat call
  ddpm::NoiseSource whole(5, 3), halves(5, 3);
  std::vector<double> out(static_cast<std::size_t>(n)), out2(static_cast<std::size_t>(n));
  std::vector<std::uint8_t> m1(static_cast<std::size_t>(n)), m2(static_cast<std::size_t>(n));
  dropout_forward<double>(one, p, true, whole, x.data(), out.data(), n, m1.data());
  dropout_forward<double>(one, p, true, halves, x.data(), out2.data(), 100, m2.data());
  dropout_forward<double>(one, p, true, halves, x.data() + 100, out2.data() + 100, n - 100, m2.data() + 100);
  CHECK(m1 == m2);
  CHECK(out == out2);
  CHECK(whole.offset() == halves.offset());
}

TEMPLATE_TEST_CASE("dropout in evaluation is the identity and draws nothing; p = 0 and p = 1 in training",
                   "[nn][dropout]", float, double) {
  using S = TestType;
  const Index n = 301;
  const std::vector<S> x = uniform_vector<S>(n, 3);
  ddpm::nn::Context<S> ctx(1);
  ddpm::NoiseSource noise(1, 17);
  std::vector<S> out(static_cast<std::size_t>(n)), d_x(static_cast<std::size_t>(n));
  dropout_forward<S>(ctx, 0.5, false, noise, x.data(), out.data(), n, nullptr);
  CHECK(out == x);
  CHECK(noise.offset() == 17);
  dropout_backward<S>(ctx, 0.5, false, nullptr, x.data(), d_x.data(), n);
  CHECK(d_x == x);

  std::vector<std::uint8_t> mask(static_cast<std::size_t>(n));
  dropout_forward<S>(ctx, 0.0, true, noise, x.data(), out.data(), n, mask.data());
  CHECK(out == x);
  CHECK(std::all_of(mask.begin(), mask.end(), [](std::uint8_t m) { return m == 1; }));
  CHECK(noise.offset() == 17 + 301);
  dropout_forward<S>(ctx, 1.0, true, noise, x.data(), out.data(), n, mask.data());
  CHECK(std::all_of(out.begin(), out.end(), [](S v) { return v == S(0); }));
  CHECK(std::all_of(mask.begin(), mask.end(), [](std::uint8_t m) { return m == 0; }));
  CHECK(noise.offset() == 17 + 602);
  dropout_backward<S>(ctx, 1.0, true, mask.data(), x.data(), d_x.data(), n);
  CHECK(std::all_of(d_x.begin(), d_x.end(), [](S v) { return v == S(0); }));

  // in place
  std::vector<S> y = x;
  dropout_forward<S>(ctx, 0.5, true, noise, y.data(), y.data(), n, mask.data());
  for (Index k = 0; k < n; ++k) CHECK(y[k] == (mask[k] ? x[k] * S(2) : S(0)));
}

TEST_CASE("dropout backward against finite differences and the adjoint identity", "[nn][dropout]") {
  const double p = 0.4;
  const Index C = 3, N = 2, H = 5, W = 3, n = C * N * H * W;
  std::vector<double> x = uniform_vector<double>(n, 4), w = uniform_vector<double>(n, 5);
  for (double& v : w) v -= 1.0;
  ddpm::nn::Context<double> ctx(1);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(n));
  std::vector<double> out(static_cast<std::size_t>(n));
  auto loss = [&] {  // the same (seed, offset): the same mask
    ddpm::NoiseSource noise(9, 40);
    dropout_forward<double>(ctx, p, true, noise, ddpm::nn::FeatureMap<const double>{x.data(), C, N, H, W},
                            ddpm::nn::FeatureMap<double>{out.data(), C, N, H, W}, mask.data());
    double l = 0.0;
    for (Index k = 0; k < n; ++k) l += w[k] * out[k];
    return l;
  };
  const double l0 = loss();
  std::vector<double> d_x(static_cast<std::size_t>(n));
  dropout_backward<double>(ctx, p, true, mask.data(), ddpm::nn::FeatureMap<const double>{w.data(), C, N, H, W},
                           ddpm::nn::FeatureMap<double>{d_x.data(), C, N, H, W});
  // <d_out, f(x)> = <f^T(d_out), x> for the linear map f (to rounding of the O(1) sums)
  double adjoint = 0.0;
  for (Index k = 0; k < n; ++k) adjoint += d_x[k] * x[k];
  CHECK(adjoint == Approx(l0).epsilon(1e-13));
  int failures = 0;
  for (Index k = 0; k < n; ++k) {
    const double saved = x[k];
    x[k] = saved + 1e-6;
    const double plus = loss();
    x[k] = saved - 1e-6;
    const double minus = loss();
    x[k] = saved;
    const double numeric = (plus - minus) / 2e-6;
    failures += !(std::abs(d_x[k] - numeric) <= 1e-5 + 1e-3 * std::abs(numeric));
  }
  CHECK(failures == 0);
  // and in place, on 2 threads
  ddpm::nn::Context<double> two(2);
  std::vector<double> g = w;
  dropout_backward<double>(two, p, true, mask.data(), g.data(), g.data(), n);
  CHECK(g == d_x);
}

TEST_CASE("dropout rejects bad arguments", "[nn][dropout]") {
  ddpm::nn::Context<float> ctx(1);
  ddpm::NoiseSource noise(1);
  std::vector<float> x(8, 1.0f), out(8);
  std::vector<std::uint8_t> mask(8);
  for (const double p : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    REQUIRE_THROWS_AS(dropout_forward<float>(ctx, p, true, noise, x.data(), out.data(), 8, mask.data()),
                      ddpm::invalid_argument);
    REQUIRE_THROWS_AS(dropout_forward<float>(ctx, p, false, noise, x.data(), out.data(), 8, mask.data()),
                      ddpm::invalid_argument);
    REQUIRE_THROWS_AS(dropout_backward<float>(ctx, p, true, mask.data(), x.data(), out.data(), 8),
                      ddpm::invalid_argument);
  }
  REQUIRE_THROWS_WITH(dropout_forward<float>(ctx, 1.5, true, noise, x.data(), out.data(), 8, mask.data()),
                      Catch::Contains("p is 1.5") && Catch::Contains("[0, 1]"));
  REQUIRE_THROWS_AS(dropout_forward<float>(ctx, 0.5, true, noise, x.data(), out.data(), 8, nullptr),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(dropout_backward<float>(ctx, 0.5, true, nullptr, x.data(), out.data(), 8), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(dropout_forward<float>(ctx, 0.5, true, noise, ddpm::nn::FeatureMap<const float>{x.data(), 2, 1, 2, 2},
                                           ddpm::nn::FeatureMap<float>{out.data(), 1, 2, 2, 2}, mask.data()),
                    ddpm::invalid_argument);
  ddpm::NoiseSource late(1, std::numeric_limits<std::uint64_t>::max() - 4);
  REQUIRE_THROWS_AS(dropout_forward<float>(ctx, 0.5, true, late, x.data(), out.data(), 8, mask.data()),
                    ddpm::invalid_argument);
  CHECK(late.offset() == std::numeric_limits<std::uint64_t>::max() - 4);  // nothing drawn
}
