// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// HeunSampler against k-diffusion's sample_heun (whole trajectories of tests/data/samplers/ksamplers.json,
// with churn, Karras sigmas, trailing spacing, every prediction kind, clipping), diffusers'
// HeunDiscreteScheduler timestep layout, the convergence order, the mixture statistics, bad input.
//                                                                       [docs/samplers.md, Eq. (S21)]

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/samplers/heun.hpp"
#include "ksampler_support.hpp"

using ddpm::HeunOptions;
using ddpm::HeunSampler;
using namespace ksampler_test;

namespace {

HeunOptions heun_options(const json& o) {
  HeunOptions r = grid_options<HeunOptions>(o);
  r.s_churn = o.value("s_churn", 0.0);
  r.s_tmin = o.value("s_tmin", 0.0);
  r.s_tmax = o.value("s_tmax", std::numeric_limits<double>::infinity());
  r.s_noise = o.value("s_noise", 1.0);
  return r;
}

// x after running the Heun sampler over the explicit sigma list up to (not including) its final Euler
// interval, i.e. at the list's last sigma, with the mixture evaluated at each call's exact sigma.
Tensor<double, 2> heun_to_last_sigma(const ddpm::NoiseSchedule<double>& schedule, const std::vector<double>& sigmas,
                                     const Tensor<double, 2>& x_T) {
  HeunSampler<double> sampler(schedule, {.grid = {.sigmas = sigmas}});
  const auto model = fixture_mixture<double>(schedule);
  const std::vector<double> at = sampler.step_sigmas();
  Tensor<double, 2> x = x_T, out(x.dimensions());
  for (std::size_t i = 0; i + 1 < at.size(); ++i) {
    model.predict_at(1.0 / (1.0 + at[i] * at[i]), x, out);
    sampler.step(static_cast<int>(i), out, x, ddpm::no_noise);
  }
  return x;
}

}  // namespace

TEMPLATE_TEST_CASE("HeunSampler follows k-diffusion's sample_heun", "[samplers][heun]", float, double) {
  using S = TestType;
  const json& f = fixture("ksamplers.json");
  const auto schedule = make_schedule<S>(f.at("schedule"));
  int n = 0;
  for (const json& c : f.at("cases")) {
    if (c.at("sampler") != "heun") continue;
    INFO("case " << c.at("options").dump() << " kind " << c.at("kind").get<std::string>());
    HeunSampler<S> sampler(schedule, heun_options(c.at("options")));
    check_trajectory<S>(sampler, c, f, true);
    ++n;
  }
  CHECK(n == 5);
}

TEST_CASE("HeunSampler: diffusers' interleaved timesteps, one model call per step", "[samplers][heun]") {
  const json& f = fixture("ksamplers.json");
  const auto schedule = make_schedule<double>(f.at("schedule"));
  int n = 0;
  for (const json& l : f.at("diffusers_timesteps")) {
    if (l.at("sampler") != "heun") continue;
    HeunSampler<double> sampler(schedule, grid_options<HeunOptions>(l.at("options")));
    CHECK(sampler.timesteps() == l.at("timesteps").get<std::vector<int>>());
    const int N = l.at("options").at("num_inference_steps");
    CHECK(sampler.num_intervals() == N);
    CHECK(sampler.num_inference_steps() == 2 * N - 1);
    ++n;
  }
  CHECK(n == 3);
  // final sigma sigma_min: the last interval is a Heun step too, 2N calls
  HeunSampler<double> to_min(schedule,
                             {.grid = {.num_inference_steps = 5, .final_sigma = ddpm::FinalSigma::sigma_min}});
  CHECK(to_min.num_inference_steps() == 10);
  CHECK(to_min.timesteps().back() == 0);
}

TEST_CASE("HeunSampler converges at order 2", "[samplers][heun][convergence]") {
  // Error at sigma = 0.1 of runs from sigma = 10 over Karras lists of L = 9, 17, 33, 65 points (8 .. 64
  // Heun intervals) against L = 1025, the median over 64 points of each point's error (the few points
  // that start near a boundary between components follow a sharply bending path and reach the asymptotic
  // regime only at finer grids). The ratio of successive errors tends to 2^2 = 4: the observed order
  // log2(e_L / e_2L) must be within 0.3 of 2 for the two finest pairs (the reference's own error is
  // (64 / 1024)^2 = 0.4% of the finest run's, a shift of the last order estimate by < 0.01).
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  Tensor<double, 2> x_T(64, 2);
  ddpm::NoiseSource(7)(x_T);
  const auto reference = heun_to_last_sigma(schedule, karras_list(0.1, 10.0, 1025), x_T);
  std::vector<double> err;
  for (int L : {9, 17, 33, 65}) err.push_back(median_error(heun_to_last_sigma(schedule, karras_list(0.1, 10.0, L), x_T), reference));
  for (std::size_t k = 1; k + 1 < err.size(); ++k) {
    const double order = std::log2(err[k] / err[k + 1]);
    INFO("errors " << err[0] << " " << err[1] << " " << err[2] << " " << err[3] << ", order " << order);
    CHECK(std::abs(order - 2.0) < 0.3);
  }
}

TEST_CASE("HeunSampler (25 intervals) turns N(0, I) into the mixture", "[samplers][heun][statistics]") {
  // Allowances as in statistics.test.cpp: 1.1 x the largest |bias| measured with 10^6 samples (the hidden
  // test below) + 3 sampling sd of that measurement (0.0015 weight, 0.0045 mean, 0.0033 spread).
  // Measured (largest over components and coordinates):
  //   Heun, 25 intervals                          weight 0.0011, mean 0.0152, spread 0.0064
  //   with churn 10 in sigma [0.5, 20]            weight 0.0005, mean 0.0125, spread 0.0362
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  HeunSampler<double> heun(schedule, {.grid = {.num_inference_steps = 25}});
  check_mixture(heun, schedule, false, {0.0027, 0.022, 0.011}, 201);
  HeunSampler<double> churn(schedule,
                            {.grid = {.num_inference_steps = 25}, .s_churn = 10.0, .s_tmin = 0.5, .s_tmax = 20.0});
  check_mixture(churn, schedule, true, {0.0025, 0.019, 0.044}, 202);
}

TEST_CASE("HeunSampler: mixture bias with 10^6 samples", "[.measure][heun]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  HeunSampler<double> heun(schedule, {.grid = {.num_inference_steps = 25}});
  check_mixture(heun, schedule, false, {}, 301, 1000000, true);
  HeunSampler<double> churn(schedule,
                            {.grid = {.num_inference_steps = 25}, .s_churn = 10.0, .s_tmin = 0.5, .s_tmax = 20.0});
  check_mixture(churn, schedule, true, {}, 302, 1000000, true);
}

TEST_CASE("HeunSampler: stages in order, bad input", "[samplers][heun]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  HeunSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 4}});
  Tensor<double, 2> x(3, 2), out(3, 2);
  x.setConstant(0.5);
  out.setConstant(0.1);
  sampler.step(0, out, x, ddpm::no_noise);
  CHECK_THROWS_AS(sampler.step(2, out, x, ddpm::no_noise), ddpm::invalid_argument);  // stage 2 of interval 0 is step 1
  Tensor<double, 2> other(4, 2), other_out(4, 2);
  other.setZero();
  other_out.setZero();
  CHECK_THROWS_AS(sampler.step(1, other_out, other, ddpm::no_noise), ddpm::invalid_argument);  // another shape mid-run
  sampler.step(1, out, x, ddpm::no_noise);
  sampler.reset();
  sampler.step(0, out, x, ddpm::no_noise);
  CHECK_THROWS_AS(HeunSampler<double>(schedule, {.s_churn = -1.0}), ddpm::invalid_argument);
  CHECK_THROWS_AS(HeunSampler<double>(schedule, {.s_churn = 1.0, .s_tmin = 2.0, .s_tmax = 1.0}), ddpm::invalid_argument);
  CHECK_THROWS_AS(HeunSampler<double>(schedule, {.s_noise = std::nan("")}), ddpm::invalid_argument);
  CHECK_THROWS_AS(HeunSampler<double>(schedule, {.grid = {.num_inference_steps = 0}}), ddpm::invalid_argument);
  // churn needs noise at the steps that end a churned interval
  HeunSampler<double> churn(schedule, {.grid = {.num_inference_steps = 4}, .s_churn = 1.0});
  churn.step(0, out, x, ddpm::no_noise);
  CHECK_THROWS_AS(churn.step(1, out, x, ddpm::no_noise), ddpm::invalid_argument);
}
