// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// EMA of the weights: diffusers' EMAModel decay sequence bit for bit and its shadow weights after 12 steps
// (tests/data/training/optim.json, confirmed against diffusers' own EMAModel), improved-diffusion's fixed
// rate against its closed form, copy_to / swap, and the preconditions.     [docs/training.md, Eqs. (O5), (O6)]

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/ema.hpp"
#include "optim_fixture.hpp"

using ddpm_test::json;
using ddpm_test::number;
using ddpm_test::optim_fixture;
using ddpm_test::rel_tol;
using ddpm_test::TensorList;

namespace {

ddpm::EMAOptions ema_options(const json& o) {
  return {.decay = o["decay"].get<double>(),
          .min_decay = o["min_decay"].get<double>(),
          .update_after_step = o["update_after_step"].get<std::int64_t>(),
          .use_ema_warmup = o["use_ema_warmup"].get<bool>(),
          .inv_gamma = o["inv_gamma"].get<double>(),
          .power = o["power"].get<double>()};
}

}  // namespace

TEST_CASE("ema_decay is diffusers' EMAModel.get_decay, bit for bit (O6)", "[ema]") {
  const json& e = optim_fixture()["ema"];
  for (const json& c : e["cases"]) {
    INFO(c["options"].dump());
    const ddpm::EMAOptions o = ema_options(c["options"]);
    for (std::size_t i = 0; i < e["steps"].size(); ++i) {
      const auto step = e["steps"][i].get<std::int64_t>();
      INFO("optimization_step " << step);
      CHECK(ddpm::ema_decay(o, step) == number(c["decays"][i]));
    }
  }
}

TEMPLATE_TEST_CASE("EMA::step follows diffusers' EMAModel.step over 12 steps (O6)", "[ema]", float, double) {
  using S = TestType;
  const json& e = optim_fixture()["ema"];
  for (const json& c : e["cases"]) {
    INFO(c["options"].dump());
    TensorList<S> weights(e["weights"][0]);
    ddpm::EMA<S> ema(weights.const_spans(), ema_options(c["options"]));
    CHECK(std::isnan(ema.current_decay()));
    for (std::size_t k = 1; k <= 12; ++k) {
      weights = TensorList<S>(e["weights"][k]);
      const double expected_decay = ddpm::ema_decay(ema.options(), static_cast<std::int64_t>(k));
      CHECK(ema.next_decay() == expected_decay);
      CHECK(ema.step(weights.const_spans()) == expected_decay);
      CHECK(ema.current_decay() == expected_decay);
    }
    CHECK(ema.optimization_step() == 12);
    ddpm_test::check_tensors(ema.shadow(), c[std::is_same_v<S, float> ? "shadow_float32" : "shadow_float64"],
                             rel_tol<S>, "shadow");
  }
}

TEMPLATE_TEST_CASE("Fixed-rate EMA: s_n = p + rate^n (s_0 - p) for constant weights (O5)", "[ema]", float, double) {
  using S = TestType;
  const std::vector<std::size_t> sizes{1, 33, 40000};
  const TensorList<S> start(sizes, [](std::size_t k, std::size_t i) { return std::cos(0.1 * double(i) + double(k)); });
  TensorList<S> p(sizes, [](std::size_t k, std::size_t i) { return std::sin(0.7 * double(i) - double(k)); });
  const double rate = 0.9;
  const int n = 50;
  auto ema = ddpm::EMA<S>::fixed_rate(start.const_spans(), rate);
  CHECK(ema.is_fixed_rate());
  CHECK(ema.rate() == rate);
  TensorList<S> free_fn = start;  // update_ema, improved-diffusion's function, on its own copy
  for (int i = 0; i < n; ++i) {
    CHECK(ema.step(p.const_spans()) == rate);
    ddpm::update_ema<S>(free_fn.spans(), p.const_spans(), rate);
  }
  CHECK(free_fn.data == ema.shadow());  // the same arithmetic, bit for bit
  // Each step rounds a convex combination of values bounded by 1: error <= ~3 eps per step, n steps.
  const double tol = 3.0 * n * std::numeric_limits<S>::epsilon();
  const double rn = std::pow(rate, n);
  double worst = 0.0;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    for (std::size_t i = 0; i < sizes[k]; ++i) {
      const double pv = p.data[k][i], s0 = start.data[k][i];
      worst = std::max(worst, std::abs(double(ema.shadow()[k][i]) - (pv + rn * (s0 - pv))));
    }
  }
  CHECK(worst <= tol);
}

TEMPLATE_TEST_CASE("EMA: the first diffusers step copies the weights; copy_to and swap", "[ema]", float, double) {
  using S = TestType;
  const std::vector<std::size_t> sizes{5, 70};
  TensorList<S> w(sizes, [](std::size_t k, std::size_t i) { return double(i) * 0.25 - double(k); });
  ddpm::EMA<S> ema(w.const_spans(), {.decay = 0.99});
  TensorList<S> w1(sizes, [](std::size_t k, std::size_t i) { return double(i) * 0.5 + double(k); });
  CHECK(ema.step(w1.const_spans()) == 0.0);  // decay 0 at optimization_step 1
  // s - 1 * (s - p) with every value a multiple of 1/4 below 64: exact.
  CHECK(ema.shadow() == w1.data);
  TensorList<S> w2(sizes, [](std::size_t, std::size_t i) { return double(i); });
  ema.step(w2.const_spans());
  const auto shadow = ema.shadow();
  TensorList<S> model = w2;
  ema.swap(model.spans());
  CHECK(model.data == shadow);
  CHECK(ema.shadow() == w2.data);
  ema.swap(model.spans());
  CHECK(model.data == w2.data);
  CHECK(ema.shadow() == shadow);
  TensorList<S> target(sizes, [](std::size_t, std::size_t) { return 0.0; });
  ema.copy_to(target.spans());
  CHECK(target.data == shadow);
}

TEST_CASE("EMA rejects bad options and mismatched lists", "[ema]") {
  TensorList<float> w({3, 4}, [](std::size_t, std::size_t) { return 1.0; });
  TensorList<float> other({3, 5}, [](std::size_t, std::size_t) { return 1.0; });
  const auto p = w.const_spans();
  CHECK_THROWS_WITH(ddpm::EMA<float>(p, {.decay = 1.5}), Catch::Contains("decay is 1.5"));
  CHECK_THROWS_WITH(ddpm::EMA<float>(p, {.decay = 0.9, .min_decay = 0.95}), Catch::Contains("min_decay is 0.95"));
  CHECK_THROWS_WITH(ddpm::EMA<float>(p, {.update_after_step = -1}), Catch::Contains("update_after_step is -1"));
  CHECK_THROWS_WITH(ddpm::EMA<float>(p, {.inv_gamma = 0.0}), Catch::Contains("inv_gamma is 0"));
  CHECK_THROWS_WITH(ddpm::EMA<float>(p, {.power = -1.0}), Catch::Contains("power is -1"));
  CHECK_THROWS_WITH(ddpm::EMA<float>::fixed_rate(p, 1.01), Catch::Contains("rate is 1.01"));
  CHECK_THROWS_WITH(ddpm::update_ema<float>(w.spans(), other.const_spans(), 0.5), Catch::Contains("source[1]"));
  ddpm::EMA<float> ema(p);
  CHECK_THROWS_WITH(ema.step(other.const_spans()), Catch::Contains("params[1] has 5 elements"));
  CHECK_THROWS_AS(ema.copy_to(other.spans()), ddpm::invalid_argument);
  CHECK_THROWS_AS(ema.swap(other.spans()), ddpm::invalid_argument);
  CHECK_THROWS_AS(ema.load_state(1, 0.0, other.data), ddpm::invalid_argument);
  CHECK_THROWS_AS(ema.load_state(-1, 0.0, w.data), ddpm::invalid_argument);
}
