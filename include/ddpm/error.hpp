// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

#include <stdexcept>
#include <string>

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
