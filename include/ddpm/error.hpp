// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

#include <array>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace ddpm {

/// A caller passed an argument outside its documented domain (a bad schedule, an out-of-range timestep,
/// mismatched shapes). The message names the function, the argument, its value and what was expected.
class invalid_argument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A file (weights, config, image) is malformed. The message names the file part that is wrong.
class format_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

/// The one number formatter of every message: integers in full, floating-point values as the shortest
/// decimal that reads back as the same value of their own type ("1e-08", "0.1", "1.0000000000000002",
/// "nan", "-inf"; std::to_string would print 1e-8 as "0.000000").
template <class T>
  requires std::is_arithmetic_v<T>
std::string number_string(T x) {
  if constexpr (std::is_integral_v<T>) {
    return std::to_string(x);
  } else {
    if (std::isnan(x)) return "nan";
    if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
    std::array<char, 64> buf{};
    const auto result = std::to_chars(buf.data(), buf.data() + buf.size(), x);
    return std::string(buf.data(), result.ptr);
  }
}

// Cold, out-of-line throw helpers keep the validation branches small at every call site.
[[noreturn]] [[gnu::cold]] [[gnu::noinline]] inline void throw_invalid_argument(const std::string& message) {
  throw ddpm::invalid_argument(message);
}

[[noreturn]] [[gnu::cold]] [[gnu::noinline]] inline void throw_format_error(const std::string& message) {
  throw ddpm::format_error(message);
}

}  // namespace detail
}  // namespace ddpm

#ifdef NDEBUG
#define DDPM_ASSERT(condition) ((void)0)
#else
#include <cassert>
#define DDPM_ASSERT(condition) assert(condition)
#endif
