// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The safetensors file format (Hugging Face): a reader that trusts nothing in the file, and a writer.
//
//   bytes [0, 8)        N, the header length, a little-endian u64
//   bytes [8, 8 + N)    the header: a UTF-8 JSON object
//                         {"NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [BEGIN, END]}, ...,
//                          "__metadata__": {"key": "value", ...}}
//                       which starts with '{' and may be padded at the end with spaces
//   bytes [8 + N, end)  the data section; [BEGIN, END) is relative to its start, C order, little-endian
//
// The rules the reader enforces are those of the reference implementation (huggingface/safetensors):
// N <= 100,000,000 and 8 + N <= file size; the header is JSON with no duplicate keys; every tensor has a
// known dtype, a shape of non-negative integers and END - BEGIN = product(shape) * dtype size; the tensors,
// sorted by offset, cover the data section exactly once, with no overlap, no gap and no trailing byte (an
// empty tensor, with a 0 in its shape, covers nothing; a rank-0 tensor, shape [], is one scalar);
// `__metadata__` maps strings to strings. Beyond the reference, a shape must be one Eigen can size (the product
// of its extents before the first 0 fits in Eigen::Index) and load() reads regular files only. Unknown fields inside a tensor's entry are ignored, as there.
// Every violation throws ddpm::format_error naming the file, the tensor and what is wrong.

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

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include "ddpm/error.hpp"
#include "ddpm/tensor.hpp"

static_assert(std::endian::native == std::endian::little,
              "ddpm/io/safetensors.hpp: safetensors data is little-endian, and so must the host be");

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

/// A tensor that the writer accepts: a DenseTensor, or a rank-0 Tensor<S, 0> (a scalar, shape []).
template <class T>
concept SavableTensor = DenseTensor<T> ||(requires(const T& t) {
  { t.data() } -> std::convertible_to<const void*>;
  t.dimensions();
} && (std::remove_cvref_t<T>::NumIndices == 0) &&
                                          std::floating_point<std::remove_cv_t<ddpm::detail::element_t<const T>>>);

}  // namespace detail

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
