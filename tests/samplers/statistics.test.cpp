// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// The derivation's whole claim, end to end: driven by the exact E[eps | x_t] of a Gaussian mixture (a
// perfectly trained network), each sampler turns N(0, I) into that mixture.
//
// Target: the 2-D mixture of tests/data/samplers/trajectories.json, weights 0.5, 0.3, 0.2, means (-4, 0),
// (3, 3), (3, -3), standard deviations 0.5, 0.8, 0.6; linear schedule, T = 1000; n = 20,000 samples from a
// fixed seed. Each sample is assigned to its most probable component (GaussianMixturePredictor::classify);
// the components are >= 3.75 standard deviations from every decision boundary, so misassignment moves
// a weight by < 1e-4. Per component k we check, with w_k, mu_k, s_k the target and n_k = n w_k:
//   weight:  the fraction assigned to k,          sampling sd sqrt(w_k (1 - w_k) / n)  (<= 0.0036)
//   mean:    each coordinate's mean,              sampling sd s_k / sqrt(n_k)          (<= 0.0103)
//   spread:  each coordinate's standard deviation, sampling sd s_k / sqrt(2 n_k)       (<= 0.0073)
// Tolerance = 5 sampling sd + the sampler's discretisation bias allowance. The allowance is 1.1 x the
// largest bias measured with 10^6 samples plus 3 sampling sd of that measurement (0.0015 weight, 0.0045
// mean, 0.0033 spread). The biases are properties of the algorithms, not of this code: the trajectory
// tests (sample.test.cpp) show each sampler following the reference implementations step by step.
// Measured at n = 10^6 (largest |bias| over components and coordinates), and the allowance used:
//                                     weight         mean            spread
//   DDPM, 1000 steps                  0.0005 0.0025  0.0021 0.007    0.0039 0.008  (fixed_small under-disperses)
//   DDIM, 50 steps                    0.0008 0.0025  0.0551 0.065    0.0218 0.028  (first-order ODE steps pull
//   DDIM, 10 steps                    0.0066 0.009   0.2619 0.295    0.0996 0.115   the means to the origin)
//   DPM-Solver++(2M), 20 steps        0.0008 0.0025  0.0077 0.013    0.0217 0.028
//   DPM-Solver++(2M), 20, zero terminal SNR, trailing
//                                     0.0032 0.005   0.0219 0.029    0.0440 0.052
//   Euler, 50 steps                   0.0007 0.0025  0.0558 0.066    0.0222 0.028  (DDIM's method, in sigma)
//   Euler ancestral, 50 steps         0.0035 0.0055  0.0445 0.055    0.0573 0.067  (ancestral steps ignore the
//                                                                                  spread of x0 given x_t)
// A sampler with a wrong coefficient, a skipped final step or mis-scaled noise misses by far more: one
// DDIM step to the wrong alpha_bar moves every mean by O(1), and noise at the last DDPM step adds 0.01-0.1
// to a variance.

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/sample.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "sampler_support.hpp"

using ddpm::Tensor;
using ddpm::TimestepSpacing;
using namespace sampler_test;

namespace {

constexpr Eigen::Index kSamples = 20000;

struct Allowance {
  double weight, mean, spread;
};

// Runs the sampler from n standard-normal points and checks the per-component statistics.
template <class Sampler>
void check_mixture(Sampler& sampler, const ddpm::NoiseSchedule<double>& schedule, bool noisy, Allowance allow,
                   std::uint64_t seed) {
  const auto model = fixture_mixture<double>(schedule);
  Tensor<double, 2> x_T(kSamples, 2);
  ddpm::NoiseSource noise(seed);
  noise(x_T);
  const Tensor<double, 2> x =
      noisy ? ddpm::sample(sampler, model, std::move(x_T), noise) : ddpm::sample(sampler, model, std::move(x_T), ddpm::no_noise);
  const std::vector<int> label = model.classify(x);
  const int K = model.num_components();
  std::vector<double> count(static_cast<std::size_t>(K)), sum(2 * K), sq(2 * K);
  for (Eigen::Index b = 0; b < kSamples; ++b) {
    const auto k = static_cast<std::size_t>(label[static_cast<std::size_t>(b)]);
    count[k] += 1;
    for (std::size_t d = 0; d < 2; ++d) {
      sum[2 * k + d] += x(b, static_cast<Eigen::Index>(d));
      sq[2 * k + d] += x(b, static_cast<Eigen::Index>(d)) * x(b, static_cast<Eigen::Index>(d));
    }
  }
  const double n = static_cast<double>(kSamples);
  for (std::size_t k = 0; k < static_cast<std::size_t>(K); ++k) {
    const double w = model.weights()[k], s = model.stddevs()[k], nk = n * w;
    INFO("component " << k);
    const double weight = count[k] / n;
    CHECK(std::abs(weight - w) <= 5 * std::sqrt(w * (1 - w) / n) + allow.weight);
    REQUIRE(count[k] > 1);
    for (std::size_t d = 0; d < 2; ++d) {
      const double mean = sum[2 * k + d] / count[k];
      const double spread = std::sqrt((sq[2 * k + d] - count[k] * mean * mean) / (count[k] - 1));
      INFO("coordinate " << d << ": mean " << mean << ", spread " << spread);
      CHECK(std::abs(mean - model.means()[k][d]) <= 5 * s / std::sqrt(nk) + allow.mean);
      CHECK(std::abs(spread - s) <= 5 * s / std::sqrt(2 * nk) + allow.spread);
    }
  }
}

}  // namespace

TEST_CASE("DDPM (1000 steps) turns N(0, I) into the mixture", "[samplers][statistics]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::DDPMSampler<double> sampler(schedule);
  check_mixture(sampler, schedule, true, {0.0025, 0.007, 0.008}, 101);
}

TEST_CASE("DDIM (50 and 10 steps) turns N(0, I) into the mixture", "[samplers][statistics]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::DDIMSampler<double> ddim50(schedule, {.grid = {.num_inference_steps = 50}});
  check_mixture(ddim50, schedule, false, {0.0025, 0.065, 0.028}, 102);
  ddpm::DDIMSampler<double> ddim10(schedule, {.grid = {.num_inference_steps = 10}});
  check_mixture(ddim10, schedule, false, {0.009, 0.295, 0.115}, 103);
}

TEST_CASE("DPM-Solver++(2M) (20 steps) turns N(0, I) into the mixture", "[samplers][statistics]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::DPMSolverMultistepSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 20}});
  check_mixture(sampler, schedule, false, {0.0025, 0.013, 0.028}, 104);
  // Zero terminal SNR with trailing spacing: the run starts from pure noise at sigma_max = 4096.
  const auto zero = ddpm::NoiseSchedule<double>::scaled_linear(1000, 0.00085, 0.012).rescaled_zero_terminal_snr();
  ddpm::DPMSolverMultistepSampler<double> trailing(
      zero, {.grid = {.num_inference_steps = 20, .timestep_spacing = TimestepSpacing::trailing}});
  check_mixture(trailing, zero, false, {0.005, 0.029, 0.052}, 105);
}

TEST_CASE("Euler and Euler ancestral (50 steps) turn N(0, I) into the mixture", "[samplers][statistics]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::EulerSampler<double> euler(schedule, {.grid = {.num_inference_steps = 50}});
  check_mixture(euler, schedule, false, {0.0025, 0.066, 0.028}, 106);
  ddpm::EulerAncestralSampler<double> ancestral(schedule, {.grid = {.num_inference_steps = 50}});
  check_mixture(ancestral, schedule, true, {0.0055, 0.055, 0.067}, 107);
}
