// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// PNDMSampler against diffusers' PNDMScheduler itself (whole trajectories of tests/data/samplers/pndm.json,
// made by tests/reference/make_pndm_fixtures.py: skip_prk_steps true and false, epsilon and v_prediction,
// leading / trailing / linspace spacing, steps_offset 1 as Stable Diffusion, set_alpha_to_one both ways,
// N = 1, 2, 4), the transfer (S30) against the DDIM step, PLMS's convergence order, the mixture
// statistics, bad input.                                            [docs/samplers.md, Eqs. (S30)-(S32)]

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/pndm.hpp"
#include "ksampler_support.hpp"

using ddpm::PNDMOptions;
using ddpm::PNDMSampler;
using namespace ksampler_test;

namespace {

/// 1e-10 (double) and 3.5e-5 (float), relative to max(|expected|, 1). double: diffusers and ours compute
/// the same sums in another order, ~1e-16 per operation over <= 19 model calls. float: each model call and
/// step rounds about 3 times at 2^-24 = 6e-8 in these units (|x| <= 4), and a perturbation of x is
/// amplified by at most 8.4 over these runs (measured by running diffusers' schedulers from x_T perturbed
/// by 1e-7); 19 calls x 8.4 x 3 x 6e-8 = 2.9e-5. Observed: 1.6e-6 (float), below 1e-14 (double).
template <class S>
inline constexpr double pndm_tol = std::is_same_v<S, float> ? 3.5e-5 : 1e-10;

PNDMOptions pndm_options(const json& o) {
  PNDMOptions r;
  r.grid.num_inference_steps = o.at("num_inference_steps");
  r.grid.timestep_spacing = spacing_of(o.value("timestep_spacing", std::string("leading")));
  r.grid.steps_offset = o.value("steps_offset", 0);
  r.skip_prk_steps = o.value("skip_prk_steps", false);
  r.set_alpha_to_one = o.value("set_alpha_to_one", false);
  return r;
}

// x when the run reaches timestep `stop` (after the step that lands there and is not redone), the mixture
// evaluated at the training timesteps.
Tensor<double, 2> pndm_until(const ddpm::NoiseSchedule<double>& schedule, int N, bool skip, int stop,
                             const Tensor<double, 2>& x_T) {
  PNDMSampler<double> sampler(schedule,
                              {.grid = {.num_inference_steps = N, .timestep_spacing = ddpm::TimestepSpacing::trailing},
                               .skip_prk_steps = skip,
                               .set_alpha_to_one = true});
  const auto model = fixture_mixture<double>(schedule);
  Tensor<double, 2> x = x_T;
  const int n = sampler.num_inference_steps();
  for (int i = 0; i < n; ++i) {
    sampler.step(i, model(x, sampler.timesteps()[static_cast<std::size_t>(i)]), x, ddpm::no_noise);
    if (sampler.coefficients(i).prev_timestep == stop && (i + 1 == n || !sampler.coefficients(i + 1).from_saved)) {
      return x;
    }
  }
  FAIL("the run never reached timestep " << stop);
  return x;
}

}  // namespace

TEMPLATE_TEST_CASE("PNDMSampler follows diffusers' PNDMScheduler", "[samplers][pndm]", float, double) {
  using S = TestType;
  const json& f = fixture("pndm.json");
  const Eigen::Index B = f.at("shape")[0], D = f.at("shape")[1];
  const std::array<Eigen::Index, 2> dims{B, D};
  int n = 0;
  for (const json& c : f.at("cases")) {
    if (c.at("sampler") != "pndm") continue;
    INFO("case " << c.at("options").dump() << " kind " << c.at("kind").get<std::string>());
    const auto schedule = make_schedule<S>(c.at("schedule"));
    PNDMSampler<S> sampler(schedule, pndm_options(c.at("options")));
    REQUIRE(sampler.timesteps() == c.at("timesteps").get<std::vector<int>>());
    const Prediction kind = kind_of(c.at("kind"));
    const KindModel<S> model{fixture_mixture<S>(schedule), schedule.alphas_cumprod_double(), kind};
    Tensor<S, 2> x = tensor<S, 2>(numbers(f.at("x_T")), dims);
    for (int i = 0; i < sampler.num_inference_steps(); ++i) {
      const Tensor<S, 2> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
      sampler.step(i, out, x, ddpm::no_noise, kind);
      INFO("after step " << i);
      CHECK(worst_error(x, numbers(c.at("xs")[static_cast<std::size_t>(i)])) <= pndm_tol<S>);
    }
    CHECK(worst_error(x, numbers(c.at("x"))) <= pndm_tol<S>);
    ++n;
  }
  CHECK(n == 11);
}

TEST_CASE("PNDMSampler: the transfer is DDIM's deterministic step; the layout of the steps", "[samplers][pndm]") {
  // (S30) with m the output of this step is the eta = 0 DDIM step from a to a' (Song et al. 2021, Eq. (12));
  // checked through the coefficients of every kind against x0 and eps of (S1): x' = sqrt(a') x0 + sqrt(1 - a') eps.
  for (double a : {0.004, 0.3, 0.9}) {
    for (double a_prev : {a + 0.5 * (1 - a), 0.9999, 1.0}) {
      for (ddpm::Prediction kind : {Prediction::epsilon, Prediction::velocity, Prediction::sample}) {
        const ddpm::Conversion c = PNDMSampler<double>::transfer(kind, a, a_prev);
        const ddpm::Conversion x0 = ddpm::x0_conversion(kind, a), eps = ddpm::eps_conversion(kind, a);
        const double xc = std::sqrt(a_prev) * x0.from_x + std::sqrt(1 - a_prev) * eps.from_x;
        const double mc = std::sqrt(a_prev) * x0.from_output + std::sqrt(1 - a_prev) * eps.from_output;
        // the direct forms cancel: 1e-12 of their terms' magnitude
        CHECK(c.from_x == Approx(xc).margin(1e-12 * (std::abs(x0.from_x) + std::abs(eps.from_x) + 1)));
        CHECK(c.from_output == Approx(mc).margin(1e-12 * (std::abs(x0.from_output) + std::abs(eps.from_output) + 1)));
      }
    }
  }
  // Stable Diffusion 1.x: leading, steps_offset 1, 50 steps: 981, 961, 961, 941, ..., 1 (51 model calls).
  const auto schedule = ddpm::NoiseSchedule<double>::scaled_linear(1000);
  PNDMSampler<double> sd(schedule, {.grid = {.steps_offset = 1}, .skip_prk_steps = true});
  REQUIRE(sd.num_inference_steps() == 51);
  CHECK(sd.timesteps()[0] == 981);
  CHECK(sd.timesteps()[1] == 961);
  CHECK(sd.timesteps()[2] == 961);
  CHECK(sd.timesteps().back() == 1);
  CHECK(sd.coefficients(1).timestep == 981);  // the second call redoes 981 -> 961
  CHECK(sd.coefficients(1).prev_timestep == 961);
  CHECK(sd.coefficients(1).from_saved);
  CHECK(sd.coefficients(50).prev_timestep == -19);
  CHECK(sd.coefficients(50).alpha_bar_prev == schedule.alphas_cumprod_double()[0]);  // set_alpha_to_one false
  CHECK(sd.coefficients(5).output_weight == Approx(55.0 / 24.0));
  CHECK(sd.coefficients(5).history == 3);
  // F-PNDM: N + 9 model calls.
  PNDMSampler<double> f(schedule, {.grid = {.num_inference_steps = 20}});
  CHECK(f.num_inference_steps() == 29);
  CHECK(f.coefficients(3).sum_weight == 1.0);
  CHECK(f.coefficients(3).output_weight == Approx(1.0 / 6.0));
}

TEST_CASE("PNDMSampler (PLMS) converges at order 2", "[samplers][pndm][convergence]") {
  // Expected order 2: the transfer (S30) integrates eps exactly in sigma = sqrt((1 - a) / a) (x / sqrt(a)
  // moves by (sigma' - sigma) eps), but the Adams-Bashforth weights are those of a grid uniform in t, on
  // which sigma(t) is not linear: the combination averages eps over the interval in t, while the exact
  // increment weights it by dsigma/dt, a difference of O(h^3) per step (h = r / T), O(h^2) globally. The
  // start-up steps (second order) do not lower it. Measured with diffusers' PNDMScheduler itself (T = 16000,
  // N = 8 ... 128, the same runs): 2.05, 1.96, 2.11, 1.98 (skip_prk_steps), 2.03, 2.02, 2.12, 1.99 (F-PNDM).
  // Here: T = 16000 (a linear schedule with the betas of T = 1000 scaled by 1000 / T, so that alpha_bar(t) is
  // a smooth function sampled finely), trailing spacing (every run starts at T - 1), x at timestep 7999
  // (on every grid; the end at sigma = 0 is excluded, where sigma ~ sqrt(t) makes the last steps first order),
  // N = 16, 32, 64, 128 against N = 4000; the observed order log2(e_N / e_2N) within 2 +- 0.3. Measured here:
  // 1.86, 1.88, 2.05 (skip_prk_steps), 1.89, 1.90, 2.05 (F-PNDM).
  const int T = 16000;
  const auto schedule = ddpm::NoiseSchedule<double>::linear(T, 1e-4 * 1000 / T, 0.02 * 1000 / T);
  Tensor<double, 2> x_T(64, 2);
  ddpm::NoiseSource(8)(x_T);
  for (bool skip : {true, false}) {
    const auto reference = pndm_until(schedule, 4000, skip, T / 2 - 1, x_T);
    std::vector<double> err;
    for (int N : {16, 32, 64, 128}) err.push_back(median_error(pndm_until(schedule, N, skip, T / 2 - 1, x_T), reference));
    for (std::size_t k = 0; k + 1 < err.size(); ++k) {
      const double observed = std::log2(err[k] / err[k + 1]);
      INFO("skip_prk_steps " << skip << ": errors " << err[0] << " " << err[1] << " " << err[2] << " " << err[3]
                             << ", observed " << observed);
      CHECK(std::abs(observed - 2.0) < 0.3);
    }
  }
}

TEST_CASE("PNDMSampler (Stable Diffusion's PLMS, 50 steps) turns N(0, I) into the mixture", "[samplers][pndm][statistics]") {
  // Allowances as in statistics.test.cpp: 1.1 x the |bias| measured with 10^6 samples (the [.measure] test
  // below: weight 0.00147, mean 0.00438, spread 0.00241) + 0.0015 weight, 0.0045 mean, 0.0033 spread.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  PNDMSampler<double> plms(schedule, {.grid = {.steps_offset = 1}, .skip_prk_steps = true});
  check_mixture(plms, schedule, false, {0.0031, 0.0094, 0.0060}, 231);
}

TEST_CASE("PNDMSampler: mixture bias with 10^6 samples", "[.measure][pndm]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  PNDMSampler<double> plms(schedule, {.grid = {.steps_offset = 1}, .skip_prk_steps = true});
  check_mixture(plms, schedule, false, {}, 331, 1000000, true);
}

TEST_CASE("PNDMSampler: in order, bad input", "[samplers][pndm]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  CHECK_THROWS_WITH(PNDMSampler<double>(schedule, {.grid = {.num_inference_steps = 3}}),
                    Catch::Contains("num_inference_steps is 3") && Catch::Contains("[4, 1000]"));
  CHECK_NOTHROW(PNDMSampler<double>(schedule, {.grid = {.num_inference_steps = 3}, .skip_prk_steps = true}));
  CHECK_THROWS_WITH(PNDMSampler<double>(schedule, {.grid = {.num_inference_steps = 0}, .skip_prk_steps = true}),
                    Catch::Contains("num_inference_steps is 0"));
  CHECK_THROWS_AS(PNDMSampler<double>(schedule, {.grid = {.num_inference_steps = 1001}}), ddpm::invalid_argument);
  CHECK_THROWS_AS(PNDMSampler<double>(schedule, {.grid = {.steps_offset = -1}}), ddpm::invalid_argument);
  CHECK_THROWS_AS(PNDMSampler<double>(schedule, {.grid = {.timestep_spacing = static_cast<ddpm::TimestepSpacing>(7)}}),
                  ddpm::invalid_argument);
  PNDMSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 5}, .skip_prk_steps = true});
  Tensor<double, 2> x(3, 2), out(3, 2);
  x.setConstant(0.5);
  out.setConstant(0.1);
  sampler.step(0, out, x, ddpm::no_noise);
  CHECK_THROWS_WITH(sampler.step(2, out, x, ddpm::no_noise), Catch::Contains("must be 1"));
  Tensor<double, 2> other(4, 2), other_out(4, 2);
  other.setZero();
  other_out.setZero();
  CHECK_THROWS_AS(sampler.step(1, other_out, other, ddpm::no_noise), ddpm::invalid_argument);
  sampler.step(1, out, x, ddpm::no_noise);
  CHECK_THROWS_AS(sampler.coefficients(6), ddpm::invalid_argument);
  // Zero terminal SNR, trailing: alpha_bar[999] = 0; an epsilon prediction cannot be converted there, a
  // velocity can (diffusers divides by alpha_bar = 0).
  const auto zs = schedule.rescaled_zero_terminal_snr();
  PNDMSampler<double> z(zs, {.grid = {.num_inference_steps = 10, .timestep_spacing = ddpm::TimestepSpacing::trailing},
                             .skip_prk_steps = true});
  Tensor<double, 2> xz = x;
  CHECK_THROWS_WITH(z.step(0, out, xz, ddpm::no_noise), Catch::Contains("zero terminal SNR"));
  z.reset();
  z.step(0, out, xz, ddpm::no_noise, Prediction::velocity);
  for (Eigen::Index k = 0; k < xz.size(); ++k) CHECK(std::isfinite(xz.data()[k]));
}
