// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Shared by the tests of the core math (schedule, forward, posterior): reading the fixtures that
// tests/reference/make_core_fixtures.py writes (an independent float64 NumPy implementation) and comparing
// results against them.
//
// The comparison criterion, used everywhere:   |actual - expected| <= tol * max(|expected|, scale)
//   tol   = 1e-12 for double, 1e-6 for float (relative);
//   scale = the magnitude the value was computed from. A result that is a sum of terms (a * x + c * y)
//           carries a rounding error proportional to |a x| + |c y|, not to the sum itself, which can be
//           arbitrarily close to 0 after cancellation; so for such results scale is |a||x| + |c||y|, per
//           element, from the coefficients the reference file states. Each other use names its scale.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm_test {

using json = nlohmann::json;

/// tests/data/core/<name>, parsed once per test run.
inline const json& core_fixture(const std::string& name) {
  static std::map<std::string, json> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    const std::string path = std::string(DDPM_TEST_DATA_DIR) + "/core/" + name;
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open test fixture " + path);
    it = cache.emplace(name, json::parse(in)).first;
  }
  return it->second;
}

/// A fixture number; JSON has no infinities, so the generator writes them as strings.
inline double number(const json& j) {
  if (j.is_string()) {
    const std::string s = j.get<std::string>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    throw std::runtime_error("bad fixture number " + s);
  }
  return j.get<double>();
}

inline std::vector<double> numbers(const json& j) {
  std::vector<double> v;
  v.reserve(j.size());
  for (const json& x : j) v.push_back(number(x));
  return v;
}

/// The relative tolerance for a scalar type: 1e-12 for double, 1e-6 for float.
template <class S>
inline constexpr double rel_tol = std::is_same_v<S, float> ? 1e-6 : 1e-12;

/// |actual - expected| <= tol * max(|expected|, scale); equal infinities (and NaNs) match.
inline bool close(double actual, double expected, double tol, double scale) {
  if (std::isnan(expected) || std::isnan(actual)) return std::isnan(expected) && std::isnan(actual);
  if (std::isinf(expected) || std::isinf(actual)) return actual == expected;
  return std::abs(actual - expected) <= tol * std::max(std::abs(expected), scale);
}

inline std::string fmt(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

/// Compares element by element; on failure the message names the worst element.
struct Comparison {
  bool ok = true;
  std::string message = "all elements match";
};

template <class Scale>
Comparison compare(const std::vector<double>& actual, const std::vector<double>& expected, double tol, Scale&& scale) {
  Comparison r;
  if (actual.size() != expected.size()) {
    r.ok = false;
    r.message = "size " + std::to_string(actual.size()) + " but expected " + std::to_string(expected.size());
    return r;
  }
  double worst = 0.0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double s = scale(i);
    if (close(actual[i], expected[i], tol, s)) continue;
    const double excess = std::abs(actual[i] - expected[i]) / std::max({std::abs(expected[i]), s, 1e-300});
    if (!r.ok && !(excess > worst)) continue;
    r.ok = false;
    worst = excess;
    r.message = "element " + std::to_string(i) + ": actual " + fmt(actual[i]) + ", expected " + fmt(expected[i]) +
                ", scale " + fmt(s) + ", |diff| / max(|expected|, scale) = " + fmt(excess) + " > " + fmt(tol);
  }
  return r;
}

inline Comparison compare(const std::vector<double>& actual, const std::vector<double>& expected, double tol,
                          double scale = 0.0) {
  return compare(actual, expected, tol, [scale](std::size_t) { return scale; });
}

template <ddpm::DenseTensor T>
std::vector<double> to_doubles(const T& t) {
  return std::vector<double>(t.data(), t.data() + t.size());
}

template <class A>
std::vector<double> array_to_doubles(const A& a) {
  return std::vector<double>(a.data(), a.data() + a.size());
}

template <class S, int R>
ddpm::Tensor<S, R> tensor_from(const std::vector<double>& values, const std::array<Eigen::Index, R>& dims) {
  ddpm::Tensor<S, R> t(dims);
  REQUIRE(static_cast<std::size_t>(t.size()) == values.size());
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<S>(values[static_cast<std::size_t>(i)]);
  return t;
}

template <int R>
std::array<Eigen::Index, R> dims_from(const json& shape) {
  std::array<Eigen::Index, R> d{};
  REQUIRE(shape.size() == static_cast<std::size_t>(R));
  for (int i = 0; i < R; ++i) d[i] = shape[i].get<Eigen::Index>();
  return d;
}

/// Builds the schedule a fixture recipe describes, with the library's constructors.
template <class S>
ddpm::NoiseSchedule<S> make_schedule(const json& recipe) {
  using N = ddpm::NoiseSchedule<S>;
  const std::string kind = recipe.at("kind").get<std::string>();
  const int T = recipe.at("T").get<int>();
  if (kind == "linear") return N::linear(T, recipe.at("beta_start").get<double>(), recipe.at("beta_end").get<double>());
  if (kind == "scaled_linear") return N::scaled_linear(T, recipe.at("beta_start").get<double>(), recipe.at("beta_end").get<double>());
  if (kind == "sigmoid") return N::sigmoid(T, recipe.at("beta_start").get<double>(), recipe.at("beta_end").get<double>());
  if (kind == "cosine") return N::cosine(T, recipe.at("s").get<double>(), recipe.at("max_beta").get<double>());
  if (kind == "zero_terminal_snr") return make_schedule<S>(recipe.at("of")).rescaled_zero_terminal_snr();
  throw std::runtime_error("unknown fixture schedule kind " + kind);
}

/// The error scale of out = a * x + c * y, per element: |a[b]| |x[i]| + |c[b]| |y[i]|, where b is the
/// batch element of i and coef is the fixture's [a, c] (shared) or [[a_0, c_0], [a_1, c_1], ...].
inline std::vector<double> lincomb_scale(const json& coef, const std::vector<double>& x, const std::vector<double>& y,
                                         std::size_t batch) {
  std::vector<double> s(x.size());
  const std::size_t per = x.size() / batch;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const json& ab = coef.at(0).is_array() ? coef.at(i / per) : coef;
    s[i] = std::abs(number(ab.at(0))) * std::abs(x[i]) + std::abs(number(ab.at(1))) * std::abs(y[i]);
  }
  return s;
}

inline Comparison compare_lincomb(const std::vector<double>& actual, const json& expected, double tol, const json& coef,
                                  const std::vector<double>& x, const std::vector<double>& y, std::size_t batch) {
  const std::vector<double> scale = lincomb_scale(coef, x, y, batch);
  return compare(actual, numbers(expected), tol, [&scale](std::size_t i) { return scale[i]; });
}

/// Runs a kernel in every way a caller can pass it tensors and returns each result with a label:
///   ret(x, y)        the returning overload, with x, y as Tensor / ConstTensorMap / TensorMap;
///   into(x, y, out)  the out-parameter overload, into an empty Tensor, a Tensor of another shape (both
///                    resized), a TensorMap over the caller's buffer, and in place over x and over y.
template <class S, int R, class Ret, class Into>
std::vector<std::pair<std::string, std::vector<double>>> run_all_forms(const std::vector<double>& xv,
                                                                        const std::vector<double>& yv,
                                                                        const std::array<Eigen::Index, R>& dims,
                                                                        Ret&& ret, Into&& into) {
  using T = ddpm::Tensor<S, R>;
  std::vector<std::pair<std::string, std::vector<double>>> results;
  const T x = tensor_from<S, R>(xv, dims);
  const T y = tensor_from<S, R>(yv, dims);
  {
    auto r = ret(x, y);
    static_assert(std::is_same_v<decltype(r), T>, "the returning overload returns a plain Tensor");
    results.emplace_back("ret(Tensor, Tensor)", to_doubles(r));
  }
  {
    ddpm::ConstTensorMap<S, R> xm(x.data(), dims);
    ddpm::ConstTensorMap<S, R> ym(y.data(), dims);
    auto r = ret(xm, ym);
    static_assert(std::is_same_v<decltype(r), T>, "a map argument still returns a plain Tensor");
    results.emplace_back("ret(ConstTensorMap, ConstTensorMap)", to_doubles(r));
  }
  {
    std::vector<S> xbuf(x.data(), x.data() + x.size());
    ddpm::TensorMap<S, R> xm(xbuf.data(), dims);
    results.emplace_back("ret(TensorMap, Tensor)", to_doubles(ret(xm, y)));
  }
  {
    T out;
    into(x, y, out);
    REQUIRE(ddpm::detail::same_shape(out, x));
    results.emplace_back("into(Tensor, Tensor, empty Tensor)", to_doubles(out));
  }
  {
    std::array<Eigen::Index, R> other{};
    other.fill(1);
    T out(other);
    out.setConstant(S(7));
    into(x, y, out);
    REQUIRE(ddpm::detail::same_shape(out, x));
    results.emplace_back("into(Tensor, Tensor, Tensor of another shape)", to_doubles(out));
  }
  {
    std::vector<S> buf(static_cast<std::size_t>(x.size()), S(-5));
    ddpm::TensorMap<S, R> out(buf.data(), dims);
    into(ddpm::ConstTensorMap<S, R>(x.data(), dims), ddpm::ConstTensorMap<S, R>(y.data(), dims), out);
    results.emplace_back("into(ConstTensorMap, ConstTensorMap, TensorMap)", std::vector<double>(buf.begin(), buf.end()));
  }
  {
    T inout = x;
    into(inout, y, inout);
    results.emplace_back("into(x, y, out = x) in place", to_doubles(inout));
  }
  {
    T inout = y;
    into(x, inout, inout);
    results.emplace_back("into(x, y, out = y) in place", to_doubles(inout));
  }
  return results;
}

}  // namespace ddpm_test
