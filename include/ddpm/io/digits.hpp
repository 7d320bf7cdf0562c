// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The UCI optical-recognition 8x8 handwritten digits (the 1797-image set that scikit-learn ships as
// sklearn/datasets/data/digits.csv.gz; Debian's python3-sklearn installs it, scripts/get-digits.sh fetches
// it alone): a small labelled image set for training and evaluating a class-conditional diffusion model.
//
// File format: one image per line, 65 comma-separated decimal integers: the 64 pixels of an 8 x 8 image in
// row-major order, each a grey level in [0, 16] (16 is full ink), then the class label in [0, 9]. The file
// is gzip-compressed (as sklearn ships it) or plain text; lines end in "\n" or "\r\n".
//
// Images become tensors [N, 1, 8, 8] scaled to [-1, 1], as diffusion models expect:
//   x = level / 16 * 2 - 1          (0 -> -1, 8 -> 0, 16 -> +1)
//
// A file is never trusted: the parser accepts exactly the format above (no blank lines inside, no spaces,
// no signs or decimal points, no value with more than two digits) and caps the rows it reads; anything else
// throws ddpm::format_error naming the file, the line (1-based) and the offending value. Reading gzip needs
// zlib (link -lz, Debian's zlib1g-dev).

#include <zlib.h>

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::io {

/// Where Debian's python3-sklearn (and pip's scikit-learn for Debian's python3) installs the digits file.
inline constexpr std::string_view kSklearnDigitsPath =
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

inline constexpr int kDigitsSide = 8;       ///< image height = width
inline constexpr int kDigitsPixels = 64;    ///< pixels per image (columns before the label)
inline constexpr int kDigitsMaxLevel = 16;  ///< grey levels are 0 .. 16
inline constexpr int kDigitsClasses = 10;   ///< labels are 0 .. 9
inline constexpr int kDigitsRows = 1797;    ///< rows of sklearn's file
/// The default cap on the rows a file may hold (well above sklearn's 1797; the full UCI set has 5620).
inline constexpr std::size_t kDigitsDefaultMaxRows = 65536;

/// A labelled digits set: images [N, 1, 8, 8] in [-1, 1] and labels[i] in [0, 9] the class of image i.
template <std::floating_point S>
struct Digits {
  Tensor<S, 4> images;
  std::vector<int> labels;

  /// The number of images N.
  Eigen::Index size() const noexcept { return images.dimension(0); }
};

namespace detail {

// The longest line the strict format allows: 65 values of at most 2 digits, 64 commas, "\r\n".
inline constexpr std::size_t kDigitsMaxLineBytes = 65 * 2 + 64 + 2;

inline std::string digits_quote(std::string_view value) {
  constexpr std::size_t kShown = 20;
  std::string out = "\"";
  for (char c : value.substr(0, kShown)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') {
      out += c;
    } else {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  if (value.size() > kShown) out += "...";
  return out + "\"";
}

[[noreturn]] inline void throw_digits_error(std::string_view fn, std::string_view name, std::size_t line,
                                            const std::string& what) {
  ddpm::detail::throw_format_error(std::string(fn) + ": " + std::string(name) + " line " + ddpm::detail::number_string(line) + ": " +
                                   what);
}

// Inflates one complete gzip member (RFC 1952, CRC-32 and length checked by zlib) into at most max_out bytes.
inline std::string gunzip(std::string_view fn, std::string_view name, std::string_view compressed,
                          std::size_t max_out) {
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip header and trailer, nothing else.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    ddpm::detail::throw_format_error(std::string(fn) + ": " + std::string(name) + ": zlib could not start inflating");
  }
  struct End {
    z_stream* zs;
    ~End() { inflateEnd(zs); }
  } end{&zs};
  std::string out;
  std::array<char, 1 << 16> chunk{};
  const auto* next = reinterpret_cast<const Bytef*>(compressed.data());
  std::size_t left = compressed.size();
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zs.avail_in == 0) {
      const std::size_t take = std::min<std::size_t>(left, std::numeric_limits<uInt>::max());
      zs.next_in = const_cast<Bytef*>(next);
      zs.avail_in = static_cast<uInt>(take);
      next += take;
      left -= take;
    }
    zs.next_out = reinterpret_cast<Bytef*>(chunk.data());
    zs.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    const std::size_t produced = chunk.size() - zs.avail_out;
    if (rc == Z_STREAM_ERROR || rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_MEM_ERROR) {
      ddpm::detail::throw_format_error(std::string(fn) + ": " + std::string(name) + ": corrupt gzip data (zlib: " +
                                       (zs.msg != nullptr ? zs.msg : "error " + ddpm::detail::number_string(rc)) + ")");
    }
    if (out.size() + produced > max_out) {
      ddpm::detail::throw_format_error(std::string(fn) + ": " + std::string(name) + ": decompresses to more than " +
                                       ddpm::detail::number_string(max_out) + " bytes, more than the row cap allows");
    }
    out.append(chunk.data(), produced);
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && left == 0) {
      ddpm::detail::throw_format_error(std::string(fn) + ": " + std::string(name) +
                                       ": truncated gzip data (the stream ends before its trailer, after " +
                                       ddpm::detail::number_string(out.size()) + " bytes)");
    }
  }
  if (zs.avail_in != 0 || left != 0) {
    ddpm::detail::throw_format_error(std::string(fn) + ": " + std::string(name) + ": " +
                                     ddpm::detail::number_string(zs.avail_in + left) + " bytes follow the gzip stream");
  }
  return out;
}

}  // namespace detail

/// Parses digits CSV text (see the format above) into images [N, 1, 8, 8] with x = level / 16 * 2 - 1,
/// and labels. `name` names the source in error messages.
/// Throws ddpm::format_error (naming `name`, the 1-based line and the value) for a line without exactly 65
/// values, a value that is not a decimal integer of one or two digits, a pixel outside [0, 16], a label
/// outside [0, 9], an empty line before the end, an empty file, or more than `max_rows` rows;
/// ddpm::invalid_argument if max_rows is 0.
template <std::floating_point S>
Digits<S> parse_digits_csv(std::string_view text, std::string_view name = "<text>",
                           std::size_t max_rows = kDigitsDefaultMaxRows) {
  constexpr std::string_view fn = "ddpm::io::parse_digits_csv";
  if (max_rows == 0) ddpm::detail::throw_invalid_argument(std::string(fn) + ": max_rows is 0, but must be >= 1");
  std::vector<std::uint8_t> levels;
  std::vector<int> labels;
  std::size_t pos = 0;
  std::size_t line = 0;
  while (pos < text.size()) {
    ++line;
    std::size_t eol = text.find('\n', pos);
    const bool last = eol == std::string_view::npos;
    if (last) eol = text.size();
    std::string_view row = text.substr(pos, eol - pos);
    pos = last ? text.size() : eol + 1;
    if (!row.empty() && row.back() == '\r') row.remove_suffix(1);
    if (row.empty()) {
      // A final newline (and nothing after it) is the normal end of a file; any other empty line is not.
      if (pos >= text.size() && last) break;
      detail::throw_digits_error(fn, name, line, "empty line, but every row must hold 65 values");
    }
    if (labels.size() == max_rows) {
      detail::throw_digits_error(fn, name, line, "more than max_rows = " + ddpm::detail::number_string(max_rows) + " rows");
    }
    int column = 0;
    std::size_t start = 0;
    while (true) {
      std::size_t comma = row.find(',', start);
      const bool end_of_row = comma == std::string_view::npos;
      if (end_of_row) comma = row.size();
      const std::string_view value = row.substr(start, comma - start);
      ++column;
      if (column > kDigitsPixels + 1) {
        detail::throw_digits_error(fn, name, line,
                                   "more than 65 values (64 pixels and a label); value " + ddpm::detail::number_string(column) +
                                       " is " + detail::digits_quote(value));
      }
      const bool numeric = !value.empty() && value.size() <= 2 &&
                           std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!numeric) {
        detail::throw_digits_error(fn, name, line,
                                   "value " + ddpm::detail::number_string(column) + " is " + detail::digits_quote(value) +
                                       ", but must be a decimal integer of one or two digits");
      }
      const int v = value.size() == 1 ? value[0] - '0' : (value[0] - '0') * 10 + (value[1] - '0');
      if (column <= kDigitsPixels) {
        if (v > kDigitsMaxLevel) {
          detail::throw_digits_error(
              fn, name, line,
              "pixel " + ddpm::detail::number_string(column) + " is " + std::string(value) + ", but must be in [0, 16]");
        }
        levels.push_back(static_cast<std::uint8_t>(v));
      } else {
        if (v >= kDigitsClasses) {
          detail::throw_digits_error(fn, name, line,
                                     "label (value 65) is " + std::string(value) + ", but must be in [0, 9]");
        }
        labels.push_back(v);
      }
      if (end_of_row) break;
      start = comma + 1;
    }
    if (column != kDigitsPixels + 1) {
      detail::throw_digits_error(fn, name, line,
                                 "has " + ddpm::detail::number_string(column) + " values, but must have 65 (64 pixels and a label)");
    }
  }
  if (labels.empty()) ddpm::detail::throw_format_error(std::string(fn) + ": " + std::string(name) + " holds no rows");

  const auto n = static_cast<Eigen::Index>(labels.size());
  Digits<S> out;
  out.images = Tensor<S, 4>(n, 1, kDigitsSide, kDigitsSide);
  S* dst = out.images.data();
  for (std::size_t i = 0; i < levels.size(); ++i) {
    dst[i] = static_cast<S>(static_cast<double>(levels[i]) / kDigitsMaxLevel * 2.0 - 1.0);
  }
  out.labels = std::move(labels);
  return out;
}

/// Reads a digits file (gzip, as sklearn ships it, recognised by its magic bytes 1f 8b; or plain CSV) and
/// parses it with parse_digits_csv: images [N, 1, 8, 8] in [-1, 1] and labels in [0, 9].
///   auto d = ddpm::io::load_digits<float>(std::string(ddpm::io::kSklearnDigitsPath));
/// Throws ddpm::format_error if the file cannot be opened, the gzip data is corrupt or truncated, bytes
/// follow the gzip stream, the text would exceed max_rows rows of the longest legal line, or any row is
/// malformed (see parse_digits_csv); ddpm::invalid_argument if max_rows is 0.
template <std::floating_point S>
Digits<S> load_digits(const std::string& path, std::size_t max_rows = kDigitsDefaultMaxRows) {
  constexpr std::string_view fn = "ddpm::io::load_digits";
  if (max_rows == 0) ddpm::detail::throw_invalid_argument(std::string(fn) + ": max_rows is 0, but must be >= 1");
  constexpr std::size_t kHuge = std::numeric_limits<std::size_t>::max() / 2;
  const std::size_t max_text =
      max_rows > kHuge / detail::kDigitsMaxLineBytes ? kHuge : max_rows * detail::kDigitsMaxLineBytes;
  std::ifstream file(path, std::ios::binary);
  if (!file) ddpm::detail::throw_format_error(std::string(fn) + ": cannot open " + path);
  file.seekg(0, std::ios::end);
  const std::streamoff bytes = file.tellg();
  file.seekg(0, std::ios::beg);
  if (bytes < 0) ddpm::detail::throw_format_error(std::string(fn) + ": cannot read " + path);
  // Stored (uncompressed) deflate blocks add 5 bytes per 65535 and gzip 18 more: no legal file of at most
  // max_text bytes of text is larger than this.
  if (static_cast<std::size_t>(bytes) > max_text + max_text / 8192 + 1024) {
    ddpm::detail::throw_format_error(std::string(fn) + ": " + path + " is " + ddpm::detail::number_string(bytes) +
                                     " bytes, more than max_rows = " + ddpm::detail::number_string(max_rows) + " rows can take");
  }
  std::string raw(static_cast<std::size_t>(bytes), '\0');
  if (!file.read(raw.data(), bytes)) ddpm::detail::throw_format_error(std::string(fn) + ": cannot read " + path);
  const bool gzip =
      raw.size() >= 2 && static_cast<unsigned char>(raw[0]) == 0x1f && static_cast<unsigned char>(raw[1]) == 0x8b;
  if (gzip) raw = detail::gunzip(fn, path, raw, max_text);
  return parse_digits_csv<S>(raw, path, max_rows);
}

/// Nearest-neighbour upsampling by an integer factor: out[n, c, y, x] = in[n, c, y / f, x / f] (integer
/// division), so each pixel becomes an f x f block, as torch.nn.functional.interpolate(mode="nearest") with
/// scale_factor f. Values stay on the 17 grey levels; 2x2 average pooling undoes it exactly.
/// Throws ddpm::invalid_argument if factor < 1 or the result would not fit an Eigen::Index.
template <std::floating_point S>
Tensor<S, 4> upsample_nearest(const Tensor<S, 4>& images, int factor) {
  if (factor < 1 || factor > 1024) {
    ddpm::detail::throw_invalid_argument("ddpm::io::upsample_nearest: factor is " + ddpm::detail::number_string(factor) +
                                         ", but must be in [1, 1024]");
  }
  const Eigen::Index n = images.dimension(0), c = images.dimension(1), h = images.dimension(2), w = images.dimension(3);
  Tensor<S, 4> out(n, c, h * factor, w * factor);
  const Eigen::Index ow = w * factor;
  for (Eigen::Index p = 0; p < n * c; ++p) {
    const S* src = images.data() + p * h * w;
    S* dst = out.data() + p * h * factor * ow;
    for (Eigen::Index y = 0; y < h * factor; ++y) {
      for (Eigen::Index x = 0; x < ow; ++x) dst[y * ow + x] = src[(y / factor) * w + x / factor];
    }
  }
  return out;
}

/// Bilinear upsampling by an integer factor with half-pixel centres, as
/// torch.nn.functional.interpolate(mode="bilinear", align_corners=False, scale_factor=f):
///   source coordinate u = max((y + 0.5) / f - 0.5, 0);  y0 = floor(u), y1 = min(y0 + 1, h - 1), a = u - y0
///   out = (1 - a)(1 - b) in[y0, x0] + (1 - a) b in[y0, x1] + a (1 - b) in[y1, x0] + a b in[y1, x1]
/// (b, x0, x1 likewise along the width). Smoother than nearest; values leave the 17 grey levels.
/// Throws ddpm::invalid_argument if factor < 1.
template <std::floating_point S>
Tensor<S, 4> upsample_bilinear(const Tensor<S, 4>& images, int factor) {
  if (factor < 1 || factor > 1024) {
    ddpm::detail::throw_invalid_argument("ddpm::io::upsample_bilinear: factor is " + ddpm::detail::number_string(factor) +
                                         ", but must be in [1, 1024]");
  }
  const Eigen::Index n = images.dimension(0), c = images.dimension(1), h = images.dimension(2), w = images.dimension(3);
  const Eigen::Index oh = h * factor, ow = w * factor;
  Tensor<S, 4> out(n, c, oh, ow);
  struct Tap {
    Eigen::Index i0, i1;
    double a;
  };
  auto taps = [factor](Eigen::Index size_out, Eigen::Index size_in) {
    std::vector<Tap> t(static_cast<std::size_t>(size_out));
    for (Eigen::Index o = 0; o < size_out; ++o) {
      const double u = std::max((static_cast<double>(o) + 0.5) / factor - 0.5, 0.0);
      const auto i0 = std::min(static_cast<Eigen::Index>(u), size_in - 1);
      t[static_cast<std::size_t>(o)] = {i0, std::min(i0 + 1, size_in - 1), u - static_cast<double>(i0)};
    }
    return t;
  };
  const std::vector<Tap> ty = taps(oh, h), tx = taps(ow, w);
  for (Eigen::Index p = 0; p < n * c; ++p) {
    const S* src = images.data() + p * h * w;
    S* dst = out.data() + p * oh * ow;
    for (Eigen::Index y = 0; y < oh; ++y) {
      const Tap& vy = ty[static_cast<std::size_t>(y)];
      for (Eigen::Index x = 0; x < ow; ++x) {
        const Tap& vx = tx[static_cast<std::size_t>(x)];
        const double top = (1 - vx.a) * src[vy.i0 * w + vx.i0] + vx.a * src[vy.i0 * w + vx.i1];
        const double bottom = (1 - vx.a) * src[vy.i1 * w + vx.i0] + vx.a * src[vy.i1 * w + vx.i1];
        dst[y * ow + x] = static_cast<S>((1 - vy.a) * top + vy.a * bottom);
      }
    }
  }
  return out;
}

}  // namespace ddpm::io
