// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// DPMPPSDESampler against k-diffusion's sample_dpmpp_sde and diffusers' DPMSolverSDEScheduler (whole
// trajectories of tests/data/samplers/dpmpp_sde.json, made by tests/reference/make_dpmpp_sde_fixtures.py,
// both references fed the same normalized increments as ours), its deterministic form against DPM++ 2S
// (eta = 0), the Brownian tree it builds from a noise source, the mixture statistics, bad input.
//                                                               [docs/samplers.md, Eqs. (S20), (S29)]

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/samplers/dpmpp_2s_ancestral.hpp"
#include "ddpm/samplers/dpmpp_sde.hpp"
#include "ksampler_support.hpp"

using ddpm::DPMPPSDEOptions;
using ddpm::DPMPPSDESampler;
using namespace ksampler_test;

namespace {

ddpm::FinalSigma final_of(const json& o) {
  return o.value("final_sigma", std::string("zero")) == "zero" ? ddpm::FinalSigma::zero : ddpm::FinalSigma::sigma_min;
}

/// Replays a case: timesteps() against the reference's model calls, the levels of every noise call (ours
/// through a Brownian noise source that hands out the stored draws in call order), x at each interval's start
/// and at the end within traj_tol.
template <class S>
void check_case(const json& c, const json& f) {
  const json& o = c.at("options");
  DPMPPSDEOptions opt = grid_options<DPMPPSDEOptions>(o);
  opt.eta = o.value("eta", 1.0);
  opt.s_noise = o.value("s_noise", 1.0);
  opt.r = o.value("r", 0.5);
  opt.grid.final_sigma = final_of(o);
  DPMPPSDESampler<S> sampler(make_schedule<S>(f.at("schedule")), opt);
  const Eigen::Index B = f.at("shape")[0], D = f.at("shape")[1], n = B * D;
  const std::array<Eigen::Index, 2> dims{B, D};
  const auto schedule = make_schedule<S>(f.at("schedule"));
  const Prediction kind = kind_of(c.at("kind"));
  const KindModel<S> model{fixture_mixture<S>(schedule), schedule.alphas_cumprod_double(), kind};
  REQUIRE(sampler.timesteps() == c.at("call_timesteps").get<std::vector<int>>());
  const auto draws = numbers(f.at("noises"));
  const auto levels = c.at("noise_calls").get<std::vector<std::vector<double>>>();
  std::size_t calls = 0;
  auto replay = [&](double sigma, double sigma_next, Tensor<S, 2>& z) {
    REQUIRE(calls < levels.size());
    CHECK(std::abs(sigma - levels[calls][0]) <= 1e-13 * sigma);
    CHECK(std::abs(sigma_next - levels[calls][1]) <= 1e-13 * sigma_next);
    for (Eigen::Index j = 0; j < n; ++j) z.data()[j] = static_cast<S>(draws[calls * static_cast<std::size_t>(n) + j]);
    ++calls;
  };
  std::vector<int> starts;
  for (const json& p : c.at("checkpoints")) starts.push_back(p.at("call"));
  Tensor<S, 2> x = tensor<S, 2>(numbers(f.at("x_T")), dims);
  Tensor<S, 2> x0;
  const int steps = static_cast<int>(sampler.timesteps().size());
  for (int i = 0; i < steps; ++i) {
    for (std::size_t k = 0; k < starts.size(); ++k) {
      if (starts[k] != i) continue;
      INFO("x at the start of interval " << k << " (before step " << i << ")");
      CHECK(worst_error(x, numbers(c.at("checkpoints")[k].at("x"))) <= traj_tol<S>);
    }
    const Tensor<S, 2> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
    sampler.step(i, out, x, replay, x0, kind);
  }
  CHECK(worst_error(x, numbers(c.at("x"))) <= traj_tol<S>);
  // k-diffusion calls its noise sampler also where it adds nothing (eta = 0); ours draws only noise it adds
  CHECK(calls == (opt.eta == 0.0 ? 0 : levels.size()));
}

}  // namespace

TEMPLATE_TEST_CASE("DPMPPSDESampler follows k-diffusion's sample_dpmpp_sde and diffusers' DPMSolverSDEScheduler",
                   "[samplers][dpmppsde]", float, double) {
  const json& f = fixture("dpmpp_sde.json");
  int k = 0, d = 0;
  for (const json& c : f.at("cases")) {
    INFO(c.at("source").get<std::string>() << " " << c.at("options").dump() << " kind " << c.at("kind").get<std::string>());
    check_case<TestType>(c, f);
    (c.at("source") == "diffusers" ? d : k) += 1;
  }
  CHECK(k == 7);
  CHECK(d == 3);
}

TEST_CASE("DPM++ SDE with eta = 0 is DPM++ 2S", "[samplers][dpmppsde]") {
  // Both take sigma_mid = sqrt(sigma_k sigma_{k+1}) and the same two DPM-Solver++ updates; only the
  // arithmetic's order differs: 1e-13 relative over 5 intervals.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const auto model = fixture_mixture<double>(schedule);
  DPMPPSDESampler<double> sde(schedule, {.grid = {.num_inference_steps = 5, .use_karras_sigmas = true}, .eta = 0.0});
  ddpm::DPMPP2SAncestralSampler<double> two_s(
      schedule, {.grid = {.num_inference_steps = 5, .use_karras_sigmas = true}, .eta = 0.0});
  REQUIRE(sde.timesteps() == two_s.timesteps());
  Tensor<double, 2> x_T(16, 2);
  ddpm::NoiseSource(3)(x_T);
  const auto a = ddpm::sample(sde, model, x_T, ddpm::no_noise);
  const auto b = ddpm::sample(two_s, model, x_T, ddpm::no_noise);
  CHECK(worst_error(a, std::vector<double>(b.data(), b.data() + b.size())) <= 1e-13);
}

TEST_CASE("DPM++ SDE draws from the Brownian tree of its noise source", "[samplers][dpmppsde]") {
  // sample() with a NoiseSource equals stepping with BrownianTreeNoise(sigma_min, sigma_max, seed,
  // {path = offset after x_T, whole-tensor stream}); a PerImageNoiseSource gives each image its
  // own path: an image of a batch of 3 is the image sampled alone with its first_index (to the mixture
  // predictor's batch rounding, 1e-12).
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const auto model = fixture_mixture<double>(schedule);
  DPMPPSDESampler<double> sampler(schedule, {.grid = {.num_inference_steps = 6}});
  Tensor<double, 2> x_T(3, 2);
  ddpm::NoiseSource source(7);
  source(x_T);
  const std::uint64_t offset = source.offset();
  const auto via_sample = ddpm::sample(sampler, model, x_T, source);
  CHECK(source.offset() == offset);  // read, not advanced
  const ddpm::BrownianTreeNoise tree(sampler.brownian_sigma_min(), sampler.brownian_sigma_max(), 7,
                                     {.per_image = false, .path = offset});
  Tensor<double, 2> x = x_T;
  for (int i = 0; i < static_cast<int>(sampler.timesteps().size()); ++i) {
    const Tensor<double, 2> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
    sampler.step(i, out, x, tree);
  }
  // the step takes W at each level once (kept for the next stage) where BrownianTreeNoise sums the nodes of
  // both levels: equal up to the rounding of W (|W| <= 5 sqrt(157), over sqrt(dt) >= 0.1): 1e-12
  for (Eigen::Index k = 0; k < 6; ++k) CHECK(std::abs(x.data()[k] - via_sample.data()[k]) <= 1e-12 * (1 + std::abs(x.data()[k])));

  ddpm::PerImageNoiseSource per_image(9, 20);
  Tensor<double, 2> batch_T(3, 2);
  per_image(batch_T);
  const auto batch = ddpm::sample(sampler, model, batch_T, per_image);
  for (Eigen::Index b = 0; b < 3; ++b) {
    ddpm::PerImageNoiseSource one_source(9, 20 + static_cast<std::uint64_t>(b));
    Tensor<double, 2> one_T(1, 2);
    one_source(one_T);
    CHECK(one_T(0, 0) == batch_T(b, 0));
    const auto one = ddpm::sample(sampler, model, one_T, one_source);
    CHECK(std::abs(one(0, 0) - batch(b, 0)) <= 1e-12 * (1 + std::abs(batch(b, 0))));
    CHECK(std::abs(one(0, 1) - batch(b, 1)) <= 1e-12 * (1 + std::abs(batch(b, 1))));
  }
}

TEST_CASE("DPM++ SDE (25 intervals) turns N(0, I) into the mixture", "[samplers][dpmppsde][statistics]") {
  // Allowances as in statistics.test.cpp: 5 sampling sd (check_mixture) + 1.1 x the |bias| measured with
  // 10^6 samples by the [.measure] case below: weight 0.00115, mean 0.00285, spread 0.0279 (the noise from
  // the Brownian tree of the NoiseSource's seed; tolerance 1e-4, depth 21). 10,000 samples, not 20,000: each
  // stage queries up to 22 tree nodes per element, which costs about 5 s under ASan with 20,000.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  DPMPPSDESampler<double> sampler(schedule, {.grid = {.num_inference_steps = 25}, .tolerance = 1e-4});
  check_mixture(sampler, schedule, true, {0.0013, 0.0032, 0.031}, 241, 10000);
}

TEST_CASE("DPM++ SDE: mixture bias with 10^6 samples", "[.measure][dpmppsde]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  DPMPPSDESampler<double> sampler(schedule, {.grid = {.num_inference_steps = 25}, .tolerance = 1e-4});
  check_mixture(sampler, schedule, true, {}, 341, 1000000, true);
}

TEST_CASE("DPM++ SDE: runs under sample() with a callback, bad input", "[samplers][dpmppsde]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const auto model = fixture_mixture<double>(schedule);
  DPMPPSDESampler<double> sampler(schedule, {.grid = {.num_inference_steps = 5}});
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
  CHECK(sampler.noise_interval(8) == std::pair<double, double>{0.0, 0.0});
  CHECK(sampler.noise_interval(1).first == sampler.sigmas()[0]);
  CHECK(sampler.noise_interval(1).second == sampler.sigmas()[1]);
  CHECK(sampler.noise_interval(0).second == sampler.step_sigmas()[1]);

  CHECK_THROWS_WITH(DPMPPSDESampler<double>(schedule, {.r = 0.0}), Catch::Contains("r is 0"));
  CHECK_THROWS_WITH(DPMPPSDESampler<double>(schedule, {.r = 1.5}), Catch::Contains("r is 1.5"));
  CHECK_THROWS_WITH(DPMPPSDESampler<double>(schedule, {.eta = std::nan("")}), Catch::Contains("eta is nan"));
  CHECK_THROWS_WITH(DPMPPSDESampler<double>(schedule, {.s_noise = -1.0}), Catch::Contains("s_noise is -1"));
  CHECK_THROWS_WITH(DPMPPSDESampler<double>(schedule, {.tolerance = 0.0}), Catch::Contains("tolerance is 0"));
  Tensor<double, 2> y = x_T, out(8, 2), wrong(4, 2);
  out.setZero();
  CHECK_THROWS_WITH(sampler.step(0, out, y, ddpm::no_noise), Catch::Contains("no_noise"));
  CHECK_THROWS_AS(sampler.step(0, out, y, wrong), ddpm::invalid_argument);
  sampler.step(0, out, y, noise);
  CHECK_THROWS_WITH(sampler.step(2, out, y, noise), Catch::Contains("step index i is 2, but must be 1"));
  auto resizing = [](double, double, Tensor<double, 2>& z) { z.resize(1, 1); };
  CHECK_THROWS_WITH(sampler.step(1, out, y, resizing), Catch::Contains("resized"));
  // the deterministic form takes no_noise
  DPMPPSDESampler<double> ode(schedule, {.grid = {.num_inference_steps = 3}, .eta = 0.0});
  const auto z = ddpm::sample(ode, model, x_T, ddpm::no_noise);
  for (Eigen::Index k = 0; k < z.size(); ++k) CHECK(std::isfinite(z.data()[k]));
}
