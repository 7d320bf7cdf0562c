// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Just enough drawing to label the example programs' figures: copy one image into another, and write
// ASCII text in stb's "easy font" (a 7-pixel-high segment font, from Debian's libstb-dev), scaled up by an
// integer factor.

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <stb/stb_easy_font.h>

#include "ddpm/io/image.hpp"

namespace examples {

using Rgb = std::array<std::uint8_t, 3>;

namespace detail {
// stb_easy_font indexes a table by (character - 32), so anything outside printable ASCII becomes '?'.
inline std::vector<char> printable(const std::string& text) {
  std::vector<char> out(text.begin(), text.end());
  for (char& c : out) {
    if (c != '\n' && (c < 32 || c > 126)) c = '?';
  }
  out.push_back('\0');
  return out;
}
}  // namespace detail

/// The width in pixels of `text` drawn at `scale`.
inline int text_width(const std::string& text, int scale) {
  std::vector<char> buffer = detail::printable(text);
  return stb_easy_font_width(buffer.data()) * scale;
}

/// The height in pixels of one line of text drawn at `scale` (capitals and descenders).
inline int text_height(int scale) { return 9 * scale; }

/// Draws `text` with its top-left corner at (x, y), each font unit a scale x scale block of `colour`;
/// whatever falls outside the image is clipped. Gray images get the colour's mean, alpha is left alone.
inline void draw_text(ddpm::Image& image, int x, int y, const std::string& text, int scale, Rgb colour) {
  std::vector<char> buffer = detail::printable(text);
  std::vector<unsigned char> quads(buffer.size() * 320);  // stb expects about 270 bytes per character
  const int count = stb_easy_font_print(0, 0, buffer.data(), nullptr, quads.data(), static_cast<int>(quads.size()));
  const std::uint8_t gray = static_cast<std::uint8_t>((colour[0] + colour[1] + colour[2]) / 3);
  for (int q = 0; q < count; ++q) {
    // Each quad is 4 vertices of {float x, y, z; uint8 rgba[4]}; take its bounding box.
    float x0 = 1e9f, y0 = 1e9f, x1 = -1e9f, y1 = -1e9f;
    for (int v = 0; v < 4; ++v) {
      float vx, vy;
      std::memcpy(&vx, &quads[static_cast<std::size_t>(q * 4 + v) * 16], sizeof vx);
      std::memcpy(&vy, &quads[static_cast<std::size_t>(q * 4 + v) * 16 + 4], sizeof vy);
      x0 = std::min(x0, vx), x1 = std::max(x1, vx), y0 = std::min(y0, vy), y1 = std::max(y1, vy);
    }
    const int px0 = std::max(0, x + static_cast<int>(x0) * scale),
              px1 = std::min(image.width, x + static_cast<int>(x1) * scale);
    const int py0 = std::max(0, y + static_cast<int>(y0) * scale),
              py1 = std::min(image.height, y + static_cast<int>(y1) * scale);
    for (int py = py0; py < py1; ++py) {
      for (int px = px0; px < px1; ++px) {
        if (image.channels >= 3) {
          for (int c = 0; c < 3; ++c) image.at(py, px, c) = colour[static_cast<std::size_t>(c)];
        } else {
          image.at(py, px, 0) = gray;
        }
      }
    }
  }
}

/// Copies `src` into `dst` with its top-left corner at (x, y), clipped to dst. Both must have the same
/// number of channels.
inline void blit(ddpm::Image& dst, const ddpm::Image& src, int x, int y) {
  if (src.channels != dst.channels) throw std::invalid_argument("examples::blit: images differ in channels");
  for (int sy = std::max(0, -y); sy < src.height && y + sy < dst.height; ++sy) {
    const int sx0 = std::max(0, -x), sx1 = std::min(src.width, dst.width - x);
    if (sx1 <= sx0) return;
    std::memcpy(&dst.at(y + sy, x + sx0, 0), &src.at(sy, sx0, 0), static_cast<std::size_t>(sx1 - sx0) * src.channels);
  }
}

}  // namespace examples
