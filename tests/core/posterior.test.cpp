// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// The posterior q(x_{t-1} | x_t, x0) and the eps / x0 / v conversions against the float64 NumPy reference
// (tests/data/core/posterior.json, written by tests/reference/make_core_fixtures.py), in every argument
// form; Bayes' rule on a grid; round trips; preconditions.         [docs/math.md, Eqs. (5)-(8), (14)-(15)]

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "core_fixtures.hpp"
#include "ddpm/posterior.hpp"

using ddpm_test::compare_lincomb;
using ddpm_test::json;
using ddpm_test::numbers;
using ddpm_test::rel_tol;

namespace {

constexpr int R = 4;
using Dims = std::array<Eigen::Index, R>;

/// For each schedule and timestep of the reference file that has `function`, runs it in every argument
/// form (ddpm_test::run_all_forms) on the inputs named x_name and y_name, and compares with the file
/// (criterion and scale |a||x| + |c||y|: see core_fixtures.hpp).
template <class S, class Ret, class Into>
void check_against_reference(const std::string& function, const char* x_name, const char* y_name, Ret&& ret,
                             Into&& into) {
  const json& fx = ddpm_test::core_fixture("posterior.json");
  const Dims dims = ddpm_test::dims_from<R>(fx.at("shape"));
  const auto x = numbers(fx.at("inputs").at(x_name));
  const auto y = numbers(fx.at("inputs").at(y_name));
  for (const json& entry : fx.at("schedules")) {
    INFO("schedule " << entry.at("name").get<std::string>() << ", " << function);
    const auto s = ddpm_test::make_schedule<S>(entry.at("recipe"));
    int checked = 0;
    for (int t : fx.at("timesteps").get<std::vector<int>>()) {
      const std::string key = std::to_string(t);
      if (!entry.at(function).contains(key)) continue;  // predict_x0_from_eps at a zero-SNR terminal step
      INFO("t = " << t);
      const json& c = entry.at(function).at(key);
      const json& expected = c.contains("out") ? c.at("out") : c.at("mean");
      for (const auto& [form, actual] : ddpm_test::run_all_forms<S, R>(
               x, y, dims, [&](const auto& a, const auto& b) { return ret(s, a, t, b); },
               [&](const auto& a, const auto& b, auto& out) { into(s, a, t, b, out); })) {
        INFO(form);
        const auto r =
            compare_lincomb(actual, expected, rel_tol<S>, c.at("coef"), x, y, static_cast<std::size_t>(dims[0]));
        INFO(r.message);
        CHECK(r.ok);
      }
      ++checked;
    }
    CHECK(checked >= 3);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("q_posterior matches the NumPy reference (Eq. 7)", "[posterior][fixture]", float, double) {
  using S = TestType;
  check_against_reference<S>(
      "q_posterior", "x0", "x_t",
      [](const auto& s, const auto& x0, int t, const auto& xt) { return ddpm::q_posterior(s, x0, xt, t).mean; },
      [](const auto& s, const auto& x0, int t, const auto& xt, auto& out) { ddpm::q_posterior_mean(s, x0, xt, t, out); });

  // The variance and its clipped log: scalars computed in double and cast, pure relative error; the
  // variance at t = 0 is exactly 0.
  const json& fx = ddpm_test::core_fixture("posterior.json");
  const Dims dims = ddpm_test::dims_from<R>(fx.at("shape"));
  const auto x0 = ddpm_test::tensor_from<S, R>(numbers(fx.at("inputs").at("x0")), dims);
  const auto xt = ddpm_test::tensor_from<S, R>(numbers(fx.at("inputs").at("x_t")), dims);
  for (const json& entry : fx.at("schedules")) {
    INFO("schedule " << entry.at("name").get<std::string>());
    const auto s = ddpm_test::make_schedule<S>(entry.at("recipe"));
    for (int t : fx.at("timesteps").get<std::vector<int>>()) {
      INFO("t = " << t);
      const json& c = entry.at("q_posterior").at(std::to_string(t));
      const auto g = ddpm::q_posterior(s, x0, xt, t);
      CHECK(ddpm_test::close(g.variance, ddpm_test::number(c.at("variance")), rel_tol<S>, 0.0));
      CHECK(ddpm_test::close(g.log_variance, ddpm_test::number(c.at("log_variance")), rel_tol<S>, 0.0));
    }
  }
}

TEMPLATE_TEST_CASE("predict_x0_from_eps and predict_eps_from_x0 match the NumPy reference (Eq. 8)",
                   "[posterior][fixture]", float, double) {
  using S = TestType;
  check_against_reference<S>(
      "predict_x0_from_eps", "x_t", "eps",
      [](const auto& s, const auto& xt, int t, const auto& eps) { return ddpm::predict_x0_from_eps(s, xt, t, eps); },
      [](const auto& s, const auto& xt, int t, const auto& eps, auto& out) { ddpm::predict_x0_from_eps(s, xt, t, eps, out); });
  check_against_reference<S>(
      "predict_eps_from_x0", "x_t", "x0",
      [](const auto& s, const auto& xt, int t, const auto& x0) { return ddpm::predict_eps_from_x0(s, xt, t, x0); },
      [](const auto& s, const auto& xt, int t, const auto& x0, auto& out) { ddpm::predict_eps_from_x0(s, xt, t, x0, out); });
}

TEMPLATE_TEST_CASE("velocity conversions match the NumPy reference (Eqs. 14, 15)", "[posterior][fixture]", float,
                   double) {
  using S = TestType;
  check_against_reference<S>(
      "predict_v", "x0", "eps",
      [](const auto& s, const auto& x0, int t, const auto& eps) { return ddpm::predict_v(s, x0, t, eps); },
      [](const auto& s, const auto& x0, int t, const auto& eps, auto& out) { ddpm::predict_v(s, x0, t, eps, out); });
  check_against_reference<S>(
      "predict_x0_from_v", "x_t", "v",
      [](const auto& s, const auto& xt, int t, const auto& v) { return ddpm::predict_x0_from_v(s, xt, t, v); },
      [](const auto& s, const auto& xt, int t, const auto& v, auto& out) { ddpm::predict_x0_from_v(s, xt, t, v, out); });
  check_against_reference<S>(
      "predict_eps_from_v", "x_t", "v",
      [](const auto& s, const auto& xt, int t, const auto& v) { return ddpm::predict_eps_from_v(s, xt, t, v); },
      [](const auto& s, const auto& xt, int t, const auto& v, auto& out) { ddpm::predict_eps_from_v(s, xt, t, v, out); });
}

TEST_CASE("q_posterior is the normalised product of the two Gaussians of Bayes' rule (Eq. 7)", "[posterior]") {
  // q(x_{t-1} | x_t, x0)  is proportional to  q(x_t | x_{t-1}) q(x_{t-1} | x0)
  //   = N(x_t; sqrt(alpha_t) x_{t-1}, beta_t) * N(x_{t-1}; sqrt(alpha_bar_{t-1}) x0, 1 - alpha_bar_{t-1}).
  // The product is evaluated on a uniform grid of x_{t-1} (in log space, less its maximum), normalised by
  // its sum, and its mean and variance are compared with q_posterior's.
  // Grid: as functions of x_{t-1} the two factors peak at x_t / sqrt(alpha_t) (std sqrt(beta_t / alpha_t))
  // and sqrt(alpha_bar_{t-1}) x0 (std sqrt(1 - alpha_bar_{t-1})). The grid runs from the lower peak less
  // 12 max(std) to the higher peak plus 12 max(std), with spacing h = min(std) / 40. The posterior mean lies
  // between the peaks and its std is at least min(std) / sqrt(2), so the grid covers it to >= 12 std
  // (truncation ~ e^-72) with h <= std / 28, where a Riemann sum of a Gaussian is exact to
  // ~exp(-2 pi^2 28^2). What remains is rounding (~1e-13 of the std). Tolerance: the mean to 1e-8 of the
  // posterior std, the variance to 1e-8 relative.
  // When alpha_t = 0 (the zero-SNR terminal step) the first factor is flat and the posterior is the prior.
  using N = ddpm::NoiseSchedule<double>;
  struct Case {
    const char* name;
    N schedule;
    std::vector<int> ts;
  };
  const std::vector<Case> cases{
      {"linear", N::linear(), {1, 2, 10, 500, 998, 999}},
      {"cosine", N::cosine(), {1, 2, 10, 500, 998, 999}},
      {"zero-SNR linear", N::linear().rescaled_zero_terminal_snr(), {1, 500, 998, 999}},
      {"scaled_linear(10)", N::scaled_linear(10), {1, 2, 3, 4, 5, 6, 7, 8, 9}},
  };
  const std::array<double, 3> x0v{-1.3, 0.4, 2.0}, n1{0.7, -1.1, 0.2}, n2{-1.3, 0.5, 1.9};
  for (const Case& c : cases) {
    for (int t : c.ts) {
      INFO(c.name << ", t = " << t);
      const double beta = c.schedule.betas_double()[t];
      const double alpha = 1.0 - beta;
      const double ab_prev = c.schedule.alphas_cumprod_double()[t - 1];
      ddpm::Tensor<double, 1> x0(3), xt(3);
      for (int b = 0; b < 3; ++b) {
        const double x_prev = std::sqrt(ab_prev) * x0v[b] + std::sqrt(1.0 - ab_prev) * n1[b];
        x0(b) = x0v[b];
        xt(b) = std::sqrt(alpha) * x_prev + std::sqrt(beta) * n2[b];
      }
      const auto g = ddpm::q_posterior(c.schedule, x0, xt, t);
      for (int b = 0; b < 3; ++b) {
        const double prior_mean = std::sqrt(ab_prev) * x0v[b], prior_std = std::sqrt(1.0 - ab_prev);
        double lo = prior_mean - 12 * prior_std, hi = prior_mean + 12 * prior_std, h = prior_std / 40;
        if (alpha > 0) {
          const double lik_peak = xt(b) / std::sqrt(alpha), lik_std = std::sqrt(beta / alpha);
          const double wide = std::max(prior_std, lik_std);
          lo = std::min(prior_mean, lik_peak) - 12 * wide;
          hi = std::max(prior_mean, lik_peak) + 12 * wide;
          h = std::min(prior_std, lik_std) / 40;
        }
        const auto n = static_cast<long>(std::ceil((hi - lo) / h)) + 1;
        REQUIRE(n < 2'000'000);
        auto log_w = [&](double x) {
          double lw = -(x - prior_mean) * (x - prior_mean) / (2 * (1.0 - ab_prev));
          if (alpha > 0) lw -= (xt(b) - std::sqrt(alpha) * x) * (xt(b) - std::sqrt(alpha) * x) / (2 * beta);
          return lw;
        };
        double max_lw = -std::numeric_limits<double>::infinity();
        for (long k = 0; k < n; ++k) max_lw = std::max(max_lw, log_w(lo + k * h));
        double z = 0, m1 = 0;
        for (long k = 0; k < n; ++k) {
          const double x = lo + k * h, w = std::exp(log_w(x) - max_lw);
          z += w;
          m1 += w * x;
        }
        const double mean = m1 / z;
        double m2 = 0;
        for (long k = 0; k < n; ++k) {
          const double x = lo + k * h;
          m2 += std::exp(log_w(x) - max_lw) * (x - mean) * (x - mean);
        }
        const double var = m2 / z;
        INFO("element " << b << ": grid mean " << ddpm_test::fmt(mean) << " var " << ddpm_test::fmt(var)
                        << "; q_posterior mean " << ddpm_test::fmt(g.mean(b)) << " var " << ddpm_test::fmt(g.variance));
        CHECK(std::abs(g.mean(b) - mean) <= 1e-8 * std::sqrt(var));
        CHECK(std::abs(g.variance - var) <= 1e-8 * var);
      }
    }
  }
}

TEMPLATE_TEST_CASE("q_posterior at t = 0 is the point mass at x0", "[posterior]", float, double) {
  // coef1[0] = beta_0 / (1 - alpha_bar_0) = 1 and coef2[0] = 0 (alpha_bar_prev = 1): the mean is x0 up to the
  // rounding of 1 - (1 - beta_0), a relative 1e-16 / beta_0 ~ 1e-12 for beta_0 = 1e-4 (tolerance 1e-11 for
  // double; the float cast dominates for float); the variance is exactly 0.
  using S = TestType;
  const double tol = std::is_same_v<S, float> ? 1e-6 : 1e-11;
  const json& fx = ddpm_test::core_fixture("posterior.json");
  const Dims dims = ddpm_test::dims_from<R>(fx.at("shape"));
  const auto x0v = numbers(fx.at("inputs").at("x0"));
  const auto x0 = ddpm_test::tensor_from<S, R>(x0v, dims);
  const auto xt = ddpm_test::tensor_from<S, R>(numbers(fx.at("inputs").at("x_t")), dims);
  for (const auto& s : {ddpm::NoiseSchedule<S>::linear(), ddpm::NoiseSchedule<S>::cosine()}) {
    const auto g = ddpm::q_posterior(s, x0, xt, 0);
    CHECK(g.variance == S(0));
    CHECK(s.posterior_mean_coef2()[0] == S(0));
    const auto r = ddpm_test::compare(ddpm_test::to_doubles(g.mean), x0v, tol);
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEMPLATE_TEST_CASE("conversions round-trip: x0 <-> eps, v <-> eps, v <-> x0", "[posterior]", float, double) {
  // Each bound below is K * epsilon(S) times the sum of the magnitudes the result is computed from (its
  // condition), with K = 8 (each bound is a handful of roundings, each <= epsilon / 2 of its term).
  // With a = sqrt(alpha_bar), c = sqrt(1 - alpha_bar):
  //   x_t = a x0 + c eps,  v = a eps - c x0                        (q_sample, predict_v)
  //   x0 -> v -> (x0, eps):  rotations;       |err| <= K eps_S (|x0| + |eps|)
  //   eps' = (x_t - a x0) / c:                |err| <= K eps_S (|x_t| / c + a |x0| / c + |eps|)
  //   x0'  = (x_t - c eps) / a:               |err| <= K eps_S (|x_t| / a + c |eps| / a + |x0|)
  //   x0 -> eps' -> x0'':                     |err| <= K eps_S (2 |x_t| / a + c |eps'| / a + |x0|)
  using S = TestType;
  using N = ddpm::NoiseSchedule<S>;
  const double K = 8 * std::numeric_limits<S>::epsilon();
  const json& fx = ddpm_test::core_fixture("posterior.json");
  const Dims dims = ddpm_test::dims_from<R>(fx.at("shape"));
  const auto x0 = ddpm_test::tensor_from<S, R>(numbers(fx.at("inputs").at("x0")), dims);
  const auto eps = ddpm_test::tensor_from<S, R>(numbers(fx.at("inputs").at("eps")), dims);
  for (const auto& [name, s] : std::vector<std::pair<std::string, N>>{
           {"linear", N::linear()}, {"cosine", N::cosine()}, {"zero-SNR linear", N::linear().rescaled_zero_terminal_snr()}}) {
    for (int t : {0, 1, 250, 500, 998, 999}) {
      INFO(name << ", t = " << t);
      const double ab = s.alphas_cumprod_double()[t];
      const double a = std::sqrt(ab), c = std::sqrt(1.0 - ab);
      const auto xt = ddpm::q_sample(s, x0, t, eps);
      const auto v = ddpm::predict_v(s, x0, t, eps);
      const auto x0_v = ddpm::predict_x0_from_v(s, xt, t, v);
      const auto eps_v = ddpm::predict_eps_from_v(s, xt, t, v);
      const auto eps_x0 = ddpm::predict_eps_from_x0(s, xt, t, x0);
      for (Eigen::Index i = 0; i < x0.size(); ++i) {
        const double x = x0.data()[i], e = eps.data()[i], y = xt.data()[i];
        INFO("element " << i);
        REQUIRE(std::abs(x0_v.data()[i] - x) <= K * (std::abs(x) + std::abs(e)));
        REQUIRE(std::abs(eps_v.data()[i] - e) <= K * (std::abs(x) + std::abs(e)));
        REQUIRE(std::abs(eps_x0.data()[i] - e) <= K * (std::abs(y) / c + a * std::abs(x) / c + std::abs(e)));
      }
      if (ab == 0.0) continue;  // eps does not determine x0 at a zero-SNR terminal step
      const auto x0_eps = ddpm::predict_x0_from_eps(s, xt, t, eps);
      const auto x0_back = ddpm::predict_x0_from_eps(s, xt, t, eps_x0);
      for (Eigen::Index i = 0; i < x0.size(); ++i) {
        const double x = x0.data()[i], e = eps.data()[i], y = xt.data()[i], e2 = eps_x0.data()[i];
        INFO("element " << i);
        REQUIRE(std::abs(x0_eps.data()[i] - x) <= K * (std::abs(y) / a + c * std::abs(e) / a + std::abs(x)));
        REQUIRE(std::abs(x0_back.data()[i] - x) <= K * (2 * std::abs(y) / a + c * std::abs(e2) / a + std::abs(x)));
      }
    }
  }
}

TEMPLATE_TEST_CASE("posterior and conversions: bad arguments throw ddpm::invalid_argument", "[posterior][errors]",
                   float, double) {
  using S = TestType;
  using T4 = ddpm::Tensor<S, 4>;
  const auto s = ddpm::NoiseSchedule<S>::linear(100);
  T4 x(3, 2, 4, 4), y(3, 2, 4, 4), out;
  x.setConstant(S(0.5));
  y.setConstant(S(-0.25));

  // Every kernel, called as f(schedule, first, t, second) with its returning and out-parameter forms.
  auto each = [&](auto&& check) {
    check("q_posterior", [&](const auto& a, int t, const auto& b) { (void)ddpm::q_posterior(s, a, b, t); },
          [&](const auto& a, int t, const auto& b, auto& o) { ddpm::q_posterior_mean(s, a, b, t, o); });
    check("predict_x0_from_eps", [&](const auto& a, int t, const auto& b) { (void)ddpm::predict_x0_from_eps(s, a, t, b); },
          [&](const auto& a, int t, const auto& b, auto& o) { ddpm::predict_x0_from_eps(s, a, t, b, o); });
    check("predict_eps_from_x0", [&](const auto& a, int t, const auto& b) { (void)ddpm::predict_eps_from_x0(s, a, t, b); },
          [&](const auto& a, int t, const auto& b, auto& o) { ddpm::predict_eps_from_x0(s, a, t, b, o); });
    check("predict_v", [&](const auto& a, int t, const auto& b) { (void)ddpm::predict_v(s, a, t, b); },
          [&](const auto& a, int t, const auto& b, auto& o) { ddpm::predict_v(s, a, t, b, o); });
    check("predict_x0_from_v", [&](const auto& a, int t, const auto& b) { (void)ddpm::predict_x0_from_v(s, a, t, b); },
          [&](const auto& a, int t, const auto& b, auto& o) { ddpm::predict_x0_from_v(s, a, t, b, o); });
    check("predict_eps_from_v", [&](const auto& a, int t, const auto& b) { (void)ddpm::predict_eps_from_v(s, a, t, b); },
          [&](const auto& a, int t, const auto& b, auto& o) { ddpm::predict_eps_from_v(s, a, t, b, o); });
  };

  SECTION("t outside [0, T)") {
    each([&](const char* fn, auto&& ret, auto&& into) {
      INFO(fn);
      for (int t : {-1, 100, 1000, -1000}) {
        INFO("t = " << t);
        CHECK_THROWS_AS(ret(x, t, y), ddpm::invalid_argument);
        CHECK_THROWS_AS(into(x, t, y, out), ddpm::invalid_argument);
      }
      CHECK_NOTHROW(ret(x, 99, y));
      CHECK_NOTHROW(ret(x, 0, y));
      CHECK_THROWS_WITH(ret(x, 100, y), Catch::Contains(fn) && Catch::Contains("t is 100"));
    });
  }
  SECTION("a second tensor of another shape") {
    each([&](const char* fn, auto&& ret, auto&& into) {
      INFO(fn);
      for (const T4& bad : {T4(3, 2, 4, 5), T4(2, 2, 4, 4), T4(3, 2, 16, 1)}) {
        CHECK_THROWS_AS(ret(x, 5, bad), ddpm::invalid_argument);
        CHECK_THROWS_AS(ret(bad, 5, x), ddpm::invalid_argument);
        CHECK_THROWS_AS(into(x, 5, bad, out), ddpm::invalid_argument);
        CHECK_THROWS_AS(ret(x, 5, ddpm::ConstTensorMap<S, 4>(bad.data(), bad.dimensions())), ddpm::invalid_argument);
      }
    });
  }
  SECTION("a TensorMap out of the wrong shape") {
    each([&](const char* fn, auto&&, auto&& into) {
      INFO(fn);
      std::vector<S> buf(96);
      ddpm::TensorMap<S, 4> wrong(buf.data(), 3, 2, 2, 8);
      CHECK_THROWS_AS(into(x, 5, y, wrong), ddpm::invalid_argument);
      ddpm::TensorMap<S, 4> right(buf.data(), 3, 2, 4, 4);
      CHECK_NOTHROW(into(x, 5, y, right));
    });
  }
  SECTION("an empty batch") {
    T4 empty(0, 2, 4, 4);
    each([&](const char* fn, auto&& ret, auto&&) {
      INFO(fn);
      CHECK_THROWS_AS(ret(empty, 5, empty), ddpm::invalid_argument);
    });
  }
  SECTION("predict_x0_from_eps at a zero-SNR terminal step") {
    const auto z = ddpm::NoiseSchedule<S>::linear(100).rescaled_zero_terminal_snr();
    CHECK_THROWS_AS(ddpm::predict_x0_from_eps(z, x, 99, y), ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::predict_x0_from_eps(z, x, 99, y, out), ddpm::invalid_argument);
    CHECK_THROWS_WITH(ddpm::predict_x0_from_eps(z, x, 99, y), Catch::Contains("zero terminal SNR"));
    CHECK_NOTHROW(ddpm::predict_x0_from_eps(z, x, 98, y));
    // ... also after respacing that keeps the terminal step.
    const auto r = ddpm::respace(z, ddpm::respacing_timesteps(100, "10"));
    CHECK_THROWS_AS(ddpm::predict_x0_from_eps(r, x, r.num_train_timesteps() - 1, y), ddpm::invalid_argument);
    // The other conversions are defined there: eps_from_x0 returns x_t, the v forms are finite.
    const auto e = ddpm::predict_eps_from_x0(z, x, 99, y);
    CHECK(ddpm_test::to_doubles(e) == ddpm_test::to_doubles(x));
    const auto x0 = ddpm::predict_x0_from_v(z, x, 99, y);
    CHECK(ddpm_test::to_doubles(x0) == std::vector<double>(96, 0.25));
  }
}

TEST_CASE("x0_conversion and eps_conversion: the closed forms, without cancellation", "[posterior][conversion]") {
  using ddpm::Prediction;
  // Against the long-double closed forms of Eqs. (8) and (15), at noise levels down to 1 - a = 1e-12, where
  // the cancelling sqrt(1 / a - 1) keeps only about 4 digits; each coefficient here is a few roundings.
  for (const double a : {1e-6, 0.01, 0.5, 0.9, 0.9999, 1.0 - 1e-8, 1.0 - 1e-12}) {
    INFO("alpha_bar = " << a);
    const long double al = a, om = 1.0L - al;
    const ddpm::Conversion x_eps = ddpm::x0_conversion(Prediction::epsilon, a);
    CHECK(x_eps.from_x == Approx(static_cast<double>(std::sqrt(1.0L / al))).epsilon(1e-15));
    CHECK(x_eps.from_output == Approx(static_cast<double>(-std::sqrt(om / al))).epsilon(1e-15));
    const ddpm::Conversion x_v = ddpm::x0_conversion(Prediction::velocity, a);
    CHECK(x_v.from_x == Approx(static_cast<double>(std::sqrt(al))).epsilon(1e-15));
    CHECK(x_v.from_output == Approx(static_cast<double>(-std::sqrt(om))).epsilon(1e-15));
    const ddpm::Conversion e_x0 = ddpm::eps_conversion(Prediction::sample, a);
    CHECK(e_x0.from_x == Approx(static_cast<double>(1.0L / std::sqrt(om))).epsilon(1e-15));
    CHECK(e_x0.from_output == Approx(static_cast<double>(-std::sqrt(al / om))).epsilon(1e-15));
    const ddpm::Conversion e_v = ddpm::eps_conversion(Prediction::velocity, a);
    CHECK(e_v.from_x == Approx(static_cast<double>(std::sqrt(om))).epsilon(1e-15));
    CHECK(e_v.from_output == Approx(static_cast<double>(std::sqrt(al))).epsilon(1e-15));
    // Identities: x0 = output and eps = output for the kind that is the output itself.
    CHECK(ddpm::x0_conversion(Prediction::sample, a).from_output == 1.0);
    CHECK(ddpm::x0_conversion(Prediction::sample, a).from_x == 0.0);
    CHECK(ddpm::eps_conversion(Prediction::epsilon, a).from_output == 1.0);
    CHECK(ddpm::eps_conversion(Prediction::epsilon, a).from_x == 0.0);
    // Round trip: x_t = sqrt(a) x0 + sqrt(1 - a) eps; x0 from (x_t, eps) then eps from (x_t, x0).
    const double x0 = 0.7, eps = -1.3;
    const double xt = static_cast<double>(std::sqrt(al) * 0.7L + std::sqrt(om) * -1.3L);
    const double x0_back = x_eps.from_x * xt + x_eps.from_output * eps;
    const double eps_back = e_x0.from_x * xt + e_x0.from_output * x0;
    CHECK(x0_back == Approx(x0).margin(1e-15 / std::sqrt(a)));
    CHECK(eps_back == Approx(eps).margin(1e-15 / std::sqrt(1.0 - a)));
  }
  CHECK_THROWS_AS(ddpm::x0_conversion(static_cast<Prediction>(7), 0.5), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::eps_conversion(static_cast<Prediction>(7), 0.5), ddpm::invalid_argument);
}
