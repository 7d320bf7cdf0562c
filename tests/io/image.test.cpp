// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// PNG reading and writing, and the image <-> tensor conversions of ddpm/io/image.hpp.
// Independent references: PNG files built here byte by byte with uncompressed (stored) deflate blocks, so
// that read_png is checked against an encoder that shares no code with stb; the PNG specification's IHDR
// layout for files write_png produced; the formulas x = b / 127.5 - 1 (improved-diffusion) and
// b = round(255 * clamp(x / 2 + 0.5, 0, 1)) (diffusers) written out in the test; torchvision's make_grid
// placement formula.

#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "ddpm/io/image.hpp"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

// A fresh directory under the system temp dir, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ =
        fs::temp_directory_path() / ("ddpm_image_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void put_be32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(v >> shift));
}

// CRC-32 computed bit by bit (the PNG specification's definition), not through a table as the library does.
std::uint32_t crc32_bitwise(const unsigned char* p, std::size_t n) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

void put_chunk(Bytes& png, const char* type, const Bytes& data) {
  put_be32(png, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  put_be32(png, crc32_bitwise(&png[start], png.size() - start));
}

// zlib stream of `raw` with stored (uncompressed) deflate blocks of at most 65535 bytes.
Bytes zlib_stored(const Bytes& raw) {
  Bytes z = {0x78, 0x01};
  std::size_t pos = 0;
  do {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);
    z.push_back(static_cast<unsigned char>(n & 0xFF));
    z.push_back(static_cast<unsigned char>(n >> 8));
    z.push_back(static_cast<unsigned char>(~n & 0xFF));
    z.push_back(static_cast<unsigned char>((~n >> 8) & 0xFF));
    z.insert(z.end(), raw.begin() + static_cast<std::ptrdiff_t>(pos),
             raw.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  } while (pos < raw.size());
  std::uint32_t a = 1, b = 0;  // Adler-32
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(z, (b << 16) | a);
  return z;
}

// A PNG file of `samples` (row-major, interleaved, big-endian 16-bit when depth is 16), filter type 0.
Bytes encode_png(int width, int height, int color_type, int depth, const Bytes& samples) {
  const int channels = color_type == 0 ? 1 : color_type == 4 ? 2 : color_type == 2 ? 3 : 4;
  const std::size_t row_bytes = static_cast<std::size_t>(width) * channels * (depth / 8);
  REQUIRE(samples.size() == row_bytes * height);
  Bytes raw;
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), samples.begin() + static_cast<std::ptrdiff_t>(y * row_bytes),
               samples.begin() + static_cast<std::ptrdiff_t>((y + 1) * row_bytes));
  }
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  put_be32(ihdr, static_cast<std::uint32_t>(width));
  put_be32(ihdr, static_cast<std::uint32_t>(height));
  ihdr.insert(ihdr.end(), {static_cast<unsigned char>(depth), static_cast<unsigned char>(color_type), 0, 0, 0});
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", zlib_stored(raw));
  put_chunk(png, "IEND", {});
  return png;
}

Bytes pattern(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& v : b) v = static_cast<unsigned char>(rng() & 0xFF);
  return b;
}

ddpm::io::Image make_image(int w, int h, int c, unsigned seed) {
  ddpm::io::Image im(w, h, c);
  const Bytes b = pattern(im.pixels.size(), seed);
  im.pixels.assign(b.begin(), b.end());
  return im;
}

bool message_contains(const std::exception& e, const std::string& text) {
  return std::string(e.what()).find(text) != std::string::npos;
}

}  // namespace

TEST_CASE("read_png decodes independently encoded 8-bit PNGs exactly", "[io][image]") {
  TempDir dir;
  // colour type -> channels: 0 gray, 4 gray + alpha, 2 RGB, 6 RGBA (PNG specification, table 11.1)
  const std::pair<int, int> kinds[] = {{0, 1}, {4, 2}, {2, 3}, {6, 4}};
  for (auto [color_type, channels] : kinds) {
    const int w = 5, h = 3;
    const Bytes samples = pattern(static_cast<std::size_t>(w * h * channels), 17u + color_type);
    const std::string path = dir.file("in" + std::to_string(color_type) + ".png");
    write_bytes(path, encode_png(w, h, color_type, 8, samples));
    const ddpm::io::Image im = ddpm::io::read_png(path);
    CHECK(im.width == w);
    CHECK(im.height == h);
    CHECK(im.channels == channels);
    CHECK(im.pixels == std::vector<std::uint8_t>(samples.begin(), samples.end()));
    CHECK(im.at(2, 4, channels - 1) == samples[((2 * w) + 4) * channels + channels - 1]);
  }
}

TEST_CASE("read_png spans several deflate blocks and reduces 16-bit samples to their high byte", "[io][image]") {
  TempDir dir;
  const int w = 200, h = 120;  // 200 * 3 + 1 bytes per row, 72120 in all: two stored blocks
  const Bytes samples = pattern(static_cast<std::size_t>(w * h * 3), 5);
  write_bytes(dir.file("big.png"), encode_png(w, h, 2, 8, samples));
  CHECK(ddpm::io::read_png(dir.file("big.png")).pixels == std::vector<std::uint8_t>(samples.begin(), samples.end()));

  const Bytes wide = pattern(4 * 2 * 2, 9);  // 4 x 2 gray, 16 bits big-endian
  write_bytes(dir.file("deep.png"), encode_png(4, 2, 0, 16, wide));
  const ddpm::io::Image im = ddpm::io::read_png(dir.file("deep.png"));
  REQUIRE(im.channels == 1);
  for (int i = 0; i < 8; ++i) CHECK(im.pixels[i] == wide[2 * i]);
}

TEST_CASE("read_png converts channels on request", "[io][image]") {
  TempDir dir;
  const Bytes gray = pattern(6, 3);
  write_bytes(dir.file("g.png"), encode_png(3, 2, 0, 8, gray));
  const ddpm::io::Image rgba = ddpm::io::read_png(dir.file("g.png"), 4);
  REQUIRE(rgba.channels == 4);
  for (int i = 0; i < 6; ++i) {
    CHECK(rgba.pixels[4 * i + 0] == gray[i]);  // gray -> RGB copies the value, alpha is opaque
    CHECK(rgba.pixels[4 * i + 1] == gray[i]);
    CHECK(rgba.pixels[4 * i + 2] == gray[i]);
    CHECK(rgba.pixels[4 * i + 3] == 255);
  }
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("g.png"), -1), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("g.png"), 5), ddpm::invalid_argument);
}

TEST_CASE("write_png then read_png gives back the exact bytes", "[io][image]") {
  TempDir dir;
  for (int c = 1; c <= 4; ++c) {
    const ddpm::io::Image im = make_image(7, 5, c, 100u + c);
    const std::string path = dir.file("rt" + std::to_string(c) + ".png");
    ddpm::io::write_png(path, im);
    CHECK(ddpm::io::read_png(path) == im);

    // The header as the PNG specification lays it out: signature, IHDR length 13, width, height,
    // bit depth 8 and the colour type of the channel count.
    const Bytes file = read_bytes(path);
    REQUIRE(file.size() > 33);
    CHECK(Bytes(file.begin(), file.begin() + 8) == Bytes{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'});
    CHECK(std::string(file.begin() + 12, file.begin() + 16) == "IHDR");
    CHECK(file[19] == 7);
    CHECK(file[23] == 5);
    CHECK(file[24] == 8);
    const int expected_type[] = {0, 0, 4, 2, 6};
    CHECK(file[25] == expected_type[c]);
  }
  // A larger RGB image whose rows compress, written over an existing file.
  ddpm::io::Image big(300, 200, 3);
  for (int y = 0; y < big.height; ++y)
    for (int x = 0; x < big.width; ++x)
      for (int ch = 0; ch < 3; ++ch) big.at(y, x, ch) = static_cast<std::uint8_t>((x * (ch + 1) + y * 3) & 0xFF);
  ddpm::io::write_png(dir.file("rt1.png"), big);
  CHECK(ddpm::io::read_png(dir.file("rt1.png")) == big);
}

TEST_CASE("read_png rejects missing, foreign, truncated and corrupt files", "[io][image]") {
  TempDir dir;
  const std::string missing = dir.file("no_such_file.png");
  REQUIRE_THROWS_AS(ddpm::io::read_png(missing), ddpm::format_error);
  try {
    ddpm::io::read_png(missing);
  } catch (const ddpm::format_error& e) {
    CHECK(message_contains(e, missing));
  }

  write_bytes(dir.file("empty.png"), {});
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("empty.png")), ddpm::format_error);

  write_bytes(dir.file("text.png"), Bytes{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("text.png")), ddpm::format_error);
  try {
    ddpm::io::read_png(dir.file("text.png"));
  } catch (const ddpm::format_error& e) {
    CHECK(message_contains(e, "not a PNG"));
  }

  // A BMP header: an image stb can decode, but not a PNG.
  write_bytes(dir.file("bmp.png"), Bytes{'B', 'M', 0x3A, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0});
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("bmp.png")), ddpm::format_error);

  ddpm::io::write_png(dir.file("good.png"), make_image(16, 16, 3, 1));
  const Bytes good = read_bytes(dir.file("good.png"));
  for (std::size_t keep : {std::size_t{8}, std::size_t{20}, good.size() / 2, good.size() - 12, good.size() - 1}) {
    write_bytes(dir.file("cut.png"), Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep)));
    INFO("truncated to " << keep << " of " << good.size() << " bytes");
    REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("cut.png")), ddpm::format_error);
  }

  Bytes flipped = good;
  flipped[good.size() / 2] ^= 0x10;  // inside IDAT: its CRC no longer matches
  write_bytes(dir.file("flipped.png"), flipped);
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("flipped.png")), ddpm::format_error);

  // A well-formed container (correct CRCs) whose IDAT is not a zlib stream: stb's decoder must refuse it.
  Bytes bogus = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  put_be32(ihdr, 4);
  put_be32(ihdr, 4);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
  put_chunk(bogus, "IHDR", ihdr);
  put_chunk(bogus, "IDAT", pattern(40, 77));
  put_chunk(bogus, "IEND", {});
  write_bytes(dir.file("bogus.png"), bogus);
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("bogus.png")), ddpm::format_error);

  // The container check requires IHDR first.
  Bytes no_ihdr = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  put_chunk(no_ihdr, "IEND", {});
  write_bytes(dir.file("no_ihdr.png"), no_ihdr);
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("no_ihdr.png")), ddpm::format_error);

  // A directory is not a readable file.
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("")), ddpm::format_error);
}

TEST_CASE("write_png validates the image and reports unwritable paths", "[io][image]") {
  TempDir dir;
  REQUIRE_THROWS_AS(ddpm::io::write_png(dir.file("a.png"), ddpm::io::Image{}), ddpm::invalid_argument);
  ddpm::io::Image wrong_size(4, 4, 3);
  wrong_size.pixels.pop_back();
  REQUIRE_THROWS_AS(ddpm::io::write_png(dir.file("a.png"), wrong_size), ddpm::invalid_argument);
  ddpm::io::Image five = make_image(2, 2, 4, 1);
  five.channels = 5;
  five.pixels.resize(20);
  REQUIRE_THROWS_AS(ddpm::io::write_png(dir.file("a.png"), five), ddpm::invalid_argument);
  CHECK_FALSE(fs::exists(dir.file("a.png")));

  const std::string unwritable = dir.file("no_such_dir/a.png");
  REQUIRE_THROWS_AS(ddpm::io::write_png(unwritable, make_image(2, 2, 3, 1)), ddpm::format_error);
  try {
    ddpm::io::write_png(unwritable, make_image(2, 2, 3, 1));
  } catch (const ddpm::format_error& e) {
    CHECK(message_contains(e, unwritable));
  }
}

TEST_CASE("Image validates its shape", "[io][image]") {
  REQUIRE_THROWS_AS(ddpm::io::Image(0, 3, 3), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::Image(3, -1, 3), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::Image(3, 3, 0), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::Image(3, 3, 5), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::Image(1 << 20, 1 << 20, 3), ddpm::invalid_argument);  // 3 TiB: beyond PNG's int sizes
  const ddpm::io::Image im(3, 2, 2, 9);
  CHECK(im.pixels.size() == 12);
  CHECK(im.at(1, 2, 1) == 9);
}

TEMPLATE_TEST_CASE("pixel <-> value conversion is exact at the 256 levels", "[io][image]", float, double) {
  using S = TestType;
  for (int b = 0; b < 256; ++b) {
    const auto byte = static_cast<std::uint8_t>(b);
    const S x = ddpm::io::pixel_to_value<S>(byte);
    // improved-diffusion: arr.astype(float32) / 127.5 - 1, evaluated in S
    CHECK(x == static_cast<S>(b) / static_cast<S>(127.5) - static_cast<S>(1));
    // diffusers: 2 * (b / 255) - 1, equal up to rounding
    const S diffusers = static_cast<S>(2) * (static_cast<S>(b) / static_cast<S>(255)) - static_cast<S>(1);
    CHECK(std::abs(x - diffusers) <= 2 * std::numeric_limits<S>::epsilon());
    CHECK(ddpm::io::value_to_pixel(x) == byte);
    CHECK(ddpm::io::value_to_pixel(diffusers) == byte);
  }
  CHECK(ddpm::io::pixel_to_value<S>(0) == S(-1));
  CHECK(ddpm::io::pixel_to_value<S>(255) == S(1));
}

TEMPLATE_TEST_CASE("value_to_pixel rounds to the nearest level and clamps", "[io][image]", float, double) {
  using S = TestType;
  // diffusers' reference: round(255 * clamp(x / 2 + 0.5, 0, 1)); between levels b and b + 1 the value
  // (b + f) / 127.5 - 1 goes to b for f < 1/2 and to b + 1 for f > 1/2.
  for (int b = 0; b < 255; ++b) {
    CHECK(ddpm::io::value_to_pixel(static_cast<S>((b + 0.45) / 127.5 - 1)) == b);
    CHECK(ddpm::io::value_to_pixel(static_cast<S>((b + 0.55) / 127.5 - 1)) == b + 1);
  }
  CHECK(ddpm::io::value_to_pixel(S(0)) == 128);  // 127.5 exactly: round half to even (NumPy) gives 128
  CHECK(ddpm::io::value_to_pixel(S(-1.5)) == 0);
  CHECK(ddpm::io::value_to_pixel(S(3)) == 255);
  CHECK(ddpm::io::value_to_pixel(-std::numeric_limits<S>::infinity()) == 0);
  CHECK(ddpm::io::value_to_pixel(std::numeric_limits<S>::max()) == 255);
}

TEMPLATE_TEST_CASE("image_to_tensor and tensor_to_image are planar / interleaved inverses", "[io][image]", float,
                   double) {
  using S = TestType;
  const ddpm::io::Image im = make_image(5, 3, 3, 42);
  const ddpm::Tensor<S, 3> x = ddpm::io::image_to_tensor<S>(im);
  REQUIRE(x.dimension(0) == 3);
  REQUIRE(x.dimension(1) == 3);
  REQUIRE(x.dimension(2) == 5);
  for (int y = 0; y < 3; ++y)
    for (int c = 0; c < 3; ++c)
      for (int col = 0; col < 5; ++col) CHECK(x(c, y, col) == ddpm::io::pixel_to_value<S>(im.at(y, col, c)));
  CHECK(ddpm::io::tensor_to_image(x) == im);
  // A read-only map over the same buffer converts the same way.
  const ddpm::ConstTensorMap<S, 3> view(x.data(), 3, 3, 5);
  CHECK(ddpm::io::tensor_to_image(view) == im);

  for (int c : {1, 2, 4}) {
    const ddpm::io::Image other = make_image(4, 6, c, 7u + c);
    CHECK(ddpm::io::tensor_to_image(ddpm::io::image_to_tensor<S>(other)) == other);
  }
}

TEMPLATE_TEST_CASE("images_to_tensor and tensor_to_images convert batches", "[io][image]", float, double) {
  using S = TestType;
  const std::vector<ddpm::io::Image> images = {make_image(4, 3, 3, 1), make_image(4, 3, 3, 2)};
  const ddpm::Tensor<S, 4> batch = ddpm::io::images_to_tensor<S>(images);
  REQUIRE(batch.dimension(0) == 2);
  REQUIRE(batch.dimension(1) == 3);
  REQUIRE(batch.dimension(2) == 3);
  REQUIRE(batch.dimension(3) == 4);
  CHECK(batch(1, 2, 0, 3) == ddpm::io::pixel_to_value<S>(images[1].at(0, 3, 2)));
  CHECK(ddpm::io::tensor_to_images(batch) == images);

  const std::vector<ddpm::io::Image> mixed = {make_image(4, 3, 3, 1), make_image(3, 4, 3, 2)};
  REQUIRE_THROWS_AS(ddpm::io::images_to_tensor<S>(mixed), ddpm::invalid_argument);
  const std::vector<ddpm::io::Image> channels = {make_image(4, 3, 3, 1), make_image(4, 3, 1, 2)};
  REQUIRE_THROWS_AS(ddpm::io::images_to_tensor<S>(channels), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::images_to_tensor<S>(std::span<const ddpm::io::Image>{}), ddpm::invalid_argument);
  const std::vector<ddpm::io::Image> empty_one = {ddpm::io::Image{}};
  REQUIRE_THROWS_AS(ddpm::io::images_to_tensor<S>(empty_one), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::image_to_tensor<S>(ddpm::io::Image{}), ddpm::invalid_argument);
}

TEMPLATE_TEST_CASE("tensor conversions reject bad shapes and non-finite values", "[io][image]", float, double) {
  using S = TestType;
  ddpm::Tensor<S, 3> five(5, 2, 2);
  five.setZero();
  REQUIRE_THROWS_AS(ddpm::io::tensor_to_image(five), ddpm::invalid_argument);
  ddpm::Tensor<S, 3> flat(3, 0, 4);
  REQUIRE_THROWS_AS(ddpm::io::tensor_to_image(flat), ddpm::invalid_argument);
  ddpm::Tensor<S, 3> nan(3, 2, 2);
  nan.setZero();
  nan(2, 1, 1) = std::numeric_limits<S>::quiet_NaN();
  REQUIRE_THROWS_AS(ddpm::io::tensor_to_image(nan), ddpm::invalid_argument);
  nan(2, 1, 1) = std::numeric_limits<S>::infinity();
  REQUIRE_THROWS_AS(ddpm::io::tensor_to_image(nan), ddpm::invalid_argument);

  ddpm::Tensor<S, 4> none(0, 3, 2, 2);
  REQUIRE_THROWS_AS(ddpm::io::tensor_to_images(none), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::make_grid(none, 4), ddpm::invalid_argument);
  ddpm::Tensor<S, 4> zero_channels(2, 0, 2, 2);
  REQUIRE_THROWS_AS(ddpm::io::tensor_to_images(zero_channels), ddpm::invalid_argument);
  ddpm::Tensor<S, 4> bad(2, 3, 2, 2);
  bad.setZero();
  bad(1, 0, 0, 0) = std::numeric_limits<S>::quiet_NaN();
  REQUIRE_THROWS_AS(ddpm::io::tensor_to_images(bad), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::make_grid(bad, 2), ddpm::invalid_argument);
}

TEMPLATE_TEST_CASE("make_grid places samples as torchvision's make_grid does", "[io][image]", float, double) {
  using S = TestType;
  // Five 2 x 3 (H x W) RGB samples, each a constant colour, in a grid of 3 columns with 1 pixel of padding.
  const int n = 5, h = 2, w = 3, columns = 3, padding = 1;
  const std::uint8_t pad = 7;
  ddpm::Tensor<S, 4> x(n, 3, h, w);
  auto colour = [](int k, int c) { return static_cast<std::uint8_t>(40 * k + 10 * c + 20); };
  for (int k = 0; k < n; ++k)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < h; ++y)
        for (int col = 0; col < w; ++col) x(k, c, y, col) = ddpm::io::pixel_to_value<S>(colour(k, c));
  const ddpm::io::Image grid = ddpm::io::make_grid(x, columns, padding, pad);
  // torchvision: xmaps = min(nrow, N) = 3, ymaps = ceil(5 / 3) = 2, size (ymaps * (H + p) + p, xmaps * (W + p) + p)
  REQUIRE(grid.width == 3 * (w + padding) + padding);
  REQUIRE(grid.height == 2 * (h + padding) + padding);
  REQUIRE(grid.channels == 3);
  for (int gy = 0; gy < grid.height; ++gy) {
    for (int gx = 0; gx < grid.width; ++gx) {
      // Which cell, and where inside it: cells start at padding + i * (size + padding).
      const int cy = (gy - padding) / (h + padding), oy = (gy - padding) % (h + padding);
      const int cx = (gx - padding) / (w + padding), ox = (gx - padding) % (w + padding);
      const int k = cy * columns + cx;
      const bool inside = gy >= padding && gx >= padding && oy < h && ox < w && k < n;
      for (int c = 0; c < 3; ++c) {
        INFO("grid pixel (" << gy << ", " << gx << ") channel " << c);
        CHECK(grid.at(gy, gx, c) == (inside ? colour(k, c) : pad));
      }
    }
  }

  // More columns than samples: one row as wide as the batch; no padding: samples touch.
  ddpm::Tensor<S, 4> two(2, 1, 2, 2);
  for (int k = 0; k < 2; ++k)
    for (int i = 0; i < 4; ++i) two.data()[k * 4 + i] = ddpm::io::pixel_to_value<S>(static_cast<std::uint8_t>(10 * k + i));
  const ddpm::io::Image row = ddpm::io::make_grid(two, 8, 0);
  REQUIRE(row.width == 4);
  REQUIRE(row.height == 2);
  REQUIRE(row.channels == 1);
  CHECK(row.pixels == std::vector<std::uint8_t>{0, 1, 10, 11, 2, 3, 12, 13});

  REQUIRE_THROWS_AS(ddpm::io::make_grid(two, 0), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::io::make_grid(two, 2, -1), ddpm::invalid_argument);
  ddpm::Tensor<S, 4> five(1, 5, 2, 2);
  five.setZero();
  REQUIRE_THROWS_AS(ddpm::io::make_grid(five, 1), ddpm::invalid_argument);
}

TEST_CASE("read_png refuses images above its pixel limit before decoding", "[io][image][hostile]") {
  TempDir dir;
  // A 40-byte-payload file declaring 16384 x 16384 RGBA (1 GiB decoded): refused from its header by the
  // default limit, before stb allocates anything (issue 13).
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  put_be32(ihdr, 16384);
  put_be32(ihdr, 16384);
  ihdr.insert(ihdr.end(), {8, 6, 0, 0, 0});
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", zlib_stored(Bytes(16, 0)));
  put_chunk(png, "IEND", {});
  write_bytes(dir.file("huge.png"), png);
  REQUIRE(ddpm::io::kDefaultPngPixelLimit == (1LL << 26));
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("huge.png")), ddpm::format_error);
  REQUIRE_THROWS_WITH(ddpm::io::read_png(dir.file("huge.png")),
                      Catch::Contains("huge.png") && Catch::Contains("16384 x 16384") &&
                          Catch::Contains("268435456 pixels") && Catch::Contains("67108864"));
  // The limit is the caller's: exactly width * height pixels pass, one fewer does not.
  const ddpm::io::Image im = make_image(40, 30, 3, 7);
  ddpm::io::write_png(dir.file("small.png"), im);
  CHECK(ddpm::io::read_png(dir.file("small.png"), 0, 1200).pixels == im.pixels);
  REQUIRE_THROWS_WITH(ddpm::io::read_png(dir.file("small.png"), 0, 1199),
                      Catch::Contains("40 x 30") && Catch::Contains("1200 pixels") && Catch::Contains("1199"));
  REQUIRE_THROWS_AS(ddpm::io::read_png(dir.file("small.png"), 0, 0), ddpm::invalid_argument);
  REQUIRE_THROWS_WITH(ddpm::io::read_png(dir.file("small.png"), 0, -5), Catch::Contains("max_pixels is -5"));
}

TEST_CASE("The former ddpm:: image names are the ddpm::io ones, kept for one release", "[io][image]") {
  // io/image.hpp moved from namespace ddpm to ddpm::io (beside safetensors); the old spellings still name
  // the same entities, so code written against them compiles unchanged.
  STATIC_REQUIRE(std::is_same_v<ddpm::Image, ddpm::io::Image>);
  STATIC_REQUIRE(ddpm::kDefaultPngPixelLimit == ddpm::io::kDefaultPngPixelLimit);
  CHECK(&ddpm::read_png == &ddpm::io::read_png);
  CHECK(&ddpm::write_png == &ddpm::io::write_png);
  CHECK(&ddpm::pixel_to_value<float> == &ddpm::io::pixel_to_value<float>);
  ddpm::Tensor<float, 4> x(2, 3, 4, 4);
  x.setZero();
  const ddpm::Image grid = ddpm::make_grid(x, 2, 1);  // the image grid, beside the samplers' make_grid
  CHECK(grid.width == 2 * 4 + 3 * 1);
  CHECK(ddpm::tensor_to_images(x).size() == 2);
}
