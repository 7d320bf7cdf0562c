// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Part of ddpm/io/safetensors.hpp (include that): the element types of a safetensors file, their names and
// sizes, and the conversions of their floating-point data to and from float and double (F16 and BF16 through
// Eigen::half and Eigen::bfloat16).

#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"

static_assert(std::endian::native == std::endian::little,
              "ddpm/io/safetensors: safetensors data is little-endian, and so must the host be");

namespace ddpm::io {

/// The element types of a safetensors file that ddpm knows. F16 is IEEE binary16, BF16 is bfloat16 (the
/// upper half of a binary32), F32/F64 are IEEE binary32/binary64; BOOL is one byte per element.
enum class DType { BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64 };

/// The dtype's name as a safetensors header spells it: "F32", "BF16", "BOOL", ...
constexpr std::string_view dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::BOOL:
      return "BOOL";
    case DType::U8:
      return "U8";
    case DType::I8:
      return "I8";
    case DType::I16:
      return "I16";
    case DType::U16:
      return "U16";
    case DType::I32:
      return "I32";
    case DType::U32:
      return "U32";
    case DType::I64:
      return "I64";
    case DType::U64:
      return "U64";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
  }
  return "?";
}

/// The size of one element in bytes.
constexpr std::size_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::BOOL:
    case DType::U8:
    case DType::I8:
      return 1;
    case DType::I16:
    case DType::U16:
    case DType::F16:
    case DType::BF16:
      return 2;
    case DType::I32:
    case DType::U32:
    case DType::F32:
      return 4;
    case DType::I64:
    case DType::U64:
    case DType::F64:
      return 8;
  }
  return 0;
}

/// True for F16, BF16, F32 and F64: the dtypes that convert to a floating-point scalar.
constexpr bool is_floating_point(DType dtype) noexcept {
  return dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F32 || dtype == DType::F64;
}

/// The dtype a header spells `name` ("F32" -> DType::F32), or nullopt for a name ddpm does not know
/// (including the reference's F8_*, F4, F6_* and C64, which ddpm does not read).
constexpr std::optional<DType> dtype_from_name(std::string_view name) noexcept {
  constexpr std::array all{DType::BOOL, DType::U8,  DType::I8,  DType::I16,  DType::U16, DType::I32, DType::U32,
                           DType::I64,  DType::U64, DType::F16, DType::BF16, DType::F32, DType::F64};
  for (DType d : all) {
    if (dtype_name(d) == name) return d;
  }
  return std::nullopt;
}

namespace detail {

// ---- 16-bit floats ---------------------------------------------------------------------------------------
// Eigen::half (IEEE binary16) and Eigen::bfloat16 do the arithmetic: float -> 16 bits rounds to nearest,
// ties to even, and 16 bits -> float is exact. A double goes through float with round-to-odd first
// (truncate, then set the last bit if anything was cut off): float keeps at least two more bits than either
// 16-bit format, so rounding that float to nearest gives the double rounded once, as IEEE asks (a plain
// double -> float -> 16-bit cast would round twice: 1 + 2^-11 + 2^-40 would become 1, not 1 + 2^-10).

/// x as a float rounded to odd: exact if x is a float, else x truncated toward zero with its last bit set.
/// NaN stays NaN; beyond the float range, the largest float of x's sign (odd, so still above every
/// 16-bit midpoint).
inline float round_to_odd_float(double x) noexcept {
  float f = static_cast<float>(x);
  if (static_cast<double>(f) == x || std::isnan(x)) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(x)) f = std::nextafter(f, 0.0f);
  return std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) | 1u);
}

/// binary16 bits nearest to x (ties to even); overflow gives infinity, NaN a quiet NaN.
inline std::uint16_t f16_bits(double x) noexcept {
  return std::bit_cast<std::uint16_t>(Eigen::half(round_to_odd_float(x)));
}
/// bfloat16 bits nearest to x (ties to even).
inline std::uint16_t bf16_bits(double x) noexcept {
  return std::bit_cast<std::uint16_t>(Eigen::bfloat16(round_to_odd_float(x)));
}

/// The binary16 value of `h`, exactly (every binary16 value, subnormals included, is a float).
inline float f16_value(std::uint16_t h) noexcept { return static_cast<float>(std::bit_cast<Eigen::half>(h)); }

/// The bfloat16 value of `b`, exactly: the upper half of a binary32.
inline float bf16_value(std::uint16_t b) noexcept { return static_cast<float>(std::bit_cast<Eigen::bfloat16>(b)); }

/// Reads `n` little-endian elements of floating-point `dtype` from `src` (any alignment) into `out`.
template <std::floating_point S>
void decode_floats(DType dtype, const std::uint8_t* src, std::size_t n, S* out) {
  auto each = [&]<class Raw>(Raw, auto&& convert) {
    if constexpr (std::is_same_v<Raw, S>) {
      if (n > 0) std::memcpy(out, src, n * sizeof(S));
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        Raw raw;
        std::memcpy(&raw, src + i * sizeof(Raw), sizeof(Raw));
        out[i] = static_cast<S>(convert(raw));
      }
    }
  };
  switch (dtype) {
    case DType::F32:
      each(float{}, [](float v) { return v; });
      break;
    case DType::F64:
      each(double{}, [](double v) { return v; });
      break;
    case DType::F16:
      each(std::uint16_t{}, [](std::uint16_t v) { return f16_value(v); });
      break;
    case DType::BF16:
      each(std::uint16_t{}, [](std::uint16_t v) { return bf16_value(v); });
      break;
    default:
      DDPM_ASSERT(false);
      break;
  }
}

/// Appends `n` elements of `src` to `out` as little-endian elements of floating-point `dtype`, rounded to
/// nearest, ties to even.
template <std::floating_point S>
void encode_floats(DType dtype, const S* src, std::size_t n, std::vector<std::uint8_t>& out) {
  const std::size_t at = out.size();
  out.resize(at + n * dtype_size(dtype));
  std::uint8_t* dst = out.data() + at;
  auto each = [&]<class Raw>(Raw, auto&& convert) {
    for (std::size_t i = 0; i < n; ++i) {
      const Raw raw = convert(src[i]);
      std::memcpy(dst + i * sizeof(Raw), &raw, sizeof(Raw));
    }
  };
  switch (dtype) {
    case DType::F32:
      each(float{}, [](S v) { return static_cast<float>(v); });
      break;
    case DType::F64:
      each(double{}, [](S v) { return static_cast<double>(v); });
      break;
    case DType::F16:
      each(std::uint16_t{}, [](S v) { return f16_bits(static_cast<double>(v)); });
      break;
    case DType::BF16:
      each(std::uint16_t{}, [](S v) { return bf16_bits(static_cast<double>(v)); });
      break;
    default:
      DDPM_ASSERT(false);
      break;
  }
}

}  // namespace detail
}  // namespace ddpm::io
