// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// A finite-difference gradient checker for any layer of the nn/ training protocol (docs/unet.md,
// "Forward and backward (the training protocol)"), in double, as PyTorch's gradcheck does it:
//   L(x, theta) = sum_i w_i * forward(x, theta)_i          with w uniform in [-1, 1]
//   numeric dL/dv = (L(v + eps) - L(v - eps)) / (2 eps)     for every input value and every parameter value
//   analytic      = backward(saved, dy = w) -> d_input and the gradients object (layer.gradient_like())
//   pass when |analytic - numeric| <= atol + rtol * |numeric|   (eps 1e-6, atol 1e-5, rtol 1e-3)
// It also checks the protocol's invariants: the gradients object lists the layer's names and shapes in the
// same order and starts at zero; a forward pass that saves gives the same output, bit for bit, as one that
// does not; a second backward accumulates (every gradient doubles, to 1e-12) while d_input is overwritten.
//
// Use: adapt the layer's calls to flat arrays with two lambdas and call nn_test::gradcheck:
//
//   ddpm::nn::Linear<double> lin(5, 7);
//   nn_test::randomize<double>(lin, 1);
//   using L = ddpm::nn::Linear<double>;
//   nn_test::gradcheck(lin, nn_test::random_values(3 * 5, 2), 3 * 7,
//       [&](auto& ws, const L& l, const double* x, double* y, L::Saved* saved) {
//         l.forward(ws, L::ConstRows(x, 3, 5), L::Rows(y, 3, 7), saved);
//       },
//       [&](auto& ws, const L& l, const L::Saved& saved, const double* dy, double* dx, L& grads) {
//         l.backward(ws, saved, L::ConstRows(dy, 3, 7), L::Rows(dx, 3, 5), grads);
//       });
//
// The layer's prepare() runs after every perturbation of its weights (the protocol's rule).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/nn/context.hpp"
#include "ddpm/nn/parameter.hpp"
#include "nn_reference.hpp"

namespace nn_test {

struct GradcheckOptions {
  double eps = 1e-6;   ///< central-difference step (PyTorch gradcheck's)
  double atol = 1e-5;  ///< absolute tolerance
  double rtol = 1e-3;  ///< relative tolerance
  std::uint64_t seed = 12345;  ///< of the loss weights w
  int threads = 1;     ///< of the workspace
};

/// n values uniform in [lo, hi) (a layer's random input).
inline std::vector<double> random_values(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Uniform u(seed);
  std::vector<double> v(n);
  for (double& x : v) x = u(lo, hi);
  return v;
}

/// Checks d_input and every parameter gradient of `layer` (see the file comment). `forward(ws, layer, x,
/// y, saved)` runs the layer's forward on x (x.size() values) into y (y_size values), saving into *saved
/// when saved is not null; `backward(ws, layer, saved, dy, dx, grads)` runs its backward. Reports each
/// mismatch (the first few) through Catch.
template <class Layer, class Forward, class Backward>
void gradcheck(Layer& layer, const std::vector<double>& x, std::size_t y_size, Forward&& forward, Backward&& backward,
               const GradcheckOptions& o = {}) {
  using Saved = typename Layer::Saved;
  ddpm::nn::Workspace<double> ws(o.threads);
  const std::vector<double> w = random_values(y_size, o.seed);
  layer.prepare();
  auto loss = [&](const std::vector<double>& input) {
    std::vector<double> y(y_size);
    forward(ws, static_cast<const Layer&>(layer), input.data(), y.data(), static_cast<Saved*>(nullptr));
    double l = 0.0;
    for (std::size_t i = 0; i < y_size; ++i) l += w[i] * y[i];
    return l;
  };

  // The gradients object: same names, shapes and order as the layer's parameters, all zero.
  Layer grads = layer.gradient_like();
  {
    const auto lp = ddpm::nn::parameters_of<const double>(static_cast<const Layer&>(layer));
    const auto gp = ddpm::nn::parameters_of<const double>(static_cast<const Layer&>(grads));
    REQUIRE(gp.size() == lp.size());
    for (std::size_t i = 0; i < lp.size(); ++i) {
      CHECK(gp[i].name == lp[i].name);
      CHECK(gp[i].shape == lp[i].shape);
      for (std::int64_t k = 0; k < gp[i].numel(); ++k) REQUIRE(gp[i].data[k] == 0.0);
    }
  }

  // Forward with and without saving: the same output, bit for bit.
  std::vector<double> y(y_size), y_plain(y_size);
  forward(ws, static_cast<const Layer&>(layer), x.data(), y_plain.data(), static_cast<Saved*>(nullptr));
  Saved saved;
  forward(ws, static_cast<const Layer&>(layer), x.data(), y.data(), &saved);
  CHECK(y == y_plain);

  std::vector<double> dx(x.size(), 0.0);
  backward(ws, static_cast<const Layer&>(layer), static_cast<const Saved&>(saved), w.data(), dx.data(), grads);

  int failures = 0;
  double worst = 0.0;
  std::ostringstream report;
  auto compare = [&](const std::string& what, double analytic, double numeric) {
    const double err = std::abs(analytic - numeric), bound = o.atol + o.rtol * std::abs(numeric);
    worst = std::max(worst, err / bound);
    if (err > bound) {
      if (failures < 10) report << what << ": analytic " << analytic << ", numeric " << numeric << "\n";
      ++failures;
    }
  };

  // d_input against central differences of the loss in each input value.
  std::vector<double> xp = x;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = xp[i];
    xp[i] = v + o.eps;
    const double lp = loss(xp);
    xp[i] = v - o.eps;
    const double lm = loss(xp);
    xp[i] = v;
    compare("d_input[" + std::to_string(i) + "]", dx[i], (lp - lm) / (2 * o.eps));
  }

  // Each parameter gradient against central differences in that parameter value (the weights change, so
  // the layer is prepared again after each perturbation).
  const auto params = ddpm::nn::parameters_of<double>(layer);
  const auto gparams = ddpm::nn::parameters_of<const double>(static_cast<const Layer&>(grads));
  for (std::size_t i = 0; i < params.size(); ++i) {
    for (std::int64_t k = 0; k < params[i].numel(); ++k) {
      double& v = params[i].data[k];
      const double v0 = v;
      v = v0 + o.eps;
      layer.prepare();
      const double lp = loss(x);
      v = v0 - o.eps;
      layer.prepare();
      const double lm = loss(x);
      v = v0;
      layer.prepare();
      compare(params[i].name + "[" + std::to_string(k) + "]", gparams[i].data[k], (lp - lm) / (2 * o.eps));
    }
  }
  INFO(report.str() << failures << " mismatches; worst |error| / (atol + rtol |numeric|) = " << worst);
  CHECK(failures == 0);

  // A second backward accumulates into the gradients and overwrites d_input.
  std::vector<std::vector<double>> first;
  for (const auto& g : gparams) first.emplace_back(g.data, g.data + g.numel());
  std::vector<double> dx2(x.size(), 7.0);
  backward(ws, static_cast<const Layer&>(layer), static_cast<const Saved&>(saved), w.data(), dx2.data(), grads);
  CHECK(dx2 == dx);
  for (std::size_t i = 0; i < gparams.size(); ++i) {
    for (std::int64_t k = 0; k < gparams[i].numel(); ++k) {
      // 2 g up to the rounding of one more addition (a fused accumulation may round differently)
      const double g1 = first[i][static_cast<std::size_t>(k)];
      REQUIRE(std::abs(gparams[i].data[k] - 2.0 * g1) <= 1e-12 * (std::abs(g1) + 1.0));
    }
  }
}

}  // namespace nn_test
