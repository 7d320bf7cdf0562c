// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// make_grid: the one builder of every sampler's timesteps and sigmas. Each sampler's grid is the one
// make_grid builds from its options (and its former hand-written semantics are pinned by the fixtures of
// the sampler tests); here the ramps' ends, the sigma list, the dropped final point and the refusals, and
// the one GridOptions of every sampler: its unset fields resolved to the sampler's documented defaults,
// the options a timestep-only sampler refuses, and sigma_ends / drop_final_timestep set explicitly.
//                                                      [docs/samplers.md, Eqs. (S4)-(S6), (S18), (S19)]

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/sample.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/dpm2.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/dpmpp_2s_ancestral.hpp"
#include "ddpm/samplers/dpmpp_sde.hpp"
#include "ddpm/samplers/dpmpp_sde_multistep.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/heun.hpp"
#include "ddpm/samplers/lms.hpp"
#include "ddpm/samplers/pndm.hpp"
#include "ddpm/samplers/unipc.hpp"
#include "ddpm/timesteps.hpp"

using ddpm::FinalSigma;
using ddpm::GridOptions;
using ddpm::SigmaEnds;
using ddpm::SigmaSpacing;
using ddpm::TimestepSpacing;

namespace {

// sigma[t] of Eq. (12), from alpha_bar in double.
double sigma_at(const ddpm::NoiseSchedule<double>& s, int t) {
  const double a = s.alphas_cumprod_double()[static_cast<std::size_t>(t)];
  return std::sqrt((1.0 - a) / a);
}

}  // namespace

static_assert(ddpm::Sampler<ddpm::DDPMSampler<float>, float, 4>);
static_assert(ddpm::Sampler<ddpm::DDIMSampler<double>, double, 2>);
static_assert(ddpm::Sampler<ddpm::DPMSolverMultistepSampler<float>, float, 3>);
static_assert(ddpm::Sampler<ddpm::EulerSampler<float>, float, 4>);
static_assert(ddpm::Sampler<ddpm::EulerAncestralSampler<double>, double, 4>);
static_assert(ddpm::SamplerFor<ddpm::DDIMSampler<float>, float, 4>);  // the former name
static_assert(!ddpm::Sampler<ddpm::NoiseSchedule<float>, float, 4>);

TEST_CASE("make_grid: timesteps and their sigmas, with the final sigma appended", "[samplers][grid]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const ddpm::Grid g = ddpm::make_grid(schedule, {.num_inference_steps = 7, .timestep_spacing = TimestepSpacing::linspace});
  REQUIRE(g.timesteps == std::vector<int>{999, 832, 666, 500, 333, 166, 0});  // Eq. (S4), half to even
  REQUIRE(g.sigmas.size() == 8);
  for (std::size_t k = 0; k < 7; ++k) CHECK(g.sigmas[k] == sigma_at(schedule, g.timesteps[k]));
  CHECK(g.sigmas.back() == 0.0);
  const ddpm::Grid m = ddpm::make_grid(schedule, {.num_inference_steps = 4, .final_sigma = FinalSigma::sigma_min});
  CHECK(m.sigmas.back() == sigma_at(schedule, 0));
  // An explicit timestep list is used as given.
  CHECK(ddpm::make_grid(schedule, {.timesteps = {900, 500, 3}}).timesteps == std::vector<int>{900, 500, 3});
}

TEST_CASE("make_grid: N + 1 points with the smallest dropped (DPM-Solver's spacing)", "[samplers][grid]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  // linspace(0, 999, 5) = 0, 249.75, 499.5, 749.25, 999 -> rounded half to even, reversed, 0 dropped.
  CHECK(ddpm::make_grid(schedule, {.num_inference_steps = 4, .timestep_spacing = TimestepSpacing::linspace,
                                   .drop_final_timestep = true})
            .timesteps == std::vector<int>{999, 749, 500, 250});
  // leading: step 1000 // 5 = 200, k * 200 for k = 4..1.
  CHECK(ddpm::make_grid(schedule, {.num_inference_steps = 4, .drop_final_timestep = true}).timesteps ==
        std::vector<int>{800, 600, 400, 200});
  // trailing is unaffected; N + 1 > T uses every timestep.
  CHECK(ddpm::make_grid(schedule, {.num_inference_steps = 4, .timestep_spacing = TimestepSpacing::trailing,
                                   .drop_final_timestep = true})
            .timesteps == std::vector<int>{999, 749, 499, 249});
  const auto small = ddpm::NoiseSchedule<double>::linear(5);
  CHECK(ddpm::make_grid(small, {.num_inference_steps = 5, .timestep_spacing = TimestepSpacing::linspace,
                                .drop_final_timestep = true})
            .timesteps == std::vector<int>{4, 3, 2, 1, 0});
  // The sampler's static helper is the same function.
  CHECK(ddpm::DPMSolverMultistepSampler<double>::dpm_timesteps(1000, 4, TimestepSpacing::linspace) ==
        std::vector<int>{999, 749, 500, 250});
}

TEST_CASE("make_grid: the ramps between the ends SigmaEnds names", "[samplers][grid]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const double s_min = sigma_at(schedule, 0), s_max = sigma_at(schedule, 999);
  for (SigmaSpacing spacing : {SigmaSpacing::karras, SigmaSpacing::exponential, SigmaSpacing::polyexponential}) {
    INFO(ddpm::sigma_spacing_name(spacing));
    // training: over sigma[0] .. sigma[T-1], whatever the spacing options say.
    const ddpm::Grid g = ddpm::make_grid(schedule, {.num_inference_steps = 6, .timestep_spacing = TimestepSpacing::leading,
                                                    .sigma_spacing = spacing, .sigma_ends = SigmaEnds::training});
    REQUIRE(g.sigmas.size() == 7);
    CHECK(g.sigmas.front() == Approx(s_max).epsilon(1e-14));
    CHECK(g.sigmas[5] == Approx(s_min).epsilon(1e-14));
    // spaced: over the sigmas of the first and last spaced timesteps (leading N = 6: 830 .. 0).
    const ddpm::Grid e = ddpm::make_grid(schedule, {.num_inference_steps = 6, .timestep_spacing = TimestepSpacing::leading,
                                                    .steps_offset = 1, .sigma_spacing = spacing});
    REQUIRE(e.sigmas.size() == 7);
    CHECK(e.sigmas.front() == Approx(sigma_at(schedule, 831)).epsilon(1e-14));
    CHECK(e.sigmas[5] == Approx(sigma_at(schedule, 1)).epsilon(1e-14));
    // Each timestep is the rounded fractional timestep of its sigma (Eq. (S6)), so its sigma brackets it.
    for (std::size_t k = 0; k < 6; ++k) {
      const int t = g.timesteps[k];
      CHECK(t == static_cast<int>(std::nearbyint(ddpm::sigma_to_timestep(ddpm::detail::sigma_table(schedule), g.sigmas[k]))));
      if (t > 0) CHECK(sigma_at(schedule, t - 1) < g.sigmas[k]);
      if (t < 999) CHECK(g.sigmas[k] < sigma_at(schedule, t + 1));
    }
  }
  // rho: karras with rho = 1 is the linear ramp in sigma (Eq. (S5)).
  const ddpm::Grid lin = ddpm::make_grid(schedule, {.num_inference_steps = 5, .sigma_spacing = SigmaSpacing::karras,
                                                    .sigma_ends = SigmaEnds::training, .rho = 1.0});
  for (int i = 0; i < 5; ++i) CHECK(lin.sigmas[static_cast<std::size_t>(i)] == Approx(s_max + i / 4.0 * (s_min - s_max)).epsilon(1e-13));
}

TEST_CASE("make_grid: a given sigma list", "[samplers][grid]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const std::vector<double> sigmas = {200.0, sigma_at(schedule, 500), 0.5, sigma_at(schedule, 0)};
  const ddpm::Grid g = ddpm::make_grid(schedule, {.sigmas = sigmas, .final_sigma = FinalSigma::zero});
  REQUIRE(g.sigmas.size() == 5);
  for (std::size_t k = 0; k < 4; ++k) CHECK(g.sigmas[k] == sigmas[k]);
  CHECK(g.sigmas.back() == 0.0);
  CHECK(g.timesteps[1] == 500);  // exactly at a table entry
  CHECK(g.timesteps[3] == 0);
  CHECK(g.timesteps[0] == 999);  // above sigma[T-1]: clamped
  // The samplers take it through their options.
  ddpm::EulerSampler<double> euler(schedule, {.grid = {.sigmas = sigmas}});
  CHECK(euler.sigmas() == g.sigmas);
  CHECK(euler.timesteps() == g.timesteps);
  ddpm::DPMSolverMultistepSampler<double> dpm(schedule, {.grid = {.sigmas = sigmas}});
  CHECK(dpm.sigmas() == g.sigmas);
}

TEST_CASE("The samplers' grids are make_grid's", "[samplers][grid]") {
  const auto schedule = ddpm::NoiseSchedule<double>::cosine(1000);
  ddpm::EulerSampler<double> euler(schedule,
                                   {.grid = {.num_inference_steps = 12, .sigma_spacing = SigmaSpacing::exponential}});
  const ddpm::Grid eg = ddpm::make_grid(schedule, {.num_inference_steps = 12, .timestep_spacing = TimestepSpacing::linspace,
                                                   .sigma_spacing = SigmaSpacing::exponential});
  CHECK(euler.sigmas() == eg.sigmas);
  CHECK(euler.timesteps() == eg.timesteps);
  ddpm::EulerAncestralSampler<double> anc(schedule, {.grid = {.num_inference_steps = 12, .use_karras_sigmas = true}});
  CHECK(anc.sigmas() == ddpm::make_grid(schedule, {.num_inference_steps = 12, .timestep_spacing = TimestepSpacing::linspace,
                                                   .sigma_spacing = SigmaSpacing::karras})
                            .sigmas);
  ddpm::DPMSolverMultistepSampler<double> dpm(
      schedule, {.grid = {.num_inference_steps = 9, .sigma_spacing = SigmaSpacing::polyexponential}});
  const ddpm::Grid dg = ddpm::make_grid(schedule, {.num_inference_steps = 9, .sigma_spacing = SigmaSpacing::polyexponential,
                                                   .sigma_ends = SigmaEnds::training});
  CHECK(dpm.sigmas() == dg.sigmas);
  CHECK(dpm.timesteps() == dg.timesteps);
  ddpm::DDIMSampler<double> ddim(schedule, {.grid = {.num_inference_steps = 10, .steps_offset = 1}});
  CHECK(ddim.timesteps() == ddpm::make_grid(schedule, {.num_inference_steps = 10, .steps_offset = 1}).timesteps);
  ddpm::DDPMSampler<double> every(schedule);  // N = 0: every training timestep
  CHECK(every.timesteps().size() == 1000);
  CHECK(every.timesteps().front() == 999);
}

TEST_CASE("make_grid rejects bad options, naming its caller", "[samplers][grid]") {
  using ddpm::invalid_argument;
  const auto schedule = ddpm::NoiseSchedule<double>::linear(100);
  CHECK_THROWS_WITH(ddpm::make_grid(schedule, {.num_inference_steps = 101}, "caller"),
                    Catch::Contains("caller: num_inference_steps is 101, but must be in [1, 100]"));
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.num_inference_steps = 0}), invalid_argument);
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.timesteps = {5, 7}}), invalid_argument);
  CHECK_THROWS_WITH(ddpm::make_grid(schedule, {.timesteps = {50, 10}, .sigma_spacing = SigmaSpacing::exponential}),
                    Catch::Contains("exponential"));
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.sigma_spacing = static_cast<SigmaSpacing>(9)}), invalid_argument);
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.num_inference_steps = 5, .sigma_spacing = SigmaSpacing::karras, .rho = -1.0}),
                  invalid_argument);
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.sigmas = {3.0, 3.0}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.sigmas = {3.0, 0.0}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.sigmas = {3.0, NAN}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.timesteps = {5}, .sigmas = {3.0}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::make_grid(schedule, {.sigma_spacing = SigmaSpacing::karras, .sigmas = {3.0}}), invalid_argument);
  const auto one = ddpm::NoiseSchedule<double>::from_betas({0.5});
  CHECK_NOTHROW(ddpm::make_grid(one, {.num_inference_steps = 1}));
  CHECK_THROWS_AS(ddpm::make_grid(one, {.num_inference_steps = 1, .sigma_spacing = SigmaSpacing::exponential}),
                  invalid_argument);
  // A sampler's use_karras_sigmas and another ramp contradict each other.
  CHECK_THROWS_AS(
      ddpm::EulerSampler<double>(
          schedule,
          {.grid = {.num_inference_steps = 5, .use_karras_sigmas = true, .sigma_spacing = SigmaSpacing::exponential}}),
      invalid_argument);
  CHECK_NOTHROW(ddpm::DPMSolverMultistepSampler<double>(
      schedule,
      {.grid = {.num_inference_steps = 5, .use_karras_sigmas = true, .sigma_spacing = SigmaSpacing::karras}}));
}

TEST_CASE("Enumerator values cast from integers are refused, naming the value", "[samplers][grid][errors]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(100);
  for (int bad : {3, -1, 42}) {
    INFO("value " << bad);
    std::string shown = "(";  // piecewise: GCC 12 at -O3 warns falsely (-Wrestrict) on "(" + std::string&&
    shown += std::to_string(bad);
    shown += ")";
    // TimestepSpacing: every timestep used to be 0 (the switch matched no case).
    CHECK_THROWS_WITH(ddpm::inference_timesteps(100, 10, static_cast<TimestepSpacing>(bad)),
                      Catch::Contains("ddpm::inference_timesteps") && Catch::Contains("TimestepSpacing" + shown));
    CHECK_THROWS_WITH(ddpm::make_grid(schedule, {.num_inference_steps = 10,
                                                 .timestep_spacing = static_cast<TimestepSpacing>(bad)}),
                      Catch::Contains("TimestepSpacing" + shown));
    CHECK_THROWS_AS(
        ddpm::DDIMSampler<double>(
            schedule, {.grid = {.num_inference_steps = 10, .timestep_spacing = static_cast<TimestepSpacing>(bad)}}),
        ddpm::invalid_argument);
    // FinalSigma: anything but zero used to mean sigma_min.
    CHECK_THROWS_WITH(ddpm::make_grid(schedule, {.num_inference_steps = 10,
                                                 .final_sigma = static_cast<FinalSigma>(bad)}, "caller"),
                      Catch::Contains("caller: final_sigma is FinalSigma" + shown));
    CHECK_THROWS_AS(ddpm::EulerSampler<double>(
                        schedule, {.grid = {.num_inference_steps = 10, .final_sigma = static_cast<FinalSigma>(bad)}}),
                    ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::DPMSolverMultistepSampler<double>(
                        schedule, {.grid = {.num_inference_steps = 10, .final_sigma = static_cast<FinalSigma>(bad)}}),
                    ddpm::invalid_argument);
    CHECK_THROWS_WITH(ddpm::make_grid(schedule, {.num_inference_steps = 10,
                                                 .sigma_spacing = SigmaSpacing::karras,
                                                 .sigma_ends = static_cast<SigmaEnds>(bad)}),
                      Catch::Contains("SigmaEnds" + shown));
  }
  // The enumerators themselves still pass, and their final sigmas are what they say.
  CHECK(ddpm::make_grid(schedule, {.num_inference_steps = 10, .final_sigma = FinalSigma::zero}).sigmas.back() == 0.0);
  CHECK(ddpm::make_grid(schedule, {.num_inference_steps = 10, .final_sigma = FinalSigma::sigma_min}).sigmas.back() ==
        sigma_at(schedule, 0));
}

// A sampler's and the mixture oracle's num_steps() are kept for one release as deprecated aliases; used
// here on purpose, with the deprecation warning silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
TEST_CASE("Deprecated aliases: num_steps() of a sampler and of the mixture oracle", "[samplers][grid][deprecated]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::DDIMSampler<double> ddim(schedule, {.grid = {.num_inference_steps = 25}});
  CHECK(ddim.num_steps() == 25);
  CHECK(ddim.num_steps() == ddim.num_inference_steps());
  ddpm::DPMSolverMultistepSampler<double> dpm(schedule, {.grid = {.num_inference_steps = 7}});
  CHECK(dpm.num_steps() == dpm.num_inference_steps());
  const ddpm::GaussianMixturePredictor<double> model(schedule, {1.0}, {{0.0, 0.0}}, {1.0});
  CHECK(model.num_steps() == 1000);
  CHECK(model.num_steps() == model.num_train_timesteps());
}
#pragma GCC diagnostic pop

// The documented defaults (GridOptions' comments, diffusers' scheduler classes), spelt out here.
static_assert(ddpm::DDPMSampler<float>::grid_defaults.num_inference_steps == 0);  // 0: T
static_assert(ddpm::DDPMSampler<float>::grid_defaults.timestep_spacing == TimestepSpacing::leading);
static_assert(!ddpm::DDPMSampler<float>::grid_defaults.sigma_grid);
static_assert(ddpm::DDIMSampler<float>::grid_defaults.num_inference_steps == 50);
static_assert(!ddpm::DDIMSampler<float>::grid_defaults.sigma_grid);
static_assert(ddpm::PNDMSampler<float>::grid_defaults.timestep_spacing == TimestepSpacing::leading);
static_assert(!ddpm::PNDMSampler<float>::grid_defaults.explicit_timesteps);
static_assert(ddpm::EulerSampler<float>::grid_defaults.timestep_spacing == TimestepSpacing::linspace);
static_assert(ddpm::DPMSolverMultistepSampler<float>::grid_defaults.num_inference_steps == 20);
static_assert(ddpm::DPMSolverMultistepSampler<float>::grid_defaults.drop_final_timestep);
static_assert(ddpm::UniPCSampler<float>::grid_defaults.sigma_ends == SigmaEnds::training);

namespace {

// The grid of the sigma-space samplers with the fields unset (the EulerDiscreteScheduler family) against
// make_grid with every field set explicitly to the documented values.
template <class Sampler>
void check_euler_family_defaults(const ddpm::NoiseSchedule<double>& schedule, const char* name) {
  INFO(name);
  const GridOptions spelt{.num_inference_steps = 50,
                          .timestep_spacing = TimestepSpacing::linspace,
                          .drop_final_timestep = false,
                          .sigma_ends = SigmaEnds::spaced};
  const Sampler unset(schedule);
  CHECK(unset.sigmas() == ddpm::make_grid(schedule, spelt).sigmas);
  GridOptions karras = spelt;
  karras.sigma_spacing = SigmaSpacing::karras;
  const Sampler k(schedule, {.grid = {.use_karras_sigmas = true}});
  CHECK(k.sigmas() == ddpm::make_grid(schedule, karras).sigmas);
}

}  // namespace

TEST_CASE("Every sampler's unset grid fields take its documented defaults", "[samplers][grid]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const int T = 1000;
  // Timestep samplers: DDPM every training timestep, DDIM and PNDM 50 leading ones.
  CHECK(ddpm::DDPMSampler<double>(schedule).timesteps() == ddpm::inference_timesteps(T, T, TimestepSpacing::leading));
  CHECK(ddpm::DDPMSampler<double>(schedule, {.grid = {.num_inference_steps = 0}}).timesteps().size() == 1000u);
  CHECK(ddpm::DDIMSampler<double>(schedule).timesteps() == ddpm::inference_timesteps(T, 50, TimestepSpacing::leading));
  const std::vector<int> pndm = ddpm::PNDMSampler<double>(schedule, {.skip_prk_steps = true}).timesteps();
  const std::vector<int> leading50 = ddpm::inference_timesteps(T, 50, TimestepSpacing::leading);
  REQUIRE(pndm.size() == 51u);  // N + 1 calls, the second timestep repeated
  CHECK(pndm.front() == leading50.front());
  CHECK(pndm.back() == leading50.back());
  // The EulerDiscreteScheduler family: 50 linspace timesteps, ramps between the spaced ends.
  check_euler_family_defaults<ddpm::EulerSampler<double>>(schedule, "Euler");
  check_euler_family_defaults<ddpm::EulerAncestralSampler<double>>(schedule, "Euler ancestral");
  check_euler_family_defaults<ddpm::HeunSampler<double>>(schedule, "Heun");
  check_euler_family_defaults<ddpm::LMSSampler<double>>(schedule, "LMS");
  check_euler_family_defaults<ddpm::DPM2Sampler<double>>(schedule, "DPM2");
  check_euler_family_defaults<ddpm::DPM2AncestralSampler<double>>(schedule, "DPM2 ancestral");
  check_euler_family_defaults<ddpm::DPMPP2SAncestralSampler<double>>(schedule, "DPM++ 2S a");
  check_euler_family_defaults<ddpm::DPMPPSDESampler<double>>(schedule, "DPM++ SDE");
  check_euler_family_defaults<ddpm::DPMPP2MSDESampler<double>>(schedule, "DPM++ 2M SDE");
  check_euler_family_defaults<ddpm::DPMPP3MSDESampler<double>>(schedule, "DPM++ 3M SDE");
  // DPM-Solver and UniPC: 20 steps from 21 linspace points without the smallest, ramps over the training
  // range. Written out: linspace over [0, 999] with 21 points, rounded, the 0 dropped.
  std::vector<int> dpm_ts = ddpm::inference_timesteps(T, 21, TimestepSpacing::linspace);
  dpm_ts.pop_back();
  CHECK(ddpm::DPMSolverMultistepSampler<double>(schedule).timesteps() == dpm_ts);
  CHECK(ddpm::UniPCSampler<double>(schedule).timesteps() == dpm_ts);
  const GridOptions karras{.num_inference_steps = 20,
                           .timestep_spacing = TimestepSpacing::linspace,
                           .drop_final_timestep = true,
                           .sigma_spacing = SigmaSpacing::karras,
                           .sigma_ends = SigmaEnds::training};
  const std::vector<double> training_ramp = ddpm::make_grid(schedule, karras).sigmas;
  CHECK(ddpm::DPMSolverMultistepSampler<double>(schedule, {.grid = {.use_karras_sigmas = true}}).sigmas() ==
        training_ramp);
  CHECK(ddpm::UniPCSampler<double>(schedule, {.grid = {.use_karras_sigmas = true}}).sigmas() == training_ramp);
  CHECK(training_ramp.front() == Approx(sigma_at(schedule, T - 1)).epsilon(1e-12));  // the training range's ends
  CHECK(training_ramp[19] == Approx(sigma_at(schedule, 0)).epsilon(1e-12));
}

TEST_CASE("The timestep-only samplers refuse sigma options, naming sampler, option and value",
          "[samplers][grid][errors]") {
  using ddpm::invalid_argument;
  const auto schedule = ddpm::NoiseSchedule<double>::linear(100);
  const std::vector<std::pair<GridOptions, std::string>> bad = {
      {{.use_karras_sigmas = true}, "use_karras_sigmas is true"},
      {{.sigma_spacing = SigmaSpacing::exponential}, "sigma_spacing is exponential"},
      {{.sigma_ends = SigmaEnds::spaced}, "sigma_ends is spaced"},
      {{.rho = 7.0}, "rho is 7"},
      {{.sigmas = {5.0, 1.0}}, "sigmas has 2 entries"},
      {{.final_sigma = FinalSigma::sigma_min}, "final_sigma is sigma_min"}};
  for (const auto& [grid, message] : bad) {
    INFO(message);
    CHECK_THROWS_WITH(ddpm::DDPMSampler<double>(schedule, {.grid = grid}),
                      Catch::Contains("ddpm::DDPMSampler: " + message) && Catch::Contains("timesteps only"));
    CHECK_THROWS_WITH(ddpm::DDIMSampler<double>(schedule, {.grid = grid}),
                      Catch::Contains("ddpm::DDIMSampler: " + message));
    CHECK_THROWS_WITH(ddpm::PNDMSampler<double>(schedule, {.grid = grid}),
                      Catch::Contains("ddpm::PNDMSampler: " + message));
    // The sigma-space samplers take each of them (rho alone has no ramp to act on).
    CHECK_NOTHROW(ddpm::EulerSampler<double>(schedule, {.grid = grid}));
  }
  // PNDM steps from t to t - T / N: no timestep list, no dropped final point; DDPM and DDIM take both.
  CHECK_THROWS_WITH(ddpm::PNDMSampler<double>(schedule, {.grid = {.timesteps = {90, 50, 10, 5}}}),
                    Catch::Contains("ddpm::PNDMSampler: timesteps has 4 entries"));
  CHECK_THROWS_WITH(ddpm::PNDMSampler<double>(schedule, {.grid = {.drop_final_timestep = true}}),
                    Catch::Contains("ddpm::PNDMSampler: drop_final_timestep is true"));
  CHECK_NOTHROW(ddpm::PNDMSampler<double>(schedule, {.grid = {.drop_final_timestep = false}}));
  CHECK(ddpm::DDIMSampler<double>(schedule, {.grid = {.timesteps = {90, 50, 10}}}).timesteps() ==
        std::vector<int>{90, 50, 10});
  // DDIM's diffusers previous timestep (t - T / N) needs the N spaced timesteps, as with a list.
  CHECK_THROWS_WITH(
      ddpm::DDIMSampler<double>(
          schedule, {.grid = {.drop_final_timestep = true}, .previous_timestep = ddpm::PreviousTimestep::diffusers}),
      Catch::Contains("ddpm::DDIMSampler: previous_timestep is diffusers and drop_final_timestep is true"));
}

TEST_CASE("sigma_ends and drop_final_timestep set on a sampler change its grid as make_grid says", "[samplers][grid]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const int T = 1000;
  // Leading spacing, N = 10: the spaced timesteps are 900, ..., 0, so the two ends differ at the top.
  const GridOptions leading{
      .num_inference_steps = 10, .timestep_spacing = TimestepSpacing::leading, .use_karras_sigmas = true};
  GridOptions training = leading, spaced = leading;
  training.sigma_ends = SigmaEnds::training;
  spaced.sigma_ends = SigmaEnds::spaced;
  const ddpm::EulerSampler<double> euler_training(schedule, {.grid = training});
  CHECK(euler_training.sigmas().front() == Approx(sigma_at(schedule, T - 1)).epsilon(1e-12));
  CHECK(euler_training.sigmas() == ddpm::make_grid(schedule, training).sigmas);
  CHECK(ddpm::EulerSampler<double>(schedule, {.grid = leading}).sigmas().front() ==
        Approx(sigma_at(schedule, 900)).epsilon(1e-12));
  const ddpm::DPMSolverMultistepSampler<double> dpm_spaced(schedule, {.grid = spaced});
  CHECK(dpm_spaced.sigmas().front() == Approx(sigma_at(schedule, 900)).epsilon(1e-12));
  // DPM-Solver keeps dropping the smallest of N + 1 leading points (0, 90, ..., 900): its spaced ends are
  // the sigmas of 900 and 90.
  const std::vector<int> leading11 = ddpm::inference_timesteps(T, 11, TimestepSpacing::leading);
  REQUIRE(leading11[9] == 90);
  CHECK(dpm_spaced.sigmas()[9] == Approx(sigma_at(schedule, leading11[9])).epsilon(1e-12));
  CHECK(ddpm::DPMSolverMultistepSampler<double>(schedule, {.grid = leading}).sigmas().front() ==
        Approx(sigma_at(schedule, T - 1)).epsilon(1e-12));
  // drop_final_timestep: N + 1 linspace points without the smallest, or the N points themselves.
  std::vector<int> dropped = ddpm::inference_timesteps(T, 11, TimestepSpacing::linspace);
  dropped.pop_back();
  const std::vector<int> kept = ddpm::inference_timesteps(T, 10, TimestepSpacing::linspace);
  CHECK(ddpm::EulerSampler<double>(schedule, {.grid = {.num_inference_steps = 10}}).timesteps() == kept);
  CHECK(ddpm::EulerSampler<double>(schedule, {.grid = {.num_inference_steps = 10, .drop_final_timestep = true}})
            .timesteps() == dropped);
  CHECK(ddpm::DPMSolverMultistepSampler<double>(schedule, {.grid = {.num_inference_steps = 10}}).timesteps() ==
        dropped);
  CHECK(ddpm::UniPCSampler<double>(schedule, {.grid = {.num_inference_steps = 10, .drop_final_timestep = false}})
            .timesteps() == kept);
  std::vector<int> ddim_dropped = ddpm::inference_timesteps(T, 11, TimestepSpacing::leading);
  ddim_dropped.pop_back();
  CHECK(ddpm::DDIMSampler<double>(schedule, {.grid = {.num_inference_steps = 10, .drop_final_timestep = true}})
            .timesteps() == ddim_dropped);
}
