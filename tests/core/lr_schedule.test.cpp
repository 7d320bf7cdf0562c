// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Learning-rate schedules against torch's LambdaLR driven by diffusers' lambdas
// (tests/data/training/optim.json, confirmed against diffusers' own schedule functions), and the
// preconditions.                                                  [docs/training.md, "Learning-rate schedules"]

#include <cstdint>
#include <limits>

#include <catch2/catch.hpp>

#include "ddpm/lr_schedule.hpp"
#include "optim_fixture.hpp"

using ddpm_test::json;
using ddpm_test::number;
using ddpm_test::optim_fixture;

namespace {

ddpm::LRSchedule schedule_of(const json& c) {
  const std::string kind = c["kind"];
  const double lr = c["base_lr"].get<double>();
  if (kind == "constant") return ddpm::LRSchedule::constant(lr);
  if (kind == "constant_with_warmup") return ddpm::LRSchedule::constant_with_warmup(lr, c["warmup"]);
  if (kind == "linear") {
    return ddpm::LRSchedule::linear_with_warmup(lr, c["warmup"], c["training"], c.value("f_min", 0.0),
                                                c.value("f_max", 1.0));
  }
  return ddpm::LRSchedule::cosine_with_warmup(lr, c["warmup"], c["training"], c.value("num_cycles", 0.5));
}

}  // namespace

TEST_CASE("LRSchedule gives LambdaLR's learning rates with diffusers' lambdas", "[lr_schedule]") {
  for (const json& c : optim_fixture()["schedules"]) {
    INFO(c["kind"] << " " << c.value("warmup", 0) << " " << c.value("training", 0));
    const ddpm::LRSchedule s = schedule_of(c);
    for (std::size_t k = 0; k < c["lrs"].size(); ++k) {
      INFO("step " << k);
      // The same double operations in the same order as diffusers' Python (and the same libm cos), so
      // within 1e-12 relative; in practice bit for bit.
      CHECK(ddpm_test::close(s.lr(static_cast<std::int64_t>(k)), number(c["lrs"][k]), 1e-12, 0.0));
    }
  }
}

TEST_CASE("LRSchedule drives an optimiser's lr", "[lr_schedule]") {
  const auto s = ddpm::LRSchedule::linear_with_warmup(1e-3, 4, 10);
  ddpm::AdamW<float> opt;
  s.apply(opt);  // step_count() == 0: the warm-up starts at 0
  CHECK(opt.lr() == 0.0);
  CHECK(s.factor(2) == 0.5);
  CHECK(s.factor(4) == 1.0);
  CHECK(s.factor(10) == 0.0);
  CHECK(s.factor(20) == 0.0);  // clamped at 0 past the end
}

TEST_CASE("LRSchedule rejects bad arguments", "[lr_schedule]") {
  using ddpm::LRSchedule;
  CHECK_THROWS_WITH(LRSchedule::constant(-1e-4), Catch::Contains("base_lr is -1e-04"));
  CHECK_THROWS_WITH(LRSchedule::constant(std::numeric_limits<double>::infinity()), Catch::Contains("base_lr is inf"));
  CHECK_THROWS_WITH(LRSchedule::constant_with_warmup(1e-4, -1), Catch::Contains("num_warmup_steps is -1"));
  CHECK_THROWS_WITH(LRSchedule::linear_with_warmup(1e-4, 1, -5), Catch::Contains("num_training_steps is -5"));
  CHECK_THROWS_WITH(LRSchedule::cosine_with_warmup(1e-4, 1, 5, std::numeric_limits<double>::quiet_NaN()),
                    Catch::Contains("num_cycles is nan"));
  CHECK_THROWS_WITH(LRSchedule::constant(1e-4).lr(-1), Catch::Contains("step is -1"));
}
