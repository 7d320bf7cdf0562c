// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Tests of ddpm/timestep_sampler.hpp and NoiseSource::uniform: the uniforms' distribution, the uniform
// sampler's frequencies, the loss-second-moment sampler's probabilities (improved-diffusion's formula
// written out here), its history semantics, and the unbiasedness of its importance weights. Statistical
// tests use a fixed seed and k = 5 standard deviations: |estimate - expected| <= 5 sigma / sqrt(M).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "ddpm/random.hpp"
#include "ddpm/timestep_sampler.hpp"

namespace {

// Kolmogorov-Smirnov distance of sorted samples from U(0, 1).
double ks_uniform(std::vector<double> u) {
  std::sort(u.begin(), u.end());
  const double n = static_cast<double>(u.size());
  double d = 0.0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    d = std::max({d, std::abs(static_cast<double>(i + 1) / n - u[i]), std::abs(u[i] - static_cast<double>(i) / n)});
  }
  return d;
}

}  // namespace

TEST_CASE("NoiseSource::uniform is Phi of the stream's normals and uniform on (0, 1)", "[timestep_sampler]") {
  const std::size_t M = 2000000;
  ddpm::NoiseSource noise(1, 11);
  std::vector<double> u(M);
  noise.uniform(u);
  CHECK(noise.offset() == 11u + M);
  // Phi of the same normals, in long double.
  std::vector<double> z(M);
  ddpm::fill_normal(std::span<double>(z), 1, 11);
  double worst = 0.0;
  bool inside = true;
  for (std::size_t i = 0; i < M; ++i) {
    const long double phi = 0.5L * std::erfc(-static_cast<long double>(z[i]) / std::sqrt(2.0L));
    worst = std::max(worst, static_cast<double>(std::abs(phi - u[i]) / phi));
    inside = inside && u[i] > 0.0 && u[i] < 1.0;
  }
  CHECK(inside);
  CHECK(worst < 1e-14);
  // Mean 1/2 and variance 1/12 within 5 sigma / sqrt(M); KS distance below 1.95 / sqrt(M) (the 0.1% point
  // of the Kolmogorov distribution; seed 5 at M = 2e5 gives 2.25 / sqrt(M), a 1e-4 event, and larger M
  // shrinks it again, so that is chance, not a bias of the stream).
  const double mean = std::accumulate(u.begin(), u.end(), 0.0) / M;
  CHECK(std::abs(mean - 0.5) <= 5.0 * std::sqrt(1.0 / 12.0) / std::sqrt(double(M)));
  double var = 0.0;
  for (double v : u) var += (v - 0.5) * (v - 0.5);
  var /= M;
  // Var((U - 1/2)^2) = 1/80 - 1/144.
  CHECK(std::abs(var - 1.0 / 12.0) <= 5.0 * std::sqrt(1.0 / 80.0 - 1.0 / 144.0) / std::sqrt(double(M)));
  CHECK(ks_uniform(u) < 1.95 / std::sqrt(double(M)));
}

TEST_CASE("UniformTimestepSampler draws each t with probability 1/T, weights 1", "[timestep_sampler]") {
  const int T = 50;
  const int M = 100000;
  ddpm::UniformTimestepSampler s(T);
  ddpm::NoiseSource noise(3);
  const ddpm::TimestepDraw d = s.sample(noise, M);
  CHECK(noise.offset() == static_cast<std::uint64_t>(M));
  std::vector<int> counts(T, 0);
  for (int t : d.t) {
    REQUIRE(t >= 0);
    REQUIRE(t < T);
    ++counts[t];
  }
  const double p = 1.0 / T;
  for (int c : counts) CHECK(std::abs(c - M * p) <= 5.0 * std::sqrt(M * p * (1 - p)));
  CHECK(std::all_of(d.weights.begin(), d.weights.end(), [](double w) { return w == 1.0; }));
  // Reproducible: the same stream position gives the same draw.
  ddpm::NoiseSource again(3);
  CHECK(s.sample(again, M).t == d.t);
  static_assert(ddpm::TimestepSampler<ddpm::UniformTimestepSampler>);
  static_assert(ddpm::TimestepSampler<ddpm::LossSecondMomentSampler>);
}

TEST_CASE("LossSecondMomentSampler: uniform until warmed up, then improved-diffusion's p_t", "[timestep_sampler]") {
  const int T = 6, H = 3;
  ddpm::LossSecondMomentSampler s(T, H, 0.01);
  std::vector<std::vector<double>> history(T);
  auto feed = [&](int t, double loss) {
    const std::vector<int> ts{t};
    const std::vector<double> ls{loss};
    s.update(ts, ls);
    history[t].push_back(loss);
    if (static_cast<int>(history[t].size()) > H) history[t].erase(history[t].begin());
  };
  for (int t = 0; t < T; ++t) {
    for (int k = 0; k < (t == T - 1 ? H - 1 : H + 2); ++k) feed(t, 0.1 * (t + 1) + 0.05 * k);
  }
  CHECK_FALSE(s.warmed_up());  // the last t holds H - 1 losses
  for (double p : s.probabilities()) CHECK(p == 1.0 / T);
  feed(T - 1, 2.0);
  REQUIRE(s.warmed_up());
  // p_t = (1 - 0.01) sqrt(mean(L_t^2)) / sum + 0.01 / T over the last H losses of each t.
  std::vector<double> rms(T);
  for (int t = 0; t < T; ++t) {
    double sq = 0.0;
    for (double l : history[t]) sq += l * l;
    rms[t] = std::sqrt(sq / H);
  }
  const double total = std::accumulate(rms.begin(), rms.end(), 0.0);
  for (int t = 0; t < T; ++t) {
    CHECK(s.probabilities()[t] == Approx(0.99 * rms[t] / total + 0.01 / T).epsilon(1e-14));
  }
  // Drawn frequencies follow p (5 sigma), weights are 1 / (T p_t).
  const int M = 200000;
  ddpm::NoiseSource noise(21);
  const ddpm::TimestepDraw d = s.sample(noise, M);
  std::vector<int> counts(T, 0);
  for (std::size_t i = 0; i < d.t.size(); ++i) {
    ++counts[d.t[i]];
    REQUIRE(d.weights[i] == 1.0 / (T * s.probabilities()[d.t[i]]));
  }
  for (int t = 0; t < T; ++t) {
    const double p = s.probabilities()[t];
    CHECK(std::abs(counts[t] - M * p) <= 5.0 * std::sqrt(M * p * (1 - p)));
  }
}

TEST_CASE("LossSecondMomentSampler's weights keep the loss estimate unbiased", "[timestep_sampler]") {
  // With losses L_t that the sampler has learned, E[w(t) L_t] over t ~ p equals mean_t L_t. The estimate
  // from M draws has standard deviation sigma / sqrt(M), sigma^2 = sum_t p_t (L_t / (T p_t))^2 - mean^2.
  const int T = 40;
  ddpm::LossSecondMomentSampler s(T);
  std::vector<double> L(T);
  for (int t = 0; t < T; ++t) L[t] = 0.02 + std::exp(-0.15 * t);  // large at small t, as diffusion losses are
  std::vector<int> ts;
  std::vector<double> ls;
  for (int k = 0; k < 10; ++k) {
    for (int t = 0; t < T; ++t) {
      ts.push_back(t);
      ls.push_back(L[t]);
    }
  }
  s.update(ts, ls);
  REQUIRE(s.warmed_up());
  const double mean = std::accumulate(L.begin(), L.end(), 0.0) / T;
  double second = 0.0;
  for (int t = 0; t < T; ++t) {
    const double p = s.probabilities()[t];
    second += p * (L[t] / (T * p)) * (L[t] / (T * p));
  }
  const double sigma = std::sqrt(second - mean * mean);
  const int M = 100000;
  ddpm::NoiseSource noise(8);
  const ddpm::TimestepDraw d = s.sample(noise, M);
  double est = 0.0;
  for (int i = 0; i < M; ++i) est += d.weights[i] * L[d.t[i]];
  est /= M;
  CHECK(std::abs(est - mean) <= 5.0 * sigma / std::sqrt(double(M)));
  // Importance sampling helps: sigma is below the uniform sampler's.
  double uni = 0.0;
  for (double l : L) uni += (l - mean) * (l - mean);
  CHECK(sigma < std::sqrt(uni / T));
}

TEST_CASE("timestep samplers reject bad arguments", "[timestep_sampler]") {
  using E = ddpm::invalid_argument;
  CHECK_THROWS_AS(ddpm::UniformTimestepSampler(0), E);
  CHECK_THROWS_WITH(ddpm::LossSecondMomentSampler(0), Catch::Contains("T is 0"));
  CHECK_THROWS_WITH(ddpm::LossSecondMomentSampler(10, 0), Catch::Contains("history is 0"));
  CHECK_THROWS_WITH(ddpm::LossSecondMomentSampler(10, 10, 1.5), Catch::Contains("uniform_prob"));
  ddpm::LossSecondMomentSampler s(10);
  const std::vector<int> t{3, 10};
  const std::vector<double> l{1.0, 2.0}, l1{1.0};
  CHECK_THROWS_WITH(s.update(t, l), Catch::Contains("t[1] is 10"));
  CHECK_THROWS_WITH(s.update(t, l1), Catch::Contains("losses holds 1"));
  const std::vector<int> t_ok{3, 4};
  const std::vector<double> l_nan{1.0, std::nan("")};
  CHECK_THROWS_WITH(s.update(t_ok, l_nan), Catch::Contains("losses[1]"));
  ddpm::NoiseSource noise(1);
  std::vector<int> tt(3);
  std::vector<double> ww(2);
  CHECK_THROWS_WITH(s.sample(noise, tt, ww), Catch::Contains("weights holds 2"));
  CHECK_THROWS_WITH(ddpm::UniformTimestepSampler(5).sample(noise, -1), Catch::Contains("batch is -1"));
}
