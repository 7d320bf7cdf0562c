// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// NoiseSchedule, space_timesteps and respace against the float64 NumPy reference
// (tests/data/core/{schedules,spacing}.json, written by tests/reference/make_core_fixtures.py), their
// invariants, and their preconditions.                          [docs/math.md, Eqs. (1)-(3), (9)-(13)]

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "core_fixtures.hpp"
#include "ddpm/schedule.hpp"

using ddpm_test::compare;
using ddpm_test::json;
using ddpm_test::numbers;
using ddpm_test::rel_tol;

namespace {

template <class S>
using Accessor = const typename ddpm::NoiseSchedule<S>::Array& (ddpm::NoiseSchedule<S>::*)() const;

/// Every per-timestep array, with the error scale its comparison uses (see core_fixtures.hpp).
///  - betas and alphas: a beta that is computed as 1 - ratio (cosine, the zero-SNR rescale) carries an
///    absolute rounding error of a few ulp(1) = 2.2e-16, however small the beta; scale 1e-2 admits an
///    absolute 1e-14 (double) while still checking a beta of 1e-4 to 1e-10 relative.
///  - everything else is a product, quotient, root or log of well-conditioned values: pure relative
///    error (scale 0), except the exact zeros (posterior_variance[0], snr[T-1]), which must be exact.
template <class S>
std::vector<std::pair<std::string, std::pair<Accessor<S>, double>>> schedule_arrays() {
  using N = ddpm::NoiseSchedule<S>;
  return {
      {"betas", {&N::betas, 1e-2}},
      {"alphas", {&N::alphas, 0.0}},
      {"alphas_cumprod", {&N::alphas_cumprod, 0.0}},
      {"alphas_cumprod_prev", {&N::alphas_cumprod_prev, 0.0}},
      {"sqrt_alphas_cumprod", {&N::sqrt_alphas_cumprod, 0.0}},
      {"sqrt_one_minus_alphas_cumprod", {&N::sqrt_one_minus_alphas_cumprod, 0.0}},
      {"one_minus_alphas_cumprod", {&N::one_minus_alphas_cumprod, 0.0}},
      {"log_one_minus_alphas_cumprod", {&N::log_one_minus_alphas_cumprod, 0.0}},
      {"sqrt_recip_alphas_cumprod", {&N::sqrt_recip_alphas_cumprod, 0.0}},
      {"sqrt_recipm1_alphas_cumprod", {&N::sqrt_recipm1_alphas_cumprod, 0.0}},
      {"posterior_variance", {&N::posterior_variance, 0.0}},
      {"posterior_log_variance_clipped", {&N::posterior_log_variance_clipped, 0.0}},
      {"posterior_mean_coef1", {&N::posterior_mean_coef1, 0.0}},
      {"posterior_mean_coef2", {&N::posterior_mean_coef2, 0.0}},
      {"snr", {&N::snr, 0.0}},
      {"sigmas", {&N::sigmas, 0.0}},
  };
}

template <class A>
std::vector<double> at_indices(const A& a, const std::vector<int>& idx) {
  std::vector<double> v;
  for (int i : idx) v.push_back(static_cast<double>(a[i]));
  return v;
}

template <class A>
bool strictly_decreasing(const A& a) {
  for (Eigen::Index i = 1; i < a.size(); ++i) {
    if (!(a[i] < a[i - 1])) return false;
  }
  return true;
}

/// Checks a respaced schedule's alpha_bar against the parent's alpha_bar at the kept timesteps.
/// The respaced schedule holds betas, beta'_j = 1 - ratio_j with ratio_j = alpha_bar[kept_j] /
/// alpha_bar[kept_{j-1}]; a beta is held to an absolute ulp(1) / 2 = eps / 2, so recovering
/// 1 - beta'_j = ratio_j costs a relative eps / (2 ratio_j), and each product one more eps / 2. Hence
/// alpha_bar'[i] is exact to sum_{j <= i} eps / ratio_j relative (6e-10 where cosine's alpha_bar falls by a
/// factor 4e-7 between two kept steps: a property of storing betas, shared by improved-diffusion), on top of
/// rel_tol<S> for the rest (the cast to S).
template <class S>
void check_respaced_alpha_bar(const ddpm::NoiseSchedule<S>& r, const std::vector<double>& expected) {
  REQUIRE(static_cast<std::size_t>(r.num_train_timesteps()) == expected.size());
  const double eps = std::numeric_limits<double>::epsilon();
  double bound = 0.0, prev = 1.0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (expected[i] > 0.0) bound += eps * prev / expected[i];
    prev = expected[i];
    INFO("index " << i << ": actual " << ddpm_test::fmt(r.alphas_cumprod_double()[i]) << ", expected "
                  << ddpm_test::fmt(expected[i]) << ", relative bound " << bound);
    CHECK(std::abs(r.alphas_cumprod_double()[i] - expected[i]) <= (1e-12 + bound) * expected[i]);
    CHECK(std::abs(r.alphas_cumprod()[i] - expected[i]) <= (rel_tol<S> + bound) * expected[i]);
  }
}

template <class S>
std::vector<std::pair<std::string, ddpm::NoiseSchedule<S>>> named_schedules() {
  using N = ddpm::NoiseSchedule<S>;
  std::vector<std::pair<std::string, N>> v;
  for (int T : {1000, 250, 10, 2}) {
    const std::string t = "(T = " + std::to_string(T) + ")";
    v.emplace_back("linear" + t, N::linear(T));
    v.emplace_back("scaled_linear" + t, N::scaled_linear(T));
    v.emplace_back("cosine" + t, N::cosine(T));
    v.emplace_back("sigmoid" + t, N::sigmoid(T));
  }
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Against the reference

TEMPLATE_TEST_CASE("NoiseSchedule: every derived array matches the NumPy reference", "[schedule][fixture]", float,
                   double) {
  using S = TestType;
  const json& fx = ddpm_test::core_fixture("schedules.json");
  for (const json& entry : fx.at("schedules")) {
    const std::string name = entry.at("name").get<std::string>();
    INFO("schedule " << name);
    const auto schedule = ddpm_test::make_schedule<S>(entry.at("recipe"));
    REQUIRE(schedule.num_train_timesteps() == entry.at("recipe").at("T").get<int>());
    const auto idx = entry.at("indices").get<std::vector<int>>();
    for (const auto& [array, access] : schedule_arrays<S>()) {
      INFO("array " << array);
      const auto r = compare(at_indices((schedule.*access.first)(), idx), numbers(entry.at("arrays").at(array)),
                             rel_tol<S>, access.second);
      INFO(r.message);
      CHECK(r.ok);
    }
    // The double-precision sources every cast array derives from, to double precision for either S.
    const auto betas = compare(at_indices(schedule.betas_double(), idx), numbers(entry.at("arrays").at("betas")),
                               1e-12, 1e-2);
    INFO("betas_double: " << betas.message);
    CHECK(betas.ok);
    const auto ab = compare(at_indices(schedule.alphas_cumprod_double(), idx),
                            numbers(entry.at("arrays").at("alphas_cumprod")), 1e-12);
    INFO("alphas_cumprod_double: " << ab.message);
    CHECK(ab.ok);
    if (entry.contains("alphas_cumprod_all")) {
      const auto all = compare(ddpm_test::array_to_doubles(schedule.alphas_cumprod()),
                               numbers(entry.at("alphas_cumprod_all")), rel_tol<S>);
      INFO("alphas_cumprod (every index): " << all.message);
      CHECK(all.ok);
    }
  }
}

TEST_CASE("space_timesteps matches improved-diffusion's respacing", "[schedule][spacing][fixture]") {
  const json& fx = ddpm_test::core_fixture("spacing.json");
  for (const json& c : fx.at("space_timesteps")) {
    const int T = c.at("T").get<int>();
    const std::string spec = c.at("spec").get<std::string>();
    INFO("T = " << T << ", spec \"" << spec << "\"");
    CHECK(ddpm::respacing_timesteps(T, spec) == c.at("kept").get<std::vector<int>>());
  }
}

TEST_CASE("space_timesteps: documented examples", "[schedule][spacing]") {
  // "ddim50" keeps 0, 20, ..., 980; "7,3,1" rounds the stride 55.5 half to even (166, not 167).
  std::vector<int> ddim50;
  for (int t = 0; t < 1000; t += 20) ddim50.push_back(t);
  CHECK(ddpm::respacing_timesteps(1000, "ddim50") == ddim50);
  CHECK(ddpm::respacing_timesteps(1000, "7,3,1") == std::vector<int>{0, 56, 111, 166, 222, 278, 333, 334, 500, 666, 667});
  CHECK(ddpm::respacing_timesteps(1, "1") == std::vector<int>{0});
}

TEMPLATE_TEST_CASE("respace matches the NumPy reference", "[schedule][respace][fixture]", float, double) {
  using S = TestType;
  const json& fx = ddpm_test::core_fixture("spacing.json");
  for (const json& c : fx.at("respace")) {
    const std::string spec = c.at("spec").get<std::string>();
    INFO("respace " << c.at("name").get<std::string>() << " with \"" << spec << "\"");
    const auto base = ddpm_test::make_schedule<S>(c.at("recipe"));
    const auto kept = c.at("kept").get<std::vector<int>>();
    REQUIRE(ddpm::respacing_timesteps(base.num_train_timesteps(), spec) == kept);
    const auto r = ddpm::respace(base, kept);
    REQUIRE(r.num_train_timesteps() == static_cast<int>(kept.size()));
    CHECK(r.timestep_map() == kept);
    // Respaced betas are 1 - alpha_bar ratios: scale 1e-2 as for the schedule betas above.
    const auto betas = compare(ddpm_test::array_to_doubles(r.betas()), numbers(c.at("betas")), rel_tol<S>, 1e-2);
    INFO("betas: " << betas.message);
    CHECK(betas.ok);
    const auto ab = compare(ddpm_test::array_to_doubles(r.alphas_cumprod()), numbers(c.at("alphas_cumprod")),
                            rel_tol<S>);
    INFO("alphas_cumprod: " << ab.message);
    CHECK(ab.ok);
  }

  SECTION("twice in a row") {
    const json& c = fx.at("respace_twice");
    const auto base = ddpm_test::make_schedule<S>(c.at("recipe"));
    const auto first = ddpm::respace(base, ddpm::respacing_timesteps(base.num_train_timesteps(), c.at("first").get<std::string>()));
    CHECK(first.timestep_map() == c.at("kept_first").get<std::vector<int>>());
    const auto second =
        ddpm::respace(first, ddpm::respacing_timesteps(first.num_train_timesteps(), c.at("second").get<std::string>()));
    CHECK(second.timestep_map() == c.at("timestep_map").get<std::vector<int>>());
    const auto betas = compare(ddpm_test::array_to_doubles(second.betas()), numbers(c.at("betas")), rel_tol<S>, 1e-2);
    INFO("betas: " << betas.message);
    CHECK(betas.ok);
    const auto ab = compare(ddpm_test::array_to_doubles(second.alphas_cumprod()), numbers(c.at("alphas_cumprod")),
                            rel_tol<S>);
    INFO("alphas_cumprod: " << ab.message);
    CHECK(ab.ok);
  }
}

// ---------------------------------------------------------------------------------------------------
// Invariants

TEMPLATE_TEST_CASE("NoiseSchedule: alpha_bar is strictly decreasing for every named schedule", "[schedule]", float,
                   double) {
  using S = TestType;
  for (const auto& [name, s] : named_schedules<S>()) {
    INFO(name);
    CHECK(strictly_decreasing(s.alphas_cumprod()));
    CHECK(s.alphas_cumprod()[0] < S(1));
    CHECK(s.alphas_cumprod()[s.num_train_timesteps() - 1] > S(0));
    CHECK(((s.betas() > S(0)) && (s.betas() < S(1))).all());
    CHECK(strictly_decreasing(s.rescaled_zero_terminal_snr().alphas_cumprod()));
  }
}

TEMPLATE_TEST_CASE("NoiseSchedule: alphas_cumprod_prev is alphas_cumprod shifted by one", "[schedule]", float, double) {
  using S = TestType;
  for (const auto& [name, s] : named_schedules<S>()) {
    INFO(name);
    CHECK(s.alphas_cumprod_prev()[0] == S(1));
    for (int t = 1; t < s.num_train_timesteps(); ++t) REQUIRE(s.alphas_cumprod_prev()[t] == s.alphas_cumprod()[t - 1]);
    // The true posterior variance at t = 0 is 0; its clipped log takes index 1's value (improved-diffusion).
    CHECK(s.posterior_variance()[0] == S(0));
    CHECK(s.posterior_log_variance_clipped()[0] == s.posterior_log_variance_clipped()[1]);
  }
}

TEMPLATE_TEST_CASE("NoiseSchedule::cosine at T = 1000 caps exactly one beta, the last", "[schedule][cosine]", float,
                   double) {
  using S = TestType;
  const auto s = ddpm::NoiseSchedule<S>::cosine(1000);
  const std::vector<double>& b = s.betas_double();
  int capped = 0;
  for (double beta : b) capped += beta == 0.999 ? 1 : 0;
  CHECK(capped == 1);
  CHECK(b.back() == 0.999);
  CHECK(b[998] < 0.999);
  CHECK(s.betas()[999] == static_cast<S>(0.999));
  // A lower cap is reached by more than one beta and caps exactly.
  const auto low = ddpm::NoiseSchedule<S>::cosine(1000, 0.008, 0.1);
  CHECK(low.betas_double().back() == 0.1);
  CHECK(low.betas_double()[990] == 0.1);
  CHECK(low.betas_double()[970] < 0.1);
}

TEST_CASE("NoiseSchedule: defaults are the documented values", "[schedule]") {
  using N = ddpm::NoiseSchedule<double>;
  CHECK(N::linear().betas_double() == N::linear(1000, 1e-4, 0.02).betas_double());
  CHECK(N::scaled_linear().betas_double() == N::scaled_linear(1000, 0.00085, 0.012).betas_double());
  CHECK(N::cosine().betas_double() == N::cosine(1000, 0.008, 0.999).betas_double());
  CHECK(N::sigmoid().betas_double() == N::sigmoid(1000, 1e-4, 0.02).betas_double());
  // linear's ends are exact (NumPy's linspace puts stop exactly at the end).
  CHECK(N::linear().betas_double().front() == 1e-4);
  CHECK(N::linear().betas_double().back() == 0.02);
  CHECK(N::linear().timestep_map().size() == 1000);
}

TEMPLATE_TEST_CASE("NoiseSchedule::from_betas keeps the betas and derives the same arrays", "[schedule]", float,
                   double) {
  using S = TestType;
  const auto named = ddpm::NoiseSchedule<S>::cosine(100);
  const auto from = ddpm::NoiseSchedule<S>::from_betas(named.betas_double());
  CHECK(from.betas_double() == named.betas_double());
  for (const auto& [array, access] : schedule_arrays<S>()) {
    INFO(array);
    CHECK(((from.*access.first)() == (named.*access.first)()).all());
  }
}

TEMPLATE_TEST_CASE("NoiseSchedule with a single step", "[schedule]", float, double) {
  using S = TestType;
  // T = 1: alpha_bar = 1 - beta, the posterior variance is 0 and, with no index 1 to borrow, the clipped
  // log variance is log(beta[0]) (the "fixed_large" variance), as schedule.hpp documents.
  const auto s = ddpm::NoiseSchedule<S>::linear(1, 0.3, 0.5);
  REQUIRE(s.num_train_timesteps() == 1);
  CHECK(s.betas_double()[0] == 0.3);
  CHECK(s.alphas_cumprod()[0] == static_cast<S>(0.7));
  CHECK(s.alphas_cumprod_prev()[0] == S(1));
  CHECK(s.posterior_variance()[0] == S(0));
  CHECK(s.posterior_log_variance_clipped()[0] == static_cast<S>(std::log(0.3)));
  CHECK(ddpm::NoiseSchedule<S>::cosine(1).betas_double()[0] == 0.999);
  CHECK(ddpm::NoiseSchedule<S>::sigmoid(1, 0.1, 0.2).betas_double()[0] == 1.0 / (1.0 + std::exp(6.0)) * 0.1 + 0.1);
}

TEMPLATE_TEST_CASE("rescaled_zero_terminal_snr: invariants of Lin et al.'s Algorithm 1", "[schedule][zero_snr]", float,
                   double) {
  using S = TestType;
  using N = ddpm::NoiseSchedule<S>;
  const double tol = rel_tol<S>;
  for (const auto& [name, base] : std::vector<std::pair<std::string, N>>{{"linear", N::linear()},
                                                                         {"scaled_linear", N::scaled_linear()},
                                                                         {"cosine", N::cosine()},
                                                                         {"sigmoid(10)", N::sigmoid(10)},
                                                                         {"linear(2)", N::linear(2)}}) {
    INFO(name);
    const auto z = base.rescaled_zero_terminal_snr();
    const int T = z.num_train_timesteps();
    REQUIRE(T == base.num_train_timesteps());
    // sqrt(alpha_bar[0]) is unchanged: to the relative tolerance (it goes through a shift and a scale).
    CHECK(ddpm_test::close(std::sqrt(z.alphas_cumprod_double()[0]), std::sqrt(base.alphas_cumprod_double()[0]), tol,
                           0.0));
    CHECK(ddpm_test::close(z.sqrt_alphas_cumprod()[0], base.sqrt_alphas_cumprod()[0], tol, 0.0));
    // The last alpha_bar is exactly 0, the last beta exactly 1.
    CHECK(z.alphas_cumprod_double()[T - 1] == 0.0);
    CHECK(z.alphas_cumprod()[T - 1] == S(0));
    CHECK(z.betas_double()[T - 1] == 1.0);
    CHECK(z.alphas()[T - 1] == S(0));
    CHECK(strictly_decreasing(z.alphas_cumprod()));
    CHECK(z.snr()[T - 1] == S(0));
    CHECK(z.sigmas()[T - 1] == std::numeric_limits<S>::infinity());
    CHECK(z.sqrt_recip_alphas_cumprod()[T - 1] == std::numeric_limits<S>::infinity());
    CHECK(z.sqrt_one_minus_alphas_cumprod()[T - 1] == S(1));
    // At the terminal step the posterior ignores x_t (coef2 = 0) and is the prior q(x_{T-2} | x0).
    CHECK(z.posterior_mean_coef2()[T - 1] == S(0));
    CHECK(ddpm_test::close(z.posterior_variance()[T - 1], 1.0 - z.alphas_cumprod_double()[T - 2], tol, 0.0));
    // Every other step keeps a finite, positive SNR.
    for (int t = 0; t + 1 < T; ++t) REQUIRE((std::isfinite(z.sigmas()[t]) && z.snr()[t] > S(0)));
    CHECK(z.timestep_map() == base.timestep_map());
  }
}

TEMPLATE_TEST_CASE("respace: invariants", "[schedule][respace]", float, double) {
  using S = TestType;
  using N = ddpm::NoiseSchedule<S>;
  const N base = N::cosine();
  const std::vector<double>& ab = base.alphas_cumprod_double();

  SECTION("alpha_bar at the kept timesteps is unchanged, and timestep_map is the kept list") {
    for (const char* spec : {"ddim50", "ddim25", "10", "7,3,1", "10,15,20", "250", "1"}) {
      INFO(spec);
      const auto kept = ddpm::respacing_timesteps(1000, spec);
      const auto r = ddpm::respace(base, kept);
      CHECK(r.timestep_map() == kept);
      std::vector<double> expected;
      for (int k : kept) expected.push_back(ab[k]);
      check_respaced_alpha_bar(r, expected);
    }
  }

  SECTION("two respacings compose") {
    const auto k1 = ddpm::respacing_timesteps(1000, "ddim100");
    const auto k2 = ddpm::respacing_timesteps(100, "7,3");
    const auto twice = ddpm::respace(ddpm::respace(base, k1), k2);
    std::vector<int> composed;
    std::vector<double> expected;
    for (int i : k2) {
      composed.push_back(k1[i]);
      expected.push_back(ab[k1[i]]);
    }
    CHECK(twice.timestep_map() == composed);
    check_respaced_alpha_bar(twice, expected);
    // ... and equal respacing once with the composed list.
    const auto once = ddpm::respace(base, composed);
    const auto b = compare(twice.betas_double(), once.betas_double(), 1e-12, 1e-2);
    INFO(b.message);
    CHECK(b.ok);
  }

  SECTION("respacing the full list is the identity") {
    std::vector<int> all(1000);
    for (int i = 0; i < 1000; ++i) all[i] = i;
    for (const N& s : {base, N::linear(), N::linear().rescaled_zero_terminal_snr()}) {
      const auto r = ddpm::respace(s, all);
      CHECK(r.timestep_map() == all);
      // beta' = 1 - alpha_bar[i] / alpha_bar[i-1] reproduces beta to a few ulp(1) (scale 1e-2, as above).
      const auto b = compare(r.betas_double(), s.betas_double(), 1e-12, 1e-2);
      INFO(b.message);
      CHECK(b.ok);
      const auto c = compare(r.alphas_cumprod_double(), s.alphas_cumprod_double(), 1e-12);
      INFO(c.message);
      CHECK(c.ok);
    }
  }

  SECTION("a respaced zero-SNR schedule keeps its exact terminal step") {
    const auto z = N::linear().rescaled_zero_terminal_snr();
    const auto r = ddpm::respace(z, ddpm::respacing_timesteps(1000, "250"));
    REQUIRE(r.timestep_map().back() == 999);
    CHECK(r.betas_double().back() == 1.0);
    CHECK(r.alphas_cumprod()[r.num_train_timesteps() - 1] == S(0));
    // ... and rescaling a respaced schedule keeps its timestep_map.
    const auto k = ddpm::respacing_timesteps(1000, "ddim50");
    CHECK(ddpm::respace(N::linear(), k).rescaled_zero_terminal_snr().timestep_map() == k);
  }
}

// ---------------------------------------------------------------------------------------------------
// Preconditions

TEMPLATE_TEST_CASE("NoiseSchedule: bad arguments throw ddpm::invalid_argument", "[schedule][errors]", float, double) {
  using N = ddpm::NoiseSchedule<TestType>;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  SECTION("T < 1") {
    for (int T : {0, -1, -1000}) {
      CHECK_THROWS_AS(N::linear(T), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::scaled_linear(T), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::cosine(T), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::sigmoid(T), ddpm::invalid_argument);
    }
  }
  SECTION("beta_start or beta_end outside (0, 1), NaN or infinite") {
    for (double bad : {0.0, 1.0, -0.1, 1.5, nan, inf, -inf}) {
      INFO("bad = " << bad);
      CHECK_THROWS_AS(N::linear(10, bad, 0.02), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::linear(10, 1e-4, bad), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::scaled_linear(10, bad, 0.012), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::scaled_linear(10, 0.00085, bad), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::sigmoid(10, bad, 0.02), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::sigmoid(10, 1e-4, bad), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::cosine(10, 0.008, bad), ddpm::invalid_argument);  // max_beta
    }
  }
  SECTION("cosine: negative, NaN or infinite s") {
    for (double bad : {-0.008, -1.0, nan, inf}) CHECK_THROWS_AS(N::cosine(10, bad), ddpm::invalid_argument);
    CHECK_NOTHROW(N::cosine(10, 0.0));
  }
  SECTION("from_betas: empty, outside (0, 1), NaN or infinite") {
    CHECK_THROWS_AS(N::from_betas({}), ddpm::invalid_argument);
    for (double bad : {0.0, 1.0, -0.1, 1.5, nan, inf, -inf}) {
      INFO("bad = " << bad);
      CHECK_THROWS_AS(N::from_betas({bad}), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::from_betas({0.1, 0.2, bad}), ddpm::invalid_argument);
      CHECK_THROWS_AS(N::from_betas({bad, 0.1, 0.2}), ddpm::invalid_argument);
    }
    CHECK_NOTHROW(N::from_betas({0.5}));
  }
  SECTION("rescaled_zero_terminal_snr needs T >= 2") {
    CHECK_THROWS_AS(N::linear(1).rescaled_zero_terminal_snr(), ddpm::invalid_argument);
  }
  SECTION("messages name the function, the argument and its value") {
    CHECK_THROWS_WITH(N::linear(10, 1e-4, 1.5), Catch::Contains("NoiseSchedule::linear") && Catch::Contains("beta_end") &&
                                                    Catch::Contains("1.5"));
    CHECK_THROWS_WITH(N::linear(0), Catch::Contains("T is 0"));
  }
}

TEMPLATE_TEST_CASE("NoiseSchedule: betas below 2^-53 whose posterior is not finite are refused", "[schedule][errors]",
                   float, double) {
  using N = ddpm::NoiseSchedule<TestType>;
  // 1 - beta rounds to 1 in double for beta <= 2^-54 (ties to even), so alpha_bar[0] = 1 and the posterior
  // variance beta (1 - alpha_bar_prev) / (1 - alpha_bar) is 0 / 0 at t = 0: every sample would be NaN.
  for (double tiny : {1e-17, std::ldexp(1.0, -54), std::ldexp(1.0, -60), 5e-324}) {
    INFO("beta[0] = " << tiny);
    CHECK_THROWS_AS(N::from_betas({tiny, 0.01, 0.02}), ddpm::invalid_argument);
    CHECK_THROWS_WITH(N::from_betas({tiny, 0.01, 0.02}),
                      Catch::Contains("from_betas") && Catch::Contains("posterior_variance[0] is nan") &&
                          Catch::Contains("beta[0] = " + ddpm::detail::number_string(tiny)));
  }
  CHECK_THROWS_WITH(N::linear(10, 1e-17, 0.02), Catch::Contains("NoiseSchedule::linear") && Catch::Contains("[0]"));
  // Two tiny betas: the first two steps both leave 1 - alpha_bar = 0; the first bad index is named.
  CHECK_THROWS_WITH(N::from_betas({1e-17, 1e-17, 0.5}), Catch::Contains("posterior_variance[0]"));
  // 1 - 2^-52 and 1 - 2^-53 are doubles, so these betas survive: 1 - alpha_bar[0] = beta[0] > 0.
  for (double small : {std::ldexp(1.0, -52), std::ldexp(1.0, -53)}) {
    INFO("beta[0] = " << small);
    const auto s = N::from_betas({small, 0.01, 0.02});
    CHECK(s.posterior_variance().allFinite());
    CHECK(s.posterior_log_variance_clipped().allFinite());
    CHECK(s.posterior_mean_coef1().allFinite());
    CHECK(s.posterior_mean_coef2().allFinite());
  }
  // A tiny beta after the first step is harmless (1 - alpha_bar[1] = 1 - alpha_bar[0] > 0) and is kept.
  const auto later = N::from_betas({1e-4, 1e-17, 0.02});
  CHECK(later.posterior_variance().allFinite());
  CHECK(later.posterior_mean_coef1().allFinite());
  CHECK(later.posterior_log_variance_clipped().allFinite());
}

TEST_CASE("space_timesteps: bad specs throw ddpm::invalid_argument", "[schedule][spacing][errors]") {
  for (const char* spec : {"ddim", "ddimx", "", "1,,2", "-3", ",", "1,", ",1", "ddim-5", "ddim5x", " 5", "5 ", "1.5",
                           "0", "3,0", "abc", "99999999999", "DDIM5"}) {
    INFO("spec \"" << spec << "\"");
    CHECK_THROWS_AS(ddpm::respacing_timesteps(1000, spec), ddpm::invalid_argument);
  }
  // No integer stride gives exactly N (strides of T = 10 give 10, 5, 4, 3, 2 steps; T = 100 never 33).
  CHECK_THROWS_AS(ddpm::respacing_timesteps(10, "ddim7"), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::respacing_timesteps(10, "ddim1"), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::respacing_timesteps(10, "ddim11"), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::respacing_timesteps(100, "ddim33"), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::respacing_timesteps(1000, "ddim0"), ddpm::invalid_argument);
  // A section asks for more steps than it has (T = 10 in sections of 5: "5,6"; one section: "11"; eleven
  // sections of T = 10 leave the last empty).
  CHECK_THROWS_AS(ddpm::respacing_timesteps(10, "11"), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::respacing_timesteps(10, "5,6"), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::respacing_timesteps(10, "1,1,1,1,1,1,1,1,1,1,1"), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::respacing_timesteps(1000, "334,334,334"), ddpm::invalid_argument);
  CHECK_NOTHROW(ddpm::respacing_timesteps(1000, "334,333,333"));
  // T < 1
  CHECK_THROWS_AS(ddpm::respacing_timesteps(0, "1"), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::respacing_timesteps(-5, "ddim1"), ddpm::invalid_argument);
}

TEST_CASE("respacing_timesteps: \"ddimN\" takes the first stride improved-diffusion's loop finds, for any T",
          "[schedule][spacing]") {
  // improved-diffusion: for i in range(1, T): if len(range(0, T, i)) == N: return set(range(0, T, i)).
  const auto brute_force = [](int T, int N) -> std::vector<int> {
    for (int stride = 1; stride < T; ++stride) {
      if ((T + stride - 1) / stride == N) {
        std::vector<int> kept;
        for (int t = 0; t < T; t += stride) kept.push_back(t);
        return kept;
      }
    }
    return {};
  };
  for (int T = 1; T <= 120; ++T) {
    for (int N = 1; N <= T + 1; ++N) {
      INFO("T = " << T << ", N = " << N);
      const std::vector<int> expected = brute_force(T, N);
      const std::string spec = "ddim" + std::to_string(N);
      if (expected.empty()) {
        CHECK_THROWS_AS(ddpm::respacing_timesteps(T, spec), ddpm::invalid_argument);
      } else {
        CHECK(ddpm::respacing_timesteps(T, spec) == expected);
      }
    }
  }
  // T = INT_MAX: the loop's T + stride - 1 overflowed a signed int (UB); the stride is ceil(T / N).
  const int T = std::numeric_limits<int>::max();
  CHECK(ddpm::respacing_timesteps(T, "ddim2") == std::vector<int>{0, 1073741824});
  const std::vector<int> three = ddpm::respacing_timesteps(T, "ddim3");
  CHECK(three == std::vector<int>{0, 715827883, 1431655766});
  CHECK_THROWS_AS(ddpm::respacing_timesteps(T, "ddim1"), ddpm::invalid_argument);
}

TEMPLATE_TEST_CASE("respace: bad kept lists throw ddpm::invalid_argument", "[schedule][respace][errors]", float,
                   double) {
  const auto s = ddpm::NoiseSchedule<TestType>::linear(10);
  using V = std::vector<int>;
  for (const V& kept : {V{}, V{3, 1}, V{0, 5, 5}, V{-1, 2}, V{0, 10}, V{10}, V{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}) {
    INFO("kept of size " << kept.size());
    CHECK_THROWS_AS(ddpm::respace(s, kept), ddpm::invalid_argument);
  }
  CHECK_NOTHROW(ddpm::respace(s, V{9}));
}

// The names replaced for clarity are kept for one release as deprecated aliases; this test uses them on
// purpose, with the deprecation warning silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
TEST_CASE("Deprecated aliases: num_steps() and space_timesteps", "[schedule][deprecated]") {
  const auto s = ddpm::NoiseSchedule<double>::linear(100);
  CHECK(s.num_steps() == 100);
  CHECK(s.num_steps() == s.num_train_timesteps());
  CHECK(ddpm::space_timesteps(1000, "ddim50") == ddpm::respacing_timesteps(1000, "ddim50"));
  CHECK(ddpm::space_timesteps(1000, "7,3,1") == ddpm::respacing_timesteps(1000, "7,3,1"));
}
#pragma GCC diagnostic pop
