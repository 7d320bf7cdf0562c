// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Upsample2D [docs/unet.md, Eq. (U8)]: nearest x2 by hand, and followed by its convolution against the
// naive loops.

#include <catch2/catch.hpp>

#include "ddpm/nn/upsample.hpp"
#include "nn_reference.hpp"

TEMPLATE_TEST_CASE("Upsample2D without a convolution repeats each pixel 2x2", "[nn][upsample]", float, double) {
  using S = TestType;
  ddpm::nn::Upsample2D<S> up(1, false);
  ddpm::Tensor<S, 4> x(1, 1, 2, 3);
  x.setValues({{{{1, 2, 3}, {4, 5, 6}}}});
  const ddpm::Tensor<S, 4> y = up(x);
  REQUIRE(y.dimension(2) == 4);
  REQUIRE(y.dimension(3) == 6);
  for (Eigen::Index i = 0; i < 4; ++i)
    for (Eigen::Index j = 0; j < 6; ++j) CHECK(y(0, 0, i, j) == x(0, 0, i / 2, j / 2));
}

TEMPLATE_TEST_CASE("Upsample2D with a convolution matches the naive loops", "[nn][upsample]", float, double) {
  using S = TestType;
  ddpm::nn::Upsample2D<S> up(3, true);
  nn_test::randomize<S>(up, 80);
  const ddpm::Tensor<S, 4> x = nn_test::random_images<S>(2, 3, 3, 4, 81);
  nn_test::T4 doubled(2, 3, 6, 8);
  for (Eigen::Index n = 0; n < 2; ++n)
    for (Eigen::Index c = 0; c < 3; ++c)
      for (Eigen::Index i = 0; i < 6; ++i)
        for (Eigen::Index j = 0; j < 8; ++j) doubled(n, c, i, j) = x(n, c, i / 2, j / 2);
  const nn_test::T4 expected = nn_test::conv2d(doubled, nn_test::param<S>(up, "conv.weight"),
                                               nn_test::param<S>(up, "conv.bias"), 3, 3, 3, 1, 1, 1, 1, 1);
  for (int threads : {1, 2}) {
    ddpm::nn::Context<S> ctx(threads);
    ddpm::nn::Feature<S> in = ddpm::nn::to_feature(ctx, x);
    ddpm::nn::Feature<S> out = ddpm::nn::make_feature(ctx, 3, 2, 6, 8);
    up.forward(ctx, in.cview(), out.view());
    CHECK(nn_test::max_rel_error(ddpm::nn::to_nchw(out.cview()), expected) < nn_test::tolerance<S>());
  }
  CHECK(ddpm::nn::parameters_of<S>(up, "upsamplers.0.")[1].name == "upsamplers.0.conv.bias");
}

TEST_CASE("Upsample2D rejects bad arguments", "[nn][upsample]") {
  REQUIRE_THROWS_AS(ddpm::nn::Upsample2D<float>(0), ddpm::invalid_argument);
  ddpm::nn::Upsample2D<float> up(4);
  REQUIRE_THROWS_AS(up(ddpm::Tensor<float, 4>(1, 2, 4, 4)), ddpm::invalid_argument);
}
