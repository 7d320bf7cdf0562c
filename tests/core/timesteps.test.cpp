// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Inference timestep spacing against NumPy-semantics fixtures (tests/reference/make_sampler_fixtures.py,
// confirmed against diffusers' set_timesteps), for every N from 1 to T; Karras sigmas and the log-sigma
// interpolation against the same script.                               [docs/samplers.md, Eqs. (S4)-(S6)]

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../samplers/sampler_support.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/timesteps.hpp"

using ddpm::TimestepSpacing;
using sampler_test::fixture;

namespace {

std::vector<std::int64_t> digest(const std::vector<int>& ts) {
  std::int64_t sum = 0, weighted = 0;
  for (std::size_t k = 0; k < ts.size(); ++k) {
    sum += ts[k];
    weighted += static_cast<std::int64_t>(k + 1) * ts[k];
  }
  return {ts.front(), ts.back(), sum, weighted};
}

const std::vector<std::pair<std::string, TimestepSpacing>> kSpacings = {
    {"leading", TimestepSpacing::leading}, {"trailing", TimestepSpacing::trailing}, {"linspace", TimestepSpacing::linspace}};

}  // namespace

TEST_CASE("spaced_timesteps: the documented examples", "[samplers][timesteps]") {
  // NumPy rounds linspace half to even: 832.5 -> 832 and 166.5 -> 166 (std::round would give 833, 167).
  CHECK(ddpm::inference_timesteps(1000, 7, TimestepSpacing::linspace) == std::vector<int>{999, 832, 666, 500, 333, 166, 0});
  // leading: integer stride T / N, plus steps_offset (Stable Diffusion: N = 50, offset 1).
  const auto sd = ddpm::inference_timesteps(1000, 50, TimestepSpacing::leading, 1);
  CHECK(sd.front() == 981);
  CHECK(sd.back() == 1);
  // trailing starts at T - 1; at N = 61 NumPy's arange has 62 values (the last, -1, is dropped).
  const auto tr = ddpm::inference_timesteps(1000, 61, TimestepSpacing::trailing);
  CHECK(tr.size() == 61u);
  CHECK(tr.front() == 999);
  CHECK(tr.back() == 15);
  CHECK(ddpm::inference_timesteps(1000, 1, TimestepSpacing::trailing) == std::vector<int>{999});
  CHECK(ddpm::inference_timesteps(1000, 1, TimestepSpacing::linspace) == std::vector<int>{0});
}

TEST_CASE("spaced_timesteps matches NumPy semantics for every N from 1 to T", "[samplers][timesteps]") {
  const auto& f = fixture("timesteps.json");
  SECTION("full lists, small T") {
    for (const auto& e : f.at("full")) {
      const int T = e.at("T"), N = e.at("N");
      for (const auto& [name, spacing] : kSpacings) {
        INFO("T = " << T << ", N = " << N << ", " << name);
        CHECK(ddpm::inference_timesteps(T, N, spacing) == e.at(name).get<std::vector<int>>());
      }
      if (e.contains("leading_offset1")) {
        CHECK(ddpm::inference_timesteps(T, N, TimestepSpacing::leading, 1) == e.at("leading_offset1").get<std::vector<int>>());
      } else {
        CHECK_THROWS_AS(ddpm::inference_timesteps(T, N, TimestepSpacing::leading, 1), ddpm::invalid_argument);
      }
    }
  }
  SECTION("T = 1000: first, last, sum and weighted sum for every N") {
    int checked = 0;
    for (const auto& e : f.at("digests")) {
      const int T = e.at("T"), N = e.at("N");
      for (const auto& [name, spacing] : kSpacings) {
        const auto ts = ddpm::inference_timesteps(T, N, spacing);
        INFO("T = " << T << ", N = " << N << ", " << name);
        REQUIRE(ts.size() == static_cast<std::size_t>(N));
        CHECK(digest(ts) == e.at(name).get<std::vector<std::int64_t>>());
        ++checked;
      }
      if (e.contains("leading_offset1")) {
        CHECK(digest(ddpm::inference_timesteps(T, N, TimestepSpacing::leading, 1)) ==
              e.at("leading_offset1").get<std::vector<std::int64_t>>());
      }
    }
    CHECK(checked == 3000);
  }
  SECTION("T = 1000: full lists for selected N") {
    for (const auto& e : f.at("lists")) {
      for (const auto& [name, spacing] : kSpacings) {
        INFO("N = " << e.at("N").get<int>() << ", " << name);
        CHECK(ddpm::inference_timesteps(e.at("T"), e.at("N"), spacing) == e.at(name).get<std::vector<int>>());
      }
    }
  }
}

TEST_CASE("spaced_timesteps: every list is strictly decreasing and inside 0 <= t < T", "[samplers][timesteps]") {
  int lists = 0;
  for (int T : {1, 2, 5, 64, 1000}) {
    for (int N = 1; N <= T; ++N) {
      for (const auto& [name, spacing] : kSpacings) {
        const auto ts = ddpm::inference_timesteps(T, N, spacing);
        bool ok = ts.size() == static_cast<std::size_t>(N) && ts.front() < T && ts.back() >= 0;
        for (std::size_t k = 1; ok && k < ts.size(); ++k) ok = ts[k] < ts[k - 1];
        if (!ok) FAIL_CHECK("T = " << T << ", N = " << N << ", " << name << ": not N decreasing values in [0, T)");
        ++lists;
      }
    }
  }
  CHECK(lists == 3 * (1 + 2 + 5 + 64 + 1000));
}

TEST_CASE("spaced_timesteps and checked_timesteps reject bad input", "[samplers][timesteps]") {
  using ddpm::invalid_argument;
  CHECK_THROWS_AS(ddpm::inference_timesteps(0, 1, TimestepSpacing::leading), invalid_argument);
  CHECK_THROWS_AS(ddpm::inference_timesteps(1000, 0, TimestepSpacing::leading), invalid_argument);
  CHECK_THROWS_AS(ddpm::inference_timesteps(1000, 1001, TimestepSpacing::trailing), invalid_argument);
  CHECK_THROWS_AS(ddpm::inference_timesteps(1000, -3, TimestepSpacing::linspace), invalid_argument);
  CHECK_THROWS_AS(ddpm::inference_timesteps(1000, 50, TimestepSpacing::leading, -1), invalid_argument);
  CHECK_THROWS_AS(ddpm::inference_timesteps(1000, 50, TimestepSpacing::leading, 20), invalid_argument);  // 980 + 20
  CHECK_NOTHROW(ddpm::inference_timesteps(1000, 50, TimestepSpacing::leading, 19));
  CHECK_THROWS_WITH(ddpm::inference_timesteps(1000, 1001, TimestepSpacing::trailing),
                    Catch::Contains("N (num_inference_steps) is 1001, but must be in [1, 1000]"));

  CHECK(ddpm::checked_timesteps(10, {9, 5, 0}) == std::vector<int>{9, 5, 0});
  CHECK_THROWS_AS(ddpm::checked_timesteps(10, {}), invalid_argument);
  CHECK_THROWS_AS(ddpm::checked_timesteps(10, {10, 5}), invalid_argument);
  CHECK_THROWS_AS(ddpm::checked_timesteps(10, {5, -1}), invalid_argument);
  CHECK_THROWS_AS(ddpm::checked_timesteps(10, {5, 5}), invalid_argument);
  CHECK_THROWS_AS(ddpm::checked_timesteps(10, {1, 5}), invalid_argument);
}

TEST_CASE("DPM-Solver timesteps follow diffusers (N + 1 points without the smallest)", "[samplers][timesteps]") {
  for (const auto& e : fixture("timesteps.json").at("dpm")) {
    for (const auto& [name, spacing] : kSpacings) {
      INFO("T = " << e.at("T").get<int>() << ", N = " << e.at("N").get<int>() << ", " << name);
      CHECK(ddpm::DPMSolverMultistepSampler<double>::dpm_timesteps(e.at("T"), e.at("N"), spacing) ==
            e.at(name).get<std::vector<int>>());
    }
  }
}

TEST_CASE("karras_sigmas and sigma_to_timestep match the reference", "[samplers][timesteps]") {
  const auto& f = fixture("timesteps.json");
  for (const auto& c : f.at("karras")) {
    const auto expected = c.at("sigmas").get<std::vector<double>>();
    const auto sig = ddpm::karras_sigmas(c.at("sigma_min"), c.at("sigma_max"), c.at("N"));
    REQUIRE(sig.size() == expected.size());
    for (std::size_t i = 0; i < sig.size(); ++i) CHECK(sig[i] == Approx(expected[i]).epsilon(1e-13));
  }
  const auto schedule = sampler_test::make_schedule<double>(f.at("sigma_to_t").at("schedule"));
  std::vector<double> table(schedule.sigmas().data(), schedule.sigmas().data() + schedule.num_train_timesteps());
  const auto probes = f.at("sigma_to_t").at("sigmas").get<std::vector<double>>();
  const auto ts = f.at("sigma_to_t").at("t").get<std::vector<double>>();
  for (std::size_t i = 0; i < probes.size(); ++i) {
    INFO("sigma = " << probes[i]);
    CHECK(ddpm::sigma_to_timestep(table, probes[i]) == Approx(ts[i]).margin(1e-9));
  }
  for (const auto& c : f.at("karras")) {
    const auto sig = c.at("sigmas").get<std::vector<double>>();
    const auto t = c.at("t").get<std::vector<double>>();
    for (std::size_t i = 0; i < sig.size(); ++i) CHECK(ddpm::sigma_to_timestep(table, sig[i]) == Approx(t[i]).margin(1e-9));
  }
  // Exactly at a table entry the interpolation returns its timestep; outside the table it clamps.
  CHECK(ddpm::sigma_to_timestep(table, table[417]) == Approx(417.0).margin(1e-9));
  CHECK(ddpm::sigma_to_timestep(table, table[0] / 10) == 0.0);
  CHECK(ddpm::sigma_to_timestep(table, table[999] * 10) == 999.0);

  CHECK_THROWS_AS(ddpm::karras_sigmas(0.0, 1.0, 5), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::karras_sigmas(2.0, 1.0, 5), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::karras_sigmas(0.1, 1.0, 0), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::karras_sigmas(0.1, 1.0, 5, 0.0), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::sigma_to_timestep({1.0}, 1.0), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::sigma_to_timestep(table, 0.0), ddpm::invalid_argument);
}

TEST_CASE("sigma_to_timestep refuses tables holding 0, NaN, infinities or a decrease", "[samplers][timesteps][errors]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  // Each of these gave NaN (a 0 entry is log -inf, so the weight is -inf / -inf; NaN propagates).
  for (double bad : {0.0, nan, -1.0, inf}) {
    INFO("bad entry " << bad);
    for (std::size_t at : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
      std::vector<double> table = {0.1, 0.5, 1.0, 2.0};
      table[at] = bad;
      CHECK_THROWS_WITH(ddpm::sigma_to_timestep(table, 0.7),
                        Catch::Contains("ddpm::sigma_to_timestep") &&
                            Catch::Contains("sigma_table[" + std::to_string(at) + "] is " +
                                            ddpm::detail::number_string(bad)));
    }
  }
  CHECK_THROWS_WITH(ddpm::sigma_to_timestep({0.1, 0.5, 0.4, 2.0}, 0.7),
                    Catch::Contains("sigma_table[2] is 0.4") && Catch::Contains("non-decreasing"));
  CHECK_THROWS_AS(ddpm::sigma_to_timestep({0.1, 0.5}, nan), ddpm::invalid_argument);
  // Equal neighbours at the top: at or above both, the upper index (was 0 / 0 = NaN at sigma == entry).
  CHECK(ddpm::sigma_to_timestep({0.1, 0.5, 0.5}, 0.5) == 2.0);
  CHECK(ddpm::sigma_to_timestep({0.1, 0.5, 0.5}, 0.7) == 2.0);
  // Equal neighbours lower down are passed over (low is the last entry <= sigma).
  CHECK(ddpm::sigma_to_timestep({0.5, 0.5, 1.0}, 0.5) == 1.0);
  // Between distinct entries: log-linear interpolation, Eq. (S6): sqrt(0.1 * 1.0) lies half way.
  CHECK(ddpm::sigma_to_timestep({0.1, 1.0}, std::sqrt(0.1)) == Approx(0.5).margin(1e-15));
}

TEST_CASE("exponential_sigmas and polyexponential_sigmas: the closed forms", "[samplers][timesteps]") {
  // Eq. (S18): evenly spaced in log sigma; Eq. (S19): exp((1 - i / (N - 1))^rho (log max - log min) + log min).
  const double lo = 0.0292, hi = 14.6146;
  for (int N : {1, 2, 7, 30}) {
    INFO("N = " << N);
    const auto e = ddpm::exponential_sigmas(lo, hi, N);
    const auto p1 = ddpm::polyexponential_sigmas(lo, hi, N);
    const auto p3 = ddpm::polyexponential_sigmas(lo, hi, N, 3.0);
    REQUIRE(e.size() == static_cast<std::size_t>(N));
    for (int i = 0; i < N; ++i) {
      const long double u = N > 1 ? static_cast<long double>(i) / (N - 1) : 0.0L;
      const long double log_e = std::log(static_cast<long double>(hi)) +
                                u * (std::log(static_cast<long double>(lo)) - std::log(static_cast<long double>(hi)));
      const long double r = std::pow(1.0L - u, 3.0L);
      const long double log_p3 = r * (std::log(static_cast<long double>(hi)) - std::log(static_cast<long double>(lo))) +
                                 std::log(static_cast<long double>(lo));
      // A few roundings of logs of magnitude < 4: 1e-14 relative.
      CHECK(e[static_cast<std::size_t>(i)] == Approx(static_cast<double>(std::exp(log_e))).epsilon(1e-14));
      CHECK(p1[static_cast<std::size_t>(i)] == Approx(static_cast<double>(std::exp(log_e))).epsilon(1e-14));
      CHECK(p3[static_cast<std::size_t>(i)] == Approx(static_cast<double>(std::exp(log_p3))).epsilon(1e-14));
    }
    CHECK(e.front() == Approx(hi).epsilon(1e-15));
    CHECK(e.back() == Approx(N > 1 ? lo : hi).epsilon(1e-15));
    for (std::size_t i = 1; i < e.size(); ++i) CHECK(e[i] < e[i - 1]);
  }
  // Constant ratio between neighbours: the exponential grid is geometric.
  const auto g = ddpm::exponential_sigmas(0.5, 8.0, 5);  // 8, 4, 2, 1, 0.5
  for (std::size_t i = 0; i < g.size(); ++i) CHECK(g[i] == Approx(8.0 / std::pow(2.0, static_cast<double>(i))).epsilon(1e-15));

  CHECK_THROWS_AS(ddpm::exponential_sigmas(0.0, 1.0, 5), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::exponential_sigmas(2.0, 1.0, 5), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::exponential_sigmas(0.1, INFINITY, 5), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::exponential_sigmas(0.1, 1.0, 0), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::polyexponential_sigmas(0.1, 1.0, 5, 0.0), ddpm::invalid_argument);
  CHECK_THROWS_AS(ddpm::polyexponential_sigmas(0.1, 1.0, 5, NAN), ddpm::invalid_argument);
}

// spaced_timesteps is kept for one release as a deprecated alias of inference_timesteps; used here on
// purpose, with the deprecation warning silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
TEST_CASE("Deprecated alias: spaced_timesteps", "[samplers][timesteps][deprecated]") {
  for (TimestepSpacing spacing : {TimestepSpacing::leading, TimestepSpacing::trailing, TimestepSpacing::linspace}) {
    CHECK(ddpm::spaced_timesteps(1000, 7, spacing) == ddpm::inference_timesteps(1000, 7, spacing));
  }
  CHECK(ddpm::spaced_timesteps(1000, 50, TimestepSpacing::leading, 1) ==
        ddpm::inference_timesteps(1000, 50, TimestepSpacing::leading, 1));
}
#pragma GCC diagnostic pop
