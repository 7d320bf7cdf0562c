// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Shared by the sampler tests: reading tests/data/samplers/*.json (written by
// tests/reference/make_sampler_fixtures.py, an independent float64 NumPy implementation of the reference
// semantics), turning a fixture's options into ours, replaying stored noise, and the comparison criterion.
//
// Criterion:  |actual - expected| <= tol * max(|expected|, scale),  tol = 1e-10 (double), 1e-6 (float)
// for a single step, and the per-test tolerances stated where trajectories accumulate rounding. scale is
// the magnitude of the terms the result is a sum of (term_scale below; at least 1, as the values are O(1)):
// a relative criterion alone would fail on results that cancel to near 0, e.g. x0 = x / sqrt(ab) -
// sqrt(1 / ab - 1) eps at large t, whose terms are 6 times larger than x.

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "ddpm/predictor.hpp"
#include "ddpm/random.hpp"
#include "ddpm/samplers/common.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace sampler_test {

using json = nlohmann::json;

/// tests/data/samplers/<name>, parsed once per run.
inline const json& fixture(const std::string& name) {
  static std::map<std::string, json> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    const std::string path = std::string(DDPM_TEST_DATA_DIR) + "/samplers/" + name;
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open test fixture " + path);
    it = cache.emplace(name, json::parse(in)).first;
  }
  return it->second;
}

inline std::vector<double> numbers(const json& j) { return j.get<std::vector<double>>(); }

/// 1e-10 (double) and 1e-6 (float): the parity tolerance of a single step.
template <class S>
inline constexpr double step_tol = std::is_same_v<S, float> ? 1e-6 : 1e-10;

/// The worst |actual - expected| / max(|expected|, scale) over all elements.
template <class A>
double worst_error(const A& actual, const std::vector<double>& expected, double scale = 1.0) {
  REQUIRE(static_cast<std::size_t>(actual.size()) == expected.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double a = static_cast<double>(actual.data()[i]);
    const double e = expected[i];
    const double err = std::abs(a - e) / std::max(std::abs(e), scale);
    worst = std::isnan(err) ? INFINITY : std::max(worst, err);
  }
  return worst;
}

/// The magnitude of the terms a step computes x0 from: max(1, max_i |c1 x_i| + |c2 m_i|) for
/// x0 = c1 x + c2 m, with (c1, c2) written out from Eqs. (8) and (15) of docs/math.md for the kind
/// (epsilon: (1 / sqrt(ab), sqrt(1 / ab - 1)); velocity: (sqrt(ab), sqrt(1 - ab)); sample: (0, 1)).
/// Rounding in a step is relative to this, not to the result, which may cancel to near 0; the rest of a
/// step multiplies x0 by a coefficient <= 1 and adds terms of magnitude |x|, |z|.
/// m holds the model output; with twice x's channels only the first half of each batch element counts.
template <class X, class M>
double term_scale(ddpm::Prediction kind, double ab, const X& x, const M& m) {
  double c1 = 0.0, c2 = 1.0;
  if (kind == ddpm::Prediction::epsilon) c1 = 1.0 / std::sqrt(ab), c2 = std::sqrt(1.0 / ab - 1.0);
  if (kind == ddpm::Prediction::velocity) c1 = std::sqrt(ab), c2 = std::sqrt(1.0 - ab);
  const Eigen::Index batch = x.dimension(0), ps = x.size() / batch, stride = m.size() / batch;
  double scale = 1.0;
  for (Eigen::Index b = 0; b < batch; ++b) {
    for (Eigen::Index j = 0; j < ps; ++j) {
      const double v = c1 * std::abs(static_cast<double>(x.data()[b * ps + j])) +
                       c2 * std::abs(static_cast<double>(m.data()[b * stride + j]));
      scale = std::max(scale, v);
    }
  }
  return scale;
}

template <class S, int R>
ddpm::Tensor<S, R> tensor(const std::vector<double>& values, const std::array<Eigen::Index, R>& dims,
                          double scale = 1.0) {
  ddpm::Tensor<S, R> t(dims);
  REQUIRE(static_cast<std::size_t>(t.size()) == values.size());
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<S>(values[static_cast<std::size_t>(i)] * scale);
  return t;
}

/// The schedule a fixture recipe describes, built with the library's constructors.
template <class S>
ddpm::NoiseSchedule<S> make_schedule(const json& r) {
  using N = ddpm::NoiseSchedule<S>;
  const std::string kind = r.at("kind").get<std::string>();
  if (kind == "linear") return N::linear(r.at("T"), r.at("beta_start"), r.at("beta_end"));
  if (kind == "scaled_linear") return N::scaled_linear(r.at("T"), r.at("beta_start"), r.at("beta_end"));
  if (kind == "cosine") return N::cosine(r.at("T"), r.at("s"), r.at("max_beta"));
  if (kind == "zero_terminal_snr") return make_schedule<S>(r.at("of")).rescaled_zero_terminal_snr();
  throw std::runtime_error("unknown schedule kind " + kind);
}

inline ddpm::Prediction kind_of(const json& j) {
  const std::string k = j.get<std::string>();
  if (k == "epsilon") return ddpm::Prediction::epsilon;
  if (k == "sample") return ddpm::Prediction::sample;
  if (k == "velocity") return ddpm::Prediction::velocity;
  throw std::runtime_error("unknown prediction kind " + k);
}

inline ddpm::TimestepSpacing spacing_of(const std::string& s) {
  if (s == "leading") return ddpm::TimestepSpacing::leading;
  if (s == "trailing") return ddpm::TimestepSpacing::trailing;
  if (s == "linspace") return ddpm::TimestepSpacing::linspace;
  throw std::runtime_error("unknown spacing " + s);
}

inline ddpm::Clipping clipping_of(const json& o) {
  if (!o.contains("clipping")) return ddpm::Clipping::none();
  const json& c = o.at("clipping");
  if (c.at("mode") == "clip") return ddpm::Clipping::clip(c.at("range"));
  return ddpm::Clipping::dynamic_threshold(c.at("ratio"), c.at("max_value"));
}

inline ddpm::VarianceType variance_of(const std::string& v) {
  if (v == "fixed_small") return ddpm::VarianceType::fixed_small;
  if (v == "fixed_small_log") return ddpm::VarianceType::fixed_small_log;
  if (v == "fixed_large") return ddpm::VarianceType::fixed_large;
  if (v == "learned_range") return ddpm::VarianceType::learned_range;
  throw std::runtime_error("unknown variance type " + v);
}

inline ddpm::DDPMOptions ddpm_options(const json& o) {
  ddpm::DDPMOptions r;
  r.grid.num_inference_steps = o.value("num_inference_steps", 0);
  r.grid.timestep_spacing = spacing_of(o.value("timestep_spacing", std::string("leading")));
  r.grid.steps_offset = o.value("steps_offset", 0);
  r.grid.timesteps = o.value("timesteps", std::vector<int>{});
  r.variance_type = variance_of(o.value("variance_type", std::string("fixed_small")));
  r.clipping = clipping_of(o);
  return r;
}

inline ddpm::DDIMOptions ddim_options(const json& o) {
  ddpm::DDIMOptions r;
  r.grid.num_inference_steps = o.value("num_inference_steps", 50);
  r.grid.timestep_spacing = spacing_of(o.value("timestep_spacing", std::string("leading")));
  r.grid.steps_offset = o.value("steps_offset", 0);
  r.grid.timesteps = o.value("timesteps", std::vector<int>{});
  r.eta = o.value("eta", 0.0);
  r.set_alpha_to_one = o.value("set_alpha_to_one", true);
  r.clipping = clipping_of(o);
  r.use_clipped_model_output = o.value("use_clipped_model_output", true);
  return r;
}

inline ddpm::DPMSolverOptions dpm_options(const json& o) {
  ddpm::DPMSolverOptions r;
  r.grid.num_inference_steps = o.value("num_inference_steps", 20);
  r.grid.timestep_spacing = spacing_of(o.value("timestep_spacing", std::string("linspace")));
  r.grid.use_karras_sigmas = o.value("use_karras_sigmas", false);
  r.grid.final_sigma =
      o.value("final_sigma", std::string("zero")) == "zero" ? ddpm::FinalSigma::zero : ddpm::FinalSigma::sigma_min;
  r.solver_order = o.value("solver_order", 2);
  r.solver_type = o.value("solver_type", std::string("midpoint")) == "midpoint" ? ddpm::SolverType::midpoint
                                                                                : ddpm::SolverType::heun;
  r.clipping = clipping_of(o);
  return r;
}

inline ddpm::EulerOptions euler_options(const json& o) {
  ddpm::EulerOptions r;
  r.grid.num_inference_steps = o.value("num_inference_steps", 50);
  r.grid.timestep_spacing = spacing_of(o.value("timestep_spacing", std::string("linspace")));
  r.grid.use_karras_sigmas = o.value("use_karras_sigmas", false);
  r.clipping = clipping_of(o);
  r.s_churn = o.value("s_churn", 0.0);
  r.s_tmin = o.value("s_tmin", 0.0);
  r.s_tmax = o.value("s_tmax", std::numeric_limits<double>::infinity());
  r.s_noise = o.value("s_noise", 1.0);
  return r;
}

/// Replays stored noise, one tensor per call (the per-step draws of a fixture run), and counts calls.
template <class S>
class ReplayNoise {
 public:
  ReplayNoise(std::vector<double> values, Eigen::Index per_call) : values_(std::move(values)), per_call_(per_call) {}
  template <ddpm::MutableDenseTensor T>
  void operator()(T&& out) {
    REQUIRE(out.size() == per_call_);
    REQUIRE(static_cast<std::size_t>((calls + 1) * per_call_) <= values_.size());
    for (Eigen::Index i = 0; i < per_call_; ++i) {
      out.data()[i] = static_cast<ddpm::scalar_t<T>>(values_[static_cast<std::size_t>(calls * per_call_ + i)]);
    }
    ++calls;
  }
  Eigen::Index calls = 0;

 private:
  std::vector<double> values_;
  Eigen::Index per_call_;
};

/// The mixture of tests/data/samplers/trajectories.json (and of the statistical tests).
template <class S>
ddpm::GaussianMixturePredictor<S> fixture_mixture(const ddpm::NoiseSchedule<S>& schedule) {
  const json& m = fixture("trajectories.json").at("mixture");
  return ddpm::GaussianMixturePredictor<S>(schedule, m.at("weights").get<std::vector<double>>(),
                                           m.at("means").get<std::vector<std::vector<double>>>(),
                                           m.at("stddevs").get<std::vector<double>>());
}

}  // namespace sampler_test
