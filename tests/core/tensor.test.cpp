// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// advise_huge_pages: large buffers the library returns or resizes (and a caller's, on request) carry Linux's
// MADV_HUGEPAGE advice on their 2 MiB-aligned part, so that first touching them faults once per 2 MiB, not
// once per 4 KiB (issue 13). The advice is visible as the "hg" flag of the mapping in /proc/self/smaps; it is
// advice only and never changes the data.

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/forward.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

// Whether the mapping of /proc/self/smaps that holds `address` has the VmFlags "hg" (MADV_HUGEPAGE).
bool huge_page_advised(const void* address) {
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line.find(" hg") != std::string::npos;
  }
  return false;
}

bool linux_with_thp() {
#if defined(__linux__)
  std::ifstream enabled("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(enabled, mode);
  return enabled.good() && mode.find("[never]") == std::string::npos && std::filesystem::exists("/proc/self/smaps");
#else
  return false;
#endif
}

}  // namespace

TEST_CASE("advise_huge_pages marks the 2 MiB-aligned part of a large buffer and keeps its data", "[tensor][hugepage]") {
  // Small, empty and null buffers: nothing to advise, nothing happens.
  ddpm::advise_huge_pages(nullptr, 1 << 30);
  std::vector<float> small(1000, 1.5f);
  ddpm::advise_huge_pages(small.data(), small.size() * sizeof(float));
  CHECK(small[999] == 1.5f);

  // A 16 MiB buffer, written before the advice: the values stay.
  std::vector<float> big(std::size_t{4} << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 1000);
  ddpm::advise_huge_pages(big.data(), big.size() * sizeof(float));
  bool same = true;
  for (std::size_t i = 0; i < big.size(); ++i) same = same && big[i] == static_cast<float>(i % 1000);
  CHECK(same);
  if (!linux_with_thp()) {
    WARN("no transparent huge pages here: the advice is not observable");
    return;
  }
  const auto aligned = (reinterpret_cast<std::uintptr_t>(big.data()) + ddpm::kHugePageBytes - 1) &
                       ~(std::uintptr_t{ddpm::kHugePageBytes} - 1);
  CHECK(huge_page_advised(reinterpret_cast<const void*>(aligned)));
  // The control: a buffer nobody advised is not marked (so the check above can fail).
  std::vector<float> plain(std::size_t{4} << 20, 0.0f);
  const auto plain_aligned = (reinterpret_cast<std::uintptr_t>(plain.data()) + ddpm::kHugePageBytes - 1) &
                             ~(std::uintptr_t{ddpm::kHugePageBytes} - 1);
  CHECK_FALSE(huge_page_advised(reinterpret_cast<const void*>(plain_aligned)));
}

TEST_CASE("Returned tensors of the library carry the huge-page advice", "[tensor][hugepage]") {
  if (!linux_with_thp()) {
    WARN("no transparent huge pages here: the advice is not observable");
    return;
  }
  // 4 x 3 x 512 x 512 floats = 12 MiB, above glibc's mmap threshold: a fresh mapping per result.
  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
  ddpm::Tensor<float, 4> x0(4, 3, 512, 512), eps(4, 3, 512, 512);
  x0.setConstant(0.5f);
  eps.setConstant(-1.0f);
  const ddpm::Tensor<float, 4> x_t = ddpm::q_sample(schedule, x0, 10, eps);
  const auto aligned = (reinterpret_cast<std::uintptr_t>(x_t.data()) + ddpm::kHugePageBytes - 1) &
                       ~(std::uintptr_t{ddpm::kHugePageBytes} - 1);
  CHECK(huge_page_advised(reinterpret_cast<const void*>(aligned)));
  // The values are those of Eq. (4).
  const float expected = schedule.sqrt_alphas_cumprod()[10] * 0.5f - schedule.sqrt_one_minus_alphas_cumprod()[10];
  CHECK(x_t(3, 2, 511, 511) == Approx(expected).epsilon(1e-6));
  // A tensor below kHugePageAdviceMinBytes is left alone (its mapping, if any, is not marked by us).
  ddpm::Tensor<float, 4> tiny(1, 1, 4, 4);
  tiny.setZero();
  CHECK_NOTHROW(ddpm::advise_huge_pages(tiny));
}

// retain_freed_memory: after the opt-in, a 48 MiB result (above glibc's default 32 MiB mmap threshold) comes
// from the heap instead of a fresh mapping, so freeing it and asking again reuses mapped pages. glibc's
// mallinfo2().hblkhd (bytes in mmapped blocks) shows which: it grows by the block before the opt-in (the
// control, so the check after it can fail) and not after.
TEST_CASE("retain_freed_memory keeps large freed blocks in the heap, and refuses absurd sizes", "[tensor][hugepage]") {
  CHECK_THROWS_WITH(ddpm::retain_freed_memory(4096),
                    Catch::Contains("max_block_bytes is 4096") && Catch::Contains("must be in [2097152, 1073741824]"));
  CHECK_THROWS_AS(ddpm::retain_freed_memory(std::size_t{1} << 31), ddpm::invalid_argument);
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
  constexpr std::size_t block = std::size_t{48} << 20;
  const auto mapped = [] { return static_cast<std::size_t>(::mallinfo2().hblkhd); };
  const std::size_t before = mapped();
  {
    ddpm::Tensor<float, 1> x0(static_cast<Eigen::Index>(block / sizeof(float))), eps(x0.dimension(0));
    x0.setConstant(1.0f);
    eps.setZero();
    // x0 and eps are 48 MiB each: mapped blocks before the opt-in.
    CHECK(mapped() >= before + 2 * block);
  }
  REQUIRE(ddpm::retain_freed_memory(std::size_t{256} << 20));
  const std::size_t after_opt_in = mapped();
  ddpm::Tensor<float, 1> a(static_cast<Eigen::Index>(block / sizeof(float)));
  a.setConstant(2.0f);
  CHECK(mapped() == after_opt_in);  // from the heap
  a = ddpm::Tensor<float, 1>();  // freed into the heap
  ddpm::Tensor<float, 1> b(static_cast<Eigen::Index>(block / sizeof(float)));
  b.setConstant(3.0f);
  CHECK(mapped() == after_opt_in);
  CHECK(b(0) == 3.0f);
#else
  WARN("not glibc, or under AddressSanitizer (its allocator ignores mallopt): only the argument checks ran");
#endif
}
