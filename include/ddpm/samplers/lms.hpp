// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The linear multistep (LMS) sampler of k-diffusion (sample_lms; diffusers' LMSDiscreteScheduler): an
// Adams-Bashforth method of the probability-flow ODE dx/dsigma = (x - x0) / sigma in the variance-exploding
// variable, on the uneven sigma grid, with the Lagrange basis integrated exactly.
//                                                                        [docs/samplers.md, Eq. (S22)]

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/predictor.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/detail/two_stage.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// Options of LMSSampler (diffusers' LMSDiscreteScheduler, k-diffusion's sample_lms).
struct LMSOptions {
  /// The grid (GridOptions; LMSSampler::grid_defaults: as EulerSampler's).
  GridOptions grid = {};
  /// The number of derivatives combined, in [1, 6] (diffusers' `order` argument of step, k-diffusion's
  /// `order`; 4 by default). Step i uses min(i + 1, order).
  int order = 4;
  /// Bounds on the predicted x0 (not in diffusers' LMS). Default: none.
  Clipping clipping = {};
};

namespace detail {

/// The n-point Gauss-Legendre rule on [-1, 1] (nodes and weights), exact for polynomials of degree
/// <= 2n - 1; the nodes by Newton's method on P_n from the Chebyshev guesses, to double precision.
inline void gauss_legendre(int n, std::vector<double>& nodes, std::vector<double>& weights) {
  nodes.assign(static_cast<std::size_t>(n), 0.0);
  weights.assign(static_cast<std::size_t>(n), 0.0);
  const double pi = 3.14159265358979323846;
  for (int k = 0; k < n; ++k) {
    double x = std::cos(pi * (k + 0.75) / (n + 0.5)), dp = 1.0;
    for (int it = 0; it < 100; ++it) {
      double p0 = 1.0, p1 = x;  // P_0, P_1, then the recurrence up to P_n
      for (int m = 2; m <= n; ++m) {
        const double p2 = ((2.0 * m - 1.0) * x * p1 - (m - 1.0) * p0) / m;
        p0 = p1;
        p1 = p2;
      }
      const double pn = n == 0 ? 1.0 : p1, pn1 = n == 1 ? 1.0 : p0;
      dp = n * (x * pn - pn1) / (x * x - 1.0);
      const double dx = pn / dp;
      x -= dx;
      if (std::abs(dx) < 1e-16) break;
    }
    nodes[static_cast<std::size_t>(k)] = x;
    weights[static_cast<std::size_t>(k)] = 2.0 / ((1.0 - x * x) * dp * dp);
  }
}

}  // namespace detail

/// The LMS sampler (deterministic).                                        [docs/samplers.md, Eq. (S22)]
/// With sigma_i the grid (make_grid, as EulerSampler; sigmas()), x_ve = sqrt(1 + sigma_i^2) x and
/// d_i = (x_ve - x0_i) / sigma_i, step i with q = min(i + 1, order) is
///   x_ve <- x_ve + sum_{j=0}^{q-1} c_{ij} d_{i-j},
///   c_{ij} = integral from sigma_i to sigma_{i+1} of prod_{m != j, m < q} (tau - sigma_{i-m}) / (sigma_{i-j} - sigma_{i-m}) dtau,
/// then x <- x_ve / sqrt(1 + sigma_{i+1}^2). The integrals are exact: Gauss-Legendre with q points on a
/// polynomial of degree q - 1 (k-diffusion and diffusers use scipy's adaptive quadrature, exact to
/// rounding for these polynomials). The sampler keeps the last order - 1 derivatives: a run steps
/// i = 0, 1, 2, ... in order; step 0 (or reset()) starts a new run.
template <std::floating_point S>
class LMSSampler : public detail::SamplerBase<LMSSampler<S>, S> {
  using Base = detail::SamplerBase<LMSSampler<S>, S>;
  friend Base;

 public:
  /// The grid defaults (LMSDiscreteScheduler's, EulerDiscreteScheduler's): N = 50, linspace spacing, ramps
  /// between the spaced ends.
  static constexpr GridDefaults grid_defaults = GridDefaults::euler_discrete();

  /// Throws ddpm::invalid_argument if order is outside [1, 6], or the grid (see make_grid) or clipping
  /// options are bad.
  explicit LMSSampler(NoiseSchedule<S> schedule, LMSOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::LMSSampler";
    if (options_.order < 1 || options_.order > 6) {
      detail::throw_invalid_argument(std::string(fn) + ": order is " + ddpm::detail::number_string(options_.order) +
                                     ", but must be in [1, 6]");
    }
    detail::check_clipping(fn, options_.clipping);
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    this->timesteps_ = std::move(grid.timesteps);
    sigmas_ = std::move(grid.sigmas);
    const int n = this->num_inference_steps();
    std::vector<double> nodes, weights;
    coefficients_.resize(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const int q = std::min(i + 1, options_.order);
      detail::gauss_legendre(q, nodes, weights);
      const double a = sigmas_[static_cast<std::size_t>(i)], b = sigmas_[static_cast<std::size_t>(i + 1)];
      auto& c = coefficients_[static_cast<std::size_t>(i)];
      c.assign(static_cast<std::size_t>(q), 0.0);
      for (int j = 0; j < q; ++j) {
        const double sj = sigmas_[static_cast<std::size_t>(i - j)];
        for (int g = 0; g < q; ++g) {
          const double tau = 0.5 * (a + b) + 0.5 * (b - a) * nodes[static_cast<std::size_t>(g)];
          double prod = 1.0;
          for (int m = 0; m < q; ++m) {
            if (m == j) continue;
            const double sm = sigmas_[static_cast<std::size_t>(i - m)];
            prod *= (tau - sm) / (sj - sm);
          }
          c[static_cast<std::size_t>(j)] += 0.5 * (b - a) * weights[static_cast<std::size_t>(g)] * prod;
        }
      }
    }
  }

  const LMSOptions& options() const { return options_; }
  /// The noise levels sigma_0, ..., sigma_{N-1} of the steps followed by the final sigma (N + 1 values).
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// c_{ij} of step i (min(i + 1, order) values, j = 0 the current derivative).
  /// Throws ddpm::invalid_argument if i is outside [0, num_inference_steps()).
  const std::vector<double>& coefficients(int i) const {
    detail::check_step_index("ddpm::LMSSampler::coefficients", i, this->num_inference_steps());
    return coefficients_[static_cast<std::size_t>(i)];
  }
  /// Forgets the derivatives; the next step must be step 0.
  void reset() { next_step_ = 0; }

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::LMSSampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    const auto total = static_cast<std::size_t>(x.size());
    detail::check_in_order(fn, i, next_step_, x, elements_);
    elements_ = total;
    const double s0 = sigmas_[static_cast<std::size_t>(i)], s1 = sigmas_[static_cast<std::size_t>(i + 1)];
    S* x0 = target.x0 != nullptr ? target.x0 : this->workspace_.x0(x.size());
    this->predict_x0(output, target.stride, x, x0_conversion(kind, 1.0 / (1.0 + s0 * s0)), options_.clipping, x0);
    // history_[k] holds d_{i-1-k} (the newest first, order - 1 of them); d_i goes into spare_, which then
    // becomes history_[0] while the oldest buffer becomes the next spare.
    const int keep = options_.order - 1;
    if (i == 0) history_.assign(static_cast<std::size_t>(std::max(keep, 0)), {});
    const std::vector<double>& c = coefficients_[static_cast<std::size_t>(i)];
    // Per element in double (x, x0 and the derivatives are stored as S): float runs then round only
    // where values are stored.
    const double scale = std::sqrt(1.0 + s0 * s0), inv_s0 = 1.0 / s0, inv = 1.0 / std::sqrt(1.0 + s1 * s1);
    const double c0 = c[0];
    S* d_new = nullptr;
    if (keep > 0) {
      spare_.resize(total);
      d_new = spare_.data();
    }
    double cs[6] = {};
    const S* hs[6] = {};
    const int q = static_cast<int>(c.size());
    for (int j = 1; j < q; ++j) {
      cs[j] = c[static_cast<std::size_t>(j)];
      hs[j] = history_[static_cast<std::size_t>(j - 1)].data();
    }
    S* __restrict xs = x.data();
    const S* __restrict x0s = x0;
    // One loop per q, so that the sum over the derivatives is unrolled and the loop vectorises.
    auto combine = [&](auto q_constant) {
      constexpr int kQ = decltype(q_constant)::value;
      for (std::size_t e = 0; e < total; ++e) {
        const double x_ve = scale * static_cast<double>(xs[e]);
        const double d = (x_ve - static_cast<double>(x0s[e])) * inv_s0;
        double v = x_ve + c0 * d;
        for (int j = 1; j < kQ; ++j) v += cs[j] * static_cast<double>(hs[j][e]);
        if (d_new != nullptr) d_new[e] = static_cast<S>(d);
        xs[e] = static_cast<S>(v * inv);
      }
    };
    switch (q) {
      case 1: combine(std::integral_constant<int, 1>{}); break;
      case 2: combine(std::integral_constant<int, 2>{}); break;
      case 3: combine(std::integral_constant<int, 3>{}); break;
      case 4: combine(std::integral_constant<int, 4>{}); break;
      case 5: combine(std::integral_constant<int, 5>{}); break;
      default: combine(std::integral_constant<int, 6>{}); break;
    }
    if (keep > 0) {
      std::vector<S> oldest = std::move(history_.back());
      history_.pop_back();
      history_.insert(history_.begin(), std::move(spare_));
      spare_ = std::move(oldest);
    }
    next_step_ = i + 1;
  }

  LMSOptions options_;
  std::vector<double> sigmas_;
  std::vector<std::vector<double>> coefficients_;
  std::vector<std::vector<S>> history_;  // the previous derivatives, newest first
  std::vector<S> spare_;                 // the buffer the next derivative is written to
  std::size_t elements_ = 0;  // x.size() of the run
  int next_step_ = 0;
};

}  // namespace ddpm
