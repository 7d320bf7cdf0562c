// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Shared by the tests of the k-diffusion family (heun, lms, dpm2, dpmpp_2s_ancestral, euler ancestral's
// eta): replaying a trajectory of tests/data/samplers/ksamplers.json (made by
// tests/reference/make_ksampler_fixtures.py with k-diffusion's own sampling functions), the sampling
// statistics of statistics.test.cpp with the sample count as a parameter, and the convergence order.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/random.hpp"
#include "ddpm/sample.hpp"
#include "sampler_support.hpp"

namespace ksampler_test {

using namespace sampler_test;
using ddpm::Prediction;
using ddpm::Tensor;

/// 1e-10 (double) and 3.5e-5 (float): the parity tolerance of a whole trajectory, relative to
/// max(|expected|, 1) (the values are O(1)..O(10)). A k-diffusion run and ours compute the same sums in
/// another order (ours in the variance-preserving variable). double: rounding of ~1e-16 per operation over
/// <= 19 model calls stays far below 1e-10. float: each model call and step rounds at 2^-24 = 6e-8 relative
/// to values up to ~5, and the ODE amplifies a perturbation of x by up to 30 over these runs (measured by
/// running k-diffusion itself from x_T rounded to float32: the end moves by up to 9.0e-7, lms with 10
/// steps, for an input rounding of 3e-8); 19 calls x 30 x 6e-8 = 3.4e-5. Observed: <= 1.1e-5.
template <class S>
inline constexpr double traj_tol = std::is_same_v<S, float> ? 3.5e-5 : 1e-10;

/// The fixture model: the mixture's E[eps | x] at training timestep t, given as the prediction of `kind`
/// at alpha_bar[t] (sample: x0 = (x - sqrt(1 - ab) eps) / sqrt(ab); velocity: sqrt(ab) eps - sqrt(1 - ab) x0).
template <class S>
struct KindModel {
  ddpm::GaussianMixturePredictor<S> mixture;
  std::vector<double> alpha_bar;
  Prediction kind;
  Tensor<S, 2> operator()(const Tensor<S, 2>& x, int t) const {
    Tensor<S, 2> eps = mixture(x, t);
    if (kind == Prediction::epsilon) return eps;
    const double ab = alpha_bar[static_cast<std::size_t>(t)];
    Tensor<S, 2> out(x.dimensions());
    for (Eigen::Index i = 0; i < x.size(); ++i) {
      const double e = eps.data()[i], xv = x.data()[i];
      const double x0 = (xv - std::sqrt(1 - ab) * e) / std::sqrt(ab);
      out.data()[i] = static_cast<S>(kind == Prediction::sample ? x0 : std::sqrt(ab) * e - std::sqrt(1 - ab) * x0);
    }
    return out;
  }
};

/// Replays case `c` of ksamplers.json: checks timesteps() against the model calls k-diffusion made, x
/// against each checkpoint (x at the start of an interval, before its first model call) and the final x.
/// `churn`: the stored draw k is the churn noise of interval k (k-diffusion draws one per interval), passed
/// as a tensor to the step that ends interval k - 1; otherwise the draws are replayed in call order (the
/// noise_sampler of the ancestral samplers) and the number of draws is checked: k-diffusion's count, or
/// `draws_expected` when given (k-diffusion calls its noise sampler also where sigma_up = 0, e.g. eta = 0;
/// ours draws only noise it adds).
template <class S, class Sm>
void check_trajectory(Sm& sampler, const json& c, const json& f, bool churn, Eigen::Index draws_expected = -1) {
  const Eigen::Index B = f.at("shape")[0], D = f.at("shape")[1], n = B * D;
  const std::array<Eigen::Index, 2> dims{B, D};
  const auto schedule = make_schedule<S>(f.at("schedule"));
  const Prediction kind = kind_of(c.at("kind"));
  const KindModel<S> model{fixture_mixture<S>(schedule), schedule.alphas_cumprod_double(), kind};
  REQUIRE(sampler.timesteps() == c.at("call_timesteps").get<std::vector<int>>());
  const auto draws = numbers(f.at("noises"));
  ReplayNoise<S> replay(draws, n);
  std::vector<int> starts;
  for (const json& p : c.at("checkpoints")) starts.push_back(p.at("call"));
  Tensor<S, 2> x = tensor<S, 2>(numbers(f.at("x_T")), dims);
  Tensor<S, 2> z(dims);
  const int calls = static_cast<int>(sampler.timesteps().size());
  for (int i = 0; i < calls; ++i) {
    for (std::size_t k = 0; k < starts.size(); ++k) {
      if (starts[k] != i) continue;
      INFO("x at the start of interval " << k << " (before step " << i << ")");
      CHECK(worst_error(x, numbers(c.at("checkpoints")[k].at("x"))) <= traj_tol<S>);
    }
    const Tensor<S, 2> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
    if (churn) {
      std::size_t k = 0;  // the interval that starts after this step, if this step ends one
      while (k < starts.size() && starts[k] != i + 1) ++k;
      const std::size_t draw = k < starts.size() ? k : 0;
      for (Eigen::Index j = 0; j < n; ++j) z.data()[j] = static_cast<S>(draws[draw * static_cast<std::size_t>(n) + j]);
      sampler.step(i, out, x, z, kind);
    } else {
      sampler.step(i, out, x, replay, kind);
    }
  }
  CHECK(worst_error(x, numbers(c.at("x"))) <= traj_tol<S>);
  if (!churn) CHECK(replay.calls == (draws_expected >= 0 ? draws_expected : c.at("noise_used").get<Eigen::Index>()));
}

/// A fixture case's grid options, by the names the fixture uses.
template <class O>
O grid_options(const json& o, O r = {}) {
  r.grid.num_inference_steps = o.value("num_inference_steps", 50);
  r.grid.timestep_spacing = spacing_of(o.value("timestep_spacing", std::string("linspace")));
  r.grid.use_karras_sigmas = o.value("use_karras_sigmas", false);
  r.clipping = clipping_of(o);
  return r;
}

/// x after every model call but the last of a deterministic two-stage or multistep run over an explicit
/// sigma list (final sigma 0): x at the list's last sigma, the mixture evaluated at each call's exact
/// noise level (`levels`: step_sigmas(), or sigmas()).
template <class Sm>
Tensor<double, 2> run_but_last(Sm& sampler, const std::vector<double>& levels, const ddpm::NoiseSchedule<double>& schedule,
                               const Tensor<double, 2>& x_T) {
  const auto model = fixture_mixture<double>(schedule);
  Tensor<double, 2> x = x_T, out(x.dimensions());
  for (std::size_t i = 0; i + 1 < sampler.timesteps().size(); ++i) {
    model.predict_at(1.0 / (1.0 + levels[i] * levels[i]), x, out);
    sampler.step(static_cast<int>(i), out, x, ddpm::no_noise);
  }
  return x;
}

struct Allowance {
  double weight, mean, spread;
};

/// statistics.test.cpp's check (see there for the criterion), with n samples: per mixture component, the
/// weight, each coordinate's mean and standard deviation within 5 sampling sd + the allowance. With
/// `report`, prints the largest deviations instead of checking (for measuring a sampler's bias with n = 10^6).
template <class Sm>
void check_mixture(Sm& sampler, const ddpm::NoiseSchedule<double>& schedule, bool noisy, Allowance allow,
                   std::uint64_t seed, Eigen::Index samples = 20000, bool report = false) {
  const auto model = fixture_mixture<double>(schedule);
  Tensor<double, 2> x_T(samples, 2);
  ddpm::NoiseSource noise(seed);
  noise(x_T);
  const Tensor<double, 2> x = noisy ? ddpm::sample(sampler, model, std::move(x_T), noise)
                                    : ddpm::sample(sampler, model, std::move(x_T), ddpm::no_noise);
  const std::vector<int> label = model.classify(x);
  const int K = model.num_components();
  std::vector<double> count(static_cast<std::size_t>(K)), sum(2 * K), sq(2 * K);
  for (Eigen::Index b = 0; b < samples; ++b) {
    const auto k = static_cast<std::size_t>(label[static_cast<std::size_t>(b)]);
    count[k] += 1;
    for (std::size_t d = 0; d < 2; ++d) {
      sum[2 * k + d] += x(b, static_cast<Eigen::Index>(d));
      sq[2 * k + d] += x(b, static_cast<Eigen::Index>(d)) * x(b, static_cast<Eigen::Index>(d));
    }
  }
  const double n = static_cast<double>(samples);
  double worst_w = 0, worst_m = 0, worst_s = 0;
  for (std::size_t k = 0; k < static_cast<std::size_t>(K); ++k) {
    const double w = model.weights()[k], s = model.stddevs()[k], nk = n * w;
    INFO("component " << k);
    const double weight = count[k] / n;
    worst_w = std::max(worst_w, std::abs(weight - w));
    if (!report) CHECK(std::abs(weight - w) <= 5 * std::sqrt(w * (1 - w) / n) + allow.weight);
    REQUIRE(count[k] > 1);
    for (std::size_t d = 0; d < 2; ++d) {
      const double mean = sum[2 * k + d] / count[k];
      const double spread = std::sqrt((sq[2 * k + d] - count[k] * mean * mean) / (count[k] - 1));
      INFO("coordinate " << d << ": mean " << mean << ", spread " << spread);
      worst_m = std::max(worst_m, std::abs(mean - model.means()[k][d]));
      worst_s = std::max(worst_s, std::abs(spread - s));
      if (!report) {
        CHECK(std::abs(mean - model.means()[k][d]) <= 5 * s / std::sqrt(nk) + allow.mean);
        CHECK(std::abs(spread - s) <= 5 * s / std::sqrt(2 * nk) + allow.spread);
      }
    }
  }
  if (report) WARN("largest |bias|: weight " << worst_w << ", mean " << worst_m << ", spread " << worst_s);
}

/// The median over the batch of the Euclidean distance between the points of a and b ([B, 2]).
inline double median_error(const Tensor<double, 2>& a, const Tensor<double, 2>& b) {
  std::vector<double> e;
  for (Eigen::Index p = 0; p < a.dimension(0); ++p) e.push_back(std::hypot(a(p, 0) - b(p, 0), a(p, 1) - b(p, 1)));
  std::nth_element(e.begin(), e.begin() + static_cast<std::ptrdiff_t>(e.size() / 2), e.end());
  return e[e.size() / 2];
}

/// Karras et al.'s rho = 7 ramp of L points from sigma_max to sigma_min (an explicit sigma list: refining
/// L keeps the same map from [0, 1] to sigma, so the runs converge to one ODE solution).
inline std::vector<double> karras_list(double sigma_min, double sigma_max, int L) {
  return ddpm::karras_sigmas(sigma_min, sigma_max, L, 7.0);
}

}  // namespace ksampler_test
