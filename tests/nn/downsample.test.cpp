// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Downsample2D [docs/unet.md, Eq. (U7)]: 2x2 average pooling by hand; the strided convolution, with
// diffusers' padding 1 and its asymmetric padding 0, against the naive loops.

#include <catch2/catch.hpp>

#include "ddpm/nn/downsample.hpp"
#include "nn_reference.hpp"

TEMPLATE_TEST_CASE("Downsample2D without a convolution is 2x2 average pooling", "[nn][downsample]", float, double) {
  using S = TestType;
  ddpm::nn::Downsample2D<S> down(2, false);
  CHECK_FALSE(down.use_conv());
  ddpm::Tensor<S, 4> x(1, 2, 2, 4);
  x.setValues({{{{1, 2, 3, 4}, {5, 6, 7, 8}}, {{-1, -1, 0, 4}, {-1, -1, 0, 0}}}});
  const ddpm::Tensor<S, 4> y = down(x);
  REQUIRE(y.dimension(2) == 1);
  REQUIRE(y.dimension(3) == 2);
  CHECK(y(0, 0, 0, 0) == S(3.5));  // (1 + 2 + 5 + 6) / 4
  CHECK(y(0, 0, 0, 1) == S(5.5));
  CHECK(y(0, 1, 0, 0) == S(-1));
  CHECK(y(0, 1, 0, 1) == S(1));
  CHECK(ddpm::nn::parameters_of<S>(down).empty());
}

TEMPLATE_TEST_CASE("Downsample2D with a convolution matches the naive loops", "[nn][downsample]", float, double) {
  using S = TestType;
  for (Eigen::Index padding : {0, 1}) {
    ddpm::nn::Downsample2D<S> down(3, true, padding);
    nn_test::randomize<S>(down, 70 + padding);
    const ddpm::Tensor<S, 4> x = nn_test::random_images<S>(2, 3, 8, 8, 72);
    const ddpm::Tensor<S, 4> y = down(x);
    REQUIRE(y.dimension(2) == 4);
    REQUIRE(y.dimension(3) == 4);
    const Eigen::Index before = padding, after = padding == 0 ? 1 : padding;
    const nn_test::T4 expected =
        nn_test::conv2d(nn_test::to_double(x), nn_test::param<S>(down, "conv.weight"),
                        nn_test::param<S>(down, "conv.bias"), 3, 3, 3, 2, before, before, after, after);
    CHECK(nn_test::max_rel_error(y, expected) < nn_test::tolerance<S>());
  }
  ddpm::nn::Downsample2D<S> down(4, true, 0);
  CHECK(ddpm::nn::parameters_of<S>(down, "downsamplers.0.")[0].name == "downsamplers.0.conv.weight");
}

TEST_CASE("Downsample2D rejects bad arguments", "[nn][downsample]") {
  REQUIRE_THROWS_AS(ddpm::nn::Downsample2D<float>(0), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::Downsample2D<float>(4, true, -1), ddpm::invalid_argument);
  ddpm::nn::Downsample2D<float> pool(4, false);
  REQUIRE_THROWS_AS(pool(ddpm::Tensor<float, 4>(1, 3, 4, 4)), ddpm::invalid_argument);
}
