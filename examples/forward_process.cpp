// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// forward_process: what the forward (noising) process q(x_t | x_0) does to a picture, under the linear
// (DDPM) and the cosine (improved DDPM) schedules with T = 1000.
//
//   x_t = sqrt(alpha_bar[t]) * x0 + sqrt(1 - alpha_bar[t]) * eps              [docs/math.md, Eq. (4)]
//
// Writes one PNG strip, a row per schedule and a column per timestep, every panel noised with the SAME
// eps so that the panels differ only by the schedule's coefficients; and prints alpha_bar[t], the
// signal-to-noise ratio SNR = alpha_bar / (1 - alpha_bar) and log SNR for both schedules [Eq. (12)].
//
//   forward_process [--out strip.png] [--seed N] [--size N] [picture.png]

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/draw.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/random.hpp"

namespace {

constexpr int kSteps = 1000;
constexpr int kTimesteps[] = {0, 50, 100, 200, 400, 600, 800, 999};
constexpr int kColumns = static_cast<int>(std::size(kTimesteps));

// ---------------------------------------------------------------------------------------------------------
// The built-in picture: a sunset over the sea, with mountains, a beach and a checkered towel. Drawn from
// formulas at any size, with 4 x 4 supersampling so edges stay smooth.

struct Colour {
  double r, g, b;
};

Colour mix(Colour a, Colour b, double s) {
  return {a.r + (b.r - a.r) * s, a.g + (b.g - a.g) * s, a.b + (b.b - a.b) * s};
}

double smoothstep(double e0, double e1, double x) {
  const double s = std::clamp((x - e0) / (e1 - e0), 0.0, 1.0);
  return s * s * (3 - 2 * s);
}

// The scene at (u, v) in [0, 1]^2, u to the right and v downwards.
Colour scene(double u, double v) {
  constexpr double horizon = 0.60, shore = 0.84;
  constexpr double sun_u = 0.66, sun_v = 0.44, sun_r = 0.17;
  if (v < horizon) {
    Colour c = mix({0.08, 0.13, 0.45}, {0.98, 0.55, 0.25}, smoothstep(0.0, horizon, v));  // sky
    const double d = std::hypot(u - sun_u, v - sun_v);
    c = mix(c, {1.0, 0.78, 0.35}, 0.45 * (1 - smoothstep(sun_r, 2.2 * sun_r, d)));   // glow
    c = mix(c, {1.0, 0.93, 0.30}, 1 - smoothstep(sun_r - 0.004, sun_r + 0.004, d));  // sun
    // Two purple mountains on the left, in front of the sky.
    const double ridge = std::min(0.36 + 1.1 * std::abs(u - 0.14), 0.43 + 0.9 * std::abs(u - 0.36));
    if (v > ridge) c = mix({0.36, 0.18, 0.42}, {0.22, 0.10, 0.30}, smoothstep(ridge, horizon, v));
    return c;
  }
  if (v < shore) {
    // The sea: stripes that widen towards the viewer, and the sun's broken reflection.
    const double depth = (v - horizon) / (shore - horizon);
    const int stripe = static_cast<int>(std::floor(std::log(v - horizon + 0.01) * 9.0));
    Colour c = mix({0.10, 0.30, 0.58}, {0.03, 0.14, 0.36}, depth);
    if (stripe % 2 == 0) c = mix(c, {0.20, 0.48, 0.72}, 0.5);
    const double half_width = 0.05 + 0.05 * depth + 0.015 * std::sin(stripe * 2.1);
    if (std::abs(u - sun_u) < half_width && stripe % 2 == 0) c = mix(c, {1.0, 0.72, 0.30}, 0.85);
    return c;
  }
  // The beach and a red-and-white checkered towel.
  Colour c = mix({0.96, 0.84, 0.58}, {0.86, 0.70, 0.45}, smoothstep(shore, 1.0, v));
  if (u > 0.08 && u < 0.42 && v > 0.88 && v < 0.97) {
    const int cu = static_cast<int>(std::floor((u - 0.08) / 0.034)),
              cv = static_cast<int>(std::floor((v - 0.88) / 0.03));
    c = (cu + cv) % 2 == 0 ? Colour{0.85, 0.10, 0.12} : Colour{0.98, 0.98, 0.96};
  }
  return c;
}

ddpm::Image draw_test_picture(int size) {
  constexpr int ss = 4;
  ddpm::Image image(size, size, 3);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      Colour sum{0, 0, 0};
      for (int sy = 0; sy < ss; ++sy) {
        for (int sx = 0; sx < ss; ++sx) {
          const Colour c = scene((x + (sx + 0.5) / ss) / size, (y + (sy + 0.5) / ss) / size);
          sum = {sum.r + c.r, sum.g + c.g, sum.b + c.b};
        }
      }
      const double channels[3] = {sum.r, sum.g, sum.b};
      for (int c = 0; c < 3; ++c) {
        image.at(y, x, c) = static_cast<std::uint8_t>(std::lround(std::clamp(channels[c] / (ss * ss), 0.0, 1.0) * 255));
      }
    }
  }
  return image;
}

// ---------------------------------------------------------------------------------------------------------
// A picture from a file: scaled so that its shorter side is `size`, then cropped to the centre square, as
// improved-diffusion's loader prepares training images. Each output pixel averages k x k bilinear samples
// of its footprint (k grows with the reduction), which is enough for a demo.

ddpm::Image fit_square(const ddpm::Image& src, int size) {
  const double scale = static_cast<double>(std::min(src.width, src.height)) / size;  // source pixels per output pixel
  const double x_off = (src.width - scale * size) / 2, y_off = (src.height - scale * size) / 2;
  const int k = std::clamp(static_cast<int>(std::ceil(scale)), 1, 16);
  auto texel = [&](int x, int y, int c) {
    return static_cast<double>(src.at(std::clamp(y, 0, src.height - 1), std::clamp(x, 0, src.width - 1), c));
  };
  ddpm::Image out(size, size, src.channels);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      for (int c = 0; c < src.channels; ++c) {
        double sum = 0;
        for (int sy = 0; sy < k; ++sy) {
          for (int sx = 0; sx < k; ++sx) {
            // Sample position in source pixel coordinates (pixel centres at integer + 0.5).
            const double fx = x_off + (x + (sx + 0.5) / k) * scale - 0.5,
                         fy = y_off + (y + (sy + 0.5) / k) * scale - 0.5;
            const int ix = static_cast<int>(std::floor(fx)), iy = static_cast<int>(std::floor(fy));
            const double ax = fx - ix, ay = fy - iy;
            sum += (1 - ay) * ((1 - ax) * texel(ix, iy, c) + ax * texel(ix + 1, iy, c)) +
                   ay * ((1 - ax) * texel(ix, iy + 1, c) + ax * texel(ix + 1, iy + 1, c));
          }
        }
        out.at(y, x, c) = static_cast<std::uint8_t>(std::lround(std::clamp(sum / (k * k), 0.0, 255.0)));
      }
    }
  }
  return out;
}

// `count` copies of the one sample in `x` (shape (1, C, H, W)), as a (count, C, H, W) batch.
ddpm::Tensor<float, 4> repeat(const ddpm::Tensor<float, 4>& x, int count) {
  ddpm::Tensor<float, 4> out(count, x.dimension(1), x.dimension(2), x.dimension(3));
  for (int b = 0; b < count; ++b) std::copy(x.data(), x.data() + x.size(), out.data() + b * x.size());
  return out;
}

// ---------------------------------------------------------------------------------------------------------

void print_table(const ddpm::NoiseSchedule<double>& linear, const ddpm::NoiseSchedule<double>& cosine) {
  std::printf("Forward process q(x_t | x_0), T = %d (t is 0-based: t = 0 is one step of noise)\n", kSteps);
  std::printf("alpha_bar[t] = (1 - beta[0]) * ... * (1 - beta[t]),  SNR = alpha_bar / (1 - alpha_bar),  log = ln\n\n");
  std::printf("  %4s | %-32s | %-32s\n", "", "            linear", "            cosine");
  std::printf("  %4s | %11s %11s %8s | %11s %11s %8s\n", "t", "alpha_bar", "SNR", "log SNR", "alpha_bar", "SNR",
              "log SNR");
  std::printf("  -----+----------------------------------+---------------------------------\n");
  for (int t : kTimesteps) {
    std::printf("  %4d | %11.5g %11.5g %8.3f | %11.5g %11.5g %8.3f\n", t, linear.alphas_cumprod()[t], linear.snr()[t],
                std::log(linear.snr()[t]), cosine.alphas_cumprod()[t], cosine.snr()[t], std::log(cosine.snr()[t]));
  }
}

// The panels (a make_grid of both rows) framed by a title, the timestep of each column and the schedule of
// each row.
ddpm::Image label_strip(const ddpm::Image& grid, int panel, int padding) {
  const int scale = panel >= 96 ? 2 : 1;
  const int margin = 4 * scale;
  const int line = examples::text_height(scale);
  const int left = std::max(examples::text_width("linear", scale), examples::text_width("cosine", scale)) + 2 * margin;
  const int top = 2 * (line + margin) + margin;
  const examples::Rgb ink{30, 30, 30};
  ddpm::Image strip(grid.width + left, grid.height + top, 3, 255);
  examples::blit(strip, grid, left, top);
  const std::string title = "q(x_t | x_0), T = 1000: the same x_0 and eps in every panel";
  const bool fits = examples::text_width(title, scale) + 2 * margin <= strip.width;
  examples::draw_text(strip, margin, margin, fits ? title : "q(x_t | x_0)", scale, ink);
  for (int i = 0; i < kColumns; ++i) {
    std::string label = "t = " + std::to_string(kTimesteps[i]);
    if (examples::text_width(label, scale) > panel + padding) label = std::to_string(kTimesteps[i]);
    const int centre = left + padding + i * (panel + padding) + panel / 2;
    examples::draw_text(strip, centre - examples::text_width(label, scale) / 2, top - line - margin / 2, label, scale,
                        ink);
  }
  const char* rows[] = {"linear", "cosine"};
  for (int r = 0; r < 2; ++r) {
    const int centre = top + padding + r * (panel + padding) + panel / 2;
    examples::draw_text(strip, margin, centre - line / 2, rows[r], scale, ink);
  }
  return strip;
}

}  // namespace

int main(int argc, char** argv) {
  return examples::main_guard("forward_process", [&] {
    examples::CommandLine cli(
        "forward_process",
        "Noises a picture with the forward process q(x_t | x_0) of the linear and the cosine schedule\n"
        "(T = 1000), writes the two rows of x_t at t = 0, 50, 100, 200, 400, 600, 800, 999 as one PNG strip,\n"
        "and prints alpha_bar, SNR and log SNR at those t for both schedules.");
    cli.option("out", "PATH", "where to write the PNG strip", "forward_process.png");
    cli.option("seed", "N", "seed of the noise eps", "0");
    cli.option("size", "N", "panel side in pixels (32 to 1024); a PNG is scaled and centre-cropped to it", "128");
    cli.positional("picture.png", "the picture to noise (default: a built-in sunset scene)");
    if (!cli.parse(argc, argv)) return 0;
    const std::string out_path = cli.get("out");
    const std::uint64_t seed = cli.get_u64("seed");
    const int size = static_cast<int>(cli.get_integer("size", 32, 1024));

    // x0: the picture as a (1, 3, size, size) tensor with values in [-1, 1].
    const std::string input = cli.get("picture.png");
    const ddpm::Image picture = input.empty() ? draw_test_picture(size) : fit_square(ddpm::read_png(input, 3), size);
    const ddpm::Tensor<float, 3> chw = ddpm::image_to_tensor<float>(picture);
    const ddpm::Tensor<float, 4> x0 = chw.reshape(Eigen::array<Eigen::Index, 4>{1, 3, size, size});

    // One eps, shared by every panel: numbers 0 .. 3 * size^2 - 1 of the seed's Philox stream.
    ddpm::Tensor<float, 4> eps(1, 3, size, size);
    ddpm::NoiseSource noise(seed);
    noise(eps);

    // Each row is one batched q_sample call with a timestep per batch element.
    const auto linear = ddpm::NoiseSchedule<float>::linear(kSteps);
    const auto cosine = ddpm::NoiseSchedule<float>::cosine(kSteps);
    const ddpm::Tensor<float, 4> x0_row = repeat(x0, kColumns), eps_row = repeat(eps, kColumns);
    const std::span<const int> t(kTimesteps);
    const ddpm::Tensor<float, 4> rows = ddpm::Tensor<float, 4>(
        ddpm::q_sample(linear, x0_row, t, eps_row).concatenate(ddpm::q_sample(cosine, x0_row, t, eps_row), 0));

    // Values outside [-1, 1] (there are many once noise dominates) are clamped to black or white.
    const int padding = std::max(2, size / 32);
    const ddpm::Image grid = ddpm::make_grid(rows, kColumns, padding, 255);
    const ddpm::Image strip = label_strip(grid, size, padding);
    ddpm::write_png(out_path, strip);

    print_table(ddpm::NoiseSchedule<double>::linear(kSteps), ddpm::NoiseSchedule<double>::cosine(kSteps));
    std::printf("\nwrote %s (%d x %d pixels: %d panels of %d x %d, %s)\n", out_path.c_str(), strip.width, strip.height,
                2 * kColumns, size, size, input.empty() ? "built-in picture" : input.c_str());
    return 0;
  });
}
