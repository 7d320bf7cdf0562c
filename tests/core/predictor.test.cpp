// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Predictor concepts and adapters, classifier-free guidance, and the Gaussian-mixture oracle against the
// posterior expectation E[eps | x_t] computed by numerical integration.
//                                                        [docs/samplers.md, Eqs. (S1)-(S2), (S16)-(S17)]

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "ddpm/posterior.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

using ddpm::Prediction;
using ddpm::Tensor;

namespace {

struct VelocityNet {
  static constexpr Prediction prediction = Prediction::velocity;
  Tensor<float, 2> operator()(const Tensor<float, 2>& x, int) const { return x; }
};

struct RuntimeKindNet {
  Prediction kind;
  Prediction prediction() const { return kind; }
  Tensor<float, 2> operator()(const Tensor<float, 2>& x, int) const { return x; }
};

auto plain = [](const Tensor<float, 2>& x, int) { return Tensor<float, 2>(x * 2.0f); };

// The concepts accept what they document and reject what they do not.
static_assert(ddpm::Predictor<decltype(plain), float, 2>);
static_assert(ddpm::EpsilonPredictor<decltype(plain), float, 2>);
static_assert(ddpm::Predictor<VelocityNet, float, 2> && !ddpm::EpsilonPredictor<VelocityNet, float, 2>);
static_assert(!ddpm::EpsilonPredictor<RuntimeKindNet, float, 2>);
static_assert(ddpm::EpsilonPredictor<ddpm::GaussianMixturePredictor<double>, double, 2>);
static_assert(ddpm::EpsilonPredictor<ddpm::GaussianMixturePredictor<float>, float, 4>);
static_assert(!ddpm::Predictor<int, float, 2>);

// Adaptive Simpson-free quadrature: the trapezoid rule on a uniform grid is spectrally accurate for these
// smooth, rapidly decaying integrands, so a grid fine against the narrowest Gaussian factor suffices.
// E[x0 | x_t] = int x0 p(x0) N(x_t; a x0, (1 - ab) I) dx0 / int p(x0) N(x_t; a x0, (1 - ab) I) dx0.
struct Mixture {
  std::vector<double> w;
  std::vector<std::vector<double>> mu;
  std::vector<double> s;
  double prior(const std::vector<double>& x0) const {
    double p = 0.0;
    const double D = static_cast<double>(x0.size());
    for (std::size_t k = 0; k < w.size(); ++k) {
      double d2 = 0.0;
      for (std::size_t d = 0; d < x0.size(); ++d) d2 += (x0[d] - mu[k][d]) * (x0[d] - mu[k][d]);
      p += w[k] * std::exp(-0.5 * d2 / (s[k] * s[k])) / std::pow(s[k] * s[k], D / 2);
    }
    return p;
  }
};

std::vector<double> eps_by_quadrature(const Mixture& m, const std::vector<double>& x_t, double ab, double lo,
                                      double hi, int n) {
  const std::size_t D = x_t.size();
  const double h = (hi - lo) / n;
  const double a = std::sqrt(ab), var = 1.0 - ab;
  std::vector<double> num(D, 0.0);
  double den = 0.0;
  std::vector<int> idx(D, 0);
  std::vector<double> x0(D);
  while (true) {
    double d2 = 0.0;
    for (std::size_t d = 0; d < D; ++d) {
      x0[d] = lo + idx[d] * h;
      d2 += (x_t[d] - a * x0[d]) * (x_t[d] - a * x0[d]);
    }
    const double wgt = m.prior(x0) * std::exp(-0.5 * d2 / var);
    den += wgt;
    for (std::size_t d = 0; d < D; ++d) num[d] += wgt * x0[d];
    std::size_t d = 0;
    while (d < D && ++idx[d] > n) idx[d++] = 0;
    if (d == D) break;
  }
  std::vector<double> eps(D);
  for (std::size_t d = 0; d < D; ++d) eps[d] = (x_t[d] - a * num[d] / den) / std::sqrt(var);
  return eps;
}

}  // namespace

TEST_CASE("prediction_of reads the declared kind; with_prediction declares one", "[samplers][predictor]") {
  CHECK(ddpm::prediction_of(plain) == Prediction::epsilon);
  CHECK(ddpm::prediction_of(VelocityNet{}) == Prediction::velocity);
  CHECK(ddpm::prediction_of(RuntimeKindNet{Prediction::sample}) == Prediction::sample);
  auto v = ddpm::with_prediction(Prediction::velocity, plain);
  static_assert(ddpm::Predictor<decltype(v), float, 2>);
  CHECK(ddpm::prediction_of(v) == Prediction::velocity);
  Tensor<float, 2> x(2, 3);
  x.setValues({{1, 2, 3}, {4, 5, 6}});
  const Tensor<float, 2> out = v(x, 7);
  CHECK(out(1, 2) == 12.0f);
  // An lvalue model is held by reference: state changes are seen through the adapter.
  int calls = 0;
  auto counting = [&calls](const Tensor<float, 2>& in, int) {
    ++calls;
    return Tensor<float, 2>(in);
  };
  auto s = ddpm::with_prediction(Prediction::sample, counting);
  (void)s(x, 0);
  (void)s(x, 1);
  CHECK(calls == 2);
  CHECK(std::string(ddpm::prediction_name(Prediction::velocity)) == "velocity");
}

TEST_CASE("GaussianMixturePredictor equals E(eps | x_t) by numerical integration", "[samplers][predictor]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  SECTION("2-D, three components") {
    const Mixture m{{0.5, 0.3, 0.2}, {{-2.0, 0.0}, {1.5, 1.5}, {1.0, -2.0}}, {0.5, 0.8, 0.6}};
    const ddpm::GaussianMixturePredictor<double> p(schedule, {5.0, 3.0, 2.0}, m.mu, m.s);  // unnormalised weights
    for (int t : {40, 150, 400, 999}) {
      const double ab = schedule.alphas_cumprod_double()[static_cast<std::size_t>(t)];
      Tensor<double, 2> x(3, 2);
      x.setValues({{-1.7, 0.3}, {0.4, 0.9}, {2.5, -1.0}});
      const Tensor<double, 2> eps = p(x, t);
      // Grid step 0.03 over [-9, 9]^2: the narrowest Gaussian factor, min(s_k, sqrt((1 - ab) / ab)) >= 0.14, spans
      // >= 4.7 steps (trapezoid error ~ exp(-2 pi^2 4.7^2), negligible), and every component lies >= 8.7
      // standard deviations inside the box (truncated mass ~ exp(-38)).
      for (int b = 0; b < 3; ++b) {
        const auto ref = eps_by_quadrature(m, {x(b, 0), x(b, 1)}, ab, -9.0, 9.0, 600);
        INFO("t = " << t << ", point " << b);
        CHECK(eps(b, 0) == Approx(ref[0]).margin(1e-9));
        CHECK(eps(b, 1) == Approx(ref[1]).margin(1e-9));
      }
    }
  }
  SECTION("1-D and 3-D") {
    const Mixture m1{{0.7, 0.3}, {{-1.0}, {2.0}}, {0.3, 0.7}};
    const ddpm::GaussianMixturePredictor<double> p1(schedule, m1.w, m1.mu, m1.s);
    Tensor<double, 2> x1(2, 1);
    x1.setValues({{-0.8}, {1.1}});
    const int t1 = 60;
    const Tensor<double, 2> e1 = p1(x1, t1);
    for (int b = 0; b < 2; ++b) {
      const auto ref = eps_by_quadrature(m1, {x1(b, 0)}, schedule.alphas_cumprod_double()[t1], -8.0, 8.0, 4000);
      CHECK(e1(b, 0) == Approx(ref[0]).margin(1e-9));
    }
    const Mixture m3{{0.4, 0.6}, {{1.0, 0.0, -1.0}, {-1.0, 0.5, 1.0}}, {0.6, 0.9}};
    const ddpm::GaussianMixturePredictor<double> p3(schedule, m3.w, m3.mu, m3.s);
    Tensor<double, 2> x3(1, 3);
    x3.setValues({{0.2, -0.4, 0.7}});
    const int t3 = 500;
    const Tensor<double, 2> e3 = p3(x3, t3);
    const auto ref = eps_by_quadrature(m3, {0.2, -0.4, 0.7}, schedule.alphas_cumprod_double()[t3], -8.0, 8.0, 160);
    for (int d = 0; d < 3; ++d) CHECK(e3(0, d) == Approx(ref[d]).margin(1e-7));
  }
}

TEST_CASE("GaussianMixturePredictor: limits, layouts, float, responsibilities", "[samplers][predictor]") {
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  const std::vector<std::vector<double>> means{{-2.0, 0.0}, {2.0, 1.0}};
  const ddpm::GaussianMixturePredictor<double> p(schedule, {0.5, 0.5}, means, {0.5, 0.5});
  Tensor<double, 2> x(4, 2);
  x.setValues({{-2.0, 0.1}, {2.1, 1.0}, {-0.1, 0.5}, {7.0, -3.0}});
  SECTION("a single Gaussian gives eps = sqrt(1 - ab) (x - sqrt(ab) mu) / (ab s^2 + 1 - ab)") {
    const ddpm::GaussianMixturePredictor<double> one(schedule, {1.0}, {{0.5, -1.0}}, {0.7});
    const int t = 321;
    const double ab = schedule.alphas_cumprod_double()[t];
    const Tensor<double, 2> e = one(x, t);
    for (int b = 0; b < 4; ++b) {
      CHECK(e(b, 0) == Approx(std::sqrt(1 - ab) * (x(b, 0) - std::sqrt(ab) * 0.5) / (ab * 0.49 + 1 - ab)).epsilon(1e-13));
      CHECK(e(b, 1) == Approx(std::sqrt(1 - ab) * (x(b, 1) + std::sqrt(ab) * 1.0) / (ab * 0.49 + 1 - ab)).epsilon(1e-13));
    }
  }
  SECTION("at alpha_bar = 0 the best guess of the noise is x_t itself") {
    Tensor<double, 2> e(4, 2);
    p.predict_at(0.0, x, e);
    for (int i = 0; i < 8; ++i) CHECK(e.data()[i] == Approx(x.data()[i]).epsilon(1e-14));
  }
  SECTION("x0 recovered through Eq. (8) is the posterior mean: near a component it is near its mean") {
    const int t = 5;
    const Tensor<double, 2> e = p(x, t);
    const Tensor<double, 2> x0 = ddpm::predict_x0_from_eps(schedule, x, t, e);
    CHECK(x0(0, 0) == Approx(-2.0).margin(0.02));
    CHECK(x0(1, 0) == Approx(2.1).margin(0.02));
  }
  SECTION("any rank: the trailing dimensions are the coordinates") {
    Tensor<double, 4> x4(4, 1, 2, 1);
    std::copy(x.data(), x.data() + 8, x4.data());
    const Tensor<double, 4> e4 = p(x4, 200);
    const Tensor<double, 2> e2 = p(x, 200);
    for (int i = 0; i < 8; ++i) CHECK(e4.data()[i] == e2.data()[i]);
    ddpm::ConstTensorMap<double, 2> xm(x.data(), 4, 2);
    const Tensor<double, 2> em = p(xm, 200);
    for (int i = 0; i < 8; ++i) CHECK(em.data()[i] == e2.data()[i]);
  }
  SECTION("float agrees with double to float rounding") {
    const auto sf = ddpm::NoiseSchedule<float>::linear(1000);
    const ddpm::GaussianMixturePredictor<float> pf(sf, {0.5, 0.5}, means, {0.5, 0.5});
    const Tensor<float, 2> xf = x.cast<float>();
    const Tensor<float, 2> ef = pf(xf, 300);
    const Tensor<double, 2> xd = xf.cast<double>();
    const Tensor<double, 2> ed = p(xd, 300);
    for (int i = 0; i < 8; ++i) CHECK(ef.data()[i] == Approx(ed.data()[i]).margin(1e-6).epsilon(1e-6));
  }
  SECTION("responsibilities and classify") {
    const Eigen::MatrixXd r = p.responsibilities(x);
    for (int b = 0; b < 4; ++b) CHECK(r.row(b).sum() == Approx(1.0));
    CHECK(r(0, 0) > 0.999);
    CHECK(r(1, 1) > 0.999);
    CHECK(p.classify(x) == std::vector<int>{0, 1, 0, 1});
  }
  SECTION("bad input") {
    using ddpm::invalid_argument;
    CHECK_THROWS_AS(p(x, -1), invalid_argument);
    CHECK_THROWS_AS(p(x, 1000), invalid_argument);
    Tensor<double, 2> x3(2, 3);
    x3.setZero();
    CHECK_THROWS_AS(p(x3, 10), invalid_argument);
    Tensor<double, 2> empty(0, 2);
    CHECK_THROWS_AS(p(empty, 10), invalid_argument);
    Tensor<double, 2> out(4, 2);
    CHECK_THROWS_AS(p.predict_at(1.0, x, out), invalid_argument);
    CHECK_THROWS_AS(p.predict_at(-0.5, x, out), invalid_argument);
    CHECK_THROWS_AS(ddpm::GaussianMixturePredictor<double>(schedule, {}, {}, {}), invalid_argument);
    CHECK_THROWS_AS(ddpm::GaussianMixturePredictor<double>(schedule, {1.0, 1.0}, {{0.0}}, {1.0, 1.0}), invalid_argument);
    CHECK_THROWS_AS(ddpm::GaussianMixturePredictor<double>(schedule, {1.0, 1.0}, {{0.0}, {0.0, 1.0}}, {1.0, 1.0}),
                    invalid_argument);
    CHECK_THROWS_AS(ddpm::GaussianMixturePredictor<double>(schedule, {-1.0}, {{0.0}}, {1.0}), invalid_argument);
    CHECK_THROWS_AS(ddpm::GaussianMixturePredictor<double>(schedule, {1.0}, {{0.0}}, {0.0}), invalid_argument);
    CHECK_THROWS_AS(ddpm::GaussianMixturePredictor<double>(schedule, {1.0}, {{NAN}}, {1.0}), invalid_argument);
    CHECK_THROWS_AS(ddpm::GaussianMixturePredictor<double>(schedule, {1.0}, {{}}, {1.0}), invalid_argument);
  }
}

TEST_CASE("ClassifierFreeGuidance combines two predictions", "[samplers][predictor][guidance]") {
  auto cond = [](const Tensor<double, 2>& x, int t) { return Tensor<double, 2>(x * 2.0 + static_cast<double>(t)); };
  auto uncond = [](const Tensor<double, 2>& x, int) { return Tensor<double, 2>(x * 0.5); };
  Tensor<double, 2> x(2, 4);
  x.setValues({{1.0, -2.0, 0.5, 3.0}, {0.0, 1.0, -1.0, 2.0}});
  SECTION("out = uncond + w (cond - uncond)") {
    ddpm::ClassifierFreeGuidance g(cond, uncond, 7.5);
    static_assert(ddpm::Predictor<decltype(g), double, 2>);
    const Tensor<double, 2> out = g(x, 3);
    for (int i = 0; i < 8; ++i) {
      const double c = 2.0 * x.data()[i] + 3.0, u = 0.5 * x.data()[i];
      CHECK(out.data()[i] == Approx(u + 7.5 * (c - u)).epsilon(1e-14));
    }
    CHECK(ddpm::prediction_of(g) == Prediction::epsilon);
    ddpm::ClassifierFreeGuidance one(cond, uncond, 1.0);  // scale 1: the conditional model
    const Tensor<double, 2> c1 = one(x, 3);
    for (int i = 0; i < 8; ++i) CHECK(c1.data()[i] == Approx(2.0 * x.data()[i] + 3.0).epsilon(1e-15));
  }
  SECTION("guidance rescale (Lin et al. 2024): phi = 1 restores the conditional standard deviation") {
    ddpm::ClassifierFreeGuidance plain_g(cond, uncond, 5.0);
    ddpm::ClassifierFreeGuidance g(cond, uncond, 5.0, 1.0);
    ddpm::ClassifierFreeGuidance half(cond, uncond, 5.0, 0.5);
    const Tensor<double, 2> guided = plain_g(x, 1), r1 = g(x, 1), r5 = half(x, 1);
    const Tensor<double, 2> c = cond(x, 1);
    for (int b = 0; b < 2; ++b) {
      auto sd = [&](const Tensor<double, 2>& v) {  // unbiased, as torch.std
        double m = 0, s = 0;
        for (int j = 0; j < 4; ++j) m += v(b, j) / 4;
        for (int j = 0; j < 4; ++j) s += (v(b, j) - m) * (v(b, j) - m);
        return std::sqrt(s / 3);
      };
      CHECK(sd(r1) == Approx(sd(c)).epsilon(1e-13));
      const double f = sd(c) / sd(guided);
      for (int j = 0; j < 4; ++j) {
        CHECK(r1(b, j) == Approx(guided(b, j) * f).epsilon(1e-13));
        CHECK(r5(b, j) == Approx(0.5 * guided(b, j) * f + 0.5 * guided(b, j)).epsilon(1e-13));
      }
    }
  }
  SECTION("one model on a doubled batch [uncond; cond] gives the same") {
    int calls = 0;
    auto batched = [&](const Tensor<double, 2>& x2, int t) {
      ++calls;
      REQUIRE(x2.dimension(0) == 4);
      Tensor<double, 2> out(x2.dimensions());
      for (int b = 0; b < 4; ++b) {
        for (int j = 0; j < 4; ++j) out(b, j) = b < 2 ? 0.5 * x2(b, j) : 2.0 * x2(b, j) + t;
      }
      return out;
    };
    ddpm::BatchedClassifierFreeGuidance g(batched, 4.0, 0.7);
    ddpm::ClassifierFreeGuidance two(cond, uncond, 4.0, 0.7);
    const Tensor<double, 2> a = g(x, 2), b = two(x, 2);
    CHECK(calls == 1);
    for (int i = 0; i < 8; ++i) CHECK(a.data()[i] == Approx(b.data()[i]).epsilon(1e-14));
    auto bad_batch = [](const Tensor<double, 2>& x2, int) {
      Tensor<double, 2> out(3, x2.dimension(1));
      out.setZero();
      return out;
    };
    ddpm::BatchedClassifierFreeGuidance gb(bad_batch, 4.0);
    CHECK_THROWS_AS(gb(x, 2), ddpm::invalid_argument);
  }
  SECTION("it forwards the declared kind and rejects bad options") {
    auto vc = ddpm::with_prediction(Prediction::velocity, cond);
    auto vu = ddpm::with_prediction(Prediction::velocity, uncond);
    ddpm::ClassifierFreeGuidance g(vc, vu, 3.0);
    CHECK(ddpm::prediction_of(g) == Prediction::velocity);
    CHECK_THROWS_AS(ddpm::ClassifierFreeGuidance(vc, uncond, 3.0), ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::ClassifierFreeGuidance(cond, uncond, NAN), ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::ClassifierFreeGuidance(cond, uncond, 3.0, 1.5), ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::ClassifierFreeGuidance(cond, uncond, 3.0, -0.1), ddpm::invalid_argument);
    CHECK_THROWS_AS(ddpm::BatchedClassifierFreeGuidance(cond, 3.0, 2.0), ddpm::invalid_argument);
    auto other_shape = [](const Tensor<double, 2>& in, int) { return Tensor<double, 2>(in.dimension(0), 3); };
    ddpm::ClassifierFreeGuidance mismatch(cond, other_shape, 3.0);
    CHECK_THROWS_AS(mismatch(x, 0), ddpm::invalid_argument);
    Tensor<double, 2> narrow(2, 1);
    narrow.setConstant(1.0);
    ddpm::ClassifierFreeGuidance rescaled(cond, uncond, 3.0, 0.5);
    CHECK_THROWS_AS(rescaled(narrow, 0), ddpm::invalid_argument);  // a std needs >= 2 values
  }
}
