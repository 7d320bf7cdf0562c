// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// What the bench_<area> executables share: NCHW shapes from a benchmark's arguments, random tensors, and
// a STREAM-style triad measured on the same size, so that every elementwise kernel reports the fraction of
// this machine's memory bandwidth it reaches (counter `triad_fraction`); the FP32 FMA peak for the compute-bound
// kernels; and (opt-in) a counting heap allocator.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <thread>
#include <vector>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "ddpm/random.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm_bench {

using Shape = std::array<Eigen::Index, 4>;

/// The NCHW shape given as the benchmark's four arguments.
inline Shape shape_of(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(2), state.range(3)};
}

/// A float tensor of the shape filled with standard-normal numbers of the seed.
inline ddpm::Tensor<float, 4> filled(const Shape& s, std::uint64_t seed) {
  ddpm::Tensor<float, 4> x(s[0], s[1], s[2], s[3]);
  ddpm::fill_normal(x, seed);
  return x;
}

/// Seconds of CPU time this process has used: the clock Google Benchmark's rates (bytes/s, items/s and
/// every kIsRate counter) divide by, unless a benchmark asks for real time. On a shared machine a process
/// gets only part of a core, and wall-clock and CPU-time rates then differ by that part.
inline double process_cpu_seconds() {
#if defined(CLOCK_PROCESS_CPUTIME_ID)
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
#else
  return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
#endif
}

/// a = b + s * c over three arrays of n floats: STREAM's triad, the bandwidth an elementwise kernel that
/// reads two tensors and writes one can hope for at this size (in cache for small n, DRAM for large n).
/// Measured once per size (best of several passes) in CPU time, the clock of the rates it is compared
/// with, and cached.
inline double triad_bytes_per_second(Eigen::Index n) {
  static std::map<Eigen::Index, double> cache;
  if (auto it = cache.find(n); it != cache.end()) return it->second;
  Eigen::ArrayXf a = Eigen::ArrayXf::Zero(n), b = Eigen::ArrayXf::Random(n), c = Eigen::ArrayXf::Random(n);
  const int reps =
      static_cast<int>(std::clamp<Eigen::Index>((Eigen::Index{1} << 28) / std::max<Eigen::Index>(n, 1), 5, 20000));
  double best = 1e300;
  for (int pass = 0; pass < 7; ++pass) {
    const double start = process_cpu_seconds();
    for (int r = 0; r < reps; ++r) {
      a = b + 0.5f * c;
      benchmark::DoNotOptimize(a.data());
      benchmark::ClobberMemory();
    }
    const double seconds = (process_cpu_seconds() - start) / reps;
    best = std::min(best, seconds);
  }
  return cache[n] = 3.0 * sizeof(float) * static_cast<double>(n) / best;
}

/// Elements per array of the STREAM triad proper: 3 x 128 MiB, far beyond any cache, so it measures DRAM.
inline constexpr Eigen::Index kStreamElements = Eigen::Index{1} << 25;

/// Reports items/s (n per iteration), bytes/s for `bytes_per_iteration`, the fraction of the triad
/// bandwidth of size n that those bytes/s are (counter `triad_fraction`: in cache for the shapes here, the
/// strict reference), and their fraction of STREAM's triad on DRAM-sized arrays (`stream_fraction`: the
/// machine's memory bandwidth, the figure STREAM itself reports).
inline void report(benchmark::State& state, Eigen::Index n, double bytes_per_iteration) {
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * bytes_per_iteration));
  state.counters["triad_fraction"] = benchmark::Counter(bytes_per_iteration / triad_bytes_per_second(n),
                                                        benchmark::Counter::kIsIterationInvariantRate);
  state.counters["stream_fraction"] = benchmark::Counter(
      bytes_per_iteration / triad_bytes_per_second(kStreamElements), benchmark::Counter::kIsIterationInvariantRate);
}

/// STREAM's triad a = b + s * c on arrays of the benchmark's NCHW size: the reference for triad_fraction.
inline void BM_Triad(benchmark::State& state) {
  const Shape s = shape_of(state);
  const Eigen::Index n = s[0] * s[1] * s[2] * s[3];
  Eigen::ArrayXf a = Eigen::ArrayXf::Zero(n), b = Eigen::ArrayXf::Random(n), c = Eigen::ArrayXf::Random(n);
  for (auto _ : state) {
    a = b + 0.5f * c;
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  report(state, n, 3.0 * sizeof(float) * static_cast<double>(n));
}

/// The standard-normal fill alone (a NoiseSource into one tensor of the benchmark's NCHW size): the
/// generator's rate, against which every kernel that draws noise is bound. Its bytes are the one tensor written.
inline void BM_FillNormal(benchmark::State& state) {
  const Shape s = shape_of(state);
  ddpm::Tensor<float, 4> out(s[0], s[1], s[2], s[3]);
  ddpm::NoiseSource noise(3);
  for (auto _ : state) {
    noise(out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report(state, out.size(), 1.0 * sizeof(float) * static_cast<double>(out.size()));
}

}  // namespace ddpm_bench

// ------------------------------------------------------------------------------------------------------------
// The machine's FP32 FMA peak, measured in the same run as the kernels it is compared with.

namespace ddpm_bench {

/// Floating-point operations of `inner` rounds of 16 independent vector FMA chains (acc = acc * a + b; a
/// multiply and an add each, enough chains to cover the FMA latency on two pipes), in AVX-512 registers when
/// available, else AVX2 + FMA; 0 when built without FMA.
inline double fma_chains(long inner) {
#if defined(__AVX512F__) || defined(__FMA__)
  constexpr int kChains = 16;
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int kLanes = 16;
  auto set1 = [](float v) { return _mm512_set1_ps(v); };
  auto fma = [](V x, V y, V z) { return _mm512_fmadd_ps(x, y, z); };
#else
  using V = __m256;
  constexpr int kLanes = 8;
  auto set1 = [](float v) { return _mm256_set1_ps(v); };
  auto fma = [](V x, V y, V z) { return _mm256_fmadd_ps(x, y, z); };
#endif
  V acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = set1(1.0f + 0.01f * float(j));
  const V a = set1(0.999999f), b = set1(1e-7f);
  for (long i = 0; i < inner; ++i) {
    for (int j = 0; j < kChains; ++j) acc[j] = fma(acc[j], a, b);
  }
  for (int j = 0; j < kChains; ++j) benchmark::DoNotOptimize(acc[j]);
  return 2.0 * kChains * kLanes * double(inner);
#else
  (void)inner;
  return 0.0;
#endif
}

/// The FP32 FMA peak in FLOP/s of `threads` threads running fma_chains at once (wall clock, best of seven
/// passes of about 0.1 s each; on a shared machine the best pass is the one least disturbed). Measured once
/// per thread count and cached.
inline double fma_peak_flops_per_second(int threads) {
  static std::map<int, double> cache;
  if (auto it = cache.find(threads); it != cache.end()) return it->second;
  constexpr long kInner = 1L << 21;  // about 0.1 s on one core at 200 GFLOP/s
  double best = 0;
  for (int pass = 0; pass < 7; ++pass) {
    std::vector<double> flops(static_cast<std::size_t>(threads), 0.0);
    std::vector<std::thread> pool;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 1; i < threads; ++i) pool.emplace_back([&flops, i] { flops[static_cast<std::size_t>(i)] = fma_chains(kInner); });
    flops[0] = fma_chains(kInner);
    for (std::thread& t : pool) t.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double total = 0;
    for (double f : flops) total += f;
    best = std::max(best, total / seconds);
  }
  return cache[threads] = best;
}

/// The FMA peak as a benchmark (counter `GFLOP/s`; run it with ->Threads(n) for n threads).
inline void BM_FmaPeak(benchmark::State& state) {
  double flops = 0;
  for (auto _ : state) flops += fma_chains(1L << 16);
  if (flops == 0) state.SkipWithError("built without FMA");
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
}

}  // namespace ddpm_bench

// ------------------------------------------------------------------------------------------------------------
// Heap accounting (opt-in): a translation unit that defines DDPM_BENCH_HEAP_ACCOUNTING before including this
// header replaces glibc's malloc family by counting wrappers, so that every heap block of the process (Eigen's
// tensors, std::vector, operator new, the workspace's pool) is counted: live bytes (as malloc_usable_size
// reports them), their high-water mark since the last reset, and the number of allocations. Define it in one
// executable's only translation unit; glibc only.

#if defined(DDPM_BENCH_HEAP_ACCOUNTING) && defined(__GLIBC__)
#include <malloc.h>

#include <atomic>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace ddpm_bench::heap {
inline std::atomic<long long> live{0}, high{0}, allocations{0};
inline void* counted(void* p) {
  if (p != nullptr) {
    const long long now = live.fetch_add(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed) +
                          static_cast<long long>(malloc_usable_size(p));
    long long h = high.load(std::memory_order_relaxed);
    while (now > h && !high.compare_exchange_weak(h, now, std::memory_order_relaxed)) {
    }
    allocations.fetch_add(1, std::memory_order_relaxed);
  }
  return p;
}
inline void uncounted(void* p) {
  if (p != nullptr) live.fetch_sub(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed);
}
/// Bytes of live heap blocks now.
inline long long live_bytes() { return live.load(); }
/// The high-water mark of live bytes since the last reset_high_water().
inline long long high_water_bytes() { return high.load(); }
/// Restarts the high-water mark at the live bytes now.
inline void reset_high_water() { high.store(live.load()); }
inline long long allocation_count() { return allocations.load(); }
}  // namespace ddpm_bench::heap

extern "C" void* malloc(std::size_t n) noexcept { return ddpm_bench::heap::counted(__libc_malloc(n)); }
extern "C" void* calloc(std::size_t n, std::size_t size) noexcept {
  return ddpm_bench::heap::counted(__libc_calloc(n, size));
}
extern "C" void* realloc(void* p, std::size_t n) noexcept {
  ddpm_bench::heap::uncounted(p);
  void* q = __libc_realloc(p, n);
  if (q == nullptr && n != 0 && p != nullptr) {
    ddpm_bench::heap::counted(p);  // the old block is still there
    return q;
  }
  return ddpm_bench::heap::counted(q);
}
extern "C" void* memalign(std::size_t alignment, std::size_t n) noexcept {
  return ddpm_bench::heap::counted(__libc_memalign(alignment, n));
}
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
  return ddpm_bench::heap::counted(__libc_memalign(alignment, n));
}
extern "C" int posix_memalign(void** p, std::size_t alignment, std::size_t n) noexcept {
  *p = ddpm_bench::heap::counted(__libc_memalign(alignment, n));
  return *p != nullptr ? 0 : 12;  // ENOMEM
}
extern "C" void free(void* p) noexcept {
  ddpm_bench::heap::uncounted(p);
  __libc_free(p);
}
#define DDPM_BENCH_HAS_HEAP_ACCOUNTING 1
#endif
