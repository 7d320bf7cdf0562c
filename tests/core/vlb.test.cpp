// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Tests of ddpm/vlb.hpp: the bound's terms (docs/math.md Eqs. (23)-(25)), the hybrid loss and its gradient
// (Eq. (26)) and the full bound (Eq. (27)). References: the float64 torch fixtures of
// tests/reference/make_training_fixtures.py (confirmed against improved-diffusion's own code), central finite
// differences, closed forms (KL = 0 at the true posterior) and the definition of calc_bpd_loop replayed.
// Tolerances: double 1e-12, float 1e-6, relative to max(|expected|, scale) with the scale stated at each use.

#include <catch2/catch.hpp>

#include <cmath>
#include <span>
#include <vector>

#include "ddpm/vlb.hpp"
#include "training_fixtures.hpp"

namespace {

using namespace ddpm_test;
using ddpm::Prediction;
using ddpm::Tensor;
using ddpm::VarianceType;

Prediction kind_of(const std::string& s) {
  if (s == "epsilon") return Prediction::epsilon;
  if (s == "sample") return Prediction::sample;
  return Prediction::velocity;
}

VarianceType variance_of(const std::string& s) {
  if (s == "fixed_small") return VarianceType::fixed_small;
  if (s == "fixed_large") return VarianceType::fixed_large;
  return VarianceType::learned_range;
}

// Bits/dim terms are differences of O(1) quantities (means of magnitude ~1, log variances): the rounding of
// the reference itself is ~1e-16 of those, so a term is compared relative to max(|term|, 1e-3).
constexpr double kBitsScale = 1e-3;

}  // namespace

TEMPLATE_TEST_CASE("vb_terms_bpd matches improved-diffusion's _vb_terms_bpd (Eqs. (24)-(25))", "[vlb]", float, double) {
  using S = TestType;
  for (const json& c : training_fixture().at("vb")) {
    const std::string sname = c.at("schedule");
    const json& in = training_inputs(sname);
    const auto sched = training_schedule<S>(sname);
    const VarianceType var = variance_of(c.at("variance"));
    const std::vector<int> t = fixture_timesteps(in);
    const auto dims = training_dims();
    const Tensor<S, 4> x0 = tensor_from<S, 4>(numbers(in.at("x0")), dims);
    const Tensor<S, 4> x_t = tensor_from<S, 4>(numbers(in.at("x_t")), dims);
    const Tensor<S, 4> out =
        tensor_from<S, 4>(numbers(c.at("output")), training_dims(var == VarianceType::learned_range ? 2 : 1));
    const Tensor<S, 1> vb = ddpm::vb_terms_bpd(sched, var, out, x0, x_t, std::span<const int>(t),
                                               kind_of(c.at("kind")), c.at("clip").get<bool>());
    const auto cmp = compare(to_doubles(vb), numbers(c.at("vb")), rel_tol<S>, kBitsScale);
    INFO(sname << " " << c.at("variance").get<std::string>() << " " << c.at("kind").get<std::string>() << " clip "
               << c.at("clip").get<bool>() << ": " << cmp.message);
    CHECK(cmp.ok);
  }
}

TEMPLATE_TEST_CASE("prior_bpd matches improved-diffusion's _prior_bpd (Eq. (23))", "[vlb]", float, double) {
  using S = TestType;
  for (const json& c : training_fixture().at("prior")) {
    const std::string sname = c.at("schedule");
    const auto sched = training_schedule<S>(sname);
    const Tensor<S, 4> x0 = tensor_from<S, 4>(numbers(training_inputs(sname).at("x0")), training_dims());
    // The reference evaluates -1 + (1 - a) - log(1 - a) + a x0^2 with cancellation: scale 1e-3 as above.
    const auto cmp = compare(to_doubles(ddpm::prior_bpd(sched, x0)), numbers(c.at("prior_bpd")), rel_tol<S>, kBitsScale);
    INFO(sname << ": " << cmp.message);
    CHECK(cmp.ok);
  }
}

TEMPLATE_TEST_CASE("hybrid loss and its gradient match torch autograd (Eq. (26))", "[vlb]", float, double) {
  using S = TestType;
  for (const json& c : training_fixture().at("hybrid")) {
    const std::string sname = c.at("schedule");
    const json& in = training_inputs(sname);
    const auto sched = training_schedule<S>(sname);
    const std::vector<int> t = fixture_timesteps(in);
    const auto dims = training_dims();
    const Tensor<S, 4> x0 = tensor_from<S, 4>(numbers(in.at("x0")), dims);
    const Tensor<S, 4> x_t = tensor_from<S, 4>(numbers(in.at("x_t")), dims);
    const std::vector<double> out_v = numbers(c.at("output")), tgt_v = numbers(c.at("target"));
    const Tensor<S, 4> out = tensor_from<S, 4>(out_v, training_dims(2));
    const Tensor<S, 4> target = tensor_from<S, 4>(tgt_v, dims);
    const std::vector<double> wd = numbers(c.at("weights"));
    const std::vector<S> w(wd.begin(), wd.end());
    Tensor<S, 4> grad;
    const auto r = ddpm::hybrid_loss_and_gradient(sched, out, x0, x_t, std::span<const int>(t), target,
                                                  std::span<const S>(w), grad, kind_of(c.at("kind")));
    INFO(sname << " " << c.at("kind").get<std::string>() << " " << c.at("weighting").get<std::string>());
    CHECK(close(r.loss, number(c.at("loss")), rel_tol<S>, kBitsScale));
    auto cmp = compare(array_to_doubles(r.mse), numbers(c.at("mse")), rel_tol<S>);
    INFO("mse: " << cmp.message);
    CHECK(cmp.ok);
    cmp = compare(array_to_doubles(r.vb), numbers(c.at("vb")), rel_tol<S>, kBitsScale);
    INFO("vb: " << cmp.message);
    CHECK(cmp.ok);
    // Mean half: 2 w (o - t) / (N D), scale 2 w (|o| + |t|) / (N D). Variance half: the bound's gradient,
    // scale its largest magnitude in the sample (the terms it sums are of that size).
    const std::vector<double> g = numbers(c.at("grad"));
    const std::size_t N = static_cast<std::size_t>(dims[0]), D = tgt_v.size() / N;
    // The variance half is c_b times a sum of terms that cancel, 1 - exp(lv1 - lv2) - dm^2 exp(-lv2) (and
    // the decoder's O(1) logistic-like terms at t = 0), with c_b = w_b / N * (T / 1000) * |log beta[t] -
    // posterior_log_variance_clipped[t]| / 2 / (D ln 2). The first two are ~1 each and the third is small for
    // the fixture's outputs, so the scale is 2 c_b.
    std::vector<double> var_scale(N, 0.0);
    for (std::size_t b = 0; b < N; ++b) {
      const auto tb = static_cast<std::size_t>(t[b]);
      const double T = sched.num_train_timesteps();
      const double spread = std::abs(std::log(sched.betas_double()[tb]) -
                                     static_cast<double>(ddpm::NoiseSchedule<double>::from_betas(sched.betas_double())
                                                             .posterior_log_variance_clipped()[static_cast<Eigen::Index>(tb)]));
      var_scale[b] = 2.0 * wd[b] / double(N) * (T / 1000.0) * spread / 2.0 / (double(D) * std::log(2.0));
      // At t = 0 the decoder's derivative divides by a bin mass Phi(z+) - Phi(z-) that cancels when the bin
      // lies in a tail (z ~ 1/(255 sigma) is large for sigma = sqrt(posterior variance[1])): rounding of the
      // mean is amplified by up to ~1e5 (builds with and without FMA contraction differ by up to 3e-9 relative), so
      // the scale is 1e5 times larger there.
      if (t[b] == 0) var_scale[b] *= 1e5;
    }
    cmp = compare(to_doubles(grad), g, rel_tol<S>, [&](std::size_t k) {
      const std::size_t b = k / (2 * D), i = k % (2 * D);
      if (i >= D) return var_scale[b];
      return 2.0 * wd[b] * (std::abs(out_v[k]) + std::abs(tgt_v[b * D + i])) / double(N * D);
    });
    INFO("grad: " << cmp.message);
    CHECK(cmp.ok);
    const auto r2 = ddpm::hybrid_loss(sched, out, x0, x_t, std::span<const int>(t), target, std::span<const S>(w),
                                      kind_of(c.at("kind")));
    CHECK(r2.loss == r.loss);
  }
}

TEST_CASE("hybrid loss gradient against central finite differences, including t = 0", "[vlb]") {
  // gradcheck's eps 1e-6, atol 1e-5, rtol 1e-3, in double. The variance half: the loss itself. The mean
  // half: the loss with the bound's mean frozen (stop-gradient), i.e. the weighted MSE part alone.
  const auto sched = ddpm::NoiseSchedule<double>::cosine(100);
  const Eigen::Index N = 4, C = 2, H = 3, W = 3;
  Tensor<double, 4> x0(N, C, H, W), eps(N, C, H, W), out(N, 2 * C, H, W);
  ddpm::fill_normal(x0, 4);
  for (Eigen::Index i = 0; i < x0.size(); ++i) {  // 8-bit data in [-1, 1], with both edge bins
    x0.data()[i] = std::round(std::clamp(x0.data()[i] * 0.6, -1.0, 1.0) * 127.5 + 127.5) / 127.5 - 1.0;
  }
  x0(0, 0, 0, 0) = -1.0;
  x0(0, 0, 0, 1) = 1.0;
  ddpm::fill_normal(eps, 5);
  const std::vector<int> t{0, 1, 40, 99};
  const Tensor<double, 4> x_t = ddpm::q_sample(sched, x0, std::span<const int>(t), eps);
  ddpm::NoiseSource noise(6);
  noise(out);
  for (Eigen::Index b = 0; b < N; ++b) {  // variance values in (-1, 1)
    for (Eigen::Index i = 0; i < C * H * W; ++i) {
      double& v = out.data()[b * 2 * C * H * W + C * H * W + i];
      v = std::tanh(v);
    }
  }
  const std::vector<double> w{0.7, 1.3, 1.0, 0.9};
  for (Prediction kind : {Prediction::epsilon, Prediction::sample}) {
    const Tensor<double, 4> target = kind == Prediction::epsilon ? eps : x0;
    Tensor<double, 4> grad;
    ddpm::hybrid_loss_and_gradient(sched, out, x0, x_t, std::span<const int>(t), target, std::span<const double>(w),
                                   grad, kind);
    const Eigen::Index D = C * H * W;
    int checked = 0;
    for (Eigen::Index k = 0; k < out.size(); ++k) {
      const bool var_half = (k % (2 * D)) >= D;
      Tensor<double, 4> p = out, m = out;
      p.data()[k] += 1e-6;
      m.data()[k] -= 1e-6;
      const auto lp = ddpm::hybrid_loss(sched, p, x0, x_t, std::span<const int>(t), target, std::span<const double>(w), kind);
      const auto lm = ddpm::hybrid_loss(sched, m, x0, x_t, std::span<const int>(t), target, std::span<const double>(w), kind);
      double fd;
      if (var_half) {
        fd = (lp.loss - lm.loss) / 2e-6;
      } else {
        double sp = 0, sm = 0;
        for (Eigen::Index b = 0; b < N; ++b) {
          sp += w[static_cast<std::size_t>(b)] * lp.mse[b];
          sm += w[static_cast<std::size_t>(b)] * lm.mse[b];
        }
        fd = (sp - sm) / (2e-6 * N);
      }
      INFO("element " << k << (var_half ? " (variance half)" : " (mean half)"));
      CHECK(std::abs(fd - grad.data()[k]) <= 1e-5 + 1e-3 * std::abs(grad.data()[k]));
      ++checked;
    }
    CHECK(checked == out.size());
  }
}

TEMPLATE_TEST_CASE("the KL term is 0 when the model is the true posterior", "[vlb]", float, double) {
  using S = TestType;
  const auto sched = ddpm::NoiseSchedule<S>::linear(1000);
  const Eigen::Index N = 3, C = 3, H = 4, W = 4;
  Tensor<S, 4> x0(N, C, H, W), eps(N, C, H, W);
  ddpm::fill_normal(x0, 1);
  ddpm::fill_normal(eps, 2);
  const std::vector<int> t{1, 500, 999};
  const Tensor<S, 4> x_t = ddpm::q_sample(sched, x0, std::span<const int>(t), eps);
  // A sample-predicting model that outputs x0 has the posterior mean exactly; fixed_small has the posterior
  // variance, and so does learned_range with v = -1 (frac = 0).
  const Tensor<S, 1> small = ddpm::vb_terms_bpd(sched, VarianceType::fixed_small, x0, x0, x_t, std::span<const int>(t),
                                                Prediction::sample);
  Tensor<S, 4> learned(N, 2 * C, H, W);
  learned.setConstant(S(-1));
  learned.slice(std::array<Eigen::Index, 4>{0, 0, 0, 0}, std::array<Eigen::Index, 4>{N, C, H, W}) = x0;
  const Tensor<S, 1> lr = ddpm::vb_terms_bpd(sched, VarianceType::learned_range, learned, x0, x_t,
                                             std::span<const int>(t), Prediction::sample);
  // Exactly 0 up to the rounding of the mean, which the compiler may contract into an FMA in one of the two
  // posterior means and not the other: |dm| <= 1e-16 |m| gives KL <= 1e-32 / var, far below 1e-25.
  for (Eigen::Index b = 0; b < N; ++b) {
    CHECK(std::abs(double(small(b))) < 1e-25);
    CHECK(std::abs(double(lr(b))) < 1e-25);
  }
  // An eps-predicting model with the true noise: x0 recovered up to rounding, KL at rounding level only.
  const Tensor<S, 1> e = ddpm::vb_terms_bpd(sched, VarianceType::fixed_small, eps, x0, x_t, std::span<const int>(t));
  for (Eigen::Index b = 0; b < N; ++b) CHECK(std::abs(e(b)) < (std::is_same_v<S, float> ? 1e-5 : 1e-20));
  // Any other mean or variance gives KL > 0.
  Tensor<S, 4> off = x0 + S(0.01);
  const Tensor<S, 1> o = ddpm::vb_terms_bpd(sched, VarianceType::fixed_large, off, x0, x_t, std::span<const int>(t),
                                            Prediction::sample);
  for (Eigen::Index b = 0; b < N; ++b) CHECK(o(b) > S(0));
}

TEMPLATE_TEST_CASE("calc_bpd_loop: total = sum over t of the terms + prior, terms as vb_terms_bpd (Eq. (27))", "[vlb]",
                   float, double) {
  using S = TestType;
  const auto sched = ddpm::NoiseSchedule<S>::cosine(20);
  const Eigen::Index N = 2, C = 2, H = 4, W = 4;
  Tensor<S, 4> x0(N, C, H, W);
  ddpm::fill_normal(x0, 3);
  for (Eigen::Index i = 0; i < x0.size(); ++i) {
    x0.data()[i] = static_cast<S>(std::round(std::clamp(double(x0.data()[i]) * 0.5, -1.0, 1.0) * 127.5 + 127.5) / 127.5 - 1.0);
  }
  // A deliberately imperfect learned-range model: eps_hat = 0.9 x_t, variance values from t.
  int calls = 0;
  auto model = [&](const Tensor<S, 4>& x, std::span<const int> ts) {
    ++calls;
    Tensor<S, 4> out(N, 2 * C, H, W);
    for (Eigen::Index b = 0; b < N; ++b) {
      for (Eigen::Index i = 0; i < C * H * W; ++i) {
        out.data()[b * 2 * C * H * W + i] = S(0.9) * x.data()[b * C * H * W + i];
        out.data()[b * 2 * C * H * W + C * H * W + i] = static_cast<S>(std::sin(0.3 * ts[static_cast<std::size_t>(b)] + 0.1 * i));
      }
    }
    return out;
  };
  ddpm::NoiseSource noise(42);
  const auto r = ddpm::calc_bpd_loop(sched, VarianceType::learned_range, model, x0, noise);
  CHECK(calls == 20);
  CHECK(noise.offset() == 20u * static_cast<std::uint64_t>(x0.size()));
  // Replay with the definition: t descending, eps drawn in order, clip_denoised true.
  ddpm::NoiseSource replay(42);
  const Tensor<S, 1> prior = ddpm::prior_bpd(sched, x0);
  std::vector<double> total(N, 0.0);
  for (int t = 19; t >= 0; --t) {
    Tensor<S, 4> eps(x0.dimensions());
    replay(eps);
    const std::vector<int> tb(N, t);
    const Tensor<S, 4> x_t = ddpm::q_sample(sched, x0, std::span<const int>(tb), eps);
    const Tensor<S, 1> vb = ddpm::vb_terms_bpd(sched, VarianceType::learned_range, model(x_t, std::span<const int>(tb)),
                                               x0, x_t, std::span<const int>(tb), Prediction::epsilon, true);
    for (Eigen::Index b = 0; b < N; ++b) {
      // The same arithmetic, but inlined in another context the compiler may contract different products
      // into FMAs (-O3 -march=native), so the two agree to rounding, not always to the bit.
      CHECK(close(r.vb(b, t), vb(b), rel_tol<S>, kBitsScale));
      total[static_cast<std::size_t>(b)] += static_cast<double>(vb(b));
    }
  }
  for (Eigen::Index b = 0; b < N; ++b) {
    CHECK(r.prior_bpd[b] == prior(b));
    const double expected = total[static_cast<std::size_t>(b)] + static_cast<double>(prior(b));
    CHECK(close(r.total_bpd[b], expected, rel_tol<S>, 0.0));
    CHECK(r.total_bpd[b] > S(0));
    // mse and xstart_mse are non-negative and finite.
    CHECK((r.mse.row(b) >= S(0)).all());
    CHECK((r.xstart_mse.row(b) >= S(0)).all());
  }
}

TEST_CASE("the bound rejects bad arguments", "[vlb]") {
  const auto sched = ddpm::NoiseSchedule<double>::linear(10);
  Tensor<double, 4> x0(2, 3, 4, 4), out3(2, 3, 4, 4), out6(2, 6, 4, 4), bad(2, 3, 4, 5), empty(0, 3, 4, 4);
  x0.setZero();
  out3.setZero();
  out6.setZero();
  bad.setZero();
  const std::vector<int> t{0, 5}, t_bad{0, 10}, t_short{1};
  CHECK_THROWS_AS(ddpm::vb_terms_bpd(sched, VarianceType::learned_range, out3, x0, x0, std::span<const int>(t)),
                  ddpm::invalid_argument);
  CHECK_THROWS_WITH(ddpm::vb_terms_bpd(sched, VarianceType::learned_range, out3, x0, x0, std::span<const int>(t)),
                    Catch::Contains("model_output has shape (2, 3, 4, 4)") && Catch::Contains("twice the channels"));
  CHECK_THROWS_WITH(ddpm::vb_terms_bpd(sched, VarianceType::fixed_small, out6, x0, x0, std::span<const int>(t)),
                    Catch::Contains("model_output"));
  CHECK_THROWS_WITH(ddpm::vb_terms_bpd(sched, VarianceType::fixed_small, out3, x0, bad, std::span<const int>(t)),
                    Catch::Contains("x_t"));
  CHECK_THROWS_WITH(ddpm::vb_terms_bpd(sched, VarianceType::fixed_small, out3, x0, x0, std::span<const int>(t_bad)),
                    Catch::Contains("t[1] is 10"));
  CHECK_THROWS_WITH(ddpm::vb_terms_bpd(sched, VarianceType::fixed_small, out3, x0, x0, std::span<const int>(t_short)),
                    Catch::Contains("t holds 1"));
  CHECK_THROWS_WITH(ddpm::vb_terms_bpd(sched, VarianceType::fixed_small, empty, empty, empty, std::span<const int>()),
                    Catch::Contains("x0"));
  CHECK_THROWS_WITH(ddpm::prior_bpd(sched, empty), Catch::Contains("x0"));
  Tensor<double, 4> g;
  CHECK_THROWS_WITH(ddpm::hybrid_loss_and_gradient(sched, out3, x0, x0, std::span<const int>(t), x0,
                                                   std::span<const double>(), g),
                    Catch::Contains("twice the channels"));
  CHECK_THROWS_WITH(ddpm::hybrid_loss_and_gradient(sched, out6, x0, x0, std::span<const int>(t), bad,
                                                   std::span<const double>(), g),
                    Catch::Contains("target"));
  const std::vector<double> w1{1.0};
  CHECK_THROWS_WITH(ddpm::hybrid_loss_and_gradient(sched, out6, x0, x0, std::span<const int>(t), x0,
                                                   std::span<const double>(w1), g),
                    Catch::Contains("weights holds 1"));
}
