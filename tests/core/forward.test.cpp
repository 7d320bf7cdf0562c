// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// The forward process (q_sample, q_step, q_mean_variance) against the float64 NumPy reference
// (tests/data/core/forward.json, written by tests/reference/make_core_fixtures.py), in every argument
// form, and its preconditions.                                             [docs/math.md, Eqs. (2), (4)]

#include <array>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "core_fixtures.hpp"
#include "ddpm/forward.hpp"

using ddpm_test::compare_lincomb;
using ddpm_test::json;
using ddpm_test::numbers;
using ddpm_test::rel_tol;

namespace {

constexpr int R = 4;
using Dims = std::array<Eigen::Index, R>;

// Every argument form of one kernel call, each compared with the reference output; see
// ddpm_test::run_all_forms for the forms, and core_fixtures.hpp for the criterion (scale |a||x| + |c||y|).
template <class S, class Ret, class Into>
void check_all_forms(const json& expected, const json& coef, const std::vector<double>& x, const std::vector<double>& y,
                     const Dims& dims, Ret&& ret, Into&& into) {
  for (const auto& [form, actual] : ddpm_test::run_all_forms<S, R>(x, y, dims, ret, into)) {
    INFO(form);
    const auto r = compare_lincomb(actual, expected, rel_tol<S>, coef, x, y, static_cast<std::size_t>(dims[0]));
    INFO(r.message);
    CHECK(r.ok);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("q_sample matches the NumPy reference (Eq. 4)", "[forward][fixture]", float, double) {
  using S = TestType;
  const json& fx = ddpm_test::core_fixture("forward.json");
  const Dims dims = ddpm_test::dims_from<R>(fx.at("shape"));
  const auto x0 = numbers(fx.at("inputs").at("x0"));
  const auto noise = numbers(fx.at("inputs").at("noise"));
  for (const json& entry : fx.at("schedules")) {
    INFO("schedule " << entry.at("name").get<std::string>());
    const auto s = ddpm_test::make_schedule<S>(entry.at("recipe"));
    for (int t : fx.at("timesteps").get<std::vector<int>>()) {
      INFO("t = " << t);
      const json& c = entry.at("q_sample").at(std::to_string(t));
      check_all_forms<S>(
          c.at("out"), c.at("coef"), x0, noise, dims,
          [&](const auto& x, const auto& n) { return ddpm::q_sample(s, x, t, n); },
          [&](const auto& x, const auto& n, auto& out) { ddpm::q_sample(s, x, t, n, out); });
    }
    const json& c = entry.at("q_sample_per_sample");
    const auto ts = c.at("t").get<std::vector<int>>();
    const std::span<const int> t(ts);
    INFO("per-sample t");
    check_all_forms<S>(
        c.at("out"), c.at("coef"), x0, noise, dims, [&](const auto& x, const auto& n) { return ddpm::q_sample(s, x, t, n); },
        [&](const auto& x, const auto& n, auto& out) { ddpm::q_sample(s, x, t, n, out); });
  }
}

TEMPLATE_TEST_CASE("q_step matches the NumPy reference (Eq. 2)", "[forward][fixture]", float, double) {
  using S = TestType;
  const json& fx = ddpm_test::core_fixture("forward.json");
  const Dims dims = ddpm_test::dims_from<R>(fx.at("shape"));
  const auto x0 = numbers(fx.at("inputs").at("x0"));
  const auto noise = numbers(fx.at("inputs").at("noise"));
  for (const json& entry : fx.at("schedules")) {
    INFO("schedule " << entry.at("name").get<std::string>());
    const auto s = ddpm_test::make_schedule<S>(entry.at("recipe"));
    for (int t : fx.at("timesteps").get<std::vector<int>>()) {
      INFO("t = " << t);
      const json& c = entry.at("q_step").at(std::to_string(t));
      check_all_forms<S>(
          c.at("out"), c.at("coef"), x0, noise, dims, [&](const auto& x, const auto& n) { return ddpm::q_step(s, x, t, n); },
          [&](const auto& x, const auto& n, auto& out) { ddpm::q_step(s, x, t, n, out); });
    }
    const json& c = entry.at("q_step_per_sample");
    const auto ts = c.at("t").get<std::vector<int>>();
    const std::span<const int> t(ts);
    INFO("per-sample t");
    check_all_forms<S>(
        c.at("out"), c.at("coef"), x0, noise, dims, [&](const auto& x, const auto& n) { return ddpm::q_step(s, x, t, n); },
        [&](const auto& x, const auto& n, auto& out) { ddpm::q_step(s, x, t, n, out); });
  }
}

TEMPLATE_TEST_CASE("q_mean_variance matches the NumPy reference (Eq. 4)", "[forward][fixture]", float, double) {
  using S = TestType;
  const json& fx = ddpm_test::core_fixture("forward.json");
  const Dims dims = ddpm_test::dims_from<R>(fx.at("shape"));
  const auto x0v = numbers(fx.at("inputs").at("x0"));
  const auto x0 = ddpm_test::tensor_from<S, R>(x0v, dims);
  const ddpm::ConstTensorMap<S, R> x0m(x0.data(), dims);
  for (const json& entry : fx.at("schedules")) {
    INFO("schedule " << entry.at("name").get<std::string>());
    const auto s = ddpm_test::make_schedule<S>(entry.at("recipe"));
    for (int t : fx.at("timesteps").get<std::vector<int>>()) {
      INFO("t = " << t);
      const json& c = entry.at("q_mean_variance").at(std::to_string(t));
      for (const auto& g : {ddpm::q_mean_variance(s, x0, t), ddpm::q_mean_variance(s, x0m, t)}) {
        const auto r = compare_lincomb(ddpm_test::to_doubles(g.mean), c.at("mean"), rel_tol<S>, c.at("coef"), x0v, x0v,
                                       static_cast<std::size_t>(dims[0]));
        INFO(r.message);
        CHECK(r.ok);
        // Scalars computed in double from alpha_bar and cast: pure relative error.
        CHECK(ddpm_test::close(g.variance, ddpm_test::number(c.at("variance")), rel_tol<S>, 0.0));
        CHECK(ddpm_test::close(g.log_variance, ddpm_test::number(c.at("log_variance")), rel_tol<S>, 0.0));
      }
    }
  }
}

TEMPLATE_TEST_CASE("q_sample on tiny samples with a timestep per sample", "[forward][fixture]", float, double) {
  // Samples of fewer than 16 values (2-D points) take the kernel's scalar path.
  using S = TestType;
  const json& p = ddpm_test::core_fixture("forward.json").at("points");
  const auto s = ddpm_test::make_schedule<S>(p.at("recipe"));
  const auto dims = ddpm_test::dims_from<2>(p.at("shape"));
  const auto x0v = numbers(p.at("x0"));
  const auto nv = numbers(p.at("noise"));
  const auto ts = p.at("t").get<std::vector<int>>();
  const auto x0 = ddpm_test::tensor_from<S, 2>(x0v, dims);
  const auto noise = ddpm_test::tensor_from<S, 2>(nv, dims);
  const auto out = ddpm::q_sample(s, x0, std::span<const int>(ts), noise);
  const auto r = compare_lincomb(ddpm_test::to_doubles(out), p.at("q_sample"), rel_tol<S>, p.at("coef"), x0v, nv,
                                 static_cast<std::size_t>(dims[0]));
  INFO(r.message);
  CHECK(r.ok);
}

TEMPLATE_TEST_CASE("q_sample and q_step: one timestep per sample, all equal, is the shared timestep", "[forward]",
                   float, double) {
  // The two overloads gather the same coefficients; the results must agree bit for bit.
  using S = TestType;
  const auto s = ddpm::NoiseSchedule<S>::cosine();
  const json& fx = ddpm_test::core_fixture("forward.json");
  const Dims dims = ddpm_test::dims_from<R>(fx.at("shape"));
  const auto x0 = ddpm_test::tensor_from<S, R>(numbers(fx.at("inputs").at("x0")), dims);
  const auto noise = ddpm_test::tensor_from<S, R>(numbers(fx.at("inputs").at("noise")), dims);
  for (int t : {0, 17, 999}) {
    const std::vector<int> ts(static_cast<std::size_t>(dims[0]), t);
    const std::span<const int> span(ts);
    CHECK(ddpm_test::to_doubles(ddpm::q_sample(s, x0, span, noise)) ==
          ddpm_test::to_doubles(ddpm::q_sample(s, x0, t, noise)));
    CHECK(ddpm_test::to_doubles(ddpm::q_step(s, x0, span, noise)) == ddpm_test::to_doubles(ddpm::q_step(s, x0, t, noise)));
  }
}

TEMPLATE_TEST_CASE("forward process: bad arguments throw ddpm::invalid_argument", "[forward][errors]", float, double) {
  using S = TestType;
  using T4 = ddpm::Tensor<S, 4>;
  const auto s = ddpm::NoiseSchedule<S>::linear(100);
  T4 x(3, 2, 4, 4), n(3, 2, 4, 4), out;
  x.setConstant(S(0.5));
  n.setConstant(S(-0.25));

  SECTION("t outside [0, T)") {
    for (int t : {-1, 100, 1000, -1000}) {
      INFO("t = " << t);
      CHECK_THROWS_AS(ddpm::q_sample(s, x, t, n), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_sample(s, x, t, n, out), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_step(s, x, t, n), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_step(s, x, t, n, out), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_mean_variance(s, x, t), ddpm::invalid_argument);
    }
    CHECK_NOTHROW(ddpm::q_sample(s, x, 99, n));
    CHECK_THROWS_WITH(ddpm::q_sample(s, x, 100, n), Catch::Contains("q_sample") && Catch::Contains("t is 100"));
  }
  SECTION("per-sample t of the wrong length or out of range") {
    using V = std::vector<int>;
    for (const V& ts : {V{}, V{1, 2}, V{1, 2, 3, 4}, V{0, -1, 5}, V{0, 5, 100}, V{100, 0, 0}}) {
      INFO("t of size " << ts.size());
      const std::span<const int> t(ts);
      CHECK_THROWS_AS(ddpm::q_sample(s, x, t, n), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_sample(s, x, t, n, out), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_step(s, x, t, n), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_step(s, x, t, n, out), ddpm::invalid_argument);
    }
    const V ok{0, 50, 99};
    CHECK_NOTHROW(ddpm::q_sample(s, x, std::span<const int>(ok), n));
  }
  SECTION("noise of another shape") {
    for (const T4& bad : {T4(3, 2, 4, 5), T4(2, 2, 4, 4), T4(3, 1, 4, 4), T4(3, 2, 16, 1)}) {
      CHECK_THROWS_AS(ddpm::q_sample(s, x, 5, bad), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_step(s, x, 5, bad), ddpm::invalid_argument);
      CHECK_THROWS_AS(ddpm::q_sample(s, x, 5, ddpm::ConstTensorMap<S, 4>(bad.data(), bad.dimensions())),
                      ddpm::invalid_argument);
    }
  }
  SECTION("a TensorMap out of the wrong shape") {
    std::vector<S> buf(96);
    ddpm::TensorMap<S, 4> wrong(buf.data(), 3, 2, 2, 8);
    CHECK_THROWS_AS(ddpm::q_sample(s, x, 5, n, wrong), ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::q_step(s, x, 5, n, wrong), ddpm::invalid_argument);
    ddpm::TensorMap<S, 4> small(buf.data(), 1, 2, 4, 4);
    CHECK_THROWS_AS(ddpm::q_sample(s, x, 5, n, small), ddpm::invalid_argument);
    ddpm::TensorMap<S, 4> right(buf.data(), 3, 2, 4, 4);
    CHECK_NOTHROW(ddpm::q_sample(s, x, 5, n, right));
  }
  SECTION("an empty batch") {
    T4 empty(0, 2, 4, 4);
    CHECK_THROWS_AS(ddpm::q_sample(s, empty, 5, empty), ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::q_step(s, empty, 5, empty), ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::q_mean_variance(s, empty, 5), ddpm::invalid_argument);
    const std::vector<int> none;
    CHECK_THROWS_AS(ddpm::q_sample(s, empty, std::span<const int>(none), empty), ddpm::invalid_argument);
  }
}
