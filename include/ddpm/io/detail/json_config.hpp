// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Internal: reading a diffusers config file (a flat JSON object written by Python's json module) without
// trusting it: text nesting checked before parsing, values bounded in depth before anything walks them,
// integers read as checked 64-bit values, Python's non-standard number tokens (NaN, Infinity, -Infinity,
// which json.dumps writes for float('inf'), e.g. DPMSolverMultistepScheduler's lambda_min_clipped) turned
// into strings nlohmann can parse, and values in messages truncated.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/error.hpp"

namespace ddpm::io::detail {

/// At most `max` characters of text, with "..." when cut.
inline std::string truncated(const std::string& text, std::size_t max = 200) {
  return text.size() <= max ? text : text.substr(0, max) + "...";
}

/// Whether `v` has lists or objects nested more than `max` levels deep (a scalar is level 0), without
/// recursion (nlohmann's dump() and copies recurse once per level).
inline bool nests_deeper_than(const nlohmann::json& v, int max) {
  std::vector<std::pair<const nlohmann::json*, int>> stack{{&v, 0}};
  while (!stack.empty()) {
    const auto [value, level] = stack.back();
    stack.pop_back();
    if (!value->is_structured()) continue;
    if (level + 1 > max) return true;
    for (const auto& child : *value) stack.emplace_back(&child, level + 1);
  }
  return false;
}

/// The byte offset where the text's '[' / '{' nesting first exceeds `max`, or nullopt (brackets inside
/// strings do not count).
inline std::optional<std::size_t> nesting_exceeded(const std::string& text, int max) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      if (ch == '\\') {
        ++i;
      } else if (ch == '"') {
        in_string = false;
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > max) return i;
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return std::nullopt;
}

/// The text with Python's number tokens NaN, Infinity and -Infinity outside strings replaced by the
/// strings "NaN", "Infinity" and "-Infinity" (which number() reads back as numbers).
inline std::string quote_python_constants(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  auto token_at = [&](std::size_t i, const char* token) {
    return text.compare(i, std::char_traits<char>::length(token), token) == 0;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') {
      in_string = true;
      out += ch;
    } else if (token_at(i, "-Infinity")) {
      out += "\"-Infinity\"";
      i += 8;
    } else if (token_at(i, "Infinity")) {
      out += "\"Infinity\"";
      i += 7;
    } else if (token_at(i, "NaN")) {
      out += "\"NaN\"";
      i += 2;
    } else {
      out += ch;
    }
  }
  return out;
}

/// A value for a message: its JSON text truncated to about 200 characters (values deeper than `max_depth`
/// are described, not dumped).
inline std::string describe(const nlohmann::json& v, int max_depth = 32) {
  if (nests_deeper_than(v, max_depth)) return "a value nested deeper than " + ddpm::detail::number_string(max_depth) + " levels";
  return truncated(v.dump());
}

/// A key's value of the wrong JSON type: what it must be.
struct WrongType {
  std::string expected;
};

/// "[lo, hi]" (appended piecewise: GCC 12 -O3 warns (-Wrestrict) on "[" + std::string&&).
inline std::string range_string(long long lo, long long hi) {
  std::string s(1, '[');
  s += ddpm::detail::number_string(lo);
  s += ", ";
  s += ddpm::detail::number_string(hi);
  s += ']';
  return s;
}

/// The integer `v` if it lies in [lo, hi]. JSON integers are read as checked 64-bit values and integral
/// floats (3.0) are compared as doubles before any conversion, so nothing wraps or converts with UB.
/// Throws WrongType naming the range if v is not an integer in [lo, hi].
inline long long integer(const nlohmann::json& v, long long lo, long long hi) {
  const WrongType bad{"must be an integer in " + range_string(lo, hi)};
  if (v.is_number_unsigned()) {
    const std::uint64_t u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(hi) || (lo > 0 && u < static_cast<std::uint64_t>(lo))) throw bad;
    return static_cast<long long>(u);
  }
  if (v.is_number_integer()) {
    const std::int64_t i = v.get<std::int64_t>();
    if (i < lo || i > hi) throw bad;
    return static_cast<long long>(i);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // 2^63 compares equal to a hi of LLONG_MAX converted to double, but does not fit in long long.
    if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(lo) || d > static_cast<double>(hi) ||
        d >= 0x1p63 || d < -0x1p63) {
      throw bad;
    }
    return static_cast<long long>(d);
  }
  throw bad;
}

/// A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" (Python's tokens, quoted by
/// quote_python_constants). Throws WrongType otherwise.
inline double number(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
  }
  throw WrongType{"must be a number"};
}

inline bool boolean(const nlohmann::json& v) {
  if (!v.is_boolean()) throw WrongType{"must be true or false"};
  return v.get<bool>();
}

inline const std::string& string(const nlohmann::json& v) {
  if (!v.is_string()) throw WrongType{"must be a string"};
  return v.get_ref<const std::string&>();
}

/// Parses a config file's text: nesting refused beyond `max_depth` before parsing, Python's constants
/// quoted. `what` names the text in messages. Throws ddpm::format_error.
inline nlohmann::json parse_config_text(const std::string& text, const std::string& what, int max_depth) {
  if (const auto offset = nesting_exceeded(text, max_depth)) {
    ddpm::detail::throw_format_error(what + " nests deeper than " + ddpm::detail::number_string(max_depth) +
                                     " levels (at byte offset " + ddpm::detail::number_string(*offset) + ")");
  }
  try {
    return nlohmann::json::parse(quote_python_constants(text));
  } catch (const nlohmann::json::exception& e) {
    ddpm::detail::throw_format_error(what + " is not valid JSON (" + e.what() + ")");
  }
}

}  // namespace ddpm::io::detail
