// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// DPM-Solver++(2M), Euler and Euler ancestral step by step against tests/data/samplers/sigma_steps.json
// (fixed model outputs of every prediction kind, with and without bounds; confirmed against diffusers'
// schedulers with their float32 casts removed), the multistep history, the sigma grids, and bad input.
//                                                                  [docs/samplers.md, Eqs. (S11)-(S14)]

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "sampler_support.hpp"

using ddpm::Prediction;
using ddpm::Tensor;
using namespace sampler_test;

namespace {

// Steps sampler through a case, checking x after every step. The criterion is the single-step one, with
// the scale of the terms of each step's x0 conversion (term_scale at alpha_bar = 1 / (1 + sigma_i^2)):
// rounding of an earlier step reaches later ones multiplied by coefficients of magnitude <= 1.
template <class S, class Sampler>
void check_case(Sampler& sampler, const json& c, const json& f) {
  const auto shape = f.at("shape").get<std::vector<Eigen::Index>>();
  const std::array<Eigen::Index, 4> dims{shape[0], shape[1], shape[2], shape[3]};
  const Eigen::Index n = dims[0] * dims[1] * dims[2] * dims[3];
  REQUIRE(sampler.timesteps() == c.at("timesteps").get<std::vector<int>>());
  const auto sigmas = c.at("sigmas").get<std::vector<double>>();
  REQUIRE(sampler.sigmas().size() == sigmas.size());
  for (std::size_t k = 0; k < sigmas.size(); ++k) CHECK(sampler.sigmas()[k] == Approx(sigmas[k]).epsilon(1e-13));
  const auto outputs = numbers(f.at("outputs"));
  ReplayNoise<S> noise(numbers(f.at("noises")), n);
  Tensor<S, 4> x = tensor<S, 4>(numbers(f.at("x")), dims);
  const Prediction kind = kind_of(c.at("kind"));
  double scale = 1.0;
  for (int i = 0; i < sampler.num_inference_steps(); ++i) {
    const std::vector<double> oi(outputs.begin() + i * n, outputs.begin() + (i + 1) * n);
    const Tensor<S, 4> out = tensor<S, 4>(oi, dims, c.at("output_scale"));
    const double s = sampler.sigmas()[static_cast<std::size_t>(i)];
    scale = std::max(scale, term_scale(kind, 1.0 / (1.0 + s * s), x, out));
    sampler.step(i, out, x, noise, kind);
    INFO("step " << i);
    CHECK(worst_error(x, numbers(c.at("xs").at(static_cast<std::size_t>(i))), scale) <= step_tol<S>);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("sigma-space samplers match the reference step by step", "[samplers][dpm][euler]", float, double) {
  using S = TestType;
  const json& f = fixture("sigma_steps.json");
  const auto schedule = make_schedule<S>(f.at("schedule"));
  int n = 0;
  for (const json& c : f.at("cases")) {
    const std::string name = c.at("sampler");
    INFO("case " << n << ": " << name << " " << c.at("options").dump() << " kind " << c.at("kind").get<std::string>());
    if (name == "dpmsolver") {
      ddpm::DPMSolverMultistepSampler<S> s(schedule, dpm_options(c.at("options")));
      check_case<S>(s, c, f);
    } else if (name == "euler") {
      ddpm::EulerSampler<S> s(schedule, euler_options(c.at("options")));
      check_case<S>(s, c, f);
    } else {
      ddpm::EulerAncestralSampler<S> s(schedule, euler_options(c.at("options")));
      check_case<S>(s, c, f);
    }
    ++n;
  }
  CHECK(n == 57);
}

TEST_CASE("DPMSolverMultistepSampler: the history belongs to one run", "[samplers][dpm]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::DPMSolverMultistepSampler<double> s(schedule, {.grid = {.num_inference_steps = 6}});
  Tensor<double, 2> x(3, 2), out(3, 2);
  ddpm::NoiseSource rng(4);
  rng(x);
  rng(out);
  Tensor<double, 2> a = x;
  s.step(0, out, a, ddpm::no_noise);
  CHECK_THROWS_WITH(s.step(2, out, a, ddpm::no_noise), Catch::Contains("step index i is 2, but must be 1"));
  s.step(1, out, a, ddpm::no_noise);
  // step 0 starts a new run: the same two steps give the same result
  Tensor<double, 2> b = x;
  s.step(0, out, b, ddpm::no_noise);
  s.step(1, out, b, ddpm::no_noise);
  for (int k = 0; k < 6; ++k) CHECK(a.data()[k] == b.data()[k]);
  // the second step is second order: it differs from a first-order sampler's
  ddpm::DPMSolverMultistepSampler<double> first(schedule, {.grid = {.num_inference_steps = 6}, .solver_order = 1});
  Tensor<double, 2> c = x;
  Tensor<double, 2> out2 = out * 0.5;
  first.step(0, out, c, ddpm::no_noise);
  first.step(1, out2, c, ddpm::no_noise);
  b = x;
  s.step(0, out, b, ddpm::no_noise);
  s.step(1, out2, b, ddpm::no_noise);
  CHECK(std::abs(c(0, 0) - b(0, 0)) > 1e-6);
  // a run of another shape must start at step 0
  Tensor<double, 2> big(5, 2), big_out(5, 2);
  big.setZero();
  big_out.setZero();
  CHECK_THROWS_AS(s.step(2, big_out, big, ddpm::no_noise), ddpm::invalid_argument);
  s.reset();
  CHECK_THROWS_AS(s.step(1, out, a, ddpm::no_noise), ddpm::invalid_argument);
  CHECK_NOTHROW(s.step(0, big_out, big, ddpm::no_noise));
  // the last step lands on x0 exactly (final sigma 0)
  ddpm::DPMSolverMultistepSampler<double> one(schedule, {.grid = {.num_inference_steps = 1}});
  Tensor<double, 2> d = x, x0;
  one.step(0, out, d, ddpm::no_noise, x0, Prediction::sample);
  for (int k = 0; k < 6; ++k) CHECK(d.data()[k] == out.data()[k]);
}

TEST_CASE("sigma grids: Karras, final sigma, zero terminal SNR", "[samplers][dpm][euler]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const std::vector<double> table(schedule.sigmas().data(), schedule.sigmas().data() + 1000);
  ddpm::DPMSolverMultistepSampler<double> k(schedule, {.grid = {.num_inference_steps = 8, .use_karras_sigmas = true}});
  const auto expected = ddpm::karras_sigmas(table[0], table[999], 8);
  for (int i = 0; i < 8; ++i) {
    CHECK(k.sigmas()[static_cast<std::size_t>(i)] == expected[static_cast<std::size_t>(i)]);
    CHECK(k.timesteps()[static_cast<std::size_t>(i)] ==
          static_cast<int>(std::nearbyint(ddpm::sigma_to_timestep(table, expected[static_cast<std::size_t>(i)]))));
  }
  CHECK(k.sigmas().back() == 0.0);
  ddpm::EulerSampler<double> e(schedule,
                               {.grid = {.num_inference_steps = 10, .final_sigma = ddpm::FinalSigma::sigma_min}});
  CHECK(e.sigmas().back() == Approx(table[0]).epsilon(1e-15));
  CHECK(e.timesteps() == ddpm::inference_timesteps(1000, 10, ddpm::TimestepSpacing::linspace));
  // zero terminal SNR: alpha_bar[999] = 0 becomes 2^-24, a finite sigma_max = sqrt(2^24 - 1)
  const auto z = ddpm::NoiseSchedule<double>::linear(1000).rescaled_zero_terminal_snr();
  ddpm::EulerSampler<double> ez(
      z, {.grid = {.num_inference_steps = 10, .timestep_spacing = ddpm::TimestepSpacing::trailing}});
  CHECK(ez.timesteps().front() == 999);
  CHECK(ez.sigmas().front() == Approx(std::sqrt(16777216.0 - 1.0)).epsilon(1e-14));
  ddpm::DPMSolverMultistepSampler<double> dz(
      z, {.grid = {.num_inference_steps = 10, .timestep_spacing = ddpm::TimestepSpacing::trailing}});
  CHECK(dz.sigmas().front() == ez.sigmas().front());
}

TEST_CASE("Euler ancestral draws noise at every step but the last", "[samplers][euler]") {
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  ddpm::EulerAncestralSampler<float> s(schedule, {.grid = {.num_inference_steps = 5}});
  Tensor<float, 2> x(2, 2), out(2, 2);
  x.setConstant(0.3f);
  out.setConstant(0.1f);
  ReplayNoise<float> noise(std::vector<double>(40, 0.5), 4);
  for (int i = 0; i < 5; ++i) s.step(i, out, x, noise);
  CHECK(noise.calls == 4);
  CHECK_THROWS_WITH(s.step(0, out, x, ddpm::no_noise), Catch::Contains("no_noise"));
  ddpm::EulerSampler<float> det(schedule, {.grid = {.num_inference_steps = 5}});
  CHECK_NOTHROW(det.step(0, out, x, ddpm::no_noise));
}

TEST_CASE("Euler with churn draws noise exactly at the steps whose sigma is in [s_tmin, s_tmax]", "[samplers][euler]") {
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  ddpm::EulerSampler<float> s(schedule,
                              {.grid = {.num_inference_steps = 5}, .s_churn = 1.0, .s_tmin = 1.0, .s_tmax = 20.0});
  Tensor<float, 2> x(2, 2), out(2, 2);
  x.setConstant(0.3f);
  out.setConstant(0.1f);
  ReplayNoise<float> noise(std::vector<double>(40, 0.5), 4);
  int expected_calls = 0;
  for (int i = 0; i < 5; ++i) {
    const double sigma = s.sigmas()[static_cast<std::size_t>(i)];
    const bool in_range = sigma >= 1.0 && sigma <= 20.0;
    INFO("step " << i << ", sigma " << sigma);
    // gamma = min(s_churn / N, sqrt(2) - 1) = 0.2 inside the range, 0 outside.
    CHECK(s.churn(i) == Approx(in_range ? 0.2 : 0.0));
    if (in_range) {
      ++expected_calls;
      CHECK_THROWS_WITH(s.step(i, out, x, ddpm::no_noise), Catch::Contains("no_noise"));
    }
    s.step(i, out, x, noise);
    CHECK(noise.calls == expected_calls);
  }
  CHECK(expected_calls >= 1);
  CHECK(expected_calls <= 4);
}

TEST_CASE("sigma-space samplers reject bad input", "[samplers][dpm][euler]") {
  using ddpm::invalid_argument;
  const auto schedule = ddpm::NoiseSchedule<double>::linear(100);
  CHECK_THROWS_AS(ddpm::DPMSolverMultistepSampler<double>(schedule, {.grid = {.num_inference_steps = 101}}),
                  invalid_argument);
  CHECK_THROWS_AS(ddpm::DPMSolverMultistepSampler<double>(schedule, {.grid = {.num_inference_steps = 0}}),
                  invalid_argument);
  CHECK_THROWS_AS(ddpm::DPMSolverMultistepSampler<double>(schedule, {.solver_order = 4}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DPMSolverMultistepSampler<double>(schedule, {.solver_type = static_cast<ddpm::SolverType>(5)}),
                  invalid_argument);
  CHECK_THROWS_AS(
      ddpm::DPMSolverMultistepSampler<double>(schedule, {.grid = {.timesteps = {50, 10}, .use_karras_sigmas = true}}),
      invalid_argument);
  CHECK_THROWS_AS(ddpm::DPMSolverMultistepSampler<double>(schedule, {.clipping = ddpm::Clipping::clip(-1.0)}),
                  invalid_argument);
  CHECK_THROWS_AS(ddpm::EulerSampler<double>(schedule, {.grid = {.num_inference_steps = 101}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::EulerSampler<double>(schedule, {.grid = {.timesteps = {5, 7}}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::EulerSampler<double>(schedule, {.grid = {.timesteps = {50, 10}, .use_karras_sigmas = true}}),
                  invalid_argument);
  CHECK_THROWS_AS(ddpm::EulerAncestralSampler<double>(schedule, {.grid = {.num_inference_steps = -2}}),
                  invalid_argument);
  CHECK_THROWS_WITH(ddpm::EulerSampler<double>(schedule, {.s_churn = -1.0}), Catch::Contains("s_churn"));
  CHECK_THROWS_WITH(ddpm::EulerSampler<double>(schedule, {.s_churn = NAN}), Catch::Contains("s_churn"));
  CHECK_THROWS_WITH(ddpm::EulerSampler<double>(schedule, {.s_noise = -0.5}), Catch::Contains("s_noise"));
  CHECK_THROWS_WITH(ddpm::EulerSampler<double>(schedule, {.s_tmin = 2.0, .s_tmax = 1.0}), Catch::Contains("s_tmin"));
  CHECK_THROWS_WITH(ddpm::EulerSampler<double>(
                        schedule, {.clipping = ddpm::Clipping::dynamic_threshold(), .s_churn = 1.0}),
                    Catch::Contains("dynamic thresholding"));
  CHECK_THROWS_WITH(ddpm::EulerAncestralSampler<double>(schedule, {.s_churn = 1.0}), Catch::Contains("EulerSampler only"));
  ddpm::EulerSampler<double> e(schedule, {.grid = {.num_inference_steps = 10}});
  Tensor<double, 3> x(1, 2, 3), out(1, 2, 3), bad(1, 3, 3);
  x.setZero();
  out.setZero();
  bad.setZero();
  CHECK_THROWS_AS(e.step(10, out, x, ddpm::no_noise), invalid_argument);
  CHECK_THROWS_AS(e.step(0, bad, x, ddpm::no_noise), invalid_argument);
  ddpm::DPMSolverMultistepSampler<double> d(schedule, {.grid = {.num_inference_steps = 10}});
  CHECK_THROWS_AS(d.step(0, bad, x, ddpm::no_noise), invalid_argument);
  CHECK_THROWS_AS(d.step(-1, out, x, ddpm::no_noise), invalid_argument);
}
