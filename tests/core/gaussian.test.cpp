// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Tests of ddpm/gaussian.hpp: docs/math.md Eq. (16) (normal log density), Eq. (17) (KL between diagonal
// Gaussians) and Eq. (18) (discretized Gaussian log-likelihood), and mean_flat. References are closed forms
// written here independently, in long double where precision matters.

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ddpm/gaussian.hpp"

namespace {

using ddpm::Tensor;

constexpr long double kPi = 3.141592653589793238462643383279502884L;

// Phi(z) in long double.
long double phi_ld(long double z) { return 0.5L * std::erfc(-z / std::sqrt(2.0L)); }

// improved-diffusion's tanh approximation of Phi, to check the documented size of the difference.
double phi_tanh(double z) { return 0.5 * (1.0 + std::tanh(std::sqrt(2.0 / static_cast<double>(kPi)) * (z + 0.044715 * z * z * z))); }

// The 256 bin centres -1 + 2k/255.
template <class S>
Tensor<S, 1> bin_centres() {
  Tensor<S, 1> t(256);
  for (int k = 0; k < 256; ++k) t(k) = static_cast<S>(-1.0L + 2.0L * k / 255.0L);
  return t;
}

// Deterministic, irregular test values in [lo, hi].
template <class S, int R, class... D>
Tensor<S, R> filled(double lo, double hi, double phase, D... dims) {
  Tensor<S, R> t(dims...);
  for (Eigen::Index i = 0; i < t.size(); ++i) {
    const double u = 0.5 + 0.5 * std::sin(1.7 * static_cast<double>(i) + phase);
    t.data()[i] = static_cast<S>(lo + (hi - lo) * u);
  }
  return t;
}

template <class S>
long double log_tolerance();
template <>
long double log_tolerance<float>() {
  return 2e-5L;
}
template <>
long double log_tolerance<double>() {
  return 1e-11L;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Eq. (16): normal_log_density

TEMPLATE_TEST_CASE("normal_log_density matches the closed form (Eq. 16)", "[gaussian][density]", float, double) {
  using S = TestType;
  const auto x = filled<S, 3>(-3.0, 3.0, 0.1, 2, 3, 5);
  const auto mean = filled<S, 3>(-1.0, 1.0, 0.7, 2, 3, 5);
  const auto lv_tensor = filled<S, 3>(-4.0, 2.0, 1.3, 2, 3, 5);

  // log of (2 pi var)^(-1/2) exp(-(x - m)^2 / (2 var)).
  const auto reference = [](long double xv, long double mv, long double var) {
    return std::log(1.0L / std::sqrt(2.0L * kPi * var) * std::exp(-(xv - mv) * (xv - mv) / (2.0L * var)));
  };

  SECTION("scalar log variance") {
    for (const double lv : {-6.0, -1.5, 0.0, 0.8, 3.0}) {
      const Tensor<S, 3> out = ddpm::normal_log_density(x, mean, static_cast<S>(lv));
      for (Eigen::Index i = 0; i < x.size(); ++i) {
        const long double ref =
            reference(x.data()[i], mean.data()[i], std::exp(static_cast<long double>(static_cast<S>(lv))));
        CHECK(std::abs(out.data()[i] - ref) <= log_tolerance<S>() * std::max(1.0L, std::abs(ref)));
      }
    }
  }
  SECTION("tensor log variance") {
    const Tensor<S, 3> out = ddpm::normal_log_density(x, mean, lv_tensor);
    for (Eigen::Index i = 0; i < x.size(); ++i) {
      const long double ref = reference(x.data()[i], mean.data()[i], std::exp((long double)lv_tensor.data()[i]));
      CHECK(std::abs(out.data()[i] - ref) <= log_tolerance<S>() * std::max(1.0L, std::abs(ref)));
    }
  }
  SECTION("maps and the out form give the same values") {
    const Tensor<S, 3> expected = ddpm::normal_log_density(x, mean, lv_tensor);
    ddpm::ConstTensorMap<S, 3> xm(x.data(), 2, 3, 5);
    ddpm::ConstTensorMap<S, 3> lvm(lv_tensor.data(), 2, 3, 5);
    std::vector<S> buffer(31);
    ddpm::TensorMap<S, 3> out(buffer.data() + 1, 2, 3, 5);  // deliberately misaligned
    ddpm::normal_log_density(xm, mean, lvm, out);
    for (Eigen::Index i = 0; i < x.size(); ++i) CHECK(out.data()[i] == expected.data()[i]);
    Tensor<S, 3> aliased = x;  // out may be x itself
    ddpm::normal_log_density(aliased, mean, lv_tensor, aliased);
    for (Eigen::Index i = 0; i < x.size(); ++i) CHECK(aliased.data()[i] == expected.data()[i]);
  }
}

TEMPLATE_TEST_CASE("exp(normal_log_density) integrates to 1 (Eq. 16)", "[gaussian][density]", float, double) {
  using S = TestType;
  // Trapezoid rule over mean +- 12 sigma with 24001 points: on a uniform grid the rule is spectrally
  // accurate for a Gaussian and the truncated tails hold < 1e-32, so in double the error is rounding. In
  // float the grid points are rounded (relative spacing error up to ~3e-3) and the rule is second order:
  // error ~ (h / sigma)^2 / 12 ~ 1e-8, plus ~1e-7 rounding of each density value.
  const double tol = std::is_same_v<S, float> ? 2e-6 : 1e-10;
  for (const double m : {-0.7, 0.0, 2.5}) {
    for (const double lv : {-5.0, 0.0, 1.7}) {
      const double sigma = std::exp(0.5 * lv);
      const Eigen::Index n = 24001;
      const double h = 24.0 * sigma / static_cast<double>(n - 1);
      Tensor<S, 1> grid(n), mean(n);
      for (Eigen::Index i = 0; i < n; ++i) grid(i) = static_cast<S>(m - 12.0 * sigma + h * static_cast<double>(i));
      mean.setConstant(static_cast<S>(m));
      const Tensor<S, 1> logp = ddpm::normal_log_density(grid, mean, lv);  // a double scalar for a float tensor
      // Trapezoid rule over the grid points as rounded to S (a non-uniform grid in float).
      double integral = 0.0;
      for (Eigen::Index i = 0; i + 1 < n; ++i) {
        const double dx = static_cast<double>(grid(i + 1)) - static_cast<double>(grid(i));
        integral += 0.5 * dx * (std::exp(static_cast<double>(logp(i))) + std::exp(static_cast<double>(logp(i + 1))));
      }
      INFO("mean " << m << ", log variance " << lv);
      CHECK(std::abs(integral - 1.0) <= tol);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Eq. (17): normal_kl

TEMPLATE_TEST_CASE("normal_kl is 0 for equal Gaussians and >= 0 otherwise (Eq. 17)", "[gaussian][kl]", float,
                   double) {
  using S = TestType;
  const auto m = filled<S, 2>(-2.0, 2.0, 0.3, 4, 9);
  const auto lv = filled<S, 2>(-7.0, 3.0, 2.1, 4, 9);

  const Tensor<S, 2> kl_tensor = ddpm::normal_kl(m, lv, m, lv);
  const Tensor<S, 2> kl_scalar = ddpm::normal_kl(m, S(-2.3), m, S(-2.3));
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    CHECK(kl_tensor.data()[i] == S(0));
    CHECK(kl_scalar.data()[i] == S(0));
  }

  // Nearly equal variances: the variance part 0.5 * (exp(d) - 1 - d) is ~d^2 / 4 and must not go negative.
  const auto m2 = filled<S, 2>(-2.0, 2.0, 4.4, 4, 9);
  for (const double d : {0.0, 1e-30, 1e-9, -1e-9, 1e-6, -3e-4, 0.5, -4.0, 9.0}) {
    Tensor<S, 2> lv2 = lv;
    for (Eigen::Index i = 0; i < lv2.size(); ++i) lv2.data()[i] = static_cast<S>(lv.data()[i] + d);
    const Tensor<S, 2> a = ddpm::normal_kl(m, lv, m, lv2);
    const Tensor<S, 2> b = ddpm::normal_kl(m, lv2, m2, lv);
    const Tensor<S, 2> c = ddpm::normal_kl(m2, S(d), m, S(0));
    for (Eigen::Index i = 0; i < m.size(); ++i) {
      CHECK(a.data()[i] >= S(0));
      CHECK(b.data()[i] >= S(0));
      CHECK(c.data()[i] >= S(0));
    }
  }
}

TEMPLATE_TEST_CASE("normal_kl matches the closed form for hand-picked values (Eq. 17)", "[gaussian][kl]", float,
                   double) {
  using S = TestType;
  struct Case {
    double m1, lv1, m2, lv2, kl;
  };
  // KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2, worked by hand:
  //   N(0, 1) || N(1, e):      0.5 + (1 + 1) / (2e) - 0.5 = 1/e
  //   N(0, 1) || N(0, 4):      log 2 + 1/8 - 1/2
  //   N(3, 1) || N(0, 1):      9/2
  //   N(0, 4) || N(0, 1):      -log 2 + 2 - 1/2
  const Case cases[] = {
      {0.0, 0.0, 1.0, 1.0, 0.36787944117144233},
      {0.0, 0.0, 0.0, std::log(4.0), 0.69314718055994531 + 0.125 - 0.5},
      {3.0, 0.0, 0.0, 0.0, 4.5},
      {0.0, std::log(4.0), 0.0, 0.0, -0.69314718055994531 + 1.5},
  };
  const double tol = std::is_same_v<S, float> ? 2e-6 : 1e-14;
  for (const Case& c : cases) {
    Tensor<S, 2> m1(2, 3), m2(2, 3), lv1(2, 3), lv2(2, 3);
    m1.setConstant(S(c.m1));
    m2.setConstant(S(c.m2));
    lv1.setConstant(S(c.lv1));
    lv2.setConstant(S(c.lv2));
    INFO("KL(N(" << c.m1 << ", e^" << c.lv1 << ") || N(" << c.m2 << ", e^" << c.lv2 << "))");
    // Every combination of scalar and tensor log variances.
    const Tensor<S, 2> results[] = {
        ddpm::normal_kl(m1, S(c.lv1), m2, S(c.lv2)),
        ddpm::normal_kl(m1, lv1, m2, S(c.lv2)),
        ddpm::normal_kl(m1, S(c.lv1), m2, lv2),
        ddpm::normal_kl(m1, lv1, m2, lv2),
    };
    for (const Tensor<S, 2>& r : results) {
      for (Eigen::Index i = 0; i < r.size(); ++i) CHECK(std::abs(r.data()[i] - c.kl) <= tol * std::max(1.0, c.kl));
    }
  }
}

TEST_CASE("normal_kl agrees with a Monte Carlo estimate from normal_log_density (Eqs. 16, 17)", "[gaussian][kl]") {
  // KL(N1 || N2) = E_{x ~ N1}[log N1(x) - log N2(x)]. With N samples the estimate has standard error
  // sd(log ratio) / sqrt(N), measured from the same samples; we require agreement within 5 standard errors
  // (fails by chance with probability ~6e-7 for a fixed seed that does pass).
  const Eigen::Index n = 200000;
  const double m1 = 0.3, lv1 = -0.4, m2 = -0.5, lv2 = 0.6;
  std::mt19937_64 rng(20260101);
  std::normal_distribution<double> normal(0.0, 1.0);
  Tensor<double, 1> x(n), mean1(n), mean2(n);
  for (Eigen::Index i = 0; i < n; ++i) x(i) = m1 + std::exp(0.5 * lv1) * normal(rng);
  mean1.setConstant(m1);
  mean2.setConstant(m2);
  const Tensor<double, 1> log_p1 = ddpm::normal_log_density(x, mean1, lv1);
  const Tensor<double, 1> log_p2 = ddpm::normal_log_density(x, mean2, lv2);
  double sum = 0.0, sum_sq = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const double r = log_p1(i) - log_p2(i);
    sum += r;
    sum_sq += r * r;
  }
  const double estimate = sum / static_cast<double>(n);
  const double sd = std::sqrt(sum_sq / static_cast<double>(n) - estimate * estimate);
  const double standard_error = sd / std::sqrt(static_cast<double>(n));
  const Tensor<double, 1> kl = ddpm::normal_kl(mean1, lv1, mean2, lv2);
  INFO("Monte Carlo " << estimate << " +- " << standard_error << ", closed form " << kl(0));
  CHECK(std::abs(estimate - kl(0)) <= 5.0 * standard_error);
  CHECK(standard_error < 0.01);  // the test has power: KL here is ~0.5
}

// ---------------------------------------------------------------------------------------------------------
// Eq. (18): discretized_gaussian_log_likelihood

TEMPLATE_TEST_CASE("discretized likelihood: the 256 bin probabilities sum to 1 (Eq. 18)", "[gaussian][discretized]",
                   float, double) {
  using S = TestType;
  const Tensor<S, 1> x = bin_centres<S>();
  Tensor<S, 1> mean(256);
  for (const double m : {-1.3, -1.0, -0.42, 0.0, 0.1234, 0.999, 1.0, 2.0}) {
    for (const double ls : {-9.0, -6.0, -4.0, -2.5, -1.0, 0.0, 1.0, 2.0}) {
      mean.setConstant(static_cast<S>(m));
      const Tensor<S, 1> logp = ddpm::discretized_gaussian_log_likelihood(x, mean, static_cast<S>(ls));
      double total = 0.0;
      for (int k = 0; k < 256; ++k) total += std::exp(static_cast<double>(logp(k)));
      // Bin centres rounded to S leave gaps (or overlaps) of up to half an ulp between neighbouring bins,
      // [x_k + 1/255, x_{k+1} - 1/255]; for float and a tiny scale with the mean on a boundary, their mass
      // is ~1e-6. The expected total is 1 minus that mass, computed in long double.
      long double gaps = 0.0L;
      const long double sigma = std::exp(static_cast<long double>(static_cast<S>(ls)));
      for (int k = 0; k + 1 < 256; ++k) {
        const long double a = (static_cast<long double>(x(k)) + 1.0L / 255.0L - mean(k)) / sigma;
        const long double b = (static_cast<long double>(x(k + 1)) - 1.0L / 255.0L - mean(k)) / sigma;
        gaps += phi_ld(b) - phi_ld(a);
      }
      INFO("mean " << m << ", log scale " << ls << ", mass in the gaps " << static_cast<double>(gaps));
      // The 1e-12 clamp adds at most 256e-12; float rounding of the logs adds ~1e-7.
      CHECK(std::abs(total - (1.0 - static_cast<double>(gaps))) <= 1e-6);
      CHECK(std::abs(gaps) <= 1e-5L);
    }
  }
}

TEMPLATE_TEST_CASE("discretized likelihood matches a long double CDF difference (Eq. 18)", "[gaussian][discretized]",
                   float, double) {
  using S = TestType;
  const Tensor<S, 1> x = bin_centres<S>();
  Tensor<S, 1> mean(256);
  int compared = 0;
  for (const double m : {-0.8, -0.0157, 0.3, 0.95}) {
    for (const double ls : {-7.0, -5.0, -3.0, -1.5, 0.0, 1.5}) {
      mean.setConstant(static_cast<S>(m));
      const Tensor<S, 1> logp = ddpm::discretized_gaussian_log_likelihood(x, mean, static_cast<S>(ls));
      for (int k = 0; k < 256; ++k) {
        const long double xv = x(k), mv = mean(k), sigma = std::exp(static_cast<long double>(static_cast<S>(ls)));
        const long double upper = k == 255 ? std::numeric_limits<long double>::infinity() : xv + 1.0L / 255.0L;
        const long double lower = k == 0 ? -std::numeric_limits<long double>::infinity() : xv - 1.0L / 255.0L;
        const long double p = phi_ld((upper - mv) / sigma) - phi_ld((lower - mv) / sigma);
        INFO("x " << (double)xv << ", mean " << m << ", log scale " << ls << ", p " << (double)p);
        // A plain difference of long double CDFs is accurate to ~2e-19 absolute, i.e. to 2e-13 relative
        // where p >= 1e-6; below the clamp the result must be exactly log(1e-12).
        if (p >= 1e-6L) {
          CHECK(std::abs(logp(k) - std::log(p)) <= log_tolerance<S>() * std::max(1.0L, -std::log(p)));
          ++compared;
        } else if (p < 1e-13L) {
          CHECK(logp(k) == static_cast<S>(std::log(1e-12)));
        }
      }
    }
  }
  CHECK(compared > 1000);
}

TEMPLATE_TEST_CASE("discretized likelihood: edge bins are open to infinity", "[gaussian][discretized]", float,
                   double) {
  using S = TestType;
  const auto ll = [](double xv, double mv, double ls) {
    Tensor<S, 1> x(1), mean(1);
    x(0) = static_cast<S>(xv);
    mean(0) = static_cast<S>(mv);
    return static_cast<long double>(ddpm::discretized_gaussian_log_likelihood(x, mean, static_cast<S>(ls))(0));
  };
  const long double tol = log_tolerance<S>();
  // A mean far beyond an edge puts (almost) all mass in that edge bin.
  CHECK(std::abs(ll(-1.0, -5.0, -1.0)) <= tol);
  CHECK(std::abs(ll(1.0, 9.0, 0.0)) <= 1e-12L + tol);  // P = Phi(8.0039) = 1 - 6e-16
  // The edge bins have exactly half the mass of a Gaussian centred on their inner boundary.
  CHECK(std::abs(ll(-1.0, -1.0 + 1.0 / 255.0, 0.7) - std::log(0.5L)) <= 10 * tol);
  CHECK(std::abs(ll(1.0, 1.0 - 1.0 / 255.0, -3.0) - std::log(0.5L)) <= 10 * tol);
  // Deep in the tail of an edge bin, the smaller tail is used: log Q(z) with Q(z) ~ 1e-9 is accurate (the
  // reference is the long double upper tail 0.5 * erfc(z / sqrt 2)).
  {
    const double m = -0.25, ls = std::log(0.125);
    const long double z = ((-1.0L + 1.0L / 255.0L) - static_cast<S>(m)) / std::exp((long double)static_cast<S>(ls));
    const long double ref = std::log(0.5L * std::erfc(-z / std::sqrt(2.0L)));  // z ~ -5.97, Phi(z) ~ 1.2e-9
    CHECK(ref < std::log(1e-8L));
    CHECK(std::abs(ll(-1.0, m, ls) - ref) <= tol * -ref);
    CHECK(std::abs(ll(1.0, -m, ls) - ref) <= tol * -ref);  // the mirror image
  }
  // improved-diffusion's thresholds: strictly below -0.999 (or above 0.999) is an edge bin.
  CHECK(std::abs(ll(-0.9995, -5.0, -2.0)) <= tol);
  CHECK(std::abs(ll(0.9995, 5.0, -2.0)) <= tol);
  CHECK(ll(-0.998, -5.0, -2.0) == static_cast<S>(std::log(1e-12)));
  CHECK(ll(0.998, 5.0, -2.0) == static_cast<S>(std::log(1e-12)));
}

TEMPLATE_TEST_CASE("discretized likelihood is mirror-symmetric and accepts scalar or tensor log scales",
                   "[gaussian][discretized]", float, double) {
  using S = TestType;
  Tensor<S, 2> x(4, 64);
  for (int k = 0; k < 256; ++k) x.data()[k] = static_cast<S>(-1.0L + 2.0L * ((k * 37) % 256) / 255.0L);
  const auto mean = filled<S, 2>(-1.2, 1.2, 0.5, 4, 64);
  const auto ls = filled<S, 2>(-6.0, 0.5, 0.9, 4, 64);
  const Tensor<S, 2> logp = ddpm::discretized_gaussian_log_likelihood(x, mean, ls);
  const Tensor<S, 2> neg_x = -x;
  const Tensor<S, 2> neg_mean = -mean;
  const Tensor<S, 2> mirrored = ddpm::discretized_gaussian_log_likelihood(neg_x, neg_mean, ls);
  for (Eigen::Index i = 0; i < x.size(); ++i) CHECK(logp.data()[i] == mirrored.data()[i]);

  Tensor<S, 2> ls_const(4, 64);
  ls_const.setConstant(S(-2.75));
  const Tensor<S, 2> from_tensor = ddpm::discretized_gaussian_log_likelihood(x, mean, ls_const);
  const Tensor<S, 2> from_scalar = ddpm::discretized_gaussian_log_likelihood(x, mean, S(-2.75));
  // The out form into a map over the caller's buffer, and into x itself.
  std::vector<S> buffer(257);
  ddpm::TensorMap<S, 2> out(buffer.data() + 1, 4, 64);
  ddpm::discretized_gaussian_log_likelihood(ddpm::ConstTensorMap<S, 2>(x.data(), 4, 64), mean, -2.75, out);
  Tensor<S, 2> aliased = x;
  ddpm::discretized_gaussian_log_likelihood(aliased, mean, S(-2.75), aliased);
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    CHECK(from_tensor.data()[i] == from_scalar.data()[i]);
    CHECK(out.data()[i] == from_scalar.data()[i]);
    CHECK(aliased.data()[i] == from_scalar.data()[i]);
  }
}

TEMPLATE_TEST_CASE("discretized likelihood stays between log 1e-12 and 0 at extreme scales", "[gaussian][discretized]",
                   float, double) {
  using S = TestType;
  constexpr double inf = std::numeric_limits<double>::infinity();
  const Tensor<S, 1> x = bin_centres<S>();
  const S floor = static_cast<S>(std::log(1e-12));
  // Means on bin centres, on bin edges (where a vanishing scale meets (x - mean) +- 1/255 = 0) and between.
  for (const double offset : {0.0, 1.0 / 255.0, -1.0 / 255.0, 0.3 / 255.0}) {
    Tensor<S, 1> mean(256);
    for (int k = 0; k < 256; ++k) mean(k) = static_cast<S>(static_cast<double>(x(k)) + offset);
    for (const double ls : {-inf, -1e6, -800.0, -200.0, -50.0, -20.0, 20.0, 50.0, 800.0, 1e6, inf}) {
      const Tensor<S, 1> logp = ddpm::discretized_gaussian_log_likelihood(x, mean, static_cast<S>(ls));
      INFO("offset " << offset * 255 << "/255, log scale " << ls);
      for (int k = 0; k < 256; ++k) {
        CHECK(std::isfinite(logp(k)));
        CHECK(logp(k) >= floor);
        CHECK(logp(k) <= S(0));
      }
      if (offset == 0.0 && ls <= -50.0) {
        // A point mass on the bin centre: probability 1.
        for (int k = 0; k < 256; ++k) CHECK(logp(k) == S(0));
      }
      if (ls >= 50.0) {
        // An (almost) flat Gaussian: the inner bins are below the clamp, the edge bins hold about half each.
        for (int k = 1; k < 255; ++k) CHECK(logp(k) == floor);
        CHECK(std::abs(logp(0) - std::log(S(0.5))) <= S(1e-6));
        CHECK(std::abs(logp(255) - std::log(S(0.5))) <= S(1e-6));
      }
    }
  }
}

TEST_CASE("discretized likelihood: a large tensor (threaded under DDPM_OPENMP) matches slices of it",
          "[gaussian][discretized]") {
  // 80,000 elements pass the threading threshold (2 * 2^15) when ddpm is built with OpenMP; each element
  // must still be exactly what a small, single-threaded call gives.
  const auto x_raw = filled<float, 2>(-1.0, 1.0, 0.2, 2, 40000);
  const auto mean = filled<float, 2>(-1.1, 1.1, 0.6, 2, 40000);
  const auto ls = filled<float, 2>(-6.0, 0.0, 1.1, 2, 40000);
  const Tensor<float, 2> x = x_raw.cwiseMax(-1.0f).cwiseMin(1.0f);
  const Tensor<float, 2> all = ddpm::discretized_gaussian_log_likelihood(x, mean, ls);
  for (const Eigen::Index offset : {Eigen::Index{0}, Eigen::Index{39500}, Eigen::Index{79000}}) {
    const Eigen::Index n = 1000;
    const Tensor<float, 1> slice = ddpm::discretized_gaussian_log_likelihood(
        ddpm::ConstTensorMap<float, 1>(x.data() + offset, n), ddpm::ConstTensorMap<float, 1>(mean.data() + offset, n),
        ddpm::ConstTensorMap<float, 1>(ls.data() + offset, n));
    for (Eigen::Index i = 0; i < n; ++i) CHECK(slice(i) == all.data()[offset + i]);
  }
}

TEST_CASE("discretized likelihood differs from improved-diffusion's tanh CDF by the documented amount",
          "[gaussian][discretized]") {
  // The doc comment promises < 1e-3 nats within one standard deviation and < 8e-3 within two.
  const Tensor<double, 1> x = bin_centres<double>();
  Tensor<double, 1> mean(256);
  double worst1 = 0.0, worst2 = 0.0, largest = 0.0;
  for (int j = -100; j <= 100; ++j) {
    const double m = j / 80.0;
    for (const double ls : {-6.0, -4.0, -2.0, -1.0, 0.0}) {
      mean.setConstant(m);
      const Tensor<double, 1> logp = ddpm::discretized_gaussian_log_likelihood(x, mean, ls);
      const double inv = std::exp(-ls);
      for (int k = 0; k < 256; ++k) {
        const double c = x(k) - m;
        const double up = phi_tanh(inv * (c + 1.0 / 255.0)), lo = phi_tanh(inv * (c - 1.0 / 255.0));
        const double p = k == 0 ? up : k == 255 ? 1.0 - lo : up - lo;
        const double diff = std::abs(logp(k) - std::log(std::max(p, 1e-12)));
        const double z = std::abs(c) * inv;
        if (z <= 1.0) worst1 = std::max(worst1, diff);
        if (z <= 2.0) worst2 = std::max(worst2, diff);
        largest = std::max(largest, diff);
      }
    }
  }
  INFO("worst within 1 sigma " << worst1 << ", within 2 sigma " << worst2 << ", anywhere " << largest);
  CHECK(worst1 < 1e-3);
  CHECK(worst2 < 8e-3);
  CHECK(largest > 1.0);  // the approximation really differs in the tails: this test can tell the two apart
}

// ---------------------------------------------------------------------------------------------------------
// mean_flat

TEMPLATE_TEST_CASE("mean_flat averages everything but the batch dimension", "[gaussian][mean_flat]", float, double) {
  using S = TestType;
  Tensor<S, 4> t(3, 2, 4, 5);
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<S>(i);
  const Eigen::Array<S, Eigen::Dynamic, 1> m = ddpm::mean_flat(t);
  REQUIRE(m.size() == 3);
  // Sample b holds 40b, ..., 40b + 39: mean 40b + 19.5.
  for (int b = 0; b < 3; ++b) CHECK(m[b] == S(40 * b + 19.5));

  Tensor<S, 1> v(4);
  v.setValues({S(1.5), S(-2), S(0.25), S(7)});
  const Eigen::Array<S, Eigen::Dynamic, 1> mv = ddpm::mean_flat(ddpm::ConstTensorMap<S, 1>(v.data(), 4));
  REQUIRE(mv.size() == 4);
  for (int b = 0; b < 4; ++b) CHECK(mv[b] == v(b));
}

// ---------------------------------------------------------------------------------------------------------
// Preconditions

TEST_CASE("gaussian.hpp preconditions throw ddpm::invalid_argument", "[gaussian][preconditions]") {
  using ddpm::invalid_argument;
  Tensor<float, 2> a(2, 3), b(2, 3), wrong(3, 2), empty(0, 3);
  a.setConstant(0.5f);
  b.setConstant(-0.25f);
  wrong.setZero();
  std::vector<float> buffer(6);
  ddpm::TensorMap<float, 2> wrong_out(buffer.data(), 3, 2);

  SECTION("normal_log_density") {
    REQUIRE_THROWS_AS(ddpm::normal_log_density(empty, empty, 0.0f), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::normal_log_density(a, wrong, 0.0f), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::normal_log_density(a, b, wrong), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::normal_log_density(a, b, 0.0f, wrong_out), invalid_argument);
    REQUIRE_THROWS_WITH(ddpm::normal_log_density(a, wrong, 0.0f),
                        Catch::Contains("ddpm::normal_log_density") && Catch::Contains("mean") &&
                            Catch::Contains("(3, 2)") && Catch::Contains("(2, 3)"));
    REQUIRE_NOTHROW(ddpm::normal_log_density(a, b, b));
  }
  SECTION("normal_kl") {
    REQUIRE_THROWS_AS(ddpm::normal_kl(empty, 0.0f, empty, 0.0f), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::normal_kl(a, 0.0f, wrong, 0.0f), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::normal_kl(a, wrong, b, 0.0f), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::normal_kl(a, 0.0f, b, wrong), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::normal_kl(a, b, b, a, wrong_out), invalid_argument);
    REQUIRE_THROWS_WITH(ddpm::normal_kl(a, 0.0f, b, wrong),
                        Catch::Contains("ddpm::normal_kl") && Catch::Contains("log_variance2") &&
                            Catch::Contains("(3, 2)") && Catch::Contains("(2, 3)"));
    REQUIRE_NOTHROW(ddpm::normal_kl(a, b, b, a));
  }
  SECTION("discretized_gaussian_log_likelihood") {
    REQUIRE_THROWS_AS(ddpm::discretized_gaussian_log_likelihood(empty, empty, 0.0f), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::discretized_gaussian_log_likelihood(a, wrong, 0.0f), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::discretized_gaussian_log_likelihood(a, b, wrong), invalid_argument);
    REQUIRE_THROWS_AS(ddpm::discretized_gaussian_log_likelihood(a, b, 0.0f, wrong_out), invalid_argument);
    for (const float bad : {1.0001f, -1.0001f, 3.0f, std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::infinity()}) {
      Tensor<float, 2> x = a;
      x(1, 2) = bad;
      REQUIRE_THROWS_AS(ddpm::discretized_gaussian_log_likelihood(x, b, 0.0f), invalid_argument);
    }
    Tensor<float, 2> x = a;
    x(1, 1) = 1.5f;
    REQUIRE_THROWS_WITH(ddpm::discretized_gaussian_log_likelihood(x, b, 0.0f),
                        Catch::Contains("x[4] (flat index) is 1.5") && Catch::Contains("[-1, 1]"));
    x(1, 1) = 1.0f;  // the ends of [-1, 1] are valid
    x(0, 0) = -1.0f;
    REQUIRE_NOTHROW(ddpm::discretized_gaussian_log_likelihood(x, b, 0.0f));
  }
  SECTION("mean_flat") {
    REQUIRE_THROWS_AS(ddpm::mean_flat(empty), invalid_argument);
    Tensor<double, 3> no_elements(2, 0, 4);
    REQUIRE_THROWS_AS(ddpm::mean_flat(no_elements), invalid_argument);
  }
}
