// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// libFuzzer target for ddpm::io::Safetensors (build and run: tests/fuzz/run_fuzz.sh).
//
// Every input is parsed. A ddpm::format_error is the expected answer to a malformed file; any other
// exception, a crash or a sanitizer report is a bug. When the parse succeeds, the target checks what the
// reader promises: the tensors tile the data section, every size agrees with dtype and shape, every float
// tensor converts to float and double (and to a Tensor of its rank), every other dtype refuses with a
// format_error, and the file, written again by SafetensorsWriter, parses back to the same tensors.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/io/safetensors.hpp"

namespace {

[[noreturn]] void bug(const std::string& what) {
  std::fprintf(stderr, "fuzz_safetensors: BUG: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(condition)                                                                                   \
  do {                                                                                                          \
    if (!(condition)) bug(std::string("check failed: ") + #condition + " at line " + std::to_string(__LINE__)); \
  } while (0)

using ddpm::io::DType;
using ddpm::io::Safetensors;
using ddpm::io::TensorInfo;

template <int R>
void check_tensor(const Safetensors& st, const std::string& name, const TensorInfo& info) {
  const ddpm::Tensor<float, R> t = st.to_tensor<float, R>(name);
  FUZZ_CHECK(static_cast<std::size_t>(t.size()) == info.num_elements());
  for (int i = 0; i < R; ++i) FUZZ_CHECK(t.dimension(i) == info.shape[static_cast<std::size_t>(i)]);
}

void check_float_tensor(const Safetensors& st, const std::string& name, const TensorInfo& info) {
  const std::vector<float> f = st.to_vector<float>(name);
  const std::vector<double> d = st.to_vector<double>(name);
  FUZZ_CHECK(f.size() == info.num_elements());
  FUZZ_CHECK(d.size() == f.size());
  for (std::size_t i = 0; i < f.size(); ++i) {
    // Exact from F16/BF16/F32; from F64 float is the double rounded to nearest.
    FUZZ_CHECK(std::isnan(d[i]) ? std::isnan(f[i]) : static_cast<float>(d[i]) == f[i]);
  }
  switch (info.shape.size()) {
    case 0:
      check_tensor<0>(st, name, info);
      break;
    case 1:
      check_tensor<1>(st, name, info);
      break;
    case 2:
      check_tensor<2>(st, name, info);
      break;
    case 3:
      check_tensor<3>(st, name, info);
      break;
    case 4:
      check_tensor<4>(st, name, info);
      break;
    default:
      break;
  }
  if (info.shape.size() != 2) {  // the wrong rank is refused
    bool refused = false;
    try {
      (void)st.to_tensor<double, 2>(name);
    } catch (const ddpm::format_error&) {
      refused = true;
    }
    FUZZ_CHECK(refused);
  }
}

void check(const Safetensors& st, const std::uint8_t* file, std::size_t file_size) {
  const std::vector<std::string> names = st.names();
  FUZZ_CHECK(names.size() == st.size());
  std::size_t covered = 0;
  for (std::size_t k = 0; k < names.size(); ++k) {
    const std::string& name = names[k];
    FUZZ_CHECK(k == 0 || names[k - 1] < name);
    FUZZ_CHECK(st.contains(name));
    const TensorInfo& info = st.info(name);
    FUZZ_CHECK(info.begin <= info.end);
    const auto bytes = st.bytes(name);
    FUZZ_CHECK(bytes.size() == info.end - info.begin);
    // size = product(shape) * dtype size, computed here independently (in long double, exact at these sizes).
    long double product = 1;
    for (std::int64_t d : info.shape) {
      FUZZ_CHECK(d >= 0);
      product *= static_cast<long double>(d);
    }
    FUZZ_CHECK(product * static_cast<long double>(ddpm::io::dtype_size(info.dtype)) ==
               static_cast<long double>(bytes.size()));
    FUZZ_CHECK(info.num_elements() * ddpm::io::dtype_size(info.dtype) == bytes.size());
    covered += bytes.size();
    if (ddpm::io::is_floating_point(info.dtype)) {
      check_float_tensor(st, name, info);
    } else {
      bool refused = false;
      try {
        (void)st.to_vector<float>(name);
      } catch (const ddpm::format_error&) {
        refused = true;
      }
      FUZZ_CHECK(refused);
    }
  }
  // The tensors tile the data section exactly: their sizes add up to it.
  std::uint64_t n = 0;
  std::memcpy(&n, file, 8);
  FUZZ_CHECK(n <= file_size && 8 + n + covered == file_size);
  FUZZ_CHECK(!st.contains("__metadata__"));

  // Written again, the file parses back to the same tensors and metadata.
  ddpm::io::SafetensorsWriter w;
  for (const auto& [key, value] : st.metadata()) w.set_metadata(key, value);
  for (const std::string& name : names) {
    const TensorInfo& info = st.info(name);
    w.add_raw(name, info.dtype, info.shape, st.bytes(name));
  }
  const std::vector<std::uint8_t> again_bytes = w.to_bytes();
  const Safetensors again = Safetensors::parse(again_bytes, "rewritten");
  FUZZ_CHECK(again.names() == names);
  FUZZ_CHECK(again.metadata() == st.metadata());
  for (const std::string& name : names) {
    FUZZ_CHECK(again.info(name).dtype == st.info(name).dtype);
    FUZZ_CHECK(again.info(name).shape == st.info(name).shape);
    const auto a = again.bytes(name);
    const auto b = st.bytes(name);
    FUZZ_CHECK(a.size() == b.size());
    FUZZ_CHECK(a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::optional<Safetensors> st;
  try {
    st.emplace(Safetensors::parse(std::vector<std::uint8_t>(data, data + size), "fuzz-input"));
  } catch (const ddpm::format_error& e) {
    if (std::strstr(e.what(), "fuzz-input") == nullptr) bug(std::string("message names no file: ") + e.what());
    return 0;
  } catch (const std::exception& e) {
    bug(std::string("parse threw something other than ddpm::format_error: ") + e.what());
  }
  try {
    check(*st, data, size);
  } catch (const std::exception& e) {
    bug(std::string("a valid file failed a check with an exception: ") + e.what());
  }
  return 0;
}
