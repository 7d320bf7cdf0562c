// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Part of ddpm/io/safetensors.hpp (include that): SafetensorsWriter, which lays tensors out as the reference
// writer does.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/error.hpp"
#include "ddpm/io/safetensors/dtype.hpp"
#include "ddpm/io/safetensors/header.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::io {

namespace detail {

/// A tensor that the writer accepts: a DenseTensor, or a rank-0 Tensor<S, 0> (a scalar, shape []).
template <class T>
concept SavableTensor = DenseTensor<T> ||(requires(const T& t) {
  { t.data() } -> std::convertible_to<const void*>;
  t.dimensions();
} && (std::remove_cvref_t<T>::NumIndices == 0) &&
                                          std::floating_point<std::remove_cv_t<ddpm::detail::element_t<const T>>>);

}  // namespace detail

/// Builds a safetensors file in memory.
///
///   ddpm::io::SafetensorsWriter w;
///   w.add("conv_in.weight", weight);                       // F32 from float, F64 from double
///   w.add("conv_in.bias", bias, ddpm::io::DType::F16);    // rounded to nearest, ties to even
///   w.set_metadata("format", "pt");
///   w.save("model.safetensors");
///
/// As the reference writer does, tensors are laid out by decreasing element size, then by name, and the
/// header is padded with spaces to a multiple of 8 bytes, so every tensor is aligned to its element size.
class SafetensorsWriter {
 public:
  /// Sets `__metadata__[key] = value` (replacing an earlier value).
  /// Throws ddpm::invalid_argument if key or value is not valid UTF-8.
  void set_metadata(std::string key, std::string value) {
    require_utf8("metadata key", key);
    require_utf8("metadata value", value);
    metadata_[std::move(key)] = std::move(value);
  }

  /// Adds a copy of `tensor` under `name`, converted to floating-point `dtype` (default F32 for float, F64
  /// for double and wider), rounded to nearest, ties to even (a long double is rounded to double first). Rank-0
  /// tensors are stored with shape [].
  /// Throws ddpm::invalid_argument if the name is taken, is "__metadata__" or is not valid UTF-8, or the
  /// dtype is not F16, BF16, F32 or F64.
  template <class T>
  requires detail::SavableTensor<T>
  void add(const std::string& name, const T& tensor,
           DType dtype = sizeof(std::remove_cv_t<ddpm::detail::element_t<const T>>) > 4 ? DType::F64 : DType::F32) {
    using S = std::remove_cv_t<ddpm::detail::element_t<const T>>;
    if (!is_floating_point(dtype)) {
      ddpm::detail::throw_invalid_argument("ddpm::io::SafetensorsWriter::add: dtype is " +
                                           std::string(dtype_name(dtype)) +
                                           ", but must be F16, BF16, F32 or F64 (use add_raw for other dtypes)");
    }
    constexpr int R = static_cast<int>(std::remove_cvref_t<T>::NumIndices);
    std::vector<std::int64_t> shape;
    std::size_t count = 1;
    for (int i = 0; i < R; ++i) {
      shape.push_back(static_cast<std::int64_t>(tensor.dimension(i)));
      count *= static_cast<std::size_t>(tensor.dimension(i));
    }
    Entry& e = insert("add", name, dtype, std::move(shape));
    detail::encode_floats<S>(dtype, tensor.data(), count, e.data);
  }

  /// Adds `data`, the little-endian bytes of a C-order tensor of `dtype` and `shape`, under `name`.
  /// Throws ddpm::invalid_argument if the name is taken, is "__metadata__" or is not valid UTF-8, a shape
  /// entry is negative, or data does not hold product(shape) * dtype_size(dtype) bytes.
  void add_raw(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
               std::span<const std::uint8_t> data) {
    constexpr const char* fn = "ddpm::io::SafetensorsWriter::add_raw";
    for (std::size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] < 0) {
        ddpm::detail::throw_invalid_argument(std::string(fn) + ": shape[" + ddpm::detail::number_string(i) + "] is " +
                                             ddpm::detail::number_string(shape[i]) + ", but must be non-negative");
      }
    }
    const auto size = detail::byte_size(shape, dtype_size(dtype));
    if (!size || *size != data.size()) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": data has " + ddpm::detail::number_string(data.size()) +
                                           " bytes, but dtype " + std::string(dtype_name(dtype)) + " and shape " +
                                           ddpm::detail::shape_string(shape) + " need " +
                                           (size ? ddpm::detail::number_string(*size) : std::string("more than fit in memory")));
    }
    Entry& e = insert("add_raw", name, dtype, std::move(shape));
    e.data.assign(data.begin(), data.end());
  }

  /// The complete file. Throws ddpm::invalid_argument if the header would exceed 100,000,000 bytes.
  std::vector<std::uint8_t> to_bytes() const {
    std::vector<const std::pair<const std::string, Entry>*> order;
    for (const auto& entry : entries_) order.push_back(&entry);
    std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
      return dtype_size(a->second.dtype) > dtype_size(b->second.dtype);  // then by name: entries_ is sorted
    });
    nlohmann::json header = nlohmann::json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::size_t offset = 0;
    for (const auto* entry : order) {
      const Entry& e = entry->second;
      header[entry->first] = {
          {"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.data.size()}}};
      offset += e.data.size();
    }
    std::string text = header.dump();
    text.resize((text.size() + 7) / 8 * 8, ' ');
    if (text.size() > detail::kMaxHeaderSize) {
      ddpm::detail::throw_invalid_argument("ddpm::io::SafetensorsWriter::to_bytes: the header has " +
                                           ddpm::detail::number_string(text.size()) + " bytes, but readers accept at most " +
                                           ddpm::detail::number_string(detail::kMaxHeaderSize));
    }
    std::vector<std::uint8_t> out(8 + text.size());
    const std::uint64_t n = text.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    out.reserve(out.size() + offset);
    for (const auto* entry : order) out.insert(out.end(), entry->second.data.begin(), entry->second.data.end());
    return out;
  }

  /// Writes to_bytes() to `path`. Throws ddpm::format_error if the file cannot be written.
  void save(const std::string& path) const {
    const std::vector<std::uint8_t> bytes = to_bytes();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out)
      ddpm::detail::throw_format_error("ddpm::io::SafetensorsWriter::save: cannot open '" + path + "' for writing");
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) ddpm::detail::throw_format_error("ddpm::io::SafetensorsWriter::save: cannot write '" + path + "'");
  }

 private:
  struct Entry {
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> data;
  };

  static void require_utf8(const char* what, const std::string& s) {
    try {
      (void)nlohmann::json(s).dump();
    } catch (const nlohmann::json::exception&) {
      ddpm::detail::throw_invalid_argument(std::string("ddpm::io::SafetensorsWriter: the ") + what +
                                           " is not valid UTF-8");
    }
  }

  Entry& insert(const char* fn, const std::string& name, DType dtype, std::vector<std::int64_t> shape) {
    const std::string where = std::string("ddpm::io::SafetensorsWriter::") + fn + ": ";
    if (name == "__metadata__") {
      ddpm::detail::throw_invalid_argument(where + "the name \"__metadata__\" is reserved for the metadata");
    }
    require_utf8("tensor name", name);
    const auto [it, fresh] = entries_.try_emplace(name, Entry{dtype, std::move(shape), {}});
    if (!fresh) ddpm::detail::throw_invalid_argument(where + "a tensor named '" + name + "' was already added");
    return it->second;
  }

  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ddpm::io
