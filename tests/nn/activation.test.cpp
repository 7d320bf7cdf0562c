// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// The activations against their closed forms evaluated in double with the C library.

#include <cmath>
#include <numbers>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/nn/activation.hpp"
#include "gradcheck.hpp"
#include "nn_reference.hpp"

using ddpm::nn::Activation;

TEMPLATE_TEST_CASE("activations match their closed forms", "[nn][activation]", float, double) {
  using S = TestType;
  std::vector<double> xs;
  for (int i = -200; i <= 200; ++i) xs.push_back(i * 0.1);  // [-20, 20]
  for (double v : {-100.0, -50.0, 50.0, 100.0}) xs.push_back(v);
  auto closed = [](Activation a, double x) {
    switch (a) {
      case Activation::silu: return x / (1.0 + std::exp(-x));
      case Activation::mish: return x * std::tanh(std::log1p(std::exp(x)));
      case Activation::gelu: return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
      case Activation::relu: return x > 0 ? x : 0.0;
      case Activation::identity: return x;
    }
    return 0.0;
  };
  for (Activation a : {Activation::identity, Activation::silu, Activation::mish, Activation::gelu, Activation::relu}) {
    std::vector<S> y(xs.begin(), xs.end());
    ddpm::nn::apply_activation(a, y.data(), static_cast<Eigen::Index>(y.size()));
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const double expected = closed(a, static_cast<double>(static_cast<S>(xs[i])));
      INFO("activation " << static_cast<int>(a) << " at x = " << xs[i]);
      REQUIRE(std::isfinite(static_cast<double>(y[i])));
      // relative to max(|f(x)|, 1): a few ulps of S near 0, a few ulps relative elsewhere
      CHECK(std::abs(static_cast<double>(y[i]) - expected) <= 8 * std::numeric_limits<S>::epsilon() * std::max(std::abs(expected), 1.0));
    }
  }
}

TEST_CASE("SiLU at the extremes behaves as PyTorch's", "[nn][activation]") {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> y = {0.0f, -1e4f, 1e4f, inf, -inf};
  ddpm::nn::apply_activation(Activation::silu, y.data(), 5);
  CHECK(y[0] == 0.0f);
  CHECK(y[1] == 0.0f);  // exp(1e4) overflows to inf: -1e4 / inf = -0, not NaN
  CHECK(y[2] == 1e4f);
  CHECK(y[3] == inf);
  CHECK(std::isnan(y[4]));  // torch.nn.functional.silu(-inf) is nan too (-inf * 0)
}

TEST_CASE("parse_activation reads diffusers' act_fn names", "[nn][activation]") {
  CHECK(ddpm::nn::parse_activation("silu") == Activation::silu);
  CHECK(ddpm::nn::parse_activation("swish") == Activation::silu);
  CHECK(ddpm::nn::parse_activation("mish") == Activation::mish);
  CHECK(ddpm::nn::parse_activation("gelu") == Activation::gelu);
  CHECK(ddpm::nn::parse_activation("relu") == Activation::relu);
  REQUIRE_THROWS_AS(ddpm::nn::parse_activation("tanh"), ddpm::invalid_argument);
  REQUIRE_THROWS_WITH(ddpm::nn::parse_activation("SiLU"), Catch::Contains("silu, swish, mish, gelu, relu"));
}

TEST_CASE("ActivationLayer backward: every activation's derivative against central differences",
          "[nn][activation][backward]") {
  using A = ddpm::nn::ActivationLayer<double>;
  std::uint64_t seed = 21;
  for (Activation act : {Activation::silu, Activation::mish, Activation::gelu, Activation::relu,
                         Activation::identity}) {
    INFO("activation " << int(act));
    A layer(act);
    // odd size; values in [-4, 4] (relu's kink at 0 is never within eps of a random value in practice)
    const std::vector<double> x = nn_test::random_values(37, seed++, -4.0, 4.0);
    nn_test::gradcheck(
        layer, x, x.size(),
        [&](auto& ws, const A& l, const double* in, double* y, A::Saved* saved) {
          l.forward(ws, std::span<const double>(in, x.size()), std::span<double>(y, x.size()), saved);
        },
        [&](auto& ws, const A& l, const A::Saved& saved, const double* dy, double* dx, A& grads) {
          l.backward(ws, saved, std::span<const double>(dy, x.size()), std::span<double>(dx, x.size()), grads);
        });
  }
}

TEMPLATE_TEST_CASE("ActivationLayer runs in place and keeps its input for backward", "[nn][activation][backward]",
                   float, double) {
  using S = TestType;
  using A = ddpm::nn::ActivationLayer<S>;
  const A silu(Activation::silu);
  ddpm::nn::Workspace<S> ws;
  std::vector<S> v = {S(-3), S(-0.5), S(0), S(0.25), S(2), S(7), S(-20)};
  const std::vector<S> x = v;
  typename A::Saved saved;
  silu.forward(ws, std::span<const S>(v), std::span<S>(v), &saved);  // in place: y overwrites x
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i], s = 1.0 / (1.0 + std::exp(-xi));
    CHECK(double(v[i]) == Approx(xi * s).epsilon(1e-6).margin(1e-7));
  }
  // backward in place too (dx = dy): silu'(x) = s (1 + x (1 - s)) from the saved x, not from y
  std::vector<S> g(x.size(), S(1));
  A grads = silu.gradient_like();
  silu.backward(ws, saved, std::span<const S>(g), std::span<S>(g), grads);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i], s = 1.0 / (1.0 + std::exp(-xi));
    CHECK(double(g[i]) == Approx(s * (1.0 + xi * (1.0 - s))).epsilon(1e-6).margin(1e-7));
  }
  std::vector<S> short_dy(3);
  REQUIRE_THROWS_AS(silu.backward(ws, saved, std::span<const S>(short_dy), std::span<S>(g), grads),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(silu.forward(ws, std::span<const S>(short_dy), std::span<S>(g)), ddpm::invalid_argument);
}
