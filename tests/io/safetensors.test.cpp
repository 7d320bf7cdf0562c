// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Tests of ddpm/io/safetensors.hpp against independent references: the IEEE definitions of binary16 and
// bfloat16 (values computed with ldexp from the fields; rounding checked at every midpoint), exact known bit
// patterns, and a fixture written without ddpm by PyTorch (tests/data/io/make_reference_safetensors.py).
// Malformed files are made here, byte by byte, one defect each.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ddpm/io/safetensors.hpp"

namespace {

using ddpm::io::DType;
using ddpm::io::Safetensors;
using ddpm::io::SafetensorsWriter;

// A file with header `header` (its length written as `declared`, when given) and `data_size` data bytes.
std::vector<std::uint8_t> make_file(const std::string& header, std::size_t data_size = 0,
                                    std::optional<std::uint64_t> declared = std::nullopt) {
  const std::uint64_t n = declared.value_or(header.size());
  std::vector<std::uint8_t> out(8 + header.size() + data_size);
  for (std::size_t i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(n >> (8 * i));
  for (std::size_t i = 0; i < header.size(); ++i) out[8 + i] = static_cast<std::uint8_t>(header[i]);
  for (std::size_t i = 0; i < data_size; ++i) out[8 + header.size() + i] = static_cast<std::uint8_t>(i * 37 + 11);
  return out;
}

// {"NAME": {"dtype": DTYPE, "shape": SHAPE, "data_offsets": OFFSETS}} as text, for hand-made headers.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape + ", \"data_offsets\": " + offsets +
         "}";
}

// The file must be rejected with a ddpm::format_error whose message contains every one of `needles`.
void require_format_error(const std::vector<std::uint8_t>& bytes, const std::vector<std::string>& needles) {
  REQUIRE_THROWS_AS(Safetensors::parse(bytes, "bad.safetensors"), ddpm::format_error);
  try {
    (void)Safetensors::parse(bytes, "bad.safetensors");
  } catch (const ddpm::format_error& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Contains("bad.safetensors"));
    for (const std::string& needle : needles) CHECK_THAT(message, Catch::Contains(needle));
  }
}

void require_format_error(const std::string& header, std::size_t data_size, const std::vector<std::string>& needles) {
  INFO("header: " << header << ", data bytes: " << data_size);
  require_format_error(make_file(header, data_size), needles);
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// The IEEE definition of a binary format with E exponent bits and F fraction bits: the value of `bits`.
double formula_value(std::uint32_t bits, int E, int F) {
  const bool negative = (bits >> (E + F)) & 1u;
  const int e = static_cast<int>((bits >> F) & ((1u << E) - 1));
  const int f = static_cast<int>(bits & ((1u << F) - 1));
  const int bias = (1 << (E - 1)) - 1;
  double magnitude;
  if (e == (1 << E) - 1) {
    magnitude = f != 0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (e == 0) {
    magnitude = std::ldexp(f, 1 - bias - F);
  } else {
    magnitude = std::ldexp(f + (1 << F), e - bias - F);
  }
  return negative ? -magnitude : magnitude;
}

template <class S, int R>
ddpm::Tensor<S, R> counting_tensor(const std::array<Eigen::Index, static_cast<std::size_t>(R)>& dims) {
  ddpm::Tensor<S, R> t;
  if constexpr (R > 0) t.resize(dims);
  // Multiples of 1/8 in [-8, 8]: at most 7 significant bits, so exact in F16, BF16, F32 and F64.
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<S>(static_cast<int>(i % 129) - 64) / S(8);
  return t;
}

template <class S, int R>
void require_round_trip(DType dtype, const std::array<Eigen::Index, static_cast<std::size_t>(R)>& dims) {
  const ddpm::Tensor<S, R> t = counting_tensor<S, R>(dims);
  SafetensorsWriter w;
  w.add("t", t, dtype);
  w.add("z_other", t);
  const Safetensors st = Safetensors::parse(w.to_bytes());
  const auto& info = st.info("t");
  REQUIRE(info.dtype == dtype);
  REQUIRE(info.shape.size() == static_cast<std::size_t>(R));
  for (int i = 0; i < R; ++i) REQUIRE(info.shape[static_cast<std::size_t>(i)] == dims[static_cast<std::size_t>(i)]);
  REQUIRE(info.num_elements() == static_cast<std::size_t>(t.size()));
  REQUIRE(st.bytes("t").size() == static_cast<std::size_t>(t.size()) * ddpm::io::dtype_size(dtype));
  const ddpm::Tensor<S, R> back = st.to_tensor<S, R>("t");
  REQUIRE(back.size() == t.size());
  for (int i = 0; i < R; ++i) REQUIRE(back.dimension(i) == t.dimension(i));
  for (Eigen::Index i = 0; i < t.size(); ++i) REQUIRE(back.data()[i] == t.data()[i]);
  const std::vector<double> as_double = st.to_vector<double>("t");
  REQUIRE(as_double.size() == static_cast<std::size_t>(t.size()));
  for (Eigen::Index i = 0; i < t.size(); ++i) {
    REQUIRE(as_double[static_cast<std::size_t>(i)] == static_cast<double>(t.data()[i]));
  }
  // The default dtype follows the scalar: F32 for float, F64 for double.
  REQUIRE(st.info("z_other").dtype == (std::is_same_v<S, double> ? DType::F64 : DType::F32));
}

std::filesystem::path temp_file(const char* stem) {
  return std::filesystem::temp_directory_path() /
         (std::string(stem) + "_" + std::to_string(std::random_device{}()) + ".safetensors");
}

}  // namespace

TEST_CASE("safetensors dtype names and sizes", "[io][safetensors]") {
  const std::vector<std::tuple<DType, const char*, std::size_t>> table = {
      {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},   {DType::I8, "I8", 1},     {DType::I16, "I16", 2},
      {DType::U16, "U16", 2},   {DType::I32, "I32", 4}, {DType::U32, "U32", 4},   {DType::I64, "I64", 8},
      {DType::U64, "U64", 8},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2}, {DType::F32, "F32", 4},
      {DType::F64, "F64", 8}};
  for (const auto& [dtype, name, size] : table) {
    CHECK(ddpm::io::dtype_name(dtype) == name);
    CHECK(ddpm::io::dtype_size(dtype) == size);
    CHECK(ddpm::io::dtype_from_name(name) == dtype);
    CHECK(ddpm::io::is_floating_point(dtype) ==
          (dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F32 || dtype == DType::F64));
  }
  for (const char* unknown : {"f32", "F8_E4M3", "C64", "F4", "", "F32 ", "float32"}) {
    CHECK_FALSE(ddpm::io::dtype_from_name(unknown).has_value());
  }
}

TEST_CASE("F16 and BF16 decode known bit patterns exactly", "[io][safetensors][f16]") {
  using ddpm::io::detail::bf16_value;
  using ddpm::io::detail::f16_value;
  CHECK(f16_value(0x3C00) == 1.0f);
  CHECK(f16_value(0xC000) == -2.0f);
  CHECK(f16_value(0x3555) == 0.333251953125f);
  CHECK(f16_value(0x7BFF) == 65504.0f);
  CHECK(f16_value(0x0400) == std::ldexp(1.0f, -14));     // smallest normal
  CHECK(f16_value(0x0001) == std::ldexp(1.0f, -24));     // smallest subnormal
  CHECK(f16_value(0x03FF) == std::ldexp(1023.0f, -24));  // largest subnormal
  CHECK(f16_value(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(f16_value(0x7C00) == std::numeric_limits<float>::infinity());
  CHECK(f16_value(0xFC00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(f16_value(0x7E00)));
  CHECK(std::isnan(f16_value(0xFC01)));
  CHECK(f16_value(0x0000) == 0.0f);
  CHECK_FALSE(std::signbit(f16_value(0x0000)));
  CHECK(f16_value(0x8000) == 0.0f);
  CHECK(std::signbit(f16_value(0x8000)));

  CHECK(bf16_value(0x3F80) == 1.0f);
  CHECK(bf16_value(0xC000) == -2.0f);
  CHECK(bf16_value(0x4049) == 3.140625f);
  CHECK(bf16_value(0x7F7F) == std::ldexp(255.0f, 127 - 7));  // largest finite
  CHECK(bf16_value(0x0080) == std::ldexp(1.0f, -126));       // smallest normal
  CHECK(bf16_value(0x0001) == std::ldexp(1.0f, -133));       // smallest subnormal (a float subnormal)
  CHECK(bf16_value(0x7F80) == std::numeric_limits<float>::infinity());
  CHECK(bf16_value(0xFF80) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bf16_value(0x7FC0)));
  CHECK(std::signbit(bf16_value(0x8000)));
}

TEST_CASE("F16 and BF16 encode known values to the nearest pattern, ties to even", "[io][safetensors][f16]") {
  using ddpm::io::detail::bf16_bits;
  using ddpm::io::detail::f16_bits;
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(f16_bits(1.0) == 0x3C00);
  CHECK(f16_bits(-2.0) == 0xC000);
  CHECK(f16_bits(0.1) == 0x2E66);
  CHECK(f16_bits(65504.0) == 0x7BFF);
  CHECK(f16_bits(65519.0) == 0x7BFF);  // below the midpoint to 2^16
  CHECK(f16_bits(65520.0) == 0x7C00);  // the midpoint: ties to even, which is "2^16", i.e. infinity
  CHECK(f16_bits(-1e10) == 0xFC00);
  CHECK(f16_bits(inf) == 0x7C00);
  CHECK(f16_bits(-inf) == 0xFC00);
  CHECK(f16_bits(std::ldexp(1.0, -24)) == 0x0001);
  CHECK(f16_bits(std::ldexp(1.0, -25)) == 0x0000);         // tie between 0 and the smallest subnormal
  CHECK(f16_bits(std::ldexp(1.0 + 1e-6, -25)) == 0x0001);  // just above the tie
  CHECK(f16_bits(std::ldexp(3.0, -25)) == 0x0002);         // tie between 1 and 2 ulps -> 2
  CHECK(f16_bits(-std::ldexp(1.0, -26)) == 0x8000);        // underflow keeps the sign
  CHECK(f16_bits(std::ldexp(1.0, -14)) == 0x0400);
  CHECK(f16_bits(std::ldexp(1023.0, -24)) == 0x03FF);
  CHECK(f16_bits(std::ldexp(2047.0, -25)) == 0x0400);     // the largest subnormal's tie rounds up to normal
  CHECK(f16_bits(1.0 + std::ldexp(1.0, -11)) == 0x3C00);  // tie -> even 0x3C00
  CHECK(f16_bits(1.0 + std::ldexp(3.0, -11)) == 0x3C02);  // tie -> even 0x3C02
  CHECK(f16_bits(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)) == 0x3C01);  // rounded once, from double
  CHECK(f16_bits(0.0) == 0x0000);
  CHECK(f16_bits(-0.0) == 0x8000);
  const std::uint16_t nan16 = f16_bits(std::numeric_limits<double>::quiet_NaN());
  CHECK((nan16 & 0x7C00) == 0x7C00);
  CHECK((nan16 & 0x03FF) != 0);

  CHECK(bf16_bits(1.0) == 0x3F80);
  CHECK(bf16_bits(3.14159265358979) == 0x4049);
  CHECK(bf16_bits(1.0 + std::ldexp(1.0, -8)) == 0x3F80);          // tie -> even
  CHECK(bf16_bits(1.0 + std::ldexp(3.0, -8)) == 0x3F82);          // tie -> even
  CHECK(bf16_bits(std::numeric_limits<float>::max()) == 0x7F80);  // beyond the last midpoint
  CHECK(bf16_bits(std::ldexp(255.0, 120)) == 0x7F7F);
  CHECK(bf16_bits(std::ldexp(1.0, -133)) == 0x0001);
  CHECK(bf16_bits(std::ldexp(1.0, -134)) == 0x0000);  // tie with 0
  CHECK(bf16_bits(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(bf16_bits(1e300) == 0x7F80);
  CHECK(bf16_bits(-1e-300) == 0x8000);
  const std::uint16_t nan_bf = bf16_bits(-std::numeric_limits<double>::quiet_NaN());
  CHECK((nan_bf & 0x7F80) == 0x7F80);
  CHECK((nan_bf & 0x007F) != 0);
}

TEST_CASE("F16 and BF16 conversions agree with the IEEE definition on every pattern", "[io][safetensors][f16]") {
  struct Format {
    const char* name;
    int E, F;
    std::uint16_t (*encode)(double);
    float (*decode)(std::uint16_t);
  };
  const Format formats[] = {{"F16", 5, 10, [](double x) { return ddpm::io::detail::f16_bits(x); },
                             [](std::uint16_t b) { return ddpm::io::detail::f16_value(b); }},
                            {"BF16", 8, 7, [](double x) { return ddpm::io::detail::bf16_bits(x); },
                             [](std::uint16_t b) { return ddpm::io::detail::bf16_value(b); }}};
  for (const Format& fmt : formats) {
    INFO(fmt.name);
    const std::uint32_t inf_bits = ((1u << fmt.E) - 1) << fmt.F;
    const std::uint32_t sign_bit = 1u << (fmt.E + fmt.F);
    long decode_mismatches = 0, encode_mismatches = 0, first_bad = -1;
    for (std::uint32_t b = 0; b < 65536; ++b) {
      const double expected = formula_value(b, fmt.E, fmt.F);
      const double got = fmt.decode(static_cast<std::uint16_t>(b));
      const bool same =
          std::isnan(expected) ? std::isnan(got) : (got == expected && std::signbit(got) == std::signbit(expected));
      if (!same) {
        ++decode_mismatches;
        if (first_bad < 0) first_bad = b;
      }
    }
    INFO("first decode mismatch: " << first_bad);
    REQUIRE(decode_mismatches == 0);
    // Every finite positive pattern b and its successor (2^(emax+1) standing in for infinity): the exact
    // values encode to themselves, the midpoint to the even one of the two, a hair either side of it to the
    // nearer one; the same with the sign flipped.
    for (std::uint32_t b = 0; b < inf_bits; ++b) {
      const double lo = formula_value(b, fmt.E, fmt.F);
      const double hi = b + 1 == inf_bits ? std::ldexp(1.0, (1 << (fmt.E - 1))) : formula_value(b + 1, fmt.E, fmt.F);
      const double mid = (lo + hi) / 2;  // exact: both have at most 12 significant bits
      const std::uint32_t even = (b % 2 == 0) ? b : b + 1;
      const std::pair<double, std::uint32_t> cases[] = {
          {lo, b}, {mid, even}, {std::nextafter(mid, 0.0), b}, {std::nextafter(mid, hi), b + 1}};
      for (const auto& [x, want] : cases) {
        if (fmt.encode(x) != want || fmt.encode(-x) != (want | sign_bit)) {
          ++encode_mismatches;
          if (first_bad < 0) first_bad = b;
        }
      }
    }
    INFO("first encode mismatch at pattern " << first_bad);
    REQUIRE(encode_mismatches == 0);
  }
}

TEST_CASE("safetensors reads a file written by PyTorch and writes the same 16-bit patterns",
          "[io][safetensors][reference]") {
  const Safetensors st = Safetensors::load(DDPM_TEST_DATA_DIR "/io/reference.safetensors");
  REQUIRE(st.names() == std::vector<std::string>{"as_bf16", "as_f16", "bf16_as_f32", "empty", "f16_as_f32", "f64",
                                                 "f64_as_f32", "pad", "scalar", "source", "steps"});
  REQUIRE(st.metadata() ==
          std::map<std::string, std::string>{{"format", "pt"}, {"producer", "make_reference_safetensors.py"}});
  REQUIRE(st.info("as_f16").dtype == DType::F16);
  REQUIRE(st.info("as_bf16").dtype == DType::BF16);
  REQUIRE(st.info("f64").dtype == DType::F64);
  REQUIRE(st.info("f64").shape == std::vector<std::int64_t>{2, 3, 4});
  REQUIRE(st.info("steps").dtype == DType::I64);
  REQUIRE(st.info("pad").begin == 0);  // 3 bytes: every later tensor starts misaligned

  const std::vector<float> source = st.to_vector<float>("source");
  REQUIRE(source.size() == 275);
  for (const char* half : {"f16", "bf16"}) {
    INFO(half);
    const std::string packed = std::string("as_") + half;
    const DType dtype = std::string(half) == "f16" ? DType::F16 : DType::BF16;
    // Decoding: ours against torch's .to(float32), value by value.
    const std::vector<float> ours = st.to_vector<float>(packed);
    const std::vector<float> torch = st.to_vector<float>(std::string(half) + "_as_f32");
    REQUIRE(ours.size() == torch.size());
    for (std::size_t i = 0; i < ours.size(); ++i) {
      INFO("element " << i << ": " << torch[i]);
      if (std::isnan(torch[i])) {
        CHECK(std::isnan(ours[i]));
      } else {
        CHECK(ours[i] == torch[i]);
        CHECK(std::signbit(ours[i]) == std::signbit(torch[i]));
      }
    }
    // Encoding: our writer's bytes against torch's .to(float16 / bfloat16), pattern by pattern.
    ddpm::ConstTensorMap<float, 1> src(source.data(), static_cast<Eigen::Index>(source.size()));
    SafetensorsWriter w;
    w.add("x", src, dtype);
    const Safetensors mine = Safetensors::parse(w.to_bytes());
    const auto a = mine.bytes("x");
    const auto b = st.bytes(packed);
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < source.size(); ++i) {
      std::uint16_t x, y;
      std::memcpy(&x, a.data() + 2 * i, 2);
      std::memcpy(&y, b.data() + 2 * i, 2);
      INFO("element " << i << ": " << source[i] << " -> ours " << x << ", torch " << y);
      if (std::isnan(source[i])) {
        CHECK(std::isnan(mine.to_vector<float>("x")[i]));
      } else {
        CHECK(x == y);
      }
    }
  }
  // F64 -> float: rounded to nearest, as torch's .to(float32).
  const std::vector<float> f64 = st.to_vector<float>("f64");
  const std::vector<float> f64_torch = st.to_vector<float>("f64_as_f32");
  REQUIRE(f64 == f64_torch);
  const ddpm::Tensor<double, 3> f64_tensor = st.to_tensor<double, 3>("f64");
  REQUIRE(f64_tensor.dimension(0) == 2);
  REQUIRE(f64_tensor.dimension(2) == 4);
  REQUIRE(static_cast<float>(f64_tensor(1, 2, 3)) == f64_torch[23]);  // C order: 1*12 + 2*4 + 3

  REQUIRE(st.to_tensor<float, 0>("scalar")() == 0.15625f);
  const auto empty = st.to_tensor<float, 2>("empty");
  REQUIRE(empty.dimension(0) == 0);
  REQUIRE(empty.dimension(1) == 3);
  REQUIRE(st.bytes("empty").empty());

  const auto steps_bytes = st.bytes("steps");
  REQUIRE(steps_bytes.size() == 24);
  std::int64_t steps[3];
  std::memcpy(steps, steps_bytes.data(), 24);
  REQUIRE(steps[0] == 0);
  REQUIRE(steps[1] == 500);
  REQUIRE(steps[2] == 999);
  const auto pad = st.bytes("pad");
  REQUIRE(std::vector<std::uint8_t>(pad.begin(), pad.end()) == std::vector<std::uint8_t>{1, 2, 3});

  REQUIRE_THROWS_AS(st.to_vector<float>("steps"), ddpm::format_error);
  CHECK_THAT(what_of([&] { (void)st.to_vector<float>("steps"); }),
             Catch::Contains("'steps'") && Catch::Contains("I64"));
  REQUIRE_THROWS_AS((st.to_tensor<float, 2>("f64")), ddpm::format_error);
  CHECK_THAT(what_of([&] { (void)st.to_tensor<float, 2>("f64"); }),
             Catch::Contains("'f64'") && Catch::Contains("rank 3") && Catch::Contains("rank 2"));
  REQUIRE_FALSE(st.contains("nope"));
  REQUIRE(st.contains("f64"));
  REQUIRE_THROWS_AS(st.info("nope"), ddpm::format_error);
  REQUIRE_THROWS_AS(st.bytes("nope"), ddpm::format_error);
  CHECK_THAT(what_of([&] { (void)st.to_vector<double>("nope"); }), Catch::Contains("'nope'"));
}

TEMPLATE_TEST_CASE("safetensors round trip: every float dtype, ranks 0 to 4", "[io][safetensors]", float, double) {
  using S = TestType;
  for (DType dtype : {DType::F16, DType::BF16, DType::F32, DType::F64}) {
    INFO("dtype " << ddpm::io::dtype_name(dtype));
    require_round_trip<S, 0>(dtype, {});
    require_round_trip<S, 1>(dtype, {7});
    require_round_trip<S, 2>(dtype, {3, 5});
    require_round_trip<S, 3>(dtype, {2, 3, 4});
    require_round_trip<S, 4>(dtype, {2, 3, 4, 5});
    require_round_trip<S, 2>(dtype, {0, 3});  // empty
    require_round_trip<S, 4>(dtype, {1, 1, 0, 2});
  }
}

TEMPLATE_TEST_CASE("safetensors writer: rounding, layout, metadata, names", "[io][safetensors]", float, double) {
  using S = TestType;
  // Values not representable in the narrower dtypes come back rounded to nearest.
  ddpm::Tensor<S, 1> x(4);
  x.setValues({S(0.1), S(1) / S(3), S(-2.5e-6), S(7e4)});
  SafetensorsWriter w;
  w.add("x16", x, DType::F16);
  w.add("xbf", x, DType::BF16);
  w.add("x32", x, DType::F32);
  w.add("x64", x, DType::F64);
  ddpm::Tensor<float, 2> m(2, 3);
  m.setConstant(0.5f);
  w.add("a_map", ddpm::TensorMap<float, 2>(m.data(), 2, 3));
  const std::uint8_t raw[3] = {7, 8, 9};
  w.add_raw("b_u8", DType::U8, {3}, raw);
  w.set_metadata("format", "pt");
  w.set_metadata("note", "first");
  w.set_metadata("note", "second");  // replaces
  const std::vector<std::uint8_t> bytes = w.to_bytes();
  const Safetensors st = Safetensors::parse(bytes);

  REQUIRE(st.names() == std::vector<std::string>{"a_map", "b_u8", "x16", "x32", "x64", "xbf"});
  REQUIRE(st.size() == 6);
  REQUIRE(st.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "second"}});
  for (std::size_t i = 0; i < 4; ++i) {
    const double v = static_cast<double>(x(static_cast<Eigen::Index>(i)));
    CHECK(st.to_vector<double>("x16")[i] == formula_value(ddpm::io::detail::f16_bits(v), 5, 10));
    CHECK(st.to_vector<double>("xbf")[i] == formula_value(ddpm::io::detail::bf16_bits(v), 8, 7));
    CHECK(st.to_vector<S>("x32")[i] == static_cast<S>(static_cast<float>(x(static_cast<Eigen::Index>(i)))));
    CHECK(st.to_vector<S>("x64")[i] == x(static_cast<Eigen::Index>(i)));
  }
  CHECK(st.to_vector<double>("x16")[3] == std::numeric_limits<double>::infinity());  // 7e4 > 65520
  CHECK(st.to_vector<float>("a_map") == std::vector<float>(6, 0.5f));

  // The reference writer's layout: header padded with spaces to a multiple of 8, tensors by decreasing
  // element size, so each starts aligned to its element size.
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  const std::string text(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  CHECK(text.find_first_not_of(' ', text.find_last_of('}') + 1) == std::string::npos);
  for (const std::string& name : st.names()) {
    const auto& info = st.info(name);
    CHECK(info.begin % ddpm::io::dtype_size(info.dtype) == 0);
  }
  CHECK(st.info("x64").begin == 0);

  // A double is rounded to F16 once, not through float (1 + 2^-11 + 2^-40 is just above a tie).
  if constexpr (std::is_same_v<S, double>) {
    ddpm::Tensor<double, 1> y(1);
    y(0) = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
    SafetensorsWriter wy;
    wy.add("y", y, DType::F16);
    const Safetensors sy = Safetensors::parse(wy.to_bytes());
    const auto yb = sy.bytes("y");
    CHECK((yb[0] | (yb[1] << 8)) == 0x3C01);
  }
}

TEST_CASE("safetensors save and load a file", "[io][safetensors]") {
  const auto path = temp_file("ddpm_safetensors_test");
  ddpm::Tensor<float, 2> t(2, 2);
  t.setValues({{1.f, 2.f}, {3.f, 4.f}});
  SafetensorsWriter w;
  w.add("t", t);
  w.save(path.string());
  const Safetensors st = Safetensors::load(path.string());
  std::filesystem::remove(path);
  REQUIRE(st.source() == path.string());
  REQUIRE(st.to_vector<float>("t") == std::vector<float>{1.f, 2.f, 3.f, 4.f});
  REQUIRE_THROWS_AS(Safetensors::load(path.string()), ddpm::format_error);  // gone
  CHECK_THAT(what_of([&] { (void)Safetensors::load(path.string()); }), Catch::Contains("cannot open"));
  REQUIRE_THROWS_AS(w.save((path / "no" / "such" / "dir").string()), ddpm::format_error);
}

TEST_CASE("safetensors writer preconditions", "[io][safetensors]") {
  ddpm::Tensor<float, 1> t(2);
  t.setZero();
  SafetensorsWriter w;
  w.add("t", t);
  REQUIRE_THROWS_AS(w.add("t", t), ddpm::invalid_argument);
  CHECK_THAT(what_of([&] { w.add("t", t); }), Catch::Contains("'t'") && Catch::Contains("already"));
  REQUIRE_THROWS_AS(w.add("__metadata__", t), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(w.add("u", t, DType::I32), ddpm::invalid_argument);
  CHECK_THAT(what_of([&] { w.add("u", t, DType::I32); }), Catch::Contains("I32"));
  const std::uint8_t four[4] = {};
  REQUIRE_THROWS_AS(w.add_raw("r", DType::F32, {2}, four), ddpm::invalid_argument);
  CHECK_THAT(what_of([&] { w.add_raw("r", DType::F32, {2}, four); }), Catch::Contains("need 8"));
  REQUIRE_THROWS_AS(w.add_raw("r", DType::U8, {-4}, four), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(w.add_raw("r", DType::U8, {std::int64_t{1} << 62, 1 << 8}, four), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(w.add_raw("bad\xff", DType::U8, {4}, four), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(w.set_metadata("k", "\xc3"), ddpm::invalid_argument);
  w.add_raw("r", DType::U8, {2, 2}, four);
  w.add_raw("nothing", DType::F64, {0, 5}, {});
  const Safetensors st = Safetensors::parse(w.to_bytes());
  REQUIRE(st.names() == std::vector<std::string>{"nothing", "r", "t"});  // failed adds left nothing behind
}

TEST_CASE("safetensors accepts the edge cases the format allows", "[io][safetensors]") {
  // No tensors at all; header padded with spaces; empty tensors sharing an offset; null metadata;
  // unknown fields in an entry; a zero extent next to huge ones.
  CHECK(Safetensors::parse(make_file("{}")).size() == 0);
  CHECK(Safetensors::parse(make_file("{}      ")).size() == 0);
  const auto st = Safetensors::parse(
      make_file("{" + entry("a", "F32", "[0]", "[0, 0]") + ", " + entry("b", "F32", "[2]", "[0, 8]") + ", " +
                    entry("c", "U8", "[0, 3]", "[8, 8]") + ", " + entry("d", "F16", "[]", "[8, 10]") + ", " +
                    entry("e", "I8", "[0, 4611686018427387904, 4611686018427387904]", "[10, 10]") + ", " +
                    entry("f", "F32", "[3, 0, 4611686018427387904]", "[10, 10]") + ", \"__metadata__\": null}   ",
                10));
  CHECK(st.names() == std::vector<std::string>{"a", "b", "c", "d", "e", "f"});
  const auto f = st.to_tensor<float, 3>("f");
  CHECK(f.size() == 0);
  CHECK(f.dimension(2) == 4611686018427387904);
  CHECK(st.metadata().empty());
  CHECK(st.to_vector<float>("a").empty());
  CHECK(st.to_vector<float>("d").size() == 1);
  const auto x = Safetensors::parse(
      make_file("{\"w\": {\"dtype\": \"BF16\", \"shape\": [1], \"data_offsets\": [0, 2], \"extra\": \"ignored\"}}", 2));
  CHECK(x.info("w").dtype == DType::BF16);
}

TEST_CASE("safetensors rejects truncated files and bad header lengths", "[io][safetensors][malformed]") {
  ddpm::Tensor<float, 2> t(3, 4);
  t.setConstant(2.f);
  SafetensorsWriter w;
  w.add("weight", t);
  w.set_metadata("format", "pt");
  const std::vector<std::uint8_t> good = w.to_bytes();
  REQUIRE_NOTHROW(Safetensors::parse(good));
  std::uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  // Every proper prefix is malformed: it cuts the length, the header, or the data.
  for (std::size_t len = 0; len < good.size(); ++len) {
    INFO("truncated to " << len << " bytes");
    const std::vector<std::uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    if (len < 8) {
      require_format_error(cut, {"too few", std::to_string(len) + " bytes"});
    } else if (len < 8 + n) {
      require_format_error(cut, {"header length " + std::to_string(n), "truncated"});
    } else {
      require_format_error(cut, {"'weight'", "beyond the data section"});
    }
  }
  // A byte too many is not covered by any tensor.
  std::vector<std::uint8_t> longer = good;
  longer.push_back(0);
  require_format_error(longer, {"trailing", "48", "49"});

  require_format_error(make_file("{}", 0, std::numeric_limits<std::uint64_t>::max()),
                       {"18446744073709551615", "limit"});
  require_format_error(make_file("{}", 0, 100'000'001), {"100000001", "limit"});
  require_format_error(make_file("{}", 0, 3), {"header length 3", "exceeds the 2 bytes"});
  require_format_error(make_file("{}", 4, 0), {"header length 0", "too small"});
  require_format_error(make_file("{}", 4, 1), {"header length 1", "too small"});
}

TEST_CASE("safetensors rejects headers that are not a JSON object of entries", "[io][safetensors][malformed]") {
  require_format_error(" {}", 0, {"start with '{'"});
  require_format_error("[1, 2]", 0, {"start with '{'"});
  require_format_error("\"{}\"", 0, {"start with '{'"});
  require_format_error("{\"a\": ", 0, {"not valid JSON"});
  require_format_error("{\"a\": {}}x", 0, {"not valid JSON"});
  require_format_error("{\"a\": {}, }", 0, {"not valid JSON"});
  require_format_error("{/* comment */}", 0, {"not valid JSON"});
  require_format_error(std::string("{}\0\0", 4), 0, {"not valid JSON", "NUL byte at header offset 2"});
  require_format_error(std::string("{\"a\0\": 1}", 9), 0, {"not valid JSON", "NUL"});
  require_format_error(std::string("{\"a\xff\": 1}"), 0, {"not valid JSON"});  // invalid UTF-8
  require_format_error("{\"a\": 1e999}", 0, {"not valid JSON"});
  // Duplicate keys, at the top level and inside an entry.
  require_format_error("{" + entry("w", "F32", "[1]", "[0, 4]") + ", " + entry("w", "F32", "[1]", "[0, 4]") + "}", 4,
                       {"'w'", "twice"});
  require_format_error("{\"w\": {\"dtype\": \"F32\", \"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                       {"entry of 'w'", "'dtype' twice"});
  require_format_error("{\"__metadata__\": {}, \"__metadata__\": {}}", 0, {"'__metadata__' twice"});
  require_format_error("{\"__metadata__\": {\"k\": \"v\", \"k\": \"v\"}}", 0, {"'k' twice"});
  // Nesting beyond what the format has (file -> entry -> shape).
  require_format_error("{\"w\": {\"shape\": [[1]]}}", 0, {"deeper than 3", "'w'"});
  std::string deep(100000, '[');
  require_format_error("{\"w\": " + deep, 0, {"deeper than 3"});
  // Entries that are not objects, or lack a field.
  require_format_error("{\"w\": 3}", 0, {"tensor 'w'", "must be described by an object"});
  require_format_error("{\"w\": [0, 4]}", 0, {"tensor 'w'", "must be described by an object"});
  require_format_error("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, {"tensor 'w'", "no \"dtype\""});
  require_format_error("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, {"tensor 'w'", "no \"shape\""});
  require_format_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, {"tensor 'w'", "no \"data_offsets\""});
}

TEST_CASE("safetensors rejects bad dtypes and shapes", "[io][safetensors][malformed]") {
  require_format_error("{" + entry("w", "F8_E4M3", "[4]", "[0, 4]") + "}", 4, {"tensor 'w'", "unknown", "F8_E4M3"});
  require_format_error("{" + entry("w", "f32", "[1]", "[0, 4]") + "}", 4, {"tensor 'w'", "unknown", "f32"});
  require_format_error("{\"w\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                       {"tensor 'w'", "dtype is a number"});
  require_format_error("{\"w\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", 4,
                       {"tensor 'w'", "shape is a number"});
  require_format_error("{" + entry("w", "F32", "[1, -2]", "[0, 4]") + "}", 4, {"tensor 'w'", "shape[1] is -2"});
  require_format_error("{" + entry("w", "F32", "[2.5]", "[0, 10]") + "}", 10, {"tensor 'w'", "shape[0] is 2.5"});
  require_format_error("{" + entry("w", "F32", "[1e0]", "[0, 4]") + "}", 4, {"tensor 'w'", "must be an integer"});
  require_format_error("{" + entry("w", "F32", "[\"1\"]", "[0, 4]") + "}", 4, {"tensor 'w'", "shape[0] is a string"});
  require_format_error("{" + entry("w", "F32", "[null]", "[0, 4]") + "}", 4, {"tensor 'w'", "shape[0] is null"});
  require_format_error("{" + entry("w", "F32", "[9223372036854775808]", "[0, 4]") + "}", 4,
                       {"tensor 'w'", "too large"});
  require_format_error("{" + entry("w", "F32", "[4294967296, 4294967296]", "[0, 4]") + "}", 4,
                       {"tensor 'w'", "overflows"});
  require_format_error("{" + entry("w", "F32", "[4611686018427387904, 4]", "[0, 4]") + "}", 4,
                       {"tensor 'w'", "overflows"});
  require_format_error("{" + entry("w", "I64", "[2305843009213693952]", "[0, 4]") + "}", 4,
                       {"tensor 'w'", "overflows"});
}

TEST_CASE("safetensors rejects bad data offsets", "[io][safetensors][malformed]") {
  const std::string a = entry("a", "F32", "[2]", "[0, 8]");
  require_format_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": 0}}", 4,
                       {"tensor 'w'", "data_offsets is 0"});
  require_format_error("{" + entry("w", "F32", "[1]", "[0, 4, 8]") + "}", 8, {"tensor 'w'", "[begin, end]"});
  require_format_error("{" + entry("w", "F32", "[1]", "[0]") + "}", 4, {"tensor 'w'", "[begin, end]"});
  require_format_error("{" + entry("w", "F32", "[1]", "[-4, 0]") + "}", 4, {"tensor 'w'", "data_offsets[0] is -4"});
  require_format_error("{" + entry("w", "F32", "[1]", "[0, 4.0]") + "}", 4, {"tensor 'w'", "must be an integer"});
  require_format_error("{" + entry("w", "F32", "[1]", "[0, 18446744073709551616]") + "}", 4,
                       {"tensor 'w'", "data_offsets[1]"});
  require_format_error("{" + entry("w", "F32", "[0]", "[4, 0]") + "}", 4, {"tensor 'w'", "[4, 0]", "reversed"});
  // Out of range: past the data section, also when the sum would wrap around.
  require_format_error("{" + entry("w", "F32", "[2]", "[0, 8]") + "}", 4, {"tensor 'w'", "beyond", "4 bytes"});
  require_format_error("{" + entry("w", "F32", "[1]", "[18446744073709551612, 18446744073709551615]") + "}", 4,
                       {"tensor 'w'", "beyond"});
  // The size does not match the dtype and shape.
  require_format_error("{" + entry("w", "F32", "[3]", "[0, 8]") + "}", 8,
                       {"tensor 'w'", "hold 8 bytes", "need 12", "F32", "(3)"});
  require_format_error("{" + entry("w", "F16", "[2, 2]", "[0, 16]") + "}", 16, {"tensor 'w'", "hold 16", "need 8"});
  // Overlap: partial, identical, and a tensor inside another.
  require_format_error("{" + a + ", " + entry("b", "F32", "[2]", "[4, 12]") + "}", 12,
                       {"'b'", "overlaps", "'a'", "[4, 12]", "[0, 8]"});
  require_format_error("{" + a + ", " + entry("b", "F32", "[2]", "[0, 8]") + "}", 8, {"'b'", "overlaps", "'a'"});
  require_format_error("{" + a + ", " + entry("b", "U8", "[0]", "[4, 4]") + "}", 8, {"'b'", "overlaps", "'a'"});
  // Bytes that belong to no tensor: a gap, data not starting at 0, trailing bytes.
  require_format_error("{" + entry("a", "F32", "[1]", "[0, 4]") + ", " + entry("b", "F32", "[1]", "[8, 12]") + "}", 12,
                       {"[4, 8)", "gap before tensor 'b'"});
  require_format_error("{" + entry("a", "F32", "[1]", "[4, 8]") + "}", 8, {"[0, 4)", "gap before tensor 'a'"});
  require_format_error("{" + entry("a", "F32", "[1]", "[0, 4]") + "}", 8, {"has 8 bytes", "cover only 4", "trailing"});
  require_format_error("{}", 1, {"has 1 bytes", "cover only 0"});
}

TEST_CASE("safetensors rejects metadata that is not an object of strings", "[io][safetensors][malformed]") {
  require_format_error("{\"__metadata__\": {\"epoch\": 3}}", 0, {"__metadata__['epoch']", "number", "string"});
  require_format_error("{\"__metadata__\": {\"a\": \"x\", \"b\": [\"y\"]}}", 0, {"__metadata__['b']", "an array"});
  require_format_error("{\"__metadata__\": {\"c\": {\"d\": \"e\"}}}", 0, {"__metadata__['c']", "an object"});
  require_format_error("{\"__metadata__\": {\"e\": null}}", 0, {"__metadata__['e']", "is null"});
  require_format_error("{\"__metadata__\": [\"a\"]}", 0, {"__metadata__ is an array", "object of strings"});
  require_format_error("{\"__metadata__\": \"text\"}", 0, {"__metadata__ is a string"});
}

TEST_CASE("safetensors: the fuzzer's seed files are valid or malformed as their names say", "[io][safetensors]") {
  // tests/fuzz/corpus, written by tests/fuzz/make_corpus.py without ddpm.
  const std::filesystem::path dir = std::filesystem::path(DDPM_TEST_DATA_DIR) / ".." / "fuzz" / "corpus";
  int valid = 0, malformed = 0;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    const std::string name = file.path().filename().string();
    INFO(name);
    if (name.rfind("valid_", 0) == 0) {
      const Safetensors st = Safetensors::load(file.path().string());
      for (const std::string& tensor : st.names()) {
        if (ddpm::io::is_floating_point(st.info(tensor).dtype)) {
          CHECK(st.to_vector<double>(tensor).size() == st.info(tensor).num_elements());
        }
      }
      ++valid;
    } else if (name.rfind("bad_", 0) == 0) {
      CHECK_THROWS_AS(Safetensors::load(file.path().string()), ddpm::format_error);
      ++malformed;
    }
  }
  REQUIRE(valid == 6);
  REQUIRE(malformed == 15);
}

TEST_CASE("safetensors refuses empty shapes whose extents overflow Eigen::Index, and non-regular files",
          "[io][safetensors][malformed]") {
  // An empty tensor (a 0 in its shape) covers no bytes, but Eigen sizes it by multiplying the extents in
  // order until a 0: [2^32, 2^32, 0] overflows at the second one, so to_tensor could not build it (issue 13).
  // ([0, 2^62, 2^62], accepted above, stops at the 0 and builds.)
  require_format_error("{" + entry("w", "F32", "[4294967296, 4294967296, 0]", "[0, 0]") + "}", 0,
                       {"tensor 'w'", "(4294967296, 4294967296, 0)", "Eigen::Index"});
  require_format_error("{" + entry("w", "U8", "[2, 9223372036854775807, 0]", "[0, 0]") + "}", 0,
                       {"tensor 'w'", "Eigen::Index"});
  // Largest products that still fit are accepted and build (an empty tensor allocates nothing).
  const Safetensors ok =
      Safetensors::parse(make_file("{" + entry("w", "F32", "[3037000499, 3037000499, 0]", "[0, 0]") + "}"));
  CHECK(ok.to_tensor<float, 3>("w").size() == 0);
  // A directory: tellg reports 2^63 - 1 on Linux; refused before any allocation, naming the path.
  const std::string dir = std::filesystem::temp_directory_path().string();
  REQUIRE_THROWS_AS(Safetensors::load(dir), ddpm::format_error);
  CHECK_THAT(what_of([&] { (void)Safetensors::load(dir); }), Catch::Contains(dir) && Catch::Contains("regular file"));
}
