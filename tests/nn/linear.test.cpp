// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

#include <catch2/catch.hpp>

#include "ddpm/nn/linear.hpp"
#include "nn_reference.hpp"

TEMPLATE_TEST_CASE("Linear computes x W^T + b, by hand", "[nn][linear]", float, double) {
  using S = TestType;
  ddpm::nn::Linear<S> lin(3, 2);
  lin.weight() << 1, 2, 3,  //
      -1, 0, 2;
  lin.bias() << S(0.5), S(-1);
  typename ddpm::nn::Linear<S>::Matrix x(2, 3);
  x << 1, 1, 1,  //
      2, -1, 0.5;
  const auto y = lin(x);
  REQUIRE(y.rows() == 2);
  REQUIRE(y.cols() == 2);
  CHECK(y(0, 0) == S(6.5));   // 1 + 2 + 3 + 0.5
  CHECK(y(0, 1) == S(0));     // -1 + 0 + 2 - 1
  CHECK(y(1, 0) == S(2));     // 2 - 2 + 1.5 + 0.5
  CHECK(y(1, 1) == S(-2));    // -2 + 0 + 1 - 1
}

TEST_CASE("Linear parameters and errors", "[nn][linear]") {
  ddpm::nn::Linear<float> lin(4, 3);
  const auto params = ddpm::nn::parameters_of<float>(lin, "time_embedding.linear_1.");
  REQUIRE(params.size() == 2);
  CHECK(params[0].name == "time_embedding.linear_1.weight");
  CHECK(params[0].shape == std::vector<std::int64_t>{3, 4});
  CHECK(params[1].shape == std::vector<std::int64_t>{3});
  ddpm::nn::Linear<float> no_bias(4, 3, false);
  CHECK(ddpm::nn::parameters_of<float>(no_bias).size() == 1);
  REQUIRE_THROWS_AS(ddpm::nn::Linear<float>(0, 3), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::Linear<float>(3, 0), ddpm::invalid_argument);
  ddpm::nn::Linear<float>::Matrix x(2, 5);
  x.setZero();
  REQUIRE_THROWS_AS(lin(x), ddpm::invalid_argument);
}
