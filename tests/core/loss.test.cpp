// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Tests of ddpm/loss.hpp: training targets (docs/math.md Eq. (20)), the simple loss and its gradient
// (Eq. (21)), Min-SNR-gamma and P2 weights (Eq. (22)) and make_training_batch. References: the float64 torch
// autograd fixtures of tests/reference/make_training_fixtures.py, central finite differences, and the
// definitions (q_sample with the noise given, the samplers' draws replayed).
// Tolerances: double 1e-12, float 1e-6 relative to max(|expected|, scale), scale as stated at each use.

#include <catch2/catch.hpp>

#include <cmath>
#include <span>
#include <vector>

#include "ddpm/loss.hpp"
#include "training_fixtures.hpp"

namespace {

using namespace ddpm_test;
using ddpm::Prediction;
using ddpm::Tensor;

Prediction kind_of(const std::string& s) {
  if (s == "epsilon") return Prediction::epsilon;
  if (s == "sample") return Prediction::sample;
  return Prediction::velocity;
}

template <class S>
std::vector<S> as(const std::vector<double>& v) {
  return std::vector<S>(v.begin(), v.end());
}

}  // namespace

TEMPLATE_TEST_CASE("simple loss and gradient match torch autograd (Eq. (21))", "[loss]", float, double) {
  using S = TestType;
  const double tol = rel_tol<S>;
  const auto dims = training_dims();
  for (const json& c : training_fixture().at("simple")) {
    const std::string label = c.at("schedule").get<std::string>() + " " + c.at("kind").get<std::string>() + " " +
                              c.at("weighting").get<std::string>();
    INFO(label);
    const std::vector<double> out_v = numbers(c.at("output")), tgt_v = numbers(c.at("target"));
    const Tensor<S, 4> output = tensor_from<S, 4>(out_v, dims);
    const Tensor<S, 4> target = tensor_from<S, 4>(tgt_v, dims);
    const std::vector<S> w = as<S>(numbers(c.at("weights")));
    const std::vector<double> wd = numbers(c.at("weights"));
    Tensor<S, 4> grad;
    const auto r = ddpm::simple_loss_and_gradient(output, target, std::span<const S>(w), grad);
    // The loss and per-sample terms are sums of non-negative terms: scale = the value itself.
    CHECK(close(r.loss, number(c.at("loss")), tol, 0.0));
    auto cmp = compare(array_to_doubles(r.per_sample), numbers(c.at("per_sample")), tol);
    CHECK(cmp.ok);
    INFO(cmp.message);
    // grad = 2 w (o - t) / (N D): its rounding is relative to 2 w (|o| + |t|) / (N D) (o - t may cancel).
    const double n = static_cast<double>(dims[0]), d = static_cast<double>(output.size()) / n;
    const auto per = static_cast<std::size_t>(d);
    cmp = compare(to_doubles(grad), numbers(c.at("grad")), tol, [&](std::size_t i) {
      return 2.0 * wd[i / per] * (std::abs(out_v[i]) + std::abs(tgt_v[i])) / (n * d);
    });
    CHECK(cmp.ok);
    INFO(cmp.message);
    // The loss alone gives the same values; the gradient may be written over the output (a map, in place).
    const auto r2 = ddpm::simple_loss(output, target, std::span<const S>(w));
    CHECK(r2.loss == r.loss);
    Tensor<S, 4> inplace = output;
    ddpm::TensorMap<S, 4> m(inplace.data(), dims);
    const auto r3 = ddpm::simple_loss_and_gradient(m, target, std::span<const S>(w), m);
    CHECK(r3.loss == r.loss);
    CHECK(to_doubles(inplace) == to_doubles(grad));
  }
}

TEMPLATE_TEST_CASE("training targets match the fixtures (Eq. (20))", "[loss]", float, double) {
  using S = TestType;
  const auto dims = training_dims();
  for (const json& c : training_fixture().at("simple")) {
    if (c.at("weighting") != "none") continue;
    const json& in = training_inputs(c.at("schedule"));
    const auto sched = training_schedule<S>(c.at("schedule"));
    const std::vector<int> t = fixture_timesteps(in);
    const std::vector<double> x0 = numbers(in.at("x0")), eps = numbers(in.at("eps"));
    const Tensor<S, 4> target = ddpm::training_target(sched, tensor_from<S, 4>(x0, dims), std::span<const int>(t),
                                                      tensor_from<S, 4>(eps, dims), kind_of(c.at("kind")));
    // v = a eps - b x0: scale |a||eps| + |b||x0| <= |eps| + |x0|.
    const auto cmp = compare(to_doubles(target), numbers(c.at("target")), rel_tol<S>,
                             [&](std::size_t i) { return std::abs(x0[i]) + std::abs(eps[i]); });
    INFO(c.at("kind").get<std::string>() << ": " << cmp.message);
    CHECK(cmp.ok);
  }
}

TEMPLATE_TEST_CASE("Min-SNR-gamma and P2 weights match the reference formulas (Eq. (22))", "[loss]", float, double) {
  using S = TestType;
  for (const json& c : training_fixture().at("simple")) {
    const std::string wname = c.at("weighting");
    if (wname == "none") continue;
    const auto sched = training_schedule<S>(c.at("schedule"));
    const std::vector<int> t = fixture_timesteps(training_inputs(c.at("schedule")));
    Eigen::Array<S, Eigen::Dynamic, 1> w;
    if (wname == "min_snr_5") w = ddpm::min_snr_weights(sched, std::span<const int>(t), 5.0, kind_of(c.at("kind")));
    if (wname == "p2_1_1") w = ddpm::p2_weights(sched, std::span<const int>(t), 1.0, 1.0);
    if (wname == "p2_1_0.5") w = ddpm::p2_weights(sched, std::span<const int>(t), 1.0, 0.5);
    const auto cmp = compare(array_to_doubles(w), numbers(c.at("weights")), rel_tol<S>);
    INFO(wname << " " << c.at("kind").get<std::string>() << ": " << cmp.message);
    CHECK(cmp.ok);
  }
}

TEST_CASE("Min-SNR at a zero-terminal-SNR step: eps weight 1, x0 and v weights 0", "[loss]") {
  const auto sched = ddpm::NoiseSchedule<double>::linear(50).rescaled_zero_terminal_snr();
  const std::vector<int> t{49, 0};
  REQUIRE(sched.alphas_cumprod()[49] == 0.0);
  const auto we = ddpm::min_snr_weights(sched, std::span<const int>(t), 5.0, Prediction::epsilon);
  const auto wx = ddpm::min_snr_weights(sched, std::span<const int>(t), 5.0, Prediction::sample);
  const auto wv = ddpm::min_snr_weights(sched, std::span<const int>(t), 5.0, Prediction::velocity);
  CHECK(we[0] == 1.0);
  CHECK(wx[0] == 0.0);
  CHECK(wv[0] == 0.0);
  // At t = 0 the SNR is far above gamma: eps weight gamma / SNR, x0 weight gamma, v weight gamma / (SNR + 1).
  const double snr = sched.alphas_cumprod_double()[0] / (1.0 - sched.alphas_cumprod_double()[0]);
  CHECK(we[1] == Approx(5.0 / snr).epsilon(1e-14));
  CHECK(wx[1] == 5.0);
  CHECK(wv[1] == Approx(5.0 / (snr + 1.0)).epsilon(1e-14));
}

TEST_CASE("simple loss gradient against central finite differences", "[loss]") {
  // gradcheck's eps 1e-6, atol 1e-5, rtol 1e-3, in double.
  const Eigen::Index N = 3, C = 2, H = 3, W = 3;
  Tensor<double, 4> out(N, C, H, W), tgt(N, C, H, W);
  ddpm::fill_normal(out, 1);
  ddpm::fill_normal(tgt, 2);
  const std::vector<double> w{0.5, 2.0, 1.25};
  Tensor<double, 4> grad;
  ddpm::simple_loss_and_gradient(out, tgt, std::span<const double>(w), grad);
  for (Eigen::Index i = 0; i < out.size(); ++i) {
    Tensor<double, 4> p = out, m = out;
    p.data()[i] += 1e-6;
    m.data()[i] -= 1e-6;
    const double fd = (ddpm::simple_loss(p, tgt, std::span<const double>(w)).loss -
                       ddpm::simple_loss(m, tgt, std::span<const double>(w)).loss) / 2e-6;
    CHECK(std::abs(fd - grad.data()[i]) <= 1e-5 + 1e-3 * std::abs(grad.data()[i]));
  }
}

TEMPLATE_TEST_CASE("make_training_batch: t from the sampler, then eps, x_t = q_sample, target", "[loss]", float, double) {
  using S = TestType;
  const auto sched = ddpm::NoiseSchedule<S>::cosine(100);
  Tensor<S, 4> x0(5, 3, 8, 8);
  ddpm::fill_normal(x0, 9);
  ddpm::UniformTimestepSampler sampler(100);
  for (Prediction kind : {Prediction::epsilon, Prediction::sample, Prediction::velocity}) {
    ddpm::NoiseSource noise(77, 13);
    ddpm::TrainingBatch<S> batch;
    ddpm::make_training_batch(sched, x0, sampler, noise, kind, batch);
    CHECK(noise.offset() == 13u + 5u + static_cast<std::uint64_t>(x0.size()));
    // Replay: the timesteps are the sampler's first draw, eps the normals right after it.
    ddpm::NoiseSource replay(77, 13);
    const ddpm::TimestepDraw d = sampler.sample(replay, 5);
    CHECK(batch.t == d.t);
    Tensor<S, 4> eps(x0.dimensions());
    replay(eps);
    CHECK(to_doubles(batch.eps) == to_doubles(eps));
    CHECK(to_doubles(batch.x_t) == to_doubles(ddpm::q_sample(sched, x0, std::span<const int>(d.t), eps)));
    CHECK(to_doubles(batch.target) == to_doubles(ddpm::training_target(sched, x0, std::span<const int>(d.t), eps, kind)));
    CHECK((batch.weights == S(1)).all());
    // A second call reuses every buffer (no allocation in the steady state) and continues the stream.
    const S* p_eps = batch.eps.data();
    const S* p_xt = batch.x_t.data();
    const S* p_tg = batch.target.data();
    const int* p_t = batch.t.data();
    ddpm::make_training_batch(sched, x0, sampler, noise, kind, batch);
    CHECK(batch.eps.data() == p_eps);
    CHECK(batch.x_t.data() == p_xt);
    CHECK(batch.target.data() == p_tg);
    CHECK(batch.t.data() == p_t);
    CHECK(noise.offset() == 13u + 2u * (5u + static_cast<std::uint64_t>(x0.size())));
  }
}

TEST_CASE("loss functions reject bad arguments", "[loss]") {
  using E = ddpm::invalid_argument;
  const auto sched = ddpm::NoiseSchedule<double>::linear(10);
  Tensor<double, 4> a(2, 3, 4, 4), b(2, 3, 4, 5), g, empty(0, 3, 4, 4);
  a.setZero();
  b.setZero();
  const std::vector<double> w3{1, 2, 3};
  CHECK_THROWS_AS(ddpm::simple_loss(a, b), E);
  CHECK_THROWS_WITH(ddpm::simple_loss(a, b), Catch::Contains("target"));
  CHECK_THROWS_WITH(ddpm::simple_loss(a, a, std::span<const double>(w3)), Catch::Contains("weights"));
  CHECK_THROWS_WITH(ddpm::simple_loss(empty, empty), Catch::Contains("output"));
  Tensor<double, 4> wrong(1, 1, 1, 1);
  ddpm::TensorMap<double, 4> wrong_map(wrong.data(), 1, 1, 1, 1);
  CHECK_THROWS_WITH(ddpm::simple_loss_and_gradient(a, a, std::span<const double>(), wrong_map), Catch::Contains("out"));
  const std::vector<int> t_bad{0, 10}, t_short{0};
  CHECK_THROWS_WITH(ddpm::training_target(sched, a, std::span<const int>(t_bad), a, Prediction::epsilon),
                    Catch::Contains("t[1] is 10"));
  CHECK_THROWS_WITH(ddpm::training_target(sched, a, std::span<const int>(t_short), a, Prediction::epsilon),
                    Catch::Contains("t holds 1"));
  const std::vector<int> t_ok{0, 9};
  CHECK_THROWS_WITH(ddpm::min_snr_weights(sched, std::span<const int>(t_ok), 0.0), Catch::Contains("gamma is 0"));
  CHECK_THROWS_WITH(ddpm::min_snr_weights(sched, std::span<const int>(t_ok), -1.0), Catch::Contains("gamma"));
  CHECK_THROWS_WITH(ddpm::min_snr_weights(sched, std::span<const int>(t_bad), 5.0), Catch::Contains("t[1]"));
  CHECK_THROWS_WITH(ddpm::p2_weights(sched, std::span<const int>(t_ok), 0.0, 1.0), Catch::Contains("k is 0"));
  CHECK_THROWS_WITH(ddpm::p2_weights(sched, std::span<const int>(t_ok), 1.0, -0.5), Catch::Contains("gamma"));
  ddpm::UniformTimestepSampler other(20);
  ddpm::NoiseSource noise(1);
  CHECK_THROWS_WITH(ddpm::make_training_batch(sched, a, other, noise), Catch::Contains("num_steps"));
  ddpm::UniformTimestepSampler ten(10);
  CHECK_THROWS_WITH(ddpm::make_training_batch(sched, empty, ten, noise), Catch::Contains("x0"));
}

TEMPLATE_TEST_CASE("simple loss on long samples (packet path, chunk flushes, tail) against long double", "[loss]",
                   float, double) {
  // The fixtures' samples (48 elements) take only the scalar tail; here 3 x 5 x 37 x 41 = 7585 elements per
  // sample run through several 2048-element flushes and a 33-element tail. Reference: the definition in long
  // double on the same inputs. Loss: a sum of non-negative terms, relative 1e-12 / 1e-6 of itself; gradient:
  // scale 2 w (|o| + |t|) / (N D) per element.
  using S = TestType;
  Tensor<S, 4> out(3, 5, 37, 41), tgt(3, 5, 37, 41);
  ddpm::fill_normal(out, 10);
  ddpm::fill_normal(tgt, 11);
  const std::vector<S> w{S(0.25), S(1), S(3)};
  Eigen::Array<S, Eigen::Dynamic, 1> per;
  Tensor<S, 4> grad;
  const S loss = ddpm::simple_loss_and_gradient(out, tgt, std::span<const S>(w), grad, per);
  const Eigen::Index N = 3, D = out.size() / N;
  long double total = 0;
  for (Eigen::Index b = 0; b < N; ++b) {
    long double sum = 0;
    for (Eigen::Index i = 0; i < D; ++i) {
      const long double d = static_cast<long double>(out.data()[b * D + i]) - tgt.data()[b * D + i];
      sum += d * d;
      const long double g = 2.0L * w[b] * d / (N * D);
      const long double scale = 2.0L * w[b] * (std::abs(out.data()[b * D + i]) + std::abs(tgt.data()[b * D + i])) / (N * D);
      REQUIRE(close(grad.data()[b * D + i], static_cast<double>(g), rel_tol<S>, static_cast<double>(scale)));
    }
    CHECK(close(per[b], static_cast<double>(sum / D), rel_tol<S>, 0.0));
    total += w[b] * (sum / D);
  }
  CHECK(close(loss, static_cast<double>(total / N), rel_tol<S>, 0.0));
}
