// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Checks the content of the PNG files the examples write (run by ctest after each example; exit status 0
// and "check_example_png: ok" when every property holds, else the first failure and status 1).
//
//   check_example_png grid FILE IMAGES SIZE COLUMNS SCALE
//     sample_unet's grid: IMAGES images of SIZE x SIZE in COLUMNS columns, make_grid's padding of 2 black
//     pixels, enlarged SCALE times by nearest neighbour. Checks the exact width and height, that every padding
//     pixel is black, that each SCALE x SCALE block is one colour (the enlargement), and that no image is
//     constant (a sampler that produced NaN or a constant writes a flat image).
//
//   check_example_png strip FILE SIZE
//     forward_process's strip: two rows (linear, cosine) of 8 panels of SIZE x SIZE for t = 0, 50, 100, 200,
//     400, 600, 800, 999, make_grid's white padding of max(2, SIZE / 32), at the bottom right of the labelled
//     strip. Checks the size, the white padding, that the deviation of each panel from the t = 0 panel (mean
//     square over its pixels) grows with t along both rows (within one byte level squared, the rounding of
//     the PNG), and that at t = 999, where x_t is eps within 1 %, the share of pixels clamped to 0 or 255 is
//     P(|N(0, 1)| > 1) = 0.3173 within 5 standard deviations of the share over 3 SIZE^2 values.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ddpm/io/image.hpp"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok && failures++ == 0) std::printf("check_example_png: FAILED: %s\n", what.c_str());
}

int byte_at(const ddpm::io::Image& im, int x, int y, int c) {
  return im.pixels[(static_cast<std::size_t>(y) * im.width + x) * im.channels + c];
}

int check_grid(const ddpm::io::Image& im, int images, int size, int columns, int scale) {
  const int rows = (images + columns - 1) / columns;
  const int pad = 2;
  const int w = columns * (size + pad) + pad, h = rows * (size + pad) + pad;
  expect(im.width == w * scale && im.height == h * scale,
         "grid is " + std::to_string(im.width) + " x " + std::to_string(im.height) + ", expected " +
             std::to_string(w * scale) + " x " + std::to_string(h * scale));
  if (failures) return 1;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const bool padding = (x % (size + pad)) < pad || (y % (size + pad)) < pad;
      for (int c = 0; c < im.channels; ++c) {
        const int v = byte_at(im, x * scale, y * scale, c);
        if (padding) expect(v == 0, "padding pixel (" + std::to_string(x) + ", " + std::to_string(y) + ") is not black");
        for (int dy = 0; dy < scale; ++dy) {
          for (int dx = 0; dx < scale; ++dx) {
            expect(byte_at(im, x * scale + dx, y * scale + dy, c) == v,
                   "block (" + std::to_string(x) + ", " + std::to_string(y) + ") is not one colour");
          }
        }
      }
    }
  }
  for (int k = 0; k < images; ++k) {
    const int x0 = pad + (k % columns) * (size + pad), y0 = pad + (k / columns) * (size + pad);
    int lo = 255, hi = 0;
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        for (int c = 0; c < im.channels; ++c) {
          const int v = byte_at(im, (x0 + x) * scale, (y0 + y) * scale, c);
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
    }
    expect(hi > lo, "image " + std::to_string(k) + " is constant (" + std::to_string(lo) + ")");
  }
  return failures ? 1 : 0;
}

int check_strip(const ddpm::io::Image& im, int size) {
  const int columns = 8, rows = 2;
  const int pad = std::max(2, size / 32);
  const int w = columns * (size + pad) + pad, h = rows * (size + pad) + pad;
  expect(im.channels == 3, "the strip is not RGB");
  expect(im.width > w && im.height > h, "the strip is smaller than its panels");
  if (failures) return 1;
  const int left = im.width - w, top = im.height - h;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if ((x % (size + pad)) < pad || (y % (size + pad)) < pad) {
        for (int c = 0; c < 3; ++c) expect(byte_at(im, left + x, top + y, c) == 255, "padding is not white");
      }
    }
  }
  auto value = [&](int r, int col, int x, int y, int c) {  // the pixel as x in [-1, 1]
    return byte_at(im, left + pad + col * (size + pad) + x, top + pad + r * (size + pad) + y, c) / 127.5 - 1.0;
  };
  const double level2 = (2.0 / 255) * (2.0 / 255);
  for (int r = 0; r < rows; ++r) {
    double previous = 0.0;
    for (int col = 1; col < columns; ++col) {
      double sum = 0.0;
      for (int y = 0; y < size; ++y) {
        for (int x = 0; x < size; ++x) {
          for (int c = 0; c < 3; ++c) {
            const double d = value(r, col, x, y, c) - value(r, 0, x, y, c);
            sum += d * d;
          }
        }
      }
      const double msd = sum / (3.0 * size * size);
      std::printf("row %d, panel %d: mean square deviation from t = 0: %.5f\n", r, col, msd);
      expect(msd >= previous - level2, "row " + std::to_string(r) + ": the deviation from t = 0 falls at panel " +
                                           std::to_string(col) + " (" + std::to_string(msd) + " after " +
                                           std::to_string(previous) + ")");
      previous = msd;
    }
    expect(previous > 0.3, "row " + std::to_string(r) + ": t = 999 deviates by only " + std::to_string(previous));
    int clamped = 0;
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        for (int c = 0; c < 3; ++c) clamped += std::abs(value(r, columns - 1, x, y, c)) >= 1.0 ? 1 : 0;
      }
    }
    const double n = 3.0 * size * size, p = 0.3173105078629141;  // P(|Z| > 1)
    const double share = clamped / n, sd = std::sqrt(p * (1 - p) / n);
    std::printf("row %d, t = 999: %.4f of the values clamped (expected %.4f, sd %.4f)\n", r, share, p, sd);
    expect(std::abs(share - p) <= 5 * sd, "row " + std::to_string(r) + ": " + std::to_string(share) +
                                              " of the t = 999 values clamped, expected 0.3173");
  }
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    int rc = 2;
    if (mode == "grid" && argc == 7) {
      rc = check_grid(ddpm::io::read_png(argv[2], 3), std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]),
                      std::atoi(argv[6]));
    } else if (mode == "strip" && argc == 4) {
      rc = check_strip(ddpm::io::read_png(argv[2], 3), std::atoi(argv[3]));
    } else {
      std::printf("usage: check_example_png grid FILE IMAGES SIZE COLUMNS SCALE | strip FILE SIZE\n");
      return 2;
    }
    if (rc == 0) std::printf("check_example_png: ok\n");
    return rc;
  } catch (const std::exception& e) {
    std::printf("check_example_png: FAILED: %s\n", e.what());
    return 1;
  }
}
