// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
// A minimal user program: it must build against ddpm however ddpm was obtained, and compute the closed-form
// forward marginal correctly.
#include <cmath>
#include <cstdio>

#include <ddpm/ddpm.hpp>

int main() {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::Tensor<double, 2> x0(2, 3), eps(2, 3);
  x0.setConstant(1.0);
  eps.setConstant(-0.5);
  const int t = 499;
  const ddpm::Tensor<double, 2> x_t = ddpm::q_sample(schedule, x0, t, eps);

  double alpha_bar = 1.0;  // recomputed here from the definition, independently of the library
  for (int i = 0; i <= t; ++i) alpha_bar *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / 999.0);
  const double expected = std::sqrt(alpha_bar) * 1.0 + std::sqrt(1.0 - alpha_bar) * -0.5;
  const double error = std::abs(x_t(1, 2) - expected);
  std::printf("x_t = %.15f, expected %.15f, |error| = %.3g\n", x_t(1, 2), expected, error);
  return error < 1e-12 ? 0 : 1;
}
