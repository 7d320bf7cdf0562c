// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// End to end with ddpm/torch_random.hpp: the tiny UNet of tests/data/unet/tiny sampled by DDPMSampler and
// DDIMSampler with TorchGenerator / TorchGenerators noise, against the same weights run by the PyTorch reference
// model in a diffusers-style DDPM / DDIM loop with the same seeds (tests/data/core/torch_generator_e2e.safetensors,
// written by tests/reference/make_torch_generator_fixtures.py with Debian's python3-torch 1.13.1).
//
// The noise is PyTorch's bit for bit (tests/core/torch_random.test.cpp), so what separates the two final images is
// the rounding of the network and of the sampler arithmetic. Its size comes from the fixture itself: D is the
// largest |float32 run - float64 run fed the same float32 noise| of PyTorch's loop, i.e. how far float32 rounding
// moves this pipeline's result (about 5e-7 of the largest value here, a few float ulps amplified by the steps).
// ddpm rounds differently but at the same precision, so each of the two float32 results lies within about D of the
// exact one and they lie within 2D of each other; the test allows 4D. For float64 the same amplification applies
// to float64 rounding: 4 D 2^-29 (2^-29 = eps64 / eps32). (The schedules, computed in float64 by ddpm and by the
// script with different formulas, differ by float64 rounding too, so they fall under the same budget.)

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/sample.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/torch_random.hpp"

namespace {

using ddpm::Tensor;

template <class A, class B>
double max_abs_difference(const A& a, const B& b) {
  double worst = 0;
  for (Eigen::Index i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
  }
  return worst;
}

template <class A>
double max_abs(const A& a) {
  double m = 0;
  for (Eigen::Index i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a.data()[i])));
  return m;
}

/// The hex bit patterns of float64 values (as the fixture script writes them).
std::vector<double> doubles_of(const std::string& hex) {
  std::vector<double> out(hex.size() / 16);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = std::bit_cast<double>(static_cast<std::uint64_t>(std::stoull(hex.substr(16 * i, 16), nullptr, 16)));
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("TorchGenerator end to end: ddpm's DDPM and DDIM samplers reproduce a diffusers-style PyTorch run",
                   "[torch_random][nn]", float, double) {
  using S = TestType;
  const std::string data = DDPM_TEST_DATA_DIR;
  const auto fixture = ddpm::io::Safetensors::load(data + "/core/torch_generator_e2e.safetensors");
  const auto unet = ddpm::nn::UNet2D<S>::from_pretrained(data + "/unet/tiny");
  const auto schedule = ddpm::NoiseSchedule<S>::linear(1000, 1e-4, 0.02);
  const std::array<Eigen::Index, 4> shape{2, 3, 16, 16};
  const std::string dname = std::is_same_v<S, float> ? "f32" : "f64";

  for (const std::string kind : {"ddpm", "ddim"}) {
    for (const std::string mode : {"one", "list"}) {
      const std::string name = kind + "_" + mode;
      INFO(name << " " << dname);
      auto run = [&](auto& noise) {
        Tensor<S, 4> x_T = ddpm::randn_tensor<S, 4>(shape, noise);  // the pipeline's first draw
        Tensor<S, 4> x0;
        if (kind == "ddpm") {
          ddpm::DDPMSampler<S> sampler(schedule, {.grid = {.num_inference_steps = 10}});
          x0 = ddpm::sample(sampler, unet, std::move(x_T), noise);
        } else {
          ddpm::DDIMSampler<S> sampler(schedule, {.grid = {.num_inference_steps = 10}, .eta = 0.5});
          x0 = ddpm::sample(sampler, unet, std::move(x_T), noise);
          // diffusers' DDIMScheduler draws at the last step too (and multiplies that noise by 0); ddpm's
          // DDIMSampler does not. Drawing it here leaves the generator where the PyTorch loop left it.
          Tensor<S, 4> skipped(shape);
          noise(skipped);
        }
        return x0;
      };
      Tensor<S, 4> x0;
      std::vector<double> after(4);
      if (mode == "one") {
        ddpm::TorchGenerator g(0);
        x0 = run(g);
        g.randn(std::span<double>(after));
      } else {
        ddpm::TorchGenerators gens = ddpm::TorchGenerators::from_seeds({5, 7});
        x0 = run(gens);
        gens[0].randn(std::span<double>(after));
      }
      // The loop drew as many numbers as PyTorch's: the generator continues with the same values.
      CHECK(after == doubles_of(fixture.metadata().at("after_" + name + "_" + dname)));

      const Tensor<double, 4> expected = fixture.to_tensor<double, 4>(name + "_" + dname);
      const double rounding = max_abs_difference(fixture.to_tensor<double, 4>(name + "_f32"),
                                                 fixture.to_tensor<double, 4>(name + "_f64_f32noise"));
      const double tol = std::is_same_v<S, float> ? 4 * rounding : 4 * rounding * 0x1p-29;
      const double error = max_abs_difference(x0, expected);
      CHECK(error <= tol);
      WARN(name << " " << dname << ": max |ddpm - PyTorch| " << error << " (tolerance " << tol << ", max |x0| "
                << max_abs(expected) << ", float32 rounding of the PyTorch loop " << rounding << ")");
    }
  }
}
