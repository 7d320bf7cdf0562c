// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// UniPCSampler against diffusers' UniPCMultistepScheduler (whole trajectories of
// tests/data/samplers/unipc.json, made by tests/reference/make_unipc_fixtures.py with diffusers' own class:
// bh1 / bh2, orders 1-3, predict_x0 true and false, every prediction kind, Karras and exponential sigmas,
// trailing and leading spacing, thresholding, disable_corrector, lower_order_final off, zero terminal SNR),
// its coefficients against closed forms and DPM-Solver++, the convergence order, the mixture statistics,
// bad input.                                                          [docs/samplers.md, Eqs. (S37)-(S39)]

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/unipc.hpp"
#include "ksampler_support.hpp"

using ddpm::UniPCOptions;
using ddpm::UniPCSampler;
using ddpm::UniPCSolverType;
using namespace ksampler_test;

namespace {

UniPCOptions unipc_options(const json& o) {
  UniPCOptions r;
  r.grid.num_inference_steps = o.at("num_inference_steps");
  r.grid.timestep_spacing = spacing_of(o.value("timestep_spacing", std::string("linspace")));
  r.grid.steps_offset = o.value("steps_offset", 0);
  r.solver_order = o.value("solver_order", 2);
  r.solver_type = o.value("solver_type", std::string("bh2")) == "bh1" ? UniPCSolverType::bh1 : UniPCSolverType::bh2;
  r.predict_x0 = o.value("predict_x0", true);
  r.lower_order_final = o.value("lower_order_final", true);
  r.disable_corrector = o.value("disable_corrector", std::vector<int>{});
  r.grid.use_karras_sigmas = o.value("use_karras_sigmas", false);
  if (o.value("use_exponential_sigmas", false)) r.grid.sigma_spacing = ddpm::SigmaSpacing::exponential;
  r.grid.final_sigma = o.value("final_sigmas_type", std::string("zero")) == "zero" ? ddpm::FinalSigma::zero
                                                                                   : ddpm::FinalSigma::sigma_min;
  if (o.value("thresholding", false)) {
    r.clipping = ddpm::Clipping::dynamic_threshold(o.at("dynamic_thresholding_ratio"), o.at("sample_max_value"));
  }
  return r;
}

// The fixture's model: the mixture's E[eps | x] at alpha_bar[t] as the case's kind, with alpha_bar = 0 (zero
// terminal SNR) replaced by 2^-24 as diffusers' scheduler and the generator do.
template <class S>
struct FixtureModel {
  ddpm::GaussianMixturePredictor<S> mixture;
  std::vector<double> alpha_bar;
  Prediction kind;
  FixtureModel(const ddpm::NoiseSchedule<S>& schedule, Prediction k)
      : mixture(fixture_mixture<S>(schedule)), alpha_bar(schedule.alphas_cumprod_double()), kind(k) {
    for (double& a : alpha_bar) a = a > 0.0 ? a : 0x1p-24;
  }
  Tensor<S, 2> operator()(const Tensor<S, 2>& x, int t) const {
    const double ab = alpha_bar[static_cast<std::size_t>(t)];
    Tensor<S, 2> eps(x.dimensions());
    mixture.predict_at(ab, x, eps);
    if (kind == Prediction::epsilon) return eps;
    Tensor<S, 2> out(x.dimensions());
    for (Eigen::Index i = 0; i < x.size(); ++i) {
      const double e = eps.data()[i], xv = x.data()[i];
      const double x0 = (xv - std::sqrt(1 - ab) * e) / std::sqrt(ab);
      out.data()[i] = static_cast<S>(kind == Prediction::sample ? x0 : std::sqrt(ab) * e - std::sqrt(1 - ab) * x0);
    }
    return out;
  }
};

// x at the last sigma of an explicit list (every step but the final one to 0), the mixture evaluated at each
// sigma exactly.
Tensor<double, 2> unipc_to_last_sigma(const ddpm::NoiseSchedule<double>& schedule, UniPCOptions o,
                                      const std::vector<double>& sigmas, const Tensor<double, 2>& x_T) {
  o.grid.sigmas = sigmas;
  UniPCSampler<double> sampler(schedule, o);
  return run_but_last(sampler, sampler.sigmas(), schedule, x_T);
}

}  // namespace

TEMPLATE_TEST_CASE("UniPCSampler follows diffusers' UniPCMultistepScheduler", "[samplers][unipc]", float, double) {
  // Tolerance, relative to max(|x|, 1), after every step: 1e-10 (double; rounding of ~1e-16 per operation over
  // <= 10 calls, the largest term sums ~4096 x (zero terminal SNR, noise form) stay far below). float:
  // max(traj_tol<float>, 2 x float32_deviation). traj_tol<float> = 3.5e-5 is ksampler_support.hpp's bound
  // (calls x amplification x 2^-24 and the float mixture's own rounding); these runs have <= 10 calls and
  // the generator measures an amplification <= 2.0 of a perturbation of x_T. float32_deviation is how far
  // diffusers' own float32 run strays from its float64 one (measured by the generator): 1e-7..1e-6 in the
  // data-prediction form, up to 6.6e-4 in the noise-prediction form, whose update sums terms growing as
  // e^h (4096 alpha_{i+1} / alpha_i after sigma_max under zero terminal SNR) into an O(1) result; ours
  // computes the coefficients in double and stays within half that (observed: 1.6e-4 where diffusers'
  // float32 strays 6.6e-4).
  using S = TestType;
  const json& f = fixture("unipc.json");
  const Eigen::Index B = f.at("shape")[0], D = f.at("shape")[1];
  const std::array<Eigen::Index, 2> dims{B, D};
  int n = 0;
  for (const json& c : f.at("cases")) {
    const json& o = c.at("options");
    INFO("case " << o.dump());
    const auto schedule = make_schedule<S>(c.at("schedule"));
    UniPCSampler<S> sampler(schedule, unipc_options(o));
    REQUIRE(sampler.timesteps() == c.at("timesteps").get<std::vector<int>>());
    const auto sigmas = numbers(c.at("sigmas"));
    REQUIRE(sampler.sigmas().size() == sigmas.size());
    for (std::size_t k = 0; k < sigmas.size(); ++k) {
      CHECK(std::abs(sampler.sigmas()[k] - sigmas[k]) <= 1e-13 * std::max(sigmas[k], 1.0));
    }
    const FixtureModel<S> model(schedule, kind_of(o.at("kind")));
    Tensor<S, 2> x = tensor<S, 2>(numbers(f.at("x_T")), dims);
    const json& xs = c.at("xs");
    const double tol = std::is_same_v<S, float> ? std::max(traj_tol<S>, 2 * c.at("float32_deviation").get<double>())
                                                : traj_tol<S>;
    for (int i = 0; i < sampler.num_inference_steps(); ++i) {
      const Tensor<S, 2> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
      sampler.step(i, out, x, ddpm::no_noise, model.kind);
      INFO("after step " << i);
      CHECK(worst_error(x, numbers(xs[static_cast<std::size_t>(i)])) <= tol);
    }
    ++n;
  }
  CHECK(n == 16);
}

TEST_CASE("UniPCSampler: a step to sigma = 0 returns x0 where diffusers' gives NaN", "[samplers][unipc]") {
  // At a final sigma of 0 diffusers' bh1 (B(h) = -h = -inf times a zero sum), its noise-prediction form
  // (sigma_t (e^h - 1) = 0 x inf) and its predictors of order >= 2 (r_k = 0) give NaN
  // (make_unipc_fixtures.py finds it so). The limit of (S37) as sigma_t -> 0 is first order: x0 form,
  // x <- m_i, the x0 the step also stores into x0_out; noise form, x <- x_c / alpha_i - sigma_i eps_i.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const FixtureModel<double> model(schedule, Prediction::epsilon);
  for (const bool predict_x0 : {true, false}) {
    for (const auto type : {UniPCSolverType::bh1, UniPCSolverType::bh2}) {
      for (const bool lower : {true, false}) {
        INFO("predict_x0 " << predict_x0 << ", bh" << (type == UniPCSolverType::bh1 ? 1 : 2) << ", lower_order_final " << lower);
        UniPCSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 6},
                                                .solver_order = 3,
                                                .solver_type = type,
                                                .predict_x0 = predict_x0,
                                                .lower_order_final = lower});
        Tensor<double, 2> x(5, 2), x0(5, 2);
        ddpm::NoiseSource(3)(x);
        for (int i = 0; i < 6; ++i) {
          const Tensor<double, 2> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
          sampler.step(i, out, x, ddpm::no_noise, x0);
        }
        const auto& c = sampler.coefficients(5);
        CHECK(c.predictor_order == 1);
        for (Eigen::Index k = 0; k < x.size(); ++k) CHECK(std::isfinite(x.data()[k]));
        const double s5 = sampler.sigmas()[5];
        REQUIRE(c.predictor.size() == 1);
        if (predict_x0) {
          CHECK(c.x_coef == 0.0);
          CHECK(c.predictor[0] == 1.0);
          CHECK(worst_error(x, std::vector<double>(x0.data(), x0.data() + x0.size())) == 0.0);
        } else {
          CHECK(c.x_coef == Approx(std::sqrt(1 + s5 * s5)).epsilon(1e-15));
          CHECK(c.predictor[0] == -s5);
        }
      }
    }
  }
}

TEST_CASE("UniPCSampler: coefficients against closed forms", "[samplers][unipc]") {
  // UniP-1 (x0 form) is DPM-Solver++(1): x <- (sigma_vp_{i+1} / sigma_vp_i) x - alpha_{i+1} (e^-h - 1) m_i.
  // UniC-1 with bh2 (rho = 1/2, B = e^-h - 1) is the trapezoidal rule in m:
  //   x_c = (sigma_vp_i / sigma_vp_{i-1}) x_prev - alpha_i (e^-h - 1) (m_{i-1} + m_i) / 2.
  // Every combination is consistent: with all m equal to m, the corrector's and predictor's m weights sum to
  // the first-order weight -alpha_t (e^hh - 1) (x0 form) (the D terms cancel), checked for every step of
  // orders 1-3, bh1 and bh2, both forms.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  UniPCSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 10}});
  const auto& s = sampler.sigmas();
  auto alpha = [](double sigma) { return 1.0 / std::sqrt(1.0 + sigma * sigma); };
  const auto& c0 = sampler.coefficients(0);
  CHECK(c0.predictor_order == 1);
  CHECK(c0.corrector_order == 0);
  const double h0 = std::log(s[0] / s[1]);
  CHECK(c0.x_coef == Approx(s[1] * alpha(s[1]) / (s[0] * alpha(s[0]))).epsilon(1e-14));
  CHECK(c0.predictor[0] == Approx(-alpha(s[1]) * std::expm1(-h0)).epsilon(1e-14));
  const auto& c1 = sampler.coefficients(1);
  REQUIRE(c1.corrector_order == 1);
  REQUIRE(c1.corrector.size() == 2);
  CHECK(c1.last_coef == Approx(c0.x_coef).epsilon(1e-14));
  CHECK(c1.corrector[0] == Approx(-alpha(s[1]) * std::expm1(-h0) / 2).epsilon(1e-13));
  CHECK(c1.corrector[1] == Approx(-alpha(s[1]) * std::expm1(-h0) / 2).epsilon(1e-13));
  CHECK(c1.predictor_order == 2);
  CHECK(sampler.coefficients(9).predictor_order == 1);  // lower_order_final: the last step
  for (const int order : {1, 2, 3}) {
    for (const auto type : {UniPCSolverType::bh1, UniPCSolverType::bh2}) {
      for (const bool predict_x0 : {true, false}) {
        UniPCSampler<double> u(schedule, {.grid = {.num_inference_steps = 12},
                                          .solver_order = order,
                                          .solver_type = type,
                                          .predict_x0 = predict_x0});
        const auto& sg = u.sigmas();
        for (int i = 0; i + 1 < u.num_inference_steps(); ++i) {
          INFO("order " << order << " step " << i << " predict_x0 " << predict_x0);
          auto first_order = [&](double from, double to) {
            const double h = std::log(from / to), hh = predict_x0 ? -h : h;
            return -(predict_x0 ? alpha(to) : to * alpha(to)) * std::expm1(hh);
          };
          const auto& c = u.coefficients(i);
          CHECK(c.predictor_order == std::min({order, i + 1, u.num_inference_steps() - i}));
          double sum = 0.0;
          for (double v : c.predictor) sum += v;
          CHECK(sum == Approx(first_order(sg[static_cast<std::size_t>(i)], sg[static_cast<std::size_t>(i + 1)])).epsilon(1e-12));
          if (i > 0) {
            CHECK(c.corrector_order == u.coefficients(i - 1).predictor_order);
            sum = 0.0;
            for (double v : c.corrector) sum += v;
            CHECK(sum == Approx(first_order(sg[static_cast<std::size_t>(i - 1)], sg[static_cast<std::size_t>(i)])).epsilon(1e-12));
          }
        }
      }
    }
  }
}

TEST_CASE("UniPCSampler: UniP-2 with bh2 and no corrector is DPM-Solver++(2M)", "[samplers][unipc]") {
  // rho = 1/2, B = e^-h - 1: -alpha B (m_i + (m_{i-1} - m_i) / (2 r_1)), r_1 = -r of DPM-Solver's midpoint
  // form (S11). With N = 20 >= 15 DPM-Solver lowers only its last step (to sigma = 0), as UniPC's
  // lower_order_final does; the trajectories agree to rounding.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  std::vector<int> all(20);
  for (int k = 0; k < 20; ++k) all[static_cast<std::size_t>(k)] = k;
  for (const bool karras : {false, true}) {
    UniPCSampler<double> unipc(
        schedule, {.grid = {.num_inference_steps = 20, .use_karras_sigmas = karras}, .disable_corrector = all});
    ddpm::DPMSolverMultistepSampler<double> dpm(schedule,
                                                {.grid = {.num_inference_steps = 20, .use_karras_sigmas = karras}});
    REQUIRE(unipc.timesteps() == dpm.timesteps());
    const auto model = fixture_mixture<double>(schedule);
    Tensor<double, 2> x(16, 2);
    ddpm::NoiseSource(5)(x);
    Tensor<double, 2> y = x;
    for (int i = 0; i < 20; ++i) {
      const int t = unipc.timesteps()[static_cast<std::size_t>(i)];
      unipc.step(i, model(x, t), x, ddpm::no_noise);
      dpm.step(i, model(y, t), y, ddpm::no_noise);
      CHECK(worst_error(x, std::vector<double>(y.data(), y.data() + y.size())) <= 1e-12);
    }
  }
}

TEST_CASE("UniPCSampler converges at its order", "[samplers][unipc][convergence]") {
  // Median error at sigma = 0.1 of runs from sigma = 10 over Karras lists of L = 17, 33, 65, 129 points, against
  // UniPC-3 (bh2, lower_order_final off) over 4097 points (its error ~ (128/4096)^3 of the L = 129 one's);
  // the observed order log2(e_L / e_2L) of the two finest pairs is checked. The last step computed (to the
  // list's last sigma) is a predictor whose result is not corrected, and the first steps warm up at lower
  // order:
  //   UniPC-1 (UniP-1 + UniC-1, order 2): 2;  UniP-2 alone (corrector disabled): 2;
  //   UniPC-2, bh1 and bh2, both forms: 3 (the corrected steps' local error O(h^4), the uncorrected last
  //   UniP-2 step's and the first, UniC-1-corrected, step's O(h^3));
  //   UniPC-3 (lower_order_final off): between 3 and 4: its warm-up step 0 (UniP-1 + UniC-1, local O(h^3))
  //   bounds the order by 3 as h -> 0, the rest is order 4 (measured: see INFO); checked >= 3 - 0.3 and
  //   < 4 + 0.3, and its finest error below UniPC-2's.
  // Within 0.3 of the expected order otherwise.
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  Tensor<double, 2> x_T(64, 2);
  ddpm::NoiseSource(8)(x_T);
  const auto reference = unipc_to_last_sigma(schedule, {.solver_order = 3, .lower_order_final = false},
                                             karras_list(0.1, 10.0, 4097), x_T);
  std::vector<int> all(200);
  for (int k = 0; k < 200; ++k) all[static_cast<std::size_t>(k)] = k;
  struct Case {
    const char* name;
    UniPCOptions options;
    double low, high;
  };
  const std::vector<Case> cases = {
      {"UniPC-1", {.solver_order = 1}, 1.7, 2.3},
      {"UniP-2", {.solver_order = 2, .disable_corrector = all}, 1.7, 2.3},
      {"UniPC-2 bh2", {.solver_order = 2}, 2.7, 3.3},
      {"UniPC-2 bh1", {.solver_order = 2, .solver_type = UniPCSolverType::bh1}, 2.7, 3.3},
      {"UniPC-2 bh2 eps form", {.solver_order = 2, .predict_x0 = false}, 2.7, 3.3},
      {"UniPC-3", {.solver_order = 3, .lower_order_final = false}, 2.7, 4.3},
  };
  double finest_2 = 0.0, finest_3 = 0.0;
  for (const Case& c : cases) {
    std::vector<double> err;
    for (int L : {17, 33, 65, 129}) err.push_back(median_error(unipc_to_last_sigma(schedule, c.options, karras_list(0.1, 10.0, L), x_T), reference));
    for (std::size_t k = 1; k + 1 < err.size(); ++k) {
      const double observed = std::log2(err[k] / err[k + 1]);
      INFO(c.name << ": errors " << err[0] << " " << err[1] << " " << err[2] << " " << err[3] << ", observed " << observed);
      CHECK(observed >= c.low);
      CHECK(observed < c.high);
    }
    if (std::string(c.name) == "UniPC-2 bh2") finest_2 = err.back();
    if (std::string(c.name) == "UniPC-3") finest_3 = err.back();
  }
  CHECK(finest_3 < finest_2);
}

TEST_CASE("UniPCSampler (20 steps) turns N(0, I) into the mixture", "[samplers][unipc][statistics]") {
  // Allowances as in statistics.test.cpp (1.1 x the |bias| measured with 10^6 samples + 0.0015 weight,
  // 0.0045 mean, 0.0033 spread). Measured (the [.measure] test below): weight 0.0015, mean 0.0066, spread
  // 0.0202 (DPM-Solver++(2M) with 20 steps: 0.0008, 0.0077, 0.0217).
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  UniPCSampler<double> unipc(schedule, {.grid = {.num_inference_steps = 20}});
  check_mixture(unipc, schedule, false, {0.0031, 0.0118, 0.0255}, 213);
}

TEST_CASE("UniPCSampler: mixture bias with 10^6 samples", "[.measure][unipc]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  UniPCSampler<double> unipc(schedule, {.grid = {.num_inference_steps = 20}});
  check_mixture(unipc, schedule, false, {}, 313, 1000000, true);
}

TEST_CASE("UniPCSampler: learned-variance output, x0_out, sample()", "[samplers][unipc]") {
  // A (B, 2C, H, W) output steps as its first C channels; x0_out holds the bounded x0 (data form) or the
  // x0 of the output (noise form); the step never draws noise; sample() runs it (the Sampler concept).
  static_assert(ddpm::Sampler<UniPCSampler<float>, float, 4>);
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  for (const bool predict_x0 : {true, false}) {
    const ddpm::Clipping bound = predict_x0 ? ddpm::Clipping::dynamic_threshold(0.9, 1.5) : ddpm::Clipping::none();
    UniPCSampler<double> a(
        schedule, {.grid = {.num_inference_steps = 5}, .solver_order = 3, .predict_x0 = predict_x0, .clipping = bound});
    UniPCSampler<double> b(
        schedule, {.grid = {.num_inference_steps = 5}, .solver_order = 3, .predict_x0 = predict_x0, .clipping = bound});
    Tensor<double, 4> x(2, 3, 4, 4), wide(2, 6, 4, 4), x0(2, 3, 4, 4);
    ddpm::NoiseSource noise(11);
    noise(x);
    noise(wide);
    wide = wide * 2.0;
    Tensor<double, 4> y = x;
    ddpm::NoiseSource unused(1);
    for (int i = 0; i < 5; ++i) {
      const Tensor<double, 4> narrow = wide.slice(Eigen::array<Eigen::Index, 4>{0, 0, 0, 0}, Eigen::array<Eigen::Index, 4>{2, 3, 4, 4});
      const double ab = 1.0 / (1.0 + a.sigmas()[static_cast<std::size_t>(i)] * a.sigmas()[static_cast<std::size_t>(i)]);
      Tensor<double, 4> expected_x0 = x * std::sqrt(1.0 / ab) - narrow * std::sqrt((1.0 - ab) / ab);
      std::vector<double> scratch;
      if (predict_x0) ddpm::detail::apply_clipping(bound, expected_x0.data(), 2, 48, scratch);
      a.step(i, wide, x, unused, x0);
      b.step(i, narrow, y, ddpm::no_noise);
      CHECK(worst_error(x, std::vector<double>(y.data(), y.data() + y.size())) == 0.0);
      CHECK(worst_error(x0, std::vector<double>(expected_x0.data(), expected_x0.data() + expected_x0.size())) <= 1e-14);
    }
    CHECK(unused.offset() == 0);
  }
  UniPCSampler<double> s(schedule, {.grid = {.num_inference_steps = 8}});
  Tensor<double, 2> x_T(50, 2);
  ddpm::NoiseSource(4)(x_T);
  int calls = 0;
  const auto model = fixture_mixture<double>(schedule);
  const Tensor<double, 2> out = ddpm::sample(s, model, x_T, ddpm::no_noise,
                                            [&](int i, int, const Tensor<double, 2>&, const Tensor<double, 2>&) { CHECK(i == calls++); });
  CHECK(calls == 8);
  Tensor<double, 2> by_hand = x_T;
  for (int i = 0; i < 8; ++i) s.step(i, model(by_hand, s.timesteps()[static_cast<std::size_t>(i)]), by_hand, ddpm::no_noise);
  CHECK(worst_error(out, std::vector<double>(by_hand.data(), by_hand.data() + by_hand.size())) == 0.0);
}

TEST_CASE("UniPCSampler: in order, bad input", "[samplers][unipc]") {
  using Catch::Matchers::Contains;
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  UniPCSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 5}});
  Tensor<double, 2> x(3, 2), out(3, 2);
  x.setConstant(0.5);
  out.setConstant(0.1);
  sampler.step(0, out, x, ddpm::no_noise);
  CHECK_THROWS_AS(sampler.step(2, out, x, ddpm::no_noise), ddpm::invalid_argument);
  Tensor<double, 2> other(4, 2), other_out(4, 2);
  other.setZero();
  other_out.setZero();
  CHECK_THROWS_AS(sampler.step(1, other_out, other, ddpm::no_noise), ddpm::invalid_argument);
  sampler.step(1, out, x, ddpm::no_noise);
  CHECK_THROWS_AS(sampler.coefficients(5), ddpm::invalid_argument);
  using U = UniPCSampler<double>;
  CHECK_THROWS_WITH(U(schedule, {.solver_order = 0}), Contains("solver_order is 0") && Contains("1, 2 or 3"));
  CHECK_THROWS_WITH(U(schedule, {.solver_order = 4}), Contains("solver_order is 4"));
  CHECK_THROWS_WITH(U(schedule, {.solver_type = static_cast<UniPCSolverType>(7)}),
                    Contains("solver_type is UniPCSolverType(7)") && Contains("bh1 or bh2"));
  CHECK_THROWS_WITH(U(schedule, {.disable_corrector = {1, -2}}), Contains("disable_corrector[1] is -2"));
  CHECK_THROWS_WITH(U(schedule, {.predict_x0 = false, .clipping = ddpm::Clipping::clip(1.0)}),
                    Contains("clipping is clip and predict_x0 is false"));
  CHECK_THROWS_WITH(U(schedule, {.grid = {.num_inference_steps = 1001}}), Contains("num_inference_steps is 1001"));
  CHECK_THROWS_AS(U(schedule, {.grid = {.use_karras_sigmas = true, .sigma_spacing = ddpm::SigmaSpacing::exponential}}),
                  ddpm::invalid_argument);
  CHECK_THROWS_AS(U(schedule, {.clipping = ddpm::Clipping::dynamic_threshold(1.5)}), ddpm::invalid_argument);
  CHECK_THROWS_AS(U(schedule, {.grid = {.num_inference_steps = 5, .timesteps = {10, 20}}}), ddpm::invalid_argument);
}
