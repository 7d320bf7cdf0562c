// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Tests of include/ddpm/brownian_tree.hpp: the increments' law (mean 0, variance t1 - t0 at and between
// nodes, the documented shortfall inside one leaf), independence of disjoint increments and the correlation
// of overlapping ones (one path), additivity, one path whatever the queries, per-image streams, float as
// the double path rounded, BrownianTreeNoise's sign convention, bad input.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/brownian_tree.hpp"

namespace {

using ddpm::BrownianTree;
using ddpm::BrownianTreeOptions;
using ddpm::Tensor;

struct Moments {
  double mean, variance;
};
Moments moments(const Tensor<double, 2>& v) {
  const double n = static_cast<double>(v.size());
  double sum = 0, sq = 0;
  for (Eigen::Index i = 0; i < v.size(); ++i) sum += v.data()[i];
  const double mean = sum / n;
  for (Eigen::Index i = 0; i < v.size(); ++i) sq += (v.data()[i] - mean) * (v.data()[i] - mean);
  return {mean, sq / (n - 1)};
}
double correlation(const Tensor<double, 2>& a, const Tensor<double, 2>& b) {
  const Moments ma = moments(a), mb = moments(b);
  double c = 0;
  for (Eigen::Index i = 0; i < a.size(); ++i) c += (a.data()[i] - ma.mean) * (b.data()[i] - mb.mean);
  return c / (static_cast<double>(a.size()) - 1) / std::sqrt(ma.variance * mb.variance);
}
template <class S, int R>
bool same_bits(const Tensor<S, R>& a, const Tensor<S, R>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(S)) == 0;
}

constexpr double kMin = 0.03, kMax = 14.6;  // about the sigma range of a 1000-step linear schedule
constexpr Eigen::Index kN = 20000;          // independent paths (elements of one image)

}  // namespace

TEST_CASE("BrownianTree: increments are N(0, t1 - t0) at and between nodes", "[brownian]") {
  // Each element is its own path: over kN elements the normalized increment's sample mean lies within
  // 5 / sqrt(n) of 0 and its sample variance within 5 sqrt(2 / (n - 1)) of the expected value (the
  // chi-square's normal approximation; 5 sd: a false alarm has probability 6e-7 per check).
  const BrownianTree w(kMin, kMax, 11);
  const double L = kMax - kMin, h = w.leaf_width();
  CHECK(h <= 1e-6);
  CHECK(w.depth() == 24);
  struct Case {
    double t0, t1;
  };
  // nodes of depth 3; arbitrary points; a short interval; from t_min; to t_max
  const Case cases[] = {{kMin + 3 * L / 8, kMin + 5 * L / 8}, {1.0, 1.7}, {2.0, 2.001}, {kMin, 0.5}, {7.3, kMax}};
  Tensor<double, 2> z(1, kN);
  const double n = static_cast<double>(kN);
  for (const Case& c : cases) {
    INFO("[" << c.t0 << ", " << c.t1 << "]");
    w.normalized_increment(c.t0, c.t1, z);
    const Moments m = moments(z);
    // between nodes the variance falls short by at most h / 2 (the leaf interpolation): < 5e-4 relative here
    CHECK(std::abs(m.mean) <= 5.0 / std::sqrt(n));
    CHECK(std::abs(m.variance - 1.0) <= 5.0 * std::sqrt(2.0 / (n - 1)) + 0.5 * h / (c.t1 - c.t0));
    Tensor<double, 2> dw(1, kN);
    w.increment(c.t0, c.t1, dw);
    CHECK(std::abs(moments(dw).variance / (c.t1 - c.t0) - m.variance) <= 1e-12);
  }
}

TEST_CASE("BrownianTree: disjoint increments are independent, overlapping ones correlated as one path", "[brownian]") {
  // |sample correlation| <= 5 / sqrt(n) for independent increments; an increment over [a, b] inside [a, c]
  // has correlation sqrt((b - a) / (c - a)) with it (the sample correlation's sd is (1 - rho^2) / sqrt(n)).
  const BrownianTree w(kMin, kMax, 12);
  const double n = static_cast<double>(kN);
  Tensor<double, 2> x(1, kN), y(1, kN), big(1, kN);
  w.normalized_increment(1.0, 2.5, x);
  w.normalized_increment(2.5, 2.6, y);
  CHECK(std::abs(correlation(x, y)) <= 5.0 / std::sqrt(n));
  w.normalized_increment(0.1, 0.9, y);  // not adjacent
  CHECK(std::abs(correlation(x, y)) <= 5.0 / std::sqrt(n));
  // k-diffusion's DPM++ SDE asks for [sigma_s, sigma] and [sigma_next, sigma] of one interval
  const double a = 3.0, b = 4.5, c = 6.0;
  w.normalized_increment(b, c, x);
  w.normalized_increment(a, c, big);
  const double rho = std::sqrt((c - b) / (c - a));
  CHECK(std::abs(correlation(x, big) - rho) <= 5.0 * (1 - rho * rho) / std::sqrt(n));
  // another seed, and another path index of the same seed, are independent paths
  const BrownianTree other_seed(kMin, kMax, 13), other_path(kMin, kMax, 12, {.path = 1});
  other_seed.normalized_increment(b, c, y);
  CHECK(std::abs(correlation(x, y)) <= 5.0 / std::sqrt(n));
  other_path.normalized_increment(b, c, y);
  CHECK(std::abs(correlation(x, y)) <= 5.0 / std::sqrt(n));
}

TEST_CASE("BrownianTree: additivity, and one path whatever the queries", "[brownian]") {
  const BrownianTree w(kMin, kMax, 21);
  const Eigen::Index n = 2000;
  const double L = kMax - kMin;
  // W(a, c) = W(a, b) + W(b, c) for a node b and for non-node points: every increment is a difference of
  // the one function W, so the sums agree to the rounding of sums of <= 2D + 1 = 49 terms of size <= 4
  // (|W| <= about 4 sqrt(L) at 5 sd): 3 * 49 * 2^-53 * 4 * sqrt(L) < 1e-13.
  const double node = kMin + 5 * L / 16;
  for (double b : {node, 4.123456789}) {
    const double a = 1.1, c = 9.9;
    Tensor<double, 2> ac(1, n), ab(1, n), bc(1, n), wa(1, n), wc(1, n);
    w.increment(a, c, ac);
    w.increment(a, b, ab);
    w.increment(b, c, bc);
    w.value(a, wa);
    w.value(c, wc);
    double worst = 0, worst_value = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      worst = std::max(worst, std::abs(ac.data()[i] - (ab.data()[i] + bc.data()[i])));
      worst_value = std::max(worst_value, std::abs(ac.data()[i] - (wc.data()[i] - wa.data()[i])));
    }
    INFO("b = " << b);
    CHECK(worst <= 1e-13);
    CHECK(worst_value <= 1e-13);
  }
  // The same path whatever the step count: W on a 10-point grid, queried alone, equals W at the same points
  // queried among a 19-point grid in reverse order, bit for bit (a query is a function of t alone).
  std::vector<Tensor<double, 2>> coarse, fine;
  std::vector<double> grid;
  for (int k = 0; k < 10; ++k) grid.push_back(kMin + L * std::pow(k / 9.0, 3.0));
  for (double t : grid) {
    coarse.emplace_back(1, n);
    w.value(t, coarse.back());
  }
  for (int k = 18; k >= 0; --k) {
    const double t = k % 2 == 0 ? grid[static_cast<std::size_t>(k / 2)]
                                : 0.5 * (grid[static_cast<std::size_t>(k / 2)] + grid[static_cast<std::size_t>(k / 2 + 1)]);
    fine.emplace_back(1, n);
    w.value(t, fine.back());
  }
  for (int k = 0; k < 10; ++k) {
    CHECK(same_bits(coarse[static_cast<std::size_t>(k)], fine[static_cast<std::size_t>(18 - 2 * k)]));
  }
  // W(t_min) = 0
  Tensor<double, 2> zero(1, 3);
  w.value(kMin, zero);
  CHECK((zero.data()[0] == 0.0 && zero.data()[1] == 0.0 && zero.data()[2] == 0.0));
}

TEST_CASE("BrownianTree: inside one leaf the increment is the linear interpolation", "[brownian]") {
  // With tolerance 0.1 on [0, 1] the leaves are 1/16 wide (D = 4): an interval [t0, t1] inside one leaf has
  // increment (t1 - t0) / h (W(b) - W(a)), variance (t1 - t0)^2 / h: the documented limit.
  const BrownianTree w(0.0, 1.0, 31, {.tolerance = 0.1});
  REQUIRE(w.depth() == 4);
  const double h = w.leaf_width(), t0 = 0.51, t1 = 0.53;  // inside [0.5, 0.5625]
  Tensor<double, 2> z(1, kN), leaf(1, kN);
  w.increment(t0, t1, z);
  w.increment(0.5, 0.5625, leaf);
  double worst = 0;
  for (Eigen::Index i = 0; i < kN; ++i) worst = std::max(worst, std::abs(z.data()[i] - (t1 - t0) / h * leaf.data()[i]));
  CHECK(worst <= 1e-14);
  const double n = static_cast<double>(kN), expected = (t1 - t0) * (t1 - t0) / h;
  CHECK(std::abs(moments(z).variance / expected - 1) <= 5.0 * std::sqrt(2.0 / (n - 1)));
}

TEST_CASE("BrownianTree: per-image streams, the whole-tensor stream, float as the double path rounded", "[brownian]") {
  const BrownianTree batch(kMin, kMax, 41, {.first_index = 5});
  Tensor<double, 3> x(3, 2, 300);
  batch.increment(0.7, 3.0, x);
  for (Eigen::Index b = 0; b < 3; ++b) {
    const BrownianTree alone(kMin, kMax, 41, {.first_index = 5 + static_cast<std::uint64_t>(b)});
    Tensor<double, 3> one(1, 2, 300);
    alone.increment(0.7, 3.0, one);
    INFO("image " << b);
    CHECK(std::memcmp(one.data(), x.data() + b * 600, 600 * sizeof(double)) == 0);
  }
  // 2-D points (a few numbers per image: the block-wise path of the generator) agree with a chunk's numbers
  Tensor<double, 2> points(3, 2);
  batch.increment(0.7, 3.0, points);
  for (Eigen::Index b = 0; b < 3; ++b) {
    CHECK(points(b, 0) == x(b, 0, 0));
    CHECK(points(b, 1) == x(b, 0, 1));
  }
  // per_image = false: the tensor is one stream, whatever its shape
  const BrownianTree flat(kMin, kMax, 41, {.first_index = 5, .per_image = false});
  Tensor<double, 3> f(3, 2, 300);
  Tensor<double, 2> g(1, 1800);
  flat.increment(0.7, 3.0, f);
  flat.increment(0.7, 3.0, g);
  CHECK(std::memcmp(f.data(), g.data(), 1800 * sizeof(double)) == 0);
  CHECK(std::memcmp(f.data() + 600, x.data(), 600 * sizeof(double)) != 0);
  // float: the double values rounded once
  Tensor<float, 3> xf(3, 2, 300);
  batch.increment(0.7, 3.0, xf);
  bool same = true;
  for (Eigen::Index i = 0; i < x.size(); ++i) same = same && xf.data()[i] == static_cast<float>(x.data()[i]);
  CHECK(same);
}

TEST_CASE("BrownianTreeNoise: k-diffusion's normalized increment in either order", "[brownian]") {
  const ddpm::BrownianTreeNoise noise(kMin, kMax, 51);
  Tensor<double, 2> down(4, 6), up(4, 6), w(4, 6);
  noise(5.0, 2.0, down);  // sigma -> sigma_next < sigma: (W(2) - W(5)) / sqrt 3
  noise(2.0, 5.0, up);
  noise.tree().increment(2.0, 5.0, w);
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    CHECK(down.data()[i] == -up.data()[i]);
    CHECK(std::abs(up.data()[i] - w.data()[i] / std::sqrt(3.0)) <= 1e-15 * (1 + std::abs(up.data()[i])));
  }
  CHECK_THROWS_WITH(noise(2.0, 2.0, w), Catch::Contains("sigma and sigma_next are both 2"));
  CHECK_THROWS_WITH(noise(20.0, 2.0, w), Catch::Contains("t1 is 20"));
}

TEST_CASE("BrownianTree: bad input", "[brownian]") {
  const BrownianTree w(kMin, kMax, 1);
  Tensor<double, 2> out(2, 3);
  CHECK_THROWS_AS(w.increment(0.01, 1.0, out), ddpm::invalid_argument);
  CHECK_THROWS_WITH(w.increment(0.01, 1.0, out), Catch::Contains("t0 is 0.01") && Catch::Contains("[t_min, t_max]"));
  CHECK_THROWS_WITH(w.increment(1.0, 15.0, out), Catch::Contains("t1 is 15"));
  CHECK_THROWS_WITH(w.increment(2.0, 1.0, out), Catch::Contains("t0 must be <= t1"));
  CHECK_THROWS_WITH(w.increment(std::nan(""), 1.0, out), Catch::Contains("t0 is nan"));
  CHECK_THROWS_WITH(w.normalized_increment(1.0, 1.0, out), Catch::Contains("t0 must be < t1"));
  CHECK_THROWS_WITH(w.value(20.0, out), Catch::Contains("t is 20"));
  CHECK_THROWS_WITH(BrownianTree(1.0, 1.0, 1), Catch::Contains("t_min is 1"));
  CHECK_THROWS_WITH(BrownianTree(0.0, INFINITY, 1), Catch::Contains("t_max inf"));
  CHECK_THROWS_WITH(BrownianTree(0.0, 1.0, 1, {.tolerance = 0.0}), Catch::Contains("options.tolerance is 0"));
  CHECK_THROWS_WITH(BrownianTree(0.0, 1.0, 1, {.tolerance = 1e-17}), Catch::Contains("options.tolerance is 1e-17"));
  w.increment(1.0, 1.0, out);  // t0 = t1: zero
  for (Eigen::Index i = 0; i < out.size(); ++i) CHECK(out.data()[i] == 0.0);
}
