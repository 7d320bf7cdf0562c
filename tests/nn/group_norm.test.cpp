// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// GroupNorm [docs/unet.md, Eq. (U2)] by hand, against the naive loops, and fused with its modulation and
// activation.

#include <catch2/catch.hpp>

#include "ddpm/nn/group_norm.hpp"
#include "nn_reference.hpp"

using nn_test::Index;

TEMPLATE_TEST_CASE("GroupNorm of one group of four values, by hand", "[nn][group_norm]", float, double) {
  using S = TestType;
  ddpm::nn::GroupNorm<S> gn(1, 1, 1e-5);
  gn.weight() << S(2);
  gn.bias() << S(1);
  ddpm::Tensor<S, 4> x(1, 1, 2, 2);
  x.setValues({{{{1, 2}, {3, 4}}}});
  // mean 2.5, biased variance 1.25: y = (x - 2.5) / sqrt(1.25 + 1e-5) * 2 + 1
  const ddpm::Tensor<S, 4> y = gn(x);
  const double rstd = 1.0 / std::sqrt(1.25 + 1e-5);
  for (int i = 0; i < 4; ++i) {
    CHECK(double(y.data()[i]) == Approx((i + 1 - 2.5) * rstd * 2 + 1).epsilon(nn_test::tolerance<S>()));
  }
}

TEMPLATE_TEST_CASE("GroupNorm matches the naive loops", "[nn][group_norm]", float, double) {
  using S = TestType;
  for (auto [groups, channels] : {std::pair<Index, Index>{1, 3}, {4, 8}, {8, 8}, {2, 12}}) {
    ddpm::nn::GroupNorm<S> gn(groups, channels, 1e-6);
    nn_test::randomize<S>(gn, 11 + channels);
    // an offset far from 0 checks that the variance is not computed as E[x^2] - E[x]^2
    ddpm::Tensor<S, 4> x = nn_test::random_images<S>(3, channels, 5, 7, 12);
    x = x + S(30);
    const nn_test::T4 expected = nn_test::group_norm(nn_test::to_double(x), groups, nn_test::param<S>(gn, "weight"),
                                                     nn_test::param<S>(gn, "bias"), 1e-6);
    CHECK(nn_test::max_rel_error(gn(x), expected) < 20 * nn_test::tolerance<S>());
    const ddpm::Tensor<S, 4> y = gn(x, ddpm::nn::Activation::silu);
    CHECK(nn_test::max_rel_error(y, nn_test::silu(expected)) < 20 * nn_test::tolerance<S>());
  }
}

TEMPLATE_TEST_CASE("GroupNorm with a per-image scale and shift, on 1 and 2 threads", "[nn][group_norm]", float,
                   double) {
  using S = TestType;
  const Index N = 2, C = 6, G = 3;
  ddpm::nn::GroupNorm<S> gn(G, C, 1e-5);
  nn_test::randomize<S>(gn, 21);
  const ddpm::Tensor<S, 4> x = nn_test::random_images<S>(N, C, 4, 4, 22);
  std::vector<S> scale(N * C), shift(N * C);
  nn_test::Uniform u(23);
  for (Index i = 0; i < N * C; ++i) {
    scale[i] = static_cast<S>(u());
    shift[i] = static_cast<S>(u());
  }
  const nn_test::T4 normed = nn_test::group_norm(nn_test::to_double(x), G, nn_test::param<S>(gn, "weight"),
                                                 nn_test::param<S>(gn, "bias"), 1e-5);
  nn_test::T4 expected(normed.dimensions());
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c)
      for (Index i = 0; i < 16; ++i) {
        const Index k = (n * C + c) * 16 + i;
        expected.data()[k] = nn_test::silu(normed.data()[k] * (1 + double(scale[n * C + c])) + double(shift[n * C + c]));
      }
  for (int threads : {1, 2}) {
    ddpm::nn::Context<S> ctx(threads);
    ddpm::nn::Feature<S> f = ddpm::nn::to_feature(ctx, x);
    gn.forward(ctx, f.cview(), f.view(), ddpm::nn::Activation::silu, scale.data(), shift.data());
    CHECK(nn_test::max_rel_error(ddpm::nn::to_nchw(f.cview()), expected) < 20 * nn_test::tolerance<S>());
  }
}

TEST_CASE("GroupNorm rejects bad arguments", "[nn][group_norm]") {
  REQUIRE_THROWS_AS(ddpm::nn::GroupNorm<float>(3, 8), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::GroupNorm<float>(0, 8), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::GroupNorm<float>(2, 8, 0.0), ddpm::invalid_argument);
  ddpm::nn::GroupNorm<float> gn(2, 8);
  REQUIRE_THROWS_AS(gn(ddpm::Tensor<float, 4>(1, 6, 2, 2)), ddpm::invalid_argument);
  const auto params = ddpm::nn::parameters_of<float>(gn, "norm1.");
  REQUIRE(params.size() == 2);
  CHECK(params[0].name == "norm1.weight");
  CHECK(params[1].name == "norm1.bias");
}
