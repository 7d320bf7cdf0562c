// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// DPMPP2SAncestralSampler against k-diffusion's sample_dpmpp_2s_ancestral (whole trajectories of
// tests/data/samplers/ksamplers.json: eta 1, 0.5, 0 and 20 (its Euler branch), s_noise, Karras sigmas,
// trailing spacing, every prediction kind, clipping), the convergence order of its deterministic form
// (eta = 0: DPM-Solver++(2S)), the mixture statistics, bad input.  [docs/samplers.md, Eqs. (S20), (S24)]

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/samplers/dpmpp_2s_ancestral.hpp"
#include "ksampler_support.hpp"

using ddpm::DPMPP2SAncestralOptions;
using ddpm::DPMPP2SAncestralSampler;
using namespace ksampler_test;

TEMPLATE_TEST_CASE("DPMPP2SAncestralSampler follows k-diffusion's sample_dpmpp_2s_ancestral", "[samplers][dpmpp2s]",
                   float, double) {
  using S = TestType;
  const json& f = fixture("ksamplers.json");
  const auto schedule = make_schedule<S>(f.at("schedule"));
  int n = 0;
  for (const json& c : f.at("cases")) {
    if (c.at("sampler") != "dpmpp_2s_ancestral") continue;
    INFO("case " << c.at("options").dump() << " kind " << c.at("kind").get<std::string>());
    DPMPP2SAncestralOptions o = grid_options<DPMPP2SAncestralOptions>(c.at("options"));
    o.eta = c.at("options").value("eta", 1.0);
    o.s_noise = c.at("options").value("s_noise", 1.0);
    DPMPP2SAncestralSampler<S> sampler(schedule, o);
    check_trajectory<S>(sampler, c, f, false, o.eta == 0.0 ? 0 : -1);
    ++n;
  }
  CHECK(n == 5);
}

TEST_CASE("DPM++ 2S (eta = 0) converges at order 2", "[samplers][dpmpp2s][convergence]") {
  // As heun.test.cpp: median error at sigma = 0.1 of runs from sigma = 10 over Karras lists of L = 9 ..
  // 65 points against L = 1025; the observed order of the two finest pairs within 0.3 of 2.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  Tensor<double, 2> x_T(64, 2);
  ddpm::NoiseSource(10)(x_T);
  auto run = [&](int L) {
    DPMPP2SAncestralSampler<double> sampler(schedule, {.grid = {.sigmas = karras_list(0.1, 10.0, L)}, .eta = 0.0});
    return run_but_last(sampler, sampler.step_sigmas(), schedule, x_T);
  };
  const auto reference = run(1025);
  std::vector<double> err;
  for (int L : {9, 17, 33, 65}) err.push_back(median_error(run(L), reference));
  for (std::size_t k = 1; k + 1 < err.size(); ++k) {
    const double order = std::log2(err[k] / err[k + 1]);
    INFO("errors " << err[0] << " " << err[1] << " " << err[2] << " " << err[3] << ", order " << order);
    CHECK(std::abs(order - 2.0) < 0.3);
  }
}

TEST_CASE("DPM++ 2S ancestral (25 intervals) turns N(0, I) into the mixture", "[samplers][dpmpp2s][statistics]") {
  // Allowances as in statistics.test.cpp (1.1 x the |bias| measured with 10^6 samples + 0.0015 weight,
  // 0.0045 mean, 0.0033 spread). Measured: weight 0.0015, mean 0.0088, spread 0.0348.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  DPMPP2SAncestralSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 25}});
  check_mixture(sampler, schedule, true, {0.0032, 0.015, 0.042}, 231);
}

TEST_CASE("DPM++ 2S ancestral: mixture bias with 10^6 samples", "[.measure][dpmpp2s]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  DPMPP2SAncestralSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 25}});
  check_mixture(sampler, schedule, true, {}, 331, 1000000, true);
}

TEST_CASE("DPM++ 2S ancestral: runs under sample() with a callback, bad input", "[samplers][dpmpp2s]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const auto model = fixture_mixture<double>(schedule);
  DPMPP2SAncestralSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 5}});
  Tensor<double, 2> x_T(8, 2);
  ddpm::NoiseSource noise(11);
  noise(x_T);
  std::vector<int> seen;
  const auto x = ddpm::sample(sampler, model, x_T, noise, [&](int i, int t, const Tensor<double, 2>&, const Tensor<double, 2>&) {
    CHECK(t == sampler.timesteps()[static_cast<std::size_t>(i)]);
    seen.push_back(i);
  });
  CHECK(seen.size() == 9);  // 4 two-stage intervals and the last one-stage one
  for (Eigen::Index k = 0; k < x.size(); ++k) CHECK(std::isfinite(x.data()[k]));
  CHECK_THROWS_AS(DPMPP2SAncestralSampler<double>(schedule, {.s_churn = 1.0}), ddpm::invalid_argument);
  CHECK_THROWS_AS(DPMPP2SAncestralSampler<double>(schedule, {.eta = std::nan("")}), ddpm::invalid_argument);
  CHECK_THROWS_AS(DPMPP2SAncestralSampler<double>(schedule, {.s_noise = -1.0}), ddpm::invalid_argument);
}
