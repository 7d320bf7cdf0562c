// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/nn/linear.hpp"
#include "gradcheck.hpp"
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

TEST_CASE("Linear backward: dx, dW and db against central differences", "[nn][linear][backward]") {
  using L = ddpm::nn::Linear<double>;
  struct Case {
    Eigen::Index batch, in, out;
    bool bias;
  };
  std::uint64_t seed = 1;
  for (const Case c : {Case{3, 5, 7, true}, Case{1, 4, 3, true}, Case{2, 3, 1, false}, Case{5, 9, 11, true}}) {
    INFO("batch " << c.batch << ", in " << c.in << ", out " << c.out << ", bias " << c.bias);
    L lin(c.in, c.out, c.bias);
    nn_test::randomize<double>(lin, seed++);
    const std::vector<double> x = nn_test::random_values(static_cast<std::size_t>(c.batch * c.in), seed++);
    nn_test::gradcheck(
        lin, x, static_cast<std::size_t>(c.batch * c.out),
        [&](auto& ws, const L& l, const double* in, double* y, L::Saved* saved) {
          l.forward(ws, L::ConstRows(in, c.batch, c.in), L::Rows(y, c.batch, c.out), saved);
        },
        [&](auto& ws, const L& l, const L::Saved& saved, const double* dy, double* dx, L& grads) {
          l.backward(ws, saved, L::ConstRows(dy, c.batch, c.out), L::Rows(dx, c.batch, c.in), grads);
        });
  }
}

TEMPLATE_TEST_CASE("Linear's workspace forward equals the convenience form; backward checks its shapes",
                   "[nn][linear][backward]", float, double) {
  using S = TestType;
  using L = ddpm::nn::Linear<S>;
  L lin(6, 4);
  nn_test::randomize<S>(lin, 3);
  typename L::Matrix x(40, 6), y(40, 4);  // large enough for the packed GEMM path
  nn_test::Uniform u(4);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(u());
  ddpm::nn::Workspace<S> ws;
  typename L::Saved saved;
  lin.forward(ws, typename L::ConstRows(x.data(), 40, 6), typename L::Rows(y.data(), 40, 4), &saved);
  const typename L::Matrix expected = lin(x);
  CHECK((y - expected).cwiseAbs().maxCoeff() <= 20 * std::numeric_limits<S>::epsilon() * expected.cwiseAbs().maxCoeff());
  // dx may be skipped (a first layer): only the parameter gradients are accumulated
  L grads = lin.gradient_like();
  const typename L::Matrix dy = L::Matrix::Ones(40, 4);
  lin.backward(ws, saved, typename L::ConstRows(dy.data(), 40, 4), typename L::Rows(nullptr, 0, 0), grads);
  for (Eigen::Index o = 0; o < 4; ++o) CHECK(grads.bias()[o] == S(40));  // db = sum over rows of dy
  // wrong shapes
  typename L::Matrix wrong(40, 5), dx(40, 6);
  REQUIRE_THROWS_AS(lin.backward(ws, saved, typename L::ConstRows(wrong.data(), 40, 5),
                                 typename L::Rows(dx.data(), 40, 6), grads),
                    ddpm::invalid_argument);
  L other(6, 5);
  REQUIRE_THROWS_AS(lin.backward(ws, saved, typename L::ConstRows(dy.data(), 40, 4),
                                 typename L::Rows(dx.data(), 40, 6), other),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(lin.backward(ws, typename L::Saved{}, typename L::ConstRows(dy.data(), 40, 4),
                                 typename L::Rows(dx.data(), 40, 6), grads),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(lin.forward(ws, typename L::ConstRows(wrong.data(), 40, 5), typename L::Rows(y.data(), 40, 4)),
                    ddpm::invalid_argument);
}
