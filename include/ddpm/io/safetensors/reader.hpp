// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Part of ddpm/io/safetensors.hpp (include that): Safetensors, the reader that trusts nothing in the file
// (the rules are listed in ddpm/io/safetensors.hpp).

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

/// A safetensors file, read whole into memory and validated.
///
///   auto st = ddpm::io::Safetensors::load("diffusion_pytorch_model.safetensors");
///   ddpm::Tensor<float, 4> w = st.to_tensor<float, 4>("conv_in.weight");   // F16/BF16/F32/F64 -> float
///
/// The object owns the file's bytes; bytes() views them and stays valid while the object lives.
class Safetensors {
 public:
  /// Reads the file at `path` and validates it (see parse()).
  /// Throws ddpm::format_error if the path is not a regular file (a directory, a device), cannot be read, or
  /// the file is malformed.
  static Safetensors load(const std::string& path) {
    // A directory opens, and tellg then reports 2^63 - 1 (libstdc++): refuse anything but a regular file.
    std::error_code ec;
    if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
      ddpm::detail::throw_format_error("ddpm::io::Safetensors::load: '" + path +
                                       "' is not a regular file (a directory or a device)");
    }
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) ddpm::detail::throw_format_error("ddpm::io::Safetensors::load: cannot open '" + path + "'");
    const std::streamoff size = in.tellg();
    if (size < 0)
      ddpm::detail::throw_format_error("ddpm::io::Safetensors::load: cannot read the size of '" + path + "'");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    in.seekg(0);
    if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
      ddpm::detail::throw_format_error("ddpm::io::Safetensors::load: cannot read '" + path + "'");
    }
    return parse(std::move(bytes), path);
  }

  /// Validates the complete contents of a safetensors file and takes ownership of them. `source` names
  /// the file in error messages. Throws ddpm::format_error, naming what is wrong, if the header length is
  /// below 2 or beyond the file or 100,000,000; the header does not start with '{', is not JSON, has a
  /// duplicate key or is not an object of objects; a tensor's dtype is unknown, its shape not a list of
  /// non-negative integers whose running product before the first 0 fits in Eigen::Index (even when a later
  /// 0 makes the tensor empty: Eigen could not size it), its data_offsets not two non-negative integers [begin, end] with
  /// begin <= end <= data size and end - begin = product(shape) * dtype size; two tensors overlap, a
  /// byte of the data section belongs to no tensor; or `__metadata__` is not an object of strings.
  static Safetensors parse(std::vector<std::uint8_t> bytes, std::string source = "<memory>") {
    Safetensors st;
    st.source_ = std::move(source);
    st.bytes_ = std::move(bytes);
    st.validate();
    return st;
  }

  /// The `__metadata__` map (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

  /// The tensor names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& entry : tensors_) out.push_back(entry.first);
    return out;
  }

  /// The number of tensors.
  std::size_t size() const noexcept { return tensors_.size(); }

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  /// The name the file was loaded from (or parse()'s `source`).
  const std::string& source() const noexcept { return source_; }

  /// Where tensor `name` lives. Throws ddpm::format_error if the file has no such tensor.
  const TensorInfo& info(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("has no tensor '" + name + "'");
    return it->second;
  }

  /// The raw little-endian bytes of tensor `name` (any alignment), a view into this object's copy of the
  /// file (so not callable on a temporary). Throws ddpm::format_error if absent.
  std::span<const std::uint8_t> bytes(const std::string& name) const& {
    const TensorInfo& t = info(name);
    return {bytes_.data() + data_start_ + t.begin, t.end - t.begin};
  }
  std::span<const std::uint8_t> bytes(const std::string& name) const&& = delete;

  /// Tensor `name`'s elements in C order, converted to S: exact from F16 and BF16 (subnormals, infinities
  /// and NaN included) and F32, rounded to nearest from F64 when S is float.
  /// Throws ddpm::format_error if the tensor is absent or its dtype is not F16, BF16, F32 or F64.
  template <std::floating_point S>
  std::vector<S> to_vector(const std::string& name) const {
    const TensorInfo& t = info(name);
    require_floating_point(name, t);
    std::vector<S> out(t.num_elements());
    detail::decode_floats(t.dtype, bytes_.data() + data_start_ + t.begin, out.size(), out.data());
    return out;
  }

  /// Tensor `name` as a Tensor<S, R> of its shape, converted as to_vector() does.
  /// Throws ddpm::format_error if the tensor is absent, its dtype does not convert to S, or its rank is not R.
  template <std::floating_point S, int R>
  Tensor<S, R> to_tensor(const std::string& name) const {
    static_assert(R >= 0, "ddpm::io::Safetensors::to_tensor: the rank must be non-negative");
    const TensorInfo& t = info(name);
    require_floating_point(name, t);
    if (t.shape.size() != static_cast<std::size_t>(R)) {
      fail("tensor '" + name + "' has rank " + ddpm::detail::number_string(t.shape.size()) + " (shape " +
           ddpm::detail::shape_string(t.shape) + "), but rank " + ddpm::detail::number_string(R) + " was requested");
    }
    Tensor<S, R> out;
    if constexpr (R > 0) {
      Eigen::array<Eigen::Index, R> dims;
      for (int i = 0; i < R; ++i) dims[static_cast<std::size_t>(i)] = static_cast<Eigen::Index>(t.shape[i]);
      out.resize(dims);
    }
    DDPM_ASSERT(static_cast<std::size_t>(out.size()) == t.num_elements());
    detail::decode_floats(t.dtype, bytes_.data() + data_start_ + t.begin, t.num_elements(), out.data());
    return out;
  }

 private:
  Safetensors() = default;

  [[noreturn]] void fail(const std::string& what) const {
    ddpm::detail::throw_format_error("ddpm::io::Safetensors: " + source_ + ": " + what);
  }

  void require_floating_point(const std::string& name, const TensorInfo& t) const {
    if (!is_floating_point(t.dtype)) {
      fail("tensor '" + name + "' has dtype " + std::string(dtype_name(t.dtype)) +
           ", which does not convert to floating point (only F16, BF16, F32 and F64 do)");
    }
  }

  // A non-negative JSON integer that fits in `Int`, or a format_error naming `what`.
  template <class Int>
  Int json_count(const nlohmann::json& v, const std::string& what) const {
    if (v.is_number_unsigned()) {
      const auto u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<Int>::max())) {
        fail(what + " is " + ddpm::detail::number_string(u) + ", which is too large");
      }
      return static_cast<Int>(u);
    }
    if (v.is_number_integer()) {
      const auto i = v.get<std::int64_t>();
      if (i == 0) return 0;  // "-0"
      fail(what + " is " + ddpm::detail::number_string(i) + ", but must be non-negative");
    }
    if (v.is_number_float()) fail(what + " is " + v.dump() + ", but must be an integer");
    fail(what + " is " + detail::json_kind(v) + ", but must be a non-negative integer");
  }

  nlohmann::json parse_header(std::uint64_t n) const {
    const auto* first = bytes_.data() + 8;
    const auto* last = first + n;
    if (*first != '{') fail("the header must start with '{'");
    // JSON text never holds a NUL byte, and nlohmann::json would stop reading at one as if at the end.
    if (const void* nul = std::memchr(first, 0, static_cast<std::size_t>(n))) {
      fail("the header is not valid JSON: a NUL byte at header offset " +
           ddpm::detail::number_string(static_cast<const std::uint8_t*>(nul) - first));
    }
    // Nesting is at most 3 deep (file -> tensor -> shape); keys are unique within each object. The
    // parser itself does not recurse, and neither do we: anything deeper is refused as it is read.
    struct Level {
      bool is_object;
      std::set<std::string> keys;
    };
    std::vector<Level> levels;
    std::string tensor;  // the current top-level key, for messages
    auto on_event = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      using E = nlohmann::json::parse_event_t;
      switch (event) {
        case E::object_start:
        case E::array_start:
          if (levels.size() >= 3) {
            fail("the header nests deeper than 3 levels (in the entry of '" + tensor + "')");
          }
          levels.push_back({event == E::object_start, {}});
          break;
        case E::object_end:
        case E::array_end:
          levels.pop_back();
          break;
        case E::key: {
          auto key = parsed.get<std::string>();
          if (levels.size() == 1) tensor = key;
          const bool fresh = levels.back().keys.insert(key).second;
          if (!fresh) {
            fail(levels.size() == 1 ? "the header has the key '" + key + "' twice"
                                    : "the entry of '" + tensor + "' has the key '" + key + "' twice");
          }
          break;
        }
        case E::value:
          break;
      }
      return true;
    };
    try {
      return nlohmann::json::parse(first, last, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/false);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("the header is not valid JSON: ") + e.what());
    }
  }

  void read_metadata(const nlohmann::json& m) {
    if (m.is_null()) return;  // as the reference reads it: no metadata
    if (!m.is_object()) fail("__metadata__ is " + detail::json_kind(m) + ", but must be an object of strings");
    for (const auto& [key, value] : m.items()) {
      if (!value.is_string()) {
        fail("__metadata__['" + key + "'] is " + detail::json_kind(value) + ", but must be a string");
      }
      metadata_.emplace(key, value.get<std::string>());
    }
  }

  TensorInfo read_tensor(const std::string& name, const nlohmann::json& entry, std::size_t data_size) const {
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object()) {
      fail(where + " is described by " + detail::json_kind(entry) + ", but must be described by an object");
    }
    auto field = [&](const char* key) -> const nlohmann::json& {
      const auto it = entry.find(key);
      if (it == entry.end()) fail(where + " has no \"" + key + "\"");
      return *it;
    };
    TensorInfo t;
    const nlohmann::json& dtype = field("dtype");
    if (!dtype.is_string()) fail(where + ": dtype is " + detail::json_kind(dtype) + ", but must be a string");
    const auto d = dtype_from_name(dtype.get_ref<const std::string&>());
    if (!d) fail(where + " has the unknown or unsupported dtype " + dtype.dump());
    t.dtype = *d;

    const nlohmann::json& shape = field("shape");
    if (!shape.is_array()) fail(where + ": shape is " + detail::json_kind(shape) + ", but must be a list");
    for (std::size_t i = 0; i < shape.size(); ++i) {
      t.shape.push_back(json_count<std::int64_t>(shape[i], where + ": shape[" + ddpm::detail::number_string(i) + "]"));
    }
    const auto size = detail::byte_size(t.shape, dtype_size(t.dtype));
    if (!size) fail(where + ": the byte size of shape " + ddpm::detail::shape_string(t.shape) + " overflows");
    if (!detail::fits_eigen_index(t.shape)) {
      fail(where + ": shape " + ddpm::detail::shape_string(t.shape) +
           " cannot be sized by Eigen: the product of its extents before the first 0 exceeds Eigen::Index's " +
           "maximum " + ddpm::detail::number_string(std::numeric_limits<Eigen::Index>::max()) + " (even for an empty tensor)");
    }

    const nlohmann::json& offsets = field("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2) {
      fail(where + ": data_offsets is " + offsets.dump() + ", but must be a list [begin, end]");
    }
    t.begin = json_count<std::size_t>(offsets[0], where + ": data_offsets[0]");
    t.end = json_count<std::size_t>(offsets[1], where + ": data_offsets[1]");
    const std::string span = detail::offsets_string(t.begin, t.end);
    if (t.end < t.begin) fail(where + ": data_offsets " + span + " are reversed (end before begin)");
    if (t.end > data_size) {
      fail(where + ": data_offsets " + span + " reach beyond the data section, which has " + ddpm::detail::number_string(data_size) +
           " bytes");
    }
    if (t.end - t.begin != *size) {
      fail(where + ": data_offsets " + span + " hold " + ddpm::detail::number_string(t.end - t.begin) + " bytes, but dtype " +
           std::string(dtype_name(t.dtype)) + " and shape " + ddpm::detail::shape_string(t.shape) + " need " +
           ddpm::detail::number_string(*size));
    }
    return t;
  }

  void validate() {
    const std::size_t file_size = bytes_.size();
    if (file_size < 8) {
      fail("the file has " + ddpm::detail::number_string(file_size) + " bytes, too few for the 8-byte header length");
    }
    std::uint64_t n = 0;
    std::memcpy(&n, bytes_.data(), 8);
    if (n > detail::kMaxHeaderSize) {
      fail("the header length " + ddpm::detail::number_string(n) + " exceeds the limit of " +
           ddpm::detail::number_string(detail::kMaxHeaderSize) + " bytes");
    }
    if (n > file_size - 8) {
      fail("the header length " + ddpm::detail::number_string(n) + " exceeds the " + ddpm::detail::number_string(file_size - 8) +
           " bytes that follow it (truncated file?)");
    }
    if (n < 2) fail("the header length " + ddpm::detail::number_string(n) + " is too small for a JSON object");
    data_start_ = 8 + static_cast<std::size_t>(n);
    const std::size_t data_size = file_size - data_start_;

    const nlohmann::json header = parse_header(n);
    if (!header.is_object()) fail("the header is " + detail::json_kind(header) + ", but must be an object");
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        read_metadata(entry);
      } else {
        tensors_.emplace(name, read_tensor(name, entry, data_size));
      }
    }

    // Sorted by offset, the tensors must tile [0, data_size): each begins where the previous one ended.
    std::vector<std::tuple<std::size_t, std::size_t, const std::string*>> order;
    order.reserve(tensors_.size());
    for (const auto& [name, t] : tensors_) order.emplace_back(t.begin, t.end, &name);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return std::tie(std::get<0>(a), std::get<1>(a), *std::get<2>(a)) <
             std::tie(std::get<0>(b), std::get<1>(b), *std::get<2>(b));
    });
    std::size_t covered = 0;
    const std::string* previous = nullptr;
    for (const auto& [begin, end, name] : order) {
      if (begin < covered) {
        const TensorInfo& p = tensors_.at(*previous);
        fail("tensor '" + *name + "' (data_offsets " + detail::offsets_string(begin, end) + ") overlaps tensor '" +
             *previous + "' (data_offsets " + detail::offsets_string(p.begin, p.end) + ")");
      }
      if (begin > covered) {
        fail("bytes [" + ddpm::detail::number_string(covered) + ", " + ddpm::detail::number_string(begin) +
             ") of the data section belong to no tensor (a gap before tensor '" + *name + "')");
      }
      covered = end;
      previous = name;
    }
    if (covered != data_size) {
      fail("the data section has " + ddpm::detail::number_string(data_size) + " bytes, but the tensors cover only " +
           ddpm::detail::number_string(covered) + " (trailing bytes belong to no tensor)");
    }
  }

  std::string source_;
  std::vector<std::uint8_t> bytes_;
  std::size_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ddpm::io
