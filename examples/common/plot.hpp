// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Plots of 2-D point clouds for the example programs: a smoothed density of points on a pixel grid, drawn
// as a log-scale heat map, and anti-aliased circles, crosses and rectangles to overlay on it.
//
//   const examples::PlotWindow window{-6, 6, -6, 6, 256, 256};          // data square -> 256 x 256 pixels
//   const std::vector<double> d = examples::point_density(window, xy, count, /*blur_px=*/1.5);
//   ddpm::Image panel = examples::heat_map(window, d, max_density, /*decades=*/3);
//   examples::draw_circle(panel, window.px(0), window.py(0), window.scale_x() * 2.0, {0, 220, 255}, 0.8);

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "common/draw.hpp"
#include "ddpm/io/image.hpp"

namespace examples {

/// The data rectangle [x_min, x_max] x [y_min, y_max] shown on a width x height pixel grid, y upwards.
struct PlotWindow {
  double x_min, x_max, y_min, y_max;
  int width, height;

  /// Pixels per data unit along x and along y.
  double scale_x() const { return width / (x_max - x_min); }
  double scale_y() const { return height / (y_max - y_min); }
  /// The (fractional) pixel coordinates of a data point; pixel (i, j) covers [i, i + 1) x [j, j + 1).
  double px(double x) const { return (x - x_min) * scale_x(); }
  double py(double y) const { return (y_max - y) * scale_y(); }
};

/// How many of `count` points (x, y interleaved in `xy`: x0, y0, x1, y1, ...) fall in each pixel of the
/// window, blurred by a Gaussian of standard deviation `blur_px` pixels (0: a plain histogram), as a
/// row-major height x width grid. Points outside the window are left out; the blur does not renormalise at
/// the edges. The result is a kernel density estimate with bandwidth blur_px / scale in data units, times
/// the count and the pixel area.
template <class S>
std::vector<double> point_density(const PlotWindow& window, const S* xy, std::size_t count, double blur_px) {
  if (window.width < 1 || window.height < 1 || !(window.x_max > window.x_min) || !(window.y_max > window.y_min)) {
    throw std::invalid_argument("examples::point_density: the window is empty");
  }
  const std::size_t w = static_cast<std::size_t>(window.width), h = static_cast<std::size_t>(window.height);
  std::vector<double> grid(w * h, 0.0);
  for (std::size_t n = 0; n < count; ++n) {
    const double fx = window.px(static_cast<double>(xy[2 * n])), fy = window.py(static_cast<double>(xy[2 * n + 1]));
    if (!(fx >= 0 && fx < window.width && fy >= 0 && fy < window.height)) continue;  // also drops NaN
    grid[static_cast<std::size_t>(fy) * w + static_cast<std::size_t>(fx)] += 1.0;
  }
  if (blur_px <= 0) return grid;
  // Separable Gaussian blur, the kernel cut at 3 sigma and normalised to sum 1.
  const int radius = static_cast<int>(std::ceil(3 * blur_px));
  std::vector<double> kernel(static_cast<std::size_t>(2 * radius + 1));
  double total = 0;
  for (int k = -radius; k <= radius; ++k)
    total += kernel[static_cast<std::size_t>(k + radius)] = std::exp(-0.5 * k * k / (blur_px * blur_px));
  for (double& k : kernel) k /= total;
  std::vector<double> tmp(w * h, 0.0);
  const int W = window.width, H = window.height;
  for (int y = 0; y < H; ++y) {
    for (int x = 0; x < W; ++x) {
      double s = 0;
      for (int k = std::max(-radius, -x); k <= std::min(radius, W - 1 - x); ++k) {
        s += kernel[static_cast<std::size_t>(k + radius)] *
             grid[static_cast<std::size_t>(y) * w + static_cast<std::size_t>(x + k)];
      }
      tmp[static_cast<std::size_t>(y) * w + static_cast<std::size_t>(x)] = s;
    }
  }
  for (int y = 0; y < H; ++y) {
    for (int x = 0; x < W; ++x) {
      double s = 0;
      for (int k = std::max(-radius, -y); k <= std::min(radius, H - 1 - y); ++k) {
        s += kernel[static_cast<std::size_t>(k + radius)] *
             tmp[static_cast<std::size_t>(y + k) * w + static_cast<std::size_t>(x)];
      }
      grid[static_cast<std::size_t>(y) * w + static_cast<std::size_t>(x)] = s;
    }
  }
  return grid;
}

/// A perceptually ordered colour map from black through purple, red and orange to pale yellow (close to
/// matplotlib's "inferno"), for t in [0, 1] (clamped).
inline Rgb inferno(double t) {
  static constexpr std::array<std::array<double, 3>, 9> stops = {{{0, 0, 4},
                                                                  {40, 11, 84},
                                                                  {101, 21, 110},
                                                                  {159, 42, 99},
                                                                  {212, 72, 66},
                                                                  {245, 125, 21},
                                                                  {250, 193, 39},
                                                                  {245, 240, 120},
                                                                  {252, 255, 164}}};
  const double u = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * (stops.size() - 1);
  const std::size_t i = std::min(static_cast<std::size_t>(u), stops.size() - 2);
  const double f = u - static_cast<double>(i);
  Rgb c;
  for (std::size_t k = 0; k < 3; ++k) {
    c[k] = static_cast<std::uint8_t>(std::lround(stops[i][k] + f * (stops[i + 1][k] - stops[i][k])));
  }
  return c;
}

/// The position of `value` on a log scale spanning `decades` powers of ten below `max_value`: 1 at
/// max_value, 0 at max_value / 10^decades and below (and for value <= 0).
inline double log_scale(double value, double max_value, double decades) {
  if (!(value > 0) || !(max_value > 0)) return 0.0;
  return std::clamp(1.0 + std::log10(value / max_value) / decades, 0.0, 1.0);
}

/// An RGB image of a grid from point_density, each pixel inferno(log_scale(density, max_density, decades)).
/// Use the same max_density for panels that are to be compared.
inline ddpm::Image heat_map(const PlotWindow& window, const std::vector<double>& density, double max_density,
                            double decades) {
  if (density.size() != static_cast<std::size_t>(window.width) * static_cast<std::size_t>(window.height)) {
    throw std::invalid_argument("examples::heat_map: the density grid does not match the window");
  }
  ddpm::Image image(window.width, window.height, 3);
  for (int y = 0; y < window.height; ++y) {
    for (int x = 0; x < window.width; ++x) {
      const Rgb c = inferno(log_scale(density[static_cast<std::size_t>(y) * window.width + x], max_density, decades));
      for (int k = 0; k < 3; ++k) image.at(y, x, k) = c[static_cast<std::size_t>(k)];
    }
  }
  return image;
}

/// Mixes `colour` into the pixel (x, y) with opacity alpha in [0, 1]; outside the image nothing happens.
/// The image must have 3 or 4 channels (alpha is left alone).
inline void blend_pixel(ddpm::Image& image, int x, int y, Rgb colour, double alpha) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height || image.channels < 3) return;
  const double a = std::clamp(alpha, 0.0, 1.0);
  for (int k = 0; k < 3; ++k) {
    const double v = image.at(y, x, k) + a * (colour[static_cast<std::size_t>(k)] - image.at(y, x, k));
    image.at(y, x, k) = static_cast<std::uint8_t>(std::lround(v));
  }
}

/// An anti-aliased ring of centre (cx, cy) and radius r in pixel coordinates (pixel centres at +0.5),
/// `thickness` pixels wide.
inline void draw_circle(ddpm::Image& image, double cx, double cy, double r, Rgb colour, double alpha,
                        double thickness = 1.0) {
  const double reach = r + thickness / 2 + 1;
  const int x0 = static_cast<int>(std::floor(cx - reach)), x1 = static_cast<int>(std::ceil(cx + reach));
  const int y0 = static_cast<int>(std::floor(cy - reach)), y1 = static_cast<int>(std::ceil(cy + reach));
  for (int y = std::max(y0, 0); y <= std::min(y1, image.height - 1); ++y) {
    for (int x = std::max(x0, 0); x <= std::min(x1, image.width - 1); ++x) {
      const double d = std::abs(std::hypot(x + 0.5 - cx, y + 0.5 - cy) - r);
      const double coverage = std::clamp(thickness / 2 + 0.5 - d, 0.0, 1.0);
      if (coverage > 0) blend_pixel(image, x, y, colour, alpha * coverage);
    }
  }
}

/// A "+" of half-size `arm` pixels centred on the pixel containing (cx, cy).
inline void draw_cross(ddpm::Image& image, double cx, double cy, int arm, Rgb colour, double alpha) {
  const int x = static_cast<int>(std::floor(cx)), y = static_cast<int>(std::floor(cy));
  for (int k = -arm; k <= arm; ++k) {
    blend_pixel(image, x + k, y, colour, alpha);
    if (k != 0) blend_pixel(image, x, y + k, colour, alpha);
  }
}

/// Fills the rectangle [x, x + w) x [y, y + h), clipped to the image, with `colour` (opaque).
inline void fill_rect(ddpm::Image& image, int x, int y, int w, int h, Rgb colour) {
  for (int py = std::max(y, 0); py < std::min(y + h, image.height); ++py) {
    for (int px = std::max(x, 0); px < std::min(x + w, image.width); ++px) blend_pixel(image, px, py, colour, 1.0);
  }
}

}  // namespace examples
