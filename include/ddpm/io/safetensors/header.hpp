// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Part of ddpm/io/safetensors.hpp (include that): where a tensor lives in a file (TensorInfo) and the checks
// of the header that the reader applies: the header size limit, byte sizes without overflow, shapes Eigen can
// size, and the wording of messages.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "ddpm/error.hpp"
#include "ddpm/io/safetensors/dtype.hpp"

namespace ddpm::io {

/// Where one tensor lives: its dtype, its shape (C order; [] for a scalar) and its bytes [begin, end),
/// relative to the start of the data section.
struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, end = 0;

  /// The number of elements: the product of the shape (1 for shape []).
  std::size_t num_elements() const noexcept { return (end - begin) / dtype_size(dtype); }
};

namespace detail {

/// The largest header the reader accepts (the reference implementation's limit).
inline constexpr std::uint64_t kMaxHeaderSize = 100'000'000;

/// "an object", "a number", "null", ...: what a JSON value is, for messages.
inline std::string json_kind(const nlohmann::json& v) {
  using V = nlohmann::json::value_t;
  switch (v.type()) {
    case V::null:
      return "null";
    case V::object:
      return "an object";
    case V::array:
      return "an array";
    case V::string:
      return "a string";
    case V::boolean:
      return "a boolean";
    case V::number_integer:
    case V::number_unsigned:
    case V::number_float:
      return "a number";
    case V::binary:
      return "binary data";
    case V::discarded:
      break;
  }
  return "a discarded value";
}

/// "[begin, end]"
inline std::string offsets_string(std::size_t begin, std::size_t end) {
  std::string s(1, '[');
  s += ddpm::detail::number_string(begin);
  s += ", ";
  s += ddpm::detail::number_string(end);
  s += ']';
  return s;
}

/// The product of `shape` times `element_size`, or nullopt if it does not fit in size_t. A shape with a 0
/// is empty, whatever its other extents.
inline std::optional<std::size_t> byte_size(const std::vector<std::int64_t>& shape, std::size_t element_size) {
  if (std::find(shape.begin(), shape.end(), std::int64_t{0}) != shape.end()) return std::size_t{0};
  std::size_t total = element_size;
  for (std::int64_t d : shape) {
    const auto extent = static_cast<std::size_t>(d);
    if (total > std::numeric_limits<std::size_t>::max() / extent) return std::nullopt;
    total *= extent;
  }
  return total;
}

/// Whether Eigen can size a tensor of `shape`: Eigen multiplies the extents in order and refuses (with
/// std::bad_alloc) a running product above its index type's maximum, until a 0 extent makes it 0. So an empty
/// shape such as [2^32, 2^32, 0] cannot be built, while [0, 2^62, 2^62] can. True if every running product of
/// the extents before the first 0 is at most std::numeric_limits<Eigen::Index>::max().
inline bool fits_eigen_index(const std::vector<std::int64_t>& shape) {
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<Eigen::Index>::max());
  std::uint64_t product = 1;
  for (std::int64_t d : shape) {
    if (d == 0) return true;
    const auto extent = static_cast<std::uint64_t>(d);
    if (product > max / extent) return false;
    product *= extent;
  }
  return true;
}

}  // namespace detail
}  // namespace ddpm::io
