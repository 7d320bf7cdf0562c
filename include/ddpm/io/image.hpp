// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// 8-bit images: PNG files (read and written through stb, linked by the ddpm::io CMake target), and the
// conversion between pixels and the [-1, 1] tensors a diffusion model works on.
//
//   x    = byte / 127.5 - 1                              (improved-diffusion's loader)
//   byte = round(clamp((x + 1) * 127.5, 0, 255))          (diffusers' numpy_to_pil, after denormalize)
//
// The two are inverse at the 256 byte levels. improved-diffusion's image_sample.py truncates instead of
// rounding ((x + 1) * 127.5).clamp(0, 255).to(uint8)), which darkens every value by up to one level; we round,
// as diffusers does.
//
// Namespace ddpm::io, with the other file formats (the former ddpm::Image, ddpm::read_png, ... remain as
// using-declarations in ddpm for one release).
//
// Memory layouts: an Image holds interleaved rows (H, W, C), as PNG and stb do; tensors are planar
// (C, H, W) or (N, C, H, W), as PyTorch is.

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include "ddpm/error.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::io {

namespace detail {
// The PNG encoder (and decoder) index with int: rows of width * channels + 1 bytes, height rows.
inline constexpr long long kMaxImageBytes = INT_MAX / 2;

inline void check_image_shape(const char* fn, const char* what, long long width, long long height, long long channels) {
  if (width < 1 || height < 1) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": " + what + " is " + ddpm::detail::number_string(width) + " x " +
                           ddpm::detail::number_string(height) + " pixels, but must be at least 1 x 1");
  }
  if (channels < 1 || channels > 4) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": " + what + " has " + ddpm::detail::number_string(channels) +
                           " channels, but must have 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA)");
  }
  if (width > kMaxImageBytes || height > kMaxImageBytes || (width * channels + 1) * height > kMaxImageBytes) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": " + what + " is " + ddpm::detail::number_string(width) + " x " +
                           ddpm::detail::number_string(height) + " x " + ddpm::detail::number_string(channels) + ", but must hold at most " +
                           ddpm::detail::number_string(kMaxImageBytes) + " bytes");
  }
}
}  // namespace detail

/// An 8-bit image: `height` rows of `width` pixels of `channels` interleaved bytes (1 gray, 2 gray + alpha,
/// 3 RGB, 4 RGBA), so that the byte of channel c at row y, column x is pixels[(y * width + x) * channels + c].
/// A default-constructed Image is empty (0 x 0) and is not a valid argument to the functions below.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;

  Image() = default;

  /// A width x height image with every byte set to `fill`.
  /// Throws ddpm::invalid_argument unless width, height >= 1, channels is in [1, 4] and the image fits a PNG.
  Image(int w, int h, int c, std::uint8_t fill = 0) : width(w), height(h), channels(c) {
    detail::check_image_shape("ddpm::io::Image", "the image", width, height, channels);
    pixels.assign(static_cast<std::size_t>(width) * height * channels, fill);
  }

  /// The byte of `channel` at (`row`, `col`); unchecked (DDPM_ASSERT in debug builds).
  std::uint8_t& at(int row, int col, int channel) { return pixels[index(row, col, channel)]; }
  const std::uint8_t& at(int row, int col, int channel) const { return pixels[index(row, col, channel)]; }

  bool operator==(const Image&) const = default;

 private:
  std::size_t index(int row, int col, int channel) const {
    DDPM_ASSERT(row >= 0 && row < height && col >= 0 && col < width && channel >= 0 && channel < channels);
    return (static_cast<std::size_t>(row) * width + col) * channels + channel;
  }
};

namespace detail {

/// Throws ddpm::invalid_argument unless `image` has a valid shape and exactly width * height * channels bytes.
inline void check_image(const char* fn, const char* name, const Image& image) {
  check_image_shape(fn, name, image.width, image.height, image.channels);
  const std::size_t expected = static_cast<std::size_t>(image.width) * image.height * image.channels;
  if (image.pixels.size() != expected) {
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": " + name + " holds " + ddpm::detail::number_string(image.pixels.size()) +
                           " bytes, but a " + ddpm::detail::number_string(image.width) + " x " + ddpm::detail::number_string(image.height) +
                           " x " + ddpm::detail::number_string(image.channels) + " image must hold " + ddpm::detail::number_string(expected));
  }
}

// CRC-32 of PNG chunks (ISO 3309 / ITU-T V.42, reflected polynomial 0xEDB88320), table built at compile time.
inline constexpr std::array<std::uint32_t, 256> kCrcTable = [] {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    std::uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}();

inline std::uint32_t crc32(const unsigned char* data, std::size_t size) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) c = kCrcTable[(c ^ data[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

inline std::uint32_t read_be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

inline constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

/// Checks the PNG container before stb decodes it: the signature, then every chunk whole and with a correct
/// CRC, IHDR first, up to IEND. stb checks none of the CRCs and decodes some truncated files without
/// complaint; this makes a damaged file an error rather than a silently damaged image.
inline void check_png_container(const std::string& fn, const std::string& path, const std::vector<unsigned char>& b) {
  const std::string where = fn + ": \"" + path + "\"";
  if (b.size() < 8 || std::memcmp(b.data(), kPngSignature, 8) != 0) {
    ddpm::detail::throw_format_error(where + " is not a PNG file (it does not start with the PNG signature)");
  }
  std::size_t pos = 8;
  bool first = true;
  while (true) {
    if (b.size() - pos < 12) {
      ddpm::detail::throw_format_error(where + " is truncated: it ends at byte " + ddpm::detail::number_string(b.size()) +
                         " before the IEND chunk");
    }
    const std::uint32_t length = read_be32(&b[pos]);
    const std::string type(reinterpret_cast<const char*>(&b[pos + 4]), 4);
    if (length > 0x7FFFFFFFu || b.size() - pos - 12 < length) {
      ddpm::detail::throw_format_error(where + " is truncated: chunk \"" + type + "\" at byte " + ddpm::detail::number_string(pos) + " declares " +
                         ddpm::detail::number_string(length) + " bytes of data, but the file ends at byte " +
                         ddpm::detail::number_string(b.size()));
    }
    if (first && type != "IHDR") {
      ddpm::detail::throw_format_error(where + " is not a valid PNG file: its first chunk is \"" + type + "\", but must be IHDR");
    }
    first = false;
    const std::uint32_t stored = read_be32(&b[pos + 8 + length]);
    if (crc32(&b[pos + 4], 4 + std::size_t{length}) != stored) {
      ddpm::detail::throw_format_error(where + " is corrupt: chunk \"" + type + "\" at byte " + ddpm::detail::number_string(pos) +
                         " fails its CRC check");
    }
    if (type == "IEND") return;
    pos += 12 + std::size_t{length};
  }
}

inline std::string errno_text() { return std::strerror(errno); }

}  // namespace detail

/// read_png's default pixel limit, 2^26 pixels (8192 x 8192; 256 MiB decoded as RGBA). A PNG of a few kB can
/// declare 16384 x 16384 RGBA (1 GiB; stb's own bound is 2^30 bytes), so the limit bounds what a hostile file
/// can make read_png allocate. Raise it with read_png's max_pixels.
inline constexpr long long kDefaultPngPixelLimit = 1LL << 26;

/// Reads a PNG file into an 8-bit Image. Its channels are kept (channels = 0) or converted by stb to `channels` in [1,
/// 4] (gray <-> RGB, alpha added as opaque or dropped). 16-bit files are reduced to their high bytes, palette files
/// expanded. An image of more than `max_pixels` pixels (width x height, read from the header) is refused before it
/// is decoded. Throws ddpm::format_error (naming the path and the reason) if the file cannot be read, is not a PNG
/// file, is truncated or corrupt (a chunk fails its CRC), declares more than max_pixels pixels, or stb cannot decode
/// it; ddpm::invalid_argument if channels is outside [0, 4] or max_pixels < 1.
inline Image read_png(const std::string& path, int channels = 0, long long max_pixels = kDefaultPngPixelLimit) {
  const std::string fn = "ddpm::io::read_png";
  if (channels < 0 || channels > 4) {
    ddpm::detail::throw_invalid_argument(fn + ": channels is " + ddpm::detail::number_string(channels) +
                                   ", but must be 0 (as stored) or in [1, 4]");
  }
  if (max_pixels < 1) {
    ddpm::detail::throw_invalid_argument(fn + ": max_pixels is " + ddpm::detail::number_string(max_pixels) + ", but must be >= 1");
  }
  errno = 0;
  std::ifstream file(path, std::ios::binary);
  if (!file) ddpm::detail::throw_format_error(fn + ": cannot open \"" + path + "\": " + detail::errno_text());
  std::vector<unsigned char> bytes;
  bool failed = false;
  try {  // libstdc++ reports a read error (a directory, an I/O error) by throwing from the stream buffer
    bytes.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  } catch (const std::ios_base::failure&) {
    failed = true;
  }
  if (failed || file.bad()) ddpm::detail::throw_format_error(fn + ": cannot read \"" + path + "\": " + detail::errno_text());
  if (bytes.size() > static_cast<std::size_t>(INT_MAX)) {
    ddpm::detail::throw_format_error(fn + ": \"" + path + "\" has " + ddpm::detail::number_string(bytes.size()) + " bytes, but at most " +
                               ddpm::detail::number_string(INT_MAX) + " can be decoded");
  }
  detail::check_png_container(fn, path, bytes);

  int width = 0, height = 0, stored_channels = 0;
  if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &stored_channels)) {
    const char* reason = stbi_failure_reason();
    ddpm::detail::throw_format_error(fn + ": cannot decode \"" + path + "\": " + (reason ? reason : "unknown error"));
  }
  if (static_cast<long long>(width) * height > max_pixels) {
    ddpm::detail::throw_format_error(fn + ": \"" + path + "\" is " + ddpm::detail::number_string(width) + " x " + ddpm::detail::number_string(height) +
                               " = " + ddpm::detail::number_string(static_cast<long long>(width) * height) +
                               " pixels, but max_pixels is " + ddpm::detail::number_string(max_pixels) +
                               " (pass a larger max_pixels to read it)");
  }
  stbi_uc* decoded =
      stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &stored_channels, channels);
  if (decoded == nullptr) {
    const char* reason = stbi_failure_reason();
    ddpm::detail::throw_format_error(fn + ": cannot decode \"" + path + "\": " + (reason ? reason : "unknown error"));
  }
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels == 0 ? stored_channels : channels;
  try {
    image.pixels.assign(decoded, decoded + static_cast<std::size_t>(width) * height * image.channels);
  } catch (...) {
    stbi_image_free(decoded);
    throw;
  }
  stbi_image_free(decoded);
  return image;
}

/// Writes `image` as an 8-bit PNG file (colour type gray, gray + alpha, RGB or RGBA by its channel count),
/// replacing any file at `path`.
/// Throws ddpm::invalid_argument if the image is malformed (see Image); ddpm::format_error (naming the path
/// and the reason) if the file cannot be written.
inline void write_png(const std::string& path, const Image& image) {
  const std::string fn = "ddpm::io::write_png";
  detail::check_image(fn.c_str(), "image", image);
  // The callback runs inside stb's C code, so it must not throw: an allocation failure is recorded instead.
  struct Sink {
    std::vector<unsigned char> bytes;
    bool failed = false;
  } sink;
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<Sink*>(context);
    const auto* bytes = static_cast<const unsigned char*>(data);
    try {
      out->bytes.insert(out->bytes.end(), bytes, bytes + size);
    } catch (...) {
      out->failed = true;
    }
  };
  if (stbi_write_png_to_func(append, &sink, image.width, image.height, image.channels, image.pixels.data(),
                             image.width * image.channels) == 0 ||
      sink.failed) {
    ddpm::detail::throw_format_error(fn + ": stb could not encode the image for \"" + path + "\"");
  }
  errno = 0;
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) ddpm::detail::throw_format_error(fn + ": cannot open \"" + path + "\" for writing: " + detail::errno_text());
  file.write(reinterpret_cast<const char*>(sink.bytes.data()), static_cast<std::streamsize>(sink.bytes.size()));
  file.close();
  if (!file) ddpm::detail::throw_format_error(fn + ": cannot write \"" + path + "\": " + detail::errno_text());
}

/// The model value of a byte.                                      x = byte / 127.5 - 1, in [-1, 1]
template <std::floating_point S>
S pixel_to_value(std::uint8_t byte) {
  return static_cast<S>(byte) / static_cast<S>(127.5) - static_cast<S>(1);
}

/// The byte of a model value.                         byte = round(clamp((x + 1) * 127.5, 0, 255))
/// Rounds to nearest (halves to even, as NumPy's and PyTorch's round()); x = 0 gives 128.
/// Precondition: x is not NaN (the tensor conversions below check this and throw).
template <std::floating_point S>
std::uint8_t value_to_pixel(S x) {
  DDPM_ASSERT(!std::isnan(x));
  const double scaled = std::clamp((static_cast<double>(x) + 1.0) * 127.5, 0.0, 255.0);
  return static_cast<std::uint8_t>(std::nearbyint(scaled));
}

namespace detail {

template <DenseTensor T>
void check_finite(const char* fn, const char* name, const T& t) {
  const auto* data = t.data();
  const Eigen::Index n = t.size();
  for (Eigen::Index i = 0; i < n; ++i) {
    if (!std::isfinite(data[i])) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": " + name + " holds " + ddpm::detail::number_string(data[i]) + " at flat index " +
                             ddpm::detail::number_string(i) + ", but every value must be finite");
    }
  }
}

// (C, H, W) planar values -> interleaved bytes, writing `width` pixels per row starting at column x0 and
// row y0 of `out` (so that make_grid can place a sample inside a larger image).
template <class S>
void planar_to_image(const S* planes, Eigen::Index channels, Eigen::Index height, Eigen::Index width, Image& out,
                     Eigen::Index y0, Eigen::Index x0) {
  const Eigen::Index plane = height * width;
  for (Eigen::Index y = 0; y < height; ++y) {
    std::uint8_t* row = out.pixels.data() + ((y0 + y) * out.width + x0) * out.channels;
    for (Eigen::Index x = 0; x < width; ++x) {
      for (Eigen::Index c = 0; c < channels; ++c)
        row[x * channels + c] = value_to_pixel(planes[c * plane + y * width + x]);
    }
  }
}

template <class S>
void image_to_planar(const Image& image, S* planes) {
  const Eigen::Index plane = Eigen::Index{image.height} * image.width;
  const std::uint8_t* src = image.pixels.data();
  for (Eigen::Index i = 0; i < plane; ++i) {
    for (int c = 0; c < image.channels; ++c) planes[c * plane + i] = pixel_to_value<S>(src[i * image.channels + c]);
  }
}

template <DenseTensor T>
void check_tensor_image_dims(const char* fn, const char* name, const T& t) {
  constexpr int R = rank_v<T>;
  check_image_shape(fn, name, t.dimension(R - 1), t.dimension(R - 2), t.dimension(R - 3));
}

}  // namespace detail

/// One image as a (C, H, W) tensor of values x = byte / 127.5 - 1 in [-1, 1].
/// Throws ddpm::invalid_argument if the image is malformed (see Image).
template <std::floating_point S = float>
Tensor<S, 3> image_to_tensor(const Image& image) {
  detail::check_image("ddpm::io::image_to_tensor", "image", image);
  Tensor<S, 3> out(image.channels, image.height, image.width);
  detail::image_to_planar(image, out.data());
  return out;
}

/// A batch of equally shaped images as an (N, C, H, W) tensor of values in [-1, 1].
/// Throws ddpm::invalid_argument if images is empty, an image is malformed, or the images differ in shape.
template <std::floating_point S = float>
Tensor<S, 4> images_to_tensor(std::span<const Image> images) {
  const char* fn = "ddpm::io::images_to_tensor";
  if (images.empty())
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": images is empty, but must hold at least one image");
  const Image& first = images.front();
  for (std::size_t i = 0; i < images.size(); ++i) {
    const std::string name = "images[" + ddpm::detail::number_string(i) + "]";
    detail::check_image(fn, name.c_str(), images[i]);
    if (images[i].width != first.width || images[i].height != first.height || images[i].channels != first.channels) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": " + name + " is " + ddpm::detail::number_string(images[i].width) + " x " +
                                     ddpm::detail::number_string(images[i].height) + " x " + ddpm::detail::number_string(images[i].channels) +
                                     ", but must have the shape of images[0], " + ddpm::detail::number_string(first.width) + " x " +
                                     ddpm::detail::number_string(first.height) + " x " + ddpm::detail::number_string(first.channels));
    }
  }
  const auto n = static_cast<Eigen::Index>(images.size());
  Tensor<S, 4> out(n, first.channels, first.height, first.width);
  const Eigen::Index per_image = Eigen::Index{first.channels} * first.height * first.width;
  for (Eigen::Index b = 0; b < n; ++b) detail::image_to_planar(images[b], out.data() + b * per_image);
  return out;
}

/// The image of a (C, H, W) tensor: byte = round(clamp((x + 1) * 127.5, 0, 255)).
/// Throws ddpm::invalid_argument unless C is in [1, 4], H, W >= 1, and every value is finite.
template <DenseTensor T>
requires(rank_v<T> == 3) Image tensor_to_image(const T& x) {
  const char* fn = "ddpm::io::tensor_to_image";
  detail::check_tensor_image_dims(fn, "x", x);
  detail::check_finite(fn, "x", x);
  Image out(static_cast<int>(x.dimension(2)), static_cast<int>(x.dimension(1)), static_cast<int>(x.dimension(0)));
  detail::planar_to_image(x.data(), x.dimension(0), x.dimension(1), x.dimension(2), out, 0, 0);
  return out;
}

/// One image per batch element of an (N, C, H, W) tensor (see tensor_to_image).
/// Throws ddpm::invalid_argument unless N >= 1, C is in [1, 4], H, W >= 1, and every value is finite.
template <DenseTensor T>
requires(rank_v<T> == 4) std::vector<Image> tensor_to_images(const T& x) {
  const char* fn = "ddpm::io::tensor_to_images";
  ddpm::detail::require_nonempty(fn, "x", x);
  detail::check_tensor_image_dims(fn, "x", x);
  detail::check_finite(fn, "x", x);
  const Eigen::Index per_image = x.dimension(1) * x.dimension(2) * x.dimension(3);
  std::vector<Image> out;
  out.reserve(static_cast<std::size_t>(x.dimension(0)));
  for (Eigen::Index b = 0; b < x.dimension(0); ++b) {
    Image& image = out.emplace_back(static_cast<int>(x.dimension(3)), static_cast<int>(x.dimension(2)),
                                    static_cast<int>(x.dimension(1)));
    detail::planar_to_image(x.data() + b * per_image, x.dimension(1), x.dimension(2), x.dimension(3), image, 0, 0);
  }
  return out;
}

/// Tiles an (N, C, H, W) batch into one image, row by row, `columns` samples per row, like torchvision's
/// make_grid(x, nrow=columns, padding=padding, pad_value=...) without its gray -> RGB expansion:
///   cols = min(columns, N), rows = ceil(N / cols),
///   width = cols * (W + padding) + padding,  height = rows * (H + padding) + padding,
/// sample k at top-left (padding + (k / cols) * (H + padding), padding + (k % cols) * (W + padding));
/// every other byte (borders and the empty cells of the last row) is pad_value.
/// Throws ddpm::invalid_argument unless N >= 1, C is in [1, 4], H, W >= 1, columns >= 1, padding >= 0,
/// every value is finite and the grid fits a PNG.
template <DenseTensor T>
requires(rank_v<T> == 4) Image make_grid(const T& x, int columns = 8, int padding = 2, std::uint8_t pad_value = 0) {
  const char* fn = "ddpm::io::make_grid";
  ddpm::detail::require_nonempty(fn, "x", x);
  detail::check_tensor_image_dims(fn, "x", x);
  if (columns < 1)
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": columns is " + ddpm::detail::number_string(columns) + ", but must be >= 1");
  if (padding < 0)
    ddpm::detail::throw_invalid_argument(std::string(fn) + ": padding is " + ddpm::detail::number_string(padding) + ", but must be >= 0");
  const Eigen::Index n = x.dimension(0), c = x.dimension(1), h = x.dimension(2), w = x.dimension(3);
  const Eigen::Index cols = std::min<Eigen::Index>(columns, n);
  const Eigen::Index rows = (n + cols - 1) / cols;
  const long long grid_w = static_cast<long long>(cols) * (w + padding) + padding;
  const long long grid_h = static_cast<long long>(rows) * (h + padding) + padding;
  detail::check_image_shape(fn, "the grid", grid_w, grid_h, c);
  detail::check_finite(fn, "x", x);
  Image out(static_cast<int>(grid_w), static_cast<int>(grid_h), static_cast<int>(c), pad_value);
  const Eigen::Index per_image = c * h * w;
  for (Eigen::Index k = 0; k < n; ++k) {
    detail::planar_to_image(x.data() + k * per_image, c, h, w, out, padding + (k / cols) * (h + padding),
                            padding + (k % cols) * (w + padding));
  }
  return out;
}

}  // namespace ddpm::io

namespace ddpm {
// The image functions lived in namespace ddpm before they joined the other file formats in ddpm::io; these
// names keep code that spells them ddpm::Image, ddpm::read_png, ... compiling for one release. Deprecated:
// write ddpm::io::... (they will be removed in the next minor version).
using io::Image;
using io::image_to_tensor;
using io::images_to_tensor;
using io::kDefaultPngPixelLimit;
using io::make_grid;
using io::pixel_to_value;
using io::read_png;
using io::tensor_to_image;
using io::tensor_to_images;
using io::value_to_pixel;
using io::write_png;
}  // namespace ddpm
