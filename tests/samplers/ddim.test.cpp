// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// DDIMSampler: single steps against tests/data/samplers/steps.json (eta 0, 0.5, 1, every prediction kind,
// set_alpha_to_one, clipping and thresholding; confirmed against diffusers' DDIMScheduler wherever its
// previous timestep is right, and against improved-diffusion's ddim_sample), its relation to DDPM, and bad
// input.                                                                 [docs/samplers.md, Eqs. (S9)-(S10)]

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ksampler_support.hpp"
#include "sampler_support.hpp"

using ddpm::Prediction;
using ddpm::Tensor;
using namespace sampler_test;

TEMPLATE_TEST_CASE("DDIMSampler steps match the reference fixtures", "[samplers][ddim]", float, double) {
  using S = TestType;
  const json& f = fixture("steps.json");
  const auto schedule = make_schedule<S>(f.at("schedule"));
  const auto shape = f.at("inputs").at("shape").get<std::vector<Eigen::Index>>();
  const std::array<Eigen::Index, 4> dims{shape[0], shape[1], shape[2], shape[3]};
  const Tensor<S, 4> x_in = tensor<S, 4>(numbers(f.at("inputs").at("x")), dims);
  const Tensor<S, 4> noise = tensor<S, 4>(numbers(f.at("inputs").at("noise")), dims);
  int n = 0;
  for (const json& c : f.at("ddim")) {
    ddpm::DDIMSampler<S> sampler(schedule, ddim_options(c.at("options")));
    const int i = c.at("i");
    REQUIRE(sampler.timesteps()[static_cast<std::size_t>(i)] == c.at("t").get<int>());
    const Tensor<S, 4> out = tensor<S, 4>(numbers(f.at("inputs").at("output")), dims, c.value("output_scale", 1.0));
    Tensor<S, 4> x = x_in, x0;
    sampler.step(i, out, x, noise, x0, kind_of(c.at("kind")));
    INFO("case " << n << ": " << c.at("options").dump() << ", i = " << i << ", kind " << c.at("kind").get<std::string>());
    const double scale = term_scale(kind_of(c.at("kind")), schedule.alphas_cumprod_double()[c.at("t").get<std::size_t>()],
                                    x_in, out);
    CHECK(worst_error(x, numbers(c.at("x_prev")), scale) <= step_tol<S>);
    CHECK(worst_error(x0, numbers(c.at("x0")), scale) <= step_tol<S>);
    ++n;
  }
  CHECK(n == static_cast<int>(f.at("ddim").size()));
  CHECK(n > 100);

  SECTION("zero terminal SNR, trailing spacing: the first step has alpha_bar = 0") {
    const auto zs = make_schedule<S>(f.at("zero_snr_schedule"));
    for (const json& c : f.at("zero_snr")) {
      if (c.at("sampler") != "ddim") continue;
      ddpm::DDIMSampler<S> sampler(zs, ddim_options(c.at("options")));
      const Tensor<S, 4> out = tensor<S, 4>(numbers(f.at("inputs").at("output")), dims);
      Tensor<S, 4> x = x_in, x0;
      sampler.step(c.at("i"), out, x, ddpm::no_noise, x0, kind_of(c.at("kind")));
      CHECK(worst_error(x, numbers(c.at("x_prev"))) <= step_tol<S>);
      CHECK(worst_error(x0, numbers(c.at("x0"))) <= step_tol<S>);
    }
    ddpm::DDIMSampler<S> sampler(
        zs, {.grid = {.num_inference_steps = 10, .timestep_spacing = ddpm::TimestepSpacing::trailing}});
    Tensor<S, 4> x = x_in;
    CHECK_THROWS_WITH(sampler.step(0, x_in, x, ddpm::no_noise), Catch::Contains("zero terminal SNR"));
  }
}

TEST_CASE("DDIMSampler with eta = 1 over every timestep is the DDPM posterior step", "[samplers][ddim]") {
  // sigma^2 = (1 - ab_prev) / (1 - ab) (1 - ab / ab_prev) is DDPM's posterior variance, and then
  // sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps is the posterior mean (Song et al. 2021, Eq. (16)).
  const auto schedule = ddpm::NoiseSchedule<double>::linear(200);
  ddpm::DDIMSampler<double> ddim(schedule, {.grid = {.num_inference_steps = 200}, .eta = 1.0});
  ddpm::DDPMSampler<double> ddpm_s(schedule);
  Tensor<double, 2> x(4, 3), eps(4, 3), z(4, 3);
  ddpm::NoiseSource rng(3);
  rng(x);
  rng(eps);
  rng(z);
  for (int i : {0, 50, 150, 198}) {
    const Tensor<double, 2> a = ddim.prev_sample(i, eps, x, z);
    const Tensor<double, 2> b = ddpm_s.prev_sample(i, eps, x, z);
    for (int k = 0; k < 12; ++k) CHECK(a.data()[k] == Approx(b.data()[k]).epsilon(1e-12).margin(1e-12));
  }
}

TEMPLATE_TEST_CASE("DDIMSampler, eta = 1 at a zero-terminal-SNR step: x0 and noise only, to rounding",
                   "[samplers][ddim][zero_snr]", float, double) {
  // At alpha_bar[t] = 0 with eta = 1, sigma^2 = 1 - alpha_bar_prev, so the weight of eps,
  // sqrt(1 - alpha_bar_prev - sigma^2), is 0 in exact arithmetic and in diffusers. Computed as that
  // difference it was about 1e-17 (the square root of the rounding of sigma^2), which added 3.6e-9 eps to
  // the step: 2.6e-7 relative error in double. The step must be sqrt(alpha_bar_prev) x0 + sigma z.
  // Contraction: in the coefficient's form every term at alpha_bar = 0 is a product with alpha_bar or with
  // 1 - eta^2 = 0 (also as fma(-eta, eta, 1)), so it is exactly 0 with or without FMA contraction; this
  // test runs in the -march=native build (contracted) and in the sanitizer build (no FMA).
  using S = TestType;
  const auto schedule = ddpm::NoiseSchedule<S>::linear(1000).rescaled_zero_terminal_snr();
  REQUIRE(schedule.alphas_cumprod_double().back() == 0.0);
  Tensor<S, 3> x(2, 3, 5), v(2, 3, 5), z(2, 3, 5);
  ddpm::NoiseSource rng(11);
  rng(x);
  rng(v);
  rng(z);
  for (int N : {2, 3, 7, 10, 25, 50, 100, 999}) {
    INFO("N = " << N);
    ddpm::DDIMSampler<S> sampler(
        schedule,
        {.grid = {.num_inference_steps = N, .timestep_spacing = ddpm::TimestepSpacing::trailing}, .eta = 1.0});
    REQUIRE(sampler.timesteps().front() == 999);
    const auto k = sampler.coefficients(0);
    REQUIRE(k.alpha_bar == 0.0);
    CHECK(k.direction == 0.0);
    CHECK(k.sigma == Approx(std::sqrt(1.0 - k.alpha_bar_prev)).epsilon(1e-15));
    const Tensor<S, 3> next = sampler.prev_sample(0, v, x, z, Prediction::velocity);
    // v-prediction at alpha_bar = 0: x0 = sqrt(alpha_bar) x - sqrt(1 - alpha_bar) v = -v.
    const double c = std::sqrt(k.alpha_bar_prev);
    const double u = std::numeric_limits<S>::epsilon();
    for (Eigen::Index j = 0; j < x.size(); ++j) {
      const double x0 = -static_cast<double>(v.data()[j]);
      const double expected = c * x0 + k.sigma * static_cast<double>(z.data()[j]);
      // Rounding of the coefficients to S, two products and a sum: 4 u of the terms' magnitudes.
      const double tol = 4 * u * (std::abs(c * x0) + std::abs(k.sigma * z.data()[j]));
      CHECK(std::abs(static_cast<double>(next.data()[j]) - expected) <= tol);
    }
  }
  // Elsewhere the new form is the direct one up to rounding (no cancellation there: eta < 1, alpha_bar > 0).
  const auto plain = ddpm::NoiseSchedule<double>::linear(1000);
  for (double eta : {0.0, 0.3, 1.0}) {
    ddpm::DDIMSampler<double> s(plain, {.grid = {.num_inference_steps = 20}, .eta = eta});
    for (int i = 0; i < 20; ++i) {
      const auto k = s.coefficients(i);
      const double direct = std::sqrt(std::max(1.0 - k.alpha_bar_prev - k.sigma * k.sigma, 0.0));
      CHECK(k.direction == Approx(direct).epsilon(1e-12).margin(1e-15));
    }
    CHECK(s.coefficients(19).direction == 0.0);  // alpha_bar_prev = 1
  }
}

TEST_CASE("DDIMSampler: deterministic at eta = 0, noise only where sigma > 0", "[samplers][ddim]") {
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  Tensor<float, 2> x(3, 2), out(3, 2);
  x.setValues({{0.5f, -1.0f}, {2.0f, 0.1f}, {-0.3f, 0.7f}});
  out.setValues({{0.1f, 0.2f}, {-0.4f, 0.3f}, {0.9f, -0.8f}});
  ddpm::DDIMSampler<float> det(schedule, {.grid = {.num_inference_steps = 20}});
  Tensor<float, 2> a = x;
  CHECK_NOTHROW(det.step(4, out, a, ddpm::no_noise));
  ReplayNoise<float> source(std::vector<double>(60, 1.0), 6);
  ddpm::DDIMSampler<float> noisy(schedule, {.grid = {.num_inference_steps = 20}, .eta = 0.3});
  Tensor<float, 2> b = x;
  CHECK_THROWS_WITH(noisy.step(4, out, b, ddpm::no_noise), Catch::Contains("no_noise"));
  noisy.step(4, out, b, source);
  CHECK(source.calls == 1);
  // The last step goes to alpha_bar_prev = 1, where sigma = 0: nothing is drawn.
  noisy.step(19, out, b, source);
  CHECK(source.calls == 1);
  CHECK(noisy.coefficients(19).sigma == 0.0);
  // With set_alpha_to_one = false it goes to alpha_bar[0] and (from t = 49) sigma > 0.
  ddpm::DDIMSampler<float> to_zero(
      schedule, {.grid = {.num_inference_steps = 20, .timestep_spacing = ddpm::TimestepSpacing::trailing},
                 .eta = 0.3,
                 .set_alpha_to_one = false});
  REQUIRE(to_zero.timesteps().back() == 49);
  CHECK(to_zero.coefficients(19).alpha_bar_prev == schedule.alphas_cumprod_double()[0]);
  CHECK(to_zero.coefficients(19).sigma > 0.0);
  to_zero.step(19, out, b, source);
  CHECK(source.calls == 2);
}

TEST_CASE("DDIMSampler steps to the next listed timestep, not t - T / N", "[samplers][ddim]") {
  // trailing, N = 7 of T = 1000: 999, 856, 713, ...; diffusers would step 999 -> 857 (diffusers issue 12633).
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::DDIMSampler<double> s(
      schedule, {.grid = {.num_inference_steps = 7, .timestep_spacing = ddpm::TimestepSpacing::trailing}});
  REQUIRE(s.timesteps()[1] == 856);
  CHECK(s.coefficients(0).alpha_bar_prev == schedule.alphas_cumprod_double()[856]);
  CHECK(s.coefficients(6).alpha_bar_prev == 1.0);
}

TEST_CASE("DDIMSampler rejects bad input", "[samplers][ddim]") {
  using ddpm::invalid_argument;
  const auto schedule = ddpm::NoiseSchedule<double>::linear(100);
  CHECK_THROWS_WITH(ddpm::DDIMSampler<double>(schedule, {.eta = 1.5}), Catch::Contains("eta is 1.5"));
  CHECK_THROWS_AS(ddpm::DDIMSampler<double>(schedule, {.eta = -0.1}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDIMSampler<double>(schedule, {.eta = NAN}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDIMSampler<double>(schedule, {.grid = {.num_inference_steps = 101}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDIMSampler<double>(schedule, {.grid = {.num_inference_steps = 0}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDIMSampler<double>(schedule, {.grid = {.timesteps = {3, 3}}}), invalid_argument);
  ddpm::DDIMSampler<double> s(schedule, {.grid = {.num_inference_steps = 10}});
  Tensor<double, 2> x(2, 3), out(2, 3), bad(2, 4);
  x.setZero();
  out.setZero();
  bad.setZero();
  CHECK_THROWS_AS(s.step(10, out, x, ddpm::no_noise), invalid_argument);
  CHECK_THROWS_AS(s.step(0, bad, x, ddpm::no_noise), invalid_argument);
  CHECK_THROWS_AS(s.step(0, out, x, bad), invalid_argument);
}

TEMPLATE_TEST_CASE("DDIMSampler with PreviousTimestep::diffusers follows diffusers' DDIMScheduler",
                   "[samplers][ddim][diffusers]", float, double) {
  // Whole trajectories of diffusers' DDIMScheduler itself (tests/data/samplers/pndm.json, made by
  // tests/reference/make_pndm_fixtures.py): trailing and linspace spacing with N not dividing T (where it
  // steps to t - T / N, not to the next listed timestep), eta 0, 0.5, 1 with the stored noise of each step,
  // set_alpha_to_one false, steps_offset 1, epsilon and v_prediction.            [docs/samplers.md, (S33)]
  // Tolerance relative to max(|expected|, 1): double 1e-10 (the same sums in another order); float: about
  // 3 roundings of 2^-24 per step (|x| <= 4), a perturbation amplified by at most 8.4 over these runs
  // (measured by running diffusers from x_T perturbed by 1e-7), 10 steps: 1.5e-5, so 2e-5. Observed: 6.1e-7
  // (float), below 1e-14 (double).
  using S = TestType;
  const double tol = std::is_same_v<S, float> ? 2e-5 : 1e-10;
  const json& f = fixture("pndm.json");
  const Eigen::Index B = f.at("shape")[0], D = f.at("shape")[1];
  const std::array<Eigen::Index, 2> dims{B, D};
  const auto draws = numbers(f.at("noises"));
  int n = 0;
  for (const json& c : f.at("cases")) {
    if (c.at("sampler") != "ddim") continue;
    INFO("case " << c.at("options").dump() << " kind " << c.at("kind").get<std::string>());
    const auto schedule = make_schedule<S>(c.at("schedule"));
    ddpm::DDIMOptions o = ddim_options(c.at("options"));
    o.previous_timestep = ddpm::PreviousTimestep::diffusers;
    ddpm::DDIMSampler<S> sampler(schedule, o);
    REQUIRE(sampler.timesteps() == c.at("timesteps").get<std::vector<int>>());
    const Prediction kind = kind_of(c.at("kind"));
    const ksampler_test::KindModel<S> model{fixture_mixture<S>(schedule), schedule.alphas_cumprod_double(), kind};
    Tensor<S, 2> x = tensor<S, 2>(numbers(f.at("x_T")), dims), z(dims);
    for (int i = 0; i < sampler.num_inference_steps(); ++i) {
      const Tensor<S, 2> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
      for (Eigen::Index j = 0; j < B * D; ++j) z.data()[j] = static_cast<S>(draws[static_cast<std::size_t>(i * B * D + j)]);
      sampler.step(i, out, x, z, kind);
      INFO("after step " << i);
      CHECK(worst_error(x, numbers(c.at("xs")[static_cast<std::size_t>(i)])) <= tol);
    }
    ++n;
  }
  CHECK(n == 5);
}

TEST_CASE("DDIMSampler: PreviousTimestep::diffusers equals listed for leading spacing, and t - T / N otherwise",
          "[samplers][ddim][diffusers]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const std::vector<double>& ab = schedule.alphas_cumprod_double();
  for (int N : {1, 7, 10, 50, 333}) {
    for (int offset : {0, 1}) {
      ddpm::DDIMSampler<double> a(schedule, {.grid = {.num_inference_steps = N, .steps_offset = offset}, .eta = 0.5});
      ddpm::DDIMSampler<double> b(schedule, {.grid = {.num_inference_steps = N, .steps_offset = offset},
                                             .eta = 0.5,
                                             .previous_timestep = ddpm::PreviousTimestep::diffusers});
      for (int i = 0; i < N; ++i) {
        CHECK(a.coefficients(i).alpha_bar_prev == b.coefficients(i).alpha_bar_prev);
        CHECK(a.coefficients(i).sigma == b.coefficients(i).sigma);
      }
    }
  }
  // trailing, N = 7: 999 -> 857 (the list says 856); the last step 142 -> 0 goes to alpha_bar[0], not 1.
  ddpm::DDIMSampler<double> t(schedule,
                              {.grid = {.num_inference_steps = 7, .timestep_spacing = ddpm::TimestepSpacing::trailing},
                               .previous_timestep = ddpm::PreviousTimestep::diffusers});
  CHECK(t.coefficients(0).alpha_bar_prev == ab[857]);
  CHECK(t.coefficients(6).alpha_bar_prev == ab[0]);
  // linspace, N = 8: 143 -> 18, then 0 -> -125: below 0, the final alpha_bar (1, or alpha_bar[0]).
  ddpm::DDIMSampler<double> l(schedule,
                              {.grid = {.num_inference_steps = 8, .timestep_spacing = ddpm::TimestepSpacing::linspace},
                               .previous_timestep = ddpm::PreviousTimestep::diffusers});
  CHECK(l.coefficients(6).alpha_bar_prev == ab[18]);
  CHECK(l.coefficients(7).alpha_bar_prev == 1.0);
}

TEST_CASE("DDIMSampler rejects a bad previous_timestep", "[samplers][ddim][diffusers]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(100);
  CHECK_THROWS_WITH(ddpm::DDIMSampler<double>(schedule, {.previous_timestep = static_cast<ddpm::PreviousTimestep>(5)}),
                    Catch::Contains("previous_timestep is PreviousTimestep(5)"));
  CHECK_THROWS_WITH(ddpm::DDIMSampler<double>(schedule, {.grid = {.timesteps = {90, 50, 10}},
                                                         .previous_timestep = ddpm::PreviousTimestep::diffusers}),
                    Catch::Contains("previous_timestep is diffusers"));
}
