// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Shared by the tests of the training objectives (loss.hpp, vlb.hpp): the fixtures that
// tests/reference/make_training_fixtures.py writes (float64 torch autograd, confirmed against
// improved-diffusion's own code) and the comparison helpers of core_fixtures.hpp. Every fixture input is
// exactly representable in float, so float and double runs see the same inputs and the same references.

#include <fstream>
#include <string>

#include "core_fixtures.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm_test {

/// tests/data/training/losses.json, parsed once.
inline const json& training_fixture() {
  static const json j = [] {
    const std::string path = std::string(DDPM_TEST_DATA_DIR) + "/training/losses.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open test fixture " + path);
    return json::parse(in);
  }();
  return j;
}

template <class S>
ddpm::NoiseSchedule<S> training_schedule(const std::string& name) {
  return ddpm::NoiseSchedule<S>::from_betas(numbers(training_fixture().at("schedules").at(name)));
}

/// The fixture's (N, C, H, W), optionally with the channels multiplied.
inline std::array<Eigen::Index, 4> training_dims(int channel_factor = 1) {
  std::array<Eigen::Index, 4> d = dims_from<4>(training_fixture().at("shape"));
  d[1] *= channel_factor;
  return d;
}

/// The shared inputs (t, x0, eps, x_t) of a schedule.
inline const json& training_inputs(const std::string& schedule) { return training_fixture().at("inputs").at(schedule); }

inline std::vector<int> fixture_timesteps(const json& inputs) { return inputs.at("t").get<std::vector<int>>(); }

}  // namespace ddpm_test
