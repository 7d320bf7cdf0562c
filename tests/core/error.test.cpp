// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// The one number formatter of every message (ddpm::detail::number_string): integers in full, floating-point
// values as the shortest decimal that reads back as the same value, so a message never shows 1e-8 as
// "0.000000" (std::to_string's "%f") and never rounds away the digit that made a value bad.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "ddpm/error.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/timesteps.hpp"

using ddpm::detail::number_string;

TEST_CASE("number_string: integers in full, non-finite values by name", "[error][format]") {
  CHECK(number_string(0) == "0");
  CHECK(number_string(-3) == "-3");
  CHECK(number_string(std::numeric_limits<std::int64_t>::max()) == "9223372036854775807");
  CHECK(number_string(std::numeric_limits<std::uint64_t>::max()) == "18446744073709551615");
  CHECK(number_string(std::numeric_limits<double>::quiet_NaN()) == "nan");
  CHECK(number_string(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(number_string(-std::numeric_limits<float>::infinity()) == "-inf");
}

TEST_CASE("number_string: small values keep their digits, and every value reads back", "[error][format]") {
  CHECK(number_string(1e-8) == "1e-08");  // std::to_string gave "0.000000"
  CHECK(number_string(0.1) == "0.1");
  CHECK(number_string(0.1f) == "0.1");    // shortest for float, not the double 0.100000001490116...
  CHECK(number_string(1.5) == "1.5");
  CHECK(number_string(1.0 + std::numeric_limits<double>::epsilon()) == "1.0000000000000002");
  // Round trip: strtod of the text gives the same double, over values spanning the whole range.
  for (double x : {1e-300, 5e-324, 2.2250738585072014e-308, 1.0 / 3.0, 123456789.123456789, 1e300, -7e-17,
                   std::numeric_limits<double>::max()}) {
    INFO(x);
    CHECK(std::strtod(number_string(x).c_str(), nullptr) == x);
  }
  for (float x : {1e-30f, 1.0f / 3.0f, 16777217.0f, std::numeric_limits<float>::denorm_min()}) {
    INFO(x);
    CHECK(std::strtof(number_string(x).c_str(), nullptr) == x);
  }
}

TEST_CASE("Messages print small values with the shared formatter", "[error][format]") {
  // A bad sigma_min of -1e-8 used to read "sigma_min is -0.000000", which looks like a valid zero.
  CHECK_THROWS_WITH(ddpm::karras_sigmas(-1e-8, 1.0, 10), Catch::Contains("sigma_min is -1e-08"));
  CHECK_THROWS_WITH(ddpm::NoiseSchedule<double>::linear(10, 1e-4, 1.0000000000000002),
                    Catch::Contains("1.0000000000000002"));
}
