// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Shared by the tests of optim.hpp, ema.hpp, lr_schedule.hpp and io/training_state.hpp: the fixture that
// tests/reference/make_optim_fixtures.py writes (PyTorch's own optimisers and clip_grad_norm_, diffusers'
// EMA decays and schedules), and a model's parameters as owned vectors with span lists over them.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "core_fixtures.hpp"

namespace ddpm_test {

/// tests/data/training/optim.json, parsed once.
inline const json& optim_fixture() {
  static const json j = [] {
    const std::string path = std::string(DDPM_TEST_DATA_DIR) + "/training/optim.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open test fixture " + path);
    return json::parse(in);
  }();
  return j;
}

/// A list of tensors owned as vectors, with the span lists an optimiser takes.
template <class S>
struct TensorList {
  std::vector<std::vector<S>> data;

  TensorList() = default;
  explicit TensorList(const json& tensors) {
    for (const json& t : tensors) {
      std::vector<S> v;
      for (const json& x : t) v.push_back(static_cast<S>(number(x)));
      data.push_back(std::move(v));
    }
  }
  /// Tensors of the given sizes, element i of tensor k set to f(k, i).
  template <class F>
  TensorList(const std::vector<std::size_t>& sizes, F&& f) {
    for (std::size_t k = 0; k < sizes.size(); ++k) {
      std::vector<S> v(sizes[k]);
      for (std::size_t i = 0; i < sizes[k]; ++i) v[i] = static_cast<S>(f(k, i));
      data.push_back(std::move(v));
    }
  }
  std::vector<std::span<S>> spans() {
    std::vector<std::span<S>> out;
    for (auto& v : data) out.emplace_back(v);
    return out;
  }
  std::vector<std::span<const S>> const_spans() const {
    std::vector<std::span<const S>> out;
    for (const auto& v : data) out.emplace_back(v);
    return out;
  }
};

/// Compares tensor lists element by element: |a - e| <= tol * max(|e|, scale), scale = the largest |e| of
/// that tensor (a moment or a parameter carries rounding proportional to the largest terms it was built
/// from, not to an element that happens to be near 0).
template <class S>
void check_tensors(const std::vector<std::vector<S>>& actual, const json& expected, double tol,
                   const std::string& what) {
  REQUIRE(actual.size() == expected.size());
  for (std::size_t k = 0; k < actual.size(); ++k) {
    const std::vector<double> e = numbers(expected[k]);
    double scale = 0.0;
    for (double x : e) scale = std::max(scale, std::abs(x));
    const std::vector<double> a(actual[k].begin(), actual[k].end());
    const auto r = compare(a, e, tol, scale);
    INFO(what << ", tensor " << k << ": " << r.message);
    CHECK(r.ok);
  }
}

}  // namespace ddpm_test
