// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// The reverse loop: whole trajectories of every sampler driven by the Gaussian-mixture oracle against
// tests/data/samplers/trajectories.json (confirmed against diffusers' schedulers run in float64), the
// callback and early stop, stepping in place, and prediction kinds converted on the fly.
//                                                                         [docs/samplers.md, Eq. (S15)]

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/posterior.hpp"
#include "ddpm/sample.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "sampler_support.hpp"

using ddpm::Prediction;
using ddpm::Tensor;
using namespace sampler_test;

namespace {

// A whole run, compared at its middle step and at the end, |actual - expected| <= tol * max(|expected|, 1).
// double: 1e-10, the single-step tolerance; no run amplifies rounding enough to reach it.
// float: each step rounds at 2^-24 = 6e-8 relative, and what a run makes of that depends on how the
// schedule conditions the first steps, where x0 = x / sqrt(alpha_bar) - sqrt(1 / alpha_bar - 1) eps:
//   linear:  alpha_bar[999] = 4.0e-5 and the rounding stays below 1.4e-6 over <= 50 steps: tol 2e-6;
//   zero terminal SNR: the sigma-space samplers start at sigma_max = 4096 (alpha_bar = 2^-24), where float
//            rounding of the 4096-times larger terms reaches 1.2e-5: tol 3e-5;
//   cosine:  alpha_bar[999] = 2.4e-9, so the first conversion multiplies rounding by 1 / sqrt(alpha_bar) =
//            2e4 (6e-8 * 2e4 = 1.2e-3), which later steps carry to the end: tol 5e-3. diffusers in float32
//            has the same limit; the double comparison is the parity check there.
template <class S>
double run_tol(const json& run) {
  if (std::is_same_v<S, double>) return 1e-10;
  const std::string kind = run.at("schedule").at("kind");
  if (kind == "linear") return 2e-6;
  if (kind == "zero_terminal_snr") return 3e-5;
  return 5e-3;
}

template <class S, class Sampler>
void check_run(Sampler& sampler, const json& run, const ddpm::NoiseSchedule<S>& schedule) {
  const json& f = fixture("trajectories.json");
  const Eigen::Index B = f.at("batch"), D = f.at("dim");
  const auto model = fixture_mixture<S>(schedule);
  REQUIRE(sampler.timesteps() == run.at("timesteps").get<std::vector<int>>());
  const int n = sampler.num_inference_steps();
  const int mid = n / 2;
  Tensor<S, 2> x_mid;
  int seen = 0;
  auto callback = [&](int i, int t, const Tensor<S, 2>& x, const Tensor<S, 2>&) {
    CHECK(i == seen);
    CHECK(t == sampler.timesteps()[static_cast<std::size_t>(i)]);
    ++seen;
    if (i == mid) x_mid = x;
  };
  const Tensor<S, 2> x_T = tensor<S, 2>(numbers(f.at("x_T")), {B, D});
  Tensor<S, 2> x;
  if (run.contains("noises")) {
    ReplayNoise<S> noise(numbers(run.at("noises")), B * D);
    x = ddpm::sample(sampler, model, x_T, noise, callback);
    // one draw per noisy step: all but the last for DDPM and Euler ancestral, all with sigma > 0 for DDIM
    CHECK(noise.calls == static_cast<Eigen::Index>(n - 1));
  } else {
    x = ddpm::sample(sampler, model, x_T, ddpm::no_noise, callback);
  }
  CHECK(seen == n);
  CHECK(worst_error(x, numbers(run.at("x"))) <= run_tol<S>(run));
  if (run.contains("x_mid")) CHECK(worst_error(x_mid, numbers(run.at("x_mid"))) <= run_tol<S>(run));
}

template <class S>
void check_sigmas(const std::vector<double>& ours, const json& run) {
  const auto expected = run.at("sigmas").get<std::vector<double>>();
  REQUIRE(ours.size() == expected.size());
  for (std::size_t k = 0; k < ours.size(); ++k) CHECK(ours[k] == Approx(expected[k]).epsilon(1e-13));
}

}  // namespace

TEMPLATE_TEST_CASE("sample() reproduces the reference trajectories of every sampler", "[samplers][sample]", float,
                   double) {
  using S = TestType;
  int runs = 0;
  for (const json& run : fixture("trajectories.json").at("runs")) {
    const auto schedule = make_schedule<S>(run.at("schedule"));
    const std::string name = run.at("sampler");
    INFO("run " << runs << ": " << name << " " << run.at("schedule").at("kind").get<std::string>() << " "
                << run.at("options").dump());
    if (name == "ddim") {
      ddpm::DDIMSampler<S> s(schedule, ddim_options(run.at("options")));
      check_run<S>(s, run, schedule);
    } else if (name == "ddpm") {
      ddpm::DDPMSampler<S> s(schedule, ddpm_options(run.at("options")));
      check_run<S>(s, run, schedule);
    } else if (name == "dpmsolver") {
      ddpm::DPMSolverMultistepSampler<S> s(schedule, dpm_options(run.at("options")));
      check_sigmas<S>(s.sigmas(), run);
      check_run<S>(s, run, schedule);
      check_run<S>(s, run, schedule);  // a second run: the history is reset by sample()
    } else if (name == "euler") {
      ddpm::EulerSampler<S> s(schedule, euler_options(run.at("options")));
      check_sigmas<S>(s.sigmas(), run);
      check_run<S>(s, run, schedule);
    } else if (name == "euler_ancestral") {
      ddpm::EulerAncestralSampler<S> s(schedule, euler_options(run.at("options")));
      check_sigmas<S>(s.sigmas(), run);
      check_run<S>(s, run, schedule);
    } else {
      FAIL("unknown sampler " << name);
    }
    ++runs;
  }
  CHECK(runs == static_cast<int>(fixture("trajectories.json").at("runs").size()));
}

TEST_CASE("sample(): the callback sees each step and can stop the loop", "[samplers][sample]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const auto model = fixture_mixture<double>(schedule);
  ddpm::DDIMSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 10}});
  Tensor<double, 2> x_T(5, 2);
  ddpm::NoiseSource(1)(x_T);
  std::vector<int> ts;
  Tensor<double, 2> x_after_3, x0_at_3;
  auto stop_after_3 = [&](int i, int t, const Tensor<double, 2>& x, const Tensor<double, 2>& x0) {
    ts.push_back(t);
    if (i < 3) return ddpm::LoopControl::proceed;
    x_after_3 = x;
    x0_at_3 = x0;
    return ddpm::LoopControl::stop;
  };
  const Tensor<double, 2> stopped = ddpm::sample(sampler, model, x_T, ddpm::no_noise, stop_after_3);
  CHECK(ts == std::vector<int>{900, 800, 700, 600});
  for (int k = 0; k < 10; ++k) CHECK(stopped.data()[k] == x_after_3.data()[k]);
  // The same four steps by hand: the loop is model-then-step, and x0 is the prediction at t.
  Tensor<double, 2> x = x_T, x0;
  for (int i = 0; i < 4; ++i) {
    const Tensor<double, 2> eps = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
    if (i == 3) x0 = ddpm::predict_x0_from_eps(schedule, x, 600, eps);
    sampler.step(i, eps, x, ddpm::no_noise);
  }
  for (int k = 0; k < 10; ++k) {
    CHECK(stopped.data()[k] == Approx(x.data()[k]).epsilon(1e-14));
    CHECK(x0_at_3.data()[k] == Approx(x0.data()[k]).epsilon(1e-13));
  }
  // Without a callback, and with a callback returning void, all N steps run.
  const Tensor<double, 2> full = ddpm::sample(sampler, model, x_T, ddpm::no_noise);
  int calls = 0;
  const Tensor<double, 2> full2 =
      ddpm::sample(sampler, model, x_T, ddpm::no_noise, [&](int, int, const Tensor<double, 2>&, const Tensor<double, 2>&) { ++calls; });
  CHECK(calls == 10);
  for (int k = 0; k < 10; ++k) CHECK(full.data()[k] == full2.data()[k]);
}

TEST_CASE("sample(): x is stepped in place and the model sees training timesteps", "[samplers][sample]") {
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  const auto mixture = fixture_mixture<float>(schedule);
  std::vector<const float*> seen_data;
  std::vector<int> seen_t;
  auto model = [&](const Tensor<float, 2>& x, int t) {
    seen_data.push_back(x.data());
    seen_t.push_back(t);
    return mixture(x, t);
  };
  Tensor<float, 2> x_T(64, 2);
  ddpm::NoiseSource(2)(x_T);
  ddpm::DPMSolverMultistepSampler<float> sampler(schedule,
                                                 {.grid = {.num_inference_steps = 12, .use_karras_sigmas = true}});
  (void)ddpm::sample(sampler, model, std::move(x_T), ddpm::no_noise);
  REQUIRE(seen_data.size() == 12u);
  for (const float* p : seen_data) CHECK(p == seen_data.front());  // one x for the whole run
  CHECK(seen_t == sampler.timesteps());
}

TEST_CASE("sample(): every sampler runs a velocity or x0 model unchanged", "[samplers][sample]") {
  // The same oracle expressed as a v-prediction (Eq. (14) of docs/math.md) or an x0-prediction gives the
  // same samples, to rounding: each sampler converts the output with Eq. (S1).
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const auto eps_model = fixture_mixture<double>(schedule);
  auto v_model = ddpm::with_prediction(Prediction::velocity, [&](const Tensor<double, 2>& x, int t) {
    const Tensor<double, 2> eps = eps_model(x, t);
    const Tensor<double, 2> x0 = ddpm::predict_x0_from_eps(schedule, x, t, eps);
    return ddpm::predict_v(schedule, x0, t, eps);
  });
  auto x0_model = ddpm::with_prediction(Prediction::sample, [&](const Tensor<double, 2>& x, int t) {
    return ddpm::predict_x0_from_eps(schedule, x, t, eps_model(x, t));
  });
  Tensor<double, 2> x_T(32, 2);
  ddpm::NoiseSource(5)(x_T);
  auto compare = [&](auto& sampler, auto&& noise_factory, double tol) {
    auto n1 = noise_factory();
    auto n2 = noise_factory();
    auto n3 = noise_factory();
    const Tensor<double, 2> a = ddpm::sample(sampler, eps_model, x_T, n1);
    const Tensor<double, 2> b = ddpm::sample(sampler, v_model, x_T, n2);
    const Tensor<double, 2> c = ddpm::sample(sampler, x0_model, x_T, n3);
    for (int k = 0; k < 64; ++k) {
      CHECK(b.data()[k] == Approx(a.data()[k]).margin(tol));
      CHECK(c.data()[k] == Approx(a.data()[k]).margin(tol));
    }
  };
  auto none = [] { return ddpm::no_noise; };
  auto seeded = [] { return ddpm::NoiseSource(99); };
  ddpm::DDIMSampler<double> ddim(schedule, {.grid = {.num_inference_steps = 25}});
  compare(ddim, none, 1e-9);
  ddpm::DDPMSampler<double> ddpm_s(schedule, {.grid = {.num_inference_steps = 25}});
  compare(ddpm_s, seeded, 1e-9);
  ddpm::DPMSolverMultistepSampler<double> dpm(schedule, {.grid = {.num_inference_steps = 15}});
  compare(dpm, none, 1e-9);
  ddpm::EulerSampler<double> euler(
      schedule, {.grid = {.num_inference_steps = 30, .timestep_spacing = ddpm::TimestepSpacing::trailing}});
  compare(euler, none, 1e-9);
  ddpm::EulerAncestralSampler<double> ancestral(schedule, {.grid = {.num_inference_steps = 30}});
  compare(ancestral, seeded, 1e-9);
}
