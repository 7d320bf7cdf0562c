// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// DDPMSampler: single steps against tests/data/samplers/steps.json (every variance type and prediction kind,
// fixed noise; confirmed against diffusers' DDPMScheduler and improved-diffusion's p_sample), the closed form
// of docs/math.md Eq. (9), the calling forms, and bad input.              [docs/samplers.md, Eqs. (S7)-(S8)]

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/posterior.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "sampler_support.hpp"

using ddpm::Prediction;
using ddpm::Tensor;
using namespace sampler_test;

namespace {

template <class S>
struct StepInputs {
  std::array<Eigen::Index, 4> dims;
  Tensor<S, 4> x, noise;
  explicit StepInputs(const json& inp) {
    const auto shape = inp.at("shape").get<std::vector<Eigen::Index>>();
    dims = {shape[0], shape[1], shape[2], shape[3]};
    x = tensor<S, 4>(numbers(inp.at("x")), dims);
    noise = tensor<S, 4>(numbers(inp.at("noise")), dims);
  }
  Tensor<S, 4> output(const json& c, const json& inp) const {
    const std::string which = c.at("output");
    std::array<Eigen::Index, 4> d = dims;
    if (which == "output2c") d[1] *= 2;
    return tensor<S, 4>(numbers(inp.at(which)), d, c.value("output_scale", 1.0));
  }
};

}  // namespace

TEMPLATE_TEST_CASE("DDPMSampler steps match the reference fixtures", "[samplers][ddpm]", float, double) {
  using S = TestType;
  const json& f = fixture("steps.json");
  const auto schedule = make_schedule<S>(f.at("schedule"));
  const StepInputs<S> in(f.at("inputs"));
  int n = 0;
  for (const json& c : f.at("ddpm")) {
    ddpm::DDPMSampler<S> sampler(schedule, ddpm_options(c.at("options")));
    const int i = c.at("i");
    REQUIRE(sampler.timesteps()[static_cast<std::size_t>(i)] == c.at("t").get<int>());
    const Tensor<S, 4> out = in.output(c, f.at("inputs"));
    Tensor<S, 4> x = in.x;
    Tensor<S, 4> x0;
    sampler.step(i, out, x, in.noise, x0, kind_of(c.at("kind")));
    INFO("case " << n << ": " << c.at("options").dump() << ", i = " << i << ", kind " << c.at("kind").get<std::string>());
    const double scale = term_scale(kind_of(c.at("kind")), schedule.alphas_cumprod_double()[c.at("t").get<std::size_t>()],
                                    in.x, out);
    CHECK(worst_error(x, numbers(c.at("x_prev")), scale) <= step_tol<S>);
    CHECK(worst_error(x0, numbers(c.at("x0")), scale) <= step_tol<S>);
    ++n;
  }
  CHECK(n == 129);
}

TEMPLATE_TEST_CASE("DDPMSampler under zero terminal SNR takes velocity and sample predictions", "[samplers][ddpm]",
                   float, double) {
  using S = TestType;
  const json& f = fixture("steps.json");
  const auto schedule = make_schedule<S>(f.at("zero_snr_schedule"));
  REQUIRE(schedule.alphas_cumprod()[999] == S(0));
  const StepInputs<S> in(f.at("inputs"));
  for (const json& c : f.at("zero_snr")) {
    if (c.at("sampler") != "ddpm") continue;
    ddpm::DDPMSampler<S> sampler(schedule, ddpm_options(c.at("options")));
    Tensor<S, 4> x = in.x, x0;
    sampler.step(c.at("i"), in.output(c, f.at("inputs")), x, in.noise, x0, kind_of(c.at("kind")));
    CHECK(worst_error(x, numbers(c.at("x_prev"))) <= step_tol<S>);
    CHECK(worst_error(x0, numbers(c.at("x0"))) <= step_tol<S>);
  }
  // eps does not determine x0 where alpha_bar = 0: a clear error, not NaN.
  ddpm::DDPMSampler<S> sampler(
      schedule, {.grid = {.num_inference_steps = 10, .timestep_spacing = ddpm::TimestepSpacing::trailing}});
  Tensor<S, 4> x = in.x;
  CHECK_THROWS_WITH(sampler.step(0, in.x, x, in.noise), Catch::Contains("zero terminal SNR"));
}

TEST_CASE("DDPMSampler with every timestep and no clipping is Eq. (9) of docs/math.md", "[samplers][ddpm]") {
  const auto schedule = ddpm::NoiseSchedule<double>::cosine(100);
  ddpm::DDPMSampler<double> sampler(schedule);
  REQUIRE(sampler.num_inference_steps() == 100);
  Tensor<double, 2> x(3, 5), eps(3, 5), z(3, 5);
  ddpm::NoiseSource rng(7);
  rng(x);
  rng(eps);
  rng(z);
  for (int i : {0, 37, 98}) {
    const int t = sampler.timesteps()[static_cast<std::size_t>(i)];
    REQUIRE(t == 99 - i);
    const double beta = schedule.betas_double()[static_cast<std::size_t>(t)];
    const double ab = schedule.alphas_cumprod_double()[static_cast<std::size_t>(t)];
    const double sigma = std::sqrt(schedule.posterior_variance()[t]);
    Tensor<double, 2> next = sampler.prev_sample(i, eps, x, z);
    for (int k = 0; k < 15; ++k) {
      const double mu = (x.data()[k] - beta / std::sqrt(1 - ab) * eps.data()[k]) / std::sqrt(1 - beta);
      CHECK(next.data()[k] == Approx(mu + sigma * z.data()[k]).epsilon(1e-12).margin(1e-12));
    }
  }
  // The last step (t = 0) adds no noise and lands on the predicted x0.
  const Tensor<double, 2> last = sampler.prev_sample(99, eps, x, ddpm::no_noise);
  const Tensor<double, 2> x0 = ddpm::predict_x0_from_eps(schedule, x, 0, eps);
  for (int k = 0; k < 15; ++k) CHECK(last.data()[k] == Approx(x0.data()[k]).epsilon(1e-12));
}

TEST_CASE("DDPMSampler: calling forms agree and noise is drawn only when used", "[samplers][ddpm]") {
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  ddpm::DDPMSampler<float> sampler(schedule, {.grid = {.num_inference_steps = 10}});
  Tensor<float, 3> x(2, 3, 4), out(2, 3, 4), z(2, 3, 4);
  ddpm::NoiseSource rng(11);
  rng(x);
  rng(out);
  ReplayNoise<float> source(std::vector<double>(z.size() * 3, 0.25), z.size());
  z.setConstant(0.25f);

  Tensor<float, 3> a = x, a0;
  sampler.step(3, out, a, z, a0);
  const Tensor<float, 3> b = sampler.prev_sample(3, out, x, z);
  Tensor<float, 3> c = x;
  sampler.step(3, out, c, source);  // the source fills the same values
  CHECK(source.calls == 1);
  std::vector<float> buffer(x.data(), x.data() + x.size());
  ddpm::TensorMap<float, 3> d(buffer.data(), 2, 3, 4);
  std::vector<float> x0buf(24, -9.0f);
  ddpm::TensorMap<float, 3> d0(x0buf.data(), 2, 3, 4);
  sampler.step(3, ddpm::ConstTensorMap<float, 3>(out.data(), 2, 3, 4), d, z, d0);
  for (int k = 0; k < 24; ++k) {
    CHECK(b.data()[k] == a.data()[k]);
    CHECK(c.data()[k] == a.data()[k]);
    CHECK(buffer[static_cast<std::size_t>(k)] == a.data()[k]);
    CHECK(x0buf[static_cast<std::size_t>(k)] == a0.data()[k]);
  }
  // The last step never draws.
  Tensor<float, 3> e = x;
  sampler.step(9, out, e, source);
  CHECK(source.calls == 1);
  CHECK_NOTHROW(sampler.step(9, out, e, ddpm::no_noise));
  CHECK_THROWS_WITH(sampler.step(8, out, e, ddpm::no_noise), Catch::Contains("no_noise"));
}

TEST_CASE("DDPMSampler rejects bad input", "[samplers][ddpm]") {
  using ddpm::invalid_argument;
  const auto schedule = ddpm::NoiseSchedule<double>::linear(100);
  CHECK_THROWS_AS(ddpm::DDPMSampler<double>(schedule, {.grid = {.num_inference_steps = 101}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDPMSampler<double>(schedule, {.grid = {.num_inference_steps = -1}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDPMSampler<double>(schedule, {.grid = {.timesteps = {50, 60}}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDPMSampler<double>(schedule, {.grid = {.timesteps = {100}}}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDPMSampler<double>(schedule, {.clipping = ddpm::Clipping::clip(0.0)}), invalid_argument);
  CHECK_THROWS_AS(ddpm::DDPMSampler<double>(schedule, {.clipping = ddpm::Clipping::dynamic_threshold(1.5)}),
                  invalid_argument);
  CHECK_THROWS_AS(ddpm::DDPMSampler<double>(schedule, {.clipping = ddpm::Clipping::dynamic_threshold(0.9, 0.5)}),
                  invalid_argument);
  CHECK_THROWS_AS(ddpm::DDPMSampler<double>(schedule, {.variance_type = static_cast<ddpm::VarianceType>(9)}),
                  invalid_argument);

  ddpm::DDPMSampler<double> sampler(schedule, {.grid = {.num_inference_steps = 10}});
  Tensor<double, 4> x(2, 3, 4, 4), out(2, 3, 4, 4), z(2, 3, 4, 4);
  x.setConstant(0.1);
  out.setConstant(0.2);
  z.setConstant(0.3);
  CHECK_THROWS_WITH(sampler.step(10, out, x, z), Catch::Contains("step index i is 10, but must be in [0, 10)"));
  CHECK_THROWS_AS(sampler.step(-1, out, x, z), invalid_argument);
  CHECK_THROWS_AS(sampler.coefficients(10), invalid_argument);
  Tensor<double, 4> wrong(2, 3, 4, 5);
  wrong.setZero();
  CHECK_THROWS_WITH(sampler.step(0, wrong, x, z), Catch::Contains("model_output has shape (2, 3, 4, 5)"));
  CHECK_THROWS_WITH(sampler.step(0, out, x, wrong), Catch::Contains("noise has shape (2, 3, 4, 5)"));
  Tensor<double, 4> three_c(2, 9, 4, 4);
  three_c.setZero();
  CHECK_THROWS_AS(sampler.step(0, three_c, x, z), invalid_argument);
  std::vector<double> small(10);
  ddpm::TensorMap<double, 4> x0map(small.data(), 1, 1, 2, 5);
  CHECK_THROWS_AS(sampler.step(0, out, x, z, x0map), invalid_argument);
  CHECK_THROWS_AS(sampler.step(0, out, x, z, static_cast<Prediction>(7)), invalid_argument);
  Tensor<double, 4> empty(0, 3, 4, 4), empty_out(0, 3, 4, 4);
  CHECK_THROWS_AS(sampler.step(0, empty_out, empty, ddpm::no_noise), invalid_argument);

  ddpm::DDPMSampler<double> learned(
      schedule, {.grid = {.num_inference_steps = 10}, .variance_type = ddpm::VarianceType::learned_range});
  CHECK_THROWS_WITH(learned.step(0, out, x, z), Catch::Contains("learned_range"));
  Tensor<double, 4> out2(2, 6, 4, 4);
  out2.setZero();
  CHECK_NOTHROW(learned.step(0, out2, x, z));
}
