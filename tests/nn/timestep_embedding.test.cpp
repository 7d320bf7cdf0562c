// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// The sinusoidal embedding [docs/unet.md, Eq. (U3)] against its closed form and as correctly rounded float32
// values, and the MLP (U4).

#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/nn/timestep_embedding.hpp"
#include "nn_reference.hpp"

TEMPLATE_TEST_CASE("sinusoidal_embedding matches its closed form", "[nn][timestep_embedding]", float, double) {
  using S = TestType;
  const std::vector<double> t = {0, 1, 17, 250.5, 999};
  for (bool flip : {false, true}) {
    for (double shift : {0.0, 1.0}) {
      for (Eigen::Index dim : {8, 32, 9}) {
        const auto e = ddpm::nn::sinusoidal_embedding<S>(t, dim, flip, shift);
        REQUIRE(e.rows() == 5);
        REQUIRE(e.cols() == dim);
        const Eigen::Index half = dim / 2;
        for (std::size_t b = 0; b < t.size(); ++b) {
          for (Eigen::Index k = 0; k < half; ++k) {
            const double arg = t[b] * std::exp(-std::log(10000.0) * double(k) / (double(half) - shift));
            const double s = double(e(b, flip ? half + k : k)), c = double(e(b, flip ? k : half + k));
            // computed in float32 (as diffusers): the argument carries |arg| * 2^-23 of rounding
            const double tol = 4e-7 * std::max(1.0, arg) + 1e-7;
            INFO("t = " << t[b] << ", k = " << k << ", dim " << dim << ", flip " << flip << ", shift " << shift);
            CHECK(std::abs(s - std::sin(arg)) < tol);
            CHECK(std::abs(c - std::cos(arg)) < tol);
          }
          if (dim % 2 == 1) CHECK(e(b, dim - 1) == S(0));
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("sinusoidal_embedding is correctly rounded float32 of diffusers' float32 arguments",
                   "[nn][timestep_embedding]", float, double) {
  // The exponent -ln(10000) k / (half - shift), t and t * freq are float32 operations (as diffusers' float32
  // tensors compute them); freq = exp(exponent), sin(arg) and cos(arg) must be the float32 values nearest to the
  // exact ones. The reference evaluates them in long double (a different libm path from the double one the
  // library uses; 64-bit mantissa) and rounds once; a tie within 2^-40 of a float32 midpoint would make this
  // ambiguous, and none occurs for these arguments.
  using S = TestType;
  std::vector<double> t;
  for (int i = 0; i < 1000; i += 7) t.push_back(i);
  t.push_back(999);
  t.push_back(250.5);
  for (double shift : {0.0, 1.0}) {
    for (Eigen::Index dim : {8, 32, 128}) {
      const auto e = ddpm::nn::sinusoidal_embedding<S>(t, dim, false, shift);
      const Eigen::Index half = dim / 2;
      const float log_period = -static_cast<float>(std::log(10000.0));
      const float denominator = static_cast<float>(half) - static_cast<float>(shift);
      int mismatches = 0;
      for (std::size_t b = 0; b < t.size(); ++b) {
        for (Eigen::Index k = 0; k < half; ++k) {
          const float exponent = log_period * static_cast<float>(k) / denominator;
          const float freq = static_cast<float>(std::exp(static_cast<long double>(exponent)));
          const float arg = static_cast<float>(t[b]) * freq;
          const float s = static_cast<float>(std::sin(static_cast<long double>(arg)));
          const float c = static_cast<float>(std::cos(static_cast<long double>(arg)));
          if (e(static_cast<Eigen::Index>(b), k) != static_cast<S>(s) ||
              e(static_cast<Eigen::Index>(b), half + k) != static_cast<S>(c)) {
            ++mismatches;
          }
        }
      }
      INFO("dim " << dim << ", shift " << shift);
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("sinusoidal_embedding at t = 0 is (0..0, 1..1), or (1..1, 0..0) flipped", "[nn][timestep_embedding]") {
  const std::vector<double> t = {0};
  const auto e = ddpm::nn::sinusoidal_embedding<double>(t, 6, false, 1.0);
  CHECK(e(0, 0) == 0.0);
  CHECK(e(0, 2) == 0.0);
  CHECK(e(0, 3) == 1.0);
  CHECK(e(0, 5) == 1.0);
  const auto f = ddpm::nn::sinusoidal_embedding<double>(t, 6, true, 1.0);
  CHECK(f(0, 0) == 1.0);
  CHECK(f(0, 5) == 0.0);
  // the first frequency is always 1: the k = 0 column is sin(t)
  const std::vector<double> t2 = {2.0};
  CHECK(ddpm::nn::sinusoidal_embedding<double>(t2, 6, false, 0.0)(0, 0) == Approx(std::sin(2.0)).epsilon(1e-6));
}

TEST_CASE("sinusoidal_embedding rejects bad arguments", "[nn][timestep_embedding]") {
  const std::vector<double> t = {1};
  REQUIRE_THROWS_AS(ddpm::nn::sinusoidal_embedding<float>(t, 1, false, 0.0), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::sinusoidal_embedding<float>(t, 4, false, 2.0), ddpm::invalid_argument);  // half - shift = 0
  const std::vector<double> bad = {std::nan("")};
  REQUIRE_THROWS_AS(ddpm::nn::sinusoidal_embedding<float>(bad, 4, false, 0.0), ddpm::invalid_argument);
}

TEMPLATE_TEST_CASE("TimestepEmbedding is linear_2(silu(linear_1(x)))", "[nn][timestep_embedding]", float, double) {
  using S = TestType;
  ddpm::nn::TimestepEmbedding<S> mlp(4, 6);
  nn_test::randomize<S>(mlp, 31);
  typename ddpm::nn::TimestepEmbedding<S>::Matrix x(2, 4);
  nn_test::Uniform u(32);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(u());
  const auto y = mlp(x);
  std::vector<double> xd(x.data(), x.data() + x.size());
  std::vector<double> h = nn_test::linear(xd, 2, nn_test::param<S>(mlp, "linear_1.weight"),
                                          nn_test::param<S>(mlp, "linear_1.bias"), 6, 4);
  for (double& v : h) v = nn_test::silu(v);
  const std::vector<double> expected = nn_test::linear(h, 2, nn_test::param<S>(mlp, "linear_2.weight"),
                                                       nn_test::param<S>(mlp, "linear_2.bias"), 6, 6);
  for (Eigen::Index i = 0; i < 12; ++i) CHECK(double(y.data()[i]) == Approx(expected[i]).margin(nn_test::tolerance<S>()));
  const auto names = ddpm::nn::parameters_of<S>(mlp, "time_embedding.");
  REQUIRE(names.size() == 4);
  CHECK(names[0].name == "time_embedding.linear_1.weight");
  CHECK(names[3].name == "time_embedding.linear_2.bias");
}
